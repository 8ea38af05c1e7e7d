//! UDP checks as Consul runs them: send a datagram (Consul's is empty: its `CheckUDP.Message`
//! is never set, so `fmt.Fprintf(conn, "")` sends a zero-length datagram), then wait up to the
//! timeout for anything to come back.
//!
//! - any reply ⇒ passing;
//! - no reply within the timeout ⇒ still passing (UDP services need not answer; this is
//!   Consul's documented behaviour);
//! - a send error, or a receive error such as the `ECONNREFUSED` a connected socket reports
//!   after an ICMP port-unreachable ⇒ critical, with Go's error text.
//!
//! Output on success is `UDP connect <addr>: Success`.
//!
//! Passing on silence makes the check weak (only an ICMP refusal fails it), but that is the
//! contract Consul users rely on; a stricter probe would turn healthy fire-and-forget
//! services critical.

use std::time::Duration;

use cairn_catalog::model::HealthStatus;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::probes::go_error;

/// Probes `addr` (`host:port`) once.
pub async fn run(addr: &str, timeout: Duration) -> (HealthStatus, String) {
    let deadline = Instant::now() + timeout;
    let critical = |s: String| (HealthStatus::Critical, s);
    let target = match tokio::time::timeout_at(deadline, tokio::net::lookup_host(addr)).await {
        Err(_) => return critical(format!("dial udp {addr}: i/o timeout")),
        Ok(Err(e)) => return critical(format!("dial udp {addr}: {}", go_error(&e))),
        // The first resolved address only: UDP has no handshake whose failure would tell
        // the probe to try the next one.
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(a) => a,
            None => return critical(format!("dial udp {addr}: no suitable address found")),
        },
    };
    // A wildcard of the target's family: binding the other family could not reach it.
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return critical(format!("dial udp {addr}: {}", go_error(&e))),
    };
    // A connected socket is what makes the kernel report an ICMP port-unreachable as
    // `ECONNREFUSED` on the next receive; it also drops datagrams from other peers.
    if let Err(e) = sock.connect(target).await {
        return critical(format!("dial udp {target}: {}", go_error(&e)));
    }
    let me = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    if let Err(e) = sock.send(&[]).await {
        return critical(format!("write udp {me}->{target}: {}", go_error(&e)));
    }
    // The reply's content is ignored; one Ethernet MTU is plenty to receive it.
    let mut buf = [0u8; 1500];
    match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
        // Silence is not a failure for UDP.
        Err(_) | Ok(Ok(_)) => (
            HealthStatus::Passing,
            format!("UDP connect {addr}: Success"),
        ),
        Ok(Err(e)) => critical(format!("read udp {me}->{target}: read: {}", go_error(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_servers::{udp_closed_port, udp_echo, udp_silent};
    use HealthStatus::*;

    /// A reply passes at once, without waiting for the timeout.
    #[tokio::test]
    async fn echo_is_passing() {
        let (addr, _task) = udp_echo().await;
        let addr = addr.to_string();
        let started = Instant::now();
        assert_eq!(
            run(&addr, Duration::from_secs(5)).await,
            (Passing, format!("UDP connect {addr}: Success"))
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered at once"
        );
    }

    /// No reply at all passes, but only once the whole timeout has run.
    #[tokio::test]
    async fn silence_is_passing_after_the_timeout() {
        let (addr, _sock) = udp_silent().await;
        let started = Instant::now();
        let (st, _) = run(&addr.to_string(), Duration::from_millis(300)).await;
        assert_eq!(st, Passing);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    /// An ICMP port-unreachable from the kernel turns the check critical.
    #[tokio::test]
    async fn closed_port_is_critical() {
        let addr = udp_closed_port();
        let (st, out) = run(&addr.to_string(), Duration::from_secs(5)).await;
        assert_eq!(st, Critical);
        assert!(
            out.starts_with("read udp ") && out.ends_with("read: connection refused"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn bad_address_is_critical() {
        let (st, out) = run("no-port", Duration::from_secs(1)).await;
        assert_eq!(st, Critical);
        assert!(out.starts_with("dial udp no-port: "), "{out}");
    }
}
