//! One typed method per Lua script in `lua/`. Each script is the shared
//! prelude `lib.lua` and the preludes it needs, followed by its own file: a
//! function of one library sent with FCALL (see functions.rs), or a script
//! sent by SHA (`EVALSHA`, reloaded on `NOSCRIPT` by the client) where Redis
//! has no functions. The few that need no prelude are scripts only.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::batch::{self, Grouped};
use super::functions::{Call, Lua};
use super::keys::{self, EventKeys};
use super::reply::{parse_csv, to_csv, Reply};
use super::{Result, Store, StoreError};
use crate::model::ids::new_secret;
use crate::model::{
    CancelOutcome, CreateEvent, EventCounts, EventPatch, EventSettings, ExtendOutcome, Hold,
    HoldId, HoldOutcome, HoldRequest, Order, OrderAction, OrderChange, OrderId, OrderStatus,
    PurchaseOutcome, SectionCounts, Selling, DEFAULT_CURRENCY,
};

macro_rules! lua {
    (standalone $file:literal) => {
        LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))))
    };
}

// The scripts built on lib.lua: each is lib.lua, then its preludes, then
// `begin(KEYS)` and its file when sent with EVALSHA, and a function of one
// library otherwise (see functions.rs).
macro_rules! library {
    ($($vis:vis $name:ident = [$($prelude:literal),*] $file:literal;)*) => {
        $(
            $vis static $name: LazyLock<Lua> = LazyLock::new(|| {
                Lua::new($file, concat!(
                    include_str!("lua/lib.lua"),
                    $(include_str!(concat!("lua/", $prelude)),)*
                    "begin(KEYS)\n",
                    include_str!(concat!("lua/", $file))
                ))
            });
        )*
        /// Each script of the library: its file's name and text.
        pub(super) const LIBRARY_SCRIPTS: &[(&str, &str)] =
            &[$(($file, include_str!(concat!("lua/", $file)))),*];
    };
}

library! {
    CREATE_EVENT = ["settings.lua"] "create_event.lua";
    PATCH_EVENT = ["settings.lua"] "patch_event.lua";
    RECOUNT_BUYERS = ["settings.lua", "orders.lua"] "recount_buyers.lua";
    ORDER_CHANGE = ["orders.lua"] "order_change.lua";
    EXTEND_HOLD = ["orders.lua"] "extend_hold.lua";
    HOLD = [] "hold.lua";
    PURCHASE = ["orders.lua"] "purchase.lua";
    CANCEL = ["orders.lua"] "cancel.lua";
    GET_HOLD = ["orders.lua"] "get_hold.lua";
    RELEASE_EXPIRED = ["orders.lua", "queue.lua"] "release_expired.lua";
    pub(super) QUEUE_TICK = ["queue.lua"] "queue_tick.lua";
    pub(super) QUEUE_JOIN = ["queue.lua"] "queue_join.lua";
    pub(super) COMPLETE_ORDERS = ["orders.lua"] "complete_orders.lua";
    pub(super) DEAD_LETTER = ["orders.lua"] "dead_letter.lua";
    pub(super) INSPECT_EVENT = [] "inspect_event.lua";
    pub(super) DLQ_RETRY = ["orders.lua"] "dlq_retry.lua";
    pub(super) PUBLISH_STREAM = ["orders.lua"] "publish_stream.lua";
    pub(super) REMOVE_EVENT = [] "remove_event.lua";
}

pub(super) static READ_BITMAPS: LazyLock<Script> = lua!(standalone "read_bitmaps.lua");
static BIND_IDEMPOTENCY: LazyLock<Script> = lua!(standalone "bind_idempotency.lua");
pub(super) static OWN_JOBS: LazyLock<Script> = lua!(standalone "own_jobs.lua");
pub(super) static FORGET_IDLE_CONSUMERS: LazyLock<Script> =
    lua!(standalone "forget_idle_consumers.lua");

/// Result of one release pass over an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Holds released in this pass.
    pub released: u64,
    /// The next deadline in the schedule (`Some(now)` when more are due).
    pub next_deadline_ms: Option<u64>,
    /// Redis server time of the pass.
    pub now_ms: u64,
    /// Counts after the pass.
    pub counts: EventCounts,
    /// How late (ms, Redis clock) each release came after its deadline,
    /// when asked for.
    pub lags_ms: Vec<u64>,
}

/// Why a change of settings was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchRefused {
    /// The event has no section of this id.
    NoSection(String),
    /// The settings would contradict each other.
    Invalid(String),
}

/// Which hold a purchase or cancel acts on.
#[derive(Debug, Clone)]
pub enum HoldRef<'a> {
    /// By hold id.
    Id(&'a HoldId),
    /// By a ticket it holds (compatibility routes).
    Ticket {
        /// Event id.
        event: &'a str,
        /// Ticket id.
        ticket: u64,
    },
}

impl HoldRef<'_> {
    fn event(&self) -> &str {
        match self {
            HoldRef::Id(h) => &h.event,
            HoldRef::Ticket { event, .. } => event,
        }
    }
}

/// An Idempotency-Key and the fingerprint of the request that carries it.
#[derive(Debug, Clone)]
pub struct Idempotency<'a> {
    /// The client's key.
    pub key: &'a str,
    /// What the request asked for, normalised.
    pub fingerprint: String,
}

pub(super) fn invocation<'a>(
    script: &'a Lua,
    keys: &EventKeys,
    idem: Option<(&str, &str)>,
) -> Call<'a> {
    let mut inv = script.prepare_invoke();
    for k in keys.script_keys() {
        inv.key(k);
    }
    if let Some((kind, key)) = idem {
        inv.key(keys.idempotency(kind, key));
    }
    inv
}

/// The idempotency argument of the hold and purchase scripts: the record's
/// time to live and the request's fingerprint (see `idem_arg` in lib.lua),
/// or nothing without a key.
fn idem_arg(idem: Option<&Idempotency<'_>>) -> String {
    idem.map(|i| format!("{}|{}", keys::IDEMPOTENCY_TTL_SECS, i.fingerprint))
        .unwrap_or_default()
}

pub(super) fn schema_error(event: &str, r: &Reply) -> StoreError {
    StoreError::Schema {
        event: event.into(),
        version: r.str(1).unwrap_or_default(),
    }
}

/// One purchase of a group call: a hold by id or by one of its tickets.
#[derive(Debug, Clone)]
pub(super) enum BuyRef {
    Id(HoldId),
    Ticket(u64),
}

/// One purchase request.
#[derive(Debug, Clone)]
pub(super) struct BuyItem {
    pub(super) by: BuyRef,
    pub(super) user: String,
}

/// The order in an answer of the purchase or order_change script:
/// `{ 'ok', flag, seq, status, orderSecret, createdMs, completedMs|'', 't1,..', userId,
/// amount, currency }`.
fn order_of(event: &str, r: &Reply) -> Result<Order> {
    let seq = r.uint(2)?;
    let (status, cancel_reason) = OrderStatus::parse_with_reason(&r.str(3)?)
        .ok_or_else(|| StoreError::Reply("order: status".into()))?;
    let completed = r.str(6)?;
    Ok(Order {
        id: OrderId {
            event: event.to_string(),
            seq,
            secret: r.str(4)?,
        },
        created_ms: r.uint(5)?,
        completed_ms: completed.parse().ok(),
        tickets: parse_csv(&r.str(7)?)
            .ok_or_else(|| StoreError::Reply("order: ticket list".into()))?,
        user: r.str(8)?,
        status,
        // An answer stored for an Idempotency-Key before orders had a
        // price has neither.
        amount: r.uint(9).unwrap_or(0),
        currency: r.str(10).unwrap_or_else(|_| DEFAULT_CURRENCY.into()),
        cancel_reason,
    })
}

/// A purchase's answer in one string (see order_reply in purchase.lua):
/// 'ok|created|seq|status|orderSecret|createdMs|completedMs|t1,..|amount|currency|userId',
/// as the array the script answers with an Idempotency-Key.
fn bought_short(b: &[u8]) -> Result<Reply> {
    let text = std::str::from_utf8(b)
        .map_err(|_| StoreError::Reply("purchase: answer is not UTF-8".into()))?;
    let f: Vec<&str> = text.splitn(11, '|').collect();
    if f.len() != 11 || f[0] != "ok" {
        return Err(StoreError::Reply(format!("purchase: answer {text:?}")));
    }
    let order = [
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[10], f[8], f[9],
    ];
    Reply::new(
        "purchase",
        Value::Array(
            order
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        ),
    )
}

/// Reads one purchase's answer from the purchase script.
fn purchase_outcome(event: &str, r: Reply) -> Result<PurchaseOutcome> {
    Ok(match r.status()?.as_str() {
        "ok" => PurchaseOutcome::Bought {
            order: order_of(event, &r)?,
            created: r.int(1)? == 1,
        },
        "not_found" => PurchaseOutcome::NotFound,
        "forbidden" => PurchaseOutcome::Forbidden,
        "expired" => PurchaseOutcome::Expired,
        "not_held" => PurchaseOutcome::NotHeld,
        "invalid" => PurchaseOutcome::Invalid(r.str(1)?),
        "idem_mismatch" => PurchaseOutcome::IdempotencyMismatch,
        "error" => return Err(StoreError::from_script("purchase", &r.str(1)?)),
        other => return Err(StoreError::Reply(format!("purchase: status {other:?}"))),
    })
}

/// Reads a hold's short answer `expired|seq|deadlineMs|nowMs|amount|currency|t1,t2,..`
/// (every held hold's answer: read byte by byte, not through `str` splitting
/// and parsing).
fn held_short(event: &str, user: &str, secret: String, b: &[u8]) -> Result<HoldOutcome> {
    let bad = || {
        StoreError::Reply(format!(
            "hold: unreadable answer {:?}",
            String::from_utf8_lossy(b)
        ))
    };
    let mut fields = b.splitn(7, |&c| c == b'|');
    let mut num = || fields.next().and_then(decimal).ok_or_else(bad);
    let (expired, seq, deadline_ms, now_ms, amount) = (num()?, num()?, num()?, num()?, num()?);
    let currency = fields
        .next()
        .and_then(|f| std::str::from_utf8(f).ok())
        .filter(|c| !c.is_empty())
        .ok_or_else(bad)?
        .to_string();
    let tickets = fields
        .next()
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(parse_csv)
        .filter(|t| !t.is_empty())
        .ok_or_else(bad)?;
    Ok(HoldOutcome::Held {
        hold: Hold {
            id: HoldId {
                event: event.into(),
                seq,
                deadline_ms,
                secret,
            },
            user: user.into(),
            tickets,
            expires_ms: deadline_ms,
            amount,
            currency,
            now_ms,
        },
        expired,
        replayed: false,
    })
}

/// A non-negative decimal integer of at most 19 digits.
fn decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// Expired holds a hold's (long) answer says its call released on the way;
/// 0 for an answer replayed for an Idempotency-Key (-1 there).
fn released_by_hold(r: &Reply) -> u64 {
    let at = match r.status().as_deref() {
        Ok("ok" | "unavailable" | "sweep_more") => 1,
        Ok("hold_limit" | "invalid" | "user_limit") => 2,
        _ => return 0,
    };
    r.int(at).map_or(0, |n| n.max(0) as u64)
}

/// Reads one hold's answer from the hold script.
fn hold_outcome(
    event: &str,
    user: &str,
    req: &HoldRequest,
    r: Reply,
) -> Result<Option<HoldOutcome>> {
    Ok(Some(match r.status()?.as_str() {
        "ok" => {
            let deadline_ms = r.uint(4)?;
            let id = HoldId {
                event: event.into(),
                seq: r.uint(3)?,
                deadline_ms,
                secret: r.str(2)?,
            };
            let expired = r.int(1)?;
            HoldOutcome::Held {
                hold: Hold {
                    id,
                    user: user.into(),
                    tickets: r.uints_from(8)?,
                    expires_ms: deadline_ms,
                    amount: r.uint(6)?,
                    currency: r.str(7)?,
                    now_ms: r.uint(5)?,
                },
                expired: expired.max(0) as u64,
                replayed: expired < 0,
            }
        }
        "sweep_more" => return Ok(None),
        "unavailable" => match req {
            HoldRequest::Tickets(_) => HoldOutcome::Unavailable {
                tickets: r.uints_from(2)?,
                available: None,
            },
            HoldRequest::Quantity(_) | HoldRequest::InSection { .. } => HoldOutcome::Unavailable {
                tickets: vec![],
                available: Some(r.uint(2)?),
            },
        },
        "not_on_sale" => HoldOutcome::NotOnSale(if r.str(1)? == "opens" {
            Ok(r.uint(2)?)
        } else {
            Err(r.uint(2)?)
        }),
        "user_limit" => HoldOutcome::UserLimit(r.uint(1)?),
        "no_section" => HoldOutcome::NoSection(r.str(1)?),
        "queue_required" => HoldOutcome::QueueRequired(r.str(1)?),
        "invalid" => HoldOutcome::Invalid(r.str(1)?),
        "hold_limit" => HoldOutcome::HoldLimit(r.uint(1)?),
        "idem_mismatch" => HoldOutcome::IdempotencyMismatch,
        "error" => return Err(StoreError::from_script("hold", &r.str(1)?)),
        other => return Err(StoreError::Reply(format!("hold: status {other:?}"))),
    }))
}

impl Store {
    pub(super) async fn eval(&self, inv: Call<'_>, name: &'static str) -> Result<Reply> {
        let v: Value = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::new(name, v)?;
        // Any script refuses an event whose counters were damaged, before
        // writing anything.
        if r.is("damaged") {
            return Err(StoreError::redis(format!(
                "{name}: {}; nothing was changed (repair or delete the event's keys)",
                r.str(1).unwrap_or_default()
            )));
        }
        Ok(r)
    }

    /// Creates an event, or compares the settings of the existing one; either
    /// way the event is (re)registered in the event list.
    pub async fn create_event(&self, s: &EventSettings) -> Result<CreateEvent> {
        let keys = EventKeys::new(&s.id);
        let mut inv = invocation(&CREATE_EVENT, &keys, None);
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let sell = &s.selling;
        inv.arg(s.capacity)
            .arg(s.hold_ttl_ms)
            .arg(s.max_per_hold)
            .arg(keys::JOBS_GROUP)
            .arg(&sell.currency)
            .arg(sell.sections_text(s.capacity))
            .arg(opt(sell.sales_start_ms))
            .arg(opt(sell.sales_end_ms))
            .arg(sell.max_per_user)
            .arg(sell.max_extensions)
            .arg(sell.queue.map(|q| q.text()).unwrap_or_default());
        let r = self.eval(inv, "create_event").await?;
        let outcome = match r.status()?.as_str() {
            "created" => CreateEvent::Created,
            "exists" => CreateEvent::Exists,
            "conflict" => {
                let opt = |i| -> Result<Option<u64>> {
                    let v = r.str(i)?;
                    Ok(v.parse().ok())
                };
                CreateEvent::Conflict(EventSettings {
                    id: s.id.clone(),
                    capacity: r.uint(1)?,
                    hold_ttl_ms: r.uint(2)?,
                    max_per_hold: r.uint(3)?,
                    selling: Selling {
                        currency: r.str(4)?,
                        sections: Selling::parse_sections(&r.str(5)?)
                            .ok_or_else(|| StoreError::Reply("create_event: sections".into()))?,
                        sales_start_ms: opt(6)?,
                        sales_end_ms: opt(7)?,
                        max_per_user: r.uint(8)?,
                        max_extensions: r.uint(9)?,
                        queue: crate::model::queue::QueueSettings::parse(&r.str(10)?),
                    },
                })
            }
            "schema" => return Err(schema_error(&s.id, &r)),
            other => return Err(StoreError::Reply(format!("create_event: status {other:?}"))),
        };
        let id = s.id.clone();
        let _: i64 = self
            .run(|mut c| async move {
                redis::cmd("SADD")
                    .arg(keys::EVENTS)
                    .arg(id)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(outcome)
    }

    /// Changes an event's settings; then its counts. `Ok(Err(..))` when the
    /// change is refused: an unknown section, or a sale window that would
    /// end before it starts. `None` when the event does not exist.
    pub async fn patch_event(
        &self,
        event: &str,
        p: &EventPatch,
    ) -> Result<Option<std::result::Result<EventCounts, PatchRefused>>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&PATCH_EVENT, &keys, None);
        let window = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        if let Some(v) = p.sales_start_ms {
            inv.arg("sales_start").arg(window(v));
        }
        if let Some(v) = p.sales_end_ms {
            inv.arg("sales_end").arg(window(v));
        }
        for (field, v) in [
            ("max_user", p.max_per_user),
            ("max_ext", p.max_extensions),
            ("ttl_ms", p.hold_ttl_ms),
            ("max_per_hold", p.max_per_hold),
        ] {
            if let Some(v) = v {
                inv.arg(field).arg(v);
            }
        }
        for (section, price) in &p.prices {
            inv.arg(format!("price:{section}")).arg(*price);
        }
        if let Some(q) = &p.queue {
            inv.arg("queue").arg(q.text());
        }
        let r = self.eval(inv, "patch_event").await?;
        match r.status()?.as_str() {
            "ok" => {}
            "recount" => self.recount_buyers(event).await?,
            "not_found" => return Ok(None),
            "no_section" => return Ok(Some(Err(PatchRefused::NoSection(r.str(1)?)))),
            "invalid" => return Ok(Some(Err(PatchRefused::Invalid(r.str(1)?)))),
            "schema" => return Err(schema_error(event, &r)),
            other => return Err(StoreError::Reply(format!("patch_event: status {other:?}"))),
        }
        Ok(self.event_counts(event).await?.map(Ok))
    }

    /// Counts the tickets held and bought before a per-user limit was set
    /// on an event, in bounded calls, then applies the limit (see
    /// `recount_buyers.lua`). Safe to repeat, and to run from several
    /// processes at once: each call goes on from where the last stopped.
    async fn recount_buyers(&self, event: &str) -> Result<()> {
        /// Hold numbers looked at per call.
        const PER_CALL: u64 = 1000;
        let keys = EventKeys::new(event);
        loop {
            let mut inv = invocation(&RECOUNT_BUYERS, &keys, None);
            inv.arg(PER_CALL);
            let r = self.eval(inv, "recount_buyers").await?;
            match r.status()?.as_str() {
                "more" => continue,
                "done" | "not_found" => return Ok(()),
                "schema" => return Err(schema_error(event, &r)),
                other => {
                    return Err(StoreError::Reply(format!(
                        "recount_buyers: status {other:?}"
                    )))
                }
            }
        }
    }

    /// Releases up to `max` expired holds of an event and returns its exact
    /// counts; `None` when the event does not exist.
    pub async fn release_expired(
        &self,
        event: &str,
        max: usize,
        with_lags: bool,
    ) -> Result<Option<Sweep>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&RELEASE_EXPIRED, &keys, None);
        inv.arg(max)
            .arg(if with_lags { "1" } else { "0" })
            .arg(crate::model::ids::random_hex(12));
        let r = self.eval(inv, "release_expired").await?;
        match r.status()?.as_str() {
            "not_found" => return Ok(None),
            "schema" => return Err(schema_error(event, &r)),
            _ => {}
        }
        let (capacity, held, sold) = (r.uint(3)?, r.uint(4)?, r.uint(5)?);
        let next = r.int(1)?;
        let orders = OrderStatus::ALL
            .into_iter()
            .enumerate()
            .map(|(i, s)| Ok((s, r.uint(13 + i)?)))
            .collect::<Result<Vec<_>>>()?;
        let n_sections = r.uint(20)? as usize;
        let mut sections = Vec::with_capacity(n_sections);
        let mut listed = Vec::with_capacity(n_sections);
        for i in 0..n_sections {
            let at = 21 + 6 * i;
            let (first, last, price) = (r.uint(at + 1)?, r.uint(at + 2)?, r.uint(at + 3)?);
            let (s_held, s_sold) = (r.uint(at + 4)?, r.uint(at + 5)?);
            let c = SectionCounts {
                id: r.str(at)?,
                first,
                last,
                price,
                available: (last + 1 - first).saturating_sub(s_held + s_sold),
                held: s_held,
                sold: s_sold,
            };
            listed.push(crate::model::Section {
                id: c.id.clone(),
                capacity: last + 1 - first,
                price,
            });
            sections.push(c);
        }
        // The default single section is no setting of its own.
        if n_sections == 1 && listed[0].id == crate::model::DEFAULT_SECTION && listed[0].price == 0
        {
            listed.clear();
        }
        let opt = |i| -> Result<Option<u64>> { Ok(u64::try_from(r.int(i)?).ok()) };
        Ok(Some(Sweep {
            released: r.uint(0)?,
            next_deadline_ms: u64::try_from(next).ok(),
            now_ms: r.uint(2)?,
            counts: EventCounts {
                settings: EventSettings {
                    id: event.into(),
                    capacity,
                    hold_ttl_ms: r.uint(6)?,
                    max_per_hold: r.uint(7)?,
                    selling: Selling {
                        currency: r.str(8)?,
                        sections: listed,
                        sales_start_ms: opt(9)?,
                        sales_end_ms: opt(10)?,
                        max_per_user: r.uint(11)?,
                        max_extensions: r.uint(12)?,
                        queue: crate::model::queue::QueueSettings::parse(
                            &r.str(21 + 6 * n_sections)?,
                        ),
                    },
                },
                available: capacity.saturating_sub(held + sold),
                held,
                sold,
                sections,
                orders,
            },
            lags_ms: r.uints_from(22 + 6 * n_sections)?,
        }))
    }

    /// Exact counts of an event: releases every expired hold first (in
    /// bounded passes), so a hold past its deadline never counts as held.
    pub async fn event_counts(&self, event: &str) -> Result<Option<EventCounts>> {
        const PASS: usize = 1000;
        loop {
            let Some(s) = self.release_expired(event, PASS, false).await? else {
                return Ok(None);
            };
            self.count_released(s.released);
            if s.next_deadline_ms != Some(s.now_ms) {
                return Ok(Some(s.counts));
            }
        }
    }

    /// Binds an Idempotency-Key to one request for 24 hours from its
    /// latest use: its route (`kind`), event and fingerprint. False when the
    /// key is bound to another request, on this event or any other; the
    /// per-event record then replays a repeated request.
    async fn bind_idempotency(
        &self,
        kind: &str,
        event: &str,
        idem: &Idempotency<'_>,
    ) -> Result<bool> {
        let mut inv = BIND_IDEMPOTENCY.prepare_invoke();
        inv.key(keys::idempotency_binding(idem.key))
            .arg(format!("v1\n{kind}\n{event}\n{}", idem.fingerprint))
            .arg(keys::IDEMPOTENCY_TTL_SECS);
        let bound: i64 = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(bound == 1)
    }

    /// Holds tickets for `user`, all or nothing.
    pub async fn hold(
        &self,
        event: &str,
        user: &str,
        req: &HoldRequest,
        idem: Option<&Idempotency<'_>>,
    ) -> Result<HoldOutcome> {
        self.hold_queued(event, user, req, idem, "").await
    }

    /// [`Store::hold`] naming a place of the event's waiting room (its
    /// queue id; '' for none), which the hold script checks when the event
    /// has a room.
    pub async fn hold_queued(
        &self,
        event: &str,
        user: &str,
        req: &HoldRequest,
        idem: Option<&Idempotency<'_>>,
        queue: &str,
    ) -> Result<HoldOutcome> {
        if let Some(i) = idem {
            if !self.bind_idempotency("hold", event, i).await? {
                return Ok(HoldOutcome::IdempotencyMismatch);
            }
        }
        // Without an Idempotency-Key the hold joins the event's next group
        // call (see batch.rs) when this store groups holds.
        if let (Some(q), None) = (&self.holds, idem) {
            if let Ok(answer) = q
                .submit(
                    self,
                    event,
                    (user.to_string(), req.clone(), queue.to_string()),
                )
                .await
            {
                match answer? {
                    Some(outcome) => return Ok(outcome),
                    None => {
                        self.event_counts(event).await?;
                    }
                }
            }
        }
        // A quantity hold meeting a long backlog of expired holds asks for
        // them to be released first, in bounded passes, then tries again.
        for _ in 0..3 {
            match self.hold_once(event, user, req, idem, queue).await? {
                None => {
                    self.event_counts(event).await?;
                }
                Some(outcome) => return Ok(outcome),
            }
        }
        Ok(self
            .hold_once(event, user, req, idem, queue)
            .await?
            .unwrap_or(HoldOutcome::Unavailable {
                tickets: vec![],
                available: Some(0),
            }))
    }

    async fn hold_once(
        &self,
        event: &str,
        user: &str,
        req: &HoldRequest,
        idem: Option<&Idempotency<'_>>,
        queue: &str,
    ) -> Result<Option<HoldOutcome>> {
        let mut answers = self.hold_call(event, &[(user, req, queue)], idem).await?;
        answers
            .pop()
            .unwrap_or_else(|| Err(StoreError::Reply("hold: no answer".into())))
    }

    /// One call of the hold script for one or more holds of an event (at
    /// most one with an Idempotency-Key). One answer per hold, in order;
    /// `Ok(None)`: expired holds must be released first.
    pub(super) async fn hold_call(
        &self,
        event: &str,
        holds: &[(&str, &HoldRequest, &str)],
        idem: Option<&Idempotency<'_>>,
    ) -> Result<Vec<Result<Option<HoldOutcome>>>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&HOLD, &keys, idem.map(|i| ("hold", i.key)));
        inv.arg(keys::RELEASE_WAKE_CHANNEL)
            .arg(event)
            .arg(self.max_holds_per_user)
            .arg(idem_arg(idem));
        let secrets: Vec<String> = holds.iter().map(|_| new_secret()).collect();
        for ((user, req, queue), secret) in holds.iter().zip(&secrets) {
            inv.arg(secret).arg(*user);
            // The mode letter, then the queue id the request names.
            let mode = |m: &str| {
                if queue.is_empty() {
                    m.to_string()
                } else {
                    format!("{m}{queue}")
                }
            };
            match req {
                HoldRequest::Tickets(t) => inv.arg(mode("t")).arg(to_csv(t)),
                HoldRequest::Quantity(n) => inv.arg(mode("q")).arg(*n),
                HoldRequest::InSection { section, quantity } => {
                    inv.arg(mode("q")).arg(format!("{quantity}:{section}"))
                }
            };
        }
        let r = self.eval(inv, "hold").await?;
        // One answer for the whole call (a held hold's short answer is text
        // too, but starts with a digit).
        match r.status().as_deref() {
            Ok("not_found") => {
                return Ok(holds
                    .iter()
                    .map(|_| Ok(Some(HoldOutcome::NoEvent)))
                    .collect())
            }
            Ok("schema") => return Err(schema_error(event, &r)),
            _ => {}
        }
        let answers = r.into_values();
        if answers.len() != holds.len() {
            return Err(StoreError::Reply(format!(
                "hold: {} answers for {} holds",
                answers.len(),
                holds.len()
            )));
        }
        Ok(answers
            .into_iter()
            .zip(holds)
            .zip(secrets)
            .map(|((v, (user, req, _)), secret)| match v {
                Value::BulkString(b) => {
                    let held = held_short(event, user, secret, &b)?;
                    if let HoldOutcome::Held { expired, .. } = &held {
                        self.count_released(*expired);
                    }
                    Ok(Some(held))
                }
                v => Reply::new("hold", v).and_then(|r| {
                    self.count_released(released_by_hold(&r));
                    hold_outcome(event, user, req, r)
                }),
            })
            .collect())
    }
    /// Reads a live hold; `None` once it expired, was cancelled or bought.
    pub async fn get_hold(&self, id: &HoldId) -> Result<Option<Hold>> {
        let keys = EventKeys::new(&id.event);
        let mut inv = invocation(&GET_HOLD, &keys, None);
        inv.arg(id.seq).arg(&id.secret).arg(id.deadline_ms);
        let r = self.eval(inv, "get_hold").await?;
        if r.status()? != "ok" {
            return Ok(None);
        }
        let tickets = parse_csv(&r.str(3)?)
            .ok_or_else(|| StoreError::Reply("get_hold: ticket list".into()))?;
        Ok(Some(Hold {
            id: id.clone(),
            user: r.str(4)?,
            tickets,
            expires_ms: r.uint(1)?,
            amount: r.uint(5)?,
            currency: r.str(6)?,
            now_ms: r.uint(2)?,
        }))
    }

    /// Buys a hold (by id, or by a ticket of it for the compatibility routes).
    pub async fn purchase(
        &self,
        hold: &HoldRef<'_>,
        user: &str,
        idem: Option<&Idempotency<'_>>,
    ) -> Result<PurchaseOutcome> {
        let event = hold.event().to_string();
        if let Some(i) = idem {
            if !self.bind_idempotency("purchase", &event, i).await? {
                return Ok(PurchaseOutcome::IdempotencyMismatch);
            }
        }
        let item = || BuyItem {
            by: match hold {
                HoldRef::Id(h) => BuyRef::Id((*h).clone()),
                HoldRef::Ticket { ticket, .. } => BuyRef::Ticket(*ticket),
            },
            user: user.to_string(),
        };
        // Without an Idempotency-Key the purchase joins the event's next
        // group call (see batch.rs) when this store groups requests.
        if let (Some(q), None) = (&self.purchases, idem) {
            if let Ok(answer) = q.submit(self, &event, item()).await {
                return answer;
            }
        }
        self.purchase_call(&event, &[item()], idem)
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Reply("purchase: no answer".into())))
    }

    /// One call of the purchase script for one or more purchases of an
    /// event (at most one with an Idempotency-Key); one answer per purchase.
    /// A bought order is answered only once `wait_replicas` replicas have it
    /// (one WAIT for the call).
    pub(super) async fn purchase_call(
        &self,
        event: &str,
        items: &[BuyItem],
        idem: Option<&Idempotency<'_>>,
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&PURCHASE, &keys, idem.map(|i| ("purchase", i.key)));
        inv.arg(idem_arg(idem))
            .arg(self.payment_deadline_ms)
            .arg(keys::RELEASE_WAKE_CHANNEL)
            .arg(event);
        for item in items {
            match &item.by {
                BuyRef::Id(h) => inv.arg("h").arg(h.seq).arg(&h.secret).arg(h.deadline_ms),
                BuyRef::Ticket(t) => inv.arg("t").arg(*t).arg("").arg(""),
            };
            inv.arg(&item.user).arg(new_secret());
        }
        let r = self.eval(inv, "purchase").await?;
        if r.is("not_found") || r.is("schema") {
            // One answer for the whole call.
            return match r.status()?.as_str() {
                "not_found" => Ok(items
                    .iter()
                    .map(|i| {
                        Ok(match i.by {
                            BuyRef::Id(_) => PurchaseOutcome::NotFound,
                            BuyRef::Ticket(_) => PurchaseOutcome::NoEvent,
                        })
                    })
                    .collect()),
                "schema" => Err(schema_error(event, &r)),
                other => Err(StoreError::Reply(format!("purchase: status {other:?}"))),
            };
        }
        let answers = r
            .into_values()
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => bought_short(&b),
                v => Reply::new("purchase", v),
            })
            .collect::<Result<Vec<_>>>()?;
        if answers.len() != items.len() {
            return Err(StoreError::Reply(format!(
                "purchase: {} answers for {} purchases",
                answers.len(),
                items.len()
            )));
        }
        let mut out: Vec<Result<PurchaseOutcome>> = answers
            .into_iter()
            .map(|r| {
                if r.is("expired") {
                    // Released now, or already gone (then no count).
                    self.count_released(r.uint(1).unwrap_or(0));
                }
                purchase_outcome(event, r)
            })
            .collect();
        if out
            .iter()
            .any(|o| matches!(o, Ok(PurchaseOutcome::Bought { .. })))
        {
            // Also when the order existed: a first answer may have been a
            // 503 because the replicas had not confirmed it yet.
            if let Err(e) = self.wait_for_replicas(&keys.meta()).await {
                for o in &mut out {
                    if matches!(o, Ok(PurchaseOutcome::Bought { .. })) {
                        *o = Err(e.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// A payment result (`paid`, `declined` with the amount it names and
    /// its reference), an operator's cancel, or the payment deadline, for
    /// one order: one script, against the order's current status.
    pub async fn change_order(
        &self,
        id: &OrderId,
        action: OrderAction,
        reference: &str,
        amount: Option<u64>,
    ) -> Result<OrderChange> {
        self.change_orders(&id.event, &[(id, action, reference, amount)])
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Reply("order_change: no answer".into())))
    }

    /// The same for several orders of one event, in one script call (each
    /// decided on its own, in order); one answer each.
    pub async fn change_orders(
        &self,
        event: &str,
        items: &[(&OrderId, OrderAction, &str, Option<u64>)],
    ) -> Result<Vec<Result<OrderChange>>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&ORDER_CHANGE, &keys, None);
        for (id, action, reference, amount) in items {
            inv.arg(id.seq)
                .arg(&id.secret)
                .arg(action.as_str())
                .arg(*reference)
                .arg(amount.map(|a| a.to_string()).unwrap_or_default());
        }
        let r = self.eval(inv, "order_change").await?;
        if let Ok(status) = r.status() {
            return match status.as_str() {
                "not_found" => Ok(items.iter().map(|_| Ok(OrderChange::NotFound)).collect()),
                "schema" => Err(schema_error(event, &r)),
                other => Err(StoreError::Reply(format!("order_change: status {other:?}"))),
            };
        }
        let answers = r.arrays()?;
        if answers.len() != items.len() {
            return Err(StoreError::Reply(format!(
                "order_change: {} answers for {} orders",
                answers.len(),
                items.len()
            )));
        }
        let out: Vec<Result<OrderChange>> = answers
            .into_iter()
            .map(|r| {
                Ok(match r.status()?.as_str() {
                    "ok" => OrderChange::Done {
                        order: order_of(event, &r)?,
                        changed: r.int(1)? == 1,
                    },
                    "not_found" => OrderChange::NotFound,
                    "order_state" => OrderChange::State(
                        OrderStatus::parse_with_reason(&r.str(1)?)
                            .map(|(s, _)| s)
                            .ok_or_else(|| StoreError::Reply("order_change: status".into()))?,
                    ),
                    "amount_mismatch" => OrderChange::AmountMismatch(r.uint(1)?),
                    other => {
                        return Err(StoreError::Reply(format!("order_change: status {other:?}")))
                    }
                })
            })
            .collect();
        if out
            .iter()
            .any(|o| matches!(o, Ok(OrderChange::Done { changed: true, .. })))
        {
            // Tickets came back or were sold again, and changes are queued
            // for the sinks: as durable as a purchase.
            self.wait_for_replicas(&keys.meta()).await?;
        }
        Ok(out)
    }

    /// Extends a live hold of `user` to now + the event's hold time.
    pub async fn extend_hold(&self, id: &HoldId, user: &str) -> Result<ExtendOutcome> {
        let keys = EventKeys::new(&id.event);
        let mut inv = invocation(&EXTEND_HOLD, &keys, None);
        inv.arg(id.seq)
            .arg(&id.secret)
            .arg(id.deadline_ms)
            .arg(user);
        let r = self.eval(inv, "extend_hold").await?;
        Ok(match r.status()?.as_str() {
            "ok" => ExtendOutcome::Extended(Hold {
                id: id.clone(),
                user: r.str(4)?,
                tickets: parse_csv(&r.str(3)?)
                    .ok_or_else(|| StoreError::Reply("extend_hold: ticket list".into()))?,
                expires_ms: r.uint(1)?,
                amount: r.uint(5)?,
                currency: r.str(6)?,
                now_ms: r.uint(2)?,
            }),
            "expired" => {
                self.count_released(r.uint(1).unwrap_or(0));
                ExtendOutcome::Expired
            }
            "forbidden" => ExtendOutcome::Forbidden,
            "not_found" => ExtendOutcome::NotFound,
            "extension_limit" => ExtendOutcome::Limit(r.uint(1)?),
            "schema" => return Err(schema_error(&id.event, &r)),
            other => return Err(StoreError::Reply(format!("extend_hold: status {other:?}"))),
        })
    }

    /// Cancels a hold. `user: None` acts as an operator (any user's hold).
    pub async fn cancel(&self, hold: &HoldRef<'_>, user: Option<&str>) -> Result<CancelOutcome> {
        let event = hold.event().to_string();
        let keys = EventKeys::new(&event);
        let mut inv = invocation(&CANCEL, &keys, None);
        match hold {
            HoldRef::Id(h) => inv
                .arg("h")
                .arg(h.seq)
                .arg(&h.secret)
                .arg(user.unwrap_or(""))
                .arg(h.deadline_ms),
            HoldRef::Ticket { ticket, .. } => inv.arg("t").arg(*ticket).arg("").arg("").arg(""),
        };
        let r = self.eval(inv, "cancel").await?;
        let status = r.status()?;
        if status == "not_found" || status == "not_held" {
            // The hold had expired, and this call released it.
            self.count_released(r.uint(1).unwrap_or(0));
        }
        Ok(match status.as_str() {
            "ok" => CancelOutcome::Cancelled(r.uint(1)?),
            "forbidden" => CancelOutcome::Forbidden,
            "not_held" => CancelOutcome::NotHeld,
            "invalid" => CancelOutcome::Invalid(r.str(1)?),
            "not_found" => CancelOutcome::NotFound,
            "schema" => return Err(schema_error(&event, &r)),
            other => return Err(StoreError::Reply(format!("cancel: status {other:?}"))),
        })
    }
}

/// Holds, grouped per event (see batch.rs).
pub(super) struct HoldOp;

impl Grouped for HoldOp {
    fn series(stats: &batch::CallStats) -> &batch::CallSeries {
        &stats.holds
    }

    /// User, request, and the queue id it names ('' for none).
    type Item = (String, HoldRequest, String);
    /// `None`: expired holds must be released first (the direct path does).
    type Answer = Option<HoldOutcome>;

    fn weight((_, req, _): &(String, HoldRequest, String)) -> usize {
        match req {
            HoldRequest::Tickets(t) => t.len(),
            HoldRequest::Quantity(n) | HoldRequest::InSection { quantity: n, .. } => {
                usize::try_from(*n).unwrap_or(usize::MAX)
            }
        }
    }

    async fn call(
        store: &Store,
        event: &str,
        items: &[(String, HoldRequest, String)],
    ) -> Result<Vec<Result<Option<HoldOutcome>>>> {
        let holds: Vec<(&str, &HoldRequest, &str)> = items
            .iter()
            .map(|(u, r, q)| (u.as_str(), r, q.as_str()))
            .collect();
        store.hold_call(event, &holds, None).await
    }
}

/// Purchases, grouped per event (see batch.rs).
pub(super) struct BuyOp;

impl Grouped for BuyOp {
    fn series(stats: &batch::CallStats) -> &batch::CallSeries {
        &stats.purchases
    }

    type Item = BuyItem;
    type Answer = PurchaseOutcome;

    async fn call(
        store: &Store,
        event: &str,
        items: &[BuyItem],
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        store.purchase_call(event, items, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_holds_short_answer_is_read_with_the_secret_sent() {
        let o = held_short(
            "gig",
            "alice",
            "s3cret".into(),
            b"2|17|1000|400|2500|EUR|7,8",
        )
        .unwrap();
        let HoldOutcome::Held {
            hold,
            expired,
            replayed,
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!((expired, replayed), (2, false));
        assert_eq!(hold.id.to_string(), "gig.h17.1000.s3cret");
        assert_eq!((hold.tickets, hold.now_ms), (vec![7, 8], 400));
        assert_eq!((hold.amount, hold.currency.as_str()), (2500, "EUR"));
        assert_eq!(hold.user, "alice");
    }

    #[test]
    fn a_damaged_short_answer_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"0|1|2",
            b"0|1|2|3|4",
            b"x|1|2|3|0|EUR|4",
            b"0|1|2|3|0|EUR|4,y",
            b"0|1|-2|3|0|EUR|4",
            b"0||2|3|0|EUR|4",
            b"0|1|2|3|0|EUR|",
            b"0|1|2|3|0||4",
            b"0|1|2|3|1.5|EUR|4",
            b"0|1|2|99999999999999999999|0|EUR|4",
            b"\xff|1|2|3|0|EUR|4",
        ] {
            let e = held_short("gig", "a", "s".into(), bad).unwrap_err();
            assert!(matches!(e, StoreError::Reply(_)), "{e:?}");
        }
    }
}
