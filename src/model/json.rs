//! The JSON objects of the API (the contract's field names): what the HTTP
//! handlers answer and what `event list` and `inspect` print, so the three
//! always agree.

use serde::Serialize;
use serde_json::{json, Value};

use super::{EventCounts, Hold, Order, OrderStatus};
use crate::time::rfc3339_ms;

/// The event object of the API.
pub fn event_json(c: &EventCounts) -> Value {
    let sell = &c.settings.selling;
    let sections: Vec<Value> = c
        .sections
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "firstTicket": s.first,
                "lastTicket": s.last,
                "capacity": s.last + 1 - s.first,
                "price": s.price,
                "available": s.available,
                "held": s.held,
                "sold": s.sold,
            })
        })
        .collect();
    json!({
        "id": c.settings.id,
        "capacity": c.settings.capacity,
        "available": c.available,
        "held": c.held,
        "sold": c.sold,
        "holdTtlSeconds": c.settings.hold_ttl_ms / 1000,
        "maxTicketsPerHold": c.settings.max_per_hold,
        "currency": sell.currency,
        "salesStart": sell.sales_start_ms.map(rfc3339_ms),
        "salesEnd": sell.sales_end_ms.map(rfc3339_ms),
        "maxTicketsPerUser": sell.max_per_user,
        "maxExtensions": sell.max_extensions,
        "queue": match &sell.queue {
            Some(q) => json!({"enabled": true, "maxActive": q.max_active, "admissionSeconds": q.admission_ms / 1000}),
            None => json!({"enabled": false, "maxActive": crate::model::queue::DEFAULT_MAX_ACTIVE, "admissionSeconds": crate::model::queue::DEFAULT_ADMISSION_SECS}),
        },
        "sections": sections,
        "orders": c.orders.iter().map(|(s, n)| (s.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}

/// The hold object of the API, serialized straight from the hold (no
/// intermediate JSON tree).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldBody<'a> {
    hold_id: String,
    event_id: &'a str,
    user_id: &'a str,
    ticket_ids: &'a [u64],
    expires_at: String,
    ttl_ms: u64,
    amount: u64,
    currency: &'a str,
}

/// The hold object of the API.
pub fn hold_json(h: &Hold) -> HoldBody<'_> {
    HoldBody {
        hold_id: h.id.to_string(),
        event_id: &h.id.event,
        user_id: &h.user,
        ticket_ids: &h.tickets,
        expires_at: rfc3339_ms(h.expires_ms),
        ttl_ms: h.expires_ms.saturating_sub(h.now_ms),
        amount: h.amount,
        currency: &h.currency,
    }
}

/// The order object of the API, serialized straight from the order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody<'a> {
    order_id: String,
    event_id: &'a str,
    user_id: &'a str,
    ticket_ids: &'a [u64],
    status: &'static str,
    amount: u64,
    currency: &'a str,
    created_at: String,
    /// When a completed order was published to every sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    /// When a failed order was dead-lettered (sinks that took it before
    /// keep it).
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_at: Option<String>,
    /// Why a cancelled order was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<&'a str>,
}

/// The order object of the API.
pub fn order_json(o: &Order) -> OrderBody<'_> {
    let ended = o.completed_ms.map(rfc3339_ms);
    let (completed_at, failed_at) = match o.status {
        OrderStatus::Failed => (None, ended),
        _ => (ended, None),
    };
    OrderBody {
        order_id: o.id.to_string(),
        event_id: &o.id.event,
        user_id: &o.user,
        ticket_ids: &o.tickets,
        status: o.status.as_str(),
        amount: o.amount,
        currency: &o.currency,
        created_at: rfc3339_ms(o.created_ms),
        completed_at,
        failed_at,
        cancel_reason: o.cancel_reason.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OrderId;

    #[test]
    fn an_order_says_when_it_ended_and_how() {
        let mut o = Order {
            id: OrderId {
                event: "gig".into(),
                seq: 1,
                secret: "s".into(),
            },
            user: "u".into(),
            tickets: vec![1],
            status: OrderStatus::Pending,
            created_ms: 1_000,
            completed_ms: None,
            amount: 2_500,
            currency: "EUR".into(),
            cancel_reason: None,
        };
        let json = |o: &Order| serde_json::to_value(order_json(o)).unwrap();
        let v = json(&o);
        assert_eq!(v["status"], "pending");
        assert_eq!(
            (v["amount"].as_u64(), v["currency"].as_str()),
            (Some(2_500), Some("EUR"))
        );
        assert!(v.get("completedAt").is_none() && v.get("failedAt").is_none());
        o.status = OrderStatus::Completed;
        o.completed_ms = Some(2_000);
        assert_eq!(json(&o)["completedAt"], "1970-01-01T00:00:02.000Z");
        o.status = OrderStatus::Failed;
        let v = json(&o);
        assert_eq!(v["failedAt"], "1970-01-01T00:00:02.000Z");
        assert!(v.get("completedAt").is_none(), "{v}");
    }
}
