//! Handlers of the `/v1` routes: parse and validate input, call the store,
//! shape the JSON the contract defines.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

use super::error::{ApiError, ApiResult};
use super::input;
use super::AppState;
use crate::config::{valid_event_id, EventSeed, SettingNames};
use crate::store::{
    CancelOutcome, CreateEvent, EventCounts, EventSettings, Hold, HoldId, HoldOutcome, HoldRef,
    Idempotency, Order, OrderId, OrderStatus, PurchaseOutcome, TicketStatus,
};
use crate::time::rfc3339_ms;

/// Default and largest page of `GET /v1/events/{id}/tickets`.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

/// The event object of the API.
pub fn event_json(c: &EventCounts) -> Value {
    json!({
        "id": c.settings.id,
        "capacity": c.settings.capacity,
        "available": c.available,
        "held": c.held,
        "sold": c.sold,
        "holdTtlSeconds": c.settings.hold_ttl_ms / 1000,
        "maxTicketsPerHold": c.settings.max_per_hold,
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
}

/// The hold object of the API.
pub fn hold_json(h: &Hold) -> HoldBody<'_> {
    HoldBody {
        hold_id: h.id.to_string(),
        event_id: &h.id.event,
        user_id: &h.user,
        ticket_ids: &h.tickets,
        expires_at: rfc3339_ms(h.id.deadline_ms),
        ttl_ms: h.id.deadline_ms.saturating_sub(h.now_ms),
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
    created_at: String,
    /// When a completed order was published to every sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    /// When a failed order was dead-lettered (sinks that took it before
    /// keep it).
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_at: Option<String>,
}

/// The order object of the API.
pub fn order_json(o: &Order) -> OrderBody<'_> {
    let ended = o.completed_ms.map(rfc3339_ms);
    let (completed_at, failed_at) = match o.status {
        OrderStatus::Completed => (ended, None),
        OrderStatus::Failed => (None, ended),
        OrderStatus::Pending => (None, None),
    };
    OrderBody {
        order_id: o.id.to_string(),
        event_id: &o.id.event,
        user_id: &o.user,
        ticket_ids: &o.tickets,
        status: o.status.as_str(),
        created_at: rfc3339_ms(o.created_ms),
        completed_at,
        failed_at,
    }
}

fn event_path(p: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    match p {
        Ok(Path(id)) if valid_event_id(&id) => Ok(id),
        _ => Err(ApiError::NotFound("no such event".into())),
    }
}

fn hold_path(p: Result<Path<String>, PathRejection>) -> ApiResult<HoldId> {
    p.ok()
        .and_then(|Path(id)| HoldId::parse(&id))
        .ok_or_else(|| ApiError::NotFound("no such hold".into()))
}

fn no_event() -> ApiError {
    ApiError::NotFound("no such event".into())
}

/// `POST /v1/events` (admin).
pub async fn create_event(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if !input::is_admin(&headers, &st.admin_token) {
        return Err(ApiError::Unauthorized);
    }
    let body = input::json_object(&headers, body)?;
    let id = match body.get("id") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(ApiError::BadRequest("id is required".into())),
        Some(_) => return Err(ApiError::BadRequest("id must be a string".into())),
    };
    let int = |field: &str, default: Option<u64>| -> ApiResult<u64> {
        match (body.get(field), default) {
            (None | Some(Value::Null), Some(d)) => Ok(d),
            (None | Some(Value::Null), None) => {
                Err(ApiError::BadRequest(format!("{field} is required")))
            }
            (Some(v), _) => v
                .as_u64()
                .ok_or_else(|| ApiError::BadRequest(format!("{field} must be a positive integer"))),
        }
    };
    let seed = EventSeed {
        id,
        capacity: int("capacity", None)?,
        hold_ttl_seconds: int("holdTtlSeconds", Some(60))?,
        max_tickets_per_hold: int("maxTicketsPerHold", Some(10))?,
    };
    seed.validate_as(&SettingNames::API)
        .map_err(ApiError::BadRequest)?;
    let settings = settings_of(&seed);
    match st.store.create_event(&settings).await? {
        CreateEvent::Created => {
            let counts = EventCounts { available: settings.capacity, held: 0, sold: 0, settings };
            Ok((StatusCode::CREATED, Json(event_json(&counts))).into_response())
        }
        CreateEvent::Exists => {
            let counts = st.store.event_counts(&settings.id).await?.ok_or(ApiError::Internal)?;
            Ok((StatusCode::OK, Json(event_json(&counts))).into_response())
        }
        CreateEvent::Conflict(existing) => Err(ApiError::Conflict {
            code: "event_exists",
            message: format!(
                "event {} exists with other settings (capacity {}, holdTtlSeconds {}, maxTicketsPerHold {})",
                existing.id,
                existing.capacity,
                existing.hold_ttl_ms / 1000,
                existing.max_per_hold
            ),
            extra: None,
        }),
    }
}

/// Store settings of a validated seed.
pub fn settings_of(seed: &EventSeed) -> EventSettings {
    EventSettings {
        id: seed.id.clone(),
        capacity: seed.capacity,
        hold_ttl_ms: seed.hold_ttl_seconds * 1000,
        max_per_hold: seed.max_tickets_per_hold,
    }
}

/// `GET /v1/events`
pub async fn list_events(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let mut events = Vec::new();
    for id in st.store.list_events().await? {
        if let Some(c) = st.store.event_counts(&id).await? {
            events.push(event_json(&c));
        }
    }
    Ok(Json(json!({ "events": events })))
}

/// `GET /v1/events/{id}`
pub async fn get_event(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let id = event_path(p)?;
    let counts = st.store.event_counts(&id).await?.ok_or_else(no_event)?;
    Ok(Json(event_json(&counts)))
}

/// `GET /v1/events/{id}/tickets?status=&limit=&after=`
pub async fn list_tickets(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Response> {
    let id = event_path(p)?;
    let Query(q) = q.map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => TicketStatus::Available,
        Some(s) => TicketStatus::parse(s)
            .ok_or_else(|| ApiError::BadRequest("status must be available, held or sold".into()))?,
    };
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") => DEFAULT_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer in 1..={MAX_PAGE}"))
            })?,
    };
    let after = match q.get("after").map(String::as_str) {
        None | Some("") => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest("after must be a ticket id (integer >= 0)".into()))?,
    };
    let page = st
        .store
        .list_tickets(&id, status, after, limit)
        .await?
        .ok_or_else(no_event)?;
    // Serialized straight from the ids: no JSON value per ticket.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        ticket_ids: Vec<u64>,
        next: Option<u64>,
    }
    Ok(Json(Page {
        ticket_ids: page.ticket_ids,
        next: page.next,
    })
    .into_response())
}

fn fingerprint(parts: &[&str]) -> String {
    parts.join("\n")
}

/// `POST /v1/events/{id}/holds`
pub async fn create_hold(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let event = event_path(p)?;
    let key = input::idempotency_key(&headers)?;
    let body = input::json_object(&headers, body)?;
    let user = st.user_of(&body)?;
    let req = input::hold_ask(&body)?;
    // The fingerprint only matters with an Idempotency-Key.
    let idem = key.as_deref().map(|k| Idempotency {
        key: k,
        fingerprint: fingerprint(&[&user, &req.describe()]),
    });
    match st.hold(&event, &user, &req, idem.as_ref()).await? {
        HoldOutcome::Held { hold, .. } => {
            Ok((StatusCode::CREATED, Json(hold_json(&hold))).into_response())
        }
        HoldOutcome::Unavailable { tickets, available } => {
            let message = match available {
                Some(n) => format!("not enough tickets available ({n} left)"),
                None => format!(
                    "tickets not available: {}",
                    tickets
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            Err(ApiError::Conflict {
                code: "tickets_unavailable",
                message,
                extra: Some(json!({ "ticketIds": tickets })),
            })
        }
        HoldOutcome::Invalid(m) => Err(ApiError::BadRequest(m)),
        HoldOutcome::HoldLimit(max) => Err(ApiError::too_many_holds(max)),
        HoldOutcome::NoEvent => Err(no_event()),
        HoldOutcome::IdempotencyMismatch => Err(idem_mismatch()),
    }
}

fn idem_mismatch() -> ApiError {
    ApiError::Unprocessable(
        "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request".into(),
    )
}

/// `GET /v1/holds/{holdId}`
pub async fn get_hold(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = hold_path(p)?;
    let hold = st
        .store
        .get_hold(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such hold".into()))?;
    Ok(Json(hold_json(&hold)).into_response())
}

/// `DELETE /v1/holds/{holdId}` with `{"userId"}`.
pub async fn cancel_hold(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = hold_path(p)?;
    let body = input::json_object(&headers, body)?;
    let user = st.user_of(&body)?;
    match st.cancel(&HoldRef::Id(&id), Some(&user)).await? {
        CancelOutcome::Cancelled(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        CancelOutcome::Forbidden => Err(ApiError::Forbidden("this hold belongs to another user")),
        CancelOutcome::NotFound | CancelOutcome::NotHeld | CancelOutcome::Invalid(_) => {
            Err(ApiError::NotFound("no such hold".into()))
        }
    }
}

/// `POST /v1/holds/{holdId}/purchase` with `{"userId"}`.
pub async fn purchase(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = hold_path(p)?;
    let key = input::idempotency_key(&headers)?;
    let body = input::json_object(&headers, body)?;
    let user = st.user_of(&body)?;
    let idem = key.as_deref().map(|k| Idempotency {
        key: k,
        fingerprint: fingerprint(&[&user, &id.to_string()]),
    });
    match st.purchase(&HoldRef::Id(&id), &user, idem.as_ref()).await? {
        PurchaseOutcome::Bought { order, .. } => {
            Ok((StatusCode::ACCEPTED, Json(order_json(&order))).into_response())
        }
        PurchaseOutcome::Forbidden => Err(ApiError::Forbidden("this hold belongs to another user")),
        PurchaseOutcome::Expired => Err(ApiError::Conflict {
            code: "hold_expired",
            message: "the hold has expired; its tickets are no longer reserved".into(),
            extra: None,
        }),
        PurchaseOutcome::IdempotencyMismatch => Err(idem_mismatch()),
        PurchaseOutcome::NotFound
        | PurchaseOutcome::NotHeld
        | PurchaseOutcome::NoEvent
        | PurchaseOutcome::Invalid(_) => Err(ApiError::NotFound("no such hold".into())),
    }
}

/// `GET /v1/orders/{orderId}`
pub async fn get_order(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("no such order".into());
    let id = p
        .ok()
        .and_then(|Path(id)| OrderId::parse(&id))
        .ok_or_else(not_found)?;
    let order = st.store.get_order(&id).await?.ok_or_else(not_found)?;
    Ok(Json(order_json(&order)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let json = |o: &Order| serde_json::to_value(order_json(o)).unwrap();
        let v = json(&o);
        assert_eq!(v["status"], "pending");
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
