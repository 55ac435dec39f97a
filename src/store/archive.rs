//! Archiving a finished event (`ticketctl event archive`): its orders read
//! in number order, page by page, and its keys removed once they are
//! written out, by one script that checks again that nothing is left to
//! settle.

use super::keys::{self, EventKeys};
use super::scripts::{invocation, schema_error, REMOVE_EVENT};
use super::{Result, Store, StoreError};
use crate::model::Order;

/// Values of one HMGET.
type Fields = Vec<Option<String>>;

/// Order numbers read per round trip.
pub const PAGE: u64 = 1000;

/// One archived order: the order, and its payment result when one came
/// (`action|ms|reference`, as kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedOrder {
    /// The order.
    pub order: Order,
    /// Its payment result: what (`paid`, `declined`, …), when (ms), the
    /// payment service's reference.
    pub payment: Option<(String, u64, String)>,
}

/// Whether an event may be removed (see remove_event.lua).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// It may be (check), or was: this many orders, and its order counters
    /// (to pass back to the removal, which refuses if they moved).
    Done(u64, String),
    /// Not yet: why.
    Busy(String),
    /// Its orders are not the number written out: this many now.
    Changed(u64),
    /// No such event.
    NoEvent,
}

impl Store {
    /// Orders of `event` numbered `from..from + PAGE`, in order, and the
    /// event's last hold number (orders are numbered as their holds were);
    /// `None` when the event does not exist.
    pub async fn order_page(
        &self,
        event: &str,
        from: u64,
    ) -> Result<Option<(Vec<ArchivedOrder>, u64)>> {
        let keys = EventKeys::new(event);
        let seqs: Vec<u64> = (from..from + PAGE).collect();
        let (meta, orders, pay) = (keys.meta(), keys.orders(), keys.payments());
        let s2 = seqs.clone();
        let [top, recs, pays]: [Fields; 3] = self
            .run(|mut c| async move {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(&meta)
                    .arg("seq")
                    .arg("sell")
                    .arg("capacity")
                    .cmd("HMGET")
                    .arg(&orders)
                    .arg(&s2)
                    .cmd("HMGET")
                    .arg(&pay)
                    .arg(&s2)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if top.get(2).cloned().flatten().is_none() {
            return Ok(None);
        }
        let last = top
            .first()
            .cloned()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let currency = super::query::currency_of(top.get(1).cloned().flatten().as_deref());
        let mut out = Vec::new();
        for ((seq, rec), pay) in seqs.iter().zip(recs).zip(pays) {
            let Some(rec) = rec else { continue };
            let order = super::query::parse_order_record(event, *seq, &rec, &currency).ok_or_else(
                || {
                    StoreError::Reply(format!(
                        "order {seq} of event {event} cannot be read: {rec:?}"
                    ))
                },
            )?;
            let payment = pay.and_then(|p| {
                let mut parts = p.splitn(3, '|');
                let (what, at, reference) =
                    (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
                Some((what.to_string(), at.parse().ok()?, reference.to_string()))
            });
            out.push(ArchivedOrder { order, payment });
        }
        Ok(Some((out, last)))
    }

    /// Removes `event`'s keys when nothing is left to settle and it holds
    /// `orders` orders with the order `counters` a check answered (with
    /// `check`, only says whether it could). The event stays listed: see
    /// [`Store::forget_event`].
    pub async fn remove_event(
        &self,
        event: &str,
        check: bool,
        orders: u64,
        counters: &str,
    ) -> Result<Removal> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&REMOVE_EVENT, &keys, None);
        inv.arg(if check { "check" } else { "remove" })
            .arg(orders)
            .arg(counters);
        let r = self.eval(inv, "remove_event").await?;
        match r.status()?.as_str() {
            "ok" => Ok(Removal::Done(r.uint(1)?, r.str(2)?)),
            "busy" => Ok(Removal::Busy(r.str(1)?)),
            "changed" => Ok(Removal::Changed(r.uint(1)?)),
            "not_found" => Ok(Removal::NoEvent),
            "schema" => Err(schema_error(event, &r)),
            "damaged" => Err(StoreError::Reply(format!("event {event}: {}", r.str(1)?))),
            other => Err(StoreError::Reply(format!("remove_event: status {other:?}"))),
        }
    }

    /// Takes `event` off the list of events (once its keys are gone); true
    /// when it was listed.
    pub async fn forget_event(&self, event: &str) -> Result<bool> {
        let id = event.to_string();
        let n: i64 = self
            .run(|mut c| async move {
                redis::cmd("SREM")
                    .arg(keys::EVENTS)
                    .arg(id)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }
}
