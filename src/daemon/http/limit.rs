//! Rate limits of one `serve` process: a token bucket per key (client IP or
//! userId). Memory is bounded: when the table grows past its cap, keys whose
//! bucket has refilled (idle clients) are dropped first, then the table is
//! cleared if that was not enough.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Keys tracked before idle ones are dropped.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` tokens per second, up to `burst`; `None` when `rate` is 0 (no limit).
    pub fn new(rate: f64, burst: f64) -> Option<RateLimiter> {
        (rate > 0.0).then(|| RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `key`: `Ok`, or `Err(seconds until one is available)`.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // A known key: one lookup, and its name is not allocated again.
        if let Some(bucket) = map.get_mut(key) {
            return self.take(bucket, now);
        }
        if map.len() >= MAX_KEYS {
            // Forget the keys with the most tokens first: idle clients, whose
            // bucket would be full anyway. Keys being limited are kept, so a
            // flood of new keys cannot reset them.
            let (rate, burst) = (self.rate, self.burst);
            let level = |(tokens, at): &(f64, Instant)| {
                (tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst)
            };
            map.retain(|_, b| level(b) < burst);
            if map.len() >= MAX_KEYS {
                let mut by_level: Vec<(f64, String)> =
                    map.iter().map(|(k, b)| (level(b), k.clone())).collect();
                by_level.sort_by(|a, b| b.0.total_cmp(&a.0));
                for (_, k) in by_level.into_iter().take(MAX_KEYS / 10) {
                    map.remove(&k);
                }
            }
        }
        let mut bucket = (self.burst, now);
        let taken = self.take(&mut bucket, now);
        map.insert(key.to_string(), bucket);
        taken
    }

    /// Takes a token from a bucket, refilled up to `now`.
    fn take(&self, (tokens, at): &mut (f64, Instant), now: Instant) -> Result<(), u64> {
        let available =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if available >= 1.0 {
            *tokens = available - 1.0;
            Ok(())
        } else {
            *tokens = available;
            Err(((1.0 - available) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimiter::new(2.0, 3.0).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
        }
        assert_eq!(l.check_at("a", t0), Err(1));
        assert!(l.check_at("b", t0).is_ok(), "keys are independent");
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_err());
        assert!(RateLimiter::new(0.0, 10.0).is_none());
    }
}
