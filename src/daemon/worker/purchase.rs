//! The purchase worker: reads purchase jobs through the consumer group in
//! batches, publishes each order to every sink, then completes the orders
//! and acknowledges the jobs in one script per event. Jobs of a dead worker
//! are taken over after `purchase.claim_idle`; a job delivered more than
//! `purchase.max_attempts` times goes to the dead-letter stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::webhook::Webhook;
use crate::config::{PurchaseConfig, SinkConfig};
use crate::daemon::http::metrics::Metrics;
use crate::store::{Job, SinkMessage, Store, StoreError};

/// Flags of `work purchase`.
#[derive(Debug, Clone)]
pub struct PurchaseOpts {
    /// Drain what is queued now, then return.
    pub once: bool,
    /// Jobs per batch.
    pub batch: usize,
    /// Consumer name in the group.
    pub consumer: String,
    /// Longest block on an empty queue (below the Redis reply timeout).
    pub block: Duration,
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseSummary {
    /// Orders completed.
    pub completed: u64,
    /// Jobs dead-lettered.
    pub dead_lettered: u64,
    /// Batches that failed and were left for a retry.
    pub failed_batches: u64,
}

/// A consumer that holds no job and has not read for this long is a dead
/// worker's, and is removed from its group.
const FORGET_IDLE: Duration = Duration::from_secs(3600);
/// How often a worker looks for such consumers.
const FORGET_EVERY: Duration = Duration::from_secs(600);

enum Sink {
    Stream(String),
    Webhook(Webhook),
}

fn sinks(cfg: &PurchaseConfig) -> Result<Vec<Sink>, String> {
    cfg.sinks
        .iter()
        .map(|s| match s {
            SinkConfig::RedisStream { stream } => Ok(Sink::Stream(stream.clone())),
            SinkConfig::Webhook {
                url,
                secret,
                timeout,
            } => Webhook::new(url, secret, *timeout).map(Sink::Webhook),
        })
        .collect()
}

/// The JSON body a webhook receives.
pub fn webhook_body(msgs: &[SinkMessage]) -> Vec<u8> {
    let orders: Vec<_> = msgs
        .iter()
        .map(|m| {
            json!({
                "orderId": m.order_id, "eventId": m.event_id, "userId": m.user_id,
                "ticketIds": m.ticket_ids, "createdAt": m.created_at,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "orders": orders })).unwrap_or_default()
}

struct Worker {
    store: Store,
    cfg: PurchaseConfig,
    opts: PurchaseOpts,
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
    summary: PurchaseSummary,
}

impl Worker {
    /// Publishes to every sink and completes, or dead-letters, one batch.
    /// False when a sink failed (the jobs stay pending for a later try).
    async fn process(&mut self, jobs: Vec<Job>) -> Result<bool, StoreError> {
        if jobs.is_empty() {
            return Ok(true);
        }
        // Per event: (stream id, order seq if readable, attempts, error).
        type DeadLetter = (String, Option<u64>, u64, String);
        let mut dead: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
        let mut good = Vec::new();
        for j in jobs {
            match &j.body {
                Err(e) => dead.entry(j.event.clone()).or_default().push((
                    j.stream_id.clone(),
                    None,
                    j.deliveries,
                    format!("unreadable job: {e}"),
                )),
                Ok(o) if j.deliveries > u64::from(self.cfg.max_attempts) => {
                    dead.entry(j.event.clone()).or_default().push((
                        j.stream_id.clone(),
                        Some(o.order.seq),
                        j.deliveries - 1,
                        String::new(),
                    ))
                }
                Ok(_) => good.push(j),
            }
        }
        for (event, items) in &dead {
            let refs: Vec<_> = items
                .iter()
                .map(|(id, seq, a, e)| (id.as_str(), *seq, *a, e.as_str()))
                .collect();
            let n = self.store.dead_letter(event, &refs).await?;
            tracing::warn!(event = %event, jobs = items.len(), "purchase jobs dead-lettered");
            self.summary.dead_lettered += n;
            Metrics::add(&self.metrics.jobs_dead_lettered, n);
        }
        if good.is_empty() {
            return Ok(true);
        }
        let msgs: Vec<SinkMessage> = good
            .iter()
            .filter_map(|j| j.body.as_ref().ok().map(|o| o.message()))
            .collect();
        if let Err(error) = self.publish(&msgs).await {
            self.summary.failed_batches += 1;
            tracing::warn!(jobs = good.len(), %error, "purchase batch failed; its jobs will be retried");
            let mut by_event: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for j in &good {
                by_event
                    .entry(j.event.as_str())
                    .or_default()
                    .push(j.stream_id.as_str());
            }
            for (event, ids) in by_event {
                self.store.record_job_errors(event, &ids, &error).await?;
            }
            return Ok(false);
        }
        let mut by_event: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for j in &good {
            if let Ok(o) = &j.body {
                by_event
                    .entry(j.event.as_str())
                    .or_default()
                    .push((j.stream_id.as_str(), o.order.seq));
            }
        }
        for (event, items) in by_event {
            let n = self.store.complete_jobs(event, &items).await?;
            self.summary.completed += n;
            Metrics::add(&self.metrics.jobs_completed, n);
        }
        Ok(true)
    }

    /// Publishes to every sink at once (the stream sinks share the
    /// pipelined connection); the error names a sink that failed.
    async fn publish(&self, msgs: &[SinkMessage]) -> Result<(), String> {
        let body = self
            .sinks
            .iter()
            .any(|s| matches!(s, Sink::Webhook(_)))
            .then(|| webhook_body(msgs));
        let deliveries = self.sinks.iter().map(|sink| {
            let body = body.as_deref().unwrap_or_default();
            async move {
                match sink {
                    Sink::Stream(stream) => self
                        .store
                        .publish_to_stream(stream, self.cfg.dedupe_retention, msgs)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("stream {stream}: {e}")),
                    Sink::Webhook(w) => w.deliver(body).await,
                }
            }
        });
        futures_util::future::join_all(deliveries)
            .await
            .into_iter()
            .collect()
    }

    /// Removes the consumers that hold no job and have not read one for
    /// [`FORGET_IDLE`]: dead workers', and those of live workers that had
    /// nothing to do (their next read adds them again), so that dead ones
    /// do not pile up in `inspect queues`.
    async fn forget_dead_consumers(&self, events: &[String]) {
        for e in events {
            match self
                .store
                .forget_idle_consumers(e, FORGET_IDLE, &self.opts.consumer)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(event = %e, consumers = n, "forgot idle purchase consumers")
                }
                Err(err) => {
                    tracing::debug!(event = %e, error = %err, "cannot forget idle consumers")
                }
            }
        }
    }

    async fn claim_pass(&mut self, events: &[String]) -> Result<usize, StoreError> {
        let mut n = 0;
        for e in events {
            loop {
                let jobs = self
                    .store
                    .claim_stale(e, &self.opts.consumer, self.cfg.claim_idle, self.opts.batch)
                    .await?;
                if jobs.is_empty() {
                    break;
                }
                n += jobs.len();
                tracing::info!(event = %e, jobs = jobs.len(), "took over stale purchase jobs");
                if !self.process(jobs).await? {
                    // The sink is failing: leave the rest for the next pass.
                    return Ok(n);
                }
            }
        }
        Ok(n)
    }

    /// Takes back this consumer's own unacknowledged jobs (a restart under
    /// the same `--consumer` name), until done, a sink fails, or `stop`.
    async fn drain_own_pending(
        &mut self,
        events: &[String],
        stop: &CancellationToken,
    ) -> Result<(), StoreError> {
        for e in events {
            while !stop.is_cancelled() {
                let jobs = self
                    .store
                    .claim_own(e, &self.opts.consumer, self.opts.batch)
                    .await?;
                if jobs.is_empty() {
                    break;
                }
                tracing::info!(event = %e, jobs = jobs.len(), "taking back this consumer's pending jobs");
                if !self.process(jobs).await? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Runs the purchase worker until `stop`, or until the queue is drained
/// with `once`. A batch in hand when `stop` fires is finished first.
pub async fn run(
    store: Store,
    cfg: PurchaseConfig,
    opts: PurchaseOpts,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<PurchaseSummary, StoreError> {
    let sinks = sinks(&cfg).map_err(StoreError::Reply)?;
    if sinks.is_empty() {
        tracing::warn!(
            "purchase.sinks is empty: orders are marked completed without being published anywhere"
        );
    }
    for s in &sinks {
        if let Sink::Webhook(h) = s {
            // A batch read ahead waits while the one before it is
            // delivered: its jobs stay unacknowledged for up to two
            // deliveries.
            let longest = h.longest_delivery();
            if longest * 2 >= cfg.claim_idle {
                tracing::warn!(
                    url = h.url(),
                    ?longest,
                    claim_idle = ?cfg.claim_idle,
                    "a delivery to this webhook can outlast purchase.claim_idle: other workers may take over jobs still being delivered, and a job taken over more than purchase.max_attempts times is dead-lettered"
                );
            }
        }
    }
    let mut w = Worker {
        store,
        cfg,
        opts,
        sinks,
        metrics,
        summary: PurchaseSummary::default(),
    };
    let mut events = w.store.list_events().await?;
    // Jobs this consumer took before a restart come first.
    w.drain_own_pending(&events, &stop).await?;
    let claim_every = (w.cfg.claim_idle / 2).max(Duration::from_millis(50));
    let mut last_claim = Instant::now() - claim_every;
    let mut last_refresh = Instant::now();
    let mut last_forget: Option<Instant> = None;
    let mut last_report = (Instant::now(), 0u64);
    let started = Instant::now();
    let mut prefetched: Option<Vec<Job>> = None;
    while !stop.is_cancelled() {
        if last_refresh.elapsed() >= Duration::from_secs(2) {
            match w.store.list_events().await {
                Ok(e) => events = e,
                Err(e) => tracing::warn!(error = %e, "cannot list events"),
            }
            last_refresh = Instant::now();
        }
        if last_claim.elapsed() >= claim_every {
            if let Err(e) = w.claim_pass(&events).await {
                tracing::warn!(error = %e, "claiming stale jobs failed");
            }
            last_claim = Instant::now();
        }
        if last_forget.is_none_or(|t| t.elapsed() >= FORGET_EVERY) {
            w.forget_dead_consumers(&events).await;
            last_forget = Some(Instant::now());
        }
        if events.is_empty() {
            // Nothing to read yet: wait for events to appear (or exit with --once).
            if w.opts.once {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(w.opts.block.max(Duration::from_millis(100))) => {}
                () = stop.cancelled() => break,
            }
            continue;
        }
        let block = (!w.opts.once).then_some(w.opts.block);
        let jobs = match prefetched.take() {
            Some(jobs) => Ok(jobs),
            None => tokio::select! {
                r = w.store.read_jobs(&events, &w.opts.consumer, w.opts.batch, block, false) => r,
                () = stop.cancelled() => break,
            },
        };
        let done = match jobs {
            Ok(jobs) if jobs.is_empty() && w.opts.once => break,
            Ok(jobs) if jobs.len() >= w.opts.batch => {
                // A full batch: more is likely queued, so read the next batch
                // (without blocking, which would stall the shared connection)
                // while this one is published. The read goes out first: its
                // answer is then parsed while Redis runs this batch's scripts,
                // instead of after them (53k -> 70k jobs/s).
                let (store, consumer, batch) =
                    (w.store.clone(), w.opts.consumer.clone(), w.opts.batch);
                let (next, done) = tokio::join!(
                    store.read_jobs(&events, &consumer, batch, None, false),
                    w.process(jobs)
                );
                if let Ok(next) = next {
                    prefetched = Some(next).filter(|n| !n.is_empty());
                }
                done.map(|_| ())
            }
            Ok(jobs) => w.process(jobs).await.map(|_| ()),
            Err(e) if w.opts.once => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "reading purchase jobs failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = stop.cancelled() => break,
                }
                Ok(())
            }
        };
        if let Err(e) = done {
            if w.opts.once {
                return Err(e);
            }
            tracing::warn!(error = %e, "purchase batch failed");
        }
        if last_report.0.elapsed() >= Duration::from_secs(10)
            && w.summary.completed != last_report.1
        {
            let rate = (w.summary.completed - last_report.1) as f64
                / last_report.0.elapsed().as_secs_f64();
            tracing::info!(
                completed = w.summary.completed,
                per_sec = rate as u64,
                "purchase worker progress"
            );
            last_report = (Instant::now(), w.summary.completed);
        }
    }
    // Jobs already read are in hand: finish them before leaving.
    if let Some(jobs) = prefetched.take() {
        if let Err(e) = w.process(jobs).await {
            tracing::warn!(error = %e, "purchase batch failed during shutdown");
        }
    }
    for e in &events {
        if let Err(err) = w.store.forget_consumer(e, &w.opts.consumer).await {
            tracing::debug!(event = %e, error = %err, "could not remove consumer");
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(
        completed = w.summary.completed,
        dead_lettered = w.summary.dead_lettered,
        failed_batches = w.summary.failed_batches,
        per_sec = (w.summary.completed as f64 / secs) as u64,
        "purchase worker stopped"
    );
    Ok(w.summary)
}
