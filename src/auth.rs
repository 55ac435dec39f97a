//! Signed buyer identity (`[auth] mode = "jwt"`): the bearer token of a
//! buyer route is verified with `jsonwebtoken`, and its `sub` is the buyer's
//! `userId`.
//!
//! One key, one algorithm family: an HS256 secret, or a PEM public key
//! (RSA: RS256/384/512 and PS256/384/512; EC: ES256/384; Ed25519: EdDSA).
//! A token whose header names another algorithm than the key's (`none`, or
//! HS256 signed with the public key's bytes) is refused before any
//! signature is computed. `exp` and `sub` are required; `nbf` is checked
//! when present; `iss` and `aud` are required and checked when configured.
//! Times are judged by this host's clock, with `auth.leeway` either way.
//!
//! A verified token is remembered (by its exact bytes) until it expires,
//! in a bounded cache: a buyer sends the same token with every request of
//! a visit, and the signature of the same bytes cannot change. `exp` and
//! `nbf` are checked again on every use.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, AuthMode};

/// Most characters of a `userId` (and so of a token's `sub`).
pub const MAX_SUB_CHARS: usize = 128;
/// Longest token accepted, in bytes: far above any sane identity token, and
/// a bound on what one request makes the server decode.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// HS256 secrets shorter than this are accepted with a warning (RFC 7518
/// §3.2 asks for at least the hash's 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// Largest `auth.leeway`.
pub const MAX_LEEWAY_SECS: u64 = 3600;
/// Verified tokens remembered per cache shard.
const CACHE_PER_SHARD: usize = 1024;
/// Cache shards (serving threads contend on one lock otherwise).
const CACHE_SHARDS: usize = 16;

/// Why a token was refused: the 401's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("this route needs Authorization: Bearer <token> signed by the login service")]
    Missing,
    /// Not three base64url parts with JSON in them.
    #[error("the bearer token is malformed")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the bearer token is longer than 8 KiB")]
    TooLong,
    /// More than one `Authorization` header.
    #[error("a request may carry one Authorization header only")]
    Duplicate,
    /// The header names an algorithm other than the key's (`none` included).
    #[error("the bearer token's algorithm is not the one this server's key is for")]
    Algorithm,
    /// The signature does not verify with the configured key.
    #[error("the bearer token's signature does not verify")]
    Signature,
    /// Past `exp` (plus the leeway).
    #[error("the bearer token has expired")]
    Expired,
    /// Before `nbf` (minus the leeway).
    #[error("the bearer token is not valid yet")]
    NotYet,
    /// `iss` other than `auth.issuer`, or missing.
    #[error("the bearer token's issuer is not accepted")]
    Issuer,
    /// `aud` without `auth.audience`, or missing.
    #[error("the bearer token's audience is not accepted")]
    Audience,
    /// A required claim (`exp`, `sub`) missing or of the wrong type.
    #[error("the bearer token lacks a required claim ({0})")]
    Claim(&'static str),
    /// The header names critical extensions (`crit`), which none are
    /// understood here.
    #[error("the bearer token names critical header extensions this server does not implement")]
    Critical,
    /// `sub` is not a usable userId.
    #[error("the bearer token's sub must be 1-128 characters without control characters")]
    Subject,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// What is remembered of a verified token.
struct Verified {
    sub: String,
    exp: u64,
    nbf: Option<u64>,
}

/// Verifies the bearer tokens of buyer routes (see the module docs).
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
    hasher: std::hash::RandomState,
    cache: Vec<Mutex<HashMap<Box<str>, Verified>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier `[auth]` asks for: `None` with `mode = "none"`; an error
    /// (naming the key) when the key is missing, unreadable or not a public
    /// key of a supported kind.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Verifier>, String> {
        if cfg.mode == AuthMode::None {
            return Ok(None);
        }
        if cfg.leeway.as_secs() > MAX_LEEWAY_SECS {
            return Err(format!(
                "auth.leeway must be at most {MAX_LEEWAY_SECS}s (clock skew, not a token lifetime)"
            ));
        }
        let (key, algorithms) = match (&cfg.jwt_secret, &cfg.jwt_public_key_file) {
            (s, Some(_)) if !s.is_empty() => {
                return Err(
                    "auth: set jwt_secret or jwt_public_key_file, not both (one key, one algorithm)"
                        .into(),
                )
            }
            (s, None) if s.is_empty() => {
                return Err(
                    "auth.mode = \"jwt\" needs auth.jwt_secret (env TICKETCTL_JWT_SECRET) or auth.jwt_public_key_file"
                        .into(),
                )
            }
            (s, None) => (DecodingKey::from_secret(s.as_bytes()), vec![Algorithm::HS256]),
            (_, Some(file)) => public_key(file)?,
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if cfg.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&cfg.issuer]);
            required.push("iss");
        }
        if cfg.audience.is_empty() {
            // No audience configured: a token's aud is not ours to judge.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&cfg.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Verifier {
            key,
            validation,
            leeway: cfg.leeway.as_secs(),
            hasher: std::hash::RandomState::new(),
            cache: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }))
    }

    /// The `sub` of the `Authorization: Bearer` token of a request.
    pub fn verify_header(&self, authorization: Option<&[u8]>) -> Result<String, TokenError> {
        let value = authorization.ok_or(TokenError::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| TokenError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
        // The scheme is case-insensitive (RFC 9110).
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Missing);
        }
        self.verify(token.trim())
    }

    /// The `sub` of a token, verified (or remembered as verified).
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let now = unix_now();
        let shard = &self.cache[(self.hasher.hash_one(token) as usize) % CACHE_SHARDS];
        if let Some(v) = lock(shard).get(token) {
            return self.still_valid(v, now).map(|()| v.sub.clone());
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                match token_error(e.kind()) {
                    // An algorithm the library does not know (`none`) fails as
                    // an unreadable header: say what it is.
                    TokenError::Malformed if names_unknown_alg(token) => TokenError::Algorithm,
                    other => other,
                }
            })?;
        // RFC 7515 §4.1.11: extensions marked critical that are not
        // understood (none are) make the token invalid.
        if data.header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let claims = data.claims;
        if claims.sub.is_empty()
            || claims.sub.chars().count() > MAX_SUB_CHARS
            || claims.sub.chars().any(char::is_control)
        {
            return Err(TokenError::Subject);
        }
        let verified = Verified {
            sub: claims.sub,
            exp: claims.exp,
            nbf: claims.nbf,
        };
        let sub = verified.sub.clone();
        let mut map = lock(shard);
        if map.len() >= CACHE_PER_SHARD {
            // Expired ones first; if the shard is still full, start over
            // (a lost entry costs one verification, nothing else).
            map.retain(|_, v| self.still_valid(v, now).is_ok());
            if map.len() >= CACHE_PER_SHARD {
                map.clear();
            }
        }
        map.insert(token.into(), verified);
        Ok(sub)
    }

    fn still_valid(&self, v: &Verified, now: u64) -> Result<(), TokenError> {
        if v.exp.saturating_add(self.leeway) < now {
            return Err(TokenError::Expired);
        }
        if v.nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(TokenError::NotYet);
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a token's header is JSON with an `alg` the library has no name
/// for (`none`, or a made-up one).
fn names_unknown_alg(token: &str) -> bool {
    use base64::Engine as _;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    serde_json::from_slice::<Alg>(&bytes).is_ok_and(|h| h.alg.parse::<Algorithm>().is_err())
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYet,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::Claim(match c.as_str() {
            "exp" => "exp",
            "sub" => "sub",
            "iss" => "iss",
            "aud" => "aud",
            _ => "a registered claim",
        }),
        _ => TokenError::Malformed,
    }
}

/// Reads a PEM public key and the algorithms it verifies.
fn public_key(file: &Path) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let pem = std::fs::read(file).map_err(|e| {
        format!(
            "auth.jwt_public_key_file: cannot read {}: {e}",
            file.display()
        )
    })?;
    if pem.windows(18).any(|w| w == b"-----BEGIN PRIVATE")
        || pem.windows(14).any(|w| w == b" PRIVATE KEY--")
    {
        return Err(format!(
            "auth.jwt_public_key_file: {} holds a private key; give the public key only",
            file.display()
        ));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        use Algorithm::*;
        return Ok((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        // The curve decides the algorithm; others cannot verify any token.
        const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let der = pem_der(&pem);
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        if has(P256) {
            return Ok((k, vec![Algorithm::ES256]));
        }
        if has(P384) {
            return Ok((k, vec![Algorithm::ES384]));
        }
        return Err(format!(
            "auth.jwt_public_key_file: {} is an EC key of a curve other than P-256 or P-384",
            file.display()
        ));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((k, vec![Algorithm::EdDSA]));
    }
    Err(format!(
        "auth.jwt_public_key_file: {} is not a PEM public key (RSA, EC P-256/P-384 or Ed25519)",
        file.display()
    ))
}

/// The DER bytes of a PEM file's first block (empty when unreadable).
fn pem_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default()
}

/// The claims a token is minted with (by `stress --jwt-secret`, the tests
/// and the documentation's examples).
#[derive(Debug, Clone, Serialize)]
pub struct MintClaims {
    /// The buyer.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Issuer, when the server checks one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when the server checks one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl MintClaims {
    /// Claims for `sub` valid from now for `ttl_secs`.
    pub fn new(sub: &str, ttl_secs: u64) -> MintClaims {
        let now = unix_now();
        MintClaims {
            sub: sub.into(),
            exp: now + ttl_secs,
            iat: now,
            iss: None,
            aud: None,
        }
    }
}

/// An HS256 token of `claims` signed with `secret`.
pub fn mint_hs256(secret: &[u8], claims: &MintClaims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(secret: &str) -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Jwt,
            jwt_secret: secret.into(),
            leeway: Duration::from_secs(30),
            ..AuthConfig::default()
        }
    }

    fn verifier(c: &AuthConfig) -> Verifier {
        Verifier::from_config(c).unwrap().unwrap()
    }

    #[test]
    fn a_good_token_gives_its_sub_and_is_remembered() {
        let v = verifier(&cfg("s3cret"));
        let t = mint_hs256(b"s3cret", &MintClaims::new("alice", 60));
        assert_eq!(v.verify(&t).unwrap(), "alice");
        assert_eq!(v.verify(&t).unwrap(), "alice");
        let header = format!("bearer {t}");
        assert_eq!(v.verify_header(Some(header.as_bytes())).unwrap(), "alice");
    }

    #[test]
    fn refusals_name_their_cause() {
        let v = verifier(&cfg("s3cret"));
        assert_eq!(v.verify_header(None), Err(TokenError::Missing));
        assert_eq!(
            v.verify_header(Some(b"Basic abc")),
            Err(TokenError::Missing)
        );
        assert_eq!(v.verify("a.b"), Err(TokenError::Malformed));
        let other = mint_hs256(b"other", &MintClaims::new("alice", 60));
        assert_eq!(v.verify(&other), Err(TokenError::Signature));
        let mut old = MintClaims::new("alice", 0);
        old.exp -= 31;
        assert_eq!(
            v.verify(&mint_hs256(b"s3cret", &old)),
            Err(TokenError::Expired)
        );
        // Within the leeway: accepted.
        let mut recent = MintClaims::new("alice", 0);
        recent.exp -= 20;
        assert!(v.verify(&mint_hs256(b"s3cret", &recent)).is_ok());
        let empty = mint_hs256(b"s3cret", &MintClaims::new("", 60));
        assert_eq!(v.verify(&empty), Err(TokenError::Subject));
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"sub":"alice","exp":99999999999}"#)
        );
        assert_eq!(v.verify(&none), Err(TokenError::Algorithm));
        let rs = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"sub":"alice","exp":99999999999}"#)
        );
        assert_eq!(v.verify(&rs), Err(TokenError::Algorithm));
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let v = verifier(&cfg("s3cret"));
        let t = mint_hs256(b"s3cret", &MintClaims::new("alice", 60));
        v.verify(&t).unwrap();
        let shard = &v.cache[(v.hasher.hash_one(t.as_str()) as usize) % CACHE_SHARDS];
        lock(shard).get_mut(t.as_str()).unwrap().exp = unix_now() - 31;
        assert_eq!(v.verify(&t), Err(TokenError::Expired));
    }

    #[test]
    fn a_key_that_is_missing_or_doubled_is_a_config_error() {
        let mut c = cfg("");
        assert!(Verifier::from_config(&c)
            .unwrap_err()
            .contains("jwt_secret"));
        c.jwt_secret = "x".into();
        c.jwt_public_key_file = Some("/nonexistent.pem".into());
        assert!(Verifier::from_config(&c).unwrap_err().contains("not both"));
        c.jwt_secret.clear();
        assert!(Verifier::from_config(&c)
            .unwrap_err()
            .contains("cannot read"));
        c.mode = AuthMode::None;
        assert!(Verifier::from_config(&c).unwrap().is_none());
    }
}
