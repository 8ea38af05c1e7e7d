//! H2PING checks: open an HTTP/2 connection (TLS with ALPN `h2` by default, h2c when
//! `H2PingUseTLS` is false), send a PING frame and wait for its acknowledgement, as Consul's
//! `CheckH2PING` does. Ack ⇒ passing (`HTTP2 ping was successful`); a failed dial ⇒ critical
//! (`Failed to dial to <addr>: ...`); no ack or a broken connection ⇒ critical
//! (`HTTP2 ping failed: ...`).
//!
//! The check proves more than a TCP connect (the server speaks HTTP/2 and its connection
//! loop is alive) without depending on any route or handler of the service.

use std::time::Duration;

use cairn_catalog::model::HealthStatus;
use tokio::io::{AsyncRead, AsyncWrite};

use super::probes::{connect_tcp, split_host_port};
use super::tls::{ALPN_H2, TlsClient};

/// A prepared H2PING check.
#[derive(Debug)]
pub struct H2PingProbe {
    /// `host:port` as registered, dialled and quoted in outputs.
    addr: String,
    /// Host part, for the TLS server name.
    host: String,
    tls: Option<TlsClient>,
    timeout: Duration,
}

impl H2PingProbe {
    /// Prepares a check of `addr` (`host:port`), over TLS when `use_tls`.
    pub fn new(
        addr: &str,
        use_tls: bool,
        tls_skip_verify: bool,
        tls_server_name: &str,
        timeout: Duration,
    ) -> Result<H2PingProbe, String> {
        let Some((host, _)) = split_host_port(addr) else {
            return Err(format!(
                "Failed to dial to {addr}: address {addr}: missing port in address"
            ));
        };
        let tls = if use_tls {
            Some(TlsClient::new(
                tls_skip_verify,
                tls_server_name,
                &[ALPN_H2],
            )?)
        } else {
            None
        };
        Ok(H2PingProbe {
            addr: addr.to_string(),
            host: host.to_string(),
            tls,
            timeout,
        })
    }

    /// Runs once.
    pub async fn run(&self) -> (HealthStatus, String) {
        // One timeout over dial, TLS, handshake and PING; without it a server that accepts
        // and then stays silent would hold the run forever.
        let run = async {
            let dial_failed = |e: String| format!("Failed to dial to {}: {e}", self.addr);
            let stream = connect_tcp(&self.addr, self.timeout)
                .await
                .map_err(dial_failed)?;
            match &self.tls {
                None => ping(stream).await,
                Some(tls) => {
                    let s = tls.connect(stream, &self.host).await.map_err(dial_failed)?;
                    ping(s).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => (
                HealthStatus::Critical,
                "HTTP2 ping failed: context deadline exceeded".into(),
            ),
            Ok(Err(e)) => (HealthStatus::Critical, e),
            Ok(Ok(())) => (HealthStatus::Passing, "HTTP2 ping was successful".into()),
        }
    }
}

/// The HTTP/2 handshake and one PING on `io`.
async fn ping<T>(io: T) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (_client, mut conn) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("Failed to create client connection {e}"))?;
    let mut pinger = conn
        .ping_pong()
        // `ping_pong` can be taken once per connection; each run has its own connection, so
        // this cannot fail in practice.
        .ok_or_else(|| "HTTP2 ping failed: ping already in use".to_string())?;
    // The connection is driven alongside the ping; `_client` stays alive so it is not closed
    // for lack of users.
    tokio::select! {
        pong = pinger.ping(h2::Ping::opaque()) => {
            pong.map(|_| ()).map_err(|e| format!("HTTP2 ping failed: {e}"))
        }
        ended = &mut conn => Err(match ended {
            Ok(()) => "HTTP2 ping failed: connection closed".to_string(),
            Err(e) => format!("HTTP2 ping failed: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_servers::{HttpServer, h2_server, self_signed_acceptor};
    use HealthStatus::*;

    fn probe(addr: &str, tls: bool, skip: bool) -> H2PingProbe {
        H2PingProbe::new(addr, tls, skip, "", Duration::from_secs(5)).expect("valid")
    }

    /// Cleartext HTTP/2 (H2PingUseTLS false).
    #[tokio::test]
    async fn h2c_ping_is_acknowledged() {
        let (addr, _t) = h2_server(None).await;
        assert_eq!(
            probe(&addr.to_string(), false, false).run().await,
            (Passing, "HTTP2 ping was successful".into())
        );
    }

    /// Over TLS, an untrusted certificate fails the dial unless TLSSkipVerify.
    #[tokio::test]
    async fn tls_ping_with_and_without_verification() {
        let (addr, _t) = h2_server(Some(self_signed_acceptor(&[ALPN_H2]))).await;
        let addr = addr.to_string();
        assert_eq!(probe(&addr, true, true).run().await.0, Passing);
        let (st, out) = probe(&addr, true, false).run().await;
        assert_eq!(st, Critical);
        assert!(
            out.starts_with(&format!("Failed to dial to {addr}: tls: ")),
            "{out}"
        );
    }

    /// A refused connection, a server that only speaks HTTP/1.1, and an address without a
    /// port.
    #[tokio::test]
    async fn failures_are_critical() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let (st, out) = probe(&addr, false, false).run().await;
        assert_eq!(st, Critical);
        assert_eq!(
            out,
            format!("Failed to dial to {addr}: dial tcp {addr}: connect: connection refused")
        );
        // An HTTP/1.1-only server never acknowledges.
        let s = HttpServer::start(None, 200, "").await;
        let (st, out) = H2PingProbe::new(
            &s.addr.to_string(),
            false,
            false,
            "",
            Duration::from_millis(500),
        )
        .expect("valid")
        .run()
        .await;
        assert_eq!(st, Critical);
        assert!(out.starts_with("HTTP2 ping failed"), "{out}");
        assert!(H2PingProbe::new("nohost", false, false, "", Duration::from_secs(1)).is_err());
    }
}
