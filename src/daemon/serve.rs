//! The server `serve` runs, assembled here so that tests start the very
//! same one: thread per core, `server.threads` threads each running their
//! own single-threaded event loop with their own Redis connection (and their
//! own group commit of holds), accepting from the one listening socket. A
//! request then never hops between threads on its way to Redis and back,
//! which costs more than the rest of its handling on a busy machine.
//! Metrics, rate limits and the connection limit are shared by all threads.
//! Also the seeding of the configured events.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use super::http::{self, AppState, Limits};
use super::metrics::Metrics;
use crate::config::Config;
use crate::model::CreateEvent;
use crate::store::{Store, StoreError};

/// Serves the API on `listener` until `shutdown`, then drains; true when
/// every connection finished within `server.shutdown_timeout`. The calling
/// task is the first serving thread; the others start here, each connecting
/// to Redis on its own.
pub async fn run(
    listener: TcpListener,
    store: Store,
    metrics: Arc<Metrics>,
    cfg: &Config,
    shutdown: CancellationToken,
) -> std::io::Result<bool> {
    let addr = listener.local_addr()?;
    let state = AppState::new(store, metrics, cfg);
    let limits = Limits {
        max_connections: cfg.server.max_connections,
        header_timeout: cfg.server.header_timeout,
        shutdown_timeout: cfg.server.shutdown_timeout,
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let threads = match cfg.server.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let socket = listener.into_std()?;
    let mut others = Vec::new();
    for i in 1..threads {
        let shard = Shard {
            socket: socket.try_clone()?,
            state: state.clone(),
            cfg: cfg.clone(),
            limits: limits.clone(),
            permits: permits.clone(),
            token: shutdown.clone(),
        };
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                let _ = tx.send(shard.run());
            })?;
        others.push(rx);
    }
    let app = http::router(state, cfg.server.body_limit);
    let listener = TcpListener::from_std(socket)?;
    tracing::info!(%addr, threads, "listening");
    let mut drained = http::serve(listener, app, limits, permits, shutdown.cancelled_owned()).await;
    for rx in others {
        drained &= rx.await.unwrap_or(false);
    }
    Ok(drained)
}

/// One more serving thread: its own event loop and Redis connection.
struct Shard {
    socket: std::net::TcpListener,
    state: AppState,
    cfg: Config,
    limits: Limits,
    permits: Arc<Semaphore>,
    token: CancellationToken,
}

impl Shard {
    /// Serves until shutdown; true when its connections drained in time.
    fn run(self) -> bool {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a serving thread's event loop");
                return false;
            }
        };
        rt.block_on(async move {
            // Redis answered a moment ago (the first thread connected); keep
            // trying if it has gone since, as the connection itself would.
            let store = loop {
                match Store::connect(&self.cfg.redis).await {
                    Ok(store) => break store,
                    Err(e) => {
                        tracing::warn!(error = %e, "serving thread cannot reach Redis yet");
                        tokio::select! {
                            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                            () = self.token.cancelled() => return true,
                        }
                    }
                }
            };
            let listener = match TcpListener::from_std(self.socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "serving thread cannot use the listening socket");
                    return false;
                }
            };
            let app = http::router(
                self.state.with_store(store, &self.cfg),
                self.cfg.server.body_limit,
            );
            http::serve(
                listener,
                app,
                self.limits,
                self.permits,
                self.token.cancelled_owned(),
            )
            .await
        })
    }
}

/// An event of `[[events]]` that could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create event {event}: {source}")]
pub struct SeedError {
    /// The event.
    pub event: String,
    /// Why.
    #[source]
    pub source: StoreError,
}

/// Creates the `[[events]]` that do not exist yet; an existing event with
/// other settings is left as it is, with a warning.
pub async fn seed_events(store: &Store, cfg: &Config) -> Result<(), SeedError> {
    for seed in &cfg.events {
        let settings = seed.settings();
        match store
            .create_event(&settings)
            .await
            .map_err(|source| SeedError {
                event: seed.id.clone(),
                source,
            })? {
            CreateEvent::Created => {
                tracing::info!(event = %seed.id, capacity = settings.capacity, "event created")
            }
            CreateEvent::Exists => {}
            CreateEvent::Conflict(existing) => tracing::warn!(
                event = %seed.id,
                capacity = existing.capacity,
                hold_ttl_ms = existing.hold_ttl_ms,
                max_per_hold = existing.max_per_hold,
                "event exists with other settings than the config; keeping the existing ones"
            ),
        }
    }
    // The compatibility routes act on one event: say so at start when it
    // is missing, rather than with a 404 on every compat request.
    let compat = &cfg.compat.event;
    let missing = !cfg.events.iter().any(|e| &e.id == compat)
        && store
            .event_counts(compat)
            .await
            .map_err(|source| SeedError {
                event: compat.clone(),
                source,
            })?
            .is_none();
    if missing {
        tracing::warn!(
            event = %compat,
            "compat.event does not exist (create it, or list it under [[events]]); the /api/ticket routes answer 404 until it does"
        );
    }
    Ok(())
}
