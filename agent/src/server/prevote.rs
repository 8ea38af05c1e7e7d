//! Pre-vote: a server starts a Raft election only when a majority of the voters would take
//! part, so a server that merely lost touch with a healthy leader (paused, or cut off alone)
//! cannot depose it.
//!
//! Why this exists: openraft 0.9 has no pre-vote. Its voters do refuse votes while they hear
//! from a leader (the "leader lease", `election_timeout_max`), but the election itself already
//! raised the candidate's term. A follower paused with SIGSTOP past the election timeout
//! elects on resume (its timer fires before it reads the leader's queued heartbeats), its
//! votes are refused, and then the leader's next append to it is answered with that higher
//! term: the leader steps down and the cluster has no leader for about a second.
//!
//! So openraft's own election timer is off (`Config::enable_elect = false`) and this module
//! runs it instead, with a round of pre-votes in front: after the same silence openraft waits
//! (the lease plus a random `election_timeout_min..=max`), a server asks every other voter
//! whether it would vote, over `POST /v1/internal/raft/prevote`. A voter says yes only if it
//! is not the leader and has not heard from one for `election_timeout_max` (its own lease has
//! run out, so openraft's real vote will not be refused for it either). With a yes from a
//! majority (of each configuration during a membership change) the server calls openraft's
//! election (`trigger().elect()`); otherwise it waits another random timeout.
//!
//! A voter also says no to a candidate whose last log ID is behind its own, as the real vote
//! would: otherwise a server that cannot win could still raise the term in every leaderless
//! window and depose each new leader in turn. Nothing in Raft's safety depends on when
//! elections start, only liveness, which is kept: when the leader is really gone no voter
//! hears from it, and a server with the most recent log gets a yes from all of them, exactly
//! as it would get their votes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::server::Server;

/// The route a server answers pre-votes on (server RPC port).
///
/// Under `/v1/internal/`, so it travels with the other server RPCs (version header, body limit) and
/// the HTTP API never serves it.
pub const PATH: &str = "/v1/internal/raft/prevote";

/// "Would you vote for me if I started an election now?"
///
/// Asking changes nothing on either side: the candidate's term is raised only by openraft's real
/// election, after a majority said yes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The asking server's Raft ID.
    pub candidate: u64,
    /// The term its election would have.
    /// Logged by the voter only: a pre-vote changes no term, so a voter never adopts it (the whole
    /// point is that asking does not disturb a healthy leader's term).
    pub term: u64,
    /// Its last log ID (a vote goes only to a log at least as recent as the voter's).
    pub last_log_id: Option<cairn_raft::LogId>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreVoteReply {
    /// Whether this server would vote (it has no live leader).
    pub granted: bool,
    /// This server's current term (for the logs).
    pub term: u64,
}

/// Election timing from openraft's configuration, in milliseconds.
///
/// Read from openraft's configuration rather than kept separately, so the pre-vote timer and
/// openraft's vote-refusal lease always use the same numbers.
#[derive(Clone, Copy, Debug)]
struct Timing {
    min: u64,
    max: u64,
}

impl Timing {
    fn of(server: &Server) -> Timing {
        let c = server.raft().config();
        Timing {
            min: c.election_timeout_min,
            // Guards the random draw below against an inverted range.
            max: c.election_timeout_max.max(c.election_timeout_min),
        }
    }

    /// A random election timeout in `min..=max`.
    fn random(&self) -> u64 {
        self.min + crate::random::up_to(self.max - self.min)
    }
}

/// Whether `server` would vote for a candidate whose last log ID is `candidate_log` now: it
/// is not the leader, has heard from none for a whole lease (`election_timeout_max`), and the
/// candidate's log is at least as recent as its own (Raft's vote rule, which openraft's real
/// vote applies too: a candidate that would lose it does not get to raise the term).
///
/// The silence threshold is `election_timeout_max`, the same lease during which openraft's voters
/// refuse real votes: a pre-vote granted here is one the real vote will not refuse for lack of
/// silence. `None` log IDs (empty logs) compare below every real one.
pub fn would_vote(server: &Server, candidate_log: Option<cairn_raft::LogId>) -> bool {
    !server.is_leader()
        && server.last_contact_ms() >= Timing::of(server).max
        && candidate_log >= server.last_log_id()
}

/// Answers a pre-vote (the handler of [`PATH`]).
///
/// Answered from the server's own view, without openraft: a pre-vote changes no Raft state. A
/// malformed request gets the typed `Invalid` error the RPC client decodes.
pub async fn handle(State(server): State<Arc<Server>>, body: Bytes) -> Response {
    let req: PreVoteRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let e = crate::api::Error::Invalid(format!("malformed RPC request: {e}"));
            let wire = serde_json::to_vec(&e).unwrap_or_default();
            return (StatusCode::BAD_REQUEST, wire).into_response();
        }
    };
    let granted = would_vote(&server, req.last_log_id);
    let term = server.raft().metrics().borrow().current_term;
    debug!(
        candidate = req.candidate,
        candidate_term = req.term,
        term,
        granted,
        "pre-vote asked"
    );
    match serde_json::to_vec(&PreVoteReply { granted, term }) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The voters' configurations (two during a membership change).
type Configs = Vec<BTreeSet<u64>>;

/// The other voters: Raft ID and RPC address.
type Peers = Vec<(u64, String)>;

/// The voters' configurations and the other voters' addresses, if `server` is a voter.
///
/// `None` for a learner: it has no vote, so it must never start an election, however long it has
/// not heard from a leader.
fn voters(server: &Server) -> Option<(Configs, Peers)> {
    let m = server.raft().metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let configs = membership.get_joint_config().clone();
    if !configs.iter().any(|c| c.contains(&server.node_id())) {
        return None;
    }
    let peers = membership
        .voter_ids()
        .filter(|id| *id != server.node_id())
        .filter_map(|id| {
            membership
                .get_node(&id)
                .map(|n| (id, server.server_addrs().resolve(id, &n.addr)))
        })
        .collect();
    Some((configs, peers))
}

/// Whether the granted voters (this server included) make a majority of every configuration.
fn majority(configs: &[BTreeSet<u64>], granted: &BTreeSet<u64>) -> bool {
    configs
        .iter()
        .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// Asks the other voters; whether a majority of every configuration would vote.
///
/// All voters are asked at once and the answer is known as soon as a majority said yes; a voter
/// that does not answer counts as no. The wait is bounded by `election_timeout_max` (at least 100
/// ms), so an unreachable voter cannot hold the next attempt back for longer than one election
/// timeout.
async fn pre_vote(server: &Server, configs: &[BTreeSet<u64>], peers: Peers) -> bool {
    let timing = Timing::of(server);
    // The term the election would have; the voter only logs it.
    let term = server.raft().metrics().borrow().current_term + 1;
    let req = PreVoteRequest {
        candidate: server.node_id(),
        term,
        last_log_id: server.last_log_id(),
    };
    let timeout = Duration::from_millis(timing.max.max(100));
    let mut asks = tokio::task::JoinSet::new();
    for (id, addr) in peers {
        let rpc = server.rpc().clone();
        let req = req.clone();
        asks.spawn(async move {
            let reply: Result<PreVoteReply, _> = rpc.call(&addr, PATH, &req, timeout).await;
            (id, reply)
        });
    }
    let mut granted = BTreeSet::from([server.node_id()]);
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((id, Ok(reply))) if reply.granted => {
                granted.insert(id);
            }
            Ok((id, Ok(reply))) => {
                debug!(peer = id, term = reply.term, "pre-vote refused");
            }
            Ok((id, Err(e))) => debug!(peer = id, error = %e, "pre-vote not answered"),
            // The asking task panicked or was cancelled: counts as no answer.
            Err(_) => {}
        }
        // Decided early: the remaining asks are dropped with the `JoinSet`, which aborts them.
        if majority(configs, &granted) {
            return true;
        }
    }
    majority(configs, &granted)
}

/// Runs `server`'s elections until `stop`: after openraft's silence (the lease plus a random
/// election timeout) without a leader, a pre-vote round, and openraft's election if a
/// majority would vote. openraft's own election timer must be off (`enable_elect = false`).
pub async fn run(server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    let timing = Timing::of(&server);
    // Polls the silence a few times per election timeout: the election starts at most a quarter of
    // the shortest timeout late, which is well within Raft's randomized spread.
    let tick = Duration::from_millis((timing.min / 4).max(10));
    let mut timeout = timing.random();
    // With other voters, a first attempt only after a random timeout too, so servers started
    // together do not all campaign at once. A single voter elects itself at once, as
    // openraft's own timer does.
    let first = Instant::now() + Duration::from_millis(timing.random());
    let mut not_before = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        // `not_before` spaces attempts by a fresh random timeout, so two servers that lost a round
        // together do not retry in step.
        if now < not_before || server.is_leader() {
            continue;
        }
        let Some((configs, peers)) = voters(&server) else {
            continue;
        };
        // The same silence openraft waits: its lease (`max`) plus a random timeout, counted from
        // the last contact with a leader.
        if !peers.is_empty() && (now < first || server.last_contact_ms() < timing.max + timeout) {
            continue;
        }
        if pre_vote(&server, &configs, peers).await {
            info!("no leader heard by a majority: starting an election");
            // An error here means the Raft node has stopped: no election can ever run again.
            if server.raft().trigger().elect().await.is_err() {
                return;
            }
        } else {
            debug!("pre-vote lost: a majority still hears from a leader");
        }
        timeout = timing.random();
        not_before = Instant::now() + Duration::from_millis(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Joint consensus: during a membership change a candidate needs a majority of the old and of
    // the new voters, as Raft's real vote does.
    #[test]
    fn a_majority_of_every_configuration_is_needed() {
        let three: BTreeSet<u64> = [1, 2, 3].into();
        let next: BTreeSet<u64> = [3, 4, 5].into();
        assert!(majority(std::slice::from_ref(&three), &[1, 2].into()));
        assert!(!majority(std::slice::from_ref(&three), &[1].into()));
        assert!(majority(&[[1].into()], &[1].into()), "a single voter");
        // A membership change: both the old and the new configuration.
        let joint = [three, next];
        assert!(!majority(&joint, &[1, 2].into()));
        assert!(majority(&joint, &[1, 3, 4].into()));
    }
}
