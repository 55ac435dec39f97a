//! Every route of the contract against a private Redis: success paths, each
//! listed bad input, expiry without a worker, idempotency.

mod common;

use common::Want::{Quantity, Tickets};
use common::{config, eventually, first_read, half_closed_exchange, ids, keys, metric, Api, Redis};
use serde_json::json;
use std::time::Duration;
use ticketctl::config::{Config, EventSeed};
use ticketctl::store::keys::{idempotency_binding, EVENTS, IDEMPOTENCY_TTL_SECS};

/// Long enough for a hold on event `short` (1 s) to have expired.
const SHORT_TTL_PASSED: Duration = Duration::from_millis(1100);

/// The status and code of every refused bad input.
const INVALID: (u16, &str) = (400, "invalid_request");

async fn api() -> (Redis, Api) {
    api_with(|cfg| cfg.events.push(seed("short", 10, 1, 3))).await
}

/// The API over a private Redis, with the test configuration changed first.
async fn api_with(change: impl FnOnce(&mut Config)) -> (Redis, Api) {
    let redis = Redis::start();
    let mut cfg = config(&redis);
    change(&mut cfg);
    let api = Api::start(cfg).await;
    (redis, api)
}

fn seed(id: &str, capacity: u64, ttl: u64, max_per_hold: u64) -> EventSeed {
    EventSeed {
        hold_ttl_seconds: ttl,
        max_tickets_per_hold: max_per_hold,
        ..EventSeed::new(id, capacity)
    }
}

#[tokio::test]
async fn events_are_created_once_and_counted_exactly() {
    let (_r, api) = api().await;
    let gig = json!({"id": "gig", "capacity": 5});
    let r = api.req("POST", "/v1/events", Some(gig.clone())).await;
    r.assert_error(401, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = api.create_event(gig).await;
    r.assert_status(201);
    assert_eq!(
        r.json(),
        json!({"id": "gig", "capacity": 5, "available": 5, "held": 0, "sold": 0, "holdTtlSeconds": 60, "maxTicketsPerHold": 10,
               "currency": "EUR", "salesStart": null, "salesEnd": null, "maxTicketsPerUser": 0, "maxExtensions": 0,
               "queue": {"enabled": false, "maxActive": 1000, "admissionSeconds": 600},
               "sections": [{"id": "general", "firstTicket": 1, "lastTicket": 5, "capacity": 5, "price": 0,
                             "available": 5, "held": 0, "sold": 0}],
               "orders": {"pending": 0, "completed": 0, "paid": 0, "cancelled": 0, "refunded": 0,
                          "refund_due": 0, "failed": 0}})
    );
    // The same settings again are the same event; others are a conflict.
    let same = json!({"id": "gig", "capacity": 5, "holdTtlSeconds": 60});
    api.create_event(same).await.assert_status(200);
    let other = json!({"id": "gig", "capacity": 6});
    api.create_event(other).await.assert_status(409);

    #[rustfmt::skip]
    let bad_events = [
        ("no id",                   json!({"capacity": 5})),
        ("a space in the id",       json!({"id": "a b", "capacity": 5})),
        ("no tickets",              json!({"id": "x", "capacity": 0})),
        ("over 10,000,000 tickets", json!({"id": "x", "capacity": 10_000_001})),
        ("capacity as a string",    json!({"id": "x", "capacity": "5"})),
        ("an id of 65 characters",  json!({"id": "x".repeat(65), "capacity": 1})),
    ];
    for (what, body) in bad_events {
        let r = api.create_event(body).await;
        assert_eq!((r.status, r.code().as_str()), INVALID, "{what}: {}", r.text);
    }
    // Messages name the fields of the request, not the config file's keys.
    for (field, value) in [("holdTtlSeconds", 0), ("maxTicketsPerHold", 1001)] {
        let r = api
            .create_event(json!({"id": "x", "capacity": 5, field: value}))
            .await;
        r.assert_error(400, "invalid_request");
        assert!(r.message().contains(field), "{}", r.message());
    }

    assert_eq!(api.counts("gig").await.0, 5);
    assert_eq!(api.get("/v1/events/nope").await.status, 404);
    assert_eq!(api.get("/v1/events/bad%20id").await.status, 404);
    let listed = api.get("/v1/events").await.json();
    let event_ids: Vec<_> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(event_ids, ["default", "gig", "short"]);
}

#[tokio::test]
async fn admin_routes_are_closed_without_a_configured_token() {
    let (_redis, api) = api_with(|cfg| cfg.server.admin_token = String::new()).await;
    let gig = json!({"id": "gig", "capacity": 5});
    assert_eq!(api.create_event(gig.clone()).await.status, 401);
    let empty_bearer = [("authorization", "Bearer ")];
    let r = api
        .raw("POST", "/v1/events", Some(gig.to_string()), &empty_bearer)
        .await;
    assert_eq!(r.status, 401);
    let r = api
        .admin("POST", "/api/ticket/release", Some(json!({"ticketId": 1})))
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn holds_purchases_and_orders() {
    let (r, api) = api().await;
    let h = api.hold("default", "alice", Tickets(&[1, 2])).await;
    h.assert_status(201);
    let hold = h.json();
    assert_eq!(hold["ticketIds"], json!([1, 2]));
    assert_eq!(hold["userId"], "alice");
    assert_eq!(hold["eventId"], "default");
    assert_eq!(hold["ttlMs"], 60_000);
    let expires = hold["expiresAt"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 24, "{expires}");
    let id = h.hold_id();

    // All or nothing, naming what is taken.
    let c = api.hold("default", "bob", Tickets(&[3, 2, 1])).await;
    c.assert_error(409, "tickets_unavailable");
    assert_eq!(c.json()["error"]["ticketIds"], json!([2, 1]));
    assert_eq!(api.counts("default").await.1, 2);

    // Quantity picks the lowest available tickets.
    let q = api.hold("default", 7, Quantity(3)).await;
    assert_eq!(q.status, 201);
    assert_eq!(q.json()["ticketIds"], json!([3, 4, 5]));
    assert_eq!(q.json()["userId"], "7");

    let g = api.get_hold(&id).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["holdId"], id.as_str());
    assert!(g.json()["ttlMs"].as_u64().unwrap() <= 60_000);

    // Only the holder buys or cancels.
    api.buy(&id, "mallory").await.assert_error(403, "forbidden");
    assert_eq!(api.cancel(&id, "mallory").await.status, 403);

    let p = api.buy(&id, "alice").await;
    p.assert_status(202);
    let order = p.json();
    assert_eq!(order["status"], "pending");
    assert_eq!(order["ticketIds"], json!([1, 2]));
    assert!(order.get("completedAt").is_none());
    let again = api.buy(&id, "alice").await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json(), order);
    let oid = order["orderId"].as_str().unwrap();
    let o = api.get(&format!("/v1/orders/{oid}")).await;
    assert_eq!((o.status, o.json()), (200, order.clone()));
    for unknown in ["default.o1.AAAAAAAAAAAAAAAAAAAAAA", "whatever"] {
        let o = api.get(&format!("/v1/orders/{unknown}")).await;
        assert_eq!(o.status, 404, "{unknown}");
    }

    // Bought holds are gone; exactly one job was queued.
    assert_eq!(api.get_hold(&id).await.status, 404);
    assert_eq!(r.cli(&["XLEN", &keys("default").jobs()]), "1");
    assert_eq!(api.counts("default").await, (95, 3, 2));

    // Cancel.
    let qid = q.hold_id();
    api.cancel(&qid, 7).await.assert_status(204);
    assert_eq!(api.cancel(&qid, 7).await.status, 404);
    assert_eq!(api.buy(&qid, "7").await.status, 404);
    assert_eq!(api.counts("default").await.0, 98);

    // A forged secret is not the hold.
    let forged = format!("{}AAAAAAAAAAAAAAAAAAAAAA", &id[..id.len() - 22]);
    assert_eq!(api.get_hold(&forged).await.status, 404);
    assert_eq!(api.get_hold("nonsense").await.status, 404);
    // So is another deadline: a hold has one id.
    let live_id = api.hold_ok("default", "d", Tickets(&[50])).await;
    let parts: Vec<&str> = live_id.split('.').collect();
    let deadline: u64 = parts[2].parse().unwrap();
    let moved = format!("{}.{}.{}.{}", parts[0], parts[1], deadline - 1000, parts[3]);
    assert_eq!(api.get_hold(&moved).await.status, 404);
    api.buy(&moved, "d").await.assert_status(404);
    api.cancel(&moved, "d").await.assert_status(404);
    assert_eq!(api.get_hold(&live_id).await.status, 200);
}

#[tokio::test]
async fn ticket_listing_is_paginated() {
    let (_r, api) = api().await;
    api.hold_ok("default", "a", Tickets(&[2, 4])).await;
    #[rustfmt::skip]
    let pages = [
        ("?limit=3",         json!({"ticketIds": [1, 3, 5], "next": 5})),
        ("?limit=3&after=5", json!({"ticketIds": [6, 7, 8], "next": 8})),
        ("?after=97",        json!({"ticketIds": [98, 99, 100], "next": null})),
        ("?status=held",     json!({"ticketIds": [2, 4], "next": null})),
    ];
    for (query, page) in pages {
        let r = api.get(&format!("/v1/events/default/tickets{query}")).await;
        assert_eq!(r.json(), page, "{query}");
    }
    let all = api.get("/v1/events/default/tickets").await.json();
    assert_eq!(ids(&all["ticketIds"]).len(), 98);
    #[rustfmt::skip]
    let bad_queries = [
        ("an unknown status",            "status=gone"),
        ("a limit of 0",                 "limit=0"),
        ("a limit that is not a number", "limit=x"),
        ("a limit over 10,000",          "limit=10001"),
        ("a negative start",             "after=-1"),
    ];
    for (what, query) in bad_queries {
        let r = api
            .get(&format!("/v1/events/default/tickets?{query}"))
            .await;
        assert_eq!(r.status, 400, "{what}: {query}");
    }
    assert_eq!(api.get("/v1/events/nope/tickets").await.status, 404);
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_json_error() {
    let (_r, api) = api().await;
    let path = "/v1/events/default/holds";
    let long_user = json!({"userId": "u".repeat(129), "ticketIds": [1]}).to_string();
    let over_16_kib = format!(
        r#"{{"userId":"a","ticketIds":[2],"pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    #[rustfmt::skip]
    let bad_holds = [
        ("not JSON",                     "{",                                        INVALID),
        ("an array",                     "[1]",                                      INVALID),
        ("an empty body",                "",                                         INVALID),
        ("no userId",                    r#"{"ticketIds":[1]}"#,                     INVALID),
        ("an empty userId",              r#"{"userId":"","ticketIds":[1]}"#,         INVALID),
        ("a null userId",                r#"{"userId":null,"ticketIds":[1]}"#,       INVALID),
        ("an object as userId",          r#"{"userId":{"a":1},"ticketIds":[1]}"#,    INVALID),
        ("a userId of 129 characters",   long_user.as_str(),                         INVALID),
        ("a NUL in the userId",          r#"{"userId":"a\u0000b","ticketIds":[1]}"#, INVALID),
        ("a ticket twice",               r#"{"userId":"a","ticketIds":[1,1]}"#,      INVALID),
        ("ticket 0",                     r#"{"userId":"a","ticketIds":[0]}"#,        INVALID),
        ("a ticket past capacity",       r#"{"userId":"a","ticketIds":[101]}"#,      INVALID),
        ("a ticket id as a string",      r#"{"userId":"a","ticketIds":["1"]}"#,      INVALID),
        ("11 tickets, over the limit",   r#"{"userId":"a","ticketIds":[1,2,3,4,5,6,7,8,9,10,11]}"#, INVALID),
        ("a quantity over the limit",    r#"{"userId":"a","quantity":11}"#,          INVALID),
        ("neither tickets nor quantity", r#"{"userId":"a"}"#,                        INVALID),
        ("a body over 16 KiB",           over_16_kib.as_str(),                       (413, "payload_too_large")),
    ];
    let json_type = [("content-type", "application/json")];
    for (what, body, expected) in bad_holds {
        let r = api.post_raw(path, body, &json_type).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            expected,
            "{what} -> {}",
            r.text
        );
        assert!(
            !r.text.contains("src/") && !r.text.contains("panicked"),
            "{what}: {}",
            r.text
        );
    }
    let one = r#"{"userId":"a","ticketIds":[1]}"#;
    let r = api
        .post_raw(path, one, &[("content-type", "text/plain")])
        .await;
    r.assert_error(415, "unsupported_media_type");
    let any = r#"{"userId":"a","quantity":1}"#;
    let r = api.post_raw(path, any, &[("idempotency-key", "")]).await;
    assert_eq!(r.status, 400, "an empty Idempotency-Key: {}", r.text);
    // No Content-Type at all is accepted as JSON.
    let extra = r#"{"userId":"a","ticketIds":[1],"extra":true}"#;
    api.post_raw(path, extra, &[]).await.assert_status(201);
    // A declared length over the limit is refused before any of the body
    // is read, and without a 100 Continue inviting it.
    for expect in ["", "Expect: 100-continue\r\n"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 20000000\r\n{expect}\r\n{{"
        );
        let answer = first_read(api.addr, head.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    let r = api.req("PUT", "/v1/events/default", None).await;
    r.assert_error(405, "method_not_allowed");
    api.get("/nowhere").await.assert_error(404, "not_found");
    // Still serving.
    assert_eq!(api.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn an_expired_hold_frees_its_tickets_without_any_worker() {
    let (_r, api) = api().await;
    let h = api.hold("short", "a", Tickets(&[1, 2])).await;
    assert_eq!(h.status, 201);
    let id = h.hold_id();
    assert_eq!(h.json()["ttlMs"], 1000);
    assert_eq!(api.hold("short", "b", Tickets(&[2])).await.status, 409);
    tokio::time::sleep(SHORT_TTL_PASSED).await;
    assert_eq!(api.get_hold(&id).await.status, 404);
    // Counts are exact the instant the deadline passes.
    let (available, held, _) = api.counts("short").await;
    assert_eq!((available, held), (10, 0));
    api.hold("short", "b", Tickets(&[2]))
        .await
        .assert_status(201);
    api.buy(&id, "a").await.assert_error(409, "hold_expired");
    assert_eq!(api.counts("short").await, (9, 1, 0));
}

#[tokio::test]
async fn an_expired_hold_cannot_be_bought_before_anything_released_it() {
    let (_r, api) = api().await;
    let id = api.hold_ok("short", "a", Quantity(2)).await;
    tokio::time::sleep(SHORT_TTL_PASSED).await;
    api.buy(&id, "a").await.assert_error(409, "hold_expired");
    assert_eq!(api.buy(&id, "a").await.status, 409);
    // Quantity holds reuse the released tickets.
    let q = api.hold("short", "b", Quantity(3)).await;
    assert_eq!(q.json()["ticketIds"], json!([1, 2, 3]));
}

#[tokio::test]
async fn quantity_holds_see_through_expired_holds() {
    let (_r, api) = api().await;
    for _ in 0..4 {
        assert_eq!(api.hold("short", "a", Quantity(2)).await.status, 201);
    }
    let r = api.hold("short", "a", Quantity(3)).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["ticketIds"], json!([]));
    tokio::time::sleep(SHORT_TTL_PASSED).await;
    api.hold("short", "b", Quantity(3)).await.assert_status(201);
}

#[tokio::test]
async fn idempotency_keys_replay_or_refuse() {
    let (r, api) = api().await;
    let holds = "/v1/events/default/holds";
    let two = json!({"userId": "a", "quantity": 2});
    let first = api.with_key(holds, &two, "k-1").await;
    assert_eq!(first.status, 201);
    let second = api.with_key(holds, &two, "k-1").await;
    assert_eq!((second.status, second.json()), (201, first.json()));
    assert_eq!(api.counts("default").await.1, 2);
    let three = json!({"userId": "a", "quantity": 3});
    api.with_key(holds, &three, "k-1").await.assert_status(422);
    // A conflict is the first response too, and is replayed as such.
    let taken = json!({"userId": "b", "ticketIds": [1]});
    let c1 = api.with_key(holds, &taken, "k-2").await;
    assert_eq!(c1.status, 409);
    let c2 = api.with_key(holds, &taken, "k-2").await;
    assert_eq!((c2.status, c2.json()), (409, c1.json()));
    let free = json!({"userId": "b", "ticketIds": [9]});
    let c3 = api.with_key(holds, &free, "k-2").await;
    assert_eq!(c3.status, 422);
    // A key names one request across events and routes: the same body on
    // another event is another request.
    let elsewhere = api.with_key("/v1/events/short/holds", &two, "k-1").await;
    elsewhere.assert_error(422, "idempotency_key_reused");
    assert_eq!(api.counts("short").await.1, 0);

    let path = format!("/v1/holds/{}/purchase", first.hold_id());
    let buy = json!({"userId": "a"});
    let p1 = api.with_key(&path, &buy, "p-1").await;
    let p2 = api.with_key(&path, &buy, "p-1").await;
    assert_eq!((p1.status, p2.status), (202, 202));
    assert_eq!(p1.json(), p2.json());
    let p3 = api.with_key(&path, &json!({"userId": "b"}), "p-1").await;
    assert_eq!(p3.status, 422);
    // A hold's key used again on a purchase.
    api.with_key(&path, &buy, "k-1").await.assert_status(422);
    assert_eq!(r.cli(&["XLEN", &keys("default").jobs()]), "1");
    for key in [
        keys("default").idempotency("hold", "k-1"),
        idempotency_binding("k-1"),
        idempotency_binding("p-1"),
    ] {
        // Kept for IDEMPOTENCY_TTL_SECS (less the few seconds this test took).
        let ttl: u64 = r.cli(&["TTL", &key]).parse().unwrap();
        assert!(
            ttl > IDEMPOTENCY_TTL_SECS - 400 && ttl <= IDEMPOTENCY_TTL_SECS,
            "{key}: {ttl}"
        );
    }
    // The record of the answer keeps the request's fingerprint alone (as
    // records written before the time to live came with it).
    let record = r.cli(&["GET", &keys("default").idempotency("hold", "k-1")]);
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    let fp = record["fp"].as_str().unwrap();
    assert!(!fp.starts_with(&format!("{IDEMPOTENCY_TTL_SECS}|")), "{fp}");
    {}
}

#[tokio::test]
async fn a_body_still_arriving_at_the_time_limit_is_408_not_503() {
    let (_redis, api) =
        api_with(|cfg| cfg.server.request_timeout = Duration::from_millis(500)).await;
    // 100 bytes declared, 10 sent, then nothing.
    let head = b"POST /v1/events/default/holds HTTP/1.1\r\nHost: x\r\n\
        Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"userId\":";
    let answer = first_read(api.addr, head.to_vec()).await.to_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // Still serving, and the 408 is the client's, not counted as a 503.
    assert_eq!(api.get("/healthz").await.status, 200);
    let m = api.get("/metrics").await.text;
    assert!(!m.contains("status=\"503\""), "{m}");
    assert!(m.contains("status=\"408\""), "{m}");
}

#[tokio::test]
async fn the_available_listing_is_whole_and_ascending_across_pages() {
    // Sent a page (100,000 ids) at a time: three pages here, with holds on
    // each side of page boundaries and of the bitmap read boundary at
    // 262,144 tickets (32 KiB).
    let (_redis, api) = api_with(|cfg| {
        cfg.compat.event = "big".into();
        cfg.events.push(seed("big", 300_000, 60, 10));
    })
    .await;
    let held = [
        1, 100_000, 100_001, 100_002, 262_143, 262_144, 262_145, 300_000,
    ];
    let h = api.hold("big", "a", Tickets(&held)).await;
    h.assert_status(201);
    let a = api.get("/api/ticket/available").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    let listed = ids(&a.json()["availableTickets"]);
    let want: Vec<u64> = (1..=300_000).filter(|t| !held.contains(t)).collect();
    assert_eq!(listed.len(), want.len());
    assert!(
        listed == want,
        "ids differ from every ticket but the held ones"
    );
    // Everything available again: 300,000 ids in three pages.
    let path = format!("/v1/holds/{}", h.hold_id());
    let r = api
        .admin("DELETE", &path, Some(json!({"userId": "a"})))
        .await;
    r.assert_status(204);
    let a = api.get("/api/ticket/available").await.json();
    assert_eq!(ids(&a["availableTickets"]).len(), 300_000);
}

#[tokio::test]
async fn compatibility_routes_behave_like_the_proof_of_concept() {
    let (_r, api) = api().await;
    let available =
        || async { ids(&api.get("/api/ticket/available").await.json()["availableTickets"]) };
    assert_eq!(available().await.len(), 100);
    let r = api.reserve("u1", 5).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        (j["success"].as_bool(), j["ticketId"].as_u64()),
        (Some(true), Some(5))
    );
    assert!(j["holdId"].is_string() && j["expiresAt"].is_string());
    let r = api.reserve("u2", 5).await;
    let taken = json!({"success": false, "error": "Ticket not available."});
    assert_eq!((r.status, r.json()), (409, taken));
    let r = api
        .req("POST", "/api/ticket/reserve", Some(json!({"ticketId": 6})))
        .await;
    r.assert_error(400, "invalid_request");
    assert_eq!(api.reserve("u1", 0).await.status, 400);
    assert!(!available().await.contains(&5));

    // Only the user who reserved buys, and once.
    let r = api.buy_ticket("u2", 5).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["success"], false);
    assert!(r.json()["reason"].is_string());
    let r = api.buy_ticket("u1", 5).await;
    r.assert_status(200);
    assert_eq!(r.json()["success"], true);
    let oid = r.json()["orderId"].as_str().unwrap().to_string();
    let order = api.get(&format!("/v1/orders/{oid}")).await.json();
    assert_eq!(order["ticketIds"], json!([5]));
    assert_eq!(api.buy_ticket("u1", 5).await.status, 409);

    // Release takes the admin token and a held ticket.
    api.reserve("u3", 7).await;
    let r = api
        .req("POST", "/api/ticket/release", Some(json!({"ticketId": 7})))
        .await;
    assert_eq!(r.status, 401);
    let r = api.release(7).await;
    assert_eq!((r.status, r.json()["success"].as_bool()), (200, Some(true)));
    let r = api.release(7).await;
    assert_eq!(
        (r.status, r.json()["success"].as_bool()),
        (409, Some(false))
    );
    assert_eq!(
        api.release(5).await.status,
        409,
        "a sold ticket is not held"
    );
    assert_eq!(api.reserve("u4", 7).await.status, 200);
}

#[tokio::test]
async fn metrics_skip_a_damaged_event_and_an_id_unfit_for_a_label() {
    let (redis, api) = api().await;
    redis.cli(&["DEL", &keys("short").meta()]);
    redis.cli(&["SET", &keys("short").meta(), "not a hash"]);
    redis.cli(&["SADD", EVENTS, "bad\"id\nx"]);
    let r = api.get("/metrics").await;
    assert_eq!(r.status, 200);
    let m = r.text;
    assert!(m.contains("ticketctl_redis_up 1\n"), "{m}");
    assert!(m.contains("ticketctl_event_tickets{event=\"default\",state=\"available\"} 100\n"));
    assert!(!m.contains("event=\"short\",state"), "{m}");
    assert!(!m.contains("bad"), "{m}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (mut redis, api) = api().await;
    assert_eq!(api.get("/healthz").await.status, 200);
    assert_eq!(api.get("/readyz").await.status, 200);
    api.hold_ok("default", "a", Quantity(1)).await;
    // Bought: an order and a queued job (no worker runs).
    let id = api.hold_ok("default", "b", Tickets(&[3])).await;
    api.buy(&id, "b").await.assert_status(202);
    let r = api.get("/metrics").await;
    assert_eq!(r.status, 200);
    let m = r.text;
    assert!(m.contains(r#"ticketctl_http_requests_total{method="POST",route="/v1/events/{id}/holds",status="201"} 2"#), "{m}");
    assert!(m.contains("ticketctl_http_request_duration_seconds_bucket"));
    assert!(m.contains("ticketctl_holds_created_total 2\n"));
    assert!(m.contains("ticketctl_purchases_total 1\n"));
    // Each hold and the purchase went to Redis in a grouped call (of one,
    // on an idle server).
    for line in [
        "ticketctl_grouped_requests_total{op=\"hold\"} 2\n",
        "ticketctl_grouped_call_duration_seconds_count{op=\"hold\"} 2\n",
        "ticketctl_grouped_requests_total{op=\"purchase\"} 1\n",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    // Each event's tickets and orders, read from Redis at the scrape.
    for line in [
        "ticketctl_redis_up 1\n",
        "ticketctl_events 2\n",
        "ticketctl_event_tickets{event=\"default\",state=\"available\"} 98\n",
        "ticketctl_event_tickets{event=\"default\",state=\"held\"} 1\n",
        "ticketctl_event_tickets{event=\"default\",state=\"sold\"} 1\n",
        "ticketctl_event_tickets{event=\"short\",state=\"available\"} 10\n",
        "ticketctl_event_orders{event=\"default\",status=\"pending\"} 1\n",
        "ticketctl_event_orders{event=\"short\",status=\"pending\"} 0\n",
        "ticketctl_purchase_jobs_queued{event=\"default\"} 1\n",
        "ticketctl_purchase_jobs_queued{event=\"short\"} 0\n",
        "ticketctl_purchase_jobs_in_flight{event=\"default\"} 0\n",
        "ticketctl_dead_letters{event=\"default\"} 0\n",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }

    // Redis goes away: 503 with Retry-After, health still fine; it comes back: recovered without a restart.
    let port = redis.port;
    redis.kill();
    assert_eq!(api.get("/readyz").await.status, 503);
    let r = api.hold("default", "a", Quantity(1)).await;
    r.assert_error(503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(!r.text.to_lowercase().contains("refused"), "{}", r.text);
    assert_eq!(api.get("/healthz").await.status, 200);
    // Metrics still answer; once the per-event gauges read a few seconds
    // ago are stale, they say Redis could not be read.
    let down = eventually(50, Duration::from_millis(200), || async {
        let r = api.get("/metrics").await;
        assert_eq!(r.status, 200);
        let m = r.text;
        assert!(m.contains("ticketctl_holds_created_total 2\n"));
        let down = m.contains("ticketctl_redis_up 0\n");
        assert!(!down || !m.contains("ticketctl_event_tickets{"), "{m}");
        down
    })
    .await;
    assert!(down, "metrics never said Redis was unreadable");
    let _redis2 = Redis::start_on(port, &[]);
    let ready = || async { api.get("/readyz").await.status == 200 };
    let ok = eventually(50, Duration::from_millis(100), ready).await;
    assert!(ok, "readyz did not recover");
    // The fresh Redis has no events: the API answers 404, not 500.
    assert_eq!(api.get("/v1/events/default").await.status, 404);
}

#[tokio::test]
async fn a_long_trail_of_cancelled_holds_never_hides_expired_ones() {
    use ticketctl::model::{HoldOutcome, HoldRequest};
    use ticketctl::store::HoldRef;
    let (_r, api) = api().await;
    let tiny = json!({"id": "tiny", "capacity": 2, "holdTtlSeconds": 1});
    assert_eq!(api.create_event(tiny).await.status, 201);
    // Thousands of cancelled holds stay in the schedule until its head passes them.
    for i in 0..4001 {
        let user = format!("u{i}");
        let HoldOutcome::Held { hold, .. } = api
            .store
            .hold("tiny", &user, &HoldRequest::Quantity(1), None)
            .await
            .unwrap()
        else {
            panic!()
        };
        api.store
            .cancel(&HoldRef::Id(&hold.id), Some(&user))
            .await
            .unwrap();
    }
    assert_eq!(api.hold("tiny", "late", Quantity(2)).await.status, 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.hold("tiny", "next", Quantity(2))
        .await
        .assert_status(201);
    let (available, held, _) = api.counts("tiny").await;
    assert_eq!((available, held), (0, 2));
}

#[tokio::test]
async fn ids_and_tickets_that_never_existed_are_refused_plainly() {
    let (_r, api) = api().await;
    // A well-formed hold id with a number this event never issued: 404, not 409.
    let never_issued = "default.h987654.1.AAAAAAAAAAAAAAAAAAAAAA";
    let p = api.buy(never_issued, "a").await;
    p.assert_error(404, "not_found");
    // Compatibility routes: a ticket out of range is bad input, not a conflict.
    let r = api.buy_ticket("a", 1000).await;
    r.assert_error(400, "invalid_request");
    api.release(1000).await.assert_error(400, "invalid_request");
}

/// Every release of an expired hold this process makes is counted in the
/// metrics: by the sweep before a count, by a purchase or cancel that meets
/// the expired hold, and by a hold that releases some on its way, whether it
/// then gets its tickets or not.
#[tokio::test]
async fn every_release_of_an_expired_hold_is_counted() {
    let (_r, api) = api().await;
    let expired = || async { metric(&api.metrics().await, "ticketctl_holds_expired_total") };
    let status = |user: &'static str, n: u64| {
        let api = &api;
        async move { api.hold("short", user, Quantity(n)).await.status }
    };
    // A purchase that meets its hold expired.
    let a = api.hold_ok("short", "a", Quantity(2)).await;
    tokio::time::sleep(SHORT_TTL_PASSED).await;
    assert_eq!(api.buy(&a, "a").await.status, 409);
    assert_eq!(expired().await, 1);
    // A cancel that meets its hold expired.
    let b = api.hold_ok("short", "b", Quantity(1)).await;
    tokio::time::sleep(SHORT_TTL_PASSED).await;
    assert_eq!(api.cancel(&b, "b").await.status, 404);
    assert_eq!(expired().await, 2);
    // A quantity hold that releases an expired hold on its way and still
    // finds too few tickets (10 tickets): c's hold has expired, d's, e's and
    // g's (8 tickets) have not.
    assert_eq!(status("c", 1).await, 201);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status("d", 3).await, 201);
    assert_eq!(status("e", 3).await, 201);
    assert_eq!(status("g", 2).await, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status("f", 3).await, 409);
    assert_eq!(expired().await, 3);
    // One that releases three on its way and gets its tickets.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(status("h", 3).await, 201);
    assert_eq!(expired().await, 6);
}

/// A hold released by the sweep before a count is counted as expired in the
/// metrics, as one released by a worker or inline is.
#[tokio::test]
async fn holds_released_by_a_count_are_counted_as_expired() {
    let (_r, api) = api().await;
    assert_eq!(api.hold("short", "a", Quantity(2)).await.status, 201);
    tokio::time::sleep(SHORT_TTL_PASSED).await;
    assert_eq!(api.counts("short").await.1, 0);
    let m = api.metrics().await;
    assert!(m.contains("ticketctl_holds_expired_total 1\n"), "{m}");
}

/// Redis out of memory (`maxmemory` reached, no eviction) refuses a hold or
/// a purchase before its first write: 503 with Retry-After, as for any
/// Redis that cannot take writes now, and nothing is held or sold.
#[tokio::test]
async fn redis_out_of_memory_is_503_and_changes_nothing() {
    let (redis, api) = api().await;
    let id = api.hold_ok("default", "a", Tickets(&[1])).await;
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let r = api.hold("default", "b", Tickets(&[1])).await;
    r.assert_error(503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    api.buy(&id, "a").await.assert_error(503, "unavailable");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let (_, held, sold) = api.counts("default").await;
    assert_eq!((held, sold), (1, 0));
    api.buy(&id, "a").await.assert_status(202);
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let redis = Redis::start();
    let api = Api::start(config(&redis)).await;
    let body = json!({"userId": "half", "quantity": 1}).to_string();
    let req = format!(
        "POST /v1/events/default/holds HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = half_closed_exchange(api.addr, req.into_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let metrics = api.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ticketctl_http_requests_total")
                && l.contains("status=\"201\"")
                && l.contains("holds")),
        "the request is counted"
    );
}
