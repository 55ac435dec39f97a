//! Signed buyer identity: with `[auth] mode = "jwt"` every buyer route
//! takes its `userId` from a verified bearer token's `sub`. Through the API
//! `serve` runs, on a private Redis; keys made with openssl per test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{config, Api, Redis, Resp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use ticketctl::config::{AuthMode, Config};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for an hour for `sub`.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 3600})
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(secret: &str, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

/// A token whose header says `alg: none`, with no signature.
fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// A key pair made by openssl in a fresh directory: (dir, private, public).
fn key_pair(kind: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "ticketctl-auth-{kind}-{}-{}",
        std::process::id(),
        common::free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
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
    let gen: &[&str] = match kind {
        "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "ec" => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "ed" => &["-algorithm", "ED25519"],
        _ => unreachable!(),
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(gen);
    args.extend_from_slice(&["-out", "private.pem"]);
    openssl(&args);
    openssl(&[
        "pkey",
        "-in",
        "private.pem",
        "-pubout",
        "-out",
        "public.pem",
    ]);
    (dir.clone(), dir.join("private.pem"), dir.join("public.pem"))
}

fn jwt_config(redis: &Redis) -> Config {
    let mut cfg = config(redis);
    cfg.auth.mode = AuthMode::Jwt;
    cfg.auth.jwt_secret = SECRET.into();
    cfg
}

/// The API in jwt mode, with events `gig` (20 tickets, at most 4 per
/// buyer, 3 extensions) and the compat event `default`.
async fn api(cfg: Config) -> Api {
    let api = Api::start(cfg).await;
    api.create_event(
        json!({"id": "gig", "capacity": 20, "maxTicketsPerUser": 4, "maxExtensions": 3}),
    )
    .await
    .assert_status(201);
    api
}

/// A request with `Authorization: Bearer <token>` (none for `None`).
async fn call(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Resp {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    api.raw(method, path, body.map(|b| b.to_string()), &headers)
        .await
}

/// A hold on event `gig` with `body`, as `token`'s bearer.
async fn hold_as(api: &Api, body: Value, token: Option<&str>) -> Resp {
    call(api, "POST", "/v1/events/gig/holds", Some(body), token).await
}

#[track_caller]
fn assert_invalid_token(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text);
    assert_eq!(r.code(), "unauthorized", "{what}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{what}"
    );
}

/// A live hold of `sub` on `ticket` of `gig`: its id.
async fn held(api: &Api, token: &str, ticket: u64) -> String {
    let r = hold_as(api, json!({"ticketIds": [ticket]}), Some(token)).await;
    r.assert_status(201);
    r.hold_id()
}

/// Every buyer route, as (method, path, body), acting on `hold`.
fn buyer_routes(hold: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        (
            "POST",
            "/v1/events/gig/holds".into(),
            Some(json!({"ticketIds": [20]})),
        ),
        ("GET", format!("/v1/holds/{hold}"), None),
        ("DELETE", format!("/v1/holds/{hold}"), Some(json!({}))),
        ("POST", format!("/v1/holds/{hold}/extend"), Some(json!({}))),
        (
            "POST",
            format!("/v1/holds/{hold}/purchase"),
            Some(json!({})),
        ),
        (
            "POST",
            "/api/ticket/reserve".into(),
            Some(json!({"ticketId": 1})),
        ),
        (
            "POST",
            "/api/ticket/buy".into(),
            Some(json!({"ticketId": 1})),
        ),
    ]
}

#[tokio::test]
async fn every_buyer_route_refuses_a_missing_or_bad_token() {
    let redis = Redis::start();
    let mut cfg = jwt_config(&redis);
    cfg.auth.issuer = "https://login.example".into();
    cfg.auth.audience = "ticketctl".into();
    let api = api(cfg).await;
    let good = |sub: &str| {
        let mut c = claims(sub);
        c["iss"] = json!("https://login.example");
        c["aud"] = json!("ticketctl");
        c
    };
    let alice = hs(SECRET, &good("alice"));
    let hold = held(&api, &alice, 5).await;

    let (_dir, rsa_private, _) = key_pair("rsa");
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(&rsa_private).unwrap()).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good("alice");
        f(&mut c);
        c
    };
    let bad: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".into())),
        (
            "expired past the leeway",
            Some(hs(SECRET, &with(&|c| c["exp"] = json!(now() - 120)))),
        ),
        (
            "not valid yet",
            Some(hs(SECRET, &with(&|c| c["nbf"] = json!(now() + 600)))),
        ),
        (
            "nbf of the wrong type",
            Some(hs(SECRET, &with(&|c| c["nbf"] = json!("99999999999")))),
        ),
        (
            "signed with another secret",
            Some(hs("another-secret", &good("alice"))),
        ),
        ("alg none", Some(unsigned(&good("alice")))),
        (
            "RS256 where the key is an HS256 secret",
            Some(sign(Algorithm::RS256, &rsa, &good("alice"))),
        ),
        (
            "another issuer",
            Some(hs(
                SECRET,
                &with(&|c| c["iss"] = json!("https://evil.example")),
            )),
        ),
        (
            "no issuer",
            Some(hs(
                SECRET,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            )),
        ),
        (
            "another audience",
            Some(hs(SECRET, &with(&|c| c["aud"] = json!("someone-else")))),
        ),
        (
            "no sub",
            Some(hs(
                SECRET,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            )),
        ),
        (
            "no exp",
            Some(hs(
                SECRET,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            )),
        ),
    ];
    for (method, path, body) in buyer_routes(&hold) {
        for (what, token) in &bad {
            let r = call(&api, method, &path, body.clone(), token.as_deref()).await;
            assert_invalid_token(&r, &format!("{method} {path}, {what}"));
        }
        // The scheme must be Bearer.
        let r = api
            .raw(
                method,
                &path,
                body.as_ref().map(Value::to_string),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Basic {alice}")),
                ],
            )
            .await;
        assert_invalid_token(&r, &format!("{method} {path}, Basic scheme"));
    }
    // Nothing was held, bought or released by the refused requests.
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!((e["held"].as_u64(), e["sold"].as_u64()), (Some(1), Some(0)));
    let h = call(
        &api,
        "GET",
        &format!("/v1/holds/{hold}"),
        None,
        Some(&alice),
    )
    .await;
    h.assert_status(200);
    assert_eq!(h.json()["userId"], "alice");
    // Within the leeway (30 s by default), an expired token still works.
    let late = hs(SECRET, &with(&|c| c["exp"] = json!(now() - 5)));
    call(&api, "GET", &format!("/v1/holds/{hold}"), None, Some(&late))
        .await
        .assert_status(200);
    // A list of audiences that holds ours is accepted.
    let many = hs(SECRET, &with(&|c| c["aud"] = json!(["other", "ticketctl"])));
    call(&api, "GET", &format!("/v1/holds/{hold}"), None, Some(&many))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_token_names_the_buyer_and_the_body_may_only_agree() {
    let redis = Redis::start();
    let api = api(jwt_config(&redis)).await;
    let alice = hs(SECRET, &claims("alice"));
    let bob = hs(SECRET, &claims("bob"));

    // No userId in the body: the token's sub.
    let r = hold_as(&api, json!({"ticketIds": [1]}), Some(&alice)).await;
    r.assert_status(201);
    assert_eq!(r.json()["userId"], "alice");
    let first = r.hold_id();
    // The same userId in the body: accepted.
    let r = hold_as(
        &api,
        json!({"userId": "alice", "ticketIds": [2]}),
        Some(&alice),
    )
    .await;
    r.assert_status(201);
    let second = r.hold_id();
    // Another one: 403, and nothing held.
    let r = hold_as(
        &api,
        json!({"userId": "bob", "ticketIds": [3]}),
        Some(&alice),
    )
    .await;
    r.assert_error(403, "forbidden");
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!(e["held"], 2);

    // Bob's token cannot read, extend, cancel or buy Alice's hold, even
    // naming her in the body.
    for (method, suffix, body) in [
        ("GET", "", None),
        ("POST", "/extend", Some(json!({}))),
        ("DELETE", "", Some(json!({}))),
        ("POST", "/purchase", Some(json!({}))),
        ("POST", "/purchase", Some(json!({"userId": "alice"}))),
    ] {
        let r = call(
            &api,
            method,
            &format!("/v1/holds/{first}{suffix}"),
            body,
            Some(&bob),
        )
        .await;
        r.assert_error(403, "forbidden");
    }
    // Alice's token does all of it.
    let r = call(
        &api,
        "POST",
        &format!("/v1/holds/{first}/extend"),
        Some(json!({})),
        Some(&alice),
    )
    .await;
    r.assert_status(200);
    let r = call(
        &api,
        "POST",
        &format!("/v1/holds/{first}/purchase"),
        None,
        Some(&alice),
    )
    .await;
    r.assert_status(202);
    assert_eq!(r.json()["userId"], "alice");
    let r = call(
        &api,
        "DELETE",
        &format!("/v1/holds/{second}"),
        Some(json!({"userId": "alice"})),
        Some(&alice),
    )
    .await;
    r.assert_status(204);

    // The compat routes too.
    let r = call(
        &api,
        "POST",
        "/api/ticket/reserve",
        Some(json!({"ticketId": 7})),
        Some(&bob),
    )
    .await;
    r.assert_status(200);
    let r = call(
        &api,
        "POST",
        "/api/ticket/buy",
        Some(json!({"ticketId": 7, "userId": "alice"})),
        Some(&bob),
    )
    .await;
    r.assert_error(403, "forbidden");
    let r = call(
        &api,
        "POST",
        "/api/ticket/buy",
        Some(json!({"ticketId": 7})),
        Some(&alice),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = call(
        &api,
        "POST",
        "/api/ticket/buy",
        Some(json!({"ticketId": 7})),
        Some(&bob),
    )
    .await;
    r.assert_status(200);

    // Routes that are not the buyer's keep their own credentials.
    api.get("/v1/events/gig").await.assert_status(200);
    let r = call(
        &api,
        "POST",
        "/v1/events",
        Some(json!({"id": "x", "capacity": 1})),
        Some(&alice),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // The admin token, not a buyer's: ticket 1 is not held, so 409.
    let r = api
        .admin("POST", "/api/ticket/release", Some(json!({"ticketId": 1})))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    api.get("/healthz").await.assert_status(200);
}

#[tokio::test]
async fn the_buyer_limit_holds_across_tokens_of_one_sub() {
    let redis = Redis::start();
    let api = api(jwt_config(&redis)).await;
    // Two logins of one buyer: two different tokens, one sub.
    let first = hs(SECRET, &claims("carol"));
    let mut later = claims("carol");
    later["iat"] = json!(now() + 1);
    later["jti"] = json!("second-login");
    let second = hs(SECRET, &later);
    assert_ne!(first, second);
    let r = hold_as(&api, json!({"quantity": 3}), Some(&first)).await;
    r.assert_status(201);
    let r = hold_as(&api, json!({"quantity": 2}), Some(&second)).await;
    r.assert_error(409, "user_limit");
    assert_eq!(r.json()["error"]["remaining"], 1);
    let r = hold_as(&api, json!({"quantity": 1}), Some(&second)).await;
    r.assert_status(201);
    // A made-up userId in the body does not get round it.
    let r = hold_as(
        &api,
        json!({"userId": "carol-2", "quantity": 1}),
        Some(&second),
    )
    .await;
    r.assert_error(403, "forbidden");
}

/// The API with `[auth] jwt_public_key_file`: tokens signed with the
/// private key are accepted, and nothing else is.
async fn public_key_server(kind: &str, alg: Algorithm) {
    let (dir, private, public) = key_pair(kind);
    let pem = std::fs::read(&private).unwrap();
    let key = match kind {
        "rsa" => EncodingKey::from_rsa_pem(&pem),
        "ec" => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let redis = Redis::start();
    let mut cfg = config(&redis);
    cfg.auth.mode = AuthMode::Jwt;
    cfg.auth.jwt_public_key_file = Some(public.clone());
    let api = api(cfg).await;

    let token = sign(alg, &key, &claims("dave"));
    let r = hold_as(&api, json!({"ticketIds": [1]}), Some(&token)).await;
    r.assert_status(201);
    assert_eq!(r.json()["userId"], "dave");
    let r = call(
        &api,
        "POST",
        &format!("/v1/holds/{}/purchase", r.hold_id()),
        None,
        Some(&token),
    )
    .await;
    r.assert_status(202);

    // Algorithm confusion: HS256 with the public key's PEM as the secret.
    let public_pem = std::fs::read_to_string(&public).unwrap();
    let forged = hs(&public_pem, &claims("dave"));
    let r = hold_as(&api, json!({"ticketIds": [2]}), Some(&forged)).await;
    assert_invalid_token(&r, &format!("{kind}: HS256 signed with the public key"));
    // alg none, and a token of another key of the same kind.
    let r = hold_as(
        &api,
        json!({"ticketIds": [2]}),
        Some(&unsigned(&claims("dave"))),
    )
    .await;
    assert_invalid_token(&r, &format!("{kind}: alg none"));
    let (_other_dir, other_private, _) = key_pair(kind);
    let other_pem = std::fs::read(&other_private).unwrap();
    let other = match kind {
        "rsa" => EncodingKey::from_rsa_pem(&other_pem),
        "ec" => EncodingKey::from_ec_pem(&other_pem),
        _ => EncodingKey::from_ed_pem(&other_pem),
    }
    .unwrap();
    let r = hold_as(
        &api,
        json!({"ticketIds": [2]}),
        Some(&sign(alg, &other, &claims("dave"))),
    )
    .await;
    assert_invalid_token(&r, &format!("{kind}: another key"));
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!((e["held"].as_u64(), e["sold"].as_u64()), (Some(0), Some(1)));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_rsa_public_key_verifies_rs256_and_refuses_confusion() {
    public_key_server("rsa", Algorithm::RS256).await;
}

#[tokio::test]
async fn an_ec_public_key_verifies_es256() {
    public_key_server("ec", Algorithm::ES256).await;
}

#[tokio::test]
async fn an_ed25519_public_key_verifies_eddsa() {
    public_key_server("ed", Algorithm::EdDSA).await;
}

#[tokio::test]
async fn without_jwt_mode_a_token_changes_nothing() {
    let redis = Redis::start();
    let api = Api::start(config(&redis)).await;
    let token = hs(SECRET, &claims("mallory"));
    // The body's userId is the buyer, whatever the header says.
    let r = call(
        &api,
        "POST",
        "/v1/events/default/holds",
        Some(json!({"userId": "erin", "ticketIds": [1]})),
        Some(&token),
    )
    .await;
    r.assert_status(201);
    assert_eq!(r.json()["userId"], "erin");
    let r = call(
        &api,
        "POST",
        "/v1/events/default/holds",
        Some(json!({"ticketIds": [2]})),
        Some(&token),
    )
    .await;
    r.assert_error(400, "invalid_request");
    api.reserve("erin", 3).await.assert_status(200);
}

fn write_config(dir: &Path, redis: &Redis, listen: &str, auth: &str) -> PathBuf {
    let path = dir.join("ticketctl.toml");
    std::fs::write(
        &path,
        format!(
            "[redis]\nurl = \"{}\"\n[server]\nlisten = \"{listen}\"\nthreads = 1\n{auth}\n",
            redis.url()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_bad_auth_section_is_a_one_line_config_error() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("ticketctl-authcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem_private = key_pair("ec");
    for (auth, says) in [
        ("[auth]\nmode = \"jwt\"\n", "jwt_secret"),
        ("[auth]\nmode = \"magic\"\n", "mode"),
        (
            "[auth]\nmode = \"jwt\"\njwt_public_key_file = \"/nonexistent/key.pem\"\n",
            "cannot read",
        ),
        (
            &format!(
                "[auth]\nmode = \"jwt\"\njwt_public_key_file = \"{}\"\n",
                pem_private.1.display()
            ),
            "private key",
        ),
        (
            "[auth]\nmode = \"jwt\"\njwt_secret = \"s\"\nleeway = \"2h\"\n",
            "leeway",
        ),
        (
            &format!(
                "[auth]\nmode = \"jwt\"\njwt_secret = \"s\"\njwt_public_key_file = \"{}\"\n",
                pem_private.2.display()
            ),
            "not both",
        ),
    ] {
        let cfg = write_config(&dir, &redis, "127.0.0.1:1", auth);
        let out = common::run_cli(&["serve", "--config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{auth}: {err}");
        assert!(err.contains(says), "{auth}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pem_private.0);
}

#[tokio::test]
async fn the_access_log_has_the_sub_and_never_the_token() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("ticketctl-authlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = write_config(
        &dir,
        &redis,
        &listen,
        &format!("[auth]\nmode = \"jwt\"\njwt_secret = \"{SECRET}\"\n"),
    );
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(common::bin())
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("TICKETCTL_LOG", "info")
        .env("TICKETCTL_ADMIN_TOKEN", "test-token")
        .env("TICKETCTL_MAX_QUEUE_WAIT", "30s")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    assert!(
        common::eventually(500, Duration::from_millis(20), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await,
        "serve did not start listening"
    );
    let token = hs(SECRET, &claims("frank-the-buyer"));
    let bad = hs("another-secret", &claims("frank-the-buyer"));
    for t in [&token, &bad] {
        let bearer = format!("Bearer {t}");
        common::request(
            addr,
            "POST",
            "/v1/events/default/holds",
            Some(json!({"ticketIds": [1]}).to_string()),
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
        )
        .await;
    }
    let metrics = common::request(addr, "GET", "/metrics", None, &[]).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(text.contains("\"sub\":\"frank-the-buyer\""), "{text}");
    for t in [&token, &bad] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "a token reached the log: {text}");
        assert!(!metrics.text.contains(signature));
    }
    assert!(!metrics.text.contains("frank"), "a user in a metric label");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_credentials_a_critical_extension_or_a_huge_token_are_refused() {
    let redis = Redis::start();
    let api = api(jwt_config(&redis)).await;
    let alice = hs(SECRET, &claims("alice"));
    let bob = hs(SECRET, &claims("bob"));
    let (a, b) = (format!("Bearer {alice}"), format!("Bearer {bob}"));
    let r = api
        .raw(
            "POST",
            "/v1/events/gig/holds",
            Some(json!({"ticketIds": [1]}).to_string()),
            &[
                ("content-type", "application/json"),
                ("authorization", &a),
                ("authorization", &b),
            ],
        )
        .await;
    assert_invalid_token(&r, "two Authorization headers");
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let crit = jsonwebtoken::encode(
        &header,
        &claims("alice"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = call(&api, "GET", "/v1/holds/x", None, Some(&crit)).await;
    assert_invalid_token(&r, "crit");
    let mut big = claims("alice");
    big["pad"] = json!("x".repeat(9000));
    let r = call(&api, "GET", "/v1/holds/x", None, Some(&hs(SECRET, &big))).await;
    assert_invalid_token(&r, "over 8 KiB");
    assert!(r.message().contains("8 KiB"), "{}", r.text);
    let e = api.get("/v1/events/gig").await.json();
    assert_eq!(e["held"], 0);
}
