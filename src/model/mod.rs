//! The domain: events, holds and orders, their identifiers, and the rules
//! every way of making them (config file, HTTP API, command line) checks:
//! each limit and default is written here once. Knows nothing of Redis or
//! HTTP; the store and the API speak these types.

pub mod ids;
pub mod json;

pub use ids::{HoldId, OrderId};

/// Largest capacity an event may have.
pub const MAX_CAPACITY: u64 = 10_000_000;
/// Longest hold time, in seconds (a day).
pub const MAX_HOLD_TTL_SECS: u64 = 86_400;
/// Most tickets one hold may take (and one request may name).
pub const MAX_TICKETS_PER_HOLD: u64 = 1000;
/// The hold time of an event that names none, in seconds.
pub const DEFAULT_HOLD_TTL_SECS: u64 = 60;
/// [`DEFAULT_HOLD_TTL_SECS`] as `event create --hold-ttl` takes it (a test
/// checks that they agree).
pub const DEFAULT_HOLD_TTL_ARG: &str = "60s";
/// The most tickets per hold of an event that names none.
pub const DEFAULT_MAX_PER_HOLD: u64 = 10;
/// Longest `userId`, in characters (or digits, for a number).
pub const MAX_USER_ID_CHARS: usize = 128;
/// Longest event id.
pub const MAX_EVENT_ID_LEN: usize = 64;
/// What an event id may be, for messages and the API document.
pub const EVENT_ID_RULE: &str = "1-64 characters of a-z A-Z 0-9 - _";
/// The same as a regular expression (the API document's `pattern`).
pub const EVENT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Checks an event id: [`EVENT_ID_RULE`].
pub fn valid_event_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_EVENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the settings of an event are called where they were given: the
/// config file, the HTTP API or the command line.
pub struct SettingNames {
    /// The capacity.
    pub capacity: &'static str,
    /// The hold time.
    pub hold_ttl: &'static str,
    /// The most tickets per hold.
    pub max_per_hold: &'static str,
}

impl SettingNames {
    /// `[[events]]` keys.
    pub const CONFIG: SettingNames = SettingNames {
        capacity: "capacity",
        hold_ttl: "hold_ttl_seconds",
        max_per_hold: "max_tickets_per_hold",
    };
    /// JSON fields of `POST /v1/events`.
    pub const API: SettingNames = SettingNames {
        capacity: "capacity",
        hold_ttl: "holdTtlSeconds",
        max_per_hold: "maxTicketsPerHold",
    };
    /// Flags of `ticketctl event create`.
    pub const CLI: SettingNames = SettingNames {
        capacity: "--capacity",
        hold_ttl: "--hold-ttl (seconds)",
        max_per_hold: "--max-per-hold",
    };
}

/// Checks an event's settings against the limits above; the message names
/// each setting as `names` says.
pub fn check_event(
    id: &str,
    capacity: u64,
    hold_ttl_secs: u64,
    max_per_hold: u64,
    names: &SettingNames,
) -> Result<(), String> {
    if !valid_event_id(id) {
        return Err(format!("event id {id:?} must be {EVENT_ID_RULE}"));
    }
    if !(1..=MAX_CAPACITY).contains(&capacity) {
        return Err(format!(
            "event {id}: {} must be 1..={MAX_CAPACITY}",
            names.capacity
        ));
    }
    if !(1..=MAX_HOLD_TTL_SECS).contains(&hold_ttl_secs) {
        return Err(format!(
            "event {id}: {} must be 1..={MAX_HOLD_TTL_SECS}",
            names.hold_ttl
        ));
    }
    if !(1..=MAX_TICKETS_PER_HOLD).contains(&max_per_hold) {
        return Err(format!(
            "event {id}: {} must be 1..={MAX_TICKETS_PER_HOLD}",
            names.max_per_hold
        ));
    }
    Ok(())
}

/// An event's fixed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// Event id.
    pub id: String,
    /// Number of tickets.
    pub capacity: u64,
    /// Hold lifetime in milliseconds.
    pub hold_ttl_ms: u64,
    /// Most tickets in one hold.
    pub max_per_hold: u64,
}

/// Outcome of creating an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateEvent {
    /// Newly created.
    Created,
    /// Existed with the same settings.
    Exists,
    /// Existed with these other settings.
    Conflict(EventSettings),
}

/// An event's settings and exact counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCounts {
    /// Settings.
    pub settings: EventSettings,
    /// Tickets neither held nor sold.
    pub available: u64,
    /// Tickets in live holds.
    pub held: u64,
    /// Tickets sold.
    pub sold: u64,
}

/// What to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRequest {
    /// These ticket ids (distinct, each >= 1).
    Tickets(Vec<u64>),
    /// Any this many available tickets (lowest numbers first).
    Quantity(u64),
}

impl HoldRequest {
    /// The request as text (`t:1,2` or `q:3`), for an Idempotency-Key's
    /// fingerprint.
    pub fn describe(&self) -> String {
        match self {
            HoldRequest::Tickets(t) => {
                let ids: Vec<String> = t.iter().map(u64::to_string).collect();
                format!("t:{}", ids.join(","))
            }
            HoldRequest::Quantity(n) => format!("q:{n}"),
        }
    }
}

/// A live hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Its id.
    pub id: HoldId,
    /// The user it belongs to.
    pub user: String,
    /// Its tickets.
    pub tickets: Vec<u64>,
    /// Redis time when this reply was made.
    pub now_ms: u64,
}

/// Outcome of a hold attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held; `expired` expired holds were released on the way.
    Held {
        /// The new hold.
        hold: Hold,
        /// Expired holds released by this call.
        expired: u64,
        /// The answer stored for a repeated Idempotency-Key (nothing new happened).
        replayed: bool,
    },
    /// These requested tickets are held or sold (empty for a quantity request,
    /// with `available` saying how many are left).
    Unavailable {
        /// Requested ticket ids not available.
        tickets: Vec<u64>,
        /// Tickets available, for a quantity request.
        available: Option<u64>,
    },
    /// The request breaks one of the event's limits.
    Invalid(String),
    /// The user already has this many live holds in the event.
    HoldLimit(u64),
    /// No such event.
    NoEvent,
    /// The Idempotency-Key was used with a different request.
    IdempotencyMismatch,
}

/// Order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Accepted and queued.
    Pending,
    /// Published to every sink.
    Completed,
    /// Dead-lettered.
    Failed,
}

impl OrderStatus {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<OrderStatus> {
        match s {
            "pending" => Some(OrderStatus::Pending),
            "completed" => Some(OrderStatus::Completed),
            "failed" => Some(OrderStatus::Failed),
            _ => None,
        }
    }
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// The buyer.
    pub user: String,
    /// The tickets sold.
    pub tickets: Vec<u64>,
    /// Where it is.
    pub status: OrderStatus,
    /// Redis time of the purchase (ms).
    pub created_ms: u64,
    /// When the purchase worker finished it (ms).
    pub completed_ms: Option<u64>,
}

/// Outcome of a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseOutcome {
    /// Bought now (`created`) or earlier (the same order again).
    Bought {
        /// The order.
        order: Order,
        /// False when this hold had been bought before.
        created: bool,
    },
    /// Unknown hold.
    NotFound,
    /// The hold belongs to another user.
    Forbidden,
    /// The hold's deadline has passed.
    Expired,
    /// (by ticket) no live hold of this user holds the ticket.
    NotHeld,
    /// (by ticket) the ticket id is out of the event's range.
    Invalid(String),
    /// No such event.
    NoEvent,
    /// The Idempotency-Key was used with a different request.
    IdempotencyMismatch,
}

/// Outcome of a cancel or an operator release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Released this many tickets.
    Cancelled(u64),
    /// Unknown, expired, bought or already released.
    NotFound,
    /// The hold belongs to another user.
    Forbidden,
    /// (by ticket) the ticket is not held.
    NotHeld,
    /// (by ticket) the ticket id is out of the event's range.
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_hold_time_is_one_value_in_both_forms() {
        assert_eq!(
            crate::config::parse_duration(DEFAULT_HOLD_TTL_ARG),
            Ok(std::time::Duration::from_secs(DEFAULT_HOLD_TTL_SECS))
        );
    }

    #[test]
    fn event_settings_are_checked_against_the_limits() {
        let n = &SettingNames::API;
        assert!(check_event(
            "gig",
            MAX_CAPACITY,
            MAX_HOLD_TTL_SECS,
            MAX_TICKETS_PER_HOLD,
            n
        )
        .is_ok());
        for (id, cap, ttl, per, field) in [
            ("", 1, 1, 1, "event id"),
            ("a.b", 1, 1, 1, "event id"),
            ("gig", 0, 1, 1, "capacity"),
            ("gig", MAX_CAPACITY + 1, 1, 1, "capacity"),
            ("gig", 1, MAX_HOLD_TTL_SECS + 1, 1, "holdTtlSeconds"),
            ("gig", 1, 1, MAX_TICKETS_PER_HOLD + 1, "maxTicketsPerHold"),
        ] {
            let e = check_event(id, cap, ttl, per, n).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
        assert!(!valid_event_id(&"a".repeat(MAX_EVENT_ID_LEN + 1)));
    }
}
