//! Consul's ACL rules language: HCL or the equivalent JSON, parsed into [`Rules`], a table per
//! resource of exact and prefix rules.
//!
//! Parsing merges as Consul's policy merger does: for one resource, flavour (exact or prefix)
//! and label, the strongest level wins (`deny` > `write` > `list` > `read`), whether the two
//! rules came from one policy or from two policies of one token. So a token's policies can be
//! parsed into one `Rules` and looked up once.

use std::collections::BTreeMap;

use hcl::eval::{Context, Evaluate};
use serde_json::Value;

/// An access level, weakest first in the order of merging: a merge keeps the greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Read.
    Read,
    /// Read and list (KV only).
    List,
    /// Everything.
    Write,
    /// Nothing: beats every grant.
    Deny,
}

impl Level {
    /// Parses a level, case-insensitively as Consul does; `list` only where `allow_list`.
    fn parse(s: &str, allow_list: bool) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            "deny" => Some(Level::Deny),
            "list" if allow_list => Some(Level::List),
            _ => None,
        }
    }

    /// Whether this level grants `want` (a rule that is found but does not grant denies).
    pub fn grants(self, want: Level) -> bool {
        match self {
            Level::Deny => false,
            Level::Write => true,
            Level::List => matches!(want, Level::Read | Level::List),
            Level::Read => want == Level::Read,
        }
    }

    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::List => "list",
            Level::Write => "write",
            Level::Deny => "deny",
        }
    }
}

/// The resources whose rules carry a label (a name or prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Labeled {
    /// `agent` / `agent_prefix` (node names).
    Agent,
    /// `node` / `node_prefix`.
    Node,
    /// `service` / `service_prefix`.
    Service,
    /// The `intentions` of service rules (destination service names).
    Intention,
    /// `key` / `key_prefix`.
    Key,
    /// `session` / `session_prefix` (node names).
    Session,
    /// `event` / `event_prefix`.
    Event,
    /// `query` / `query_prefix`.
    Query,
}

impl Labeled {
    const ALL: [Labeled; 8] = [
        Labeled::Agent,
        Labeled::Node,
        Labeled::Service,
        Labeled::Intention,
        Labeled::Key,
        Labeled::Session,
        Labeled::Event,
        Labeled::Query,
    ];

    /// The resource's name in rules and in Consul's denial messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Labeled::Agent => "agent",
            Labeled::Node => "node",
            Labeled::Service => "service",
            Labeled::Intention => "intention",
            Labeled::Key => "key",
            Labeled::Session => "session",
            Labeled::Event => "event",
            Labeled::Query => "query",
        }
    }

    fn from_rule_key(key: &str) -> Option<(Labeled, bool)> {
        let (base, prefix) = match key.strip_suffix("_prefix") {
            Some(b) => (b, true),
            None => (key, false),
        };
        let r = Labeled::ALL
            .into_iter()
            .find(|r| r.as_str() == base && *r != Labeled::Intention)?;
        Some((r, prefix))
    }
}

/// The resources without a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Global {
    /// `acl`.
    Acl,
    /// `keyring`.
    Keyring,
    /// `operator`.
    Operator,
    /// `mesh` (unset: follows `operator`).
    Mesh,
    /// `peering` (unset: follows `operator`).
    Peering,
}

impl Global {
    const ALL: [Global; 5] = [
        Global::Acl,
        Global::Keyring,
        Global::Operator,
        Global::Mesh,
        Global::Peering,
    ];

    /// The resource's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Global::Acl => "acl",
            Global::Keyring => "keyring",
            Global::Operator => "operator",
            Global::Mesh => "mesh",
            Global::Peering => "peering",
        }
    }
}

/// Exact and prefix rules of one labeled resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Exact labels.
    pub exact: BTreeMap<String, Level>,
    /// Prefix labels.
    pub prefix: BTreeMap<String, Level>,
}

impl Table {
    /// The level that applies to `name`: its exact rule, else the longest prefix rule that
    /// covers it, else none (the default policy decides).
    pub fn lookup(&self, name: &str) -> Option<Level> {
        if let Some(l) = self.exact.get(name) {
            return Some(*l);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Longest first: every prefix of the name that ends on a character boundary.
        let mut end = name.len();
        loop {
            if name.is_char_boundary(end)
                && let Some(l) = self.prefix.get(&name[..end])
            {
                return Some(*l);
            }
            if end == 0 {
                return None;
            }
            end -= 1;
        }
    }

    fn merge(&mut self, prefix: bool, label: String, level: Level) {
        let map = if prefix {
            &mut self.prefix
        } else {
            &mut self.exact
        };
        let slot = map.entry(label).or_insert(level);
        *slot = (*slot).max(level);
    }
}

/// Parsed rules: one table per labeled resource and a level per global one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    tables: BTreeMap<Labeled, Table>,
    globals: BTreeMap<Global, Level>,
}

/// A rules text that does not parse: Consul's "Failed to parse ACL rules: ...".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Failed to parse ACL rules: {0}")]
pub struct RulesError(pub String);

impl Rules {
    /// Parses HCL or JSON rules (JSON when the text starts with `{`), merged into these.
    pub fn add(&mut self, text: &str) -> Result<(), RulesError> {
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Ok(());
        }
        if trimmed.starts_with('{') {
            let v: Value =
                serde_json::from_str(text).map_err(|e| RulesError(format!("invalid JSON: {e}")))?;
            let Value::Object(map) = v else {
                return Err(RulesError("the top level must be an object".into()));
            };
            for (k, v) in map {
                self.add_json(&k, v)?;
            }
            Ok(())
        } else {
            let body = hcl::parse(text).map_err(|e| RulesError(e.to_string()))?;
            self.add_hcl(&body)
        }
    }

    /// Parses one rules text on its own (for validation on write).
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let mut r = Rules::default();
        r.add(text)?;
        Ok(r)
    }

    fn add_hcl(&mut self, body: &hcl::Body) -> Result<(), RulesError> {
        let ctx = Context::new();
        for s in body.iter() {
            match s {
                hcl::Structure::Attribute(attr) => {
                    let key = attr.key();
                    let v = attr
                        .expr()
                        .evaluate(&ctx)
                        .map_err(|e| RulesError(format!("{key}: {e}")))?;
                    let json = serde_json::to_value(v).map_err(|e| RulesError(e.to_string()))?;
                    self.add_json(key, json)?;
                }
                hcl::Structure::Block(block) => {
                    let key = block.identifier();
                    let labels = block.labels();
                    let label = match labels {
                        [one] => one.as_str().to_string(),
                        _ => {
                            return Err(RulesError(format!(
                                "{key} rules take exactly one label (the name or prefix)"
                            )));
                        }
                    };
                    let mut fields = serde_json::Map::new();
                    for inner in block.body().iter() {
                        match inner {
                            hcl::Structure::Attribute(attr) => {
                                let v = attr
                                    .expr()
                                    .evaluate(&ctx)
                                    .map_err(|e| RulesError(format!("{key}: {e}")))?;
                                let json = serde_json::to_value(v)
                                    .map_err(|e| RulesError(e.to_string()))?;
                                fields.insert(attr.key().to_string(), json);
                            }
                            hcl::Structure::Block(b) => {
                                return Err(RulesError(format!(
                                    "unexpected block {:?} in {key} {label:?}",
                                    b.identifier()
                                )));
                            }
                        }
                    }
                    self.add_labeled(key, &label, &Value::Object(fields))?;
                }
            }
        }
        Ok(())
    }

    fn add_json(&mut self, key: &str, v: Value) -> Result<(), RulesError> {
        if let Some(g) = Global::ALL.into_iter().find(|g| g.as_str() == key) {
            let Value::String(s) = v else {
                return Err(RulesError(format!("{key} must be a string level")));
            };
            let level = Level::parse(&s, false)
                .ok_or_else(|| RulesError(format!("Invalid {key} policy: {s:?}")))?;
            let slot = self.globals.entry(g).or_insert(level);
            *slot = (*slot).max(level);
            return Ok(());
        }
        // `{"key_prefix": {"a/": {...}}}`, or a list of such objects (HCL's JSON form).
        let objects = match v {
            Value::Object(m) => vec![m],
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::Object(m) => out.push(m),
                        _ => return Err(RulesError(format!("{key}: expected an object"))),
                    }
                }
                out
            }
            _ => return Err(RulesError(format!("{key}: expected an object"))),
        };
        if Labeled::from_rule_key(key).is_none() {
            return Err(RulesError(format!("unexpected key {key:?}")));
        }
        for m in objects {
            for (label, fields) in m {
                self.add_labeled(key, &label, &fields)?;
            }
        }
        Ok(())
    }

    fn add_labeled(&mut self, key: &str, label: &str, fields: &Value) -> Result<(), RulesError> {
        let Some((resource, prefix)) = Labeled::from_rule_key(key) else {
            return Err(RulesError(format!("unexpected key {key:?}")));
        };
        let Value::Object(fields) = fields else {
            return Err(RulesError(format!("{key} {label:?}: expected a block")));
        };
        let mut policy = None;
        let mut intentions = None;
        for (k, v) in fields {
            let Value::String(s) = v else {
                return Err(RulesError(format!("{key} {label:?}: {k} must be a string")));
            };
            match k.as_str() {
                "policy" => {
                    policy = Some(Level::parse(s, resource == Labeled::Key).ok_or_else(|| {
                        RulesError(format!("Invalid {} policy: {s:?}", resource.as_str()))
                    })?)
                }
                "intentions" if resource == Labeled::Service => {
                    intentions = Some(Level::parse(s, false).ok_or_else(|| {
                        RulesError(format!("Invalid service intentions policy: {s:?}"))
                    })?)
                }
                other => {
                    return Err(RulesError(format!(
                        "{key} {label:?}: unexpected key {other:?}"
                    )));
                }
            }
        }
        if let Some(level) = policy {
            self.tables
                .entry(resource)
                .or_default()
                .merge(prefix, label.to_string(), level);
        }
        // Intentions follow the service policy when unset: read for read or write, deny for
        // deny.
        let intentions = intentions.or(match policy {
            Some(Level::Deny) => Some(Level::Deny),
            Some(_) if resource == Labeled::Service => Some(Level::Read),
            _ => None,
        });
        if resource == Labeled::Service
            && let Some(level) = intentions
        {
            self.tables.entry(Labeled::Intention).or_default().merge(
                prefix,
                label.to_string(),
                level,
            );
        }
        Ok(())
    }

    /// Merges `other` into these rules (the strongest level wins per label).
    pub fn merge(&mut self, other: &Rules) {
        for (r, t) in &other.tables {
            let mine = self.tables.entry(*r).or_default();
            for (label, level) in &t.exact {
                mine.merge(false, label.clone(), *level);
            }
            for (label, level) in &t.prefix {
                mine.merge(true, label.clone(), *level);
            }
        }
        for (g, level) in &other.globals {
            let slot = self.globals.entry(*g).or_insert(*level);
            *slot = (*slot).max(*level);
        }
    }

    /// The level for `name` of a labeled resource (none: no rule covers it).
    pub fn labeled(&self, r: Labeled, name: &str) -> Option<Level> {
        self.tables.get(&r)?.lookup(name)
    }

    /// The table of a labeled resource.
    pub fn table(&self, r: Labeled) -> Option<&Table> {
        self.tables.get(&r)
    }

    /// The level of a global resource; `mesh` and `peering` follow `operator` when unset.
    pub fn global(&self, g: Global) -> Option<Level> {
        match (self.globals.get(&g), g) {
            (Some(l), _) => Some(*l),
            (None, Global::Mesh | Global::Peering) => self.globals.get(&Global::Operator).copied(),
            (None, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_and_json_parse_to_the_same_rules() {
        let hcl = r#"
            key_prefix "" { policy = "read" }
            key "app/secret" { policy = "deny" }
            service "web" {
              policy = "write"
              intentions = "read"
            }
            operator = "read"
        "#;
        let json = r#"{"key_prefix":{"":{"policy":"read"}},
            "key":{"app/secret":{"policy":"deny"}},
            "service":{"web":{"policy":"write","intentions":"read"}},
            "operator":"read"}"#;
        let a = Rules::parse(hcl).expect("hcl");
        let b = Rules::parse(json).expect("json");
        assert_eq!(a, b);
        assert_eq!(a.labeled(Labeled::Key, "app/secret"), Some(Level::Deny));
        assert_eq!(a.labeled(Labeled::Key, "app/other"), Some(Level::Read));
        assert_eq!(a.labeled(Labeled::Service, "web"), Some(Level::Write));
        assert_eq!(a.labeled(Labeled::Service, "db"), None);
        assert_eq!(a.global(Global::Operator), Some(Level::Read));
        assert_eq!(a.global(Global::Mesh), Some(Level::Read));
        assert_eq!(a.global(Global::Acl), None);
    }

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins() {
        let r = Rules::parse(
            r#"
            key_prefix "" { policy = "write" }
            key_prefix "a/" { policy = "read" }
            key_prefix "a/b/" { policy = "deny" }
            key "a/b/c" { policy = "write" }
            "#,
        )
        .expect("parses");
        assert_eq!(r.labeled(Labeled::Key, "x"), Some(Level::Write));
        assert_eq!(r.labeled(Labeled::Key, "a/x"), Some(Level::Read));
        assert_eq!(r.labeled(Labeled::Key, "a/b/x"), Some(Level::Deny));
        assert_eq!(r.labeled(Labeled::Key, "a/b/c"), Some(Level::Write));
        // An exact rule covers only its own name.
        assert_eq!(r.labeled(Labeled::Key, "a/b/cd"), Some(Level::Deny));
    }

    #[test]
    fn merging_keeps_the_strongest_level_per_label() {
        let mut r = Rules::parse(r#"key "x" { policy = "read" }"#).expect("parses");
        r.add(r#"key "x" { policy = "deny" }"#).expect("parses");
        assert_eq!(r.labeled(Labeled::Key, "x"), Some(Level::Deny));
        let mut w = Rules::parse(r#"service_prefix "" { policy = "read" }"#).expect("parses");
        w.merge(&Rules::parse(r#"service_prefix "" { policy = "write" }"#).expect("parses"));
        assert_eq!(w.labeled(Labeled::Service, "any"), Some(Level::Write));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for bad in [
            r#"service "web" { policy = "list" }"#,
            r#"key "x" { policy = "owner" }"#,
            r#"acl = "list""#,
            r#"nodes "x" { policy = "read" }"#,
            r#"key "x" { policy = "read" color = "red" }"#,
            r#"key { policy = "read" }"#,
            "key \"x\" { policy = ",
            r#"{"key": 3}"#,
        ] {
            let e = Rules::parse(bad).expect_err(bad);
            assert!(
                e.to_string().starts_with("Failed to parse ACL rules: "),
                "{e}"
            );
        }
        assert!(Rules::parse(r#"key "x" { policy = "LIST" }"#).is_ok());
    }

    #[test]
    fn intentions_follow_the_service_policy_when_unset() {
        let r = Rules::parse(
            r#"service "a" { policy = "write" }
               service "b" { policy = "deny" }"#,
        )
        .expect("parses");
        assert_eq!(r.labeled(Labeled::Intention, "a"), Some(Level::Read));
        assert_eq!(r.labeled(Labeled::Intention, "b"), Some(Level::Deny));
    }

    proptest::proptest! {
        /// Whatever rules a token holds, adding a deny for a label makes that label denied,
        /// and a lookup never finds a level weaker than an exact rule for the same name.
        #[test]
        fn deny_always_wins(levels in proptest::collection::vec(0u8..4, 1..6), name in "[a-c/]{0,6}") {
            let mut r = Rules::default();
            for l in levels {
                let lvl = ["read", "list", "write", "deny"][l as usize];
                r.add(&format!("key {name:?} {{ policy = \"{lvl}\" }}")).expect("parses");
            }
            r.add(&format!("key {name:?} {{ policy = \"deny\" }}")).expect("parses");
            proptest::prop_assert_eq!(r.labeled(Labeled::Key, &name), Some(Level::Deny));
        }
    }
}
