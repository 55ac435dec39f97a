//! Live progress of a run on stderr: an indicatif bar on a terminal, one
//! plain line per second otherwise (logs and CI keep them readable).
//! Reads the shared counters only; never touches the statistics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::{Live, ProgressMode, Stop};

/// One progress line: elapsed, requests, live rate, errors.
pub fn line(elapsed: Duration, requests: u64, rate: f64, errors: u64) -> String {
    format!(
        "{:>6.1}s  {requests} requests  {rate:.0}/s  {errors} errors",
        elapsed.as_secs_f64()
    )
}

/// Shows progress until `done` is cancelled.
pub async fn show(
    mode: ProgressMode,
    stop: Stop,
    live: Arc<Live>,
    start: Instant,
    done: CancellationToken,
) {
    let tick = match mode {
        ProgressMode::Off => return done.cancelled().await,
        ProgressMode::Bar => Duration::from_millis(200),
        ProgressMode::Lines => Duration::from_secs(1),
    };
    let bar = (mode == ProgressMode::Bar).then(|| {
        let len = match stop {
            Stop::Requests(n) => n,
            Stop::Duration(d) => d.as_millis() as u64,
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
            .expect("static template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar
    });
    // The live rate is measured over the last few ticks, not the whole run.
    let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = done.cancelled() => break,
        }
        let now = Instant::now();
        let requests = live.requests.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        window.push_back((now, requests));
        while window.len() > 1 && now.duration_since(window[0].0) > Duration::from_secs(2) {
            window.pop_front();
        }
        let (t0, r0) = window[0];
        let span = now.duration_since(t0).as_secs_f64();
        let rate = if span > 0.0 {
            (requests - r0) as f64 / span
        } else {
            super::stats::per_sec(requests, now.duration_since(start))
        };
        let text = line(now.duration_since(start), requests, rate, errors);
        match &bar {
            Some(bar) => {
                bar.set_position(match stop {
                    Stop::Requests(_) => requests,
                    Stop::Duration(_) => now.duration_since(start).as_millis() as u64,
                });
                bar.set_message(text);
            }
            None => eprintln!("stress: {text}"),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_elapsed_requests_rate_errors() {
        assert_eq!(
            line(Duration::from_millis(2500), 1200, 480.4, 3),
            "   2.5s  1200 requests  480/s  3 errors"
        );
    }
}
