//! The waiting room: joining, positions, admission in order within
//! `maxActive` and the stock, admissions expiring and passing the slot on,
//! `sold_out` and its reversal, the pre-queue shuffle, and holds refused
//! without an admitted place of their own user. Through the API `serve`
//! runs, on a private Redis.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config, Api, Redis, Resp};
use serde_json::{json, Value};
use ticketctl::model::queue::perm;

async fn api(redis: &Redis) -> Api {
    Api::start(config(redis)).await
}

async fn event(api: &Api, id: &str, capacity: u64, max_active: u64, admission: u64) {
    api.create_event(json!({"id": id, "capacity": capacity,
        "queue": {"enabled": true, "maxActive": max_active, "admissionSeconds": admission}}))
        .await
        .assert_status(201);
}

async fn join(api: &Api, event: &str, user: &str) -> Resp {
    api.req(
        "POST",
        &format!("/v1/events/{event}/queue"),
        Some(json!({ "userId": user })),
    )
    .await
}

async fn joined(api: &Api, event: &str, user: &str) -> Value {
    let r = join(api, event, user).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

async fn status(api: &Api, queue_id: &str) -> Value {
    let r = api.get(&format!("/v1/queue/{queue_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

async fn hold(api: &Api, event: &str, user: &str, queue_id: Option<&str>, want: Value) -> Resp {
    let mut body = json!({ "userId": user });
    for (k, v) in want.as_object().unwrap() {
        body[k] = v.clone();
    }
    let mut headers = vec![("content-type", "application/json")];
    if let Some(q) = queue_id {
        headers.push(("queue-id", q));
    }
    api.raw(
        "POST",
        &format!("/v1/events/{event}/holds"),
        Some(body.to_string()),
        &headers,
    )
    .await
}

fn qid(place: &Value) -> String {
    place["queueId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn joining_twice_gives_the_same_place_and_positions_count_from_one() {
    let redis = Redis::start();
    let api = api(&redis).await;
    event(&api, "gig", 100, 2, 600).await;
    let a = joined(&api, "gig", "a").await;
    assert_eq!(a["state"], "admitted");
    assert!(a["admittedUntil"].is_string());
    assert_eq!(a["userId"], "a");
    let again = join(&api, "gig", "a").await;
    again.assert_status(200);
    assert_eq!(again.json()["queueId"], a["queueId"]);
    joined(&api, "gig", "b").await;
    let mut waiting = Vec::new();
    for u in ["c", "d", "e"] {
        waiting.push(joined(&api, "gig", u).await);
    }
    for (i, w) in waiting.iter().enumerate() {
        assert_eq!(w["state"], "waiting");
        assert_eq!(w["position"], i as u64 + 1);
        let s = status(&api, &qid(w)).await;
        assert_eq!(
            (s["state"].as_str(), s["position"].as_u64()),
            (Some("waiting"), Some(i as u64 + 1))
        );
        assert!(s.get("userId").is_none());
    }
    // 128 bits of MAC, unguessable; an id with another MAC is no place.
    let id = qid(&waiting[0]);
    let mac = id.rsplit('.').next().unwrap();
    assert_eq!(mac.len(), 32);
    let forged = format!(
        "{}{}",
        &id[..id.len() - 1],
        if id.ends_with('0') { '1' } else { '0' }
    );
    api.get(&format!("/v1/queue/{forged}"))
        .await
        .assert_error(404, "not_found");
    api.get("/v1/queue/gig.q99.00000000000000000000000000000000")
        .await
        .assert_error(404, "not_found");
    api.get("/v1/queue/nonsense")
        .await
        .assert_error(404, "not_found");
    // No waiting room: 409; no event: 404.
    api.create_event(json!({"id": "open", "capacity": 5}))
        .await
        .assert_status(201);
    join(&api, "open", "a")
        .await
        .assert_error(409, "queue_disabled");
    join(&api, "nope", "a").await.assert_error(404, "not_found");
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!(
        e["queue"],
        json!({"enabled": true, "maxActive": 2, "admissionSeconds": 600})
    );
}

#[tokio::test]
async fn holds_need_an_admitted_place_of_their_own_user() {
    let redis = Redis::start();
    let api = api(&redis).await;
    event(&api, "gig", 100, 1, 600).await;
    let a = qid(&joined(&api, "gig", "a").await);
    let b = qid(&joined(&api, "gig", "b").await);
    let one = json!({"quantity": 1});
    hold(&api, "gig", "a", None, one.clone())
        .await
        .assert_error(403, "queue_required");
    hold(&api, "gig", "b", Some(&a), one.clone())
        .await
        .assert_error(403, "queue_required");
    // b is not admitted yet.
    hold(&api, "gig", "b", Some(&b), one.clone())
        .await
        .assert_error(403, "queue_required");
    hold(
        &api,
        "gig",
        "a",
        Some("gig.q1.00000000000000000000000000000000"),
        one.clone(),
    )
    .await
    .assert_error(403, "queue_required");
    // The compat route checks the same.
    let r = api
        .raw(
            "POST",
            "/api/ticket/reserve",
            Some(json!({"userId": "a", "ticketId": 1}).to_string()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "the compat event has no room: {}", r.text);
    let r = hold(&api, "gig", "a", Some(&a), one.clone()).await;
    r.assert_status(201);
    let first = r.hold_id();
    // One live hold at a time.
    hold(&api, "gig", "a", Some(&a), one.clone())
        .await
        .assert_error(429, "too_many_holds");
    api.cancel(&first, "a").await.assert_status(204);
    let r = hold(&api, "gig", "a", Some(&a), json!({"ticketIds": [50, 51]})).await;
    r.assert_status(201);
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!(e["held"], 2);
}

#[tokio::test]
async fn admission_follows_max_active_and_the_stock_under_concurrency() {
    let redis = Redis::start();
    let api = api(&redis).await;
    // More stock than maxActive: exactly maxActive let in.
    event(&api, "big", 1000, 10, 600).await;
    // Less stock than maxActive: no more than the tickets.
    event(&api, "small", 4, 10, 600).await;
    for ev in ["big", "small"] {
        let joins = (0..60).map(|i| {
            let (addr, ev) = (api.addr, ev.to_string());
            tokio::spawn(async move {
                common::request(
                    addr,
                    "POST",
                    &format!("/v1/events/{ev}/queue"),
                    Some(json!({ "userId": format!("u{i}") }).to_string()),
                    &[("content-type", "application/json")],
                )
                .await
            })
        });
        let mut admitted = 0;
        let mut ids = HashSet::new();
        let mut positions = HashSet::new();
        for j in joins {
            let r = j.await.unwrap();
            assert_eq!(r.status, 201, "{}", r.text);
            let p = r.json();
            ids.insert(qid(&p));
            match p["state"].as_str().unwrap() {
                "admitted" => admitted += 1,
                "waiting" => {}
                other => panic!("{other}"),
            }
        }
        assert_eq!(ids.len(), 60);
        let want = if ev == "big" { 10 } else { 4 };
        assert_eq!(admitted, want, "{ev}");
        // The same seen from the status route: every waiting place has a
        // position of its own, 1..=waiting.
        let mut now_admitted = 0;
        for id in &ids {
            let s = status(&api, id).await;
            match s["state"].as_str().unwrap() {
                "admitted" => now_admitted += 1,
                "waiting" => assert!(positions.insert(s["position"].as_u64().unwrap())),
                other => panic!("{other}"),
            }
        }
        assert_eq!(now_admitted, want);
        assert_eq!(positions, (1..=60 - want).collect::<HashSet<u64>>());
    }
}

#[tokio::test]
async fn a_bought_or_expired_admission_passes_its_slot_on_in_order() {
    let redis = Redis::start();
    let api = api(&redis).await;
    event(&api, "gig", 100, 2, 1).await;
    let places: Vec<String> = {
        let mut v = Vec::new();
        for u in ["a", "b", "c", "d", "e"] {
            v.push(qid(&joined(&api, "gig", u).await));
        }
        v
    };
    // a buys: its slot goes to c (b's admission still runs).
    let r = hold(&api, "gig", "a", Some(&places[0]), json!({"quantity": 1})).await;
    r.assert_status(201);
    api.buy(&r.hold_id(), "a").await.assert_status(202);
    assert!(
        common::eventually(100, Duration::from_millis(50), || async {
            status(&api, &places[2]).await["state"] == "admitted"
        })
        .await,
        "c admitted after a bought"
    );
    assert_eq!(status(&api, &places[0]).await["state"], "expired");
    // Admissions of 1 s run out: b's and c's slots go to d and e, in order.
    assert!(
        common::eventually(200, Duration::from_millis(50), || async {
            status(&api, &places[4]).await["state"] == "admitted"
        })
        .await,
        "e admitted once the earlier admissions ran out"
    );
    assert_eq!(status(&api, &places[1]).await["state"], "expired");
    let r = hold(&api, "gig", "b", Some(&places[1]), json!({"quantity": 1})).await;
    r.assert_error(403, "queue_required");
}

#[tokio::test]
async fn waiting_places_read_sold_out_until_tickets_come_back() {
    let redis = Redis::start();
    let api = api(&redis).await;
    event(&api, "gig", 2, 5, 600).await;
    let a = qid(&joined(&api, "gig", "a").await);
    let b = qid(&joined(&api, "gig", "b").await);
    let c = qid(&joined(&api, "gig", "c").await);
    // Two tickets: two admitted, c waits.
    assert_eq!(status(&api, &c).await["state"], "waiting");
    let r = hold(&api, "gig", "a", Some(&a), json!({"quantity": 2})).await;
    r.assert_status(201);
    // Held is not sold out: the hold may lapse.
    assert_eq!(status(&api, &c).await["state"], "waiting");
    let bought = api.buy(&r.hold_id(), "a").await;
    bought.assert_status(202);
    assert!(
        common::eventually(100, Duration::from_millis(50), || async {
            status(&api, &c).await["state"] == "sold_out"
        })
        .await,
        "sold out once nothing is available nor held"
    );
    // b was admitted and stays so (it may still find a ticket given back).
    assert_eq!(status(&api, &b).await["state"], "admitted");
    // An operator cancels the order: its tickets come back, and admission
    // resumes.
    let order = bought.json()["orderId"].as_str().unwrap().to_string();
    api.admin("POST", &format!("/v1/orders/{order}/cancel"), None)
        .await
        .assert_status(200);
    assert!(
        common::eventually(100, Duration::from_millis(50), || async {
            status(&api, &c).await["state"] == "admitted"
        })
        .await,
        "admitted again once tickets came back"
    );
}

#[tokio::test]
async fn the_pre_queue_is_shuffled_once_when_sales_open_and_goes_first() {
    let redis = Redis::start();
    let api = api(&redis).await;
    api.create_event(
        json!({"id": "gig", "capacity": 1000, "salesStart": "2099-01-01T00:00:00Z",
        "queue": {"enabled": true, "maxActive": 1, "admissionSeconds": 600}}),
    )
    .await
    .assert_status(201);
    let early: Vec<String> = {
        let mut v = Vec::new();
        for i in 1..=40 {
            let p = joined(&api, "gig", &format!("early{i}")).await;
            // Before sales open, every place reads the pre-queue's size.
            assert_eq!(p["state"], "waiting");
            assert_eq!(p["position"], i);
            v.push(qid(&p));
        }
        v
    };
    assert_eq!(status(&api, &early[0]).await["position"], 40);
    // Sales open.
    let r = api
        .admin(
            "PATCH",
            "/v1/events/gig",
            Some(json!({"salesStart": "2020-01-01T00:00:00Z"})),
        )
        .await;
    r.assert_status(200);
    let late = qid(&joined(&api, "gig", "late").await);
    // The store's seed decides the order; the API's positions follow it.
    let seed = redis.cli(&["HGET", "tc:{ev:gig}:q", "seed"]);
    assert_eq!(seed.len(), 24, "{seed:?}");
    assert_eq!(redis.cli(&["HGET", "tc:{ev:gig}:q", "pre"]), "40");
    let mut order = vec![0u64; 40];
    for (i, id) in early.iter().enumerate() {
        let j = i as u64 + 1;
        let place = perm(j, 40, &seed, false);
        order[place as usize - 1] = j;
        let s = status(&api, id).await;
        if place == 1 {
            assert_eq!(s["state"], "admitted");
        } else {
            assert_eq!(s["position"], place - 1, "{id}");
        }
    }
    assert_ne!(
        order,
        (1..=40).collect::<Vec<u64>>(),
        "joining early gives no edge"
    );
    // Who joined after the opening comes after the whole pre-queue.
    assert_eq!(status(&api, &late).await["position"], 40);
    // Operators see the seed, for an audit of the order.
    let url = redis.url();
    let out = common::run_cli(&["inspect", "queues", "--event", "gig", "--redis", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&seed), "{text}");
    let out = common::run_cli(&[
        "inspect", "queues", "--event", "gig", "--json", "--redis", &url,
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let room = &doc["queues"]["waitingRooms"][0];
    assert_eq!(room["seed"], seed.as_str());
    assert_eq!(
        (
            room["waiting"].as_u64(),
            room["admittedNow"].as_u64(),
            room["admittedTotal"].as_u64()
        ),
        (Some(40), Some(1), Some(1))
    );
    assert_eq!(room["soldOut"], false);
}

#[tokio::test]
async fn the_release_worker_admits_alone_within_a_second() {
    let redis = Redis::start();
    let api = api(&redis).await;
    event(&api, "gig", 100, 1, 600).await;
    let a = qid(&joined(&api, "gig", "a").await);
    let b = qid(&joined(&api, "gig", "b").await);
    let r = hold(&api, "gig", "a", Some(&a), json!({"quantity": 1})).await;
    r.assert_status(201);
    api.buy(&r.hold_id(), "a").await.assert_status(202);
    // Nobody polls: only the worker passes over the room.
    let j = b
        .split('.')
        .nth(1)
        .unwrap()
        .trim_start_matches('q')
        .to_string();
    assert_eq!(redis.cli(&["ZSCORE", "tc:{ev:gig}:qa", &j]), "");
    let mut worker = std::process::Command::new(common::bin())
        .args(["work", "release", "--redis", &redis.url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let admitted = common::eventually(200, Duration::from_millis(50), || async {
        !redis.cli(&["ZSCORE", "tc:{ev:gig}:qa", &j]).is_empty()
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(admitted, "the worker let b in");
}

#[tokio::test]
async fn a_hold_behind_the_room_lasts_no_longer_than_its_admission() {
    let redis = Redis::start();
    let api = api(&redis).await;
    // Admissions of 2 s; holds of the event's default 60 s, and three
    // extensions allowed.
    api.create_event(json!({"id": "gig", "capacity": 10, "maxExtensions": 3,
        "queue": {"enabled": true, "maxActive": 1, "admissionSeconds": 2}}))
        .await
        .assert_status(201);
    let a = joined(&api, "gig", "a").await;
    let until = a["admittedUntil"].as_str().unwrap().to_string();
    let r = hold(&api, "gig", "a", Some(&qid(&a)), json!({"quantity": 1})).await;
    r.assert_status(201);
    let held = r.json();
    assert!(
        held["expiresAt"].as_str().unwrap() <= until.as_str(),
        "hold until {} past the admission's {until}",
        held["expiresAt"]
    );
    // Extending never goes past the admission either.
    let hold_id = r.hold_id();
    let x = api
        .req(
            "POST",
            &format!("/v1/holds/{hold_id}/extend"),
            Some(json!({"userId": "a"})),
        )
        .await;
    x.assert_status(200);
    assert!(
        x.json()["expiresAt"].as_str().unwrap() <= until.as_str(),
        "{}",
        x.text
    );
    // Once the admission has run out, the hold has too: no purchase, and
    // its ticket is back.
    let b = qid(&joined(&api, "gig", "b").await);
    assert!(
        common::eventually(200, Duration::from_millis(50), || async {
            status(&api, &b).await["state"] == "admitted"
        })
        .await,
        "b admitted once a's admission ran out"
    );
    api.buy(&hold_id, "a")
        .await
        .assert_error(409, "hold_expired");
    assert!(
        common::eventually(100, Duration::from_millis(50), || async {
            api.get("/v1/events/gig").await.json()["available"] == 10
        })
        .await
    );
}

#[tokio::test]
async fn a_queue_id_that_cannot_be_read_is_refused_like_a_wrong_one() {
    let redis = Redis::start();
    let api = api(&redis).await;
    event(&api, "gig", 10, 1, 600).await;
    joined(&api, "gig", "a").await;
    let long = "x".repeat(1000);
    hold(&api, "gig", "a", Some(&long), json!({"quantity": 1}))
        .await
        .assert_error(403, "queue_required");
    // On an event without a room the header is ignored.
    api.create_event(json!({"id": "plain", "capacity": 10}))
        .await
        .assert_status(201);
    hold(&api, "plain", "a", Some(&long), json!({"quantity": 1}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn queue_settings_default_to_off_and_a_patch_changes_only_what_it_names() {
    let redis = Redis::start();
    let api = api(&redis).await;
    api.create_event(json!({"id": "bare", "capacity": 10, "queue": {}}))
        .await
        .assert_status(201);
    let e = api.get("/v1/events/bare").await.json();
    assert_eq!(e["queue"]["enabled"], false, "{e}");
    join(&api, "bare", "a")
        .await
        .assert_error(409, "queue_disabled");
    api.create_event(json!({"id": "on", "capacity": 10, "queue": {"enabled": true}}))
        .await
        .assert_status(201);
    let q = &api.get("/v1/events/on").await.json()["queue"];
    assert_eq!(q["maxActive"], 1000, "{q}");
    // The same id without the room: 409, saying what the event has.
    let r = api.create_event(json!({"id": "on", "capacity": 10})).await;
    r.assert_error(409, "event_exists");
    assert!(
        r.text.contains("a waiting room of maxActive 1000"),
        "{}",
        r.text
    );
    assert_eq!(q["admissionSeconds"], 600, "{q}");
    let patch = |body: Value| {
        let api = &api;
        async move {
            let r = api
                .raw(
                    "PATCH",
                    "/v1/events/on",
                    Some(body.to_string()),
                    &[
                        ("content-type", "application/json"),
                        ("authorization", "Bearer test-token"),
                    ],
                )
                .await;
            r.assert_status(200);
            api.get("/v1/events/on").await.json()["queue"].clone()
        }
    };
    let q = patch(json!({"queue": {"maxActive": 7}})).await;
    assert_eq!(
        q,
        json!({"enabled": true, "maxActive": 7, "admissionSeconds": 600})
    );
    let q = patch(json!({"queue": {"admissionSeconds": 30}})).await;
    assert_eq!(
        q,
        json!({"enabled": true, "maxActive": 7, "admissionSeconds": 30})
    );
    let q = patch(json!({"queue": {"enabled": false}})).await;
    assert_eq!(q["enabled"], false, "{q}");
    // Left off, numbers alone do not turn it on.
    let q = patch(json!({"queue": {"maxActive": 9}})).await;
    assert_eq!(q["enabled"], false, "{q}");
    let q = patch(json!({"queue": {"enabled": true, "maxActive": 9}})).await;
    assert_eq!(
        q,
        json!({"enabled": true, "maxActive": 9, "admissionSeconds": 600})
    );
}
