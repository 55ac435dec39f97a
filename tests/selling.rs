//! Selling: sections with prices, amounts on holds, orders and sink
//! messages, the sale window, the per-buyer limit, `PATCH /v1/events/{id}`,
//! and events written before any of it. Through the API `serve` runs, on a
//! private Redis.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{config, keys, run_cli, sink_order_ids, Api, Redis, Want};
use serde_json::{json, Value};

async fn api() -> (Redis, Api) {
    let redis = Redis::start();
    let api = Api::start(config(&redis)).await;
    (redis, api)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The event `gig`: floor (tickets 1-40 at 49.50) and balcony (41-100 at
/// 25.00), in USD, with `extra` settings.
async fn sectioned(api: &Api, extra: Value) -> Value {
    let mut body = json!({
        "id": "gig",
        "currency": "USD",
        "sections": [
            {"id": "floor", "capacity": 40, "price": 4950},
            {"id": "balcony", "capacity": 60, "price": 2500}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = api.create_event(body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

async fn event(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/v1/events/{id}")).await;
    r.assert_status(200);
    r.json()
}

/// The sections' counts add up to the event's, and each section's to its
/// capacity.
#[track_caller]
fn assert_sections_add_up(e: &Value) {
    let sections = e["sections"].as_array().unwrap();
    for f in ["available", "held", "sold", "capacity"] {
        let sum: u64 = sections.iter().map(|s| s[f].as_u64().unwrap()).sum();
        assert_eq!(sum, e[f].as_u64().unwrap(), "{f}: {e}");
    }
    for s in sections {
        let n = |f: &str| s[f].as_u64().unwrap();
        assert_eq!(n("available") + n("held") + n("sold"), n("capacity"), "{s}");
        assert_eq!(n("lastTicket") + 1 - n("firstTicket"), n("capacity"), "{s}");
    }
}

fn section<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no section {id}: {e}"))
}

async fn hold_in(api: &Api, user: &str, section: &str, quantity: u64) -> common::Resp {
    api.req(
        "POST",
        "/v1/events/gig/holds",
        Some(json!({"userId": user, "quantity": quantity, "section": section})),
    )
    .await
}

#[tokio::test]
async fn sections_are_numbered_in_order_priced_and_counted_exactly() {
    let (redis, api) = api().await;
    let e = sectioned(&api, json!({})).await;
    assert_eq!(e["capacity"], 100);
    assert_eq!(e["currency"], "USD");
    assert_eq!(
        e["sections"],
        json!([
            {"id": "floor", "firstTicket": 1, "lastTicket": 40, "capacity": 40, "price": 4950,
             "available": 40, "held": 0, "sold": 0},
            {"id": "balcony", "firstTicket": 41, "lastTicket": 100, "capacity": 60, "price": 2500,
             "available": 60, "held": 0, "sold": 0}
        ])
    );
    assert_eq!(
        (e["salesStart"].clone(), e["salesEnd"].clone()),
        (Value::Null, Value::Null)
    );

    // Explicit tickets across sections: the sum of their prices.
    let r = api.hold("gig", "ann", Want::Tickets(&[1, 41])).await;
    r.assert_status(201);
    let h = r.json();
    assert_eq!(
        (h["amount"].clone(), h["currency"].clone()),
        (json!(7450), json!("USD"))
    );
    let both = h["holdId"].as_str().unwrap().to_string();
    // A quantity in a section: its lowest free tickets.
    let r = hold_in(&api, "bob", "balcony", 3).await;
    r.assert_status(201);
    assert_eq!(r.json()["ticketIds"], json!([42, 43, 44]));
    assert_eq!(r.json()["amount"], 7500);
    let bob = r.hold_id();
    let r = hold_in(&api, "bob", "floor", 2).await;
    assert_eq!(r.json()["ticketIds"], json!([2, 3]), "{}", r.text);
    // Without a section: the lowest of the whole event.
    let r = api.hold("gig", "cat", Want::Quantity(1)).await;
    assert_eq!(r.json()["ticketIds"], json!([4]));
    assert_eq!(api.get_hold(&bob).await.json()["amount"], 7500);

    let e = event(&api, "gig").await;
    assert_sections_add_up(&e);
    assert_eq!(section(&e, "floor")["held"], 4);
    assert_eq!(section(&e, "balcony")["held"], 4);

    // Bought: the order carries the amount, and so does every sink message.
    let r = api.buy(&both, "ann").await;
    r.assert_status(202);
    let order = r.json();
    assert_eq!(
        (order["amount"].clone(), order["currency"].clone()),
        (json!(7450), json!("USD"))
    );
    let e = event(&api, "gig").await;
    assert_sections_add_up(&e);
    assert_eq!(
        (
            section(&e, "floor")["sold"].clone(),
            section(&e, "balcony")["sold"].clone()
        ),
        (json!(1), json!(1))
    );
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for stream in ["tc:payments", "tc:fulfillment"] {
        let out = redis.cli(&["XRANGE", stream, "-", "+"]);
        assert!(
            out.contains("amount\n7450")
                && out.contains("currency\nUSD")
                && out.contains("type\npurchase"),
            "{stream}: {out}"
        );
    }
    let got = api
        .get(&format!(
            "/v1/orders/{}",
            order["orderId"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(
        (got["status"].clone(), got["amount"].clone()),
        (json!("completed"), json!(7450))
    );

    // Cancelled: the section's tickets come back, its lowest first again.
    api.cancel(&bob, "bob").await.assert_status(204);
    let e = event(&api, "gig").await;
    assert_sections_add_up(&e);
    assert_eq!(section(&e, "balcony")["held"], 0);
    assert_eq!(
        hold_in(&api, "dan", "balcony", 1).await.json()["ticketIds"],
        json!([42])
    );

    // An unknown section is 404; a section with ticketIds is 400.
    hold_in(&api, "eve", "standing", 1)
        .await
        .assert_error(404, "not_found");
    let r = api
        .req(
            "POST",
            "/v1/events/gig/holds",
            Some(json!({"userId": "eve", "ticketIds": [5], "section": "floor"})),
        )
        .await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_section_never_gives_more_than_it_has() {
    let (_r, api) = api().await;
    let r = api
        .create_event(json!({"id": "gig", "sections": [
            {"id": "vip", "capacity": 3, "price": 10000},
            {"id": "ga", "capacity": 50, "price": 1000}
        ]}))
        .await;
    r.assert_status(201);
    let r = hold_in(&api, "a", "vip", 4).await;
    r.assert_error(409, "tickets_unavailable");
    assert!(r.message().contains("3 left"), "{}", r.text);
    hold_in(&api, "a", "vip", 3).await.assert_status(201);
    hold_in(&api, "b", "vip", 1)
        .await
        .assert_error(409, "tickets_unavailable");
    let e = event(&api, "gig").await;
    assert_sections_add_up(&e);
    assert_eq!(section(&e, "vip")["available"], 0);
    assert_eq!(section(&e, "ga")["available"], 50);
}

#[tokio::test]
async fn many_clients_over_a_sections_last_tickets_never_oversell_it() {
    let (_r, api) = api().await;
    api.create_event(json!({"id": "gig", "sections": [
        {"id": "front", "capacity": 5, "price": 9900},
        {"id": "back", "capacity": 100, "price": 1900}
    ]}))
    .await
    .assert_status(201);
    let api = Arc::new(api);
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { hold_in(&api, &format!("u{i}"), "front", 1).await })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => won.extend(common::ids(&r.json()["ticketIds"])),
            409 => assert_eq!(r.code(), "tickets_unavailable", "{}", r.text),
            other => panic!("{other}: {}", r.text),
        }
    }
    won.sort_unstable();
    assert_eq!(won, vec![1, 2, 3, 4, 5]);
    let e = event(&api, "gig").await;
    assert_sections_add_up(&e);
    assert_eq!(section(&e, "front")["held"], 5);
    assert_eq!(section(&e, "back")["available"], 100);
}

#[tokio::test]
async fn the_event_must_be_well_formed() {
    let (_r, api) = api().await;
    let sections =
        json!([{"id": "a", "capacity": 10, "price": 100}, {"id": "b", "capacity": 5, "price": 0}]);
    #[rustfmt::skip]
    let bad = [
        (json!({"id": "e", "capacity": 16, "sections": sections}), "add up"),
        (json!({"id": "e", "sections": []}), "sections"),
        (json!({"id": "e", "sections": [{"id": "a", "capacity": 1, "price": 1}, {"id": "a", "capacity": 1, "price": 1}]}), "twice"),
        (json!({"id": "e", "sections": [{"id": "a", "capacity": 1, "price": 12.5}]}), "price"),
        (json!({"id": "e", "sections": [{"id": "a", "capacity": 1, "price": -1}]}), "price"),
        (json!({"id": "e", "sections": [{"id": "a", "capacity": 1, "price": 1e3}]}), "price"),
        (json!({"id": "e", "sections": [{"id": "a.b", "capacity": 1, "price": 1}]}), "section id"),
        (json!({"id": "e", "sections": [{"id": "a", "capacity": 0, "price": 1}]}), "capacity"),
        (json!({"id": "e", "sections": [{"id": "a", "capacity": 1, "price": 1_000_000_000_001u64}]}), "price"),
        (json!({"id": "e", "capacity": 5, "currency": "euro"}), "currency"),
        (json!({"id": "e", "capacity": 5, "salesStart": "tomorrow"}), "salesStart"),
        (json!({"id": "e", "capacity": 5, "salesStart": "2030-01-02T00:00:00Z", "salesEnd": "2030-01-01T00:00:00Z"}), "before"),
        (json!({"id": "e", "capacity": 5, "maxTicketsPerUser": -1}), "maxTicketsPerUser"),
        (json!({"id": "e", "capacity": 5, "maxExtensions": 101}), "maxExtensions"),
    ];
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"id": format!("s{i}"), "capacity": 1, "price": 1}))
        .collect();
    let r = api.create_event(json!({"id": "e", "sections": many})).await;
    r.assert_error(400, "invalid_request");
    for (body, says) in bad {
        let r = api.create_event(body.clone()).await;
        r.assert_error(400, "invalid_request");
        assert!(r.message().contains(says), "{body}: {}", r.text);
    }
    // The capacity may be given and equal to the sum; the same again is the
    // same event, other prices a conflict.
    let ok = json!({"id": "e", "capacity": 15, "sections": sections});
    api.create_event(ok.clone()).await.assert_status(201);
    api.create_event(ok).await.assert_status(200);
    let other = json!({"id": "e", "sections": [{"id": "a", "capacity": 10, "price": 101}, {"id": "b", "capacity": 5, "price": 0}]});
    api.create_event(other)
        .await
        .assert_error(409, "event_exists");
}

#[tokio::test]
async fn outside_the_sale_window_holds_are_refused_by_the_redis_clock() {
    let (_r, api) = api().await;
    let later = now_ms() + 3_600_000;
    sectioned(&api, json!({"salesStart": rfc3339(later)})).await;
    let r = api.hold("gig", "a", Want::Quantity(1)).await;
    r.assert_error(409, "not_on_sale");
    assert!(
        r.message().contains("open at") && r.message().contains(&rfc3339(later)),
        "{}",
        r.text
    );
    let e = event(&api, "gig").await;
    assert_eq!(e["salesStart"], rfc3339(later));

    // Closed: it says so.
    let r = api
        .admin(
            "PATCH",
            "/v1/events/gig",
            Some(json!({"salesStart": null, "salesEnd": rfc3339(now_ms() - 1000)})),
        )
        .await;
    r.assert_status(200);
    let r = api.hold("gig", "a", Want::Quantity(1)).await;
    r.assert_error(409, "not_on_sale");
    assert!(r.message().contains("closed"), "{}", r.text);
    api.admin("PATCH", "/v1/events/gig", Some(json!({"salesEnd": null})))
        .await
        .assert_status(200);
    api.hold("gig", "a", Want::Quantity(1))
        .await
        .assert_status(201);
    // Nothing was held by the refusals.
    assert_eq!(event(&api, "gig").await["held"], 1);
    // The proof of concept's routes keep their own 409 body.
    api.admin(
        "PATCH",
        "/v1/events/default",
        Some(json!({"salesStart": rfc3339(later)})),
    )
    .await
    .assert_status(200);
    let r = api.reserve("u", 1).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["success"], false);
    assert!(
        r.json()["error"].as_str().unwrap().contains("open at"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn clients_waiting_for_the_opening_get_in_once_it_opens_and_not_before() {
    let (_r, api) = api().await;
    let opens = now_ms() + 2_000;
    sectioned(&api, json!({"salesStart": rfc3339(opens)})).await;
    let api = Arc::new(api);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut refused = 0;
                for _ in 0..600 {
                    let r = api.hold("gig", format!("u{i}"), Want::Quantity(1)).await;
                    match r.status {
                        201 => return (refused, r.json()),
                        409 => {
                            assert_eq!(r.code(), "not_on_sale", "{}", r.text);
                            refused += 1;
                        }
                        other => panic!("{other}: {}", r.text),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("sales never opened");
            })
        })
        .collect();
    let ttl_ms = 60_000;
    for t in tasks {
        let (refused, hold) = t.await.unwrap();
        assert!(refused > 0, "a client got in at once, before the opening");
        // Made at expiresAt - hold time, by the Redis clock: not before opening.
        let expires =
            ticketctl::time::parse_rfc3339_ms(hold["expiresAt"].as_str().unwrap()).unwrap();
        assert!(
            expires - ttl_ms >= opens,
            "held at {} before the opening {opens}",
            expires - ttl_ms
        );
    }
    assert_eq!(event(&api, "gig").await["held"], 20);
}

#[tokio::test]
async fn a_buyers_limit_counts_held_and_bought_tickets_and_gives_back_released_ones() {
    let (_r, api) = api().await;
    sectioned(&api, json!({"maxTicketsPerUser": 3, "holdTtlSeconds": 1})).await;
    let two = api.hold_ok("gig", "ann", Want::Quantity(2)).await;
    let r = api.hold("gig", "ann", Want::Quantity(2)).await;
    r.assert_error(409, "user_limit");
    assert_eq!(r.json()["error"]["remaining"], 1, "{}", r.text);
    // Another buyer is not affected.
    api.hold_ok("gig", "bob", Want::Quantity(3)).await;
    // Bought tickets still count.
    api.buy(&two, "ann").await.assert_status(202);
    let one = api.hold_ok("gig", "ann", Want::Tickets(&[50])).await;
    let r = api.hold("gig", "ann", Want::Tickets(&[51])).await;
    r.assert_error(409, "user_limit");
    assert_eq!(r.json()["error"]["remaining"], 0);
    // A cancelled hold gives its tickets back to the allowance.
    api.cancel(&one, "ann").await.assert_status(204);
    let one = api.hold_ok("gig", "ann", Want::Tickets(&[51])).await;
    // So does an expired one, even before any worker released it.
    let gone = common::eventually(100, Duration::from_millis(100), || async {
        api.get_hold(&one).await.status == 404
    })
    .await;
    assert!(gone);
    api.hold_ok("gig", "ann", Want::Tickets(&[52])).await;
    api.hold("gig", "ann", Want::Quantity(1))
        .await
        .assert_error(409, "user_limit");
}

#[tokio::test]
async fn a_limit_set_later_counts_the_tickets_taken_before_it() {
    let (redis, api) = api().await;
    sectioned(&api, json!({})).await;
    // Without a limit: ann buys two and holds one; bob holds one.
    let first = api.hold_ok("gig", "ann", Want::Tickets(&[1, 2])).await;
    api.buy(&first, "ann").await.assert_status(202);
    api.hold_ok("gig", "ann", Want::Tickets(&[3])).await;
    let bob = api.hold_ok("gig", "bob", Want::Tickets(&[4])).await;
    // Hold numbers enough for the recount to take several calls.
    redis.cli(&["HINCRBY", &keys("gig").meta(), "seq", "2500"]);
    let patch = |n: u64| {
        api.admin(
            "PATCH",
            "/v1/events/gig",
            Some(json!({ "maxTicketsPerUser": n })),
        )
    };
    let r = patch(3).await;
    r.assert_status(200);
    assert_eq!(r.json()["maxTicketsPerUser"], 3);
    let r = api.hold("gig", "ann", Want::Quantity(1)).await;
    r.assert_error(409, "user_limit");
    assert_eq!(r.json()["error"]["remaining"], 0);
    api.hold_ok("gig", "bob", Want::Quantity(2)).await;
    api.hold("gig", "bob", Want::Quantity(1))
        .await
        .assert_error(409, "user_limit");
    // A hold counted by the recount gives its tickets back when it ends.
    api.cancel(&bob, "bob").await.assert_status(204);
    api.hold_ok("gig", "bob", Want::Quantity(1)).await;
    // Off, more tickets, on again: those too are counted.
    patch(0).await.assert_status(200);
    api.hold_ok("gig", "cat", Want::Quantity(4)).await;
    patch(5).await.assert_status(200);
    let r = api.hold("gig", "cat", Want::Quantity(2)).await;
    r.assert_error(409, "user_limit");
    assert_eq!(r.json()["error"]["remaining"], 1);
}

#[tokio::test]
async fn many_clients_of_one_buyer_never_pass_the_limit() {
    let (_r, api) = api().await;
    sectioned(&api, json!({"maxTicketsPerUser": 3})).await;
    let api = Arc::new(api);
    let tasks: Vec<_> = (0..50u64)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let want = [1 + i];
                let r = if i % 2 == 0 {
                    api.hold("gig", "ann", Want::Tickets(&want)).await
                } else {
                    hold_in(&api, "ann", "balcony", 1).await
                };
                (r.status, r.code())
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, _) => won += 1,
            (409, code) => assert!(
                code == "user_limit" || code == "tickets_unavailable",
                "{code}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 3);
    let e = event(&api, "gig").await;
    assert_eq!(e["held"], 3);
    assert_sections_add_up(&e);
}

#[tokio::test]
async fn patch_changes_what_later_holds_get() {
    let (_r, api) = api().await;
    sectioned(&api, json!({})).await;
    let before = api.hold_ok("gig", "a", Want::Tickets(&[41])).await;
    let r = api
        .admin(
            "PATCH",
            "/v1/events/gig",
            Some(
                json!({"sections": [{"id": "balcony", "price": 3000}], "maxTicketsPerHold": 2,
                        "holdTtlSeconds": 30, "maxTicketsPerUser": 5, "maxExtensions": 2}),
            ),
        )
        .await;
    r.assert_status(200);
    let e = r.json();
    assert_eq!(section(&e, "balcony")["price"], 3000);
    assert_eq!(section(&e, "floor")["price"], 4950);
    assert_eq!(
        (e["holdTtlSeconds"].clone(), e["maxTicketsPerHold"].clone()),
        (json!(30), json!(2))
    );
    assert_eq!(
        (e["maxTicketsPerUser"].clone(), e["maxExtensions"].clone()),
        (json!(5), json!(2))
    );
    assert_eq!(event(&api, "gig").await, e);
    // The hold made before keeps its amount; a new one pays the new price.
    assert_eq!(api.get_hold(&before).await.json()["amount"], 2500);
    let r = api.hold("gig", "b", Want::Tickets(&[42])).await;
    assert_eq!(r.json()["amount"], 3000);
    assert!(r.json()["ttlMs"].as_u64().unwrap() <= 30_000);
    api.hold("gig", "b", Want::Quantity(3))
        .await
        .assert_error(400, "invalid_request");

    // Refused changes change nothing.
    let patch = |body: Value| api.admin("PATCH", "/v1/events/gig", Some(body));
    patch(json!({"sections": [{"id": "pit", "price": 1}]}))
        .await
        .assert_error(404, "not_found");
    patch(json!({"sections": [{"id": "floor", "price": 1}, {"id": "floor", "price": 2}]}))
        .await
        .assert_error(400, "invalid_request");
    patch(json!({"capacity": 101}))
        .await
        .assert_error(400, "invalid_request");
    patch(json!({"capacity": 100})).await.assert_status(200);
    patch(json!({"currency": "EUR"}))
        .await
        .assert_error(400, "invalid_request");
    patch(json!({"holdTtlSeconds": 0}))
        .await
        .assert_error(400, "invalid_request");
    patch(json!({"sections": [{"id": "floor", "price": 1.5}]}))
        .await
        .assert_error(400, "invalid_request");
    patch(json!({"salesStart": "2030-01-02T00:00:00Z", "salesEnd": "2030-01-01T00:00:00Z"}))
        .await
        .assert_error(400, "invalid_request");
    api.req(
        "PATCH",
        "/v1/events/gig",
        Some(json!({"maxTicketsPerHold": 3})),
    )
    .await
    .assert_error(401, "unauthorized");
    api.admin(
        "PATCH",
        "/v1/events/nope",
        Some(json!({"maxTicketsPerHold": 3})),
    )
    .await
    .assert_error(404, "not_found");
    let after = event(&api, "gig").await;
    assert_eq!(after["maxTicketsPerHold"], 2);
    assert_eq!(after["salesStart"], Value::Null);
    assert_eq!(section(&after, "floor")["price"], 4950);
}

/// Writes event `old` as the version before sections wrote it: settings
/// and counters only, an expired hold of ticket 2 and a live one of `bob`
/// of ticket 3 in the list schedule, a pending order of ticket 1 with its
/// job.
fn write_old_event(redis: &Redis, now: u64) -> (String, String) {
    let k = keys("old");
    let live = now + 600_000;
    redis.cli(&[
        "HSET",
        &k.meta(),
        "capacity",
        "10",
        "ttl_ms",
        "600000",
        "max_per_hold",
        "10",
        "held",
        "2",
        "sold",
        "1",
        "seq",
        "3",
        "hint",
        "4",
        "v",
        "1",
        "orders",
        "1",
    ]);
    // Tickets 1 (sold), 2 and 3 (held): bits 0-3 of the first byte.
    redis.cli(&["SETBIT", &k.taken(), "0", "1"]);
    for t in ["1", "2", "3"] {
        redis.cli(&["SETBIT", &k.taken(), t, "1"]);
    }
    redis.cli(&["SETBIT", &k.taken(), "15", "0"]);
    redis.cli(&["SETBIT", &k.sold(), "1", "1"]);
    redis.cli(&["HSET", &k.owner(), "2", "2", "3", "3"]);
    redis.cli(&[
        "HSET",
        &k.holds(),
        "2",
        "HSEC2aaaaaaaaaaaaaaaaa|1000|2|cat",
        "3",
        &format!("HSEC3aaaaaaaaaaaaaaaaa|{live}|3|bob"),
    ]);
    redis.cli(&["RPUSH", &k.sched(), "2", "3"]);
    redis.cli(&[
        "HSET",
        &k.orders(),
        "1",
        &format!("pending|OSEC1aaaaaaaaaaaaaaaaa|HSEC1aaaaaaaaaaaaaaaaa|{now}||1|ann"),
    ]);
    redis.cli(&["XGROUP", "CREATE", &k.jobs(), "purchase", "0", "MKSTREAM"]);
    redis.cli(&[
        "XADD",
        &k.jobs(),
        "*",
        "seq",
        "1",
        "secret",
        "OSEC1aaaaaaaaaaaaaaaaa",
        "userId",
        "ann",
        "ticketIds",
        "1",
        "createdMs",
        &now.to_string(),
    ]);
    redis.cli(&["SADD", "tc:events", "old"]);
    (
        format!("old.h3.{live}.HSEC3aaaaaaaaaaaaaaaaa"),
        "old.o1.OSEC1aaaaaaaaaaaaaaaaa".to_string(),
    )
}

#[tokio::test]
async fn events_written_before_sections_keep_working() {
    let (redis, api) = api().await;
    let (hold, order) = write_old_event(&redis, now_ms());
    let e = event(&api, "old").await;
    // The expired hold in the old schedule is released by the count.
    assert_eq!(
        (e["available"].clone(), e["held"].clone(), e["sold"].clone()),
        (json!(8), json!(1), json!(1))
    );
    assert_eq!(e["currency"], "EUR");
    assert_eq!(
        e["sections"],
        json!([{"id": "general", "firstTicket": 1, "lastTicket": 10, "capacity": 10, "price": 0,
                "available": 8, "held": 1, "sold": 1}])
    );
    let h = api.get_hold(&hold).await;
    h.assert_status(200);
    assert_eq!(
        (h.json()["amount"].clone(), h.json()["currency"].clone()),
        (json!(0), json!("EUR"))
    );
    let o = api.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(
        (o.json()["amount"].clone(), o.json()["status"].clone()),
        (json!(0), json!("pending"))
    );
    // The old hold is bought; a new hold is made beside the old ones.
    let r = api.buy(&hold, "bob").await;
    r.assert_status(202);
    assert_eq!(r.json()["amount"], 0);
    let r = api.hold("old", "dan", Want::Quantity(2)).await;
    r.assert_status(201);
    assert_eq!(r.json()["ticketIds"], json!([2, 4]));
    let e = event(&api, "old").await;
    assert_eq!(
        (e["available"].clone(), e["held"].clone(), e["sold"].clone()),
        (json!(6), json!(2), json!(2))
    );
    // Old and new jobs reach the sinks, the old with amount 0.
    let o = run_cli(&["work", "purchase", "--once", "--redis", &redis.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let published: HashSet<String> = sink_order_ids(&redis, "tc:payments").into_iter().collect();
    assert!(published.contains(&order), "{published:?}");
    assert_eq!(published.len(), 2);
    let out = redis.cli(&["XRANGE", "tc:payments", "-", "+"]);
    assert!(out.contains("amount\n0\ncurrency\nEUR"), "{out}");
    // A limit set now counts what was bought before it: bob has one ticket.
    api.admin(
        "PATCH",
        "/v1/events/old",
        Some(json!({"maxTicketsPerUser": 2})),
    )
    .await
    .assert_status(200);
    api.hold_ok("old", "bob", Want::Quantity(1)).await;
    let r = api.hold("old", "bob", Want::Quantity(1)).await;
    r.assert_error(409, "user_limit");
    assert_eq!(r.json()["error"]["remaining"], 0);
}

#[tokio::test]
async fn events_come_from_the_config_and_the_command_line_with_their_sections() {
    let redis = Redis::start();
    let mut cfg = config(&redis);
    let seed: ticketctl::config::EventSeed = toml::from_str(
        r#"
        id = "fest"
        currency = "GBP"
        sections = [{ id = "early", capacity = 10, price = 3500 }, { id = "late", capacity = 5, price = 4500 }]
        sales_start = 2020-01-01T00:00:00Z
        sales_end = "2099-01-01T00:00:00+01:00"
        max_tickets_per_user = 4
        "#,
    )
    .unwrap();
    cfg.events.push(seed);
    let api = Api::start(cfg).await;
    let e = event(&api, "fest").await;
    assert_eq!(
        (e["capacity"].clone(), e["currency"].clone()),
        (json!(15), json!("GBP"))
    );
    assert_eq!(e["salesStart"], "2020-01-01T00:00:00.000Z");
    assert_eq!(e["salesEnd"], "2098-12-31T23:00:00.000Z");
    assert_eq!(e["maxTicketsPerUser"], 4);
    assert_eq!(section(&e, "late")["firstTicket"], 11);

    let url = redis.url();
    let o = run_cli(&[
        "event",
        "create",
        "tour",
        "--section",
        "stalls:20:6000",
        "--section",
        "circle:30:4000",
        "--currency",
        "USD",
        "--max-per-user",
        "6",
        "--sales-start",
        "2030-06-01T18:00:00Z",
        "--redis",
        &url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("section stalls of 20 at 6000 USD"), "{out}");
    let e = event(&api, "tour").await;
    assert_eq!(
        (e["capacity"].clone(), e["maxTicketsPerUser"].clone()),
        (json!(50), json!(6))
    );
    assert_eq!(section(&e, "circle")["price"], 4000);
    for (args, says) in [
        (vec!["--section", "a:10:12.50"], "price"),
        (vec!["--section", "a:10"], "ID:CAPACITY:PRICE"),
        (vec!["--capacity", "11", "--section", "a:10:100"], "add up"),
        (
            vec!["--capacity", "5", "--sales-start", "soon"],
            "--sales-start",
        ),
    ] {
        let mut all = vec!["event", "create", "bad"];
        all.extend(args);
        all.extend(["--redis", &url]);
        let o = run_cli(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{all:?}: {err}");
    }
    // inspect shows a row per section, its price in the currency's units.
    let o = run_cli(&["inspect", "events", "--event", "tour", "--redis", &url]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("stalls #1-20") && out.contains("60.00 USD") && out.contains("circle #21-50"),
        "{out}"
    );
    let o = run_cli(&[
        "inspect", "events", "--event", "tour", "--json", "--redis", &url,
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["events"][0]["sections"][1]["id"], "circle");
}

#[tokio::test]
async fn stress_can_target_one_section() {
    let redis = Redis::start();
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--section",
        "floor:50:5000",
        "--section",
        "balcony:50:2500",
        "--redis",
        &redis.url(),
    ]);
    assert!(o.status.success());
    let serve = common::ServeProc::start(&redis, &[]);
    let url = format!("http://{}", serve.addr);
    for extra in [vec![], vec!["--quantity", "2"]] {
        let mut args = vec![
            "stress",
            "--url",
            &url,
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "--section",
            "balcony",
            "-c",
            "4",
            "-n",
            "40",
            "--audit",
        ];
        args.extend(extra);
        let o = run_cli(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let api_url = format!("http://{}/v1/events/gig", serve.addr);
    let body = common::request(serve.addr, "GET", "/v1/events/gig", None, &[]).await;
    let e = body.json();
    assert_eq!(section(&e, "floor")["available"], 50, "{api_url}: {e}");
    assert!(section(&e, "balcony")["sold"].as_u64().unwrap() > 0, "{e}");
    let o = run_cli(&[
        "stress",
        "--url",
        &url,
        "--event",
        "gig",
        "--section",
        "pit",
        "-n",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("balcony"));
}
