//! `ticketctl serve`: seed the configured events, bind, serve until SIGTERM
//! or Ctrl-C, drain.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use super::work;
use crate::cli::{GlobalOpts, PurchaseArgs, ServeArgs};
use crate::daemon::http::{self, metrics::Metrics, AppState, Limits};
use crate::daemon::shutdown;
use crate::store::{CreateEvent, Store};

pub async fn run(global: &GlobalOpts, args: ServeArgs) -> anyhow::Result<()> {
    let cfg = super::load_config(global, args.listen)?;
    let store = super::connect(&cfg).await?;
    seed_events(&store, &cfg).await?;
    let listener = TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
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
    let app = http::router(AppState::new(store, metrics, &cfg), cfg.server.body_limit);
    let limits = Limits {
        max_connections: cfg.server.max_connections,
        header_timeout: cfg.server.header_timeout,
        shutdown_timeout: cfg.server.shutdown_timeout,
    };
    tracing::info!(%addr, "listening");
    let drained = http::serve(listener, app, limits, token.clone().cancelled_owned()).await;
    if !drained {
        tracing::warn!("shutdown timeout reached with requests still in flight");
    }
    for w in workers {
        work::finish(w, &token, cfg.purchase.shutdown_timeout).await?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Creates the `[[events]]` that do not exist yet; an existing event with
/// other settings is left as it is, with a warning.
pub(crate) async fn seed_events(store: &Store, cfg: &crate::config::Config) -> anyhow::Result<()> {
    for seed in &cfg.events {
        let settings = http::v1::settings_of(seed);
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
    Ok(())
}
