//! `ticketctl inspect`, `dlq` and `hold release` against a private Redis:
//! exact JSON, table rows, `--watch`, empty and foreign Redis contents, a
//! million-ticket event, an unreachable Redis.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{bin, config, keys, run_cli, Redis};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use ticketctl::config::SinkConfig;
use ticketctl::daemon::worker::purchase::{self, PurchaseOpts};
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest, PurchaseOutcome};
use ticketctl::store::keys::EVENTS;
use ticketctl::store::{HoldRef, Store};

fn cli_json(redis: &Redis, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    let url = redis.url();
    all.extend(["--redis", &url, "--json"]);
    let o = run_cli(&all);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn cli_text(redis: &Redis, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let url = redis.url();
    all.extend(["--redis", &url]);
    let o = run_cli(&all);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn setup() -> (Redis, Store) {
    let redis = Redis::start();
    let store = Store::connect(&config(&redis).redis).await.unwrap();
    for (id, cap, ttl) in [("gig", 20, 60_000), ("tiny", 5, 1000)] {
        store
            .create_event(&EventSettings {
                id: id.into(),
                capacity: cap,
                hold_ttl_ms: ttl,
                max_per_hold: 5,
                selling: Default::default(),
            })
            .await
            .unwrap();
    }
    (redis, store)
}

async fn hold(store: &Store, event: &str, user: &str, req: HoldRequest) -> ticketctl::model::Hold {
    match store.hold(event, user, &req, None).await.unwrap() {
        HoldOutcome::Held { hold, .. } => hold,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn json_snapshot_is_exact() {
    let (redis, store) = setup().await;
    let a = hold(&store, "gig", "alice", HoldRequest::Tickets(vec![3, 4])).await;
    let b = hold(&store, "gig", "bob", HoldRequest::Quantity(1)).await;
    let bought = hold(&store, "gig", "carol", HoldRequest::Tickets(vec![10])).await;
    let PurchaseOutcome::Bought { .. } = store
        .purchase(&HoldRef::Id(&bought.id), "carol", None)
        .await
        .unwrap()
    else {
        panic!()
    };
    hold(&store, "tiny", "dave", HoldRequest::Quantity(2)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // dave's hold is now overdue (no worker runs)

    let v = cli_json(&redis, &["inspect"]);
    assert_eq!(
        v["events"],
        json!([
            {"id": "gig", "capacity": 20, "available": 16, "held": 3, "sold": 1},
            {"id": "tiny", "capacity": 5, "available": 5, "held": 0, "sold": 0},
        ])
    );
    assert_eq!(
        v["queues"],
        json!({"releaseScheduled": 3, "releaseOverdue": 1, "purchaseQueued": 1, "purchaseInFlight": 0, "deadLetters": 0})
    );
    let holds = v["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 2);
    assert_eq!(holds[0]["holdId"], a.id.to_string());
    assert_eq!(holds[0]["userId"], "alice");
    assert_eq!(holds[0]["ticketIds"], json!([3, 4]));
    assert_eq!(holds[1]["holdId"], b.id.to_string());
    let ttl = holds[0]["ttlMs"].as_u64().unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["events", "holds", "queues"]
    );

    // Filters.
    let v = cli_json(&redis, &["inspect", "holds", "--user", "bob"]);
    assert_eq!(v["holds"].as_array().unwrap().len(), 1);
    let v = cli_json(&redis, &["inspect", "holds", "--limit", "1"]);
    assert_eq!(v["holds"][0]["userId"], "alice");
    let v = cli_json(&redis, &["inspect", "--event", "tiny"]);
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    // Inspection changed nothing: the overdue hold is still there to release.
    assert_eq!(redis.cli(&["HGET", &keys("tiny").meta(), "held"]), "2");
}

#[tokio::test]
async fn tables_show_the_rows() {
    let (redis, store) = setup().await;
    let h = hold(&store, "gig", "alice", HoldRequest::Tickets(vec![7])).await;
    let text = cli_text(&redis, &["inspect"]);
    assert!(text.contains("│ gig "), "{text}");
    assert!(text.contains(&h.id.to_string()), "{text}");
    assert!(text.contains("alice"));
    let q = cli_text(&redis, &["inspect", "queues"]);
    assert!(
        q.contains("holds scheduled") && q.contains("tc:payments"),
        "{q}"
    );
    let bought = hold(&store, "gig", "bo", HoldRequest::Tickets(vec![8])).await;
    let PurchaseOutcome::Bought { order, .. } = store
        .purchase(&HoldRef::Id(&bought.id), "bo", None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let o = cli_text(&redis, &["inspect", "orders"]);
    assert!(
        o.contains(&order.id.to_string()) && o.contains("pending"),
        "{o}"
    );
    let one = cli_json(&redis, &["inspect", "orders", &order.id.to_string()]);
    assert_eq!(one["order"]["orderId"], order.id.to_string());
    let one = cli_json(
        &redis,
        &["inspect", "orders", &order.id.to_string(), "--event", "gig"],
    );
    assert_eq!(one["order"]["orderId"], order.id.to_string());
    let o = run_cli(&[
        "inspect",
        "orders",
        "gig.o99.AAAAAAAAAAAAAAAAAAAAAA",
        "--json",
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(o.status.code(), Some(1), "an unknown order is a failure");
    assert!(o.stdout.is_empty(), "and prints no snapshot");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such order"));
    let v = cli_json(&redis, &["inspect", "orders"]);
    assert_eq!(v["byStatus"]["pending"], 1);
}

#[tokio::test]
async fn watch_redraws_until_stopped() {
    let (redis, _store) = setup().await;
    let mut child = Command::new(bin())
        .args([
            "inspect",
            "events",
            "--json",
            "--watch",
            "0.2",
            "--redis",
            &redis.url(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn empty_foreign_and_unreachable_redis() {
    let redis = Redis::start();
    let v = cli_json(&redis, &["inspect"]);
    assert_eq!(
        v,
        json!({"events": [], "queues": {"releaseScheduled": 0, "releaseOverdue": 0, "purchaseQueued": 0, "purchaseInFlight": 0, "deadLetters": 0}, "holds": []})
    );
    redis.cli(&["SET", "someone:else", "x"]);
    redis.cli(&["HSET", EVENTS, "not", "a set"]);
    let o = run_cli(&["inspect", "--redis", &redis.url()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a foreign key where the event list lives is an error"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    redis.cli(&["DEL", EVENTS]);
    assert_eq!(cli_json(&redis, &["inspect"])["events"], json!([]));
    let port = common::free_port();
    let o = run_cli(&["inspect", "--redis", &format!("redis://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Redis"));
    // What is asked for by name must exist, or the exit status says so.
    for (args, what) in [
        (&["inspect", "orders", "gig.o1.nope"][..], "no such order"),
        (&["inspect", "--event", "nope"], "no such event"),
    ] {
        for json in [&[][..], &["--json"]] {
            let o = run_cli(&[args, json, &["--redis", &redis.url()]].concat());
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            assert!(
                String::from_utf8_lossy(&o.stderr).contains(what),
                "{args:?}"
            );
            assert!(o.stdout.is_empty(), "{args:?} {json:?}: nothing on stdout");
        }
    }
}

#[test]
fn a_watch_whose_reader_goes_away_ends_quietly() {
    // `inspect --watch 0.2 | head -2`: once the reader is gone, the next
    // snapshot ends the command with status 0 and nothing on stderr.
    let redis = Redis::start();
    let mut child = Command::new(bin())
        .args([
            "inspect",
            "events",
            "--watch",
            "0.2",
            "--redis",
            &redis.url(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    drop(lines);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[tokio::test]
async fn a_million_tickets_and_many_holds() {
    let redis = Redis::start();
    let store = Store::connect(&config(&redis).redis).await.unwrap();
    store
        .create_event(&EventSettings {
            id: "big".into(),
            capacity: 1_000_000,
            hold_ttl_ms: 600_000,
            max_per_hold: 10,
            selling: Default::default(),
        })
        .await
        .unwrap();
    for i in 0..3000u64 {
        hold(
            &store,
            "big",
            &format!("u{i}"),
            HoldRequest::Tickets(vec![1 + i * 331]),
        )
        .await;
    }
    let v = cli_json(&redis, &["inspect", "--limit", "5"]);
    assert_eq!(
        v["events"][0],
        json!({"id": "big", "capacity": 1_000_000, "available": 997_000, "held": 3000, "sold": 0})
    );
    assert_eq!(v["holds"].as_array().unwrap().len(), 5);
    assert_eq!(v["queues"]["releaseScheduled"], 3000);
    let e = cli_json(&redis, &["inspect", "events"]);
    assert_eq!(e["events"][0]["expiringIn60s"], 0);
}

#[tokio::test]
async fn dead_letters_are_listed_retried_and_purged_and_holds_released() {
    let (redis, store) = setup().await;
    let mut orders = Vec::new();
    for u in ["a", "b"] {
        let h = hold(&store, "gig", u, HoldRequest::Quantity(1)).await;
        let PurchaseOutcome::Bought { order, .. } =
            store.purchase(&HoldRef::Id(&h.id), u, None).await.unwrap()
        else {
            panic!()
        };
        orders.push(order);
    }
    // A webhook nobody listens on: every delivery fails, one attempt allowed.
    let mut cfg = config(&redis);
    cfg.purchase.max_attempts = 1;
    cfg.purchase.claim_idle = Duration::from_millis(100);
    cfg.purchase.sinks = vec![SinkConfig::Webhook {
        url: format!("http://127.0.0.1:{}/", common::free_port()),
        secret: String::new(),
        timeout: Duration::from_millis(200),
        tls_ca_file: None,
    }];
    let stop = CancellationToken::new();
    let opts = PurchaseOpts {
        once: false,
        batch: 10,
        consumer: "w".into(),
        block: Duration::from_millis(100),
    };
    let w = tokio::spawn(purchase::run(
        Store::connect(&cfg.redis).await.unwrap(),
        cfg.purchase.clone(),
        opts,
        stop.clone(),
        Arc::default(),
    ));
    for _ in 0..200 {
        if redis.cli(&["XLEN", &keys("gig").dead()]) == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    w.await.unwrap().unwrap();

    let list = cli_json(&redis, &["dlq", "list"]);
    let dead = list["deadLetters"].as_array().unwrap();
    assert_eq!(dead.len(), 2, "{list}");
    assert_eq!(dead[0]["orderId"], orders[0].id.to_string());
    assert!(
        dead[0]["error"].as_str().unwrap().contains("connect"),
        "{}",
        dead[0]["error"]
    );
    assert!(cli_text(&redis, &["dlq", "list"]).contains(&orders[1].id.to_string()));
    assert_eq!(cli_json(&redis, &["inspect"])["queues"]["deadLetters"], 2);

    let oid = orders[0].id.to_string();
    let out = cli_text(&redis, &["dlq", "retry", &oid]);
    assert!(out.contains("requeued"), "{out}");
    let again = cli_text(&redis, &["dlq", "retry", &oid]);
    assert!(again.contains("nothing to retry"), "{again}");
    assert_eq!(
        store
            .get_order(&orders[0].id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "pending"
    );
    assert_eq!(
        store
            .get_order(&orders[1].id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "failed"
    );
    assert_eq!(
        cli_json(&redis, &["inspect"])["queues"]["purchaseQueued"],
        1
    );
    // More purchases after the dead letters: all of them count as queued.
    for u in ["c", "d", "e"] {
        let h = hold(&store, "gig", u, HoldRequest::Quantity(1)).await;
        store.purchase(&HoldRef::Id(&h.id), u, None).await.unwrap();
    }
    assert_eq!(
        cli_json(&redis, &["inspect"])["queues"]["purchaseQueued"],
        4
    );
    // Counts by status cover every order, not just the ones listed.
    let v = cli_json(&redis, &["inspect", "orders", "--limit", "1"]);
    assert_eq!(v["orders"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["byStatus"],
        json!({"pending": 4, "completed": 0, "paid": 0, "cancelled": 0, "refunded": 0,
               "refund_due": 0, "failed": 1})
    );
    // An entry deleted from the middle (as older versions did on
    // dead-lettering) leaves Redis unable to say: the jobs are counted.
    let ids = redis.cli(&["XRANGE", &keys("gig").jobs(), "-", "+"]);
    let is_id = |l: &&str| {
        l.split_once('-').is_some_and(|(ms, n)| {
            !ms.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let last = ids.lines().rfind(is_id).unwrap();
    redis.cli(&["XDEL", &keys("gig").jobs(), last]);
    assert_eq!(
        cli_json(&redis, &["inspect"])["queues"]["purchaseQueued"],
        3
    );

    let o = run_cli(&["dlq", "purge", "--redis", &redis.url()]);
    assert_eq!(o.status.code(), Some(2), "purge without --yes is refused");
    assert!(cli_text(&redis, &["dlq", "purge", "--yes"]).contains("deleted 1"));
    assert!(cli_text(&redis, &["dlq", "purge", "--yes"]).contains("deleted 0"));
    assert!(cli_text(&redis, &["dlq", "retry", "--all"]).contains("requeued 0"));
    let o = run_cli(&["dlq", "list", "--event", "nope", "--redis", &redis.url()]);
    assert_eq!(o.status.code(), Some(1), "an unknown event is a failure");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such event nope"));
    assert!(cli_text(&redis, &["dlq", "list", "--event", "gig"]).contains("no dead letters"));

    let h = hold(&store, "gig", "zed", HoldRequest::Tickets(vec![20])).await;
    let out = cli_text(&redis, &["hold", "release", &h.id.to_string()]);
    assert!(
        out.contains("released") && out.contains("1 tickets"),
        "{out}"
    );
    let out = cli_text(&redis, &["hold", "release", &h.id.to_string()]);
    assert!(out.contains("not live"), "{out}");
    assert_eq!(
        run_cli(&["hold", "release", "nonsense", "--redis", &redis.url()])
            .status
            .code(),
        Some(2)
    );
}

/// Retrying dead letters walks a long dead-letter stream in bounded steps
/// (one script call looks at no more than 1,000 entries) and still finds an
/// order's job at its far end.
#[tokio::test]
async fn dlq_retry_walks_a_long_stream_in_steps() {
    let (redis, store) = setup().await;
    let keys = ticketctl::store::keys::EventKeys::new("gig");
    let (dead, jobs) = (keys.dead(), keys.jobs());
    let fill = "for i = 1, 2500 do redis.call('XADD', KEYS[1], '*', 'seq', tostring(100000 + i), \
                'secret', 's', 'userId', 'u', 'ticketIds', '1', 'createdMs', '1', 'jobId', '1-1', \
                'attempts', '5', 'error', 'sink down', 'failedMs', '1') end return 1";
    assert_eq!(redis.cli(&["EVAL", fill, "1", &dead]), "1");
    let before = redis.script_calls();
    assert_eq!(
        store
            .retry_dead_letters("gig", Some(102_499))
            .await
            .unwrap(),
        (1, 2499)
    );
    assert!(
        redis.script_calls() - before >= 3,
        "2,500 entries need at least three bounded calls"
    );
    assert_eq!(redis.cli(&["XLEN", &jobs]), "1");
    assert_eq!(
        store
            .retry_dead_letters("gig", Some(102_499))
            .await
            .unwrap(),
        (0, 2499)
    );
    assert_eq!(
        store.retry_dead_letters("gig", None).await.unwrap(),
        (2499, 0)
    );
    assert_eq!(redis.cli(&["XLEN", &jobs]), "2500");
}

/// A retry walks only the dead letters there were when it began: a job
/// dead-lettered again meanwhile (a purchase worker is running) waits for the
/// next retry instead of being retried again and again by this one.
#[tokio::test]
async fn dlq_retry_ends_at_the_entry_that_was_last_when_it_began() {
    let (redis, _store) = setup().await;
    let keys = ticketctl::store::keys::EventKeys::new("gig");
    let dead = keys.dead();
    let fill = "for i = 1, 1500 do redis.call('XADD', KEYS[1], '*', 'seq', tostring(100000 + i), \
                'secret', 's', 'userId', 'u', 'ticketIds', '1', 'createdMs', '1') end return 1";
    assert_eq!(redis.cli(&["EVAL", fill, "1", &dead]), "1");
    let script = [
        include_str!("../src/store/lua/lib.lua"),
        include_str!("../src/store/lua/orders.lua"),
        "begin(KEYS)\n",
        include_str!("../src/store/lua/dlq_retry.lua"),
    ]
    .concat();
    let sha = redis.cli(&["SCRIPT", "LOAD", &script]);
    let n_keys = (keys.script_keys().len() + 1).to_string();
    let mut args: Vec<String> = vec!["EVALSHA".into(), sha, n_keys];
    args.extend(keys.script_keys());
    args.push(dead.clone());
    let call = |after: &str, last: &str| -> Vec<String> {
        let mut a = args.clone();
        a.extend([
            "".into(),
            "5000".into(),
            after.into(),
            "1000".into(),
            last.into(),
        ]);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        redis.cli(&refs).lines().map(str::to_string).collect()
    };
    // First call: 1,000 looked at and retried; it names where to go on and
    // the entry that was last.
    let first = call("", "");
    assert_eq!(first[0], "1000", "{first:?}");
    let (after, last) = (first[2].clone(), first[3].clone());
    assert!(!after.is_empty() && !last.is_empty(), "{first:?}");
    // Meanwhile a job comes back to the dead-letter stream.
    redis.cli(&[
        "XADD",
        &dead,
        "*",
        "seq",
        "999999",
        "secret",
        "s",
        "userId",
        "u",
        "ticketIds",
        "1",
        "createdMs",
        "1",
    ]);
    let second = call(&after, &last);
    assert_eq!(second[0], "500", "only the 500 that were there: {second:?}");
    assert_eq!(second[1], "1", "the new one stays for the next retry");
    assert_eq!(second[2], "", "the walk is over");
}
