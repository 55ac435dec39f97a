//! The routes of the Node proof of concept, on the event `compat.event`,
//! with its own 200/409 bodies. Bad input gets the common error body.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::error::{not_on_sale_message, user_limit_message, ApiError, ApiResult};
use super::input;
use super::{AppState, Buyer};
use crate::model::{CancelOutcome, HoldOutcome, HoldRequest, PurchaseOutcome};
use crate::store::{HoldRef, TicketPage, TicketStatus};
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
///
/// Sent as it is read, a page at a time: a 10,000,000-ticket event is an
/// ~80 MB answer, which would otherwise be held in memory twice over (the
/// ids, then their JSON) for each such request. The first page decides the
/// status (404 for a missing event, 503 without Redis); a failure after it
/// can only cut the body short, which the client sees as a broken answer.
pub async fn available(State(st): State<AppState>) -> ApiResult<Response> {
    let first = st
        .store
        .list_tickets(&st.compat_event, TicketStatus::Available, 0, AVAILABLE_PAGE)
        .await?
        .ok_or_else(|| no_event(&st))?;
    let body = page_json(&first, true);
    let rest = futures_util::stream::unfold((st, first.next), |(st, next)| async move {
        let after = next?;
        let page = match st
            .store
            .list_tickets(
                &st.compat_event,
                TicketStatus::Available,
                after,
                AVAILABLE_PAGE,
            )
            .await
        {
            Ok(Some(page)) => page,
            Ok(None) => {
                let e = std::io::Error::other("the compatibility event was deleted mid-listing");
                return Some((Err(e), (st, None)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing available tickets failed midway");
                return Some((Err(std::io::Error::other(e.to_string())), (st, None)));
            }
        };
        Some((Ok(page_json(&page, false)), (st, page.next)))
    });
    let body = futures_util::stream::once(async { Ok(body) }).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Tickets per page of the available listing (about 0.8 MB of JSON).
const AVAILABLE_PAGE: usize = 100_000;

/// One page's part of the listing's JSON: the opening for the first page,
/// its ids comma-separated (after a comma unless first), the closing for
/// the last page.
fn page_json(page: &TicketPage, first: bool) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(page.ticket_ids.len() * 8 + 24);
    if first {
        out.push_str(r#"{"availableTickets":["#);
    }
    for (i, id) in page.ticket_ids.iter().enumerate() {
        if i > 0 || !first {
            out.push(',');
        }
        write!(out, "{id}").expect("writing to a String");
    }
    if page.next.is_none() {
        out.push_str("]}");
    }
    out
}

/// The answer to a reserve that held its ticket (serialized straight from
/// the struct, as the hot path's answers are).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Reserved {
    success: bool,
    ticket_id: u64,
    hold_id: String,
    expires_at: String,
}

/// The answer to a buy that bought its ticket.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bought {
    success: bool,
    message: &'static str,
    order_id: String,
}

/// `POST /api/ticket/reserve` with `{"userId","ticketId"}`.
pub async fn reserve(
    State(st): State<AppState>,
    buyer: Option<Extension<Buyer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = input::json_object(&headers, body)?;
    // Both fields are validated before the rate limit is charged.
    let user = st.buyer_of(buyer.as_deref(), &body)?;
    let ticket = input::ticket_id(&body)?;
    st.check_user(&user)?;
    match st
        .hold(
            &st.compat_event,
            &user,
            &HoldRequest::Tickets(vec![ticket]),
            None,
            input::queue_id(&headers)?,
        )
        .await?
    {
        HoldOutcome::Held { hold, .. } => Ok(Json(Reserved {
            success: true,
            ticket_id: ticket,
            hold_id: hold.id.to_string(),
            expires_at: rfc3339_ms(hold.expires_ms),
        })
        .into_response()),
        HoldOutcome::Unavailable { .. } => Ok(conflict("error", "Ticket not available.")),
        HoldOutcome::Invalid(m) => Err(ApiError::BadRequest(m)),
        HoldOutcome::HoldLimit(max) => Err(ApiError::too_many_holds(max)),
        // The proof of concept's 409 body, with the reason in its words.
        HoldOutcome::NotOnSale(when) => Ok(conflict("error", &not_on_sale_message(when))),
        HoldOutcome::UserLimit(remaining) => Ok(conflict("error", &user_limit_message(remaining))),
        HoldOutcome::QueueRequired(why) => Err(ApiError::QueueRequired(why)),
        HoldOutcome::NoSection(_) | HoldOutcome::NoEvent => Err(no_event(&st)),
        HoldOutcome::IdempotencyMismatch => Err(ApiError::Internal),
    }
}

/// `POST /api/ticket/buy` with `{"ticketId","userId"}`: buys the live hold of
/// this user that holds the ticket.
pub async fn buy(
    State(st): State<AppState>,
    buyer: Option<Extension<Buyer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = input::json_object(&headers, body)?;
    let ticket = input::ticket_id(&body)?;
    let user = st.user_of(buyer.as_deref(), &body)?;
    let hold = HoldRef::Ticket {
        event: &st.compat_event,
        ticket,
    };
    match st.purchase(&hold, &user, None).await? {
        PurchaseOutcome::Bought { order, .. } => Ok(Json(Bought {
            success: true,
            message: "Ticket purchased.",
            order_id: order.id.to_string(),
        })
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
