//! Fuzz target: arbitrary bytes through the whole DNS query path of the agent, over UDP and
//! TCP. The body, its catalog and its checks are `cairn::dns::engine::fuzz::fuzz_one`, which
//! the agent's tests also run over the seed corpus (`corpus/dns_query/`), so this file stays
//! a one-line shell that cannot drift from the engine.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn::dns::engine::fuzz::fuzz_one(data);
});
