//! The DNS interface: Consul's `.consul` names over UDP and TCP (port 8600 by default).
//!
//! [`engine`] holds the logic and has no I/O: a packet, a catalog state and the settings in,
//! the answer's bytes out (or "forward to the recursors", or "drop"). [`server`] is the thin
//! socket layer: UDP workers and a TCP acceptor on every DNS address, each query answered
//! from the server's current state (a stale read: the local copy, as Consul's default
//! `allow_stale` does), and the forwarding of names outside the domain to `recursors`, tried
//! in order, each within `recursor_timeout`.
//!
//! Answers always come from the current catalog state: the per-service memo of
//! [`engine::view`] is keyed by the service's catalog index, so a registration or a health
//! change shows in the very next answer.
//!
//! # Dependencies
//!
//! - `hickory-proto` (wire format only; default features off but `std`): decodes queries and
//!   encodes answers, including name compression, EDNS and the size-bounded encoder used
//!   for truncation. It is the protocol crate of the hickory-dns project (maintained, used by
//!   hickory-resolver and hickory-server), with no I/O and no async runtime of its own.
//!   `hickory-server` was not taken: its request handler owns the response encoding and
//!   truncation, while Consul's trimming rules (answer limit for plain UDP, removal of
//!   answers with their additional records, TC only with `enable_truncate`) need control of
//!   both; the socket loops it would replace are a few dozen lines of tokio.

pub mod engine;
pub mod server;

use std::net::{IpAddr, SocketAddr};

use tracing::warn;

use crate::config::Config;
use engine::Settings;
use engine::settings::{SoaValues, parse_domain, ttl_secs};

pub use server::{bind, spawn};

/// The engine settings for a configuration.
pub fn settings_from(config: &Config) -> Settings {
    let dns = &config.dns;
    let mut s = Settings::new(&config.domain, &config.datacenter);
    // An alternative domain equal to the primary adds nothing (and the config refuses it).
    s.alt_domain = parse_domain(&config.alt_domain).filter(|alt| *alt != s.domain);
    s.node_ttl = ttl_secs(dns.node_ttl);
    s.set_service_ttls(dns.service_ttl.iter().map(|(k, v)| (k.as_str(), *v)));
    s.only_passing = dns.only_passing;
    s.enable_truncate = dns.enable_truncate;
    // The engine caps it at 8 when it answers (see `Settings::udp_answer_cap`).
    s.udp_answer_limit = usize::try_from(dns.udp_answer_limit).unwrap_or(usize::MAX);
    s.a_record_limit = usize::try_from(dns.a_record_limit).unwrap_or(usize::MAX);
    s.disable_compression = dns.disable_compression;
    s.node_meta_txt = dns.enable_additional_node_meta_txt;
    s.soa = SoaValues {
        refresh: dns.soa.refresh,
        retry: dns.soa.retry,
        expire: dns.soa.expire,
        min_ttl: dns.soa.min_ttl,
    };
    // Recursion is advertised (RA) only when a query outside the domain can actually be
    // answered.
    s.recursion = !recursors(config).is_empty();
    s
}

/// The recursors of a configuration as socket addresses (port 53 when none is given).
///
/// The configuration already checked and normalized them; the parse is repeated because
/// `Config` keeps them as text. Duplicates are dropped so a dead recursor is not waited
/// on twice.
pub fn recursors(config: &Config) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for r in &config.recursors {
        let addr = r
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| r.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match addr {
            Some(a) if !out.contains(&a) => out.push(a),
            Some(_) => {}
            None => warn!(recursor = %r, "ignoring a recursor that is not an IP address"),
        }
    }
    out
}

/// The addresses the DNS server listens on: `addresses.dns`, else `client_addr`, with
/// `ports.dns` (none when the port is disabled).
///
/// The same per-listener override rule as Consul's `addresses { dns = ... }`.
pub fn listen_addrs(config: &Config) -> Vec<SocketAddr> {
    let Some(port) = config.ports.dns else {
        return Vec::new();
    };
    let ips = if config.addresses.dns.is_empty() {
        &config.client_addrs
    } else {
        &config.addresses.dns
    };
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}
