//! The domain: events, holds and orders, their identifiers, and the rules
//! every way of making them (config file, HTTP API, command line) checks:
//! each limit and default is written here once. Knows nothing of Redis or
//! HTTP; the store and the API speak these types.

pub mod ids;
pub mod json;
pub mod queue;

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

/// Most sections one event may have.
pub const MAX_SECTIONS: usize = 100;
/// Highest price of one ticket, in minor units. With at most
/// [`MAX_TICKETS_PER_HOLD`] tickets per hold, every amount stays far below
/// 2^53, which the Redis scripts' numbers hold exactly.
pub const MAX_PRICE: u64 = 1_000_000_000_000;
/// The currency of an event that names none.
pub const DEFAULT_CURRENCY: &str = "EUR";
/// The one section of an event created without sections.
pub const DEFAULT_SECTION: &str = "general";
/// Most extensions a hold may be given.
pub const MAX_EXTENSIONS: u64 = 100;

/// Whether `c` is a currency code: three capital letters (ISO 4217 form).
pub fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

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
    /// The currency.
    pub currency: &'static str,
    /// The sections.
    pub sections: &'static str,
    /// When sales open.
    pub sales_start: &'static str,
    /// When sales close.
    pub sales_end: &'static str,
    /// The per-user limit.
    pub max_per_user: &'static str,
    /// The most extensions per hold.
    pub max_extensions: &'static str,
    /// The waiting room's most admitted places.
    pub queue_max_active: &'static str,
    /// The waiting room's admission time.
    pub queue_admission: &'static str,
}

impl SettingNames {
    /// `[[events]]` keys.
    pub const CONFIG: SettingNames = SettingNames {
        capacity: "capacity",
        hold_ttl: "hold_ttl_seconds",
        max_per_hold: "max_tickets_per_hold",
        currency: "currency",
        sections: "sections",
        sales_start: "sales_start",
        sales_end: "sales_end",
        max_per_user: "max_tickets_per_user",
        max_extensions: "max_extensions",
        queue_max_active: "queue.max_active",
        queue_admission: "queue.admission_seconds",
    };
    /// JSON fields of `POST /v1/events`.
    pub const API: SettingNames = SettingNames {
        capacity: "capacity",
        hold_ttl: "holdTtlSeconds",
        max_per_hold: "maxTicketsPerHold",
        currency: "currency",
        sections: "sections",
        sales_start: "salesStart",
        sales_end: "salesEnd",
        max_per_user: "maxTicketsPerUser",
        max_extensions: "maxExtensions",
        queue_max_active: "queue.maxActive",
        queue_admission: "queue.admissionSeconds",
    };
    /// Flags of `ticketctl event create`.
    pub const CLI: SettingNames = SettingNames {
        capacity: "--capacity",
        hold_ttl: "--hold-ttl (seconds)",
        max_per_hold: "--max-per-hold",
        currency: "--currency",
        sections: "--section",
        sales_start: "--sales-start",
        sales_end: "--sales-end",
        max_per_user: "--max-per-user",
        max_extensions: "--max-extensions",
        queue_max_active: "--queue-max-active",
        queue_admission: "--queue-admission (seconds)",
    };

    /// How this form spells the setting the API calls `api`.
    pub fn field(&self, api: &str) -> String {
        match api {
            "capacity" => self.capacity,
            "holdTtlSeconds" => self.hold_ttl,
            "maxTicketsPerHold" => self.max_per_hold,
            "currency" => self.currency,
            "sections" => self.sections,
            "salesStart" => self.sales_start,
            "salesEnd" => self.sales_end,
            "maxTicketsPerUser" => self.max_per_user,
            "maxExtensions" => self.max_extensions,
            "maxActive" => self.queue_max_active,
            "admissionSeconds" => self.queue_admission,
            other => other,
        }
        .to_string()
    }
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

/// An event's settings.
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
    /// Sections, prices, sale window and per-buyer limit.
    pub selling: Selling,
}

/// One section as an event is created with it: the next `capacity` ticket
/// numbers, at `price` minor units each.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Section id (an event id's characters), unique in the event.
    pub id: String,
    /// Number of tickets.
    pub capacity: u64,
    /// Price of one ticket in the currency's minor units.
    pub price: u64,
}

/// What sells an event's tickets: sections and prices, the sale window,
/// the per-buyer limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selling {
    /// Currency of every price (three capital letters).
    pub currency: String,
    /// Sections in ticket order; empty: one section
    /// [`DEFAULT_SECTION`] at price 0 holding every ticket.
    pub sections: Vec<Section>,
    /// Holds are refused before this (Unix ms).
    pub sales_start_ms: Option<u64>,
    /// Holds are refused from this on (Unix ms).
    pub sales_end_ms: Option<u64>,
    /// Most tickets one user may hold plus have bought (0: no limit).
    pub max_per_user: u64,
    /// Most extensions per hold.
    pub max_extensions: u64,
    /// The waiting room, when the event has one.
    pub queue: Option<queue::QueueSettings>,
}

impl Default for Selling {
    fn default() -> Self {
        Selling {
            currency: DEFAULT_CURRENCY.into(),
            sections: Vec::new(),
            sales_start_ms: None,
            sales_end_ms: None,
            max_per_user: 0,
            max_extensions: 0,
            queue: None,
        }
    }
}

impl Selling {
    /// Checks the selling settings of event `id` of `capacity` tickets (the
    /// sections, when given, must add up to it); `field` names a setting as
    /// the caller's form spells it.
    pub fn check(
        &self,
        id: &str,
        capacity: u64,
        field: impl Fn(&str) -> String,
    ) -> Result<(), String> {
        if !valid_currency(&self.currency) {
            return Err(format!(
                "event {id}: {} must be 3 capital letters (ISO 4217), not {:?}",
                field("currency"),
                self.currency
            ));
        }
        if !self.sections.is_empty() {
            if self.sections.len() > MAX_SECTIONS {
                return Err(format!(
                    "event {id}: at most {MAX_SECTIONS} {}",
                    field("sections")
                ));
            }
            let mut seen = std::collections::HashSet::new();
            let mut total: u64 = 0;
            for s in &self.sections {
                if !valid_event_id(&s.id) {
                    return Err(format!(
                        "event {id}: section id {:?} must be {EVENT_ID_RULE}",
                        s.id
                    ));
                }
                if !seen.insert(s.id.as_str()) {
                    return Err(format!("event {id}: section {} is named twice", s.id));
                }
                if s.capacity == 0 {
                    return Err(format!(
                        "event {id}: section {} needs a capacity of at least 1",
                        s.id
                    ));
                }
                if s.price > MAX_PRICE {
                    return Err(format!(
                        "event {id}: section {}: price must be 0..={MAX_PRICE} (minor units)",
                        s.id
                    ));
                }
                total = total.saturating_add(s.capacity);
            }
            if total != capacity {
                return Err(format!(
                    "event {id}: {} is {capacity} but its sections add up to {total}",
                    field("capacity")
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.sales_start_ms, self.sales_end_ms) {
            if a >= b {
                return Err(format!(
                    "event {id}: {} must be before {}",
                    field("salesStart"),
                    field("salesEnd")
                ));
            }
        }
        if self.max_extensions > MAX_EXTENSIONS {
            return Err(format!(
                "event {id}: {} must be 0..={MAX_EXTENSIONS}",
                field("maxExtensions")
            ));
        }
        if let Some(q) = &self.queue {
            q.check(id, &field)?;
        }
        Ok(())
    }

    /// The sections as the store keeps them: `id:capacity:price` joined by
    /// `,`; empty for the default single section at price 0.
    pub fn sections_text(&self, capacity: u64) -> String {
        match &self.sections[..] {
            [] => String::new(),
            [s] if s.id == DEFAULT_SECTION && s.price == 0 && s.capacity == capacity => {
                String::new()
            }
            list => list
                .iter()
                .map(|s| format!("{}:{}:{}", s.id, s.capacity, s.price))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Parses [`Selling::sections_text`]'s form.
    pub fn parse_sections(text: &str) -> Option<Vec<Section>> {
        if text.is_empty() {
            return Some(Vec::new());
        }
        text.split(',')
            .map(|part| {
                let mut f = part.split(':');
                let (id, cap, price) = (f.next()?, f.next()?, f.next()?);
                Some(Section {
                    id: id.into(),
                    capacity: cap.parse().ok()?,
                    price: price.parse().ok()?,
                })
            })
            .collect()
    }
}

/// A section's place and exact counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionCounts {
    /// Section id.
    pub id: String,
    /// Its first ticket.
    pub first: u64,
    /// Its last ticket.
    pub last: u64,
    /// Price of one ticket (minor units).
    pub price: u64,
    /// Tickets neither held nor sold.
    pub available: u64,
    /// Tickets in live holds.
    pub held: u64,
    /// Tickets sold.
    pub sold: u64,
}

/// A change of an event's settings (`PATCH`); `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPatch {
    /// New sale start (`Some(None)`: none).
    pub sales_start_ms: Option<Option<u64>>,
    /// New sale end (`Some(None)`: none).
    pub sales_end_ms: Option<Option<u64>>,
    /// New per-user limit.
    pub max_per_user: Option<u64>,
    /// New extension limit.
    pub max_extensions: Option<u64>,
    /// New hold time (ms).
    pub hold_ttl_ms: Option<u64>,
    /// New most tickets per hold.
    pub max_per_hold: Option<u64>,
    /// New prices by section id.
    pub prices: Vec<(String, u64)>,
    /// Changes to the waiting room.
    pub queue: Option<queue::QueuePatch>,
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
    /// Each section's counts, in ticket order (they add up to the above).
    pub sections: Vec<SectionCounts>,
    /// Orders by status, in [`OrderStatus::ALL`]'s order.
    pub orders: Vec<(OrderStatus, u64)>,
}

/// What to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRequest {
    /// These ticket ids (distinct, each >= 1).
    Tickets(Vec<u64>),
    /// Any this many available tickets (lowest numbers first).
    Quantity(u64),
    /// This many available tickets of one section (lowest numbers first).
    InSection {
        /// Section id.
        section: String,
        /// How many.
        quantity: u64,
    },
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
            HoldRequest::InSection { section, quantity } => format!("q:{quantity}:{section}"),
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
    /// Its deadline (Unix ms): the one its id names, or later once extended.
    pub expires_ms: u64,
    /// What its tickets cost at the time of the hold (minor units).
    pub amount: u64,
    /// The currency of `amount`.
    pub currency: String,
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
    /// Outside the sale window: sales open at `Ok(ms)`, or closed at `Err(ms)`.
    NotOnSale(Result<u64, u64>),
    /// The hold would take the user past `maxTicketsPerUser`; this many
    /// more tickets are still allowed.
    UserLimit(u64),
    /// The event has no section of that id.
    NoSection(String),
    /// The event has a waiting room and the request names no admitted
    /// place of its user: why.
    QueueRequired(String),
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
    /// The payment service reported it paid.
    Paid,
    /// Cancelled (declined, unpaid at its deadline, or by an operator): its
    /// tickets are on sale again.
    Cancelled,
    /// Paid, then cancelled by an operator: its tickets are on sale again.
    Refunded,
    /// Paid after it was cancelled, when its tickets were sold again: the
    /// payment is to be refunded (it holds no tickets).
    RefundDue,
}

impl OrderStatus {
    /// Every status, in the order the API lists their counts.
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Completed,
        OrderStatus::Paid,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
        OrderStatus::RefundDue,
        OrderStatus::Failed,
    ];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
            OrderStatus::RefundDue => "refund_due",
        }
    }

    /// A status as a record keeps it (`cancelled:declined`): the status and
    /// the reason, if any.
    pub(crate) fn parse_with_reason(s: &str) -> Option<(OrderStatus, Option<String>)> {
        let (status, reason) = match s.split_once(':') {
            Some((s, r)) => (s, Some(r.to_string())),
            None => (s, None),
        };
        OrderStatus::ALL
            .into_iter()
            .find(|o| o.as_str() == status)
            .map(|o| (o, reason))
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
    /// What it costs (minor units).
    pub amount: u64,
    /// The currency of `amount`.
    pub currency: String,
    /// Why a cancelled order was cancelled: `declined`, `payment_timeout`
    /// or `operator`.
    pub cancel_reason: Option<String>,
}

/// What happens to an order after its purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    /// The payment service reports it paid.
    Paid,
    /// The payment service reports it declined.
    Declined,
    /// An operator cancels it (a paid order is refunded).
    Cancel,
    /// Its payment deadline passed.
    Timeout,
}

impl OrderAction {
    /// The name the order script takes.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderAction::Paid => "paid",
            OrderAction::Declined => "declined",
            OrderAction::Cancel => "cancel",
            OrderAction::Timeout => "timeout",
        }
    }
}

/// Outcome of a payment result, a cancel or a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderChange {
    /// The order now (`changed`: false when it already was so).
    Done {
        /// The order.
        order: Order,
        /// Whether this call changed it.
        changed: bool,
    },
    /// No such order.
    NotFound,
    /// The result contradicts the order's status (given).
    State(OrderStatus),
    /// The result names another amount than the order's (given).
    AmountMismatch(u64),
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

/// Outcome of extending a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendOutcome {
    /// Extended: the hold with its new deadline (and the same id).
    Extended(Hold),
    /// Unknown, bought or cancelled.
    NotFound,
    /// The hold belongs to another user.
    Forbidden,
    /// The hold's deadline has passed.
    Expired,
    /// It was extended this many times already, the event's most.
    Limit(u64),
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
