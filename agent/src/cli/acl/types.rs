//! The ACL objects as the CLI reads them from the agent and prints them with `-format=json`:
//! tokens, policies and roles, with their fields in the order of Consul's Go client structs
//! (`api.ACLToken`, `api.ACLPolicy`, `api.ACLRole`).
//!
//! The order matters because Consul's `-format=json` output is `json.MarshalIndent` of those
//! structs, and scripts diff or grep it; serde writes fields in declaration order, so the
//! declarations below follow Go's. Request bodies are built separately (`serde_json::json!`),
//! so that output-only fields (indexes, hash, create time) never go back to the agent.

use serde::{Deserialize, Serialize};

/// A link from a token or role to a policy or role, by ID and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Link {
    /// The linked object's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name, resolved by the agent at read time.
    pub name: String,
}

/// A service identity: the synthetic policy of a service (and its sidecar).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ServiceIdentity {
    /// The service name.
    pub service_name: String,
    /// Datacenters where it applies; empty means all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity: the synthetic policy of one node in one datacenter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NodeIdentity {
    /// The node name.
    pub node_name: String,
    /// Its datacenter (required by the agent).
    pub datacenter: String,
}

/// A templated policy's variables; Consul's JSON spells the one variable in lower case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TemplateVariables {
    /// The `name` variable (a service or node name).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A link to a built-in policy template with its variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TemplatedPolicy {
    /// The template (`builtin/service`, ...).
    pub template_name: String,
    /// Its variables, when it takes any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<TemplateVariables>,
    /// Datacenters where it applies; empty means all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A token, as read, created or listed.
///
/// `Debug` is not derived: the secret must not end up in a log line through `{:?}`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Token {
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// The public ID.
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// The bearer secret (`<hidden>` for readers without `acl:write`).
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// Free text.
    pub description: String,
    /// Linked policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    /// Linked roles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Link>,
    /// Service identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    /// Node identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    /// Templated policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    /// Whether the token stays in its datacenter.
    pub local: bool,
    /// The auth method that minted it (login tokens only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    /// When it expires, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// When it was created, RFC 3339.
    pub create_time: String,
    /// Content hash, base64.
    pub hash: String,
    /// Only in list entries, as Go's `ACLTokenListEntry` carries it (always false here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<bool>,
}

/// A policy, as read or listed (a list entry has no rules).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Policy {
    /// Its ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The rules, HCL or JSON; absent from list entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    /// Datacenters where it applies; `null` (Go's nil slice) means all.
    pub datacenters: Option<Vec<String>>,
    /// Content hash, base64.
    pub hash: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A role: a named set of policy links and identities.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Role {
    /// Its ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Linked policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    /// Service identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    /// Node identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    /// Templated policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    /// Content hash, base64.
    pub hash: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields come out in Go's order, empty link lists are left out and a policy without
    /// datacenters shows `null`, as `json.Marshal` of Consul's structs does.
    #[test]
    fn json_field_order_as_go() {
        let t: Token = serde_json::from_str(
            r#"{"AccessorID":"a","SecretID":"s","Description":"d","Local":false,
                "CreateTime":"2025-07-01T10:00:00Z","Hash":"AA==","CreateIndex":5,"ModifyIndex":6,
                "Policies":[{"ID":"p","Name":"n"}]}"#,
        )
        .expect("token");
        let s = serde_json::to_string(&t).expect("json");
        assert_eq!(
            s,
            r#"{"CreateIndex":5,"ModifyIndex":6,"AccessorID":"a","SecretID":"s","Description":"d","Policies":[{"ID":"p","Name":"n"}],"Local":false,"CreateTime":"2025-07-01T10:00:00Z","Hash":"AA=="}"#
        );
        let p: Policy = serde_json::from_str(r#"{"ID":"i","Name":"n","Rules":"r"}"#).expect("p");
        let s = serde_json::to_string(&p).expect("json");
        assert!(s.contains(r#""Rules":"r","Datacenters":null"#), "{s}");
    }
}
