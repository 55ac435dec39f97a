//! Redis over TLS (`rediss://`) with a password: the store works through it,
//! and the password never shows in messages. A Redis Cluster over TLS with a
//! custom CA: the store works across its masters.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ticketctl::config::RedisConfig;
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest};
use ticketctl::store::Store;

struct TlsRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, and a server certificate for 127.0.0.1 it signs (rustls refuses a
/// CA as the server's own certificate), written into `dir`.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed (scripts/test installs it)");
        assert!(ok.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=ticketctl test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

/// redis-cli over TLS to a node, trusting the test CA.
fn tls_cli(dir: &std::path::Path, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "--tls",
            "--cacert",
            dir.join("ca.pem").to_str().unwrap(),
            "--no-auth-warning",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Arguments of a TLS-only redis-server on `port` with the certificates in
/// its working directory.
fn tls_server_args(port: &str) -> Vec<&str> {
    vec![
        "--port",
        "0",
        "--tls-port",
        port,
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        "cert.pem",
        "--tls-key-file",
        "key.pem",
        "--tls-ca-cert-file",
        "ca.pem",
        "--tls-auth-clients",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
}

fn start() -> TlsRedis {
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("tc-tls-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let port_text = port.to_string();
    let child = Command::new("redis-server")
        .args(tls_server_args(&port_text))
        .args(["--requirepass", "s3cret-pw"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = TlsRedis { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tls_cli(&r.dir, port, &["-a", "s3cret-pw", "PING"]) == "PONG" {
            return r;
        }
        assert!(Instant::now() < deadline, "TLS redis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_store_works_over_tls_with_a_password() {
    let r = start();
    let cfg = RedisConfig {
        url: format!("rediss://:s3cret-pw@127.0.0.1:{}", r.port),
        tls_ca_file: Some(r.dir.join("ca.pem")),
        ..RedisConfig::default()
    };
    let store = Store::connect(&cfg).await.expect("TLS connection");
    store
        .create_event(&EventSettings {
            id: "tls".into(),
            capacity: 5,
            hold_ttl_ms: 60_000,
            max_per_hold: 5,
            selling: Default::default(),
        })
        .await
        .unwrap();
    let h = store
        .hold("tls", "u", &HoldRequest::Quantity(2), None)
        .await
        .unwrap();
    assert!(matches!(h, HoldOutcome::Held { .. }), "{h:?}");

    // The command line too, with the CA in a config file.
    let toml = r.dir.join("t.toml");
    std::fs::write(
        &toml,
        format!(
            "[redis]\ntls_ca_file = \"{}\"\n",
            r.dir.join("ca.pem").display()
        ),
    )
    .unwrap();
    let o = common::run_cli(&[
        "event",
        "list",
        "--json",
        "--config",
        toml.to_str().unwrap(),
        "--redis",
        &cfg.url,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"tls\""));

    // A wrong password: exit 1, and no password in the message.
    let bad = format!("rediss://:wrong-pw@127.0.0.1:{}", r.port);
    let o = common::run_cli(&[
        "event",
        "list",
        "--config",
        toml.to_str().unwrap(),
        "--redis",
        &bad,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("wrong-pw") && !err.contains("s3cret-pw"),
        "{err}"
    );
    assert!(err.contains("***"), "{err}");
    // Without the CA, the self-signed server is not trusted.
    let o = common::run_cli(&["event", "list", "--redis", &cfg.url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("s3cret-pw"));
}

/// Three TLS-only cluster nodes (client and bus traffic over TLS).
struct TlsCluster {
    nodes: Vec<(Child, u16)>,
    dir: std::path::PathBuf,
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster() -> TlsCluster {
    let first = common::free_cluster_port();
    let dir = std::env::temp_dir().join(format!("tc-tls-cluster-{}-{first}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let mut c = TlsCluster {
        nodes: Vec::new(),
        dir,
    };
    // Every port (and its bus port) is chosen before any node starts, so a
    // node cannot take one another is about to use.
    let mut ports = vec![first];
    while ports.len() < 3 {
        let p = common::free_cluster_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    for port in ports {
        let (port_text, conf) = (port.to_string(), format!("nodes-{port}.conf"));
        let log = std::fs::File::create(c.dir.join(format!("redis-{port}.log"))).unwrap();
        let child = Command::new("redis-server")
            .args(tls_server_args(&port_text))
            .args(common::cluster_node_args(&conf))
            // No failover is wanted here: a stalled node on a busy machine
            // must not be voted out.
            .args(["--cluster-node-timeout", "5000"])
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .current_dir(&c.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        c.nodes.push((child, port));
    }
    let logs = |c: &TlsCluster| -> String {
        c.nodes
            .iter()
            .map(|(_, p)| {
                std::fs::read_to_string(c.dir.join(format!("redis-{p}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .nodes
        .iter()
        .all(|(_, p)| tls_cli(&c.dir, *p, &["PING"]) == "PONG")
    {
        assert!(
            Instant::now() < deadline,
            "TLS cluster nodes did not start:\n{}",
            logs(&c)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", c.dir.join("ca.pem").to_str().unwrap()])
        .args(["--cluster", "create"])
        .args(c.nodes.iter().map(|(_, p)| format!("127.0.0.1:{p}")))
        .arg("--cluster-yes")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c
        .nodes
        .iter()
        .all(|(_, p)| tls_cli(&c.dir, *p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "TLS cluster did not become ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

/// A cluster reached over TLS with the CA from the configuration: holds and
/// purchases work on events in different slots.
#[tokio::test]
async fn the_store_works_on_a_tls_cluster_with_a_custom_ca() {
    let c = start_cluster();
    let seeds: Vec<String> = c
        .nodes
        .iter()
        .map(|(_, p)| format!("rediss://127.0.0.1:{p}"))
        .collect();
    let cfg = RedisConfig {
        cluster: seeds.clone(),
        tls_ca_file: Some(c.dir.join("ca.pem")),
        ..RedisConfig::default()
    };
    let store = Store::connect(&cfg).await.expect("TLS cluster connection");
    // Events whose keys land on different masters.
    for id in ["a", "b", "c", "d"] {
        store
            .create_event(&EventSettings {
                id: id.into(),
                capacity: 5,
                hold_ttl_ms: 60_000,
                max_per_hold: 5,
                selling: Default::default(),
            })
            .await
            .unwrap();
        let HoldOutcome::Held { hold, .. } = store
            .hold(id, "u", &HoldRequest::Quantity(2), None)
            .await
            .unwrap()
        else {
            panic!("hold refused on {id}")
        };
        let bought = store
            .purchase(&ticketctl::store::HoldRef::Id(&hold.id), "u", None)
            .await
            .unwrap();
        assert!(
            matches!(bought, ticketctl::model::PurchaseOutcome::Bought { .. }),
            "{bought:?}"
        );
    }
    assert_eq!(store.list_events().await.unwrap().len(), 4);
    // Events a, b, c and d hash to slots on all three masters.
    let keys_per_node: Vec<u64> = c
        .nodes
        .iter()
        .map(|(_, p)| tls_cli(&c.dir, *p, &["DBSIZE"]).parse().unwrap())
        .collect();
    assert!(
        keys_per_node.iter().all(|&n| n > 0),
        "every master has event keys: {keys_per_node:?}"
    );
    // Without the CA the nodes are not trusted.
    let untrusted = RedisConfig {
        cluster: seeds,
        connect_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    };
    let err = Store::connect(&untrusted)
        .await
        .err()
        .expect("untrusted nodes refused");
    assert!(
        err.to_string().contains("certificate") || err.to_string().contains("UnknownIssuer"),
        "{err}"
    );
}

/// An HTTPS server on 127.0.0.1 with the test CA's certificate, answering
/// 200 to every request and keeping each body.
async fn https_hook(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            seen.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(hyper::body::Bytes::from_static(b"{}")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, bodies)
}

#[tokio::test]
async fn orders_reach_an_https_webhook_that_its_ca_file_vouches_for_and_no_other() {
    use ticketctl::config::SinkConfig;
    let dir = std::env::temp_dir().join(format!("tc-https-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let (addr, bodies) = https_hook(&dir).await;
    let redis = common::Redis::start();
    let cfg = common::config(&redis);
    let store = Store::connect(&cfg.redis).await.unwrap();
    store
        .create_event(&EventSettings {
            id: "e".into(),
            capacity: 10,
            hold_ttl_ms: 60_000,
            max_per_hold: 10,
            selling: Default::default(),
        })
        .await
        .unwrap();
    let HoldOutcome::Held { hold, .. } = store
        .hold("e", "ann", &HoldRequest::Tickets(vec![1]), None)
        .await
        .unwrap()
    else {
        panic!("not held")
    };
    store
        .purchase(&ticketctl::store::HoldRef::Id(&hold.id), "ann", None)
        .await
        .unwrap();
    // Without the CA file the system's roots do not know the test CA: the
    // worker cannot deliver, and the job stays queued.
    let sink = |ca: Option<std::path::PathBuf>| {
        let mut c = cfg.clone();
        c.purchase.sinks = vec![SinkConfig::Webhook {
            url: format!("https://{addr}/hook"),
            secret: "k".into(),
            timeout: Duration::from_secs(2),
            tls_ca_file: ca,
        }];
        c
    };
    let run_once = |c: ticketctl::config::Config| {
        let store = store.clone();
        async move {
            ticketctl::daemon::worker::purchase::run(
                store,
                c.purchase.clone(),
                ticketctl::daemon::worker::purchase::PurchaseOpts {
                    once: true,
                    batch: 10,
                    consumer: "w".into(),
                    block: Duration::from_millis(100),
                },
                tokio_util::sync::CancellationToken::new(),
                Default::default(),
            )
            .await
        }
    };
    let without = run_once(sink(None)).await;
    // (Either the worker could not start, with no system roots at all, or
    // its delivery failed: no body reached the hook.)
    if let Ok(summary) = without {
        assert_eq!(summary.completed, 0, "{summary:?}");
    }
    assert!(bodies.lock().unwrap().is_empty());
    // With the CA file: delivered, over TLS.
    let summary = run_once(sink(Some(dir.join("ca.pem")))).await.unwrap();
    assert_eq!(summary.completed, 1, "{summary:?}");
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains(&format!("\"orderId\":\"e.o{}.", hold.id.seq)),
        "{got:?}"
    );
    assert!(got[0].contains("\"type\":\"purchase\""), "{got:?}");
    let _ = std::fs::remove_dir_all(dir);
}
