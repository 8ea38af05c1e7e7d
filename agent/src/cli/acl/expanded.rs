//! `cairn acl token read -expanded`: the token with the contents of everything that grants it
//! rights (its policies, its roles and their policies, the synthetic policies of its
//! identities and templated policies), then the agent's defaults, in Consul's layered layout.
//!
//! Consul's server answers `?expanded` with all of it; when the agent's answer lacks the
//! expansion, the CLI assembles it from the policy, role and templated-policy preview
//! endpoints, so the command works against any agent that serves the plain reads.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::{Value, json};

use super::format::{Format, go_time, hash_hex, json as to_json};
use super::types::{NodeIdentity, Policy, Role, ServiceIdentity, TemplatedPolicy, Token};
use super::{Cmd, read_optional};
use crate::cli::client::Error;
use crate::cli::output::{fail, out};

/// One indentation step of the expanded layout: Consul uses tabs here.
const TAB: &str = "\t";

/// The parts of Consul's `ACLTokenExpanded` beyond the token itself.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Expansion {
    /// Every policy reachable from the token.
    expanded_policies: Vec<Policy>,
    /// Every role linked.
    expanded_roles: Vec<Role>,
    /// The resolving agent's `acl.default_policy`.
    #[serde(rename = "AgentACLDefaultPolicy")]
    agent_acl_default_policy: String,
    /// The resolving agent's `acl.down_policy`.
    #[serde(rename = "AgentACLDownPolicy")]
    agent_acl_down_policy: String,
    /// The resolving agent's node name.
    resolved_by_agent: String,
}

/// Reads the policies and roles of `token` that the agent's answer did not expand.
async fn complete(cmd: &Cmd, token: &Token, x: &mut Expansion) -> Result<(), Error> {
    for link in &token.roles {
        if x.expanded_roles.iter().any(|r| r.id == link.id) {
            continue;
        }
        let path = format!("/v1/acl/role/{}", link.id);
        if let Some(r) = read_optional::<Role>(&cmd.client, &path).await? {
            x.expanded_roles.push(r);
        }
    }
    let mut wanted: Vec<String> = token.policies.iter().map(|l| l.id.clone()).collect();
    for r in &x.expanded_roles {
        wanted.extend(r.policies.iter().map(|l| l.id.clone()));
    }
    for id in wanted {
        if x.expanded_policies.iter().any(|p| p.id == id) {
            continue;
        }
        let path = format!("/v1/acl/policy/{id}");
        if let Some(p) = read_optional::<Policy>(&cmd.client, &path).await? {
            x.expanded_policies.push(p);
        }
    }
    if x.resolved_by_agent.is_empty() {
        let me: Value = cmd.client.get_json("/v1/agent/self", &[]).await?;
        if let Some(n) = me.pointer("/Config/NodeName").and_then(Value::as_str) {
            x.resolved_by_agent = n.to_string();
        }
        let dbg = |k: &str| {
            me.pointer(&format!("/DebugConfig/ACLResolverSettings/{k}"))
                .or_else(|| me.pointer(&format!("/DebugConfig/{k}")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if let Some(d) = dbg("ACLDefaultPolicy") {
            x.agent_acl_default_policy = d;
        }
        if let Some(d) = dbg("ACLDownPolicy") {
            x.agent_acl_down_policy = d;
        }
    }
    Ok(())
}

/// The synthetic policy the agent renders for a template (`builtin/service` for `web`, ...).
async fn preview(cmd: &Cmd, template: &str, name: &str) -> Result<Policy, Error> {
    cmd.send_json(
        reqwest::Method::POST,
        &format!("/v1/acl/templated-policy/preview/{template}"),
        &json!({ "Name": name }),
    )
    .await
}

/// The synthetic policies of identities and templated policies, by a key of their link.
#[derive(Default)]
struct Synthetic {
    services: BTreeMap<String, Policy>,
    nodes: BTreeMap<String, Policy>,
    templated: BTreeMap<String, Policy>,
}

/// The key of a templated policy link.
fn templated_key(t: &TemplatedPolicy) -> String {
    let name = t
        .template_variables
        .as_ref()
        .map(|v| v.name.as_str())
        .unwrap_or("");
    format!("{}\u{0}{name}", t.template_name)
}

/// Renders the synthetic policies of every identity reachable from the token.
async fn synthetic(cmd: &Cmd, token: &Token, roles: &[Role]) -> Result<Synthetic, Error> {
    let mut s = Synthetic::default();
    let services = token
        .service_identities
        .iter()
        .chain(roles.iter().flat_map(|r| r.service_identities.iter()));
    for svc in services {
        if !s.services.contains_key(&svc.service_name) {
            let mut p = preview(cmd, "builtin/service", &svc.service_name).await?;
            p.description = format!(
                "synthetic policy for service identity {:?}",
                svc.service_name
            );
            s.services.insert(svc.service_name.clone(), p);
        }
    }
    let nodes = token
        .node_identities
        .iter()
        .chain(roles.iter().flat_map(|r| r.node_identities.iter()));
    for n in nodes {
        if !s.nodes.contains_key(&n.node_name) {
            let mut p = preview(cmd, "builtin/node", &n.node_name).await?;
            p.description = format!("synthetic policy for node identity {:?}", n.node_name);
            s.nodes.insert(n.node_name.clone(), p);
        }
    }
    for t in &token.templated_policies {
        if let Entry::Vacant(slot) = s.templated.entry(templated_key(t)) {
            let name = t
                .template_variables
                .as_ref()
                .map(|v| v.name.as_str())
                .unwrap_or("");
            slot.insert(preview(cmd, &t.template_name, name).await?);
        }
    }
    Ok(s)
}

/// Prints the token expanded, in the chosen format.
pub(super) async fn print(cmd: &Cmd, token: &Token) -> ExitCode {
    let id = &token.accessor_id;
    let path = format!("/v1/acl/token/{id}");
    let mut x: Expansion = match cmd
        .client
        .get_json::<Value>(&path, &[("expanded", String::new())])
        .await
        .and_then(|v| serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string())))
    {
        Ok(x) => x,
        Err(e) => return fail(format!("Error reading token {id:?}: {e}")),
    };
    if let Err(e) = complete(cmd, token, &mut x).await {
        return fail(format!("Error reading token {id:?}: {e}"));
    }
    if cmd.format == Format::Json {
        let mut v = match serde_json::to_value(token) {
            Ok(v) => v,
            Err(e) => return fail(format!("Failed to marshal token: {e}")),
        };
        v["ExpandedPolicies"] = json!(x.expanded_policies);
        v["ExpandedRoles"] = json!(x.expanded_roles);
        v["NamespaceDefaultPolicyIDs"] = Value::Null;
        v["NamespaceDefaultRoleIDs"] = Value::Null;
        v["AgentACLDefaultPolicy"] = json!(x.agent_acl_default_policy);
        v["AgentACLDownPolicy"] = json!(x.agent_acl_down_policy);
        v["ResolvedByAgent"] = json!(x.resolved_by_agent);
        out(&to_json(&v));
        return ExitCode::SUCCESS;
    }
    let synth = match synthetic(cmd, token, &x.expanded_roles).await {
        Ok(s) => s,
        Err(e) => return fail(format!("Error reading token {id:?}: {e}")),
    };
    out(&layout(token, &x, &synth, cmd.meta));
    ExitCode::SUCCESS
}

/// Rules indented under a `Rules:` line, each line of the text at `indent`.
fn rules(b: &mut String, text: &str, indent: &str) {
    b.push_str(&text.replace('\n', &format!("\n{indent}")));
    b.push_str("\n\n");
}

/// A policy in the expanded layout.
fn policy(b: &mut String, p: &Policy, indent: &str) {
    let _ = writeln!(b, "{indent}Policy Name: {}", p.name);
    let _ = writeln!(b, "{indent}{TAB}ID: {}", p.id);
    let _ = writeln!(b, "{indent}{TAB}Description: {}", p.description);
    let _ = writeln!(b, "{indent}{TAB}Rules:");
    b.push_str(&format!("{indent}{TAB}{TAB}"));
    rules(
        b,
        p.rules.as_deref().unwrap_or(""),
        &format!("{indent}{TAB}{TAB}"),
    );
}

/// A synthetic policy's description and rules (the rules start on the `Rules:` line, as
/// Consul's templates begin with a newline).
fn synthetic_policy(b: &mut String, p: Option<&Policy>, indent: &str) {
    let (desc, text) = p
        .map(|p| (p.description.as_str(), p.rules.as_deref().unwrap_or("")))
        .unwrap_or(("", ""));
    let _ = writeln!(b, "{indent}{TAB}Description: {desc}");
    let _ = write!(b, "{indent}{TAB}Rules:");
    let text = if text.starts_with('\n') {
        text.to_string()
    } else {
        format!("\n{text}")
    };
    rules(
        b,
        text.trim_end_matches('\n'),
        &format!("{indent}{TAB}{TAB}"),
    );
}

fn service(b: &mut String, s: &ServiceIdentity, synth: &Synthetic, indent: &str) {
    let dcs = if s.datacenters.is_empty() {
        "all".to_string()
    } else {
        s.datacenters.join(", ")
    };
    let _ = writeln!(b, "{indent}Name: {} (Datacenters: {dcs})", s.service_name);
    synthetic_policy(b, synth.services.get(&s.service_name), indent);
}

fn node(b: &mut String, n: &NodeIdentity, synth: &Synthetic, indent: &str) {
    let _ = writeln!(
        b,
        "{indent}Name: {} (Datacenter: {})",
        n.node_name, n.datacenter
    );
    synthetic_policy(b, synth.nodes.get(&n.node_name), indent);
}

/// The whole expanded layout.
fn layout(t: &Token, x: &Expansion, synth: &Synthetic, meta: bool) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "AccessorID:       {}", t.accessor_id);
    let _ = writeln!(b, "SecretID:         {}", t.secret_id);
    let _ = writeln!(b, "Description:      {}", t.description);
    let _ = writeln!(b, "Local:            {}", t.local);
    if !t.auth_method.is_empty() {
        let _ = writeln!(b, "Auth Method:      {} (Namespace: )", t.auth_method);
    }
    let _ = writeln!(b, "Create Time:      {}", go_time(&t.create_time));
    if let Some(e) = t.expiration_time.as_deref().filter(|e| !e.is_empty()) {
        let _ = writeln!(b, "Expiration Time:  {}", go_time(e));
    }
    if meta {
        let _ = writeln!(b, "Hash:             {}", hash_hex(&t.hash));
        let _ = writeln!(b, "Create Index:     {}", t.create_index);
        let _ = writeln!(b, "Modify Index:     {}", t.modify_index);
    }
    let find_policy = |id: &str| {
        x.expanded_policies
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .unwrap_or_default()
    };
    if !t.policies.is_empty() {
        b.push_str("Policies:\n");
        for l in &t.policies {
            policy(&mut b, &find_policy(&l.id), TAB);
        }
    }
    if !t.service_identities.is_empty() {
        b.push_str("Service Identities:\n");
        for s in &t.service_identities {
            service(&mut b, s, synth, TAB);
        }
    }
    if !t.node_identities.is_empty() {
        b.push_str("Node Identities:\n");
        for n in &t.node_identities {
            node(&mut b, n, synth, TAB);
        }
    }
    if !t.templated_policies.is_empty() {
        b.push_str("Templated Policies:\n");
        for tp in &t.templated_policies {
            let _ = writeln!(b, "{TAB}{}", tp.template_name);
            if let Some(v) = tp
                .template_variables
                .as_ref()
                .filter(|v| !v.name.is_empty())
            {
                let _ = writeln!(b, "{TAB}{TAB}Name: {}", v.name);
            }
            let dcs = if tp.datacenters.is_empty() {
                "all".to_string()
            } else {
                tp.datacenters.join(", ")
            };
            let _ = writeln!(b, "{TAB}{TAB}Datacenters: {dcs}");
            synthetic_policy(&mut b, synth.templated.get(&templated_key(tp)), TAB);
        }
    }
    if !t.roles.is_empty() {
        b.push_str("Roles:\n");
        let inner = format!("{TAB}{TAB}{TAB}");
        for l in &t.roles {
            let r = x
                .expanded_roles
                .iter()
                .find(|r| r.id == l.id)
                .cloned()
                .unwrap_or_default();
            let _ = writeln!(b, "{TAB}Role Name: {}", r.name);
            let _ = writeln!(b, "{TAB}{TAB}ID: {}", r.id);
            let _ = writeln!(b, "{TAB}{TAB}Description: {}", r.description);
            if !r.policies.is_empty() {
                let _ = writeln!(b, "{TAB}{TAB}Policies:");
                for pl in &r.policies {
                    policy(&mut b, &find_policy(&pl.id), &inner);
                }
            }
            if !r.service_identities.is_empty() {
                let _ = writeln!(b, "{TAB}{TAB}Service Identities:");
                for s in &r.service_identities {
                    service(&mut b, s, synth, &inner);
                }
            }
            if !r.node_identities.is_empty() {
                let _ = writeln!(b, "{TAB}{TAB}Node Identities:");
                for n in &r.node_identities {
                    node(&mut b, n, synth, &inner);
                }
            }
        }
    }
    b.push_str("=== End of Authorizer Layer 0: Token ===\n");
    b.push_str("=== Start of Authorizer Layer 2: Agent Configuration Defaults (Inherited) ===\n");
    b.push_str(
        "Description: Defined at request-time by the agent that resolves the ACL token; other \
         agents may have different configuration defaults\n",
    );
    let _ = write!(b, "Resolved By Agent: {:?}\n\n", x.resolved_by_agent);
    let _ = writeln!(b, "Default Policy: {}", x.agent_acl_default_policy);
    b.push_str(
        "\tDescription: Backstop rule used if no preceding layer has a matching rule (refer to \
         default_policy option in agent configuration)\n\n",
    );
    let _ = writeln!(b, "Down Policy: {}", x.agent_acl_down_policy);
    b.push_str(
        "\tDescription: Defines what to do if this Token's information cannot be read from the \
         primary_datacenter (refer to down_policy option in agent configuration)\n\n",
    );
    b
}

#[cfg(test)]
mod tests {
    use super::super::types::Link;
    use super::*;

    /// Policies nest under their link with tab indentation, rules indented line by line,
    /// and the layers close the output.
    #[test]
    fn expanded_layout() {
        let t = Token {
            accessor_id: "a".into(),
            secret_id: "s".into(),
            create_time: "2025-07-01T10:00:00Z".into(),
            policies: vec![Link {
                id: "p1".into(),
                name: "web".into(),
            }],
            service_identities: vec![ServiceIdentity {
                service_name: "api".into(),
                datacenters: vec![],
            }],
            ..Token::default()
        };
        let x = Expansion {
            expanded_policies: vec![Policy {
                id: "p1".into(),
                name: "web".into(),
                rules: Some("key \"a\" {\n  policy = \"read\"\n}".into()),
                ..Policy::default()
            }],
            agent_acl_default_policy: "deny".into(),
            agent_acl_down_policy: "extend-cache".into(),
            resolved_by_agent: "n1".into(),
            ..Expansion::default()
        };
        let mut synth = Synthetic::default();
        synth.services.insert(
            "api".into(),
            Policy {
                description: "synthetic policy for service identity \"api\"".into(),
                rules: Some("service \"api\" {\n  policy = \"write\"\n}".into()),
                ..Policy::default()
            },
        );
        let text = layout(&t, &x, &synth, false);
        assert!(
            text.contains(
                "Policies:\n\tPolicy Name: web\n\t\tID: p1\n\t\tDescription: \n\t\tRules:\n\t\t\t\
                 key \"a\" {\n\t\t\t  policy = \"read\"\n\t\t\t}\n\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Service Identities:\n\tName: api (Datacenters: all)\n\t\tDescription: synthetic \
                 policy for service identity \"api\"\n\t\tRules:\n\t\t\tservice \"api\" {\n\t\t\t  \
                 policy = \"write\"\n\t\t\t}\n\n"
            ),
            "{text}"
        );
        assert!(text.contains("Resolved By Agent: \"n1\"\n\nDefault Policy: deny\n"));
        assert!(text.ends_with("(refer to down_policy option in agent configuration)\n\n"));
    }
}
