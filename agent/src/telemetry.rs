//! The catalogue of what the agent reports at `/v1/agent/metrics`: its own counters, the server's
//! apply counters, gossip statistics and gauges derived from the local and replicated state,
//! read at the moment of the request. The registry and the renderings are in `metrics`.
//!
//! Gauges are computed when asked for rather than updated on every change: the write path carries
//! no metrics bookkeeping, and a scrape pays for the counting instead.

use crate::metrics::{Sample, rss_bytes};

/// Every metric of the agent, read now: its own counters, the server's apply counters, gossip
/// statistics and gauges derived from the local and replicated state.
pub fn collect(a: &crate::agent::Agent) -> Vec<Sample> {
    // A client agent holds no replicated state: its catalog gauges read from an empty state (0)
    // rather than asking a server for each metrics request.
    let st = a.server.as_ref().map_or_else(
        || std::sync::Arc::new(cairn_catalog::State::new()),
        |s| s.state(),
    );
    // Process-wide counters: zeros on a client agent.
    let (applied, refused) = crate::server::metrics::applied();
    let gs = a.gossip.stats();
    let m = &a.metrics;
    // One lock for the three local counts, so they describe the same moment.
    let (local_services, local_checks, critical) = {
        let l = a.local.lock().unwrap_or_else(|p| p.into_inner());
        (
            l.services.len(),
            l.checks.len(),
            l.checks
                .values()
                .filter(|c| c.check.status == cairn_catalog::model::HealthStatus::Critical)
                .count(),
        )
    };
    let g = |name, help, value: f64| Sample {
        name,
        help,
        counter: false,
        value,
    };
    let c = |name, help, value: u64| Sample {
        name,
        help,
        counter: true,
        value: value as f64,
    };
    let mut samples = vec![
        c(
            "http.requests",
            "HTTP API requests served.",
            m.http_requests.get(),
        ),
        c(
            "http.client_errors",
            "HTTP API requests answered with a 4xx.",
            m.http_client_errors.get(),
        ),
        c(
            "http.server_errors",
            "HTTP API requests answered with a 5xx.",
            m.http_server_errors.get(),
        ),
        c(
            "http.blocking_queries",
            "Blocking queries started.",
            m.blocking_queries.get(),
        ),
        c(
            "raft.apply",
            "Commands applied to the state machine.",
            applied,
        ),
        c(
            "raft.apply_refused",
            "Commands refused by the state machine.",
            refused,
        ),
        c(
            "raft.apply_skipped_unknown",
            "Commands of types this version does not know, skipped as their writer allowed.",
            crate::server::metrics::skipped_unknown(),
        ),
        c(
            "agent.local_changes",
            "Changes to the agent's local services and checks.",
            m.local_changes.get(),
        ),
        c(
            "agent.syncs",
            "Anti-entropy passes that wrote to the catalog.",
            m.syncs.get(),
        ),
        g(
            "raft.last_index",
            "Last applied log index.",
            st.last_index() as f64,
        ),
        g(
            "catalog.nodes",
            "Nodes in the catalog.",
            st.nodes().1.len() as f64,
        ),
        g(
            "catalog.services",
            "Service names in the catalog.",
            st.service_names().1.len() as f64,
        ),
        g("kvs.entries", "KV entries.", st.kv_len() as f64),
        g(
            "session_ttl.active",
            "Sessions with an armed TTL timer.",
            a.session_timers.len() as f64,
        ),
        g(
            "agent.services",
            "Services registered on this agent.",
            local_services as f64,
        ),
        g(
            "agent.checks",
            "Checks registered on this agent.",
            local_checks as f64,
        ),
        g(
            "agent.checks_critical",
            "Critical checks on this agent.",
            critical as f64,
        ),
        g(
            "http.watch_targets",
            "Distinct targets of blocked readers.",
            a.hub.targets() as f64,
        ),
        g(
            "runtime.rss_bytes",
            "Resident memory of the agent process.",
            rss_bytes() as f64,
        ),
        g(
            "runtime.uptime_seconds",
            "Seconds since the agent started.",
            a.started.elapsed().as_secs_f64(),
        ),
        c(
            "serf.packets_received",
            "Gossip packets received.",
            gs.packets_received,
        ),
        c("serf.packets_sent", "Gossip packets sent.", gs.packets_sent),
        c(
            "serf.bytes_received",
            "Gossip bytes received.",
            gs.bytes_received,
        ),
        c("serf.bytes_sent", "Gossip bytes sent.", gs.bytes_sent),
        c(
            "serf.dropped_malformed",
            "Gossip packets dropped: malformed.",
            gs.dropped_malformed,
        ),
        c(
            "serf.dropped_truncated",
            "Gossip packets dropped: truncated.",
            gs.dropped_truncated,
        ),
        c(
            "serf.dropped_oversized",
            "Gossip packets dropped: oversized.",
            gs.dropped_oversized,
        ),
        c(
            "serf.dropped_wrong_key",
            "Gossip packets dropped: no key could decrypt them.",
            gs.dropped_wrong_key,
        ),
        c(
            "serf.dropped_encryption_mismatch",
            "Gossip packets dropped: encrypted and plaintext peers mixed.",
            gs.dropped_encryption_mismatch,
        ),
        c(
            "serf.dropped_label",
            "Gossip packets dropped: wrong pool label.",
            gs.dropped_label,
        ),
        c(
            "serf.dropped_replayed",
            "Gossip packets dropped: replayed.",
            gs.dropped_replayed,
        ),
        c(
            "serf.push_pulls",
            "Full state exchanges with another member.",
            gs.push_pulls,
        ),
        c(
            "serf.push_pull_failures",
            "Failed full state exchanges.",
            gs.push_pull_failures,
        ),
        g(
            "serf.members",
            "Members known to the LAN pool.",
            a.gossip.members().len() as f64,
        ),
    ];
    // Consul's `consul.agent.tls.cert.expiry`: seconds until the soonest of the agent's own
    // certificates expires (only when it has one), for alerts well before it does.
    if let Some(v) = a.tls.expiry() {
        samples.push(g(
            "agent.tls.cert.expiry",
            "Seconds until the agent's TLS certificate expires.",
            v.seconds_left() as f64,
        ));
    }
    samples
}
