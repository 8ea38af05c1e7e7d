//! ACL requests as clients send them (`/v1/acl/*` bodies): links by ID or name, identities,
//! templated policies with their variables, expiry as a time or a TTL. The server endpoint turns
//! them into the stored records of `cairn_catalog::acl` (links resolved to IDs, times stamped).

use serde::{Deserialize, Serialize};

/// A link to a policy or role, by ID or by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LinkSpec {
    /// ID (wins over the name when both are set).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub name: String,
}

/// A service identity as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceIdentitySpec {
    /// Service name.
    pub service_name: String,
    /// Datacenters (empty: all).
    pub datacenters: Vec<String>,
}

/// A node identity as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeIdentitySpec {
    /// Node name.
    pub node_name: String,
    /// Datacenter (required).
    pub datacenter: String,
}

/// A templated policy's variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TemplateVariables {
    /// The `name` variable.
    pub name: String,
}

/// A templated policy link as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TemplatedPolicySpec {
    /// Template name (`builtin/service`, ...).
    pub template_name: String,
    /// Its variables.
    pub template_variables: Option<TemplateVariables>,
    /// Datacenters (empty: all).
    pub datacenters: Vec<String>,
}

/// `PUT /v1/acl/token[/:id]`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TokenSpec {
    /// Accessor ID (generated when empty).
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// Secret (generated when empty).
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// Description.
    pub description: String,
    /// Policies.
    pub policies: Vec<LinkSpec>,
    /// Roles.
    pub roles: Vec<LinkSpec>,
    /// Service identities.
    pub service_identities: Vec<ServiceIdentitySpec>,
    /// Node identities.
    pub node_identities: Vec<NodeIdentitySpec>,
    /// Templated policies.
    pub templated_policies: Vec<TemplatedPolicySpec>,
    /// Local to this datacenter.
    pub local: bool,
    /// Expiry, RFC 3339.
    pub expiration_time: Option<String>,
    /// Expiry as a TTL: a Go duration string or nanoseconds.
    #[serde(rename = "ExpirationTTL")]
    pub expiration_ttl: Option<serde_json::Value>,
    /// Set only by login.
    pub auth_method: String,
}

impl std::fmt::Debug for TokenSpec {
    /// The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("accessor_id", &self.accessor_id)
            .field("description", &self.description)
            .field("policies", &self.policies)
            .field("roles", &self.roles)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// `PUT /v1/acl/policy[/:id]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PolicySpec {
    /// ID (only on update).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Rules, HCL or JSON.
    pub rules: String,
    /// Datacenters (empty: all).
    pub datacenters: Vec<String>,
}

/// `PUT /v1/acl/role[/:id]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RoleSpec {
    /// ID (only on update).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Policies.
    pub policies: Vec<LinkSpec>,
    /// Service identities.
    pub service_identities: Vec<ServiceIdentitySpec>,
    /// Node identities.
    pub node_identities: Vec<NodeIdentitySpec>,
    /// Templated policies.
    pub templated_policies: Vec<TemplatedPolicySpec>,
}

/// Which token list (`GET /v1/acl/tokens` filters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFilter {
    /// Only tokens linking this policy ID.
    pub policy: Option<String>,
    /// Only tokens linking this role ID.
    pub role: Option<String>,
    /// Only tokens with a service identity of this name.
    pub service_name: Option<String>,
    /// Only tokens made by this auth method.
    pub auth_method: Option<String>,
}
