//! `ticketctl event create|list`.

use anyhow::Context;
use comfy_table::Table;
use serde_json::json;

use crate::cli::{EventCommand, EventCreateArgs, GlobalOpts};
use crate::config::{EventSeed, TimeValue};
use crate::model::json::event_json;
use crate::model::SettingNames;
use crate::model::{CreateEvent, EventCounts, EventSettings};
use crate::UsageError;

pub async fn run(global: &GlobalOpts, cmd: EventCommand) -> anyhow::Result<()> {
    let cfg = super::load_config(global, None)?;
    match cmd {
        EventCommand::Create(a) => create(&cfg, a).await,
        EventCommand::List { json } => list(&cfg, json).await,
        EventCommand::Archive { id, out } => archive(&cfg, &id, &out).await,
    }
}

/// `event archive`: the orders to `out` (continuing a file a run before
/// left, once every order in it reads as it does now), synced, then the
/// event's keys removed by a script that checks again that nothing is left
/// to settle, that every order was written and that no order changed since
/// this run began.
async fn archive(
    cfg: &crate::config::Config,
    id: &str,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::store::archive::{Removal, PAGE};
    use std::io::Write;
    if !crate::model::valid_event_id(id) {
        return Err(UsageError(format!("{id:?} is not an event id")).into());
    }
    let store = super::connect(cfg).await?;
    let counters = match store.remove_event(id, true, 0, "").await? {
        Removal::Done(_, counters) => counters,
        Removal::Busy(why) => anyhow::bail!("event {id} is not finished: {why}"),
        Removal::Changed(_) => unreachable!("a check does not compare counts"),
        Removal::NoEvent => {
            // Removed by a run that stopped before taking it off the list.
            if out.exists() && forget(cfg, &store, id).await? {
                println!(
                    "event {id} was already archived to {}; now it is off the list too",
                    out.display()
                );
                return Ok(());
            }
            anyhow::bail!("no event {id}");
        }
    };
    let (mut written, mut next, same) = resume(&store, id, out).await?;
    if written > 0 && !same {
        eprintln!(
            "orders of event {id} changed since {} was begun: writing it again from the start",
            out.display()
        );
        std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
        (written, next) = (0, 1);
    }
    let mut file = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .with_context(|| format!("cannot write {}", out.display()))?,
    );
    let mut count = written;
    loop {
        let Some((page, last)) = store.order_page(id, next).await? else {
            anyhow::bail!("event {id} disappeared while its orders were being written");
        };
        for a in &page {
            file.write_all(archive_line(a)?.as_bytes())?;
            file.write_all(b"\n")?;
            count += 1;
        }
        next += PAGE;
        if next > last {
            break;
        }
    }
    file.flush()?;
    file.get_ref()
        .sync_all()
        .with_context(|| format!("cannot sync {}", out.display()))?;
    drop(file);
    match store.remove_event(id, false, count, &counters).await? {
        Removal::Done(n, _) => {
            forget(cfg, &store, id).await?;
            println!("archived event {id}: {n} orders in {}; its keys are removed", out.display());
            Ok(())
        }
        Removal::Busy(why) => anyhow::bail!(
            "event {id} is not finished: {why} ({count} orders written to {})",
            out.display()
        ),
        Removal::Changed(n) => anyhow::bail!(
            "orders of event {id} changed while they were written ({n} now, {count} in {}): run the same command again",
            out.display()
        ),
        Removal::NoEvent => anyhow::bail!("event {id} disappeared while its orders were being written"),
    }
}

/// One order as an archive line holds it.
fn archive_value(a: &crate::store::archive::ArchivedOrder) -> anyhow::Result<serde_json::Value> {
    let mut line = serde_json::to_value(crate::model::json::order_json(&a.order))?;
    if let Some((what, at, reference)) = &a.payment {
        line["payment"] = json!({
            "result": what, "at": crate::time::rfc3339_ms(*at), "reference": reference,
        });
    }
    Ok(line)
}

/// One order as an archive line (without its newline).
fn archive_line(a: &crate::store::archive::ArchivedOrder) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&archive_value(a)?)?)
}

/// Takes a removed event off the list, and the sinks' record of which of
/// its orders they have (an event made again with this id numbers its
/// orders anew); true when it was listed.
async fn forget(
    cfg: &crate::config::Config,
    store: &crate::store::Store,
    id: &str,
) -> anyhow::Result<bool> {
    for s in &cfg.purchase.sinks {
        if let crate::config::SinkConfig::RedisStream { stream, .. } = s {
            store.forget_published(stream, id).await?;
        }
    }
    Ok(store.forget_event(id).await?)
}

/// What an archive file already holds, read once, line by line: how many
/// orders, the order number to go on from, and whether every order in it
/// reads now as it was written (none changed between an interrupted run
/// and this one, none made below the last one written). A last line cut
/// short is cut off; a file that holds another event's orders (or is not
/// JSON Lines) is refused.
async fn resume(
    store: &crate::store::Store,
    id: &str,
    out: &std::path::Path,
) -> anyhow::Result<(u64, u64, bool)> {
    use crate::store::archive::{ArchivedOrder, PAGE};
    use std::io::BufRead;
    let file = match std::fs::File::open(out) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 1, true)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
    };
    let size = file.metadata()?.len();
    let mut reader = std::io::BufReader::new(file);
    // The orders as they read now, in number order, a page at a time.
    let mut now: std::vec::IntoIter<ArchivedOrder> = Vec::new().into_iter();
    let mut now_from = 1;
    // The next order as it reads now, numbered at most `upto`.
    async fn next_now(
        store: &crate::store::Store,
        id: &str,
        now: &mut std::vec::IntoIter<ArchivedOrder>,
        now_from: &mut u64,
        upto: u64,
    ) -> anyhow::Result<Option<ArchivedOrder>> {
        loop {
            if let Some(a) = now.next() {
                return Ok((a.order.id.seq <= upto).then_some(a));
            }
            if *now_from > upto {
                return Ok(None);
            }
            let Some((page, _)) = store.order_page(id, *now_from).await? else {
                return Ok(None);
            };
            *now = page.into_iter();
            *now_from += PAGE;
        }
    }
    let (mut count, mut next, mut whole, mut same) = (0u64, 1u64, 0u64, true);
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        whole += read as u64;
        if line.len() == 1 {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&line).with_context(|| {
            format!(
                "{} line {n} is not JSON: not an archive of this event",
                out.display()
            )
        })?;
        let order = v["orderId"].as_str().and_then(crate::model::OrderId::parse);
        let seq = match order {
            Some(o) if o.event == id && o.seq >= next => o.seq,
            _ => anyhow::bail!(
                "{} line {n} is not an order of event {id} after the one before",
                out.display()
            ),
        };
        next = seq + 1;
        count += 1;
        if same {
            same = match next_now(store, id, &mut now, &mut now_from, seq).await? {
                Some(a) => a.order.id.seq == seq && archive_value(&a)? == v,
                None => false,
            };
        }
    }
    // An order numbered below the last one written but not in the file (made
    // since, or lines lost) makes it untrue too.
    if same && next > 1 {
        same = next_now(store, id, &mut now, &mut now_from, next - 1)
            .await?
            .is_none();
    }
    if whole < size {
        std::fs::OpenOptions::new()
            .write(true)
            .open(out)?
            .set_len(whole)
            .with_context(|| format!("cannot cut the last line of {}", out.display()))?;
    }
    Ok((count, next, same))
}

async fn create(cfg: &crate::config::Config, a: EventCreateArgs) -> anyhow::Result<()> {
    if a.hold_ttl.subsec_nanos() != 0 {
        return Err(UsageError("--hold-ttl must be whole seconds".into()).into());
    }
    let seed = EventSeed {
        id: a.id,
        capacity: a.capacity.unwrap_or(0),
        hold_ttl_seconds: a.hold_ttl.as_secs(),
        max_tickets_per_hold: a.max_per_hold,
        currency: a.currency,
        sections: a.sections,
        sales_start: a.sales_start.map(TimeValue::Text),
        sales_end: a.sales_end.map(TimeValue::Text),
        max_tickets_per_user: a.max_per_user,
        max_extensions: a.max_extensions,
        queue: a.queue.then_some(crate::config::QueueSeed {
            enabled: true,
            max_active: a.queue_max_active,
            admission_seconds: a.queue_admission,
        }),
    };
    if a.capacity == Some(0) {
        return Err(UsageError(format!(
            "event {}: --capacity must be 1..={}",
            seed.id,
            crate::model::MAX_CAPACITY
        ))
        .into());
    }
    let settings = seed.validate_as(&SettingNames::CLI).map_err(UsageError)?;
    let store = super::connect(cfg).await?;
    let what = describe(&settings);
    match store
        .create_event(&settings)
        .await
        .context("cannot create the event")?
    {
        CreateEvent::Created => println!("created event {} ({what})", settings.id),
        CreateEvent::Exists => println!(
            "event {} already exists with the same settings ({what})",
            settings.id
        ),
        CreateEvent::Conflict(e) => anyhow::bail!(
            "event {} already exists with other settings ({})",
            e.id,
            describe(&e)
        ),
    }
    Ok(())
}

/// An event's settings in one line.
fn describe(s: &EventSettings) -> String {
    let mut out = format!(
        "capacity {}, hold {}s, at most {} per hold",
        s.capacity,
        s.hold_ttl_ms / 1000,
        s.max_per_hold
    );
    let sell = &s.selling;
    for sec in &sell.sections {
        out.push_str(&format!(
            ", section {} of {} at {} {}",
            sec.id, sec.capacity, sec.price, sell.currency
        ));
    }
    if let Some(ms) = sell.sales_start_ms {
        out.push_str(&format!(", on sale from {}", crate::time::rfc3339_ms(ms)));
    }
    if let Some(ms) = sell.sales_end_ms {
        out.push_str(&format!(", until {}", crate::time::rfc3339_ms(ms)));
    }
    if sell.max_per_user > 0 {
        out.push_str(&format!(", at most {} per buyer", sell.max_per_user));
    }
    if sell.max_extensions > 0 {
        out.push_str(&format!(
            ", up to {} extensions per hold",
            sell.max_extensions
        ));
    }
    if let Some(q) = &sell.queue {
        out.push_str(&format!(
            ", behind a waiting room of {} at a time for {}s each",
            q.max_active,
            q.admission_ms / 1000
        ));
    }
    out
}

async fn list(cfg: &crate::config::Config, as_json: bool) -> anyhow::Result<()> {
    let store = super::connect(cfg).await?;
    let mut events = Vec::new();
    for id in store.list_events().await.context("cannot list events")? {
        if let Some(c) = store
            .event_counts(&id)
            .await
            .with_context(|| format!("cannot read event {id}"))?
        {
            events.push(c);
        }
    }
    if as_json {
        let list: Vec<_> = events.iter().map(event_json).collect();
        println!("{}", json!({ "events": list }));
    } else {
        println!("{}", table(&events));
    }
    Ok(())
}

/// The event table shown to people.
pub fn table(events: &[EventCounts]) -> Table {
    let mut t = crate::table::with_header([
        "event",
        "capacity",
        "available",
        "held",
        "sold",
        "hold ttl",
        "max/hold",
    ]);
    for c in events {
        t.add_row([
            c.settings.id.clone(),
            c.settings.capacity.to_string(),
            c.available.to_string(),
            c.held.to_string(),
            c.sold.to_string(),
            format!("{}s", c.settings.hold_ttl_ms / 1000),
            c.settings.max_per_hold.to_string(),
        ]);
    }
    t
}
