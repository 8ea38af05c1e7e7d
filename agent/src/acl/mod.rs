//! Authorization: every server endpoint resolves the request's token to an [`Authorizer`] and
//! asks it for each resource the request touches, before anything is read or written. Reads
//! of lists filter what the token may not see instead of failing.
//!
//! ACLs are not enforced yet: every token resolves to an authorizer that allows everything,
//! as Consul with `acl.enabled = false`. The ACL system replaces [`Acl::resolve`]; the
//! endpoints already name what they need.

use crate::api::{Error, Token};

/// What a request touches, in Consul's rule vocabulary (`<resource>:<level>`).
///
/// Borrowed names: an endpoint names the resource it already holds, with no allocation per check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
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
    /// `key:write` on every key under a prefix (recursive deletes).
    KeyWritePrefix(&'a str),
    /// `session:write` on a node's sessions.
    SessionWrite(&'a str),
    /// `session:read` on a node's sessions.
    SessionRead(&'a str),
    /// `query:write` on a prepared query name.
    QueryWrite(&'a str),
    /// `operator:write`.
    OperatorWrite,
    /// `operator:read`.
    OperatorRead,
}

/// The permissions of one resolved token.
///
/// Resolved once per request, before any check: a request sees one consistent set of permissions
/// even if the token's policies change meanwhile.
#[derive(Clone, Debug)]
pub struct Authorizer {
    allow_all: bool,
}

impl Authorizer {
    /// An authorizer that allows everything (ACLs disabled).
    pub fn allow_all() -> Authorizer {
        Authorizer { allow_all: true }
    }

    /// Whether `access` is allowed.
    ///
    /// Lists use this to drop what the token may not see, where `require` would refuse the whole
    /// read.
    pub fn allows(&self, access: Access<'_>) -> bool {
        let _ = access;
        self.allow_all
    }

    /// Fails with Consul's "Permission denied" when `access` is not allowed.
    pub fn require(&self, access: Access<'_>) -> Result<(), Error> {
        if self.allows(access) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "Permission denied: token lacks permission for {access:?}"
            )))
        }
    }
}

/// Resolves tokens to authorizers.
///
/// Empty for now: the place where tokens, policies and their cache will live, so the server already
/// holds one and the endpoints already call it.
#[derive(Clone, Debug, Default)]
pub struct Acl {}

impl Acl {
    /// ACLs disabled: every token may do everything.
    pub fn disabled() -> Acl {
        Acl {}
    }

    /// The authorizer of `token` (`None`: the agent's default token).
    pub fn resolve(&self, token: Option<&Token>) -> Result<Authorizer, Error> {
        let _ = token;
        Ok(Authorizer::allow_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_acls_allow_every_access_whatever_the_token() {
        let acl = Acl::disabled();
        for token in [None, Some(Token("secret".into()))] {
            let authz = acl.resolve(token.as_ref()).expect("resolves");
            assert!(authz.require(Access::KeyWrite("a")).is_ok());
            assert!(authz.require(Access::OperatorWrite).is_ok());
        }
        let denied = Authorizer { allow_all: false };
        assert!(matches!(
            denied.require(Access::KeyWrite("a")),
            Err(Error::PermissionDenied(_))
        ));
    }
}
