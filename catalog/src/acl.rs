//! ACL records (tokens, policies, roles) and the one command that writes them.
//!
//! Records carry resolved links: a token or role names its policies and roles by ID (the name
//! beside it is the name at write time, refreshed on output by the server), so renaming a
//! policy never breaks the tokens linked to it. Everything that needs a clock or randomness
//! (secrets, accessor IDs, creation and expiry times) is decided by the leader and arrives in
//! the command; rules are stored as written and compiled by the servers that enforce them.

use serde::{Deserialize, Serialize};

/// A link from a token or role to a policy or role, by ID (the name is informative).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclLink {
    /// The linked object's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name when the link was written.
    pub name: String,
}

/// A service identity: the synthetic policy of one service (write on it and its sidecar
/// proxy, read on every service and node).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclServiceIdentity {
    /// The service name.
    pub service_name: String,
    /// Datacenters where it applies (empty: all).
    pub datacenters: Vec<String>,
}

/// A node identity: the synthetic policy of one node in one datacenter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclNodeIdentity {
    /// The node name.
    pub node_name: String,
    /// The datacenter where it applies.
    pub datacenter: String,
}

/// A link to a built-in templated policy with its variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclTemplatedPolicy {
    /// `builtin/service`, `builtin/node`, `builtin/dns`, ...
    pub template_name: String,
    /// The template's `name` variable (empty for templates without one).
    pub name: String,
    /// Datacenters where it applies (empty: all).
    pub datacenters: Vec<String>,
}

/// A token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclToken {
    /// Public identifier.
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// The bearer secret.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// Free text.
    pub description: String,
    /// Linked policies.
    pub policies: Vec<AclLink>,
    /// Linked roles.
    pub roles: Vec<AclLink>,
    /// Service identities.
    pub service_identities: Vec<AclServiceIdentity>,
    /// Node identities.
    pub node_identities: Vec<AclNodeIdentity>,
    /// Templated policies.
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// Exists only in its datacenter (never replicated).
    pub local: bool,
    /// The auth method that created it (login tokens only).
    pub auth_method: String,
    /// Creation time, Unix milliseconds (the leader's clock).
    pub create_time_ms: u64,
    /// Expiry, Unix milliseconds: past it the token behaves as if it did not exist.
    pub expiration_ms: Option<u64>,
    /// Digest of the token's content (for change detection by clients and replication).
    pub hash: String,
    /// Index that created it.
    pub create_index: u64,
    /// Index of its last change.
    pub modify_index: u64,
}

/// A policy: named rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclPolicy {
    /// UUID (the built-ins have fixed ones).
    #[serde(rename = "ID")]
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The rules, HCL or JSON, as written.
    pub rules: String,
    /// Datacenters where it applies (empty: all).
    pub datacenters: Vec<String>,
    /// Digest of the content.
    pub hash: String,
    /// Index that created it.
    pub create_index: u64,
    /// Index of its last change.
    pub modify_index: u64,
}

/// A role: a named set of policies and identities that tokens link to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclRole {
    /// UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Linked policies.
    pub policies: Vec<AclLink>,
    /// Service identities.
    pub service_identities: Vec<AclServiceIdentity>,
    /// Node identities.
    pub node_identities: Vec<AclNodeIdentity>,
    /// Templated policies.
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// Digest of the content.
    pub hash: String,
    /// Index that created it.
    pub create_index: u64,
    /// Index of its last change.
    pub modify_index: u64,
}

/// One ACL write. The leader validated it against the state it saw; applying it checks again
/// what must hold across the whole table (unique IDs, names and secrets; the one-time
/// bootstrap), since another write may have come between.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOp {
    /// Creates (`create`: its accessor and secret must be unused) or replaces a token.
    TokenSet {
        /// The token (indexes are set by the store).
        token: AclToken,
        /// A new token.
        create: bool,
    },
    /// Deletes tokens by accessor ID (missing ones are skipped).
    TokenDelete {
        /// Accessor IDs.
        accessors: Vec<String>,
    },
    /// Creates (`create`: ID and name unused) or replaces a policy.
    PolicySet {
        /// The policy.
        policy: AclPolicy,
        /// A new policy.
        create: bool,
    },
    /// Deletes a policy (nothing if missing).
    PolicyDelete {
        /// Policy ID.
        id: String,
    },
    /// Creates (`create`) or replaces a role.
    RoleSet {
        /// The role.
        role: AclRole,
        /// A new role.
        create: bool,
    },
    /// Deletes a role (nothing if missing).
    RoleDelete {
        /// Role ID.
        id: String,
    },
    /// The one-time bootstrap: creates the management token unless the ACL system was
    /// bootstrapped already, or `reset_index` names the index of that bootstrap (the operator's
    /// reset file), which allows one more.
    Bootstrap {
        /// The management token.
        token: AclToken,
        /// The reset index the operator supplied.
        reset_index: Option<u64>,
    },
}
