//! Tables for people (comfy-table). Each function returns a `Table` or a
//! `String`, so tests read them without a terminal.

use comfy_table::Table;

use super::{Section, Snapshot};
use crate::model::Order;
use crate::time::rfc3339_ms;

fn table(header: &[&str]) -> Table {
    crate::table::with_header(header.iter().copied())
}

/// `1.5s`, `2m05s`, `1h02m`.
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn tickets(t: &[u64]) -> String {
    const SHOW: usize = 6;
    let mut s = t
        .iter()
        .take(SHOW)
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if t.len() > SHOW {
        s.push_str(&format!(",… ({})", t.len()));
    }
    s
}

/// Events with counts.
pub fn events(snap: &Snapshot) -> Table {
    let mut t = table(&[
        "event",
        "capacity",
        "available",
        "held",
        "sold",
        "price",
        "expiring 10s",
        "expiring 60s",
        "expired total",
    ]);
    for e in &snap.events {
        let approx = if e.complete { "" } else { "+" };
        t.add_row(vec![
            e.id.clone(),
            e.capacity.to_string(),
            e.available.to_string(),
            e.held.to_string(),
            e.sold.to_string(),
            String::new(),
            format!("{}{approx}", e.expiring.0),
            format!("{}{approx}", e.expiring.1),
            e.expired_total.to_string(),
        ]);
        // A row per section, under its event (not for the one default
        // section of an event without sections: it is the event's row).
        let default =
            matches!(&e.sections[..], [s] if s.id == crate::model::DEFAULT_SECTION && s.price == 0);
        for s in e.sections.iter().filter(|_| !default) {
            t.add_row(vec![
                format!("  {} #{}-{}", s.id, s.first, s.last),
                (s.last + 1 - s.first).to_string(),
                s.available.to_string(),
                s.held.to_string(),
                s.sold.to_string(),
                format!("{} {}", money(s.price, &e.currency), e.currency),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    t
}

/// Minor units as a decimal amount in the currency's own number of places
/// (`1250` EUR → `12.50`, `1250` JPY → `1250`): integer arithmetic, never a
/// float.
pub fn money(minor: u64, currency: &str) -> String {
    // ISO 4217 currencies without minor units, and those with three.
    const NONE: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    if NONE.contains(&currency) {
        minor.to_string()
    } else if THREE.contains(&currency) {
        format!("{}.{:03}", minor / 1000, minor % 1000)
    } else {
        format!("{}.{:02}", minor / 100, minor % 100)
    }
}

/// Live holds, soonest first.
pub fn holds(snap: &Snapshot) -> Table {
    let mut t = table(&["hold", "event", "user", "tickets", "expires in"]);
    for h in &snap.holds {
        t.add_row(vec![
            h.id.to_string(),
            h.id.event.clone(),
            h.user.clone(),
            tickets(&h.tickets),
            human_ms(h.ttl_ms),
        ]);
    }
    t
}

/// Release schedule and purchase queue per event, then consumers and sinks.
pub fn queues(snap: &Snapshot) -> String {
    let mut t = table(&[
        "event",
        "holds scheduled",
        "overdue",
        "oldest overdue",
        "jobs queued",
        "jobs in flight",
        "dead letters",
    ]);
    for (e, (_, q)) in snap.events.iter().zip(&snap.queues) {
        t.add_row(vec![
            e.id.clone(),
            e.scheduled.to_string(),
            e.overdue.to_string(),
            e.oldest_overdue_ms
                .map(|d| human_ms(e.now_ms.saturating_sub(d)))
                .unwrap_or_else(|| "-".into()),
            if q.queued_at_least {
                format!("{}+", q.queued)
            } else {
                q.queued.to_string()
            },
            q.in_flight.to_string(),
            q.dead.to_string(),
        ]);
    }
    let mut c = table(&[
        "event",
        "consumer",
        "pending",
        "idle",
        "oldest pending",
        "deliveries",
    ]);
    let mut any = false;
    for (event, q) in &snap.queues {
        for con in &q.consumers {
            any = true;
            c.add_row(vec![
                event.clone(),
                con.name.clone(),
                con.pending.to_string(),
                human_ms(con.idle_ms),
                con.oldest
                    .map(|o| human_ms(o.0))
                    .unwrap_or_else(|| "-".into()),
                con.oldest
                    .map(|o| o.1.to_string())
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut w = table(&[
        "waiting room",
        "waiting",
        "admitted now",
        "admitted in all",
        "sold out",
        "shuffle seed",
    ]);
    for (event, r) in &snap.rooms {
        w.add_row(vec![
            event.clone(),
            r.n.saturating_sub(r.cursor).to_string(),
            format!("{} of {}", r.active, r.settings.map_or(0, |s| s.max_active)),
            r.total.to_string(),
            if r.sold_out { "yes" } else { "no" }.to_string(),
            match r.pre {
                Some(pre) => format!("{} ({pre} shuffled)", r.seed),
                None => "- (sales not open)".into(),
            },
        ]);
    }
    let mut s = table(&["sink stream", "entries", "maxlen", "most behind", "unread"]);
    let mut warnings = Vec::new();
    for v in &snap.sinks {
        let behind = v.most_behind();
        s.add_row(vec![
            v.stream.clone(),
            v.entries.to_string(),
            if v.maxlen == 0 {
                "-".into()
            } else {
                v.maxlen.to_string()
            },
            behind.map_or("-".into(), |g| g.name.clone()),
            behind
                .and_then(|g| g.lag)
                .map_or("-".into(), |l| l.to_string()),
        ]);
        for g in v.lagging() {
            warnings.push(format!(
                "warning: group {} of {} has {} entries unread, close to the stream's maxlen {}: entries it has not read are trimmed as new ones come",
                g.name,
                v.stream,
                g.lag.unwrap_or(0),
                v.maxlen
            ));
        }
    }
    let mut out = t.to_string();
    if any {
        out.push('\n');
        out.push_str(&c.to_string());
    }
    if !snap.rooms.is_empty() {
        out.push('\n');
        out.push_str(&w.to_string());
    }
    if !snap.sinks.is_empty() {
        out.push('\n');
        out.push_str(&s.to_string());
        for w in warnings {
            out.push('\n');
            out.push_str(&w);
        }
    }
    out
}

/// Orders, newest first.
pub fn orders(list: &[Order]) -> Table {
    let mut t = table(&[
        "order", "event", "user", "tickets", "status", "created", "ended",
    ]);
    for o in list {
        t.add_row(vec![
            o.id.to_string(),
            o.id.event.clone(),
            o.user.clone(),
            tickets(&o.tickets),
            o.status.as_str().to_string(),
            rfc3339_ms(o.created_ms),
            o.completed_ms.map(rfc3339_ms).unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// The whole text for one section (or the default view).
pub fn text(snap: &Snapshot, section: Option<Section>) -> String {
    match section {
        None => format!("{}\n{}\n{}", events(snap), holds(snap), queues(snap)),
        Some(Section::Events) => events(snap).to_string(),
        Some(Section::Holds) => holds(snap).to_string(),
        Some(Section::Queues) => queues(snap),
        Some(Section::Orders) => match &snap.order {
            Some(Some(o)) => orders(std::slice::from_ref(o)).to_string(),
            Some(None) => "no such order".into(),
            None => orders(&snap.orders).to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HoldId, SectionCounts};
    use crate::store::inspect::{ConsumerView, EventView, HoldView, QueueView};

    fn snap() -> Snapshot {
        let hold = HoldView {
            id: HoldId {
                event: "gig".into(),
                seq: 3,
                deadline_ms: 61_000,
                secret: "S".repeat(22),
            },
            user: "alice".into(),
            tickets: vec![1, 2, 3, 4, 5, 6, 7, 8],
            ttl_ms: 12_345,
            expires_ms: 61_000,
        };
        let e = EventView {
            id: "gig".into(),
            now_ms: 48_655,
            capacity: 100,
            available: 90,
            held: 8,
            sold: 2,
            hold_ttl_ms: 60_000,
            expired_total: 4,
            orders: (1, 1, 0),
            scheduled: 2,
            overdue: 1,
            oldest_overdue_ms: Some(40_000),
            expiring: (0, 1),
            complete: true,
            currency: "EUR".into(),
            settled: (0, 0, 0, 0),
            sections: vec![
                SectionCounts {
                    id: "floor".into(),
                    first: 1,
                    last: 40,
                    price: 4_950,
                    available: 30,
                    held: 8,
                    sold: 2,
                },
                SectionCounts {
                    id: "balcony".into(),
                    first: 41,
                    last: 100,
                    price: 2_500,
                    available: 60,
                    held: 0,
                    sold: 0,
                },
            ],
            holds: vec![hold.clone()],
        };
        let q = QueueView {
            queued: 1000,
            queued_at_least: true,
            in_flight: 2,
            dead: 1,
            consumers: vec![ConsumerView {
                name: "w-1".into(),
                pending: 2,
                idle_ms: 1500,
                oldest: Some((90_000, 3)),
            }],
        };
        Snapshot {
            events: vec![e],
            queues: vec![("gig".into(), q)],
            sinks: vec![crate::inspect::SinkView {
                stream: "tc:payments".into(),
                entries: 7,
                maxlen: 1000,
                groups: vec![crate::store::StreamGroup {
                    name: "payments".into(),
                    lag: Some(900),
                    pending: 1,
                }],
            }],
            holds: vec![hold],
            ..Snapshot::default()
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_ms(12_345), "12.3s");
        assert_eq!(human_ms(125_000), "2m05s");
        assert_eq!(human_ms(3_720_000), "1h02m");
    }

    #[test]
    fn tables_have_the_rows() {
        let s = snap();
        let ev = events(&s).to_string();
        assert!(
            ev.contains("gig") && ev.contains("90") && ev.contains("expiring 10s"),
            "{ev}"
        );
        assert!(
            ev.contains("floor #1-40")
                && ev.contains("49.50 EUR")
                && ev.contains("balcony #41-100"),
            "{ev}"
        );
        assert_eq!(
            (money(5, "EUR"), money(120_000, "USD")),
            ("0.05".into(), "1200.00".into())
        );
        assert_eq!(
            (money(1250, "JPY"), money(1250, "KWD")),
            ("1250".into(), "1.250".into())
        );
        let h = holds(&s).to_string();
        assert!(
            h.contains("gig.h3.61000.")
                && h.contains("alice")
                && h.contains("1,2,3,4,5,6,… (8)")
                && h.contains("12.3s"),
            "{h}"
        );
        let q = queues(&s);
        assert!(
            q.contains("8.6s")
                && q.contains("w-1")
                && q.contains("1m30s")
                && q.contains("tc:payments")
                && q.contains("1000+"),
            "{q}"
        );
    }

    #[test]
    fn json_without_section_is_the_contract_shape() {
        let v = super::super::to_json(&snap(), None);
        assert_eq!(
            v["events"][0],
            serde_json::json!({"id":"gig","capacity":100,"available":90,"held":8,"sold":2})
        );
        assert_eq!(
            v["queues"],
            serde_json::json!({"releaseScheduled":2,"releaseOverdue":1,"purchaseQueued":1000,"purchaseInFlight":2,"deadLetters":1})
        );
        assert_eq!(v["holds"][0]["ticketIds"].as_array().unwrap().len(), 8);
        assert_eq!(v["holds"][0]["ttlMs"], 12_345);
        assert_eq!(v.as_object().unwrap().len(), 3);
    }
}
