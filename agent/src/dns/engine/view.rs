//! The catalog as DNS reads it: instances of a service with their aggregate health, nodes by
//! name and addresses back to names, each found case-insensitively.
//!
//! [`Cache`] memoizes what is costly to derive from a [`State`] (the instances of a service
//! with their checks folded into one status, the case-folded name tables, the reverse
//! address table). Every entry remembers the catalog index it was built at and is rebuilt when
//! that index moves, so an answer always reflects the state it is given: a registration or a
//! health change shows in the next answer.
//!
//! The memo is shared by every query (worker threads and tasks alike) behind read-mostly
//! locks: a query only takes a write lock to store what it had to rebuild. Two queries that
//! rebuild the same entry at once both store a correct value, so no lock is held while
//! building.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use cairn_catalog::State;
use cairn_catalog::WatchKey;
use cairn_catalog::model::{HealthStatus, Node, Service};
use hickory_proto::rr::{Name, RData};

/// One instance of a service with its node and aggregate status.
#[derive(Clone, Debug)]
pub struct Instance {
    /// The node.
    pub node: Arc<Node>,
    /// The instance.
    pub service: Arc<Service>,
    /// The worst status among the node's and the instance's checks.
    /// Folded once per catalog index, since every query of the service needs it.
    pub status: HealthStatus,
}

impl Instance {
    /// Whether the instance carries `tag` (compared case-insensitively).
    ///
    /// The question's tag is lowercase (DNS names are case-insensitive); registered tags may
    /// not be.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.service
            .tags
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tag))
    }
}

/// An instance as DNS records need it, for one domain and datacenter: names built, addresses
/// parsed, metadata encoded (see [`ServiceSet::rendered`]).
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The address answered: the service's, else the node's.
    pub addr: Addr,
    /// Target of an SRV answer: `<node>.node.<dc>.<domain>`, `<hex>.addr.<dc>.<domain>` or
    /// the host name (`None` when no valid name can be built).
    /// A service with its own address gets the `.addr` form, so that the additional record
    /// for the target carries that address rather than the node's.
    pub srv_target: Option<Name>,
    /// `<node>.node.<dc>.<domain>`, owner of the node's metadata records.
    pub node_name: Option<Name>,
    /// The node's metadata as TXT data.
    /// Encoded once per set rather than for every answer that carries it.
    pub meta: Vec<RData>,
}

/// An address as registered.
#[derive(Clone, Debug)]
pub enum Addr {
    /// An IP address (IPv4-mapped IPv6 addresses folded to IPv4).
    Ip(IpAddr),
    /// A host name.
    Host(Name),
    /// Neither (empty or not a valid name).
    Invalid,
}

/// Bound on the rendered forms kept per service (one per domain and datacenter asked).
/// A service is normally rendered for one or two domains and the local datacenter; the
/// bound keeps a set from growing with every domain spelling ever asked.
const MAX_RENDERED: usize = 4;

/// A rendering with the domain and datacenter it was made for.
type RenderedEntry = (Name, String, Arc<Vec<Rendered>>);

/// The instances of one service name at one catalog index.
#[derive(Debug)]
pub struct ServiceSet {
    /// Catalog index of the service when this was built.
    pub index: u64,
    /// Instances, ordered by node then ID.
    pub instances: Vec<Instance>,
    /// Last state index at which `index` was confirmed current.
    checked: AtomicU64,
    /// Renderings of `instances`, at most [`MAX_RENDERED`], oldest first.
    rendered: Mutex<Vec<RenderedEntry>>,
}

impl ServiceSet {
    /// The same set with only the instances `keep` accepts (ACL filtering); `self` when it
    /// keeps them all, so unrestricted tokens share the cached renderings.
    fn filtered(self: &Arc<Self>, keep: impl Fn(&Instance) -> bool) -> Arc<ServiceSet> {
        if self.instances.iter().all(&keep) {
            return Arc::clone(self);
        }
        Arc::new(ServiceSet {
            index: self.index,
            instances: self.instances.iter().filter(|i| keep(i)).cloned().collect(),
            checked: AtomicU64::new(self.checked.load(Ordering::Relaxed)),
            rendered: Mutex::new(Vec::new()),
        })
    }

    /// The instances rendered for `domain` and `dc` (same order as `instances`), built with
    /// `render` on first use and kept with the set, so a query only clones what it sends.
    pub fn rendered(
        &self,
        domain: &Name,
        dc: &str,
        render: impl Fn(&Instance) -> Rendered,
    ) -> Arc<Vec<Rendered>> {
        let mut guard = match self.rendered.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((_, _, r)) = guard.iter().find(|(d, c, _)| d.eq_case(domain) && c == dc) {
            return Arc::clone(r);
        }
        let r = Arc::new(self.instances.iter().map(render).collect::<Vec<_>>());
        if guard.len() >= MAX_RENDERED {
            // The oldest goes: the set is short, and the current domains are asked again soon.
            guard.remove(0);
        }
        guard.push((domain.clone(), dc.to_string(), Arc::clone(&r)));
        r
    }
}

/// What a reverse (PTR) lookup found.
///
/// Names as registered; the resolver builds the PTR target from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReverseHit {
    /// A node with this address (name, datacenter).
    Node(String, String),
    /// A service instance registered with this explicit address (service name, datacenter).
    Service(String, String),
}

/// Case-folded names at one index: lowercase name -> names as registered.
#[derive(Debug, Default)]
struct Folded {
    index: u64,
    /// Last state index at which `index` was confirmed current.
    checked: AtomicU64,
    /// Several registered names may fold to the same lowercase name (`Web` and `web`); all
    /// of them answer.
    names: HashMap<String, Vec<String>>,
}

/// The reverse table: every node and explicit service address, at one pair of indexes.
#[derive(Debug, Default)]
struct Reverse {
    /// The nodes and services indexes it was built at: it depends on both.
    key: (u64, u64),
    hits: HashMap<IpAddr, ReverseHit>,
}

/// Bound on cached service entries; past it the table starts over.
/// Starting over is crude but bounded and rarely hit: entries exist only for registered
/// service names, so only a catalog with more services than this churns.
const MAX_CACHED_SERVICES: usize = 16_384;

/// Memoized derivations of catalog states (see the module documentation).
#[derive(Debug, Default)]
pub struct Cache {
    services: RwLock<HashMap<String, Arc<ServiceSet>>>,
    service_names: RwLock<Option<Arc<Folded>>>,
    node_names: RwLock<Option<Arc<Folded>>>,
    reverse: RwLock<Option<Arc<Reverse>>>,
}

/// Clones the value out of `lock` (an `Arc` or an option of one, cheap to clone). A
/// poisoned lock is read anyway: each value is replaced whole, so a panic cannot leave one
/// half-written.
fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Replaces the value in `lock`, poisoned or not (see [`read`]).
fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(p) => *p.into_inner() = value,
    }
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }
}

/// A catalog state seen through a cache.
pub struct View<'a> {
    state: &'a State,
    cache: &'a Cache,
    /// The DNS token's permissions: what it may not read is not answered (NXDOMAIN).
    authz: Option<crate::acl::Authorizer>,
}

impl<'a> View<'a> {
    /// A view of `state` memoized in `cache`.
    ///
    /// The cache must only ever see states of one catalog: its entries are validated by
    /// index, and indexes of two different catalogs mean nothing to each other.
    pub fn new(state: &'a State, cache: &'a Cache) -> View<'a> {
        View {
            state,
            cache,
            authz: None,
        }
    }

    /// The view as the token `authz` may see it: nodes and instances it may not read are left
    /// out.
    pub fn with_authz(mut self, authz: crate::acl::Authorizer) -> View<'a> {
        self.authz = (!authz.is_unrestricted()).then_some(authz);
        self
    }

    /// The state this view reads.
    pub fn state(&self) -> &'a State {
        self.state
    }

    /// The instances of every service whose name matches `lower` case-insensitively; empty
    /// when no such service is registered.
    pub fn service(&self, lower: &str) -> Vec<Arc<ServiceSet>> {
        let folded = self.service_names();
        let Some(names) = folded.names.get(lower) else {
            return Vec::new();
        };
        let sets = names.iter().map(|n| self.service_set(n));
        match &self.authz {
            None => sets.collect(),
            Some(a) => sets
                .filter(|set| {
                    set.instances.first().is_none_or(|i| {
                        a.allows(crate::acl::Access::ServiceRead(&i.service.service))
                    })
                })
                .map(|set| set.filtered(|i| a.allows(crate::acl::Access::NodeRead(&i.node.node))))
                .collect(),
        }
    }

    /// A node whose name matches `lower` case-insensitively.
    pub fn node(&self, lower: &str) -> Option<Arc<Node>> {
        let found = self.node_unfiltered(lower)?;
        match &self.authz {
            Some(a) if !a.allows(crate::acl::Access::NodeRead(&found.node)) => None,
            _ => Some(found),
        }
    }

    fn node_unfiltered(&self, lower: &str) -> Option<Arc<Node>> {
        // Most node names are registered lowercase: the direct look-up avoids the table.
        if let Some(n) = self.state.node(lower) {
            return Some(n);
        }
        let folded = self.node_names();
        let names = folded.names.get(lower)?;
        names.iter().find_map(|n| self.state.node(n))
    }

    /// What has address `ip`: a node first, else a service instance with that explicit
    /// address.
    pub fn reverse(&self, ip: IpAddr) -> Option<ReverseHit> {
        let key = (
            self.state.index_of(&WatchKey::Nodes),
            self.state.index_of(&WatchKey::Services),
        );
        if let Some(r) = read(&self.cache.reverse)
            && r.key == key
        {
            return r.hits.get(&ip).cloned();
        }
        let mut hits = HashMap::new();
        let (_, services) = self.state.all_service_nodes();
        // Filled in reverse so that, for an address used more than once, the first in catalog
        // order wins; nodes go in last, so a node wins over a service instance.
        for sn in services.iter().rev() {
            if let Ok(addr) = sn.service.address.parse::<IpAddr>() {
                hits.insert(
                    addr,
                    ReverseHit::Service(
                        sn.service.service.clone(),
                        sn.node.datacenter.to_ascii_lowercase(),
                    ),
                );
            }
        }
        let (_, nodes) = self.state.nodes();
        for n in nodes.iter().rev() {
            if let Ok(addr) = n.address.parse::<IpAddr>() {
                hits.insert(
                    addr,
                    ReverseHit::Node(n.node.clone(), n.datacenter.to_ascii_lowercase()),
                );
            }
        }
        let hit = hits.get(&ip).cloned();
        write(&self.cache.reverse, Some(Arc::new(Reverse { key, hits })));
        hit
    }

    fn service_set(&self, name: &str) -> Arc<ServiceSet> {
        let last = self.state.last_index();
        let cached = match self.cache.services.read() {
            Ok(g) => g.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        };
        if let Some(set) = cached
            && current(&set.checked, last, || {
                set.index == self.state.service_index(name)
            })
        {
            return set;
        }
        // Rebuilt from the state: the instances with their checks, health folded once here
        // instead of in every answer.
        let (index, nodes) = self.state.check_service_nodes(name);
        let instances = nodes
            .into_iter()
            .map(|csn| {
                let status = csn.aggregate();
                Instance {
                    node: csn.node,
                    service: csn.service,
                    status,
                }
            })
            .collect();
        let set = Arc::new(ServiceSet {
            index,
            instances,
            checked: AtomicU64::new(last),
            rendered: Mutex::new(Vec::new()),
        });
        let mut guard = match self.cache.services.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if guard.len() >= MAX_CACHED_SERVICES && !guard.contains_key(name) {
            guard.clear();
        }
        guard.insert(name.to_string(), Arc::clone(&set));
        set
    }

    fn service_names(&self) -> Arc<Folded> {
        let last = self.state.last_index();
        let index = || self.state.index_of(&WatchKey::Services);
        if let Some(f) = read(&self.cache.service_names)
            && current(&f.checked, last, || f.index == index())
        {
            return f;
        }
        let (_, names) = self.state.service_names();
        let folded = Arc::new(fold(index(), last, names.into_keys()));
        write(&self.cache.service_names, Some(Arc::clone(&folded)));
        folded
    }

    fn node_names(&self) -> Arc<Folded> {
        let last = self.state.last_index();
        let index = || self.state.index_of(&WatchKey::Nodes);
        if let Some(f) = read(&self.cache.node_names)
            && current(&f.checked, last, || f.index == index())
        {
            return f;
        }
        let (_, nodes) = self.state.nodes();
        let folded = Arc::new(fold(index(), last, nodes.iter().map(|n| n.node.clone())));
        write(&self.cache.node_names, Some(Arc::clone(&folded)));
        folded
    }
}

/// The case-folded table of `names`, valid at catalog `index` (confirmed at `last`).
fn fold(index: u64, last: u64, names: impl Iterator<Item = String>) -> Folded {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for name in names {
        map.entry(name.to_ascii_lowercase()).or_default().push(name);
    }
    Folded {
        index,
        checked: AtomicU64::new(last),
        names: map,
    }
}

/// Whether a memo is current for the state at `last` (its last applied index). States with
/// the same last index are the same state, so a memo confirmed at `last` needs no look-up of
/// its catalog index (which costs a few microseconds); otherwise `confirm` decides, and a
/// confirmation is remembered.
fn current(checked: &AtomicU64, last: u64, confirm: impl FnOnce() -> bool) -> bool {
    // Relaxed is enough: `checked` is a hint, and a stale read only costs a `confirm`.
    if checked.load(Ordering::Relaxed) == last {
        return true;
    }
    if confirm() {
        checked.store(last, Ordering::Relaxed);
        return true;
    }
    false
}
