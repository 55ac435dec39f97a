//! Group commit: concurrent holds (and purchases) of one event go to Redis
//! together, as one call of the script, while earlier calls for that event
//! are in flight. Each request still succeeds or fails on its own and the
//! script stays atomic; what is shared is the round trip, the script
//! start-up and the per-call bookkeeping (meta, clock, schedule, counters,
//! and the replica WAIT of purchases).
//!
//! One queue and one task per event with recent holds. A task with nothing to
//! do for [`IDLE`] closes its queue and ends, so ids of events that do not
//! exist cannot pile up tasks; at most [`MAX_QUEUES`] queues exist at once,
//! and requests beyond that take the direct path.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{admission, Result, Store, StoreError};

/// Most requests in one script call.
pub(super) const MAX_BATCH: usize = 64;
/// Most tickets in one script call (beyond one request's own), so a group
/// of big holds does not keep Redis busy for long in one go.
const MAX_WEIGHT: usize = 1000;
/// Calls in flight per event.
const IN_FLIGHT: usize = 2;
/// A queue without requests for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Most events with a queue at once.
const MAX_QUEUES: usize = 1024;

/// Upper bounds (seconds) of the call latency buckets.
pub const CALL_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Grouped calls of one operation: how many, how many requests they
/// carried, and how long each took (Redis round trip and script).
#[derive(Default)]
pub struct CallSeries {
    /// Calls made.
    pub calls: AtomicU64,
    /// Requests those calls carried.
    pub requests: AtomicU64,
    /// Their total time, in microseconds.
    pub micros: AtomicU64,
    /// Calls per latency bucket (not cumulative); past the last, none.
    pub buckets: [AtomicU64; CALL_BUCKETS.len()],
}

/// Grouped calls of holds and of purchases, shared by a process's serving
/// threads (for its metrics).
#[derive(Default)]
pub struct CallStats {
    /// Hold calls.
    pub holds: CallSeries,
    /// Purchase calls.
    pub purchases: CallSeries,
}

impl CallSeries {
    /// Counts one call of `requests` requests that took `elapsed`.
    pub fn record(&self, requests: usize, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = CALL_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An operation whose requests for one event can share a script call.
pub(super) trait Grouped: Send + Sync + 'static {
    /// Its series in [`CallStats`].
    fn series(stats: &CallStats) -> &CallSeries;
    /// One request.
    type Item: Send + Sync + 'static;
    /// Its answer.
    type Answer: Send + 'static;
    /// How much work an item is for Redis (its tickets).
    fn weight(_item: &Self::Item) -> usize {
        1
    }
    /// One call for all `items` (of `event`): one answer per item, in order.
    fn call(
        store: &Store,
        event: &str,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Result<Self::Answer>>>> + Send;
}

/// A request waiting for its event's next call.
struct Pending<G: Grouped> {
    item: G::Item,
    tx: oneshot::Sender<Result<G::Answer>>,
    /// When its wait passes `server.max_queue_wait`, with when it began
    /// (see admission.rs); `None`: never shed.
    shed_at: Option<(Instant, Instant)>,
}

type Sender<G> = mpsc::UnboundedSender<Pending<G>>;

/// The queues of one operation, by event.
pub(super) struct Queues<G: Grouped> {
    queues: Mutex<HashMap<String, Sender<G>>>,
}

impl<G: Grouped> Default for Queues<G> {
    fn default() -> Self {
        Queues {
            queues: Mutex::default(),
        }
    }
}

impl<G: Grouped> Queues<G> {
    /// Queues a request for `event`. `Err(())` when it could not be queued
    /// or its queue closed before it was sent (nothing was done: take the
    /// direct path).
    pub(super) async fn submit(
        self: &Arc<Self>,
        store: &Store,
        event: &str,
        item: G::Item,
    ) -> std::result::Result<Result<G::Answer>, ()> {
        // The request's first call: shed now, or when it has waited too
        // long for its group to go.
        let mut shed_at = None;
        if let (Some(max), Some(wait)) = (store.max_queue_wait, admission::first_call_wait()) {
            if let Err(e) = admission::check(wait, max, &store.wait_gauge) {
                return Ok(Err(e));
            }
            let now = Instant::now();
            shed_at = Some((now + (max - wait), now - wait));
        }
        let (tx, rx) = oneshot::channel();
        let pending = Pending { item, tx, shed_at };
        let sender = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            match queues.get(event) {
                Some(s) if !s.is_closed() => s.clone(),
                _ => {
                    if queues.len() >= MAX_QUEUES {
                        queues.retain(|_, s| !s.is_closed());
                        if queues.len() >= MAX_QUEUES {
                            return Err(());
                        }
                    }
                    let (s, r) = mpsc::unbounded_channel();
                    queues.insert(event.to_string(), s.clone());
                    tokio::spawn(run::<G>(
                        Arc::downgrade(self),
                        store.without_batching(),
                        event.to_string(),
                        r,
                    ));
                    s
                }
            }
        };
        sender.send(pending).map_err(|_| ())?;
        rx.await.map_err(|_| ())
    }
}

async fn run<G: Grouped>(
    queues: std::sync::Weak<Queues<G>>,
    store: Store,
    event: String,
    mut rx: mpsc::UnboundedReceiver<Pending<G>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        match tokio::time::timeout(IDLE, rx.recv_many(&mut batch, MAX_BATCH)).await {
            Ok(0) => return,
            Ok(_) => {
                // Requests that waited past server.max_queue_wait for this
                // group go no further.
                let now = Instant::now();
                if batch.iter().any(|p| p.shed_at.is_some()) {
                    batch.retain_mut(|p| match p.shed_at {
                        Some((at, _)) if at < now => {
                            let (tx, _) = oneshot::channel();
                            let tx = std::mem::replace(&mut p.tx, tx);
                            let _ = tx.send(Err(StoreError::Overloaded));
                            false
                        }
                        Some((_, began)) => {
                            store.wait_gauge.record(now - began);
                            true
                        }
                        None => true,
                    });
                    if batch.is_empty() {
                        continue;
                    }
                }
                let b = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                let (store, event) = (store.clone(), event.clone());
                tokio::spawn(async move {
                    send::<G>(&store, &event, b).await;
                    drop(permit);
                });
            }
            Err(_) => {
                // Idle: stop taking requests (later senders see the queue
                // closed and open a new one), forget this queue unless a
                // new one has replaced it, then answer any requests that
                // came in meanwhile.
                rx.close();
                if let Some(q) = queues.upgrade() {
                    let mut queues = q.queues.lock().unwrap_or_else(|p| p.into_inner());
                    if queues.get(&event).is_some_and(|s| s.is_closed()) {
                        queues.remove(&event);
                    }
                }
                while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    send::<G>(&store, &event, std::mem::take(&mut batch)).await;
                }
                return;
            }
        }
    }
}

/// Sends `batch` in calls of at most [`MAX_WEIGHT`] tickets (or one request).
async fn send<G: Grouped>(store: &Store, event: &str, mut batch: Vec<Pending<G>>) {
    // A request whose caller has gone (client disconnected, request timed
    // out) while it waited is not made at all.
    batch.retain(|p| !p.tx.is_closed());
    while !batch.is_empty() {
        let mut weight: usize = 0;
        let n = batch
            .iter()
            .take_while(|p| {
                weight = weight.saturating_add(G::weight(&p.item));
                weight <= MAX_WEIGHT
            })
            .count()
            .max(1);
        let rest = batch.split_off(n);
        call::<G>(store, event, batch).await;
        batch = rest;
    }
}

async fn call<G: Grouped>(store: &Store, event: &str, batch: Vec<Pending<G>>) {
    let (items, txs): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.tx)).unzip();
    let started = std::time::Instant::now();
    let answers = G::call(store, event, &items).await;
    if let Some(stats) = &store.call_stats {
        G::series(stats).record(items.len(), started.elapsed());
    }
    match answers {
        Ok(answers) => {
            for (tx, a) in txs.into_iter().zip(answers) {
                let _ = tx.send(a);
            }
        }
        Err(e) => {
            for tx in txs {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
