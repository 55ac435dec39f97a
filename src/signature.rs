//! `sha256=<hex HMAC-SHA256>` signatures: what a webhook receiver checks on
//! the orders it gets, and what `serve` checks on a payment result.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `sha256=<hex HMAC-SHA256 of the body with secret>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `signature` is [`sign`]'s for this body and secret (compared in
/// constant time). Never with an empty secret.
pub fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let Some(bytes) = bytes.filter(|b| b.len() == 32) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_signature_verifies_only_with_its_body_and_secret() {
        let s = super::sign("k", b"body");
        assert!(super::verify("k", b"body", &s));
        assert!(!super::verify("k", b"other", &s));
        assert!(!super::verify("j", b"body", &s));
        assert!(!super::verify("", b"body", &super::sign("", b"body")));
        assert!(!super::verify("k", b"body", "sha256=zz"));
    }
}
