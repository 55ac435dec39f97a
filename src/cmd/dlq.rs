//! `ticketctl dlq list|retry|purge`: dead-lettered purchase jobs. Each action
//! says what it did and is safe to run twice.

use anyhow::Context;
use serde_json::json;

use crate::cli::{DlqCommand, GlobalOpts};
use crate::model::OrderId;
use crate::store::Store;
use crate::time::rfc3339_ms;
use crate::UsageError;

/// The events to act on: the one named by `--event` (which must exist, as
/// for `inspect`), or every event.
async fn events(store: &Store, only: Option<String>) -> anyhow::Result<Vec<String>> {
    let known = store.list_events().await.context("cannot list events")?;
    match only {
        Some(e) if !known.contains(&e) => anyhow::bail!("no such event {e}"),
        Some(e) => Ok(vec![e]),
        None => Ok(known),
    }
}

pub async fn run(global: &GlobalOpts, cmd: DlqCommand) -> anyhow::Result<()> {
    let cfg = super::load_config(global, None)?;
    if let DlqCommand::Purge { yes: false, .. } = cmd {
        return Err(UsageError(
            "dlq purge deletes dead letters for good; add --yes to confirm".into(),
        )
        .into());
    }
    let store = super::connect(&cfg).await?;
    match cmd {
        DlqCommand::List { event, limit, json } => {
            let mut all = Vec::new();
            for e in events(&store, event).await? {
                all.extend(
                    store
                        .dead_letters(&e, limit as usize)
                        .await
                        .context("cannot read dead letters")?,
                );
            }
            if json {
                let list: Vec<_> = all
                    .iter()
                    .map(|d| json!({
                        "eventId": d.event, "entryId": d.entry, "orderId": d.order.as_ref().map(|o| o.to_string()),
                        "userId": d.user, "ticketIds": d.tickets, "attempts": d.attempts, "error": d.error,
                        "failedAt": rfc3339_ms(d.failed_ms),
                    }))
                    .collect();
                println!("{}", json!({ "deadLetters": list }));
            } else if all.is_empty() {
                println!("no dead letters");
            } else {
                let mut t = crate::table::with_header([
                    "order",
                    "user",
                    "tickets",
                    "attempts",
                    "error",
                    "failed at",
                ]);
                for d in &all {
                    t.add_row([
                        d.order
                            .as_ref()
                            .map(|o| o.to_string())
                            .unwrap_or_else(|| format!("({} {})", d.event, d.entry)),
                        d.user.clone(),
                        d.tickets
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        d.attempts.to_string(),
                        d.error.clone(),
                        rfc3339_ms(d.failed_ms),
                    ]);
                }
                println!("{t}");
            }
        }
        DlqCommand::Retry {
            order_id: Some(id), ..
        } => {
            let oid = OrderId::parse(&id)
                .ok_or_else(|| UsageError(format!("{id:?} is not an order id")))?;
            let (n, left) = store
                .retry_dead_letters(&oid.event, Some(oid.seq))
                .await
                .context("cannot retry")?;
            if n == 0 {
                println!("order {id} has no dead-lettered job (nothing to retry)");
            } else {
                println!(
                    "requeued the job of order {id}; {left} dead letters left in event {}",
                    oid.event
                );
            }
        }
        DlqCommand::Retry { event, .. } => {
            let mut total = 0;
            for e in events(&store, event).await? {
                let (n, _) = store
                    .retry_dead_letters(&e, None)
                    .await
                    .context("cannot retry")?;
                if n > 0 {
                    println!("requeued {n} jobs of event {e}");
                }
                total += n;
            }
            println!("requeued {total} dead-lettered jobs in all");
        }
        DlqCommand::Purge { event, .. } => {
            let mut total = 0;
            for e in events(&store, event).await? {
                total += store.purge_dead_letters(&e).await.context("cannot purge")?;
            }
            println!("deleted {total} dead letters (their orders stay failed)");
        }
    }
    Ok(())
}
