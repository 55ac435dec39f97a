//! The waiting room's scripts (`queue_join`, `queue_tick`; see
//! `lua/queue.lua`) and their replies.

use super::keys::EventKeys;
use super::reply::Reply;
use super::scripts::{invocation, schema_error, QUEUE_JOIN, QUEUE_TICK};
use super::{Result, Store};
use crate::model::ids::random_hex;
use crate::model::queue::{QueueId, QueueSettings, QueueSnapshot};

/// Most admitted places a snapshot lists.
pub const MAX_LISTED: u64 = 100_000;

/// What joining a waiting room did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The user's place: new (`created`) or the one they had.
    Joined {
        /// Its id.
        id: QueueId,
        /// A new place.
        created: bool,
        /// The room right after.
        snapshot: Box<QueueSnapshot>,
        /// The place's admittedUntil, when admitted.
        admitted_until: Option<u64>,
    },
    /// The event has no waiting room.
    Disabled,
    /// No such event.
    NoEvent,
}

/// Reads `queue_reply` (see queue.lua) from element `at`.
fn snapshot(r: &Reply, at: usize) -> Result<QueueSnapshot> {
    let opt = |i: usize| -> Result<Option<u64>> { Ok(u64::try_from(r.int(i)?).ok()) };
    let mut s = QueueSnapshot {
        n: r.uint(at)?,
        pre: opt(at + 1)?,
        seed: r.str(at + 2)?,
        cursor: r.uint(at + 3)?,
        total: r.uint(at + 4)?,
        sold_out: r.uint(at + 5)? == 1,
        key: r.str(at + 6)?,
        settings: Some(QueueSettings {
            max_active: r.uint(at + 7)?,
            admission_ms: r.uint(at + 8)?,
        }),
        sales_start_ms: opt(at + 9)?,
        now_ms: r.uint(at + 10)?,
        available: opt(at + 11)?,
        active: r.uint(at + 12)?,
        admitted: Default::default(),
    };
    let mut i = at + 13;
    while i + 1 < r.len() {
        s.admitted.insert(r.uint(i)?, r.uint(i + 1)?);
        i += 2;
    }
    Ok(s)
}

impl Store {
    /// A place in `event`'s waiting room for `user` (the same one again for
    /// the same user), and the room after a pass.
    pub async fn queue_join(&self, event: &str, user: &str) -> Result<JoinOutcome> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&QUEUE_JOIN, &keys, None);
        inv.arg(user).arg(random_hex(16)).arg(random_hex(12));
        let r = self.eval(inv, "queue_join").await?;
        match r.status()?.as_str() {
            "ok" => {}
            "disabled" => return Ok(JoinOutcome::Disabled),
            "not_found" => return Ok(JoinOutcome::NoEvent),
            "schema" => return Err(schema_error(event, &r)),
            other => {
                return Err(super::StoreError::Reply(format!(
                    "queue_join: status {other:?}"
                )))
            }
        }
        let (created, j) = (r.uint(1)? == 1, r.uint(2)?);
        // The reply ends with the place's admittedUntil (-1: none).
        let until = u64::try_from(r.int(r.len() - 1)?).ok();
        let snapshot = Box::new(snapshot(&r, 3)?);
        Ok(JoinOutcome::Joined {
            id: QueueId::new(event, j, &snapshot.key),
            created,
            snapshot,
            admitted_until: until,
        })
    }

    /// A pass of `event`'s waiting room (expired admissions out, places
    /// let in) and its state, listing up to `listed` admitted places.
    /// `Ok(None)`: no such event, or no waiting room.
    pub async fn queue_tick(&self, event: &str, listed: u64) -> Result<Option<QueueSnapshot>> {
        self.queue_call(event, listed, false).await
    }

    /// The state of `event`'s waiting room without a pass (for operators).
    pub async fn queue_state(&self, event: &str) -> Result<Option<QueueSnapshot>> {
        self.queue_call(event, 0, true).await
    }

    async fn queue_call(
        &self,
        event: &str,
        listed: u64,
        read_only: bool,
    ) -> Result<Option<QueueSnapshot>> {
        let keys = EventKeys::new(event);
        let mut inv = invocation(&QUEUE_TICK, &keys, None);
        inv.arg(random_hex(12))
            .arg(listed.min(MAX_LISTED))
            .arg(if read_only { "1" } else { "0" });
        let r = self.eval(inv, "queue_tick").await?;
        match r.status()?.as_str() {
            "ok" => Ok(Some(snapshot(&r, 1)?)),
            "disabled" | "not_found" => Ok(None),
            "schema" => Err(schema_error(event, &r)),
            other => Err(super::StoreError::Reply(format!(
                "queue_tick: status {other:?}"
            ))),
        }
    }
}
