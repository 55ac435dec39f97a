//! The workers: `release` tidies up expired holds (expiry itself is judged
//! in every script, so nothing depends on it being timely); `purchase`
//! publishes orders to the sinks. Each runs until its token is cancelled
//! and takes its own store connection (the purchase worker blocks on it).

pub mod purchase;
pub mod release;
pub mod results;
mod webhook;

/// A default consumer name: host name and process id.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}
