//! Faults injected under load, each bounded and on loopback only: Redis
//! killed and restarted from its AOF, `serve` killed and restarted, a release
//! worker killed mid-run, SIGTERM during load, a Redis that stops answering.
//! (A purchase worker killed mid-batch is in tests/workers.rs.)

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{keys, request, sink_order_ids, ConfigFile, Redis, ServeProc};
use serde_json::{json, Value};

use common::Rng;

async fn post(addr: SocketAddr, path: &str, body: Value) -> Option<(u16, Value, Option<String>)> {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        common::try_request(
            addr,
            "POST",
            path,
            Some(body.to_string()),
            &[("content-type", "application/json")],
        ),
    )
    .await
    .ok()?
    .ok()?;
    let retry = r
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    Some((
        r.status,
        serde_json::from_str(&r.text).unwrap_or(Value::Null),
        retry,
    ))
}

async fn admin_event(addr: SocketAddr, id: &str, capacity: u64, ttl: u64) {
    let r = request(
        addr,
        "POST",
        "/v1/events",
        Some(json!({"id": id, "capacity": capacity, "holdTtlSeconds": ttl}).to_string()),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer test-token"),
        ],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// What a load run saw.
#[derive(Default)]
struct Seen {
    holds: Mutex<HashMap<String, Value>>,
    orders: Mutex<HashMap<String, Value>>,
    unavailable: AtomicU64,
    without_retry_after: AtomicU64,
    other: Mutex<Vec<String>>,
}

/// Clients holding a random ticket and buying it, until `stop`. Transport
/// errors (the server is down) are retried after a pause.
fn load(
    addr: Arc<Mutex<SocketAddr>>,
    event: &str,
    capacity: u64,
    clients: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (addr, stop, seen, event) =
                (addr.clone(), stop.clone(), seen.clone(), event.to_string());
            tokio::spawn(async move {
                let mut rng =
                    Rng(0x1234_5678_9abc_def1 ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let user = format!("user-{c}");
                while !stop.load(Ordering::Relaxed) {
                    let a = *addr.lock().unwrap();
                    let t = 1 + rng.below(capacity);
                    let Some((st, hold, retry)) = post(
                        a,
                        &format!("/v1/events/{event}/holds"),
                        json!({"userId": user, "ticketIds": [t]}),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    match st {
                        201 => {
                            let id = hold["holdId"].as_str().unwrap().to_string();
                            seen.holds.lock().unwrap().insert(id.clone(), hold);
                            if let Some((st, order, retry)) = post(
                                a,
                                &format!("/v1/holds/{id}/purchase"),
                                json!({"userId": user}),
                            )
                            .await
                            {
                                match st {
                                    202 => {
                                        seen.orders.lock().unwrap().insert(
                                            order["orderId"].as_str().unwrap().to_string(),
                                            order,
                                        );
                                    }
                                    503 => {
                                        if retry.is_none() {
                                            seen.without_retry_after
                                                .fetch_add(1, Ordering::Relaxed);
                                        }
                                        seen.unavailable.fetch_add(1, Ordering::Relaxed);
                                    }
                                    s => seen
                                        .other
                                        .lock()
                                        .unwrap()
                                        .push(format!("purchase {s}: {order}")),
                                }
                            }
                        }
                        409 => {}
                        503 => {
                            if retry.is_none() {
                                seen.without_retry_after.fetch_add(1, Ordering::Relaxed);
                            }
                            seen.unavailable.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        s => seen.other.lock().unwrap().push(format!("hold {s}: {hold}")),
                    }
                }
            })
        })
        .collect()
}

/// Every accepted purchase has its order and exactly one job; no ticket is
/// in two orders; the counts add up.
async fn check_invariants(
    redis: &Redis,
    addr: SocketAddr,
    event: &str,
    capacity: u64,
    seen: &Seen,
) {
    let orders = seen.orders.lock().unwrap().clone();
    assert!(!orders.is_empty(), "the load bought nothing");
    let jobs = redis.cli(&["XRANGE", &keys(event).jobs(), "-", "+"]);
    let lines: Vec<&str> = jobs.lines().collect();
    let job_seqs: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0] == "seq")
        .map(|w| w[1])
        .collect();
    let distinct: HashSet<&str> = job_seqs.iter().copied().collect();
    assert_eq!(distinct.len(), job_seqs.len(), "a job was queued twice");
    let mut tickets = HashSet::new();
    for (oid, order) in &orders {
        let got = request(addr, "GET", &format!("/v1/orders/{oid}"), None, &[]).await;
        assert_eq!(
            got.status, 200,
            "accepted order {oid} is gone: {}",
            got.text
        );
        let seq = oid.split('.').nth(1).unwrap().trim_start_matches('o');
        assert!(distinct.contains(seq), "order {oid} has no job");
        for t in order["ticketIds"].as_array().unwrap() {
            assert!(tickets.insert(t.as_u64().unwrap()), "ticket {t} sold twice");
        }
    }
    let e = request(addr, "GET", &format!("/v1/events/{event}"), None, &[])
        .await
        .json();
    let (av, held, sold) = (
        e["available"].as_u64().unwrap(),
        e["held"].as_u64().unwrap(),
        e["sold"].as_u64().unwrap(),
    );
    assert_eq!(av + held + sold, capacity);
    assert!(sold as usize >= tickets.len());
    assert!(
        seen.other.lock().unwrap().is_empty(),
        "unexpected answers: {:?}",
        seen.other.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_from_aof_loses_no_accepted_purchase() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut redis = Redis::start_with(&aof);
    let port = redis.port;
    let dir = std::env::temp_dir().join(format!("tc-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("fast-timeout.toml");
    std::fs::write(
        &cfg,
        "[redis]\ntimeout = \"300ms\"\nconnect_timeout = \"300ms\"\n",
    )
    .unwrap();
    let serve = ServeProc::start(&redis, &["--config", cfg.to_str().unwrap()]);
    admin_event(serve.addr, "gig", 300, 60).await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let tasks = load(
        Arc::new(Mutex::new(serve.addr)),
        "gig",
        300,
        16,
        stop.clone(),
        seen.clone(),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = seen.orders.lock().unwrap().len();
    redis.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = request(serve.addr, "GET", "/readyz", None, &[]).await;
    assert_eq!(r.status, 503);
    let _redis2 = Redis::start_on(port, &aof);
    let deadline = Instant::now() + Duration::from_secs(15);
    while request(serve.addr, "GET", "/readyz", None, &[])
        .await
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "serve did not recover by itself");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(before > 0, "no purchase before the crash");
    assert!(
        seen.unavailable.load(Ordering::Relaxed) > 0,
        "no 503 seen while Redis was down"
    );
    assert_eq!(
        seen.without_retry_after.load(Ordering::Relaxed),
        0,
        "a 503 without Retry-After"
    );
    assert!(
        seen.orders.lock().unwrap().len() > before,
        "no purchase after recovery"
    );
    check_invariants(&_redis2, serve.addr, "gig", 300, &seen).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_killed_and_restarted_loses_and_duplicates_nothing() {
    let redis = Redis::start();
    let mut serve = ServeProc::start(&redis, &[]);
    let addr = serve.addr;
    admin_event(addr, "gig", 300, 60).await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let tasks = load(
        Arc::new(Mutex::new(addr)),
        "gig",
        300,
        16,
        stop.clone(),
        seen.clone(),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let serve2 = ServeProc::start_at(&redis, addr, &[]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    check_invariants(&redis, serve2.addr, "gig", 300, &seen).await;
    // Every hold answered 201 is still live, or became one of the orders.
    let holds = seen.holds.lock().unwrap().clone();
    let orders = seen.orders.lock().unwrap().clone();
    let bought: HashSet<u64> = orders
        .values()
        .flat_map(|o| {
            o["ticketIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap())
        })
        .collect();
    for (id, h) in &holds {
        let t = h["ticketIds"][0].as_u64().unwrap();
        let live = request(addr, "GET", &format!("/v1/holds/{id}"), None, &[])
            .await
            .status
            == 200;
        if live || bought.contains(&t) {
            continue;
        }
        // Bought, but the answer was lost with the killed process: buying
        // again returns that same order.
        let user = h["userId"].as_str().unwrap();
        let again = post(
            addr,
            &format!("/v1/holds/{id}/purchase"),
            json!({"userId": user}),
        )
        .await;
        let (st, order, _) = again.expect("answer");
        assert_eq!(st, 202, "hold {id} vanished: {order}");
        assert_eq!(order["ticketIds"], json!([t]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_worker_killed_mid_run_releases_each_hold_once() {
    let redis = Redis::start();
    let serve = ServeProc::start(&redis, &[]);
    admin_event(serve.addr, "gig", 100_000, 1).await;
    let store = ticketctl::store::Store::connect(&common::config(&redis).redis)
        .await
        .unwrap();
    const N: u64 = 20_000;
    let mut tasks = Vec::new();
    for c in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while i < N {
                s.hold(
                    "gig",
                    &format!("u{i}"),
                    &ticketctl::model::HoldRequest::Quantity(1),
                    None,
                )
                .await
                .unwrap();
                i += 16;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let spawn = || {
        std::process::Command::new(common::bin())
            .args(["work", "release", "--redis", &redis.url()])
            .env("TICKETCTL_LOG", "warn")
            .spawn()
            .unwrap()
    };
    let meta = |f: &str| {
        redis
            .cli(&["HGET", &keys("gig").meta(), f])
            .parse::<u64>()
            .unwrap_or(0)
    };
    let mut first = spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta("expired") == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = meta("expired");
    let mut second = spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while meta("held") > 0 {
        assert!(Instant::now() < deadline, "held {}", meta("held"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(meta("expired"), N, "each hold released exactly once");
    assert!(after_kill < N, "the kill came after the end ({after_kill})");
    let e = request(serve.addr, "GET", "/v1/events/gig", None, &[])
        .await
        .json();
    assert_eq!(e["available"], 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_requests_finish() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let mut serve = ServeProc::start(&redis, &[]);
    admin_event(serve.addr, "gig", 1000, 60).await;
    // Redis stalls for a second, so the requests below are in flight when SIGTERM arrives.
    let port = redis.port.to_string();
    let sleeper = std::process::Command::new("redis-cli")
        .args(["-p", &port, "DEBUG", "SLEEP", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = serve.addr;
    let reqs: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                post(
                    addr,
                    "/v1/events/gig/holds",
                    json!({"userId": format!("u{i}"), "ticketIds": [i + 1]}),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    serve.signal("TERM");
    for r in reqs {
        let got = r.await.unwrap();
        let (st, body, _) = got.expect("an accepted request got no answer");
        assert_eq!(st, 201, "{body}");
    }
    let status = serve.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let out = sleeper.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "OK",
        "Redis did not stall"
    );
    // And new connections are refused once it is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_redis_gives_timely_503s_and_bounded_memory() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("tc-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("t.toml");
    std::fs::write(&cfg, "[redis]\ntimeout = \"300ms\"\n").unwrap();
    let serve = ServeProc::start(&redis, &["--config", cfg.to_str().unwrap()]);
    admin_event(serve.addr, "gig", 1000, 60).await;
    let rss_before = serve.rss_kib();
    std::process::Command::new("kill")
        .args(["-STOP", &redis.pid().to_string()])
        .status()
        .unwrap();
    let addr = serve.addr;
    let started = Instant::now();
    let reqs: Vec<_> = (0..400)
        .map(|i| {
            tokio::spawn(async move {
                post(
                    addr,
                    "/v1/events/gig/holds",
                    json!({"userId": format!("u{i}"), "quantity": 1}),
                )
                .await
            })
        })
        .collect();
    let mut codes = HashMap::new();
    for r in reqs {
        let (st, body, retry) = r.await.unwrap().expect("no answer while Redis stalled");
        if st == 503 {
            assert_eq!(retry.as_deref(), Some("1"));
            assert!(
                !body.to_string().to_lowercase().contains("redis error"),
                "{body}"
            );
        }
        *codes.entry(st).or_insert(0) += 1;
    }
    let took = started.elapsed();
    let rss_during = serve.rss_kib();
    std::process::Command::new("kill")
        .args(["-CONT", &redis.pid().to_string()])
        .status()
        .unwrap();
    assert_eq!(codes.get(&503), Some(&400), "{codes:?}");
    // Bounded by the Redis timeout, not piling up behind the stall (generous bound for a shared machine).
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        rss_during < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((201, _, _)) = post(
            addr,
            "/v1/events/gig/holds",
            json!({"userId": "after", "quantity": 1}),
        )
        .await
        {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after the stall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits until every one of `orders` is in both sink streams; how long that took.
async fn published_within(redis: &Redis, orders: &HashSet<String>, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let missing = ["tc:payments", "tc:fulfillment"].map(|s| {
            let have: HashSet<String> = sink_order_ids(redis, s).into_iter().collect();
            orders.difference(&have).count()
        });
        if missing == [0, 0] {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "after {bound:?}, acknowledged orders missing from the sinks: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_each_redis_restart_acknowledged_orders_reach_every_sink_at_once_and_once() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    // Every generation is kept: dropping one removes the directory with the AOF.
    let mut redis = vec![Redis::start_with(&aof)];
    let port = redis[0].port;
    let cfg = ConfigFile::new(
        "faults-sinks",
        "[redis]\ntimeout = \"300ms\"\nconnect_timeout = \"300ms\"\n",
    );
    // claim_idle stays at its 30 s: only the worker's own retry can be quick.
    let serve = ServeProc::start(&redis[0], &["--config", cfg.arg(), "--with-workers"]);
    admin_event(serve.addr, "gig", 1_000_000, 600).await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let tasks = load(
        Arc::new(Mutex::new(serve.addr)),
        "gig",
        1_000_000,
        16,
        stop.clone(),
        seen.clone(),
    );
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.last_mut().unwrap().kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Nothing is acknowledged while Redis is down.
        let acked: HashSet<String> = seen.orders.lock().unwrap().keys().cloned().collect();
        redis.push(Redis::start_on(port, &aof));
        let took = published_within(redis.last().unwrap(), &acked, Duration::from_secs(15)).await;
        eprintln!(
            "restart {round}: all {} acknowledged orders in every sink {took:?} after Redis was back",
            acked.len()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let r = redis.last().unwrap();
    let acked: HashSet<String> = seen.orders.lock().unwrap().keys().cloned().collect();
    published_within(r, &acked, Duration::from_secs(15)).await;
    for stream in ["tc:payments", "tc:fulfillment"] {
        let ids = sink_order_ids(r, stream);
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "an order published twice to {stream}"
        );
    }
    // Published everywhere, so completed (their jobs are gone from the
    // stream, trimmed once acknowledged); no ticket in two orders.
    let mut tickets = HashSet::new();
    let orders = seen.orders.lock().unwrap().clone();
    for (oid, order) in orders {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = request(serve.addr, "GET", &format!("/v1/orders/{oid}"), None, &[]).await;
            assert_eq!(
                got.status, 200,
                "accepted order {oid} is gone: {}",
                got.text
            );
            if got.json()["status"] == "completed" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "order {oid} not completed: {}",
                got.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for t in order["ticketIds"].as_array().unwrap() {
            assert!(tickets.insert(t.as_u64().unwrap()), "ticket {t} sold twice");
        }
    }
    assert!(
        seen.other.lock().unwrap().is_empty(),
        "unexpected answers: {:?}",
        seen.other.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_and_an_idle_pause_no_request_sees_503() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut redis = vec![Redis::start_with(&aof)];
    let port = redis[0].port;
    // Two serving threads, each with its own connection to find dead.
    let cfg = ConfigFile::new("faults-idle", "[server]\nthreads = 2\n");
    let serve = ServeProc::start(&redis[0], &["--config", cfg.arg()]);
    admin_event(serve.addr, "gig", 1000, 600).await;
    for _ in 0..10 {
        let r = request(serve.addr, "GET", "/v1/events/gig", None, &[]).await;
        assert_eq!(r.status, 200);
    }
    redis[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.push(Redis::start_on(port, &aof));
    // No traffic for a while: nothing has used the dead connections.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut statuses = Vec::new();
    for i in 0..100u64 {
        let r = match i % 3 {
            0 => request(serve.addr, "GET", "/readyz", None, &[]).await,
            1 => request(serve.addr, "GET", "/v1/events/gig", None, &[]).await,
            _ => {
                request(
                    serve.addr,
                    "POST",
                    "/v1/events/gig/holds",
                    Some(json!({"userId": format!("u{i}"), "quantity": 1}).to_string()),
                    &[("content-type", "application/json")],
                )
                .await
            }
        };
        statuses.push(r.status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "answers after the restart: {statuses:?}"
    );
}
