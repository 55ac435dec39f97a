//! `ticketctl work release|purchase`, and the worker tasks `serve
//! --with-workers` starts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalOpts, PurchaseArgs, WorkCommand};
use crate::config::Config;
use crate::daemon::metrics::Metrics;
use crate::daemon::shutdown;
use crate::daemon::worker::{self, purchase::PurchaseOpts, release::ReleaseStats};

pub async fn run(global: &GlobalOpts, cmd: WorkCommand) -> anyhow::Result<()> {
    let cfg = super::load_config(global, None)?;
    let token = shutdown::on_signal();
    let metrics = Arc::new(Metrics::default());
    match cmd {
        WorkCommand::Release { once } => {
            let handle = spawn_release(&cfg, once, token.clone(), metrics).await?;
            finish(handle, &token, cfg.purchase.shutdown_timeout).await
        }
        WorkCommand::Purchase(args) => {
            let handle = spawn_purchase(&cfg, &args, token.clone(), metrics).await?;
            finish(handle, &token, cfg.purchase.shutdown_timeout).await
        }
    }
}

/// Waits for a worker; once shutdown begins, waits at most `grace` more.
pub(crate) async fn finish(
    mut handle: JoinHandle<anyhow::Result<()>>,
    token: &CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        r = &mut handle => return r.context("worker task failed")?,
        () = token.cancelled() => {}
    }
    match tokio::time::timeout(grace, &mut handle).await {
        Ok(r) => r.context("worker task failed")?,
        Err(_) => {
            handle.abort();
            tracing::warn!(?grace, "worker did not finish within the shutdown timeout");
            Ok(())
        }
    }
}

/// Starts the release worker on its own connection.
pub(crate) async fn spawn_release(
    cfg: &Config,
    once: bool,
    token: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let store = super::connect(cfg).await?;
    let rc = cfg.release.clone();
    Ok(tokio::spawn(async move {
        worker::release::run(
            store,
            rc,
            once,
            token,
            Arc::new(ReleaseStats::default()),
            metrics,
        )
        .await
        .context("release worker")
    }))
}

/// Starts the purchase worker on its own connection (it blocks on it).
pub(crate) async fn spawn_purchase(
    cfg: &Config,
    args: &PurchaseArgs,
    token: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let store = super::connect(cfg).await?;
    let opts = PurchaseOpts {
        once: args.once,
        batch: args.batch.map(|b| b as usize).unwrap_or(cfg.purchase.batch),
        consumer: args
            .consumer
            .clone()
            .unwrap_or_else(worker::default_consumer_name),
        block: (cfg.redis.timeout / 2).min(Duration::from_secs(1)),
    };
    let pc = cfg.purchase.clone();
    // Payment results are applied beside the jobs, on their own connection.
    let results = tokio::spawn(worker::results::run(
        super::connect(cfg).await?,
        cfg.payment.results_stream.clone(),
        opts.consumer.clone(),
        opts.once,
        cfg.purchase.claim_idle,
        opts.block,
        token.clone(),
    ));
    Ok(tokio::spawn(async move {
        let once = opts.once;
        let summary = worker::purchase::run(store, pc, opts, token, metrics)
            .await
            .context("purchase worker")?;
        let (applied, dead) = results
            .await
            .context("payment results")?
            .context("payment results")?;
        if applied + dead > 0 {
            tracing::info!(applied, dead_lettered = dead, "payment results");
        }
        if once && summary.failed_batches > 0 {
            anyhow::bail!(
                "purchase worker: {} batch(es) could not be published or completed (a job taken back and tried again counts again); their jobs stay queued for a retry",
                summary.failed_batches
            );
        }
        Ok(())
    }))
}
