//! `--audit`: what the run saw of holds and purchases, and the invariants
//! checked against it and against the event's counts read after the run.
//! Every check is conservative: it flags only what the service cannot
//! explain whatever other clients did meanwhile. Owns no I/O.

use std::collections::HashMap;

/// Slack for the difference between this host's clock and the Redis
/// server's, which judges hold deadlines.
const CLOCK_SLACK_US: u64 = 50_000;

/// A hold this run won.
#[derive(Debug, Clone)]
pub struct WonHold {
    /// Its tickets.
    pub tickets: Vec<u64>,
    /// When its request was sent, in microseconds since the run started.
    pub sent_us: u64,
    /// When its answer arrived.
    pub recv_us: u64,
    /// Its time to live as the service reported it.
    pub ttl_us: u64,
    /// Whether this run bought it (202).
    pub purchased: bool,
    /// When this run sent a `declined` result for its order (`--pay`): from
    /// then on its tickets may be on sale again.
    pub given_back_us: Option<u64>,
}

/// What `--pay` did with an order; checked against the order after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaidAs {
    /// A `paid` result was accepted: the order must read `paid`.
    Paid,
    /// A `declined` result was accepted: it must read `cancelled`.
    Declined,
    /// Left to its payment deadline: `pending`, `completed`, or `cancelled`.
    Left,
}

impl WonHold {
    /// Until when the hold certainly keeps its tickets: for ever once
    /// bought, else until its deadline counted from the earliest instant
    /// it can have been created.
    fn surely_held_until(&self) -> u64 {
        if let Some(t) = self.given_back_us {
            t.saturating_sub(CLOCK_SLACK_US)
        } else if self.purchased {
            u64::MAX
        } else {
            (self.sent_us + self.ttl_us).saturating_sub(CLOCK_SLACK_US)
        }
    }
}

/// How an on-sale buyer's visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceEnd {
    /// Bought.
    Bought,
    /// Read `sold_out` while waiting.
    SoldOut,
    /// Its admission ran out (or read `expired`).
    Expired,
    /// Admitted, but found no ticket in three tries.
    NoTicket,
    /// The run ended first.
    Stopped,
}

/// One on-sale buyer's visit (`onsale`).
#[derive(Debug, Clone)]
pub struct PlaceLog {
    /// Its join number (its place in line: joins after sales opened).
    pub j: u64,
    /// When it joined, in microseconds since the run started.
    pub joined_us: u64,
    /// When it was first seen admitted.
    pub admitted_us: Option<u64>,
    /// When it stopped trying.
    pub ended_us: u64,
    /// When its last request certainly made while admitted was sent (the
    /// admission surely ran at least until then).
    pub admitted_end_us: u64,
    /// How.
    pub end: PlaceEnd,
    /// A hold of it succeeded before it was admitted.
    pub held_unadmitted: bool,
}

/// What one client task saw; merged after the run.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// Holds won, in the order they were won.
    pub holds: Vec<WonHold>,
    /// Orders `--pay` paid, declined or left, by order id.
    pub orders: Vec<(String, PaidAs)>,
    /// `onsale`: buyers this task played.
    pub users: u64,
    /// `onsale`: visits, in order.
    pub places: Vec<PlaceLog>,
    /// `onsale`: holds tried without a place, and how many were held.
    pub skips_tried: u64,
    /// See `skips_tried`.
    pub skips_held: u64,
}

/// What an on-sale run saw of the waiting room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnsaleReport {
    /// Buyers who joined.
    pub joined: u64,
    /// Of them, seen admitted.
    pub admitted: u64,
    /// Bought.
    pub bought: u64,
    /// Read sold out while waiting.
    pub sold_out: u64,
    /// Admission ran out.
    pub expired: u64,
    /// Admitted without finding a ticket.
    pub no_ticket: u64,
    /// Waits from joining to admission, in ms, sorted.
    pub waits_ms: Vec<f64>,
    /// Share of buyers who bought while someone ahead of them in line was
    /// still trying (had joined and not yet bought or given up).
    pub overtaken: f64,
    /// Most buyers seen admitted and not yet done at once.
    pub most_admitted: u64,
    /// Holds tried without a place / held.
    pub skips: (u64, u64),
}

/// The on-sale figures of a run's visits.
pub fn onsale(logs: &[AuditLog]) -> OnsaleReport {
    let places: Vec<&PlaceLog> = logs.iter().flat_map(|l| l.places.iter()).collect();
    let mut r = OnsaleReport {
        joined: places.len() as u64,
        skips: (
            logs.iter().map(|l| l.skips_tried).sum(),
            logs.iter().map(|l| l.skips_held).sum(),
        ),
        ..Default::default()
    };
    for p in &places {
        match p.end {
            PlaceEnd::Bought => r.bought += 1,
            PlaceEnd::SoldOut => r.sold_out += 1,
            PlaceEnd::Expired => r.expired += 1,
            PlaceEnd::NoTicket => r.no_ticket += 1,
            PlaceEnd::Stopped => {}
        }
        if let Some(a) = p.admitted_us {
            r.admitted += 1;
            r.waits_ms
                .push(a.saturating_sub(p.joined_us) as f64 / 1000.0);
        }
    }
    r.waits_ms.sort_by(f64::total_cmp);
    // Fairness: in line order, the latest end of everyone ahead.
    let mut by_j: Vec<&PlaceLog> = places.iter().copied().filter(|p| p.j > 0).collect();
    by_j.sort_by_key(|p| p.j);
    let (mut latest_ahead, mut overtaking, mut buyers) = (0u64, 0u64, 0u64);
    for p in &by_j {
        if p.end == PlaceEnd::Bought {
            buyers += 1;
            if latest_ahead > p.ended_us {
                overtaking += 1;
            }
        }
        latest_ahead = latest_ahead.max(p.ended_us);
    }
    r.overtaken = if buyers == 0 {
        0.0
    } else {
        overtaking as f64 / buyers as f64
    };
    // Admitted at once, as this run saw it: from the answer that showed a
    // place admitted to the last request it surely made while admitted,
    // within the admission the service gave it, so never more than the
    // room lets in.
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for p in &places {
        if let Some(a) = p.admitted_us {
            edges.push((a, 1));
            edges.push((p.admitted_end_us.max(a), -1));
        }
    }
    edges.sort_by_key(|&(t, d)| (t, d));
    let mut now = 0i64;
    for (_, d) in edges {
        now += d;
        r.most_admitted = r.most_admitted.max(now as u64);
    }
    r
}

/// The on-sale invariants: no hold without admission, never more admitted
/// at once than `max_active`.
pub fn check_onsale(r: &OnsaleReport, max_active: Option<u64>) -> Vec<String> {
    let mut v = Vec::new();
    if r.skips.1 > 0 {
        v.push(format!(
            "{} of {} holds made without a place in the waiting room were accepted",
            r.skips.1, r.skips.0
        ));
    }
    if let Some(max) = max_active {
        if r.most_admitted > max {
            v.push(format!(
                "{} buyers were admitted at once; the room's maxActive is {max}",
                r.most_admitted
            ));
        }
    }
    v
}

/// Checks each order `--pay` acted on against its status after the run
/// (`statuses`: the same order ids, read then); one sentence per mismatch.
pub fn check_orders(orders: &[(String, PaidAs)], statuses: &[String]) -> Vec<String> {
    orders
        .iter()
        .zip(statuses)
        .filter_map(|((id, did), status)| {
            let fits = match did {
                PaidAs::Paid => status == "paid",
                PaidAs::Declined => status == "cancelled",
                PaidAs::Left => matches!(status.as_str(), "pending" | "completed" | "cancelled"),
            };
            (!fits).then(|| format!("order {id} was {did:?} by this run but reads {status}"))
        })
        .collect()
}

/// The event's counts after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Tickets of the event.
    pub capacity: u64,
    /// Available now.
    pub available: u64,
    /// Held now.
    pub held: u64,
    /// Sold now.
    pub sold: u64,
}

/// The outcome of the audit.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// The counts read after the run.
    pub counts: Counts,
    /// Holds this run won.
    pub holds_won: u64,
    /// Tickets this run bought.
    pub tickets_bought: u64,
    /// Tickets of this run's holds that were certainly still held when the
    /// counts were read.
    pub tickets_live: u64,
    /// Every broken invariant, one sentence each.
    pub violations: Vec<String>,
    /// Orders `--pay` acted on whose status was checked.
    pub orders_checked: u64,
}

/// Checks the run's holds and the counts read (answered by `read_recv_us`).
pub fn check(logs: Vec<AuditLog>, counts: Counts, read_recv_us: u64) -> AuditReport {
    let holds: Vec<WonHold> = logs.into_iter().flat_map(|l| l.holds).collect();
    let mut violations = Vec::new();

    // A ticket is won twice when a second hold on it was created while the
    // first one certainly still had it.
    let mut by_ticket: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, h) in holds.iter().enumerate() {
        for t in &h.tickets {
            by_ticket.entry(*t).or_default().push(i);
        }
    }
    let mut tickets: Vec<_> = by_ticket.into_iter().filter(|(_, v)| v.len() > 1).collect();
    tickets.sort_unstable_by_key(|(t, _)| *t);
    for (ticket, idx) in tickets {
        let double = idx.iter().any(|&i| {
            idx.iter().any(|&j| {
                let (a, b) = (&holds[i], &holds[j]);
                i != j && b.sent_us >= a.recv_us && b.recv_us < a.surely_held_until()
            })
        });
        let bought = idx
            .iter()
            .filter(|&&i| holds[i].purchased && holds[i].given_back_us.is_none())
            .count();
        if bought > 1 {
            violations.push(format!(
                "ticket {ticket} was bought in {bought} different purchases"
            ));
        } else if double {
            violations.push(format!(
                "ticket {ticket} was won by a second hold while the first still had it"
            ));
        }
    }

    let tickets_bought: u64 = holds
        .iter()
        .filter(|h| h.purchased && h.given_back_us.is_none())
        .map(|h| h.tickets.len() as u64)
        .sum();
    let tickets_live: u64 = holds
        .iter()
        .filter(|h| !h.purchased && h.surely_held_until() > read_recv_us)
        .map(|h| h.tickets.len() as u64)
        .sum();
    let c = counts;
    if tickets_bought > c.capacity {
        violations.push(format!(
            "this run bought {tickets_bought} tickets but the event has only {}",
            c.capacity
        ));
    }
    if c.available + c.held + c.sold != c.capacity {
        violations.push(format!(
            "available + held + sold = {} + {} + {} = {}, not the capacity {}",
            c.available,
            c.held,
            c.sold,
            c.available + c.held + c.sold,
            c.capacity
        ));
    }
    if c.sold < tickets_bought {
        violations.push(format!(
            "the event reports {} sold but this run alone bought {tickets_bought}",
            c.sold
        ));
    }
    if c.held < tickets_live {
        violations.push(format!(
            "the event reports {} held but this run still holds {tickets_live}",
            c.held
        ));
    }
    AuditReport {
        counts,
        holds_won: holds.len() as u64,
        tickets_bought,
        tickets_live,
        violations,
        orders_checked: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(tickets: &[u64], sent_ms: u64, ttl_ms: u64, purchased: bool) -> WonHold {
        WonHold {
            tickets: tickets.to_vec(),
            sent_us: sent_ms * 1000,
            recv_us: sent_ms * 1000 + 2000,
            ttl_us: ttl_ms * 1000,
            purchased,
            given_back_us: None,
        }
    }

    fn counts(available: u64, held: u64, sold: u64) -> Counts {
        Counts {
            capacity: 10,
            available,
            held,
            sold,
        }
    }

    #[test]
    fn a_consistent_run_passes() {
        let logs = vec![
            AuditLog {
                holds: vec![hold(&[1], 0, 1000, true), hold(&[2, 3], 10, 60_000, false)],
                ..Default::default()
            },
            AuditLog {
                // Ticket 4 held again after the first hold expired: fine.
                holds: vec![hold(&[4], 0, 1000, false), hold(&[4], 2000, 60_000, true)],
                ..Default::default()
            },
        ];
        let r = check(logs, counts(6, 2, 2), 3_000_000);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.holds_won, r.tickets_bought, r.tickets_live), (4, 2, 2));
    }

    #[test]
    fn every_invariant_is_named() {
        let logs = vec![AuditLog {
            holds: vec![
                hold(&[1], 0, 1000, true),
                hold(&[1], 5000, 1000, true),
                hold(&[2], 0, 60_000, false),
                hold(&[2], 100, 60_000, false),
            ],
            ..Default::default()
        }];
        let r = check(logs, counts(8, 0, 1), 1_000_000);
        let all = r.violations.join("\n");
        assert!(all.contains("ticket 1 was bought in 2"), "{all}");
        assert!(all.contains("ticket 2 was won by a second hold"), "{all}");
        assert!(all.contains("not the capacity 10"), "{all}");
        assert!(all.contains("this run alone bought 2"), "{all}");
        assert!(all.contains("this run still holds 2"), "{all}");
    }

    #[test]
    fn overbuying_is_caught() {
        let holds = (1..=11).map(|t| hold(&[t], 0, 1000, true)).collect();
        let r = check(
            vec![AuditLog {
                holds,
                ..Default::default()
            }],
            counts(0, 0, 10),
            0,
        );
        assert!(r.violations.iter().any(|v| v.contains("has only 10")));
    }
}
