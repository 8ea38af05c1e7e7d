//! Tests of the engine without sockets: a catalog state built with commands, queries built
//! and answers read with hickory-proto.
//!
//! Queries go through [`handle`] as bytes and answers are decoded back, so each test covers
//! the wire path too; the random source is seeded, and the time fixed, so answers repeat.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cairn_catalog::command::RegisterRequest;
use cairn_catalog::model::{HealthCheck, HealthStatus, Service, Weights};
use cairn_catalog::{Command, State};
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::settings::parse_domain;
use super::wire::{MAX_TCP_SIZE, Outcome, PLAIN_UDP_SIZE, Transport, handle};
use super::{Cache, Settings, View};

/// A catalog under construction.
struct Fixture {
    state: State,
    index: u64,
}

impl Fixture {
    /// A catalog with one server (`server1`, running the `consul` service), so that NS and
    /// SOA questions have a name server to answer with.
    fn new() -> Fixture {
        let mut fx = Fixture {
            state: State::new(),
            index: 0,
        };
        fx.node("server1", "10.0.0.1", &[]);
        fx.service(
            "server1",
            "consul",
            "consul",
            "",
            8300,
            &[],
            Weights::default(),
        );
        fx
    }

    /// Applies a registration at the next index, as the Raft log would.
    fn apply(&mut self, req: RegisterRequest) {
        self.index += 1;
        let applied = self
            .state
            .apply(self.index, &Command::Register { req, now_ms: 1_000 });
        assert!(applied.result.is_ok(), "{:?}", applied.result);
    }

    /// Registers (or updates) a node in `dc1`.
    fn node(&mut self, name: &str, addr: &str, meta: &[(&str, &str)]) {
        self.apply(RegisterRequest {
            node: name.into(),
            address: addr.into(),
            datacenter: "dc1".into(),
            node_meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        });
    }

    /// Registers a service instance on an existing node.
    #[allow(clippy::too_many_arguments)]
    fn service(
        &mut self,
        node: &str,
        id: &str,
        name: &str,
        addr: &str,
        port: u16,
        tags: &[&str],
        weights: Weights,
    ) {
        self.apply(RegisterRequest {
            node: node.into(),
            skip_node_update: true,
            service: Some(Service {
                id: id.into(),
                service: name.into(),
                address: addr.into(),
                port,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                weights,
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    /// Registers (or updates) a check; an empty `service_id` makes it a node check.
    fn check(&mut self, node: &str, id: &str, service_id: &str, status: HealthStatus) {
        self.apply(RegisterRequest {
            node: node.into(),
            skip_node_update: true,
            check: Some(HealthCheck {
                node: node.into(),
                check_id: id.into(),
                name: id.into(),
                status,
                service_id: service_id.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

/// Consul's defaults for `consul.` in `dc1`.
fn settings() -> Settings {
    Settings::new("consul.", "dc1")
}

/// A query for `name` with ID 4242 and RD set, with an OPT record of `edns` bytes if given.
fn query_bytes(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut msg = Message::query();
    msg.metadata.id = 4242;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    msg.to_vec().expect("encode query")
}

/// Runs one packet through the engine; returns the raw answer.
fn raw(
    fx: &Fixture,
    s: &Settings,
    cache: &Cache,
    packet: &[u8],
    transport: Transport,
    seed: u64,
) -> Outcome {
    let view = View::new(&fx.state, cache);
    let mut rng = StdRng::seed_from_u64(seed);
    handle(packet, transport, s, &view, 1_700_000_000, &mut rng)
}

/// Asks with a fresh cache and a fixed seed; the decoded answer and its size in bytes.
fn ask_with(
    fx: &Fixture,
    s: &Settings,
    name: &str,
    qtype: RecordType,
    transport: Transport,
    edns: Option<u16>,
) -> (Message, usize) {
    let cache = Cache::new();
    match raw(fx, s, &cache, &query_bytes(name, qtype, edns), transport, 7) {
        Outcome::Reply(bytes) => (
            Message::from_vec(&bytes).expect("decode answer"),
            bytes.len(),
        ),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Asks over plain UDP with the default settings.
fn ask(fx: &Fixture, name: &str, qtype: RecordType) -> Message {
    ask_with(fx, &settings(), name, qtype, Transport::Udp, None).0
}

/// The addresses of the A and AAAA records, sorted (answers are shuffled).
fn addrs(records: &[Record]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Asserts Consul's negative answer: NXDOMAIN, no answers, and the zone's SOA with the
/// default timers.
fn is_nxdomain_with_soa(m: &Message) {
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m}");
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    let RData::SOA(soa) = &m.authorities[0].data else {
        panic!("no SOA: {m}");
    };
    assert_eq!(m.authorities[0].name.to_ascii(), "consul.");
    assert_eq!(soa.mname.to_ascii(), "ns.consul.");
    assert_eq!(soa.rname.to_ascii(), "hostmaster.consul.");
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (3600, 600, 86400, 0)
    );
}

/// Three web instances: one with a service address, one on the node address, one critical.
fn web() -> Fixture {
    let mut fx = Fixture::new();
    fx.node("n1", "10.0.1.1", &[("rack", "r1"), ("rfc1035-raw", "x=y")]);
    fx.node("n2", "10.0.1.2", &[]);
    fx.node("n3", "10.0.1.3", &[]);
    fx.service(
        "n1",
        "web1",
        "web",
        "192.0.2.10",
        8080,
        &["v1", "Primary"],
        Weights {
            passing: 10,
            warning: 1,
        },
    );
    fx.service("n2", "web2", "web", "", 8081, &["v2"], Weights::default());
    fx.service("n3", "web3", "web", "", 8082, &["v1"], Weights::default());
    fx.check("n1", "service:web1", "web1", HealthStatus::Passing);
    fx.check("n2", "service:web2", "web2", HealthStatus::Passing);
    fx.check("n3", "service:web3", "web3", HealthStatus::Critical);
    fx
}

/// A service's A answer: healthy instances only, each at its service address or else its
/// node's, TTL 0, owned by the name as asked.
#[test]
fn service_a_answers_healthy_instances_with_service_or_node_address() {
    let fx = web();
    let m = ask(&fx, "web.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    // No recursors configured, so RA stays clear while RD is echoed.
    assert!(!m.metadata.recursion_available);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.metadata.id, 4242);
    // web1 at its own address, web2 at its node's; web3 is critical and left out.
    assert_eq!(addrs(&m.answers), vec![ip("10.0.1.2"), ip("192.0.2.10")]);
    // No `service_ttl`: TTL 0, as Consul answers by default.
    assert!(m.answers.iter().all(|r| r.ttl == 0));
    assert!(m.answers.iter().all(|r| r.dns_class == DNSClass::IN));
    assert_eq!(m.queries.len(), 1);
    // The datacenter, in both spellings, and case do not change the answer.
    for name in [
        "web.service.dc1.consul.",
        "web.service.dc1.dc.consul.",
        "WEB.Service.CONSUL.",
    ] {
        let m = ask(&fx, name, RecordType::A);
        assert_eq!(addrs(&m.answers), vec![ip("10.0.1.2"), ip("192.0.2.10")]);
        assert_eq!(
            m.answers[0].name.to_ascii(),
            name,
            "answers use the asked name"
        );
    }
}

/// Warning instances are served unless `only_passing`; a critical node check hides every
/// instance on the node.
#[test]
fn health_filtering_follows_consul() {
    let mut fx = web();
    // Warning is served unless only_passing.
    fx.check("n2", "service:web2", "web2", HealthStatus::Warning);
    let m = ask(&fx, "web.service.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("10.0.1.2"), ip("192.0.2.10")]);
    let mut s = settings();
    s.only_passing = true;
    let (m, _) = ask_with(
        &fx,
        &s,
        "web.service.consul.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    assert_eq!(addrs(&m.answers), vec![ip("192.0.2.10")]);
    // A node-level critical check (serfHealth, node maintenance) hides every service on it.
    fx.check("n1", "serfHealth", "", HealthStatus::Critical);
    let m = ask(&fx, "web.service.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("10.0.1.2")]);
    fx.check("n2", "_node_maintenance", "", HealthStatus::Critical);
    // Nothing healthy: NXDOMAIN with the SOA, as Consul answers.
    is_nxdomain_with_soa(&ask(&fx, "web.service.consul.", RecordType::A));
    is_nxdomain_with_soa(&ask(&fx, "web.service.consul.", RecordType::SRV));
}

/// Unknown services and nodes, other datacenters and unsupported kinds all read as names
/// that do not exist.
#[test]
fn unknown_names_are_nxdomain_with_soa() {
    let fx = web();
    for name in [
        "nope.service.consul.",
        "nope.node.consul.",
        "web.service.dc2.consul.",
        "n1.node.dc2.consul.",
        "consul.",
        "foo.consul.",
        "q.query.consul.",
        "web.connect.consul.",
        "web.service.p1.peer.consul.",
        "zz.addr.consul.",
    ] {
        is_nxdomain_with_soa(&ask(&fx, name, RecordType::A));
    }
}

/// RFC 2308 NODATA: the name exists, the type does not, so NOERROR with the SOA.
#[test]
fn known_name_without_records_of_the_type_is_nodata() {
    let fx = web();
    for (name, qtype) in [
        ("web.service.consul.", RecordType::AAAA),
        ("web.service.consul.", RecordType::MX),
        ("n1.node.consul.", RecordType::AAAA),
        ("n1.node.consul.", RecordType::SRV),
        ("c000020a.addr.consul.", RecordType::AAAA),
    ] {
        let m = ask(&fx, name, qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty(), "{name}: {m}");
        assert!(
            matches!(m.authorities.first().map(|r| &r.data), Some(RData::SOA(_))),
            "{name}: {m}"
        );
    }
}

/// Tags filter in both the Consul and RFC 2782 forms, case-insensitively.
#[test]
fn tags_in_both_forms_filter_instances() {
    let fx = web();
    let m = ask(&fx, "v1.web.service.consul.", RecordType::A);
    assert_eq!(
        addrs(&m.answers),
        vec![ip("192.0.2.10")],
        "web3 is critical"
    );
    let m = ask(&fx, "primary.web.service.consul.", RecordType::A);
    assert_eq!(
        addrs(&m.answers),
        vec![ip("192.0.2.10")],
        "tags ignore case"
    );
    let m = ask(&fx, "_web._v2.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);
    let m = ask(&fx, "_web._tcp.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2, "_tcp means no tag filter");
    let m = ask(&fx, "_web._tcp.consul.", RecordType::SRV);
    assert_eq!(
        m.answers.len(),
        2,
        "`service` is optional for RFC 2782 SRV names"
    );
    let m = ask(&fx, "_web._tcp.dc1.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2);
    is_nxdomain_with_soa(&ask(&fx, "v3.web.service.consul.", RecordType::A));
}

/// SRV weights follow the instance's status, targets use `.addr` for explicit addresses,
/// and the additional section holds their addresses and the node metadata.
#[test]
fn srv_answers_carry_weights_targets_and_additional_records() {
    let mut fx = web();
    fx.check("n2", "service:web2", "web2", HealthStatus::Warning);
    let m = ask(&fx, "web.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2);
    let mut srvs: Vec<(u16, u16, u16, String)> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => (s.priority, s.weight, s.port, s.target.to_ascii()),
            other => panic!("{other:?}"),
        })
        .collect();
    srvs.sort();
    // web2 is warning: its Warning weight (1). web1 is passing with Passing weight 10, and
    // its own address gives an `.addr` target.
    assert_eq!(
        srvs,
        vec![
            (1, 1, 8081, "n2.node.dc1.consul.".to_string()),
            (1, 10, 8080, "c000020a.addr.dc1.consul.".to_string()),
        ]
    );
    let extra: Vec<(String, String)> = m
        .additionals
        .iter()
        .map(|r| (r.name.to_ascii(), r.data.to_string()))
        .collect();
    assert!(extra.contains(&("n2.node.dc1.consul.".into(), "10.0.1.2".into())));
    assert!(extra.contains(&("c000020a.addr.dc1.consul.".into(), "192.0.2.10".into())));
    // Node metadata of n1 as TXT under its node name (enable_additional_node_meta_txt).
    let txt: Vec<String> = m
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .map(|r| r.data.to_string())
        .collect();
    // n1's two metadata pairs; n2 has none.
    assert_eq!(txt.len(), 2, "{m}");
    let mut s = settings();
    s.node_meta_txt = false;
    let (m, _) = ask_with(
        &fx,
        &s,
        "web.service.consul.",
        RecordType::SRV,
        Transport::Udp,
        None,
    );
    assert!(
        m.additionals
            .iter()
            .all(|r| r.record_type() != RecordType::TXT)
    );
}

/// The servers are the zone's name servers; the SOA serial is the time of the answer.
#[test]
fn servers_answer_consul_service_ns_and_soa() {
    let fx = web();
    let m = ask(&fx, "consul.service.consul.", RecordType::SRV);
    let RData::SRV(srv) = &m.answers[0].data else {
        panic!("{m}");
    };
    assert_eq!(
        (srv.port, srv.target.to_ascii().as_str()),
        (8300, "server1.node.dc1.consul.")
    );
    let m = ask(&fx, "consul.", RecordType::NS);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data.to_string(), "server1.node.dc1.consul.");
    assert_eq!(addrs(&m.additionals), vec![ip("10.0.0.1")]);
    let m = ask(&fx, "anything.consul.", RecordType::SOA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("{m}");
    };
    // The serial is the time of the answer (the fixed clock of `raw`).
    assert_eq!(soa.serial, 1_700_000_000);
    assert_eq!(m.authorities.len(), 1, "NS in the authority section");
}

/// A node answers its address, and its metadata as TXT (answers for TXT and ANY, extras
/// otherwise); `node_ttl` applies.
#[test]
fn node_lookups() {
    let fx = web();
    let m = ask(&fx, "n1.node.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("10.0.1.1")]);
    // Node meta as TXT in the additional section by default.
    assert_eq!(m.additionals.len(), 2);
    let m = ask(&fx, "N1.node.dc1.consul.", RecordType::ANY);
    assert_eq!(addrs(&m.answers), vec![ip("10.0.1.1")]);
    let mut txt: Vec<String> = m
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .map(|r| r.data.to_string())
        .collect();
    txt.sort();
    // The `rfc1035-` key gives its value alone.
    assert_eq!(txt, vec!["rack=r1".to_string(), "x=y".to_string()]);
    let m = ask(&fx, "n1.node.consul.", RecordType::TXT);
    assert_eq!(m.answers.len(), 2);
    assert!(m.answers.iter().all(|r| r.record_type() == RecordType::TXT));
    let mut s = settings();
    s.node_ttl = 30;
    let (m, _) = ask_with(
        &fx,
        &s,
        "n2.node.consul.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    assert_eq!(m.answers[0].ttl, 30);
}

/// Names registered in mixed case are found by their lowercase DNS form.
#[test]
fn node_names_match_case_insensitively() {
    let mut fx = Fixture::new();
    fx.node("MyNode", "10.9.9.9", &[]);
    fx.service("MyNode", "Api1", "Api", "", 80, &[], Weights::default());
    let m = ask(&fx, "mynode.node.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("10.9.9.9")]);
    let m = ask(&fx, "api.service.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("10.9.9.9")]);
}

/// `.addr` names answer the address they encode.
#[test]
fn addr_lookups() {
    let fx = web();
    let m = ask(&fx, "c000020a.addr.dc1.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("192.0.2.10")]);
    let m = ask(
        &fx,
        "20010db8000000000000000000000001.addr.consul.",
        RecordType::AAAA,
    );
    assert_eq!(addrs(&m.answers), vec![ip("2001:db8::1")]);
}

/// PTR answers name the node, or the service for an explicit service address.
#[test]
fn reverse_lookups() {
    let fx = web();
    let m = ask(&fx, "1.1.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.answers[0].data.to_string(), "n1.node.dc1.consul.");
    assert!(m.metadata.authoritative);
    // 192.0.2.10 is web1's own address: the PTR names the service.
    let m = ask(&fx, "10.2.0.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.answers[0].data.to_string(), "web.service.dc1.consul.");
    // An address the catalog does not know, and no recursors: NXDOMAIN.
    let m = ask(&fx, "9.9.9.9.in-addr.arpa.", RecordType::PTR);
    is_nxdomain_with_soa(&m);
    let m = ask(&fx, "1.1.0.10.in-addr.arpa.", RecordType::A);
    assert!(m.answers.is_empty());
    // A node stored without a datacenter is in the local one.
    let mut fx = fx;
    fx.apply(RegisterRequest {
        node: "nodc".into(),
        address: "10.7.7.7".into(),
        ..Default::default()
    });
    let m = ask(&fx, "7.7.7.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.answers[0].data.to_string(), "nodc.node.dc1.consul.");
}

/// Without recursors outside names are REFUSED; with them they are forwarded, and RA is set.
#[test]
fn outside_names_are_refused_or_forwarded() {
    let fx = web();
    let m = ask(&fx, "example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    let mut s = settings();
    s.recursion = true;
    let cache = Cache::new();
    for name in ["example.com.", "9.9.9.9.in-addr.arpa."] {
        match raw(
            &fx,
            &s,
            &cache,
            &query_bytes(name, RecordType::A, None),
            Transport::Udp,
            1,
        ) {
            // The relayed answer must fit what the client accepts: 512 bytes without EDNS.
            Outcome::Forward(f) => assert_eq!(f.max_size, PLAIN_UDP_SIZE),
            other => panic!("{other:?}"),
        }
    }
    // RA is set on local answers when recursors exist.
    let (m, _) = ask_with(
        &fx,
        &s,
        "web.service.consul.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    assert!(m.metadata.recursion_available);
}

/// Answers and the SOA of a question in the alternative domain stay in that domain.
#[test]
fn alt_domain_answers_in_the_asked_domain() {
    let fx = web();
    let mut s = settings();
    s.alt_domain = parse_domain("example.internal.");
    let (m, _) = ask_with(
        &fx,
        &s,
        "web.service.example.internal.",
        RecordType::SRV,
        Transport::Udp,
        None,
    );
    assert!(
        m.answers
            .iter()
            .all(|r| r.data.to_string().ends_with(".dc1.example.internal.")),
        "{m}"
    );
    let (m, _) = ask_with(
        &fx,
        &s,
        "nope.service.example.internal.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    assert_eq!(m.authorities[0].name.to_ascii(), "example.internal.");
}

/// Service TTLs apply to the answers and to their additional records.
#[test]
fn service_ttls() {
    let fx = web();
    let mut s = settings();
    s.set_service_ttls([
        ("*", std::time::Duration::from_secs(5)),
        ("we*", std::time::Duration::from_secs(7)),
    ]);
    let (m, _) = ask_with(
        &fx,
        &s,
        "web.service.consul.",
        RecordType::SRV,
        Transport::Udp,
        None,
    );
    assert!(m.answers.iter().all(|r| r.ttl == 7));
    assert!(m.additionals.iter().all(|r| r.ttl == 7));
    let (m, _) = ask_with(
        &fx,
        &s,
        "consul.service.consul.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    // `consul` matches no prefix: the `*` default.
    assert_eq!(m.answers[0].ttl, 5);
}

/// `n` nodes, each with one `api` instance and one metadata pair.
fn many(n: usize) -> Fixture {
    let mut fx = Fixture::new();
    for i in 0..n {
        let node = format!("node-{i}");
        fx.node(
            &node,
            &format!("10.1.{}.{}", i / 250, i % 250 + 1),
            &[("zone", "a")],
        );
        fx.service(&node, "api", "api", "", 9000, &["t"], Weights::default());
    }
    fx
}

/// Twenty seeds give many different orders: clients that take the first answer spread
/// their load.
#[test]
fn answers_are_shuffled() {
    let fx = many(10);
    let s = settings();
    let cache = Cache::new();
    let mut orders = std::collections::HashSet::new();
    for seed in 0..20 {
        let Outcome::Reply(b) = raw(
            &fx,
            &s,
            &cache,
            &query_bytes("api.service.consul.", RecordType::A, Some(4096)),
            Transport::Udp,
            seed,
        ) else {
            panic!("no reply");
        };
        let m = Message::from_vec(&b).expect("decode");
        assert_eq!(m.answers.len(), 10);
        orders.insert(
            m.answers
                .iter()
                .map(|r| r.data.to_string())
                .collect::<Vec<_>>(),
        );
    }
    // Ten answers have 10! orders: twenty seeds rarely repeat one, and a fixed order would
    // give a single one.
    assert!(orders.len() > 10, "only {} distinct orders", orders.len());
}

/// Plain UDP is capped at `udp_answer_limit` (at most 8), with TC only under
/// `enable_truncate`; EDNS and TCP get every answer.
#[test]
fn plain_udp_keeps_udp_answer_limit_and_sets_tc_only_when_enabled() {
    let fx = many(10);
    let (m, len) = ask_with(
        &fx,
        &settings(),
        "api.service.consul.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    // Consul's default `udp_answer_limit`; no TC, since `enable_truncate` is off.
    assert_eq!(m.answers.len(), 3);
    assert!(!m.metadata.truncation);
    assert!(len <= PLAIN_UDP_SIZE);
    assert!(m.edns.is_none(), "no OPT without EDNS in the query");
    let mut s = settings();
    s.enable_truncate = true;
    s.udp_answer_limit = 20;
    let (m, _) = ask_with(
        &fx,
        &s,
        "api.service.consul.",
        RecordType::A,
        Transport::Udp,
        None,
    );
    assert_eq!(m.answers.len(), 8, "capped at 8");
    assert!(m.metadata.truncation);
    // EDNS and TCP get everything that fits.
    let (m, _) = ask_with(
        &fx,
        &s,
        "api.service.consul.",
        RecordType::A,
        Transport::Udp,
        Some(4096),
    );
    assert_eq!(m.answers.len(), 10);
    assert!(!m.metadata.truncation);
    assert_eq!(
        m.edns.as_ref().map(Edns::max_payload),
        Some(4096),
        "EDNS echoed"
    );
    let (m, _) = ask_with(
        &fx,
        &s,
        "api.service.consul.",
        RecordType::A,
        Transport::Tcp,
        None,
    );
    assert_eq!(m.answers.len(), 10);
}

/// `a_record_limit` trims address answers without TC and leaves SRV alone.
#[test]
fn a_record_limit_caps_address_answers_but_not_srv() {
    let fx = many(10);
    let mut s = settings();
    s.a_record_limit = 2;
    let (m, _) = ask_with(
        &fx,
        &s,
        "api.service.consul.",
        RecordType::A,
        Transport::Tcp,
        None,
    );
    assert_eq!(m.answers.len(), 2);
    assert!(!m.metadata.truncation);
    let (m, _) = ask_with(
        &fx,
        &s,
        "api.service.consul.",
        RecordType::SRV,
        Transport::Tcp,
        None,
    );
    assert_eq!(m.answers.len(), 10);
}

/// Every SRV answer has its address in the additional section, and nothing else is there
/// but the node TXT records.
fn srv_consistent(m: &Message) {
    let targets: std::collections::HashSet<Name> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => s.target.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let with_addr: std::collections::HashSet<Name> = m
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(targets, with_addr);
    for r in &m.additionals {
        assert!(targets.contains(&r.name), "stray additional {r}");
    }
}

/// A thousand instances are trimmed to the size each client allows, glue staying
/// consistent with the answers kept.
#[test]
fn large_services_fit_the_client_size() {
    let fx = many(1000);
    let mut s = settings();
    s.enable_truncate = true;
    for (transport, edns, limit) in [
        (Transport::Udp, None, PLAIN_UDP_SIZE),
        (Transport::Udp, Some(1232), 1232),
        (Transport::Udp, Some(4096), 4096),
        // An EDNS buffer below 512 counts as 512 (RFC 6891).
        (Transport::Udp, Some(100), PLAIN_UDP_SIZE),
        (Transport::Tcp, None, MAX_TCP_SIZE),
    ] {
        for qtype in [RecordType::SRV, RecordType::A] {
            let (m, len) = ask_with(&fx, &s, "api.service.consul.", qtype, transport, edns);
            assert!(
                len <= limit,
                "{len} > {limit} for {transport:?} {edns:?} {qtype}"
            );
            assert!(!m.answers.is_empty());
            assert_eq!(
                m.metadata.truncation,
                m.answers.len() < 1000,
                "{transport:?} {edns:?} {qtype}: TC when trimmed"
            );
            if qtype == RecordType::SRV {
                srv_consistent(&m);
            }
            if edns.is_some() && transport == Transport::Udp {
                // A bigger buffer gives more answers than plain UDP.
                assert!(m.answers.len() > 3, "{edns:?}: {}", m.answers.len());
            }
        }
    }
    // Without enable_truncate, trimming is silent (Consul's default).
    let (m, _) = ask_with(
        &fx,
        &settings(),
        "api.service.consul.",
        RecordType::SRV,
        Transport::Udp,
        Some(1232),
    );
    assert!(!m.metadata.truncation);
}

/// Without name compression answers are larger, and the trimming accounts for it.
#[test]
fn uncompressed_answers_still_fit() {
    let fx = many(50);
    let mut s = settings();
    s.disable_compression = true;
    let (m, len) = ask_with(
        &fx,
        &s,
        "api.service.consul.",
        RecordType::SRV,
        Transport::Udp,
        Some(1232),
    );
    assert!(len <= 1232);
    srv_consistent(&m);
    let (_, compressed) = ask_with(
        &fx,
        &settings(),
        "api.service.consul.",
        RecordType::SRV,
        Transport::Udp,
        Some(1232),
    );
    assert!(compressed <= 1232);
}

/// One cache across catalog changes: health, a recovery and a node's new address all show
/// in the next answer.
#[test]
fn the_cache_follows_the_catalog() {
    let mut fx = web();
    let cache = Cache::new();
    let s = settings();
    let ask_cached = |fx: &Fixture| {
        let Outcome::Reply(b) = raw(
            fx,
            &s,
            &cache,
            &query_bytes("web.service.consul.", RecordType::A, None),
            Transport::Udp,
            1,
        ) else {
            panic!("no reply");
        };
        addrs(&Message::from_vec(&b).expect("decode").answers)
    };
    assert_eq!(ask_cached(&fx), vec![ip("10.0.1.2"), ip("192.0.2.10")]);
    fx.check("n2", "service:web2", "web2", HealthStatus::Critical);
    assert_eq!(ask_cached(&fx), vec![ip("192.0.2.10")]);
    fx.check("n3", "service:web3", "web3", HealthStatus::Passing);
    assert_eq!(ask_cached(&fx), vec![ip("10.0.1.3"), ip("192.0.2.10")]);
    // Moving a node moves the service's index too, so the memo is rebuilt.
    fx.node("n3", "10.0.1.33", &[]);
    assert_eq!(ask_cached(&fx), vec![ip("10.0.1.33"), ip("192.0.2.10")]);
}

/// The decoded reply of an outcome that must be one.
fn reply_of(out: Outcome) -> Message {
    match out {
        Outcome::Reply(b) => Message::from_vec(&b).expect("decode"),
        other => panic!("{other:?}"),
    }
}

/// Each malformed or unsupported query gets the response code of the module docs of
/// `wire`, or no answer at all.
#[test]
fn bad_queries_get_error_codes() {
    let fx = web();
    let s = settings();
    let cache = Cache::new();
    let run = |p: &[u8], t: Transport| raw(&fx, &s, &cache, p, t, 1);
    // Too short, or a response: no answer at all.
    assert!(matches!(run(&[1, 2, 3], Transport::Udp), Outcome::Drop));
    let mut resp = query_bytes("web.service.consul.", RecordType::A, None);
    resp[2] |= 0x80;
    assert!(matches!(run(&resp, Transport::Udp), Outcome::Drop));
    // Other opcodes: NOTIMP.
    for op in [
        OpCode::Notify,
        OpCode::Update,
        OpCode::Status,
        OpCode::Unknown(9),
    ] {
        let mut q = query_bytes("web.service.consul.", RecordType::A, None);
        q[2] = (q[2] & 0x87) | (u8::from(op) << 3);
        let m = reply_of(run(&q, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(m.metadata.id, 4242);
    }
    // No question, two questions, garbage after the header: FORMERR.
    let mut none = Message::query();
    none.metadata.id = 7;
    let m = reply_of(run(&none.to_vec().expect("encode"), Transport::Udp));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let mut two = Message::query();
    for n in ["a.service.consul.", "b.service.consul."] {
        two.add_query(Query::query(Name::from_ascii(n).expect("n"), RecordType::A));
    }
    let m = reply_of(run(&two.to_vec().expect("encode"), Transport::Udp));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let mut cut = query_bytes("web.service.consul.", RecordType::A, None);
    cut.truncate(20);
    let m = reply_of(run(&cut, Transport::Udp));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // A compression pointer loop in the question.
    let mut looped = cut[..12].to_vec();
    looped.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    let m = reply_of(run(&looped, Transport::Udp));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Oversized: REFUSED.
    let mut big = query_bytes("web.service.consul.", RecordType::A, None);
    big.resize(5000, 0);
    let m = reply_of(run(&big, Transport::Tcp));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // Zone transfers: NOTIMP. Chaos class: REFUSED.
    let m = reply_of(run(
        &query_bytes("consul.", RecordType::AXFR, None),
        Transport::Tcp,
    ));
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    let mut ch = Message::query();
    let mut q = Query::query(
        Name::from_ascii("version.bind.").expect("n"),
        RecordType::TXT,
    );
    q.set_query_class(DNSClass::CH);
    ch.add_query(q);
    let m = reply_of(run(&ch.to_vec().expect("encode"), Transport::Udp));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // EDNS version 1: BADVERS, with an OPT record.
    let mut v1 = Message::query();
    v1.add_query(Query::query(
        Name::from_ascii("web.service.consul.").expect("n"),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_version(1);
    v1.set_edns(e);
    let m = reply_of(run(&v1.to_vec().expect("encode"), Transport::Udp));
    // BADVERS is 16, which hickory decodes as its alias BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.edns.is_some());
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Any reply fits the transport, has at least a header and keeps the query's ID.
    fn check(fx: &Fixture, cache: &Cache, packet: &[u8], transport: Transport) {
        let mut s = settings();
        s.enable_truncate = true;
        if let Outcome::Reply(bytes) = raw(fx, &s, cache, packet, transport, 3) {
            let limit = match transport {
                Transport::Tcp => MAX_TCP_SIZE,
                Transport::Udp => super::super::wire::MAX_UDP_SIZE,
            };
            assert!(bytes.len() <= limit);
            assert!(bytes.len() >= 12);
            assert_eq!(bytes[..2], packet[..2], "the answer keeps the ID");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let fx = many(5);
            let cache = Cache::new();
            check(&fx, &cache, &bytes, Transport::Udp);
            check(&fx, &cache, &bytes, Transport::Tcp);
        }

        #[test]
        fn mutated_queries_never_panic(
            name in "[a-z_.0-9-]{0,40}",
            qtype in any::<u16>(),
            edns in proptest::option::of(any::<u16>()),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let fx = many(5);
            let cache = Cache::new();
            let full = format!("{name}.consul.");
            let Ok(n) = Name::from_ascii(&full) else { return Ok(()); };
            let mut msg = Message::query();
            msg.add_query(Query::query(n, RecordType::from(qtype)));
            if let Some(size) = edns {
                let mut e = Edns::new();
                e.set_max_payload(size);
                msg.set_edns(e);
            }
            let Ok(mut bytes) = msg.to_vec() else { return Ok(()); };
            for (pos, val) in flips {
                if !bytes.is_empty() {
                    let i = pos % bytes.len();
                    bytes[i] ^= val;
                }
            }
            check(&fx, &cache, &bytes, Transport::Udp);
            check(&fx, &cache, &bytes, Transport::Tcp);
        }
    }
}

/// RFC 1464 escaping of keys, and the `rfc1035-` prefix for raw values.
#[test]
fn metadata_txt_follows_rfc_1464() {
    use super::resolve::meta_txt;
    assert_eq!(meta_txt("rack", "r1"), "rack=r1");
    assert_eq!(meta_txt("a=b", "c`d"), "a`=b=c``d");
    assert_eq!(meta_txt(" k ", "v"), "` k` =v");
    assert_eq!(meta_txt("RFC1035-raw", "as is=1"), "as is=1");
}

/// CPU time of this thread in nanoseconds (Linux), so timings hold on a busy machine.
/// 0 where the file does not exist: the timing tests then report nonsense, not fail.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Timing of the heaviest answers (run with `--release --ignored --nocapture`).
#[test]
#[ignore]
fn timing_of_large_answers() {
    let fx = many(1000);
    let cache = Cache::new();
    let s = settings();
    for (label, transport, edns, qtype) in [
        ("A plain", Transport::Udp, None, RecordType::A),
        ("SRV plain", Transport::Udp, None, RecordType::SRV),
        ("SRV edns 1232", Transport::Udp, Some(1232), RecordType::SRV),
        ("SRV edns 4096", Transport::Udp, Some(4096), RecordType::SRV),
        ("A edns 4096", Transport::Udp, Some(4096), RecordType::A),
        ("SRV tcp", Transport::Tcp, None, RecordType::SRV),
    ] {
        let q = query_bytes("api.service.consul.", qtype, edns);
        let _ = raw(&fx, &s, &cache, &q, transport, 0);
        let (start, mut n) = (cpu_ns(), 0u64);
        while cpu_ns() - start < 300_000_000 {
            for _ in 0..10 {
                let _ = raw(&fx, &s, &cache, &q, transport, n);
                n += 1;
            }
        }
        println!(
            "{label}: {} µs CPU per query",
            (cpu_ns() - start) / n / 1000
        );
    }
}

/// Timing of resolution alone (run with `--release --ignored --nocapture`).
#[test]
#[ignore]
fn timing_of_resolution() {
    use super::resolve::{Context, resolve};
    let fx = many(1000);
    let cache = Cache::new();
    let s = settings();
    let view = View::new(&fx.state, &cache);
    let name = Name::from_ascii("api.service.consul.").expect("name");
    for cap in [3usize, 256, 4096] {
        let ctx = Context {
            settings: &s,
            view: &view,
            now_unix: 0,
            answer_cap: cap,
            size_budget: 65_535,
        };
        let mut rng = StdRng::seed_from_u64(1);
        let _ = resolve(&name, RecordType::SRV, &ctx, &mut rng);
        let (start, mut n) = (cpu_ns(), 0u64);
        while cpu_ns() - start < 300_000_000 {
            for _ in 0..10 {
                let _ = resolve(&name, RecordType::SRV, &ctx, &mut rng);
            }
            n += 10;
        }
        println!(
            "resolve SRV cap {cap}: {} µs CPU",
            (cpu_ns() - start) / n / 1000
        );
    }
}

/// Where the time of a small answer goes: view look-ups, decoding and the whole path
/// (run with `--release --ignored --nocapture`).
#[test]
#[ignore]
fn timing_breakdown() {
    let fx = many(1000);
    let cache = Cache::new();
    let view = View::new(&fx.state, &cache);
    let measure = |label: &str, f: &dyn Fn()| {
        f();
        let (start, mut n) = (cpu_ns(), 0u64);
        while cpu_ns() - start < 200_000_000 {
            for _ in 0..100 {
                f();
            }
            n += 100;
        }
        println!("{label}: {} ns", (cpu_ns() - start) / n);
    };
    measure("view.service", &|| {
        let _ = view.service("api");
    });
    measure("service_index", &|| {
        let _ = fx.state.service_index("api");
    });
    let q = query_bytes("api.service.consul.", RecordType::A, None);
    measure("decode", &|| {
        let _ = Message::from_vec(&q);
    });
    let s = settings();
    measure("handle A plain", &|| {
        let _ = raw(&fx, &s, &cache, &q, Transport::Udp, 1);
    });
    let q1 = query_bytes("consul.service.consul.", RecordType::A, None);
    measure("handle 1-instance A plain", &|| {
        let _ = raw(&fx, &s, &cache, &q1, Transport::Udp, 1);
    });
}

/// Prepared queries by name, by ID and through a template, with the query's DNS TTL.
#[test]
fn prepared_queries_answer_like_services_with_their_own_ttl() {
    use cairn_catalog::model::{PreparedQuery, QueryDns, QueryService, QueryTemplate};
    let mut fx = web();
    let mut add = |q: PreparedQuery| {
        fx.index += 1;
        let applied = fx.state.apply(
            fx.index,
            &Command::QuerySet {
                query: q,
                create: true,
            },
        );
        assert!(applied.result.is_ok(), "{:?}", applied.result);
    };
    add(PreparedQuery {
        id: "4e0a6b0c-0000-4000-8000-000000000001".into(),
        name: "Web-V1".into(),
        service: QueryService {
            service: "web".into(),
            tags: vec!["v1".into()],
            ..QueryService::default()
        },
        dns: QueryDns { ttl: "30s".into() },
        ..PreparedQuery::default()
    });
    add(PreparedQuery {
        id: "4e0a6b0c-0000-4000-8000-000000000002".into(),
        name: "any-".into(),
        template: QueryTemplate {
            kind: "name_prefix_match".into(),
            ..QueryTemplate::default()
        },
        service: QueryService {
            service: "${name.suffix}".into(),
            ..QueryService::default()
        },
        ..PreparedQuery::default()
    });
    // By name (case-insensitively) and by ID: web1 only (web3 has v1 but is critical).
    for name in [
        "web-v1.query.consul.",
        "4e0a6b0c-0000-4000-8000-000000000001.query.dc1.consul.",
    ] {
        let m = ask(&fx, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(addrs(&m.answers), vec![ip("192.0.2.10")], "{name}");
        assert!(m.answers.iter().all(|r| r.ttl == 30));
    }
    // A template, as SRV too.
    let m = ask(&fx, "any-web.query.consul.", RecordType::A);
    assert_eq!(addrs(&m.answers), vec![ip("10.0.1.2"), ip("192.0.2.10")]);
    let m = ask(&fx, "any-web.query.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2, "{m}");
    // Unknown queries, other datacenters and templates selecting nothing: NXDOMAIN.
    for name in [
        "nope.query.consul.",
        "web-v1.query.dc2.consul.",
        "any-nothing.query.consul.",
    ] {
        is_nxdomain_with_soa(&ask(&fx, name, RecordType::A));
    }
}
