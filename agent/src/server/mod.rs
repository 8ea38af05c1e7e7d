//! The server role: it holds the replicated state, orders writes, answers reads with
//! blocking, and runs the leader's duties.
//!
//! Writes go through [`Server::propose`], which assigns each command the next log index and
//! applies it to the store; this is exactly the seam where Raft replaces the local log (the
//! Raft issue replicates these same commands). Reads execute a [`query::Read`] against a
//! consistent view of the state, blocking on the read's watch target when asked to.

pub mod leader;
pub mod query;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_catalog::{Command, Response, State, Store};
use tokio::sync::Mutex;

use crate::http::error::ApiError;
use crate::http::params::{Consistency, QueryOptions};
use crate::watch::WatchHub;

/// Unix time in milliseconds, the clock carried inside commands.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Metadata of a read, sent back as `X-Consul-*` headers.
#[derive(Clone, Copy, Debug)]
pub struct ReadMeta {
    /// Index the answer reflects (never 0).
    pub index: u64,
    /// Whether the serving server knows a leader.
    pub known_leader: bool,
    /// Milliseconds since the serving server last heard from the leader.
    pub last_contact_ms: u64,
    /// Consistency actually used.
    pub consistency: Consistency,
}

/// A server's state and write path.
pub struct Server {
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    /// The local log: the last index assigned. Held across apply so indexes are applied in order.
    log: Mutex<u64>,
    /// Server RPC address advertised as the leader address.
    rpc_addr: SocketAddr,
    /// Datacenter served.
    datacenter: String,
}

impl Server {
    /// A single-server, in-memory server (`-dev`, and `-server` until Raft lands).
    pub fn new_local(rpc_addr: SocketAddr, datacenter: &str, hub: Arc<WatchHub>) -> Server {
        Server {
            store: Arc::new(Store::new()),
            hub,
            log: Mutex::new(0),
            rpc_addr,
            datacenter: datacenter.to_string(),
        }
    }

    /// Datacenter this server belongs to.
    pub fn datacenter(&self) -> &str {
        &self.datacenter
    }

    /// Orders, applies and publishes a command; returns its result and index.
    pub async fn propose(&self, cmd: Command) -> Result<(u64, Response), ApiError> {
        let mut last = self.log.lock().await;
        let index = *last + 1;
        let applied = self.store.apply(index, &cmd);
        *last = index;
        drop(last);
        self.hub.notify(&applied.changes);
        metrics::count_apply(&applied);
        let response = applied.result?;
        Ok((index, response))
    }

    /// The current state.
    pub fn state(&self) -> Arc<State> {
        self.store.read()
    }

    /// Address of the leader's server RPC endpoint, if there is a leader.
    pub fn leader(&self) -> Option<SocketAddr> {
        Some(self.rpc_addr)
    }

    /// Server RPC addresses of the voting peers.
    pub fn peers(&self) -> Vec<SocketAddr> {
        vec![self.rpc_addr]
    }

    /// Whether this server is the leader.
    pub fn is_leader(&self) -> bool {
        true
    }

    /// Runs a read, blocking until its index passes `opts.min_index` or the wait expires.
    pub async fn read(
        &self,
        read: &query::Read,
        opts: &QueryOptions,
    ) -> Result<(ReadMeta, serde_json::Value), ApiError> {
        let consistency = opts.consistency;
        let meta = |index: u64| ReadMeta {
            index: index.max(1),
            known_leader: self.leader().is_some(),
            last_contact_ms: 0,
            consistency,
        };
        let target = read.target();
        let deadline = tokio::time::Instant::now() + opts.wait_with_jitter();
        loop {
            let sub = self.hub.subscribe(&target);
            let changed = sub.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let st = self.state();
            let (index, value) = read.execute(&st)?;
            if opts.min_index == 0 || index > opts.min_index {
                return Ok((meta(index), value));
            }
            // Blocking: wait for a change to what was read, or for the deadline.
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => {
                    let st = self.state();
                    let (index, value) = read.execute(&st)?;
                    return Ok((meta(index), value));
                }
            }
        }
    }
}

/// Metrics of the write path.
pub mod metrics {
    use std::sync::atomic::{AtomicU64, Ordering};

    use cairn_catalog::Applied;

    static APPLIED: AtomicU64 = AtomicU64::new(0);
    static FAILED: AtomicU64 = AtomicU64::new(0);

    pub(super) fn count_apply(a: &Applied) {
        APPLIED.fetch_add(1, Ordering::Relaxed);
        if a.result.is_err() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (commands applied, commands refused by the state machine).
    pub fn applied() -> (u64, u64) {
        (
            APPLIED.load(Ordering::Relaxed),
            FAILED.load(Ordering::Relaxed),
        )
    }
}

/// How long the leader keeps a session alive past its TTL (Consul's session TTL multiplier).
pub const SESSION_TTL_MULTIPLIER: u32 = 2;

/// Parses a session TTL, enforcing Consul's bounds (10s to 24h).
pub fn parse_session_ttl(ttl: &str) -> Result<Option<Duration>, ApiError> {
    if ttl.is_empty() {
        return Ok(None);
    }
    let d = cairn_catalog::duration::parse_go_duration(ttl)
        .map_err(|e| ApiError::bad_request(format!("Session TTL '{ttl}' invalid: {e}")))?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < Duration::from_secs(10) || d > Duration::from_secs(86_400) {
        return Err(ApiError::bad_request(format!(
            "Invalid Session TTL '{}', must be between [10s=24h0m0s]",
            d.as_nanos()
        )));
    }
    Ok(Some(d))
}
