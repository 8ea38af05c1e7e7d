//! The DNS fuzz target's body, `cairn::dns::engine::fuzz::fuzz_one` (what `agent/fuzz` runs),
//! over the committed seed corpus `agent/fuzz/corpus/dns_query/`, so that the target cannot
//! rot: a change of the body's signature breaks this build, a panic fails this test, and each
//! seed must keep reaching the path it was written for (an answer, a trimmed answer, an
//! error code, a forward or silence).
//!
//! The first byte of a seed's query ID picks the engine settings (see
//! `cairn::dns::engine::fuzz::settings_for`); the catalog is the fixed one of `fuzz_one`: 40
//! `web` instances (14 passing, 13 warning, 13 critical) and two prepared queries.

use std::path::PathBuf;

use cairn::dns::engine::Outcome;
use cairn::dns::engine::fuzz::fuzz_one;
use hickory_proto::op::{Message, MessageType};

/// What a seed must produce over one transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// No answer at all.
    Drop,
    /// Handed to the recursors.
    Forward,
    /// An answer with this response code, this many answer records and this TC bit.
    Reply {
        rcode: u16,
        answers: usize,
        tc: bool,
    },
}

/// Response codes, as numbers (16 needs the OPT record's extension).
const NOERROR: u16 = 0;
const FORMERR: u16 = 1;
const NXDOMAIN: u16 = 3;
const NOTIMP: u16 = 4;
const REFUSED: u16 = 5;
const BADVERS: u16 = 16;

const fn reply(rcode: u16, answers: usize) -> Expect {
    Expect::Reply {
        rcode,
        answers,
        tc: false,
    }
}

/// Every named seed with what it must produce over UDP and over TCP.
const SEEDS: &[(&str, Expect, Expect)] = &[
    // Without EDNS, UDP keeps udp_answer_limit (3) answers; TCP all 27 non-critical ones.
    ("a-service", reply(NOERROR, 3), reply(NOERROR, 27)),
    ("srv-service-tag", reply(NOERROR, 3), reply(NOERROR, 27)),
    // enable_truncate: the trimmed UDP answer says so.
    (
        "srv-plain-udp-truncated",
        Expect::Reply {
            rcode: NOERROR,
            answers: 3,
            tc: true,
        },
        reply(NOERROR, 27),
    ),
    // only_passing (14 instances) with a 1232-byte EDNS buffer: trimmed by size, no TC.
    ("srv-rfc2782", reply(NOERROR, 13), reply(NOERROR, 14)),
    // a_record_limit 1.
    ("any-service-edns", reply(NOERROR, 1), reply(NOERROR, 1)),
    ("a-node", reply(NOERROR, 1), reply(NOERROR, 1)),
    ("txt-node-meta", reply(NOERROR, 1), reply(NOERROR, 1)),
    ("ptr-node", reply(NOERROR, 1), reply(NOERROR, 1)),
    ("ptr-service", reply(NOERROR, 1), reply(NOERROR, 1)),
    ("soa-domain", reply(NOERROR, 1), reply(NOERROR, 1)),
    ("ns-domain", reply(NOERROR, 0), reply(NOERROR, 0)),
    // Prepared queries select `web` in that exact case: 13 non-critical instances.
    ("a-query-by-name", reply(NOERROR, 3), reply(NOERROR, 13)),
    // Uncompressed names, EDNS 4096.
    ("srv-query-template", reply(NOERROR, 13), reply(NOERROR, 13)),
    ("a-unknown-service", reply(NXDOMAIN, 0), reply(NXDOMAIN, 0)),
    ("a-outside-recursion", Expect::Forward, Expect::Forward),
    (
        "aaaa-outside-no-recursion",
        reply(REFUSED, 0),
        reply(REFUSED, 0),
    ),
    ("edns-badvers", reply(BADVERS, 0), reply(BADVERS, 0)),
    ("class-chaos", reply(REFUSED, 0), reply(REFUSED, 0)),
    ("opcode-status", reply(NOTIMP, 0), reply(NOTIMP, 0)),
    ("truncated-question", reply(FORMERR, 0), reply(FORMERR, 0)),
    ("garbage", reply(FORMERR, 0), reply(FORMERR, 0)),
    ("name-pointer-loop", reply(FORMERR, 0), reply(FORMERR, 0)),
    ("short-header", Expect::Drop, Expect::Drop),
    ("response-bit", Expect::Drop, Expect::Drop),
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dns_query")
}

/// Checks what every input must satisfy and says what the outcome was.
fn observe(input: &[u8], outcome: &Outcome, what: &str) -> Expect {
    match outcome {
        Outcome::Drop => Expect::Drop,
        Outcome::Forward(fwd) => {
            assert_eq!(&input[..2], &fwd.query.metadata.id.to_be_bytes(), "{what}");
            Expect::Forward
        }
        Outcome::Reply(bytes) => {
            let m = Message::from_vec(bytes)
                .unwrap_or_else(|e| panic!("{what}: the reply does not decode: {e}"));
            assert!(input.len() >= 12, "{what}: a reply to a short packet");
            assert_eq!(&input[..2], &m.metadata.id.to_be_bytes(), "{what}: ID");
            assert_eq!(m.metadata.message_type, MessageType::Response, "{what}");
            // A query that decodes gets its question back.
            if let Ok(q) = Message::from_vec(input)
                && !m.queries.is_empty()
            {
                assert_eq!(m.queries, q.queries, "{what}: question");
            }
            Expect::Reply {
                rcode: u16::from(m.metadata.response_code),
                answers: m.answers.len(),
                tc: m.metadata.truncation,
            }
        }
    }
}

#[test]
fn fuzz_body_over_the_seed_corpus() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the seed corpus directory")
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    // Every file (seeds and anything a fuzzing run added): no panic, the checks above.
    let mut seen = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let input = std::fs::read(path).expect("a corpus file");
        let [udp, tcp] = fuzz_one(&input);
        let got = (
            observe(&input, &udp, &format!("{name} over UDP")),
            observe(&input, &tcp, &format!("{name} over TCP")),
        );
        seen.push((name, got));
    }
    // The named seeds still reach their paths.
    for (name, udp, tcp) in SEEDS {
        let Some((_, got)) = seen.iter().find(|(n, _)| n == name) else {
            panic!("seed {name} is missing from {}", corpus_dir().display());
        };
        assert_eq!(*got, (*udp, *tcp), "seed {name}: (UDP, TCP)");
    }
    assert!(seen.len() >= SEEDS.len());
}

#[test]
fn fuzz_body_survives_mutations_of_the_seeds() {
    // A cheap stand-in for the fuzzer: every prefix of every seed, and each seed with one
    // byte flipped at every position, must pass the body's own checks.
    for (name, _, _) in SEEDS {
        let seed = std::fs::read(corpus_dir().join(name)).expect("a seed");
        for len in 0..seed.len() {
            let [udp, tcp] = fuzz_one(&seed[..len]);
            observe(&seed[..len], &udp, name);
            observe(&seed[..len], &tcp, name);
        }
        for at in 0..seed.len() {
            let mut input = seed.clone();
            input[at] ^= 0xff;
            let [udp, tcp] = fuzz_one(&input);
            observe(&input, &udp, name);
            observe(&input, &tcp, name);
        }
    }
}
