//! Statistics of a load run: what one request looked like ([`Sample`]) and
//! what all of them add up to ([`Stats`]): HDR latency histograms per
//! operation and outcome, status counts and a per-second timeline.
//! Owns no I/O and no display; `report.rs` renders, `rules.rs` judges.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency tracked exactly, in microseconds (one hour); longer
/// ones are clamped rather than lost.
const MAX_US: u64 = 3_600_000_000;

/// The kind of request a sample is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `POST /v1/events/{id}/holds`
    Hold = 0,
    /// `POST /v1/holds/{holdId}/purchase`
    Purchase = 1,
    /// `GET /v1/events/{id}` and its ticket pages.
    Read = 2,
    /// `POST /v1/orders/{orderId}/payment` (`--pay`).
    Payment = 3,
    /// `POST /v1/events/{id}/queue` (`onsale`).
    Join = 4,
    /// `GET /v1/queue/{queueId}` (`onsale`).
    Poll = 5,
}

impl Op {
    /// Every operation, in display order.
    pub const ALL: [Op; 6] = [
        Op::Hold,
        Op::Purchase,
        Op::Read,
        Op::Payment,
        Op::Join,
        Op::Poll,
    ];

    /// Name in tables, JSON and `--fail-if` prefixes.
    pub fn name(self) -> &'static str {
        match self {
            Op::Hold => "hold",
            Op::Purchase => "purchase",
            Op::Read => "read",
            Op::Payment => "payment",
            Op::Join => "join",
            Op::Poll => "poll",
        }
    }
}

/// How a request ended, in the terms of ticketing rather than HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Hold 201, purchase 202, read 200.
    Won = 0,
    /// Hold answered 409 `tickets_unavailable`: someone else was faster.
    Unavailable = 1,
    /// Purchase answered 409 (`hold_expired`).
    Conflict = 2,
    /// Any other 4xx: a client or contract problem.
    Other4xx = 3,
    /// 5xx from the service.
    Server5xx = 4,
    /// No complete answer within `--timeout`.
    Timeout = 5,
    /// Could not connect, or the connection broke mid-request.
    ConnectionError = 6,
}

impl Outcome {
    /// Every outcome, in display order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Won,
        Outcome::Unavailable,
        Outcome::Conflict,
        Outcome::Other4xx,
        Outcome::Server5xx,
        Outcome::Timeout,
        Outcome::ConnectionError,
    ];

    /// Name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::Unavailable => "unavailable",
            Outcome::Conflict => "conflict",
            Outcome::Other4xx => "other4xx",
            Outcome::Server5xx => "server5xx",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionError => "connectionError",
        }
    }

    /// Whether this counts as an error. Losing a race for a ticket
    /// (unavailable, conflict) is the service working as designed.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Outcome::Other4xx | Outcome::Server5xx | Outcome::Timeout | Outcome::ConnectionError
        )
    }

    /// Classifies an HTTP status for an operation.
    pub fn of_status(op: Op, status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Won,
            409 if op == Op::Hold => Outcome::Unavailable,
            // A hold behind a waiting room without an admitted place: the
            // service refusing as designed.
            403 if op == Op::Hold => Outcome::Conflict,
            409 => Outcome::Conflict,
            400..=499 => Outcome::Other4xx,
            _ => Outcome::Server5xx,
        }
    }
}

/// One finished request, small enough to send by the thousand.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What was asked.
    pub op: Op,
    /// How it ended.
    pub outcome: Outcome,
    /// HTTP status, 0 when there was no response.
    pub status: u16,
    /// When it ended, in microseconds since the run started.
    pub end_us: u64,
    /// From its (intended) start to its end, in microseconds.
    pub latency_us: u64,
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("static histogram bounds are valid")
}

/// One second of the timeline.
#[derive(Debug, Clone)]
pub struct Second {
    /// Requests that ended in this second.
    pub requests: u64,
    /// Of those, errors.
    pub errors: u64,
    /// Their latencies (two significant figures: enough for a plot).
    pub latency: Histogram<u64>,
}

/// Count and latency of one group of samples.
#[derive(Debug, Clone)]
pub struct Group {
    /// Samples in the group.
    pub count: u64,
    /// Their latencies in microseconds.
    pub latency: Histogram<u64>,
}

impl Group {
    fn new() -> Group {
        Group {
            count: 0,
            latency: histogram(3),
        }
    }

    fn record(&mut self, latency_us: u64) {
        self.count += 1;
        self.latency.saturating_record(latency_us.clamp(1, MAX_US));
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Every request that got an answer or timed out. Connection errors
    /// are left out: failing fast would make latency look better.
    pub overall: Group,
    /// Per operation, per outcome; `None` until the first sample.
    groups: [[Option<Group>; 7]; 6],
    /// Responses by HTTP status.
    statuses: Vec<u64>,
    /// Per second since the start, by completion time.
    pub timeline: Vec<Second>,
    /// Wall time of the run (set when it ends).
    pub duration: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        Stats {
            overall: Group::new(),
            groups: Default::default(),
            statuses: vec![0; 600],
            timeline: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, s: &Sample) {
        let lat = s.latency_us;
        if s.outcome != Outcome::ConnectionError {
            self.overall.record(lat);
        }
        self.groups[s.op as usize][s.outcome as usize]
            .get_or_insert_with(Group::new)
            .record(lat);
        if let Some(n) = self.statuses.get_mut(s.status as usize) {
            if s.status != 0 {
                *n += 1;
            }
        }
        let sec = (s.end_us / 1_000_000) as usize;
        while self.timeline.len() <= sec {
            self.timeline.push(Second {
                requests: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        let slot = &mut self.timeline[sec];
        slot.requests += 1;
        slot.errors += u64::from(s.outcome.is_error());
        if s.outcome != Outcome::ConnectionError {
            slot.latency.saturating_record(lat.clamp(1, MAX_US));
        }
    }

    /// The group of one operation and outcome, if any sample fell in it.
    pub fn group(&self, op: Op, outcome: Outcome) -> Option<&Group> {
        self.groups[op as usize][outcome as usize].as_ref()
    }

    /// All outcomes of one operation merged; `None` if it never ran.
    pub fn op(&self, op: Op) -> Option<Group> {
        let mut merged: Option<Group> = None;
        for (i, g) in self.groups[op as usize].iter().enumerate() {
            let Some(g) = g else { continue };
            let m = merged.get_or_insert_with(Group::new);
            m.count += g.count;
            // Connection errors carry no meaningful latency (see `overall`).
            if i != Outcome::ConnectionError as usize {
                let _ = m.latency.add(&g.latency);
            }
        }
        merged
    }

    /// Every request made.
    pub fn requests(&self) -> u64 {
        self.groups
            .iter()
            .flatten()
            .flatten()
            .map(|g| g.count)
            .sum()
    }

    /// Requests of one outcome, over every operation.
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        Op::ALL
            .iter()
            .filter_map(|op| self.group(*op, outcome))
            .map(|g| g.count)
            .sum()
    }

    /// Requests that ended in an error (see [`Outcome::is_error`]).
    pub fn errors(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| o.is_error())
            .map(|o| self.outcome_count(*o))
            .sum()
    }

    /// Requests per second over the whole run.
    pub fn rps(&self) -> f64 {
        per_sec(self.requests(), self.duration)
    }

    /// `(status, count)` for every status seen, ascending.
    pub fn status_counts(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (s as u16, *n))
    }
}

/// `count` over `d`, 0 for an empty duration.
pub fn per_sec(count: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Summarises a histogram of microseconds; all zero when empty.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(op: Op, status: u16, end_ms: u64, lat_ms: u64) -> Sample {
        Sample {
            op,
            outcome: Outcome::of_status(op, status),
            status,
            end_us: end_ms * 1000,
            latency_us: lat_ms * 1000,
        }
    }

    #[test]
    fn statuses_map_to_ticketing_outcomes() {
        assert_eq!(Outcome::of_status(Op::Hold, 201), Outcome::Won);
        assert_eq!(Outcome::of_status(Op::Hold, 409), Outcome::Unavailable);
        assert_eq!(Outcome::of_status(Op::Purchase, 202), Outcome::Won);
        assert_eq!(Outcome::of_status(Op::Purchase, 409), Outcome::Conflict);
        assert_eq!(Outcome::of_status(Op::Purchase, 403), Outcome::Other4xx);
        assert_eq!(Outcome::of_status(Op::Read, 503), Outcome::Server5xx);
        assert!(!Outcome::Unavailable.is_error());
        assert!(Outcome::Timeout.is_error());
    }

    #[test]
    fn percentiles_counts_and_timeline() {
        let mut s = Stats::new();
        for i in 1..=100 {
            s.record(&sample(Op::Hold, 201, i * 20, i));
        }
        s.record(&sample(Op::Hold, 409, 2500, 1));
        s.record(&sample(Op::Purchase, 500, 2600, 7));
        s.record(&Sample {
            op: Op::Read,
            outcome: Outcome::ConnectionError,
            status: 0,
            end_us: 2_700_000,
            latency_us: 1,
        });
        s.duration = Duration::from_secs(3);
        assert_eq!(s.requests(), 103);
        assert_eq!(s.errors(), 2);
        assert!((s.rps() - 103.0 / 3.0).abs() < 1e-9);
        // The connection error carries no latency.
        assert_eq!(s.overall.latency.len(), 102);
        let won = Latency::of(&s.group(Op::Hold, Outcome::Won).unwrap().latency);
        assert!((won.p50 - 50.0).abs() < 0.1, "{won:?}");
        assert!((won.p99 - 99.0).abs() < 0.1, "{won:?}");
        assert!((won.max - 100.0).abs() < 0.1, "{won:?}");
        assert!((won.mean - 50.5).abs() < 0.1, "{won:?}");
        assert_eq!(s.op(Op::Hold).unwrap().count, 101);
        assert!(s.op(Op::Read).unwrap().latency.is_empty());
        assert_eq!(
            s.status_counts().collect::<Vec<_>>(),
            vec![(201, 100), (409, 1), (500, 1)]
        );
        assert_eq!(s.timeline.len(), 3);
        assert_eq!(s.timeline[0].requests, 49);
        assert_eq!(s.timeline[2].errors, 2);
    }

    #[test]
    fn empty_stats_are_zero() {
        let s = Stats::new();
        assert_eq!(s.requests(), 0);
        assert_eq!(s.rps(), 0.0);
        assert_eq!(Latency::of(&s.overall.latency), Latency::default());
    }
}
