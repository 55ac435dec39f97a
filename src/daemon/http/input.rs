//! Request input: the JSON body (size, media type, syntax) and the typed
//! fields the contract defines, each refused with a sentence that says what
//! was wrong. Pure functions, tested here.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use crate::model::HoldRequest;

pub use crate::model::MAX_USER_ID_CHARS;
/// Most ticket ids accepted in one request before the event's own limit is
/// consulted: no hold can take more.
pub const MAX_TICKETS_IN_REQUEST: usize = crate::model::MAX_TICKETS_PER_HOLD as usize;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The body as a JSON object. `body` is the extractor's result, so a body
/// over the limit arrives here as a rejection.
pub fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Map<String, Value>> {
    json_body(headers, body, false)
}

/// [`json_object`], where an empty body is `{}` when `empty_ok` (a buyer
/// route whose buyer is the bearer token's: nothing else to say).
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
) -> ApiResult<Map<String, Value>> {
    if let Some(ct) = at_most_once(headers, header::CONTENT_TYPE, "Content-Type")? {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json")))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("the request body could not be read".into())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        if empty_ok {
            return Ok(Map::new());
        }
        return Err(ApiError::BadRequest(
            "a JSON object body is required".into(),
        ));
    }
    match serde_json::from_slice::<Object>(&body) {
        Ok(Object(m)) => Ok(m),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            Err(ApiError::BadRequest(match e.to_string() {
                // Without serde's " at line 1 column N".
                m if m.starts_with(DUPLICATE) => match m.rfind(" at line ") {
                    Some(i) => m[..i].to_string(),
                    None => m,
                },
                _ => "the body must be a JSON object".into(),
            }))
        }
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

/// The value of a header that may be given once at most (`shown`: its name
/// in the error when it is given twice).
fn at_most_once<'a>(
    headers: &'a HeaderMap,
    name: impl header::AsHeaderName,
    shown: &str,
) -> ApiResult<Option<&'a header::HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!("{shown} must be given once")));
    }
    Ok(first)
}

/// How the error for a repeated field begins.
const DUPLICATE: &str = "duplicate field";

/// A JSON object whose fields are each named once. A repeated name is
/// refused: left to the last one to win, a proxy or log reading the first
/// would see another request than the one served.
struct Object(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Object, A::Error> {
                let mut m = Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    if m.contains_key(&k) {
                        let shown: String = k.chars().take(64).collect();
                        let more = if shown.len() < k.len() { "…" } else { "" };
                        return Err(serde::de::Error::custom(format!(
                            "{DUPLICATE} {shown:?}{more} in the body"
                        )));
                    }
                    m.insert(k, a.next_value()?);
                }
                Ok(Object(m))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// `userId`: a non-empty string of at most 128 characters without control
/// characters, or a JSON integer (taken as its decimal string).
pub fn user_id(body: &Map<String, Value>) -> ApiResult<String> {
    match body.get("userId") {
        None | Some(Value::Null) => Err(ApiError::BadRequest("userId is required".into())),
        Some(Value::String(s)) => {
            if s.is_empty() {
                Err(ApiError::BadRequest("userId must not be empty".into()))
            } else if s.chars().count() > MAX_USER_ID_CHARS {
                Err(ApiError::BadRequest(format!(
                    "userId must be at most {MAX_USER_ID_CHARS} characters"
                )))
            } else if s.chars().any(char::is_control) {
                Err(ApiError::BadRequest(
                    "userId must not contain control characters".into(),
                ))
            } else {
                Ok(s.clone())
            }
        }
        Some(Value::Number(n)) => match integer_text(n) {
            // -0 is the integer 0.
            Some("-0") => Ok("0".into()),
            Some(s) if s.len() <= MAX_USER_ID_CHARS => Ok(s.to_string()),
            Some(_) => Err(ApiError::BadRequest(format!(
                "userId must be at most {MAX_USER_ID_CHARS} characters"
            ))),
            None => Err(ApiError::BadRequest(
                "userId must be a string or an integer, not a fraction or exponent".into(),
            )),
        },
        Some(_) => Err(ApiError::BadRequest(
            "userId must be a string or an integer".into(),
        )),
    }
}

/// The decimal text of a JSON number written as an integer, of any size
/// (numbers keep their text as written), or `None` for `1.5`, `1.0`, `1e3`.
fn integer_text(n: &serde_json::Number) -> Option<&str> {
    let s = n.as_str();
    let digits = s.strip_prefix('-').unwrap_or(s);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// One ticket id: a JSON integer >= 1 (the upper bound is the event's).
pub fn ticket_id_value(v: &Value, field: &str) -> ApiResult<u64> {
    let Some(text) = v.as_number().and_then(integer_text) else {
        return Err(ApiError::BadRequest(format!("{field} must be an integer")));
    };
    if text.starts_with('-') || text == "0" {
        return Err(ApiError::BadRequest(format!("{field} must be at least 1")));
    }
    match text.parse::<u64>() {
        Ok(t) if t <= crate::model::MAX_CAPACITY => Ok(t),
        _ => {
            // The number may be as long as the body: show its start.
            let shown = if text.len() > 24 {
                format!("{}…", &text[..24])
            } else {
                text.to_string()
            };
            Err(ApiError::BadRequest(format!(
                "{field}: ticket {shown} is out of range (no event has that many tickets)"
            )))
        }
    }
}

/// `ticketId` (compatibility routes).
pub fn ticket_id(body: &Map<String, Value>) -> ApiResult<u64> {
    match body.get("ticketId") {
        None | Some(Value::Null) => Err(ApiError::BadRequest("ticketId is required".into())),
        Some(v) => ticket_id_value(v, "ticketId"),
    }
}

/// `ticketIds` (non-empty array of distinct ids) or `quantity` (>= 1), not
/// both; `section` (an id) with `quantity` only.
pub fn hold_ask(body: &Map<String, Value>) -> ApiResult<HoldRequest> {
    let tickets = body.get("ticketIds").filter(|v| !v.is_null());
    let quantity = body.get("quantity").filter(|v| !v.is_null());
    let section = match body.get("section") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if crate::model::valid_event_id(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(ApiError::NotFound("no such section in this event".into()))
        }
        Some(_) => return Err(ApiError::BadRequest("section must be a string".into())),
    };
    if section.is_some() && tickets.is_some() {
        return Err(ApiError::BadRequest(
            "section goes with quantity; ticketIds name their tickets".into(),
        ));
    }
    match (tickets, quantity) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "give either ticketIds or quantity, not both".into(),
        )),
        (None, None) => Err(ApiError::BadRequest(
            "ticketIds or quantity is required".into(),
        )),
        (Some(Value::Array(items)), None) => {
            if items.is_empty() {
                return Err(ApiError::BadRequest("ticketIds must not be empty".into()));
            }
            if items.len() > MAX_TICKETS_IN_REQUEST {
                return Err(ApiError::BadRequest(format!(
                    "too many tickets: at most {MAX_TICKETS_IN_REQUEST}"
                )));
            }
            let mut ids = Vec::with_capacity(items.len());
            for v in items {
                ids.push(ticket_id_value(v, "ticketIds")?);
            }
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(ApiError::BadRequest(format!(
                    "ticketIds lists ticket {} twice",
                    w[0]
                )));
            }
            Ok(HoldRequest::Tickets(ids))
        }
        (Some(_), None) => Err(ApiError::BadRequest(
            "ticketIds must be an array of integers".into(),
        )),
        (None, Some(v)) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= MAX_TICKETS_IN_REQUEST => match section {
                Some(section) => Ok(HoldRequest::InSection {
                    section,
                    quantity: n,
                }),
                None => Ok(HoldRequest::Quantity(n)),
            },
            Some(n) if n >= 1 => Err(ApiError::BadRequest(format!(
                "too many tickets: at most {MAX_TICKETS_IN_REQUEST}"
            ))),
            _ => Err(ApiError::BadRequest(
                "quantity must be an integer of at least 1".into(),
            )),
        },
    }
}

/// An optional unsigned integer field (`what`: how the message names it).
pub fn opt_uint(body: &Map<String, Value>, field: &str) -> ApiResult<Option<u64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!("{field} must be an integer of at least 0"))
        }),
    }
}

/// The `Queue-Id` header of a hold: '' when there is none. Given more than
/// once, or not text, it is a 400.
pub fn queue_id(headers: &HeaderMap) -> ApiResult<&str> {
    match at_most_once(headers, "queue-id", "Queue-Id")? {
        None => Ok(""),
        Some(v) => match v.to_str() {
            Ok(s) if s.len() <= 256 => Ok(s.trim()),
            // Names no place: behind a waiting room, 403 queue_required
            // (the hold script's answer to any id it cannot read).
            _ => Ok("-"),
        },
    }
}

/// The `queue` object of an event's settings,
/// `{"enabled","maxActive","admissionSeconds"}`, each optional (what is
/// left out: for a new event its default, in a PATCH as it is); `null` is
/// `"enabled": false`.
pub fn queue(body: &Map<String, Value>) -> ApiResult<Option<crate::model::queue::QueuePatch>> {
    use crate::model::queue::{QueuePatch, MAX_ACTIVE, MAX_ADMISSION_SECS};
    let q = match body.get("queue") {
        None => return Ok(None),
        Some(Value::Null) => {
            return Ok(Some(QueuePatch {
                enabled: Some(false),
                ..QueuePatch::default()
            }))
        }
        Some(Value::Object(q)) => q,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "queue must be {\"enabled\", \"maxActive\", \"admissionSeconds\"}".into(),
            ))
        }
    };
    let enabled = match q.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "queue.enabled must be true or false".into(),
            ))
        }
    };
    let num = |f: &str, most: u64| -> ApiResult<Option<u64>> {
        match q.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=most).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::BadRequest(format!(
                    "queue.{f} must be a whole number 1..={most}"
                ))),
            },
        }
    };
    Ok(Some(QueuePatch {
        enabled,
        max_active: num("maxActive", MAX_ACTIVE)?,
        admission_ms: num("admissionSeconds", MAX_ADMISSION_SECS)?.map(|s| s * 1000),
    }))
}

/// An optional RFC 3339 time field, as Unix ms; `Some(None)` for an
/// explicit `null` (to remove it, in a PATCH).
pub fn opt_time(body: &Map<String, Value>, field: &str) -> ApiResult<Option<Option<u64>>> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => crate::time::parse_rfc3339_ms(s)
            .map(|ms| Some(Some(ms)))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{field} must be an RFC 3339 time such as 2026-12-01T20:00:00Z"
                ))
            }),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{field} must be an RFC 3339 time string"
        ))),
    }
}

/// `sections` of `POST /v1/events`: `[{"id","capacity","price"}]`.
pub fn sections(body: &Map<String, Value>) -> ApiResult<Option<Vec<crate::model::Section>>> {
    let items = match body.get("sections") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::BadRequest("sections must be an array".into())),
    };
    if items.is_empty() || items.len() > crate::model::MAX_SECTIONS {
        return Err(ApiError::BadRequest(format!(
            "sections must list 1..={} sections",
            crate::model::MAX_SECTIONS
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(ApiError::BadRequest(format!(
                "sections[{i}] must be an object with id, capacity and price"
            )));
        };
        let id = match o.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "sections[{i}].id must be a string"
                )))
            }
        };
        let num = |f: &str, what: &str| {
            o.get(f)
                .and_then(Value::as_u64)
                .ok_or_else(|| ApiError::BadRequest(format!("sections[{i}].{f} must be {what}")))
        };
        out.push(crate::model::Section {
            id,
            capacity: num("capacity", "a whole number of at least 1")?,
            price: num(
                "price",
                "a whole number of at least 0 (minor units of the currency)",
            )?,
        });
    }
    Ok(Some(out))
}

/// Whether `body` carries `X-Ticketctl-Signature: sha256=<hex HMAC-SHA256
/// of the body with secret>` (compared in constant time). Never with an
/// empty secret.
pub fn signed(headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    headers
        .get("x-ticketctl-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| crate::signature::verify(secret, body, sig))
}

/// The `Idempotency-Key` header: 1–255 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = at_most_once(headers, "idempotency-key", "Idempotency-Key")? else {
        return Ok(None);
    };
    let s = v.to_str().ok().filter(|s| {
        !s.is_empty()
            && s.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && s.bytes().all(|b| (0x20..0x7f).contains(&b))
    });
    match s {
        Some(s) => Ok(Some(s.to_string())),
        None => Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} printable characters"
        ))),
    }
}

/// Does the request carry `Authorization: Bearer <token>`? An empty
/// configured token matches nothing. Compared in constant time.
pub fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110).
    let Some((scheme, given)) = given.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    // In constant time (the length is not secret).
    subtle::ConstantTimeEq::ct_eq(given.trim().as_bytes(), token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn user_ids() {
        assert_eq!(user_id(&obj(json!({"userId": "alice"}))).unwrap(), "alice");
        assert_eq!(user_id(&obj(json!({"userId": 42}))).unwrap(), "42");
        assert_eq!(user_id(&obj(json!({"userId": -7}))).unwrap(), "-7");
        for bad in [
            json!({}),
            json!({"userId": null}),
            json!({"userId": ""}),
            json!({"userId": 1.5}),
            json!({"userId": true}),
            json!({"userId": ["a"]}),
            json!({"userId": "a\u{0007}b"}),
            json!({"userId": "x".repeat(129)}),
        ] {
            assert!(
                matches!(user_id(&obj(bad.clone())), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
        assert!(user_id(&obj(json!({"userId": "é".repeat(128)}))).is_ok());
    }

    /// Integers of any size keep their decimal text, as parsed from a body.
    #[test]
    fn integer_user_ids_of_any_size() {
        let parse =
            |body: &str| json_object(&HeaderMap::new(), Ok(Bytes::from(body.to_string()))).unwrap();
        for text in [
            "123456789012345678901234567890",
            "-9223372036854775809",
            "18446744073709551616",
            "0",
        ] {
            let body = parse(&format!("{{\"userId\":{text}}}"));
            assert_eq!(user_id(&body).unwrap(), text);
        }
        assert_eq!(user_id(&parse(r#"{"userId":-0}"#)).unwrap(), "0");
        let long = "9".repeat(129);
        for bad in ["1.0", "1e3", "-1.5E2", &long] {
            let body = parse(&format!("{{\"userId\":{bad}}}"));
            assert!(
                matches!(user_id(&body), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
        let big = parse(r#"{"ticketIds":[123456789012345678901234567890]}"#);
        let Err(ApiError::BadRequest(m)) = hold_ask(&big) else {
            panic!("a huge ticket id was taken")
        };
        assert!(m.contains("out of range") && m.len() < 100, "{m}");
    }

    #[test]
    fn hold_asks() {
        assert_eq!(
            hold_ask(&obj(json!({"ticketIds": [3, 1]}))).unwrap(),
            HoldRequest::Tickets(vec![3, 1])
        );
        assert_eq!(
            hold_ask(&obj(json!({"quantity": 2}))).unwrap(),
            HoldRequest::Quantity(2)
        );
        for bad in [
            json!({}),
            json!({"ticketIds": []}),
            json!({"ticketIds": [1, 1]}),
            json!({"ticketIds": [0]}),
            json!({"ticketIds": [-1]}),
            json!({"ticketIds": ["1"]}),
            json!({"ticketIds": [u64::MAX]}),
            json!({"ticketIds": [1.5]}),
            json!({"ticketIds": 1}),
            json!({"quantity": 0}),
            json!({"quantity": "2"}),
            json!({"quantity": 2, "ticketIds": [1]}),
            json!({"ticketIds": (1..=1001).collect::<Vec<u64>>()}),
        ] {
            assert!(
                matches!(hold_ask(&obj(bad.clone())), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies() {
        let mut h = HeaderMap::new();
        assert!(json_object(&h, Ok(Bytes::from_static(b"{\"a\":1}"))).is_ok());
        assert!(matches!(
            json_object(&h, Ok(Bytes::from_static(b"{"))),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            json_object(&h, Ok(Bytes::from_static(b"[]"))),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            json_object(&h, Ok(Bytes::new())),
            Err(ApiError::BadRequest(_))
        ));
        let message = |body: &'static [u8]| match json_object(&h, Ok(Bytes::from_static(body))) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        for body in [&b"[]"[..], b"5", b"null", b"\"x\"", b"true"] {
            assert_eq!(message(body), "the body must be a JSON object");
        }
        for body in [&b"{"[..], b"{\"a\":1} x", b"{\"a\":}"] {
            assert!(
                message(body).starts_with("malformed JSON: "),
                "{}",
                message(body)
            );
        }
        // A repeated field is refused, not left for the last to win.
        let m = message(b"{\"userId\":\"a\",\"ticketIds\":[1],\"userId\":\"b\"}");
        assert_eq!(m, "duplicate field \"userId\" in the body");
        let long = format!("{{\"{0}\":1,\"{0}\":2}}", "k".repeat(1000));
        match json_object(&h, Ok(Bytes::from(long))) {
            Err(ApiError::BadRequest(m)) => assert!(m.len() < 100, "{m}"),
            other => panic!("{other:?}"),
        }
        // Inside a field's value, names are not the request's fields.
        assert!(json_object(&h, Ok(Bytes::from_static(b"{\"a\":{\"b\":1},\"b\":2}"))).is_ok());
        let mut twice = HeaderMap::new();
        twice.append(header::CONTENT_TYPE, "application/json".parse().unwrap());
        twice.append(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            json_object(&twice, Ok(Bytes::from_static(b"{}"))),
            Err(ApiError::BadRequest(m)) if m == "Content-Type must be given once"
        ));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            json_object(&h, Ok(Bytes::from_static(b"{}"))),
            Err(ApiError::UnsupportedMediaType)
        ));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(json_object(&h, Ok(Bytes::from_static(b"{}"))).is_ok());
    }

    #[test]
    fn admin_tokens() {
        let mut h = HeaderMap::new();
        assert!(!is_admin(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(is_admin(&h, "s3cret"));
        assert!(!is_admin(&h, "s3cre"));
        assert!(!is_admin(&h, ""));
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(is_admin(&h, "s3cret"), "the scheme is case-insensitive");
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!is_admin(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(!is_admin(&h, ""));
    }

    #[test]
    fn idempotency_keys() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert("idempotency-key", "abc-1".parse().unwrap());
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("abc-1"));
        h.insert("idempotency-key", "x".repeat(256).parse().unwrap());
        assert!(idempotency_key(&h).is_err());
        // Two keys: which one would a retry carry?
        h.insert("idempotency-key", "abc-1".parse().unwrap());
        h.append("idempotency-key", "abc-2".parse().unwrap());
        assert!(matches!(
            idempotency_key(&h),
            Err(ApiError::BadRequest(m)) if m == "Idempotency-Key must be given once"
        ));
    }
}
