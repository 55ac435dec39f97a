//! Read-only views for operators (`ticketctl inspect`, `dlq list`): nothing
//! here writes (the dead-letter actions are in `jobs.rs`). Every read is
//! bounded (a capped schedule walk, `COUNT`-limited ranges), so inspection
//! never blocks Redis.

use redis::Value;

use super::keys::{self, EventKeys};
use super::reply::parse_csv;
use super::scripts::{invocation, schema_error, INSPECT_EVENT};
use super::{Result, Store};
use crate::model::{HoldId, Order, OrderId, SectionCounts};

/// Schedule entries one inspection reads at most per event.
pub const MAX_WALK: usize = 20_000;

/// One event as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    /// Event id.
    pub id: String,
    /// Redis time of the view (ms).
    pub now_ms: u64,
    /// Tickets.
    pub capacity: u64,
    /// Available, counting overdue holds' tickets as available (as every script does).
    pub available: u64,
    /// In live holds.
    pub held: u64,
    /// Sold.
    pub sold: u64,
    /// Hold time (ms).
    pub hold_ttl_ms: u64,
    /// Holds released at or after their deadline so far.
    pub expired_total: u64,
    /// Orders created, completed, failed.
    pub orders: (u64, u64, u64),
    /// Holds awaiting release (live and overdue).
    pub scheduled: u64,
    /// Holds past their deadline not released yet.
    pub overdue: u64,
    /// Deadline of the oldest overdue hold.
    pub oldest_overdue_ms: Option<u64>,
    /// Live holds expiring within 10 s and 60 s.
    pub expiring: (u64, u64),
    /// False when the walk stopped at its cap (figures are lower bounds).
    pub complete: bool,
    /// The currency of its prices.
    pub currency: String,
    /// Orders paid, cancelled, refunded and refund due.
    pub settled: (u64, u64, u64, u64),
    /// Each section's counts, overdue holds' tickets counted as available.
    pub sections: Vec<SectionCounts>,
    /// Live holds, soonest deadline first.
    pub holds: Vec<HoldView>,
}

impl EventView {
    /// Orders neither completed, failed, paid, cancelled, refunded nor
    /// refund due: what those leave of all orders.
    pub fn pending_orders(&self) -> u64 {
        let (created, completed, failed) = self.orders;
        let (paid, cancelled, refunded, refund_due) = self.settled;
        created.saturating_sub(completed + failed + paid + cancelled + refunded + refund_due)
    }
}

/// A live hold as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldView {
    /// Its id.
    pub id: HoldId,
    /// Its user.
    pub user: String,
    /// Its tickets.
    pub tickets: Vec<u64>,
    /// Time left (ms).
    pub ttl_ms: u64,
    /// Its deadline (an extension moves it past the one its id names).
    pub expires_ms: u64,
}

/// One consumer of an event's purchase jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerView {
    /// Consumer name.
    pub name: String,
    /// Jobs it holds unacknowledged.
    pub pending: u64,
    /// Since its last read (ms).
    pub idle_ms: u64,
    /// Age of its oldest unacknowledged job (ms since enqueued) and that job's deliveries.
    pub oldest: Option<(u64, u64)>,
}

/// An event's purchase queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueView {
    /// Jobs never delivered.
    pub queued: u64,
    /// `queued` is a lower bound: Redis could not say and counting stopped
    /// at [`QUEUED_COUNT_MAX`].
    pub queued_at_least: bool,
    /// Jobs delivered and not acknowledged.
    pub in_flight: u64,
    /// Consumers of the group.
    pub consumers: Vec<ConsumerView>,
    /// Dead letters.
    pub dead: u64,
}

/// Most undelivered jobs `inspect` counts one by one, when Redis cannot
/// give the number (the group's lag is unknown after entries were deleted
/// from the middle of the stream, as older versions did on dead-lettering).
pub const QUEUED_COUNT_MAX: usize = 1000;

/// A dead-lettered job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Event id.
    pub event: String,
    /// Entry id in the dead-letter stream.
    pub entry: String,
    /// The order (when the job named one).
    pub order: Option<OrderId>,
    /// Buyer.
    pub user: String,
    /// Tickets.
    pub tickets: Vec<u64>,
    /// Deliveries before it was given up.
    pub attempts: u64,
    /// Last error.
    pub error: String,
    /// When it was dead-lettered (ms).
    pub failed_ms: u64,
}

fn text(v: &Value) -> String {
    super::reply::value_text(v).unwrap_or_default()
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Int(n) => (*n).max(0) as u64,
        other => text(other).parse().unwrap_or(0),
    }
}

/// Field/value pairs of a Redis reply (flat array or map) as a lookup.
fn fields(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| match p {
                [k, v] => Some((text(k), v.clone())),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        _ => Vec::new(),
    }
}

fn get<'a>(f: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Milliseconds encoded in a stream entry id (`<ms>-<n>`).
fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Store {
    /// One event's view with at most `max_holds` live holds (of `user`, if given).
    pub async fn inspect_event(
        &self,
        event: &str,
        max_holds: usize,
        user: Option<&str>,
    ) -> Result<Option<EventView>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&INSPECT_EVENT, &keys, None);
        inv.arg(MAX_WALK).arg(max_holds).arg(user.unwrap_or(""));
        let r = self.eval(inv, "inspect_event").await?;
        match r.status()?.as_str() {
            "not_found" => return Ok(None),
            "schema" => return Err(schema_error(event, &r)),
            _ => {}
        }
        let now = r.uint(0)?;
        let (capacity, held_meta, sold) = (r.uint(1)?, r.uint(2)?, r.uint(3)?);
        let overdue_tickets = r.uint(12)?;
        let held = held_meta.saturating_sub(overdue_tickets);
        let oldest = r.int(13)?;
        let settled = (r.uint(18)?, r.uint(19)?, r.uint(20)?, r.uint(21)?);
        let n_sections = r.uint(22)? as usize;
        let mut sections = Vec::with_capacity(n_sections);
        for k in 0..n_sections {
            let at = 23 + 7 * k;
            let (first, last) = (r.uint(at + 1)?, r.uint(at + 2)?);
            let s_held = r.uint(at + 4)?.saturating_sub(r.uint(at + 6)?);
            let s_sold = r.uint(at + 5)?;
            sections.push(SectionCounts {
                id: r.str(at)?,
                first,
                last,
                price: r.uint(at + 3)?,
                available: (last + 1 - first).saturating_sub(s_held + s_sold),
                held: s_held,
                sold: s_sold,
            });
        }
        let mut holds = Vec::new();
        let mut i = 23 + 7 * n_sections;
        while i + 6 <= r.len() {
            let deadline_ms = r.uint(i + 3)?;
            holds.push(HoldView {
                id: HoldId {
                    event: event.into(),
                    seq: r.uint(i)?,
                    // The deadline its id names (an extension moves the
                    // hold's own, not its id).
                    deadline_ms: r.uint(i + 2)?,
                    secret: r.str(i + 1)?,
                },
                tickets: parse_csv(&r.str(i + 4)?).unwrap_or_default(),
                user: r.str(i + 5)?,
                ttl_ms: deadline_ms.saturating_sub(now),
                expires_ms: deadline_ms,
            });
            i += 6;
        }
        Ok(Some(EventView {
            id: event.into(),
            now_ms: now,
            capacity,
            available: capacity.saturating_sub(held + sold),
            held,
            sold,
            hold_ttl_ms: r.uint(4)?,
            expired_total: r.uint(6)?,
            orders: (r.uint(7)?, r.uint(8)?, r.uint(9)?),
            scheduled: r.uint(10)?,
            overdue: r.uint(11)?,
            oldest_overdue_ms: u64::try_from(oldest).ok(),
            expiring: (r.uint(14)?, r.uint(15)?),
            complete: r.int(16)? == 1,
            currency: r.str(17)?,
            settled,
            sections,
            holds,
        }))
    }

    /// The purchase queue's counts of one event (no consumers), cheap
    /// enough for every metrics scrape: two commands. `queued` is `None`
    /// when Redis does not give the group's lag (Redis 6.2, or a stream an
    /// older version deleted entries from), rather than counted.
    pub async fn queue_counts(&self, event: &str) -> Result<(Option<u64>, QueueView)> {
        let (view, _, lag_known) = self.queue_counts_and_group(event, false).await?;
        Ok((lag_known.then_some(view.queued), view))
    }

    /// The queue's counts, whether the job stream and its group exist yet,
    /// and whether Redis gave the lag (else `queued` is counted entry by
    /// entry when `count` is set, and 0 otherwise).
    async fn queue_counts_and_group(
        &self,
        event: &str,
        count: bool,
    ) -> Result<(QueueView, bool, bool)> {
        let keys = EventKeys::new(event);
        let mut view = QueueView {
            dead: self.stream_len(&keys.dead()).await?,
            ..QueueView::default()
        };
        let jobs = keys.jobs();
        let groups: Value = match self
            .run(|mut c| async move {
                redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(jobs)
                    .query_async(&mut c)
                    .await
            })
            .await
        {
            Ok(v) => v,
            // No job stream yet: an empty queue.
            Err(e) if e.is_redis("ERR", Some("no such key")) => return Ok((view, false, true)),
            Err(e) => return Err(e),
        };
        let (mut group, mut lag_known) = (false, true);
        if let Value::Array(gs) = &groups {
            for g in gs {
                let f = fields(g);
                if get(&f, "name").map(text).as_deref() == Some(keys::JOBS_GROUP) {
                    group = true;
                    view.in_flight = get(&f, "pending").map(int).unwrap_or(0);
                    match get(&f, "lag") {
                        Some(Value::Int(n)) => view.queued = u64::try_from(*n).unwrap_or(0),
                        _ if !count => lag_known = false,
                        _ => {
                            let after = get(&f, "last-delivered-id").map(text).unwrap_or_default();
                            let n = self.count_after(&keys.jobs(), &after).await?;
                            view.queued = n.min(QUEUED_COUNT_MAX) as u64;
                            view.queued_at_least = n > QUEUED_COUNT_MAX;
                        }
                    }
                }
            }
        }
        Ok((view, group, lag_known))
    }

    /// The purchase queue of one event; `now_ms` ages the oldest pending jobs.
    pub async fn inspect_queue(&self, event: &str, now_ms: u64) -> Result<QueueView> {
        let (mut view, group, _) = self.queue_counts_and_group(event, true).await?;
        if !group {
            return Ok(view);
        }
        let jobs = EventKeys::new(event).jobs();
        let consumers: Value = match self
            .run(|mut c| async move {
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(jobs)
                    .arg(keys::JOBS_GROUP)
                    .query_async(&mut c)
                    .await
            })
            .await
        {
            Ok(v) => v,
            // Gone meanwhile (deleted by hand): no consumers to show.
            Err(e) if e.is_redis("ERR", Some("no such key")) || e.is_redis("NOGROUP", None) => {
                return Ok(view)
            }
            Err(e) => return Err(e),
        };
        if let Value::Array(cs) = &consumers {
            for c in cs {
                let f = fields(c);
                let name = get(&f, "name").map(text).unwrap_or_default();
                let pending = get(&f, "pending").map(int).unwrap_or(0);
                let idle_ms = get(&f, "idle").map(int).unwrap_or(0);
                let mut oldest = None;
                if pending > 0 {
                    if let Some((id, deliveries)) = self.oldest_pending(event, &name).await? {
                        oldest = Some((now_ms.saturating_sub(id_ms(&id)), deliveries));
                    }
                }
                view.consumers.push(ConsumerView {
                    name,
                    pending,
                    idle_ms,
                    oldest,
                });
            }
        }
        Ok(view)
    }

    /// Entries of stream `key` after id `after`, counted up to one more
    /// than [`QUEUED_COUNT_MAX`] (more than that: the count is a bound).
    async fn count_after(&self, key: &str, after: &str) -> Result<usize> {
        let (key, start) = (key.to_string(), format!("({after}"));
        let v: Value = self
            .run(|mut c| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(QUEUED_COUNT_MAX + 1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match v {
            Value::Array(entries) => entries.len(),
            _ => 0,
        })
    }

    /// Up to `limit` dead letters of an event, oldest first.
    pub async fn dead_letters(&self, event: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        let key = EventKeys::new(event).dead();
        let v: Value = self
            .run(|mut c| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Value::Array(entries) = v else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in &entries {
            let Value::Array(parts) = e else { continue };
            let (Some(id), Some(body)) = (parts.first(), parts.get(1)) else {
                continue;
            };
            let f = fields(body);
            let s = |k: &str| get(&f, k).map(text).unwrap_or_default();
            let order = s("seq")
                .parse()
                .ok()
                .filter(|_| !s("secret").is_empty())
                .map(|seq| OrderId {
                    event: event.into(),
                    seq,
                    secret: s("secret"),
                });
            out.push(DeadLetter {
                event: event.into(),
                entry: text(id),
                order,
                user: s("userId"),
                tickets: parse_csv(&s("ticketIds")).unwrap_or_default(),
                attempts: s("attempts").parse().unwrap_or(0),
                error: s("error"),
                failed_ms: s("failedMs").parse().unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Up to `limit` most recent orders of an event, newest first (reads at
    /// most `MAX_WALK` hold numbers back).
    pub async fn recent_orders(&self, event: &str, limit: usize) -> Result<Vec<Order>> {
        let keys = EventKeys::new(event);
        let (meta, orders) = (keys.meta(), keys.orders());
        let top: Vec<Option<String>> = self
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(meta)
                    .arg("seq")
                    .arg("sell")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let (top, sell) = (
            top.first().cloned().flatten(),
            top.get(1).cloned().flatten(),
        );
        let currency = super::query::currency_of(sell.as_deref());
        let top: Option<u64> = top.and_then(|t| t.parse().ok());
        let mut seq = top.unwrap_or(0);
        let floor = seq.saturating_sub(MAX_WALK as u64);
        let mut out = Vec::new();
        while seq > floor && out.len() < limit {
            let from = seq.saturating_sub(499).max(floor + 1);
            let seqs: Vec<u64> = (from..=seq).rev().collect();
            let (o, s2) = (orders.clone(), seqs.clone());
            let recs: Vec<Option<String>> =
                self.run(|mut c| async move {
                    redis::cmd("HMGET").arg(o).arg(s2).query_async(&mut c).await
                })
                .await?;
            for (s, rec) in seqs.iter().zip(recs) {
                if let Some(order) = rec
                    .as_deref()
                    .and_then(|r| super::query::parse_order_record(event, *s, r, &currency))
                {
                    out.push(order);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            seq = from - 1;
        }
        Ok(out)
    }
}
