//! Command-line types (clap derive) and nothing else. Public so tests can
//! call `Cli::parse_from`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::stress::Scenario;

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
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Operator actions on orders.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Load-test a running service and check its invariants.
    Stress(StressArgs),
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
        #[arg(long, value_parser = parse_event_id)]
        event: Option<String>,
        /// Most entries per event.
        #[arg(long, default_value_t = 100,
              value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
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
        #[arg(long, value_parser = parse_event_id)]
        event: Option<String>,
    },
    /// Delete dead-lettered jobs (their orders stay failed).
    Purge {
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// Only this event.
        #[arg(long, value_parser = parse_event_id)]
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

/// `order ...`
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Cancel an order (a paid one is refunded): its tickets go back on sale.
    Cancel {
        /// The order id.
        order_id: String,
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
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
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
    /// Write a finished event's orders to a file, one JSON line each, then
    /// remove the event's keys. Refused while tickets are held or orders
    /// are still to settle; run again after an interruption, it goes on
    /// where the file ends.
    Archive {
        /// Event id.
        id: String,
        /// The file to write (JSON Lines); an existing one is continued.
        #[arg(long, value_name = "FILE.jsonl")]
        out: std::path::PathBuf,
    },
}

/// `event create`
#[derive(Debug, Args)]
pub struct EventCreateArgs {
    /// Event id: 1-64 characters of a-z A-Z 0-9 - _.
    pub id: String,
    /// Number of tickets (1 up to the largest capacity, 10,000,000); with
    /// --section it may be left out (their sum).
    #[arg(long, required_unless_present = "sections")]
    pub capacity: Option<u64>,
    /// How long a hold lives (e.g. 60s, 2m), whole seconds.
    #[arg(long, default_value = crate::model::DEFAULT_HOLD_TTL_ARG, value_parser = parse_duration)]
    pub hold_ttl: Duration,
    /// Most tickets in one hold.
    #[arg(long, default_value_t = crate::model::DEFAULT_MAX_PER_HOLD)]
    pub max_per_hold: u64,
    /// A section: the next CAPACITY tickets at PRICE each, in the currency's
    /// minor units (cents). Repeat it, in ticket order.
    #[arg(long = "section", value_name = "ID:CAPACITY:PRICE", value_parser = parse_section)]
    pub sections: Vec<crate::model::Section>,
    /// Currency of the prices (three capital letters).
    #[arg(long, default_value = crate::model::DEFAULT_CURRENCY)]
    pub currency: String,
    /// When sales open (RFC 3339, e.g. 2026-12-01T20:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub sales_start: Option<String>,
    /// When sales close (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub sales_end: Option<String>,
    /// Most tickets one buyer may hold plus have bought (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_per_user: u64,
    /// Most extensions per hold.
    #[arg(long, default_value_t = 0)]
    pub max_extensions: u64,
    /// Put the event behind a waiting room (POST /v1/events/{id}/queue).
    #[arg(long)]
    pub queue: bool,
    /// --queue: most places admitted at once.
    #[arg(long, value_name = "N", default_value_t = crate::model::queue::DEFAULT_MAX_ACTIVE, requires = "queue")]
    pub queue_max_active: u64,
    /// --queue: how long an admission lasts, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = crate::model::queue::DEFAULT_ADMISSION_SECS, requires = "queue")]
    pub queue_admission: u64,
}

/// A percentage 0..=100.
fn parse_pct(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage 0..=100")),
    }
}

/// `ID:CAPACITY:PRICE`, integers only (money never as a float).
fn parse_section(s: &str) -> Result<crate::model::Section, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [id, cap, price] = parts[..] else {
        return Err(format!("{s:?} is not ID:CAPACITY:PRICE"));
    };
    Ok(crate::model::Section {
        id: id.into(),
        capacity: cap
            .parse()
            .map_err(|_| format!("capacity {cap:?} is not a whole number"))?,
        price: price
            .parse()
            .map_err(|_| format!("price {price:?} is not a whole number of minor units (cents)"))?,
    })
}

/// `stress`
#[derive(Debug, Args)]
pub struct StressArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:3000.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Event to load.
    #[arg(long, default_value = "default", value_name = "ID")]
    pub event: String,
    /// What every client does.
    #[arg(long, value_enum, default_value_t = Scenario::Reserve)]
    pub scenario: Scenario,
    /// Concurrent clients, one keep-alive connection each.
    #[arg(short = 'c', long = "connections", default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connections: u64,
    /// Stop after this many requests in all (holds, purchases and reads alike).
    #[arg(short = 'n', long = "requests", value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Stop after this long (default 10s when -n is not given).
    #[arg(short = 'd', long = "duration", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open model: this many requests per second over all clients, latency
    /// counted from each request's intended start.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Ramp up from 0 to the rate (or to all connections) over this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// Hold this many tickets chosen by the service instead of one random ticket.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub quantity: Option<u64>,
    /// Hold tickets of this section of the event only: random ones of its
    /// range, or with --quantity the lowest free ones in it.
    #[arg(long, value_name = "ID")]
    pub section: Option<String>,
    /// reserve-buy: pay this share of the orders bought (a signed `paid`
    /// result); of the rest, decline half and leave half to the payment
    /// deadline. Needs --payment-secret.
    #[arg(long, value_name = "PCT", value_parser = parse_pct)]
    pub pay: Option<f64>,
    /// The server's payment.secret, to sign --pay's results (default: env
    /// TICKETCTL_PAYMENT_SECRET).
    #[arg(long, value_name = "SECRET")]
    pub payment_secret: Option<String>,
    /// The server's auth.jwt_secret: sign an HS256 token per virtual user
    /// (its sub the user's id), for a server with [auth] mode = "jwt".
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// --jwt-secret: the iss of each token (the server's auth.issuer).
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// --jwt-secret: the aud of each token (the server's auth.audience).
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// onsale: pause between two polls of a waiting place.
    #[arg(long, default_value = "200ms", value_name = "DURATION", value_parser = parse_duration)]
    pub poll: Duration,
    /// reserve-buy, hot: pause between a won hold and its purchase.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub think: Duration,
    /// reserve-buy, hot: percentage of won holds left to expire instead of bought.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub abandon: f64,
    /// hot: how many tickets every client fights over.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub hot_tickets: u64,
    /// browse: GET this path on every request instead of the event's listings.
    #[arg(long, value_name = "PATH", value_parser = parse_path)]
    pub path: Option<String>,
    /// Seed of every random choice, to replay a run (default: random, printed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Longest wait for one answer.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the results as JSON to FILE ('-': to stdout, with the report on stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw latency over time and the latency histogram to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Exit 3 when the rule holds, e.g. 'p99>50ms', 'errors>0', 'rps<1000' (repeatable).
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub fail_if: Vec<String>,
    /// After the run, check the event's invariants against what the run saw; exit 4 on a violation.
    #[arg(long)]
    pub audit: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

fn parse_event_id(s: &str) -> Result<String, String> {
    if crate::model::valid_event_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a valid event id"))
    }
}

fn parse_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(s.to_string())
    } else {
        Err("--path must start with / and contain no spaces".into())
    }
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

/// A command-line error as one line: clap's message without its `error: `
/// prefix and usage text, any tip in parentheses, and where to find help.
pub fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let (mut message, mut tips) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        match line.strip_prefix("tip: ") {
            Some(tip) => tips.push(format!(" ({tip})")),
            None => message.push(line.strip_prefix("error: ").unwrap_or(line)),
        }
    }
    format!(
        "{}{}; see 'ticketctl --help'",
        message.join(" "),
        tips.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_fit_on_one_line() {
        for args in [
            &["ticketctl", "--bogus"][..],
            &["ticketctl", "event", "create", "x"],
            &["ticketctl", "--log-format", "xml", "event", "list"],
            &["ticketctl", "inspect", "bogus"],
            &[
                "ticketctl",
                "stress",
                "--url",
                "http://x",
                "--scenario",
                "bogus",
            ],
            &["ticketctl", "work", "purchase", "--batch", "0"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            let line = usage_error_line(&e);
            assert!(
                !line.contains('\n') && !line.starts_with("error"),
                "{args:?}: {line}"
            );
            assert!(line.ends_with("see 'ticketctl --help'"), "{line}");
        }
        let e = Cli::try_parse_from(["ticketctl", "event", "create", "x"]).unwrap_err();
        assert!(usage_error_line(&e).contains("--capacity"));
    }

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
