//! Fuzz target: arbitrary bytes through the whole DNS query path (header checks, decoding,
//! name parsing, resolution against a small catalog, trimming and encoding), over UDP and TCP.
//! The engine is compiled from the agent's sources; it must never panic, and every answer
//! must keep the query's ID and fit the transport.

#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/dns/engine/mod.rs"]
mod engine;

use std::sync::OnceLock;

use cairn_catalog::command::RegisterRequest;
use cairn_catalog::model::{HealthCheck, HealthStatus, Service};
use cairn_catalog::{Command, State};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

use engine::wire::{MAX_TCP_SIZE, MAX_UDP_SIZE};
use engine::{Cache, Outcome, Settings, Transport, View, handle};

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut st = State::new();
        let mut index = 0;
        let mut apply = |req: RegisterRequest| {
            index += 1;
            let _ = st.apply(index, &Command::Register { req, now_ms: 0 });
        };
        for i in 0..40u32 {
            let node = format!("node-{i}");
            apply(RegisterRequest {
                node: node.clone(),
                address: format!("10.0.{}.{}", i / 200, i % 200 + 1),
                datacenter: "dc1".into(),
                node_meta: [("k".to_string(), "v=`x".to_string())].into(),
                service: Some(Service {
                    id: "web".into(),
                    service: if i % 2 == 0 { "web" } else { "Web" }.into(),
                    address: if i % 3 == 0 { format!("192.0.2.{i}") } else { String::new() },
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
            });
        }
        st
    })
}

fuzz_target!(|data: &[u8]| {
    let cache = Cache::new();
    let view = View::new(state(), &cache);
    let mut settings = Settings::new("consul.", "dc1");
    // The first byte picks settings, so both trimming paths and forwarding are explored.
    let flags = data.first().copied().unwrap_or(0);
    settings.enable_truncate = flags & 1 != 0;
    settings.recursion = flags & 2 != 0;
    settings.disable_compression = flags & 4 != 0;
    settings.only_passing = flags & 8 != 0;
    settings.a_record_limit = usize::from(flags >> 6);
    let mut rng = StdRng::seed_from_u64(u64::from(flags));
    for (transport, limit) in [(Transport::Udp, MAX_UDP_SIZE), (Transport::Tcp, MAX_TCP_SIZE)] {
        if let Outcome::Reply(bytes) = handle(data, transport, &settings, &view, 0, &mut rng) {
            assert!(bytes.len() <= limit);
            assert!(data.len() >= 12 && bytes[..2] == data[..2]);
        }
    }
});
