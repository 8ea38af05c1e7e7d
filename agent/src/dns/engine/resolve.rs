//! The resolver: a question, a catalog view and the settings in, the records of the answer
//! out. No sockets, no clock, no global randomness: the time and the random source are
//! arguments, so every case is tested directly.
//!
//! Semantics follow Consul's DNS interface:
//! - an instance is healthy unless one of its checks (node-level ones such as `serfHealth`
//!   and `_node_maintenance` included) is critical, or warning with `only_passing`;
//! - answers are shuffled; SRV records have priority 1 and the weight of the instance's
//!   `Weights` for its status; their targets are `<node>.node.<dc>.<domain>` (or
//!   `<hex>.addr.<dc>.<domain>` for an explicit service address) with the address records in
//!   the additional section;
//! - an unknown name, and a service without any healthy instance, is NXDOMAIN with the SOA in
//!   the authority section. Consul answers NXDOMAIN for "nothing healthy" (not NOERROR), and
//!   clients rely on it to fail over, so Cairn does the same; a name that exists but has no
//!   record of the asked type is NOERROR with no answer and the SOA (RFC 2308 NODATA);
//! - names outside the domain go to the recursors when there are any, else are REFUSED.
//!
//! The resolver builds no more than the transport can carry: `answer_cap` and `size_budget`
//! come from [`super::wire`], so a service with thousands of instances costs a few dozen
//! records per query, not thousands that would be trimmed away.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use cairn_catalog::model::{HealthStatus, Node};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;

use super::name::{Locality, Lookup, Zone, hex_ip, parse, zone_of};
use super::settings::Settings;
use super::view::{Addr, Instance, Rendered, ReverseHit, View};

/// The service servers register, whose instances answer NS and SOA questions.
/// Only servers register it, so its healthy instances are the agents that can answer for
/// the zone.
const CONSUL_SERVICE: &str = "consul";

/// The records of an answer and its header fields.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// Response code.
    pub rcode: ResponseCode,
    /// The AA flag: the name is in a zone this agent serves.
    /// Set for answers about the domain and reverse names; not for REFUSED or forwarded
    /// names, which this agent does not own.
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (without the OPT record).
    pub additionals: Vec<Record>,
    /// More answers existed than `answer_cap` allowed.
    pub capped: bool,
    /// The question belongs to the recursors.
    /// The socket layer then relays the query itself; the other fields are unused.
    pub forward: bool,
}

impl Resolution {
    fn new(rcode: ResponseCode, authoritative: bool) -> Resolution {
        Resolution {
            rcode,
            authoritative,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            capped: false,
            forward: false,
        }
    }

    fn forward() -> Resolution {
        Resolution {
            forward: true,
            ..Resolution::new(ResponseCode::NoError, false)
        }
    }
}

/// What the resolver reads besides the question.
pub struct Context<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// The catalog.
    pub view: &'a View<'a>,
    /// Unix time in seconds (the SOA serial).
    /// An argument so that tests and the fuzzer get a fixed serial.
    pub now_unix: u64,
    /// Most answer records worth building (the transport's limit); more set `capped`.
    pub answer_cap: usize,
    /// Size of the response: answers that cannot fit in it are not built.
    /// Only SRV answers use it: their targets vary in length, while address records are
    /// bounded well enough by `answer_cap`.
    pub size_budget: usize,
}

/// Length of a name on the wire, uncompressed.
/// A lower bound of what an SRV target costs, since targets are never compressed.
fn wire_len(name: &Name) -> usize {
    name.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

/// Answers `qname`/`qtype`.
///
/// `rng` shuffles the answers; the caller passes the thread's random source, a test a
/// seeded one.
pub fn resolve<R: Rng + ?Sized>(
    qname: &Name,
    qtype: RecordType,
    ctx: &Context<'_>,
    rng: &mut R,
) -> Resolution {
    let settings = ctx.settings;
    match zone_of(qname, settings) {
        Zone::Outside => {
            if settings.recursion {
                Resolution::forward()
            } else {
                Resolution::new(ResponseCode::Refused, false)
            }
        }
        Zone::Reverse(ip) => reverse(qname, qtype, ip, ctx),
        Zone::Domain { domain, labels } => {
            let r = Responder {
                ctx,
                qname,
                qtype,
                domain: &domain,
            };
            r.in_domain(&labels, rng)
        }
    }
}

fn reverse(qname: &Name, qtype: RecordType, ip: Option<IpAddr>, ctx: &Context<'_>) -> Resolution {
    let settings = ctx.settings;
    let domain = &settings.domain;
    // A record without a datacenter is in this one.
    let dc_or_local = |dc: &str| -> String {
        if dc.is_empty() {
            settings.datacenter.clone()
        } else {
            dc.to_string()
        }
    };
    let target = ip
        .and_then(|ip| ctx.view.reverse(ip))
        .and_then(|hit| match hit {
            ReverseHit::Node(node, dc) => fqdn(&[&node, "node", &dc_or_local(&dc)], domain),
            ReverseHit::Service(svc, dc) => fqdn(&[&svc, "service", &dc_or_local(&dc)], domain),
        });
    // An address the catalog does not know may still have a PTR record elsewhere: the
    // recursors get it when there are any.
    let Some(target) = target else {
        if settings.recursion {
            return Resolution::forward();
        }
        return negative(ResponseCode::NXDomain, domain, ctx);
    };
    // The reverse name exists (it is a catalog address), so another type is NODATA.
    if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
        return negative(ResponseCode::NoError, domain, ctx);
    }
    let mut res = Resolution::new(ResponseCode::NoError, true);
    // Consul always answers PTR records with TTL 0.
    res.answers.push(Record::from_rdata(
        qname.clone(),
        0,
        RData::PTR(PTR(target)),
    ));
    res
}

/// NXDOMAIN or NODATA (`NoError`) with the SOA in the authority section.
///
/// The SOA lets resolvers cache the negative answer for the SOA's minimum TTL (RFC 2308).
fn negative(rcode: ResponseCode, domain: &Name, ctx: &Context<'_>) -> Resolution {
    let mut res = Resolution::new(rcode, true);
    res.authorities.push(soa_record(domain, ctx));
    res
}

/// The zone's SOA record, as Consul builds it.
pub fn soa_record(domain: &Name, ctx: &Context<'_>) -> Record {
    let s = &ctx.settings.soa;
    let prefixed = |label: &str| fqdn(&[label], domain).unwrap_or_else(|| domain.clone());
    let soa = SOA::new(
        // `ns.<domain>` and `hostmaster.<domain>`, Consul's fixed names.
        prefixed("ns"),
        prefixed("hostmaster"),
        // The serial is the time of the answer, as in Consul (truncated to 32 bits).
        ctx.now_unix as u32,
        // hickory types the timers as `i32`; larger configured values saturate.
        i32::try_from(s.refresh).unwrap_or(i32::MAX),
        i32::try_from(s.retry).unwrap_or(i32::MAX),
        i32::try_from(s.expire).unwrap_or(i32::MAX),
        s.min_ttl,
    );
    Record::from_rdata(domain.clone(), s.min_ttl, RData::SOA(soa))
}

/// `labels` (each split at dots) followed by `domain`; `None` if a label is empty or too
/// long, or the name too long.
///
/// Catalog names may hold dots (`my.host`) and characters DNS cannot carry; `None` lets
/// the caller leave out a record rather than answer with a broken name.
pub fn fqdn(labels: &[&str], domain: &Name) -> Option<Name> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(labels.len() + 2);
    for l in labels {
        for part in l.split('.') {
            if part.is_empty() || part.len() > 63 {
                return None;
            }
            parts.push(part.as_bytes());
        }
    }
    Name::from_labels(parts).ok()?.append_domain(domain).ok()
}

/// A host name (service or node address that is not an IP) as a fully qualified name.
///
/// Consul lets an address be a host name; it is answered as a CNAME (or an SRV target)
/// for the client to resolve.
fn host_name(host: &str) -> Option<Name> {
    let mut n = Name::from_ascii(host).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// An A or AAAA record; an IPv4-mapped IPv6 address is answered as A.
fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip.to_canonical() {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

/// Whether an address answers a question of type `qtype` (A for IPv4, AAAA for IPv6, and
/// both for ANY; TXT too, as in Consul, whose service lookups answer TXT with addresses).
fn wants(qtype: RecordType, ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(_) => matches!(qtype, RecordType::A | RecordType::ANY | RecordType::TXT),
        IpAddr::V6(_) => matches!(qtype, RecordType::AAAA | RecordType::ANY | RecordType::TXT),
    }
}

/// Escapes a metadata pair as an RFC 1464 TXT string; keys prefixed `rfc1035-` give the
/// value alone.
///
/// In RFC 1464's `key=value`, a backquote escapes `=`, a backquote, and leading or
/// trailing spaces of the key, so that any key reads back unambiguously. The `rfc1035-`
/// prefix is Consul's way to publish a TXT string verbatim.
pub fn meta_txt(key: &str, value: &str) -> String {
    if key.to_ascii_lowercase().starts_with("rfc1035-") {
        return value.to_string();
    }
    let mut k = key.replace('`', "``").replace('=', "`=");
    let lead = k.len() - k.trim_start_matches(' ').len();
    if lead > 0 {
        k = format!("{}{}", "` ".repeat(lead), &k[lead..]);
    }
    let trail = k.len() - k.trim_end_matches(' ').len();
    if trail > 0 && trail < k.len() {
        k = format!("{}{}", &k[..k.len() - trail], "` ".repeat(trail));
    }
    format!("{k}={}", value.replace('`', "``"))
}

/// TXT data of a node's metadata, one record per pair.
fn meta_rdata(node: &Node) -> Vec<RData> {
    node.meta
        .iter()
        .map(|(k, v)| {
            let text = meta_txt(k, v);
            // A character-string holds at most 255 bytes; longer texts span several.
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            let chunks = if chunks.is_empty() {
                vec![&b""[..]]
            } else {
                chunks
            };
            RData::TXT(TXT::from_bytes(chunks))
        })
        .collect()
}

/// TXT records of a node's metadata, owned by `owner`.
fn meta_records(owner: &Name, node: &Node, ttl: u32) -> Vec<Record> {
    meta_rdata(node)
        .into_iter()
        .map(|txt| Record::from_rdata(owner.clone(), ttl, txt))
        .collect()
}

/// Parses an address as registered.
///
/// Parsed once per rendering, not per answer.
fn parse_addr(addr: &str) -> Addr {
    match addr.parse::<IpAddr>() {
        Ok(ip) => Addr::Ip(ip.to_canonical()),
        Err(_) => host_name(addr).map_or(Addr::Invalid, Addr::Host),
    }
}

/// What answers about an instance need, for `domain` and `dc`.
///
/// An explicit service address (one that differs from its node's) makes the SRV target
/// `<hex>.addr.<dc>.<domain>`, as in Consul: the node's name would resolve to the wrong
/// address.
fn render(inst: &Instance, domain: &Name, dc: &str) -> Rendered {
    let svc = &inst.service;
    let node = &inst.node;
    let explicit = !svc.address.is_empty() && svc.address != node.address;
    let addr = parse_addr(if svc.address.is_empty() {
        &node.address
    } else {
        &svc.address
    });
    let node_name = fqdn(&[&node.node, "node", dc], domain);
    let srv_target = match &addr {
        Addr::Ip(ip) if explicit => fqdn(&[&hex_ip(*ip), "addr", dc], domain),
        Addr::Ip(_) => node_name.clone(),
        Addr::Host(h) => Some(h.clone()),
        Addr::Invalid => None,
    };
    Rendered {
        addr,
        srv_target,
        node_name,
        meta: meta_rdata(node),
    }
}

struct Responder<'a, 'c> {
    ctx: &'a Context<'c>,
    qname: &'a Name,
    qtype: RecordType,
    domain: &'a Name,
}

impl Responder<'_, '_> {
    fn settings(&self) -> &Settings {
        self.ctx.settings
    }

    fn nxdomain(&self) -> Resolution {
        negative(ResponseCode::NXDomain, self.domain, self.ctx)
    }

    fn nodata(&self) -> Resolution {
        negative(ResponseCode::NoError, self.domain, self.ctx)
    }

    fn in_domain<R: Rng + ?Sized>(&self, labels: &[String], rng: &mut R) -> Resolution {
        match self.qtype {
            RecordType::SOA => {
                let mut res = Resolution::new(ResponseCode::NoError, true);
                res.answers.push(soa_record(self.domain, self.ctx));
                let (ns, glue) = self.name_servers(rng);
                res.authorities = ns;
                res.additionals = glue;
                return res;
            }
            RecordType::NS => {
                let mut res = Resolution::new(ResponseCode::NoError, true);
                let (ns, glue) = self.name_servers(rng);
                res.answers = ns;
                res.additionals = glue;
                return res;
            }
            // Zone transfers: the zone is generated from the catalog, and there is no zone to
            // hand over.
            RecordType::AXFR | RecordType::IXFR => {
                return Resolution::new(ResponseCode::NotImp, true);
            }
            _ => {}
        }
        match parse(labels, self.qtype) {
            Lookup::Service {
                name,
                tag,
                locality,
            } => self.service(&name, tag.as_deref(), &locality, rng),
            Lookup::Node { name, locality } => self.node(&name, &locality),
            Lookup::Addr(ip) => self.addr(ip),
            Lookup::Query { name, locality } => self.prepared(&name, &locality, rng),
            Lookup::Unsupported | Lookup::Invalid => self.nxdomain(),
        }
    }

    /// NS records for up to three healthy servers (instances of `consul`), with glue.
    ///
    /// Three: enough for a resolver to fail over, few enough to keep the answer small; each
    /// server node counted once.
    fn name_servers<R: Rng + ?Sized>(&self, rng: &mut R) -> (Vec<Record>, Vec<Record>) {
        let settings = self.settings();
        let sets = self.ctx.view.service(CONSUL_SERVICE);
        let mut servers: Vec<&Instance> = sets
            .iter()
            .flat_map(|s| s.instances.iter())
            .filter(|i| i.status.serves(settings.only_passing))
            .collect();
        servers.shuffle(rng);
        let mut ns = Vec::new();
        let mut glue = Vec::new();
        let mut seen = HashSet::new();
        for inst in servers {
            if ns.len() >= 3 {
                break;
            }
            if !seen.insert(inst.node.node.as_str()) {
                continue;
            }
            let Some(target) = fqdn(
                &[&inst.node.node, "node", &settings.datacenter],
                self.domain,
            ) else {
                continue;
            };
            if let Ok(ip) = inst.node.address.parse::<IpAddr>() {
                glue.push(address_record(target.clone(), settings.node_ttl, ip));
            }
            ns.push(Record::from_rdata(
                self.domain.clone(),
                settings.node_ttl,
                RData::NS(NS(target)),
            ));
        }
        (ns, glue)
    }

    fn service<R: Rng + ?Sized>(
        &self,
        name: &str,
        tag: Option<&str>,
        locality: &Locality,
        rng: &mut R,
    ) -> Resolution {
        let settings = self.settings();
        // Only the local datacenter is served (no WAN federation yet): another one is a name
        // that does not exist from here, as Consul answers for a datacenter it cannot reach.
        if !locality.is(&settings.datacenter) {
            return self.nxdomain();
        }
        let only_passing = settings.only_passing;
        // `serves`: not critical, and not warning with `only_passing`.
        let keep = |i: &Instance| i.status.serves(only_passing) && tag.is_none_or(|t| i.has_tag(t));
        self.instances(name, keep, settings.service_ttl(name), rng)
    }

    /// Answers with the instances of the services named `lower` that `keep` accepts (NXDOMAIN
    /// when none): A/AAAA or SRV records, in random order.
    fn instances<R: Rng + ?Sized>(
        &self,
        lower: &str,
        keep: impl Fn(&Instance) -> bool,
        ttl: u32,
        rng: &mut R,
    ) -> Resolution {
        let dc = self.settings().datacenter.as_str();
        let sets = self.ctx.view.service(lower);
        let rendered: Vec<Arc<Vec<Rendered>>> = sets
            .iter()
            .map(|set| set.rendered(self.domain, dc, |i| render(i, self.domain, dc)))
            .collect();
        let mut candidates: Vec<(&Instance, &Rendered)> = sets
            .iter()
            .zip(rendered.iter())
            .flat_map(|(set, r)| set.instances.iter().zip(r.iter()))
            .filter(|(i, _)| keep(i))
            .collect();
        if candidates.is_empty() {
            return self.nxdomain();
        }
        // Random order; only the part that can be answered needs shuffling (twice the cap
        // leaves room for duplicates skipped on the way).
        // `partial_shuffle` leaves its random picks at the end of the slice; the rotation
        // brings them to the front, where the answer loops start.
        let amount = self.ctx.answer_cap.saturating_mul(2).min(candidates.len());
        candidates.partial_shuffle(rng, amount);
        let len = candidates.len();
        if amount < len {
            candidates.rotate_left(len - amount);
        }
        let mut res = Resolution::new(ResponseCode::NoError, true);
        if self.qtype == RecordType::SRV {
            self.srv_records(&candidates, ttl, &mut res);
        } else {
            self.service_addresses(&candidates, ttl, &mut res);
        }
        if res.answers.is_empty() {
            // Candidates exist but none has a record of the asked type (IPv4 only for AAAA, say).
            return self.nodata();
        }
        res
    }

    /// A prepared query: the instances it selects, answered like a service lookup, with the
    /// query's own DNS TTL when it has one.
    fn prepared<R: Rng + ?Sized>(
        &self,
        name: &str,
        locality: &Locality,
        rng: &mut R,
    ) -> Resolution {
        let settings = self.settings();
        if !locality.is(&settings.datacenter) {
            return self.nxdomain();
        }
        let st = self.ctx.view.state();
        let Some(q) = crate::server::prepared::resolve_folded(st, name) else {
            return self.nxdomain();
        };
        // The query's own selection (its tags and health filters) decides which instances
        // are answered; they are then rendered like any service answer.
        let (_, chosen) = crate::server::prepared::select(st, &q, 0);
        let picked: HashSet<(&str, &str)> = chosen
            .iter()
            .map(|c| (c.node.node.as_str(), c.service.id.as_str()))
            .collect();
        // The query's `DNS.TTL` when set, else the service's TTL from the configuration.
        let ttl = cairn_catalog::duration::parse_go_duration(&q.dns.ttl)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or_else(|_| settings.service_ttl(&q.service.service));
        let keep = |i: &Instance| picked.contains(&(i.node.node.as_str(), i.service.id.as_str()));
        self.instances(&q.service.service.to_ascii_lowercase(), keep, ttl, rng)
    }

    fn service_addresses(
        &self,
        candidates: &[(&Instance, &Rendered)],
        ttl: u32,
        res: &mut Resolution,
    ) {
        let settings = self.settings();
        let cap = self.ctx.answer_cap.max(1);
        // `a_record_limit` trims without setting TC: it is a chosen answer size, not a
        // transport limit.
        let limit = match settings.a_record_limit {
            0 => usize::MAX,
            n => n,
        };
        // Several instances on one address give one record: an A record has no port to tell
        // them apart.
        let mut seen: HashSet<IpAddr> = HashSet::new();
        let mut cname: Option<Record> = None;
        for (i, (_, r)) in candidates.iter().enumerate() {
            if res.answers.len() >= limit {
                break;
            }
            if res.answers.len() >= cap {
                res.capped = i < candidates.len();
                break;
            }
            match &r.addr {
                Addr::Ip(ip) => {
                    if wants(self.qtype, *ip) && seen.insert(*ip) {
                        res.answers
                            .push(address_record(self.qname.clone(), ttl, *ip));
                    }
                }
                // A host name: answered with a CNAME when no instance has an address.
                Addr::Host(target) => {
                    if cname.is_none() {
                        cname = Some(Record::from_rdata(
                            self.qname.clone(),
                            ttl,
                            RData::CNAME(CNAME(target.clone())),
                        ));
                    }
                }
                Addr::Invalid => {}
            }
        }
        if res.answers.is_empty()
            && let Some(c) = cname
        {
            res.answers.push(c);
        }
    }

    fn srv_records(&self, candidates: &[(&Instance, &Rendered)], ttl: u32, res: &mut Resolution) {
        let settings = self.settings();
        let cap = self.ctx.answer_cap.max(1);
        // One SRV per node, address and port: the same endpoint registered twice (two service
        // IDs) is one target.
        let mut seen: HashSet<(&str, &str, u16)> = HashSet::new();
        let mut extra_names: HashSet<&Name> = HashSet::new();
        let mut meta_nodes: HashSet<&str> = HashSet::new();
        let mut used = 0usize;
        for (i, (inst, r)) in candidates.iter().enumerate() {
            if res.answers.len() >= cap {
                res.capped = i < candidates.len();
                break;
            }
            let svc = &inst.service;
            let node = &inst.node;
            let addr = if svc.address.is_empty() {
                node.address.as_str()
            } else {
                svc.address.as_str()
            };
            if !seen.insert((node.node.as_str(), addr, svc.port)) {
                continue;
            }
            let Some(target) = &r.srv_target else {
                continue;
            };
            // hickory writes SRV targets uncompressed (RFC 2782), so an SRV answer takes at
            // least 18 bytes plus its target: stop once more could not fit.
            let at_least = 18 + wire_len(target);
            if used + at_least > self.ctx.size_budget {
                res.capped = true;
                break;
            }
            used += at_least;
            let weight = match inst.status {
                HealthStatus::Passing => svc.weights.passing,
                HealthStatus::Warning => svc.weights.warning,
                // Unreachable: critical instances were filtered out before.
                HealthStatus::Critical => 0,
            };
            let weight = u16::try_from(weight).unwrap_or(u16::MAX);
            res.answers.push(Record::from_rdata(
                self.qname.clone(),
                ttl,
                RData::SRV(SRV::new(1, weight, svc.port, target.clone())),
            ));
            // Glue for IP targets only; a host-name target is left for the client to resolve.
            if let Addr::Ip(ip) = r.addr
                && extra_names.insert(target)
            {
                res.additionals
                    .push(address_record(target.clone(), ttl, ip));
            }
            if settings.node_meta_txt
                && !r.meta.is_empty()
                && let Some(owner) = &r.node_name
                // Once per node, however many of its instances are answered.
                && meta_nodes.insert(node.node.as_str())
            {
                res.additionals.extend(
                    r.meta
                        .iter()
                        .map(|txt| Record::from_rdata(owner.clone(), ttl, txt.clone())),
                );
            }
        }
    }

    fn node(&self, name: &str, locality: &Locality) -> Resolution {
        let settings = self.settings();
        if !locality.is(&settings.datacenter) {
            return self.nxdomain();
        }
        let Some(node) = self.ctx.view.node(name) else {
            return self.nxdomain();
        };
        let qtype = self.qtype;
        if !matches!(
            qtype,
            RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT
        ) {
            return self.nodata();
        }
        let ttl = settings.node_ttl;
        let mut res = Resolution::new(ResponseCode::NoError, true);
        // TXT asks for the node's metadata only, not its address.
        if qtype != RecordType::TXT {
            match node.address.parse::<IpAddr>() {
                Ok(ip) => {
                    if wants(qtype, ip) {
                        res.answers
                            .push(address_record(self.qname.clone(), ttl, ip));
                    }
                }
                // A node address that is a host name: a CNAME, as for services.
                Err(_) => {
                    if let Some(target) = host_name(&node.address) {
                        res.answers.push(Record::from_rdata(
                            self.qname.clone(),
                            ttl,
                            RData::CNAME(CNAME(target)),
                        ));
                    }
                }
            }
        }
        let meta = meta_records(self.qname, &node, ttl);
        if matches!(qtype, RecordType::TXT | RecordType::ANY) {
            res.answers.extend(meta);
        } else if settings.node_meta_txt && !res.answers.is_empty() {
            res.additionals.extend(meta);
        }
        if res.answers.is_empty() {
            return self.nodata();
        }
        res
    }

    ///
    /// The address is in the name itself; nothing is looked up, so any well-formed name
    /// answers, registered or not, as in Consul.
    fn addr(&self, ip: IpAddr) -> Resolution {
        let qtype = self.qtype;
        let answers = match ip {
            IpAddr::V4(_) => matches!(qtype, RecordType::A | RecordType::ANY),
            IpAddr::V6(_) => matches!(qtype, RecordType::AAAA | RecordType::ANY),
        };
        if !answers {
            return self.nodata();
        }
        let mut res = Resolution::new(ResponseCode::NoError, true);
        res.answers.push(address_record(
            self.qname.clone(),
            self.settings().node_ttl,
            ip,
        ));
        res
    }
}
