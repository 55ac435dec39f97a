//! The command line: exit statuses, one-line errors, `event`, and `serve`
//! stopping cleanly on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{keys, run_cli, Redis, ServeProc};
use ticketctl::store::keys::EVENTS;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("tc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten_address = \"127.0.0.1:1\"\n").unwrap();
    let o = run_cli(&["event", "list", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("listen_address") && e.lines().count() == 1,
        "{e}"
    );

    std::fs::write(&bad, "[purchase]\nclaim_idle = \"whenever\"\n").unwrap();
    let o = run_cli(&["event", "list", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("claim_idle"), "{}", stderr(&o));

    let o = run_cli(&[
        "event",
        "list",
        "--config",
        dir.join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("missing.toml"), "{e}");
    assert_eq!(e.matches("os error").count(), 1, "the cause said once: {e}");

    let o = run_cli(&["event", "list", "--redis", "http://nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("redis.url"));
    // URLs the Redis client cannot use are configuration errors too.
    for url in ["redis://127.0.0.1:1/abc", "redis://"] {
        let o = run_cli(&["event", "list", "--redis", url]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {e}");
        assert!(e.contains("redis.url") && e.lines().count() == 1, "{e}");
    }

    let o = run_cli(&["serve", "--listen", "not-an-address"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("server.listen"));

    // Refused before Redis is asked (none listens on port 1).
    for args in [
        &["dlq", "list", "--limit", "0"][..],
        &["dlq", "list", "--event", "bad id"],
        &["dlq", "retry", "--all", "--event", "bad id"],
        &["dlq", "purge", "--yes", "--event", "bad id"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--redis", "redis://127.0.0.1:1"]);
        let o = run_cli(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    let o = run_cli(&["serve", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.starts_with("ticketctl: ") && e.contains("--no-such-flag") && e.lines().count() == 1,
        "{e}"
    );

    let o = run_cli(&["event", "create", "bad id", "--capacity", "3"]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_example_config_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/ticketctl.toml.example");
    let port = common::free_port();
    let o = run_cli(&[
        "event",
        "list",
        "--config",
        example,
        "--redis",
        &format!("redis://127.0.0.1:{port}"),
    ]);
    // Valid config, no Redis there: a runtime failure, not a config error.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn unreachable_redis_exits_1_with_one_line() {
    let port = common::free_port();
    let start = Instant::now();
    let o = run_cli(&[
        "serve",
        "--redis",
        &format!("redis://127.0.0.1:{port}"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.contains("Redis") && last.contains(&port.to_string()),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn events_are_created_and_listed() {
    let redis = Redis::start();
    let url = redis.url();
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--capacity",
        "50",
        "--hold-ttl",
        "2m",
        "--max-per-hold",
        "4",
        "--redis",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("created event gig"));
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--capacity",
        "50",
        "--hold-ttl",
        "2m",
        "--max-per-hold",
        "4",
        "--redis",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--capacity",
        "51",
        "--redis",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("other settings"));
    let o = run_cli(&["event", "list", "--json", "--redis", &url]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["events"][0]["id"], "gig");
    assert_eq!(v["events"][0]["holdTtlSeconds"], 120);
    assert_eq!(v["events"][0]["available"], 50);
    let o = run_cli(&["event", "list", "--redis", &url]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("gig") && table.contains("available"),
        "{table}"
    );
}

#[tokio::test]
async fn serve_seeds_the_default_event_and_stops_on_sigterm() {
    let redis = Redis::start();
    let mut s = ServeProc::start(&redis, &[]);
    let r = common::request(s.addr, "GET", "/v1/events/default", None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["capacity"], 100);
    s.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn serve_that_cannot_listen_exits_1_and_writes_nothing() {
    let redis = Redis::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run_cli(&["serve", "--redis", &redis.url(), "--listen", &addr]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    // The default event was not seeded.
    assert_eq!(redis.cli(&["EXISTS", &keys("default").meta()]), "0");
    assert_eq!(redis.cli(&["SCARD", EVENTS]), "0");
}

#[test]
fn a_webhook_slower_than_claim_idle_or_no_sink_at_all_is_warned_of() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("tc-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("t.toml");
    std::fs::write(
        &toml,
        "[purchase]\nclaim_idle = \"30s\"\n[[purchase.sinks]]\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:9/orders\"\nsecret = \"k\"\ntimeout = \"6s\"\n",
    )
    .unwrap();
    let warned = |extra: &[&str]| {
        let mut args = vec!["work", "purchase", "--once", "--redis"];
        let url = redis.url();
        args.push(&url);
        args.extend(extra);
        let o = run_cli(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stderr(&o).contains("can outlast purchase.claim_idle")
    };
    // Three tries of 6 s: 18.3 s at most; two of them outlast 30 s.
    assert!(warned(&["--config", toml.to_str().unwrap()]));
    // The default sinks are streams: nothing to warn of.
    assert!(!warned(&[]));
    // No sink at all is warned of too.
    std::fs::write(&toml, "[purchase]\nsinks = []\n").unwrap();
    let o = run_cli(&[
        "work",
        "purchase",
        "--once",
        "--redis",
        &redis.url(),
        "--config",
        toml.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("purchase.sinks is empty"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_starts_when_redis_refuses_the_replica_check() {
    // redis.wait_replicas makes serve read INFO at start; an ACL without it
    // gets a warning, not a server that will not start.
    let redis = Redis::start();
    redis.cli(&["ACL", "SETUSER", "default", "-info"]);
    let dir = std::env::temp_dir().join(format!("tc-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("t.toml");
    std::fs::write(&toml, "[redis]\nwait_replicas = 1\n").unwrap();
    let s = ServeProc::start(&redis, &["--config", toml.to_str().unwrap()]);
    let r = common::request(s.addr, "GET", "/v1/events/default", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_with_workers_completes_orders_and_releases_holds() {
    use serde_json::json;
    let redis = Redis::start();
    let s = ServeProc::start(&redis, &["--with-workers"]);
    let post = |path: String, body: serde_json::Value, admin: bool| {
        let addr = s.addr;
        async move {
            let mut h = vec![("content-type", "application/json")];
            if admin {
                h.push(("authorization", "Bearer test-token"));
            }
            common::request(addr, "POST", &path, Some(body.to_string()), &h).await
        }
    };
    assert_eq!(
        post(
            "/v1/events".into(),
            json!({"id": "w", "capacity": 10, "holdTtlSeconds": 1}),
            true
        )
        .await
        .status,
        201
    );
    let h = post(
        "/v1/events/w/holds".into(),
        json!({"userId": "a", "quantity": 2}),
        false,
    )
    .await;
    let id = h.json()["holdId"].as_str().unwrap().to_string();
    let o = post(
        format!("/v1/holds/{id}/purchase"),
        json!({"userId": "a"}),
        false,
    )
    .await;
    assert_eq!(o.status, 202);
    let oid = o.json()["orderId"].as_str().unwrap().to_string();
    post(
        "/v1/events/w/holds".into(),
        json!({"userId": "b", "quantity": 3}),
        false,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let order = common::request(s.addr, "GET", &format!("/v1/orders/{oid}"), None, &[])
            .await
            .json();
        // The release worker (not a read) frees b's expired hold.
        let expired = redis.cli(&["HGET", &keys("w").meta(), "expired"]);
        if order["status"] == "completed" && expired == "1" {
            assert!(order["completedAt"].is_string());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order {order}, expired {expired}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis.cli(&["XLEN", "tc:payments"]), "1");
}

#[tokio::test]
async fn serving_threads_share_one_socket_metrics_and_rate_limits() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("tc-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("threads.toml");
    std::fs::write(
        &cfg,
        "[server]\nthreads = 4\n[limits]\nper_ip_rate = 0.01\nper_ip_burst = 12\n",
    )
    .unwrap();
    let s = ServeProc::start(&redis, &["--config", cfg.to_str().unwrap()]);
    // Each request on its own connection, so they land on different threads.
    let mut codes = Vec::new();
    for _ in 0..30 {
        let r = common::request(s.addr, "GET", "/v1/events/default", None, &[]).await;
        codes.push(r.status);
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(
        (ok, limited),
        (12, 18),
        "one burst for the address: {codes:?}"
    );
    let m = common::request(s.addr, "GET", "/metrics", None, &[]).await;
    let counted: u64 = m
        .text
        .lines()
        .filter(|l| {
            l.starts_with("ticketctl_http_requests_total{")
                && l.contains("route=\"/v1/events/{id}\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 30, "{}", m.text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What `serve` logs until it says it is listening (then it is stopped), with `env`.
fn serve_log(redis: &Redis, extra: &[&str], env: &[(&str, &str)]) -> String {
    use std::io::BufRead;
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--redis", &redis.url(), "--listen", &addr])
        .args(extra)
        .env_remove("TICKETCTL_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .env("TICKETCTL_LOG", "info")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            log.push_str(&line);
            log.push('\n');
            if line.contains("listening") {
                break;
            }
        }
        let _ = tx.send(log);
    });
    let log = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    log.expect("serve said it is listening")
}

#[test]
fn an_empty_admin_token_variable_is_unset_and_closed_admin_routes_are_warned_of() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("tc-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("t.toml");
    std::fs::write(&toml, "[server]\nadmin_token = \"from-file\"\n").unwrap();
    let closed = "the admin routes answer 401 to everyone";
    let log = serve_log(&redis, &[], &[]);
    assert!(log.contains(closed), "{log}");
    let log = serve_log(&redis, &[], &[("TICKETCTL_ADMIN_TOKEN", "")]);
    assert!(log.contains(closed), "{log}");
    // An empty variable leaves the file's token in place, as the others do.
    let cfg = ["--config", toml.to_str().unwrap()];
    let log = serve_log(&redis, &cfg, &[("TICKETCTL_ADMIN_TOKEN", "")]);
    assert!(!log.contains(closed), "{log}");
    let log = serve_log(&redis, &[], &[("TICKETCTL_ADMIN_TOKEN", "s3cret")]);
    assert!(!log.contains(closed), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}
