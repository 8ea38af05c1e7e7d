//! Typed readers for configuration values.
//!
//! Every source (flags, JSON, HCL) is turned into JSON values first; these functions read one
//! value as a given type. Like Consul's decoder they are weakly typed: a string holding a number or
//! a boolean is accepted where a number or a boolean is expected (flags are all strings).
//! Errors are the part of the message after `key: `.
//! The caller prefixes the key or flag, which these readers do not know.
//!
//! Each reader returns the value in the canonical form the rest of the agent compares and
//! prints (lowercase datacenter and domain, hyphenated node ID, `ip:port` recursors), so that
//! two spellings of the same setting are equal after loading.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// A value as shown in error messages: JSON text, cut short when long.
///
/// Cut at 80 characters so that a whole pasted object does not swamp the message; counted
/// in characters, not bytes, so the cut never splits a UTF-8 sequence.
pub(crate) fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// The one shape of a bad-value message: `invalid value <json>: <why>`.
fn invalid(v: &Value, why: &str) -> String {
    format!("invalid value {}: {why}", show(v))
}

/// A boolean (`true`, or a Go boolean string such as `"true"`, `"1"`).
pub(crate) fn as_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => {
            crate::flags::parse_bool(s).ok_or_else(|| invalid(v, "expected true or false"))
        }
        _ => Err(invalid(v, "expected true or false")),
    }
}

/// A whole number (JSON number, or a string holding one).
pub(crate) fn as_int(v: &Value) -> Result<i64, String> {
    let not_int = || invalid(v, "expected an integer");
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64() {
                // A float with no fraction (`3.0`, as some generators write integers) is taken; a
                // fraction is refused rather than truncated. The range test keeps the cast from
                // saturating a huge float silently.
                if f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 {
                    Ok(f as i64)
                } else {
                    Err(not_int())
                }
            } else {
                Err(not_int())
            }
        }
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| not_int()),
        _ => Err(not_int()),
    }
}

/// A whole number within `min..=max`.
///
/// The message names only the bound that matters: an upper bound of `u32::MAX` or more is
/// an implementation limit, not something to tell the user about.
pub(crate) fn as_uint(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let i = as_int(v)?;
    if let Ok(u) = u64::try_from(i)
        && u >= min
        && u <= max
    {
        return Ok(u);
    }
    let unbounded = max >= u64::from(u32::MAX);
    let why = if i < 0 && min == 0 {
        "must not be negative".to_string()
    } else if unbounded && min == 1 {
        "must be greater than 0".to_string()
    } else if unbounded {
        format!("must be at least {min}")
    } else if min == 0 {
        format!("must be at most {max}")
    } else {
        format!("must be between {min} and {max}")
    };
    Err(invalid(v, &why))
}

/// A string; numbers and booleans are taken as their text.
///
/// So `node_name = 123` in HCL, or a flag value, reads as the string `"123"`, as with Consul's
/// weakly typed decoder.
pub(crate) fn as_str(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(v, "expected a string")),
    }
}

/// A Go duration string such as `"10s"` or `"1m30s"`.
pub(crate) fn as_duration(v: &Value) -> Result<Duration, String> {
    let bad = || invalid(v, "expected a duration such as \"10s\" or \"1m30s\"");
    match v {
        Value::String(s) => cairn_catalog::duration::parse_go_duration(s.trim()).map_err(|_| bad()),
        // Go's ParseDuration accepts a bare "0".
        // Any other bare number is refused, as in Go: `10` has no unit, and guessing seconds
        // would silently differ from Consul.
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
        _ => Err(bad()),
    }
}

/// Consul evaluates go-sockaddr templates (`{{ GetPrivateIP }}`) in address fields. They
/// are detected so the message says what is missing instead of "not an IP address".
fn is_template(s: &str) -> bool {
    s.contains("{{")
}

const TEMPLATE_MSG: &str =
    "go-sockaddr templates are not supported yet; give a literal IP address instead";

/// One IP address (no go-sockaddr templates yet).
pub(crate) fn as_ip(v: &Value) -> Result<IpAddr, String> {
    let s = as_str(v).map_err(|_| invalid(v, "expected an IP address"))?;
    parse_ip(v, s.trim())
}

/// Parses one address; `[::1]` is accepted as well as `::1`, since IPv6 addresses are often
/// written bracketed, as in URLs.
fn parse_ip(v: &Value, s: &str) -> Result<IpAddr, String> {
    if is_template(s) {
        return Err(invalid(v, TEMPLATE_MSG));
    }
    let plain = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    plain
        .parse::<IpAddr>()
        .map_err(|_| invalid(v, "expected an IP address"))
}

/// One or more IP addresses: a space-separated string (Consul's form) or a list of strings.
pub(crate) fn as_ip_list(v: &Value) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    match v {
        Value::String(s) => {
            for part in s.split_whitespace() {
                out.push(parse_ip(v, part)?);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push(as_ip(item)?);
            }
        }
        _ => return Err(invalid(v, "expected IP addresses separated by spaces")),
    }
    // An empty string would leave a listener with no address at all: refused rather than
    // silently not listening.
    if out.is_empty() {
        return Err(invalid(v, "expected at least one IP address"));
    }
    Ok(out)
}

/// A port: `Some(p)` for 1..=65535, `None` when disabled (-1 or 0, as in Consul).
///
/// Any non-positive number disables, not only -1, as in Consul's builder, so that `0` never
/// becomes "any free port" as it would for a socket bind.
pub(crate) fn as_port(v: &Value) -> Result<Option<u16>, String> {
    let i = as_int(v)?;
    if i <= 0 {
        return Ok(None);
    }
    u16::try_from(i).map(Some).map_err(|_| {
        invalid(
            v,
            "expected a port between 1 and 65535, or -1 to disable it",
        )
    })
}

/// A port that cannot be disabled.
///
/// For the listeners the agent cannot run without (LAN gossip, server RPC).
pub(crate) fn as_required_port(v: &Value) -> Result<u16, String> {
    match as_port(v)? {
        Some(p) => Ok(p),
        None => Err(invalid(
            v,
            "this listener cannot be disabled; expected a port between 1 and 65535",
        )),
    }
}

/// A list of strings; a single string is taken as a list of one.
///
/// Consul's decoder does the same for list fields, so `retry_join = "10.0.0.1"` works.
pub(crate) fn as_str_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|item| as_str(item).map_err(|_| invalid(v, "expected a list of strings")))
            .collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        _ => Err(invalid(v, "expected a list of strings")),
    }
}

/// The log levels the agent knows, lowest first.
///
/// The names of `tracing`'s levels; Consul's `log_level` uses the same words.
pub(crate) const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// A log level, lowercased.
pub(crate) fn as_log_level(v: &Value) -> Result<String, String> {
    let s = as_str(v)?.trim().to_ascii_lowercase();
    if LOG_LEVELS.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(invalid(
            v,
            "expected one of trace, debug, info, warn, error",
        ))
    }
}

/// One of a fixed set of words.
pub(crate) fn as_one_of(v: &Value, allowed: &[&str]) -> Result<String, String> {
    let s = as_str(v)?;
    if allowed.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(invalid(
            v,
            &format!("expected one of {}", allowed.join(", ")),
        ))
    }
}

/// A datacenter name: lowercased, then only `[a-z0-9_-]`.
///
/// The name is a label of DNS questions (`web.service.<dc>.consul`), so it may not contain
/// dots or spaces; lowercasing first makes `East` valid, as Consul does.
pub(crate) fn as_datacenter(v: &Value) -> Result<String, String> {
    let s = as_str(v)?.to_lowercase();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(s)
    } else {
        Err(invalid(
            v,
            "a datacenter name may only contain letters, digits, '_' and '-'",
        ))
    }
}

/// A DNS domain, returned lowercase with its trailing dot (`consul.`).
///
/// Each label is 1 to 63 bytes (RFC 1035). Underscores are allowed, although a strict host
/// name (RFC 1123) would refuse them: DNS labels may hold them (RFC 2181).
pub(crate) fn as_domain(v: &Value) -> Result<String, String> {
    let s = as_str(v)?.trim().to_lowercase();
    let name = s.strip_suffix('.').unwrap_or(&s);
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(format!("{name}."))
    } else {
        Err(invalid(v, "expected a DNS domain such as \"consul.\""))
    }
}

/// A node ID: a UUID, returned lowercase and hyphenated.
///
/// Any form `uuid` parses (upper case, braces, no hyphens) is accepted, and the canonical
/// form makes the same ID compare equal however it was written.
pub(crate) fn as_node_id(v: &Value) -> Result<String, String> {
    let s = as_str(v)?;
    uuid::Uuid::parse_str(s.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            invalid(
                v,
                "expected a UUID such as \"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"",
            )
        })
}

/// A gossip key: base64 of 16, 24 or 32 bytes. The key itself is never echoed in messages.
///
/// The lengths of AES-128, AES-192 and AES-256 keys, the ciphers of the gossip encryption.
/// Messages never echo the key: they end up in logs and terminals, and a near-miss key is
/// still a secret.
pub(crate) fn as_encrypt_key(v: &Value) -> Result<String, String> {
    let Value::String(s) = v else {
        return Err("invalid value: expected a base64 string".into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("invalid key: not valid base64 ({e})"))?;
    match bytes.len() {
        16 | 24 | 32 => Ok(s.trim().to_string()),
        n => Err(format!(
            "invalid key: decodes to {n} bytes; expected 16, 24 or 32 (create one with `cairn keygen`)"
        )),
    }
}

/// A DNS recursor: an IP with an optional port, returned as `ip:port` (port 53 by default).
///
/// Only addresses: the recursor is dialled as given, and no name is resolved to find it.
/// A socket address is tried first, so that `[::1]:5353` keeps its port and a bare `::1`
/// (which is not a socket address) still parses as an IP.
pub(crate) fn as_recursor(v: &Value) -> Result<String, String> {
    let s = as_str(v)?;
    let s = s.trim();
    if is_template(s) {
        return Err(invalid(v, TEMPLATE_MSG));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa.to_string());
    }
    let plain = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    plain
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53).to_string())
        .map_err(|_| invalid(v, "expected an IP address with an optional port"))
}

/// Reasons a node metadata pair is refused (Consul's rules), or `None`.
///
/// The limits are Consul's (`structs.validateMetaPair`): keys up to 128 bytes of letters,
/// digits, `_` and `-`, values up to 512 bytes, and the `consul-` key prefix reserved for
/// Consul's own use.
pub(crate) fn node_meta_problem(key: &str, value: &str) -> Option<String> {
    if key.is_empty() {
        return Some("metadata keys must not be empty".into());
    }
    if key.len() > 128 {
        return Some("metadata keys are at most 128 characters".into());
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Some("metadata keys may only contain letters, digits, '_' and '-'".into());
    }
    if key.starts_with("consul-") {
        return Some("the \"consul-\" key prefix is reserved".into());
    }
    if value.len() > 512 {
        return Some("metadata values are at most 512 characters".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Flags arrive as strings and HCL may give floats: both must read as the typed value.
    #[test]
    fn weak_typing() {
        assert_eq!(as_bool(&json!("1")), Ok(true));
        assert_eq!(as_bool(&json!("False")), Ok(false));
        assert!(as_bool(&json!("yes")).is_err());
        assert_eq!(as_int(&json!("42")), Ok(42));
        assert_eq!(as_int(&json!(3.0)), Ok(3));
        assert!(as_int(&json!(3.5)).is_err());
        assert_eq!(as_port(&json!(-1)), Ok(None));
        assert_eq!(as_port(&json!("8500")), Ok(Some(8500)));
        assert!(as_port(&json!(70000)).is_err());
    }

    /// Consul's space-separated address form, refused templates, and recursor normalization.
    #[test]
    fn addresses_and_recursors() {
        assert_eq!(as_ip_list(&json!("127.0.0.1 ::1")).map(|v| v.len()), Ok(2));
        assert!(
            as_ip(&json!("{{ GetPrivateIP }}"))
                .is_err_and(|e| e.contains("templates are not supported"))
        );
        assert_eq!(as_recursor(&json!("8.8.8.8")), Ok("8.8.8.8:53".into()));
        assert_eq!(as_recursor(&json!("[::1]:5353")), Ok("[::1]:5353".into()));
        assert!(as_recursor(&json!("dns.example")).is_err());
    }

    /// Names are canonicalized (lowercase, trailing dot) and Consul's metadata rules apply.
    #[test]
    fn names() {
        assert_eq!(as_datacenter(&json!("East-1")), Ok("east-1".into()));
        assert!(as_datacenter(&json!("dc 1")).is_err());
        assert_eq!(as_domain(&json!("Consul")), Ok("consul.".into()));
        assert!(as_domain(&json!("a..b")).is_err());
        assert!(node_meta_problem("consul-x", "v").is_some());
        assert!(node_meta_problem("rack", "r1").is_none());
    }
}
