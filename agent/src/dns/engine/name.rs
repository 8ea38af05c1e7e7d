//! Query names: which zone a name belongs to and what it asks for.
//!
//! Names are matched case-insensitively. Inside the domain, Consul's grammar is read from the
//! right: the last label among `service`, `node`, `addr`, `query`, `connect`, `ingress` and
//! `virtual` is the kind; the labels after it are the locality (`<dc>`, or `<dc>.dc`,
//! `<ns>.ns`, `<ap>.ap`, `<peer>.peer`), the labels before it the query. SRV questions may
//! leave out `service` in the RFC 2782 form (`_web._tcp.consul`).
//!
//! Reading from the right is what lets the front part hold dots: a node name such as
//! `my.host` or a tag such as `a.b` is everything before the kind label.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::{Name, RecordType};

use super::settings::Settings;

/// Where a question's name lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Under the primary or the alternative domain: `labels` are the lowercase labels in front
    /// of it, `domain` the domain the question used (answers use the same one).
    Domain {
        /// The domain matched (lowercase, fully qualified).
        domain: Name,
        /// Labels before the domain, lowercase.
        labels: Vec<String>,
    },
    /// A reverse name (`in-addr.arpa.`, `ip6.arpa.`); `None` when it is not a full address.
    Reverse(Option<IpAddr>),
    /// Anywhere else: forwarded to recursors, or refused.
    Outside,
}

/// Finds the zone of a question name. The longest matching domain wins (an alternative
/// domain may sit under the primary one).
///
/// A reverse name is only recognized as one when it spells out a whole address: a partial
/// one (`2.0.192.in-addr.arpa.`) names a network, which the catalog knows nothing about.
pub fn zone_of(name: &Name, settings: &Settings) -> Zone {
    let mut best: Option<&Name> = None;
    for d in std::iter::once(&settings.domain).chain(settings.alt_domain.as_ref()) {
        if d.zone_of(name) && best.is_none_or(|b| d.iter().len() > b.iter().len()) {
            best = Some(d);
        }
    }
    if let Some(domain) = best {
        let total = name.iter().len();
        let keep = total.saturating_sub(domain.iter().len());
        let labels = name
            .iter()
            .take(keep)
            // ASCII lowercase only, as DNS compares names (RFC 4343); a label with other bytes
            // matches nothing in the catalog anyway.
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        return Zone::Domain {
            domain: domain.clone(),
            labels,
        };
    }
    let last = name.iter().next_back();
    if last.is_some_and(|l| l.eq_ignore_ascii_case(b"arpa")) {
        // `parse_arpa_name` wants a fully qualified name; the question's may not be marked so.
        let mut fqdn = name.clone();
        fqdn.set_fqdn(true);
        let ip = fqdn
            .parse_arpa_name()
            .ok()
            .filter(|net| net.prefix_len() == net.max_prefix_len())
            .map(|net| net.addr());
        return Zone::Reverse(ip);
    }
    Zone::Outside
}

/// Where a lookup points: the local datacenter or another one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locality {
    /// No datacenter given.
    Local,
    /// A datacenter named in the question (lowercase).
    Datacenter(String),
}

impl Locality {
    /// Whether this is the datacenter `dc` (the agent's own when none was named).
    pub fn is(&self, dc: &str) -> bool {
        match self {
            Locality::Local => true,
            Locality::Datacenter(d) => d == dc,
        }
    }
}

/// What a name inside the domain asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// `[tag.]<service>.service[.<dc>]` or `_<service>._<tag|tcp>[.service][.<dc>]`.
    Service {
        /// Service name (lowercase).
        name: String,
        /// Tag filter (lowercase).
        tag: Option<String>,
        /// Datacenter.
        locality: Locality,
    },
    /// `<node>.node[.<dc>]`.
    Node {
        /// Node name (lowercase; may contain dots).
        name: String,
        /// Datacenter.
        locality: Locality,
    },
    /// `<hex>.addr[.<dc>]`.
    Addr(IpAddr),
    /// `<query ID or name>.query[.<dc>]` (or `_<name>._tcp.query`): a prepared query.
    Query {
        /// Query ID or name (lowercase; may contain dots).
        name: String,
        /// Datacenter.
        locality: Locality,
    },
    /// A kind this agent does not serve (mesh, virtual IPs, peers,
    /// partitions and namespaces other than `default`): the name does not exist here.
    Unsupported,
    /// Anything else: the name does not exist.
    Invalid,
}

/// The labels that name a lookup kind.
/// Consul's kinds, including those Cairn does not serve (`connect`, `ingress`,
/// `virtual`), which parse as [`Lookup::Unsupported`].
const KINDS: [&str; 7] = [
    "service", "node", "addr", "query", "connect", "ingress", "virtual",
];

/// Reads the labels in front of the domain.
///
/// Never fails: anything that does not follow the grammar is [`Lookup::Invalid`] (answered
/// NXDOMAIN), so a malformed name costs nothing more than an unknown one.
pub fn parse(labels: &[String], qtype: RecordType) -> Lookup {
    let mut split = None;
    for (i, label) in labels.iter().enumerate().rev() {
        if KINDS.contains(&label.as_str()) {
            split = Some((i, label.as_str(), i + 1));
            break;
        }
        // SRV questions may omit `service` in the RFC 2782 form.
        // Only for SRV: `_web._tcp.consul` asked for an A record is no name Consul knows.
        if qtype == RecordType::SRV && label.starts_with('_') {
            split = Some((i + 1, "service", i + 1));
            break;
        }
    }
    let Some((parts_end, kind, suffix_start)) = split else {
        return Lookup::Invalid;
    };
    let parts = &labels[..parts_end];
    // With the RFC 2782 form (no kind label) the split is after the last `_` label.
    let suffixes = &labels[suffix_start..];
    if parts.is_empty() {
        return Lookup::Invalid;
    }
    let locality = match parse_locality(suffixes) {
        Ok(l) => l,
        Err(lookup) => return lookup,
    };
    match kind {
        "service" => parse_service(parts, locality),
        // A node name may contain dots: every label in front is part of it.
        "node" => Lookup::Node {
            name: parts.join("."),
            locality,
        },
        "addr" => match parts {
            [hex] => parse_hex_ip(hex).map_or(Lookup::Invalid, Lookup::Addr),
            _ => Lookup::Invalid,
        },
        "query" => {
            let name = match parts {
                // RFC 2782 form of a prepared query: `_<name>._tcp.query`.
                [n, proto] if n.starts_with('_') && proto.starts_with('_') => {
                    n.trim_start_matches('_').to_string()
                }
                _ => parts.join("."),
            };
            Lookup::Query { name, locality }
        }
        _ => Lookup::Unsupported,
    }
}

/// The service part: `_<name>._<tag>` (RFC 2782) or `[tag.]<name>`.
fn parse_service(parts: &[String], locality: Locality) -> Lookup {
    if let [svc, tag] = parts
        && let (Some(svc), Some(tag)) = (svc.strip_prefix('_'), tag.strip_prefix('_'))
    {
        // RFC 2782: `_tcp` as the protocol means no tag filter.
        let tag = (tag != "tcp").then(|| tag.to_string());
        if svc.is_empty() {
            return Lookup::Invalid;
        }
        return Lookup::Service {
            name: svc.to_string(),
            tag,
            locality,
        };
    }
    let (name, tags) = parts.split_last().map_or(("", &[][..]), |(n, t)| (n, t));
    if name.is_empty() {
        return Lookup::Invalid;
    }
    // Consul 0.3 form: every label before the service name is one tag (it may contain dots).
    let tag = (!tags.is_empty()).then(|| tags.join("."));
    Lookup::Service {
        name: name.to_string(),
        tag,
        locality,
    }
}

/// The locality labels after the kind: none, a datacenter, or `<value>.<key>` pairs.
fn parse_locality(suffixes: &[String]) -> Result<Locality, Lookup> {
    match suffixes {
        [] => return Ok(Locality::Local),
        // The short form: one label is the datacenter (`web.service.dc1.consul`).
        [dc] => return Ok(Locality::Datacenter(dc.clone())),
        _ => {}
    }
    // Past one label, the labels come in `<value>.<key>` pairs.
    if !suffixes.len().is_multiple_of(2) {
        return Err(Lookup::Invalid);
    }
    let mut locality = Locality::Local;
    for pair in suffixes.chunks(2) {
        let [value, key] = pair else {
            return Err(Lookup::Invalid);
        };
        match key.as_str() {
            "dc" => locality = Locality::Datacenter(value.clone()),
            // Namespaces and partitions are Enterprise features: only `default` exists.
            "ns" | "ap" if value == "default" => {}
            // Other namespaces, partitions, peers and segments exist only in Consul Enterprise
            // or a mesh: the name cannot exist here.
            "ns" | "ap" | "peer" | "sg" => return Err(Lookup::Unsupported),
            _ => return Err(Lookup::Invalid),
        }
    }
    Ok(locality)
}

/// Decodes the hex form of an address: 8 digits for IPv4, 32 for IPv6.
///
/// The `.addr` form lets an SRV target carry an address that is not a node's (a service
/// registered with its own address) in a name, without a catalog look-up to resolve it.
pub fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    fn bytes<const N: usize>(hex: &str) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        if hex.len() != 2 * N {
            return None;
        }
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(out)
    }
    match hex.len() {
        8 => bytes::<4>(hex).map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        32 => bytes::<16>(hex).map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// The hex form of an address, as used in `<hex>.addr.<dc>.<domain>` names.
pub fn hex_ip(ip: IpAddr) -> String {
    use std::fmt::Write;
    let octets: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        // An IPv4-mapped address is written in the 8-digit form, so it resolves to A.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    let mut s = String::with_capacity(octets.len() * 2);
    for b in octets {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels of a dotted name, as [`zone_of`] would pass them.
    fn labels(s: &str) -> Vec<String> {
        s.split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn svc(name: &str, tag: Option<&str>, locality: Locality) -> Lookup {
        Lookup::Service {
            name: name.into(),
            tag: tag.map(Into::into),
            locality,
        }
    }

    /// Consul's service name forms: tags, the locality forms and Enterprise-only keys.
    #[test]
    fn service_forms() {
        let a = RecordType::A;
        let dc1 = || Locality::Datacenter("dc1".into());
        assert_eq!(
            parse(&labels("web.service"), a),
            svc("web", None, Locality::Local)
        );
        assert_eq!(
            parse(&labels("v1.web.service"), a),
            svc("web", Some("v1"), Locality::Local)
        );
        assert_eq!(
            parse(&labels("a.b.web.service"), a),
            svc("web", Some("a.b"), Locality::Local)
        );
        assert_eq!(
            parse(&labels("web.service.dc1"), a),
            svc("web", None, dc1())
        );
        assert_eq!(
            parse(&labels("web.service.dc1.dc"), a),
            svc("web", None, dc1())
        );
        assert_eq!(
            parse(&labels("web.service.default.ns.dc1.dc"), a),
            svc("web", None, dc1())
        );
        assert_eq!(
            parse(&labels("web.service.other.ns"), a),
            Lookup::Unsupported
        );
        assert_eq!(
            parse(&labels("web.service.p1.peer"), a),
            Lookup::Unsupported
        );
        assert_eq!(parse(&labels("web.service.a.b.c"), a), Lookup::Invalid);
        assert_eq!(parse(&labels("service"), a), Lookup::Invalid);
    }

    /// `_service._tag` names, with `_tcp` meaning no tag.
    #[test]
    fn rfc2782_forms() {
        let srv = RecordType::SRV;
        assert_eq!(
            parse(&labels("_web._tcp.service"), srv),
            svc("web", None, Locality::Local)
        );
        assert_eq!(
            parse(&labels("_web._v1.service.dc1"), srv),
            svc("web", Some("v1"), Locality::Datacenter("dc1".into()))
        );
        // `service` is optional for SRV questions.
        assert_eq!(
            parse(&labels("_web._tcp"), srv),
            svc("web", None, Locality::Local)
        );
        assert_eq!(
            parse(&labels("_web._tcp.dc1"), srv),
            svc("web", None, Locality::Datacenter("dc1".into()))
        );
        assert_eq!(parse(&labels("_web._tcp"), RecordType::A), Lookup::Invalid);
    }

    /// Nodes with dotted names, both address lengths, prepared queries and mesh kinds.
    #[test]
    fn node_addr_and_other_kinds() {
        let a = RecordType::A;
        assert_eq!(
            parse(&labels("n1.node"), a),
            Lookup::Node {
                name: "n1".into(),
                locality: Locality::Local
            }
        );
        assert_eq!(
            parse(&labels("my.host.node.dc2"), a),
            Lookup::Node {
                name: "my.host".into(),
                locality: Locality::Datacenter("dc2".into())
            }
        );
        assert_eq!(
            parse(&labels("c000020a.addr.dc1"), a),
            Lookup::Addr("192.0.2.10".parse().expect("ip"))
        );
        assert_eq!(
            parse(&labels("20010db8000000000000000000000001.addr"), a),
            Lookup::Addr("2001:db8::1".parse().expect("ip"))
        );
        assert_eq!(parse(&labels("zz00020a.addr"), a), Lookup::Invalid);
        assert_eq!(parse(&labels("a.b.addr"), a), Lookup::Invalid);
        assert_eq!(
            parse(&labels("q.query"), a),
            Lookup::Query {
                name: "q".into(),
                locality: Locality::Local
            }
        );
        assert_eq!(
            parse(&labels("_geo-db._tcp.query.dc1"), RecordType::SRV),
            Lookup::Query {
                name: "geo-db".into(),
                locality: Locality::Datacenter("dc1".into())
            }
        );
        assert_eq!(parse(&labels("web.connect"), a), Lookup::Unsupported);
        assert_eq!(parse(&labels("foo"), a), Lookup::Invalid);
        assert_eq!(parse(&[], a), Lookup::Invalid);
    }

    /// Hex names decode to the address they encode; mapped IPv6 uses the IPv4 form.
    #[test]
    fn hex_round_trip() {
        for ip in ["192.0.2.10", "2001:db8::1", "::"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(parse_hex_ip(&hex_ip(ip)), Some(ip));
        }
        assert_eq!(hex_ip("::ffff:1.2.3.4".parse().expect("ip")), "01020304");
    }

    /// The longest domain wins, reverse names need a whole address, the rest is outside.
    #[test]
    fn zones() {
        let mut s = Settings::new("consul.", "dc1");
        s.alt_domain = super::super::settings::parse_domain("alt.consul.");
        let n = |x: &str| Name::from_ascii(x).expect("name");
        match zone_of(&n("Web.Service.CONSUL."), &s) {
            Zone::Domain { domain, labels } => {
                assert_eq!(domain.to_ascii(), "consul.");
                assert_eq!(labels, vec!["web".to_string(), "service".to_string()]);
            }
            z => panic!("{z:?}"),
        }
        match zone_of(&n("web.service.alt.consul."), &s) {
            Zone::Domain { domain, labels } => {
                assert_eq!(domain.to_ascii(), "alt.consul.");
                assert_eq!(labels.len(), 2);
            }
            z => panic!("{z:?}"),
        }
        assert_eq!(
            zone_of(&n("10.2.0.192.in-addr.arpa."), &s),
            Zone::Reverse(Some("192.0.2.10".parse().expect("ip")))
        );
        assert_eq!(
            zone_of(&n("2.0.192.in-addr.arpa."), &s),
            Zone::Reverse(None)
        );
        assert_eq!(zone_of(&n("example.com."), &s), Zone::Outside);
        assert_eq!(zone_of(&n("."), &s), Zone::Outside);
    }
}
