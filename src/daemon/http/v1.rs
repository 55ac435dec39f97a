//! Handlers of the `/v1` routes: parse and validate input, call the store,
//! shape the JSON the contract defines.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::collections::HashMap;

use super::error::{ApiError, ApiResult};
use super::input;
use super::{AppState, Buyer};
use crate::config::{EventSeed, TimeValue};
use crate::model::json::{event_json, hold_json, order_json};
use crate::model::{valid_event_id, SettingNames};
use crate::model::{
    CancelOutcome, CreateEvent, EventPatch, ExtendOutcome, HoldId, HoldOutcome, OrderAction,
    OrderChange, OrderId, PurchaseOutcome,
};
use crate::store::{HoldRef, Idempotency, PatchRefused, TicketStatus};

/// The default page of `GET /v1/events/{id}/tickets`.
pub const DEFAULT_PAGE: usize = 1000;
/// The largest page.
pub const MAX_PAGE: usize = 10_000;

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

/// The hold a request names and the `userId` of its body.
fn hold_and_user(
    st: &AppState,
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(HoldId, String)> {
    let id = hold_path(p)?;
    let body = input::json_body(headers, body, buyer.is_some())?;
    Ok((id, st.user_of(buyer.as_deref(), &body)?))
}

/// 409 `hold_expired`.
fn hold_expired() -> ApiError {
    ApiError::Conflict {
        code: "hold_expired",
        message: "the hold has expired; its tickets are no longer reserved".into(),
        extra: None,
    }
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
            (Some(v), _) => v.as_u64().ok_or_else(|| {
                ApiError::BadRequest(format!("{field} must be a whole number of at least 0"))
            }),
        }
    };
    let text = |field: &str| -> ApiResult<Option<String>> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a string"))),
        }
    };
    let sections = input::sections(&body)?.unwrap_or_default();
    // With sections the capacity may be left out (their sum); given, it is
    // checked against them.
    let capacity = match int("capacity", (!sections.is_empty()).then_some(0))? {
        0 if body.get("capacity").is_some_and(|v| !v.is_null()) => {
            return Err(ApiError::BadRequest(format!(
                "capacity must be 1..={}",
                crate::model::MAX_CAPACITY
            )))
        }
        n => n,
    };
    let seed = EventSeed {
        id,
        capacity,
        hold_ttl_seconds: int("holdTtlSeconds", Some(crate::model::DEFAULT_HOLD_TTL_SECS))?,
        max_tickets_per_hold: int(
            "maxTicketsPerHold",
            Some(crate::model::DEFAULT_MAX_PER_HOLD),
        )?,
        currency: text("currency")?.unwrap_or_else(|| crate::model::DEFAULT_CURRENCY.into()),
        sections,
        sales_start: text("salesStart")?.map(TimeValue::Text),
        sales_end: text("salesEnd")?.map(TimeValue::Text),
        max_tickets_per_user: int("maxTicketsPerUser", Some(0))?,
        max_extensions: int("maxExtensions", Some(0))?,
        queue: input::queue(&body)?.map(|q| crate::config::QueueSeed {
            enabled: q.enabled.unwrap_or(false),
            max_active: q
                .max_active
                .unwrap_or(crate::model::queue::DEFAULT_MAX_ACTIVE),
            admission_seconds: q
                .admission_ms
                .map_or(crate::model::queue::DEFAULT_ADMISSION_SECS, |ms| ms / 1000),
        }),
    };
    let settings = seed
        .validate_as(&SettingNames::API)
        .map_err(ApiError::BadRequest)?;
    let created = match st.store.create_event(&settings).await? {
        CreateEvent::Created => true,
        CreateEvent::Exists => false,
        CreateEvent::Conflict(existing) => {
            return Err(ApiError::Conflict {
                code: "event_exists",
                message: format!(
                    "event {} exists with other settings (capacity {}, holdTtlSeconds {}, maxTicketsPerHold {}, currency {}, {} sections, {})",
                    existing.id,
                    existing.capacity,
                    existing.hold_ttl_ms / 1000,
                    existing.max_per_hold,
                    existing.selling.currency,
                    existing.selling.sections.len().max(1),
                    match &existing.selling.queue {
                        Some(q) => format!(
                            "a waiting room of maxActive {}, admissionSeconds {}",
                            q.max_active,
                            q.admission_ms / 1000
                        ),
                        None => "no waiting room".into(),
                    }
                ),
                extra: None,
            })
        }
    };
    let counts = st
        .store
        .event_counts(&settings.id)
        .await?
        .ok_or(ApiError::Internal)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(event_json(&counts))).into_response())
}

/// `PATCH /v1/events/{id}` (admin): sale window, limits, hold time and
/// prices; capacity, sections' sizes and currency cannot change.
pub async fn patch_event(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if !input::is_admin(&headers, &st.admin_token) {
        return Err(ApiError::Unauthorized);
    }
    let id = event_path(p)?;
    let body = input::json_object(&headers, body)?;
    let ranged = |field: &str, range: std::ops::RangeInclusive<u64>| -> ApiResult<Option<u64>> {
        match input::opt_uint(&body, field)? {
            Some(n) if !range.contains(&n) => Err(ApiError::BadRequest(format!(
                "{field} must be {}..={}",
                range.start(),
                range.end()
            ))),
            n => Ok(n),
        }
    };
    let mut patch = EventPatch {
        sales_start_ms: input::opt_time(&body, "salesStart")?,
        sales_end_ms: input::opt_time(&body, "salesEnd")?,
        max_per_user: ranged("maxTicketsPerUser", 0..=u64::MAX)?,
        max_extensions: ranged("maxExtensions", 0..=crate::model::MAX_EXTENSIONS)?,
        hold_ttl_ms: ranged("holdTtlSeconds", 1..=crate::model::MAX_HOLD_TTL_SECS)?
            .map(|s| s * 1000),
        max_per_hold: ranged("maxTicketsPerHold", 1..=crate::model::MAX_TICKETS_PER_HOLD)?,
        prices: Vec::new(),
        queue: input::queue(&body)?,
    };
    match body.get("sections") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let (Some(Value::String(sid)), Some(price)) =
                    (item.get("id"), item.get("price").and_then(Value::as_u64))
                else {
                    return Err(ApiError::BadRequest(format!(
                        "sections[{i}] must be {{\"id\", \"price\"}} with an integer price in minor units"
                    )));
                };
                if price > crate::model::MAX_PRICE {
                    return Err(ApiError::BadRequest(format!(
                        "sections[{i}].price must be 0..={}",
                        crate::model::MAX_PRICE
                    )));
                }
                if patch.prices.iter().any(|(s, _)| s == sid) {
                    return Err(ApiError::BadRequest(format!(
                        "sections names section {sid} twice"
                    )));
                }
                patch.prices.push((sid.clone(), price));
            }
        }
        Some(_) => return Err(ApiError::BadRequest("sections must be an array".into())),
    }
    // Fields that cannot change are accepted only as they are.
    let fixed = ["capacity", "currency"];
    if fixed
        .iter()
        .any(|f| body.get(*f).is_some_and(|v| !v.is_null()))
    {
        let now = st.store.event_counts(&id).await?.ok_or_else(no_event)?;
        if body
            .get("capacity")
            .is_some_and(|v| v.as_u64() != Some(now.settings.capacity))
        {
            return Err(ApiError::BadRequest("capacity cannot change".into()));
        }
        if body
            .get("currency")
            .is_some_and(|v| v.as_str() != Some(now.settings.selling.currency.as_str()))
        {
            return Err(ApiError::BadRequest("currency cannot change".into()));
        }
    }
    let changed = st.store.patch_event(&id, &patch).await?;
    // This process's snapshot of the room shows the settings before.
    st.queues.forget(&id);
    match changed {
        None => Err(no_event()),
        Some(Err(PatchRefused::NoSection(s))) => {
            Err(ApiError::NotFound(format!("no section {s} in this event")))
        }
        Some(Err(PatchRefused::Invalid(m))) => Err(ApiError::BadRequest(m)),
        Some(Ok(counts)) => Ok(Json(event_json(&counts)).into_response()),
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
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let event = event_path(p)?;
    let key = input::idempotency_key(&headers)?;
    let body = input::json_object(&headers, body)?;
    let user = st.user_of(buyer.as_deref(), &body)?;
    let req = input::hold_ask(&body)?;
    // The fingerprint only matters with an Idempotency-Key.
    let idem = key.as_deref().map(|k| Idempotency {
        key: k,
        fingerprint: fingerprint(&[&user, &req.describe()]),
    });
    let queue = input::queue_id(&headers)?;
    match st.hold(&event, &user, &req, idem.as_ref(), queue).await? {
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
        HoldOutcome::NotOnSale(when) => Err(ApiError::not_on_sale(when)),
        HoldOutcome::UserLimit(remaining) => Err(ApiError::user_limit(remaining)),
        HoldOutcome::NoSection(s) => {
            Err(ApiError::NotFound(format!("no section {s} in this event")))
        }
        HoldOutcome::QueueRequired(why) => Err(ApiError::QueueRequired(why)),
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
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = hold_path(p)?;
    let hold = st
        .store
        .get_hold(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such hold".into()))?;
    st.may_see(buyer.as_deref(), &hold.user)?;
    Ok(Json(hold_json(&hold)).into_response())
}

/// `DELETE /v1/holds/{holdId}` with `{"userId"}`.
pub async fn cancel_hold(
    State(st): State<AppState>,
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (id, user) = hold_and_user(&st, buyer, p, &headers, body)?;
    match st.cancel(&HoldRef::Id(&id), Some(&user)).await? {
        CancelOutcome::Cancelled(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        CancelOutcome::Forbidden => Err(ApiError::Forbidden("this hold belongs to another user")),
        CancelOutcome::NotFound | CancelOutcome::NotHeld | CancelOutcome::Invalid(_) => {
            Err(ApiError::NotFound("no such hold".into()))
        }
    }
}

/// `POST /v1/holds/{holdId}/extend` with `{"userId"}`: the deadline becomes
/// now + the event's hold time, at most `maxExtensions` times.
pub async fn extend_hold(
    State(st): State<AppState>,
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (id, user) = hold_and_user(&st, buyer, p, &headers, body)?;
    match st.store.extend_hold(&id, &user).await? {
        ExtendOutcome::Extended(hold) => Ok(Json(hold_json(&hold)).into_response()),
        ExtendOutcome::Forbidden => Err(ApiError::Forbidden("this hold belongs to another user")),
        ExtendOutcome::Expired => Err(hold_expired()),
        ExtendOutcome::Limit(max) => Err(ApiError::Conflict {
            code: "extension_limit",
            message: format!("this hold was extended {max} times, the most this event allows"),
            extra: Some(json!({ "maxExtensions": max })),
        }),
        ExtendOutcome::NotFound => Err(ApiError::NotFound("no such hold".into())),
    }
}

/// `POST /v1/holds/{holdId}/purchase` with `{"userId"}`.
pub async fn purchase(
    State(st): State<AppState>,
    buyer: Option<Extension<Buyer>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = hold_path(p)?;
    let key = input::idempotency_key(&headers)?;
    let body = input::json_body(&headers, body, buyer.is_some())?;
    let user = st.user_of(buyer.as_deref(), &body)?;
    let idem = key.as_deref().map(|k| Idempotency {
        key: k,
        fingerprint: fingerprint(&[&user, &id.to_string()]),
    });
    match st.purchase(&HoldRef::Id(&id), &user, idem.as_ref()).await? {
        PurchaseOutcome::Bought { order, .. } => {
            Ok((StatusCode::ACCEPTED, Json(order_json(&order))).into_response())
        }
        PurchaseOutcome::Forbidden => Err(ApiError::Forbidden("this hold belongs to another user")),
        PurchaseOutcome::Expired => Err(hold_expired()),
        PurchaseOutcome::IdempotencyMismatch => Err(idem_mismatch()),
        PurchaseOutcome::NotFound
        | PurchaseOutcome::NotHeld
        | PurchaseOutcome::NoEvent
        | PurchaseOutcome::Invalid(_) => Err(ApiError::NotFound("no such hold".into())),
    }
}

fn order_path(p: Result<Path<String>, PathRejection>) -> ApiResult<OrderId> {
    p.ok()
        .and_then(|Path(id)| OrderId::parse(&id))
        .ok_or_else(|| ApiError::NotFound("no such order".into()))
}

/// The answer to a payment result or a cancel.
fn order_change(change: OrderChange, asked: &str) -> ApiResult<Response> {
    match change {
        OrderChange::Done { order, .. } => Ok(Json(order_json(&order)).into_response()),
        OrderChange::NotFound => Err(ApiError::NotFound("no such order".into())),
        OrderChange::State(s) => Err(ApiError::Conflict {
            code: "order_state",
            message: format!(
                "the order is {}: a {asked} result cannot apply to it",
                s.as_str()
            ),
            extra: Some(json!({ "status": s.as_str() })),
        }),
        OrderChange::AmountMismatch(amount) => Err(ApiError::Conflict {
            code: "amount_mismatch",
            message: format!("the order's amount is {amount}; nothing was changed"),
            extra: Some(json!({ "amount": amount })),
        }),
    }
}

/// `POST /v1/orders/{orderId}/payment` with `{"outcome","reference","amount"}`,
/// signed with `payment.secret`: how the payment service reports.
pub async fn order_payment(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    // The signature is checked over the body as it came, before anything
    // of it is read.
    if let Ok(raw) = &body {
        if !input::signed(&headers, raw, &st.payment_secret) {
            return Err(ApiError::BadSignature);
        }
    }
    let body = input::json_object(&headers, body)?;
    let id = order_path(p)?;
    let action = match body.get("outcome").and_then(Value::as_str) {
        Some("paid") => OrderAction::Paid,
        Some("declined") => OrderAction::Declined,
        _ => {
            return Err(ApiError::BadRequest(
                "outcome must be \"paid\" or \"declined\"".into(),
            ))
        }
    };
    let reference = match body.get("reference") {
        Some(Value::String(r))
            if (1..=255).contains(&r.len()) && !r.chars().any(char::is_control) =>
        {
            r.clone()
        }
        _ => {
            return Err(ApiError::BadRequest(
                "reference must be the payment's reference: 1-255 characters".into(),
            ))
        }
    };
    let amount = body.get("amount").and_then(Value::as_u64).ok_or_else(|| {
        ApiError::BadRequest("amount must be a whole number of minor units".into())
    })?;
    let change = st
        .store
        .change_order(&id, action, &reference, Some(amount))
        .await?;
    order_change(change, action.as_str())
}

/// `POST /v1/orders/{orderId}/cancel` (admin): a pending or completed order
/// is cancelled, a paid one refunded; again: no change.
pub async fn cancel_order(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !input::is_admin(&headers, &st.admin_token) {
        return Err(ApiError::Unauthorized);
    }
    let id = order_path(p)?;
    let change = st
        .store
        .change_order(&id, OrderAction::Cancel, "", None)
        .await?;
    order_change(change, "cancel")
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
