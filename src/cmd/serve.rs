//! `ticketctl serve`: bind, seed the configured events, serve until SIGTERM
//! or Ctrl-C, drain.
//!
//! Serving is thread per core: `server.threads` threads each run their own
//! single-threaded event loop with their own Redis connection (and their own
//! group commit of holds), accepting from the one listening socket. A request
//! then never hops between threads on its way to Redis and back, which costs
//! more than the rest of its handling on a busy machine. Metrics, rate limits
//! and the connection limit are shared by all threads.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use super::work;
use crate::cli::{GlobalOpts, PurchaseArgs, ServeArgs};
use crate::daemon::http::{self, AppState, Limits};
use crate::daemon::metrics::Metrics;
use crate::daemon::shutdown;
use crate::model::CreateEvent;
use crate::store::Store;

/// Listens on `listen`. A host name listens on one of its addresses: the
/// first IPv4 one if it has any (so `localhost` is 127.0.0.1 on a dual-stack
/// host, where clients most often try it), else the first.
async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(listen).await?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .ok_or_else(|| std::io::Error::other("the name has no address"))?;
    TcpListener::bind(addr).await
}

pub async fn run(global: &GlobalOpts, args: ServeArgs) -> anyhow::Result<()> {
    let cfg = super::load_config(global, args.listen)?;
    let store = super::connect(&cfg).await?;
    // Bound before the events are seeded: a serve that cannot listen (the
    // port taken, say) writes nothing. Connections that arrive meanwhile
    // wait in the backlog.
    let listener = bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    seed_events(&store, &cfg).await?;
    // Only a warning: a Redis that refuses INFO (an ACL without it) still
    // serves.
    match store.replicas_short().await {
        Ok(short) => {
            for (node, connected) in short {
                tracing::warn!(
                    wait_replicas = cfg.redis.wait_replicas,
                    connected,
                    node = if node.is_empty() { crate::config::redact_url(&cfg.redis.url) } else { node },
                    "redis.wait_replicas asks for more replicas than Redis has connected: purchases will answer 503 until they connect"
                );
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot check the replicas redis.wait_replicas asks for"
        ),
    }
    if cfg.server.admin_token.is_empty() {
        tracing::warn!(
            "no admin token (server.admin_token or TICKETCTL_ADMIN_TOKEN): the admin routes answer 401 to everyone"
        );
    }
    let addr = listener.local_addr()?;
    let token = shutdown::on_signal();
    let metrics = Arc::new(Metrics::default());
    let mut workers = Vec::new();
    if args.with_workers {
        let pa = PurchaseArgs {
            once: false,
            batch: None,
            consumer: None,
        };
        workers.push(work::spawn_release(&cfg, false, token.clone(), metrics.clone()).await?);
        workers.push(work::spawn_purchase(&cfg, &pa, token.clone(), metrics.clone()).await?);
    }
    let state = AppState::new(store, metrics, &cfg);
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
            token: token.clone(),
        };
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                let _ = tx.send(shard.run());
            })
            .context("cannot start a serving thread")?;
        others.push(rx);
    }
    let app = http::router(state, cfg.server.body_limit);
    let listener = TcpListener::from_std(socket)?;
    tracing::info!(%addr, threads, "listening");
    let mut drained = http::serve_with(
        listener,
        app,
        limits,
        permits,
        token.clone().cancelled_owned(),
    )
    .await;
    for rx in others {
        drained &= rx.await.unwrap_or(false);
    }
    if !drained {
        tracing::warn!("shutdown timeout reached with requests still in flight");
    }
    for w in workers {
        work::finish(w, &token, cfg.purchase.shutdown_timeout).await?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// One more serving thread: its own event loop and Redis connection.
struct Shard {
    socket: std::net::TcpListener,
    state: AppState,
    cfg: crate::config::Config,
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
            http::serve_with(
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

/// Creates the `[[events]]` that do not exist yet; an existing event with
/// other settings is left as it is, with a warning.
pub(crate) async fn seed_events(store: &Store, cfg: &crate::config::Config) -> anyhow::Result<()> {
    for seed in &cfg.events {
        let settings = seed.settings();
        match store
            .create_event(&settings)
            .await
            .with_context(|| format!("cannot create event {}", seed.id))?
        {
            CreateEvent::Created => {
                tracing::info!(event = %seed.id, capacity = seed.capacity, "event created")
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
    if !cfg.events.iter().any(|e| &e.id == compat) && store.event_counts(compat).await?.is_none() {
        tracing::warn!(
            event = %compat,
            "compat.event does not exist (create it, or list it under [[events]]); the /api/ticket routes answer 404 until it does"
        );
    }
    Ok(())
}
