//! ticketctl: ticket reservation and purchase on Redis.
//!
//! Crate map:
//! - [`cli`]: clap types; [`config`]: file, environment and flags merged.
//! - [`cmd`]: one module per subcommand, glue from flags to the library.
//! - [`store`]: the only code that talks to Redis (keys, Lua scripts, queries).
//! - [`daemon`]: the HTTP API and the workers.
//! - [`inspect`]: operator snapshots and their tables.
//! - [`stress`]: the load generator and invariant auditor.
//! - [`time`]: timestamp formatting.

pub mod auth;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod inspect;
pub mod model;
pub mod signature;
pub mod store;
pub mod stress;
pub mod table;
pub mod time;
pub mod tls;

use cli::{Cli, LogFormat};

/// Exit status for usage and configuration errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit status for runtime failures.
pub const EXIT_FAILURE: i32 = 1;

/// A usage problem found after parsing (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit status when a `stress --fail-if` rule is violated.
pub const EXIT_RULE: i32 = 3;
/// Exit status when `stress --audit` finds a broken invariant.
pub const EXIT_AUDIT: i32 = 4;
/// Exit status of a `stress` run stopped by Ctrl-C (128 + SIGINT, as a
/// shell reports it), after its partial report.
pub const EXIT_INTERRUPTED: i32 = 130;

/// A run stopped before its end by Ctrl-C (exit status 130).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// A run that completed but failed a check the user asked for.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailed {
    /// A `--fail-if` rule held (exit status 3).
    #[error("{0}")]
    Rule(String),
    /// An invariant was broken (exit status 4).
    #[error("{0}")]
    Audit(String),
}

/// Runs one command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.global.log_format);
    // `serve` runs one single-threaded event loop per serving thread (see
    // daemon/serve.rs); this one is the first of them. Everything else uses a
    // work-stealing pool.
    let rt = if matches!(cli.command, cli::Command::Serve(_)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(cmd::dispatch(cli))
}

/// Exit status for an error returned by [`run`].
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if let Some(c) = err.chain().find_map(|e| e.downcast_ref::<CheckFailed>()) {
        return match c {
            CheckFailed::Rule(_) => EXIT_RULE,
            CheckFailed::Audit(_) => EXIT_AUDIT,
        };
    }
    if err.chain().any(|e| e.is::<Interrupted>()) {
        return EXIT_INTERRUPTED;
    }
    let usage = err
        .chain()
        .any(|e| e.is::<config::ConfigError>() || e.is::<UsageError>());
    if usage {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// An error as the one line printed for it: its causes joined with `: `,
/// and any line breaks in them (a client library's multi-line text) joined
/// with `; `.
pub fn error_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Default log filter: our own records at info; the Redis client's own
/// warnings (each failed node connection) stay out of the way of the one-line
/// errors the commands print.
const DEFAULT_LOG: &str = "info,redis=error";

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("TICKETCTL_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!(
                "ticketctl: TICKETCTL_LOG {v:?} is not a log filter ({e}); using {DEFAULT_LOG:?}"
            );
            EnvFilter::new(DEFAULT_LOG)
        }),
        _ => EnvFilter::new(DEFAULT_LOG),
    };
    // Colours only on a terminal: a file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_printed_on_one_line() {
        let e = anyhow::anyhow!("Parse error at 1\nUnexpected `84`\n  Unexpected `72`\n")
            .context("cannot use Redis at redis://127.0.0.1:1");
        assert_eq!(
            error_line(&e),
            "cannot use Redis at redis://127.0.0.1:1: Parse error at 1; Unexpected `84`; Unexpected `72`"
        );
        assert_eq!(exit_code(&e), EXIT_FAILURE);
    }

    #[test]
    fn exit_statuses() {
        let interrupted = anyhow::Error::new(Interrupted("stopped".into()));
        assert_eq!(exit_code(&interrupted), EXIT_INTERRUPTED);
        let rule = anyhow::Error::new(CheckFailed::Rule("r".into()));
        assert_eq!(exit_code(&rule), EXIT_RULE);
        let usage = anyhow::Error::new(UsageError("u".into()));
        assert_eq!(exit_code(&usage), EXIT_USAGE);
    }
}
