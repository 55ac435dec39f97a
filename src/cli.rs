//! Command-line types (clap derive) and nothing else. Public so tests can
//! call `Cli::parse_from`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ticketctl: ticket reservations and purchases on Redis.
#[derive(Debug, Parser)]
#[command(name = "ticketctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// Config file (default: ./ticketctl.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Redis URL (env TICKETCTL_REDIS_URL; default redis://127.0.0.1:6379).
    #[arg(long = "redis", global = true, value_name = "URL")]
    pub redis: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    Serve(ServeArgs),
    /// Create or list events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Run a worker.
    #[command(subcommand)]
    Work(WorkCommand),
    /// Show events, live holds, queues or orders.
    Inspect(InspectArgs),
    /// Dead-lettered purchase jobs.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Operator actions on holds.
    #[command(subcommand)]
    Hold(HoldCommand),
}

/// `inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// What to show (default: events, holds and queues).
    #[arg(value_enum)]
    pub section: Option<crate::inspect::Section>,
    /// With `orders`: one order by id.
    pub order_id: Option<String>,
    /// Only this event.
    #[arg(long)]
    pub event: Option<String>,
    /// Only holds of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Redraw every SECS seconds until Ctrl-C.
    #[arg(long, value_name = "SECS", value_parser = parse_watch)]
    pub watch: Option<Duration>,
    /// Print JSON (one document per snapshot) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Most holds and orders shown.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
}

/// `dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered jobs.
    List {
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
        /// Most entries per event.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered jobs back on the queue (their orders become pending).
    Retry {
        /// The order whose job to retry.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        order_id: Option<String>,
        /// Retry every dead-lettered job.
        #[arg(long)]
        all: bool,
        /// With --all: only this event.
        #[arg(long)]
        event: Option<String>,
    },
    /// Delete dead-lettered jobs (their orders stay failed).
    Purge {
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
    },
}

/// `hold ...`
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Release a live hold now (its tickets become available).
    Release {
        /// The hold id.
        hold_id: String,
    },
}

/// `work ...`
#[derive(Debug, Subcommand)]
pub enum WorkCommand {
    /// Release expired holds (their tickets become available again).
    Release {
        /// Release what is due now, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Publish purchased orders to the configured sinks.
    Purchase(PurchaseArgs),
}

/// `work purchase`
#[derive(Debug, Args)]
pub struct PurchaseArgs {
    /// Drain what is queued now, then exit.
    #[arg(long)]
    pub once: bool,
    /// Jobs per batch (default: purchase.batch).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: Option<u64>,
    /// Consumer name in the group (default: host name and process id).
    #[arg(long)]
    pub consumer: Option<String>,
}

/// `serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (env TICKETCTL_LISTEN; default 127.0.0.1:3000).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Also run the release and purchase workers in this process.
    #[arg(long)]
    pub with_workers: bool,
}

/// `event ...`
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Create an event (same id and settings again: no change).
    Create(EventCreateArgs),
    /// List events with their counts.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `event create`
#[derive(Debug, Args)]
pub struct EventCreateArgs {
    /// Event id: 1-64 characters of a-z A-Z 0-9 - _.
    pub id: String,
    /// Number of tickets (1..=10000000).
    #[arg(long)]
    pub capacity: u64,
    /// How long a hold lives (e.g. 60s, 2m), whole seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub hold_ttl: Duration,
    /// Most tickets in one hold.
    #[arg(long, default_value_t = 10)]
    pub max_per_hold: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

fn parse_watch(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err("--watch takes 0.1 to 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_go_anywhere() {
        let cli = Cli::parse_from([
            "ticketctl",
            "serve",
            "--redis",
            "redis://x:1",
            "--listen",
            "127.0.0.1:9",
        ]);
        assert_eq!(cli.global.redis.as_deref(), Some("redis://x:1"));
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.listen.as_deref(), Some("127.0.0.1:9"));
    }

    #[test]
    fn event_create_parses_durations() {
        let cli = Cli::parse_from([
            "ticketctl",
            "event",
            "create",
            "gig",
            "--capacity",
            "5",
            "--hold-ttl",
            "2m",
        ]);
        let Command::Event(EventCommand::Create(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.hold_ttl, Duration::from_secs(120));
        assert!(Cli::try_parse_from([
            "ticketctl",
            "event",
            "create",
            "gig",
            "--capacity",
            "5",
            "--hold-ttl",
            "soon"
        ])
        .is_err());
    }
}
