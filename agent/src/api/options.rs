//! Read options and reply metadata: what every read of the replicated state takes (blocking
//! index and wait, consistency mode, staleness bound, filter) and what every reply carries
//! back (the index it reflects, whether a leader is known, contact with the leader).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default blocking wait (Consul's `default_query_time`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest blocking wait (Consul's `max_query_time`).
///
/// Longer requests are clamped, not refused, as Consul does; the RPC client's timeout for a
/// forwarded read is derived from the clamped wait.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Read consistency, as Consul's three modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Served by the leader (the default): consistent but for a short window around a
    /// leader change.
    #[default]
    Leader,
    /// Served by any server, possibly behind the leader.
    Stale,
    /// The leader confirms its leadership with a quorum before answering.
    Consistent,
}

impl Consistency {
    /// The mode's name (`X-Consul-Effective-Consistency`).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Leader => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// How to run a read.
///
/// Travels with a forwarded read, so the server that answers blocks as the client asked instead of
/// the forwarder polling it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Block until the answer's index is past this (0: answer at once).
    pub min_index: u64,
    /// Longest time to block (already clamped to [`MAX_WAIT`]), in milliseconds on the wire.
    #[serde(with = "millis")]
    pub wait: Duration,
    /// Consistency mode.
    pub consistency: Consistency,
    /// With `Stale`: the most the serving server may lag behind the leader before the read
    /// goes to the leader instead.
    #[serde(with = "millis_opt")]
    pub max_stale: Option<Duration>,
    /// A `?filter` expression over the answer's items.
    pub filter: Option<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            min_index: 0,
            wait: DEFAULT_WAIT,
            consistency: Consistency::Leader,
            max_stale: None,
            filter: None,
        }
    }
}

impl ReadOptions {
    /// Options for a read that answers at once in the given mode.
    pub fn now(consistency: Consistency) -> ReadOptions {
        ReadOptions {
            consistency,
            ..ReadOptions::default()
        }
    }

    /// The wait plus up to wait/16 of random jitter, as Consul spreads the wake-ups of many
    /// blocked readers.
    ///
    /// Without it, readers that started together (one change wakes them all) would time out
    /// together and come back as a herd.
    pub fn wait_with_jitter(&self) -> Duration {
        let jitter_max = self.wait.as_millis() as u64 / 16;
        let jitter = if jitter_max == 0 {
            0
        } else {
            crate::random::up_to(jitter_max)
        };
        self.wait + Duration::from_millis(jitter)
    }
}

/// What a reply says about the state it was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryMeta {
    /// Index the answer reflects (never 0).
    pub index: u64,
    /// Whether the serving server knows a leader.
    /// (`X-Consul-KnownLeader`: clients of stale reads use it to judge the answer.)
    pub known_leader: bool,
    /// Milliseconds since the serving server last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
    /// Consistency actually used.
    pub consistency: Consistency,
    /// Whether ACLs removed something from the answer
    /// (`X-Consul-Results-Filtered-By-ACLs`, only for requests that carried a token).
    #[serde(default)]
    pub filtered_by_acls: bool,
}

/// A reply with its metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Indexed<T> {
    /// Index, leader and contact of the state the value comes from.
    pub meta: QueryMeta,
    /// The value.
    pub value: T,
}

/// `Duration` as whole milliseconds.
///
/// Whole milliseconds: sub-millisecond precision means nothing for these waits, and an integer
/// reads plainly in RPC bodies.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // Saturates instead of failing: no wait is anywhere near `u64::MAX` milliseconds.
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `Option<Duration>` as whole milliseconds.
mod millis_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}
