//! The purchase worker: reads purchase jobs through the consumer group in
//! batches, publishes each order to every sink, then completes the orders
//! and acknowledges the jobs in one script per event. Jobs of a dead worker
//! are taken over after `purchase.claim_idle`; a job delivered more than
//! `purchase.max_attempts` times goes to the dead-letter stream. A worker
//! whose call failed takes its own pending jobs back as soon as Redis answers
//! (with backoff), without waiting for `claim_idle`; on a Cluster each
//! event's reads and completions run on their own, so one node that does not
//! answer holds up only its own events.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::webhook::Webhook;
use crate::config::{PurchaseConfig, SinkConfig};
use crate::daemon::metrics::Metrics;
use crate::store::{Job, JobRead, SinkMessage, Store, StoreError};

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
    /// Batches (or, once published, an event's part of one) that could not
    /// be published, completed or dead-lettered, and were left for a retry.
    pub failed_batches: u64,
}

/// A consumer that holds no job and has not read for this long is a dead
/// worker's, and is removed from its group.
const FORGET_IDLE: Duration = Duration::from_secs(3600);
/// How often a worker looks for such consumers.
const FORGET_EVERY: Duration = Duration::from_secs(600);

enum Sink {
    Stream(StreamSink),
    Webhook(Webhook),
}

fn sinks(cfg: &PurchaseConfig) -> Result<Vec<Sink>, String> {
    cfg.sinks
        .iter()
        .map(|s| match s {
            SinkConfig::RedisStream { stream, maxlen } => Ok(Sink::Stream(StreamSink {
                stream: stream.clone(),
                maxlen: *maxlen,
                lag_checked: std::sync::Mutex::new(None),
            })),
            SinkConfig::Webhook {
                url,
                secret,
                timeout,
                tls_ca_file,
            } => Webhook::new(url, secret, *timeout, tls_ca_file.as_deref()).map(Sink::Webhook),
        })
        .collect()
}

/// A stream sink: its key, `maxlen` (0: all kept), and when its consumer
/// groups' lag was last looked at.
struct StreamSink {
    stream: String,
    maxlen: u64,
    lag_checked: std::sync::Mutex<Option<Instant>>,
}

/// How often a worker looks at a stream sink's consumer groups.
const LAG_CHECK_EVERY: Duration = Duration::from_secs(10);

impl StreamSink {
    /// Warns, at most every [`LAG_CHECK_EVERY`], of each consumer group so
    /// far behind that entries it has not read are about to be trimmed.
    async fn check_lag(&self, store: &Store) {
        if self.maxlen == 0 {
            return;
        }
        {
            let mut last = self.lag_checked.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < LAG_CHECK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match store.stream_groups(&self.stream).await {
            Ok(groups) => {
                for g in groups.iter().filter(|g| g.close_to_maxlen(self.maxlen)) {
                    tracing::warn!(
                        stream = %self.stream,
                        group = %g.name,
                        unread = g.lag.unwrap_or(0),
                        maxlen = self.maxlen,
                        "a consumer group of a sink stream is close to its maxlen: entries it has not read are trimmed as new ones come"
                    );
                }
            }
            Err(e) => {
                tracing::debug!(stream = %self.stream, error = %e, "cannot read the sink stream's consumer groups")
            }
        }
    }
}

/// The JSON body a webhook receives.
pub fn webhook_body(msgs: &[SinkMessage]) -> Vec<u8> {
    let orders: Vec<_> = msgs
        .iter()
        .map(|m| {
            json!({
                "orderId": m.order_id, "eventId": m.event_id, "userId": m.user_id,
                "ticketIds": m.ticket_ids, "createdAt": m.created_at,
                "amount": m.amount, "currency": m.currency, "type": m.kind,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "orders": orders })).unwrap_or_default()
}

/// A failed call's events are tried again after this, doubling up to
/// [`RETRY_MAX`] while Redis does not answer (so that jobs move within a
/// fraction of a second of Redis being back), or up to [`RETRY_MAX_OTHER`]
/// for a sink that refuses or an error that a retry is unlikely to cure.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);
const RETRY_MAX_OTHER: Duration = Duration::from_secs(5);
/// On a cluster, an event whose last read found nothing is read again after this.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// When to take back an event's jobs again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    due: Instant,
    delay: Duration,
}

/// Why a call failed, for how soon to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Redis did not answer: try again soon.
    Unavailable,
    /// Anything else (a sink refused, damaged data).
    Other,
}

impl Failure {
    fn of(e: &StoreError) -> Failure {
        match e {
            StoreError::Unavailable(_) => Failure::Unavailable,
            _ => Failure::Other,
        }
    }
}

/// What one event's read or completion, run on its own, came back with.
enum Done {
    /// A read: of the consumer's own pending jobs (a retry) or of new ones.
    Read {
        read: JobRead,
        own: bool,
    },
    Completed(Result<u64, StoreError>),
}

struct Worker {
    store: Store,
    cfg: PurchaseConfig,
    opts: PurchaseOpts,
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
    summary: PurchaseSummary,
    /// Events where this consumer may hold jobs it does not have in hand: a
    /// call for them failed (a read whose reply was lost, a batch not
    /// published or not completed). Their jobs are taken back (see
    /// [`Store::own_jobs`]) as soon as the retry is due.
    retry: BTreeMap<String, Retry>,
    /// On a cluster, each event's reads and completions run by themselves,
    /// so a node that does not answer holds up its own events only.
    tasks: JoinSet<(String, Done)>,
    /// Events with reads or completions in `tasks`, and how many.
    busy: HashMap<String, usize>,
    /// The event of each task in `tasks`.
    task_events: HashMap<tokio::task::Id, String>,
    /// Events whose last read found nothing, and when to read them again.
    quiet: HashMap<String, Instant>,
}

impl Worker {
    /// Notes that a call for `events` failed: their jobs are taken back
    /// later, sooner when Redis was only unavailable.
    fn failed<'a>(&mut self, events: impl IntoIterator<Item = &'a str>, why: Failure) {
        let max = match why {
            Failure::Unavailable => RETRY_MAX,
            Failure::Other => RETRY_MAX_OTHER,
        };
        let now = Instant::now();
        for e in events {
            let delay = match self.retry.get(e) {
                Some(r) => (r.delay * 2).min(max),
                None => RETRY_FIRST,
            };
            self.retry.insert(
                e.to_string(),
                Retry {
                    due: now + delay,
                    delay,
                },
            );
        }
    }

    /// Notes a read that failed: the jobs it may have delivered to its
    /// `events` unseen are taken back later.
    fn read_failed(&mut self, events: &[String], e: &StoreError) {
        tracing::warn!(error = %e, "reading purchase jobs failed; retrying");
        self.failed(events.iter().map(String::as_str), Failure::of(e));
    }

    /// When the next retry is due, if any.
    fn next_retry(&self) -> Option<Instant> {
        self.retry.values().map(|r| r.due).min()
    }

    /// Publishes to every sink and completes, or dead-letters, one batch.
    /// False when something failed: the events concerned are noted for a
    /// retry (their jobs stay pending meanwhile). With `apart` (cluster), each
    /// event's completion runs on its own task; without, it is done before
    /// returning, for callers that take jobs back again at once.
    async fn process(&mut self, jobs: Vec<Job>, apart: bool) -> bool {
        if jobs.is_empty() {
            return true;
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
        let mut ok = true;
        for (event, items) in &dead {
            let refs: Vec<_> = items
                .iter()
                .map(|(id, seq, a, e)| (id.as_str(), *seq, *a, e.as_str()))
                .collect();
            match self.store.dead_letter(event, &refs).await {
                Ok(n) => {
                    tracing::warn!(event = %event, jobs = items.len(), "purchase jobs dead-lettered");
                    self.summary.dead_lettered += n;
                    Metrics::add(&self.metrics.jobs_dead_lettered, n);
                }
                Err(e) => {
                    self.summary.failed_batches += 1;
                    tracing::warn!(event = %event, error = %e, "dead-lettering failed; will retry");
                    self.failed([event.as_str()], Failure::of(&e));
                    ok = false;
                }
            }
        }
        if good.is_empty() {
            return ok;
        }
        let msgs: Vec<SinkMessage> = good
            .iter()
            .filter_map(|j| j.body.as_ref().ok().map(|o| o.message()))
            .collect();
        let mut by_event: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for j in &good {
            if let Ok(o) = &j.body {
                by_event
                    .entry(j.event.clone())
                    .or_default()
                    .push((j.stream_id.clone(), o.order.seq));
            }
        }
        if let Err((error, why)) = self.publish(&msgs).await {
            self.summary.failed_batches += 1;
            tracing::warn!(jobs = good.len(), %error, "purchase batch failed; its jobs will be retried");
            for (event, items) in &by_event {
                let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
                if let Err(e) = self.store.record_job_errors(event, &ids, &error).await {
                    tracing::debug!(event = %event, error = %e, "cannot record the jobs' error");
                }
            }
            self.failed(by_event.keys().map(String::as_str), why);
            return false;
        }
        for (event, items) in by_event {
            if apart {
                // Completed by itself: a node that does not answer holds
                // up no other event's next batch.
                let (store, e) = (self.store.clone(), event.clone());
                self.spawn(event, async move {
                    Done::Completed(store.complete_jobs(&e, &items).await)
                });
                continue;
            }
            let r = self.store.complete_jobs(&event, &items).await;
            ok &= self.completed(&event, r);
        }
        ok
    }

    /// Counts a completion, or notes its event for a retry.
    fn completed(&mut self, event: &str, r: Result<u64, StoreError>) -> bool {
        match r {
            Ok(n) => {
                self.summary.completed += n;
                Metrics::add(&self.metrics.jobs_completed, n);
                true
            }
            Err(e) => {
                self.summary.failed_batches += 1;
                tracing::warn!(event = %event, error = %e, "completing purchase jobs failed; they will be retried");
                self.failed([event], Failure::of(&e));
                false
            }
        }
    }

    /// Publishes to every sink at once (the stream sinks share the
    /// pipelined connection); the error names a sink that failed.
    async fn publish(&self, msgs: &[SinkMessage]) -> Result<(), (String, Failure)> {
        let body = self
            .sinks
            .iter()
            .any(|s| matches!(s, Sink::Webhook(_)))
            .then(|| webhook_body(msgs));
        let deliveries = self.sinks.iter().map(|sink| {
            let body = body.as_deref().unwrap_or_default();
            async move {
                match sink {
                    Sink::Stream(s) => {
                        let stream = &s.stream;
                        self.store
                            .publish_to_stream(stream, s.maxlen, self.cfg.dedupe_retention, msgs)
                            .await
                            .map_err(|e| (format!("stream {stream}: {e}"), Failure::of(&e)))?;
                        s.check_lag(&self.store).await;
                        Ok(())
                    }
                    Sink::Webhook(w) => w.deliver(body).await.map_err(|e| (e, Failure::Other)),
                }
            }
        });
        futures_util::future::join_all(deliveries)
            .await
            .into_iter()
            .collect()
    }

    /// Takes back the jobs of the events whose retry is due, until each has
    /// none left or fails again. On one Redis, the first failure ends the
    /// pass (the server is the same for every event).
    async fn retry_due(&mut self, stop: &CancellationToken) {
        let now = Instant::now();
        let due: Vec<String> = self
            .retry
            .iter()
            .filter(|(e, r)| r.due <= now && !self.busy.contains_key(*e))
            .map(|(e, _)| e.clone())
            .collect();
        for e in due {
            if self.store.is_cluster() {
                // Read by itself, like any other read of the event.
                self.spawn_read(e, true, self.opts.batch);
                continue;
            }
            while !stop.is_cancelled() {
                match self
                    .store
                    .own_jobs(&e, &self.opts.consumer, self.opts.batch)
                    .await
                {
                    Ok(jobs) if jobs.is_empty() => {
                        self.retry.remove(&e);
                        break;
                    }
                    Ok(jobs) => {
                        tracing::info!(event = %e, jobs = jobs.len(), "retrying this consumer's pending jobs");
                        if !self.process(jobs, false).await {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::debug!(event = %e, error = %err, "cannot take back pending jobs yet");
                        let why = Failure::of(&err);
                        self.failed([e.as_str()], why);
                        if why == Failure::Unavailable {
                            return;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Runs `work` for `event` on its own task (cluster), counted in `busy`
    /// until [`Worker::take`] has its answer.
    fn spawn(&mut self, event: String, work: impl Future<Output = Done> + Send + 'static) {
        *self.busy.entry(event.clone()).or_default() += 1;
        let e = event.clone();
        let task = self.tasks.spawn(async move { (e, work.await) });
        self.task_events.insert(task.id(), event);
    }

    /// Starts a read of up to `count` jobs of one event on its own
    /// (cluster): its own pending jobs when `own`, else new ones.
    fn spawn_read(&mut self, event: String, own: bool, count: usize) {
        let (store, consumer, e) = (
            self.store.clone(),
            self.opts.consumer.clone(),
            event.clone(),
        );
        self.spawn(event, async move {
            let read = if !own {
                store
                    .read_jobs(std::slice::from_ref(&e), &consumer, count, None)
                    .await
            } else {
                match store.own_jobs(&e, &consumer, count).await {
                    Ok(jobs) => JobRead {
                        jobs,
                        ..JobRead::default()
                    },
                    Err(error) => JobRead {
                        jobs: Vec::new(),
                        failed: vec![e.clone()],
                        error: Some(error),
                    },
                }
            };
            Done::Read { read, own }
        });
    }

    /// Cluster: starts a read of every event that has none running (nor a
    /// retry pending, nor was found empty a moment ago), then returns what
    /// the reads and completions that finished brought, waiting up to
    /// `wait` (at most [`POLL_EVERY`]) for the first.
    async fn gather(&mut self, events: &[String], wait: Duration) -> JobRead {
        let now = Instant::now();
        let per_event = (self.opts.batch / events.len().max(1)).max(1);
        for e in events {
            if self.busy.contains_key(e)
                || self.retry.contains_key(e)
                || self.quiet.get(e).is_some_and(|t| *t > now)
            {
                continue;
            }
            self.spawn_read(e.clone(), false, per_event);
        }
        let mut out = JobRead::default();
        if self.tasks.is_empty() {
            tokio::time::sleep(wait.min(POLL_EVERY)).await;
            return out;
        }
        // Not long: reads of events found empty become due meanwhile.
        let first = match tokio::time::timeout(wait.min(POLL_EVERY), self.tasks.join_next_with_id())
            .await
        {
            Ok(Some(r)) => Some(r),
            _ => None,
        };
        let mut finished: Vec<_> = first.into_iter().collect();
        while let Some(r) = self.tasks.try_join_next_with_id() {
            finished.push(r);
        }
        for r in finished {
            self.take(r, &mut out);
        }
        out
    }

    /// Every read and completion still running, awaited (at shutdown).
    async fn finish_tasks(&mut self) -> JobRead {
        let mut out = JobRead::default();
        while let Some(r) = self.tasks.join_next_with_id().await {
            self.take(r, &mut out);
        }
        out
    }

    fn take(
        &mut self,
        r: Result<(tokio::task::Id, (String, Done)), tokio::task::JoinError>,
        out: &mut JobRead,
    ) {
        let id = match &r {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let Some(event) = self.task_events.remove(&id) else {
            return;
        };
        if let Some(n) = self.busy.get_mut(&event) {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(&event);
            }
        }
        let done = match r {
            Ok((_, (_, done))) => done,
            Err(e) => {
                // A task that panicked may have left jobs pending: take
                // the event's jobs back later.
                tracing::error!(event = %event, error = %e, "a purchase task failed");
                self.failed([event.as_str()], Failure::Other);
                return;
            }
        };
        match done {
            Done::Read { read, own } => {
                if read.error.is_none() {
                    if !read.jobs.is_empty() {
                        self.quiet.remove(&event);
                    } else if own {
                        // None left: the retry is over.
                        self.retry.remove(&event);
                    } else {
                        // Nothing new: read again in a moment.
                        self.quiet
                            .insert(event.clone(), Instant::now() + POLL_EVERY);
                    }
                }
                out.jobs.extend(read.jobs);
                out.failed.extend(read.failed);
                if read.error.is_some() {
                    out.error = read.error;
                }
            }
            Done::Completed(r) => {
                self.completed(&event, r);
            }
        }
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

    /// Takes over the jobs of dead workers. An event whose node does not
    /// answer is skipped (the last such error is returned); the others go on.
    async fn claim_pass(&mut self, events: &[String]) -> Result<usize, StoreError> {
        let (mut n, mut failed) = (0, None);
        for e in events {
            if self.busy.contains_key(e) {
                continue;
            }
            loop {
                let jobs = match self
                    .store
                    .claim_stale(e, &self.opts.consumer, self.cfg.claim_idle, self.opts.batch)
                    .await
                {
                    Ok(jobs) => jobs,
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                };
                if jobs.is_empty() {
                    break;
                }
                n += jobs.len();
                tracing::info!(event = %e, jobs = jobs.len(), "took over stale purchase jobs");
                if !self.process(jobs, false).await {
                    // The sink is failing: leave the rest for the next pass.
                    return Ok(n);
                }
            }
        }
        failed.map_or(Ok(n), Err)
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
                if !self.process(jobs, false).await {
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
        retry: BTreeMap::new(),
        tasks: JoinSet::new(),
        busy: HashMap::new(),
        task_events: HashMap::new(),
        quiet: HashMap::new(),
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
    // Reads and completions of each event on their own, on a cluster (with
    // --once, every event is read in turn until all are drained).
    let apart = w.store.is_cluster() && !w.opts.once;
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
        if !w.opts.once && prefetched.is_none() {
            w.retry_due(&stop).await;
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
        let read = match prefetched.take() {
            Some(jobs) => JobRead {
                jobs,
                ..JobRead::default()
            },
            None if apart => tokio::select! {
                r = w.gather(&events, w.opts.block) => r,
                () = stop.cancelled() => break,
            },
            // Not cut short by `stop`: it blocks for `block` at most, and
            // a read of several calls would lose the jobs of the first ones.
            None => {
                w.store
                    .read_jobs(&events, &w.opts.consumer, w.opts.batch, block)
                    .await
            }
        };
        let JobRead {
            jobs,
            failed,
            error,
        } = read;
        if let Some(e) = error {
            if w.opts.once {
                // What was read before the failure is in hand: finish it.
                w.process(jobs, false).await;
                return Err(e);
            }
            w.read_failed(&failed, &e);
            if jobs.is_empty() && !apart {
                // Not before the retry is due: Redis has just failed.
                let until = w
                    .next_retry()
                    .unwrap_or_else(|| Instant::now() + RETRY_FIRST);
                tokio::select! {
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
        if jobs.is_empty() && w.opts.once {
            break;
        }
        // While a retry waits, no batch is read ahead: the retry takes the
        // consumer's pending jobs back, and a batch in hand would be among them.
        if jobs.len() >= w.opts.batch && !apart && w.retry.is_empty() {
            // A full batch: more is likely queued, so read the next batch
            // (without blocking, which would stall the shared connection)
            // while this one is published. The read goes out first: its
            // answer is then parsed while Redis runs this batch's scripts,
            // instead of after them (53k -> 70k jobs/s).
            let (store, consumer, batch) = (w.store.clone(), w.opts.consumer.clone(), w.opts.batch);
            let (next, _) = tokio::join!(
                store.read_jobs(&events, &consumer, batch, None),
                w.process(jobs, false)
            );
            if let Some(e) = &next.error {
                w.read_failed(&next.failed, e);
                if w.opts.once {
                    // Not retried in this run: its jobs wait for the next.
                    w.summary.failed_batches += 1;
                }
            }
            prefetched = Some(next.jobs).filter(|n| !n.is_empty());
        } else {
            w.process(jobs, apart).await;
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
    let mut in_hand = prefetched.take().unwrap_or_default();
    in_hand.extend(w.finish_tasks().await.jobs);
    if !w.process(in_hand, false).await {
        tracing::warn!(
            "purchase batch failed during shutdown; its jobs stay pending under this consumer"
        );
    }
    w.finish_tasks().await;
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
