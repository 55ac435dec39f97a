//! The release worker: finds holds past their deadline through each event's
//! schedule (ordered by deadline), releases them in bounded batches (one
//! script call per batch), sleeps until the next deadline, and wakes early
//! when a hold is scheduled in an event that had none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ReleaseConfig;
use crate::daemon::metrics::Metrics;
use crate::store::{Store, StoreError};

/// What the release worker has done.
pub struct ReleaseStats {
    /// Holds released.
    pub released: AtomicU64,
    /// Lateness over the worker's life.
    lag: Mutex<Histogram<u64>>,
    /// Lateness since the last progress line.
    recent: Mutex<Histogram<u64>>,
}

fn lag_histogram() -> Mutex<Histogram<u64>> {
    Mutex::new(Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds"))
}

impl Default for ReleaseStats {
    fn default() -> Self {
        ReleaseStats {
            released: AtomicU64::new(0),
            lag: lag_histogram(),
            recent: lag_histogram(),
        }
    }
}

/// Lateness of releases (ms after the deadline, Redis clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSummary {
    /// Holds released (in the span summarised).
    pub count: u64,
    /// Median lateness.
    pub p50_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Worst.
    pub max_ms: u64,
}

impl ReleaseStats {
    fn record(&self, lags: &[u64]) {
        for hist in [&self.lag, &self.recent] {
            let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
            for l in lags {
                // Histograms start at 1; a release in the same millisecond
                // counts as 1 ms, and one over an hour late as an hour (so
                // the count matches `released`).
                h.saturating_record((*l).max(1));
            }
        }
        self.released
            .fetch_add(lags.len() as u64, Ordering::Relaxed);
    }

    /// The lateness so far.
    pub fn lag(&self) -> LagSummary {
        summary(&self.lag.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The lateness since the last call, which starts a new interval.
    pub fn take_recent(&self) -> LagSummary {
        let mut h = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let s = summary(&h);
        h.reset();
        s
    }
}

fn summary(h: &Histogram<u64>) -> LagSummary {
    LagSummary {
        count: h.len(),
        p50_ms: h.value_at_quantile(0.5),
        p99_ms: h.value_at_quantile(0.99),
        max_ms: h.max(),
    }
}

/// One pass over every event: releases all that is due. Returns how long
/// until the next deadline (by the Redis clock), if any is scheduled.
pub async fn release_pass(
    store: &Store,
    batch: usize,
    stats: &ReleaseStats,
    metrics: &Metrics,
) -> Result<Option<Duration>, StoreError> {
    let mut next: Option<Duration> = None;
    for event in store.list_events().await? {
        loop {
            let Some(sweep) = store.release_expired(&event, batch, true).await? else {
                break;
            };
            if sweep.released > 0 {
                stats.record(&sweep.lags_ms);
                Metrics::add(&metrics.holds_expired, sweep.released);
                tracing::debug!(event = %event, released = sweep.released, "holds expired");
            }
            match sweep.next_deadline_ms {
                Some(d) if d <= sweep.now_ms => continue,
                Some(d) => {
                    let wait = Duration::from_millis(d.saturating_sub(sweep.now_ms));
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                }
                None => {}
            }
            break;
        }
    }
    Ok(next)
}

/// Runs the release worker until `stop` (or after one pass with `once`).
pub async fn run(
    store: Store,
    cfg: ReleaseConfig,
    once: bool,
    stop: CancellationToken,
    stats: Arc<ReleaseStats>,
    metrics: Arc<Metrics>,
) -> Result<(), StoreError> {
    let wake = Arc::new(Notify::new());
    if !once {
        let (s, w, t) = (store.clone(), wake.clone(), stop.child_token());
        tokio::spawn(async move { s.watch_release_wakeups(w, t).await });
    }
    let mut last_report = Instant::now();
    let mut reported = 0;
    loop {
        let sleep = match release_pass(&store, cfg.batch, &stats, &metrics).await {
            Ok(next) => next.unwrap_or(cfg.max_sleep).min(cfg.max_sleep),
            Err(e) if once => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "release pass failed; retrying");
                Duration::from_millis(500)
            }
        };
        let released = stats.released.load(Ordering::Relaxed);
        if once || (released != reported && last_report.elapsed() >= Duration::from_secs(10)) {
            report(&stats, once);
            reported = released;
            last_report = Instant::now();
        }
        if once {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = wake.notified() => {}
            () = stop.cancelled() => break,
        }
    }
    report(&stats, true);
    Ok(())
}

/// A progress line: the holds released and their lateness since the last
/// line (a lifetime figure would hide today's lag behind yesterday's); the
/// last line, at exit, covers the worker's whole life.
fn report(stats: &ReleaseStats, last: bool) {
    let total = stats.released.load(Ordering::Relaxed);
    let l = if last {
        stats.lag()
    } else {
        stats.take_recent()
    };
    tracing::info!(
        released = l.count,
        released_total = total,
        lag_p50_ms = l.p50_ms,
        lag_p99_ms = l.p99_ms,
        lag_max_ms = l.max_ms,
        over = if last { "lifetime" } else { "interval" },
        "holds expired"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_shows_the_lag_since_the_last_one() {
        let stats = ReleaseStats::default();
        stats.record(&[137_000, 136_000]);
        assert_eq!(stats.take_recent().count, 2);
        stats.record(&[5, 88]);
        let recent = stats.take_recent();
        assert_eq!((recent.count, recent.max_ms), (2, 88));
        let life = stats.lag();
        assert_eq!(life.count, 4);
        assert!(life.max_ms >= 136_000, "{life:?}");
        assert_eq!(stats.take_recent().count, 0, "a new interval starts empty");
    }
}
