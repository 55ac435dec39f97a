//! Rendering a finished run: the text report (summary, latency table by
//! operation and outcome, timeline, audit), the `--json` document and the
//! `--plot` SVG. Every renderer returns a value or writes to any `Write`,
//! so each is tested without a terminal. Computes nothing the statistics
//! do not already hold.

use std::io::{self, Write};

use comfy_table::{CellAlignment, Table};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::rules::Violation;
use super::stats::{per_sec, Latency, Op, Outcome, Stats};
use super::{Report, Stop};

/// Most rows the timeline table shows; longer runs are grouped.
const TIMELINE_ROWS: usize = 30;

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn latency_json(l: &Latency) -> Value {
    let r = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "p50": r(l.p50), "p90": r(l.p90), "p99": r(l.p99),
        "p999": r(l.p999), "max": r(l.max), "mean": r(l.mean),
    })
}

/// The label of an outcome for an operation (reads are "ok", not "won").
fn outcome_label(op: Op, o: Outcome) -> &'static str {
    match (op, o) {
        (Op::Read, Outcome::Won) => "ok",
        _ => o.name(),
    }
}

/// The latency table: one block per operation (all outcomes, then each
/// outcome seen), then the total. Latencies in milliseconds.
pub fn latency_table(stats: &Stats) -> Table {
    let mut t = crate::table::with_header([
        "operation",
        "outcome",
        "count",
        "rate/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
    ]);
    let row = |t: &mut Table, op: &str, outcome: &str, count: u64, h: &Histogram<u64>| {
        let l = Latency::of(h);
        let lat = |v: f64| if h.is_empty() { "-".to_string() } else { ms(v) };
        t.add_row([
            op.to_string(),
            outcome.to_string(),
            count.to_string(),
            format!("{:.1}", per_sec(count, stats.duration)),
            lat(l.p50),
            lat(l.p90),
            lat(l.p99),
            lat(l.p999),
            lat(l.max),
        ]);
    };
    for op in Op::ALL {
        let Some(all) = stats.op(op) else { continue };
        row(&mut t, op.name(), "all", all.count, &all.latency);
        for o in Outcome::ALL {
            if let Some(g) = stats.group(op, o) {
                row(&mut t, "", outcome_label(op, o), g.count, &g.latency);
            }
        }
    }
    row(
        &mut t,
        "total",
        "",
        stats.requests(),
        &stats.overall.latency,
    );
    for i in 2..9 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// Timeline rows `(first second, seconds, requests, errors, latency)`,
/// grouped so that there are at most [`TIMELINE_ROWS`].
fn timeline_rows(stats: &Stats) -> Vec<(usize, usize, u64, u64, Latency)> {
    let n = stats.timeline.len();
    let width = n.div_ceil(TIMELINE_ROWS).max(1);
    stats
        .timeline
        .chunks(width)
        .enumerate()
        .map(|(i, secs)| {
            let mut h = secs[0].latency.clone();
            for s in &secs[1..] {
                let _ = h.add(&s.latency);
            }
            (
                i * width,
                secs.len(),
                secs.iter().map(|s| s.requests).sum(),
                secs.iter().map(|s| s.errors).sum(),
                Latency::of(&h),
            )
        })
        .collect()
}

/// How long the timeline step of `width` seconds from second `from` lasted
/// within a run of `duration` (a step past the end counts as full).
fn step_secs(duration: std::time::Duration, from: usize, width: usize) -> f64 {
    let (from, to) = (from as f64, (from + width) as f64);
    let end = duration.as_secs_f64().min(to);
    if end > from {
        end - from
    } else {
        width as f64
    }
}

/// The per-second timeline (grouped into wider steps on long runs).
pub fn timeline_table(stats: &Stats) -> Table {
    let mut t = crate::table::with_header([
        "second", "requests", "rate/s", "errors", "p50 ms", "p99 ms", "max ms",
    ]);
    for (from, width, requests, errors, l) in timeline_rows(stats) {
        let label = if width == 1 {
            format!("{from}")
        } else {
            format!("{from}-{}", from + width)
        };
        t.add_row([
            label,
            requests.to_string(),
            // The last step may be cut short by the end of the run.
            format!(
                "{:.0}",
                requests as f64 / step_secs(stats.duration, from, width)
            ),
            errors.to_string(),
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
        ]);
    }
    for i in 1..7 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// The whole text report.
pub fn write_text(w: &mut impl Write, r: &Report, violations: &[Violation]) -> io::Result<()> {
    let s = &r.stats;
    let m = &r.mode;
    let l = Latency::of(&s.overall.latency);
    if r.interrupted {
        writeln!(w, "interrupted: partial results")?;
    }
    let model = match m.rate {
        Some(rate) => format!("open model, {rate}/s"),
        None => "closed model".to_string(),
    };
    let stop = match m.stop {
        Stop::Requests(n) => format!("{n} requests"),
        Stop::Duration(d) => format!("{}s", d.as_secs_f64()),
    };
    writeln!(
        w,
        "stress {} on event {} ({} tickets) at {}: {} connections, {model}, {stop}, seed {}",
        m.scenario.name(),
        m.event,
        r.capacity,
        m.target.url,
        m.connections,
        m.seed
    )?;
    writeln!(
        w,
        "{} requests in {:.2}s, {:.1}/s, {} errors; latency p50 {} ms, p99 {} ms, max {} ms",
        s.requests(),
        s.duration.as_secs_f64(),
        s.rps(),
        s.errors(),
        ms(l.p50),
        ms(l.p99),
        ms(l.max)
    )?;
    let statuses: Vec<String> = s
        .status_counts()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    if !statuses.is_empty() {
        writeln!(w, "status codes: {}", statuses.join(", "))?;
    }
    writeln!(w, "{}", latency_table(s))?;
    if !s.timeline.is_empty() {
        writeln!(w, "{}", timeline_table(s))?;
    }
    if let Some(o) = &r.onsale {
        let w_ms = |q: f64| ms(pct(&o.waits_ms, q));
        writeln!(
            w,
            "onsale: {} joined, {} admitted, {} bought, {} read sold out, {} admissions ran out, {} admitted found no ticket",
            o.joined, o.admitted, o.bought, o.sold_out, o.expired, o.no_ticket
        )?;
        writeln!(
            w,
            "onsale: wait to admission p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; {:.1}% of buyers bought while someone ahead of them in line was still trying; most admitted at once {}",
            w_ms(0.5),
            w_ms(0.9),
            w_ms(0.99),
            w_ms(1.0),
            o.overtaken * 100.0,
            o.most_admitted
        )?;
    }
    if let Some(a) = &r.audit {
        let c = a.counts;
        writeln!(
            w,
            "audit: {} holds won, {} tickets bought, {} still held by this run; event now: {} available + {} held + {} sold of {}",
            a.holds_won, a.tickets_bought, a.tickets_live, c.available, c.held, c.sold, c.capacity
        )?;
        if a.violations.is_empty() {
            writeln!(w, "audit: every invariant holds")?;
        }
        for v in &a.violations {
            writeln!(w, "audit violation: {v}")?;
        }
    }
    for v in violations {
        writeln!(w, "--fail-if violated: {v}")?;
    }
    Ok(())
}

/// The `--json` document: the contract's fields plus the breakdowns.
pub fn json(r: &Report, rules: &[String], violations: &[Violation]) -> Value {
    let s = &r.stats;
    let statuses: Map<String, Value> = s
        .status_counts()
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let errors: Map<String, Value> = Outcome::ALL
        .into_iter()
        .filter(|o| o.is_error())
        .map(|o| (o.name().to_string(), s.outcome_count(o)))
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k, json!(n)))
        .collect();
    let mut ops = Map::new();
    for op in Op::ALL {
        let Some(all) = s.op(op) else { continue };
        let outcomes: Map<String, Value> = Outcome::ALL
            .into_iter()
            .filter_map(|o| s.group(op, o).map(|g| (o, g)))
            .map(|(o, g)| {
                (
                    o.name().to_string(),
                    json!({
                        "count": g.count,
                        "rps": per_sec(g.count, s.duration),
                        "latencyMs": latency_json(&Latency::of(&g.latency)),
                    }),
                )
            })
            .collect();
        ops.insert(
            op.name().to_string(),
            json!({
                "count": all.count,
                "rps": per_sec(all.count, s.duration),
                "latencyMs": latency_json(&Latency::of(&all.latency)),
                "outcomes": outcomes,
            }),
        );
    }
    let timeline: Vec<Value> = s
        .timeline
        .iter()
        .enumerate()
        .map(|(i, sec)| {
            json!({
                "second": i,
                "requests": sec.requests,
                "errors": sec.errors,
                "latencyMs": latency_json(&Latency::of(&sec.latency)),
            })
        })
        .collect();
    let audit = r.audit.as_ref().map(|a| {
        json!({
            "capacity": a.counts.capacity,
            "available": a.counts.available,
            "held": a.counts.held,
            "sold": a.counts.sold,
            "holdsWon": a.holds_won,
            "ticketsBought": a.tickets_bought,
            "ticketsLive": a.tickets_live,
            "violations": a.violations,
        })
    });
    let m = &r.mode;
    json!({
        "requests": s.requests(),
        "durationSecs": s.duration.as_secs_f64(),
        "rps": s.rps(),
        "latencyMs": latency_json(&Latency::of(&s.overall.latency)),
        "statusCounts": statuses,
        "errors": errors,
        "scenario": m.scenario.name(),
        "event": m.event,
        "url": m.target.url,
        "connections": m.connections,
        "rate": m.rate,
        "seed": m.seed,
        "interrupted": r.interrupted,
        "operations": ops,
        "timeline": timeline,
        "audit": audit,
        "onsale": r.onsale.as_ref().map(onsale_json),
        "failIf": {
            "rules": rules,
            "violations": violations.iter().map(|v| json!({"rule": v.rule, "measured": v.actual})).collect::<Vec<_>>(),
        },
    })
}

/// The `q` quantile of sorted values (0 for none).
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn onsale_json(o: &super::audit::OnsaleReport) -> Value {
    let r = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "joined": o.joined, "admitted": o.admitted, "bought": o.bought, "soldOut": o.sold_out,
        "expired": o.expired, "noTicket": o.no_ticket,
        "waitMs": {"p50": r(pct(&o.waits_ms, 0.5)), "p90": r(pct(&o.waits_ms, 0.9)),
                   "p99": r(pct(&o.waits_ms, 0.99)), "max": r(pct(&o.waits_ms, 1.0))},
        "overtaken": r(o.overtaken),
        "mostAdmitted": o.most_admitted,
        "skipsTried": o.skips.0, "skipsHeld": o.skips.1,
    })
}

/// `--plot`: latency percentiles per second (top) and the latency
/// histogram on a log scale of buckets (bottom), as a standalone SVG.
pub fn svg(stats: &Stats) -> String {
    const W: f64 = 800.0;
    const PLOT_W: f64 = 720.0;
    const LEFT: f64 = 60.0;
    const TOP_H: f64 = 200.0;
    const BOTTOM_Y: f64 = 290.0;
    const BOTTOM_H: f64 = 160.0;
    let mut out = String::new();
    out.push_str(&format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="500" font-family="sans-serif" font-size="11">"#
    ));
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);

    // Top: p50/p90/p99 per second.
    let secs: Vec<Latency> = stats
        .timeline
        .iter()
        .map(|s| Latency::of(&s.latency))
        .collect();
    let ymax = secs.iter().map(|l| l.p99).fold(0.0f64, f64::max).max(0.001);
    out.push_str(&format!(
        r#"<text x="{LEFT}" y="20">latency per second (ms, max {}): p50 blue, p90 green, p99 red</text>"#,
        ms(ymax)
    ));
    out.push_str(&format!(
        r##"<rect x="{LEFT}" y="30" width="{PLOT_W}" height="{TOP_H}" fill="none" stroke="#999"/>"##
    ));
    let n = secs.len().max(2) as f64 - 1.0;
    for (pick, colour) in [(0usize, "#1f77b4"), (1, "#2ca02c"), (2, "#d62728")] {
        let points: Vec<String> = secs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let v = [l.p50, l.p90, l.p99][pick];
                let x = LEFT + PLOT_W * i as f64 / n;
                let y = 30.0 + TOP_H - TOP_H * v / ymax;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        out.push_str(&format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        ));
    }
    out.push_str(&format!(
        r#"<text x="{LEFT}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{} s</text>"#,
        30.0 + TOP_H + 14.0,
        LEFT + PLOT_W,
        30.0 + TOP_H + 14.0,
        secs.len()
    ));

    // Bottom: counts per latency bucket, bucket bounds doubling from 100 µs.
    let h = &stats.overall.latency;
    let buckets: Vec<(u64, u64)> = if h.is_empty() {
        Vec::new()
    } else {
        h.iter_log(100, 2.0)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect()
    };
    let cmax = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    out.push_str(&format!(
        r#"<text x="{LEFT}" y="{}">latency histogram (requests per bucket; bucket upper bound in ms)</text>"#,
        BOTTOM_Y - 10.0
    ));
    let bw = PLOT_W / buckets.len().max(1) as f64;
    for (i, (upper, count)) in buckets.iter().enumerate() {
        let bh = BOTTOM_H * *count as f64 / cmax;
        let x = LEFT + bw * i as f64;
        out.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4c72b0"><title>&lt;= {} ms: {count}</title></rect>"##,
            BOTTOM_Y + BOTTOM_H - bh,
            (bw - 2.0).max(1.0),
            ms(*upper as f64 / 1000.0),
        ));
        out.push_str(&format!(
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="9">{}</text>"#,
            x + bw / 2.0,
            BOTTOM_Y + BOTTOM_H + 12.0,
            ms(*upper as f64 / 1000.0)
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stress::client::Target;
    use crate::stress::stats::Sample;
    use crate::stress::{ProgressMode, Scenario, WorkMode};
    use std::time::Duration;

    fn report() -> Report {
        let mut stats = Stats::new();
        for i in 0..300u64 {
            let (op, status) = match i % 3 {
                0 => (Op::Hold, 201),
                1 => (Op::Hold, 409),
                _ => (Op::Purchase, 202),
            };
            stats.record(&Sample {
                op,
                outcome: Outcome::of_status(op, status),
                status,
                end_us: i * 10_000,
                latency_us: 1000 + i * 10,
            });
        }
        stats.record(&Sample {
            op: Op::Purchase,
            outcome: Outcome::Timeout,
            status: 0,
            end_us: 2_999_000,
            latency_us: 5_000_000,
        });
        stats.duration = Duration::from_secs(3);
        Report {
            mode: WorkMode {
                target: Target {
                    url: "http://127.0.0.1:1".into(),
                    addr: "127.0.0.1:1".parse().unwrap(),
                    host: hyper::header::HeaderValue::from_static("127.0.0.1:1"),
                    base: String::new(),
                },
                event: "gig".into(),
                scenario: Scenario::ReserveBuy,
                connections: 4,
                stop: Stop::Duration(Duration::from_secs(3)),
                rate: None,
                ramp: None,
                quantity: None,
                section: None,
                pay: None,
                jwt: None,
                think: Duration::ZERO,
                poll: Duration::from_millis(200),
                abandon: 0.0,
                hot_tickets: 10,
                path: None,
                seed: 42,
                timeout: Duration::from_secs(5),
                audit: false,
                progress: ProgressMode::Off,
            },
            capacity: 1000,
            stats,
            audit: None,
            onsale: None,
            interrupted: true,
        }
    }

    #[test]
    fn a_step_cut_short_by_the_end_of_the_run_counts_its_own_length() {
        let d = std::time::Duration::from_millis(2_500);
        assert_eq!(step_secs(d, 0, 1), 1.0);
        assert_eq!(step_secs(d, 2, 1), 0.5);
        assert_eq!(step_secs(d, 0, 2), 2.0);
        assert_eq!(step_secs(d, 2, 2), 0.5);
        assert_eq!(step_secs(d, 3, 1), 1.0);
    }

    #[test]
    fn the_json_has_the_contract_fields_and_breakdowns() {
        let r = report();
        let v = json(&r, &["p99>1ms".into()], &[]);
        assert_eq!(v["requests"], 301);
        assert_eq!(v["durationSecs"], 3.0);
        for k in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(v["latencyMs"][k].is_number(), "{k}");
        }
        assert_eq!(v["statusCounts"]["201"], 100);
        assert_eq!(v["statusCounts"]["409"], 100);
        assert_eq!(v["errors"], json!({"timeout": 1}));
        assert_eq!(
            v["operations"]["hold"]["outcomes"]["unavailable"]["count"],
            100
        );
        assert_eq!(v["operations"]["purchase"]["count"], 101);
        assert_eq!(v["timeline"].as_array().unwrap().len(), 3);
        assert_eq!(v["seed"], 42);
        assert_eq!(v["interrupted"], true);
    }

    #[test]
    fn the_text_report_has_every_part() {
        let r = report();
        let mut out = Vec::new();
        let v = [Violation {
            rule: "p99>1ms".into(),
            actual: "4.00ms".into(),
        }];
        write_text(&mut out, &r, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        for part in [
            "interrupted",
            "stress reserve-buy on event gig",
            "301 requests in 3.00s",
            "status codes: 201: 100, 202: 100, 409: 100",
            "unavailable",
            "timeout",
            "total",
            "--fail-if violated: p99>1ms (measured 4.00ms)",
        ] {
            assert!(text.contains(part), "{part} missing in\n{text}");
        }
    }

    #[test]
    fn long_timelines_are_grouped() {
        let mut s = Stats::new();
        for sec in 0..95u64 {
            s.record(&Sample {
                op: Op::Read,
                outcome: Outcome::Won,
                status: 200,
                end_us: sec * 1_000_000,
                latency_us: 100,
            });
        }
        let rows = timeline_rows(&s);
        assert!(rows.len() <= TIMELINE_ROWS);
        assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 95);
    }

    #[test]
    fn the_plot_is_an_svg_with_lines_and_bars() {
        let svg = svg(&report().stats);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.matches("<rect").count() > 3);
        let empty = super::svg(&Stats::new());
        assert!(empty.contains("</svg>"));
    }
}
