//! Read-only queries: orders, ticket listings from the bitmaps, the event
//! list. Nothing here changes state except through `release_expired`, which
//! listings call first so that expired holds never show as held.

use super::keys::{self, EventKeys};
use super::reply::parse_csv;
use super::scripts::READ_BITMAPS;
use super::{Result, Store, StoreError};
use crate::model::{Order, OrderId, OrderStatus};

/// Which tickets to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    /// Neither held nor sold.
    Available,
    /// In a live hold.
    Held,
    /// Sold.
    Sold,
}

impl TicketStatus {
    /// Parses `available`, `held` or `sold`.
    pub fn parse(s: &str) -> Option<TicketStatus> {
        match s {
            "available" => Some(TicketStatus::Available),
            "held" => Some(TicketStatus::Held),
            "sold" => Some(TicketStatus::Sold),
            _ => None,
        }
    }
}

/// One page of ticket ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketPage {
    /// Ascending ticket ids.
    pub ticket_ids: Vec<u64>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

/// Tickets read per round trip (bits of one bitmap chunk).
const CHUNK_TICKETS: u64 = 256 * 1024;

/// Parses an order record whose secret is not known in advance, of an
/// event whose prices are in `currency`.
pub(super) fn parse_order_record(
    event: &str,
    seq: u64,
    rec: &str,
    currency: &str,
) -> Option<Order> {
    let secret = rec.split('|').nth(1)?;
    parse_order(
        &OrderId {
            event: event.into(),
            seq,
            secret: secret.into(),
        },
        rec,
        currency,
    )
}

/// The currency of an event from its `sell` settings field (none: the
/// default, as for every event made before events had one).
pub(super) fn currency_of(sell: Option<&str>) -> String {
    sell.and_then(|s| s.get(..3))
        .filter(|c| crate::model::valid_currency(c))
        .unwrap_or(crate::model::DEFAULT_CURRENCY)
        .to_string()
}

/// Parses an order record:
/// `status|orderSecret|holdSecret|createdMs|completedMs|t1,..[:amount[:u]]|userId`
/// (no amount: 0, as in every record of a version before prices).
fn parse_order(id: &OrderId, rec: &str, currency: &str) -> Option<Order> {
    let mut f = rec.splitn(7, '|');
    let (status, cancel_reason) = OrderStatus::parse_with_reason(f.next()?)?;
    let secret = f.next()?;
    let _hold_secret = f.next()?;
    let created_ms = f.next()?.parse().ok()?;
    let completed = f.next()?;
    let mut priced = f.next()?.split(':');
    let tickets = parse_csv(priced.next()?)?;
    let amount = match priced.next() {
        Some(a) => a.parse().ok()?,
        None => 0,
    };
    let user = f.next()?.to_string();
    if secret != id.secret {
        return None;
    }
    Some(Order {
        id: id.clone(),
        user,
        tickets,
        status,
        created_ms,
        completed_ms: completed.parse().ok(),
        amount,
        currency: currency.to_string(),
        cancel_reason,
    })
}

fn bit(bytes: &[u8], i: u64) -> bool {
    bytes
        .get((i / 8) as usize)
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

impl Store {
    /// Reads an order; `None` when there is none with that id.
    pub async fn get_order(&self, id: &OrderId) -> Result<Option<Order>> {
        let keys = EventKeys::new(&id.event);
        let (orders, meta) = (keys.orders(), keys.meta());
        let seq = id.seq;
        let (rec, sell): (Option<String>, Option<String>) = self
            .run(|mut c| async move {
                redis::pipe()
                    .hget(orders, seq)
                    .hget(meta, "sell")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(rec.and_then(|r| parse_order(id, &r, &currency_of(sell.as_deref()))))
    }

    /// Lists tickets of `status` with ids greater than `after`, at most
    /// `limit`, ascending; `None` when the event does not exist.
    pub async fn list_tickets(
        &self,
        event: &str,
        status: TicketStatus,
        after: u64,
        limit: usize,
    ) -> Result<Option<TicketPage>> {
        let Some(counts) = self.event_counts(event).await? else {
            return Ok(None);
        };
        let capacity = counts.settings.capacity;
        let keys = EventKeys::new(event);
        let mut out = Vec::with_capacity(limit.min(4096) + 1);
        let mut start = after.saturating_add(1).max(1);
        while start <= capacity && out.len() <= limit {
            let end = (start + CHUNK_TICKETS - 1).min(capacity);
            let (first_byte, last_byte) = (start / 8, end / 8);
            let (taken, sold) = (keys.taken(), keys.sold());
            let mut inv = READ_BITMAPS.prepare_invoke();
            inv.key(taken).key(sold).arg(first_byte).arg(last_byte);
            let (taken, sold): (Vec<u8>, Vec<u8>) = self
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            let base = first_byte * 8;
            for t in start..=end {
                let (is_taken, is_sold) = (bit(&taken, t - base), bit(&sold, t - base));
                let hit = match status {
                    TicketStatus::Available => !is_taken,
                    TicketStatus::Held => is_taken && !is_sold,
                    TicketStatus::Sold => is_sold,
                };
                if hit {
                    out.push(t);
                    if out.len() > limit {
                        break;
                    }
                }
            }
            start = end + 1;
        }
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().copied()
        } else {
            None
        };
        Ok(Some(TicketPage {
            ticket_ids: out,
            next,
        }))
    }

    /// The counters of each of `events` as stored (`None` for one that does
    /// not exist, or whose counters are damaged), read concurrently
    /// without a script: cheap enough for every metrics scrape. `held`
    /// still includes holds past their deadline that nothing has released.
    pub async fn event_counters(&self, events: &[String]) -> Result<Vec<Option<EventCounters>>> {
        // The statuses kept as counters: every one but pending, which is
        // what the others leave of `orders`.
        let counted: Vec<&'static str> = OrderStatus::ALL
            .into_iter()
            .filter(|s| *s != OrderStatus::Pending)
            .map(OrderStatus::as_str)
            .collect();
        let mut fields = vec!["capacity", "held", "sold", "orders"];
        fields.extend(&counted);
        let reads = events.iter().map(|e| {
            let (key, fields) = (EventKeys::new(e).meta(), &fields);
            self.run(move |mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(fields)
                    .query_async::<Vec<Option<String>>>(&mut c)
                    .await
            })
        });
        let mut out = Vec::with_capacity(events.len());
        for r in futures_util::future::join_all(reads).await {
            let v: Vec<Option<u64>> = match r {
                Ok(v) => v
                    .into_iter()
                    .map(|f| f.and_then(|f| f.parse().ok()))
                    .collect(),
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                // A key damaged by hand (another type): that event only.
                Err(_) => {
                    out.push(None);
                    continue;
                }
            };
            out.push(match v[..] {
                [Some(capacity), Some(held), Some(sold), orders, ref rest @ ..] => {
                    let counts: Vec<(&'static str, u64)> = counted
                        .iter()
                        .zip(rest)
                        .map(|(s, n)| (*s, n.unwrap_or(0)))
                        .collect();
                    let others: u64 = counts.iter().map(|(_, n)| n).sum();
                    let mut by_status =
                        vec![("pending", orders.unwrap_or(0).saturating_sub(others))];
                    by_status.extend(counts);
                    Some(EventCounters {
                        capacity,
                        held,
                        sold,
                        by_status,
                    })
                }
                _ => None,
            });
        }
        Ok(out)
    }

    /// All event ids, sorted.
    pub async fn list_events(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .run(|mut c| async move {
                    redis::cmd("SSCAN")
                        .arg(keys::EVENTS)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            ids.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// An event's counters as stored (see [`Store::event_counters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCounters {
    /// Tickets in all.
    pub capacity: u64,
    /// Held (including holds past their deadline not released yet).
    pub held: u64,
    /// Sold.
    pub sold: u64,
    /// Orders by status, pending included (what the others leave).
    pub by_status: Vec<(&'static str, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_most_significant_first() {
        let bytes = [0b1000_0001u8, 0b0100_0000];
        assert!(bit(&bytes, 0));
        assert!(!bit(&bytes, 1));
        assert!(bit(&bytes, 7));
        assert!(bit(&bytes, 9));
        assert!(!bit(&bytes, 100));
    }

    #[test]
    fn order_records_parse_and_check_the_secret() {
        let id = OrderId {
            event: "e".into(),
            seq: 3,
            secret: "S".into(),
        };
        let o = parse_order(&id, "completed|S|H|1000|2000|1,2|user|with|bars", "EUR").unwrap();
        assert_eq!(o.status, OrderStatus::Completed);
        assert_eq!(o.tickets, vec![1, 2]);
        assert_eq!(o.user, "user|with|bars");
        assert_eq!(o.completed_ms, Some(2000));
        assert!(parse_order(&id, "pending|X|H|1000||1|u", "EUR").is_none());
        assert_eq!(
            parse_order(&id, "pending|S|H|1000||1|u", "EUR")
                .unwrap()
                .completed_ms,
            None
        );
        // Priced: with its amount, and counted or not toward a buyer limit.
        for rec in [
            "completed|S|H|1000|2000|1,2:9900|u",
            "completed|S|H|1000|2000|1,2:9900:u|u",
        ] {
            let o = parse_order(&id, rec, "USD").unwrap();
            assert_eq!(
                (o.amount, o.currency.as_str(), o.tickets),
                (9900, "USD", vec![1, 2])
            );
        }
        assert_eq!(
            parse_order(&id, "pending|S|H|1000||1|u", "EUR")
                .unwrap()
                .amount,
            0
        );
        assert!(parse_order(&id, "pending|S|H|1000||1:x|u", "EUR").is_none());
    }
}
