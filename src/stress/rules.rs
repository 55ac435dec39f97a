//! `--fail-if` rules: parsing an expression such as `p99>50ms`,
//! `errors>0`, `errors>1%`, `rps<1000` or `hold.p99>20ms`, and judging it
//! against the statistics of a run. A rule names the condition that
//! fails the run. Owns no I/O.

use std::fmt;

use super::stats::{Latency, Op, Outcome, Stats};

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency figure, compared in milliseconds.
    Latency(Percentile),
    /// Requests ending in an error (`errors`) or in one outcome (`timeout`,
    /// `unavailable`, ...); `None` means every error outcome.
    Count(Option<Outcome>),
    /// The same as a percentage of all requests (`errors>1%`).
    Percent(Option<Outcome>),
    /// Requests per second.
    Rps,
    /// Requests made.
    Requests,
}

/// Which latency figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// p50
    P50,
    /// p90
    P90,
    /// p99
    P99,
    /// p99.9
    P999,
    /// max
    Max,
    /// mean
    Mean,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// One parsed `--fail-if` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The expression as the user wrote it.
    pub text: String,
    /// Restricts the rule to one operation (`hold.p99>20ms`).
    pub op: Option<Op>,
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub cmp: Cmp,
    /// The threshold, in the metric's unit (ms for latency).
    pub value: f64,
}

/// A rule the run broke.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The rule as written.
    pub rule: String,
    /// What was measured, with its unit.
    pub actual: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (measured {})", self.rule, self.actual)
    }
}

impl Rule {
    /// Parses one expression; the error says what is wrong and what is accepted.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |why: &str| {
            format!(
                "invalid --fail-if {text:?}: {why} (expected [hold.|purchase.|read.]METRIC OP VALUE, \
                 e.g. p99>50ms, errors>0, errors>1%, rps<1000; metrics: p50 p90 p99 p999 max mean \
                 errors requests rps or an outcome name; OP: > >= < <=)"
            )
        };
        let at = compact
            .find(['>', '<'])
            .ok_or_else(|| bad("no comparison"))?;
        let (lhs, rest) = compact.split_at(at);
        let (cmp, rhs) = if let Some(r) = rest.strip_prefix(">=") {
            (Cmp::Ge, r)
        } else if let Some(r) = rest.strip_prefix("<=") {
            (Cmp::Le, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (Cmp::Gt, r)
        } else {
            (Cmp::Lt, &rest[1..])
        };
        let lhs = lhs.to_ascii_lowercase();
        // `p99.9` has a dot too, so only a known operation is a prefix.
        let (op, name) = match lhs.split_once('.') {
            Some((o, m)) if Op::ALL.iter().any(|x| x.name() == o) => {
                (Op::ALL.into_iter().find(|x| x.name() == o), m.to_string())
            }
            _ => (None, lhs.clone()),
        };
        let percentile = match name.as_str() {
            "p50" => Some(Percentile::P50),
            "p90" => Some(Percentile::P90),
            "p99" => Some(Percentile::P99),
            "p999" | "p99.9" => Some(Percentile::P999),
            "max" => Some(Percentile::Max),
            "mean" | "avg" => Some(Percentile::Mean),
            _ => None,
        };
        let (metric, value) = if let Some(p) = percentile {
            (
                Metric::Latency(p),
                parse_ms(rhs).ok_or_else(|| bad("bad latency"))?,
            )
        } else {
            let outcome = match name.as_str() {
                "errors" => Some(None),
                other => Outcome::ALL
                    .into_iter()
                    .find(|o| o.name().eq_ignore_ascii_case(other))
                    .map(Some),
            };
            let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
            match (name.as_str(), outcome) {
                ("rps", _) => (Metric::Rps, number(rhs).ok_or_else(|| bad("bad number"))?),
                ("requests", _) => (
                    Metric::Requests,
                    number(rhs).ok_or_else(|| bad("bad number"))?,
                ),
                (_, Some(o)) => match rhs.strip_suffix('%') {
                    Some(p) => (
                        Metric::Percent(o),
                        number(p).ok_or_else(|| bad("bad percentage"))?,
                    ),
                    None => (
                        Metric::Count(o),
                        number(rhs).ok_or_else(|| bad("bad number"))?,
                    ),
                },
                _ => return Err(bad(&format!("unknown metric {name:?}"))),
            }
        };
        Ok(Rule {
            text: text.trim().to_string(),
            op,
            metric,
            cmp,
            value,
        })
    }

    /// The measured value, in the rule's unit.
    pub fn measure(&self, stats: &Stats) -> f64 {
        let ops: Vec<Op> = match self.op {
            Some(op) => vec![op],
            None => Op::ALL.to_vec(),
        };
        let count = |o: Option<Outcome>| -> u64 {
            let outcomes: Vec<Outcome> = match o {
                Some(o) => vec![o],
                None => Outcome::ALL.into_iter().filter(|o| o.is_error()).collect(),
            };
            ops.iter()
                .flat_map(|op| outcomes.iter().map(move |o| (*op, *o)))
                .filter_map(|(op, o)| stats.group(op, o))
                .map(|g| g.count)
                .sum()
        };
        let requests = match self.op {
            Some(op) => stats.op(op).map_or(0, |g| g.count),
            None => stats.requests(),
        };
        match self.metric {
            Metric::Latency(p) => {
                let l = match self.op {
                    Some(op) => stats
                        .op(op)
                        .map(|g| Latency::of(&g.latency))
                        .unwrap_or_default(),
                    None => Latency::of(&stats.overall.latency),
                };
                match p {
                    Percentile::P50 => l.p50,
                    Percentile::P90 => l.p90,
                    Percentile::P99 => l.p99,
                    Percentile::P999 => l.p999,
                    Percentile::Max => l.max,
                    Percentile::Mean => l.mean,
                }
            }
            Metric::Count(o) => count(o) as f64,
            Metric::Percent(_) if requests == 0 => 0.0,
            Metric::Percent(o) => 100.0 * count(o) as f64 / requests as f64,
            Metric::Rps => super::stats::per_sec(requests, stats.duration),
            Metric::Requests => requests as f64,
        }
    }

    /// The violation, if the run broke this rule.
    pub fn check(&self, stats: &Stats) -> Option<Violation> {
        let v = self.measure(stats);
        let broken = match self.cmp {
            Cmp::Gt => v > self.value,
            Cmp::Ge => v >= self.value,
            Cmp::Lt => v < self.value,
            Cmp::Le => v <= self.value,
        };
        broken.then(|| Violation {
            rule: self.text.clone(),
            actual: match self.metric {
                Metric::Latency(_) => format!("{v:.2}ms"),
                Metric::Percent(_) => format!("{v:.2}%"),
                Metric::Rps => format!("{v:.1}/s"),
                Metric::Count(_) | Metric::Requests => format!("{v}"),
            },
        })
    }
}

/// `50ms`, `1.5s`, `800us`, or a bare number of milliseconds.
fn parse_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("us").or_else(|| s.strip_suffix("µs")) {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
}

/// Parses every rule, failing on the first bad one.
pub fn parse_all(texts: &[String]) -> Result<Vec<Rule>, String> {
    texts.iter().map(|t| Rule::parse(t)).collect()
}

/// The rules the run broke.
pub fn violations(rules: &[Rule], stats: &Stats) -> Vec<Violation> {
    rules.iter().filter_map(|r| r.check(stats)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::stats::Sample;
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_the_documented_forms() {
        let r = Rule::parse("p99>50ms").unwrap();
        assert_eq!(
            (r.op, r.metric, r.cmp, r.value),
            (None, Metric::Latency(Percentile::P99), Cmp::Gt, 50.0)
        );
        assert_eq!(Rule::parse(" p99.9 >= 1.5s").unwrap().value, 1500.0);
        assert_eq!(Rule::parse("max>800us").unwrap().value, 0.8);
        assert_eq!(Rule::parse("mean>7").unwrap().value, 7.0);
        let r = Rule::parse("errors>0").unwrap();
        assert_eq!((r.metric, r.value), (Metric::Count(None), 0.0));
        let r = Rule::parse("errors>1%").unwrap();
        assert_eq!((r.metric, r.value), (Metric::Percent(None), 1.0));
        let r = Rule::parse("rps<1000").unwrap();
        assert_eq!((r.metric, r.cmp, r.value), (Metric::Rps, Cmp::Lt, 1000.0));
        let r = Rule::parse("hold.p99<=20ms").unwrap();
        assert_eq!((r.op, r.cmp), (Some(Op::Hold), Cmp::Le));
        let r = Rule::parse("purchase.conflict>5%").unwrap();
        assert_eq!(r.metric, Metric::Percent(Some(Outcome::Conflict)));
        assert_eq!(
            Rule::parse("timeout>0").unwrap().metric,
            Metric::Count(Some(Outcome::Timeout))
        );
    }

    #[test]
    fn rejects_nonsense_with_a_message() {
        for bad in [
            "",
            "p99",
            "p98>5ms",
            "p99>fast",
            "errors>-1",
            "rps<x",
            "ship.p99>1ms",
            "p99=5ms",
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.contains("--fail-if"), "{bad}: {e}");
        }
    }

    fn stats() -> Stats {
        let mut s = Stats::new();
        for i in 1..=100u64 {
            let (op, status) = if i <= 90 {
                (Op::Hold, 201)
            } else {
                (Op::Purchase, 503)
            };
            s.record(&Sample {
                op,
                outcome: Outcome::of_status(op, status),
                status,
                end_us: i * 10_000,
                latency_us: i * 1000,
            });
        }
        s.duration = Duration::from_secs(2);
        s
    }

    #[test]
    fn judges_a_run() {
        let s = stats();
        let check = |t: &str| Rule::parse(t).unwrap().check(&s);
        assert!(check("p99>50ms").is_some());
        assert!(check("p99>200ms").is_none());
        assert!(check("hold.p99>91ms").is_none());
        assert!(check("hold.p99>80ms").is_some());
        assert!(check("errors>0").is_some());
        assert!(check("hold.errors>0").is_none());
        assert!(check("errors>10%").is_none());
        assert!(check("errors>=10%").is_some());
        assert!(check("rps<51").is_some());
        assert!(check("rps<50").is_none());
        assert!(check("requests<100").is_none());
        let v = check("server5xx>9").unwrap();
        assert_eq!(v.to_string(), "server5xx>9 (measured 10)");
        let rules = parse_all(&["p99>1s".into(), "errors>0".into()]).unwrap();
        assert_eq!(violations(&rules, &s).len(), 1);
    }
}
