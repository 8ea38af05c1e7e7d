//! The agent's own services and checks: the source of truth for its node.
//!
//! Registrations through the agent API and config files land here first; anti-entropy
//! ([`sync`]) then makes the catalog match. Check runners report results here.
//!
//! The agent, not the catalog, owns these records, as in Consul: a registration is accepted
//! by the agent even while no server is reachable, and the catalog catches up later. The
//! struct is plain data behind the agent's mutex; every change bumps [`LocalState::version`],
//! which is what blocking agent endpoints and local alias checks wait on.

pub mod defs;
pub mod persist;
pub mod sync;

use std::collections::BTreeMap;
use tokio::time::Instant;

use cairn_catalog::model::{HealthCheck, HealthStatus, Service};

use defs::{CheckSpec, Source};

/// ID of the node maintenance check.
/// The maintenance IDs and texts are Consul's, so tools that look for (or filter out)
/// maintenance checks by ID keep working.
pub const NODE_MAINT_ID: &str = "_node_maintenance";
/// Prefix of service maintenance check IDs.
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
/// Default node maintenance reason.
pub const NODE_MAINT_DEFAULT: &str = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
/// Default service maintenance reason.
pub const SERVICE_MAINT_DEFAULT: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// A service registered on this agent.
#[derive(Clone, Debug)]
pub struct LocalService {
    /// The record as it should be in the catalog.
    pub service: Service,
    /// Where it came from.
    /// Config-file entries may run local scripts, and they are the ones a config reload
    /// removes when their definition is gone.
    pub source: Source,
    /// The tags come from a registration on this agent and have not reached the catalog yet.
    /// With `EnableTagOverride` the catalog's tags win over the agent's, but only over tags
    /// the agent already wrote: a re-registration replaces the definition, tags included, as
    /// in Consul (a database manager moving its `master` tag relies on it).
    pub tags_pending: bool,
}

/// A check registered on this agent.
#[derive(Clone, Debug)]
pub struct LocalCheck {
    /// The record as it should be in the catalog (status and output included).
    pub check: HealthCheck,
    /// How it runs.
    pub spec: Option<CheckSpec>,
    /// Where it came from.
    pub source: Source,
    /// Since when it has been critical.
    /// Reset on every status change, so that only an unbroken critical stretch counts towards
    /// `DeregisterCriticalServiceAfter`.
    pub critical_since: Option<Instant>,
    /// When its output was last written to the catalog (output-only changes are deferred).
    /// Without this, a check whose output changes on every run (a timestamp, a counter) would
    /// cost one catalog write per run on every agent.
    pub output_synced_at: Option<Instant>,
}

/// This node's identity as the catalog should record it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Node UUID.
    pub id: String,
    /// Advertised address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses (`lan`, `wan`, ...).
    /// Compared by anti-entropy along with the address and metadata: a change here is
    /// written to the catalog.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub meta: BTreeMap<String, String>,
}

/// Everything the agent owns locally.
#[derive(Clone, Debug, Default)]
pub struct LocalState {
    /// This node.
    pub node: NodeRecord,
    /// Services by ID.
    pub services: BTreeMap<String, LocalService>,
    /// Checks by ID.
    pub checks: BTreeMap<String, LocalCheck>,
    /// Bumped on every change (hash-based blocking on agent endpoints).
    /// Only real changes bump it: a result that repeats the recorded status and output does
    /// not, so nothing waiting on it wakes up for nothing.
    pub version: u64,
}

impl LocalState {
    /// A state for this node.
    pub fn new(node: NodeRecord) -> LocalState {
        LocalState {
            node,
            ..LocalState::default()
        }
    }

    /// Adds or replaces a service and its checks. With `replace_checks`, checks of the service
    /// that are not in `checks` are removed.
    /// The IDs of removed checks are returned so the caller can stop their runners. The
    /// maintenance check of the service is never removed this way: it is not part of a service
    /// definition, and re-registering a service must not take it out of maintenance.
    pub fn add_service(
        &mut self,
        service: Service,
        checks: Vec<(HealthCheck, CheckSpec)>,
        source: Source,
        replace_checks: bool,
    ) -> Vec<String> {
        let id = service.id.clone();
        let mut removed = Vec::new();
        if replace_checks {
            let keep: Vec<&str> = checks.iter().map(|(c, _)| c.check_id.as_str()).collect();
            let stale: Vec<String> = self
                .checks
                .iter()
                .filter(|(cid, c)| {
                    c.check.service_id == id
                        && !keep.contains(&cid.as_str())
                        && !cid.starts_with(SERVICE_MAINT_PREFIX)
                })
                .map(|(cid, _)| cid.clone())
                .collect();
            for cid in stale {
                self.checks.remove(&cid);
                removed.push(cid);
            }
        }
        // Checks bound to the service follow its name and tags.
        // The catalog stores them on each check (Consul's `ServiceName`/`ServiceTags`), and
        // anti-entropy would otherwise see every such check as different.
        for c in self.checks.values_mut() {
            if c.check.service_id == id {
                c.check.service_name = service.service.clone();
                c.check.service_tags = service.tags.clone();
            }
        }
        self.services.insert(
            id,
            LocalService {
                service,
                source,
                tags_pending: true,
            },
        );
        for (check, spec) in checks {
            self.add_check(check, Some(spec), source);
        }
        self.version += 1;
        removed
    }

    /// Removes a service and every check bound to it; returns the removed check IDs, or `None`
    /// when the service was unknown.
    /// A check cannot outlive its service, as in Consul's catalog.
    pub fn remove_service(&mut self, id: &str) -> Option<Vec<String>> {
        self.services.remove(id)?;
        let bound: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, c)| c.check.service_id == id)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in &bound {
            self.checks.remove(cid);
        }
        self.version += 1;
        Some(bound)
    }

    /// Adds or replaces a check. A re-registered check keeps its current status unless the
    /// definition sets one explicitly (handled by the caller through `check.status`).
    /// A check registered critical (the default status) starts its critical stretch now.
    pub fn add_check(&mut self, mut check: HealthCheck, spec: Option<CheckSpec>, source: Source) {
        if let Some(svc) = self.services.get(&check.service_id) {
            check.service_name = svc.service.service.clone();
            check.service_tags = svc.service.tags.clone();
        }
        let critical_since = (check.status == HealthStatus::Critical).then(Instant::now);
        let id = check.check_id.clone();
        self.checks.insert(
            id,
            LocalCheck {
                check,
                spec,
                source,
                critical_since,
                output_synced_at: None,
            },
        );
        self.version += 1;
    }

    /// Removes a check; false when unknown.
    pub fn remove_check(&mut self, id: &str) -> bool {
        let found = self.checks.remove(id).is_some();
        if found {
            self.version += 1;
        }
        found
    }

    /// Records a check result. Returns whether the status changed (`None`: unknown check).
    /// `Some(false)` both when nothing changed and when only the output did (then the version
    /// is bumped); `Some(true)` tells the caller to log the transition.
    pub fn update_check(&mut self, id: &str, status: HealthStatus, output: &str) -> Option<bool> {
        let c = self.checks.get_mut(id)?;
        let max = c
            .spec
            .as_ref()
            .map_or(defs::DEFAULT_OUTPUT_MAX, |s| s.output_max_size);
        // Truncated before comparing, so an output that only differs past the cap is no
        // change.
        let output = truncate_output(output, max);
        let changed = c.check.status != status;
        if !changed && c.check.output == output {
            return Some(false);
        }
        // A new status starts a new stretch; staying critical keeps the old start.
        if changed {
            c.critical_since = (status == HealthStatus::Critical).then(Instant::now);
        }
        c.check.status = status;
        c.check.output = output;
        self.version += 1;
        Some(changed)
    }

    /// Turns maintenance on or off for the node (`service` = None) or a service.
    /// Returns false when the service is unknown.
    ///
    /// Maintenance is a critical check, as in Consul: everything that filters on health
    /// (DNS, `?passing`, prepared queries) drops the node or service with no special case.
    /// It has no runner (`spec` is `None`), so only turning maintenance off clears it.
    pub fn set_maintenance(&mut self, service: Option<&str>, enable: bool, reason: &str) -> bool {
        let (id, name, notes, service_id) = match service {
            None => (
                NODE_MAINT_ID.to_string(),
                "Node Maintenance Mode",
                if reason.is_empty() {
                    NODE_MAINT_DEFAULT
                } else {
                    reason
                },
                String::new(),
            ),
            Some(sid) => {
                if !self.services.contains_key(sid) {
                    return false;
                }
                (
                    format!("{SERVICE_MAINT_PREFIX}{sid}"),
                    "Service Maintenance Mode",
                    if reason.is_empty() {
                        SERVICE_MAINT_DEFAULT
                    } else {
                        reason
                    },
                    sid.to_string(),
                )
            }
        };
        if enable {
            let check = HealthCheck {
                node: self.node.name.clone(),
                check_id: id.clone(),
                name: name.into(),
                status: HealthStatus::Critical,
                notes: notes.into(),
                service_id,
                check_type: "maintenance".into(),
                ..HealthCheck::default()
            };
            self.add_check(check, None, Source::Api);
        } else {
            self.remove_check(&id);
        }
        true
    }

    /// Services whose checks have been critical longer than their
    /// `DeregisterCriticalServiceAfter` (never less than `min`).
    ///
    /// `min` is the reaper's floor (Consul's is one minute), so a tiny value in a definition
    /// cannot deregister a service on its first failed run. Each service is listed once, even
    /// when several of its checks qualify.
    pub fn services_to_reap(&self, now: Instant, min: std::time::Duration) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.checks.values() {
            let (Some(spec), Some(since)) = (&c.spec, c.critical_since) else {
                continue;
            };
            let after = spec.deregister_critical_service_after;
            if after.is_zero() || c.check.service_id.is_empty() {
                continue;
            }
            if now.duration_since(since) >= after.max(min) && !out.contains(&c.check.service_id) {
                out.push(c.check.service_id.clone());
            }
        }
        out
    }
}

/// Caps output at `max` bytes on a character boundary, as Consul's OutputMaxSize does.
///
/// The ` ...` marker is added beyond the cap, so a cut output is at most `max + 4` bytes
/// and a reader can tell it was cut. Cutting on a character boundary keeps the output
/// valid UTF-8 for the JSON it ends up in.
pub fn truncate_output(output: &str, max: usize) -> String {
    if output.len() <= max {
        return output.to_string();
    }
    let mut end = max;
    while end > 0 && !output.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = output[..end].to_string();
    s.push_str(" ...");
    s
}
