//! The purchase queue from the consumer's side: reading jobs through the
//! consumer group, taking over jobs of dead workers, completing and
//! dead-lettering them (and the operator's retry and purge of dead letters),
//! and publishing orders to Redis-stream sinks exactly once. Also the
//! wake-up subscription of the release worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::keys::{self, EventKeys};
use super::reply::parse_csv;
use super::scripts::{
    invocation, COMPLETE_ORDERS, DEAD_LETTER, DLQ_RETRY, FORGET_IDLE_CONSUMERS, OWN_JOBS,
    PUBLISH_STREAM,
};
use super::{Result, Store, StoreError};
use crate::model::OrderId;

/// One purchase job as read from an event's job stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Event id.
    pub event: String,
    /// Stream entry id.
    pub stream_id: String,
    /// Deliveries so far, this one included.
    pub deliveries: u64,
    /// The order, or why the entry could not be read.
    pub body: std::result::Result<JobOrder, String>,
}

/// What a job says about its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOrder {
    /// The order id.
    pub order: OrderId,
    /// Buyer.
    pub user: String,
    /// Tickets.
    pub tickets: Vec<u64>,
    /// Redis time of the purchase (ms).
    pub created_ms: u64,
    /// What the order costs (minor units; 0 for a job written before
    /// orders had a price).
    pub amount: u64,
    /// The currency of `amount`.
    pub currency: String,
    /// What the message says: `purchase`, `cancelled`, `refunded` or
    /// `refund_due`.
    pub kind: &'static str,
}

/// The kinds of message a job may carry (a job written before jobs had a
/// kind is a purchase); `paid`: a cancelled order paid late whose tickets
/// were sold to it again.
const KINDS: [&str; 5] = ["purchase", "cancelled", "refunded", "refund_due", "paid"];

/// A stream entry id as (ms, seq), for comparing.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A consumer group of a stream (see [`Store::stream_groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGroup {
    /// Its name.
    pub name: String,
    /// Entries not yet delivered to it; `None` when Redis cannot tell.
    pub lag: Option<u64>,
    /// Delivered and not acknowledged.
    pub pending: u64,
}

/// A message for the sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    /// Order id (the consumer's idempotency key).
    pub order_id: String,
    /// Event id.
    pub event_id: String,
    /// Buyer.
    pub user_id: String,
    /// Ticket ids.
    pub ticket_ids: Vec<u64>,
    /// RFC 3339 purchase time.
    pub created_at: String,
    /// What the order costs (minor units).
    pub amount: u64,
    /// The currency of `amount`.
    pub currency: String,
    /// What happened: `purchase` (later also `cancelled`, `refunded`,
    /// `refund_due`). With `order_id`, the consumer's idempotency key.
    pub kind: &'static str,
}

/// A consumer group counts as close to losing entries once it has not
/// read this share of the stream's `maxlen`.
pub const LAG_WARN_SHARE: f64 = 0.8;

impl StreamGroup {
    /// Whether it has [`LAG_WARN_SHARE`] of `maxlen` or more still to read,
    /// so that entries it has not read are about to be trimmed (never when
    /// `maxlen` is 0, or its lag is not known).
    pub fn close_to_maxlen(&self, maxlen: u64) -> bool {
        maxlen > 0
            && self
                .lag
                .is_some_and(|l| l as f64 >= LAG_WARN_SHARE * maxlen as f64)
    }
}

/// Most dead letters one `dlq_retry` call looks at.
const DLQ_SCAN: u64 = 1000;

/// Jobs per Redis call: reads, take-overs, scripts and their replies stay
/// this small whatever the batch, so that no call nears `redis.timeout`
/// (in a debug build, the reply of one read of 9,000 jobs took 0.26 s to
/// parse) and no script holds Redis up for its other clients.
pub const JOBS_PER_CALL: usize = 500;

/// What [`Store::read_jobs`] read.
#[derive(Debug, Default)]
pub struct JobRead {
    /// The jobs read, in hand now.
    pub jobs: Vec<Job>,
    /// Events whose read failed: Redis may have delivered jobs the reply
    /// lost, which the consumer now holds without having them in hand.
    pub failed: Vec<String>,
    /// Why, when a read failed.
    pub error: Option<StoreError>,
}

impl JobOrder {
    /// The message every sink receives.
    pub fn message(&self) -> SinkMessage {
        SinkMessage {
            order_id: self.order.to_string(),
            event_id: self.order.event.clone(),
            user_id: self.user.clone(),
            ticket_ids: self.tickets.clone(),
            created_at: crate::time::rfc3339_ms(self.created_ms),
            amount: self.amount,
            currency: self.currency.clone(),
            kind: self.kind,
        }
    }
}

use super::reply::value_text as text;

fn parse_fields(event: &str, fields: &[Value]) -> std::result::Result<JobOrder, String> {
    let mut map = HashMap::new();
    for pair in fields.chunks(2) {
        if let [k, v] = pair {
            if let (Some(k), Some(v)) = (text(k), text(v)) {
                map.insert(k, v);
            }
        }
    }
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .ok_or_else(|| format!("job has no field {k}"))
    };
    let seq = get("seq")?
        .parse()
        .map_err(|_| "job field seq is not a number".to_string())?;
    let secret = get("secret")?;
    Ok(JobOrder {
        order: OrderId {
            event: event.into(),
            seq,
            secret,
        },
        user: get("userId")?,
        tickets: parse_csv(&get("ticketIds")?).ok_or("job field ticketIds is not a ticket list")?,
        created_ms: get("createdMs")?
            .parse()
            .map_err(|_| "job field createdMs is not a number".to_string())?,
        amount: match map.get("amount") {
            None => 0,
            Some(a) => a
                .parse()
                .map_err(|_| "job field amount is not a whole number".to_string())?,
        },
        currency: map
            .get("currency")
            .cloned()
            .unwrap_or_else(|| crate::model::DEFAULT_CURRENCY.into()),
        kind: match map.get("type") {
            None => KINDS[0],
            Some(k) => KINDS
                .into_iter()
                .find(|known| known == k)
                .ok_or_else(|| format!("job field type is {k:?}, not one of {KINDS:?}"))?,
        },
    })
}

/// Parses an XREADGROUP/XCLAIM entry list `[[id, [k, v, ..]], ..]`.
fn parse_entries(event: &str, v: &Value, deliveries: &HashMap<String, u64>) -> Vec<Job> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(parts) = e else { continue };
        let Some(id) = parts.first().and_then(text) else {
            continue;
        };
        let body = match parts.get(1) {
            Some(Value::Array(fields)) => parse_fields(event, fields),
            // Deleted while pending: nothing to process.
            _ => continue,
        };
        let d = deliveries.get(&id).copied().unwrap_or(1);
        out.push(Job {
            event: event.into(),
            stream_id: id,
            deliveries: d,
            body,
        });
    }
    out
}

impl Store {
    /// Reads up to `count` new jobs across `events` (all on one Redis
    /// server: on a cluster, one event per call) for `consumer`, blocking up
    /// to `block` when there are none. Each Redis call reads at most
    /// [`JOBS_PER_CALL`] jobs, so no reply grows with `count`. The jobs read
    /// before a call failed are kept; [`JobRead::failed`] names the events
    /// whose jobs that call may have delivered unseen.
    pub async fn read_jobs(
        &self,
        events: &[String],
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> JobRead {
        let mut read = JobRead::default();
        // Streams of different slots cannot share a call on a cluster; on
        // one server, many events are read some at a time, as the command
        // names each.
        let per_call = if self.is_cluster() { 1 } else { JOBS_PER_CALL };
        let one_call = events.len() <= per_call;
        'groups: for group in events.chunks(per_call) {
            let per_stream = (JOBS_PER_CALL / group.len()).max(1);
            let mut block = block.filter(|_| one_call);
            while read.jobs.len() < count {
                let want = per_stream.min((count - read.jobs.len()).div_ceil(group.len()));
                match self.read_new_jobs(group, consumer, want, block).await {
                    Ok((jobs, more)) => {
                        read.jobs.extend(jobs);
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        read.failed.extend(group.iter().cloned());
                        read.error = Some(e);
                        // Another node may still answer; one server will not.
                        if self.is_cluster() {
                            continue 'groups;
                        }
                        return read;
                    }
                }
                block = None;
            }
        }
        // Reads that could not block: poll, rather than spin, when empty.
        if let (Some(b), false, true) = (block, one_call, read.jobs.is_empty()) {
            tokio::time::sleep(b.min(Duration::from_millis(50))).await;
        }
        read
    }

    /// One XREADGROUP of up to `count` new jobs per stream of `events`;
    /// also whether a stream may have more.
    async fn read_new_jobs(
        &self,
        events: &[String],
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<(Vec<Job>, bool)> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(keys::JOBS_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        let streams: Vec<String> = events.iter().map(|e| EventKeys::new(e).jobs()).collect();
        for s in &streams {
            cmd.arg(s);
        }
        for _ in events {
            cmd.arg(">");
        }
        let v: Value = match self
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
        {
            Err(e) if e.is_redis("NOGROUP", None) => {
                for e in events {
                    self.ensure_group(e).await?;
                }
                return Ok((Vec::new(), true));
            }
            other => other?,
        };
        let by_key: HashMap<&str, &str> = streams
            .iter()
            .map(String::as_str)
            .zip(events.iter().map(String::as_str))
            .collect();
        let mut jobs = Vec::new();
        let mut more = false;
        let Value::Array(per_stream) = v else {
            return Ok((jobs, more));
        };
        let none = HashMap::new();
        for s in &per_stream {
            let Value::Array(pair) = s else { continue };
            let (Some(key), Some(entries)) = (pair.first().and_then(text), pair.get(1)) else {
                continue;
            };
            let Some(event) = by_key.get(key.as_str()) else {
                continue;
            };
            if let Value::Array(e) = entries {
                more |= e.len() >= count;
            }
            jobs.extend(parse_entries(event, entries, &none));
        }
        Ok((jobs, more))
    }

    /// Up to `count` of the jobs `consumer` holds in `event`, oldest first,
    /// without counting a delivery: for a worker taking back the jobs of a
    /// call that failed (see `own_jobs.lua`). At most [`JOBS_PER_CALL`].
    pub async fn own_jobs(&self, event: &str, consumer: &str, count: usize) -> Result<Vec<Job>> {
        let mut inv = OWN_JOBS.prepare_invoke();
        inv.key(EventKeys::new(event).jobs())
            .arg(keys::JOBS_GROUP)
            .arg(consumer)
            .arg(count.clamp(1, JOBS_PER_CALL));
        let v: Value = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let Value::Array(rows) = v else {
            return Err(StoreError::Reply(format!("own_jobs: {v:?}")));
        };
        let mut entries = Vec::with_capacity(rows.len());
        let mut deliveries = HashMap::new();
        for row in rows {
            let Value::Array(mut f) = row else { continue };
            if f.len() != 3 {
                continue;
            }
            let fields = f.pop().unwrap_or(Value::Nil);
            let n = match f.pop() {
                Some(Value::Int(n)) => u64::try_from(n).unwrap_or(1),
                _ => 1,
            };
            let Some(id) = f.pop() else { continue };
            if let Some(id) = text(&id) {
                deliveries.insert(id, n);
            }
            entries.push(Value::Array(vec![id, fields]));
        }
        Ok(parse_entries(event, &Value::Array(entries), &deliveries))
    }

    /// (Re)creates an event's consumer group, for a job stream deleted by hand.
    pub async fn ensure_group(&self, event: &str) -> Result<()> {
        let key = EventKeys::new(event).jobs();
        let r: Result<()> = self
            .run(|mut c| async move {
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(key)
                    .arg(keys::JOBS_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut c)
                    .await
            })
            .await;
        match r {
            Err(e) if e.is_redis("BUSYGROUP", None) => Ok(()),
            other => other,
        }
    }

    /// Takes over up to `count` (at most [`JOBS_PER_CALL`]) jobs of `event`
    /// that no consumer acknowledged within `min_idle`. Each job's
    /// `deliveries` counts this one.
    pub async fn claim_stale(
        &self,
        event: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Job>> {
        self.claim_pending(event, consumer, min_idle, None, count)
            .await
    }

    /// Takes back up to `count` (at most [`JOBS_PER_CALL`]) of this
    /// consumer's own unacknowledged jobs (after a restart). Deliveries are counted as for any other take-over,
    /// so a job that keeps failing still reaches the dead-letter stream.
    pub async fn claim_own(&self, event: &str, consumer: &str, count: usize) -> Result<Vec<Job>> {
        self.claim_pending(event, consumer, Duration::ZERO, Some(consumer), count)
            .await
    }

    async fn claim_pending(
        &self,
        event: &str,
        consumer: &str,
        min_idle: Duration,
        only_of: Option<&str>,
        count: usize,
    ) -> Result<Vec<Job>> {
        let key = EventKeys::new(event).jobs();
        let idle = min_idle.as_millis() as u64;
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&key).arg(keys::JOBS_GROUP).arg("IDLE").arg(idle);
        cmd.arg("-").arg("+").arg(count.clamp(1, JOBS_PER_CALL));
        if let Some(owner) = only_of {
            cmd.arg(owner);
        }
        let pending: Value = match self
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
        {
            // No group (the stream was deleted by hand): nothing pending; the
            // next read makes the group again.
            Err(e) if e.is_redis("NOGROUP", None) => return Ok(Vec::new()),
            other => other?,
        };
        let Value::Array(rows) = pending else {
            return Ok(Vec::new());
        };
        let mut deliveries = HashMap::new();
        for row in &rows {
            if let Value::Array(f) = row {
                if let (Some(id), Some(Value::Int(n))) = (f.first().and_then(text), f.get(3)) {
                    deliveries.insert(id, *n as u64 + 1);
                }
            }
        }
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = deliveries.keys().cloned().collect();
        let consumer = consumer.to_string();
        let claimed: Value = self
            .run(|mut c| async move {
                redis::cmd("XCLAIM")
                    .arg(key)
                    .arg(keys::JOBS_GROUP)
                    .arg(consumer)
                    .arg(idle)
                    .arg(&ids)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut jobs = parse_entries(event, &claimed, &deliveries);
        jobs.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        Ok(jobs)
    }

    /// Marks the orders of finished jobs completed and acknowledges the
    /// jobs (all of one event). An order dead-lettered meanwhile (its job
    /// taken over too often while this worker still had it) is completed
    /// too, and its dead letter removed. Returns how many orders changed.
    pub async fn complete_jobs(&self, event: &str, jobs: &[(impl AsRef<str>, u64)]) -> Result<u64> {
        let keys = EventKeys::new(event);
        let mut done = 0;
        for chunk in jobs.chunks(JOBS_PER_CALL) {
            let mut inv = invocation(&COMPLETE_ORDERS, &keys, None);
            inv.key(keys.job_errors())
                .key(keys.dead())
                .arg(keys::JOBS_GROUP);
            for (id, seq) in chunk {
                inv.arg(id.as_ref()).arg(*seq);
            }
            done += self.eval(inv, "complete_orders").await?.uint(0)?;
        }
        Ok(done)
    }

    /// Moves jobs to the event's dead-letter stream with their error; their
    /// orders become `failed`. Entries: (stream id, seq if known, attempts, error).
    pub async fn dead_letter(
        &self,
        event: &str,
        jobs: &[(&str, Option<u64>, u64, &str)],
    ) -> Result<u64> {
        let keys = EventKeys::new(event);
        let mut moved = 0;
        for chunk in jobs.chunks(JOBS_PER_CALL) {
            let mut inv = invocation(&DEAD_LETTER, &keys, None);
            inv.key(keys.dead())
                .key(keys.job_errors())
                .arg(keys::JOBS_GROUP);
            for (id, seq, attempts, err) in chunk {
                inv.arg(*id)
                    .arg(seq.map(|s| s.to_string()).unwrap_or_default())
                    .arg(*attempts)
                    .arg(*err);
            }
            moved += self.eval(inv, "dead_letter").await?.uint(0)?;
        }
        Ok(moved)
    }

    /// Puts dead letters of an event back on its job stream: those of one
    /// order (`seq`), or all. Returns (retried, still dead). Each script call
    /// looks at no more than [`DLQ_SCAN`] entries, so a long dead-letter
    /// stream is walked in steps instead of blocking Redis.
    pub async fn retry_dead_letters(&self, event: &str, seq: Option<u64>) -> Result<(u64, u64)> {
        let keys = EventKeys::new(event);
        let want = seq.map(|s| s.to_string()).unwrap_or_default();
        // The walk ends at the entry that was last when it began: jobs
        // dead-lettered again meanwhile wait for the next retry.
        let (mut total, mut after, mut last) = (0, String::new(), String::new());
        loop {
            let mut inv = invocation(&DLQ_RETRY, &keys, None);
            inv.key(keys.dead())
                .arg(&want)
                .arg(500)
                .arg(&after)
                .arg(DLQ_SCAN)
                .arg(&last);
            let r = self.eval(inv, "dlq_retry").await?;
            let (n, left) = (r.uint(0)?, r.uint(1)?);
            total += n;
            after = r.str(2)?;
            last = r.str(3)?;
            if after.is_empty() {
                return Ok((total, left));
            }
        }
    }

    /// Deletes an event's dead letters (their orders stay `failed`); returns how many.
    pub async fn purge_dead_letters(&self, event: &str) -> Result<u64> {
        let key = EventKeys::new(event).dead();
        let n = self.stream_len(&key).await?;
        let _: i64 = self
            .run(|mut c| async move { redis::cmd("DEL").arg(key).query_async(&mut c).await })
            .await?;
        Ok(n)
    }

    /// Appends messages to a sink stream, skipping orders it already has.
    /// Returns how many were appended. Each call appends at most
    /// [`JOBS_PER_CALL`]; each is exactly-once on its own, so a failure
    /// halfway leaves nothing that a retry would append twice.
    pub async fn publish_to_stream(
        &self,
        stream: &str,
        maxlen: u64,
        retention: Duration,
        msgs: &[SinkMessage],
    ) -> Result<u64> {
        let index = keys::sink_published(stream);
        let mut appended = 0;
        for chunk in msgs.chunks(JOBS_PER_CALL) {
            let mut inv = PUBLISH_STREAM.prepare_invoke();
            inv.key(stream)
                .key(&index)
                .arg(retention.as_millis() as u64)
                .arg(maxlen);
            // Each message's bitmap (by event and kind) is a key of the call.
            let mut bitmaps: Vec<(&str, &str)> = Vec::new();
            for m in chunk {
                let seq = OrderId::parse(&m.order_id).map(|o| o.seq).ok_or_else(|| {
                    StoreError::Reply(format!("publish_stream: order id {:?}", m.order_id))
                })?;
                let at = match bitmaps
                    .iter()
                    .position(|&(e, k)| e == m.event_id && k == m.kind)
                {
                    Some(at) => at,
                    None => {
                        bitmaps.push((&m.event_id, m.kind));
                        inv.key(keys::sink_sent(stream, &m.event_id, m.kind));
                        bitmaps.len() - 1
                    }
                };
                let tickets = serde_json::to_string(&m.ticket_ids).unwrap_or_else(|_| "[]".into());
                inv.arg(&m.order_id)
                    .arg(&m.event_id)
                    .arg(&m.user_id)
                    .arg(tickets)
                    .arg(&m.created_at)
                    .arg(m.amount)
                    .arg(&m.currency)
                    .arg(m.kind)
                    // Lua's KEYS index: the stream and the older index first.
                    .arg(at + 3)
                    .arg(seq);
            }
            let v: Value = self
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            match v {
                Value::Int(n) => appended += n.max(0) as u64,
                other => return Err(StoreError::Reply(format!("publish_stream: {other:?}"))),
            }
        }
        Ok(appended)
    }

    /// Records why jobs failed this time (kept until they complete or are
    /// dead-lettered).
    pub async fn record_job_errors(&self, event: &str, ids: &[&str], error: &str) -> Result<()> {
        let key = EventKeys::new(event).job_errors();
        for chunk in ids.chunks(JOBS_PER_CALL) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for id in chunk {
                cmd.arg(*id).arg(error);
            }
            self.run(|mut c| async move { cmd.query_async::<()>(&mut c).await })
                .await?;
        }
        Ok(())
    }

    /// The oldest job `consumer` has not acknowledged in `event`: its
    /// stream id and how many times it was delivered.
    pub(super) async fn oldest_pending(
        &self,
        event: &str,
        consumer: &str,
    ) -> Result<Option<(String, u64)>> {
        let key = EventKeys::new(event).jobs();
        let consumer = consumer.to_string();
        let v: Value = self
            .run(|mut c| async move {
                redis::cmd("XPENDING")
                    .arg(key)
                    .arg(keys::JOBS_GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .arg(consumer)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Value::Array(rows) = v else {
            return Ok(None);
        };
        Ok(match rows.first() {
            Some(Value::Array(row)) => {
                let id = row.first().and_then(text).unwrap_or_default();
                let deliveries = match row.get(3) {
                    Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                    _ => 0,
                };
                Some((id, deliveries))
            }
            _ => None,
        })
    }

    /// Removes the consumers of an event's job group that hold no job and
    /// have been idle for `min_idle` (workers that died), except `keep`.
    /// Returns how many went.
    pub async fn forget_idle_consumers(
        &self,
        event: &str,
        min_idle: Duration,
        keep: &str,
    ) -> Result<u64> {
        let mut inv = FORGET_IDLE_CONSUMERS.prepare_invoke();
        inv.key(EventKeys::new(event).jobs())
            .arg(keys::JOBS_GROUP)
            .arg(min_idle.as_millis() as u64)
            .arg(keep);
        self.run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// Removes a consumer that holds no pending jobs from an event's group
    /// (one with pending jobs is kept, so none are lost).
    pub async fn forget_consumer(&self, event: &str, consumer: &str) -> Result<()> {
        if self.oldest_pending(event, consumer).await?.is_some() {
            return Ok(());
        }
        let key = EventKeys::new(event).jobs();
        let consumer = consumer.to_string();
        self.run(|mut c| async move {
            redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(key)
                .arg(keys::JOBS_GROUP)
                .arg(consumer)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// The consumer groups of a stream, with how many entries each has not
    /// been delivered yet (`lag`: `None` when Redis cannot tell, as before
    /// Redis 7 or after entries were deleted in its range) and how many it
    /// has been delivered but not acknowledged. No stream: none.
    pub async fn stream_groups(&self, key: &str) -> Result<Vec<StreamGroup>> {
        let owned = key.to_string();
        let v: Value = match self
            .run(|mut c| async move {
                redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(owned)
                    .query_async(&mut c)
                    .await
            })
            .await
        {
            Ok(v) => v,
            // XINFO GROUPS on a stream not yet written: "no such key".
            Err(e) if e.is_redis("ERR", Some("no such key")) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Value::Array(groups) = v else {
            return Err(StoreError::Reply(format!("XINFO GROUPS: {v:?}")));
        };
        let mut out = Vec::new();
        for g in groups {
            let pairs: Vec<(String, Value)> = match g {
                Value::Array(items) => items
                    .chunks(2)
                    .filter_map(|kv| match kv {
                        [k, v] => redis::from_redis_value::<String>(k.clone())
                            .ok()
                            .map(|k| (k, v.clone())),
                        _ => None,
                    })
                    .collect(),
                Value::Map(items) => items
                    .into_iter()
                    .filter_map(|(k, v)| {
                        redis::from_redis_value::<String>(k.clone())
                            .ok()
                            .map(|k| (k, v))
                    })
                    .collect(),
                _ => continue,
            };
            let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let int = |name: &str| {
                field(name).and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok())
            };
            let Some(name) =
                field("name").and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            else {
                continue;
            };
            let last = field("last-delivered-id")
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
            out.push((
                StreamGroup {
                    name,
                    lag: int("lag"),
                    pending: int("pending").unwrap_or(0),
                },
                last,
            ));
        }
        // Where Redis cannot tell a group's lag (entries were deleted in
        // its range), a group that has read nothing still in the stream
        // has every entry of it to read.
        if out.iter().any(|(g, _)| g.lag.is_none()) {
            let k = key.to_string();
            let first: Vec<(String, Vec<(String, String)>)> = self
                .run(|mut c| async move {
                    redis::cmd("XRANGE")
                        .arg(k)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let len = self.stream_len(key).await?;
            if let Some((first, _)) = first.first() {
                for (g, last) in out.iter_mut().filter(|(g, _)| g.lag.is_none()) {
                    if last
                        .as_deref()
                        .and_then(stream_id)
                        .is_some_and(|l| Some(l) < stream_id(first))
                    {
                        g.lag = Some(len);
                    }
                }
            }
        }
        Ok(out.into_iter().map(|(g, _)| g).collect())
    }

    /// Forgets which of `event`'s orders the sink stream has (its bitmaps,
    /// every message type), once the event is gone: an event made again
    /// with the same id numbers its orders from 1 again.
    pub async fn forget_published(&self, stream: &str, event: &str) -> Result<()> {
        let keys: Vec<String> = KINDS
            .iter()
            .map(|k| keys::sink_sent(stream, event, k))
            .collect();
        self.run(|mut c| async move { redis::cmd("DEL").arg(keys).query_async::<()>(&mut c).await })
            .await
    }

    /// Number of entries in a stream (0 when it does not exist).
    pub async fn stream_len(&self, key: &str) -> Result<u64> {
        let key = key.to_string();
        self.run(|mut c| async move { redis::cmd("XLEN").arg(key).query_async(&mut c).await })
            .await
    }

    /// Notifies `wake` whenever a release wake-up is published, until
    /// `stop`; reconnects by itself after errors.
    pub async fn watch_release_wakeups(&self, wake: Arc<Notify>, stop: CancellationToken) {
        use futures_util::StreamExt;
        let Some(client) = self.client.clone() else {
            return;
        };
        while !stop.is_cancelled() {
            let sub = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(keys::RELEASE_WAKE_CHANNEL).await?;
                // A hold may have been created while we were not listening.
                wake.notify_one();
                let mut msgs = ps.on_message();
                while msgs.next().await.is_some() {
                    wake.notify_one();
                }
                Ok::<(), redis::RedisError>(())
            };
            tokio::select! {
                r = sub => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "release wake-up subscription failed; retrying");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => {}
                    }
                }
                () = stop.cancelled() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn job_entries_parse_and_damaged_ones_are_reported() {
        let good = Value::Array(vec![
            bulk("1-0"),
            Value::Array(
                [
                    "seq",
                    "7",
                    "secret",
                    "S",
                    "userId",
                    "u",
                    "ticketIds",
                    "1,2",
                    "createdMs",
                    "1000",
                ]
                .map(bulk)
                .to_vec(),
            ),
        ]);
        let bad = Value::Array(vec![
            bulk("2-0"),
            Value::Array(["seq", "x"].map(bulk).to_vec()),
        ]);
        let gone = Value::Array(vec![bulk("3-0"), Value::Nil]);
        let jobs = parse_entries("e", &Value::Array(vec![good, bad, gone]), &HashMap::new());
        assert_eq!(jobs.len(), 2);
        let o = jobs[0].body.as_ref().unwrap();
        assert_eq!(
            (o.order.seq, o.tickets.clone(), o.created_ms),
            (7, vec![1, 2], 1000)
        );
        assert_eq!(o.message().order_id, "e.o7.S");
        assert!(jobs[1].body.is_err());
    }
}
