//! Every Redis key name ticketctl uses, and nothing else. Per-event keys share
//! the hash tag `{ev:<id>}`, so every script over one event touches one
//! Cluster slot.

/// The set of all event ids (written after an event is created).
pub const EVENTS: &str = "tc:events";

/// Channel on which a hold that became the only one scheduled in its event
/// wakes sleeping release workers.
pub const RELEASE_WAKE_CHANNEL: &str = "tc:release:wake";

/// Consumer group on every event's job stream.
pub const JOBS_GROUP: &str = "purchase";

/// The keys of one event, in the order every per-event script takes them
/// (see `lua/lib.lua`).
#[derive(Debug, Clone)]
pub struct EventKeys {
    tag: String,
}

impl EventKeys {
    /// Keys of event `id` (an already validated id).
    pub fn new(id: &str) -> Self {
        EventKeys {
            tag: format!("tc:{{ev:{id}}}"),
        }
    }

    fn key(&self, suffix: &str) -> String {
        // Built by hand: `format!` costs several times as much, and every
        // script call names nine keys.
        let mut key = String::with_capacity(self.tag.len() + 1 + suffix.len());
        key.push_str(&self.tag);
        key.push(':');
        key.push_str(suffix);
        key
    }

    /// Settings and counters (hash).
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// Held-or-sold bitmap.
    pub fn taken(&self) -> String {
        self.key("taken")
    }
    /// Sold bitmap.
    pub fn sold(&self) -> String {
        self.key("sold")
    }
    /// Ticket -> number of the hold holding it (hash).
    pub fn owner(&self) -> String {
        self.key("owner")
    }
    /// Live holds (hash number -> record).
    pub fn holds(&self) -> String {
        self.key("holds")
    }
    /// Hold numbers in deadline order (list): the release schedule of
    /// holds whose deadline comes after every one already in it.
    pub fn sched(&self) -> String {
        self.key("sched")
    }
    /// The rest of the release schedule: hold numbers scored by deadline
    /// (zset), for holds made after the hold time was shortened.
    pub fn due(&self) -> String {
        self.key("due")
    }
    /// User -> tickets held plus bought (hash; for `maxTicketsPerUser`).
    pub fn user_tickets(&self) -> String {
        self.key("utix")
    }
    /// User -> live holds (hash; for `limits.max_holds_per_user`).
    pub fn uholds(&self) -> String {
        self.key("uholds")
    }
    /// Orders (hash seq -> record).
    pub fn orders(&self) -> String {
        self.key("orders")
    }
    /// Purchase job stream.
    pub fn jobs(&self) -> String {
        self.key("jobs")
    }
    /// Dead-letter stream of failed purchase jobs.
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    /// Payment results of orders (hash seq -> 'action|ms|reference').
    pub fn payments(&self) -> String {
        self.key("pay")
    }
    /// Last error of each failing purchase job (hash stream id -> error).
    pub fn job_errors(&self) -> String {
        self.key("joberr")
    }
    /// The nine keys every per-event script receives, in order (the
    /// scripts name `user_tickets` and `due` themselves, from the tag).
    pub fn script_keys(&self) -> [String; 9] {
        [
            self.meta(),
            self.taken(),
            self.sold(),
            self.owner(),
            self.holds(),
            self.sched(),
            self.orders(),
            self.jobs(),
            self.uholds(),
        ]
    }
    /// Idempotency record for `kind` (`hold` or `purchase`) and a client key.
    pub fn idempotency(&self, kind: &str, client_key: &str) -> String {
        self.key(&format!("idem:{kind}:{client_key}"))
    }
}

/// Binds an Idempotency-Key to the one request it was first used for, across
/// events and routes (its hash tag is the client's key: any Cluster slot).
pub fn idempotency_binding(client_key: &str) -> String {
    format!("tc:idem:{client_key}")
}

/// How long an Idempotency-Key is remembered, in seconds: its binding and
/// the per-event record of its answer (passed to the hold and purchase
/// scripts with the request's fingerprint).
pub const IDEMPOTENCY_TTL_SECS: u64 = 86_400;

/// The index of orders already published to a sink stream. Its hash tag is
/// the stream's whole name, so it shares the stream's Cluster slot.
pub fn sink_published(stream: &str) -> String {
    format!("{{{stream}}}:published")
}

/// The bitmap of the order numbers of `event` whose `kind` messages a sink
/// stream has (bit n: order `.o<n>.`), in the stream's Cluster slot.
pub fn sink_sent(stream: &str, event: &str, kind: &str) -> String {
    format!("{{{stream}}}:sent:{event}:{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_event_keys_share_one_hash_tag() {
        let k = EventKeys::new("gig-1");
        let mut all = k.script_keys().to_vec();
        all.push(k.idempotency("hold", "abc"));
        all.push(k.user_tickets());
        all.push(k.due());
        all.push(k.dead());
        all.push(k.job_errors());
        for key in all {
            assert!(key.starts_with("tc:{ev:gig-1}:"), "{key}");
        }
    }
}
