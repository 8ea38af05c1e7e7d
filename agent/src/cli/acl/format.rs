//! The output of the `cairn acl` commands: Consul's `pretty` layouts for tokens, policies and
//! roles (padded labels, `   <id> - <name>` link lines, Go's default time format) and its
//! `json` layout (`json.MarshalIndent` with four spaces).
//!
//! Byte for byte as Consul's formatters (`command/acl/{token,policy,role}/formatter.go`), since
//! runbooks extract the SecretID of a new token with `awk '/SecretID/ {print $2}'`.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::types::{NodeIdentity, Policy, Role, ServiceIdentity, TemplatedPolicy, Token};
use crate::cli::output::json_indent;

/// The output format chosen with `-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Consul's human layout.
    Pretty,
    /// The object as indented JSON.
    Json,
}

impl Format {
    /// Parses `-format`, with Consul's error for anything else.
    pub(crate) fn parse(s: &str) -> Result<Format, String> {
        match s {
            "pretty" => Ok(Format::Pretty),
            "json" => Ok(Format::Json),
            other => Err(format!("Unknown format: {other}")),
        }
    }
}

/// JSON as Consul prints it: `json.MarshalIndent(v, "", "    ")`.
pub(crate) fn json<T: Serialize>(v: &T) -> String {
    json_indent(v, "    ")
}

/// An RFC 3339 time as Go's `time.Time` prints with `%v`:
/// `2025-07-01 10:00:00.123456 +0000 UTC` (fraction without trailing zeros, none when zero).
///
/// A time with a non-UTC offset prints the offset twice (`+0200 +0200`), as Go does for a parsed
/// time whose zone is not the local one. Text that is not a time is printed as it came.
pub(crate) fn go_time(s: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) else {
        return s.to_string();
    };
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let offset = t.format("%z").to_string();
    let utc = s.ends_with('Z') || s.ends_with('z');
    let zone = if utc {
        "UTC".to_string()
    } else {
        offset.clone()
    };
    let _ = write!(out, " {offset} {zone}");
    out
}

/// A base64 hash as Go's `%x` prints the bytes: lower-case hex.
pub(crate) fn hash_hex(b64: &str) -> String {
    STANDARD
        .decode(b64)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// The datacenters of an identity, `all` when unrestricted.
fn datacenters(dcs: &[String]) -> String {
    if dcs.is_empty() {
        "all".to_string()
    } else {
        dcs.join(", ")
    }
}

/// The link sections shared by tokens and roles, with the indentation of their context.
fn links(
    b: &mut String,
    indent: &str,
    policies: &[super::types::Link],
    roles: &[super::types::Link],
    services: &[ServiceIdentity],
    nodes: &[NodeIdentity],
    templated: &[TemplatedPolicy],
) {
    let item = format!("{indent}   ");
    if !policies.is_empty() {
        let _ = writeln!(b, "{indent}Policies:");
        for p in policies {
            let _ = writeln!(b, "{item}{} - {}", p.id, p.name);
        }
    }
    if !roles.is_empty() {
        let _ = writeln!(b, "{indent}Roles:");
        for r in roles {
            let _ = writeln!(b, "{item}{} - {}", r.id, r.name);
        }
    }
    if !services.is_empty() {
        let _ = writeln!(b, "{indent}Service Identities:");
        for s in services {
            let dcs = datacenters(&s.datacenters);
            let _ = writeln!(b, "{item}{} (Datacenters: {dcs})", s.service_name);
        }
    }
    if !nodes.is_empty() {
        let _ = writeln!(b, "{indent}Node Identities:");
        for n in nodes {
            let _ = writeln!(b, "{item}{} (Datacenter: {})", n.node_name, n.datacenter);
        }
    }
    if !templated.is_empty() {
        let _ = writeln!(b, "{indent}Templated Policies:");
        for t in templated {
            let _ = writeln!(b, "{item}{}", t.template_name);
            if let Some(v) = t.template_variables.as_ref().filter(|v| !v.name.is_empty()) {
                let _ = writeln!(b, "{item}   Name: {}", v.name);
            }
            let _ = writeln!(b, "{item}   Datacenters: {}", datacenters(&t.datacenters));
        }
    }
}

/// The head of a token: IDs, description, locality, times and, with `meta`, hash and indexes.
fn token_head(b: &mut String, t: &Token, meta: bool) {
    let _ = writeln!(b, "AccessorID:       {}", t.accessor_id);
    let _ = writeln!(b, "SecretID:         {}", t.secret_id);
    let _ = writeln!(b, "Description:      {}", t.description);
    let _ = writeln!(b, "Local:            {}", t.local);
    if !t.auth_method.is_empty() {
        // Consul prints the method's namespace, empty outside Enterprise.
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
}

/// One token in the pretty layout (also a token list entry: Consul prints both alike).
pub(crate) fn token(t: &Token, meta: bool) -> String {
    let mut b = String::new();
    token_head(&mut b, t, meta);
    links(
        &mut b,
        "",
        &t.policies,
        &t.roles,
        &t.service_identities,
        &t.node_identities,
        &t.templated_policies,
    );
    b
}

/// A token list: entries separated by a blank line.
pub(crate) fn token_list(tokens: &[Token], meta: bool) -> String {
    tokens
        .iter()
        .map(|t| token(t, meta))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One policy: labels padded to column 15, then `Rules:` and the rules as written.
pub(crate) fn policy(p: &Policy, meta: bool) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "ID:           {}", p.id);
    let _ = writeln!(b, "Name:         {}", p.name);
    let _ = writeln!(b, "Description:  {}", p.description);
    let dcs = p.datacenters.as_deref().unwrap_or_default().join(", ");
    let _ = writeln!(b, "Datacenters:  {dcs}");
    if meta {
        let _ = writeln!(b, "Hash:         {}", hash_hex(&p.hash));
        let _ = writeln!(b, "Create Index: {}", p.create_index);
        let _ = writeln!(b, "Modify Index: {}", p.modify_index);
    }
    b.push_str("Rules:\n");
    b.push_str(p.rules.as_deref().unwrap_or_default());
    b
}

/// A policy list: `<name>:` then the fields indented, one entry after the other.
pub(crate) fn policy_list(policies: &[Policy], meta: bool) -> String {
    let mut b = String::new();
    for p in policies {
        let _ = writeln!(b, "{}:", p.name);
        let _ = writeln!(b, "   ID:           {}", p.id);
        let _ = writeln!(b, "   Description:  {}", p.description);
        let dcs = p.datacenters.as_deref().unwrap_or_default().join(", ");
        let _ = writeln!(b, "   Datacenters:  {dcs}");
        if meta {
            let _ = writeln!(b, "   Hash:         {}", hash_hex(&p.hash));
            let _ = writeln!(b, "   Create Index: {}", p.create_index);
            let _ = writeln!(b, "   Modify Index: {}", p.modify_index);
        }
    }
    b
}

/// The fields of a role, with the indentation of their context (a list nests them).
fn role_fields(b: &mut String, r: &Role, meta: bool, indent: &str) {
    let _ = writeln!(b, "{indent}ID:           {}", r.id);
    if indent.is_empty() {
        let _ = writeln!(b, "Name:         {}", r.name);
    }
    let _ = writeln!(b, "{indent}Description:  {}", r.description);
    if meta {
        let _ = writeln!(b, "{indent}Hash:         {}", hash_hex(&r.hash));
        let _ = writeln!(b, "{indent}Create Index: {}", r.create_index);
        let _ = writeln!(b, "{indent}Modify Index: {}", r.modify_index);
    }
    links(
        b,
        indent,
        &r.policies,
        &[],
        &r.service_identities,
        &r.node_identities,
        &r.templated_policies,
    );
}

/// One role.
pub(crate) fn role(r: &Role, meta: bool) -> String {
    let mut b = String::new();
    role_fields(&mut b, r, meta, "");
    b
}

/// A role list: `<name>:` then the fields indented, one entry after the other.
pub(crate) fn role_list(roles: &[Role], meta: bool) -> String {
    let mut b = String::new();
    for r in roles {
        let _ = writeln!(b, "{}:", r.name);
        role_fields(&mut b, r, meta, "   ");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::types::{Link, TemplateVariables};
    use super::*;

    /// Go's `%v` of a parsed time: fraction trimmed, `+0000 UTC` for `Z`.
    #[test]
    fn times_as_go_prints_them() {
        assert_eq!(
            go_time("2025-07-01T10:00:00.123456Z"),
            "2025-07-01 10:00:00.123456 +0000 UTC"
        );
        assert_eq!(
            go_time("2025-07-01T10:00:00Z"),
            "2025-07-01 10:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time("2025-07-01T10:00:00.5+02:00"),
            "2025-07-01 10:00:00.5 +0200 +0200"
        );
        assert_eq!(go_time("garbage"), "garbage");
    }

    #[test]
    fn hash_is_hex() {
        assert_eq!(hash_hex("3q2+7w=="), "deadbeef");
        assert_eq!(hash_hex("!"), "");
    }

    /// The documented token layout, with every optional section.
    #[test]
    fn token_layout() {
        let t = Token {
            accessor_id: "3f0c2a9e-1b7d-4c55-9e21-6a8d0b4f7c13".into(),
            secret_id: "c7e19b42-58a0-4f6e-b3d9-02f4e8a1d765".into(),
            description: "Bootstrap Token (Global Management)".into(),
            create_time: "2025-07-01T10:00:00.123456Z".into(),
            expiration_time: Some("2025-07-01T11:00:00Z".into()),
            hash: "3q2+7w==".into(),
            create_index: 7,
            modify_index: 9,
            policies: vec![Link {
                id: "00000000-0000-0000-0000-000000000001".into(),
                name: "global-management".into(),
            }],
            roles: vec![Link {
                id: "r1".into(),
                name: "ops".into(),
            }],
            service_identities: vec![
                ServiceIdentity {
                    service_name: "web".into(),
                    datacenters: vec![],
                },
                ServiceIdentity {
                    service_name: "db".into(),
                    datacenters: vec!["dc1".into(), "dc2".into()],
                },
            ],
            node_identities: vec![NodeIdentity {
                node_name: "n1".into(),
                datacenter: "dc1".into(),
            }],
            templated_policies: vec![TemplatedPolicy {
                template_name: "builtin/service".into(),
                template_variables: Some(TemplateVariables { name: "api".into() }),
                datacenters: vec![],
            }],
            ..Token::default()
        };
        assert_eq!(
            token(&t, true),
            "AccessorID:       3f0c2a9e-1b7d-4c55-9e21-6a8d0b4f7c13\n\
             SecretID:         c7e19b42-58a0-4f6e-b3d9-02f4e8a1d765\n\
             Description:      Bootstrap Token (Global Management)\n\
             Local:            false\n\
             Create Time:      2025-07-01 10:00:00.123456 +0000 UTC\n\
             Expiration Time:  2025-07-01 11:00:00 +0000 UTC\n\
             Hash:             deadbeef\n\
             Create Index:     7\n\
             Modify Index:     9\n\
             Policies:\n   \
                00000000-0000-0000-0000-000000000001 - global-management\n\
             Roles:\n   \
                r1 - ops\n\
             Service Identities:\n   \
                web (Datacenters: all)\n   \
                db (Datacenters: dc1, dc2)\n\
             Node Identities:\n   \
                n1 (Datacenter: dc1)\n\
             Templated Policies:\n   \
                builtin/service\n      \
                   Name: api\n      \
                   Datacenters: all\n"
        );
        let two = token_list(&[t.clone(), t], false);
        assert_eq!(two.matches("\n\nAccessorID:").count(), 1, "{two}");
    }

    #[test]
    fn policy_and_role_layouts() {
        let p = Policy {
            id: "i".into(),
            name: "web".into(),
            description: "d".into(),
            rules: Some("service \"web\" { policy = \"write\" }".into()),
            datacenters: Some(vec!["dc1".into(), "dc2".into()]),
            ..Policy::default()
        };
        assert_eq!(
            policy(&p, false),
            "ID:           i\nName:         web\nDescription:  d\nDatacenters:  dc1, dc2\n\
             Rules:\nservice \"web\" { policy = \"write\" }"
        );
        assert_eq!(
            policy_list(&[p], false),
            "web:\n   ID:           i\n   Description:  d\n   Datacenters:  dc1, dc2\n"
        );
        let r = Role {
            id: "r".into(),
            name: "ops".into(),
            policies: vec![Link {
                id: "i".into(),
                name: "web".into(),
            }],
            ..Role::default()
        };
        assert_eq!(
            role(&r, false),
            "ID:           r\nName:         ops\nDescription:  \nPolicies:\n   i - web\n"
        );
        assert_eq!(
            role_list(&[r], false),
            "ops:\n   ID:           r\n   Description:  \n   Policies:\n      i - web\n"
        );
    }
}
