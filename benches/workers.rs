//! Worker throughput and release lag against the Redis named by
//! `TICKETCTL_BENCH_REDIS` (scripts/bench starts a private one). Prints one
//! `RESULT name value unit` line per figure for scripts/bench to collect.
//!
//! - purchases drained per second by one purchase worker (default batch and sinks);
//! - expired holds released per second by one release pass;
//! - release lag (release time minus deadline, Redis clock) under a steady expiry rate.
//!
//! `BENCH_ONLY=memory` measures Redis memory per hold, per event and per
//! waiting place instead;
//! `BENCH_ONLY=drain` stops after the drain rate; `BENCH_ONLY=results` measures
//! payment results applied per second only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use ticketctl::config::Config;
use ticketctl::daemon::metrics::Metrics;
use ticketctl::daemon::worker::purchase::{self, PurchaseOpts};
use ticketctl::daemon::worker::release::{self, ReleaseStats};
use ticketctl::model::queue::QueueSettings;
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest, PurchaseOutcome, Selling};
use ticketctl::store::queue::JoinOutcome;
use ticketctl::store::{HoldRef, Store};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn make_event(store: &Store, id: &str, capacity: u64, ttl_ms: u64) {
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

/// Runs `n` operations over `tasks` concurrent tasks.
async fn fan_out<F, Fut>(n: u64, tasks: u64, f: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut handles = Vec::new();
    for t in 0..tasks {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < n {
                f(i).await;
                i += tasks;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// One ticket of `event` held and bought by `user`.
async fn hold_and_buy(s: &Store, event: &str, user: &str) {
    let HoldOutcome::Held { hold, .. } = s
        .hold(event, user, &HoldRequest::Quantity(1), None)
        .await
        .unwrap()
    else {
        panic!("hold refused")
    };
    let PurchaseOutcome::Bought { .. } = s
        .purchase(&HoldRef::Id(&hold.id), user, None)
        .await
        .unwrap()
    else {
        panic!("purchase refused")
    };
}

/// One pass of the purchase worker over what is queued, which must be `n`
/// orders.
async fn drain_all(store: Store, cfg: &Config, n: u64) {
    let opts = PurchaseOpts {
        once: true,
        batch: cfg.purchase.batch,
        consumer: "bench".into(),
        block: Duration::from_millis(500),
    };
    let summary = purchase::run(
        store,
        cfg.purchase.clone(),
        opts,
        CancellationToken::new(),
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    assert_eq!(summary.completed, n, "every order completed");
}

async fn purchases_drained(store: Store, cfg: &Config) {
    let n = env_u64("BENCH_PURCHASES", 100_000);
    make_event(&store, "bench-buy", n, 600_000).await;
    let s = store.clone();
    let t0 = Instant::now();
    fan_out(n, 64, move |i| {
        let s = s.clone();
        async move { hold_and_buy(&s, "bench-buy", &format!("u{i}")).await }
    })
    .await;
    let seed_secs = t0.elapsed().as_secs_f64();
    println!("RESULT purchases_seeded_per_sec {:.0} ops/s ({n} hold+purchase pairs through the store, 64 tasks)", n as f64 / seed_secs);
    let t0 = Instant::now();
    drain_all(store, cfg, n).await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "RESULT purchases_drained_per_sec {:.0} jobs/s ({n} jobs, batch {}, {} sinks, {secs:.2}s)",
        n as f64 / secs,
        cfg.purchase.batch,
        cfg.purchase.sinks.len()
    );
}

/// Payment results applied per second by one worker from the results
/// stream: `BENCH_RESULTS` orders bought, a `paid` result each added to the
/// stream, then one `--once` pass of the results consumer timed.
async fn payment_results_applied(store: Store, url: &str) {
    let n = env_u64("BENCH_RESULTS", 50_000);
    make_event(&store, "bench-pay", n, 600_000).await;
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n as usize)));
    let (s, out) = (store.clone(), ids.clone());
    fan_out(n, 64, move |i| {
        let (s, out) = (s.clone(), out.clone());
        async move {
            let user = format!("p{i}");
            let HoldOutcome::Held { hold, .. } = s
                .hold("bench-pay", &user, &HoldRequest::Quantity(1), None)
                .await
                .unwrap()
            else {
                panic!("hold refused")
            };
            let PurchaseOutcome::Bought { order, .. } = s
                .purchase(&HoldRef::Id(&hold.id), &user, None)
                .await
                .unwrap()
            else {
                panic!("purchase refused")
            };
            out.lock().unwrap().push(order.id.to_string());
        }
    })
    .await;
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ids = ids.lock().unwrap().clone();
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("XADD")
                .arg("bench:payment-results")
                .arg("*")
                .arg("orderId")
                .arg(id)
                .arg("outcome")
                .arg("paid")
                .arg("reference")
                .arg("bench")
                .arg("amount")
                .arg(0)
                .ignore();
        }
        let () = pipe.query_async(&mut c).await.unwrap();
    }
    let t0 = Instant::now();
    let (applied, dead) = ticketctl::daemon::worker::results::run(
        store,
        "bench:payment-results".into(),
        "bench".into(),
        true,
        Duration::from_secs(30),
        Duration::from_millis(500),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!((applied, dead), (n, 0), "every result applied");
    println!(
        "RESULT payment_results_per_sec {:.0} results/s ({n} paid results from the stream, one worker, {secs:.2}s)",
        n as f64 / secs
    );
}

async fn holds_released(store: Store, cfg: &Config) {
    let n = env_u64("BENCH_RELEASES", 100_000);
    make_event(&store, "bench-rel", 1_000_000, 1000).await;
    let s = store.clone();
    fan_out(n, 64, move |i| {
        let s = s.clone();
        async move {
            let HoldOutcome::Held { .. } = s
                .hold(
                    "bench-rel",
                    &format!("u{i}"),
                    &HoldRequest::Quantity(1),
                    None,
                )
                .await
                .unwrap()
            else {
                panic!("hold refused")
            };
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stats = ReleaseStats::default();
    let t0 = Instant::now();
    release::release_pass(&store, cfg.release.batch, &stats, &Metrics::default())
        .await
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let released = stats.released.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(released, n, "every hold released");
    println!(
        "RESULT holds_released_per_sec {:.0} holds/s ({n} holds, batch {}, {secs:.2}s)",
        n as f64 / secs,
        cfg.release.batch
    );
}

async fn release_lag(store: Store, cfg: &Config) {
    let rate = env_u64("BENCH_LAG_RATE", 2000);
    let secs = env_u64("BENCH_LAG_SECS", 5);
    make_event(&store, "bench-lag", 1_000_000, 1000).await;
    let stop = CancellationToken::new();
    let stats = Arc::new(ReleaseStats::default());
    let worker_store = Store::connect(&cfg.redis).await.unwrap();
    let w = tokio::spawn(release::run(
        worker_store,
        cfg.release.clone(),
        false,
        stop.clone(),
        stats.clone(),
        Arc::new(Metrics::default()),
    ));
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut made = 0;
    while made < total {
        tick.tick().await;
        for _ in 0..per_tick {
            let s = store.clone();
            let user = format!("u{made}");
            tokio::spawn(async move {
                let _ = s
                    .hold("bench-lag", &user, &HoldRequest::Quantity(1), None)
                    .await;
            });
            made += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.released.load(std::sync::atomic::Ordering::Relaxed) < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = w.await;
    let lag = stats.lag();
    println!(
        "RESULT release_lag_p50_ms {} ms ({} holds expiring at {rate}/s, one release worker)\nRESULT release_lag_p99_ms {} ms\nRESULT release_lag_max_ms {} ms",
        lag.p50_ms, lag.count, lag.p99_ms, lag.max_ms
    );
}

async fn used_memory(url: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

async fn memory(store: Store, url: &str) {
    // Load the scripts first, so their cache is not counted as the event's.
    make_event(&store, "bench-warm", 10, 1000).await;
    let before = used_memory(url).await;
    make_event(&store, "bench-mem", 1_000_000, 3_600_000).await;
    let at_rest = used_memory(url).await - before;
    println!(
        "RESULT event_1m_at_rest_bytes {at_rest} bytes (one 1,000,000-ticket event, no holds)"
    );
    let n = env_u64("BENCH_MEM_HOLDS", 100_000);
    let before = used_memory(url).await;
    let s = store.clone();
    fan_out(n, 64, move |i| {
        let s = s.clone();
        async move {
            // Spread over the whole event, as random reservations are.
            let t = 1 + (i * 7_919) % 1_000_000;
            let r = s
                .hold(
                    "bench-mem",
                    &format!("user-{i}"),
                    &HoldRequest::Tickets(vec![t]),
                    None,
                )
                .await
                .unwrap();
            assert!(matches!(r, HoldOutcome::Held { .. }), "{r:?}");
        }
    })
    .await;
    let per_hold = (used_memory(url).await - before) as f64 / n as f64;
    println!("RESULT bytes_per_live_hold {per_hold:.0} bytes ({n} live one-ticket holds, user ids like user-12345)");
    waiting_room_memory(store.clone(), url).await;
    purchase_memory(store, url).await;
}

/// Redis bytes left behind per purchase once the purchase worker has
/// published it to the two default sinks: `BENCH_MEM_PURCHASES` (50,000)
/// holds bought and drained, once with the sinks' default maxlen (the
/// streams keep every entry of the run) and once with a maxlen of a fifth
/// of the run (the streams at their bound, as after a long time).
async fn purchase_memory(store: Store, url: &str) {
    let n = env_u64("BENCH_MEM_PURCHASES", 50_000);
    for (label, maxlen) in [
        ("default", ticketctl::config::DEFAULT_SINK_MAXLEN),
        ("bounded", n / 5),
    ] {
        let event = format!("bench-retained-{label}");
        make_event(&store, &event, n, 600_000).await;
        let mut cfg = Config::with_default_events();
        cfg.redis.url = url.to_string();
        let streams: Vec<String> = cfg
            .purchase
            .sinks
            .iter_mut()
            .filter_map(|s| match s {
                ticketctl::config::SinkConfig::RedisStream { stream, maxlen: m } => {
                    *m = maxlen;
                    Some(stream.clone())
                }
                _ => None,
            })
            .collect();
        let client = redis::Client::open(url).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        for s in &streams {
            let _: () = redis::cmd("DEL").arg(s).query_async(&mut c).await.unwrap();
        }
        let before = used_memory(url).await;
        let s = store.clone();
        let ev = event.clone();
        fan_out(n, 64, move |i| {
            let (s, ev) = (s.clone(), ev.clone());
            async move { hold_and_buy(&s, &ev, &format!("user-{i}")).await }
        })
        .await;
        drain_all(store.clone(), &cfg, n).await;
        let mut lens = Vec::new();
        for s in &streams {
            let len: u64 = redis::cmd("XLEN").arg(s).query_async(&mut c).await.unwrap();
            lens.push(len);
        }
        let per = (used_memory(url).await - before) as f64 / n as f64;
        println!(
            "RESULT bytes_per_purchase_{label} {per:.0} bytes ({n} purchases published to {} stream sinks, maxlen {maxlen}: {lens:?} entries kept)",
            streams.len()
        );
        if label != "default" {
            continue;
        }
        // The dedupe index per entry: the bitmap of what one sink has, and
        // the sorted set the version before kept (an orderId member and a
        // ms score per order), built here from the same orders.
        let mc = c.clone();
        let memory = |key: String| {
            let mut c = mc.clone();
            async move {
                let v: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                v.unwrap_or(0)
            }
        };
        let bits = memory(ticketctl::store::keys::sink_sent(
            &streams[0],
            &event,
            "purchase",
        ))
        .await;
        let ids: Vec<String> = redis::cmd("HKEYS")
            .arg(ticketctl::store::keys::EventKeys::new(&event).orders())
            .query_async(&mut c)
            .await
            .unwrap();
        let records: Vec<(String, String)> = {
            let orders = ticketctl::store::keys::EventKeys::new(&event).orders();
            let mut out = Vec::new();
            for chunk in ids.chunks(1000) {
                let vals: Vec<String> = redis::cmd("HMGET")
                    .arg(&orders)
                    .arg(chunk)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                out.extend(chunk.iter().cloned().zip(vals));
            }
            out
        };
        let old_key = "bench-old-index";
        for chunk in records.chunks(1000) {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(old_key);
            for (seq, record) in chunk {
                // The order's id: event.o<seq>.<its secret, the record's second field>.
                let secret = record.split('|').nth(1).unwrap_or_default();
                cmd.arg(1_764_633_600_000u64 + seq.parse::<u64>().unwrap_or(0))
                    .arg(format!("{event}.o{seq}.{secret}"));
            }
            let _: () = cmd.query_async(&mut c).await.unwrap();
        }
        let zset = memory(old_key.to_string()).await;
        let stream_bytes = memory(streams[0].clone()).await;
        let order_bytes = memory(ticketctl::store::keys::EventKeys::new(&event).orders()).await;
        println!(
            "RESULT purchase_parts_bytes {:.0} bytes (per purchase: the order in its event's orders hash; one sink stream's entry {:.0} bytes)",
            order_bytes as f64 / n as f64,
            stream_bytes as f64 / n as f64
        );
        let _: () = redis::cmd("DEL")
            .arg(old_key)
            .query_async(&mut c)
            .await
            .unwrap();
        println!(
            "RESULT dedupe_bytes_per_entry {:.2} bytes (one sink's bitmap for {n} orders: {bits} bytes; the sorted set the version before kept for the same orders: {:.0} bytes per entry)",
            bits as f64 / n as f64,
            zset as f64 / ids.len().max(1) as f64
        );
        println!(
            "RESULT dedupe_bytes_per_entry_before {:.0} bytes (the sorted set of orderIds with ms scores, as kept before bitmaps, {} entries)",
            zset as f64 / ids.len().max(1) as f64,
            ids.len()
        );
    }
}

/// Redis bytes per waiting place: a waiting room of `BENCH_QUEUE_PLACES`
/// (1,000,000) buyers who joined and wait (100 let in at a time).
async fn waiting_room_memory(store: Store, url: &str) {
    let n = env_u64("BENCH_QUEUE_PLACES", 1_000_000);
    store
        .create_event(&EventSettings {
            id: "bench-queue".into(),
            capacity: 1_000_000,
            hold_ttl_ms: 600_000,
            max_per_hold: 10,
            selling: Selling {
                queue: Some(QueueSettings {
                    max_active: 100,
                    admission_ms: 600_000,
                }),
                ..Selling::default()
            },
        })
        .await
        .unwrap();
    let before = used_memory(url).await;
    let started = Instant::now();
    let s = store.clone();
    fan_out(n, 64, move |i| {
        let s = s.clone();
        async move {
            let r = s
                .queue_join("bench-queue", &format!("buyer-{i}"))
                .await
                .unwrap();
            assert!(
                matches!(r, JoinOutcome::Joined { created: true, .. }),
                "{r:?}"
            );
        }
    })
    .await;
    let took = started.elapsed().as_secs_f64();
    let per_place = (used_memory(url).await - before) as f64 / n as f64;
    println!(
        "RESULT bytes_per_waiting_place {per_place:.0} bytes ({n} places joined in {took:.1}s, user ids like buyer-123456; {:.0} MB in all)",
        per_place * n as f64 / 1e6
    );
}

fn main() {
    let Ok(url) = std::env::var("TICKETCTL_BENCH_REDIS") else {
        eprintln!("set TICKETCTL_BENCH_REDIS to a Redis URL you can write to (scripts/bench starts a private one)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = Config::with_default_events();
        cfg.redis.url = url;
        let store = Store::connect(&cfg.redis)
            .await
            .expect("bench redis reachable");
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        if only == "memory" {
            memory(store, &cfg.redis.url).await;
            return;
        }
        if only == "results" {
            payment_results_applied(store, &cfg.redis.url).await;
            return;
        }
        purchases_drained(store.clone(), &cfg).await;
        if only == "drain" {
            return;
        }
        payment_results_applied(store.clone(), &cfg.redis.url).await;
        holds_released(store.clone(), &cfg).await;
        release_lag(store, &cfg).await;
    });
}
