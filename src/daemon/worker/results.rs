//! Payment results from a Redis stream (`payment.results_stream`, fields
//! `orderId`, `outcome`, `reference`, `amount`), consumed by `work purchase`
//! beside its jobs: each entry is applied as `POST /v1/orders/{id}/payment`
//! would apply it, then acknowledged. Applying a result is idempotent (the
//! same result again changes nothing), so an entry read again after a crash
//! is harmless; one that cannot be applied goes to `<stream>:dead` with the
//! reason.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::{OrderAction, OrderChange, OrderId};
use crate::store::{PaymentResult, Store, StoreError};

/// Entries read per call.
const PER_READ: usize = 500;
/// Entries applied per round: one script call per event among them, the
/// calls at once. Results of one order apply in stream order; results may
/// arrive in any order anyway.
const PER_CALL: usize = 250;

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

/// Why an answer to a result means it cannot be applied (`None`: applied).
fn refusal(change: OrderChange, id: &OrderId, action: OrderAction) -> Option<String> {
    match change {
        OrderChange::Done { .. } => None,
        OrderChange::NotFound => Some(format!("no order {id}")),
        OrderChange::State(s) => Some(format!(
            "the order is {}: a {} result cannot apply to it",
            s.as_str(),
            action.as_str()
        )),
        OrderChange::AmountMismatch(a) => Some(format!("the order's amount is {a}")),
    }
}

/// An entry's place in its batch and what it asks.
type Asked<'a> = (usize, OrderId, OrderAction, &'a str, u64);

/// Applies a batch of entries, one script call per event (the calls run
/// at once): for each entry, `Some(None)` when applied, `Some(Some(reason))`
/// when it cannot be, `None` when Redis did not answer for its event (it
/// stays pending); and the first such error.
async fn apply_all(
    store: &Store,
    entries: &[PaymentResult],
) -> (Vec<Option<Option<String>>>, Option<StoreError>) {
    let mut outcome: Vec<Option<Option<String>>> = vec![None; entries.len()];
    let mut by_event: HashMap<String, Vec<Asked<'_>>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        match parse(e) {
            Err(reason) => outcome[i] = Some(Some(reason)),
            Ok((id, action, reference, amount)) => by_event
                .entry(id.event.clone())
                .or_default()
                .push((i, id, action, reference, amount)),
        }
    }
    let calls = by_event.iter().map(|(event, items)| async move {
        let asked: Vec<(&OrderId, OrderAction, &str, Option<u64>)> = items
            .iter()
            .map(|(_, id, action, reference, amount)| (id, *action, *reference, Some(*amount)))
            .collect();
        (items, store.change_orders(event, &asked).await)
    });
    let mut error = None;
    for (items, answers) in futures_util::future::join_all(calls).await {
        match answers {
            Err(e) => error = Some(e),
            Ok(answers) => {
                for ((i, id, action, _, _), answer) in items.iter().zip(answers) {
                    match answer {
                        Ok(change) => outcome[*i] = Some(refusal(change, id, *action)),
                        Err(e) => error = Some(e),
                    }
                }
            }
        }
    }
    (outcome, error)
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
        let mut failed = None;
        for chunk in entries.chunks(PER_CALL) {
            let (outcome, error) = apply_all(&store, chunk).await;
            // One acknowledgement for what was applied or dead-lettered.
            let mut ids = Vec::with_capacity(chunk.len());
            for (entry, o) in chunk.iter().zip(outcome) {
                match o {
                    Some(None) => applied += 1,
                    Some(Some(reason)) => {
                        tracing::warn!(entry = %entry.id, %reason, "payment result dead-lettered");
                        store.dead_result(&stream, entry, &reason).await?;
                        dead += 1;
                    }
                    None => continue,
                }
                ids.push(entry.id.as_str());
            }
            store.ack_results(&stream, &ids).await?;
            if error.is_some() {
                failed = error;
                break;
            }
        }
        // What failed stays pending: read again as this consumer's own.
        if let Some(e) = failed {
            if once {
                return Err(e);
            }
            tracing::warn!(error = %e, "applying payment results failed; retrying");
            own = true;
            tokio::time::sleep(Duration::from_millis(100)).await;
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
