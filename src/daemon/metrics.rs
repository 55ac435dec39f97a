//! Prometheus metrics of one process: request counts and latency histograms
//! by route and status, and domain counters. Rendering is a pure function of
//! the recorded values.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::store::batch::{CallSeries, CallStats, CALL_BUCKETS};
use crate::store::inspect::QueueView;
use crate::store::EventCounters;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone, Copy)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

type Key = (&'static str, &'static str, u16);

/// Request series are kept in this many maps, each thread writing to its
/// own (threads beyond that share), so serving threads never wait on one
/// another; a scrape adds them up.
const SHARDS: usize = 16;

thread_local! {
    /// This thread's shard of the request series.
    static SHARD: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        (NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize
    };
}

/// One shard, on cache lines of its own (threads locking neighbouring
/// shards would otherwise bounce one line between cores).
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<BTreeMap<Key, Series>>);

/// Counters shared by every request of a process.
#[derive(Default)]
pub struct Metrics {
    requests: [Shard; SHARDS],
    /// Holds created.
    pub holds_created: AtomicU64,
    /// Expired holds this process released: by a release worker, and by
    /// any call of the serving stores (which share this counter): the sweep
    /// before a count or listing, and holds, purchases and cancels that met
    /// an expired hold on their way.
    pub holds_expired: std::sync::Arc<AtomicU64>,
    /// Holds cancelled by their user or an operator.
    pub holds_cancelled: AtomicU64,
    /// Purchases accepted (new orders).
    pub purchases: AtomicU64,
    /// Purchase jobs completed by a worker in this process.
    pub jobs_completed: AtomicU64,
    /// Purchase jobs dead-lettered by a worker in this process.
    pub jobs_dead_lettered: AtomicU64,
    /// Grouped hold and purchase calls of the serving threads.
    pub calls: std::sync::Arc<CallStats>,
    /// The last per-event gauges read from Redis, and when.
    pub event_gauges: Mutex<Option<(std::time::Instant, String)>>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let secs = elapsed.as_secs_f64();
        let shard = &self.requests[SHARD.with(|s| *s)];
        let mut map = shard.0.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry((method, route, status)).or_default();
        s.count += 1;
        s.sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i] += 1;
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut map: BTreeMap<Key, Series> = BTreeMap::new();
        for shard in &self.requests {
            for (k, v) in shard.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let s = map.entry(*k).or_default();
                s.count += v.count;
                s.sum += v.sum;
                for (a, b) in s.buckets.iter_mut().zip(v.buckets) {
                    *a += b;
                }
            }
        }
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP ticketctl_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE ticketctl_http_requests_total counter\n");
        for ((m, r, st), s) in &map {
            let _ = writeln!(
                out,
                "ticketctl_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP ticketctl_http_request_duration_seconds HTTP request latency by route and status.\n");
        out.push_str("# TYPE ticketctl_http_request_duration_seconds histogram\n");
        for ((m, r, st), s) in &map {
            write_histogram(
                &mut out,
                "ticketctl_http_request_duration_seconds",
                &format!("method=\"{m}\",route=\"{r}\",status=\"{st}\""),
                BUCKETS.iter().zip(s.buckets),
                s.sum,
                s.count,
            );
        }
        for (name, help, c) in [
            (
                "ticketctl_holds_created_total",
                "Holds created.",
                &self.holds_created,
            ),
            (
                "ticketctl_holds_expired_total",
                "Expired holds released by this process.",
                &*self.holds_expired,
            ),
            (
                "ticketctl_holds_cancelled_total",
                "Holds cancelled.",
                &self.holds_cancelled,
            ),
            (
                "ticketctl_purchases_total",
                "Purchases accepted (new orders).",
                &self.purchases,
            ),
            (
                "ticketctl_purchase_jobs_completed_total",
                "Purchase jobs published to every sink.",
                &self.jobs_completed,
            ),
            (
                "ticketctl_purchase_jobs_dead_lettered_total",
                "Purchase jobs dead-lettered.",
                &self.jobs_dead_lettered,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        self.render_calls(&mut out);
        out
    }

    /// The grouped calls: counts, requests carried (their ratio is the
    /// mean group size) and a latency histogram, by operation.
    fn render_calls(&self, out: &mut String) {
        let ops = [
            ("hold", &self.calls.holds),
            ("purchase", &self.calls.purchases),
        ];
        for (name, help, pick) in [
            (
                "ticketctl_grouped_calls_total",
                "Script calls made for grouped holds or purchases.",
                (|s: &CallSeries| &s.calls) as fn(&CallSeries) -> &AtomicU64,
            ),
            (
                "ticketctl_grouped_requests_total",
                "Requests those calls carried (over the calls: the mean group size).",
                |s: &CallSeries| &s.requests,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (op, s) in ops {
                let _ = writeln!(
                    out,
                    "{name}{{op=\"{op}\"}} {}",
                    pick(s).load(Ordering::Relaxed)
                );
            }
        }
        let name = "ticketctl_grouped_call_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of one grouped call: Redis round trip and script.\n# TYPE {name} histogram"
        );
        for (op, s) in ops {
            write_histogram(
                out,
                name,
                &format!("op=\"{op}\""),
                CALL_BUCKETS
                    .iter()
                    .zip(s.buckets.iter().map(|n| n.load(Ordering::Relaxed))),
                s.micros.load(Ordering::Relaxed) as f64 / 1e6,
                s.calls.load(Ordering::Relaxed),
            );
        }
    }
}

/// One histogram series: its buckets (upper bound, count in that bucket
/// alone) written cumulatively, then `+Inf`, `_sum` and `_count`.
fn write_histogram<'a>(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: impl Iterator<Item = (&'a f64, u64)>,
    sum: f64,
    count: u64,
) {
    let mut cum = 0;
    for (b, n) in buckets {
        cum += n;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// Most events given series of their own in one scrape (the first, by id).
pub const MAX_EVENT_SERIES: usize = 1000;

/// One event's figures for a scrape: its id, its stored counters, and its
/// purchase queue (`None` when that could not be read), with the jobs
/// queued when Redis gives them.
pub type EventSeries = (String, EventCounters, Option<(Option<u64>, QueueView)>);

/// The per-event gauges of a scrape: `redis_up`, how many events exist, and
/// for each listed event its tickets by state, orders by status (from its
/// stored counters) and purchase queue. `None`: Redis could not be read.
pub fn render_events(out: &mut String, events: Option<(usize, &[EventSeries])>) {
    let name = "ticketctl_redis_up";
    let _ = writeln!(
        out,
        "# HELP {name} Whether this scrape could read the events from Redis.\n# TYPE {name} gauge\n{name} {}",
        u8::from(events.is_some())
    );
    let Some((total, events)) = events else {
        return;
    };
    let name = "ticketctl_events";
    let _ = writeln!(
        out,
        "# HELP {name} Events in Redis (at most {MAX_EVENT_SERIES} get series of their own).\n# TYPE {name} gauge\n{name} {total}"
    );
    type Split = fn(&EventCounters) -> Vec<(&'static str, u64)>;
    for (name, help, label, split) in [
        (
            "ticketctl_event_tickets",
            "Tickets of an event by state, from its counters (held includes holds past their deadline not released yet).",
            "state",
            (|c: &EventCounters| {
                vec![
                    ("available", c.capacity.saturating_sub(c.held.saturating_add(c.sold))),
                    ("held", c.held),
                    ("sold", c.sold),
                ]
            }) as Split,
        ),
        (
            "ticketctl_event_orders",
            "Orders of an event by status.",
            "status",
            |c: &EventCounters| c.by_status.clone(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (id, c, _) in events {
            for (value, n) in split(c) {
                let _ = writeln!(out, "{name}{{event=\"{id}\",{label}=\"{value}\"}} {n}");
            }
        }
    }
    type Pick = fn(&(Option<u64>, QueueView)) -> Option<u64>;
    for (name, help, pick) in [
        (
            "ticketctl_purchase_jobs_queued",
            "Purchase jobs of an event not yet read by a worker (absent when Redis gives no lag).",
            (|q: &(Option<u64>, QueueView)| q.0) as Pick,
        ),
        (
            "ticketctl_purchase_jobs_in_flight",
            "Purchase jobs of an event read by a worker and not yet acknowledged.",
            |q| Some(q.1.in_flight),
        ),
        (
            "ticketctl_dead_letters",
            "Dead-lettered purchase jobs of an event.",
            |q| Some(q.1.dead),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (id, _, q) in events {
            if let Some(n) = q.as_ref().and_then(pick) {
                let _ = writeln!(out, "{name}{{event=\"{id}\"}} {n}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_gauges_show_tickets_and_orders_or_that_redis_was_unreadable() {
        let mut out = String::new();
        render_events(&mut out, None);
        assert!(out.contains("ticketctl_redis_up 0\n"), "{out}");
        assert!(!out.contains("ticketctl_event_tickets"), "{out}");
        let c = EventCounters {
            capacity: 100,
            held: 7,
            sold: 20,
            by_status: vec![("pending", 4), ("completed", 15), ("failed", 1)],
        };
        let mut out = String::new();
        let q = QueueView {
            queued: 2,
            in_flight: 1,
            dead: 1,
            ..QueueView::default()
        };
        let listed = [
            ("gig".to_string(), c.clone(), Some((Some(2), q.clone()))),
            ("old".to_string(), c.clone(), Some((None, q))),
            ("odd".to_string(), c, None),
        ];
        render_events(&mut out, Some((3, &listed)));
        // No lag from Redis: no queued figure, the others stand.
        assert!(
            !out.contains("ticketctl_purchase_jobs_queued{event=\"old\"}"),
            "{out}"
        );
        assert!(
            out.contains("ticketctl_dead_letters{event=\"old\"} 1\n"),
            "{out}"
        );
        assert!(
            !out.contains("ticketctl_dead_letters{event=\"odd\"}"),
            "{out}"
        );
        for line in [
            "ticketctl_redis_up 1\n",
            "ticketctl_events 3\n",
            "ticketctl_event_tickets{event=\"gig\",state=\"available\"} 73\n",
            "ticketctl_event_tickets{event=\"gig\",state=\"held\"} 7\n",
            "ticketctl_event_tickets{event=\"gig\",state=\"sold\"} 20\n",
            "ticketctl_event_orders{event=\"gig\",status=\"pending\"} 4\n",
            "ticketctl_event_orders{event=\"gig\",status=\"failed\"} 1\n",
            "ticketctl_purchase_jobs_queued{event=\"gig\"} 2\n",
            "ticketctl_purchase_jobs_in_flight{event=\"gig\"} 1\n",
            "ticketctl_dead_letters{event=\"gig\"} 1\n",
            "ticketctl_event_tickets{event=\"odd\",state=\"sold\"} 20\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }

    #[test]
    fn grouped_calls_show_counts_group_sizes_and_latency() {
        let m = Metrics::default();
        m.calls.holds.record(5, Duration::from_micros(300));
        m.calls.holds.record(3, Duration::from_millis(2));
        m.calls.purchases.record(1, Duration::from_secs(3));
        let text = m.render();
        for line in [
            "ticketctl_grouped_calls_total{op=\"hold\"} 2\n",
            "ticketctl_grouped_requests_total{op=\"hold\"} 8\n",
            "ticketctl_grouped_calls_total{op=\"purchase\"} 1\n",
            "ticketctl_grouped_call_duration_seconds_bucket{op=\"hold\",le=\"0.00025\"} 0\n",
            "ticketctl_grouped_call_duration_seconds_bucket{op=\"hold\",le=\"0.0005\"} 1\n",
            "ticketctl_grouped_call_duration_seconds_bucket{op=\"hold\",le=\"0.0025\"} 2\n",
            "ticketctl_grouped_call_duration_seconds_bucket{op=\"hold\",le=\"+Inf\"} 2\n",
            "ticketctl_grouped_call_duration_seconds_sum{op=\"hold\"} 0.0023\n",
            // Past the last bucket: only in +Inf and the count.
            "ticketctl_grouped_call_duration_seconds_bucket{op=\"purchase\",le=\"1\"} 0\n",
            "ticketctl_grouped_call_duration_seconds_count{op=\"purchase\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn requests_from_many_threads_add_up() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.observe("GET", "/healthz", 200, Duration::from_micros(100));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = (SHARDS + 3) * 100;
        let text = m.render();
        assert!(
            text.contains(&format!(
                "ticketctl_http_requests_total{{method=\"GET\",route=\"/healthz\",status=\"200\"}} {n}\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("le=\"0.0005\"}} {n}\n")), "{text}");
    }

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe(
            "POST",
            "/v1/events/{id}/holds",
            201,
            Duration::from_micros(800),
        );
        m.observe(
            "POST",
            "/v1/events/{id}/holds",
            201,
            Duration::from_millis(3),
        );
        Metrics::add(&m.holds_created, 2);
        let text = m.render();
        assert!(text.contains("ticketctl_http_requests_total{method=\"POST\",route=\"/v1/events/{id}/holds\",status=\"201\"} 2"));
        assert!(text.contains("le=\"0.001\"} 1\n"));
        assert!(text.contains("le=\"0.005\"} 2\n"));
        assert!(text.contains("le=\"+Inf\"} 2\n"));
        assert!(text.contains("ticketctl_holds_created_total 2\n"));
    }
}
