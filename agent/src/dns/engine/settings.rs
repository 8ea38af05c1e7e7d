//! What the DNS engine needs from the configuration, in the form it uses per query: parsed
//! domains, TTLs in seconds, the service TTL table split into exact names and prefixes.
//!
//! Built from the configuration once per reload (see `crate::dns::settings_from`), so that the
//! per-query path does no parsing: a domain is a [`Name`] to compare labels with, a TTL a
//! number of seconds ready for the wire.

use std::collections::HashMap;
use std::time::Duration;

use hickory_proto::rr::Name;

/// SOA values (`dns_config.soa`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoaValues {
    /// Refresh (3600).
    pub refresh: u32,
    /// Retry (600).
    pub retry: u32,
    /// Expire (86400).
    pub expire: u32,
    /// Minimum TTL, also the TTL of the SOA record itself (0).
    /// With 0 (Consul's default), negative answers are not cached by resolvers (RFC 2308 uses
    /// the SOA's minimum as the negative TTL), so a service that appears is found at once.
    pub min_ttl: u32,
}

impl Default for SoaValues {
    fn default() -> Self {
        SoaValues {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// The DNS settings of one agent, rebuilt when the configuration changes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The primary domain, lowercase and fully qualified (`consul.`).
    pub domain: Name,
    /// The alternative domain, if any.
    /// Answers use the domain the question was asked in, so clients of either domain get
    /// names they can look up again.
    pub alt_domain: Option<Name>,
    /// The local datacenter, lowercase.
    pub datacenter: String,
    /// TTL of node records, in seconds.
    /// 0 by default, as Consul: answers are not cached and follow the catalog immediately.
    pub node_ttl: u32,
    /// Service TTLs by exact (lowercase) name.
    /// Looked up with the lowercase service name of the question.
    pub service_ttl_exact: HashMap<String, u32>,
    /// Service TTLs by prefix (`db*` is stored as `db`, `*` as the empty prefix), longest first.
    pub service_ttl_prefix: Vec<(String, u32)>,
    /// Exclude instances with a warning check too, not only critical ones.
    pub only_passing: bool,
    /// Set the TC bit when an answer was trimmed.
    pub enable_truncate: bool,
    /// Answers in a UDP response without EDNS (capped at 8, as Consul does).
    pub udp_answer_limit: usize,
    /// Answers of an A/AAAA/ANY response (0: no limit).
    pub a_record_limit: usize,
    /// Send names uncompressed.
    pub disable_compression: bool,
    /// Add node metadata as TXT records to the additional section.
    pub node_meta_txt: bool,
    /// SOA values.
    pub soa: SoaValues,
    /// Recursors are configured: names outside the domain are forwarded, and RA is set.
    pub recursion: bool,
}

/// Consul's hard cap on answers in a plain (512-byte) UDP response.
/// Consul's bound; a client that wants more answers asks with EDNS or over TCP.
pub const MAX_UDP_ANSWER_LIMIT: usize = 8;

/// Seconds of a duration as a TTL, saturating.
///
/// A TTL is a 32-bit count of seconds on the wire; a longer duration is the longest TTL,
/// and fractions of a second are dropped.
pub fn ttl_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Parses a domain such as `consul.` or `consul` into a lowercase fully qualified name.
///
/// `None` for an empty name or the root: answering for the whole DNS tree would make the
/// agent authoritative for every name.
pub fn parse_domain(domain: &str) -> Option<Name> {
    let d = domain.trim().to_ascii_lowercase();
    if d.is_empty() || d == "." {
        return None;
    }
    let mut name = Name::from_ascii(&d).ok()?;
    name.set_fqdn(true);
    Some(name)
}

impl Settings {
    /// Settings with Consul's defaults for `domain` and `datacenter`.
    pub fn new(domain: &str, datacenter: &str) -> Settings {
        Settings {
            domain: parse_domain(domain)
                // Unreachable with a checked configuration; a usable domain rather than a panic.
                .or_else(|| parse_domain("consul."))
                .unwrap_or_else(Name::root),
            alt_domain: None,
            datacenter: datacenter.to_ascii_lowercase(),
            node_ttl: 0,
            service_ttl_exact: HashMap::new(),
            service_ttl_prefix: Vec::new(),
            only_passing: false,
            enable_truncate: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            disable_compression: false,
            node_meta_txt: true,
            soa: SoaValues::default(),
            recursion: false,
        }
    }

    /// Sets the service TTL table from `dns_config.service_ttl` (names, `prefix*`, `*`).
    pub fn set_service_ttls<'a>(&mut self, table: impl IntoIterator<Item = (&'a str, Duration)>) {
        self.service_ttl_exact.clear();
        self.service_ttl_prefix.clear();
        for (key, ttl) in table {
            let key = key.to_ascii_lowercase();
            let ttl = ttl_secs(ttl);
            match key.strip_suffix('*') {
                Some(prefix) => self.service_ttl_prefix.push((prefix.to_string(), ttl)),
                None => {
                    self.service_ttl_exact.insert(key, ttl);
                }
            }
        }
        // Longest prefix first, so the first match is the most specific; ties sorted by name
        // so the order does not depend on the table's.
        self.service_ttl_prefix
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    }

    /// The TTL of a service's records: an exact entry beats the longest matching prefix
    /// wildcard, `*` is the default, and 0 when nothing matches.
    pub fn service_ttl(&self, service: &str) -> u32 {
        if let Some(ttl) = self.service_ttl_exact.get(service) {
            return *ttl;
        }
        self.service_ttl_prefix
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map(|(_, ttl)| *ttl)
            .unwrap_or(0)
    }

    /// Effective answer cap of a UDP response without EDNS.
    ///
    /// At least 1: a limit of 0 would answer nothing at all over plain UDP.
    pub fn udp_answer_cap(&self) -> usize {
        self.udp_answer_limit.clamp(1, MAX_UDP_ANSWER_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Consul's precedence for `service_ttl`: exact name, then the longest `prefix*`, then `*`.
    #[test]
    fn service_ttl_exact_beats_longest_prefix_beats_star() {
        let mut s = Settings::new("consul.", "dc1");
        s.set_service_ttls([
            ("*", Duration::from_secs(5)),
            ("db*", Duration::from_secs(10)),
            ("db-primary*", Duration::from_secs(20)),
            ("db-primary-1", Duration::from_secs(30)),
            ("Web", Duration::from_secs(40)),
        ]);
        assert_eq!(s.service_ttl("db-primary-1"), 30);
        assert_eq!(s.service_ttl("db-primary-2"), 20);
        assert_eq!(s.service_ttl("db-replica"), 10);
        assert_eq!(s.service_ttl("web"), 40);
        assert_eq!(s.service_ttl("cache"), 5);
        s.set_service_ttls([("db", Duration::from_secs(1))]);
        assert_eq!(s.service_ttl("cache"), 0);
        assert_eq!(s.service_ttl("db"), 1);
    }

    /// Domains compare with query names in one form; an empty domain falls back to `consul.`.
    #[test]
    fn domains_are_lowercase_and_fully_qualified() {
        let d = parse_domain("Example.COM").expect("valid");
        assert!(d.is_fqdn());
        assert_eq!(d.to_ascii(), "example.com.");
        assert!(parse_domain("").is_none());
        assert!(parse_domain(".").is_none());
        let s = Settings::new("", "DC1");
        assert_eq!(s.domain.to_ascii(), "consul.");
        assert_eq!(s.datacenter, "dc1");
    }

    /// The configured limit is clamped into Consul's range.
    #[test]
    fn udp_answer_cap_is_between_one_and_eight() {
        let mut s = Settings::new("consul.", "dc1");
        assert_eq!(s.udp_answer_cap(), 3);
        s.udp_answer_limit = 100;
        assert_eq!(s.udp_answer_cap(), 8);
        s.udp_answer_limit = 0;
        assert_eq!(s.udp_answer_cap(), 1);
    }
}
