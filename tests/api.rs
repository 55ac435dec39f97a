//! Every route of the contract against a private Redis: success paths, each
//! listed bad input, expiry without a worker, idempotency.

mod common;

use common::{config, Api, Redis};
use serde_json::json;
use std::time::Duration;
use ticketctl::config::{Config, EventSeed};

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
        id: id.into(),
        capacity,
        hold_ttl_seconds: ttl,
        max_tickets_per_hold: max_per_hold,
    }
}

#[tokio::test]
async fn events_are_created_once_and_counted_exactly() {
    let (_r, api) = api().await;
    let r = api
        .req(
            "POST",
            "/v1/events",
            Some(json!({"id": "gig", "capacity": 5})),
        )
        .await;
    r.assert_error(401, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = api
        .admin(
            "POST",
            "/v1/events",
            Some(json!({"id": "gig", "capacity": 5})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"id": "gig", "capacity": 5, "available": 5, "held": 0, "sold": 0, "holdTtlSeconds": 60, "maxTicketsPerHold": 10})
    );
    let r = api
        .admin(
            "POST",
            "/v1/events",
            Some(json!({"id": "gig", "capacity": 5, "holdTtlSeconds": 60})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .admin(
            "POST",
            "/v1/events",
            Some(json!({"id": "gig", "capacity": 6})),
        )
        .await;
    assert_eq!(r.status, 409);
    for bad in [
        json!({"capacity": 5}),
        json!({"id": "a b", "capacity": 5}),
        json!({"id": "x", "capacity": 0}),
        json!({"id": "x", "capacity": 10_000_001}),
        json!({"id": "x", "capacity": "5"}),
        json!({"id": "x".repeat(65), "capacity": 1}),
    ] {
        let r = api.admin("POST", "/v1/events", Some(bad.clone())).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request".into()),
            "{bad}"
        );
    }
    // Messages name the fields of the request, not the config file's keys.
    for (field, value) in [("holdTtlSeconds", 0), ("maxTicketsPerHold", 1001)] {
        let r = api
            .admin(
                "POST",
                "/v1/events",
                Some(json!({"id": "x", "capacity": 5, field: value})),
            )
            .await;
        r.assert_error(400, "invalid_request");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(field), "{message}");
    }
    let r = api.req("GET", "/v1/events/gig", None).await;
    assert_eq!(r.json()["available"], 5);
    assert_eq!(api.req("GET", "/v1/events/nope", None).await.status, 404);
    assert_eq!(
        api.req("GET", "/v1/events/bad%20id", None).await.status,
        404
    );
    let r = api.req("GET", "/v1/events", None).await;
    let ids: Vec<_> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["default", "gig", "short"]);
}

#[tokio::test]
async fn admin_routes_are_closed_without_a_configured_token() {
    let (_redis, api) = api_with(|cfg| cfg.server.admin_token = String::new()).await;
    let r = api
        .admin(
            "POST",
            "/v1/events",
            Some(json!({"id": "gig", "capacity": 5})),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = api
        .raw(
            "POST",
            "/v1/events",
            Some(json!({"id": "gig", "capacity": 5}).to_string()),
            &[("authorization", "Bearer ")],
        )
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
    let h = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "alice", "ticketIds": [1, 2]})),
        )
        .await;
    assert_eq!(h.status, 201, "{}", h.text);
    let hold = h.json();
    assert_eq!(hold["ticketIds"], json!([1, 2]));
    assert_eq!(hold["userId"], "alice");
    assert_eq!(hold["eventId"], "default");
    assert_eq!(hold["ttlMs"], 60_000);
    let expires = hold["expiresAt"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 24, "{expires}");
    let id = hold["holdId"].as_str().unwrap();

    // All or nothing, naming what is taken.
    let c = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "bob", "ticketIds": [3, 2, 1]})),
        )
        .await;
    c.assert_error(409, "tickets_unavailable");
    assert_eq!(c.json()["error"]["ticketIds"], json!([2, 1]));
    assert_eq!(
        api.req("GET", "/v1/events/default", None).await.json()["held"],
        2
    );

    // Quantity picks the lowest available tickets.
    let q = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": 7, "quantity": 3})),
        )
        .await;
    assert_eq!(q.status, 201);
    assert_eq!(q.json()["ticketIds"], json!([3, 4, 5]));
    assert_eq!(q.json()["userId"], "7");

    let g = api.req("GET", &format!("/v1/holds/{id}"), None).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["holdId"], id);
    assert!(g.json()["ttlMs"].as_u64().unwrap() <= 60_000);

    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "mallory"})),
        )
        .await;
    p.assert_error(403, "forbidden");
    let d = api
        .req(
            "DELETE",
            &format!("/v1/holds/{id}"),
            Some(json!({"userId": "mallory"})),
        )
        .await;
    assert_eq!(d.status, 403);

    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "alice"})),
        )
        .await;
    assert_eq!(p.status, 202, "{}", p.text);
    let order = p.json();
    assert_eq!(order["status"], "pending");
    assert_eq!(order["ticketIds"], json!([1, 2]));
    assert!(order.get("completedAt").is_none());
    let again = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "alice"})),
        )
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json(), order);
    let oid = order["orderId"].as_str().unwrap();
    let o = api.req("GET", &format!("/v1/orders/{oid}"), None).await;
    assert_eq!((o.status, o.json()), (200, order.clone()));
    assert_eq!(
        api.req("GET", "/v1/orders/default.o1.AAAAAAAAAAAAAAAAAAAAAA", None)
            .await
            .status,
        404
    );
    assert_eq!(
        api.req("GET", "/v1/orders/whatever", None).await.status,
        404
    );

    // Bought holds are gone; exactly one job was queued.
    assert_eq!(
        api.req("GET", &format!("/v1/holds/{id}"), None)
            .await
            .status,
        404
    );
    assert_eq!(r.cli(&["XLEN", "tc:{ev:default}:jobs"]), "1");
    let e = api.req("GET", "/v1/events/default", None).await.json();
    assert_eq!(
        (
            e["available"].as_u64(),
            e["held"].as_u64(),
            e["sold"].as_u64()
        ),
        (Some(95), Some(3), Some(2))
    );

    // Cancel.
    let qid = q.json()["holdId"].as_str().unwrap().to_string();
    let d = api
        .req(
            "DELETE",
            &format!("/v1/holds/{qid}"),
            Some(json!({"userId": 7})),
        )
        .await;
    assert_eq!(d.status, 204, "{}", d.text);
    let d = api
        .req(
            "DELETE",
            &format!("/v1/holds/{qid}"),
            Some(json!({"userId": 7})),
        )
        .await;
    assert_eq!(d.status, 404);
    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{qid}/purchase"),
            Some(json!({"userId": "7"})),
        )
        .await;
    assert_eq!(p.status, 404);
    assert_eq!(
        api.req("GET", "/v1/events/default", None).await.json()["available"],
        98
    );

    // A forged secret is not the hold.
    let forged = format!("{}AAAAAAAAAAAAAAAAAAAAAA", &id[..id.len() - 22]);
    assert_eq!(
        api.req("GET", &format!("/v1/holds/{forged}"), None)
            .await
            .status,
        404
    );
    assert_eq!(api.req("GET", "/v1/holds/nonsense", None).await.status, 404);
    // So is another deadline: a hold has one id.
    let live = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "d", "ticketIds": [50]})),
        )
        .await
        .json();
    let live_id = live["holdId"].as_str().unwrap();
    let parts: Vec<&str> = live_id.split('.').collect();
    let deadline: u64 = parts[2].parse().unwrap();
    let moved = format!("{}.{}.{}.{}", parts[0], parts[1], deadline - 1000, parts[3]);
    assert_eq!(
        api.req("GET", &format!("/v1/holds/{moved}"), None)
            .await
            .status,
        404
    );
    let buy = api
        .req(
            "POST",
            &format!("/v1/holds/{moved}/purchase"),
            Some(json!({"userId": "d"})),
        )
        .await;
    assert_eq!(buy.status, 404, "{}", buy.text);
    let cancel = api
        .req(
            "DELETE",
            &format!("/v1/holds/{moved}"),
            Some(json!({"userId": "d"})),
        )
        .await;
    assert_eq!(cancel.status, 404, "{}", cancel.text);
    assert_eq!(
        api.req("GET", &format!("/v1/holds/{live_id}"), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn ticket_listing_is_paginated() {
    let (_r, api) = api().await;
    api.req(
        "POST",
        "/v1/events/default/holds",
        Some(json!({"userId": "a", "ticketIds": [2, 4]})),
    )
    .await;
    let r = api
        .req("GET", "/v1/events/default/tickets?limit=3", None)
        .await;
    assert_eq!(r.json(), json!({"ticketIds": [1, 3, 5], "next": 5}));
    let r = api
        .req("GET", "/v1/events/default/tickets?limit=3&after=5", None)
        .await;
    assert_eq!(r.json(), json!({"ticketIds": [6, 7, 8], "next": 8}));
    let r = api
        .req("GET", "/v1/events/default/tickets?after=97", None)
        .await;
    assert_eq!(r.json(), json!({"ticketIds": [98, 99, 100], "next": null}));
    let r = api
        .req("GET", "/v1/events/default/tickets?status=held", None)
        .await;
    assert_eq!(r.json(), json!({"ticketIds": [2, 4], "next": null}));
    let all = api
        .req("GET", "/v1/events/default/tickets", None)
        .await
        .json();
    assert_eq!(all["ticketIds"].as_array().unwrap().len(), 98);
    for bad in [
        "status=gone",
        "limit=0",
        "limit=x",
        "limit=10001",
        "after=-1",
    ] {
        let r = api
            .req("GET", &format!("/v1/events/default/tickets?{bad}"), None)
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(
        api.req("GET", "/v1/events/nope/tickets", None).await.status,
        404
    );
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_json_error() {
    let (_r, api) = api().await;
    let path = "/v1/events/default/holds";
    let cases: Vec<(Option<&str>, u16, &str)> = vec![
        (Some("{"), 400, "invalid_request"),
        (Some("[1]"), 400, "invalid_request"),
        (Some(""), 400, "invalid_request"),
        (Some(r#"{"ticketIds":[1]}"#), 400, "invalid_request"),
        (
            Some(r#"{"userId":"","ticketIds":[1]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":null,"ticketIds":[1]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":{"a":1},"ticketIds":[1]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":"a","ticketIds":[1,1]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":"a","ticketIds":[0]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":"a","ticketIds":[101]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":"a","ticketIds":["1"]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":"a","ticketIds":[1,2,3,4,5,6,7,8,9,10,11]}"#),
            400,
            "invalid_request",
        ),
        (
            Some(r#"{"userId":"a","quantity":11}"#),
            400,
            "invalid_request",
        ),
        (Some(r#"{"userId":"a"}"#), 400, "invalid_request"),
        (
            Some(r#"{"userId":"a\u0000b","ticketIds":[1]}"#),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = api
            .raw(
                "POST",
                path,
                body.map(String::from),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (status, code.to_string()),
            "{body:?} -> {}",
            r.text
        );
        assert!(
            !r.text.contains("src/") && !r.text.contains("panicked"),
            "{}",
            r.text
        );
    }
    let long_user = "u".repeat(129);
    let r = api
        .req(
            "POST",
            path,
            Some(json!({"userId": long_user, "ticketIds": [1]})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .raw(
            "POST",
            path,
            Some(r#"{"userId":"a","ticketIds":[1]}"#.into()),
            &[("content-type", "text/plain")],
        )
        .await;
    r.assert_error(415, "unsupported_media_type");
    // No Content-Type at all is accepted as JSON.
    let r = api
        .raw(
            "POST",
            path,
            Some(r#"{"userId":"a","ticketIds":[1],"extra":true}"#.into()),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let big = format!(
        r#"{{"userId":"a","ticketIds":[2],"pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    let r = api
        .raw(
            "POST",
            path,
            Some(big),
            &[("content-type", "application/json")],
        )
        .await;
    r.assert_error(413, "payload_too_large");
    // A declared length over the limit is refused before any of the body
    // is read, and without a 100 Continue inviting it.
    for expect in ["", "Expect: 100-continue\r\n"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 20000000\r\n{expect}\r\n{{"
        );
        let addr = api.addr;
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = c
                .read(&mut buf)
                .expect("answered without waiting for the body");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    let r = api.req("PUT", "/v1/events/default", None).await;
    r.assert_error(405, "method_not_allowed");
    let r = api.req("GET", "/nowhere", None).await;
    r.assert_error(404, "not_found");
    let r = api
        .raw(
            "POST",
            path,
            Some(r#"{"userId":"a","quantity":1}"#.into()),
            &[("idempotency-key", "")],
        )
        .await;
    assert_eq!(r.status, 400);
    // Still serving.
    assert_eq!(api.req("GET", "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn an_expired_hold_frees_its_tickets_without_any_worker() {
    let (_r, api) = api().await;
    let h = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "a", "ticketIds": [1, 2]})),
        )
        .await;
    assert_eq!(h.status, 201);
    let id = h.json()["holdId"].as_str().unwrap().to_string();
    assert_eq!(h.json()["ttlMs"], 1000);
    let busy = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "b", "ticketIds": [2]})),
        )
        .await;
    assert_eq!(busy.status, 409);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api.req("GET", &format!("/v1/holds/{id}"), None)
            .await
            .status,
        404
    );
    // Counts are exact the instant the deadline passes.
    let e = api.req("GET", "/v1/events/short", None).await.json();
    assert_eq!(
        (e["available"].as_u64(), e["held"].as_u64()),
        (Some(10), Some(0))
    );
    let b = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "b", "ticketIds": [2]})),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "a"})),
        )
        .await;
    p.assert_error(409, "hold_expired");
    let e = api.req("GET", "/v1/events/short", None).await.json();
    assert_eq!(
        (
            e["available"].as_u64(),
            e["held"].as_u64(),
            e["sold"].as_u64()
        ),
        (Some(9), Some(1), Some(0))
    );
}

#[tokio::test]
async fn an_expired_hold_cannot_be_bought_before_anything_released_it() {
    let (_r, api) = api().await;
    let h = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "a", "quantity": 2})),
        )
        .await;
    let id = h.json()["holdId"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "a"})),
        )
        .await;
    p.assert_error(409, "hold_expired");
    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "a"})),
        )
        .await;
    assert_eq!(p.status, 409);
    // Quantity holds reuse the released tickets.
    let q = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "b", "quantity": 3})),
        )
        .await;
    assert_eq!(q.json()["ticketIds"], json!([1, 2, 3]));
}

#[tokio::test]
async fn quantity_holds_see_through_expired_holds() {
    let (_r, api) = api().await;
    for _ in 0..4 {
        let r = api
            .req(
                "POST",
                "/v1/events/short/holds",
                Some(json!({"userId": "a", "quantity": 2})),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let r = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "a", "quantity": 3})),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["ticketIds"], json!([]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "b", "quantity": 3})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn idempotency_keys_replay_or_refuse() {
    let (r, api) = api().await;
    let body = json!({"userId": "a", "quantity": 2}).to_string();
    let hdr = [
        ("content-type", "application/json"),
        ("idempotency-key", "k-1"),
    ];
    let first = api
        .raw("POST", "/v1/events/default/holds", Some(body.clone()), &hdr)
        .await;
    assert_eq!(first.status, 201);
    let second = api
        .raw("POST", "/v1/events/default/holds", Some(body.clone()), &hdr)
        .await;
    assert_eq!((second.status, second.json()), (201, first.json()));
    assert_eq!(
        api.req("GET", "/v1/events/default", None).await.json()["held"],
        2
    );
    let other = json!({"userId": "a", "quantity": 3}).to_string();
    let third = api
        .raw("POST", "/v1/events/default/holds", Some(other), &hdr)
        .await;
    assert_eq!(third.status, 422, "{}", third.text);
    // A conflict is the first response too, and is replayed as such.
    let c1 = api
        .raw(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "b", "ticketIds": [1]}).to_string()),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!(c1.status, 409);
    let c2 = api
        .raw(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "b", "ticketIds": [1]}).to_string()),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!((c2.status, c2.json()), (409, c1.json()));
    let c3 = api
        .raw(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "b", "ticketIds": [9]}).to_string()),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!(c3.status, 422);
    // A key names one request across events and routes: the same body on
    // another event is another request.
    let elsewhere = api
        .raw("POST", "/v1/events/short/holds", Some(body.clone()), &hdr)
        .await;
    assert_eq!(elsewhere.status, 422, "{}", elsewhere.text);
    assert_eq!(elsewhere.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(
        api.req("GET", "/v1/events/short", None).await.json()["held"],
        0
    );

    let id = first.json()["holdId"].as_str().unwrap().to_string();
    let path = format!("/v1/holds/{id}/purchase");
    let buy = json!({"userId": "a"}).to_string();
    let hdr = [
        ("content-type", "application/json"),
        ("idempotency-key", "p-1"),
    ];
    let p1 = api.raw("POST", &path, Some(buy.clone()), &hdr).await;
    let p2 = api.raw("POST", &path, Some(buy), &hdr).await;
    assert_eq!((p1.status, p2.status), (202, 202));
    assert_eq!(p1.json(), p2.json());
    let p3 = api
        .raw(
            "POST",
            &path,
            Some(json!({"userId": "b"}).to_string()),
            &hdr,
        )
        .await;
    assert_eq!(p3.status, 422);
    // A hold's key used again on a purchase.
    let p4 = api
        .raw(
            "POST",
            &path,
            Some(json!({"userId": "a"}).to_string()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(p4.status, 422, "{}", p4.text);
    assert_eq!(r.cli(&["XLEN", "tc:{ev:default}:jobs"]), "1");
    for key in [
        "tc:{ev:default}:idem:hold:k-1",
        "tc:idem:k-1",
        "tc:idem:p-1",
    ] {
        let ttl: i64 = r.cli(&["TTL", key]).parse().unwrap();
        assert!(ttl > 86_000 && ttl <= 86_400, "{key}: {ttl}");
    }
}

#[tokio::test]
async fn a_body_still_arriving_at_the_time_limit_is_408_not_503() {
    let (_redis, api) =
        api_with(|cfg| cfg.server.request_timeout = Duration::from_millis(500)).await;
    let addr = api.addr;
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // 100 bytes declared, 10 sent, then nothing.
        c.write_all(
            b"POST /v1/events/default/holds HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"userId\":",
        )
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).expect("answered at the time limit");
        String::from_utf8_lossy(&buf[..n]).to_lowercase()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // Still serving, and the 408 is the client's, not counted as a 503.
    assert_eq!(api.req("GET", "/healthz", None).await.status, 200);
    let m = api.req("GET", "/metrics", None).await.text;
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
    let r = api
        .req(
            "POST",
            "/v1/events/big/holds",
            Some(json!({"userId": "a", "ticketIds": held})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let a = api.req("GET", "/api/ticket/available", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    let ids: Vec<u64> = a.json()["availableTickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=300_000).filter(|t| !held.contains(t)).collect();
    assert_eq!(ids.len(), want.len());
    assert!(
        ids == want,
        "ids differ from every ticket but the held ones"
    );
    // Everything available again: 300,000 ids in three pages.
    let r = api
        .admin(
            "DELETE",
            &format!("/v1/holds/{}", r.json()["holdId"].as_str().unwrap()),
            Some(json!({"userId": "a"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let a = api.req("GET", "/api/ticket/available", None).await.json();
    assert_eq!(a["availableTickets"].as_array().unwrap().len(), 300_000);
}

#[tokio::test]
async fn compatibility_routes_behave_like_the_proof_of_concept() {
    let (_r, api) = api().await;
    let a = api.req("GET", "/api/ticket/available", None).await;
    assert_eq!(a.json()["availableTickets"].as_array().unwrap().len(), 100);
    let r = api
        .req(
            "POST",
            "/api/ticket/reserve",
            Some(json!({"userId": "u1", "ticketId": 5})),
        )
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        (j["success"].as_bool(), j["ticketId"].as_u64()),
        (Some(true), Some(5))
    );
    assert!(j["holdId"].is_string() && j["expiresAt"].is_string());
    let r = api
        .req(
            "POST",
            "/api/ticket/reserve",
            Some(json!({"userId": "u2", "ticketId": 5})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            409,
            json!({"success": false, "error": "Ticket not available."})
        )
    );
    let r = api
        .req("POST", "/api/ticket/reserve", Some(json!({"ticketId": 6})))
        .await;
    r.assert_error(400, "invalid_request");
    let r = api
        .req(
            "POST",
            "/api/ticket/reserve",
            Some(json!({"userId": "u1", "ticketId": 0})),
        )
        .await;
    assert_eq!(r.status, 400);
    let a = api.req("GET", "/api/ticket/available", None).await.json();
    assert!(!a["availableTickets"]
        .as_array()
        .unwrap()
        .contains(&json!(5)));

    let r = api
        .req(
            "POST",
            "/api/ticket/buy",
            Some(json!({"ticketId": 5, "userId": "u2"})),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["success"], false);
    assert!(r.json()["reason"].is_string());
    let r = api
        .req(
            "POST",
            "/api/ticket/buy",
            Some(json!({"ticketId": 5, "userId": "u1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["success"], true);
    let oid = r.json()["orderId"].as_str().unwrap().to_string();
    assert_eq!(
        api.req("GET", &format!("/v1/orders/{oid}"), None)
            .await
            .json()["ticketIds"],
        json!([5])
    );
    let r = api
        .req(
            "POST",
            "/api/ticket/buy",
            Some(json!({"ticketId": 5, "userId": "u1"})),
        )
        .await;
    assert_eq!(r.status, 409);

    api.req(
        "POST",
        "/api/ticket/reserve",
        Some(json!({"userId": "u3", "ticketId": 7})),
    )
    .await;
    let r = api
        .req("POST", "/api/ticket/release", Some(json!({"ticketId": 7})))
        .await;
    assert_eq!(r.status, 401);
    let r = api
        .admin("POST", "/api/ticket/release", Some(json!({"ticketId": 7})))
        .await;
    assert_eq!((r.status, r.json()["success"].as_bool()), (200, Some(true)));
    let r = api
        .admin("POST", "/api/ticket/release", Some(json!({"ticketId": 7})))
        .await;
    assert_eq!(
        (r.status, r.json()["success"].as_bool()),
        (409, Some(false))
    );
    let r = api
        .admin("POST", "/api/ticket/release", Some(json!({"ticketId": 5})))
        .await;
    assert_eq!(r.status, 409, "a sold ticket is not held");
    let r = api
        .req(
            "POST",
            "/api/ticket/reserve",
            Some(json!({"userId": "u4", "ticketId": 7})),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn metrics_skip_a_damaged_event_and_an_id_unfit_for_a_label() {
    let (redis, api) = api().await;
    redis.cli(&["DEL", "tc:{ev:short}:meta"]);
    redis.cli(&["SET", "tc:{ev:short}:meta", "not a hash"]);
    redis.cli(&["SADD", "tc:events", "bad\"id\nx"]);
    let m = api.req("GET", "/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(m.text.contains("ticketctl_redis_up 1\n"), "{}", m.text);
    assert!(m
        .text
        .contains("ticketctl_event_tickets{event=\"default\",state=\"available\"} 100\n"));
    assert!(!m.text.contains("event=\"short\",state"), "{}", m.text);
    assert!(!m.text.contains("bad"), "{}", m.text);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (mut redis, api) = api().await;
    assert_eq!(api.req("GET", "/healthz", None).await.status, 200);
    assert_eq!(api.req("GET", "/readyz", None).await.status, 200);
    api.req(
        "POST",
        "/v1/events/default/holds",
        Some(json!({"userId": "a", "quantity": 1})),
    )
    .await;
    // Bought: an order and a queued job (no worker runs).
    let h = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "b", "ticketIds": [3]})),
        )
        .await;
    let id = h.json()["holdId"].as_str().unwrap().to_string();
    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{id}/purchase"),
            Some(json!({"userId": "b"})),
        )
        .await;
    assert_eq!(p.status, 202, "{}", p.text);
    let m = api.req("GET", "/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(m.text.contains(r#"ticketctl_http_requests_total{method="POST",route="/v1/events/{id}/holds",status="201"} 2"#), "{}", m.text);
    assert!(m
        .text
        .contains("ticketctl_http_request_duration_seconds_bucket"));
    assert!(m.text.contains("ticketctl_holds_created_total 2\n"));
    assert!(m.text.contains("ticketctl_purchases_total 1\n"));
    // Each hold and the purchase went to Redis in a grouped call (of one,
    // on an idle server).
    for line in [
        "ticketctl_grouped_requests_total{op=\"hold\"} 2\n",
        "ticketctl_grouped_call_duration_seconds_count{op=\"hold\"} 2\n",
        "ticketctl_grouped_requests_total{op=\"purchase\"} 1\n",
    ] {
        assert!(m.text.contains(line), "{line} in\n{}", m.text);
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
        assert!(m.text.contains(line), "{line} in\n{}", m.text);
    }

    // Redis goes away: 503 with Retry-After, health still fine; it comes back: recovered without a restart.
    let port = redis.port;
    redis.kill();
    let r = api.req("GET", "/readyz", None).await;
    assert_eq!(r.status, 503);
    let r = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "a", "quantity": 1})),
        )
        .await;
    r.assert_error(503, "unavailable");
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(!r.text.to_lowercase().contains("refused"), "{}", r.text);
    assert_eq!(api.req("GET", "/healthz", None).await.status, 200);
    // Metrics still answer; once the per-event gauges read a few seconds
    // ago are stale, they say Redis could not be read.
    let mut down = false;
    for _ in 0..50 {
        let m = api.req("GET", "/metrics", None).await;
        assert_eq!(m.status, 200);
        assert!(m.text.contains("ticketctl_holds_created_total 2\n"));
        if m.text.contains("ticketctl_redis_up 0\n") {
            assert!(!m.text.contains("ticketctl_event_tickets{"), "{}", m.text);
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(down, "metrics never said Redis was unreadable");
    let _redis2 = Redis::start_on(port, &[]);
    let mut ok = false;
    for _ in 0..50 {
        if api.req("GET", "/readyz", None).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "readyz did not recover");
    // The fresh Redis has no events: the API answers 404, not 500.
    let r = api.req("GET", "/v1/events/default", None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_long_trail_of_cancelled_holds_never_hides_expired_ones() {
    use ticketctl::model::{HoldOutcome, HoldRequest};
    use ticketctl::store::HoldRef;
    let (_r, api) = api().await;
    let r = api
        .admin(
            "POST",
            "/v1/events",
            Some(json!({"id": "tiny", "capacity": 2, "holdTtlSeconds": 1})),
        )
        .await;
    assert_eq!(r.status, 201);
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
    let r = api
        .req(
            "POST",
            "/v1/events/tiny/holds",
            Some(json!({"userId": "late", "quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = api
        .req(
            "POST",
            "/v1/events/tiny/holds",
            Some(json!({"userId": "next", "quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let e = api.req("GET", "/v1/events/tiny", None).await.json();
    assert_eq!(
        (e["available"].as_u64(), e["held"].as_u64()),
        (Some(0), Some(2))
    );
}

#[tokio::test]
async fn ids_and_tickets_that_never_existed_are_refused_plainly() {
    let (_r, api) = api().await;
    // A well-formed hold id with a number this event never issued: 404, not 409.
    let p = api
        .req(
            "POST",
            "/v1/holds/default.h987654.1.AAAAAAAAAAAAAAAAAAAAAA/purchase",
            Some(json!({"userId": "a"})),
        )
        .await;
    p.assert_error(404, "not_found");
    // Compatibility routes: a ticket out of range is bad input, not a conflict.
    let r = api
        .req(
            "POST",
            "/api/ticket/buy",
            Some(json!({"ticketId": 1000, "userId": "a"})),
        )
        .await;
    r.assert_error(400, "invalid_request");
    let r = api
        .admin(
            "POST",
            "/api/ticket/release",
            Some(json!({"ticketId": 1000})),
        )
        .await;
    r.assert_error(400, "invalid_request");
}

/// Every release of an expired hold this process makes is counted in the
/// metrics: by the sweep before a count, by a purchase or cancel that meets
/// the expired hold, and by a hold that releases some on its way, whether it
/// then gets its tickets or not.
#[tokio::test]
async fn every_release_of_an_expired_hold_is_counted() {
    let (_r, api) = api().await;
    let expired_total = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("ticketctl_holds_expired_total "))
            .map_or(0, |n| n.parse().unwrap())
    };
    let metric = || async { expired_total(&api.req("GET", "/metrics", None).await.text) };
    let hold = |user: &'static str, n: u64| {
        let api = &api;
        async move {
            let r = api
                .req(
                    "POST",
                    "/v1/events/short/holds",
                    Some(json!({"userId": user, "quantity": n})),
                )
                .await;
            (
                r.status,
                r.json()["holdId"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    let ttl = std::time::Duration::from_millis(1100);
    // A purchase that meets its hold expired.
    let (_, a) = hold("a", 2).await;
    tokio::time::sleep(ttl).await;
    let r = api
        .req(
            "POST",
            &format!("/v1/holds/{a}/purchase"),
            Some(json!({"userId": "a"})),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(metric().await, 1);
    // A cancel that meets its hold expired.
    let (_, b) = hold("b", 1).await;
    tokio::time::sleep(ttl).await;
    let r = api
        .req(
            "DELETE",
            &format!("/v1/holds/{b}"),
            Some(json!({"userId": "b"})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(metric().await, 2);
    // A quantity hold that releases an expired hold on its way and still
    // finds too few tickets (10 tickets): c's hold has expired, d's, e's and
    // g's (8 tickets) have not.
    assert_eq!(hold("c", 1).await.0, 201);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(hold("d", 3).await.0, 201);
    assert_eq!(hold("e", 3).await.0, 201);
    assert_eq!(hold("g", 2).await.0, 201);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hold("f", 3).await.0, 409);
    assert_eq!(metric().await, 3);
    // One that releases three on its way and gets its tickets.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(hold("h", 3).await.0, 201);
    assert_eq!(metric().await, 6);
}

/// A hold released by the sweep before a count is counted as expired in the
/// metrics, as one released by a worker or inline is.
#[tokio::test]
async fn holds_released_by_a_count_are_counted_as_expired() {
    let (_r, api) = api().await;
    let r = api
        .req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "a", "quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = api.req("GET", "/v1/events/short", None).await;
    assert_eq!(r.json()["held"], 0);
    let m = api.req("GET", "/metrics", None).await;
    assert!(
        m.text.contains("ticketctl_holds_expired_total 1\n"),
        "{}",
        m.text
    );
}

/// Redis out of memory (`maxmemory` reached, no eviction) refuses a hold or
/// a purchase before its first write: 503 with Retry-After, as for any
/// Redis that cannot take writes now, and nothing is held or sold.
#[tokio::test]
async fn redis_out_of_memory_is_503_and_changes_nothing() {
    let (redis, api) = api().await;
    let hold = |user: &'static str| {
        let api = &api;
        async move {
            api.req(
                "POST",
                "/v1/events/default/holds",
                Some(json!({"userId": user, "ticketIds": [1]})),
            )
            .await
        }
    };
    let a = hold("a").await;
    assert_eq!(a.status, 201);
    let id = a.json()["holdId"].as_str().unwrap().to_string();
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let r = hold("b").await;
    r.assert_error(503, "unavailable");
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let path = format!("/v1/holds/{id}/purchase");
    let buy = || api.req("POST", &path, Some(json!({"userId": "a"})));
    buy().await.assert_error(503, "unavailable");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let e = api.req("GET", "/v1/events/default", None).await.json();
    assert_eq!((e["held"].as_u64(), e["sold"].as_u64()), (Some(1), Some(0)));
    let r = buy().await;
    assert_eq!(r.status, 202, "{}", r.text);
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    use std::io::{Read, Write};
    let redis = Redis::start();
    let api = Api::start(config(&redis)).await;
    let body = json!({"userId": "half", "quantity": 1}).to_string();
    let req = format!(
        "POST /v1/events/default/holds HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = api.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        // Up to the answer's end or the timeout; either way what came.
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).to_string()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let metrics = api.req("GET", "/metrics", None).await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ticketctl_http_requests_total")
                && l.contains("status=\"201\"")
                && l.contains("holds")),
        "the request is counted"
    );
}
