//! The OpenAPI 3 document served at `/openapi.json`, built from the route
//! table (`routes::ROUTES`, the same list that builds the router and names
//! the metric labels) and the JSON shapes the handlers read and write.

use serde_json::{json, Value};

use super::input::{MAX_IDEMPOTENCY_KEY_LEN, MAX_TICKETS_IN_REQUEST};
use super::routes::{Access, ROUTES};
use super::v1::MAX_PAGE;
use crate::model::{
    DEFAULT_CURRENCY, DEFAULT_HOLD_TTL_SECS, DEFAULT_MAX_PER_HOLD, EVENT_ID_PATTERN, MAX_CAPACITY,
    MAX_EXTENSIONS, MAX_HOLD_TTL_SECS, MAX_PRICE, MAX_SECTIONS, MAX_TICKETS_PER_HOLD,
    MAX_USER_ID_CHARS,
};

fn schemas() -> Value {
    let user = json!({"oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_CHARS, "description": "no control characters"},
        {"type": "integer"}
    ], "description": "the buyer; with [auth] mode = \"jwt\" it may be left out, and must equal the token's sub when given"});
    let ticket = json!({"type": "integer", "minimum": 1, "maximum": MAX_CAPACITY});
    let queue = json!({"type": "object", "nullable": true, "properties": {
        "enabled": {"type": "boolean", "default": false},
        "maxActive": {"type": "integer", "minimum": 1, "maximum": crate::model::queue::MAX_ACTIVE, "default": crate::model::queue::DEFAULT_MAX_ACTIVE},
        "admissionSeconds": {"type": "integer", "minimum": 1, "maximum": crate::model::queue::MAX_ADMISSION_SECS, "default": crate::model::queue::DEFAULT_ADMISSION_SECS}},
        "description": "a waiting room: holds then need the Queue-Id header of an admitted place. On create what is left out takes its default; in a PATCH it stays as it is"});
    let time = json!({"type": "string", "format": "date-time"});
    let money = json!({"type": "integer", "minimum": 0, "description": "minor units of the currency (cents)"});
    let price = json!({"type": "integer", "minimum": 0, "maximum": MAX_PRICE, "description": "minor units of the currency (cents)"});
    let currency = json!({"type": "string", "pattern": "^[A-Z]{3}$"});
    let opt_time = json!({"type": "string", "format": "date-time", "nullable": true});
    let hold_ttl = json!({"type": "integer", "minimum": 1, "maximum": MAX_HOLD_TTL_SECS, "default": DEFAULT_HOLD_TTL_SECS});
    let per_hold = json!({"type": "integer", "minimum": 1, "maximum": MAX_TICKETS_PER_HOLD, "default": DEFAULT_MAX_PER_HOLD});
    let per_user =
        json!({"type": "integer", "minimum": 0, "default": 0, "description": "0: no limit"});
    let extensions =
        json!({"type": "integer", "minimum": 0, "maximum": MAX_EXTENSIONS, "default": 0});
    json!({
        "EventCreate": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "pattern": EVENT_ID_PATTERN},
            "capacity": {"type": "integer", "minimum": 1, "maximum": MAX_CAPACITY, "description": "required without sections; with them, their sum"},
            "holdTtlSeconds": hold_ttl,
            "maxTicketsPerHold": per_hold,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": DEFAULT_CURRENCY},
            "sections": {"type": "array", "minItems": 1, "maxItems": MAX_SECTIONS, "items": {"type": "object", "required": ["id", "capacity", "price"], "properties": {
                "id": {"type": "string", "pattern": EVENT_ID_PATTERN}, "capacity": {"type": "integer", "minimum": 1}, "price": price}},
                "description": "consecutive ticket ranges in the order given"},
            "salesStart": opt_time, "salesEnd": opt_time,
            "maxTicketsPerUser": per_user, "maxExtensions": extensions, "queue": queue}},
        "EventPatch": {"type": "object", "properties": {
            "salesStart": opt_time, "salesEnd": opt_time, "maxTicketsPerUser": per_user, "maxExtensions": extensions,
            "queue": queue,
            "holdTtlSeconds": hold_ttl, "maxTicketsPerHold": per_hold,
            "sections": {"type": "array", "items": {"type": "object", "required": ["id", "price"], "properties": {
                "id": {"type": "string"}, "price": price}}}},
            "description": "applies to holds made after it; null removes a sale window bound"},
        "Event": {"type": "object", "required": ["id", "capacity", "available", "held", "sold", "holdTtlSeconds", "maxTicketsPerHold",
                "currency", "salesStart", "salesEnd", "maxTicketsPerUser", "maxExtensions", "sections"], "properties": {
            "id": {"type": "string"}, "capacity": {"type": "integer"}, "available": {"type": "integer"},
            "held": {"type": "integer"}, "sold": {"type": "integer"},
            "holdTtlSeconds": {"type": "integer"}, "maxTicketsPerHold": {"type": "integer"},
            "currency": currency, "salesStart": opt_time, "salesEnd": opt_time,
            "maxTicketsPerUser": {"type": "integer"}, "maxExtensions": {"type": "integer"}, "queue": queue,
            "sections": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "firstTicket": {"type": "integer"}, "lastTicket": {"type": "integer"},
                "capacity": {"type": "integer"}, "price": money, "available": {"type": "integer"},
                "held": {"type": "integer"}, "sold": {"type": "integer"}}}}}},
        "EventList": {"type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}},
        "TicketPage": {"type": "object", "required": ["ticketIds", "next"], "properties": {
            "ticketIds": {"type": "array", "items": {"type": "integer"}}, "next": {"type": "integer", "nullable": true}}},
        "HoldCreate": {"type": "object", "required": ["userId"], "properties": {
            "userId": user,
            "ticketIds": {"type": "array", "items": ticket, "minItems": 1, "maxItems": MAX_TICKETS_IN_REQUEST, "uniqueItems": true, "nullable": true},
            "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_TICKETS_IN_REQUEST, "nullable": true},
            "section": {"type": "string", "nullable": true, "description": "with quantity: the lowest free tickets of this section"}},
            "description": "exactly one of ticketIds and quantity (null counts as not given)"},
        "Hold": {"type": "object", "required": ["holdId", "eventId", "userId", "ticketIds", "expiresAt", "ttlMs", "amount", "currency"], "properties": {
            "holdId": {"type": "string"}, "eventId": {"type": "string"}, "userId": {"type": "string"},
            "ticketIds": {"type": "array", "items": {"type": "integer"}}, "expiresAt": time, "ttlMs": {"type": "integer"},
            "amount": money, "currency": currency}},
        "UserBody": {"type": "object", "required": ["userId"], "properties": {"userId": user}},
        "QueuePlace": {"type": "object", "required": ["queueId", "eventId", "state"], "properties": {
            "queueId": {"type": "string"}, "eventId": {"type": "string"},
            "userId": {"type": "string", "description": "on joining"},
            "state": {"type": "string", "enum": ["waiting", "admitted", "expired", "sold_out"]},
            "position": {"type": "integer", "minimum": 1, "description": "while waiting: 1 is the next one in"},
            "admittedUntil": time}},
        "PaymentResult": {"type": "object", "required": ["outcome", "reference", "amount"], "properties": {
            "outcome": {"type": "string", "enum": ["paid", "declined"]}, "reference": {"type": "string", "minLength": 1, "maxLength": 255},
            "amount": money},
            "description": "signed: X-Ticketctl-Signature: sha256=<hex HMAC-SHA256 of the raw body with payment.secret>"},
        "Order": {"type": "object", "required": ["orderId", "eventId", "userId", "ticketIds", "status", "amount", "currency", "createdAt"], "properties": {
            "orderId": {"type": "string"}, "eventId": {"type": "string"}, "userId": {"type": "string"},
            "ticketIds": {"type": "array", "items": {"type": "integer"}},
            "amount": money, "currency": currency,
            "status": {"type": "string", "enum": ["pending", "completed", "paid", "cancelled", "refunded", "refund_due", "failed"]},
            "cancelReason": {"type": "string", "enum": ["declined", "payment_timeout", "operator"]},
            "createdAt": time, "completedAt": time, "failedAt": time}},
        "CompatAvailable": {"type": "object", "properties": {"availableTickets": {"type": "array", "items": {"type": "integer"}}}},
        "CompatReserve": {"type": "object", "required": ["userId", "ticketId"], "properties": {"userId": user, "ticketId": ticket}},
        "CompatRelease": {"type": "object", "required": ["ticketId"], "properties": {"ticketId": ticket}},
        "CompatReserved": {"type": "object", "properties": {"success": {"type": "boolean"}, "ticketId": {"type": "integer"},
            "holdId": {"type": "string"}, "expiresAt": time}},
        "CompatBought": {"type": "object", "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}, "orderId": {"type": "string"}}},
        "CompatReleased": {"type": "object", "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}}},
        "CompatConflict": {"type": "object", "required": ["success"], "properties": {"success": {"type": "boolean", "enum": [false]},
            "error": {"type": "string"}, "reason": {"type": "string"}},
            "description": "the proof of concept's 409 body: error (reserve, release) or reason (buy)"},
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "ticketIds": {"type": "array", "items": {"type": "integer"}},
            "remaining": {"type": "integer", "description": "user_limit: tickets still allowed to this buyer"},
            "salesStart": time, "salesEnd": time}}}},
    })
}

fn params(path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if path.ends_with("/tickets") {
        // An empty value (`?limit=&after=`, as the contract writes the
        // route) is taken as the default.
        out.push(json!({"name": "status", "in": "query", "allowEmptyValue": true, "schema": {"type": "string", "enum": ["available", "held", "sold"]}}));
        out.push(json!({"name": "limit", "in": "query", "allowEmptyValue": true, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}}));
        out.push(
            json!({"name": "after", "in": "query", "allowEmptyValue": true, "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX}}),
        );
    }
    if path.ends_with("/holds") || path.ends_with("/purchase") {
        out.push(json!({"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LEN, "pattern": "^[!-~]([ -~]*[!-~])?$"}}));
    }
    out
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut responses = serde_json::Map::new();
        let ok = match route.ok.1 {
            Some(s) => {
                json!({"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}}})
            }
            None => json!({"description": "success"}),
        };
        if let Some(code) = route.also_ok {
            responses.insert(code.to_string(), ok.clone());
        }
        responses.insert(route.ok.0.to_string(), ok);
        // The per-IP rate limit (when configured) answers 429 on every
        // route but the probes.
        let limited = !super::NOT_RATE_LIMITED.contains(&route.path);
        let mut extra = Vec::new();
        if limited && !route.errors.contains(&429) {
            extra.push(429);
        }
        // A body still arriving at server.request_timeout answers 408.
        if route.body.is_some() {
            extra.push(408);
        }
        for code in route.errors.iter().chain(&extra) {
            // The compatibility routes keep the proof of concept's 409 bodies.
            let schema = if *code == 409 && route.path.starts_with("/api/") {
                "CompatConflict"
            } else {
                "Error"
            };
            responses.insert(
                code.to_string(),
                json!({"description": "error", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
            );
        }
        let mut op = json!({"summary": route.summary, "parameters": params(route.path), "responses": responses});
        if let Some(b) = route.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        match route.access {
            Access::Admin => op["security"] = json!([{"admin": []}]),
            // With `[auth] mode = "jwt"` only; else no credential.
            Access::Buyer => op["security"] = json!([{}, {"buyer": []}]),
            Access::Open => {}
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "ticketctl", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Ticket holds and purchases on Redis. Errors are {\"error\":{\"code\",\"message\"}}."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}, "buyer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "with [auth] mode = \"jwt\": the buyer's token; its sub is the userId"}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_parameters() {
        let doc = document();
        assert_eq!(
            doc["paths"]["/v1/events/{id}/holds"]["post"]["responses"]["201"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/Hold"
        );
        assert_eq!(
            doc["paths"]["/v1/holds/{hold_id}"]["delete"]["parameters"][0]["name"],
            "hold_id"
        );
        assert!(doc["paths"]["/v1/events"]["post"]["security"].is_array());
        let create = &doc["paths"]["/v1/events"]["post"]["responses"];
        assert_eq!(create["200"], create["201"], "same settings again: 200");
        assert_eq!(
            doc["paths"]["/api/ticket/buy"]["post"]["responses"]["409"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/CompatConflict"
        );
        assert_eq!(
            doc["paths"]["/v1/events/{id}/holds"]["post"]["responses"]["409"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        // The per-IP limit's 429 is listed wherever it can answer.
        for (path, method, listed) in [
            ("/v1/orders/{order_id}", "get", true),
            ("/openapi.json", "get", true),
            ("/v1/events", "post", true),
            ("/healthz", "get", false),
            ("/metrics", "get", false),
        ] {
            let r = &doc["paths"][path][method]["responses"]["429"];
            assert_eq!(r.is_object(), listed, "{method} {path}");
        }
        // 408 wherever a request body is read.
        let r = &doc["paths"]["/v1/events/{id}/holds"]["post"]["responses"]["408"];
        assert!(r.is_object());
        assert!(!doc["paths"]["/healthz"]["get"]["responses"]["408"].is_object());
        // OpenAPI 3.0 has no type lists: `null` is `nullable`.
        let text = doc.to_string();
        assert!(!text.contains(r#""type":["#), "a type list in {text}");
        for route in ROUTES {
            assert!(
                doc["paths"][route.path][route.method].is_object(),
                "{} {}",
                route.method,
                route.path
            );
            if let Some(b) = route.body {
                assert!(doc["components"]["schemas"][b].is_object(), "{b}");
            }
            if let Some(s) = route.ok.1 {
                assert!(doc["components"]["schemas"][s].is_object(), "{s}");
            }
        }
    }
}
