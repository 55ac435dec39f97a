//! Reading script replies: positional arrays whose first element says what
//! happened. Turns shape errors into [`StoreError::Reply`] instead of panics.

use redis::Value;

use super::{Result, StoreError};

/// One script reply, viewed as an array.
pub(crate) struct Reply {
    script: &'static str,
    items: Vec<Value>,
}

impl Reply {
    pub(crate) fn new(script: &'static str, v: Value) -> Result<Reply> {
        match v {
            Value::Array(items) => Ok(Reply { script, items }),
            other => Err(StoreError::Reply(format!(
                "{script}: expected an array, got {other:?}"
            ))),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    fn bad(&self, i: usize, what: &str) -> StoreError {
        StoreError::Reply(format!(
            "{}: element {i} is not {what}: {:?}",
            self.script,
            self.items.get(i)
        ))
    }

    pub(crate) fn str(&self, i: usize) -> Result<String> {
        match self.items.get(i) {
            Some(Value::BulkString(b)) => {
                String::from_utf8(b.clone()).map_err(|_| self.bad(i, "UTF-8"))
            }
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            Some(Value::Int(n)) => Ok(n.to_string()),
            _ => Err(self.bad(i, "a string")),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
        match self.items.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            Some(Value::BulkString(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| self.bad(i, "an integer")),
            _ => Err(self.bad(i, "an integer")),
        }
    }

    pub(crate) fn uint(&self, i: usize) -> Result<u64> {
        u64::try_from(self.int(i)?).map_err(|_| self.bad(i, "a non-negative integer"))
    }

    /// Elements `from..` as unsigned integers.
    pub(crate) fn uints_from(&self, from: usize) -> Result<Vec<u64>> {
        (from..self.items.len()).map(|i| self.uint(i)).collect()
    }

    /// Every element as a reply of its own (a script answering once per item).
    pub(crate) fn arrays(self) -> Result<Vec<Reply>> {
        let script = self.script;
        self.items
            .into_iter()
            .map(|v| Reply::new(script, v))
            .collect()
    }

    /// The elements themselves.
    pub(crate) fn into_values(self) -> Vec<Value> {
        self.items
    }

    /// Whether element 0 is the status word `word` (without copying it).
    pub(crate) fn is(&self, word: &str) -> bool {
        match self.items.first() {
            Some(Value::BulkString(b)) => b == word.as_bytes(),
            Some(Value::SimpleString(s)) => s == word,
            _ => false,
        }
    }

    /// The status word in element 0 (numeric first elements read as text).
    pub(crate) fn status(&self) -> Result<String> {
        self.str(0)
    }
}

/// A bulk, simple or integer reply as text.
pub(crate) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Writes ticket ids as `1,2,3`, as scripts take and store them.
pub(crate) fn to_csv(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Parses `1,2,3` as stored in hold and order records.
pub(crate) fn parse_csv(s: &str) -> Option<Vec<u64>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(|t| t.parse().ok()).collect()
}
