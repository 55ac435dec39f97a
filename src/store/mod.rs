//! The only code that talks to Redis. Every state transition is one Lua
//! script (`lua/`, wrapped one typed method each in `scripts.rs`); read-only
//! queries live in `query.rs`; key names come from `keys.rs` alone.
//!
//! Must not: know about HTTP, format JSON for clients, or let Redis error text
//! out in anything but a [`StoreError`] meant for logs.

pub mod ids;
pub mod inspect;
mod jobs;
pub mod keys;
mod query;
mod reply;
mod scripts;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

pub use ids::{HoldId, OrderId};
pub use jobs::{Job, JobOrder, SinkMessage};
pub use query::{TicketPage, TicketStatus};
pub use scripts::*;

use crate::config::{redact_url, RedisConfig};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached, timed out, or is loading/failing over:
    /// worth retrying later (HTTP 503).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error we did not expect (a bug or damaged data).
    #[error("redis error: {0}")]
    Redis(String),
    /// A script or query answered something this version cannot read.
    #[error("unexpected reply: {0}")]
    Reply(String),
    /// Data written by a schema version this ticketctl does not understand.
    #[error("event {event} was written by data schema version {version}, which this ticketctl does not understand")]
    Schema {
        /// The event.
        event: String,
        /// The version found.
        version: String,
    },
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        let transient = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.code(),
                Some("LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "BUSY")
            );
        if transient {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Redis(e.to_string())
        }
    }
}

/// A client for the configured URL; `rediss://` with the configured CA and
/// client certificate, if any.
fn client_for(cfg: &RedisConfig) -> Result<redis::Client> {
    let bad = |e: String| {
        StoreError::Redis(format!(
            "invalid redis settings for {}: {e}",
            redact_url(&cfg.url)
        ))
    };
    if !cfg.url.starts_with("rediss://")
        || (cfg.tls_ca_file.is_none() && cfg.tls_cert_file.is_none())
    {
        if cfg.url.starts_with("rediss://") {
            install_crypto();
        }
        return redis::Client::open(cfg.url.as_str()).map_err(|e| bad(e.to_string()));
    }
    install_crypto();
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| bad(format!("{}: {e}", p.display())));
    let root_cert = cfg.tls_ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read(c)?,
            client_key: read(k)?,
        }),
        _ => None,
    };
    redis::Client::build_with_tls(
        cfg.url.as_str(),
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| bad(e.to_string()))
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
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(p, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
        }
    }
}

/// Handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    client: Option<redis::Client>,
    timeout: Duration,
    max_holds_per_user: u64,
}

impl Store {
    /// Connects (and checks the connection with PING). Fails with
    /// [`StoreError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(cfg: &RedisConfig) -> Result<Store> {
        let client = client_for(cfg)?;
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(client.clone(), mc);
        let mgr = tokio::time::timeout(cfg.connect_timeout + cfg.timeout, connect)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("no answer from {}", redact_url(&cfg.url)))
            })?
            .map_err(|e| match StoreError::from(e) {
                StoreError::Unavailable(m) | StoreError::Redis(m) => StoreError::Unavailable(
                    format!("cannot connect to {}: {m}", redact_url(&cfg.url)),
                ),
                other => other,
            })?;
        let store = Store {
            conn: Conn::Single(mgr),
            client: Some(client),
            timeout: cfg.timeout,
            max_holds_per_user: 0,
        };
        store.ping().await?;
        Ok(store)
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
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no reply within {:?}",
                self.timeout
            ))),
        }
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
