//! The body of the DNS fuzz target (`agent/fuzz`, `cargo fuzz run dns_query`): arbitrary bytes
//! through the whole query path (header checks, decoding, name parsing, resolution against a
//! small fixed catalog, trimming and encoding), over UDP and TCP.
//!
//! It lives in the crate, not in the fuzz target, so that ordinary builds compile it and a
//! test (`agent/tests/dns_fuzz_corpus.rs`) runs it over the committed seed corpus
//! (`agent/fuzz/corpus/dns_query/`): a change to the engine that breaks the fuzz target breaks
//! the test build first. The checks are the fuzzer's oracle, so they panic: every reply fits
//! the transport, decodes as a DNS response and carries the query's ID, and only a
//! configuration with recursors forwards.

use std::sync::OnceLock;

use cairn_catalog::command::RegisterRequest;
use cairn_catalog::model::{
    HealthCheck, HealthStatus, PreparedQuery, QueryDns, QueryService, QueryTemplate, Service,
};
use cairn_catalog::{Command, State};
use hickory_proto::op::{Message, MessageType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::wire::{MAX_TCP_SIZE, MAX_UDP_SIZE, Outcome, Transport, handle};
use super::{Cache, Settings, View};

/// The catalog every input is resolved against: 40 nodes with a `web` service (spelled `web`
/// or `Web`, some with their own address) in every health state, node metadata that needs
/// TXT escaping, a prepared query and a prepared query template.
///
/// Built once per process: the fuzzer calls [`fuzz_one`] millions of times.
fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut st = State::new();
        let mut index = 0;
        let mut apply = |cmd: Command| {
            index += 1;
            let applied = st.apply(index, &cmd);
            assert!(applied.result.is_ok(), "fuzz catalog: {:?}", applied.result);
        };
        for i in 0..40u32 {
            let node = format!("node-{i}");
            let req = RegisterRequest {
                node: node.clone(),
                address: format!("10.0.{}.{}", i / 200, i % 200 + 1),
                datacenter: "dc1".into(),
                node_meta: [("k".to_string(), "v=`x".to_string())].into(),
                service: Some(Service {
                    id: "web".into(),
                    service: if i % 2 == 0 { "web" } else { "Web" }.into(),
                    address: if i % 3 == 0 {
                        format!("192.0.2.{i}")
                    } else {
                        String::new()
                    },
                    port: 80,
                    tags: vec!["v1".into()],
                    ..Default::default()
                }),
                check: Some(HealthCheck {
                    node,
                    check_id: "c".into(),
                    status: match i % 3 {
                        0 => HealthStatus::Passing,
                        1 => HealthStatus::Warning,
                        _ => HealthStatus::Critical,
                    },
                    service_id: "web".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            apply(Command::Register { req, now_ms: 0 });
        }
        apply(Command::QuerySet {
            query: PreparedQuery {
                id: "4e0a6b0c-0000-4000-8000-000000000001".into(),
                name: "web-v1".into(),
                service: QueryService {
                    service: "web".into(),
                    tags: vec!["v1".into()],
                    ..QueryService::default()
                },
                dns: QueryDns { ttl: "30s".into() },
                ..PreparedQuery::default()
            },
            create: true,
        });
        apply(Command::QuerySet {
            query: PreparedQuery {
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
            },
            create: true,
        });
        st
    })
}

/// The settings for an input: its first byte (the high byte of the query ID) picks them, so
/// the fuzzer explores both trimming paths, forwarding and the record limits. Bit 0: TC on
/// trimming, bit 1: recursors configured, bit 2: no name compression, bit 3: only passing
/// instances, bits 6-7: the A record limit (0: none).
pub fn settings_for(data: &[u8]) -> Settings {
    let flags = data.first().copied().unwrap_or(0);
    let mut settings = Settings::new("consul.", "dc1");
    settings.enable_truncate = flags & 1 != 0;
    settings.recursion = flags & 2 != 0;
    settings.disable_compression = flags & 4 != 0;
    settings.only_passing = flags & 8 != 0;
    settings.a_record_limit = usize::from(flags >> 6);
    settings
}

/// Handles `data` as a query received over UDP and over TCP, checks both outcomes (panicking
/// on a violation, which is what the fuzzer looks for) and returns them: UDP first.
pub fn fuzz_one(data: &[u8]) -> [Outcome; 2] {
    let cache = Cache::new();
    let view = View::new(state(), &cache);
    let settings = settings_for(data);
    // The shuffle is seeded from the input, so a crash reproduces from its input alone.
    let seed = u64::from(data.first().copied().unwrap_or(0));
    [
        (Transport::Udp, MAX_UDP_SIZE),
        (Transport::Tcp, MAX_TCP_SIZE),
    ]
    .map(|(transport, limit)| {
        let mut rng = StdRng::seed_from_u64(seed);
        let outcome = handle(data, transport, &settings, &view, 0, &mut rng);
        check(data, &settings, transport, limit, &outcome);
        outcome
    })
}

/// The oracle for one outcome.
///
/// A reply must fit the transport, decode, be a response and carry the query's ID; a
/// forward needs recursors and keeps the ID. Dropping is always allowed.
fn check(data: &[u8], settings: &Settings, transport: Transport, limit: usize, outcome: &Outcome) {
    let id = || {
        assert!(
            data.len() >= 12,
            "{transport:?}: answered a {}-byte packet",
            data.len()
        );
        u16::from_be_bytes([data[0], data[1]])
    };
    match outcome {
        Outcome::Drop => {}
        Outcome::Reply(bytes) => {
            assert!(
                bytes.len() <= limit,
                "{transport:?}: {} bytes over the {limit}-byte limit",
                bytes.len()
            );
            let reply = match Message::from_vec(bytes) {
                Ok(m) => m,
                Err(e) => panic!("{transport:?}: the reply does not decode: {e}"),
            };
            assert_eq!(reply.metadata.id, id(), "{transport:?}: reply ID");
            assert_eq!(
                reply.metadata.message_type,
                MessageType::Response,
                "{transport:?}: the reply is not a response"
            );
        }
        Outcome::Forward(fwd) => {
            assert!(
                settings.recursion,
                "{transport:?}: forwarded without recursors"
            );
            assert_eq!(fwd.query.metadata.id, id(), "{transport:?}: forwarded ID");
            assert!(fwd.max_size <= limit, "{transport:?}: forward size limit");
        }
    }
}
