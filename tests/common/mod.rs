//! Test harness: a private `redis-server` per test on a free port (no
//! persistence, killed on drop), the API served in-process on 127.0.0.1:0,
//! the binary for command-line tests, and a small HTTP client.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use ticketctl::config::Config;
use ticketctl::daemon::metrics::Metrics;
use ticketctl::daemon::serve;
use ticketctl::store::keys::EventKeys;
use ticketctl::store::Store;

/// A free loopback port (bound and released; the OS will not hand it out
/// again immediately).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server.
pub struct Redis {
    pub port: u16,
    child: Child,
    pub dir: std::path::PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    /// Starts on a free port with extra arguments (e.g. `--appendonly yes`).
    pub fn start_with(extra: &[&str]) -> Redis {
        let port = free_port();
        Self::start_on(port, extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let dir =
            std::env::temp_dir().join(format!("ticketctl-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--dir".to_string(), dir.display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let r = Redis { port, child, dir };
        r.wait_ready();
        r
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(out) = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "PING"])
                .output()
            {
                if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a redis-cli command and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Calls of `command` (lower case, as INFO names it) this server has run
    /// so far.
    pub fn command_calls(&self, command: &str) -> u64 {
        let stat = format!("cmdstat_{command}:calls=");
        self.cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix(&stat))
            .and_then(|l| l.split(',').next())
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// Script calls (FCALL and EVALSHA) this server has run so far.
    pub fn script_calls(&self) -> u64 {
        self.command_calls("fcall") + self.command_calls("evalsha")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Test configuration: the given Redis, an admin token, short timeouts.
pub fn config(redis: &Redis) -> Config {
    let mut cfg = Config::with_default_events();
    cfg.redis.url = redis.url();
    cfg.redis.timeout = Duration::from_millis(500);
    cfg.server.admin_token = "test-token".into();
    // One serving thread: a test's requests share one group commit.
    cfg.server.threads = 1;
    // A slow, busy machine must not shed a test's requests (tests/limits.rs
    // covers shedding).
    cfg.server.max_queue_wait = Duration::from_secs(5);
    cfg
}

/// The API served in-process; stopped on drop.
pub struct Api {
    pub addr: SocketAddr,
    pub store: Store,
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<bool>>,
}

impl Api {
    /// The server `serve` runs (`daemon::serve`), its events seeded as
    /// `serve` seeds them.
    pub async fn start(cfg: Config) -> Api {
        let store = Store::connect(&cfg.redis)
            .await
            .expect("connect to test redis");
        serve::seed_events(&store, &cfg).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let handle = tokio::spawn({
            let (store, token) = (store.clone(), token.clone());
            async move {
                serve::run(listener, store, Arc::new(Metrics::default()), &cfg, token)
                    .await
                    .expect("the serving threads start")
            }
        });
        Api {
            addr,
            store,
            token,
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) -> bool {
        self.token.cancel();
        self.handle.take().unwrap().await.unwrap()
    }

    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        request(
            self.addr,
            method,
            path,
            body.map(|b| b.to_string()),
            &[("content-type", "application/json")],
        )
        .await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        request(
            self.addr,
            method,
            path,
            body.map(|b| b.to_string()),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer test-token"),
            ],
        )
        .await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Resp {
        request(self.addr, method, path, body, headers).await
    }
}

/// What a hold asks for: these tickets, or this many of the lowest
/// available ones.
#[derive(Debug, Clone, Copy)]
pub enum Want<'a> {
    Tickets(&'a [u64]),
    Quantity(u64),
}

impl Want<'_> {
    fn field(self) -> (&'static str, Value) {
        match self {
            Want::Tickets(ids) => ("ticketIds", json!(ids)),
            Want::Quantity(n) => ("quantity", json!(n)),
        }
    }
}

/// The routes of the contract, typed: each returns the response as it came.
impl Api {
    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None).await
    }

    /// `POST /v1/events` with the admin token.
    pub async fn create_event(&self, body: Value) -> Resp {
        self.admin("POST", "/v1/events", Some(body)).await
    }

    /// `POST /v1/events/{event}/holds` for `user` (a string or a number).
    pub async fn hold(&self, event: &str, user: impl Into<Value>, want: Want<'_>) -> Resp {
        let (field, value) = want.field();
        self.req(
            "POST",
            &format!("/v1/events/{event}/holds"),
            Some(json!({"userId": user.into(), field: value})),
        )
        .await
    }

    /// A hold that must be granted (201); its id.
    #[track_caller]
    pub fn hold_ok<'a>(
        &'a self,
        event: &'a str,
        user: impl Into<Value> + 'a,
        want: Want<'a>,
    ) -> impl std::future::Future<Output = String> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.hold(event, user, want).await;
            assert_eq!(r.status, 201, "hold at {caller}: {}", r.text);
            r.hold_id()
        }
    }

    /// `GET /v1/holds/{hold}`.
    pub async fn get_hold(&self, hold: &str) -> Resp {
        self.get(&format!("/v1/holds/{hold}")).await
    }

    /// `POST /v1/holds/{hold}/purchase` by `user`.
    pub async fn buy(&self, hold: &str, user: impl Into<Value>) -> Resp {
        self.req(
            "POST",
            &format!("/v1/holds/{hold}/purchase"),
            Some(json!({"userId": user.into()})),
        )
        .await
    }

    /// `DELETE /v1/holds/{hold}` by `user`.
    pub async fn cancel(&self, hold: &str, user: impl Into<Value>) -> Resp {
        self.req(
            "DELETE",
            &format!("/v1/holds/{hold}"),
            Some(json!({"userId": user.into()})),
        )
        .await
    }

    /// `GET /v1/events/{event}`: its (available, held, sold).
    #[track_caller]
    pub fn counts<'a>(
        &'a self,
        event: &'a str,
    ) -> impl std::future::Future<Output = (u64, u64, u64)> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.get(&format!("/v1/events/{event}")).await;
            assert_eq!(r.status, 200, "counts at {caller}: {}", r.text);
            let e = r.json();
            let n = |f: &str| {
                e[f].as_u64()
                    .unwrap_or_else(|| panic!("{f} of {event} at {caller}: {e}"))
            };
            (n("available"), n("held"), n("sold"))
        }
    }

    /// `POST path` with `body` as it is, and only `headers`.
    pub async fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        self.raw("POST", path, Some(body.into()), headers).await
    }

    /// `POST path` with a JSON body and an Idempotency-Key.
    pub async fn with_key(&self, path: &str, body: &Value, key: &str) -> Resp {
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        self.post_raw(path, &body.to_string(), &headers).await
    }

    /// `POST /api/ticket/reserve` (compatibility route).
    pub async fn reserve(&self, user: &str, ticket: u64) -> Resp {
        let body = json!({"userId": user, "ticketId": ticket});
        self.req("POST", "/api/ticket/reserve", Some(body)).await
    }

    /// `POST /api/ticket/buy` (compatibility route).
    pub async fn buy_ticket(&self, user: &str, ticket: u64) -> Resp {
        let body = json!({"ticketId": ticket, "userId": user});
        self.req("POST", "/api/ticket/buy", Some(body)).await
    }

    /// `POST /api/ticket/release` with the admin token (compatibility route).
    pub async fn release(&self, ticket: u64) -> Resp {
        let body = json!({"ticketId": ticket});
        self.admin("POST", "/api/ticket/release", Some(body)).await
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }
}

/// The value of the unlabelled metric `name` in a `/metrics` text (0 when
/// absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |n| n.parse().unwrap())
}

/// A JSON array of ticket ids.
#[track_caller]
pub fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// Whether `check` holds within `attempts` tries, `pause` apart.
pub async fn eventually<F, Fut>(attempts: u32, pause: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..attempts {
        if check().await {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    false
}

/// Available, held and sold tickets of `event` add up to its capacity.
#[track_caller]
pub fn assert_counts_add_up<'a>(
    api: &'a Api,
    event: &'a str,
    capacity: u64,
) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let (available, held, sold) = api.counts(event).await;
        assert_eq!(
            available + held + sold,
            capacity,
            "{event} at {caller}: {available} available, {held} held, {sold} sold"
        );
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
    /// Asserts this is the error answer with `status` and `code`; shows the
    /// body when it is not.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            self.text
        );
    }

    /// Asserts the status is `status`; shows the body when it is not.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `holdId` of a hold's answer.
    #[track_caller]
    pub fn hold_id(&self) -> String {
        self.json()["holdId"]
            .as_str()
            .unwrap_or_else(|| panic!("no holdId: {}", self.text))
            .to_string()
    }

    /// The error message of an error answer.
    #[track_caller]
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.text))
            .to_string()
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Resp {
    try_request(addr, method, path, body, headers)
        .await
        .expect("response")
}

/// One request on a fresh connection; transport errors are returned.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Writes `bytes` on a fresh connection and returns what its first read
/// brings (waiting 5 s at most): for requests the client cannot build.
pub async fn first_read(addr: SocketAddr, bytes: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&bytes).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).expect("an answer within 5 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap()
}

/// Writes `bytes` on a fresh connection, closes its writing half, and
/// returns all that comes back until the server closes (10 s at most).
pub async fn half_closed_exchange(addr: SocketAddr, bytes: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        // Up to the answer's end or the timeout; either way what came.
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).to_string()
    })
    .await
    .unwrap()
}

/// Path to the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ticketctl")
}

/// Runs the binary to completion with a clean `TICKETCTL_*` environment.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env_remove("TICKETCTL_REDIS_URL")
        .env_remove("TICKETCTL_LISTEN")
        .env_remove("TICKETCTL_ADMIN_TOKEN")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

/// A `serve` process; killed on drop.
pub struct ServeProc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ServeProc {
    pub fn start(redis: &Redis, extra: &[&str]) -> ServeProc {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_at(redis, addr, extra)
    }

    pub fn start_at(redis: &Redis, addr: SocketAddr, extra: &[&str]) -> ServeProc {
        let child = Command::new(bin())
            .args([
                "serve",
                "--redis",
                &redis.url(),
                "--listen",
                &addr.to_string(),
            ])
            .args(extra)
            .env("TICKETCTL_ADMIN_TOKEN", "test-token")
            // No test of a serve process is about shedding (those run the
            // server in-process with their own limit): on a slow, busy
            // machine a request may wait long for its turn.
            .env("TICKETCTL_MAX_QUEUE_WAIT", "30s")
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        ServeProc { child, addr }
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Redis Cluster: `masters` masters with `replicas` replicas each,
/// on loopback ports whose cluster-bus ports (+10000) are free too. Killed on
/// drop.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

/// A free port whose cluster bus port (+10000) is free too.
pub fn free_cluster_port() -> u16 {
    loop {
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port() % 20000 + 20000;
        drop(l);
        if StdListener::bind(("127.0.0.1", p)).is_ok()
            && StdListener::bind(("127.0.0.1", p + 10000)).is_ok()
        {
            return p;
        }
    }
}

/// Arguments of a cluster node. A replica may always fail over: without
/// `cluster-replica-validity-factor 0`, replicas of an idle master here
/// judged their data too old and never took over.
pub fn cluster_node_args(conf: &str) -> Vec<&str> {
    vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        conf,
        "--cluster-node-timeout",
        "1000",
        "--cluster-replica-validity-factor",
        "0",
        // The other masters keep serving their slots while one fails over.
        "--cluster-require-full-coverage",
        "no",
        // Start replicating at once (the default waits 5 s for more replicas).
        "--repl-diskless-sync-delay",
        "0",
    ]
}

impl Cluster {
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_cluster_port();
            let conf = format!("nodes-{port}.conf");
            nodes.push(Redis::start_on(port, &cluster_node_args(&conf)));
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Cluster { nodes };
        c.wait_ok();
        // Every replica in sync before the cluster is used.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.nodes.iter().all(|n| {
            let info = n.cli(&["INFO", "replication"]);
            info.contains("role:master") || info.contains("master_link_status:up")
        }) {
            assert!(Instant::now() < deadline, "replicas did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// Waits until every live node says the cluster is ok.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed URLs, comma-separated (what `--redis` takes).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node (index) that is master for `key`'s slot.
    pub fn master_of(&self, key: &str) -> usize {
        self.master_of_seen_by(0, key)
    }

    /// The master for `key`'s slot as node `asked` sees it.
    pub fn master_of_seen_by(&self, asked: usize, key: &str) -> usize {
        self.try_master_of_seen_by(asked, key)
            .unwrap_or_else(|| panic!("no master for {key}"))
    }

    /// The master for `key`'s slot as node `asked` sees it, if any.
    pub fn try_master_of_seen_by(&self, asked: usize, key: &str) -> Option<usize> {
        let slot: u16 = self.nodes[asked]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap();
        let shards = self.nodes[asked].cli(&["CLUSTER", "NODES"]);
        for line in shards.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    if (a..=b).contains(&slot) {
                        return self.nodes.iter().position(|n| n.port == port);
                    }
                }
            }
        }
        None
    }

    /// A redis-cli command on the node owning `key`.
    pub fn cli_for(&self, key: &str, args: &[&str]) -> String {
        self.nodes[self.master_of(key)].cli(args)
    }
}

/// Test configuration for a cluster.
pub fn cluster_config(cluster: &Cluster) -> Config {
    let mut cfg = Config::with_default_events();
    cfg.redis.cluster = cluster.nodes.iter().map(|n| n.url()).collect();
    cfg.redis.timeout = Duration::from_millis(1000);
    cfg.server.admin_token = "test-token".into();
    cfg.server.threads = 1;
    cfg
}

/// The keys of `event`.
pub fn keys(event: &str) -> EventKeys {
    EventKeys::new(event)
}

/// The order ids in a sink stream, in order (an id twice means published twice).
pub fn sink_order_ids(redis: &Redis, stream: &str) -> Vec<String> {
    let out = redis.cli(&["XRANGE", stream, "-", "+"]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "orderId")
        .map(|w| w[1].to_string())
        .collect()
}

/// A config file of its own for one test, removed with its folder on drop.
pub struct ConfigFile {
    dir: std::path::PathBuf,
    /// The file.
    pub path: std::path::PathBuf,
}

impl ConfigFile {
    /// Writes `toml` to a file named after `name` (and this process).
    pub fn new(name: &str, toml: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("tc-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml).unwrap();
        ConfigFile { dir, path }
    }

    /// The path, as a flag value.
    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// SIGKILLs the master `victim` and waits (up to 30 s) until another
    /// node owns `key`'s slot and the cluster is ok again, as a node other
    /// than the victim (returned: the witness) sees it.
    pub async fn kill_master_and_wait_for_failover(&self, victim: usize, key: &str) -> usize {
        Command::new("kill")
            .args(["-9", &self.nodes[victim].pid().to_string()])
            .status()
            .unwrap();
        let witness = (0..self.nodes.len()).find(|i| *i != victim).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owner = self.try_master_of_seen_by(witness, key);
            if owner.is_some_and(|o| o != victim)
                && self.nodes[witness]
                    .cli(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            {
                return witness;
            }
            assert!(Instant::now() < deadline, "no failover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A small deterministic xorshift generator for tests (seeded, so a failing
/// run can be replayed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}
