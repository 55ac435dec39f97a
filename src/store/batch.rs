//! Group commit for holds: concurrent hold requests for one event go to
//! Redis together, as one call of the hold script, while the previous call
//! for that event is in flight. Each hold still succeeds or fails on its own
//! and the script stays atomic; what is shared is the round trip, the script
//! start-up and the per-call bookkeeping (meta, clock, schedule, counters).
//!
//! One queue and one task per event with recent holds. A task with nothing to
//! do for [`IDLE`] closes its queue and ends, so ids of events that do not
//! exist cannot pile up tasks; at most [`MAX_QUEUES`] queues exist at once,
//! and requests beyond that take the direct path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{HoldOutcome, HoldRequest, Result, Store};

/// Most holds in one script call.
pub(super) const MAX_BATCH: usize = 64;
/// Calls in flight per event.
const IN_FLIGHT: usize = 2;
/// A queue without requests for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Most events with a queue at once.
const MAX_QUEUES: usize = 1024;

/// A hold waiting for its event's next call. The answer is `None` when the
/// script asks for expired holds to be released first (the direct path
/// does that).
pub(super) struct Pending {
    pub(super) user: String,
    pub(super) req: HoldRequest,
    tx: oneshot::Sender<Result<Option<HoldOutcome>>>,
}

#[derive(Default)]
pub(super) struct HoldQueues {
    queues: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<Pending>)>>,
    next_id: AtomicU64,
}

impl HoldQueues {
    /// Queues a hold for `event`. `Err(())` when it could not be queued or
    /// its queue closed before it was sent (nothing was done: take the
    /// direct path).
    pub(super) async fn submit(
        self: &Arc<Self>,
        store: &Store,
        event: &str,
        user: &str,
        req: &HoldRequest,
    ) -> std::result::Result<Result<Option<HoldOutcome>>, ()> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            user: user.to_string(),
            req: req.clone(),
            tx,
        };
        let sender = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            match queues.get(event) {
                Some((_, s)) if !s.is_closed() => s.clone(),
                _ => {
                    if queues.len() >= MAX_QUEUES {
                        queues.retain(|_, (_, s)| !s.is_closed());
                        if queues.len() >= MAX_QUEUES {
                            return Err(());
                        }
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let (s, r) = mpsc::unbounded_channel();
                    queues.insert(event.to_string(), (id, s.clone()));
                    tokio::spawn(run(
                        Arc::downgrade(self),
                        store.without_batching(),
                        event.to_string(),
                        id,
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

async fn run(
    queues: std::sync::Weak<HoldQueues>,
    store: Store,
    event: String,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<Pending>,
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
                let mut b = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                let (store, event) = (store.clone(), event.clone());
                tokio::spawn(async move {
                    send(&store, &event, &mut b).await;
                    drop(permit);
                });
            }
            Err(_) => {
                // Idle: stop taking requests, then answer any that came in
                // meanwhile (later senders see the queue closed).
                if let Some(q) = queues.upgrade() {
                    let mut queues = q.queues.lock().unwrap_or_else(|p| p.into_inner());
                    if queues.get(&event).is_some_and(|(i, _)| *i == id) {
                        queues.remove(&event);
                    }
                }
                rx.close();
                while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    send(&store, &event, &mut batch).await;
                }
                return;
            }
        }
    }
}

async fn send(store: &Store, event: &str, batch: &mut Vec<Pending>) {
    let holds: Vec<(&str, &HoldRequest)> =
        batch.iter().map(|p| (p.user.as_str(), &p.req)).collect();
    let answers = store.hold_call(event, &holds, None).await;
    drop(holds);
    match answers {
        Ok(answers) => {
            for (p, a) in batch.drain(..).zip(answers) {
                let _ = p.tx.send(a);
            }
        }
        Err(e) => {
            for p in batch.drain(..) {
                let _ = p.tx.send(Err(e.clone()));
            }
        }
    }
}
