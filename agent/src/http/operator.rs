//! `/v1/operator/*`: Raft configuration, autopilot (health, state, settings) and usage, as the
//! servers see them.
//!
//! Two sources meet here: the Raft view of a server (`Backend::status`: leader, voters, last
//! index) and this agent's gossip view (which members are alive). The autopilot health
//! reported here is their combination, computed on each request. Fields of Consul's shapes
//! that Cairn does not track (per-server last contact and term, stability times, the
//! Enterprise parts) are present with neutral values, so the shapes are complete for clients
//! that expect every field.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_catalog::duration::format_go_duration;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, Req, check_dc, json_response};
use crate::local::defs::{RawDuration, dur};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(raft_configuration))
        .route("/v1/operator/raft/peer", axum::routing::delete(remove_peer))
        .route(
            "/v1/operator/raft/transfer-leader",
            axum::routing::post(transfer_leader),
        )
        .route("/v1/operator/autopilot/health", get(autopilot_health))
        .route("/v1/operator/autopilot/state", get(autopilot_state))
        .route("/v1/operator/usage", get(usage))
        .route(
            "/v1/operator/autopilot/configuration",
            get(autopilot_get).put(autopilot_set),
        )
}

/// Autopilot's settings: the replicated ones, or this agent's configuration before the first
/// leader wrote them. A read like any other (blocking, consistency, metadata headers).
async fn autopilot_get(
    State(a): State<AppState>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    let read = crate::server::query::Read::Autopilot;
    let (meta, answer) = super::run_read(&a, read.clone(), &o).await?;
    // Until a leader has recorded its `autopilot {}` block, the settings that will apply are
    // this agent's configured ones, so those are shown rather than `null`.
    let value = match &answer.reply {
        crate::api::Reply::Autopilot(None) => {
            serde_json::to_value(a.config().autopilot.to_model()).unwrap_or_default()
        }
        reply => super::render::render(&read, reply),
    };
    let mut r = json_response(&value, o.pretty);
    super::set_meta(r.headers_mut(), &meta);
    Ok(r)
}

/// Autopilot's settings as clients send them (durations as Go strings or nanoseconds).
/// Every field is optional: a missing one takes its zero value (or, for the two durations,
/// the default). `cairn operator autopilot set-config` sends the whole object: it reads the
/// settings, changes what its flags say and writes them back with `?cas`.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AutopilotBody {
    cleanup_dead_servers: bool,
    last_contact_threshold: Option<RawDuration>,
    max_trailing_logs: u64,
    min_quorum: u32,
    server_stabilization_time: Option<RawDuration>,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
}

/// Replaces autopilot's settings (`?cas=<ModifyIndex>` for check-and-set); `true`/`false`.
/// The indexes are set by the server when the write is applied.
async fn autopilot_set(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: AutopilotBody = crate::api::decode::decode(&body)?;
    let defaults = crate::config::Autopilot::default();
    // Absent (or zero) durations take the defaults.
    let duration = |field: &str, v: &Option<RawDuration>, default: Duration| {
        dur(field, v).map(|d| format_go_duration(if d.is_zero() { default } else { d }))
    };
    let config = cairn_catalog::model::AutopilotConfig {
        cleanup_dead_servers: b.cleanup_dead_servers,
        last_contact_threshold: duration(
            "LastContactThreshold",
            &b.last_contact_threshold,
            defaults.last_contact_threshold,
        )?,
        max_trailing_logs: b.max_trailing_logs,
        min_quorum: b.min_quorum,
        server_stabilization_time: duration(
            "ServerStabilizationTime",
            &b.server_stabilization_time,
            defaults.server_stabilization_time,
        )?,
        redundancy_zone_tag: b.redundancy_zone_tag,
        disable_upgrade_migration: b.disable_upgrade_migration,
        upgrade_version_tag: b.upgrade_version_tag,
        create_index: 0,
        modify_index: 0,
    };
    // Stricter than `Params::u64`: an empty `?cas=` is a 400 here, not "no CAS".
    let cas = match p.get("cas") {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid cas index: {c}")))?,
        ),
    };
    let w = crate::api::Write::new(crate::api::WriteOp::AutopilotSet { config, cas })
        .in_dc(o.dc.as_deref())
        .with_token(super::token(&headers, &p));
    let (_, written) = a.backend.write(w).await?;
    let ok = matches!(written, crate::api::Written::Bool(true));
    Ok(json_response(&ok, o.pretty))
}

/// Service, instance and node counts of this datacenter, with the query metadata in the body
/// as Consul's answer has it.
async fn usage(State(a): State<AppState>, Req { p, o, .. }: Req) -> Result<Response, ApiError> {
    let read = crate::server::query::Read::Usage;
    let (meta, answer) = super::run_read(&a, read.clone(), &o).await?;
    let mut per_dc = serde_json::Map::new();
    // Keyed by the datacenter that answered (`?dc=` runs the read there).
    let dc =
        o.dc.clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| a.backend.datacenter().to_string());
    per_dc.insert(dc.clone(), super::render::render(&read, &answer.reply));
    // `?global`: every known datacenter's counts too (`cairn operator usage instances
    // -all-datacenters`); one that does not answer is left out, as Consul leaves it out.
    if p.has("global") {
        for other in a.backend.datacenters().await? {
            if other.eq_ignore_ascii_case(&dc) {
                continue;
            }
            let mut q = o.clone();
            q.dc = Some(other.clone());
            q.read.min_index = 0;
            match super::run_read(&a, read.clone(), &q).await {
                Ok((_, answer)) => {
                    per_dc.insert(other, super::render::render(&read, &answer.reply));
                }
                Err(e) => tracing::debug!(dc = %other, error = %e, "usage: datacenter skipped"),
            }
        }
    }
    // `Backend` is Consul's query-backend enum (0: blocking query); no ACLs, so nothing is
    // ever filtered out.
    let body = json!({
        "Usage": per_dc,
        "Index": meta.index,
        "LastContact": meta.last_contact_ms,
        "KnownLeader": meta.known_leader,
        // The mode asked for; the mode used is in `X-Consul-Effective-Consistency`.
        "ConsistencyLevel": match o.read.consistency {
            crate::api::Consistency::Stale => "stale",
            crate::api::Consistency::Consistent => "consistent",
            crate::api::Consistency::Leader => "leader",
        },
        "NotModified": false,
        "Backend": 0,
        "ResultsFilteredByACLs": false,
    });
    let mut r = json_response(&body, o.pretty);
    super::set_meta(r.headers_mut(), &meta);
    Ok(r)
}

/// `GET /v1/operator/raft/configuration`: the Raft servers with their roles and the index
/// of the configuration. `ProtocolVersion` is Raft protocol 3, what current Consul servers
/// report.
async fn raft_configuration(
    State(a): State<AppState>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    let st = a.backend.status_in(o.dc.as_deref()).await?;
    let servers: Vec<_> = st
        .servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id,
                "Node": s.node,
                "Address": s.address,
                "Leader": s.leader,
                "Voter": s.voter,
                "ProtocolVersion": "3",
            })
        })
        .collect();
    Ok(json_response(
        // The configuration's own log index, as Consul's (not the last index).
        &json!({"Servers": servers, "Index": st.config_index}),
        o.pretty,
    ))
}

/// Autopilot's view of the servers: per server (Raft member, gossip status), whether the
/// cluster is healthy and how many failures it tolerates.
struct AutopilotView {
    /// The Raft view: servers, leader, last index.
    status: crate::rpc::ServerStatus,
    /// Node names gossip sees alive.
    alive: Vec<String>,
    /// A quorum of voters is alive and a leader is known.
    healthy: bool,
    /// How many more alive voters may fail before the quorum is lost.
    tolerance: usize,
}

/// Builds the view. A voter counts as healthy when gossip sees its node alive;
/// `LastContactThreshold` is stored with the settings but not applied here.
async fn autopilot_view(a: &AppState) -> Result<AutopilotView, ApiError> {
    let status = a.backend.status().await?;
    let alive: Vec<String> = a
        .gossip
        .members()
        .iter()
        .filter(|m| m.status == cairn_gossip::MemberStatus::Alive)
        .map(|m| m.name.clone())
        .collect();
    // Raft's arithmetic: a quorum is a majority of the voters, non-voters count for nothing.
    let voters = status.servers.iter().filter(|s| s.voter).count();
    let healthy_voters = status
        .servers
        .iter()
        .filter(|s| s.voter && alive.contains(&s.node))
        .count();
    let quorum = voters / 2 + 1;
    Ok(AutopilotView {
        healthy: healthy_voters >= quorum && status.leader.is_some(),
        tolerance: healthy_voters.saturating_sub(quorum),
        status,
        alive,
    })
}

/// Since when each server has been in its current health, as this agent saw it: Consul's
/// `StableSince`. Keyed by (this agent, server) so that agents sharing a process (tests) keep
/// their own views; updated whenever autopilot's view is built.
fn stable_since(agent: &str, server: &str, healthy: bool) -> String {
    type Seen = std::collections::HashMap<(String, String), (bool, chrono::DateTime<chrono::Utc>)>;
    static SEEN: std::sync::OnceLock<std::sync::Mutex<Seen>> = std::sync::OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let now = chrono::Utc::now();
    let entry = seen
        .entry((agent.to_string(), server.to_string()))
        .or_insert((healthy, now));
    if entry.0 != healthy {
        *entry = (healthy, now);
    }
    // Go's `time.Time` JSON: RFC 3339 with nanoseconds.
    entry.1.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// What health and state report alike for one server. `Version` is the Consul API level (a
/// server's Cairn version is not known remotely); the untracked fields are zero or empty.
fn server_json(v: &AutopilotView, s: &crate::rpc::RaftServer) -> serde_json::Value {
    json!({
        "ID": s.id,
        "Name": s.node,
        "Address": s.address,
        "Version": crate::CONSUL_COMPAT_VERSION,
        "LastContact": "0s",
        "LastTerm": 0,
        "LastIndex": v.status.last_index,
        "Healthy": v.alive.contains(&s.node),
        "StableSince": stable_since(&v.status.node, &s.node, v.alive.contains(&s.node)),
    })
}

/// `GET /v1/operator/autopilot/health`: 200 when healthy, 429 when not, as Consul, so that a
/// probe can act on the code alone; the body is the same either way.
async fn autopilot_health(
    State(a): State<AppState>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    check_dc(&a, o.dc.as_deref())?;
    let v = autopilot_view(&a).await?;
    let servers: Vec<_> = v
        .status
        .servers
        .iter()
        .map(|s| {
            let mut j = server_json(&v, s);
            // Gossip's view only: a server that left or that gossip never saw reads as failed.
            let serf = if v.alive.contains(&s.node) {
                "alive"
            } else {
                "failed"
            };
            j["SerfStatus"] = json!(serf);
            j["Leader"] = json!(s.leader);
            j["Voter"] = json!(s.voter);
            j
        })
        .collect();
    let mut resp = json_response(
        &json!({"Healthy": v.healthy, "FailureTolerance": v.tolerance, "Servers": servers}),
        o.pretty,
    );
    if !v.healthy {
        *resp.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(resp)
}

/// `GET /v1/operator/autopilot/state`: the same view keyed by server ID, with each server's
/// role, the leader and the voters.
async fn autopilot_state(
    State(a): State<AppState>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    check_dc(&a, o.dc.as_deref())?;
    let v = autopilot_view(&a).await?;
    let mut servers = serde_json::Map::new();
    // Consul's `Status` values: the leader, then voters, then non-voters (Raft learners).
    for s in &v.status.servers {
        let role = if s.leader {
            "leader"
        } else if s.voter {
            "voter"
        } else {
            "non-voter"
        };
        let mut j = server_json(&v, s);
        let node = if v.alive.contains(&s.node) {
            "alive"
        } else {
            "failed"
        };
        // Read replicas are an Enterprise feature: none here.
        j["NodeStatus"] = json!(node);
        j["ReadReplica"] = json!(false);
        j["Status"] = json!(role);
        j["Meta"] = json!({});
        j["NodeType"] = json!(if s.voter { "voter" } else { "non-voter" });
        servers.insert(s.id.clone(), j);
    }
    let leader = v
        .status
        .servers
        .iter()
        .find(|s| s.leader)
        .map(|s| s.id.clone())
        .unwrap_or_default();
    let voters: Vec<&str> = v
        .status
        .servers
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.as_str())
        .collect();
    // Without redundancy zones, the optimistic tolerance is the plain one; the Enterprise
    // parts (read replicas, zones, upgrades) are `null`.
    Ok(json_response(
        &json!({
            "Healthy": v.healthy,
            "FailureTolerance": v.tolerance,
            "OptimisticFailureTolerance": v.tolerance,
            "Servers": servers,
            "Leader": leader,
            "Voters": voters,
            "ReadReplicas": null,
            "RedundancyZones": null,
            "Upgrade": null,
        }),
        o.pretty,
    ))
}

/// `?id` (server ID) and `?address` (`ip:port` of its Raft RPC), as Consul's operator
/// endpoints take them.
fn peer_request(p: &super::params::Params) -> crate::rpc::PeerRequest {
    crate::rpc::PeerRequest {
        id: p.get("id").unwrap_or_default().to_string(),
        address: p.get("address").unwrap_or_default().to_string(),
    }
}

/// `DELETE /v1/operator/raft/peer`: removes a server from the Raft configuration, named by
/// exactly one of `?id` or `?address` (Consul's 400 text otherwise). For a server that is
/// gone for good; a live one would rejoin.
async fn remove_peer(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    check_dc(&a, o.dc.as_deref())?;
    let req = peer_request(&p);
    // Both or neither.
    if req.id.is_empty() == req.address.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ));
    }
    a.backend.remove_peer(&req).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `POST /v1/operator/raft/transfer-leader`: moves leadership to `?id`, or to a voter the
/// leader picks; answers Consul's `{"Success": true}`.
async fn transfer_leader(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    check_dc(&a, o.dc.as_deref())?;
    a.backend.transfer_leader(&peer_request(&p)).await?;
    Ok(json_response(&json!({"Success": true}), o.pretty))
}

#[cfg(test)]
mod null_tests {
    use super::*;

    #[test]
    fn null_members_are_absent() {
        crate::api::decode::assert_null_is_absent::<AutopilotBody>(serde_json::json!({
            "CleanupDeadServers": true, "LastContactThreshold": "200ms", "MaxTrailingLogs": 250,
            "MinQuorum": 3, "ServerStabilizationTime": "10s", "RedundancyZoneTag": "az",
            "DisableUpgradeMigration": true, "UpgradeVersionTag": "v"
        }));
    }
}
