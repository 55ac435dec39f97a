//! `ticketctl inspect`: one snapshot, or one every `--watch` seconds until
//! Ctrl-C (redrawn in place on a terminal, appended otherwise).

use std::io::{IsTerminal, Write};

use anyhow::Context;

use crate::cli::{GlobalOpts, InspectArgs};
use crate::config::SinkConfig;
use crate::daemon::shutdown;
use crate::inspect::{self, render, Query, Section};
use crate::model::valid_event_id;
use crate::UsageError;

pub async fn run(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    let cfg = super::load_config(global, None)?;
    if let Some(e) = &args.event {
        if !valid_event_id(e) {
            return Err(UsageError(format!("--event {e:?} is not a valid event id")).into());
        }
    }
    if args.order_id.is_some() && args.section != Some(Section::Orders) {
        return Err(UsageError(
            "an order id goes with the orders section: inspect orders ORDER_ID".into(),
        )
        .into());
    }
    let store = super::connect(&cfg).await?;
    let query = Query {
        event: args.event.clone(),
        user: args.user.clone(),
        limit: args.limit as usize,
        order_id: args.order_id.clone(),
        sink_streams: cfg
            .purchase
            .sinks
            .iter()
            .filter_map(|s| match s {
                SinkConfig::RedisStream { stream, maxlen } => Some((stream.clone(), *maxlen)),
                SinkConfig::Webhook { .. } => None,
            })
            .collect(),
    };
    let Some(every) = args.watch else {
        let snap = inspect::gather(&store, args.section, &query)
            .await
            .context("cannot read from Redis")?;
        // What was asked for by name must exist: an error, and no snapshot
        // on stdout that a script could take for an empty one.
        if let (Some(id), Some(None)) = (&args.order_id, &snap.order) {
            anyhow::bail!("no such order {id}");
        }
        // (An order asked for by id is shown whatever --event says.)
        if let (Some(e), None, true) = (&args.event, &args.order_id, snap.events.is_empty()) {
            anyhow::bail!("no such event {e}");
        }
        show(&snap, &args, false)?;
        return Ok(());
    };
    let stop = shutdown::on_signal();
    let redraw = std::io::stdout().is_terminal() && !args.json;
    loop {
        match inspect::gather(&store, args.section, &query).await {
            Ok(snap) => {
                if !show(&snap, &args, redraw)? {
                    return Ok(());
                }
            }
            Err(e) => eprintln!("ticketctl: cannot read from Redis: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return Ok(()),
        }
    }
}

/// Prints a snapshot; `Ok(false)` when the reader went away (`| head`):
/// then there is nothing more to do, and nothing went wrong.
fn show(snap: &inspect::Snapshot, args: &InspectArgs, redraw: bool) -> std::io::Result<bool> {
    match print(snap, args, redraw) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        r => r.map(|()| true),
    }
}

fn print(snap: &inspect::Snapshot, args: &InspectArgs, redraw: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", inspect::to_json(snap, args.section))?;
    } else {
        if redraw {
            // Clear the screen and go home, then draw the new snapshot.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        let when = snap
            .events
            .first()
            .map(|e| crate::time::rfc3339_ms(e.now_ms))
            .unwrap_or_default();
        if args.watch.is_some() {
            writeln!(out, "ticketctl inspect  {when}")?;
        }
        writeln!(out, "{}", render::text(snap, args.section))?;
    }
    out.flush()?;
    Ok(())
}
