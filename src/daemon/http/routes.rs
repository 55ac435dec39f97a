//! Every route of the API, declared once: the router is built from this
//! table, the metrics label requests with its path templates, and the
//! OpenAPI document (`openapi.rs`) and the fuzz test read it.

use axum::routing::{delete, get, patch, post, MethodRouter};

use super::{compat, queue, v1, AppState};

/// One route: method, path template (axum syntax), summary, request body
/// schema (a `#/components/schemas` name), success statuses and schema, and
/// the error statuses it can answer.
pub struct RouteSpec {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path template with `{name}` parameters.
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Request body schema name.
    pub body: Option<&'static str>,
    /// Success status and response schema name.
    pub ok: (u16, Option<&'static str>),
    /// Another success status with the same schema (an event created
    /// again with the same settings: 200).
    pub also_ok: Option<u16>,
    /// Error statuses.
    pub errors: &'static [u16],
    /// Who may call it.
    pub access: Access,
    /// The handler, as the router takes it.
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Open,
    /// `Authorization: Bearer <server.admin_token>`.
    Admin,
    /// A buyer: with `[auth] mode = "jwt"`, a verified bearer token whose
    /// `sub` is the `userId`; else anyone, naming the `userId` in the body.
    Buyer,
}

// One positional row per route reads as a table.
#[allow(clippy::too_many_arguments)]
const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    ok: (u16, Option<&'static str>),
    errors: &'static [u16],
    access: Access,
    handler: fn() -> MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        summary,
        body,
        ok,
        also_ok: None,
        errors,
        access,
        handler,
    }
}

/// Every route of the API.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        also_ok: Some(200),
        ..r(
            "post",
            "/v1/events",
            "Create an event (same settings again: 200)",
            Some("EventCreate"),
            (201, Some("Event")),
            &[400, 401, 409, 413, 415, 503],
            Access::Admin,
            || post(v1::create_event),
        )
    },
    r(
        "get",
        "/v1/events",
        "List events with counts",
        None,
        (200, Some("EventList")),
        &[503],
        Access::Open,
        || get(v1::list_events),
    ),
    r(
        "get",
        "/v1/events/{id}",
        "An event with exact counts",
        None,
        (200, Some("Event")),
        &[404, 503],
        Access::Open,
        || get(v1::get_event),
    ),
    r(
        "patch",
        "/v1/events/{id}",
        "Change an event's sale window, limits, hold time or prices",
        Some("EventPatch"),
        (200, Some("Event")),
        &[400, 401, 404, 413, 415, 503],
        Access::Admin,
        || patch(v1::patch_event),
    ),
    r(
        "get",
        "/v1/events/{id}/tickets",
        "Ticket ids by status, ascending, paginated",
        None,
        (200, Some("TicketPage")),
        &[400, 404, 503],
        Access::Open,
        || get(v1::list_tickets),
    ),
    r(
        "post",
        "/v1/events/{id}/holds",
        "Hold tickets for a user, all or nothing",
        Some("HoldCreate"),
        (201, Some("Hold")),
        &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503],
        Access::Buyer,
        || post(v1::create_hold),
    ),
    r(
        "post",
        "/v1/events/{id}/queue",
        "Join the event's waiting room (the same user again: 200 and the same place)",
        Some("UserBody"),
        (201, Some("QueuePlace")),
        &[400, 401, 403, 404, 409, 413, 415, 429, 503],
        Access::Buyer,
        || post(queue::join),
    ),
    r(
        "get",
        "/v1/queue/{queue_id}",
        "Where a place in a waiting room stands (served from memory, no Redis write)",
        None,
        (200, Some("QueuePlace")),
        &[401, 404, 503],
        Access::Buyer,
        || get(queue::status),
    ),
    r(
        "get",
        "/v1/holds/{hold_id}",
        "A live hold",
        None,
        (200, Some("Hold")),
        &[401, 403, 404, 503],
        Access::Buyer,
        || get(v1::get_hold),
    ),
    r(
        "delete",
        "/v1/holds/{hold_id}",
        "Cancel a hold (its user only)",
        Some("UserBody"),
        (204, None),
        &[400, 401, 403, 404, 413, 415, 429, 503],
        Access::Buyer,
        || delete(v1::cancel_hold),
    ),
    r(
        "post",
        "/v1/holds/{hold_id}/extend",
        "Extend a live hold to now + the hold time (its user only, at most maxExtensions times)",
        Some("UserBody"),
        (200, Some("Hold")),
        &[400, 401, 403, 404, 409, 413, 415, 429, 503],
        Access::Buyer,
        || post(v1::extend_hold),
    ),
    r(
        "post",
        "/v1/holds/{hold_id}/purchase",
        "Buy a hold (again: the same order)",
        Some("UserBody"),
        (202, Some("Order")),
        &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503],
        Access::Buyer,
        || post(v1::purchase),
    ),
    r(
        "get",
        "/v1/orders/{order_id}",
        "An order",
        None,
        (200, Some("Order")),
        &[404, 503],
        Access::Open,
        || get(v1::get_order),
    ),
    r(
        "post",
        "/v1/orders/{order_id}/payment",
        "A payment result, signed by the payment service",
        Some("PaymentResult"),
        (200, Some("Order")),
        &[400, 401, 404, 409, 413, 415, 503],
        Access::Open,
        || post(v1::order_payment),
    ),
    r(
        "post",
        "/v1/orders/{order_id}/cancel",
        "Cancel an order (a paid one is refunded)",
        None,
        (200, Some("Order")),
        &[401, 404, 503],
        Access::Admin,
        || post(v1::cancel_order),
    ),
    r(
        "get",
        "/api/ticket/available",
        "Compatibility: every available ticket id",
        None,
        (200, Some("CompatAvailable")),
        &[404, 503],
        Access::Open,
        || get(compat::available),
    ),
    r(
        "post",
        "/api/ticket/reserve",
        "Compatibility: hold one ticket",
        Some("CompatReserve"),
        (200, Some("CompatReserved")),
        &[400, 401, 403, 404, 409, 413, 415, 429, 503],
        Access::Buyer,
        || post(compat::reserve),
    ),
    r(
        "post",
        "/api/ticket/buy",
        "Compatibility: buy the user's live hold of a ticket",
        Some("CompatReserve"),
        (200, Some("CompatBought")),
        &[400, 401, 403, 404, 409, 413, 415, 429, 503],
        Access::Buyer,
        || post(compat::buy),
    ),
    r(
        "post",
        "/api/ticket/release",
        "Compatibility: release the hold of a ticket",
        Some("CompatRelease"),
        (200, Some("CompatReleased")),
        &[400, 401, 404, 409, 413, 415, 503],
        Access::Admin,
        || post(compat::release),
    ),
    r(
        "get",
        "/healthz",
        "The process is up (no Redis call)",
        None,
        (200, None),
        &[],
        Access::Open,
        || get(super::healthz),
    ),
    r(
        "get",
        "/readyz",
        "Redis is reachable",
        None,
        (200, None),
        &[503],
        Access::Open,
        || get(super::readyz),
    ),
    r(
        "get",
        "/metrics",
        "Prometheus metrics",
        None,
        (200, None),
        &[],
        Access::Open,
        || get(super::metrics_text),
    ),
    r(
        "get",
        "/openapi.json",
        "This document",
        None,
        (200, None),
        &[],
        Access::Open,
        || get(super::openapi_json),
    ),
];
