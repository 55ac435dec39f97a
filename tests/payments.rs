//! After the purchase: signed payment results, operator cancels and
//! refunds, late payments, the tickets and buyer allowances they give back,
//! and the messages they publish. Through the API `serve` runs, on a
//! private Redis.

mod common;

use common::{config, run_cli, Api, Redis, Want};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

const SECRET: &str = "pay-secret";

async fn api() -> (Redis, Api) {
    let redis = Redis::start();
    let mut cfg = config(&redis);
    cfg.payment.secret = SECRET.into();
    let api = Api::start(cfg).await;
    // floor 1-10 at 50.00, balcony 11-30 at 20.00; at most 4 per buyer.
    let r = api
        .create_event(json!({"id": "gig", "maxTicketsPerUser": 4, "sections": [
            {"id": "floor", "capacity": 10, "price": 5000},
            {"id": "balcony", "capacity": 20, "price": 2000}
        ]}))
        .await;
    r.assert_status(201);
    (redis, api)
}

fn signature(body: &str, secret: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A payment result for `order`, signed with `secret`.
async fn pay(api: &Api, order: &str, outcome: &str, amount: u64, secret: &str) -> common::Resp {
    let body = json!({"outcome": outcome, "reference": "psp-1", "amount": amount}).to_string();
    let sig = signature(&body, secret);
    api.post_raw(
        &format!("/v1/orders/{order}/payment"),
        &body,
        &[
            ("content-type", "application/json"),
            ("x-ticketctl-signature", &sig),
        ],
    )
    .await
}

/// An order of `user` for `tickets`: its id.
async fn bought(api: &Api, user: &str, tickets: &[u64]) -> String {
    let hold = api.hold_ok("gig", user, Want::Tickets(tickets)).await;
    let r = api.buy(&hold, user).await;
    r.assert_status(202);
    r.json()["orderId"].as_str().unwrap().to_string()
}

async fn event(api: &Api) -> Value {
    let r = api.get("/v1/events/gig").await;
    r.assert_status(200);
    r.json()
}

async fn cancel(api: &Api, order: &str) -> common::Resp {
    api.admin("POST", &format!("/v1/orders/{order}/cancel"), None)
        .await
}

#[track_caller]
fn assert_counts(e: &Value, available: u64, sold: u64) {
    assert_eq!(
        (e["available"].as_u64(), e["sold"].as_u64()),
        (Some(available), Some(sold)),
        "{e}"
    );
    let sections = e["sections"].as_array().unwrap();
    let sum = |f: &str| sections.iter().map(|s| s[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("available"), sum("sold")), (available, sold), "{e}");
}

#[tokio::test]
async fn payment_results_are_signed_idempotent_and_refuse_what_contradicts_the_order() {
    let (_r, api) = api().await;
    let order = bought(&api, "ann", &[1, 11]).await;
    // Unsigned, wrongly signed: 401, nothing changes.
    let body = json!({"outcome": "paid", "reference": "x", "amount": 7000}).to_string();
    let r = api
        .post_raw(
            &format!("/v1/orders/{order}/payment"),
            &body,
            &[("content-type", "application/json")],
        )
        .await;
    r.assert_error(401, "unauthorized");
    pay(&api, &order, "paid", 7000, "other-secret")
        .await
        .assert_error(401, "unauthorized");
    // A wrong amount: 409, nothing changes.
    let r = pay(&api, &order, "paid", 6999, SECRET).await;
    r.assert_error(409, "amount_mismatch");
    assert_eq!(r.json()["error"]["amount"], 7000);
    let o = api.get(&format!("/v1/orders/{order}")).await.json();
    assert_eq!(o["status"], "pending");
    // Paid: 200 order; the same result again: 200, no change.
    for _ in 0..2 {
        let r = pay(&api, &order, "paid", 7000, SECRET).await;
        r.assert_status(200);
        assert_eq!(
            (r.json()["status"].clone(), r.json()["amount"].clone()),
            (json!("paid"), json!(7000))
        );
    }
    // Declined after paid: 409 order_state.
    let r = pay(&api, &order, "declined", 7000, SECRET).await;
    r.assert_error(409, "order_state");
    assert_eq!(r.json()["error"]["status"], "paid");
    // Bad bodies (signed) are 400; an unknown order 404.
    for bad in [
        json!({"outcome": "maybe", "reference": "r", "amount": 1}),
        json!({"outcome": "paid", "amount": 1}),
        json!({"outcome": "paid", "reference": "r", "amount": 12.5}),
    ] {
        let body = bad.to_string();
        let r = api
            .post_raw(
                &format!("/v1/orders/{order}/payment"),
                &body,
                &[
                    ("content-type", "application/json"),
                    ("x-ticketctl-signature", &signature(&body, SECRET)),
                ],
            )
            .await;
        r.assert_error(400, "invalid_request");
    }
    pay(&api, "gig.o99.AAAAAAAAAAAAAAAAAAAAAA", "paid", 1, SECRET)
        .await
        .assert_error(404, "not_found");
    let e = event(&api).await;
    assert_eq!(e["orders"]["paid"], 1);
    assert_eq!(e["orders"]["pending"], 0);
    assert_counts(&e, 28, 2);
}

#[tokio::test]
async fn without_a_payment_secret_the_payment_route_answers_401() {
    let redis = Redis::start();
    let api = Api::start(config(&redis)).await;
    let hold = api.hold_ok("default", "ann", Want::Tickets(&[1])).await;
    let order = api.buy(&hold, "ann").await.json()["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    pay(&api, &order, "paid", 0, "")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_declined_payment_gives_the_tickets_and_the_allowance_back_and_is_published_once() {
    let (redis, api) = api().await;
    let order = bought(&api, "ann", &[1, 2, 11, 12]).await;
    api.hold("gig", "ann", Want::Quantity(1))
        .await
        .assert_error(409, "user_limit");
    let r = pay(&api, &order, "declined", 14000, SECRET).await;
    r.assert_status(200);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(r.json()["cancelReason"], "declined");
    // Again: no change.
    let r = pay(&api, &order, "declined", 14000, SECRET).await;
    assert_eq!(r.json()["status"], "cancelled");
    let e = event(&api).await;
    assert_counts(&e, 30, 0);
    assert_eq!(e["orders"]["cancelled"], 1);
    // Tickets and allowance are back at once: the lowest of the floor again.
    let r = api.hold("gig", "ann", Want::Quantity(4)).await;
    r.assert_status(201);
    assert_eq!(r.json()["ticketIds"], json!([1, 2, 3, 4]));
    // The purchase and its cancellation reach every sink, each once.
    for _ in 0..2 {
        let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for stream in ["tc:payments", "tc:fulfillment"] {
        let out = redis.cli(&["XRANGE", stream, "-", "+"]);
        assert_eq!(out.matches("type\npurchase").count(), 1, "{out}");
        assert_eq!(out.matches("type\ncancelled").count(), 1, "{out}");
        assert!(out.contains("amount\n14000"), "{out}");
    }
}

#[tokio::test]
async fn an_operator_cancels_pending_orders_and_refunds_paid_ones() {
    let (redis, api) = api().await;
    let pending = bought(&api, "ann", &[1]).await;
    let paid = bought(&api, "bob", &[11, 12]).await;
    pay(&api, &paid, "paid", 4000, SECRET)
        .await
        .assert_status(200);
    cancel(&api, "gig.o1.AAAAAAAAAAAAAAAAAAAAAA")
        .await
        .assert_error(404, "not_found");
    api.req("POST", &format!("/v1/orders/{pending}/cancel"), None)
        .await
        .assert_error(401, "unauthorized");
    let r = cancel(&api, &pending).await;
    r.assert_status(200);
    assert_eq!(
        (r.json()["status"].clone(), r.json()["cancelReason"].clone()),
        (json!("cancelled"), json!("operator"))
    );
    cancel(&api, &pending).await.assert_status(200);
    // The command line does the same: a paid order is refunded.
    let o = run_cli(&["order", "cancel", &paid, "--redis", &redis.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("refunded"));
    let o = run_cli(&["order", "cancel", "nonsense", "--redis", &redis.url()]);
    assert_eq!(o.status.code(), Some(2));
    let r = api.get(&format!("/v1/orders/{paid}")).await;
    assert_eq!(r.json()["status"], "refunded");
    // A refunded order takes no payment.
    pay(&api, &paid, "paid", 4000, SECRET)
        .await
        .assert_error(409, "order_state");
    let e = event(&api).await;
    assert_counts(&e, 30, 0);
    assert_eq!(
        e["orders"],
        json!({"pending": 0, "completed": 0, "paid": 0, "cancelled": 1, "refunded": 1,
               "refund_due": 0, "failed": 0})
    );
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success());
    let out = redis.cli(&["XRANGE", "tc:payments", "-", "+"]);
    assert_eq!(out.matches("type\nrefunded").count(), 1, "{out}");
    assert_eq!(out.matches("type\ncancelled").count(), 1, "{out}");
}

#[tokio::test]
async fn a_late_payment_takes_its_tickets_back_when_free_else_is_refund_due() {
    let (redis, api) = api().await;
    // Free again when the payment comes: sold to the order once more.
    let first = bought(&api, "ann", &[5]).await;
    cancel(&api, &first).await.assert_status(200);
    let r = pay(&api, &first, "paid", 5000, SECRET).await;
    r.assert_status(200);
    assert_eq!(r.json()["status"], "paid");
    assert_counts(&event(&api).await, 29, 1);
    api.hold("gig", "bob", Want::Tickets(&[5]))
        .await
        .assert_error(409, "tickets_unavailable");
    // Held by someone else meanwhile: refund_due, and no ticket.
    let second = bought(&api, "cat", &[6, 7]).await;
    pay(&api, &second, "declined", 10000, SECRET)
        .await
        .assert_status(200);
    api.hold_ok("gig", "dan", Want::Tickets(&[7])).await;
    let r = pay(&api, &second, "paid", 10000, SECRET).await;
    r.assert_status(200);
    assert_eq!(r.json()["status"], "refund_due");
    // Again: no change; an operator's cancel changes nothing either.
    assert_eq!(
        pay(&api, &second, "paid", 10000, SECRET).await.json()["status"],
        "refund_due"
    );
    assert_eq!(cancel(&api, &second).await.json()["status"], "refund_due");
    let e = event(&api).await;
    assert_eq!(e["held"], 1);
    assert_counts(&e, 28, 1);
    assert_eq!(e["orders"]["refund_due"], 1);
    assert_eq!(e["orders"]["paid"], 1);
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success());
    let out = redis.cli(&["XRANGE", "tc:payments", "-", "+"]);
    assert_eq!(out.matches("type\nrefund_due").count(), 1, "{out}");
    // The order paid late and sold again is published too, as paid.
    assert_eq!(out.matches("type\npaid").count(), 1, "{out}");
}

#[tokio::test]
async fn a_late_payment_never_takes_its_buyer_past_the_limit() {
    let (_r, api) = api().await;
    // ann (limit 4) buys two, is cancelled, buys four more: a late payment
    // of the first would give her six.
    let first = bought(&api, "ann", &[1, 2]).await;
    cancel(&api, &first).await.assert_status(200);
    bought(&api, "ann", &[3, 4, 5, 6]).await;
    let r = pay(&api, &first, "paid", 10000, SECRET).await;
    r.assert_status(200);
    assert_eq!(r.json()["status"], "refund_due");
    let e = event(&api).await;
    assert_counts(&e, 26, 4);
}

#[tokio::test]
async fn a_payment_before_the_worker_completes_the_order_stays_paid() {
    let (redis, api) = api().await;
    let order = bought(&api, "ann", &[3]).await;
    pay(&api, &order, "paid", 5000, SECRET)
        .await
        .assert_status(200);
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success());
    let r = api.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(r.json()["status"], "paid");
    let e = event(&api).await;
    assert_eq!(
        (
            e["orders"]["paid"].clone(),
            e["orders"]["completed"].clone()
        ),
        (json!(1), json!(0))
    );
    // A completed order is paid, and a paid one stays paid.
    let other = bought(&api, "bob", &[4]).await;
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success());
    assert_eq!(
        api.get(&format!("/v1/orders/{other}")).await.json()["status"],
        "completed"
    );
    pay(&api, &other, "paid", 5000, SECRET)
        .await
        .assert_status(200);
    let e = event(&api).await;
    assert_eq!(
        (
            e["orders"]["paid"].clone(),
            e["orders"]["completed"].clone()
        ),
        (json!(2), json!(0))
    );
}

#[tokio::test]
async fn a_hold_is_extended_up_to_max_extensions_and_keeps_its_id() {
    let (_r, api) = api().await;
    let patch = json!({"maxExtensions": 2, "holdTtlSeconds": 30});
    api.admin("PATCH", "/v1/events/gig", Some(patch))
        .await
        .assert_status(200);
    let r = api.hold("gig", "ann", Want::Tickets(&[1])).await;
    r.assert_status(201);
    let (hold, first) = (r.hold_id(), r.json()["expiresAt"].clone());
    let extend = |user: &'static str| {
        let path = format!("/v1/holds/{hold}/extend");
        let api = &api;
        async move {
            api.req("POST", &path, Some(json!({ "userId": user })))
                .await
        }
    };
    extend("bob").await.assert_error(403, "forbidden");
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = extend("ann").await;
        r.assert_status(200);
        assert_eq!(r.json()["holdId"], hold.as_str());
        assert!(
            r.json()["expiresAt"].as_str() > first.as_str(),
            "{}",
            r.text
        );
    }
    let r = extend("ann").await;
    r.assert_error(409, "extension_limit");
    // The same id reads, and buys, the extended hold.
    let r = api.get_hold(&hold).await;
    r.assert_status(200);
    assert!(r.json()["expiresAt"].as_str() > first.as_str());
    api.buy(&hold, "ann").await.assert_status(202);
    extend("ann").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn an_extended_hold_is_released_at_its_new_deadline_and_holds_behind_it_at_theirs() {
    let (_r, api) = api().await;
    let patch = |body: Value| api.admin("PATCH", "/v1/events/gig", Some(body));
    patch(json!({"maxExtensions": 1, "holdTtlSeconds": 1}))
        .await
        .assert_status(200);
    // a, then b: the list schedule holds a first.
    let a = api.hold_ok("gig", "ann", Want::Tickets(&[1])).await;
    let b = api.hold_ok("gig", "bob", Want::Tickets(&[2])).await;
    patch(json!({"holdTtlSeconds": 30}))
        .await
        .assert_status(200);
    let r = api
        .req(
            "POST",
            &format!("/v1/holds/{a}/extend"),
            Some(json!({"userId": "ann"})),
        )
        .await;
    r.assert_status(200);
    // Past b's deadline: a sweep releases b, though a is ahead of it in the
    // list, and keeps a until its new deadline.
    let store = &api.store;
    let released = common::eventually(100, std::time::Duration::from_millis(50), || async {
        let s = store
            .release_expired("gig", 100, false)
            .await
            .unwrap()
            .unwrap();
        s.counts.held == 1
    })
    .await;
    assert!(released, "b was not released");
    api.get_hold(&b).await.assert_status(404);
    let r = api.get_hold(&a).await;
    r.assert_status(200);
    assert!(r.json()["ttlMs"].as_u64().unwrap() > 20_000, "{}", r.text);
    let s = store
        .release_expired("gig", 100, false)
        .await
        .unwrap()
        .unwrap();
    assert!(s.next_deadline_ms.unwrap() > s.now_ms + 20_000, "{s:?}");
}

#[tokio::test]
async fn unpaid_orders_are_cancelled_at_the_payment_deadline_by_the_release_worker() {
    let redis = Redis::start();
    let mut cfg = config(&redis);
    cfg.payment.secret = SECRET.into();
    cfg.payment.deadline = std::time::Duration::from_secs(1);
    let api = Api::start(cfg.clone()).await;
    api.create_event(json!({"id": "gig", "capacity": 10, "maxTicketsPerUser": 2}))
        .await
        .assert_status(201);
    let unpaid = bought(&api, "ann", &[1, 2]).await;
    let paid = bought(&api, "bob", &[3]).await;
    pay(&api, &paid, "paid", 0, SECRET).await.assert_status(200);
    // Only the release worker runs; it cancels the unpaid order at its
    // deadline and leaves the paid one.
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn({
        let (store, stop) = (api.store.clone(), stop.clone());
        let release = cfg.release.clone();
        async move {
            ticketctl::daemon::worker::release::run(
                store,
                release,
                false,
                stop,
                Default::default(),
                Default::default(),
            )
            .await
        }
    });
    let cancelled = common::eventually(150, std::time::Duration::from_millis(100), || async {
        api.get(&format!("/v1/orders/{unpaid}")).await.json()["status"] == "cancelled"
    })
    .await;
    assert!(cancelled, "the unpaid order was not cancelled");
    let o = api.get(&format!("/v1/orders/{unpaid}")).await.json();
    assert_eq!(o["cancelReason"], "payment_timeout");
    assert_eq!(
        api.get(&format!("/v1/orders/{paid}")).await.json()["status"],
        "paid"
    );
    let e = event(&api).await;
    assert_eq!(
        (e["available"].clone(), e["sold"].clone()),
        (json!(9), json!(1))
    );
    // The allowance came back with the tickets.
    api.hold_ok("gig", "ann", Want::Quantity(2)).await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    // A late payment of the cancelled order: its tickets are taken, so it
    // is refund_due.
    let r = pay(&api, &unpaid, "paid", 0, SECRET).await;
    assert_eq!(r.json()["status"], "refund_due");
}

#[tokio::test]
async fn results_from_the_stream_are_applied_once_and_bad_ones_dead_lettered() {
    let (redis, api) = api().await;
    let first = bought(&api, "ann", &[1]).await;
    let second = bought(&api, "bob", &[2, 3]).await;
    let add = |fields: &[&str]| {
        let mut args = vec!["XADD", "tc:payment-results", "*"];
        args.extend_from_slice(fields);
        redis.cli(&args);
    };
    // Added before any worker ran; a duplicate; a decline; bad ones.
    add(&[
        "orderId",
        &first,
        "outcome",
        "paid",
        "reference",
        "r1",
        "amount",
        "5000",
    ]);
    add(&[
        "orderId",
        &first,
        "outcome",
        "paid",
        "reference",
        "r1",
        "amount",
        "5000",
    ]);
    add(&[
        "orderId",
        &second,
        "outcome",
        "declined",
        "reference",
        "r2",
        "amount",
        "10000",
    ]);
    add(&[
        "orderId",
        &first,
        "outcome",
        "declined",
        "reference",
        "r3",
        "amount",
        "5000",
    ]);
    add(&[
        "orderId",
        "gig.o77.AAAAAAAAAAAAAAAAAAAAAA",
        "outcome",
        "paid",
        "reference",
        "r4",
        "amount",
        "1",
    ]);
    add(&[
        "orderId",
        &second,
        "outcome",
        "refund",
        "reference",
        "r5",
        "amount",
        "10000",
    ]);
    add(&["outcome", "paid"]);
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        api.get(&format!("/v1/orders/{first}")).await.json()["status"],
        "paid"
    );
    let r = api.get(&format!("/v1/orders/{second}")).await.json();
    assert_eq!(
        (r["status"].clone(), r["cancelReason"].clone()),
        (json!("cancelled"), json!("declined"))
    );
    assert_counts(&event(&api).await, 29, 1);
    // Four could not be applied: each in the dead stream with its reason.
    let dead = redis.cli(&["XRANGE", "tc:payment-results:dead", "-", "+"]);
    assert_eq!(dead.matches("reason").count(), 4, "{dead}");
    for says in [
        "cannot apply",
        "no order",
        "not paid or declined",
        "no field orderId",
    ] {
        assert!(dead.contains(says), "{says}: {dead}");
    }
    // Everything is acknowledged: nothing pending, and a second run
    // applies nothing again.
    let pending = redis.cli(&["XPENDING", "tc:payment-results", "purchase"]);
    assert!(pending.starts_with('0'), "{pending}");
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success());
    let dead_again = redis.cli(&["XLEN", "tc:payment-results:dead"]);
    assert_eq!(dead_again, "4");
    let e = event(&api).await;
    assert_eq!(
        (
            e["orders"]["paid"].clone(),
            e["orders"]["cancelled"].clone()
        ),
        (json!(1), json!(1))
    );
}

/// Every row of the table in docs/api.md ("After the purchase"): an order
/// brought to each status, then each result, cancel and deadline applied
/// to it; afterwards the counts add up.
#[tokio::test]
async fn every_status_meets_every_result_as_the_table_says() {
    use ticketctl::model::{OrderAction, OrderChange, OrderId};
    let (redis, api) = api().await;
    let statuses = [
        "pending",
        "completed",
        "paid",
        "cancelled",
        "refunded",
        "refund_due",
    ];
    let actions = [
        ("paid", OrderAction::Paid),
        ("declined", OrderAction::Declined),
        ("cancel", OrderAction::Cancel),
        ("timeout", OrderAction::Timeout),
    ];
    // (status, action) -> the status after it, or the 409 code.
    let expect = |status: &str, action: &str| -> &'static str {
        match (status, action) {
            ("pending" | "completed", "paid") => "paid",
            ("pending" | "completed", _) => "cancelled",
            ("paid", "paid" | "timeout") => "paid",
            ("paid", "declined") => "order_state",
            ("paid", "cancel") => "refunded",
            ("cancelled", "paid") => "paid", // its tickets are still free here
            ("cancelled", _) => "cancelled",
            ("refunded", "paid" | "declined") => "order_state",
            ("refunded", _) => "refunded",
            ("refund_due", "declined") => "order_state",
            ("refund_due", _) => "refund_due",
            _ => unreachable!(),
        }
    };
    // One order per (status, action), each of its own ticket (a refund_due
    // order's ticket is held by someone else).
    let mut cases = Vec::new();
    let mut ticket = 0;
    for status in statuses {
        for (name, action) in actions {
            ticket += 1;
            let user = format!("u{ticket}");
            let order = bought(&api, &user, &[ticket]).await;
            cases.push((status, name, action, order, ticket));
        }
    }
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success());
    let price = |t: u64| if t <= 10 { 5000 } else { 2000 };
    for (status, _, _, order, t) in &cases {
        let id = order.as_str();
        match *status {
            "pending" => {
                // Back to pending: a completed order's record, by hand.
                let k = common::keys("gig");
                let seq = OrderId::parse(id).unwrap().seq.to_string();
                let rec = redis.cli(&["HGET", &k.orders(), &seq]);
                let rec = rec.replacen("completed|", "pending|", 1);
                redis.cli(&["HSET", &k.orders(), &seq, &rec]);
                redis.cli(&["HINCRBY", &k.meta(), "completed", "-1"]);
            }
            "completed" => {}
            "paid" => {
                pay(&api, id, "paid", price(*t), SECRET)
                    .await
                    .assert_status(200);
            }
            "cancelled" => {
                cancel(&api, id).await.assert_status(200);
            }
            "refunded" => {
                pay(&api, id, "paid", price(*t), SECRET)
                    .await
                    .assert_status(200);
                cancel(&api, id).await.assert_status(200);
            }
            "refund_due" => {
                cancel(&api, id).await.assert_status(200);
                api.hold_ok("gig", "other", Want::Tickets(&[*t])).await;
                pay(&api, id, "paid", price(*t), SECRET)
                    .await
                    .assert_status(200);
            }
            _ => unreachable!(),
        }
        let now = api.get(&format!("/v1/orders/{id}")).await.json();
        assert_eq!(now["status"], *status, "{now}");
    }
    for (status, name, action, order, t) in &cases {
        let id = OrderId::parse(order).unwrap();
        let got = api
            .store
            .change_order(&id, *action, "ref", Some(price(*t)))
            .await
            .unwrap();
        let want = expect(status, name);
        let seen = match &got {
            OrderChange::Done { order, .. } => order.status.as_str(),
            OrderChange::State(_) => "order_state",
            other => panic!("{status} + {name}: {other:?}"),
        };
        assert_eq!(seen, want, "{status} + {name}");
    }
    let e = event(&api).await;
    let n = |f: &str| e[f].as_u64().unwrap();
    assert_eq!(n("available") + n("held") + n("sold"), n("capacity"), "{e}");
    let sections = e["sections"].as_array().unwrap();
    let sold: u64 = sections.iter().map(|s| s["sold"].as_u64().unwrap()).sum();
    assert_eq!(sold, n("sold"), "{e}");
    // Sold tickets are exactly those of paid, completed and pending orders.
    let live: u64 = ["pending", "completed", "paid"]
        .iter()
        .map(|s| e["orders"][s].as_u64().unwrap())
        .sum();
    assert_eq!(n("sold"), live, "{e}");
}

/// Results, their duplicates, cancels and the deadline race over the same
/// orders through two servers and the store at once; afterwards every
/// ticket is in at most one live order and the counts add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_duplicates_cancels_and_deadlines_racing_leave_each_ticket_counted_once() {
    use std::collections::HashMap;
    use ticketctl::model::{OrderAction, OrderId, OrderStatus};
    let (redis, one) = api().await;
    let mut cfg = config(&redis);
    cfg.payment.secret = SECRET.into();
    let two = Api::start(cfg).await;
    // 20 orders of one ticket each (users of their own: the buyer limit is 4).
    let mut orders = Vec::new();
    for t in 1..=20u64 {
        orders.push((bought(&one, &format!("u{t}"), &[t]).await, t));
    }
    let price = |t: u64| if t <= 10 { 5000 } else { 2000 };
    let mut tasks = Vec::new();
    let mut rng = common::Rng(7);
    for (order, t) in &orders {
        for k in 0..6 {
            let (order, t) = (order.clone(), *t);
            let api = if rng.below(2) == 0 { &one } else { &two };
            let (addr, store) = (api.addr, api.store.clone());
            let pick = rng.below(5);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(k)).await;
                let id = OrderId::parse(&order).unwrap();
                match pick {
                    0 | 1 => {
                        let outcome = if pick == 0 { "paid" } else { "declined" };
                        let body =
                            json!({"outcome": outcome, "reference": "r", "amount": price(t)})
                                .to_string();
                        let sig = signature(&body, SECRET);
                        let r = common::request(
                            addr,
                            "POST",
                            &format!("/v1/orders/{order}/payment"),
                            Some(body),
                            &[
                                ("content-type", "application/json"),
                                ("x-ticketctl-signature", &sig),
                            ],
                        )
                        .await;
                        assert!(r.status == 200 || r.status == 409, "{}", r.text);
                    }
                    2 => {
                        let r = common::request(
                            addr,
                            "POST",
                            &format!("/v1/orders/{order}/cancel"),
                            None,
                            &[("authorization", "Bearer test-token")],
                        )
                        .await;
                        assert_eq!(r.status, 200, "{}", r.text);
                    }
                    3 => {
                        store
                            .change_order(&id, OrderAction::Timeout, "", None)
                            .await
                            .unwrap();
                    }
                    _ => {
                        // Someone else tries to take the ticket meanwhile.
                        let r = common::request(
                            addr,
                            "POST",
                            "/v1/events/gig/holds",
                            Some(json!({"userId": format!("x{t}"), "ticketIds": [t]}).to_string()),
                            &[("content-type", "application/json")],
                        )
                        .await;
                        assert!(r.status == 201 || r.status == 409, "{}", r.text);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Each ticket: in at most one live order (pending, completed, paid),
    // and sold exactly when it is.
    let mut live: HashMap<u64, usize> = HashMap::new();
    for (order, t) in &orders {
        let o = one
            .store
            .get_order(&OrderId::parse(order).unwrap())
            .await
            .unwrap()
            .unwrap();
        if matches!(
            o.status,
            OrderStatus::Pending | OrderStatus::Completed | OrderStatus::Paid
        ) {
            *live.entry(*t).or_default() += 1;
        }
    }
    assert!(live.values().all(|n| *n == 1), "{live:?}");
    let e = event(&one).await;
    let n = |f: &str| e[f].as_u64().unwrap();
    assert_eq!(n("available") + n("held") + n("sold"), n("capacity"), "{e}");
    assert_eq!(n("sold"), live.len() as u64, "{e}");
    let by_status: u64 = e["orders"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_status, 20, "{e}");
    let sold_bits = redis.cli(&["BITCOUNT", &common::keys("gig").sold()]);
    assert_eq!(sold_bits, n("sold").to_string());
}
