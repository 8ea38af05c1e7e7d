//! The `tls {}` block and Consul's deprecated top-level TLS keys: their schema, Consul's
//! precedence, and the per-protocol settings the listeners and clients use.
//!
//! Consul 1.12 moved TLS settings into `tls { defaults {} internal_rpc {} https {} grpc {} }`:
//! a protocol's own value wins over `defaults`. The old top-level keys still work: each one
//! fills its new place when that place is not set, with Consul's deprecation warning
//! (`agent/config/deprecated.go`), so a file written for either form gives the same settings.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::schema::{Field, Kind};
use super::values::{as_bool, as_str};

/// The keys of each protocol block (`tls.defaults`, `tls.internal_rpc`, `tls.https`).
pub(super) const PROTOCOL: &[Field] = &[
    Field {
        name: "ca_file",
        kind: Kind::Str,
    },
    Field {
        name: "ca_path",
        kind: Kind::Str,
    },
    Field {
        name: "cert_file",
        kind: Kind::Str,
    },
    Field {
        name: "key_file",
        kind: Kind::Str,
    },
    Field {
        name: "tls_min_version",
        kind: Kind::OneOf(MIN_VERSIONS),
    },
    Field {
        name: "tls_cipher_suites",
        kind: Kind::Str,
    },
    Field {
        name: "verify_incoming",
        kind: Kind::Bool,
    },
    Field {
        name: "verify_outgoing",
        kind: Kind::Bool,
    },
    Field {
        name: "verify_server_hostname",
        kind: Kind::Bool,
    },
    Field {
        name: "use_auto_cert",
        kind: Kind::Unsupported,
    },
];

/// `tls {}`. Cairn has no gRPC listener, so `tls.grpc` is known but not implemented.
pub(super) const TLS: &[Field] = &[
    Field {
        name: "defaults",
        kind: Kind::Object(PROTOCOL),
    },
    Field {
        name: "internal_rpc",
        kind: Kind::Object(PROTOCOL),
    },
    Field {
        name: "https",
        kind: Kind::Object(PROTOCOL),
    },
    Field {
        name: "grpc",
        kind: Kind::Unsupported,
    },
];

/// The accepted `tls_min_version` values: Consul's, and the deprecated short forms.
const MIN_VERSIONS: &[&str] = &[
    "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3", "tls10", "tls11", "tls12", "tls13",
];

/// The deprecated top-level keys, each with where Consul moved it.
pub(super) const LEGACY: &[(&str, &str)] = &[
    ("ca_file", "tls.defaults.ca_file"),
    ("ca_path", "tls.defaults.ca_path"),
    ("cert_file", "tls.defaults.cert_file"),
    ("key_file", "tls.defaults.key_file"),
    ("tls_cipher_suites", "tls.defaults.tls_cipher_suites"),
    ("tls_min_version", "tls.defaults.tls_min_version"),
    ("verify_incoming", "tls.defaults.verify_incoming"),
    ("verify_incoming_https", "tls.https.verify_incoming"),
    ("verify_incoming_rpc", "tls.internal_rpc.verify_incoming"),
    ("verify_outgoing", "tls.defaults.verify_outgoing"),
    (
        "verify_server_hostname",
        "tls.internal_rpc.verify_server_hostname",
    ),
];

/// The lowest TLS version a listener accepts or a client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    /// `TLSv1_0`: rustls has no TLS 1.0, so this means TLS 1.2 (with a warning).
    Tls10,
    /// `TLSv1_1`: likewise TLS 1.2.
    Tls11,
    /// `TLSv1_2`, Consul's default.
    #[default]
    Tls12,
    /// `TLSv1_3`.
    Tls13,
}

impl TlsMinVersion {
    /// Consul's name of the version.
    pub fn name(self) -> &'static str {
        match self {
            TlsMinVersion::Tls10 => "TLSv1_0",
            TlsMinVersion::Tls11 => "TLSv1_1",
            TlsMinVersion::Tls12 => "TLSv1_2",
            TlsMinVersion::Tls13 => "TLSv1_3",
        }
    }

    fn parse(s: &str) -> TlsMinVersion {
        match s {
            "TLSv1_0" | "tls10" => TlsMinVersion::Tls10,
            "TLSv1_1" | "tls11" => TlsMinVersion::Tls11,
            "TLSv1_3" | "tls13" => TlsMinVersion::Tls13,
            _ => TlsMinVersion::Tls12,
        }
    }
}

/// The TLS settings of one protocol (server RPC, HTTPS), `defaults` already applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsProtocol {
    /// `ca_file`: the CA certificates peers' certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// `ca_path`: a directory of CA certificates.
    pub ca_path: Option<PathBuf>,
    /// `cert_file`: this agent's certificate (chain), PEM.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// `tls_min_version` (TLSv1_2).
    pub min_version: TlsMinVersion,
    /// `tls_cipher_suites`: Go names of TLS 1.2 suites, comma-separated (empty: all).
    pub cipher_suites: String,
    /// `verify_incoming`: clients must present a certificate from the CA.
    pub verify_incoming: bool,
    /// `verify_outgoing`: this agent speaks TLS to servers and checks their certificates.
    pub verify_outgoing: bool,
    /// `verify_server_hostname` (internal RPC only): a server's certificate must name
    /// `server.<dc>.<domain>`. Implies `verify_outgoing`, as in Consul.
    pub verify_server_hostname: bool,
}

/// `tls {}` resolved per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Server RPC (port 8300).
    pub internal_rpc: TlsProtocol,
    /// The HTTPS API (`ports.https`).
    pub https: TlsProtocol,
}

/// Moves the deprecated top-level keys into `tls {}` where the new key is not set, with
/// Consul's warnings. Runs on the merged sources, before [`read`].
pub(super) fn apply_legacy(merged: &mut Map<String, Value>, warnings: &mut Vec<String>) {
    for (old, new) in LEGACY {
        let Some(value) = merged.remove(*old) else {
            continue;
        };
        let mut value = value;
        if *old == "tls_min_version"
            && let Some(short) = value.as_str()
            && let Some(modern) = match short {
                "tls10" => Some("TLSv1_0"),
                "tls11" => Some("TLSv1_1"),
                "tls12" => Some("TLSv1_2"),
                "tls13" => Some("TLSv1_3"),
                _ => None,
            }
        {
            warnings.push(format!(
                "'tls_min_version' value '{short}' is deprecated, please specify '{modern}' instead"
            ));
            value = Value::String(modern.into());
        }
        let parts: Vec<&str> = new.split('.').collect();
        insert_if_absent(merged, &parts, value);
        // Before Consul 1.12 the gRPC port never checked client certificates; the top-level
        // `verify_incoming` keeps it that way (Cairn has no gRPC listener, so nothing to set).
        warnings.push(format!(
            "The '{old}' field is deprecated. Use the '{new}' field instead."
        ));
    }
    if merged.remove("tls_prefer_server_cipher_suites").is_some() {
        warnings.push(
            "The 'tls_prefer_server_cipher_suites' field is deprecated and will be ignored.".into(),
        );
    }
}

/// Sets `path` (key by key, blocks created as needed) unless it is already set: the new key
/// wins over the deprecated one.
fn insert_if_absent(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    let [first, rest @ ..] = path else { return };
    if rest.is_empty() {
        map.entry(first.to_string()).or_insert(value);
        return;
    }
    let entry = map
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(next) = entry {
        insert_if_absent(next, rest, value);
    }
}

/// One protocol's settings: its block's values over `tls.defaults`.
fn protocol(tls: Option<&Map<String, Value>>, name: &str) -> Result<TlsProtocol, String> {
    let block = |b: &str| tls.and_then(|t| t.get(b)).and_then(Value::as_object);
    let own = block(name);
    let defaults = block("defaults");
    let get = |key: &str| {
        own.and_then(|m| m.get(key))
            .or_else(|| defaults.and_then(|m| m.get(key)))
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        get(key)
            .map(|v| as_str(v).map_err(|e| format!("tls.{name}.{key}: {e}")))
            .transpose()
            .map(|s| s.filter(|s| !s.trim().is_empty()))
    };
    let flag = |key: &str| -> Result<bool, String> {
        Ok(get(key)
            .map(|v| as_bool(v).map_err(|e| format!("tls.{name}.{key}: {e}")))
            .transpose()?
            .unwrap_or(false))
    };
    let path = |key: &str| -> Result<Option<PathBuf>, String> { Ok(text(key)?.map(PathBuf::from)) };
    let min_version = text("tls_min_version")?.unwrap_or_default();
    if !min_version.is_empty() && !MIN_VERSIONS.contains(&min_version.as_str()) {
        return Err(format!(
            "tls.{name}.tls_min_version: invalid value {min_version:?}: one of TLSv1_0, TLSv1_1, \
             TLSv1_2, TLSv1_3"
        ));
    }
    let cipher_suites = text("tls_cipher_suites")?.unwrap_or_default();
    if !cipher_suites.is_empty() {
        crate::tls::check_cipher_suites(&cipher_suites)
            .map_err(|e| format!("tls.{name}.tls_cipher_suites: {e}"))?;
    }
    let verify_server_hostname = name == "internal_rpc" && flag("verify_server_hostname")?;
    let p = TlsProtocol {
        ca_file: path("ca_file")?,
        ca_path: path("ca_path")?,
        cert_file: path("cert_file")?,
        key_file: path("key_file")?,
        min_version: TlsMinVersion::parse(&min_version),
        cipher_suites,
        verify_incoming: flag("verify_incoming")?,
        verify_outgoing: flag("verify_outgoing")? || verify_server_hostname,
        verify_server_hostname,
    };
    if p.cert_file.is_some() != p.key_file.is_some() {
        return Err(format!(
            "tls.{name}: cert_file and key_file must be set together"
        ));
    }
    if (p.verify_incoming || p.verify_outgoing) && p.ca_file.is_none() && p.ca_path.is_none() {
        let which = if p.verify_incoming {
            "verify_incoming"
        } else {
            "verify_outgoing"
        };
        return Err(format!("tls.{name}: {which} requires ca_file or ca_path"));
    }
    if p.verify_incoming && p.cert_file.is_none() {
        return Err(format!(
            "tls.{name}: verify_incoming requires cert_file and key_file"
        ));
    }
    Ok(p)
}

/// Reads `tls {}` (after [`apply_legacy`]); the warnings name settings that mean something
/// else here.
pub(super) fn read(
    merged: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<TlsConfig, String> {
    let tls = merged.get("tls").and_then(Value::as_object);
    let config = TlsConfig {
        internal_rpc: protocol(tls, "internal_rpc")?,
        https: protocol(tls, "https")?,
    };
    for (name, p) in [
        ("internal_rpc", &config.internal_rpc),
        ("https", &config.https),
    ] {
        if matches!(p.min_version, TlsMinVersion::Tls10 | TlsMinVersion::Tls11) {
            warnings.push(format!(
                "tls.{name}.tls_min_version {}: Cairn speaks TLS 1.2 and 1.3 only; TLS 1.2 is the minimum",
                p.min_version.name()
            ));
        }
    }
    Ok(config)
}
