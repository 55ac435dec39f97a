//! Shedding load early (`server.max_queue_wait`): a request that cannot
//! start its first Redis call within the limit is answered at once
//! ([`StoreError::Overloaded`]) instead of waiting behind the others, so
//! that the requests that are answered keep their latency.
//!
//! The HTTP layer runs each request inside [`scope`], which notes when it
//! began; the store checks the wait at the request's first call (on the
//! direct path when the call starts, on the grouped path when its group is
//! sent) and keeps a moving average of the waits it saw, which the HTTP
//! layer reads to shed most requests before any work while the wait stays
//! over the limit.
//!
//! A request also waits before the HTTP layer sees it at all: its bytes
//! arrived, but the serving thread is busy with the requests ahead of it.
//! That wait is read off the thread's event loop by [`watch_lag`], a timer
//! that notes how late it is woken; it raises the share shed early as the
//! waits before first calls do, but is not charged to each request (with
//! every connection of a client busy, shedding does not shorten it, and
//! charging it would shed all).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;

tokio::task_local! {
    static REQUEST: (Instant, Cell<bool>);
}

/// Runs `f` as one request begun now (see the module docs).
pub async fn scope<F: Future>(f: F) -> F::Output {
    REQUEST.scope((Instant::now(), Cell::new(false)), f).await
}

/// The current request's wait so far, if this is its first Redis call (and
/// notes that it has made it); `None` outside a request or after its first
/// call.
pub(super) fn first_call_wait() -> Option<Duration> {
    REQUEST
        .try_with(|(start, started)| (!started.replace(true)).then(|| start.elapsed()))
        .ok()
        .flatten()
}

/// The moving average of the waits before first Redis calls, of one
/// serving thread's store. It counts only while recent: a quiet spell of
/// [`STALE`] resets it, so a burst long past sheds nothing.
#[derive(Debug)]
pub struct WaitGauge {
    micros: AtomicU64,
    /// How late the event loop's timer last woke, in µs (see [`watch_lag`]).
    lag: AtomicU64,
    /// The share of requests shed before any work, in 1/1024 (see
    /// [`WaitGauge::shed_early`]).
    level: AtomicU64,
    /// Requests asked about so far, to spread the shed ones.
    asked: AtomicU64,
    /// When it was last fed, in µs since `epoch`.
    fed: AtomicU64,
    epoch: Instant,
}

/// How long the average stays meaningful without a new wait.
pub const STALE: Duration = Duration::from_millis(250);

impl Default for WaitGauge {
    fn default() -> Self {
        WaitGauge {
            micros: AtomicU64::new(0),
            lag: AtomicU64::new(0),
            level: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            fed: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl WaitGauge {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Adds one wait (an exponential moving average, 1/8 per sample).
    pub fn record(&self, wait: Duration) {
        let w = wait.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.average().as_micros() as u64;
        self.micros.store(old - old / 8 + w / 8, Ordering::Relaxed);
        self.fed.store(self.now_us(), Ordering::Relaxed);
    }

    /// The average wait (zero once stale).
    pub fn average(&self) -> Duration {
        let fed = self.fed.load(Ordering::Relaxed);
        if self.now_us().saturating_sub(fed) > STALE.as_micros() as u64 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    /// How long a request that arrives now waits before its thread gets to
    /// it: how late the thread's timer last woke (see [`watch_lag`]).
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag.load(Ordering::Relaxed))
    }

    /// Whether to shed the request seen now before any work. The share
    /// shed follows the waits: [`watch_lag`] raises it by an eighth of
    /// all requests every [`LAG_EVERY`] while the waits (the event-loop lag
    /// or the average before first calls) are over `max`, and lowers it by
    /// a sixteenth while they are under half of it. So it settles where the
    /// requests let through start within `max`, and is zero when the
    /// service keeps up.
    pub fn shed_early(&self) -> bool {
        let level = self.level.load(Ordering::Relaxed);
        if level == 0 {
            return false;
        }
        // Spread over the requests: the counter's golden-ratio hash, in
        // 0..1024.
        let n = self.asked.fetch_add(1, Ordering::Relaxed);
        (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) < level
    }

    /// One step of the shed share (see [`WaitGauge::shed_early`]).
    fn adjust(&self, max: Duration) {
        let wait = self.average().max(self.lag());
        let level = self.level.load(Ordering::Relaxed);
        let next = if wait > max {
            (level + LEVEL_UP).min(LEVEL_MAX)
        } else if wait < max / 2 {
            level.saturating_sub(LEVEL_DOWN)
        } else {
            level
        };
        self.level.store(next, Ordering::Relaxed);
    }
}

/// Steps of the shed share, in 1/1024 of all requests, and its most: one
/// request in eight always goes on, so the waits are still measured and
/// some work is done whatever the lag.
const LEVEL_UP: u64 = 128;
const LEVEL_DOWN: u64 = 64;
const LEVEL_MAX: u64 = 896;

/// How often [`watch_lag`] looks at the event loop.
pub const LAG_EVERY: Duration = Duration::from_millis(10);

/// Measures the current thread's event-loop lag into `gauge` until the
/// gauge is dropped: a timer due every [`LAG_EVERY`], and how late it is
/// run. A woken task runs after those ready before it, so the lateness is
/// what a request whose bytes just arrived waits before it is read. Each
/// time, the share shed early is set against `max` (see
/// [`WaitGauge::shed_early`]).
pub async fn watch_lag(gauge: std::sync::Weak<WaitGauge>, max: Duration) {
    let mut every = tokio::time::interval(LAG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = every.tick().await;
        let late = due.elapsed().as_micros().min(u128::from(u32::MAX)) as u64;
        match gauge.upgrade() {
            Some(g) => {
                g.lag.store(late, Ordering::Relaxed);
                g.adjust(max);
            }
            None => return,
        }
    }
}

/// [`StoreError::Overloaded`] when `wait` is over `max`.
pub(super) fn check(wait: Duration, max: Duration, gauge: &WaitGauge) -> Result<(), StoreError> {
    gauge.record(wait);
    if wait > max {
        Err(StoreError::Overloaded)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn shed_share(g: &WaitGauge) -> f64 {
        (0..10_000).filter(|_| g.shed_early()).count() as f64 / 10_000.0
    }

    #[test]
    fn the_shed_share_follows_the_waits() {
        let g = WaitGauge::default();
        let max = Duration::from_millis(100);
        assert_eq!(shed_share(&g), 0.0, "nothing shed while nothing waited");
        // Waits over the limit: the share climbs step by step to its most.
        g.lag.store(250_000, Ordering::Relaxed);
        g.adjust(max);
        let first = shed_share(&g);
        assert!(first > 0.08 && first < 0.17, "{first}");
        for _ in 0..20 {
            g.adjust(max);
        }
        let most = shed_share(&g);
        assert!(most > 0.85 && most < 0.9, "{most}");
        // Between half the limit and the limit it holds; under half it falls
        // back to nothing.
        g.lag.store(70_000, Ordering::Relaxed);
        g.adjust(max);
        assert_eq!(g.level.load(Ordering::Relaxed), LEVEL_MAX);
        g.lag.store(1_000, Ordering::Relaxed);
        for _ in 0..16 {
            g.adjust(max);
        }
        assert_eq!(shed_share(&g), 0.0);
    }

    #[tokio::test]
    async fn a_blocked_event_loop_is_seen_as_lag_and_sheds_until_it_recovers() {
        let g = Arc::new(WaitGauge::default());
        let max = Duration::from_millis(50);
        tokio::spawn(watch_lag(Arc::downgrade(&g), max));
        tokio::time::sleep(LAG_EVERY * 3).await;
        // The thread is busy for 300 ms: the timer due meanwhile runs late
        // by at least most of it, as soon as the thread is free (a yielding
        // task resumes after the timers due). Tried a few times, in case
        // the watcher was not yet waiting on its timer.
        let mut seen = false;
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(300));
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            if g.level.load(Ordering::Relaxed) > 0 {
                seen = true;
                break;
            }
        }
        assert!(seen, "no shedding after a blocked loop, lag {:?}", g.lag());
        let deadline = Instant::now() + Duration::from_secs(30);
        // Free again: the share falls back to nothing.
        while g.level.load(Ordering::Relaxed) > 0 {
            assert!(
                Instant::now() < deadline,
                "still shedding, lag {:?}",
                g.lag()
            );
            tokio::time::sleep(LAG_EVERY).await;
        }
        assert!(!g.shed_early());
    }

    #[test]
    fn the_average_goes_stale() {
        let g = WaitGauge::default();
        g.record(Duration::from_millis(800));
        assert_eq!(
            g.average(),
            Duration::from_millis(100),
            "an eighth per wait"
        );
        // Last fed at its epoch, twice STALE ago.
        let old = WaitGauge {
            epoch: Instant::now() - STALE * 2,
            ..WaitGauge::default()
        };
        old.micros.store(100_000, Ordering::Relaxed);
        assert_eq!(old.average(), Duration::ZERO);
    }
}
