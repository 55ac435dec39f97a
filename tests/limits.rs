//! Abuse limits and request ids: live holds per user, per-user and per-IP
//! rate limits (429 with Retry-After), X-Request-Id.

mod common;

use common::{config, keys, Api, Redis};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn live_holds_per_user_are_capped() {
    let redis = Redis::start();
    let mut cfg = config(&redis);
    cfg.limits.max_holds_per_user = 2;
    cfg.events.push(ticketctl::config::EventSeed {
        hold_ttl_seconds: 1,
        max_tickets_per_hold: 3,
        ..ticketctl::config::EventSeed::new("short", 10)
    });
    let api = Api::start(cfg).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = api
            .req(
                "POST",
                "/v1/events/default/holds",
                Some(json!({"userId": "greedy", "quantity": 1})),
            )
            .await;
        assert_eq!(r.status, 201);
        ids.push(r.json()["holdId"].as_str().unwrap().to_string());
    }
    let r = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "greedy", "quantity": 1})),
        )
        .await;
    r.assert_error(429, "too_many_holds");
    // Waiting alone does not clear it (a hold lasts the hold time): no
    // Retry-After promising otherwise.
    assert!(r.headers.get("retry-after").is_none());
    // Others are not affected; another event has its own count.
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "other", "quantity": 1}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "greedy", "quantity": 1}))
        )
        .await
        .status,
        201
    );
    // A purchase or a cancel frees a slot.
    let p = api
        .req(
            "POST",
            &format!("/v1/holds/{}/purchase", ids[0]),
            Some(json!({"userId": "greedy"})),
        )
        .await;
    assert_eq!(p.status, 202);
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "greedy", "quantity": 1}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "greedy", "quantity": 1}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "greedy", "quantity": 1}))
        )
        .await
        .status,
        429
    );
    // Expired holds do not count, with no worker running.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/short/holds",
            Some(json!({"userId": "greedy", "quantity": 1}))
        )
        .await
        .status,
        201
    );
    assert_eq!(redis.cli(&["HGET", &keys("short").uholds(), "greedy"]), "1");
}

#[tokio::test]
async fn users_and_addresses_are_rate_limited() {
    let redis = Redis::start();
    let mut cfg = config(&redis);
    cfg.limits.per_user_rate = 0.5;
    cfg.limits.per_user_burst = 2.0;
    let api = Api::start(cfg).await;
    for _ in 0..2 {
        assert_eq!(
            api.req(
                "POST",
                "/v1/events/default/holds",
                Some(json!({"userId": "fast", "quantity": 1}))
            )
            .await
            .status,
            201
        );
    }
    let r = api
        .req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "fast", "quantity": 1})),
        )
        .await;
    r.assert_error(429, "rate_limited");
    let wait: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(
        api.req(
            "POST",
            "/v1/events/default/holds",
            Some(json!({"userId": "slow", "quantity": 1}))
        )
        .await
        .status,
        201
    );
    drop(api);

    let mut cfg = config(&redis);
    cfg.limits.per_ip_rate = 1.0;
    cfg.limits.per_ip_burst = 3.0;
    let api = Api::start(cfg).await;
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..5).map(|_| api.req("GET", "/v1/events/default", None)))
            .await
            .iter()
            .map(|r| r.status)
            .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        api.req("GET", "/healthz", None).await.status,
        200,
        "health checks are never limited"
    );
    assert_eq!(api.req("GET", "/readyz", None).await.status, 200);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let redis = Redis::start();
    let api = Api::start(config(&redis)).await;
    let r = api
        .raw(
            "GET",
            "/v1/events/default",
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(r.headers.get("x-request-id").unwrap(), "abc-123");
    let r = api
        .raw(
            "GET",
            "/v1/events/default",
            None,
            &[("x-request-id", "bad id with spaces")],
        )
        .await;
    let made = r
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(made.len(), 16);
    assert!(
        made.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{made}"
    );
    let r = api
        .req(
            "POST",
            "/v1/events/nope/holds",
            Some(json!({"userId": "a", "quantity": 1})),
        )
        .await;
    assert!(
        r.headers.get("x-request-id").is_some(),
        "errors carry it too"
    );
}

#[tokio::test]
async fn requests_that_cannot_start_in_time_are_shed_and_probes_are_not() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let mut cfg = config(&redis);
    cfg.server.max_queue_wait = Duration::from_millis(50);
    // The calls in flight wait the stall out.
    cfg.redis.timeout = Duration::from_secs(5);
    cfg.events = vec![ticketctl::config::EventSeed::new("gig", 1000)];
    let api = Api::start(cfg).await;
    // Warm: the scripts are loaded and the group queue exists.
    api.req(
        "POST",
        "/v1/events/gig/holds",
        Some(json!({"userId": "w", "quantity": 1})),
    )
    .await
    .assert_status(201);
    // Redis stalls for two seconds: holds that arrive meanwhile, once the
    // calls in flight are taken, cannot start their call within 50 ms.
    let url = redis.url();
    let stall = std::thread::spawn(move || {
        let _ = std::process::Command::new("redis-cli")
            .args(["-u", &url, "DEBUG", "SLEEP", "2"])
            .output();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Waves: during the stall the first two fill the calls in flight (which
    // wait it out), the later ones can only wait for them.
    let mut holds = Vec::new();
    for wave in 0..12 {
        for i in 0..4 {
            let addr = api.addr;
            holds.push(tokio::spawn(async move {
                common::request(
                    addr,
                    "POST",
                    "/v1/events/gig/holds",
                    Some(json!({"userId": format!("u{wave}-{i}"), "quantity": 1}).to_string()),
                    &[("content-type", "application/json")],
                )
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Probes are answered meanwhile.
    let health = api.get("/healthz").await;
    health.assert_status(200);
    let (mut held, mut shed) = (0, 0);
    for h in holds {
        let r = h.await.unwrap();
        match r.status {
            201 => held += 1,
            503 => {
                r.assert_error(503, "overloaded");
                assert_eq!(r.header("retry-after"), Some("1"));
                shed += 1;
            }
            other => panic!("{other}: {}", r.text),
        }
    }
    stall.join().unwrap();
    assert!(shed > 0, "{held} held, none shed");
    // Nothing shed was done: the held count is the answered holds (and the
    // warm-up's).
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!(e["held"], held + 1);
    // Once the stall is over, holds go through again.
    assert!(
        common::eventually(100, Duration::from_millis(50), || async {
            api.req(
                "POST",
                "/v1/events/gig/holds",
                Some(json!({"userId": "after", "quantity": 1})),
            )
            .await
            .status
                == 201
        })
        .await
    );
}
