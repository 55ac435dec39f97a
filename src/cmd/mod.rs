//! One module per subcommand: turns flags and configuration into calls on
//! the library. Errors get their context here (`anyhow`).

mod dlq;
mod event;
mod hold;
mod inspect;
mod order;
mod serve;
mod stress;
mod work;

use anyhow::Context;

use crate::cli::{Cli, Command, GlobalOpts};
use crate::config::{Config, Overrides};
use crate::store::Store;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Event(cmd) => event::run(&cli.global, cmd).await,
        Command::Work(cmd) => work::run(&cli.global, cmd).await,
        Command::Inspect(args) => inspect::run(&cli.global, args).await,
        Command::Dlq(cmd) => dlq::run(&cli.global, cmd).await,
        Command::Hold(cmd) => hold::run(&cli.global, cmd).await,
        Command::Order(cmd) => order::run(&cli.global, cmd).await,
        Command::Stress(args) => stress::run(args).await,
    }
}

/// Loads the configuration with the global flags (and `listen`) applied.
pub(crate) fn load_config(global: &GlobalOpts, listen: Option<String>) -> anyhow::Result<Config> {
    let overrides = Overrides {
        redis_url: global.redis.clone(),
        listen,
    };
    Ok(Config::load(global.config.as_deref(), &overrides)?)
}

/// Connects to the configured Redis, with a message naming it on failure.
pub(crate) async fn connect(cfg: &Config) -> anyhow::Result<Store> {
    Store::connect(&cfg.redis).await.with_context(|| {
        // What Store::connect used: the cluster seeds when given.
        let at = if cfg.redis.cluster.is_empty() {
            crate::config::redact_url(&cfg.redis.url)
        } else {
            let seeds: Vec<String> = cfg
                .redis
                .endpoints()
                .into_iter()
                .map(crate::config::redact_url)
                .collect();
            format!("the cluster of redis.cluster ({})", seeds.join(", "))
        };
        format!("cannot use Redis at {at}")
    })
}
