//! The load generator behind `ticketctl stress`: turns a [`WorkMode`] into
//! N client tasks, each with one keep-alive connection, spread over one
//! single-threaded runtime per core, that play a
//! ticketing scenario and send compact [`Sample`]s in batches over a bounded
//! channel to one collector that owns the [`Stats`]. Closed model (each
//! task sends as soon as its last answer came) or open model (`--rate`: a
//! global schedule of intended start times; latency counts from the
//! intended start, so a slow service cannot hide its queueing, as in wrk2).
//! Display lives in `progress.rs` and `report.rs`; judging in `rules.rs`
//! and `audit.rs`.

pub mod audit;
pub mod client;
pub mod progress;
pub mod report;
pub mod rules;
pub mod stats;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::Method;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use audit::{AuditLog, AuditReport, Counts, PaidAs, WonHold};
use client::{Client, Reply, Target};
use stats::{Op, Outcome, Sample, Stats};

/// Samples a task gathers before sending them to the collector.
const BATCH: usize = 256;
/// Longest a sample waits in a task's batch, so progress stays live.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Batches in flight to the collector before tasks wait (back-pressure).
const CHANNEL_BATCHES: usize = 1024;
/// Longest wait for the first answer of the target.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after a connection error before the task tries again.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Random user ids are drawn from this many.
const USERS: u64 = 1_000_000_000;

/// What each client task plays (`stress --scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Hold one random ticket (or --quantity) and keep it.
    Reserve,
    /// Hold, think, buy (or --abandon a share of holds to expiry).
    ReserveBuy,
    /// Every client fights over the same --hot-tickets tickets, buying what it wins.
    Hot,
    /// Availability reads: ticket pages and event counts.
    Browse,
    /// A waiting room: each virtual user joins, polls its place every
    /// `--poll`, holds when admitted (with its Queue-Id) and buys.
    Onsale,
}

impl Scenario {
    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Reserve => "reserve",
            Scenario::ReserveBuy => "reserve-buy",
            Scenario::Hot => "hot",
            Scenario::Browse => "browse",
            Scenario::Onsale => "onsale",
        }
    }
}

/// When the run stops issuing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests in all.
    Requests(u64),
    /// After this long; iterations under way finish.
    Duration(Duration),
}

/// How the run reports progress while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar (a terminal).
    Bar,
    /// A plain line per second (a log or a pipe).
    Lines,
    /// Nothing.
    Off,
}

/// How `--jwt-secret` signs each virtual user's token.
#[derive(Clone)]
pub struct JwtSigning {
    /// The server's `auth.jwt_secret`.
    pub secret: String,
    /// `iss`, when the server checks one.
    pub issuer: Option<String>,
    /// `aud`, when the server checks one.
    pub audience: Option<String>,
    /// Lifetime of each token.
    pub ttl_secs: u64,
}

impl std::fmt::Debug for JwtSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of any debug print.
        f.debug_struct("JwtSigning")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtSigning {
    /// `Bearer <token>` for `user`.
    pub fn bearer(&self, user: &str) -> HeaderValue {
        let mut claims = crate::auth::MintClaims::new(user, self.ttl_secs);
        claims.iss = self.issuer.clone();
        claims.aud = self.audience.clone();
        let token = crate::auth::mint_hs256(self.secret.as_bytes(), &claims);
        HeaderValue::from_str(&format!("Bearer {token}")).expect("a JWT is a header value")
    }
}

/// Everything a run needs, decided before any request is sent.
#[derive(Debug, Clone)]
pub struct WorkMode {
    /// The service.
    pub target: Target,
    /// Event id.
    pub event: String,
    /// What the clients do.
    pub scenario: Scenario,
    /// Client tasks, each with one connection.
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// Open model: requests per second over all clients.
    pub rate: Option<f64>,
    /// Ramp from 0 to the rate (or to all connections) over this long.
    pub ramp: Option<Duration>,
    /// Hold this many tickets picked by the service instead of one random ticket.
    pub quantity: Option<u64>,
    /// Hold tickets of this section only (random ones of its range, or
    /// with `quantity` the service's pick within it).
    pub section: Option<String>,
    /// `reserve-buy`: the share (0.0..=1.0) of orders to pay, and the key
    /// to sign results with; of the rest, half declined, half left.
    pub pay: Option<(f64, String)>,
    /// `--jwt-secret`: sign an HS256 token per virtual user.
    pub jwt: Option<JwtSigning>,
    /// Pause between a won hold and its purchase.
    pub think: Duration,
    /// `onsale`: pause between two polls of a place.
    pub poll: Duration,
    /// Share of won holds left to expire instead of bought, 0.0..=1.0.
    pub abandon: f64,
    /// `hot`: how many tickets everybody fights over.
    pub hot_tickets: u64,
    /// `browse`: GET this path instead of the event's listings (e.g. `/healthz`,
    /// to measure the generator against a server doing no work).
    pub path: Option<String>,
    /// Seed of every random choice (users, tickets, abandons).
    pub seed: u64,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Track holds and purchases and check the invariants afterwards.
    pub audit: bool,
    /// Progress display.
    pub progress: ProgressMode,
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// The target does not answer.
    #[error("cannot reach {url}: {cause}")]
    Unreachable {
        /// `--url`
        url: String,
        /// What failed.
        cause: String,
    },
    /// The event does not exist there.
    #[error("event {event:?} does not exist at {url}")]
    NoEvent {
        /// `--event`
        event: String,
        /// `--url`
        url: String,
    },
    /// The flags do not fit the event.
    #[error("{0}")]
    Usage(String),
    /// The target answered something unexpected.
    #[error("{0}")]
    Unexpected(String),
}

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    /// The plan it followed.
    pub mode: WorkMode,
    /// The event's capacity.
    pub capacity: u64,
    /// The measurements.
    pub stats: Stats,
    /// `--audit` results.
    pub audit: Option<AuditReport>,
    /// `onsale`: what the run saw of the waiting room.
    pub onsale: Option<audit::OnsaleReport>,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

/// Counts of the run so far, for the progress display.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests finished.
    pub requests: AtomicU64,
    /// Of those, errors.
    pub errors: AtomicU64,
}

/// Runs the load until it is done or `shutdown` resolves (then the report
/// is partial and says so).
pub async fn run(
    mode: WorkMode,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, StressError> {
    let mut probe = Client::new(mode.target.clone(), PREFLIGHT_TIMEOUT.min(mode.timeout));
    let before = read_event(&mut probe, &mode).await?;
    if let Some(q) = mode.quantity {
        if q > before.max_per_hold {
            return Err(StressError::Usage(format!(
                "--quantity {q} exceeds the event's maxTicketsPerHold {}",
                before.max_per_hold
            )));
        }
    }
    if mode.scenario == Scenario::Onsale && before.max_active.is_none() {
        return Err(StressError::Usage(format!(
            "--scenario onsale needs an event with a waiting room; {} has none (queue.enabled)",
            mode.event
        )));
    }
    let capacity = before.counts.capacity;
    // The tickets the clients pick from: the event's, or one section's.
    let (first, span) = match &mode.section {
        None => (1, capacity),
        Some(id) => match before.sections.iter().find(|s| &s.id == id) {
            Some(s) => (s.first_ticket, s.last_ticket + 1 - s.first_ticket),
            None => {
                let known: Vec<&str> = before.sections.iter().map(|s| s.id.as_str()).collect();
                return Err(StressError::Usage(format!(
                    "event {} has no section {id:?} (its sections: {})",
                    mode.event,
                    known.join(", ")
                )));
            }
        },
    };
    let section_field = mode
        .section
        .as_ref()
        .map(|s| format!(r#","section":{}"#, serde_json::Value::from(s.as_str())))
        .unwrap_or_default();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        hot: mode.hot_tickets.clamp(1, span),
        capacity: span,
        first,
        section_field,
        deadline: match mode.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Requests(_) => None,
        },
        limit: match mode.stop {
            Stop::Requests(n) => n,
            Stop::Duration(_) => u64::MAX,
        },
        issued: AtomicU64::new(0),
        slots: AtomicU64::new(0),
        start,
        stop: stop.clone(),
        events_path: format!("/v1/events/{}", mode.event),
        holds_path: format!("/v1/events/{}/holds", mode.event),
        mode: mode.clone(),
    });

    let live = Arc::new(Live::default());
    let (tx, mut rx) = mpsc::channel::<Vec<Sample>>(CHANNEL_BATCHES);
    let collector = {
        let live = live.clone();
        tokio::spawn(async move {
            let mut stats = Stats::new();
            while let Some(batch) = rx.recv().await {
                let errors = batch.iter().filter(|s| s.outcome.is_error()).count();
                for s in &batch {
                    stats.record(s);
                }
                live.requests
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                live.errors.fetch_add(errors as u64, Ordering::Relaxed);
            }
            stats
        })
    };
    let progress_done = CancellationToken::new();
    let progress = tokio::spawn(progress::show(
        mode.progress,
        mode.stop,
        live.clone(),
        start,
        progress_done.clone(),
    ));

    // One single-threaded event loop per core, each with its share of the
    // connections (as `serve` does): a request and its answer stay on one
    // thread, with no hand-offs between threads.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, mode.connections.max(1));
    let mut loops = Vec::with_capacity(threads);
    for t in 0..threads {
        let ids: Vec<usize> = (t..mode.connections).step_by(threads).collect();
        match client_loop(t, ids, shared.clone(), tx.clone()) {
            Ok(l) => loops.push(l),
            Err(e) => {
                // The threads already started stop too.
                stop.cancel();
                return Err(e);
            }
        }
    }
    drop(tx);

    let mut logs = Vec::new();
    let mut interrupted = false;
    let joined = futures_util::future::join_all(loops);
    tokio::pin!(shutdown);
    tokio::pin!(joined);
    let results = loop {
        tokio::select! {
            results = &mut joined => break results,
            _ = &mut shutdown, if !interrupted => {
                interrupted = true;
                stop.cancel();
            }
        }
    };
    for r in results {
        match r {
            Ok(Ok(mut l)) => logs.append(&mut l),
            Ok(Err(e)) => {
                return Err(StressError::Unexpected(format!(
                    "a client task failed: {e}"
                )))
            }
            Err(_) => {
                return Err(StressError::Unexpected(
                    "a client thread ended without its results".into(),
                ))
            }
        }
    }
    let elapsed = start.elapsed();
    let mut stats = collector
        .await
        .map_err(|e| StressError::Unexpected(format!("the collector failed: {e}")))?;
    stats.duration = elapsed;
    progress_done.cancel();
    let _ = progress.await;

    let onsale = (mode.scenario == Scenario::Onsale).then(|| audit::onsale(&logs));
    let audit = if mode.audit {
        let orders: Vec<(String, PaidAs)> =
            logs.iter().flat_map(|l| l.orders.iter().cloned()).collect();
        let after = read_event(&mut probe, &mode).await?;
        let read_recv_us = start.elapsed().as_micros() as u64;
        let mut report = audit::check(logs, after.counts, read_recv_us);
        // `--pay`: each order it paid, declined or left reads so now (at
        // most the first 10,000, one GET each).
        let mut statuses = Vec::new();
        for (id, _) in orders.iter().take(10_000) {
            let status = match probe
                .send(Method::GET, &format!("/v1/orders/{id}"), None)
                .await
            {
                Reply::Response { status: 200, body } => {
                    serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_string))
                        .unwrap_or_default()
                }
                _ => "unreadable".to_string(),
            };
            statuses.push(status);
        }
        report
            .violations
            .extend(audit::check_orders(&orders, &statuses));
        report.orders_checked = statuses.len() as u64;
        if let Some(o) = &onsale {
            report
                .violations
                .extend(audit::check_onsale(o, before.max_active));
        }
        Some(report)
    } else {
        None
    };
    Ok(Report {
        mode,
        capacity,
        stats,
        audit,
        onsale,
        interrupted,
    })
}

/// Starts a thread with its own single-threaded runtime running the client
/// tasks `ids`; their audit logs (or the first failure) come back on the
/// returned channel.
fn client_loop(
    n: usize,
    ids: Vec<usize>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Vec<Sample>>,
) -> Result<oneshot::Receiver<Result<Vec<AuditLog>, String>>, StressError> {
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("stress-{n}"))
        .spawn(move || {
            let stop = shared.stop.clone();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    stop.cancel();
                    let _ = done.send(Err(format!("cannot start a client thread: {e}")));
                    return;
                }
            };
            let logs = rt.block_on(async move {
                let mut tasks = JoinSet::new();
                for id in ids {
                    tasks.spawn(client_task(id, shared.clone(), tx.clone()));
                }
                drop(tx);
                let mut logs = Vec::new();
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok(log) => logs.push(log),
                        // One failed task ends the whole run, on every thread.
                        Err(e) => {
                            shared.stop.cancel();
                            return Err(e.to_string());
                        }
                    }
                }
                Ok(logs)
            });
            let _ = done.send(logs);
        })
        .map_err(|e| StressError::Unexpected(format!("cannot start a client thread: {e}")))?;
    Ok(result)
}

/// The event as `GET /v1/events/{id}` shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SectionBody {
    id: String,
    first_ticket: u64,
    last_ticket: u64,
}

struct EventInfo {
    sections: Vec<SectionBody>,
    counts: Counts,
    max_per_hold: u64,
    /// The waiting room's maxActive, when it has one.
    max_active: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventBody {
    capacity: u64,
    available: u64,
    held: u64,
    sold: u64,
    #[serde(default)]
    max_tickets_per_hold: Option<u64>,
    #[serde(default)]
    sections: Vec<SectionBody>,
    #[serde(default)]
    queue: Option<QueueBody>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct QueueBody {
    enabled: bool,
    max_active: u64,
}

async fn read_event(client: &mut Client, mode: &WorkMode) -> Result<EventInfo, StressError> {
    let url = mode.target.url.clone();
    let path = format!("/v1/events/{}", mode.event);
    match client.send(Method::GET, &path, None).await {
        Reply::Response { status: 200, body } => {
            let e: EventBody = serde_json::from_slice(&body).map_err(|e| {
                StressError::Unexpected(format!("GET {path} at {url} is not an event: {e}"))
            })?;
            Ok(EventInfo {
                counts: Counts {
                    capacity: e.capacity,
                    available: e.available,
                    held: e.held,
                    sold: e.sold,
                },
                max_per_hold: e.max_tickets_per_hold.unwrap_or(u64::MAX),
                max_active: e.queue.filter(|q| q.enabled).map(|q| q.max_active),
                sections: e.sections,
            })
        }
        Reply::Response { status: 404, .. } => {
            // A URL with a path (`.../v1`) finds no event either: say which.
            match client.send(Method::GET, "/healthz", None).await {
                Reply::Response { status: 200, .. } => Err(StressError::NoEvent {
                    event: mode.event.clone(),
                    url,
                }),
                _ => Err(StressError::Unexpected(format!(
                    "no ticketctl API at {url}: GET /healthz there does not answer 200 \
                     (--url is the server's root, such as http://127.0.0.1:3000)"
                ))),
            }
        }
        Reply::Response { status, .. } => Err(StressError::Unexpected(format!(
            "GET {path} at {url} answered {status}"
        ))),
        Reply::Timeout => Err(StressError::Unreachable {
            url,
            cause: format!("no answer within {:?}", PREFLIGHT_TIMEOUT.min(mode.timeout)),
        }),
        Reply::Connection(cause) => Err(StressError::Unreachable { url, cause }),
    }
}

/// What every client task shares.
struct Shared {
    mode: WorkMode,
    /// Tickets picked from: `first..first + capacity`.
    capacity: u64,
    first: u64,
    /// `,"section":"ID"` for quantity holds in a section, else empty.
    section_field: String,
    hot: u64,
    start: Instant,
    deadline: Option<Instant>,
    limit: u64,
    /// Requests claimed so far (against `-n`).
    issued: AtomicU64,
    /// Open-model slots claimed so far.
    slots: AtomicU64,
    stop: CancellationToken,
    events_path: String,
    holds_path: String,
}

/// Offset of the `k`-th request of the open model from the start: `k/rate`,
/// or along a linear ramp from 0 to `rate` over `ramp` and then steady.
pub fn schedule(k: u64, rate: f64, ramp: Option<Duration>) -> Option<Duration> {
    let k = k as f64;
    let secs = match ramp {
        Some(r) if !r.is_zero() => {
            let t = r.as_secs_f64();
            // Requests sent during the ramp: rate * t / 2.
            let during = rate * t / 2.0;
            if k < during {
                (2.0 * t * k / rate).sqrt()
            } else {
                t + (k - during) / rate
            }
        }
        _ => k / rate,
    };
    // None: too far off to be reached (a very low rate).
    Duration::try_from_secs_f64(secs).ok()
}

/// splitmix64: tiny, fast and reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: usize) -> Rng {
        let mut r = Rng(seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldBody {
    hold_id: String,
    ticket_ids: Vec<u64>,
    #[serde(default)]
    ttl_ms: u64,
}

impl HoldBody {
    /// The hold as the audit keeps it, won by the request `done` (its
    /// tickets move there; the hold id stays for the purchase).
    fn won(&mut self, done: &Done) -> WonHold {
        WonHold {
            tickets: std::mem::take(&mut self.ticket_ids),
            sent_us: done.sent_us,
            recv_us: done.recv_us,
            ttl_us: self.ttl_ms * 1000,
            purchased: false,
            given_back_us: None,
        }
    }
}

/// One client task's state: its connection, random stream and buffers.
struct Worker {
    id: usize,
    sh: Arc<Shared>,
    client: Client,
    rng: Rng,
    tx: mpsc::Sender<Vec<Sample>>,
    batch: Vec<Sample>,
    last_flush: Instant,
    body: String,
    path: String,
    log: AuditLog,
}

/// A request's result as the scenario needs it.
struct Done {
    outcome: Outcome,
    body: Bytes,
    sent_us: u64,
    recv_us: u64,
}

async fn client_task(id: usize, sh: Arc<Shared>, tx: mpsc::Sender<Vec<Sample>>) -> AuditLog {
    let mut w = Worker {
        id,
        client: Client::new(sh.mode.target.clone(), sh.mode.timeout),
        rng: Rng::new(sh.mode.seed, id),
        tx,
        batch: Vec::with_capacity(BATCH),
        last_flush: Instant::now(),
        body: String::with_capacity(128),
        path: String::with_capacity(128),
        log: AuditLog::default(),
        sh,
    };
    w.run().await;
    w.flush().await;
    w.log
}

impl Worker {
    async fn run(&mut self) {
        let sh = self.sh.clone();
        // Closed model with a ramp: connections join one by one.
        if let (None, Some(ramp)) = (sh.mode.rate, sh.mode.ramp) {
            let at = sh.start + ramp.mul_f64(self.id as f64 / sh.mode.connections as f64);
            if !self.sleep_until(at).await {
                return;
            }
        }
        while let Some(intended) = self.pace().await {
            let go_on = match sh.mode.scenario {
                Scenario::Reserve => self.hold_flow(intended, false, false).await,
                Scenario::ReserveBuy => self.hold_flow(intended, true, false).await,
                Scenario::Hot => self.hold_flow(intended, true, true).await,
                Scenario::Browse => self.browse(intended).await,
                Scenario::Onsale => self.onsale_flow(intended).await,
            };
            if !go_on {
                break;
            }
        }
    }

    /// Sleeps until `at`; false when the run was interrupted meanwhile.
    async fn sleep_until(&self, at: Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => true,
            _ = self.sh.stop.cancelled() => false,
        }
    }

    /// Waits for the next iteration's turn. `None`: stop. `Some(Some(t))`:
    /// open model, `t` is the intended start.
    async fn pace(&self) -> Option<Option<Instant>> {
        let sh = &self.sh;
        if sh.stop.is_cancelled() || sh.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let Some(rate) = sh.mode.rate else {
            return Some(None);
        };
        // One slot per request: a slot past -n will send nothing, so do
        // not wait for it.
        let k = sh.slots.fetch_add(1, Ordering::Relaxed);
        if k >= sh.limit {
            return None;
        }
        let at = schedule(k, rate, sh.mode.ramp).and_then(|d| sh.start.checked_add(d))?;
        if sh.deadline.is_some_and(|d| at >= d) || !self.sleep_until(at).await {
            return None;
        }
        Some(Some(at))
    }

    /// Claims one request against `-n`.
    fn claim(&self) -> bool {
        self.sh.issued.fetch_add(1, Ordering::Relaxed) < self.sh.limit
    }

    fn micros(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.sh.start).as_micros() as u64
    }

    /// Sends one request and records its sample; `None` when the run was
    /// interrupted or `-n` is used up.
    async fn request(
        &mut self,
        op: Op,
        method: Method,
        body: Option<Bytes>,
        intended: Option<Instant>,
    ) -> Option<Done> {
        if !self.claim() {
            return None;
        }
        let sent = Instant::now();
        let reply = tokio::select! {
            r = self.client.send(method, &self.path, body) => r,
            _ = self.sh.stop.cancelled() => return None,
        };
        let end = Instant::now();
        let (outcome, status, body) = match reply {
            Reply::Response { status, body } => (Outcome::of_status(op, status), status, body),
            Reply::Timeout => (Outcome::Timeout, 0, Bytes::new()),
            Reply::Connection(_) => (Outcome::ConnectionError, 0, Bytes::new()),
        };
        let from = intended.unwrap_or(sent).min(sent);
        let end_us = self.micros(end);
        self.batch.push(Sample {
            op,
            outcome,
            status,
            end_us,
            latency_us: end.duration_since(from).as_micros() as u64,
        });
        if self.batch.len() >= BATCH || end.duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush().await;
        }
        if outcome == Outcome::ConnectionError {
            // A refused connection fails in microseconds: without a pause
            // every task would spin on connect() while the target is down.
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
        Some(Done {
            outcome,
            body,
            sent_us: self.micros(sent),
            recv_us: end_us,
        })
    }

    async fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        // The collector only goes away when the run is over.
        let _ = self.tx.send(batch).await;
    }

    fn user(&mut self) -> u64 {
        self.rng.below(USERS)
    }

    /// Hold (and perhaps buy). False: stop the task.
    async fn hold_flow(&mut self, intended: Option<Instant>, buy: bool, hot: bool) -> bool {
        let sh = self.sh.clone();
        let user = self.user();
        if let Some(jwt) = &sh.mode.jwt {
            // One token per virtual user, for its hold and its purchase.
            self.client.bearer = Some(jwt.bearer(&format!("u{user}")));
        }
        let ticket = sh.first + self.rng.below(if hot { sh.hot } else { sh.capacity });
        self.body.clear();
        match sh.mode.quantity.filter(|_| !hot) {
            Some(q) => write!(
                self.body,
                r#"{{"userId":"u{user}","quantity":{q}{}}}"#,
                sh.section_field
            ),
            None => write!(
                self.body,
                r#"{{"userId":"u{user}","ticketIds":[{ticket}]}}"#
            ),
        }
        .expect("writing to a String");
        self.path.clear();
        self.path.push_str(&sh.holds_path);
        let body = Bytes::copy_from_slice(self.body.as_bytes());
        let Some(done) = self
            .request(Op::Hold, Method::POST, Some(body), intended)
            .await
        else {
            return false;
        };
        if done.outcome != Outcome::Won || !(buy || sh.mode.audit) {
            return true;
        }
        let Ok(mut hold) = serde_json::from_slice::<HoldBody>(&done.body) else {
            return true;
        };
        let logged = sh.mode.audit.then(|| {
            self.log.holds.push(hold.won(&done));
            self.log.holds.len() - 1
        });
        if !buy || self.rng.unit() < sh.mode.abandon {
            return true;
        }
        if !sh.mode.think.is_zero() && !self.sleep_until(Instant::now() + sh.mode.think).await {
            return false;
        }
        // `--rate` is requests per second in all, not flows: the purchase
        // takes its slot of the schedule (which pushes the later holds back)
        // but goes at once, right after its hold, as a buyer would.
        if sh.mode.rate.is_some() {
            sh.slots.fetch_add(1, Ordering::Relaxed);
        }
        self.path.clear();
        write!(self.path, "/v1/holds/{}/purchase", hold.hold_id).expect("writing to a String");
        self.body.clear();
        write!(self.body, r#"{{"userId":"u{user}"}}"#).expect("writing to a String");
        let body = Bytes::copy_from_slice(self.body.as_bytes());
        let Some(done) = self
            .request(Op::Purchase, Method::POST, Some(body), None)
            .await
        else {
            return false;
        };
        if let (Outcome::Won, Some(i)) = (done.outcome, logged) {
            self.log.holds[i].purchased = true;
        }
        if let (Outcome::Won, Some((pay, secret))) = (done.outcome, &sh.mode.pay) {
            return self.settle(&done.body, *pay, secret, logged).await;
        }
        true
    }

    /// `--pay`: pays the order just bought (a share `pay` of them), or
    /// declines it (half the rest), or leaves it to the payment deadline.
    async fn settle(
        &mut self,
        order: &[u8],
        pay: f64,
        secret: &str,
        logged: Option<usize>,
    ) -> bool {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OrderBody {
            order_id: String,
            #[serde(default)]
            amount: u64,
        }
        let Ok(order) = serde_json::from_slice::<OrderBody>(order) else {
            return true;
        };
        let r = self.rng.unit();
        let (outcome, did) = if r < pay {
            ("paid", PaidAs::Paid)
        } else if r < pay + (1.0 - pay) / 2.0 {
            ("declined", PaidAs::Declined)
        } else {
            if self.sh.mode.audit {
                self.log.orders.push((order.order_id, PaidAs::Left));
            }
            return true;
        };
        self.path.clear();
        write!(self.path, "/v1/orders/{}/payment", order.order_id).expect("writing to a String");
        self.body.clear();
        write!(
            self.body,
            r#"{{"outcome":"{outcome}","reference":"stress-{}","amount":{}}}"#,
            order.order_id, order.amount
        )
        .expect("writing to a String");
        self.client.next_signature = Some(crate::signature::sign(secret, self.body.as_bytes()));
        let body = Bytes::copy_from_slice(self.body.as_bytes());
        let sent_us = self.sh.start.elapsed().as_micros() as u64;
        let Some(done) = self
            .request(Op::Payment, Method::POST, Some(body), None)
            .await
        else {
            return false;
        };
        if done.outcome == Outcome::Won && self.sh.mode.audit {
            if did == PaidAs::Declined {
                if let Some(i) = logged {
                    self.log.holds[i].given_back_us = Some(sent_us);
                }
            }
            self.log.orders.push((order.order_id, did));
        }
        true
    }

    /// One availability read: a page of available tickets or the counts.
    async fn browse(&mut self, intended: Option<Instant>) -> bool {
        let sh = self.sh.clone();
        self.path.clear();
        if let Some(p) = &sh.mode.path {
            self.path.push_str(p);
        } else if self.rng.below(2) == 0 {
            let after = sh.first - 1 + self.rng.below(sh.capacity);
            write!(
                self.path,
                "{}/tickets?limit=100&after={after}",
                sh.events_path
            )
            .expect("writing to a String");
        } else {
            self.path.push_str(&sh.events_path);
        }
        self.request(Op::Read, Method::GET, None, intended)
            .await
            .is_some()
    }

    /// One buyer of an on-sale: (now and then) a hold without a place,
    /// which must be refused; then join, poll, hold when admitted, buy.
    /// False: stop the task.
    async fn onsale_flow(&mut self, intended: Option<Instant>) -> bool {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Place {
            queue_id: String,
            state: String,
        }
        let sh = self.sh.clone();
        self.log.users += 1;
        let user = format!(
            "o{:x}-{}-{}",
            sh.mode.seed & 0xffff_ffff,
            self.id,
            self.log.users
        );
        if let Some(jwt) = &sh.mode.jwt {
            self.client.bearer = Some(jwt.bearer(&user));
        }
        let hold_body = match sh.mode.quantity {
            Some(q) => format!(
                r#"{{"userId":"{user}","quantity":{q}{}}}"#,
                sh.section_field
            ),
            None => format!(r#"{{"userId":"{user}","quantity":1{}}}"#, sh.section_field),
        };
        self.client.queue_id = None;
        // One buyer in ten tries to skip the line.
        if self.rng.below(10) == 0 {
            self.path.clear();
            self.path.push_str(&sh.holds_path);
            let body = Bytes::copy_from_slice(hold_body.as_bytes());
            let Some(done) = self
                .request(Op::Hold, Method::POST, Some(body), intended)
                .await
            else {
                return false;
            };
            self.log.skips_tried += 1;
            if done.outcome == Outcome::Won {
                self.log.skips_held += 1;
            }
        }
        self.path.clear();
        write!(self.path, "{}/queue", sh.events_path).expect("writing to a String");
        let body = Bytes::from(format!(r#"{{"userId":"{user}"}}"#));
        let Some(done) = self
            .request(Op::Join, Method::POST, Some(body), intended)
            .await
        else {
            return false;
        };
        let Ok(place) = serde_json::from_slice::<Place>(&done.body) else {
            return true;
        };
        let j = place
            .queue_id
            .split('.')
            .nth(1)
            .and_then(|q| q.strip_prefix('q'))
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        let mut log = audit::PlaceLog {
            j,
            joined_us: done.sent_us,
            admitted_us: None,
            ended_us: done.recv_us,
            admitted_end_us: 0,
            end: audit::PlaceEnd::Stopped,
            held_unadmitted: false,
        };
        let mut state = place.state;
        let poll_path = format!("/v1/queue/{}", place.queue_id);
        // Wait for admission.
        let mut going = true;
        loop {
            match state.as_str() {
                "admitted" => break,
                "sold_out" => log.end = audit::PlaceEnd::SoldOut,
                "expired" => log.end = audit::PlaceEnd::Expired,
                _ => {}
            }
            if state != "waiting" {
                break;
            }
            if !self.sleep_until(Instant::now() + sh.mode.poll).await
                || sh.deadline.is_some_and(|d| Instant::now() >= d)
            {
                going = false;
                break;
            }
            self.path.clear();
            self.path.push_str(&poll_path);
            let Some(done) = self.request(Op::Poll, Method::GET, None, None).await else {
                going = false;
                break;
            };
            log.ended_us = done.recv_us;
            if let Ok(p) = serde_json::from_slice::<Place>(&done.body) {
                state = p.state;
            }
        }
        // Sold out: this client's buyers go home (the run ends once every
        // client has read it).
        if state == "sold_out" {
            going = false;
        }
        if state == "admitted" && going {
            log.admitted_us = Some(log.ended_us);
            log.admitted_end_us = log.ended_us;
            self.client.queue_id = HeaderValue::from_str(&place.queue_id).ok();
            // Up to three tries for a ticket while admitted.
            for _ in 0..3 {
                self.path.clear();
                self.path.push_str(&sh.holds_path);
                let body = Bytes::copy_from_slice(hold_body.as_bytes());
                let Some(done) = self.request(Op::Hold, Method::POST, Some(body), None).await
                else {
                    going = false;
                    break;
                };
                log.ended_us = done.recv_us;
                if done.outcome != Outcome::Won {
                    if done.outcome == Outcome::Conflict {
                        // 403: the admission ran out.
                        log.end = audit::PlaceEnd::Expired;
                        break;
                    }
                    // Past the room's check: still admitted when sent.
                    log.admitted_end_us = done.sent_us;
                    log.end = audit::PlaceEnd::NoTicket;
                    continue;
                }
                log.admitted_end_us = done.sent_us;
                let Ok(mut hold) = serde_json::from_slice::<HoldBody>(&done.body) else {
                    break;
                };
                if sh.mode.audit {
                    self.log.holds.push(hold.won(&done));
                }
                self.path.clear();
                write!(self.path, "/v1/holds/{}/purchase", hold.hold_id)
                    .expect("writing to a String");
                let body = Bytes::from(format!(r#"{{"userId":"{user}"}}"#));
                let Some(done) = self
                    .request(Op::Purchase, Method::POST, Some(body), None)
                    .await
                else {
                    going = false;
                    break;
                };
                log.ended_us = done.recv_us;
                if done.outcome == Outcome::Won {
                    log.admitted_end_us = done.sent_us;
                    log.end = audit::PlaceEnd::Bought;
                    if let Some(h) = self.log.holds.last_mut().filter(|_| sh.mode.audit) {
                        h.purchased = true;
                    }
                } else {
                    log.end = audit::PlaceEnd::NoTicket;
                }
                break;
            }
            self.client.queue_id = None;
        }
        self.log.places.push(log);
        going
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_schedule_is_even_and_ramps_linearly() {
        assert_eq!(schedule(0, 100.0, None), Some(Duration::ZERO));
        assert_eq!(schedule(50, 100.0, None), Some(Duration::from_millis(500)));
        // A slot too far off to reach is none, not a panic.
        assert_eq!(schedule(1, 1e-30, None), None);
        let ramp = Some(Duration::from_secs(2));
        // 100/s ramped over 2 s: 100 requests during the ramp, the 25th at 1 s.
        let at = |k| schedule(k, 100.0, ramp).unwrap().as_secs_f64();
        assert!((at(25) - 1.0).abs() < 1e-9);
        assert!((at(100) - 2.0).abs() < 1e-9);
        assert!((at(200) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_random_stream_is_reproducible_and_in_range() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 3);
                move |_| r.below(10)
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 3);
                move |_| r.below(10)
            })
            .collect();
        assert_eq!(a, b);
        let mut r = Rng::new(7, 4);
        assert!((0..1000).all(|_| r.below(3) < 3));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.unit())));
    }
}
