//! Anti-entropy: the pure diff between what the agent owns and what the catalog holds for its
//! node, as the catalog writes that repair it.
//!
//! The agent is the source of truth for its node: catalog services and checks it does not know
//! are removed, missing or different ones re-registered, the node record kept current. The
//! leader owns `serfHealth` and the servers' `consul` service, so they are left alone. A
//! service with `EnableTagOverride` keeps the catalog's tags (the agent adopts them).
//! Output-only changes of a check are deferred until `output_interval` has passed since its
//! output was last written, so a check whose output changes every run does not flood servers.
//!
//! The diff is a pure function (local state and catalog view in, writes out) so that every
//! rule here is tested without servers; the agent's sync loop reads the catalog, applies the
//! plan's writes in order, then records what was written.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use cairn_catalog::command::{DeregisterRequest, RegisterRequest};
use cairn_catalog::model::{HealthCheck, Node, Service};

use super::LocalState;
use crate::api::WriteOp;
use crate::api::{CONSUL_SERVICE, SERF_CHECK_ID};

/// What the catalog holds for this node.
#[derive(Clone, Debug, Default)]
pub struct CatalogView {
    /// The node record.
    pub node: Option<Arc<Node>>,
    /// Its services.
    pub services: Vec<Arc<Service>>,
    /// Its checks.
    pub checks: Vec<Arc<HealthCheck>>,
}

/// The repair plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Catalog writes to make, in order.
    pub commands: Vec<WriteOp>,
    /// Services whose catalog tags the agent adopts (EnableTagOverride).
    /// The agent stores them locally so that later syncs compare equal instead of fighting the
    /// operator who changed the tags in the catalog.
    pub adopt_tags: Vec<(String, Vec<String>)>,
    /// Services whose registered tags this plan writes over the catalog's (EnableTagOverride
    /// after a re-registration), with the tags written: once the writes succeed the agent
    /// clears `tags_pending` if its tags are still these.
    pub tags_written: Vec<(String, Vec<String>)>,
    /// Checks whose output is written by this plan.
    /// The agent stamps their `output_synced_at` once the writes succeeded, starting their
    /// deferral window.
    pub output_written: Vec<String>,
}

/// Whether the catalog's service matches the local one. Raft indexes are the catalog's
/// own and never differ meaningfully; with `EnableTagOverride` the tags belong to the
/// catalog and are not compared either.
fn same_service(local: &Service, remote: &Service) -> bool {
    let mut a = local.clone();
    a.create_index = remote.create_index;
    a.modify_index = remote.modify_index;
    if local.enable_tag_override {
        a.tags = remote.tags.clone();
    }
    a == *remote
}

/// Compares checks; returns (equal, equal except output).
fn same_check(local: &HealthCheck, remote: &HealthCheck) -> (bool, bool) {
    let mut a = local.clone();
    a.create_index = remote.create_index;
    a.modify_index = remote.modify_index;
    // Copies of the service's name and tags that the catalog keeps on each check; the
    // service comparison covers them.
    a.service_name = remote.service_name.clone();
    a.service_tags = remote.service_tags.clone();
    if a == *remote {
        return (true, true);
    }
    a.output = remote.output.clone();
    (false, a == *remote)
}

/// Computes the catalog writes that make the catalog match the local state.
pub fn diff(
    local: &LocalState,
    catalog: &CatalogView,
    now: Instant,
    output_interval: Duration,
) -> Plan {
    let mut plan = Plan::default();
    let n = &local.node;
    let base = RegisterRequest {
        id: n.id.clone(),
        node: n.name.clone(),
        address: n.address.clone(),
        datacenter: n.datacenter.clone(),
        tagged_addresses: n.tagged_addresses.clone(),
        node_meta: n.meta.clone(),
        // Service and check registrations leave the node record alone: rewriting it would bump
        // its index (waking every watcher of the node) for no change.
        skip_node_update: true,
        ..RegisterRequest::default()
    };
    // An agent without a node ID accepts whatever ID the catalog has rather than
    // rewriting the node on every sync.
    let node_ok = catalog.node.as_ref().is_some_and(|c| {
        (c.id == n.id || n.id.is_empty())
            && c.address == n.address
            && c.tagged_addresses == n.tagged_addresses
            && c.meta == n.meta
    });
    if !node_ok {
        // First in the plan: services and checks are registered on an existing node.
        plan.commands.push(WriteOp::Register(RegisterRequest {
            skip_node_update: false,
            ..base.clone()
        }));
    }

    // Which local checks need writing, grouped by service ID ("" for node checks).
    let mut dirty_checks: Vec<&HealthCheck> = Vec::new();
    for (id, lc) in &local.checks {
        let remote = catalog.checks.iter().find(|c| c.check_id == *id);
        let write = match remote {
            None => true,
            Some(r) => match same_check(&lc.check, r) {
                (true, _) => false,
                (false, false) => true,
                // Only the output differs: written once the deferral window has passed, or
                // at once if it was never written.
                (false, true) => lc
                    .output_synced_at
                    .is_none_or(|t| now.duration_since(t) >= output_interval),
            },
        };
        if write {
            dirty_checks.push(&lc.check);
        }
    }

    for (id, ls) in &local.services {
        let remote = catalog.services.iter().find(|s| s.id == *id);
        let mut svc = ls.service.clone();
        let mut svc_dirty = remote.is_none_or(|r| !same_service(&ls.service, r));
        if let Some(r) = remote
            && svc.enable_tag_override
            && r.tags != svc.tags
        {
            if ls.tags_pending {
                // A registration on this agent set these tags: they replace the catalog's.
                svc_dirty = true;
            } else {
                plan.adopt_tags.push((id.clone(), r.tags.clone()));
                svc.tags = r.tags.clone();
            }
        }
        if ls.tags_pending && svc_dirty {
            plan.tags_written.push((id.clone(), svc.tags.clone()));
        }
        // A service goes out with its dirty checks in one registration, one Raft entry,
        // so the catalog never shows the service without its checks.
        let checks: Vec<HealthCheck> = dirty_checks
            .iter()
            .filter(|c| c.service_id == *id)
            .map(|c| HealthCheck::clone(c))
            .collect();
        if svc_dirty || !checks.is_empty() {
            plan.output_written
                .extend(checks.iter().map(|c| c.check_id.clone()));
            plan.commands.push(WriteOp::Register(RegisterRequest {
                service: Some(svc),
                checks,
                ..base.clone()
            }));
        }
    }

    // Node-level checks, and checks of services the agent does not have (their registration
    // would be refused; they are dropped below as unknown).
    let node_checks: Vec<HealthCheck> = dirty_checks
        .iter()
        .filter(|c| c.service_id.is_empty())
        .map(|c| HealthCheck::clone(c))
        .collect();
    if !node_checks.is_empty() {
        plan.output_written
            .extend(node_checks.iter().map(|c| c.check_id.clone()));
        plan.commands.push(WriteOp::Register(RegisterRequest {
            checks: node_checks,
            ..base.clone()
        }));
    }

    // What the catalog has and the agent does not is removed, except the leader's own
    // entries: the `consul` service of servers here, `serfHealth` below.
    let mut gone_services = BTreeSet::new();
    for r in &catalog.services {
        if r.id == CONSUL_SERVICE || local.services.contains_key(&r.id) {
            continue;
        }
        gone_services.insert(r.id.clone());
        plan.commands.push(WriteOp::Deregister(DeregisterRequest {
            node: n.name.clone(),
            service_id: r.id.clone(),
            ..DeregisterRequest::default()
        }));
    }
    for r in &catalog.checks {
        if r.check_id == SERF_CHECK_ID
            || local.checks.contains_key(&r.check_id)
            // Deregistering a service removes its checks in the catalog; no separate write.
            || gone_services.contains(&r.service_id)
        {
            continue;
        }
        plan.commands.push(WriteOp::Deregister(DeregisterRequest {
            node: n.name.clone(),
            check_id: r.check_id.clone(),
            ..DeregisterRequest::default()
        }));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::defs::Source;
    use crate::local::{LocalCheck, NodeRecord};
    use cairn_catalog::model::HealthStatus;

    /// The agent's node, as the catalog would record it.
    fn node() -> NodeRecord {
        NodeRecord {
            name: "n1".into(),
            id: "11111111-2222-3333-4444-555555555555".into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            ..NodeRecord::default()
        }
    }

    fn svc(id: &str, tags: &[&str], override_tags: bool) -> Service {
        Service {
            id: id.into(),
            service: "web".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            enable_tag_override: override_tags,
            ..Service::default()
        }
    }

    fn check(id: &str, service: &str, status: HealthStatus, output: &str) -> HealthCheck {
        HealthCheck {
            node: "n1".into(),
            check_id: id.into(),
            name: id.into(),
            status,
            output: output.into(),
            service_id: service.into(),
            ..HealthCheck::default()
        }
    }

    /// A local state with these services and checks, none of them ever synced.
    fn local_with(services: Vec<Service>, checks: Vec<HealthCheck>) -> LocalState {
        let mut l = LocalState::new(node());
        for s in services {
            l.add_service(s, vec![], Source::Api, false);
        }
        for c in checks {
            l.checks.insert(
                c.check_id.clone(),
                LocalCheck {
                    check: c,
                    spec: None,
                    source: Source::Api,
                    critical_since: None,
                    output_synced_at: None,
                },
            );
        }
        l
    }

    fn catalog_node() -> Arc<Node> {
        let n = node();
        Arc::new(Node {
            id: n.id,
            node: n.name,
            address: n.address,
            datacenter: n.datacenter,
            ..Node::default()
        })
    }

    /// The output deferral window used by the tests.
    const T: Duration = Duration::from_secs(300);

    /// A node missing from the catalog is registered first, then each service with its checks.
    #[test]
    fn empty_catalog_gets_node_services_and_checks() {
        let local = local_with(
            vec![svc("web1", &["a"], false)],
            vec![check("service:web1", "web1", HealthStatus::Passing, "")],
        );
        let plan = diff(&local, &CatalogView::default(), Instant::now(), T);
        assert_eq!(plan.commands.len(), 2);
        let WriteOp::Register(req) = &plan.commands[1] else {
            panic!("register")
        };
        assert_eq!(req.service.as_ref().map(|s| s.id.as_str()), Some("web1"));
        assert_eq!(req.checks.len(), 1);
    }

    /// Catalog-assigned indexes and the leader's `serfHealth` do not make a difference.
    #[test]
    fn in_sync_means_no_commands() {
        let local = local_with(vec![svc("web1", &["a"], false)], vec![]);
        let catalog = CatalogView {
            node: Some(catalog_node()),
            services: vec![Arc::new(Service {
                create_index: 5,
                modify_index: 9,
                ..svc("web1", &["a"], false)
            })],
            checks: vec![Arc::new(check(
                SERF_CHECK_ID,
                "",
                HealthStatus::Passing,
                "",
            ))],
        };
        assert_eq!(diff(&local, &catalog, Instant::now(), T), Plan::default());
    }

    /// Entries the agent does not own are removed, except the `consul` service and
    /// `serfHealth`; the check of a removed service goes with it.
    #[test]
    fn unknown_entries_are_removed_but_leader_entries_kept() {
        let local = local_with(vec![], vec![]);
        let catalog = CatalogView {
            node: Some(catalog_node()),
            services: vec![
                Arc::new(svc("rogue", &[], false)),
                Arc::new(Service {
                    id: CONSUL_SERVICE.into(),
                    service: CONSUL_SERVICE.into(),
                    ..Service::default()
                }),
            ],
            checks: vec![
                Arc::new(check(SERF_CHECK_ID, "", HealthStatus::Passing, "")),
                Arc::new(check("rogue-check", "", HealthStatus::Passing, "")),
                Arc::new(check("service:rogue", "rogue", HealthStatus::Passing, "")),
            ],
        };
        let plan = diff(&local, &catalog, Instant::now(), T);
        let removed: Vec<(String, String)> = plan
            .commands
            .iter()
            .filter_map(|c| match c {
                WriteOp::Deregister(req) => Some((req.service_id.clone(), req.check_id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            removed,
            vec![
                ("rogue".to_string(), String::new()),
                (String::new(), "rogue-check".to_string())
            ]
        );
    }

    /// With EnableTagOverride the catalog's tags are adopted, without a write, once the
    /// agent's own registration reached the catalog.
    #[test]
    fn tag_override_adopts_catalog_tags() {
        let mut local = local_with(vec![svc("web1", &["a"], true)], vec![]);
        let catalog = CatalogView {
            node: Some(catalog_node()),
            services: vec![Arc::new(svc("web1", &["b"], true))],
            checks: vec![],
        };
        // Just registered: the registration's tags replace the catalog's.
        let plan = diff(&local, &catalog, Instant::now(), T);
        assert_eq!(plan.commands.len(), 1, "a re-registration writes its tags");
        assert!(plan.adopt_tags.is_empty());
        assert_eq!(
            plan.tags_written,
            vec![("web1".to_string(), vec!["a".to_string()])]
        );
        // Written: tags changed in the catalog afterwards are the catalog's to keep.
        if let Some(s) = local.services.get_mut("web1") {
            s.tags_pending = false;
        }
        let plan = diff(&local, &catalog, Instant::now(), T);
        assert!(plan.commands.is_empty());
        assert_eq!(
            plan.adopt_tags,
            vec![("web1".to_string(), vec!["b".to_string()])]
        );
        let local = local_with(vec![svc("web1", &["a"], false)], vec![]);
        let plan = diff(&local, &catalog, Instant::now(), T);
        assert_eq!(
            plan.commands.len(),
            1,
            "without override the agent's tags win"
        );
    }

    /// An output change waits for the window; a status change does not.
    #[test]
    fn output_only_changes_are_deferred() {
        let mut local = local_with(
            vec![],
            vec![check("c", "", HealthStatus::Passing, "new output")],
        );
        let now = Instant::now();
        if let Some(c) = local.checks.get_mut("c") {
            c.output_synced_at = Some(now);
        }
        let catalog = CatalogView {
            node: Some(catalog_node()),
            services: vec![],
            checks: vec![Arc::new(check(
                "c",
                "",
                HealthStatus::Passing,
                "old output",
            ))],
        };
        assert!(diff(&local, &catalog, now, T).commands.is_empty());
        assert_eq!(diff(&local, &catalog, now + T, T).commands.len(), 1);
        // A status change is written at once.
        let catalog = CatalogView {
            checks: vec![Arc::new(check(
                "c",
                "",
                HealthStatus::Critical,
                "old output",
            ))],
            ..catalog
        };
        assert_eq!(diff(&local, &catalog, now, T).commands.len(), 1);
    }
}
