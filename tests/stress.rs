//! `ticketctl stress` against a real `serve` and a private Redis: every
//! scenario with its JSON checked, `--fail-if` and `--audit` exit
//! statuses (an audit failure against a deliberately lying service), and
//! a target that is down.

mod common;

use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use common::{keys, run_cli, Redis, ServeProc};
use serde_json::{json, Value};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `serve` with an event `gig` of `capacity` tickets.
fn serve(capacity: u64) -> (Redis, ServeProc) {
    let redis = Redis::start();
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--capacity",
        &capacity.to_string(),
        "--redis",
        &redis.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let serve = ServeProc::start(&redis, &[]);
    (redis, serve)
}

fn json_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tc-stress-{}-{name}.json", std::process::id()))
}

/// Runs `stress` with `args` plus `--json`, returning the output and the document.
fn stress(serve: &ServeProc, name: &str, args: &[&str]) -> (std::process::Output, Value) {
    let file = json_file(name);
    let url = format!("http://{}", serve.addr);
    let mut all = vec!["stress", "--url", &url, "--json", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = run_cli(&all);
    let doc = std::fs::read_to_string(&file)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&file);
    (o, doc)
}

fn status(doc: &Value, code: &str) -> u64 {
    doc["statusCounts"][code].as_u64().unwrap_or(0)
}

fn assert_contract_fields(doc: &Value) {
    for k in ["requests", "durationSecs", "rps"] {
        assert!(doc[k].is_number(), "{k} in {doc}");
    }
    for k in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(doc["latencyMs"][k].is_number(), "latencyMs.{k} in {doc}");
    }
    assert!(doc["statusCounts"].is_object() && doc["errors"].is_object());
    let counted: u64 = doc["statusCounts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, doc["requests"].as_u64().unwrap(), "{doc}");
}

#[test]
fn reserve_holds_each_ticket_once() {
    let (_r, serve) = serve(100);
    let (o, doc) = stress(
        &serve,
        "reserve",
        &[
            "--event", "gig", "-c", "8", "-n", "300", "--seed", "1", "--audit",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    assert_contract_fields(&doc);
    assert_eq!(doc["requests"], 300);
    assert_eq!(doc["errors"], json!({}));
    let won = status(&doc, "201");
    assert!(won > 0 && won <= 100, "{doc}");
    assert_eq!(won + status(&doc, "409"), 300);
    let hold = &doc["operations"]["hold"];
    assert_eq!(hold["outcomes"]["won"]["count"], won);
    assert_eq!(doc["audit"]["held"], won, "{doc}");
    assert_eq!(doc["audit"]["violations"], json!([]));
    let text = stdout(&o);
    assert!(
        text.contains("p99.9 ms") && text.contains("unavailable"),
        "{text}"
    );
}

#[test]
fn reserve_buy_buys_and_abandons_and_the_audit_agrees() {
    let (_r, serve) = serve(100_000);
    let (o, doc) = stress(
        &serve,
        "reserve-buy",
        &[
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "-c",
            "6",
            "-d",
            "1s",
            "--abandon",
            "25",
            "--audit",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    assert_contract_fields(&doc);
    let bought = status(&doc, "202");
    let held = status(&doc, "201");
    assert!(bought > 0 && bought < held, "{doc}");
    assert_eq!(doc["operations"]["purchase"]["count"], bought);
    assert_eq!(doc["audit"]["ticketsBought"], bought);
    assert_eq!(doc["audit"]["sold"], bought);
    assert_eq!(doc["audit"]["held"], held - bought);
    assert_eq!(doc["audit"]["violations"], json!([]));
    assert!(!doc["timeline"].as_array().unwrap().is_empty());
}

#[test]
fn hot_tickets_are_sold_once_each() {
    let (_r, serve) = serve(1000);
    let (o, doc) = stress(
        &serve,
        "hot",
        &[
            "--event",
            "gig",
            "--scenario",
            "hot",
            "--hot-tickets",
            "3",
            "-c",
            "16",
            "-n",
            "400",
            "--audit",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    assert_contract_fields(&doc);
    assert!(status(&doc, "202") <= 3, "{doc}");
    assert!(status(&doc, "409") >= 390, "{doc}");
    assert!(doc["audit"]["sold"].as_u64().unwrap() <= 3);
    assert_eq!(doc["audit"]["violations"], json!([]));
}

#[test]
fn browse_at_a_fixed_rate() {
    let (_r, serve) = serve(500);
    let plot = std::env::temp_dir().join(format!("tc-stress-{}.svg", std::process::id()));
    let (o, doc) = stress(
        &serve,
        "browse",
        &[
            "--event",
            "gig",
            "--scenario",
            "browse",
            "--rate",
            "400",
            "-n",
            "200",
            "-c",
            "4",
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    assert_contract_fields(&doc);
    assert_eq!(doc["statusCounts"], json!({"200": 200}));
    assert_eq!(doc["operations"]["read"]["count"], 200);
    // 200 requests at 400/s take half a second, whatever the service's speed.
    let secs = doc["durationSecs"].as_f64().unwrap();
    assert!((0.45..3.0).contains(&secs), "{secs}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    let _ = std::fs::remove_file(plot);
}

#[test]
fn a_fixed_rate_counts_purchases_as_requests() {
    // --rate is requests per second in all: a purchase takes a turn of the
    // schedule like its hold, and still goes right after it.
    let (_r, serve) = serve(100_000);
    let (o, doc) = stress(
        &serve,
        "rate-buy",
        &[
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "--rate",
            "100",
            "-d",
            "2s",
            "-c",
            "50",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    let holds = doc["operations"]["hold"]["count"].as_u64().unwrap();
    let buys = doc["operations"]["purchase"]["count"].as_u64().unwrap();
    // 200 turns in the 2 s, whatever the service's speed, plus at most one
    // purchase per connection past the last; when every hold took a turn
    // and its purchase came on top, ~400.
    assert!(
        holds + buys <= 250,
        "{holds} holds + {buys} purchases: {doc}"
    );
    // Purchases are not starved behind the holds booked ahead of them.
    assert!(buys * 3 >= holds, "{holds} holds, {buys} purchases: {doc}");
}

#[test]
fn a_fixed_rate_ends_when_n_requests_are_sent() {
    // Slots past -n are not waited for.
    let (_r, serve) = serve(1000);
    let (o, doc) = stress(
        &serve,
        "rate-n",
        &[
            "--event",
            "gig",
            "--scenario",
            "browse",
            "-n",
            "5",
            "--rate",
            "2",
            "-c",
            "10",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(doc["requests"], 5);
    // Five requests at 2/s: the last at 2 s; not the 4.5 s of the tenth slot.
    let secs = doc["durationSecs"].as_f64().unwrap();
    assert!(secs < 4.0, "{secs}");
}

#[test]
fn a_rate_too_low_to_reach_a_second_slot_ends_after_the_first() {
    // The second request would be 1e30 s away: the run ends, it does not
    // panic or wait for the deadline.
    let (_r, serve) = serve(1000);
    let (o, doc) = stress(
        &serve,
        "rate-tiny",
        &["--event", "gig", "--rate", "1e-30", "-d", "60s", "-c", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(doc["requests"], 1);
    assert!(doc["durationSecs"].as_f64().unwrap() < 30.0, "{doc}");
}

#[test]
fn json_goes_to_stdout_with_a_dash_and_a_bad_path_fails_before_any_load() {
    let (redis, serve) = serve(1000);
    let url = format!("http://{}", serve.addr);
    let base = ["stress", "--url", &url, "--event", "gig", "-q"];
    let mut args = base.to_vec();
    args.extend(["-n", "20", "--json", "-"]);
    let o = run_cli(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).expect("stdout is the JSON alone");
    assert_eq!(doc["requests"], 20);
    assert!(stderr(&o).contains("operation"), "the table goes to stderr");
    assert!(!std::env::temp_dir().join("-").exists(), "no file named -");
    let held = || redis.cli(&["HGET", &keys("gig").meta(), "held"]);
    let before = held();

    let mut args = base.to_vec();
    args.extend(["-n", "1000000", "--json", "/nonexistent-dir/x.json"]);
    let o = run_cli(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write /nonexistent-dir/x.json"));
    // Refused before the run: nothing more was held.
    assert_eq!(held(), before);
}

#[test]
fn fail_if_exits_3_naming_the_rule_and_2_when_malformed() {
    let (_r, serve) = serve(1000);
    let (o, doc) = stress(
        &serve,
        "fail-if",
        &[
            "--event",
            "gig",
            "-n",
            "50",
            "--fail-if",
            "rps<1",
            "--fail-if",
            "p99>0ms",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("p99>0ms") && !stderr(&o).contains("rps<1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(doc["failIf"]["violations"][0]["rule"], "p99>0ms");

    let (o, _) = stress(
        &serve,
        "pass",
        &["--event", "gig", "-n", "50", "--fail-if", "errors>0"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let (o, _) = stress(
        &serve,
        "bad",
        &["--event", "gig", "-n", "5", "--fail-if", "p99~5"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("p99~5"), "{}", stderr(&o));
}

/// A service that breaks every invariant: every hold gets ticket 1, every
/// purchase succeeds, and its counts do not add up.
async fn lying_service() -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/v1/events/{id}",
            get(|| async {
                Json(
                    json!({"id": "gig", "capacity": 10, "available": 10, "held": 0, "sold": 5,
                            "holdTtlSeconds": 60, "maxTicketsPerHold": 10}),
                )
            }),
        )
        .route(
            "/v1/events/{id}/holds",
            post(|| async {
                (
                    axum::http::StatusCode::CREATED,
                    Json(
                        json!({"holdId": "h1", "eventId": "gig", "userId": "u", "ticketIds": [1],
                                "expiresAt": "2030-01-01T00:00:00.000Z", "ttlMs": 60000}),
                    ),
                )
            }),
        )
        .route(
            "/v1/holds/{id}/purchase",
            post(|| async {
                (
                    axum::http::StatusCode::ACCEPTED,
                    Json(json!({"orderId": "o1"})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn audit_violations_exit_4() {
    let addr = lying_service().await;
    let o = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "stress",
            "--url",
            &format!("http://{addr}"),
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "-c",
            "1",
            "-n",
            "10",
            "--audit",
        ])
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}\n{}", stderr(&o), stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains("ticket 1 was bought in 5 different purchases"),
        "{e}"
    );
    assert!(e.contains("and 1 more") && e.lines().count() == 1, "{e}");
    let out = stdout(&o);
    assert!(out.contains("audit violation"), "{out}");
    assert!(out.contains("not the capacity 10"), "{out}");
}

#[test]
fn a_target_that_is_down_fails_fast_with_one_line() {
    let port = common::free_port();
    let start = Instant::now();
    let o = run_cli(&[
        "stress",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "-d",
        "30s",
    ]);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("cannot reach") && e.lines().count() == 1, "{e}");

    let (_r, serve) = serve(10);
    let (o, _) = stress(&serve, "missing", &["--event", "nope", "-d", "30s"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"nope\" does not exist"),
        "{}",
        stderr(&o)
    );
    // A URL with a path is not the API's root.
    let url = format!("http://{}/v1", serve.addr);
    let o = run_cli(&["stress", "--url", &url, "-n", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no ticketctl API at") && e.lines().count() == 1,
        "{e}"
    );

    let o = run_cli(&["stress", "--url", "ftp://x", "-n", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run_cli(&[
        "stress",
        "--url",
        "http://127.0.0.1:1",
        "-n",
        "1",
        "-d",
        "1s",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ctrl_c_prints_the_partial_report_and_exits_130() {
    let (_redis, serve) = serve(1_000_000);
    let file = json_file("interrupted");
    let url = format!("http://{}", serve.addr);
    let child = std::process::Command::new(common::bin())
        .args([
            "stress",
            "--url",
            &url,
            "--event",
            "gig",
            "--scenario",
            "reserve",
        ])
        .args([
            "-c",
            "2",
            "-d",
            "60s",
            "--rate",
            "200",
            "--fail-if",
            "errors>0",
        ])
        .args(["--json", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "it stops soon");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(doc["interrupted"], true);
    assert!(doc["requests"].as_u64().unwrap() > 0, "{doc}");
    assert!(
        stdout(&o).contains("hold"),
        "the report is printed: {}",
        stdout(&o)
    );
}

#[test]
fn pay_settles_a_share_of_the_orders_and_audits_each() {
    let redis = Redis::start();
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--capacity",
        "500",
        "--redis",
        &redis.url(),
    ]);
    assert!(o.status.success());
    let cfg = common::ConfigFile::new("stress-pay", "[payment]\nsecret = \"s3\"\n");
    let serve = ServeProc::start(&redis, &["--config", cfg.arg()]);
    let (o, doc) = stress(
        &serve,
        "pay",
        &[
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "-c",
            "4",
            "-n",
            "120",
            "--pay",
            "50",
            "--payment-secret",
            "s3",
            "--audit",
            "--seed",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(doc["operations"].to_string().contains("payment"), "{doc}");
    let count = |f: &str| -> u64 {
        redis
            .cli(&["HGET", &keys("gig").meta(), f])
            .parse()
            .unwrap_or(0)
    };
    assert!(
        count("paid") > 0 && count("cancelled") > 0,
        "paid {} cancelled {}",
        count("paid"),
        count("cancelled")
    );
    // A wrong secret: the server refuses every result (401), and nothing
    // is paid by this run.
    let paid_before = count("paid");
    let (o, doc) = stress(
        &serve,
        "pay-wrong",
        &[
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "-c",
            "2",
            "-n",
            "20",
            "--pay",
            "100",
            "--payment-secret",
            "nope",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(status(&doc, "401") > 0, "{doc}");
    assert_eq!(count("paid"), paid_before);
    // Without a secret: a usage error before any request.
    let (o, _) = stress(
        &serve,
        "pay-none",
        &[
            "--event",
            "gig",
            "--scenario",
            "reserve-buy",
            "-n",
            "5",
            "--pay",
            "10",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--payment-secret"));
}

#[test]
fn jwt_secret_signs_a_token_per_virtual_user() {
    let redis = Redis::start();
    let o = run_cli(&[
        "event",
        "create",
        "gig",
        "--capacity",
        "100000",
        "--redis",
        &redis.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = std::env::temp_dir().join(format!("tc-stress-{}-jwt.toml", std::process::id()));
    std::fs::write(
        &cfg,
        "[auth]\nmode = \"jwt\"\njwt_secret = \"stress-secret-of-at-least-32-bytes\"\nissuer = \"login\"\n",
    )
    .unwrap();
    let serve = ServeProc::start(&redis, &["--config", cfg.to_str().unwrap()]);
    let base = [
        "--event",
        "gig",
        "--scenario",
        "reserve-buy",
        "-c",
        "4",
        "-n",
        "200",
    ];
    // Without tokens every hold is refused.
    let (o, doc) = stress(&serve, "jwt-none", &base);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(status(&doc, "401"), 200, "{doc}");
    // Signed, with the issuer the server checks: held and bought, audited.
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--jwt-secret",
        "stress-secret-of-at-least-32-bytes",
        "--jwt-issuer",
        "login",
        "--audit",
    ]);
    let (o, doc) = stress(&serve, "jwt", &args);
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    assert_eq!(status(&doc, "401"), 0, "{doc}");
    assert!(status(&doc, "201") > 0 && status(&doc, "202") > 0, "{doc}");
    assert_eq!(doc["audit"]["violations"], json!([]));
    // Another issuer: refused.
    let (_, doc) = stress(
        &serve,
        "jwt-iss",
        &[
            &base[..],
            &[
                "--jwt-secret",
                "stress-secret-of-at-least-32-bytes",
                "--jwt-issuer",
                "other",
            ],
        ]
        .concat(),
    );
    assert_eq!(status(&doc, "401"), 200, "{doc}");
    let o = run_cli(&["stress", "--url", "http://127.0.0.1:1", "--jwt-issuer", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--jwt-secret"), "{}", stderr(&o));
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn onsale_waits_in_line_buys_the_stock_and_audits_the_room() {
    let redis = Redis::start();
    let serve = ServeProc::start(&redis, &[]);
    let url = format!("http://{}", serve.addr);
    let o = run_cli(&[
        "event",
        "create",
        "drop",
        "--capacity",
        "30",
        "--queue",
        "--queue-max-active",
        "4",
        "--queue-admission",
        "30",
        "--redis",
        &redis.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, doc) = stress(
        &serve,
        "onsale",
        &[
            "--event",
            "drop",
            "--scenario",
            "onsale",
            "-c",
            "12",
            "-d",
            "8s",
            "--poll",
            "20ms",
            "--audit",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    let on = &doc["onsale"];
    assert_eq!(on["bought"], 30, "{on}");
    assert_eq!(on["admitted"].as_u64(), Some(30), "{on}");
    assert!(on["mostAdmitted"].as_u64().unwrap() <= 4, "{on}");
    assert!(on["joined"].as_u64().unwrap() > 30, "{on}");
    assert!(on["soldOut"].as_u64().unwrap() > 0, "{on}");
    assert_eq!(on["skipsHeld"], 0);
    assert!(on["waitMs"]["p50"].is_number());
    assert!(on["overtaken"].as_f64().unwrap() <= 1.0);
    assert_eq!(doc["audit"]["violations"], json!([]));
    assert_eq!(doc["audit"]["sold"], 30);
    assert!(stdout(&o).contains("onsale:"), "{}", stdout(&o));
    let _ = url;
    // An event without a room: a usage error before any load.
    let o = run_cli(&[
        "event",
        "create",
        "plain",
        "--capacity",
        "5",
        "--redis",
        &redis.url(),
    ]);
    assert!(o.status.success());
    let (o, _) = stress(
        &serve,
        "onsale-plain",
        &["--event", "plain", "--scenario", "onsale", "-n", "5"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("waiting room"), "{}", stderr(&o));
}
