//! The waiting room of an event: its settings, queue ids, the state of a
//! place, and the shuffle of the pre-queue, computed exactly as the Lua
//! scripts compute them (`src/store/lua/queue.lua`), so that `serve` answers
//! a place's status from a snapshot without Redis.

use std::collections::HashMap;

/// Default most places admitted at once.
pub const DEFAULT_MAX_ACTIVE: u64 = 1000;
/// Default admission time.
pub const DEFAULT_ADMISSION_SECS: u64 = 600;
/// Largest `maxActive`.
pub const MAX_ACTIVE: u64 = 100_000;
/// Longest admission (a day).
pub const MAX_ADMISSION_SECS: u64 = 86_400;
/// Hex digits of a queue id's MAC (128 bits).
pub const MAC_HEX: usize = 32;

/// A waiting room's settings (an event without one has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Most places admitted and neither expired nor done at once.
    pub max_active: u64,
    /// How long an admission lasts (ms).
    pub admission_ms: u64,
}

impl QueueSettings {
    /// As the meta field `queue` keeps it: `maxActive|admissionMs`.
    pub fn text(&self) -> String {
        format!("{}|{}", self.max_active, self.admission_ms)
    }

    /// Parses [`QueueSettings::text`].
    pub fn parse(s: &str) -> Option<QueueSettings> {
        let (a, b) = s.split_once('|')?;
        Some(QueueSettings {
            max_active: a.parse().ok()?,
            admission_ms: b.parse().ok()?,
        })
    }

    /// Checks the limits; `field` names a setting as the caller spells it.
    pub fn check(&self, id: &str, field: impl Fn(&str) -> String) -> Result<(), String> {
        if !(1..=MAX_ACTIVE).contains(&self.max_active) {
            return Err(format!(
                "event {id}: {} must be 1..={MAX_ACTIVE}",
                field("maxActive")
            ));
        }
        let secs = self.admission_ms / 1000;
        if !(1..=MAX_ADMISSION_SECS).contains(&secs) || self.admission_ms % 1000 != 0 {
            return Err(format!(
                "event {id}: {} must be 1..={MAX_ADMISSION_SECS} seconds",
                field("admissionSeconds")
            ));
        }
        Ok(())
    }
}

/// A change to an event's waiting room (PATCH): what is left out keeps
/// its current value (or, for a room put on an event that had none, its
/// default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuePatch {
    /// On or off; `None`: as it is.
    pub enabled: Option<bool>,
    /// New `maxActive`.
    pub max_active: Option<u64>,
    /// New admission time (ms).
    pub admission_ms: Option<u64>,
}

impl QueuePatch {
    /// As patch_event.lua takes it: `enabled|maxActive|admissionMs`, each
    /// empty when left out (`enabled` as `1` or `0`).
    pub fn text(&self) -> String {
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let on = match self.enabled {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        format!("{on}|{}|{}", opt(self.max_active), opt(self.admission_ms))
    }
}

/// A place in a waiting room, as its id names it: `<event>.q<j>.<mac>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueId {
    /// The event.
    pub event: String,
    /// The join number.
    pub j: u64,
    /// The MAC (hex).
    pub mac: String,
}

impl QueueId {
    /// Parses an id; `None` for anything malformed.
    pub fn parse(s: &str) -> Option<QueueId> {
        let mut parts = s.split('.');
        let (event, j, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !super::valid_event_id(event) {
            return None;
        }
        let j = j.strip_prefix('q')?;
        if j.is_empty() || j.len() > 15 || !j.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if mac.len() != MAC_HEX || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(QueueId {
            event: event.into(),
            j: j.parse().ok()?,
            mac: mac.to_ascii_lowercase(),
        })
    }

    /// The id of place `j` of `event` under MAC key `key`.
    pub fn new(event: &str, j: u64, key: &str) -> QueueId {
        QueueId {
            event: event.into(),
            j,
            mac: mac(key, event, j),
        }
    }

    /// Whether the MAC is the one `key` gives.
    pub fn verifies(&self, key: &str) -> bool {
        !key.is_empty()
            && subtle::ConstantTimeEq::ct_eq(
                self.mac.as_bytes(),
                mac(key, &self.event, self.j).as_bytes(),
            )
            .into()
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.q{}.{}", self.event, self.j, self.mac)
    }
}

/// The first [`MAC_HEX`] hex digits of sha1(key ':' event ':' j), as the
/// scripts compute it with `redis.sha1hex` (the message has a fixed shape
/// ending in digits, so no extension of it is another valid one).
fn mac(key: &str, event: &str, j: u64) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(format!("{key}:{event}:{j}").as_bytes());
    let mut hex = String::with_capacity(MAC_HEX);
    for b in &digest[..MAC_HEX / 2] {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    hex
}

const M24: u64 = 16_777_216;

fn seed_keys(seed: &str) -> [u64; 4] {
    let mut k = [0; 4];
    for (i, key) in k.iter_mut().enumerate() {
        *key = seed
            .get(i * 6..i * 6 + 6)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    k
}

fn round_f(k: u64, x: u64, h2: u64) -> u64 {
    let t = (x * 40503 + k) % M24;
    ((t * t) % 16_777_213) % h2
}

fn feistel(k: &[u64; 4], v: u64, h2: u64, inverse: bool) -> u64 {
    let (mut l, mut r) = (v / h2, v % h2);
    if inverse {
        for key in k.iter().rev() {
            let nl = (r + h2 - round_f(*key, l, h2)) % h2;
            (l, r) = (nl, l);
        }
    } else {
        for key in k {
            let nr = (l + round_f(*key, r, h2)) % h2;
            (l, r) = (r, nr);
        }
    }
    l * h2 + r
}

/// The shuffle of the pre-queue: a permutation of `1..=n` keyed by `seed`
/// (24 hex digits), or its inverse. Four Feistel rounds over the smallest
/// square power of two holding `n`, walked until they land in range.
pub fn perm(x: u64, n: u64, seed: &str, inverse: bool) -> u64 {
    if n <= 1 {
        return x;
    }
    let mut h2 = 2;
    while h2 * h2 < n {
        h2 *= 2;
    }
    let k = seed_keys(seed);
    let mut v = x - 1;
    loop {
        v = feistel(&k, v, h2, inverse);
        if v < n {
            return v + 1;
        }
    }
}

/// A waiting room as one pass left it (the reply of `queue_tick`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Places issued.
    pub n: u64,
    /// Places of the pre-queue, once the line opened.
    pub pre: Option<u64>,
    /// The seed of the shuffle (once opened).
    pub seed: String,
    /// Places let in so far, in line order.
    pub cursor: u64,
    /// Admitted in all.
    pub total: u64,
    /// Nothing available and nothing held.
    pub sold_out: bool,
    /// The MAC key of queue ids ('' before the first join).
    pub key: String,
    /// The settings.
    pub settings: Option<QueueSettings>,
    /// When sales open (ms), if set.
    pub sales_start_ms: Option<u64>,
    /// The Redis clock at the pass (ms).
    pub now_ms: u64,
    /// Tickets available at the pass.
    pub available: Option<u64>,
    /// Places admitted now.
    pub active: u64,
    /// Admitted places (join number -> admittedUntil ms), as listed.
    pub admitted: HashMap<u64, u64>,
}

/// Where a place stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceState {
    /// In line: 1 is the next one in. Before sales open, every place of the
    /// pre-queue reads the pre-queue's size.
    Waiting(u64),
    /// Let in until this time (ms).
    Admitted(u64),
    /// Its admission ran out, or its user bought.
    Expired,
    /// Still in line, and nothing is left to sell.
    SoldOut,
}

impl PlaceState {
    /// The API's `state`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlaceState::Waiting(_) => "waiting",
            PlaceState::Admitted(_) => "admitted",
            PlaceState::Expired => "expired",
            PlaceState::SoldOut => "sold_out",
        }
    }
}

impl QueueSnapshot {
    /// The line place of join number `j`.
    pub fn place_of(&self, j: u64) -> u64 {
        match self.pre {
            Some(pre) if j <= pre => perm(j, pre, &self.seed, false),
            _ => j,
        }
    }

    /// The state of join number `j` at Redis time `now_ms` (the snapshot's
    /// time plus its age). `None` for a place not issued.
    pub fn state(&self, j: u64, now_ms: u64) -> Option<PlaceState> {
        if j == 0 || j > self.n {
            return None;
        }
        let Some(_) = self.pre else {
            return Some(PlaceState::Waiting(self.n));
        };
        let place = self.place_of(j);
        if place > self.cursor {
            return Some(if self.sold_out {
                PlaceState::SoldOut
            } else {
                PlaceState::Waiting(place - self.cursor)
            });
        }
        Some(match self.admitted.get(&j) {
            Some(&until) if until > now_ms => PlaceState::Admitted(until),
            _ => PlaceState::Expired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shuffle_is_a_permutation_and_its_inverse_undoes_it() {
        for n in [2u64, 3, 5, 16, 17, 100, 1000, 4097] {
            let seed = "a1b2c3d4e5f60718293a4b5c";
            let mut seen = vec![false; n as usize + 1];
            for x in 1..=n {
                let p = perm(x, n, seed, false);
                assert!((1..=n).contains(&p));
                assert!(!seen[p as usize], "n={n}: {p} twice");
                seen[p as usize] = true;
                assert_eq!(perm(p, n, seed, true), x);
            }
        }
        // Another seed, another order.
        let a: Vec<u64> = (1..=50)
            .map(|x| perm(x, 50, "000001000002000003000004", false))
            .collect();
        let b: Vec<u64> = (1..=50)
            .map(|x| perm(x, 50, "ffffffeeeeeeddddddcccccc", false))
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn queue_ids_parse_and_verify() {
        let id = QueueId::new("gig", 42, "k3y");
        let text = id.to_string();
        assert!(text.starts_with("gig.q42."));
        let back = QueueId::parse(&text).unwrap();
        assert!(back.verifies("k3y"));
        assert!(!back.verifies("other"));
        assert!(!back.verifies(""));
        for bad in [
            "",
            "gig",
            "gig.q1",
            "gig.x1.00",
            "gig.q.0",
            "gig.q1.zz",
            "g!g.q1.00000000000000000000000000000000",
        ] {
            assert!(QueueId::parse(bad).is_none(), "{bad}");
        }
        let forged = QueueId { j: 43, ..back };
        assert!(!forged.verifies("k3y"));
    }

    #[test]
    fn a_place_reads_its_state() {
        let mut s = QueueSnapshot {
            n: 10,
            pre: Some(0),
            cursor: 3,
            ..Default::default()
        };
        s.admitted.insert(3, 5000);
        assert_eq!(s.state(5, 1000), Some(PlaceState::Waiting(2)));
        assert_eq!(s.state(3, 1000), Some(PlaceState::Admitted(5000)));
        assert_eq!(s.state(3, 5000), Some(PlaceState::Expired));
        assert_eq!(s.state(1, 1000), Some(PlaceState::Expired));
        assert_eq!(s.state(11, 1000), None);
        s.sold_out = true;
        assert_eq!(s.state(5, 1000), Some(PlaceState::SoldOut));
        s.pre = None;
        assert_eq!(s.state(5, 1000), Some(PlaceState::Waiting(10)));
    }
}
