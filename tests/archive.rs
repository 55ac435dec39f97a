//! `ticketctl event archive`: a finished event's orders written out, one
//! JSON line each, then its keys removed; refused while anything is left to
//! settle; an interrupted run goes on where its file ends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, run_cli, ConfigFile, Redis};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use ticketctl::daemon::worker::purchase::{self, PurchaseOpts};
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest, PurchaseOutcome};
use ticketctl::store::{HoldRef, Store};

async fn store(redis: &Redis) -> Store {
    Store::connect(&config(redis).redis).await.unwrap()
}

/// A new event of `capacity` tickets, holds of a minute, up to 4 a hold.
async fn event(s: &Store, id: &str, capacity: u64) {
    s.create_event(&EventSettings {
        id: id.into(),
        capacity,
        hold_ttl_ms: 60_000,
        max_per_hold: 4,
        selling: Default::default(),
    })
    .await
    .unwrap();
}

async fn buy(s: &Store, event: &str, user: &str) {
    let HoldOutcome::Held { hold, .. } = s
        .hold(event, user, &HoldRequest::Quantity(1), None)
        .await
        .unwrap()
    else {
        panic!("no hold")
    };
    let PurchaseOutcome::Bought { .. } = s
        .purchase(&HoldRef::Id(&hold.id), user, None)
        .await
        .unwrap()
    else {
        panic!("not bought")
    };
}

async fn drain(redis: &Redis) {
    let cfg = config(redis);
    purchase::run(
        store(redis).await,
        cfg.purchase.clone(),
        PurchaseOpts {
            once: true,
            batch: 256,
            consumer: "archive-test".into(),
            block: Duration::from_millis(200),
        },
        CancellationToken::new(),
        Arc::default(),
    )
    .await
    .unwrap();
}

fn archive(file: &ConfigFile, event: &str, out: &std::path::Path) -> std::process::Output {
    run_cli(&[
        "event",
        "archive",
        event,
        "--out",
        out.to_str().unwrap(),
        "--config",
        file.arg(),
    ])
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_finished_event_is_written_out_and_removed_and_an_unfinished_one_is_refused() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "gig", 2500).await;
    for i in 0..2100 {
        buy(&s, "gig", &format!("u{i}")).await;
    }
    let file = ConfigFile::new("archive", &format!("[redis]\nurl = \"{}\"\n", redis.url()));
    let out = file.path.parent().unwrap().join("gig.jsonl");
    // Orders not yet handed to the sinks: refused, nothing written.
    let o = archive(&file, "gig", &out);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("pending"));
    assert!(!out.exists());
    drain(&redis).await;
    // A cancellation not yet published: refused until the worker hands it
    // to the sinks.
    let any = s.recent_orders("gig", 1).await.unwrap().remove(0);
    s.change_order(&any.id, ticketctl::model::OrderAction::Cancel, "", None)
        .await
        .unwrap();
    let o = archive(&file, "gig", &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("jobs are queued"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drain(&redis).await;
    // A dead letter: refused until decided.
    redis.cli(&["XADD", "tc:{ev:gig}:dead", "*", "order", "x"]);
    let o = archive(&file, "gig", &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("dead letters"));
    redis.cli(&["DEL", "tc:{ev:gig}:dead"]);
    // A live hold: refused too.
    let HoldOutcome::Held { hold, .. } = s
        .hold("gig", "late", &HoldRequest::Quantity(1), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let o = archive(&file, "gig", &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("held"));
    s.cancel(&HoldRef::Id(&hold.id), Some("late"))
        .await
        .unwrap();
    // An interrupted run left two orders and half of a third.
    let first = s.recent_orders("gig", 3000).await.unwrap();
    assert_eq!(first.len(), 2100);
    let mut by_seq = first.clone();
    by_seq.sort_by_key(|o| o.id.seq);
    let two: String = by_seq[..2]
        .iter()
        .map(|o| serde_json::to_string(&ticketctl::model::json::order_json(o)).unwrap() + "\n")
        .collect();
    std::fs::write(&out, format!("{two}{{\"orderId\":\"gig.o3")).unwrap();
    let o = archive(&file, "gig", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The two lines were as the orders read (no start over).
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("again from the start"),
        "{two}\n{}",
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let got = lines(&out);
    assert_eq!(got.len(), 2100);
    let mut ids: Vec<&str> = got.iter().map(|l| l["orderId"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2100, "no order twice");
    assert!(got
        .iter()
        .all(|l| l["status"] == "completed" || l["orderId"] == any.id.to_string().as_str()));
    let cancelled = got
        .iter()
        .find(|l| l["orderId"] == any.id.to_string().as_str())
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(got[0]["eventId"], "gig");
    assert!(got[0]["ticketIds"].is_array());
    // Its keys are gone, and so is it from the list.
    let left = redis.cli(&["KEYS", "tc:{ev:gig}:*"]);
    assert!(left.trim().is_empty(), "{left}");
    let listed = run_cli(&["event", "list", "--json", "--config", file.arg()]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("\"gig\""));
    // Again: no such event.
    let o = archive(&file, "gig", &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no event gig"));
    // The sinks forgot it too: an event made again with the id, whose
    // orders are numbered from 1 again, has them published.
    let left = redis.cli(&["KEYS", "{tc:payments}:sent:gig:*"]);
    assert!(left.trim().is_empty(), "{left}");
    event(&s, "gig", 10).await;
    let before = common::sink_order_ids(&redis, "tc:payments").len();
    for i in 0..5 {
        buy(&s, "gig", &format!("again{i}")).await;
    }
    drain(&redis).await;
    assert_eq!(
        common::sink_order_ids(&redis, "tc:payments").len(),
        before + 5
    );
}

#[tokio::test]
async fn a_file_begun_before_an_order_changed_is_written_again() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "gig", 10).await;
    for i in 0..3 {
        buy(&s, "gig", &format!("u{i}")).await;
    }
    drain(&redis).await;
    let file = ConfigFile::new(
        "archive-stale",
        &format!("[redis]\nurl = \"{}\"\n", redis.url()),
    );
    let out = file.path.parent().unwrap().join("gig.jsonl");
    let mut orders = s.recent_orders("gig", 10).await.unwrap();
    orders.sort_by_key(|o| o.id.seq);
    // An interrupted run wrote the first order; then it was cancelled.
    std::fs::write(
        &out,
        serde_json::to_string(&ticketctl::model::json::order_json(&orders[0])).unwrap() + "\n",
    )
    .unwrap();
    s.change_order(
        &orders[0].id,
        ticketctl::model::OrderAction::Cancel,
        "",
        None,
    )
    .await
    .unwrap();
    drain(&redis).await;
    let o = archive(&file, "gig", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("again from the start"));
    let got = lines(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["status"], "cancelled");
}

#[tokio::test]
async fn a_file_of_another_event_is_not_continued() {
    let redis = Redis::start();
    let s = store(&redis).await;
    event(&s, "a", 10).await;
    let file = ConfigFile::new(
        "archive-other",
        &format!("[redis]\nurl = \"{}\"\n", redis.url()),
    );
    let out = file.path.parent().unwrap().join("a.jsonl");
    std::fs::write(&out, "{\"orderId\":\"b.o1.AAAAAAAAAAAAAAAAAAAAAA\"}\n").unwrap();
    let o = archive(&file, "a", &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an order of event a"));
    // Nothing removed.
    assert_eq!(redis.cli(&["EXISTS", "tc:{ev:a}:meta"]), "1");
}
