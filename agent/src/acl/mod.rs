//! Authorization: every server endpoint resolves the request's token to an [`Authorizer`] and
//! asks it for each resource the request touches, before anything is read or written. Reads
//! of lists filter what the token may not see instead of failing.
//!
//! Tokens, policies and roles live in the replicated state (`cairn_catalog::acl`); [`Acl`]
//! resolves a secret against a state view and caches the compiled authorizer per secret until
//! the ACL tables' index moves, so a request pays one hash lookup and a revocation takes effect
//! with the entry that made it. The rules language is in [`rules`]; the built-in objects and
//! synthetic policies (identities, templates) in [`builtin`].

pub mod builtin;
pub mod rules;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_catalog::State;
use cairn_catalog::acl::AclToken;

use crate::api::{Error, Token};
use rules::{Global, Labeled, Level, Rules};

/// What a request touches, in Consul's rule vocabulary (`<resource>:<level>`).
///
/// Borrowed names: an endpoint names the resource it already holds, with no allocation per check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// `agent:read` on a node's agent.
    AgentRead(&'a str),
    /// `agent:write` on a node's agent.
    AgentWrite(&'a str),
    /// `node:write` on a node.
    NodeWrite(&'a str),
    /// `node:read` on a node.
    NodeRead(&'a str),
    /// `service:write` on a service.
    ServiceWrite(&'a str),
    /// `service:read` on a service.
    ServiceRead(&'a str),
    /// `key:write` on a key.
    KeyWrite(&'a str),
    /// `key:read` on a key.
    KeyRead(&'a str),
    /// `key:list` on a prefix.
    KeyList(&'a str),
    /// `key:write` on every key under a prefix (recursive deletes).
    KeyWritePrefix(&'a str),
    /// `session:write` on a node's sessions.
    SessionWrite(&'a str),
    /// `session:read` on a node's sessions.
    SessionRead(&'a str),
    /// `event:write` on an event name.
    EventWrite(&'a str),
    /// `event:read` on an event name.
    EventRead(&'a str),
    /// `query:write` on a prepared query name.
    QueryWrite(&'a str),
    /// `query:read` on a prepared query name.
    QueryRead(&'a str),
    /// `intention:read` on a destination service.
    IntentionRead(&'a str),
    /// `operator:write`.
    OperatorWrite,
    /// `operator:read`.
    OperatorRead,
    /// `keyring:write`.
    KeyringWrite,
    /// `keyring:read`.
    KeyringRead,
    /// `acl:write` (also what snapshots need: they hold every secret).
    AclWrite,
    /// `acl:read`.
    AclRead,
    /// `mesh:write`.
    MeshWrite,
    /// `mesh:read`.
    MeshRead,
}

/// The resource of an access: labeled (with its name) or global.
enum Target<'a> {
    Labeled(Labeled, &'a str),
    Global(Global),
}

impl<'a> Access<'a> {
    fn parts(self) -> (Target<'a>, Level) {
        use Access::*;
        use Target::{Global as G, Labeled as L};
        match self {
            AgentRead(n) => (L(Labeled::Agent, n), Level::Read),
            AgentWrite(n) => (L(Labeled::Agent, n), Level::Write),
            NodeRead(n) => (L(Labeled::Node, n), Level::Read),
            NodeWrite(n) => (L(Labeled::Node, n), Level::Write),
            ServiceRead(n) => (L(Labeled::Service, n), Level::Read),
            ServiceWrite(n) => (L(Labeled::Service, n), Level::Write),
            KeyRead(n) => (L(Labeled::Key, n), Level::Read),
            KeyList(n) => (L(Labeled::Key, n), Level::List),
            KeyWrite(n) | KeyWritePrefix(n) => (L(Labeled::Key, n), Level::Write),
            SessionRead(n) => (L(Labeled::Session, n), Level::Read),
            SessionWrite(n) => (L(Labeled::Session, n), Level::Write),
            EventRead(n) => (L(Labeled::Event, n), Level::Read),
            EventWrite(n) => (L(Labeled::Event, n), Level::Write),
            QueryRead(n) => (L(Labeled::Query, n), Level::Read),
            QueryWrite(n) => (L(Labeled::Query, n), Level::Write),
            IntentionRead(n) => (L(Labeled::Intention, n), Level::Read),
            OperatorRead => (G(Global::Operator), Level::Read),
            OperatorWrite => (G(Global::Operator), Level::Write),
            KeyringRead => (G(Global::Keyring), Level::Read),
            KeyringWrite => (G(Global::Keyring), Level::Write),
            AclRead => (G(Global::Acl), Level::Read),
            AclWrite => (G(Global::Acl), Level::Write),
            MeshRead => (G(Global::Mesh), Level::Read),
            MeshWrite => (G(Global::Mesh), Level::Write),
        }
    }
}

/// The permissions of one resolved token.
///
/// Resolved once per request, before any check: a request sees one consistent set of permissions
/// even if the token's policies change meanwhile. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Kind {
    /// ACLs disabled.
    AllowAll,
    /// A management token: everything.
    Manage,
    /// The token's merged rules, then the default policy.
    Rules(Rules),
}

#[derive(Debug)]
struct Inner {
    kind: Kind,
    /// `acl.default_policy = "allow"`: what no rule covers is allowed (except ACL management).
    default_allow: bool,
    /// The token's accessor ID, for denial messages (`None`: "provided token").
    accessor: Option<String>,
    /// Whether the request carried a token of its own (or the agent's default one): lists then
    /// say when they were filtered.
    authenticated: bool,
    /// `acl.enable_key_list_policy`.
    key_list: bool,
}

impl Authorizer {
    /// An authorizer that allows everything (ACLs disabled).
    ///
    /// One shared instance: every request of an agent without ACLs takes it, so it costs a
    /// reference count, not an allocation.
    pub fn allow_all() -> Authorizer {
        static ALLOW: std::sync::OnceLock<Authorizer> = std::sync::OnceLock::new();
        ALLOW
            .get_or_init(|| Authorizer {
                inner: Arc::new(Inner {
                    kind: Kind::AllowAll,
                    default_allow: true,
                    accessor: None,
                    authenticated: false,
                    key_list: false,
                }),
            })
            .clone()
    }

    /// An authorizer of `rules` (tests, the agent recovery token).
    pub fn from_rules(
        rules: Rules,
        default_allow: bool,
        accessor: Option<String>,
        authenticated: bool,
    ) -> Authorizer {
        Authorizer {
            inner: Arc::new(Inner {
                kind: Kind::Rules(rules),
                default_allow,
                accessor,
                authenticated,
                key_list: false,
            }),
        }
    }

    /// The same permissions, with `acl.enable_key_list_policy` as set.
    fn with_key_list(self, key_list: bool) -> Authorizer {
        if !key_list {
            return self;
        }
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.key_list = true;
                Authorizer {
                    inner: Arc::new(inner),
                }
            }
            Err(shared) => Authorizer { inner: shared },
        }
    }

    fn management(accessor: Option<String>, authenticated: bool) -> Authorizer {
        Authorizer {
            inner: Arc::new(Inner {
                kind: Kind::Manage,
                default_allow: true,
                accessor,
                authenticated,
                key_list: false,
            }),
        }
    }

    /// Whether this authorizer lets everything through (ACLs disabled, or management):
    /// lists skip filtering then.
    pub fn is_unrestricted(&self) -> bool {
        matches!(self.inner.kind, Kind::AllowAll | Kind::Manage)
    }

    /// Whether recursive KV reads need `key:list` on their prefix
    /// (`acl.enable_key_list_policy`).
    pub fn key_list_policy(&self) -> bool {
        self.inner.key_list
    }

    /// Whether a filtered list should say so (`X-Consul-Results-Filtered-By-ACLs`): only for
    /// requests that carried a token.
    pub fn authenticated(&self) -> bool {
        self.inner.authenticated
    }

    /// The token's accessor ID, when known.
    pub fn accessor(&self) -> Option<&str> {
        self.inner.accessor.as_deref()
    }

    /// Whether `access` is allowed.
    ///
    /// Lists use this to drop what the token may not see, where `require` would refuse the whole
    /// read.
    pub fn allows(&self, access: Access<'_>) -> bool {
        let rules = match &self.inner.kind {
            Kind::AllowAll | Kind::Manage => return true,
            Kind::Rules(r) => r,
        };
        let (target, want) = access.parts();
        let found = match target {
            Target::Labeled(r, name) => rules.labeled(r, name),
            Target::Global(g) => rules.global(g),
        };
        let allowed = match found {
            Some(level) => level.grants(want),
            // The default policy never grants ACL management.
            None => self.inner.default_allow && !matches!(target, Target::Global(Global::Acl)),
        };
        if !allowed {
            return false;
        }
        // A recursive delete needs write on everything under the prefix too.
        if let Access::KeyWritePrefix(prefix) = access
            && let Some(t) = rules.table(Labeled::Key)
        {
            let under = |m: &std::collections::BTreeMap<String, Level>| {
                m.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .all(|(_, l)| *l == Level::Write)
            };
            return under(&t.exact) && under(&t.prefix);
        }
        true
    }

    /// Fails with Consul's "Permission denied" when `access` is not allowed.
    pub fn require(&self, access: Access<'_>) -> Result<(), Error> {
        if self.allows(access) {
            return Ok(());
        }
        Err(Error::PermissionDenied(self.denial(access)))
    }

    /// Consul's modern denial text, naming the permission that is missing.
    pub fn denial(&self, access: Access<'_>) -> String {
        let who = match &self.inner.accessor {
            Some(a) => format!("token with AccessorID '{a}'"),
            None => "provided token".to_string(),
        };
        let (target, level) = access.parts();
        match target {
            Target::Labeled(r, name) => format!(
                "Permission denied: {who} lacks permission '{}:{}' on {name:?}",
                r.as_str(),
                level.as_str()
            ),
            Target::Global(g) => format!(
                "Permission denied: {who} lacks permission '{}:{}'",
                g.as_str(),
                level.as_str()
            ),
        }
    }
}

/// The ACL settings a resolver needs (from `acl {}` and the datacenter).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `acl.default_policy = "allow"`.
    pub default_allow: bool,
    /// This datacenter: policies and identities limited to others grant nothing here.
    pub datacenter: String,
    /// `acl.enable_key_list_policy`.
    pub enable_key_list: bool,
    /// `acl.tokens.initial_management`: the leader makes it a management token.
    pub initial_management: Option<Token>,
}

/// Resolves tokens to authorizers.
#[derive(Clone, Debug, Default)]
pub struct Acl {
    inner: Option<Arc<Resolver>>,
}

#[derive(Debug)]
struct Resolver {
    settings: Settings,
    cache: Mutex<Cache>,
}

/// Compiled authorizers by secret, valid for one ACL index.
#[derive(Debug, Default)]
struct Cache {
    index: u64,
    by_secret: HashMap<String, (Authorizer, Option<u64>)>,
}

/// Bound of the cache: past it, it starts over (a flood of distinct secrets must not grow it).
const CACHE_MAX: usize = 16_384;

/// The text for a secret that names no token.
pub const ACL_NOT_FOUND: &str = "ACL not found";

impl Acl {
    /// ACLs disabled: every token may do everything.
    pub fn disabled() -> Acl {
        Acl { inner: None }
    }

    /// ACLs enabled with these settings.
    pub fn enabled(settings: Settings) -> Acl {
        Acl {
            inner: Some(Arc::new(Resolver {
                settings,
                cache: Mutex::new(Cache::default()),
            })),
        }
    }

    /// The resolver `acl {}` asks for.
    pub fn from_config(config: &crate::config::Config) -> Acl {
        if !config.acl.enabled {
            return Acl::disabled();
        }
        Acl::enabled(Settings {
            default_allow: config.acl.default_policy == "allow",
            datacenter: config.datacenter.clone(),
            enable_key_list: config.acl.enable_key_list_policy,
            initial_management: config
                .acl
                .tokens
                .get("initial_management")
                .map(|t| Token(t.clone())),
        })
    }

    /// Whether ACLs are enabled.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The settings (`None`: disabled).
    pub fn settings(&self) -> Option<&Settings> {
        self.inner.as_ref().map(|r| &r.settings)
    }

    /// The authorizer of `token` (`None` or empty: the anonymous token) in `state`, at
    /// `now_ms` (expired tokens do not exist).
    pub fn resolve(
        &self,
        state: &State,
        token: Option<&Token>,
        now_ms: u64,
    ) -> Result<Authorizer, Error> {
        let Some(r) = &self.inner else {
            return Ok(Authorizer::allow_all());
        };
        let secret = token.map(|t| t.0.as_str()).unwrap_or("");
        let index = state.acl_index();
        {
            let mut cache = r.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.index != index {
                cache.index = index;
                cache.by_secret.clear();
            }
            if let Some((a, expires)) = cache.by_secret.get(secret)
                && expires.is_none_or(|e| e > now_ms)
            {
                return Ok(a.clone());
            }
        }
        let (authz, expires) = r.compile(state, secret, now_ms)?;
        let mut cache = r.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.index == index {
            if cache.by_secret.len() >= CACHE_MAX {
                cache.by_secret.clear();
            }
            cache
                .by_secret
                .insert(secret.to_string(), (authz.clone(), expires));
        }
        Ok(authz)
    }

    /// The token a secret names, as resolution sees it (expired or unknown: `None`; the empty
    /// secret: the anonymous token).
    pub fn token_of(state: &State, secret: &str, now_ms: u64) -> Option<Arc<AclToken>> {
        let t = if secret.is_empty() {
            state.acl_token(builtin::ANONYMOUS_ACCESSOR)?
        } else {
            state.acl_token_by_secret(secret)?
        };
        match t.expiration_ms {
            Some(e) if e <= now_ms => None,
            _ => Some(t),
        }
    }
}

impl Resolver {
    fn compile(
        &self,
        state: &State,
        secret: &str,
        now_ms: u64,
    ) -> Result<(Authorizer, Option<u64>), Error> {
        if matches!(secret, "allow" | "deny" | "manage") {
            return Err(Error::Failed("Cannot resolve root ACL".into()));
        }
        let authenticated = !secret.is_empty();
        let token = match Acl::token_of(state, secret, now_ms) {
            Some(t) => t,
            // Before the leader made it: the anonymous token with no policies.
            None if secret.is_empty() => Arc::new(AclToken {
                accessor_id: builtin::ANONYMOUS_ACCESSOR.into(),
                ..AclToken::default()
            }),
            None if state.acl_bootstrapped().is_none() => {
                return Err(Error::PermissionDenied(format!(
                    "ACL system must be bootstrapped before making any requests that require \
                     authorization: {ACL_NOT_FOUND}"
                )));
            }
            None => return Err(Error::PermissionDenied(ACL_NOT_FOUND.into())),
        };
        let accessor = Some(token.accessor_id.clone());
        let dc = &self.settings.datacenter;
        let (rules, manage) = builtin::token_rules(state, &token, dc);
        let authz = if manage {
            Authorizer::management(accessor, authenticated)
        } else {
            Authorizer::from_rules(rules, self.settings.default_allow, accessor, authenticated)
                .with_key_list(self.settings.enable_key_list)
        };
        Ok((authz, token.expiration_ms))
    }
}

/// What a server tells a client agent about a token: enough to build its authorizer there.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    /// The token's accessor ID.
    pub accessor: String,
    /// A management token.
    pub manage: bool,
    /// The rule texts of everything the token links to.
    pub rules: Vec<String>,
    /// The datacenter's default policy is `allow`.
    pub default_allow: bool,
}

impl Resolved {
    /// The authorizer these describe.
    pub fn authorizer(&self, authenticated: bool) -> Authorizer {
        let accessor = Some(self.accessor.clone());
        if self.manage {
            return Authorizer::management(accessor, authenticated);
        }
        let mut rules = Rules::default();
        for text in &self.rules {
            builtin::add(&mut rules, text, "resolved token");
        }
        Authorizer::from_rules(rules, self.default_allow, accessor, authenticated)
    }
}

impl Acl {
    /// What a client agent needs to authorize `token` itself (see [`Resolved`]).
    pub fn describe(
        &self,
        state: &State,
        token: Option<&Token>,
        now_ms: u64,
    ) -> Result<Resolved, Error> {
        let Some(r) = &self.inner else {
            return Ok(Resolved {
                accessor: String::new(),
                manage: true,
                rules: Vec::new(),
                default_allow: true,
            });
        };
        let secret = token.map(|t| t.0.as_str()).unwrap_or("");
        if matches!(secret, "allow" | "deny" | "manage") {
            return Err(Error::Failed("Cannot resolve root ACL".into()));
        }
        let token = match Acl::token_of(state, secret, now_ms) {
            Some(t) => t,
            None if secret.is_empty() => Arc::new(AclToken {
                accessor_id: builtin::ANONYMOUS_ACCESSOR.into(),
                ..AclToken::default()
            }),
            None => return Err(Error::PermissionDenied(ACL_NOT_FOUND.into())),
        };
        let (texts, manage) = builtin::token_rule_texts(state, &token, &r.settings.datacenter);
        Ok(Resolved {
            accessor: token.accessor_id.clone(),
            manage,
            rules: texts.into_iter().map(|(_, t)| t).collect(),
            default_allow: r.settings.default_allow,
        })
    }
}

/// A client agent's cache of tokens its servers resolved, each kept for [`REMOTE_TTL`]: a
/// revoked token stops working on every client agent within that time.
#[derive(Debug, Default)]
pub struct RemoteCache {
    entries: Mutex<HashMap<String, (std::time::Instant, Resolved)>>,
}

/// How long a client agent trusts a resolution.
pub const REMOTE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl RemoteCache {
    /// A fresh entry for `secret`.
    pub fn fresh(&self, secret: &str) -> Option<Resolved> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.get(secret)
            .filter(|(at, _)| at.elapsed() < REMOTE_TTL)
            .map(|(_, r)| r.clone())
    }

    /// Any entry for `secret`, however old (`down_policy = "extend-cache"` when no server
    /// answers).
    pub fn stale(&self, secret: &str) -> Option<Resolved> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.get(secret).map(|(_, r)| r.clone())
    }

    /// Remembers a resolution.
    pub fn put(&self, secret: &str, r: Resolved) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= CACHE_MAX {
            e.clear();
        }
        e.insert(secret.to_string(), (std::time::Instant::now(), r));
    }

    /// Forgets a secret the servers no longer know.
    pub fn forget(&self, secret: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.remove(secret);
    }
}

/// The authorizer of the agent recovery token: its own agent, and reading nodes, nothing else.
pub fn recovery_authorizer(node: &str) -> Authorizer {
    let mut rules = Rules::default();
    let text = format!(
        "agent {node:?} {{\n  policy = \"write\"\n}}\nnode_prefix \"\" {{\n  policy = \"read\"\n}}"
    );
    builtin::add(&mut rules, &text, "agent recovery");
    Authorizer::from_rules(rules, false, Some(format!("agent-recovery:{node}")), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(rules: &str, default_allow: bool) -> Authorizer {
        Authorizer::from_rules(
            Rules::parse(rules).expect("parses"),
            default_allow,
            Some("acc".into()),
            true,
        )
    }

    #[test]
    fn disabled_acls_allow_every_access_whatever_the_token() {
        let acl = Acl::disabled();
        let st = State::new();
        for token in [None, Some(Token("secret".into()))] {
            let authz = acl.resolve(&st, token.as_ref(), 0).expect("resolves");
            assert!(authz.require(Access::KeyWrite("a")).is_ok());
            assert!(authz.require(Access::OperatorWrite).is_ok());
        }
    }

    #[test]
    fn denials_name_the_missing_permission_as_consul_does() {
        let a = authz(r#"key_prefix "" { policy = "read" }"#, false);
        assert!(a.require(Access::KeyRead("x")).is_ok());
        let Err(Error::PermissionDenied(m)) = a.require(Access::KeyWrite("app/x")) else {
            panic!("write must be denied");
        };
        assert_eq!(
            m,
            "Permission denied: token with AccessorID 'acc' lacks permission 'key:write' on \"app/x\""
        );
        let Err(Error::PermissionDenied(m)) = a.require(Access::OperatorRead) else {
            panic!("operator must be denied");
        };
        assert_eq!(
            m,
            "Permission denied: token with AccessorID 'acc' lacks permission 'operator:read'"
        );
    }

    #[test]
    fn the_default_policy_applies_where_no_rule_matches_except_for_acl() {
        let allow = authz(r#"key "secret" { policy = "deny" }"#, true);
        assert!(allow.allows(Access::KeyWrite("other")));
        assert!(allow.allows(Access::ServiceWrite("web")));
        assert!(!allow.allows(Access::KeyRead("secret")));
        assert!(!allow.allows(Access::AclRead));
        assert!(!allow.allows(Access::AclWrite));
        let deny = authz("", false);
        assert!(!deny.allows(Access::NodeRead("n1")));
    }

    #[test]
    fn a_found_rule_that_does_not_grant_denies_without_falling_through() {
        let a = authz(
            r#"key_prefix "" { policy = "write" }
               key "secret" { policy = "read" }"#,
            true,
        );
        assert!(!a.allows(Access::KeyWrite("secret")));
        assert!(a.allows(Access::KeyRead("secret")));
        // `list` grants read and list, not write.
        let l = authz(r#"key_prefix "a/" { policy = "list" }"#, false);
        assert!(l.allows(Access::KeyList("a/")));
        assert!(l.allows(Access::KeyRead("a/b")));
        assert!(!l.allows(Access::KeyWrite("a/b")));
        assert!(
            !authz(r#"key_prefix "a/" { policy = "read" }"#, false).allows(Access::KeyList("a/"))
        );
    }

    #[test]
    fn recursive_deletes_need_write_on_everything_under_the_prefix() {
        let a = authz(
            r#"key_prefix "a/" { policy = "write" }
               key "a/b/locked" { policy = "read" }"#,
            false,
        );
        assert!(a.allows(Access::KeyWritePrefix("a/c/")));
        assert!(!a.allows(Access::KeyWritePrefix("a/")));
        assert!(!a.allows(Access::KeyWritePrefix("a/b")));
        assert!(a.allows(Access::KeyWrite("a/b/x")));
    }

    #[test]
    fn mesh_follows_operator_when_unset() {
        let a = authz(r#"operator = "write""#, false);
        assert!(a.allows(Access::MeshWrite));
        let b = authz(
            r#"operator = "write"
               mesh = "read""#,
            false,
        );
        assert!(!b.allows(Access::MeshWrite));
        assert!(b.allows(Access::MeshRead));
    }
}
