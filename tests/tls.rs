//! Redis over TLS (`rediss://`) with a password: the store works through it,
//! and the password never shows in messages.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ticketctl::config::RedisConfig;
use ticketctl::store::{EventSettings, HoldOutcome, HoldRequest, Store};

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

fn start() -> TlsRedis {
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("tc-tls-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A CA, and a server certificate it signs (rustls refuses a CA as the server's own certificate).
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
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
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
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
            "--requirepass",
            "s3cret-pw",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = TlsRedis { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "--tls",
                "--cacert",
                r.dir.join("ca.pem").to_str().unwrap(),
                "--no-auth-warning",
                "-a",
                "s3cret-pw",
                "PING",
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
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
