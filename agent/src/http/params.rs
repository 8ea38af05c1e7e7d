//! Query-string parsing with Consul's rules: repeated parameters, Go `strconv.ParseBool`
//! booleans where a present-but-empty flag means true, Go durations for `wait`, and the
//! blocking and consistency options every read accepts.
//!
//! Clients disagree on how to spell the same thing: Go's client sends flags as empty values
//! (`stale=`) and `wait` in milliseconds (`wait=120000ms`), py-consul sends `stale=1`,
//! `passing=1` and `keys=True`, Spring sends `wait=<n>s`. Everything here accepts all of them,
//! which is why booleans follow Go's `strconv.ParseBool` and durations Go's
//! `time.ParseDuration` rather than Rust's parsers.

use cairn_catalog::duration::parse_go_duration;

use super::error::ApiError;
pub use crate::api::options::{DEFAULT_WAIT, MAX_WAIT};
use crate::api::{Consistency, ReadOptions};

/// The decoded query string, keeping order and repeats: `?tag=a&tag=b` means both tags, and
/// single-valued lookups take the first value, as Go's `url.Values.Get` does.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a raw query string (`a=1&b&tag=x&tag=y`). Never fails: percent-decoding is
    /// lossy rather than strict, and a key without `=` is present with an empty value.
    pub fn parse(raw: Option<&str>) -> Params {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Params { pairs }
    }

    /// First value of a parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when the parameter is present (with any value): how Consul reads `?stale`,
    /// `?consistent` and `?pretty`, so `?stale=false` still asks for a stale read.
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// A boolean flag: absent is false, present-but-empty is true, else Go's ParseBool.
    /// Consul's `getBoolQueryParam` (used for `?passing`): anything else is a 400, so a typo
    /// does not silently change the answer.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some("") => Ok(true),
            Some(v) => parse_bool(v)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid value for ?{key}: {v:?}"))),
        }
    }

    /// A flag that is true when present with any value that is not a false boolean
    /// (Consul treats `?recurse`, `?keys`, `?raw`, `?pretty` as presence flags).
    /// Never an error, as Consul never refuses these; but an explicit false (`?recurse=false`)
    /// is off here, where Consul, which only looks for the key, would still recurse.
    pub fn presence(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => parse_bool(v) != Some(false),
        }
    }

    /// An unsigned integer parameter (`?cas`, `?flags`); an empty value counts as absent.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("Invalid {key}: {v:?} is not a number"))
            }),
        }
    }

    /// `node-meta=key:value` pairs, split at the first `:` (values may contain more); a pair
    /// without one selects the key with an empty value.
    pub fn node_meta(&self) -> Vec<(String, String)> {
        self.all("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    }
}

/// Go's `strconv.ParseBool`: exactly these spellings, so `yes` or `on` are not booleans, as
/// for Consul.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The query parameters every read accepts: the service layer's read options plus what only
/// the HTTP edge knows (target datacenter, indentation, hash-based blocking of agent-local
/// endpoints).
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    /// `?index`, `?wait`, `?stale`/`?consistent`, `?max_stale`, `?filter`.
    pub read: ReadOptions,
    /// `?dc`; `None` for this agent's datacenter (an empty value included).
    pub dc: Option<String>,
    /// `?pretty`, with any value (`-dev` indents regardless).
    pub pretty: bool,
    /// `?hash` for hash-based blocking on agent-local endpoints: those have no Raft index, so
    /// a client passes back the `X-Consul-ContentHash` it last saw instead of `?index`.
    pub hash: Option<String>,
    /// Whether `?wait` was given: without it the agent's `default_query_time` applies.
    pub wait_given: bool,
}

impl QueryOptions {
    /// Extracts the common read options, with Consul's 400 texts for malformed ones.
    pub fn from_params(p: &Params) -> Result<QueryOptions, ApiError> {
        let min_index = match p.get("index") {
            None | Some("") => 0,
            Some(v) => v
                .parse()
                .map_err(|_| ApiError::bad_request("Invalid index"))?,
        };
        // Go durations need a unit (`wait=10` is refused, as by Consul); a longer wait is
        // clamped to Consul's `max_query_time` rather than refused.
        let wait = match p.get("wait") {
            None | Some("") => DEFAULT_WAIT,
            Some(v) => parse_go_duration(v)
                .map_err(|_| ApiError::bad_request("Invalid wait time"))?
                .min(MAX_WAIT),
        };
        // Consul reads these as presence flags: `?stale=false` still asks for a stale read.
        let stale = p.has("stale");
        let consistent = p.has("consistent");
        if stale && consistent {
            return Err(ApiError::bad_request(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        let consistency = if stale {
            Consistency::Stale
        } else if consistent {
            Consistency::Consistent
        } else {
            Consistency::Leader
        };
        // Passed along as given; the server applies it to `?stale` reads only
        // (`ReadOptions::max_stale`).
        let max_stale = match p.get("max_stale") {
            None | Some("") => None,
            Some(v) => Some(
                parse_go_duration(v)
                    .map_err(|_| ApiError::bad_request("Invalid max_stale value"))?,
            ),
        };
        Ok(QueryOptions {
            read: ReadOptions {
                min_index,
                wait,
                consistency,
                max_stale,
                // An empty `?filter=` filters nothing, as in Consul (and would not parse).
                filter: p
                    .get("filter")
                    .filter(|f| !f.is_empty())
                    .map(str::to_string),
            },
            dc: p.get("dc").filter(|d| !d.is_empty()).map(str::to_string),
            pretty: p.has("pretty"),
            hash: p.get("hash").filter(|h| !h.is_empty()).map(str::to_string),
            wait_given: p.get("wait").is_some_and(|w| !w.is_empty()),
        })
    }
}

/// The spellings real clients send, one test per rule.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `stale=` is how Go's client sends a flag, `passing=1` how py-consul does.
    #[test]
    fn flags_follow_go_rules() {
        let p = Params::parse(Some("stale=&passing=1&a=True&b=bogus&c=false"));
        assert_eq!(p.flag("stale").ok(), Some(true));
        assert_eq!(p.flag("passing").ok(), Some(true));
        assert_eq!(p.flag("a").ok(), Some(true));
        assert!(p.flag("b").is_err());
        assert_eq!(p.flag("c").ok(), Some(false));
        assert_eq!(p.flag("missing").ok(), Some(false));
    }

    /// Go's client repeats `tag` for several tags and encodes spaces as `+`
    /// (`url.Values.Encode`).
    #[test]
    fn repeated_and_encoded_params() {
        let p = Params::parse(Some(
            "tag=a&tag=b%20c&node-meta=rack:r1&filter=Service.Port+%3D%3D+80",
        ));
        assert_eq!(p.all("tag"), vec!["a", "b c"]);
        assert_eq!(p.node_meta(), vec![("rack".to_string(), "r1".to_string())]);
        assert_eq!(p.get("filter"), Some("Service.Port == 80"));
    }

    /// `120000ms` is Go's client's spelling of a two-minute wait.
    #[test]
    fn wait_and_index() {
        let q = |s| QueryOptions::from_params(&Params::parse(Some(s)));
        let o = q("index=5&wait=120000ms").expect("valid").read;
        assert_eq!((o.min_index, o.wait), (5, Duration::from_secs(120)));
        assert_eq!(q("wait=11m").expect("valid").read.wait, MAX_WAIT);
        assert_eq!(q("").expect("valid").read.wait, DEFAULT_WAIT);
        assert!(q("index=abc").is_err());
        assert!(q("wait=10").is_err());
        assert!(q("stale&consistent").is_err());
        let o = q("wait=1ms").expect("valid").read;
        assert!(o.wait_with_jitter() >= Duration::from_millis(1));
    }
}
