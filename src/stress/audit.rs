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

/// What one client task saw; merged after the run.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// Holds won, in the order they were won.
    pub holds: Vec<WonHold>,
    /// Orders `--pay` paid, declined or left, by order id.
    pub orders: Vec<(String, PaidAs)>,
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
