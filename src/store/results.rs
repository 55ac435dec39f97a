//! The payment results stream: its consumer group, reads, acknowledgements
//! and dead letters (the worker that applies them is
//! `daemon/worker/results.rs`).

use std::time::Duration;

use redis::Value;

use super::keys::JOBS_GROUP;
use super::reply::value_text;
use super::{Result, Store};

/// One entry of the results stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentResult {
    /// Stream entry id.
    pub id: String,
    /// Its fields, as written.
    pub fields: Vec<(String, String)>,
}

/// Parses an XREADGROUP / XAUTOCLAIM entry list `[[id, [k, v, ..]], ..]`.
fn entries(v: &Value) -> Vec<PaymentResult> {
    let Value::Array(list) = v else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let Value::Array(parts) = e else { return None };
            let id = value_text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(kv)) => kv
                    .chunks(2)
                    .filter_map(|p| Some((value_text(p.first()?)?, value_text(p.get(1)?)?)))
                    .collect(),
                _ => Vec::new(),
            };
            Some(PaymentResult { id, fields })
        })
        .collect()
}

impl Store {
    /// Creates the consumer group of the results stream (from its first
    /// entry, so that results added before any worker ran are applied).
    pub async fn ensure_results_group(&self, stream: &str) -> Result<()> {
        let stream = stream.to_string();
        let r: redis::RedisResult<Value> = self
            .run(|mut c| async move {
                Ok::<_, redis::RedisError>(
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(&stream)
                        .arg(JOBS_GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async::<Value>(&mut c)
                        .await,
                )
            })
            .await?;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads up to `count` entries for `consumer`: with `own`, those it was
    /// given before and has not acknowledged; else new ones, waiting up to
    /// `block` for one.
    pub async fn read_results(
        &self,
        stream: &str,
        consumer: &str,
        own: bool,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<PaymentResult>> {
        let (stream, consumer) = (stream.to_string(), consumer.to_string());
        let v: Value = self
            .run(|mut c| async move {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(JOBS_GROUP)
                    .arg(&consumer)
                    .arg("COUNT")
                    .arg(count);
                if let Some(b) = block {
                    cmd.arg("BLOCK").arg(b.as_millis() as u64);
                }
                cmd.arg("STREAMS")
                    .arg(&stream)
                    .arg(if own { "0" } else { ">" });
                cmd.query_async(&mut c).await
            })
            .await?;
        // [[stream, [entries]]] or nil.
        Ok(match &v {
            Value::Array(streams) => streams
                .iter()
                .filter_map(|s| match s {
                    Value::Array(p) => p.get(1).map(entries),
                    _ => None,
                })
                .flatten()
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Copies an entry that cannot be applied to `<stream>:dead`, with the
    /// reason (it is acknowledged after, by [`Store::ack_results`]).
    pub async fn dead_result(
        &self,
        stream: &str,
        entry: &PaymentResult,
        reason: &str,
    ) -> Result<()> {
        let key = format!("{stream}:dead");
        let mut fields: Vec<(String, String)> = entry.fields.clone();
        fields.push(("entryId".into(), entry.id.clone()));
        fields.push(("reason".into(), reason.to_string()));
        let _: Value = self
            .run(|mut c| async move {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&key).arg("*");
                for (k, v) in &fields {
                    cmd.arg(k).arg(v);
                }
                cmd.query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// Acknowledges entries of the results stream (applied or dead-lettered).
    pub async fn ack_results(&self, stream: &str, ids: &[&str]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let stream = stream.to_string();
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let _: Value = self
            .run(|mut c| async move {
                redis::cmd("XACK")
                    .arg(&stream)
                    .arg(JOBS_GROUP)
                    .arg(&ids)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Takes over entries other consumers were given more than `idle` ago
    /// and did not acknowledge (a worker that died); how many.
    pub async fn claim_results(
        &self,
        stream: &str,
        consumer: &str,
        idle: Duration,
    ) -> Result<usize> {
        let (stream, consumer) = (stream.to_string(), consumer.to_string());
        let v: Value = self
            .run(|mut c| async move {
                redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(JOBS_GROUP)
                    .arg(&consumer)
                    .arg(idle.as_millis() as u64)
                    .arg("0")
                    .arg("COUNT")
                    .arg(500)
                    .arg("JUSTID")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match &v {
            Value::Array(p) => match p.get(1) {
                Some(Value::Array(ids)) => ids.len(),
                _ => 0,
            },
            _ => 0,
        })
    }
}
