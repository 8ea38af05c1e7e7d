//! Nodes, services and checks: registration, deregistration and the catalog/health reads.
//!
//! Two rules shape every write here:
//!
//! - Writing a record identical to the stored one changes nothing, no index included: a
//!   client re-registering what is already there (a retry, an agent restarting) wakes no
//!   blocked reader and moves no `ModifyIndex`.
//! - Every change that alters an answer moves that answer's watch index. A service's answers
//!   embed its node and its node's checks, so a change to either moves the service's index
//!   too. Servers cache answers by index on that promise.
//!
//! Services and checks are keyed by (node, ID), so everything of one node is one contiguous
//! range of each table ([`node_range`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdSet;

use super::{State, StoreError, Tx, WatchKey};
use crate::command::{DeregisterRequest, RegisterRequest};
use crate::model::{HealthCheck, HealthStatus, Node, Service};

/// A service instance with its node (`/v1/catalog/service/:name`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceNode {
    /// The node.
    pub node: Arc<Node>,
    /// The instance.
    pub service: Arc<Service>,
}

/// A service instance with its node and the checks that decide its health
/// (`/v1/health/service/:name`): node-level checks first, then the instance's own.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckServiceNode {
    /// The node.
    pub node: Arc<Node>,
    /// The instance.
    pub service: Arc<Service>,
    /// Node checks and service checks.
    pub checks: Vec<Arc<HealthCheck>>,
}

impl CheckServiceNode {
    /// The worst status among the checks (`passing` when there are none).
    pub fn aggregate(&self) -> HealthStatus {
        HealthStatus::worst(self.checks.iter().map(|c| c.status))
    }
}

/// A node with its service instances.
pub type NodeServices = (Arc<Node>, Vec<Arc<Service>>);

/// The 8-4-4-4-12 hex form Consul requires of a node ID (either case; stored lowercase).
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Where a node's entries start in a table keyed by (node, ID): `(node, "")` sorts before any
/// of them. Callers stop at the first key of another node.
fn node_range(node: &str) -> std::ops::RangeFrom<(String, String)> {
    (node.to_string(), String::new())..
}

impl Tx<'_> {
    /// `Register`: the node, then the service, then the checks, so each finds what it
    /// belongs to. Any error rolls back all of it (the command's working copy is dropped).
    pub(crate) fn register(&mut self, req: &RegisterRequest) -> Result<(), StoreError> {
        if req.node.is_empty() {
            return Err(StoreError::Invalid("Must provide node".into()));
        }
        let exists = self.st.nodes.contains_key(&req.node);
        // With `SkipNodeUpdate`, an existing node is left as it is, and the address it would
        // need is not required.
        if !(req.skip_node_update && exists) {
            if req.address.is_empty() {
                return Err(StoreError::Invalid("Must provide address".into()));
            }
            if !req.id.is_empty() && !is_uuid(&req.id) {
                return Err(StoreError::Invalid(format!(
                    "Bad node ID: {:?} is not a valid UUID",
                    req.id
                )));
            }
            // The node record is replaced as a whole by the registration's fields (meta and
            // tagged addresses included); `ensure_node` sets the indexes.
            self.ensure_node(Node {
                id: req.id.to_lowercase(),
                node: req.node.clone(),
                address: req.address.clone(),
                datacenter: req.datacenter.clone(),
                tagged_addresses: req.tagged_addresses.clone(),
                meta: req.node_meta.clone(),
                create_index: 0,
                modify_index: 0,
            })?;
        }
        if let Some(svc) = &req.service {
            self.ensure_service(&req.node, svc)?;
        }
        for check in req.check.iter().chain(req.checks.iter()) {
            // A check may leave its node out (it is the registration's) but not name another.
            if !check.node.is_empty() && check.node != req.node {
                return Err(StoreError::Invalid(format!(
                    "Node name mismatch: check {:?} names node {:?}, registration names {:?}",
                    check.check_id, check.node, req.node
                )));
            }
            let mut check = check.clone();
            check.node = req.node.clone();
            self.ensure_check(check)?;
        }
        Ok(())
    }

    /// Inserts or updates a node. Identical data leaves every index untouched.
    pub(crate) fn ensure_node(&mut self, mut node: Node) -> Result<(), StoreError> {
        if let Some(existing) = self.st.nodes.get(&node.node) {
            // A registration without an ID keeps the node's; one with another ID is refused.
            if node.id.is_empty() {
                node.id = existing.id.clone();
            } else if !existing.id.is_empty() && existing.id != node.id {
                return Err(StoreError::Invalid(format!(
                    "Failed to set node ID for node {:?}: the node is registered with ID {:?}",
                    node.node, existing.id
                )));
            }
            // Indexes copied first, so the comparison below is on content alone.
            node.create_index = existing.create_index;
            node.modify_index = existing.modify_index;
            if **existing == node {
                return Ok(());
            }
        } else {
            node.create_index = self.index;
        }
        node.modify_index = self.index;
        let name = node.node.clone();
        self.st.nodes.insert(name.clone(), Arc::new(node));
        self.bump(WatchKey::Nodes);
        self.touch_node(&name);
        Ok(())
    }

    /// Marks a node and every service on it as changed: for changes that alter what every
    /// service answer on the node embeds (the node record, a node-level check).
    fn touch_node(&mut self, node: &str) {
        self.bump(WatchKey::Node(node.to_string()));
        let names: Vec<String> = self
            .node_services_iter(node)
            .map(|s| s.service.clone())
            .collect();
        for name in names {
            self.bump(WatchKey::Service(name));
        }
    }

    /// The node's service instances, by ID.
    fn node_services_iter<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s Arc<Service>> {
        self.st
            .services
            .range(node_range(node))
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, s)| s)
    }

    /// Inserts or updates a service instance on an existing node; identical data changes
    /// nothing. Keeps the name index and the checks bound to the instance in step.
    pub(crate) fn ensure_service(&mut self, node: &str, svc: &Service) -> Result<(), StoreError> {
        if !self.st.nodes.contains_key(node) {
            return Err(StoreError::NotFound("Missing node registration".into()));
        }
        if svc.service.is_empty() {
            return Err(StoreError::Invalid("Must provide service name".into()));
        }
        // The ID defaults to the name before anything is looked up, so a registration without
        // one updates the same instance every time.
        let mut svc = svc.clone();
        if svc.id.is_empty() {
            svc.id = svc.service.clone();
        }
        let key = (node.to_string(), svc.id.clone());
        let old = self.st.services.get(&key).cloned();
        if let Some(existing) = &old {
            svc.create_index = existing.create_index;
            svc.modify_index = existing.modify_index;
            if **existing == svc {
                return Ok(());
            }
        } else {
            svc.create_index = self.index;
        }
        svc.modify_index = self.index;
        // The instance was renamed: it leaves its old name's index, whose readers must see it
        // go.
        if let Some(existing) = old.as_ref().filter(|e| e.service != svc.service) {
            self.unindex_service(&existing.service, &key);
        }
        self.st
            .services_by_name
            .entry(svc.service.clone())
            .or_default()
            .insert(key.clone());
        let name = svc.service.clone();
        let tags = svc.tags.clone();
        self.st.services.insert(key.clone(), Arc::new(svc));
        // The service list, this name, and the node (whose service list changed). Other
        // services on the node are not affected.
        self.bump(WatchKey::Services);
        self.bump(WatchKey::Service(name.clone()));
        self.bump(WatchKey::Node(node.to_string()));
        // Checks bound to the instance carry its name and tags.
        let bound: Vec<(String, String)> = self
            .st
            .checks
            .range(node_range(node))
            .take_while(|((n, _), _)| n == node)
            .filter(|(_, c)| {
                c.service_id == key.1 && (c.service_name != name || c.service_tags != tags)
            })
            .map(|(k, _)| k.clone())
            .collect();
        // Rewritten at this index like any change, so readers of checks see the new name and
        // tags; checks already carrying them are left alone.
        for ck in bound {
            if let Some(c) = self.st.checks.get(&ck) {
                let mut c = HealthCheck::clone(c);
                c.service_name = name.clone();
                c.service_tags = tags.clone();
                c.modify_index = self.index;
                self.st.checks.insert(ck, Arc::new(c));
                self.bump(WatchKey::Checks);
            }
        }
        Ok(())
    }

    /// Removes an instance from its name's index. The name's last instance takes the name's
    /// watch key with it (the service list's index, moved by the same command, stands in).
    fn unindex_service(&mut self, name: &str, key: &(String, String)) {
        let now_empty = match self.st.services_by_name.get_mut(name) {
            Some(set) => {
                set.remove(key);
                set.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.st.services_by_name.remove(name);
            self.forget(&WatchKey::Service(name.to_string()));
        } else {
            self.bump(WatchKey::Service(name.to_string()));
        }
    }

    /// Inserts or updates a check on an existing node (and instance, for a service check);
    /// identical data changes nothing. A check written critical invalidates the sessions bound
    /// to it, as Consul does.
    pub(crate) fn ensure_check(&mut self, mut check: HealthCheck) -> Result<(), StoreError> {
        let node = check.node.clone();
        if !self.st.nodes.contains_key(&node) {
            return Err(StoreError::NotFound("Missing node registration".into()));
        }
        // Like a service's ID, a check's defaults to its name.
        if check.check_id.is_empty() {
            if check.name.is_empty() {
                return Err(StoreError::Invalid("Missing check ID".into()));
            }
            check.check_id = check.name.clone();
        }
        // The service fields are the catalog's to fill: taken from the instance, or cleared for
        // a node-level check, whatever the request said.
        let svc_name = if check.service_id.is_empty() {
            check.service_name.clear();
            check.service_tags.clear();
            None
        } else {
            let Some(svc) = self
                .st
                .services
                .get(&(node.clone(), check.service_id.clone()))
            else {
                return Err(StoreError::NotFound(format!(
                    "Unknown service ID {:?} for check ID {:?}",
                    check.service_id, check.check_id
                )));
            };
            check.service_name = svc.service.clone();
            check.service_tags = svc.tags.clone();
            Some(svc.service.clone())
        };
        // As for nodes and services: indexes copied before comparing, so an identical check
        // (an agent re-syncing a passing check) changes nothing.
        let key = (node.clone(), check.check_id.clone());
        let old = self.st.checks.get(&key).cloned();
        if let Some(existing) = &old {
            check.create_index = existing.create_index;
            check.modify_index = existing.modify_index;
            if **existing == check {
                return Ok(());
            }
        } else {
            check.create_index = self.index;
        }
        check.modify_index = self.index;
        let critical = check.status == HealthStatus::Critical;
        let check_id = check.check_id.clone();
        self.st.checks.insert(key, Arc::new(check));
        self.bump(WatchKey::Checks);
        // A service check changes that instance's health; a node-level check changes the
        // health of every instance on the node.
        match svc_name {
            Some(name) => {
                self.bump(WatchKey::Node(node.clone()));
                self.bump(WatchKey::Service(name));
            }
            None => self.touch_node(&node),
        }
        // A previously bound service that the check moved away from also changed.
        if let Some(existing) = old.filter(|e| !e.service_name.is_empty()) {
            self.bump(WatchKey::Service(existing.service_name.clone()));
        }
        // Only on a change: an unchanged critical check returned above, and its sessions went
        // when it turned critical (none can be created on a critical check since).
        if critical {
            self.invalidate_check_sessions(&node, &check_id);
        }
        Ok(())
    }

    /// `Deregister`: the most specific target named (service, else check, else the whole
    /// node). Removing what is not there succeeds and changes nothing.
    pub(crate) fn deregister(&mut self, req: &DeregisterRequest) -> Result<(), StoreError> {
        if req.node.is_empty() {
            return Err(StoreError::Invalid("Must provide node".into()));
        }
        if !req.service_id.is_empty() {
            self.delete_service(&req.node, &req.service_id);
        } else if !req.check_id.is_empty() {
            self.delete_check(&req.node, &req.check_id);
        } else {
            self.delete_node(&req.node);
        }
        Ok(())
    }

    /// Removes an instance and the checks bound to it (as Consul does), which in turn
    /// invalidates sessions bound to those checks.
    pub(crate) fn delete_service(&mut self, node: &str, id: &str) {
        let key = (node.to_string(), id.to_string());
        let Some(svc) = self.st.services.remove(&key) else {
            return;
        };
        // Collected first: the table cannot be walked while it is being changed.
        let checks: Vec<String> = self
            .st
            .checks
            .range(node_range(node))
            .take_while(|((n, _), _)| n == node)
            .filter(|(_, c)| c.service_id == id)
            .map(|((_, c), _)| c.clone())
            .collect();
        for c in checks {
            self.delete_check(node, &c);
        }
        self.unindex_service(&svc.service, &key);
        self.bump(WatchKey::Services);
        self.bump(WatchKey::Node(node.to_string()));
    }

    /// Removes a check; sessions bound to it are invalidated, as when it turns critical.
    pub(crate) fn delete_check(&mut self, node: &str, check_id: &str) {
        let key = (node.to_string(), check_id.to_string());
        let Some(check) = self.st.checks.remove(&key) else {
            return;
        };
        self.bump(WatchKey::Checks);
        // The same reach as writing the check: a node-level check's removal changes the health
        // of every instance on the node.
        if check.service_name.is_empty() {
            self.touch_node(node);
        } else {
            self.bump(WatchKey::Node(node.to_string()));
            self.bump(WatchKey::Service(check.service_name.clone()));
        }
        self.invalidate_check_sessions(node, check_id);
    }

    /// Removes a node with everything that hangs off it: services, checks, sessions (their
    /// locks released or deleted per their behavior) and coordinates, as Consul does.
    pub(crate) fn delete_node(&mut self, node: &str) {
        if !self.st.nodes.contains_key(node) {
            return;
        }
        let services: Vec<String> = self
            .node_services_iter(node)
            .map(|s| s.id.clone())
            .collect();
        for id in services {
            self.delete_service(node, &id);
        }
        let checks: Vec<String> = self
            .st
            .checks
            .range(node_range(node))
            .take_while(|((n, _), _)| n == node)
            .map(|((_, c), _)| c.clone())
            .collect();
        for c in checks {
            self.delete_check(node, &c);
        }
        // Sessions bound to the node's checks went with the checks above; these are the
        // node's other sessions.
        let sessions: Vec<String> = self
            .st
            .sessions
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.id.clone())
            .collect();
        for id in sessions {
            self.session_destroy(&id);
        }
        self.st.nodes.remove(node);
        let coords: Vec<(String, String)> = self
            .st
            .coordinates
            .keys()
            .filter(|(n, _)| n == node)
            .cloned()
            .collect();
        // Only a node that had coordinates moves the coordinates' index.
        if !coords.is_empty() {
            for k in coords {
                self.st.coordinates.remove(&k);
            }
            self.bump(WatchKey::Coordinates);
        }
        self.bump(WatchKey::Nodes);
        // The node's key goes; readers of it fall back to the node list's index, bumped above.
        self.forget(&WatchKey::Node(node.to_string()));
    }
}

/// Catalog and health reads. Each returns the index the answer reflects.
impl State {
    /// All nodes, by name, with the node list's index (which moves when any node record
    /// changes, not when a node's services or checks do).
    pub fn nodes(&self) -> (u64, Vec<Arc<Node>>) {
        (
            self.index_of(&WatchKey::Nodes),
            self.nodes.values().cloned().collect(),
        )
    }

    /// One node (no index: callers that block use [`State::node_index`]).
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).cloned()
    }

    /// Index for reads about one node: its record, services and checks. Falls back to the
    /// node list's index for a node that does not exist (or no longer does).
    pub fn node_index(&self, name: &str) -> u64 {
        self.index_of(&WatchKey::Node(name.to_string()))
    }

    /// A node and its services, by service ID; `None` for an unknown node, still with an index
    /// to block on until it appears.
    pub fn node_services(&self, name: &str) -> (u64, Option<NodeServices>) {
        let idx = self.node_index(name);
        let Some(node) = self.nodes.get(name) else {
            return (idx, None);
        };
        let services = self
            .services
            .range(node_range(name))
            .take_while(|((n, _), _)| n == name)
            .map(|(_, s)| Arc::clone(s))
            .collect();
        (idx, Some((Arc::clone(node), services)))
    }

    /// Checks of a node (node-level and service-level), by check ID.
    pub fn node_checks(&self, name: &str) -> (u64, Vec<Arc<HealthCheck>>) {
        let checks = self
            .checks
            .range(node_range(name))
            .take_while(|((n, _), _)| n == name)
            .map(|(_, c)| Arc::clone(c))
            .collect();
        (self.node_index(name), checks)
    }

    /// Service names with the union of their instances' tags, each sorted and listed once
    /// (`/v1/catalog/services`).
    pub fn service_names(&self) -> (u64, BTreeMap<String, Vec<String>>) {
        let mut out = BTreeMap::new();
        for (name, instances) in &self.services_by_name {
            let mut tags: Vec<String> = Vec::new();
            for key in instances {
                if let Some(s) = self.services.get(key) {
                    for t in &s.tags {
                        if !tags.contains(t) {
                            tags.push(t.clone());
                        }
                    }
                }
            }
            tags.sort();
            out.insert(name.clone(), tags);
        }
        (self.index_of(&WatchKey::Services), out)
    }

    /// Every service instance, with its node (for filtered service lists). Blocks on the
    /// service list's index, which does not move for node changes, so servers do not share
    /// these answers by index.
    pub fn all_service_nodes(&self) -> (u64, Vec<ServiceNode>) {
        let out = self
            .services
            .iter()
            .filter_map(|((n, _), s)| {
                self.nodes.get(n).map(|node| ServiceNode {
                    node: Arc::clone(node),
                    service: Arc::clone(s),
                })
            })
            .collect();
        (self.index_of(&WatchKey::Services), out)
    }

    /// Index for reads about one service name: its instances, their nodes and checks. Falls
    /// back to the service list's index for a name with no instance (left or never there).
    pub fn service_index(&self, name: &str) -> u64 {
        self.index_of(&WatchKey::Service(name.to_string()))
    }

    /// The instances of a service name, by (node, ID), through the name index. An entry whose
    /// record is missing is skipped rather than trusted (the index is derived, the tables are
    /// the truth).
    fn instances(&self, name: &str) -> impl Iterator<Item = (&Arc<Node>, &Arc<Service>)> {
        self.services_by_name
            .get(name)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|key| {
                let svc = self.services.get(key)?;
                let node = self.nodes.get(&key.0)?;
                Some((node, svc))
            })
    }

    /// Instances of a service with their nodes, ordered by node then ID.
    pub fn service_nodes(&self, name: &str) -> (u64, Vec<ServiceNode>) {
        let out = self
            .instances(name)
            .map(|(node, service)| ServiceNode {
                node: Arc::clone(node),
                service: Arc::clone(service),
            })
            .collect();
        (self.service_index(name), out)
    }

    /// Instances of a service with their node and checks: the node's node-level checks and the
    /// instance's own, not those of other instances on the node.
    pub fn check_service_nodes(&self, name: &str) -> (u64, Vec<CheckServiceNode>) {
        let out = self
            .instances(name)
            .map(|(node, service)| {
                let checks = self
                    .checks
                    .range(node_range(&node.node))
                    .take_while(|((n, _), _)| *n == node.node)
                    .filter(|(_, c)| c.service_id.is_empty() || c.service_id == service.id)
                    .map(|(_, c)| Arc::clone(c));
                // Node-level checks first, then the instance's own, as Consul lists them.
                let (mut node_checks, svc_checks): (Vec<_>, Vec<_>) =
                    checks.partition(|c| c.service_id.is_empty());
                node_checks.extend(svc_checks);
                CheckServiceNode {
                    node: Arc::clone(node),
                    service: Arc::clone(service),
                    checks: node_checks,
                }
            })
            .collect();
        (self.service_index(name), out)
    }

    /// Checks bound to instances of a service (`/v1/health/checks/:service`): the instances'
    /// own checks only, not their nodes'.
    pub fn service_checks(&self, name: &str) -> (u64, Vec<Arc<HealthCheck>>) {
        let mut out = Vec::new();
        for (node, service) in self.instances(name) {
            out.extend(
                self.checks
                    .range(node_range(&node.node))
                    .take_while(|((n, _), _)| *n == node.node)
                    .filter(|(_, c)| c.service_id == service.id)
                    .map(|(_, c)| Arc::clone(c)),
            );
        }
        (self.service_index(name), out)
    }

    /// Checks in a state (`None` for any), by node then check ID, with the check table's index.
    pub fn checks_in_state(&self, status: Option<HealthStatus>) -> (u64, Vec<Arc<HealthCheck>>) {
        let out = self
            .checks
            .values()
            .filter(|c| status.is_none_or(|s| c.status == s))
            .cloned()
            .collect();
        (self.index_of(&WatchKey::Checks), out)
    }

    /// One check (no index: callers that block use the node's or the service's).
    pub fn check(&self, node: &str, check_id: &str) -> Option<Arc<HealthCheck>> {
        self.checks
            .get(&(node.to_string(), check_id.to_string()))
            .cloned()
    }

    /// One service instance (no index: callers that block use the node's or the service's).
    pub fn service(&self, node: &str, id: &str) -> Option<Arc<Service>> {
        self.services
            .get(&(node.to_string(), id.to_string()))
            .cloned()
    }
}

/// Rebuilds the derived service-name index from the service table (after a snapshot is read).
pub(crate) fn rebuild_service_index(st: &mut State) {
    let mut by_name: imbl::OrdMap<String, OrdSet<(String, String)>> = imbl::OrdMap::new();
    for (key, svc) in &st.services {
        by_name
            .entry(svc.service.clone())
            .or_default()
            .insert(key.clone());
    }
    st.services_by_name = by_name;
}
