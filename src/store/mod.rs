//! The only code that talks to Redis. Every state transition is one Lua
//! script (`lua/`), with one typed method each beside the code that uses
//! it: events, holds, purchases and releases in `scripts.rs`, the job queue
//! and dead letters in `jobs.rs`. Read-only queries live in `query.rs` and
//! `inspect.rs`; key names come from `keys.rs` alone.
//!
//! Must not: know about HTTP, format JSON for clients, or let Redis error text
//! out in anything but a [`StoreError`] meant for logs.

pub mod admission;
pub mod archive;
pub mod batch;
pub mod functions;
pub mod inspect;
mod jobs;
pub mod keys;
mod query;
pub mod queue;
mod reply;
mod results;
mod scripts;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

pub use jobs::{Job, JobOrder, JobRead, SinkMessage, StreamGroup, JOBS_PER_CALL};
pub use query::{EventCounters, TicketPage, TicketStatus};
pub use results::PaymentResult;
pub use scripts::*;

use crate::config::{redact_url, RedisConfig};

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached, timed out, or is loading/failing over:
    /// worth retrying later (HTTP 503).
    #[error("redis unavailable: {0}")]
    Unavailable(Cause),
    /// Redis answered with an error we did not expect (a bug or damaged data).
    #[error("redis error: {0}")]
    Redis(Cause),
    /// A script or query answered something this version cannot read.
    #[error("unexpected reply: {0}")]
    Reply(String),
    /// The request could not start its first Redis call within
    /// `server.max_queue_wait` (HTTP 503 `overloaded`); nothing was done.
    #[error("overloaded: the request waited longer than server.max_queue_wait to start")]
    Overloaded,
    /// Data written by a schema version this ticketctl does not understand.
    #[error("event {event} was written by data schema version {version}, which this ticketctl does not understand")]
    Schema {
        /// The event.
        event: String,
        /// The version found.
        version: String,
    },
}

/// What lies under a [`StoreError`]: the Redis client's error, kept whole
/// (its code and kind are read from it, never from its text), or our own
/// words (a script's answer, a time limit).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    /// The client's error.
    #[error(transparent)]
    Client(#[from] RedisError),
    /// Ours.
    #[error("{0}")]
    Message(String),
}

impl Cause {
    /// Whether Redis answered this error code, with `detail` in its text
    /// when given (`ERR no such key`).
    fn is(&self, code: &str, detail: Option<&str>) -> bool {
        match self {
            Cause::Client(e) => {
                e.code() == Some(code)
                    && detail.is_none_or(|d| e.detail().is_some_and(|t| t.contains(d)))
            }
            Cause::Message(_) => false,
        }
    }
}

impl From<String> for Cause {
    fn from(m: String) -> Cause {
        Cause::Message(m)
    }
}

impl From<&str> for Cause {
    fn from(m: &str) -> Cause {
        Cause::Message(m.to_string())
    }
}

/// Redis error codes that mean "not now" rather than "wrong": loading, a
/// failover under way, a replica where a primary was expected, or Redis out
/// of memory (`maxmemory`). Worth retrying later (HTTP 503).
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "LOADING"
            | "MASTERDOWN"
            | "TRYAGAIN"
            | "CLUSTERDOWN"
            | "BUSY"
            | "READONLY"
            | "MOVED"
            | "ASK"
            | "NOREPLICAS"
            | "OOM"
    )
}

impl StoreError {
    /// [`StoreError::Unavailable`] of a message or a client error.
    pub fn unavailable(c: impl Into<Cause>) -> StoreError {
        StoreError::Unavailable(c.into())
    }

    /// [`StoreError::Redis`] of a message or a client error.
    pub fn redis(c: impl Into<Cause>) -> StoreError {
        StoreError::Redis(c.into())
    }

    /// Whether Redis refused with this error code (and `detail` in its
    /// text, when given).
    pub(crate) fn is_redis(&self, code: &str, detail: Option<&str>) -> bool {
        matches!(self, StoreError::Redis(c) if c.is(code, detail))
    }

    /// An error a script caught and answered with (`{'error', message}`),
    /// classified as Redis's own answer would be: a message starting with a
    /// transient code (see [`transient_code`]) is [`StoreError::Unavailable`].
    pub(crate) fn from_script(script: &str, message: &str) -> StoreError {
        let code = message.split_whitespace().next().unwrap_or("");
        if transient_code(code) {
            StoreError::unavailable(format!("{script}: {message}"))
        } else {
            StoreError::redis(format!("{script}: {message}"))
        }
    }
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        let transient = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.code().is_some_and(transient_code)
            // During a failover a command may reach a node that just became
            // a replica (WAIT there is refused): retry later, not a bug.
            || e.detail().is_some_and(|d| d.contains("replica"));
        if transient {
            StoreError::Unavailable(e.into())
        } else {
            StoreError::Redis(e.into())
        }
    }
}

/// The CA and client certificate configured for `rediss://`, if any.
fn tls_certificates(cfg: &RedisConfig) -> Result<Option<redis::TlsCertificates>> {
    if cfg.tls_ca_file.is_none() && cfg.tls_cert_file.is_none() {
        return Ok(None);
    }
    install_crypto();
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StoreError::redis(format!("cannot read {}: {e}", p.display())))
    };
    let root_cert = cfg.tls_ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read(c)?,
            client_key: read(k)?,
        }),
        _ => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A client for the configured URL; `rediss://` with the configured CA and
/// client certificate, if any.
fn client_for(cfg: &RedisConfig) -> Result<redis::Client> {
    let bad = |e: String| {
        StoreError::redis(format!(
            "invalid redis settings for {}: {e}",
            redact_url(&cfg.url)
        ))
    };
    if cfg.url.starts_with("rediss://") {
        install_crypto();
        if let Some(certs) = tls_certificates(cfg)? {
            return redis::Client::build_with_tls(cfg.url.as_str(), certs)
                .map_err(|e| bad(e.to_string()));
        }
    }
    redis::Client::open(cfg.url.as_str()).map_err(|e| bad(e.to_string()))
}

/// TLS needs one process-wide crypto provider.
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Result of every store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A connection shared by every task: multiplexed (concurrent requests are
/// pipelined on one socket) and reconnecting on its own.
#[derive(Clone)]
pub enum Conn {
    /// One Redis server.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the node owning their key's slot;
    /// MOVED and ASK are followed and the slot map refreshed by the client.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            // A connection that could not be made (Redis was down at the
            // last try) fails the command before it is sent, and starts a
            // new attempt: wait for that one, once. A command that may have
            // reached Redis is never sent again.
            Conn::Single(c) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(e) if e.is_connection_refusal() => c.req_packed_command(cmd).await,
                    r => r,
                }
            }),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => Box::pin(async move {
                match c.req_packed_commands(p, offset, count).await {
                    Err(e) if e.is_connection_refusal() => {
                        c.req_packed_commands(p, offset, count).await
                    }
                    r => r,
                }
            }),
            Conn::Cluster(c) => c.req_packed_commands(p, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A cluster connection that can be rebuilt.
struct ClusterHandle {
    client: redis::cluster::ClusterClient,
    conn: std::sync::RwLock<redis::cluster_async::ClusterConnection>,
    rebuilding: std::sync::atomic::AtomicBool,
    connect_timeout: Duration,
}

impl ClusterHandle {
    fn current(&self) -> redis::cluster_async::ClusterConnection {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts one rebuild in the background (a no-op while one runs).
    fn rebuild(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            // Spaced out: a cluster in the middle of a failover refuses for a while.
            tokio::time::sleep(Duration::from_millis(250)).await;
            match tokio::time::timeout(me.connect_timeout * 3, me.client.get_async_connection())
                .await
            {
                Ok(Ok(c)) => {
                    *me.conn.write().unwrap_or_else(|p| p.into_inner()) = c;
                    tracing::info!("reconnected to the cluster");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cluster reconnect failed"),
                Err(_) => tracing::warn!("cluster reconnect timed out"),
            }
            me.rebuilding.store(false, Ordering::Release);
        });
    }
}

/// Where commands go.
#[derive(Clone)]
enum Backend {
    /// One Redis server.
    Single(ConnectionManager),
    /// A cluster: the client and the current connection, which is rebuilt
    /// from the seeds when the cluster stops answering (after a failover
    /// the old connection may keep routing to a dead master).
    Cluster(Arc<ClusterHandle>),
}

/// Handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// For the release wake-up subscription (a cluster broadcasts PUBLISH
    /// to every node, so one node is enough).
    client: Option<redis::Client>,
    timeout: Duration,
    max_holds_per_user: u64,
    /// `payment.deadline` in ms (0: none), given to each purchase.
    payment_deadline_ms: u64,
    wait_replicas: u32,
    /// Group commit of holds and purchases (see batch.rs), when enabled.
    holds: Option<Arc<batch::Queues<scripts::HoldOp>>>,
    purchases: Option<Arc<batch::Queues<scripts::BuyOp>>>,
    /// Counts the expired holds this store's calls release (sweeps before
    /// counts and listings, and holds, purchases and cancels that meet
    /// them), for the process's metrics.
    swept: Option<Arc<AtomicU64>>,
    /// Counts the grouped calls (see batch.rs), for the process's metrics.
    call_stats: Option<Arc<batch::CallStats>>,
    /// `server.max_queue_wait` (see admission.rs), when shedding is on.
    max_queue_wait: Option<Duration>,
    /// The waits before first calls this store saw.
    wait_gauge: Arc<admission::WaitGauge>,
    /// Held by every clone: the connection's health check stops when the
    /// last one goes.
    alive: Arc<()>,
}

/// How often a connection to one Redis is checked, and how often while it
/// is down.
const HEALTH_EVERY: Duration = Duration::from_millis(250);
const HEALTH_EVERY_DOWN: Duration = Duration::from_millis(100);

/// PINGs the connection every [`HEALTH_EVERY`] while `alive` lasts. A
/// connection that Redis closed (a restart) is otherwise found dead only by
/// the request that next uses it, which then fails; a failed PING makes the
/// manager reconnect first, and the next PINGs, closer together, keep
/// trying until Redis is back. With the retry of a command that found no
/// connection (see [`Conn`]), a request meets the old connection only in
/// the quarter second after Redis closed it: a Redis restarting faster
/// than that may still cost a request a 503.
fn keep_alive(mgr: ConnectionManager, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut every = HEALTH_EVERY;
        loop {
            tokio::time::sleep(every).await;
            if alive.strong_count() == 0 {
                return;
            }
            let mut c = mgr.clone();
            let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            every = match pong {
                Ok(_) => HEALTH_EVERY,
                Err(e) => {
                    tracing::debug!(error = %e, "redis health check failed");
                    HEALTH_EVERY_DOWN
                }
            };
        }
    });
}

impl Store {
    /// Connects (and checks the connection with PING). Fails with
    /// [`StoreError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(cfg: &RedisConfig) -> Result<Store> {
        if cfg.is_cluster() {
            let seeds = cfg.endpoints().into_iter().map(String::from).collect();
            return Self::connect_cluster(cfg, seeds).await;
        }
        let client = client_for(cfg)?;
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(client.clone(), mc);
        let mgr = tokio::time::timeout(cfg.connect_timeout + cfg.timeout, connect)
            .await
            .map_err(|_| StoreError::unavailable("no answer"))?
            .map_err(|e| match StoreError::from(e) {
                StoreError::Unavailable(m) | StoreError::Redis(m) => {
                    StoreError::unavailable(format!("cannot connect: {m}"))
                }
                other => other,
            })?;
        let store = Store::new(Backend::Single(mgr.clone()), Some(client), cfg);
        store.ping().await?;
        keep_alive(mgr, Arc::downgrade(&store.alive));
        // A node of a cluster named by a plain URL: use it as the cluster's
        // seed. A Redis whose ACL refuses INFO is taken as a single node.
        let info: String = match store
            .run(|mut c| async move { redis::cmd("INFO").arg("cluster").query_async(&mut c).await })
            .await
        {
            Ok(info) => info,
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "INFO refused; taking Redis as a single node");
                String::new()
            }
        };
        if info.contains("cluster_enabled:1") {
            return Self::connect_cluster(cfg, vec![cfg.url.clone()]).await;
        }
        Ok(store)
    }

    async fn connect_cluster(cfg: &RedisConfig, seeds: Vec<String>) -> Result<Store> {
        let shown = seeds
            .iter()
            .map(|s| redact_url(s))
            .collect::<Vec<_>>()
            .join(",");
        let tls = seeds.iter().any(|s| s.starts_with("rediss://"));
        if tls {
            install_crypto();
        }
        let mut builder = redis::cluster::ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.timeout)
            .retries(3);
        // The TLS files only for a cluster reached over TLS, as for one node.
        if let (true, Some(certs)) = (tls, tls_certificates(cfg)?) {
            builder = builder.certs(certs);
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::redis(format!("invalid cluster settings {shown}: {e}")))?;
        let conn = tokio::time::timeout(
            cfg.connect_timeout + cfg.timeout,
            client.get_async_connection(),
        )
        .await
        .map_err(|_| StoreError::unavailable("no answer from the cluster"))?
        .map_err(|e| StoreError::unavailable(format!("cannot connect to the cluster: {e}")))?;
        let handle = Arc::new(ClusterHandle {
            client,
            conn: std::sync::RwLock::new(conn),
            rebuilding: std::sync::atomic::AtomicBool::new(false),
            connect_timeout: cfg.connect_timeout,
        });
        let pubsub = client_for(&RedisConfig {
            url: seeds[0].clone(),
            ..cfg.clone()
        })
        .ok();
        let store = Store::new(Backend::Cluster(handle), pubsub, cfg);
        store.ping().await?;
        Ok(store)
    }

    fn new(backend: Backend, client: Option<redis::Client>, cfg: &RedisConfig) -> Store {
        Store {
            backend,
            client,
            timeout: cfg.timeout,
            max_holds_per_user: 0,
            payment_deadline_ms: 0,
            wait_replicas: cfg.wait_replicas,
            holds: None,
            purchases: None,
            swept: None,
            call_stats: None,
            max_queue_wait: None,
            wait_gauge: Arc::default(),
            alive: Arc::default(),
        }
    }

    /// Sheds a request that cannot start its first call within `max` (see
    /// admission.rs); zero: never.
    pub fn with_max_queue_wait(mut self, max: Duration) -> Store {
        self.max_queue_wait = (!max.is_zero()).then_some(max);
        self.wait_gauge = Arc::default();
        self
    }

    /// Starts measuring the current thread's event-loop lag (see
    /// admission.rs), when shedding is on and a runtime is running; it
    /// stops when the store and its clones are gone.
    pub fn watch_loop_lag(&self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Some(max) = self.max_queue_wait {
                tokio::spawn(admission::watch_lag(Arc::downgrade(&self.wait_gauge), max));
            }
        }
    }

    /// Whether to shed the request seen now before any work (see
    /// admission.rs); never when shedding is off.
    pub fn shed_early(&self) -> bool {
        self.max_queue_wait.is_some() && self.wait_gauge.shed_early()
    }

    /// True on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// The masters with fewer replicas connected than `wait_replicas`
    /// (every purchase on them would wait in vain and answer 503), each
    /// with its address (`""` on a single Redis) and how many it has; empty
    /// when all have enough or none are asked for. On a cluster every master
    /// is asked, since each event lives on one of them.
    pub async fn replicas_short(&self) -> Result<Vec<(String, u64)>> {
        if self.wait_replicas == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let infos: Vec<(String, String)> = match &self.backend {
            Backend::Single(_) => {
                let info: String = self
                    .run(|mut c| async move { cmd.query_async(&mut c).await })
                    .await?;
                vec![(String::new(), info)]
            }
            Backend::Cluster(_) => {
                use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                let route = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let v = self.route(cmd, route).await?;
                // One answer per master, by address.
                let redis::Value::Map(by_node) = v else {
                    return Err(StoreError::Reply(format!(
                        "INFO on every master answered {v:?}"
                    )));
                };
                by_node
                    .into_iter()
                    .map(|(node, info)| {
                        Ok((
                            redis::from_redis_value::<String>(node)?,
                            redis::from_redis_value::<String>(info)?,
                        ))
                    })
                    .collect::<redis::RedisResult<_>>()?
            }
        };
        let want = u64::from(self.wait_replicas);
        let mut short: Vec<(String, u64)> = infos
            .into_iter()
            .map(|(node, info)| {
                let connected = info
                    .lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                (node, connected)
            })
            .filter(|(_, connected)| *connected < want)
            .collect();
        short.sort();
        Ok(short)
    }

    /// Waits until `wait_replicas` replicas have every write made so far on
    /// the node owning `key` (no-op when 0). A purchase is answered only
    /// after this, so a failover cannot lose a sale that was confirmed.
    pub(crate) async fn wait_for_replicas(&self, key: &str) -> Result<()> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        let n = self.wait_replicas;
        let ms = self.timeout.as_millis() as u64 / 2;
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(n).arg(ms);
        let acked: i64 = match &self.backend {
            Backend::Single(_) => {
                self.run(|mut c| async move { cmd.query_async(&mut c).await })
                    .await?
            }
            Backend::Cluster(_) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                let v = self.route(cmd, route).await?;
                match v {
                    redis::Value::Int(n) => n,
                    // Mid-failover the slot's node may still be a replica
                    // (WAIT is refused there): try again shortly.
                    other => {
                        return Err(StoreError::unavailable(format!("WAIT answered {other:?}")))
                    }
                }
            }
        };
        if acked < i64::from(n) {
            return Err(StoreError::unavailable(format!(
                "only {acked} of {n} replicas confirmed the write"
            )));
        }
        Ok(())
    }

    /// Sends concurrent holds (and purchases) of one event to Redis
    /// together (group commit; see batch.rs). For long-running processes
    /// such as the server: each event with recent requests keeps a task.
    pub fn with_hold_batching(mut self) -> Store {
        self.holds = Some(Arc::default());
        self.purchases = Some(Arc::default());
        self
    }

    /// The same connection without group commit (for the batching tasks).
    fn without_batching(&self) -> Store {
        Store {
            holds: None,
            purchases: None,
            ..self.clone()
        }
    }

    /// Adds the expired holds this store's calls release to `counter`.
    pub fn with_sweep_counter(mut self, counter: Arc<AtomicU64>) -> Store {
        self.swept = Some(counter);
        self
    }

    /// Counts this store's grouped calls in `stats`.
    pub fn with_call_stats(mut self, stats: Arc<batch::CallStats>) -> Store {
        self.call_stats = Some(stats);
        self
    }

    /// Adds `n` released expired holds to the sweep counter, if any.
    pub(crate) fn count_released(&self, n: u64) {
        if let (Some(c), true) = (&self.swept, n > 0) {
            c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Orders this store makes are cancelled when not paid `deadline` after
    /// their creation (`payment.deadline`; zero: never).
    pub fn with_payment_deadline(mut self, deadline: std::time::Duration) -> Store {
        self.payment_deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Limits how many live holds one user may have in one event (0: no limit).
    pub fn with_max_holds_per_user(mut self, n: u64) -> Store {
        self.max_holds_per_user = n;
        self
    }

    /// Runs one Redis call under the configured timeout.
    async fn run<T, F>(&self, f: impl FnOnce(Conn) -> F) -> Result<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if let (Some(max), Some(wait)) = (self.max_queue_wait, admission::first_call_wait()) {
            admission::check(wait, max, &self.wait_gauge)?;
        }
        let conn = match &self.backend {
            Backend::Cluster(h) => Conn::Cluster(h.current()),
            Backend::Single(c) => Conn::Single(c.clone()),
        };
        let r = match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::unavailable(format!(
                "no reply within {:?}",
                self.timeout
            ))),
        };
        if let (Err(StoreError::Unavailable(_)), Backend::Cluster(h)) = (&r, &self.backend) {
            h.rebuild();
        }
        r
    }

    /// Sends `cmd` to the cluster nodes `route` names (cluster only).
    async fn route(
        &self,
        cmd: redis::Cmd,
        route: redis::cluster_routing::RoutingInfo,
    ) -> Result<redis::Value> {
        self.run(|c| async move {
            let Conn::Cluster(mut c) = c else {
                unreachable!("routed commands are for a cluster")
            };
            c.route_command(cmd, route).await
        })
        .await
    }

    /// PING: is Redis reachable now?
    pub async fn ping(&self) -> Result<()> {
        let pong: String = self
            .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Reply(format!("PING answered {pong:?}")))
        }
    }
}
