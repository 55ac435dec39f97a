//! Configuration: the TOML file, `TICKETCTL_*` environment variables and
//! command-line overrides, merged with the precedence flag > environment >
//! file > default, then validated. Owns the defaults of its settings (the
//! domain's limits and defaults come from `model`); Redis URLs are checked
//! with the Redis client's own parser, so a URL it would refuse is a
//! configuration error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{valid_event_id, EventSettings, SettingNames};
use serde::{Deserialize, Deserializer};

/// A configuration problem: the message names the file, key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// Why it could not be read (in the message, so not also a source:
        /// the one-line error would say it twice).
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a bad value.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file named by `--config`.
        path: PathBuf,
        /// The TOML parser's message, naming the key.
        message: String,
    },
    /// A value (from any source) failed validation.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration; every section has defaults.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store lives.
    pub redis: RedisConfig,
    /// The HTTP API.
    pub server: ServerConfig,
    /// The Node proof-of-concept routes.
    pub compat: CompatConfig,
    /// Events `serve` creates when they do not exist yet (a file without
    /// `[[events]]` gets the default event).
    #[serde(default = "default_events")]
    pub events: Vec<EventSeed>,
    /// The release worker.
    pub release: ReleaseConfig,
    /// The purchase worker and its sinks.
    pub purchase: PurchaseConfig,
    /// Abuse limits of the HTTP API.
    pub limits: LimitsConfig,
    /// Payment results.
    pub payment: PaymentConfig,
    /// Buyer identity.
    pub auth: AuthConfig,
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A buyer route takes the body's `userId` as it is.
    #[default]
    None,
    /// A buyer route needs `Authorization: Bearer <JWT>`; its `sub` is the
    /// `userId`.
    Jwt,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none` or `jwt`.
    pub mode: AuthMode,
    /// HS256 secret; env `TICKETCTL_JWT_SECRET`.
    pub jwt_secret: String,
    /// A PEM public key (RSA, EC P-256/P-384 or Ed25519) instead of a secret.
    pub jwt_public_key_file: Option<PathBuf>,
    /// When set, a token's `iss` must be this.
    pub issuer: String,
    /// When set, a token's `aud` must be (or contain) this.
    pub audience: String,
    /// Clock skew allowed either way for `exp` and `nbf` (whole seconds).
    #[serde(deserialize_with = "de_duration")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            jwt_secret: String::new(),
            jwt_public_key_file: None,
            issuer: String::new(),
            audience: String::new(),
            leeway: Duration::from_secs(30),
        }
    }
}

/// `[payment]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentConfig {
    /// Key of the HMAC-SHA256 signature of `POST /v1/orders/{id}/payment`;
    /// env `TICKETCTL_PAYMENT_SECRET`. Empty: that route answers 401.
    pub secret: String,
    /// Orders neither paid nor cancelled this long after their creation
    /// are cancelled (`payment_timeout`) by `work release`; 0: never.
    #[serde(deserialize_with = "de_duration")]
    pub deadline: Duration,
    /// The Redis stream of payment results `work purchase` applies.
    pub results_stream: String,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig {
            secret: String::new(),
            deadline: Duration::ZERO,
            results_stream: "tc:payment-results".into(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Live holds one user may have in one event (0: no limit, and holds
    /// are not counted).
    pub max_holds_per_user: u64,
    /// Requests per second one client IP may make, sustained (0: no limit).
    pub per_ip_rate: f64,
    /// Requests one client IP may make at once above its rate.
    pub per_ip_burst: f64,
    /// Hold, purchase and cancel requests per second one userId may make (0: no limit).
    pub per_user_rate: f64,
    /// Requests one userId may make at once above its rate.
    pub per_user_burst: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_holds_per_user: 0,
            per_ip_rate: 0.0,
            per_ip_burst: 200.0,
            per_user_rate: 0.0,
            per_user_burst: 20.0,
        }
    }
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL; env `TICKETCTL_REDIS_URL`, flag `--redis`.
    pub url: String,
    /// Longest wait for one Redis reply before the request fails with 503.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Longest wait for a (re)connection to Redis.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Seed nodes of a Redis Cluster (empty: `url` is one server, or a
    /// node of a cluster, which is detected).
    pub cluster: Vec<String>,
    /// Replicas that must confirm a purchase before it is answered (`WAIT`;
    /// 0: do not wait). With 1, a failover cannot lose a confirmed sale.
    pub wait_replicas: u32,
    /// `rediss://` only: PEM file of the CA that signed the server's
    /// certificate (default: the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// `rediss://` only: PEM client certificate, for servers that ask for one.
    pub tls_cert_file: Option<PathBuf>,
    /// `rediss://` only: PEM key of the client certificate.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            cluster: Vec::new(),
            wait_replicas: 0,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl RedisConfig {
    /// Whether to connect as to a cluster: seeds in `cluster`, or several
    /// comma-separated URLs in `url`.
    pub fn is_cluster(&self) -> bool {
        !self.cluster.is_empty() || self.url.contains(',')
    }

    /// The URLs connected to: the `cluster` seeds when given, otherwise each
    /// of `url`'s comma-separated URLs.
    pub fn endpoints(&self) -> Vec<&str> {
        if self.cluster.is_empty() {
            self.url.split(',').map(str::trim).collect()
        } else {
            self.cluster.iter().map(String::as_str).collect()
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address; env `TICKETCTL_LISTEN`, flag `--listen`.
    pub listen: String,
    /// Bearer token for admin routes; env `TICKETCTL_ADMIN_TOKEN` (ignored
    /// when empty). Empty: admin routes closed (`serve` warns at start).
    pub admin_token: String,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Open connections beyond this wait in the listen backlog.
    pub max_connections: usize,
    /// A client must send its request headers within this time.
    #[serde(deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// A request still running after this time is answered 503.
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// A request that cannot start its first Redis call within this is
    /// answered 503 `overloaded` at once (0: never).
    #[serde(deserialize_with = "de_duration")]
    pub max_queue_wait: Duration,
    /// On SIGTERM, in-flight requests get this long to finish.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// Serving threads, each with its own event loop and Redis connection
    /// (0: one per core).
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:3000".into(),
            admin_token: String::new(),
            body_limit: 16 * 1024,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_queue_wait: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(10),
            threads: 0,
        }
    }
}

/// `[compat]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompatConfig {
    /// The event the `/api/ticket/*` routes act on.
    pub event: String,
}

impl Default for CompatConfig {
    fn default() -> Self {
        CompatConfig {
            event: "default".into(),
        }
    }
}

/// The one event the proof of concept had: `default`, 100 tickets.
fn default_events() -> Vec<EventSeed> {
    vec![EventSeed::new("default", 100)]
}

/// One `[[events]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSeed {
    /// 1–64 characters of `a-z A-Z 0-9 - _`.
    pub id: String,
    /// Number of tickets, numbered `1..=capacity` (0 or left out with
    /// `sections`: their sum).
    #[serde(default)]
    pub capacity: u64,
    /// How long a hold lives.
    #[serde(default = "default_hold_ttl")]
    pub hold_ttl_seconds: u64,
    /// Most tickets in one hold.
    #[serde(default = "default_max_per_hold")]
    pub max_tickets_per_hold: u64,
    /// Currency of the prices (three capital letters).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Sections in ticket order (none: one section `general` at price 0).
    #[serde(default)]
    pub sections: Vec<crate::model::Section>,
    /// When sales open (RFC 3339, as a string or a TOML date-time).
    #[serde(default)]
    pub sales_start: Option<TimeValue>,
    /// When sales close.
    #[serde(default)]
    pub sales_end: Option<TimeValue>,
    /// Most tickets one user may hold plus have bought (0: no limit).
    #[serde(default)]
    pub max_tickets_per_user: u64,
    /// Most extensions per hold.
    #[serde(default)]
    pub max_extensions: u64,
    /// The waiting room (`queue = { enabled = true, max_active = 1000,
    /// admission_seconds = 600 }`); none when left out.
    #[serde(default)]
    pub queue: Option<QueueSeed>,
}

/// An event's waiting room as the config and the API give it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueSeed {
    /// Whether the room is on (off unless said).
    #[serde(default)]
    pub enabled: bool,
    /// Most places admitted at once.
    #[serde(default = "default_max_active", alias = "maxActive")]
    pub max_active: u64,
    /// How long an admission lasts.
    #[serde(default = "default_admission", alias = "admissionSeconds")]
    pub admission_seconds: u64,
}
fn default_max_active() -> u64 {
    crate::model::queue::DEFAULT_MAX_ACTIVE
}
fn default_admission() -> u64 {
    crate::model::queue::DEFAULT_ADMISSION_SECS
}

impl QueueSeed {
    /// The settings it gives (none when disabled).
    pub fn settings(&self) -> Option<crate::model::queue::QueueSettings> {
        self.enabled.then(|| crate::model::queue::QueueSettings {
            max_active: self.max_active,
            admission_ms: self.admission_seconds.saturating_mul(1000),
        })
    }
}

/// A point in time in the config: an RFC 3339 string or a TOML date-time.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TimeValue {
    /// `sales_start = "2026-12-01T20:00:00Z"`
    Text(String),
    /// `sales_start = 2026-12-01T20:00:00Z`
    Toml(toml::value::Datetime),
}

impl TimeValue {
    /// Unix ms, or why not.
    pub fn ms(&self) -> Result<u64, String> {
        let text = match self {
            TimeValue::Text(s) => s.clone(),
            TimeValue::Toml(d) => d.to_string(),
        };
        crate::time::parse_rfc3339_ms(&text).ok_or_else(|| {
            format!("{text:?} is not an RFC 3339 time with a zone, such as 2026-12-01T20:00:00Z")
        })
    }
}

fn default_currency() -> String {
    crate::model::DEFAULT_CURRENCY.into()
}

fn default_hold_ttl() -> u64 {
    crate::model::DEFAULT_HOLD_TTL_SECS
}
fn default_max_per_hold() -> u64 {
    crate::model::DEFAULT_MAX_PER_HOLD
}

/// `[release]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    /// Most holds one release script call frees.
    pub batch: usize,
    /// Longest sleep between passes. The worker sleeps until the next
    /// deadline and is woken when a sooner one appears; this bounds the
    /// sleep should a wake-up be missed (say, while Redis was unreachable).
    #[serde(deserialize_with = "de_duration")]
    pub max_sleep: Duration,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            batch: 1000,
            max_sleep: Duration::from_secs(5),
        }
    }
}

/// `[purchase]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PurchaseConfig {
    /// Jobs read per batch.
    pub batch: usize,
    /// A job unacknowledged this long is taken over by another worker.
    #[serde(deserialize_with = "de_duration")]
    pub claim_idle: Duration,
    /// Deliveries before a job goes to the dead-letter stream.
    pub max_attempts: u32,
    /// On SIGTERM, the batch in hand gets this long to finish.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// How long a Redis-stream sink remembers which orders it has, so a
    /// redelivered job is never appended twice.
    #[serde(deserialize_with = "de_duration")]
    pub dedupe_retention: Duration,
    /// Where each order is published.
    pub sinks: Vec<SinkConfig>,
}

impl Default for PurchaseConfig {
    fn default() -> Self {
        PurchaseConfig {
            batch: 256,
            claim_idle: Duration::from_secs(30),
            max_attempts: 5,
            shutdown_timeout: Duration::from_secs(10),
            dedupe_retention: Duration::from_secs(7 * 24 * 3600),
            sinks: vec![
                SinkConfig::RedisStream {
                    stream: "tc:payments".into(),
                    maxlen: DEFAULT_SINK_MAXLEN,
                },
                SinkConfig::RedisStream {
                    stream: "tc:fulfillment".into(),
                    maxlen: DEFAULT_SINK_MAXLEN,
                },
            ],
        }
    }
}

/// One `[[purchase.sinks]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Append each order to a Redis stream, exactly once.
    RedisStream {
        /// Stream key.
        stream: String,
        /// About how many entries the stream keeps (older ones are trimmed
        /// as new ones come, `XADD MAXLEN ~`); 0: all.
        #[serde(default = "default_sink_maxlen")]
        maxlen: u64,
    },
    /// POST batches of orders as JSON, signed with HMAC-SHA256, at least once.
    Webhook {
        /// Target URL (`http://`).
        url: String,
        /// HMAC key for the `X-Ticketctl-Signature` header.
        #[serde(default)]
        secret: String,
        /// Longest wait for one delivery.
        #[serde(default = "default_webhook_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
        /// For an `https://` URL: trust the CA certificates in this PEM
        /// file instead of the system's roots.
        #[serde(default)]
        tls_ca_file: Option<PathBuf>,
    },
}

/// Entries a stream sink keeps by default (~112 bytes each).
pub const DEFAULT_SINK_MAXLEN: u64 = 1_000_000;
/// The least `maxlen` (other than 0): approximate trimming works in nodes of
/// 100 entries.
pub const MIN_SINK_MAXLEN: u64 = 1_000;
/// The most `maxlen` may be (Redis reads it as a signed 64-bit number).
pub const MAX_SINK_MAXLEN: u64 = i64::MAX as u64;

fn default_sink_maxlen() -> u64 {
    DEFAULT_SINK_MAXLEN
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parses `500ms`, `30s`, `2m` (humantime syntax); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Where a webhook sink posts: parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// Host name or address (an IPv6 literal without its brackets).
    pub host: String,
    /// Port (80 when the URL names none).
    pub port: u16,
    /// Path and query (`/` when the URL names none).
    pub path: String,
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// `https://`: over TLS.
    pub tls: bool,
}

/// Parses an `http[s]://host[:port][/path][?query]` webhook URL with hyper's
/// own parser (IPv6 literals in brackets, ports, queries), so the config
/// check and the sink agree on what is a URL.
pub fn webhook_target(url: &str) -> Result<WebhookTarget, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("webhook url {url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "webhook url {url:?} must start with http:// or https://"
            ))
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("webhook url {url:?} has no host"))?;
    let authority = uri.authority().map_or("", |a| a.as_str());
    // The parser takes any port text; only a number is one.
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        port.parse::<u16>()
            .map_err(|_| format!("webhook url {url:?} has a bad port"))?;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(WebhookTarget {
        // `[::1]` names the address `::1`.
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        path: if path.is_empty() { "/" } else { path }.into(),
        authority: authority.into(),
        tls,
    })
}

/// Values from flags, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--redis`
    pub redis_url: Option<String>,
    /// `--listen`
    pub listen: Option<String>,
}

impl EventSeed {
    /// An event of `capacity` tickets with every other setting at its default.
    pub fn new(id: &str, capacity: u64) -> EventSeed {
        EventSeed {
            id: id.into(),
            capacity,
            hold_ttl_seconds: default_hold_ttl(),
            max_tickets_per_hold: default_max_per_hold(),
            currency: default_currency(),
            sections: Vec::new(),
            sales_start: None,
            sales_end: None,
            max_tickets_per_user: 0,
            max_extensions: 0,
            queue: None,
        }
    }

    /// Checks the seed against the domain's limits; a message names each
    /// setting as the `config` file does.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_as(&SettingNames::CONFIG).map(|_| ())
    }

    /// The capacity: as given, or the sections' sum when left out.
    fn capacity(&self) -> u64 {
        if self.capacity == 0 {
            self.sections
                .iter()
                .map(|s| s.capacity)
                .fold(0, u64::saturating_add)
        } else {
            self.capacity
        }
    }

    /// Checks the seed, naming each setting as `names` says; its settings
    /// as the store keeps them.
    pub fn validate_as(&self, names: &SettingNames) -> Result<EventSettings, String> {
        let capacity = self.capacity();
        if self.capacity == 0 && !self.sections.is_empty() {
            // The capacity comes from the sections: say what is wrong with them.
            crate::model::Selling {
                sections: self.sections.clone(),
                ..Default::default()
            }
            .check(&self.id, capacity, |f| names.field(f))?;
            if capacity > crate::model::MAX_CAPACITY {
                return Err(format!(
                    "event {}: the sections add up to {capacity} tickets, more than {}",
                    self.id,
                    crate::model::MAX_CAPACITY
                ));
            }
        }
        crate::model::check_event(
            &self.id,
            capacity,
            self.hold_ttl_seconds,
            self.max_tickets_per_hold,
            names,
        )?;
        let time = |v: &Option<TimeValue>, field: &str| -> Result<Option<u64>, String> {
            v.as_ref()
                .map(|t| t.ms())
                .transpose()
                .map_err(|e| format!("event {}: {}: {e}", self.id, names.field(field)))
        };
        let selling = crate::model::Selling {
            currency: self.currency.clone(),
            sections: self.sections.clone(),
            sales_start_ms: time(&self.sales_start, "salesStart")?,
            sales_end_ms: time(&self.sales_end, "salesEnd")?,
            max_per_user: self.max_tickets_per_user,
            max_extensions: self.max_extensions,
            queue: self.queue.as_ref().and_then(QueueSeed::settings),
        };
        selling.check(&self.id, capacity, |f| names.field(f))?;
        Ok(EventSettings {
            id: self.id.clone(),
            capacity,
            hold_ttl_ms: self.hold_ttl_seconds * 1000,
            max_per_hold: self.max_tickets_per_hold,
            selling,
        })
    }

    /// The event's settings as the store keeps them (a validated seed).
    pub fn settings(&self) -> EventSettings {
        self.validate_as(&SettingNames::CONFIG)
            .expect("settings() of a validated seed")
    }
}

impl Config {
    /// Loads the configuration: `path` if given (it must exist), else
    /// `./ticketctl.toml` when present, else defaults; then the environment,
    /// then `overrides`; then validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let default_path = Path::new("ticketctl.toml");
        let file = match path {
            Some(p) => Some(p),
            None if default_path.exists() => Some(default_path),
            None => None,
        };
        let mut cfg = match file {
            Some(p) => Self::from_file(p)?,
            None => Config::with_default_events(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        if let Some(url) = &overrides.redis_url {
            cfg.redis.url = url.clone();
        }
        if let Some(listen) = &overrides.listen {
            cfg.server.listen = listen.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses one TOML file. A file without `[[events]]` gets the default event.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.into(),
            cause,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parses TOML text; the error is a one-line message naming the key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| one_line(&e.to_string()))
    }

    /// Defaults plus the one event the proof of concept had: `default`, 100 tickets.
    pub fn with_default_events() -> Config {
        Config {
            events: default_events(),
            ..Config::default()
        }
    }

    /// Applies `TICKETCTL_REDIS_URL`, `TICKETCTL_LISTEN`,
    /// `TICKETCTL_ADMIN_TOKEN`, `TICKETCTL_PAYMENT_SECRET`,
    /// `TICKETCTL_JWT_SECRET` and `TICKETCTL_MAX_QUEUE_WAIT`, each ignored
    /// when empty, as if unset; a duration that does not read is an error.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let set = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(v) = set("TICKETCTL_MAX_QUEUE_WAIT") {
            self.server.max_queue_wait = parse_duration(&v)
                .map_err(|e| ConfigError::Invalid(format!("TICKETCTL_MAX_QUEUE_WAIT: {e}")))?;
        }
        if let Some(v) = set("TICKETCTL_REDIS_URL") {
            self.redis.url = v;
        }
        if let Some(v) = set("TICKETCTL_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = set("TICKETCTL_ADMIN_TOKEN") {
            self.server.admin_token = v;
        }
        if let Some(v) = set("TICKETCTL_PAYMENT_SECRET") {
            self.payment.secret = v;
        }
        if let Some(v) = set("TICKETCTL_JWT_SECRET") {
            self.auth.jwt_secret = v;
        }
        Ok(())
    }

    /// Checks every value that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        // The key is read and parsed here, so that a bad one stops every
        // command with its one-line error, not the first request.
        crate::auth::Verifier::from_config(&self.auth).map_err(ConfigError::Invalid)?;
        for node in &self.redis.cluster {
            if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                return bad(format!(
                    "redis.cluster: {:?} must be a redis:// or rediss:// URL",
                    redact_url(node)
                ));
            }
        }
        if !self.redis.url.split(',').all(|u| {
            u.trim().starts_with("redis://")
                || u.trim().starts_with("rediss://")
                || u.trim().starts_with("unix://")
        }) {
            return bad(format!(
                "redis.url must start with redis://, rediss:// or unix:// (got {:?})",
                redact_url(&self.redis.url)
            ));
        }
        for u in self.redis.url.split(',').map(str::trim) {
            if !u.starts_with("unix://") && redis::parse_redis_url(u).is_none() {
                return bad(format!(
                    "redis.url: {:?} is not a valid URL (host, and a port of 1-65535)",
                    redact_url(u)
                ));
            }
        }
        // Then the ones in use (the cluster's nodes when it has any), as the
        // Redis client reads them: a host, a database number.
        let key = match self.redis.cluster.is_empty() {
            true => "redis.url",
            false => "redis.cluster",
        };
        for u in self.redis.endpoints() {
            if let Err(e) = redis::IntoConnectionInfo::into_connection_info(u) {
                // The client's text is "<what> - <kind>[: <detail>]".
                let text = e.to_string();
                let what = text.split(" - ").next().unwrap_or(&text);
                return bad(format!(
                    "{key}: {:?} is not a usable Redis URL ({})",
                    redact_url(u),
                    what.to_lowercase()
                ));
            }
        }
        // The TLS files matter only when the Redis in use is reached over
        // TLS; a config whose rediss:// URL is overridden by a plain one
        // keeps working.
        let tls = self
            .redis
            .endpoints()
            .iter()
            .any(|u| u.starts_with("rediss://"));
        for (key, file) in [
            ("tls_ca_file", &self.redis.tls_ca_file),
            ("tls_cert_file", &self.redis.tls_cert_file),
            ("tls_key_file", &self.redis.tls_key_file),
        ] {
            if let (Some(f), true) = (file, tls) {
                match std::fs::read(f) {
                    Err(e) => return bad(format!("redis.{key}: cannot read {}: {e}", f.display())),
                    Ok(pem) if !pem.windows(11).any(|w| w == b"-----BEGIN ") => {
                        return bad(format!(
                            "redis.{key}: {} is not a PEM file (no -----BEGIN line)",
                            f.display()
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
        if self.redis.tls_cert_file.is_some() != self.redis.tls_key_file.is_some() {
            return bad("redis.tls_cert_file and redis.tls_key_file go together".into());
        }
        if self.redis.timeout.is_zero() {
            return bad("redis.timeout must be greater than 0".into());
        }
        if !valid_listen(&self.server.listen) {
            return bad(format!(
                "server.listen must be an address such as 127.0.0.1:3000 or localhost:3000 (got {:?})",
                self.server.listen
            ));
        }
        if self.server.body_limit < 64 {
            return bad("server.body_limit must be at least 64 bytes".into());
        }
        if self.server.threads > 1024 {
            return bad(format!(
                "server.threads must be at most 1024 (0: one per core), not {}",
                self.server.threads
            ));
        }
        if self.server.max_connections == 0 {
            return bad("server.max_connections must be at least 1".into());
        }
        if !valid_event_id(&self.compat.event) {
            return bad(format!(
                "compat.event {:?} is not a valid event id",
                self.compat.event
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.events {
            e.validate()
                .map_err(|m| ConfigError::Invalid(format!("events: {m}")))?;
            if !seen.insert(&e.id) {
                return bad(format!("events: event {} is listed twice", e.id));
            }
        }
        let l = &self.limits;
        for (name, v) in [
            ("per_ip_rate", l.per_ip_rate),
            ("per_ip_burst", l.per_ip_burst),
            ("per_user_rate", l.per_user_rate),
            ("per_user_burst", l.per_user_burst),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("limits.{name} must be a number >= 0"));
            }
        }
        if (l.per_ip_rate > 0.0 && l.per_ip_burst < 1.0)
            || (l.per_user_rate > 0.0 && l.per_user_burst < 1.0)
        {
            return bad("limits: a burst must be at least 1 when its rate is set".into());
        }
        if self.release.batch == 0 {
            return bad("release.batch must be at least 1".into());
        }
        if self.purchase.batch == 0 || self.purchase.batch > 10_000 {
            return bad("purchase.batch must be 1..=10000".into());
        }
        if self.purchase.claim_idle < Duration::from_millis(100) {
            return bad("purchase.claim_idle must be at least 100ms (a shorter one takes over jobs still being worked on)".into());
        }
        if self.purchase.dedupe_retention < Duration::from_secs(60) {
            return bad("purchase.dedupe_retention must be at least 60s (it is what keeps stream sinks free of duplicates)".into());
        }
        for (key, d) in [
            ("release.max_sleep", self.release.max_sleep),
            ("server.request_timeout", self.server.request_timeout),
            ("server.header_timeout", self.server.header_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{key} must be greater than 0"));
            }
        }
        if self.purchase.max_attempts == 0 {
            return bad("purchase.max_attempts must be at least 1".into());
        }
        for s in &self.purchase.sinks {
            match s {
                SinkConfig::RedisStream { stream, .. }
                    if stream.is_empty() || stream.contains(['{', '}']) =>
                {
                    return bad(format!(
                        "purchase.sinks: stream {stream:?} must be a non-empty name without braces"
                    ))
                }
                SinkConfig::RedisStream { stream, maxlen }
                    if *maxlen != 0 && !(MIN_SINK_MAXLEN..=MAX_SINK_MAXLEN).contains(maxlen) =>
                {
                    return bad(format!(
                        "purchase.sinks: stream {stream:?}: maxlen must be 0 (keep all) or {MIN_SINK_MAXLEN}..={MAX_SINK_MAXLEN}"
                    ))
                }
                SinkConfig::Webhook {
                    url,
                    secret,
                    timeout,
                    tls_ca_file,
                } => {
                    // The sink's own parser: what it could not use is
                    // refused here (the scheme first, as before).
                    match webhook_target(url) {
                        Err(e) => return bad(format!("purchase.sinks: {e}")),
                        Ok(t) if !t.tls && tls_ca_file.is_some() => {
                            return bad(format!(
                                "purchase.sinks: webhook {url:?}: tls_ca_file is for https:// URLs"
                            ))
                        }
                        Ok(_) => {}
                    }
                    if let Some(f) = tls_ca_file {
                        if let Err(e) = crate::tls::ca_roots(f) {
                            return bad(format!("purchase.sinks: webhook {url:?}: {e}"));
                        }
                    }
                    if secret.is_empty() {
                        return bad(format!(
                            "purchase.sinks: webhook {url:?} needs a secret (its receiver checks X-Ticketctl-Signature with it)"
                        ));
                    }
                    if timeout.is_zero() {
                        return bad(format!(
                            "purchase.sinks: webhook {url:?} timeout must be greater than 0"
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// An address to listen on: `IP:port` (`[::1]:3000` for IPv6) or
/// `hostname:port` (resolved when the socket is bound). A host of digits
/// and dots must be a whole IPv4 address (`0:3000` is not `0.0.0.0`).
fn valid_listen(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !host.starts_with('-')
}

/// Hides the password of a Redis URL, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../ticketctl.toml.example");
        let cfg = Config::from_toml(text).expect("example parses");
        cfg.validate().expect("example validates");
        // Every key, so that a new one cannot be left out of the example.
        assert_eq!(cfg, Config::with_default_events());
    }

    #[test]
    fn the_shedding_limit_comes_from_the_environment_too() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| (k == "TICKETCTL_MAX_QUEUE_WAIT").then(|| "250ms".to_string()))
            .unwrap();
        assert_eq!(cfg.server.max_queue_wait, Duration::from_millis(250));
        let err = cfg
            .apply_env(|k| (k == "TICKETCTL_MAX_QUEUE_WAIT").then(|| "soon".to_string()))
            .unwrap_err();
        assert!(
            err.to_string().contains("TICKETCTL_MAX_QUEUE_WAIT"),
            "{err}"
        );
    }

    #[test]
    fn an_events_queue_is_off_unless_enabled_and_takes_either_spelling() {
        let room = |q: &str| {
            let cfg = Config::from_toml(&format!(
                "[[events]]\nid = \"e\"\ncapacity = 10\nqueue = {q}\n"
            ))
            .expect("parses");
            cfg.events[0].queue.as_ref().and_then(QueueSeed::settings)
        };
        assert_eq!(room("{ max_active = 5 }"), None);
        let on = room("{ enabled = true, max_active = 5, admission_seconds = 30 }").unwrap();
        assert_eq!((on.max_active, on.admission_ms), (5, 30_000));
        let camel = room("{ enabled = true, maxActive = 5, admissionSeconds = 30 }").unwrap();
        assert_eq!(camel, on);
        let defaults = room("{ enabled = true }").unwrap();
        assert_eq!(
            (defaults.max_active, defaults.admission_ms),
            (1000, 600_000)
        );
    }

    #[test]
    fn listen_takes_an_ip_or_a_host_name_with_a_port() {
        for ok in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "0.0.0.0:0",
            "localhost:3000",
            "api.example-1.com:80",
        ] {
            assert!(valid_listen(ok), "{ok}");
        }
        for bad in [
            "localhost",
            ":3000",
            "localhost:",
            "localhost:99999",
            "a b:80",
            "-x:80",
            "x..y:80",
            "http://x:80",
        ] {
            assert!(!valid_listen(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
        let err = Config::from_toml("[sever]\n").unwrap_err();
        assert!(err.contains("sever"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml("[purchase]\nclaim_idle = \"soon\"\n").unwrap_err();
        assert!(err.contains("claim_idle") || err.contains("soon"), "{err}");
        let cfg = Config::from_toml("[[events]]\nid = \"a b\"\ncapacity = 5\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("a b"));
        let cfg = Config::from_toml("[[events]]\nid = \"a\"\ncapacity = 0\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("capacity"));
        let cfg = Config::from_toml("[server]\nlisten = \"nowhere\"\n").unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server.listen"));
        let named = |toml: &str, key: &str| {
            let cfg = Config::from_toml(toml).unwrap();
            let e = cfg.validate().expect_err(toml).to_string();
            assert!(e.contains(key), "{toml}: {e}");
        };
        named("[redis]\nurl = \"redis://127.0.0.1:99999\"\n", "redis.url");
        named(
            "[redis]\nurl = \"redis://127.0.0.1:6379/abc\"\n",
            "database number",
        );
        named("[redis]\nurl = \"redis://\"\n", "redis.url");
        named(
            "[redis]\ncluster = [\"redis://127.0.0.1:7000/x\"]\n",
            "redis.cluster",
        );
        // The url is not used with a cluster, and not refused for it.
        let cfg = Config::from_toml(
            "[redis]\nurl = \"redis://127.0.0.1:1/x\"\ncluster = [\"redis://127.0.0.1:7000\"]\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        named(
            "[server]\nheader_timeout = \"0s\"\n",
            "server.header_timeout",
        );
        let hook = "[[purchase.sinks]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        named(hook, "needs a secret");
        named(
            &format!("{hook}secret = \"s\"\ntimeout = \"0s\"\n"),
            "timeout",
        );
        // What the sink could not use is a configuration error, not a
        // worker that fails to start.
        named(
            "[[purchase.sinks]]\nkind = \"webhook\"\nurl = \"http://x:notaport/\"\nsecret = \"s\"\n",
            "bad port",
        );
        assert!(Config::from_toml(
            "[[purchase.sinks]]\nkind = \"webhook\"\nurl = \"http://[::1]:8080/h\"\nsecret = \"s\"\n"
        )
        .unwrap()
        .validate()
        .is_ok());
        let dir = std::env::temp_dir().join(format!("tc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let ca = format!("tls_ca_file = {:?}\n", not_pem.display().to_string());
        let plain = Config::from_toml(&format!("[redis]\nurl = \"redis://x:1\"\n{ca}")).unwrap();
        assert!(
            plain.validate().is_ok(),
            "TLS files are ignored without TLS"
        );
        named(
            &format!("[redis]\nurl = \"rediss://x:1\"\n{ca}"),
            "is not a PEM file",
        );
        std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let cfg = Config::from_toml(&format!("[redis]\nurl = \"rediss://x:1\"\n{ca}")).unwrap();
        assert!(cfg.validate().is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn webhook_urls_parse() {
        let t = |host: &str, port, path: &str, authority: &str| WebhookTarget {
            host: host.into(),
            port,
            path: path.into(),
            authority: authority.into(),
            tls: false,
        };
        for (url, want) in [
            (
                "http://127.0.0.1:8080/hooks/orders",
                t("127.0.0.1", 8080, "/hooks/orders", "127.0.0.1:8080"),
            ),
            (
                "http://example.test",
                t("example.test", 80, "/", "example.test"),
            ),
            (
                "http://[::1]:8080/h?k=v",
                t("::1", 8080, "/h?k=v", "[::1]:8080"),
            ),
            (
                "https://pay.example.test/hook",
                WebhookTarget {
                    tls: true,
                    ..t("pay.example.test", 443, "/hook", "pay.example.test")
                },
            ),
        ] {
            assert_eq!(webhook_target(url), Ok(want), "{url}");
        }
        for bad in ["ftp://x", "http://x:notaport/", "http:///x"] {
            assert!(webhook_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_variable_is_unset_for_all_three() {
        let file = "[redis]\nurl = \"redis://file:1\"\n[server]\nlisten = \"127.0.0.1:1\"\nadmin_token = \"from-file\"\n";
        let mut cfg = Config::from_toml(file).unwrap();
        cfg.apply_env(|_| Some(String::new())).unwrap();
        assert_eq!(
            (
                cfg.redis.url.as_str(),
                cfg.server.listen.as_str(),
                cfg.server.admin_token.as_str()
            ),
            ("redis://file:1", "127.0.0.1:1", "from-file")
        );
        cfg.apply_env(|k| (k == "TICKETCTL_ADMIN_TOKEN").then(|| "from-env".to_string()))
            .unwrap();
        assert_eq!(cfg.server.admin_token, "from-env");
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        let mut cfg = Config::from_toml(
            "[redis]\nurl = \"redis://file:1\"\n[server]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        assert_eq!(cfg.redis.url, "redis://file:1");
        cfg.apply_env(|k| (k == "TICKETCTL_REDIS_URL").then(String::new))
            .unwrap();
        assert_eq!(
            cfg.redis.url, "redis://file:1",
            "an empty variable is unset"
        );
        cfg.apply_env(|k| (k == "TICKETCTL_REDIS_URL").then(|| "redis://env:2".to_string()))
            .unwrap();
        assert_eq!(cfg.redis.url, "redis://env:2");
        assert_eq!(cfg.server.listen, "127.0.0.1:1");
        let dir = std::env::temp_dir().join(format!("tc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.toml");
        std::fs::write(&p, "[redis]\nurl = \"redis://file:1\"\n").unwrap();
        let o = Overrides {
            redis_url: Some("redis://flag:3".into()),
            listen: None,
        };
        let cfg = Config::load(Some(&p), &o).unwrap();
        assert_eq!(cfg.redis.url, "redis://flag:3");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact_url("redis://host"), "redis://host");
    }
}
