//! Long-running parts: the HTTP API (`http`), the server `serve` runs
//! (`serve`), the workers (`worker`) and their metrics (`metrics`).
//! Each entry point takes its listener or store and a shutdown signal as
//! arguments, so tests run them on `127.0.0.1:0` and stop them.

pub mod http;
pub mod metrics;
pub mod serve;
pub mod shutdown;
pub mod worker;
