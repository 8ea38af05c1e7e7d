//! The ACL objects every cluster has (the global-management and global-read-only policies, the
//! anonymous token), the synthetic policies of service and node identities and of the built-in
//! templated policies, and the merge of everything a token links to into one set of rules.
//!
//! IDs, names and rule texts are Consul's, so tokens and tools written for Consul find them.

use cairn_catalog::State;
use cairn_catalog::acl::{AclNodeIdentity, AclServiceIdentity, AclTemplatedPolicy, AclToken};

use super::rules::Rules;

/// The global-management policy's fixed ID.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
/// The global-management policy's name.
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// The global-read-only policy's fixed ID.
pub const GLOBAL_READ_ONLY_ID: &str = "00000000-0000-0000-0000-000000000002";
/// The global-read-only policy's name.
pub const GLOBAL_READ_ONLY_NAME: &str = "builtin/global-read-only";
/// The anonymous token's accessor ID.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
/// The anonymous token's secret.
pub const ANONYMOUS_SECRET: &str = "anonymous";
/// The prefix of IDs Consul reserves for built-in objects.
pub const RESERVED_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

/// The rules of the global-management policy (informative: its tokens bypass rules).
pub const GLOBAL_MANAGEMENT_RULES: &str = r#"
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}"#;

/// The rules of the global-read-only policy.
pub const GLOBAL_READ_ONLY_RULES: &str = r#"
acl = "read"
agent_prefix "" {
  policy = "read"
}
event_prefix "" {
  policy = "read"
}
key_prefix "" {
  policy = "read"
}
keyring = "read"
node_prefix "" {
  policy = "read"
}
operator = "read"
mesh = "read"
peering = "read"
query_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
  intentions = "read"
}
session_prefix "" {
  policy = "read"
}"#;

/// A built-in templated policy: name, fixed ID, whether it takes a `name` variable, and its
/// template (`${name}` replaced).
pub struct Template {
    /// `builtin/service`, ...
    pub name: &'static str,
    /// Fixed ID.
    pub id: &'static str,
    /// Whether the template needs the `name` variable.
    pub needs_name: bool,
    /// Description.
    pub description: &'static str,
    /// The rules, `${name}` standing for the variable.
    pub template: &'static str,
}

/// Consul's built-in templated policies (community edition).
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        needs_name: true,
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        template: "service \"${name}\" {\n  policy = \"write\"\n}\nservice \"${name}-sidecar-proxy\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}",
    },
    Template {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        needs_name: true,
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        template: "node \"${name}\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}",
    },
    Template {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        needs_name: false,
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        template: "node_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\nquery_prefix \"\" {\n  policy = \"read\"\n}",
    },
    Template {
        name: "builtin/nomad-server",
        id: "00000000-0000-0000-0000-000000000006",
        needs_name: false,
        description: "Gives the token or role permissions required for integration with a nomad server.",
        template: "acl = \"write\"\nagent_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}",
    },
    Template {
        name: "builtin/nomad-client",
        id: "00000000-0000-0000-0000-000000000009",
        needs_name: false,
        description: "Gives the token or role permissions required for integration with a nomad client.",
        template: "agent_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}\nkey_prefix \"\" {\n  policy = \"read\"\n}",
    },
];

/// The built-in template of this name.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// The rules a template gives for `var` (its `name` variable).
pub fn render_template(t: &Template, var: &str) -> String {
    t.template.replace("${name}", var)
}

/// The synthetic rules of a service identity.
pub fn service_identity_rules(name: &str) -> String {
    template("builtin/service")
        .map(|t| render_template(t, name))
        .unwrap_or_default()
}

/// The synthetic rules of a node identity.
pub fn node_identity_rules(name: &str) -> String {
    template("builtin/node")
        .map(|t| render_template(t, name))
        .unwrap_or_default()
}

/// Whether a datacenter list lets an object apply in `dc` (empty: everywhere).
fn applies(dcs: &[String], dc: &str) -> bool {
    dcs.is_empty() || dcs.iter().any(|d| d == dc)
}

/// Everything a token grants in datacenter `dc`, merged: its policies, its roles' policies, and
/// the identities and templates of both. `true` when it links the global-management policy.
///
/// Links to objects that no longer exist are skipped (they grant nothing), as in Consul.
/// Rules that no longer parse (written by a newer version) are skipped too, with a log line:
/// they grant nothing rather than failing every request of the token.
pub fn token_rules(state: &State, token: &AclToken, dc: &str) -> (Rules, bool) {
    let (texts, manage) = token_rule_texts(state, token, dc);
    let mut rules = Rules::default();
    for (what, text) in &texts {
        add(&mut rules, text, what);
    }
    (rules, manage)
}

/// The rule texts [`token_rules`] merges, each with what it came from (a policy's name, an
/// identity), and whether the token manages: what a server sends a client agent that resolves
/// a token.
pub fn token_rule_texts(
    state: &State,
    token: &AclToken,
    dc: &str,
) -> (Vec<(String, String)>, bool) {
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut manage = false;
    let mut policy_ids: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
    let mut services: Vec<&AclServiceIdentity> = token.service_identities.iter().collect();
    let mut nodes: Vec<&AclNodeIdentity> = token.node_identities.iter().collect();
    let mut templates: Vec<&AclTemplatedPolicy> = token.templated_policies.iter().collect();
    let roles: Vec<_> = token
        .roles
        .iter()
        .filter_map(|l| state.acl_role(&l.id))
        .collect();
    for role in &roles {
        policy_ids.extend(role.policies.iter().map(|l| l.id.as_str()));
        services.extend(role.service_identities.iter());
        nodes.extend(role.node_identities.iter());
        templates.extend(role.templated_policies.iter());
    }
    for id in policy_ids {
        let Some(p) = state.acl_policy(id) else {
            continue;
        };
        if !applies(&p.datacenters, dc) {
            continue;
        }
        if p.id == GLOBAL_MANAGEMENT_ID {
            manage = true;
            continue;
        }
        texts.push((p.name.clone(), p.rules.clone()));
    }
    for s in services {
        if applies(&s.datacenters, dc) {
            texts.push((
                "service identity".into(),
                service_identity_rules(&s.service_name),
            ));
        }
    }
    for n in nodes {
        if n.datacenter == dc {
            texts.push(("node identity".into(), node_identity_rules(&n.node_name)));
        }
    }
    for t in templates {
        if !applies(&t.datacenters, dc) {
            continue;
        }
        if let Some(tpl) = template(&t.template_name) {
            texts.push((tpl.name.to_string(), render_template(tpl, &t.name)));
        }
    }
    (texts, manage)
}

/// Adds one rules text, skipping (with a log line) one that does not parse.
pub fn add(rules: &mut Rules, text: &str, what: &str) {
    if let Err(e) = rules.add(text) {
        tracing::warn!(policy = %what, error = %e, "ACL rules skipped: they do not parse");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::rules::{Global, Labeled, Level};

    #[test]
    fn built_in_rules_and_templates_parse() {
        for text in [GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES] {
            Rules::parse(text).expect("built-in rules parse");
        }
        for t in TEMPLATES {
            Rules::parse(&render_template(t, "web")).expect(t.name);
        }
        let ro = Rules::parse(GLOBAL_READ_ONLY_RULES).expect("parses");
        assert_eq!(ro.global(Global::Acl), Some(Level::Read));
        assert_eq!(ro.labeled(Labeled::Key, "any"), Some(Level::Read));
    }

    #[test]
    fn a_service_identity_writes_its_service_and_sidecar_and_reads_the_rest() {
        let r = Rules::parse(&service_identity_rules("web")).expect("parses");
        assert_eq!(r.labeled(Labeled::Service, "web"), Some(Level::Write));
        assert_eq!(
            r.labeled(Labeled::Service, "web-sidecar-proxy"),
            Some(Level::Write)
        );
        assert_eq!(r.labeled(Labeled::Service, "db"), Some(Level::Read));
        assert_eq!(r.labeled(Labeled::Node, "n1"), Some(Level::Read));
        assert_eq!(r.labeled(Labeled::Key, "k"), None);
    }
}
