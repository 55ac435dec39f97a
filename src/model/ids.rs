//! Hold and order identifiers: what they encode and how they are parsed.
//!
//! A hold id is `<event>.h<seq>.<deadlineMs>.<secret>` and an order id
//! `<event>.o<seq>.<secret>`: the event routes the request to its keys, the
//! sequence number finds the record, and the 128-bit random secret (base64url)
//! makes the id unguessable. The deadline lets a purchase of a hold that has
//! expired and been released answer `hold_expired` rather than `not_found`.

use base64::Engine;

/// A parsed hold id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldId {
    /// Event id.
    pub event: String,
    /// Per-event hold sequence number.
    pub seq: u64,
    /// Deadline the hold was created with (Redis clock, ms since the epoch).
    pub deadline_ms: u64,
    /// Random part.
    pub secret: String,
}

/// A parsed order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderId {
    /// Event id.
    pub event: String,
    /// Sequence number of the hold it was bought from.
    pub seq: u64,
    /// Random part.
    pub secret: String,
}

// Written piece by piece rather than with `write!`: every hold and order
// answer carries its id, and the formatting machinery costs several times
// as much.
impl std::fmt::Display for HoldId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut n = itoa::Buffer::new();
        f.write_str(&self.event)?;
        f.write_str(".h")?;
        f.write_str(n.format(self.seq))?;
        f.write_str(".")?;
        f.write_str(n.format(self.deadline_ms))?;
        f.write_str(".")?;
        f.write_str(&self.secret)
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut n = itoa::Buffer::new();
        f.write_str(&self.event)?;
        f.write_str(".o")?;
        f.write_str(n.format(self.seq))?;
        f.write_str(".")?;
        f.write_str(&self.secret)
    }
}

const SECRET_LEN: usize = 22;

fn valid_secret(s: &str) -> bool {
    s.len() == SECRET_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_seq(s: &str, prefix: char) -> Option<u64> {
    let digits = s.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl HoldId {
    /// Parses a hold id; `None` for anything that is not one.
    pub fn parse(s: &str) -> Option<HoldId> {
        let mut parts = s.split('.');
        let (event, seq, deadline, secret) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !crate::model::valid_event_id(event) || !valid_secret(secret) {
            return None;
        }
        if deadline.is_empty()
            || deadline.len() > 15
            || !deadline.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(HoldId {
            event: event.into(),
            seq: parse_seq(seq, 'h')?,
            deadline_ms: deadline.parse().ok()?,
            secret: secret.into(),
        })
    }
}

impl OrderId {
    /// Parses an order id; `None` for anything that is not one.
    pub fn parse(s: &str) -> Option<OrderId> {
        let mut parts = s.split('.');
        let (event, seq, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !crate::model::valid_event_id(event) || !valid_secret(secret) {
            return None;
        }
        Some(OrderId {
            event: event.into(),
            seq: parse_seq(seq, 'o')?,
            secret: secret.into(),
        })
    }
}

/// 128 random bits from the OS, base64url without padding (22 characters).
pub fn new_secret() -> String {
    let mut buf = [0u8; 16];
    random_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Fills `out` from the OS random source. Bytes are fetched 4 KiB at a time
/// per thread (one system call per ~250 secrets instead of one each) and
/// each byte is handed out once.
pub fn random_bytes(out: &mut [u8]) {
    use std::cell::RefCell;
    const POOL: usize = 4096;
    thread_local! {
        static BUF: RefCell<(Box<[u8; POOL]>, usize)> = RefCell::new((Box::new([0; POOL]), POOL));
    }
    if out.len() > POOL / 4 {
        getrandom::fill(out).expect("the OS random source is available");
        return;
    }
    BUF.with(|b| {
        let (pool, used) = &mut *b.borrow_mut();
        if POOL - *used < out.len() {
            getrandom::fill(&mut pool[..]).expect("the OS random source is available");
            *used = 0;
        }
        out.copy_from_slice(&pool[*used..*used + out.len()]);
        // Wipe what was handed out, so no copy stays behind in the pool.
        pool[*used..*used + out.len()].fill(0);
        *used += out.len();
    });
}

/// `n` random bytes as lower-case hex (2n digits).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    random_bytes(&mut buf);
    let mut hex = String::with_capacity(2 * n);
    for b in buf {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_not_repeated_across_pool_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let mut b = [0u8; 16];
            random_bytes(&mut b);
            assert_ne!(b, [0u8; 16]);
            assert!(seen.insert(b), "a 128-bit value came out twice");
        }
    }

    #[test]
    fn ids_round_trip() {
        let h = HoldId {
            event: "gig_1".into(),
            seq: 42,
            deadline_ms: 1_764_085_000_123,
            secret: new_secret(),
        };
        assert_eq!(HoldId::parse(&h.to_string()), Some(h.clone()));
        let o = OrderId {
            event: "gig_1".into(),
            seq: 42,
            secret: new_secret(),
        };
        assert_eq!(OrderId::parse(&o.to_string()), Some(o));
        assert_eq!(OrderId::parse(&h.to_string()), None);
    }

    #[test]
    fn garbage_is_not_an_id() {
        for s in [
            "",
            "x",
            "a.h1.2",
            "a.h1.2.short",
            "a b.h1.2.AAAAAAAAAAAAAAAAAAAAAA",
            "a.x1.2.AAAAAAAAAAAAAAAAAAAAAA",
            "a.h.2.AAAAAAAAAAAAAAAAAAAAAA",
            "a.h1.2.AAAAAAAAAAAAAAAAAAAAAA.x",
            "a.h-1.2.AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(HoldId::parse(s), None, "{s}");
        }
        assert!(HoldId::parse("a.h1.2.AAAAAAAAAAAAAAAAAAAAAA").is_some());
    }

    #[test]
    fn secrets_are_distinct_and_url_safe() {
        let a = new_secret();
        assert_eq!(a.len(), SECRET_LEN);
        assert!(valid_secret(&a));
        assert_ne!(a, new_secret());
    }
}
