//! The real network: a tokio UDP socket and TCP listener bound on the same port, and TCP
//! connections to peers. A thin pass-through; bounds and framing live in the driver.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{Endpoint, Transport};

/// Attempts at finding a port free for both UDP and TCP when binding port 0.
///
/// With port 0 the operating system picks a free UDP port whose TCP side may belong to
/// another process; each attempt lets it pick again.
const BIND_ATTEMPTS: usize = 16;

/// The real network (tokio UDP and TCP); what [`Gossip::start`](crate::Gossip::start) uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetTransport;

/// A UDP socket and a TCP listener on the same address.
#[derive(Debug)]
pub struct NetEndpoint {
    udp: UdpSocket,
    tcp: TcpListener,
    /// The UDP socket's address, which the TCP listener shares.
    local: SocketAddr,
}

impl Transport for NetTransport {
    type Endpoint = NetEndpoint;

    async fn bind(self, addr: SocketAddr) -> io::Result<NetEndpoint> {
        let (udp, tcp) = bind_pair(addr).await?;
        let local = udp.local_addr()?;
        Ok(NetEndpoint { udp, tcp, local })
    }
}

impl Endpoint for NetEndpoint {
    type Stream = TcpStream;

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    // tokio's `recv_from` and `accept` are cancel safe, as `Endpoint` requires.
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.udp.recv_from(buf).await
    }

    async fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.udp.send_to(packet, to).await
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.tcp.accept().await
    }

    // No timeout here: the driver bounds every connect with its TCP timeout.
    async fn connect(&self, to: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(to).await
    }
}

/// Binds UDP and TCP on the same port (retrying with another free port when `bind` asks
/// for any port and the TCP side of the one picked is taken).
async fn bind_pair(bind: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    for _ in 0..BIND_ATTEMPTS {
        // UDP first: with port 0 it picks the port, and TCP follows it.
        let udp = UdpSocket::bind(bind).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(bind.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Only a picked port is tried again; an explicit port that is taken is the operator's
            // to fix.
            Err(e) if bind.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    ))
}
