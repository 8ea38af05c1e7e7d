//! The transport seam of the gossip driver: where datagrams and streams come from.
//!
//! The driver ([`crate::driver`]) needs four things from a network: send and receive
//! datagrams (SWIM probes and gossip), accept and open byte streams (push/pull exchanges and
//! messages too large for one datagram). [`Transport`] opens one member's [`Endpoint`] on an
//! address; the endpoint does the rest. Everything above it (envelopes, encryption, frames,
//! size bounds, replay detection, timeouts, the TCP fallback) stays in the driver, so every
//! transport carries exactly the same bytes.
//!
//! Two implementations:
//!
//! - [`NetTransport`]: the real network, tokio UDP and TCP bound on the same port. This is
//!   what [`Gossip::start`](crate::Gossip::start) uses.
//! - [`memory::MemoryNetwork`]: an in-memory network for tests. No sockets are opened; each
//!   member gets its own address on a shared network that can lose, delay and reorder
//!   datagrams and cut links under a seed, with every delay on tokio's clock, so a whole
//!   pool runs in one test process in virtual time (`#[tokio::test(start_paused = true)]`).
//!
//! The traits are generic rather than object-safe: the driver is monomorphised per
//! transport and the handle ([`Gossip`](crate::Gossip)) stays the same type whichever one a
//! member runs on.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

pub mod memory;
mod net;

pub use net::{NetEndpoint, NetTransport};

/// A network a gossip member can be started on: it opens the member's endpoint.
///
/// Taken by value by [`Gossip::start_with`](crate::Gossip::start_with); handles on a shared
/// network (such as [`memory::MemoryNetwork`]) are cheap clones.
pub trait Transport: Send + 'static {
    /// The bound endpoint.
    type Endpoint: Endpoint;

    /// Binds datagrams and streams on `addr` (on the same port, as Consul's gossip port
    /// is UDP and TCP); port 0 picks a free port. The error is reported to the caller of
    /// `start` as a bind failure on `addr`.
    fn bind(self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Endpoint>> + Send;
}

/// One member's bound endpoint: datagrams in and out, streams in and out.
///
/// Shared (behind an `Arc`) by the driver's owner task, its accept loop and the tasks
/// running stream exchanges; dropping the last reference closes it.
///
/// `recv_from` and `accept` are polled inside `select!` and in tasks that may be aborted,
/// so they must be cancel safe: a cancelled call loses nothing.
pub trait Endpoint: Send + Sync + 'static {
    /// A connected byte stream (a TCP connection on the real network).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The bound address (with the port picked when binding port 0).
    fn local_addr(&self) -> SocketAddr;

    /// Waits for one datagram, copies it into `buf` (truncating what does not fit, as
    /// UDP does) and returns its length and sender.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Sends one datagram; returns the bytes sent. Like UDP, success says nothing about
    /// delivery.
    fn send_to(
        &self,
        packet: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Waits for an inbound stream and returns it with the peer's address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Opens a stream to `to`. The driver bounds the call with its TCP timeout, so an
    /// unreachable peer may simply never answer.
    fn connect(&self, to: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}
