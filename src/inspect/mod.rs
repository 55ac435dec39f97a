//! What `ticketctl inspect` shows: a snapshot of events, live holds, queues
//! and orders gathered with bounded reads, and its JSON form. Tables for
//! people are in `render.rs`. Gathering and rendering are kept apart so both
//! are tested on their own.

pub mod render;

use serde_json::{json, Value};

use crate::model::json::order_json;
use crate::model::{Order, OrderId};
use crate::store::inspect::{EventView, HoldView, QueueView};
use crate::store::{Result, Store};
use crate::time::rfc3339_ms;

/// Which part to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Events with counts.
    Events,
    /// Live holds, soonest deadline first.
    Holds,
    /// Release schedule, purchase queue, consumers, dead letters, sinks.
    Queues,
    /// Recent orders, or one order.
    Orders,
}

/// What to gather.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this event.
    pub event: Option<String>,
    /// Only holds of this user.
    pub user: Option<String>,
    /// Most holds / orders shown.
    pub limit: usize,
    /// One order by id (orders section).
    pub order_id: Option<String>,
    /// Sink streams to show, with their `maxlen` (0: all kept).
    pub sink_streams: Vec<(String, u64)>,
}

/// A sink stream as `inspect queues` shows it.
#[derive(Debug, Clone, Default)]
pub struct SinkView {
    /// The stream.
    pub stream: String,
    /// Its entries now.
    pub entries: u64,
    /// About how many it keeps (0: all).
    pub maxlen: u64,
    /// Its consumer groups.
    pub groups: Vec<crate::store::StreamGroup>,
}

impl SinkView {
    /// The group furthest behind, when Redis can tell.
    pub fn most_behind(&self) -> Option<&crate::store::StreamGroup> {
        self.groups
            .iter()
            .filter(|g| g.lag.is_some())
            .max_by_key(|g| g.lag)
    }

    /// The groups close to losing entries they have not read (see
    /// [`crate::store::StreamGroup::close_to_maxlen`]).
    pub fn lagging(&self) -> Vec<&crate::store::StreamGroup> {
        self.groups
            .iter()
            .filter(|g| g.close_to_maxlen(self.maxlen))
            .collect()
    }
}

/// One snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Events (and their live holds).
    pub events: Vec<EventView>,
    /// Purchase queue per event.
    pub queues: Vec<(String, QueueView)>,
    /// Waiting rooms per event (events that have one).
    pub rooms: Vec<(String, crate::model::queue::QueueSnapshot)>,
    /// Sink streams.
    pub sinks: Vec<SinkView>,
    /// Live holds across events, soonest first, at most `limit`.
    pub holds: Vec<HoldView>,
    /// Recent orders, newest first.
    pub orders: Vec<Order>,
    /// The order asked for by id (`None` inside: not found).
    pub order: Option<Option<Order>>,
}

/// Gathers a snapshot. `section: None` gathers events, holds and queues.
pub async fn gather(store: &Store, section: Option<Section>, q: &Query) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    if let (Some(Section::Orders), Some(id)) = (section, &q.order_id) {
        snap.order = Some(match OrderId::parse(id) {
            Some(oid) => store.get_order(&oid).await?,
            None => None,
        });
        return Ok(snap);
    }
    let ids = match &q.event {
        Some(e) => vec![e.clone()],
        None => store.list_events().await?,
    };
    let want = |s: Section| section.is_none() || section == Some(s);
    let hold_limit = if want(Section::Holds) { q.limit } else { 0 };
    for id in &ids {
        if let Some(v) = store
            .inspect_event(id, hold_limit, q.user.as_deref())
            .await?
        {
            snap.events.push(v);
        }
    }
    let mut holds: Vec<HoldView> = snap
        .events
        .iter()
        .flat_map(|e| e.holds.iter().cloned())
        .collect();
    holds.sort_by_key(|h| (h.ttl_ms, h.id.event.clone(), h.id.seq));
    holds.truncate(q.limit);
    snap.holds = holds;
    if want(Section::Queues) {
        for e in &snap.events {
            snap.queues
                .push((e.id.clone(), store.inspect_queue(&e.id, e.now_ms).await?));
            if let Some(room) = store.queue_state(&e.id).await? {
                snap.rooms.push((e.id.clone(), room));
            }
        }
        for (s, maxlen) in &q.sink_streams {
            snap.sinks.push(SinkView {
                stream: s.clone(),
                entries: store.stream_len(s).await?,
                maxlen: *maxlen,
                groups: store.stream_groups(s).await?,
            });
        }
    }
    if section == Some(Section::Orders) {
        for e in &snap.events {
            snap.orders
                .extend(store.recent_orders(&e.id, q.limit).await?);
        }
        snap.orders.sort_by_key(|o| std::cmp::Reverse(o.created_ms));
        snap.orders.truncate(q.limit);
    }
    Ok(snap)
}

fn hold_json(h: &HoldView) -> Value {
    json!({
        "holdId": h.id.to_string(), "eventId": h.id.event, "userId": h.user,
        "ticketIds": h.tickets, "ttlMs": h.ttl_ms,
    })
}

/// A waiting room as `inspect queues --json` shows it.
fn room_json(event: &str, r: &crate::model::queue::QueueSnapshot) -> Value {
    json!({
        "event": event,
        "waiting": r.n.saturating_sub(r.cursor),
        "admittedNow": r.active,
        "admittedTotal": r.total,
        "soldOut": r.sold_out,
        "open": r.pre.is_some(),
        "preQueue": r.pre,
        "seed": r.pre.map(|_| r.seed.clone()),
        "maxActive": r.settings.map(|s| s.max_active),
        "admissionSeconds": r.settings.map(|s| s.admission_ms / 1000),
    })
}

fn queue_totals(snap: &Snapshot) -> Value {
    let sum = |f: &dyn Fn(&EventView) -> u64| snap.events.iter().map(f).sum::<u64>();
    let qsum = |f: &dyn Fn(&QueueView) -> u64| snap.queues.iter().map(|(_, q)| f(q)).sum::<u64>();
    json!({
        "releaseScheduled": sum(&|e| e.scheduled),
        "releaseOverdue": sum(&|e| e.overdue),
        "purchaseQueued": qsum(&|q| q.queued),
        "purchaseInFlight": qsum(&|q| q.in_flight),
        "deadLetters": qsum(&|q| q.dead),
    })
}

/// The JSON document of a snapshot. With no section it is exactly the
/// contract's shape: `{"events","queues","holds"}`.
pub fn to_json(snap: &Snapshot, section: Option<Section>) -> Value {
    match section {
        None => json!({
            "events": snap.events.iter().map(|e| json!({
                "id": e.id, "capacity": e.capacity, "available": e.available, "held": e.held, "sold": e.sold,
            })).collect::<Vec<_>>(),
            "queues": queue_totals(snap),
            "holds": snap.holds.iter().map(hold_json).collect::<Vec<_>>(),
        }),
        Some(Section::Events) => json!({
            "events": snap.events.iter().map(|e| json!({
                "id": e.id, "capacity": e.capacity, "available": e.available, "held": e.held, "sold": e.sold,
                "holdTtlSeconds": e.hold_ttl_ms / 1000,
                "currency": e.currency,
                "sections": e.sections.iter().map(|s| json!({
                    "id": s.id, "firstTicket": s.first, "lastTicket": s.last, "capacity": s.last + 1 - s.first,
                    "price": s.price, "available": s.available, "held": s.held, "sold": s.sold,
                })).collect::<Vec<_>>(),
                "expiringIn10s": e.expiring.0, "expiringIn60s": e.expiring.1,
                "expiredTotal": e.expired_total,
                "orders": {"total": e.orders.0, "completed": e.orders.1, "failed": e.orders.2,
                           "paid": e.settled.0, "cancelled": e.settled.1, "refunded": e.settled.2,
                           "refund_due": e.settled.3,
                           "pending": e.pending_orders()},
                "complete": e.complete,
            })).collect::<Vec<_>>(),
        }),
        Some(Section::Holds) => json!({
            "holds": snap.holds.iter().map(|h| {
                let mut v = hold_json(h);
                v["expiresAt"] = json!(rfc3339_ms(h.expires_ms));
                v
            }).collect::<Vec<_>>(),
        }),
        Some(Section::Queues) => {
            let mut totals = queue_totals(snap);
            totals["events"] = snap.events.iter().zip(&snap.queues).map(|(e, (_, q))| json!({
                "event": e.id,
                "releaseScheduled": e.scheduled,
                "releaseOverdue": e.overdue,
                "oldestOverdueMs": e.oldest_overdue_ms.map(|d| e.now_ms.saturating_sub(d)),
                "purchaseQueued": q.queued,
                "purchaseInFlight": q.in_flight,
                "deadLetters": q.dead,
                "consumers": q.consumers.iter().map(|c| json!({
                    "name": c.name, "pending": c.pending, "idleMs": c.idle_ms,
                    "oldestPendingAgeMs": c.oldest.map(|o| o.0), "oldestPendingDeliveries": c.oldest.map(|o| o.1),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<Value>>().into();
            totals["waitingRooms"] = snap
                .rooms
                .iter()
                .map(|(id, r)| room_json(id, r))
                .collect::<Vec<Value>>()
                .into();
            totals["sinks"] = snap
                .sinks
                .iter()
                .map(|s| {
                    json!({
                        "stream": s.stream, "length": s.entries,
                        "maxlen": (s.maxlen > 0).then_some(s.maxlen),
                        "groups": s.groups.iter().map(|g| json!({
                            "name": g.name, "lag": g.lag, "pending": g.pending,
                            "closeToMaxlen": g.close_to_maxlen(s.maxlen),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<Value>>()
                .into();
            json!({ "queues": totals })
        }
        Some(Section::Orders) => match &snap.order {
            Some(Some(o)) => json!({ "order": order_json(o) }),
            Some(None) => json!({ "order": null }),
            None => {
                // Every order of the events shown, from their counters (not
                // just the ones listed).
                let (mut pending, mut completed, mut failed) = (0u64, 0u64, 0u64);
                let (mut paid, mut cancelled, mut refunded, mut refund_due) = (0u64, 0, 0, 0);
                for e in &snap.events {
                    pending += e.pending_orders();
                    completed += e.orders.1;
                    failed += e.orders.2;
                    paid += e.settled.0;
                    cancelled += e.settled.1;
                    refunded += e.settled.2;
                    refund_due += e.settled.3;
                }
                json!({
                    "orders": snap.orders.iter().map(order_json).collect::<Vec<_>>(),
                    "byStatus": {"pending": pending, "completed": completed, "paid": paid,
                                 "cancelled": cancelled, "refunded": refunded,
                                 "refund_due": refund_due, "failed": failed},
                })
            }
        },
    }
}
