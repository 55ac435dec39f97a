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
    }
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
