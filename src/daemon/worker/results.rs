//! Payment results from a Redis stream (`payment.results_stream`, fields
//! `orderId`, `outcome`, `reference`, `amount`), consumed by `work purchase`
//! beside its jobs: each entry is applied as `POST /v1/orders/{id}/payment`
//! would apply it, then acknowledged. Applying a result is idempotent (the
//! same result again changes nothing), so an entry read again after a crash
//! is harmless; one that cannot be applied goes to `<stream>:dead` with the
//! reason.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::{OrderAction, OrderChange, OrderId};
use crate::store::{PaymentResult, Store, StoreError};

/// Entries read per call.
const PER_READ: usize = 500;

/// What a result entry asks, or why it cannot be applied.
fn parse(r: &PaymentResult) -> Result<(OrderId, OrderAction, &str, u64), String> {
    let field = |k: &str| {
        r.fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("no field {k}"))
    };
    let id = field("orderId")?;
    let order = OrderId::parse(id).ok_or_else(|| format!("orderId {id:?} is not an order id"))?;
    let action = match field("outcome")? {
        "paid" => OrderAction::Paid,
        "declined" => OrderAction::Declined,
        other => return Err(format!("outcome {other:?} is not paid or declined")),
    };
    let reference = field("reference")?;
    if reference.is_empty() || reference.len() > 255 {
        return Err("reference must be 1-255 characters".into());
    }
    let amount = field("amount")?;
    let amount = amount
        .parse()
        .map_err(|_| format!("amount {amount:?} is not a whole number of minor units"))?;
    Ok((order, action, reference, amount))
}

/// Applies one entry: `Ok(None)` when applied, `Ok(Some(reason))` when it
/// cannot be, `Err` when Redis did not answer (the entry stays pending).
async fn apply(store: &Store, r: &PaymentResult) -> Result<Option<String>, StoreError> {
    let (id, action, reference, amount) = match parse(r) {
        Ok(p) => p,
        Err(reason) => return Ok(Some(reason)),
    };
    Ok(
        match store
            .change_order(&id, action, reference, Some(amount))
            .await?
        {
            OrderChange::Done { .. } => None,
            OrderChange::NotFound => Some(format!("no order {id}")),
            OrderChange::State(s) => Some(format!(
                "the order is {}: a {} result cannot apply to it",
                s.as_str(),
                action.as_str()
            )),
            OrderChange::AmountMismatch(a) => Some(format!("the order's amount is {a}")),
        },
    )
}

/// Consumes the results stream until `stop`, or (`once`) until it has no
/// entry for this consumer, waiting up to `wait` in each read for a new one
/// (below `redis.timeout`). Returns the entries applied and dead-lettered.
pub async fn run(
    store: Store,
    stream: String,
    consumer: String,
    once: bool,
    claim_idle: Duration,
    wait: Duration,
    stop: CancellationToken,
) -> Result<(u64, u64), StoreError> {
    store.ensure_results_group(&stream).await?;
    let (mut applied, mut dead) = (0, 0);
    // First what this consumer read before and did not acknowledge, and
    // what dead consumers left; then new entries.
    let mut own = true;
    let mut last_claim = tokio::time::Instant::now();
    loop {
        if stop.is_cancelled() {
            break;
        }
        let block = if once || own { None } else { Some(wait) };
        let read = tokio::select! {
            r = store.read_results(&stream, &consumer, own, PER_READ, block) => r,
            () = stop.cancelled() => break,
        };
        let entries = match read {
            Ok(e) => e,
            Err(e) if once => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "reading payment results failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if entries.is_empty() {
            if own {
                own = false;
                continue;
            }
            if once {
                break;
            }
        }
        for entry in &entries {
            match apply(&store, entry).await {
                Ok(None) => {
                    store.ack_result(&stream, &entry.id, None).await?;
                    applied += 1;
                }
                Ok(Some(reason)) => {
                    tracing::warn!(entry = %entry.id, %reason, "payment result dead-lettered");
                    store
                        .ack_result(&stream, &entry.id, Some((entry, &reason)))
                        .await?;
                    dead += 1;
                }
                // Left pending: read again as this consumer's own.
                Err(e) => {
                    tracing::warn!(error = %e, "applying a payment result failed; retrying");
                    own = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
        if last_claim.elapsed() >= claim_idle {
            last_claim = tokio::time::Instant::now();
            if store.claim_results(&stream, &consumer, claim_idle).await? > 0 {
                own = true;
            }
        }
    }
    Ok((applied, dead))
}
