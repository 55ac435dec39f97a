//! `ticketctl serve`: bind, seed the configured events, warn of what is
//! missing, start the workers asked for, serve until SIGTERM or Ctrl-C
//! (the server itself is `daemon::serve`), drain.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use super::work;
use crate::cli::{GlobalOpts, PurchaseArgs, ServeArgs};
use crate::daemon::{self, metrics::Metrics, shutdown};

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
    daemon::serve::seed_events(&store, &cfg).await?;
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
    let auth = &cfg.auth;
    if auth.mode == crate::config::AuthMode::Jwt
        && auth.jwt_public_key_file.is_none()
        && auth.jwt_secret.len() < crate::auth::MIN_SECRET_BYTES
    {
        tracing::warn!(
            bytes = auth.jwt_secret.len(),
            "auth.jwt_secret is shorter than 32 bytes: an HS256 key that short can be guessed offline from one token"
        );
    }
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
    let drained = daemon::serve::run(listener, store, metrics, &cfg, token.clone())
        .await
        .context("cannot start the serving threads")?;
    if !drained {
        tracing::warn!("shutdown timeout reached with requests still in flight");
    }
    for w in workers {
        work::finish(w, &token, cfg.purchase.shutdown_timeout).await?;
    }
    tracing::info!("stopped");
    Ok(())
}
