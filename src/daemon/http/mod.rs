//! The HTTP API: router, middleware (metrics, request timeout) and the
//! connection loop. Handlers live in `v1.rs` and `compat.rs`; status codes
//! are chosen in `error.rs` alone.

mod compat;
pub mod error;
pub mod input;
pub mod limit;
pub mod openapi;
pub mod queue;
pub mod routes;
mod server;
pub mod v1;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

pub use server::{serve, Limits};

use crate::config::Config;
use crate::daemon::metrics::{self, Metrics};
use crate::model::{CancelOutcome, HoldOutcome, HoldRequest, PurchaseOutcome};
use crate::store::{HoldRef, Idempotency, Store};
use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The fields of [`AppState`].
pub struct Inner {
    /// The store.
    pub store: Store,
    /// Metrics of this process.
    pub metrics: Arc<Metrics>,
    /// `server.admin_token`.
    pub admin_token: String,
    /// `compat.event`.
    pub compat_event: String,
    /// `payment.secret`.
    pub payment_secret: String,
    /// `[auth] mode = "jwt"`: the buyer routes' token verifier.
    pub verifier: Option<Arc<crate::auth::Verifier>>,
    /// Snapshots of the waiting rooms (shared by the serving threads).
    pub queues: Arc<queue::QueueCache>,
    request_timeout: Duration,
    ip_limiter: Option<Arc<limit::RateLimiter>>,
    user_limiter: Option<Arc<limit::RateLimiter>>,
}

/// The verified `sub` of a buyer route's bearer token (a request
/// extension, set by [`observe`] when `[auth] mode = "jwt"`).
#[derive(Debug, Clone)]
pub struct Buyer(pub String);

impl Inner {
    /// The buyer a request acts for, validated and within its rate limit:
    /// the body's `userId`; with `[auth] mode = "jwt"`, the token's `sub`,
    /// which a body `userId` must equal (403) and may leave out.
    pub fn user_of(
        &self,
        buyer: Option<&Buyer>,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, ApiError> {
        let user = self.buyer_of(buyer, body)?;
        self.check_user(&user)?;
        Ok(user)
    }

    /// [`Inner::user_of`] without the rate limit.
    pub fn buyer_of(
        &self,
        buyer: Option<&Buyer>,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, ApiError> {
        match (&self.verifier, buyer) {
            (None, _) => input::user_id(body),
            // A buyer route always has its token checked first; a route
            // left without one fails closed.
            (Some(_), None) => Err(ApiError::InvalidToken(crate::auth::TokenError::Missing)),
            (Some(_), Some(Buyer(sub))) => match body.get("userId") {
                None | Some(serde_json::Value::Null) => Ok(sub.clone()),
                Some(_) if input::user_id(body)? == *sub => Ok(sub.clone()),
                Some(_) => Err(ApiError::Forbidden(
                    "the body's userId is not the user the bearer token names",
                )),
            },
        }
    }

    /// With `[auth] mode = "jwt"`, 403 unless the hold's user is the
    /// token's `sub`.
    pub fn may_see(&self, buyer: Option<&Buyer>, owner: &str) -> Result<(), ApiError> {
        match (&self.verifier, buyer) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(ApiError::InvalidToken(crate::auth::TokenError::Missing)),
            (Some(_), Some(Buyer(sub))) if sub == owner => Ok(()),
            (Some(_), Some(_)) => Err(ApiError::Forbidden("this hold belongs to another user")),
        }
    }

    /// Holds tickets (see [`Store::hold`]) and counts the hold in the metrics.
    pub async fn hold(
        &self,
        event: &str,
        user: &str,
        req: &HoldRequest,
        idem: Option<&Idempotency<'_>>,
        queue: &str,
    ) -> Result<HoldOutcome, ApiError> {
        let outcome = self
            .store
            .hold_queued(event, user, req, idem, queue)
            .await?;
        // Expired holds released on the way are counted by the store.
        if let HoldOutcome::Held {
            replayed: false, ..
        } = &outcome
        {
            Metrics::add(&self.metrics.holds_created, 1);
        }
        Ok(outcome)
    }

    /// Buys a hold (see [`Store::purchase`]) and counts a new order.
    pub async fn purchase(
        &self,
        hold: &HoldRef<'_>,
        user: &str,
        idem: Option<&Idempotency<'_>>,
    ) -> Result<PurchaseOutcome, ApiError> {
        let outcome = self.store.purchase(hold, user, idem).await?;
        if let PurchaseOutcome::Bought { created: true, .. } = &outcome {
            Metrics::add(&self.metrics.purchases, 1);
        }
        Ok(outcome)
    }

    /// Cancels a hold (see [`Store::cancel`]) and counts it.
    pub async fn cancel(
        &self,
        hold: &HoldRef<'_>,
        user: Option<&str>,
    ) -> Result<CancelOutcome, ApiError> {
        let outcome = self.store.cancel(hold, user).await?;
        if let CancelOutcome::Cancelled(_) = &outcome {
            Metrics::add(&self.metrics.holds_cancelled, 1);
        }
        Ok(outcome)
    }

    /// Applies the per-user rate limit (`limits.per_user_rate`).
    pub fn check_user(&self, user: &str) -> Result<(), ApiError> {
        match self.user_limiter.as_ref().map(|l| l.check(user)) {
            Some(Err(wait)) => Err(ApiError::TooMany {
                code: "rate_limited",
                message: "too many requests for this user; slow down".into(),
                retry_after: Some(wait),
            }),
            _ => Ok(()),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Shared state for the router.
    pub fn new(store: Store, metrics: Arc<Metrics>, cfg: &Config) -> AppState {
        AppState(Arc::new(Inner {
            store: serving_store(store, cfg, &metrics),
            metrics,
            admin_token: cfg.server.admin_token.clone(),
            compat_event: cfg.compat.event.clone(),
            payment_secret: cfg.payment.secret.clone(),
            verifier: crate::auth::Verifier::from_config(&cfg.auth)
                .expect("[auth] is checked when the configuration is loaded")
                .map(Arc::new),
            queues: Arc::default(),
            request_timeout: cfg.server.request_timeout,
            ip_limiter: limit::RateLimiter::new(cfg.limits.per_ip_rate, cfg.limits.per_ip_burst)
                .map(Arc::new),
            user_limiter: limit::RateLimiter::new(
                cfg.limits.per_user_rate,
                cfg.limits.per_user_burst,
            )
            .map(Arc::new),
        }))
    }

    /// The same state over another store (a serving thread's own Redis
    /// connection): metrics, rate limits and settings stay shared.
    pub fn with_store(&self, store: Store, cfg: &Config) -> AppState {
        AppState(Arc::new(Inner {
            store: serving_store(store, cfg, &self.metrics),
            metrics: self.metrics.clone(),
            admin_token: self.admin_token.clone(),
            compat_event: self.compat_event.clone(),
            payment_secret: self.payment_secret.clone(),
            verifier: self.verifier.clone(),
            queues: self.queues.clone(),
            request_timeout: self.request_timeout,
            ip_limiter: self.ip_limiter.clone(),
            user_limiter: self.user_limiter.clone(),
        }))
    }
}

/// A store as the handlers use it: the per-user hold limit, group commit of
/// holds and purchases, and the expired holds its calls release counted in
/// the metrics.
fn serving_store(store: Store, cfg: &Config, metrics: &Metrics) -> Store {
    let store = store
        .with_max_holds_per_user(cfg.limits.max_holds_per_user)
        .with_payment_deadline(cfg.payment.deadline)
        .with_max_queue_wait(cfg.server.max_queue_wait)
        .with_hold_batching()
        .with_sweep_counter(metrics.holds_expired.clone())
        .with_call_stats(metrics.calls.clone());
    store.watch_loop_lag();
    store
}

/// The route table's row of a matched route pattern.
fn route_of(path: &str) -> Option<&'static routes::RouteSpec> {
    routes::ROUTES.iter().find(|r| r.path == path)
}

/// The full router with its middleware.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let mut router = Router::new();
    for route in routes::ROUTES {
        router = router.route(route.path, (route.handler)());
    }
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            declared_size_check(body_limit, req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// 413 at once for a body whose declared `Content-Length` is over the
/// limit: without reading it, and without a `100 Continue` first (which is
/// sent only once a handler starts reading). A body that only turns out too
/// large while read (chunked) gets its 413 from the body limit.
async fn declared_size_check(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}

/// The request with a body that raises the returned flag once it has been
/// read to its end (no flag for a request without a body).
fn track_body(req: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if http_body::Body::is_end_stream(req.body()) {
        // Nothing to read (most GETs): nothing to wrap.
        return (req, None);
    }
    let (parts, body) = req.into_parts();
    let read = Arc::new(AtomicBool::new(false));
    let body = axum::body::Body::new(TrackedBody {
        inner: body,
        read: read.clone(),
    });
    (Request::from_parts(parts, body), Some(read))
}

/// A request body that notes when it has been read to its end.
struct TrackedBody {
    inner: axum::body::Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request id from the client's `X-Request-Id` when it is a sane token,
/// else a new random one.
fn request_id(req: &Request) -> String {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        _ => {
            // 16 hex digits, written by hand (cheaper than `format!`).
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut b = [0u8; 8];
            crate::model::ids::random_bytes(&mut b);
            let mut id = String::with_capacity(16);
            for byte in b {
                id.push(char::from(HEX[usize::from(byte >> 4)]));
                id.push(char::from(HEX[usize::from(byte & 15)]));
            }
            id
        }
    }
}

/// Routes the per-IP rate limit leaves alone (probes and scrapes).
pub const NOT_RATE_LIMITED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// Routes never shed under overload (probes, scrapes, documents); a waiting
/// room's status is answered from memory, and falls back on its last
/// snapshot when a refresh is shed.
pub const NOT_SHED: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/queue/{queue_id}",
];

/// Shows a value, or `-` for none (in log lines).
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Every request: a request id (echoed in `X-Request-Id`), the per-IP rate
/// limit, 503 past `server.request_timeout`, metrics by route pattern and
/// status, and one access log line.
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    // A clone of the URI shares its bytes: nothing is copied unless logged.
    let uri = req.uri().clone();
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let spec = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| route_of(m.as_str()));
    let route = spec.map_or("unmatched", |r| r.path);
    let exempt = NOT_RATE_LIMITED.contains(&route);
    let limited = match (&st.ip_limiter, peer) {
        (Some(l), Some(ip)) if !exempt => l.check(&ip.to_string()).err(),
        _ => None,
    };
    // A buyer route's token, verified before anything else is read. Only
    // its `sub` goes on: the token itself is never logged.
    let mut req = req;
    let mut sub = None;
    let refused = match (&st.verifier, spec.map(|r| r.access)) {
        (Some(v), Some(routes::Access::Buyer)) if limited.is_none() => {
            let mut given = req.headers().get_all(header::AUTHORIZATION).iter();
            let authorization = given.next().map(|h| h.as_bytes());
            let verified = match given.next() {
                Some(_) => Err(crate::auth::TokenError::Duplicate),
                None => v.verify_header(authorization),
            };
            match verified {
                Ok(s) => {
                    sub = Some(s.clone());
                    req.extensions_mut().insert(Buyer(s));
                    None
                }
                Err(e) => Some(e),
            }
        }
        _ => None,
    };
    let mut resp = if let Some(e) = refused {
        ApiError::InvalidToken(e).into_response()
    } else if let Some(wait) = limited {
        ApiError::TooMany {
            code: "rate_limited",
            message: "too many requests from this address; slow down".into(),
            retry_after: Some(wait),
        }
        .into_response()
    } else {
        // Past the time limit, a body still arriving is the client's
        // slowness (408), anything else the service's (503).
        let (req, body_read) = track_body(req);
        let work = async {
            if NOT_SHED.contains(&route) {
                // Probes are answered whatever the load.
                next.run(req).await
            } else if st.store.shed_early() {
                ApiError::Overloaded.into_response()
            } else {
                crate::store::admission::scope(next.run(req)).await
            }
        };
        match tokio::time::timeout(st.request_timeout, work).await {
            Ok(r) => r,
            Err(_) if body_read.is_some_and(|r| !r.load(Ordering::Relaxed)) => {
                ApiError::BodyTimeout.into_response()
            }
            Err(_) => ApiError::Timeout.into_response(),
        }
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    st.metrics.observe(method, route, status, elapsed);
    tracing::info!(
        target: "ticketctl::access",
        request_id = %id,
        method,
        path = %uri.path().escape_debug(),
        route,
        status,
        latency_us = elapsed.as_micros() as u64,
        peer = %OrDash(peer),
        sub = sub.as_deref().unwrap_or("-"),
        "request"
    );
    resp
}

async fn openapi_json() -> Json<serde_json::Value> {
    static DOC: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(openapi::document);
    Json(DOC.clone())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render();
    text.push_str(&event_gauges(&st).await);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// How long a scrape's per-event gauges are reused: each costs Redis up to
/// three commands per event, and scrapers need not be trusted.
const EVENT_GAUGES_FOR: Duration = Duration::from_secs(5);
/// Longest a scrape waits for Redis; past it, `redis_up` is 0 and the
/// in-process metrics are still served.
const EVENT_GAUGES_WITHIN: Duration = Duration::from_secs(3);

/// The per-event gauges (see [`metrics::render_events`]), from Redis at most
/// every [`EVENT_GAUGES_FOR`] for the whole process.
async fn event_gauges(st: &AppState) -> String {
    let cache = &st.metrics.event_gauges;
    if let Some((at, text)) = cache.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        if at.elapsed() < EVENT_GAUGES_FOR {
            return text.clone();
        }
    }
    let read = async {
        let mut ids = st.store.list_events().await?;
        // Ids go into labels: only well-formed ones (one added by hand
        // with a quote or a newline would break the whole exposition).
        ids.retain(|id| crate::model::valid_event_id(id));
        let total = ids.len();
        ids.truncate(metrics::MAX_EVENT_SERIES);
        let queues = futures_util::future::join_all(ids.iter().map(|id| st.store.queue_counts(id)));
        let (counters, queues) = futures_util::join!(st.store.event_counters(&ids), queues);
        // A queue that cannot be read (a key damaged by hand) loses its own
        // series only.
        let listed: Vec<metrics::EventSeries> = ids
            .into_iter()
            .zip(counters?)
            .zip(queues)
            .filter_map(|((id, c), q)| c.map(|c| (id, c, q.ok())))
            .collect();
        Ok::<_, crate::store::StoreError>((total, listed))
    };
    let mut text = String::new();
    match tokio::time::timeout(EVENT_GAUGES_WITHIN, read).await {
        Ok(Ok((total, listed))) => metrics::render_events(&mut text, Some((total, &listed))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: cannot read the events");
            metrics::render_events(&mut text, None);
        }
        Err(_) => {
            tracing::warn!("metrics: the events took too long to read");
            metrics::render_events(&mut text, None);
        }
    }
    *cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), text.clone()));
    text
}
