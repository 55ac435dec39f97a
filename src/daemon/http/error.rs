//! The one place that maps failures to HTTP status codes and the JSON error
//! body `{"error":{"code","message"}}`. Internal detail (Redis error text,
//! file paths) is logged here and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::store::StoreError;

/// An error answer of the API.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`.
    BadRequest(String),
    /// 401 `unauthorized`.
    Unauthorized,
    /// 401 `unauthorized`: a payment result without a valid signature.
    BadSignature,
    /// 401 `unauthorized`: a buyer route without a valid bearer token
    /// (`[auth] mode = "jwt"`).
    InvalidToken(crate::auth::TokenError),
    /// 403 `forbidden`.
    Forbidden(&'static str),
    /// 403 `queue_required`: the event has a waiting room and the request
    /// names no admitted place of its user.
    QueueRequired(String),
    /// 404 `not_found`.
    NotFound(String),
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 with its own code, message and extra fields.
    Conflict {
        /// Snake-case code.
        code: &'static str,
        /// Human sentence.
        message: String,
        /// Extra fields merged into the error object.
        extra: Option<Value>,
    },
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 422 with its own code.
    Unprocessable(&'static str, String),
    /// 429 with its own code and, when waiting helps, `Retry-After` seconds.
    TooMany {
        /// Snake-case code.
        code: &'static str,
        /// Human sentence.
        message: String,
        /// Seconds to wait (`None`: waiting alone does not help).
        retry_after: Option<u64>,
    },
    /// 503 `unavailable` with `Retry-After`.
    Unavailable,
    /// 503 `timeout`: the request ran past `server.request_timeout`.
    Timeout,
    /// 503 `overloaded`: the request could not start within
    /// `server.max_queue_wait` (shed, nothing done).
    Overloaded,
    /// 408 `request_timeout`: the client had not sent its whole body by
    /// `server.request_timeout` (the connection is closed).
    BodyTimeout,
    /// 500 `internal`: logged, not described.
    Internal,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs Authorization: Bearer <admin token>".into(),
            ),
            ApiError::BadSignature => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a payment result needs X-Ticketctl-Signature: sha256=<hex HMAC-SHA256 of the body with payment.secret>".into(),
            ),
            ApiError::InvalidToken(e) => (StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", (*m).into()),
            ApiError::QueueRequired(m) => (StatusCode::FORBIDDEN, "queue_required", m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this path".into(),
            ),
            ApiError::Conflict { code, message, .. } => {
                (StatusCode::CONFLICT, code, message.clone())
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large".into(),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON (Content-Type: application/json)".into(),
            ),
            ApiError::Unprocessable(code, m) => (StatusCode::UNPROCESSABLE_ENTITY, code, m.clone()),
            ApiError::TooMany { code, message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, code, message.clone())
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the ticket store is unavailable; retry shortly".into(),
            ),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the service is busier than it can answer in time; nothing was done, retry shortly".into(),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long; retry shortly".into(),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time".into(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged".into(),
            ),
        }
    }
}

impl ApiError {
    /// 409 `not_on_sale`: sales open at `Ok(ms)` or closed at `Err(ms)`.
    pub fn not_on_sale(when: Result<u64, u64>) -> ApiError {
        let extra = match when {
            Ok(ms) => json!({ "salesStart": crate::time::rfc3339_ms(ms) }),
            Err(ms) => json!({ "salesEnd": crate::time::rfc3339_ms(ms) }),
        };
        ApiError::Conflict {
            code: "not_on_sale",
            message: not_on_sale_message(when),
            extra: Some(extra),
        }
    }

    /// 409 `user_limit`: `remaining` more tickets are allowed to this user.
    pub fn user_limit(remaining: u64) -> ApiError {
        ApiError::Conflict {
            code: "user_limit",
            message: user_limit_message(remaining),
            extra: Some(json!({ "remaining": remaining })),
        }
    }

    /// 429 `too_many_holds`: the user has `max` live holds in the event.
    pub fn too_many_holds(max: u64) -> ApiError {
        ApiError::TooMany {
            code: "too_many_holds",
            message: format!(
                "this user already has {max} live holds in this event; buy or release one first"
            ),
            // The limit clears when one of the user's holds ends (bought,
            // released, or expired up to the hold time from now): no
            // Retry-After would be true.
            retry_after: None,
        }
    }
}

/// Why a hold outside the sale window is refused.
pub fn not_on_sale_message(when: Result<u64, u64>) -> String {
    match when {
        Ok(ms) => format!(
            "this event is not on sale yet: sales open at {}",
            crate::time::rfc3339_ms(ms)
        ),
        Err(ms) => format!(
            "sales for this event closed at {}",
            crate::time::rfc3339_ms(ms)
        ),
    }
}

/// Why a hold past the buyer limit is refused.
pub fn user_limit_message(remaining: u64) -> String {
    format!("this hold would pass the event's limit of tickets per buyer: {remaining} more allowed")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded => ApiError::Overloaded,
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "redis unavailable");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut body = json!({ "code": code, "message": message });
        if let (
            ApiError::Conflict {
                extra: Some(Value::Object(extra)),
                ..
            },
            Value::Object(obj),
        ) = (&self, &mut body)
        {
            obj.extend(extra.clone());
        }
        let mut resp = (status, axum::Json(json!({ "error": body }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooMany {
            retry_after: Some(secs),
            ..
        } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // What is left of the body cannot be told from a next request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // RFC 9110: a 401 names the scheme it wants.
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        } else if matches!(self, ApiError::InvalidToken(_)) {
            // RFC 6750 §3.1; the reason is in the body, not the header.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        } else if matches!(self, ApiError::BadSignature) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("HMAC-SHA256 header=\"X-Ticketctl-Signature\""),
            );
        }
        resp
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
