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
