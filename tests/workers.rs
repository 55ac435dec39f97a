//! The workers against a private Redis: holds released on time (one and two
//! release workers, woken by a new hold), orders published exactly once to
//! each stream sink, a purchase worker killed mid-batch, webhooks that fail
//! (dead letters) or are slow (retried).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bin, config, keys, sink_order_ids, Redis};
use http_body_util::Full;
use hyper::body::Bytes;
use tokio_util::sync::CancellationToken;

use ticketctl::config::{Config, SinkConfig};
use ticketctl::daemon::metrics::Metrics;
use ticketctl::daemon::worker::purchase::{self, PurchaseOpts};
use ticketctl::daemon::worker::release::{self, ReleaseStats};
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest, OrderStatus, PurchaseOutcome};
use ticketctl::store::keys::JOBS_GROUP;
use ticketctl::store::{HoldRef, Store};

async fn store(redis: &Redis) -> Store {
    Store::connect(&config(redis).redis).await.unwrap()
}

async fn event(store: &Store, id: &str, capacity: u64, ttl_ms: u64) {
    store
        .create_event(&EventSettings {
            id: id.into(),
            capacity,
            hold_ttl_ms: ttl_ms,
            max_per_hold: 10,
            selling: Default::default(),
        })
        .await
        .unwrap();
}

async fn hold(store: &Store, event: &str, user: &str, n: u64) -> ticketctl::model::Hold {
    match store
        .hold(event, user, &HoldRequest::Quantity(n), None)
        .await
        .unwrap()
    {
        HoldOutcome::Held { hold, .. } => hold,
        other => panic!("{other:?}"),
    }
}

async fn buy(store: &Store, event: &str, user: &str) -> ticketctl::model::Order {
    let h = hold(store, event, user, 1).await;
    match store
        .purchase(&HoldRef::Id(&h.id), user, None)
        .await
        .unwrap()
    {
        PurchaseOutcome::Bought { order, .. } => order,
        other => panic!("{other:?}"),
    }
}

/// Jobs of an event not yet acknowledged: pending plus never delivered.
fn jobs_outstanding(redis: &Redis, event: &str) -> u64 {
    let out = redis.cli(&["XINFO", "GROUPS", &keys(event).jobs()]);
    let lines: Vec<&str> = out.lines().collect();
    let field = |name: &str| {
        lines
            .iter()
            .position(|l| *l == name)
            .and_then(|i| lines.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    field("pending")
        .unwrap_or(u64::MAX)
        .saturating_add(field("lag").unwrap_or(u64::MAX))
}

fn meta(redis: &Redis, event: &str, field: &str) -> u64 {
    redis
        .cli(&["HGET", &keys(event).meta(), field])
        .parse()
        .unwrap_or(0)
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

fn start_release(store: Store, cfg: &Config, stop: &CancellationToken) -> Arc<ReleaseStats> {
    let stats = Arc::new(ReleaseStats::default());
    let (s, c, t, st) = (store, cfg.release.clone(), stop.clone(), stats.clone());
    tokio::spawn(
        async move { release::run(s, c, false, t, st, Arc::new(Metrics::default())).await },
    );
    stats
}

/// The most a release may lag behind a deadline, in ms, for holds of a 1 s
/// hold time made from `first_hold` on, with the worker started now: a
/// generous bound for a slow, busy machine (the worker aims at well under a
/// second; `scripts/bench` measures that), far below the worker's longest
/// sleep, plus however long the first holds had already been expired (a slow
/// set-up).
fn lag_bound(first_hold: Instant) -> u64 {
    let late_start = first_hold.elapsed().saturating_sub(Duration::from_secs(1));
    LAG_BOUND_MS + late_start.as_millis() as u64
}

/// See [`lag_bound`].
const LAG_BOUND_MS: u64 = 5000;

#[tokio::test]
async fn holds_come_back_on_time_with_only_the_release_worker() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 100, 1000).await;
    let first_hold = Instant::now();
    for i in 0..30 {
        hold(&s, "e", &format!("u{i}"), 2).await;
    }
    assert_eq!(meta(&redis, "e", "held"), 60);
    let stop = CancellationToken::new();
    let stats = start_release(store(&redis).await, &config(&redis), &stop);
    let within = lag_bound(first_hold);
    assert!(
        wait_until(Duration::from_secs(15), || meta(&redis, "e", "held") == 0).await,
        "holds were not released"
    );
    assert_eq!(meta(&redis, "e", "expired"), 30);
    // The worker records the lags after Redis has answered: wait for them.
    assert!(wait_until(Duration::from_secs(15), || stats.lag().count == 30).await);
    let lag = stats.lag();
    assert!(
        lag.max_ms < within,
        "released {} ms after the deadline",
        lag.max_ms
    );
    stop.cancel();
}

#[tokio::test]
async fn two_release_workers_release_each_hold_exactly_once() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "a", 500, 1000).await;
    event(&s, "b", 500, 1000).await;
    let first_hold = Instant::now();
    for i in 0..100 {
        hold(&s, "a", &format!("u{i}"), 1).await;
        hold(&s, "b", &format!("u{i}"), 3).await;
    }
    let stop = CancellationToken::new();
    let cfg = config(&redis);
    let s1 = start_release(store(&redis).await, &cfg, &stop);
    let s2 = start_release(store(&redis).await, &cfg, &stop);
    let within = lag_bound(first_hold);
    let done = wait_until(Duration::from_secs(15), || {
        meta(&redis, "a", "held") + meta(&redis, "b", "held") == 0
    })
    .await;
    assert!(done, "holds were not released");
    assert_eq!(
        meta(&redis, "a", "expired") + meta(&redis, "b", "expired"),
        200
    );
    // A worker counts its releases after Redis has answered: wait for the
    // counts, then make sure no hold was counted twice.
    let total = || s1.released.load(Ordering::Relaxed) + s2.released.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || total() >= 200).await);
    assert_eq!(total(), 200, "each hold released by exactly one worker");
    let lag = s1.lag().max_ms.max(s2.lag().max_ms);
    assert!(lag < within, "released {lag} ms after a deadline");
    assert_eq!(meta(&redis, "a", "held") + meta(&redis, "a", "sold"), 0);
    stop.cancel();
}

#[tokio::test]
async fn deadlines_that_interleave_after_a_hold_time_change_are_each_released_on_time() {
    // A hold of 30 s, then the hold time cut to 1 s and a second hold: its
    // deadline comes first although it was made later. The worker, asleep
    // until the first deadline, is woken and releases the second on time.
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 10, 30_000).await;
    let mut cfg = config(&redis);
    cfg.release.max_sleep = Duration::from_secs(60);
    let stop = CancellationToken::new();
    let stats = start_release(store(&redis).await, &cfg, &stop);
    let long = hold(&s, "e", "a", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // asleep until `long`'s deadline
    let patch = ticketctl::model::EventPatch {
        hold_ttl_ms: Some(1000),
        ..Default::default()
    };
    s.patch_event("e", &patch).await.unwrap().unwrap().unwrap();
    let short = hold(&s, "e", "b", 1).await;
    assert!(short.id.deadline_ms < long.id.deadline_ms);
    assert!(
        wait_until(Duration::from_secs(15), || stats
            .released
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "the later hold with the sooner deadline was not released"
    );
    assert!(stats.lag().max_ms < LAG_BOUND_MS, "{:?}", stats.lag());
    // The first hold is still held: only its own deadline releases it.
    assert_eq!(meta(&redis, "e", "held"), 1);
    assert_eq!(
        s.get_hold(&long.id).await.unwrap().map(|h| h.tickets),
        Some(long.tickets)
    );
    stop.cancel();
}

#[tokio::test]
async fn a_sleeping_release_worker_wakes_for_a_new_hold() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 10, 1000).await;
    let mut cfg = config(&redis);
    cfg.release.max_sleep = Duration::from_secs(60);
    let stop = CancellationToken::new();
    let stats = start_release(store(&redis).await, &cfg, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await; // the worker is asleep with nothing scheduled
    hold(&s, "e", "u", 1).await;
    assert!(
        wait_until(Duration::from_secs(15), || stats
            .released
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert!(stats.lag().max_ms < LAG_BOUND_MS, "{:?}", stats.lag());
    stop.cancel();
}

fn purchase_opts(once: bool, consumer: &str) -> PurchaseOpts {
    PurchaseOpts {
        once,
        batch: 64,
        consumer: consumer.into(),
        block: Duration::from_millis(200),
    }
}

/// One run of the purchase worker with `opts`, on a connection of its own.
async fn drain(redis: &Redis, cfg: &Config, opts: PurchaseOpts) -> purchase::PurchaseSummary {
    purchase::run(
        store(redis).await,
        cfg.purchase.clone(),
        opts,
        CancellationToken::new(),
        Arc::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn orders_are_published_once_to_every_stream_and_completed() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 1000, 60_000).await;
    let mut orders = Vec::new();
    for i in 0..150 {
        orders.push(buy(&s, "e", &format!("u{i}")).await);
    }
    let cfg = config(&redis);
    let summary = drain(&redis, &cfg, purchase_opts(true, "c1")).await;
    assert_eq!(summary.completed, 150);
    for o in &orders {
        let got = s.get_order(&o.id).await.unwrap().unwrap();
        assert_eq!(got.status, OrderStatus::Completed);
        assert!(got.completed_ms.unwrap() >= got.created_ms);
    }
    for stream in ["tc:payments", "tc:fulfillment"] {
        let mut ids = sink_order_ids(&redis, stream);
        assert_eq!(ids.len(), 150, "{stream}");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 150, "{stream} has duplicates");
    }
    let first = redis.cli(&["XRANGE", "tc:payments", "-", "+", "COUNT", "1"]);
    for field in ["orderId", "eventId", "userId", "ticketIds", "createdAt"] {
        assert!(
            first.lines().any(|l| l == field),
            "{field} missing: {first}"
        );
    }
    assert!(first.contains("[1]"), "{first}");
    assert_eq!(jobs_outstanding(&redis, "e"), 0, "every job acknowledged");
    // Running again publishes nothing more.
    let again = drain(&redis, &cfg, purchase_opts(true, "c2")).await;
    assert_eq!(again.completed, 0);
    assert_eq!(sink_order_ids(&redis, "tc:payments").len(), 150);
}

/// The largest batch the configuration allows goes through in one pass:
/// scripts given thousands of jobs pass them to Redis commands in chunks
/// (Lua unpacks at most ~8000 values at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_nine_thousand_jobs_completes_in_one_pass() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 9000, 600_000).await;
    let mut tasks = Vec::new();
    for t in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..9000).step_by(50) {
                buy(&s, "e", &format!("u{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let cfg = config(&redis);
    let opts = PurchaseOpts {
        batch: 10_000,
        ..purchase_opts(true, "big")
    };
    let summary = drain(&redis, &cfg, opts).await;
    assert_eq!((summary.completed, summary.failed_batches), (9000, 0));
    assert_eq!(jobs_outstanding(&redis, "e"), 0, "every job acknowledged");
    for stream in ["tc:payments", "tc:fulfillment"] {
        assert_eq!(sink_order_ids(&redis, stream).len(), 9000, "{stream}");
    }
}

#[tokio::test]
async fn a_stream_sink_keeps_about_maxlen_entries_and_a_group_falling_behind_is_shown() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 3000, 600_000).await;
    for i in 0..2500 {
        buy(&s, "e", &format!("u{i}")).await;
    }
    // Two consumers of the sink: one reads everything, one has read nothing.
    redis.cli(&["XGROUP", "CREATE", "tc:trimmed", "slow", "0", "MKSTREAM"]);
    let mut cfg = config(&redis);
    cfg.purchase.sinks = vec![SinkConfig::RedisStream {
        stream: "tc:trimmed".into(),
        maxlen: 1000,
    }];
    let summary = drain(&redis, &cfg, purchase_opts(true, "c1")).await;
    assert_eq!(summary.completed, 2500);
    // Approximate trimming drops whole nodes of 100 entries.
    let len: u64 = redis.cli(&["XLEN", "tc:trimmed"]).parse().unwrap();
    assert!((1000..=1100).contains(&len), "{len} entries");
    redis.cli(&["XGROUP", "CREATE", "tc:trimmed", "fast", "$"]);
    let groups = s.stream_groups("tc:trimmed").await.unwrap();
    let lag = |name: &str| groups.iter().find(|g| g.name == name).unwrap().lag;
    assert_eq!(lag("slow"), Some(len));
    assert_eq!(lag("fast"), Some(0));
    // An entry deleted by hand: Redis no longer tells the lag of a group
    // behind it, yet one that has read nothing still has all to read.
    let last = redis.cli(&["XREVRANGE", "tc:trimmed", "+", "-", "COUNT", "1"]);
    let last_id = last.lines().next().unwrap().to_string();
    redis.cli(&["XDEL", "tc:trimmed", &last_id]);
    let groups = s.stream_groups("tc:trimmed").await.unwrap();
    let slow = groups.iter().find(|g| g.name == "slow").unwrap();
    assert_eq!(slow.lag, Some(len - 1), "{groups:?}");
    assert!(s.stream_groups("tc:none").await.unwrap().is_empty());
    // inspect queues names the group that is about to lose entries.
    let file = common::ConfigFile::new(
        "trimmed",
        &format!(
            "[redis]\nurl = \"{}\"\n[[purchase.sinks]]\nkind = \"redis-stream\"\nstream = \"tc:trimmed\"\nmaxlen = 1000\n",
            redis.url()
        ),
    );
    let out = common::run_cli(&["inspect", "queues", "--config", file.arg()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: group slow of tc:trimmed"), "{text}");
    assert!(!text.contains("group fast"), "{text}");
    let out = common::run_cli(&["inspect", "queues", "--json", "--config", file.arg()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sink = &doc["queues"]["sinks"][0];
    assert_eq!(sink["maxlen"], 1000, "{sink}");
    let group = |name: &str| {
        sink["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(group("slow")["closeToMaxlen"], true, "{sink}");
    assert_eq!(group("fast")["closeToMaxlen"], false, "{sink}");
    // A maxlen under 1,000 (other than 0) is refused.
    let bad = common::ConfigFile::new(
        "tiny",
        "[[purchase.sinks]]\nkind = \"redis-stream\"\nstream = \"x\"\nmaxlen = 10\n",
    );
    let out = common::run_cli(&["inspect", "queues", "--config", bad.arg()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maxlen"));
    // Nor one past what Redis reads (a signed 64-bit number).
    let huge = common::ConfigFile::new(
        "huge",
        "[[purchase.sinks]]\nkind = \"redis-stream\"\nstream = \"x\"\nmaxlen = 18446744073709551615\n",
    );
    let out = common::run_cli(&["inspect", "queues", "--config", huge.arg()]);
    assert_eq!(out.status.code(), Some(2));
}

/// A local webhook receiver: answers `status`, after `delay` for the first
/// `slow_first` requests.
struct Hook {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

async fn hook(status: u16, delay: Duration, slow_first: u64) -> Hook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            assert!(req
                                .headers()
                                .get("x-ticketctl-signature")
                                .unwrap()
                                .to_str()
                                .unwrap()
                                .starts_with("sha256="));
                            if n < slow_first {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Hook { addr, requests }
}

#[tokio::test]
async fn a_failing_webhook_drives_orders_to_the_dead_letter_stream() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 100, 60_000).await;
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(buy(&s, "e", &format!("u{i}")).await);
    }
    let h = hook(500, Duration::ZERO, 0).await;
    let mut cfg = config(&redis);
    cfg.purchase.max_attempts = 3;
    cfg.purchase.claim_idle = Duration::from_millis(200);
    cfg.purchase.sinks = vec![SinkConfig::Webhook {
        url: format!("http://{}/orders", h.addr),
        secret: "k".into(),
        timeout: Duration::from_secs(1),
        tls_ca_file: None,
    }];
    let stop = CancellationToken::new();
    let worker = tokio::spawn(purchase::run(
        store(&redis).await,
        cfg.purchase.clone(),
        purchase_opts(false, "w"),
        stop.clone(),
        Arc::default(),
    ));
    let done = wait_until(Duration::from_secs(20), || {
        redis.cli(&["XLEN", &keys("e").dead()]) == "5"
    })
    .await;
    assert!(
        done,
        "dead letters: {}",
        redis.cli(&["XLEN", &keys("e").dead()])
    );
    stop.cancel();
    let summary = worker.await.unwrap().unwrap();
    assert_eq!(summary.dead_lettered, 5);
    assert!(summary.failed_batches >= 3);
    for o in &orders {
        assert_eq!(
            s.get_order(&o.id).await.unwrap().unwrap().status,
            OrderStatus::Failed
        );
    }
    let dead = redis.cli(&["XRANGE", &keys("e").dead(), "-", "+", "COUNT", "1"]);
    assert!(dead.contains("answered 500"), "{dead}");
    let attempts: Vec<&str> = dead.lines().collect();
    let i = attempts.iter().position(|l| *l == "attempts").unwrap();
    assert_eq!(attempts[i + 1], "3");
    assert!(h.requests.load(Ordering::SeqCst) >= 3);
    assert_eq!(jobs_outstanding(&redis, "e"), 0);
}

#[tokio::test]
async fn a_slow_webhook_is_retried_and_succeeds() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 100, 60_000).await;
    let order = buy(&s, "e", "u").await;
    let h = hook(200, Duration::from_secs(2), 1).await;
    let mut cfg = config(&redis);
    cfg.purchase.sinks = vec![SinkConfig::Webhook {
        url: format!("http://{}/", h.addr),
        secret: String::new(),
        timeout: Duration::from_millis(300),
        tls_ca_file: None,
    }];
    let summary = drain(&redis, &cfg, purchase_opts(true, "w")).await;
    assert_eq!(summary.completed, 1);
    assert!(h.requests.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        s.get_order(&order.id).await.unwrap().unwrap().status,
        OrderStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_worker_killed_mid_batch_loses_and_duplicates_nothing() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 5000, 600_000).await;
    const N: usize = 1200;
    for i in 0..N {
        buy(&s, "e", &format!("u{i}")).await;
    }
    // A slow webhook after the stream sinks makes every batch take a while,
    // so the kill lands after the streams got a batch and before its ack.
    let h = hook(200, Duration::from_millis(150), u64::MAX).await;
    let dir = redis.dir.clone();
    let cfg_path = dir.join("workers.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[purchase]\nbatch = 100\nclaim_idle = \"500ms\"\n\
             [[purchase.sinks]]\nkind = \"redis-stream\"\nstream = \"tc:payments\"\n\
             [[purchase.sinks]]\nkind = \"redis-stream\"\nstream = \"tc:fulfillment\"\n\
             [[purchase.sinks]]\nkind = \"webhook\"\nurl = \"http://{}/\"\nsecret = \"k\"\ntimeout = \"5s\"\n",
            h.addr
        ),
    )
    .unwrap();
    let spawn = |name: &str| {
        std::process::Command::new(bin())
            .args([
                "work",
                "purchase",
                "--config",
                cfg_path.to_str().unwrap(),
                "--redis",
                &redis.url(),
                "--consumer",
                name,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut victim = spawn("victim");
    // Wait until the victim is inside a batch: the webhook saw it.
    assert!(
        wait_until(Duration::from_secs(10), || h
            .requests
            .load(Ordering::SeqCst)
            >= 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let pending_after_kill = redis.cli(&["XPENDING", &keys("e").jobs(), JOBS_GROUP]);
    let mut survivor = spawn("survivor");
    let done = wait_until(Duration::from_secs(60), || {
        jobs_outstanding(&redis, "e") == 0
    })
    .await;
    let _ = survivor.kill();
    let _ = survivor.wait();
    assert!(done, "jobs left: {}", jobs_outstanding(&redis, "e"));
    assert!(
        !pending_after_kill.starts_with('0'),
        "the kill should leave jobs pending: {pending_after_kill}"
    );
    for stream in ["tc:payments", "tc:fulfillment"] {
        let mut ids = sink_order_ids(&redis, stream);
        assert_eq!(ids.len(), N, "{stream}: every order exactly once");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), N, "{stream} has duplicates");
    }
    let orders = redis.cli(&["HVALS", &keys("e").orders()]);
    assert_eq!(
        orders
            .lines()
            .filter(|l| l.starts_with("completed|"))
            .count(),
        N
    );
}

#[tokio::test]
async fn a_sink_that_failed_mid_write_gets_the_order_on_the_retry() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 10, 60_000).await;
    let order = buy(&s, "e", "u").await;
    // The payments stream is broken (a string where the stream should be): the append fails.
    redis.cli(&["SET", "tc:payments", "not a stream"]);
    let cfg = config(&redis);
    let first = drain(&redis, &cfg, purchase_opts(true, "w")).await;
    assert_eq!((first.completed, first.failed_batches), (0, 1));
    redis.cli(&["DEL", "tc:payments"]);
    // Same consumer again: it takes back its own pending job and publishes it.
    let second = drain(&redis, &cfg, purchase_opts(true, "w")).await;
    assert_eq!(second.completed, 1);
    assert_eq!(
        sink_order_ids(&redis, "tc:payments"),
        vec![order.id.to_string()]
    );
    assert_eq!(
        sink_order_ids(&redis, "tc:fulfillment"),
        vec![order.id.to_string()],
        "no duplicate in the sink that had it"
    );
}

#[tokio::test]
async fn a_restarted_worker_with_a_failing_sink_stops_retrying_and_dead_letters() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 10, 60_000).await;
    let order = buy(&s, "e", "u").await;
    let mut cfg = config(&redis);
    cfg.purchase.max_attempts = 3;
    cfg.purchase.claim_idle = Duration::from_millis(100);
    cfg.purchase.sinks = vec![SinkConfig::Webhook {
        url: format!("http://127.0.0.1:{}/", common::free_port()),
        secret: String::new(),
        timeout: Duration::from_millis(200),
        tls_ca_file: None,
    }];
    // Repeated --once runs under one consumer name: each ends, and the job is
    // dead-lettered after its third delivery instead of being retried forever.
    for run in 0..10 {
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            purchase::run(
                store(&redis).await,
                cfg.purchase.clone(),
                purchase_opts(true, "same"),
                CancellationToken::new(),
                Arc::default(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("run {run} did not end"))
        .unwrap();
        if r.dead_lettered == 1 {
            assert_eq!(
                s.get_order(&order.id).await.unwrap().unwrap().status,
                OrderStatus::Failed
            );
            let dead = redis.cli(&["XRANGE", &keys("e").dead(), "-", "+"]);
            let lines: Vec<&str> = dead.lines().collect();
            let i = lines.iter().position(|l| *l == "attempts").unwrap();
            assert_eq!(lines[i + 1], "3");
            return;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("never dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_purchase_worker_finish_its_batch_and_exit_0() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 1000, 600_000).await;
    for i in 0..300 {
        buy(&s, "e", &format!("u{i}")).await;
    }
    let h = hook(200, Duration::from_millis(400), u64::MAX).await;
    let cfg_path = redis.dir.join("term.toml");
    std::fs::write(&cfg_path, format!("[purchase]\nbatch = 50\n[[purchase.sinks]]\nkind = \"webhook\"\nurl = \"http://{}/\"\nsecret = \"k\"\n", h.addr)).unwrap();
    let mut child = std::process::Command::new(bin())
        .args([
            "work",
            "purchase",
            "--config",
            cfg_path.to_str().unwrap(),
            "--redis",
            &redis.url(),
            "--consumer",
            "t",
        ])
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || h
            .requests
            .load(Ordering::SeqCst)
            >= 1)
        .await
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    // The batch in hand was published and acknowledged: nothing is left pending.
    let completed = redis
        .cli(&["HGET", &keys("e").meta(), "completed"])
        .parse::<u64>()
        .unwrap_or(0);
    assert!(completed >= 50, "completed {completed}");
    let pending = redis.cli(&["XPENDING", &keys("e").jobs(), JOBS_GROUP]);
    assert!(pending.starts_with('0'), "{pending}");
    assert!(
        completed < 300,
        "it stopped reading rather than draining everything"
    );
}

/// publish_stream checks what could fail before its first write: a call that
/// fails leaves the sink as it was, so its retry cannot append an order twice.
#[tokio::test]
async fn a_publish_that_fails_writes_nothing() {
    let redis = Redis::start();
    let script = [
        include_str!("../src/store/lua/lib.lua"),
        include_str!("../src/store/lua/orders.lua"),
        "begin(KEYS)\n",
        include_str!("../src/store/lua/publish_stream.lua"),
    ]
    .concat();
    let sha = redis.cli(&["SCRIPT", "LOAD", &script]);
    let order = |i: u32| {
        [
            format!("ev.o{i}.s"),
            "ev".into(),
            "u".into(),
            "[1]".into(),
            "2026-01-01T00:00:00.000Z".into(),
            "2500".into(),
            "EUR".into(),
            "purchase".into(),
            "3".into(),
            i.to_string(),
        ]
    };
    let call = |orders: &[u32], extra: &[&str]| -> String {
        let mut a: Vec<String> = [
            "EVALSHA",
            &sha,
            "3",
            "sink",
            "{sink}:published",
            "{sink}:sent:ev:purchase",
            "60000",
            "0",
        ]
        .map(String::from)
        .to_vec();
        for i in orders {
            a.extend(order(*i));
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        redis.cli(&refs)
    };
    // A short last order: refused before anything is appended.
    let out = call(&[1, 2, 3], &["ev.o4.s", "ev"]);
    assert!(out.contains("10 arguments"), "{out}");
    assert_eq!(redis.cli(&["XLEN", "sink"]), "0");
    // The sink is not a stream: the same.
    redis.cli(&["SET", "sink", "x"]);
    let out = call(&[1, 2, 3], &[]);
    assert!(out.contains("not a stream"), "{out}");
    assert_eq!(redis.cli(&["EXISTS", "{sink}:sent:ev:purchase"]), "0");
    redis.cli(&["DEL", "sink"]);
    // Nor is the bitmap a bitmap.
    redis.cli(&["HSET", "{sink}:sent:ev:purchase", "a", "1"]);
    let out = call(&[1, 2, 3], &[]);
    assert!(out.contains("not a bitmap"), "{out}");
    assert_eq!(redis.cli(&["XLEN", "sink"]), "0");
    redis.cli(&["DEL", "{sink}:sent:ev:purchase"]);
    // Orders published by the version before bitmaps are known by the
    // older index while it lasts.
    redis.cli(&["ZADD", "{sink}:published", "9999999999999", "ev.o2.s"]);
    // A good call, then its retry: each order once.
    assert_eq!(call(&[1, 2, 3], &[]), "2");
    assert_eq!(call(&[1, 2, 3, 4], &[]), "1");
    assert_eq!(redis.cli(&["XLEN", "sink"]), "3");
    assert_eq!(redis.cli(&["GETBIT", "{sink}:sent:ev:purchase", "4"]), "1");
    assert_eq!(redis.cli(&["GETBIT", "{sink}:sent:ev:purchase", "2"]), "0");
    // The bitmap outlives its last publish by the retention (60 s here).
    let ttl: i64 = redis
        .cli(&["PTTL", "{sink}:sent:ev:purchase"])
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    // Once the older index has aged out it is gone, and the bitmap decides.
    redis.cli(&["ZADD", "{sink}:published", "1", "ev.o9.s"]);
    redis.cli(&["ZREM", "{sink}:published", "ev.o2.s"]);
    assert_eq!(call(&[9], &[]), "1");
    assert_eq!(redis.cli(&["EXISTS", "{sink}:published"]), "0");
}

/// One order per buyer on a new event "e", their jobs read (and left
/// pending) by `consumer`.
async fn orders_read_by(
    redis: &Redis,
    buyers: &[&str],
    consumer: &str,
) -> (Store, Vec<ticketctl::store::Job>) {
    let s = store(redis).await;
    event(&s, "e", 10, 60_000).await;
    for b in buyers {
        buy(&s, "e", b).await;
    }
    s.ensure_group("e").await.unwrap();
    let read = s.read_jobs(&["e".to_string()], consumer, 10, None).await;
    assert!(read.error.is_none(), "{:?}", read.error);
    let jobs = read.jobs;
    assert_eq!(jobs.len(), buyers.len());
    (s, jobs)
}

#[tokio::test]
async fn a_job_published_after_it_was_dead_lettered_completes_its_order() {
    // A worker slower than claim_idle × max_attempts: its jobs were taken
    // over and dead-lettered while it still published them. Every sink has
    // what it completes, so its orders are completed, not failed.
    let redis = Redis::start();
    let (s, jobs) = orders_read_by(&redis, &["a", "b"], "slow").await;
    let order = |j: &ticketctl::store::Job| j.body.as_ref().unwrap().order.clone();
    let dead: Vec<_> = jobs
        .iter()
        .map(|j| (j.stream_id.as_str(), Some(order(j).seq), 3, ""))
        .collect();
    assert_eq!(s.dead_letter("e", &dead).await.unwrap(), 2);
    let status = |id| {
        let s = s.clone();
        async move { s.get_order(&id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(order(&jobs[0])).await, OrderStatus::Failed);

    let done = s
        .complete_jobs("e", &[(jobs[0].stream_id.as_str(), order(&jobs[0]).seq)])
        .await
        .unwrap();
    assert_eq!(done, 1);
    assert_eq!(status(order(&jobs[0])).await, OrderStatus::Completed);
    assert_eq!(status(order(&jobs[1])).await, OrderStatus::Failed);
    // Its dead letter is gone; the other's stays.
    assert_eq!(redis.cli(&["XLEN", &keys("e").dead()]), "1");
    let left = redis.cli(&["XRANGE", &keys("e").dead(), "-", "+"]);
    assert!(left.contains(&jobs[1].stream_id), "{left}");
    assert!(!left.contains(&jobs[0].stream_id), "{left}");
    let meta = |f: &str| redis.cli(&["HGET", &keys("e").meta(), f]);
    assert_eq!(
        (meta("completed"), meta("failed")),
        ("1".into(), "1".into())
    );
    // Completing it again changes nothing.
    let again = s
        .complete_jobs("e", &[(jobs[0].stream_id.as_str(), order(&jobs[0]).seq)])
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(
        (meta("completed"), meta("failed")),
        ("1".into(), "1".into())
    );

    // The other order was retried and dead-lettered again meanwhile (a
    // second dead letter under another job id); its first job is then
    // completed, named twice in the call: it counts once, and every dead
    // letter of the order goes.
    let seq = order(&jobs[1]).seq.to_string();
    let dead_letter_of_seq = |job: &str| {
        redis.cli(&[
            "XADD",
            &keys("e").dead(),
            "*",
            "seq",
            &seq,
            "jobId",
            job,
            "error",
            "x",
        ]);
    };
    dead_letter_of_seq("1-1");
    let j1 = (jobs[1].stream_id.as_str(), order(&jobs[1]).seq);
    assert_eq!(s.complete_jobs("e", &[j1, j1]).await.unwrap(), 1);
    assert_eq!(status(order(&jobs[1])).await, OrderStatus::Completed);
    assert_eq!(redis.cli(&["XLEN", &keys("e").dead()]), "0");
    assert_eq!(
        (meta("completed"), meta("failed")),
        ("2".into(), "0".into())
    );

    // A dead letter of a completed order that was not found (older than the
    // newest 1,000): a retry drops it and queues nothing.
    dead_letter_of_seq("1-2");
    let queued = redis.cli(&["XLEN", &keys("e").jobs()]);
    let (retried, left) = s.retry_dead_letters("e", None).await.unwrap();
    assert_eq!((retried, left), (0, 0));
    assert_eq!(redis.cli(&["XLEN", &keys("e").jobs()]), queued);
    assert_eq!(status(order(&jobs[1])).await, OrderStatus::Completed);
}

#[tokio::test]
async fn dead_workers_consumers_are_forgotten_but_never_one_holding_a_job() {
    let redis = Redis::start();
    let (s, _jobs) = orders_read_by(&redis, &["a"], "busy").await;
    for c in ["gone-1", "gone-2", "me"] {
        redis.cli(&["XGROUP", "CREATECONSUMER", &keys("e").jobs(), JOBS_GROUP, c]);
    }
    let names = || {
        let mut n: Vec<String> = redis
            .cli(&["XINFO", "CONSUMERS", &keys("e").jobs(), JOBS_GROUP])
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "name")
            .map(|w| w[1].to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(), ["busy", "gone-1", "gone-2", "me"]);
    // Not idle long enough: nobody goes.
    let n = s
        .forget_idle_consumers("e", Duration::from_secs(3600), "me")
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n = s
        .forget_idle_consumers("e", Duration::ZERO, "me")
        .await
        .unwrap();
    assert_eq!(n, 2);
    // The one holding a job and the caller stay; the job is still pending.
    assert_eq!(names(), ["busy", "me"]);
    assert_eq!(jobs_outstanding(&redis, "e"), 1);
}

#[tokio::test]
async fn taking_back_own_jobs_counts_no_delivery_and_acknowledges_deleted_ones() {
    let redis = Redis::start();
    let (s, jobs) = orders_read_by(&redis, &["a", "b", "c"], "w").await;
    let key = &keys("e").jobs();
    redis.cli(&["XDEL", key, &jobs[1].stream_id]);
    let back = s.own_jobs("e", "w", 10).await.unwrap();
    let ids: Vec<&str> = back.iter().map(|j| j.stream_id.as_str()).collect();
    assert_eq!(
        ids,
        [jobs[0].stream_id.as_str(), jobs[2].stream_id.as_str()]
    );
    assert!(
        back.iter().all(|j| j.deliveries == 1 && j.body.is_ok()),
        "{back:?}"
    );
    // Still one delivery each, and the deleted job's entry is gone.
    let pending = redis.cli(&["XPENDING", key, JOBS_GROUP, "-", "+", "10"]);
    let rows: Vec<&str> = pending.lines().collect();
    assert_eq!(rows.len(), 8, "{pending}");
    assert_eq!((rows[3], rows[7]), ("1", "1"), "{pending}");
    // Another consumer's jobs are not this one's.
    assert!(s.own_jobs("e", "other", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_job_stream_deleted_by_hand_gets_its_group_back_and_its_jobs_done() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "e", 10, 60_000).await;
    buy(&s, "e", "before").await;
    redis.cli(&["DEL", &keys("e").jobs()]);
    let order = buy(&s, "e", "after").await;
    // The stream is back without its group: the read meets NOGROUP.
    let cfg = config(&redis);
    let summary = drain(&redis, &cfg, purchase_opts(true, "w")).await;
    assert_eq!(summary.completed, 1);
    assert_eq!(
        sink_order_ids(&redis, "tc:payments"),
        [order.id.to_string()]
    );
}
