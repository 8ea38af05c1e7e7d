//! The agent's own tokens (`acl.tokens.*`): the default token of requests without one, the
//! agent token of its node registration, the recovery token of its agent endpoints, and the
//! others Consul names. Replaced through `PUT /v1/agent/token/:kind`, and kept in
//! `<data_dir>/acl-tokens.json` when `acl.enable_token_persistence` is on, where they override
//! the configuration at the next start, as in Consul.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;

/// The file persisted tokens live in.
pub const PERSIST_FILE: &str = "acl-tokens.json";

/// The canonical token kind for a path segment of `/v1/agent/token/:kind` (legacy names
/// included), `None` when unknown.
pub fn canonical(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "default" | "acl_token" => "default",
        "agent" | "acl_agent_token" => "agent",
        "agent_recovery" | "agent_master" | "acl_agent_master_token" => "agent_recovery",
        "replication" | "acl_replication_token" => "replication",
        "config_file_service_registration" => "config_file_service_registration",
        "dns" | "dns_token" => "dns",
        _ => return None,
    })
}

/// The agent's tokens.
#[derive(Default)]
pub struct TokenStore {
    tokens: RwLock<BTreeMap<&'static str, String>>,
    persist_to: Option<PathBuf>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenStore(redacted)")
    }
}

impl TokenStore {
    /// The tokens of the configuration, overridden by persisted ones when persistence is on.
    pub fn new(config: &crate::config::Config) -> TokenStore {
        let mut tokens = BTreeMap::new();
        for (k, v) in &config.acl.tokens {
            if let Some(kind) = canonical(k) {
                tokens.insert(kind, v.clone());
            }
        }
        let persist_to = config
            .data_dir
            .as_ref()
            .filter(|_| config.acl.enable_token_persistence && !config.dev)
            .map(|d| d.join(PERSIST_FILE));
        if let Some(path) = &persist_to
            && let Ok(text) = std::fs::read_to_string(path)
        {
            match serde_json::from_str::<BTreeMap<String, String>>(&text) {
                Ok(saved) => {
                    for (k, v) in saved {
                        if let Some(kind) = canonical(&k)
                            && !v.is_empty()
                        {
                            tokens.insert(kind, v);
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "persisted ACL tokens unreadable; using the configured ones"
                ),
            }
        }
        TokenStore {
            tokens: RwLock::new(tokens),
            persist_to,
        }
    }

    /// The token of `kind` (`None`: unset).
    pub fn get(&self, kind: &str) -> Option<String> {
        let t = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        t.get(kind).filter(|v| !v.is_empty()).cloned()
    }

    /// Sets the token of `kind` (empty: unset).
    pub fn set(&self, kind: &'static str, value: &str) {
        let mut t = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        if value.is_empty() {
            t.remove(kind);
        } else {
            t.insert(kind, value.to_string());
        }
    }

    /// Writes the tokens to the data directory (with persistence on), readable by the agent's
    /// user only.
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.persist_to else {
            return Ok(());
        };
        let map: BTreeMap<String, String> = {
            let t = self.tokens.read().unwrap_or_else(|p| p.into_inner());
            t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let text = serde_json::to_vec(&map).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_kinds_map_to_current_ones_and_unknown_ones_do_not() {
        assert_eq!(canonical("acl_token"), Some("default"));
        assert_eq!(canonical("agent_master"), Some("agent_recovery"));
        assert_eq!(canonical("dns_token"), Some("dns"));
        assert_eq!(canonical("foo"), None);
        let s = TokenStore::default();
        s.set("default", "x");
        assert_eq!(s.get("default").as_deref(), Some("x"));
        s.set("default", "");
        assert_eq!(s.get("default"), None);
        assert_eq!(format!("{s:?}"), "TokenStore(redacted)");
    }
}
