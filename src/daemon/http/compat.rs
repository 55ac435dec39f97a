//! The routes of the Node proof of concept, on the event `compat.event`,
//! with its own 200/409 bodies. Bad input gets the common error body.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::input;
use super::AppState;
use crate::store::{
    CancelOutcome, HoldOutcome, HoldRef, HoldRequest, PurchaseOutcome, TicketStatus,
};
use crate::time::rfc3339_ms;

fn no_event(st: &AppState) -> ApiError {
    ApiError::NotFound(format!(
        "the compatibility event {} does not exist",
        st.compat_event
    ))
}

fn conflict(field: &str, text: &str) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({ "success": false, field: text })),
    )
        .into_response()
}

/// `GET /api/ticket/available`: every available ticket id, ascending.
pub async fn available(State(st): State<AppState>) -> ApiResult<Response> {
    const PAGE: usize = 100_000;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = st
            .store
            .list_tickets(&st.compat_event, TicketStatus::Available, after, PAGE)
            .await?
            .ok_or_else(|| no_event(&st))?;
        all.extend(page.ticket_ids);
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    // Serialized straight from the ids: no JSON value per ticket (up to
    // 10,000,000 of them).
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Available {
        available_tickets: Vec<u64>,
    }
    Ok(Json(Available {
        available_tickets: all,
    })
    .into_response())
}

/// `POST /api/ticket/reserve` with `{"userId","ticketId"}`.
pub async fn reserve(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = input::json_object(&headers, body)?;
    // Both fields are validated before the rate limit is charged.
    let user = input::user_id(&body)?;
    let ticket = input::ticket_id(&body)?;
    st.check_user(&user)?;
    match st
        .hold(
            &st.compat_event,
            &user,
            &HoldRequest::Tickets(vec![ticket]),
            None,
        )
        .await?
    {
        HoldOutcome::Held { hold, .. } => Ok(Json(json!({
            "success": true,
            "ticketId": ticket,
            "holdId": hold.id.to_string(),
            "expiresAt": rfc3339_ms(hold.id.deadline_ms),
        }))
        .into_response()),
        HoldOutcome::Unavailable { .. } => Ok(conflict("error", "Ticket not available.")),
        HoldOutcome::Invalid(m) => Err(ApiError::BadRequest(m)),
        HoldOutcome::HoldLimit(max) => Err(ApiError::too_many_holds(max)),
        HoldOutcome::NoEvent => Err(no_event(&st)),
        HoldOutcome::IdempotencyMismatch => Err(ApiError::Internal),
    }
}

/// `POST /api/ticket/buy` with `{"ticketId","userId"}`: buys the live hold of
/// this user that holds the ticket.
pub async fn buy(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = input::json_object(&headers, body)?;
    let ticket = input::ticket_id(&body)?;
    let user = st.user_of(&body)?;
    let hold = HoldRef::Ticket {
        event: &st.compat_event,
        ticket,
    };
    match st.purchase(&hold, &user, None).await? {
        PurchaseOutcome::Bought { order, .. } => Ok(Json(json!({
            "success": true,
            "message": "Ticket purchased.",
            "orderId": order.id.to_string(),
        }))
        .into_response()),
        PurchaseOutcome::Expired => Ok(conflict("reason", "Your hold on this ticket has expired.")),
        PurchaseOutcome::NotHeld | PurchaseOutcome::NotFound | PurchaseOutcome::Forbidden => {
            Ok(conflict("reason", "You do not hold this ticket."))
        }
        PurchaseOutcome::NoEvent => Err(no_event(&st)),
        PurchaseOutcome::Invalid(m) => Err(ApiError::BadRequest(m)),
        PurchaseOutcome::IdempotencyMismatch => Err(ApiError::Internal),
    }
}

/// `POST /api/ticket/release` with `{"ticketId"}` (admin): releases the hold
/// that holds the ticket.
pub async fn release(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if !input::is_admin(&headers, &st.admin_token) {
        return Err(ApiError::Unauthorized);
    }
    let body = input::json_object(&headers, body)?;
    let ticket = input::ticket_id(&body)?;
    let hold = HoldRef::Ticket {
        event: &st.compat_event,
        ticket,
    };
    match st.cancel(&hold, None).await? {
        CancelOutcome::Cancelled(_) => {
            Ok(Json(json!({ "success": true, "message": "Ticket released." })).into_response())
        }
        CancelOutcome::NotHeld | CancelOutcome::Forbidden => {
            Ok(conflict("error", "Ticket is not held."))
        }
        CancelOutcome::NotFound => Err(no_event(&st)),
        CancelOutcome::Invalid(m) => Err(ApiError::BadRequest(m)),
    }
}
