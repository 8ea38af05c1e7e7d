//! Sockets: UDP workers and TCP connections feeding [`engine::handle`], and the forwarding of
//! outside names to the recursors. Everything here is bounded: the UDP receive buffer, the
//! TCP frame (16-bit length), the TCP connections (in all and per source address, so one
//! source holding idle connections cannot shut the others out) and forwarded queries in
//! flight, and the idle time of a TCP connection.
//!
//! A server answers from its own copy of the catalog (a stale read, like Consul's default
//! `allow_stale`). A client agent has no catalog: it settles locally what needs none (names
//! for the recursors, packets to drop) and hands the rest to a server over
//! `/v1/internal/dns`, which answers with the same engine.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

use super::engine::wire::{self, MAX_QUERY_LEN};
use super::engine::{Cache, Forward, Outcome, Settings, Transport, View, handle};
use crate::agent::Agent;
use crate::config::Config;
use crate::connlimit::{PerClient, Slot};

/// TCP connections served at once; more are closed at accept.
/// Each connection holds a task and a buffer; past this, new ones are refused at once
/// rather than queued behind idle ones.
const MAX_TCP_CONNECTIONS: usize = 512;
/// TCP connections one source address may have open; more are closed at accept. An eighth
/// of the total: a resolver needs a few, and eight sources are needed to fill the server.
const MAX_TCP_PER_SOURCE: u32 = 64;
/// Forwarded queries in flight; more are answered SERVFAIL at once.
/// Each forward holds a socket and waits up to the recursor timeout per recursor; the
/// bound keeps a flood of outside names from exhausting file descriptors.
const MAX_FORWARDS: usize = 1024;
/// A TCP connection idle for this long is closed.
/// Also bounds a client that sends a length prefix and then nothing.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How often the settings are re-read from the configuration (reload).
/// Polled rather than pushed: the agent's reload only swaps its configuration, and a
/// second of lag on a DNS setting is harmless.
const SETTINGS_REFRESH: Duration = Duration::from_secs(1);

/// Bound DNS sockets, ready to serve.
#[derive(Debug, Default)]
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

/// Binds UDP and TCP on every DNS address of the configuration.
///
/// Bound before anything is served; an error comes with the address that failed, so a
/// port in use is reported by address.
pub async fn bind(config: &Config) -> Result<Listeners, (SocketAddr, io::Error)> {
    let mut out = Listeners::default();
    for addr in super::listen_addrs(config) {
        let udp = UdpSocket::bind(addr).await.map_err(|e| (addr, e))?;
        // With port 0, TCP takes the port UDP got.
        let tcp_addr = udp.local_addr().unwrap_or(addr);
        let tcp = TcpListener::bind(tcp_addr)
            .await
            .map_err(|e| (tcp_addr, e))?;
        out.udp.push(udp);
        out.tcp.push(tcp);
    }
    Ok(out)
}

/// What the tasks share: the agent, the settings and the memo.
struct Shared {
    agent: Arc<Agent>,
    /// Memo of the server's catalog (on a server agent).
    cache: Cache,
    /// Memo for the empty state a client agent screens queries with.
    empty_cache: Cache,
    /// Swapped whole on refresh; a query keeps the `Arc` it started with.
    runtime: RwLock<Arc<Runtime>>,
    /// Forwarded queries in flight ([`MAX_FORWARDS`]).
    forwards: Arc<Semaphore>,
}

/// Settings and recursors at one configuration.
struct Runtime {
    settings: Settings,
    recursors: Vec<SocketAddr>,
    /// At least 1 ms: a zero timeout would fail every forward without trying.
    recursor_timeout: Duration,
}

impl Runtime {
    fn from_config(config: &Config) -> Runtime {
        Runtime {
            settings: super::settings_from(config),
            recursors: super::recursors(config),
            recursor_timeout: config.dns.recursor_timeout.max(Duration::from_millis(1)),
        }
    }
}

impl Shared {
    fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    fn refresh(&self) {
        let next = {
            let cfg = self.agent.config.read().unwrap_or_else(|p| p.into_inner());
            Runtime::from_config(&cfg)
        };
        match self.runtime.write() {
            Ok(mut g) => *g = Arc::new(next),
            Err(p) => *p.into_inner() = Arc::new(next),
        }
    }

    /// Answers one packet from the catalog: a server reads its own state; a client agent
    /// decides locally what needs no catalog (names for the recursors, packets to drop) and
    /// asks a server for the rest.
    async fn answer(&self, rt: &Runtime, packet: &[u8], transport: Transport) -> Outcome {
        if let Some(dc) = self.remote_dc(rt, packet) {
            return self.answer_remote(rt, &dc, packet, transport).await;
        }
        if let Some(outcome) = self.answer_here(rt, packet, transport) {
            return outcome;
        }
        let now = unix_now();
        // An empty catalog gives the engine everything it needs to tell what is local: a
        // forward, or a packet to drop. Any reply it makes (even NXDOMAIN) needs the real
        // catalog, so the server is asked.
        let empty = cairn_catalog::State::new();
        let local = {
            let view = View::new(&empty, &self.empty_cache);
            handle(
                packet,
                transport,
                &rt.settings,
                &view,
                now,
                &mut rand::rng(),
            )
        };
        if !matches!(local, Outcome::Reply(_)) {
            return local;
        }
        let req = crate::rpc::DnsRequest {
            packet: packet.to_vec(),
            tcp: transport == Transport::Tcp,
            token: dns_token(&self.agent),
        };
        match self.agent.backend.dns(&req).await {
            Ok(crate::rpc::DnsReply {
                reply: Some(bytes), ..
            }) => Outcome::Reply(bytes),
            // The server had nothing to send: it dropped the packet, or it would forward it
            // (outside names were already forwarded by this agent, above).
            Ok(_) => Outcome::Drop,
            // No server reachable: silence, so the client retries or tries another resolver,
            // rather than a SERVFAIL it might cache.
            Err(e) => {
                debug!(error = %e, "DNS: no server answered a forwarded query");
                Outcome::Drop
            }
        }
    }
}

impl Shared {
    /// On a server, the other datacenter a question names, when this server has a route to it.
    fn remote_dc(&self, rt: &Runtime, packet: &[u8]) -> Option<String> {
        let server = self.agent.server.as_ref()?;
        wire::remote_datacenter(packet, &rt.settings).filter(|dc| server.knows_remote(dc))
    }

    /// A server's answer to a question about another datacenter: a server there answers it.
    async fn answer_remote(
        &self,
        rt: &Runtime,
        dc: &str,
        packet: &[u8],
        transport: Transport,
    ) -> Outcome {
        let Some(server) = &self.agent.server else {
            return Outcome::Drop;
        };
        let req = crate::rpc::DnsRequest {
            packet: packet.to_vec(),
            tcp: transport == Transport::Tcp,
            token: None,
        };
        match server.dns_remote(dc, &req).await {
            Ok(crate::rpc::DnsReply {
                reply: Some(bytes), ..
            }) => Outcome::Reply(bytes),
            Ok(_) => Outcome::Drop,
            // Consul's SERVFAIL for a datacenter that is known but does not answer.
            Err(e) => {
                debug!(%dc, error = %e, "DNS: the remote datacenter did not answer");
                match wire::servfail_for(packet, transport, &rt.settings) {
                    Some(b) => Outcome::Reply(b),
                    None => Outcome::Drop,
                }
            }
        }
    }

    /// A server's answer from its own state (`None` on a client agent).
    fn answer_here(&self, rt: &Runtime, packet: &[u8], transport: Transport) -> Option<Outcome> {
        let server = self.agent.server.as_ref()?;
        // Another datacenter's question is not answered from this state (see `answer`).
        if self.remote_dc(rt, packet).is_some() {
            return None;
        }
        let state = server.state();
        let view = View::new(&state, &self.cache)
            .with_authz(dns_authz(server, dns_token(&self.agent).as_ref()));
        Some(handle(
            packet,
            transport,
            &rt.settings,
            &view,
            unix_now(),
            &mut rand::rng(),
        ))
    }
}

/// The token DNS answers for, as Consul's: `acl.tokens.dns`, else the default token, else
/// anonymous.
fn dns_token(agent: &Agent) -> Option<crate::api::Token> {
    if !agent.acl_enabled() {
        return None;
    }
    agent
        .tokens
        .get("dns")
        .or_else(|| agent.tokens.get("default"))
        .map(crate::api::Token)
}

/// The DNS token's permissions on this server; a token the servers do not know sees nothing.
fn dns_authz(
    server: &crate::server::Server,
    token: Option<&crate::api::Token>,
) -> crate::acl::Authorizer {
    server.authorize(token).unwrap_or_else(|e| {
        debug!(error = %e, "DNS token not resolved: answering as if it could read nothing");
        crate::acl::Authorizer::from_rules(crate::acl::rules::Rules::default(), false, None, false)
    })
}

/// How often a blocked UDP thread looks at the stop flag.
/// A blocking receive cannot be woken by the stop signal; this bounds how long a
/// thread outlives the agent's shutdown.
const STOP_POLL: Duration = Duration::from_millis(250);

/// A server's UDP loop on a thread of its own: blocking receive, answer, send. Plain
/// threads spare each query the async runtime's readiness round trips, which are most of the
/// cost of a small answer; forwarded queries go to the runtime.
fn udp_thread(
    shared: Arc<Shared>,
    sock: std::net::UdpSocket,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    if let Err(e) = sock.set_read_timeout(Some(STOP_POLL)) {
        warn!(error = %e, "DNS UDP socket: cannot set a read timeout");
    }
    // One byte more than the longest accepted query, to see that a datagram was longer.
    let mut buf = vec![0u8; MAX_QUERY_LEN + 1];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let packet = &buf[..n];
        let rt = shared.runtime();
        if let Some(dc) = shared.remote_dc(&rt, packet) {
            // Another datacenter answers: on the runtime, like forwards to recursors, so this
            // thread goes on serving local questions meanwhile.
            let Ok(reply_sock) = sock.try_clone() else {
                continue;
            };
            let packet = packet.to_vec();
            let shared = Arc::clone(&shared);
            runtime.spawn(async move {
                if let Outcome::Reply(bytes) = shared
                    .answer_remote(&rt, &dc, &packet, Transport::Udp)
                    .await
                {
                    let _ = reply_sock.send_to(&bytes, peer);
                }
            });
            continue;
        }
        match shared.answer_here(&rt, packet, Transport::Udp) {
            Some(Outcome::Reply(bytes)) => {
                if let Err(e) = sock.send_to(&bytes, peer) {
                    debug!(%peer, error = %e, "DNS UDP send failed");
                }
            }
            Some(Outcome::Forward(fwd)) => {
                // The forward runs on the async runtime: it gets its own handle on the socket to
                // reply from the address the client asked.
                let Ok(reply_sock) = sock.try_clone() else {
                    continue;
                };
                // The receive buffer is reused at once by the next datagram: the forward gets a
                // copy.
                let packet = packet.to_vec();
                // Past the bound the client gets SERVFAIL at once instead of waiting in a queue.
                let permit = Arc::clone(&shared.forwards).try_acquire_owned();
                runtime.spawn(async move {
                    let answer = match permit {
                        Ok(_permit) => forward(&rt, &packet, &fwd, Transport::Udp).await,
                        Err(_) => wire::servfail(&fwd, &rt.settings),
                    };
                    if let Some(bytes) = answer {
                        let _ = reply_sock.send_to(&bytes, peer);
                    }
                });
            }
            Some(Outcome::Drop) | None => {}
        }
    }
}

/// Seconds since the epoch for the SOA serial; 0 if the clock is before 1970.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A server's side of `/v1/internal/dns`: answers the queries client agents hand over, from
/// this server's state and with its DNS settings.
pub fn rpc_responder(agent: &Arc<Agent>) -> crate::rpc::DnsFn {
    let agent = Arc::clone(agent);
    let cache = Arc::new(Cache::new());
    Arc::new(move |req: crate::rpc::DnsRequest| {
        let agent = Arc::clone(&agent);
        let cache = Arc::clone(&cache);
        Box::pin(async move { respond(&agent, &cache, &req).await })
    })
}

/// One forwarded query: answered here, or by a server of the datacenter it names.
async fn respond(
    agent: &Agent,
    cache: &Cache,
    req: &crate::rpc::DnsRequest,
) -> crate::rpc::DnsReply {
    let none = crate::rpc::DnsReply {
        reply: None,
        forward: false,
    };
    let Some(server) = &agent.server else {
        return none;
    };
    // Borrowed, not cloned: the configuration is large and this runs per query.
    let settings = {
        let cfg = agent.config.read().unwrap_or_else(|p| p.into_inner());
        super::settings_from(&cfg)
    };
    let transport = if req.tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    if let Some(dc) = wire::remote_datacenter(&req.packet, &settings)
        && server.knows_remote(&dc)
    {
        return match server.dns_remote(&dc, req).await {
            Ok(reply) => reply,
            Err(e) => {
                debug!(%dc, error = %e, "DNS: the remote datacenter did not answer");
                crate::rpc::DnsReply {
                    reply: wire::servfail_for(&req.packet, transport, &settings),
                    forward: false,
                }
            }
        };
    }
    let state = server.state();
    let view = View::new(&state, cache).with_authz(dns_authz(server, req.token.as_ref()));
    match handle(
        &req.packet,
        transport,
        &settings,
        &view,
        unix_now(),
        &mut rand::rng(),
    ) {
        Outcome::Reply(b) => crate::rpc::DnsReply {
            reply: Some(b),
            forward: false,
        },
        Outcome::Forward(_) => crate::rpc::DnsReply {
            reply: None,
            forward: true,
        },
        Outcome::Drop => none,
    }
}

/// Starts serving on `listeners`; the tasks end when the agent shuts down.
pub fn spawn(agent: &Arc<Agent>, listeners: Listeners) {
    if listeners.udp.is_empty() {
        return;
    }
    let runtime = {
        let cfg = agent.config.read().unwrap_or_else(|p| p.into_inner());
        Runtime::from_config(&cfg)
    };
    let shared = Arc::new(Shared {
        agent: Arc::clone(agent),
        cache: Cache::new(),
        empty_cache: Cache::new(),
        runtime: RwLock::new(Arc::new(runtime)),
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
    });
    let stop = agent.shutdown_signal();
    {
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SETTINGS_REFRESH);
            loop {
                tokio::select! {
                    _ = tick.tick() => shared.refresh(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
    // One worker per core, between 2 and 8: UDP answers are short CPU work.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    // The UDP threads are not tokio tasks: they poll this flag, set by a task that waits
    // for the agent's shutdown.
    let stop_flag = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&stop_flag);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            flag.store(true, Ordering::Relaxed);
        });
    }
    for udp in listeners.udp {
        if let Ok(addr) = udp.local_addr() {
            info!(%addr, "DNS listening (UDP and TCP)");
        }
        // Servers answer from their own state: plain threads. Client agents ask a server
        // (async): runtime tasks.
        if agent.server.is_some() {
            match udp
                .into_std()
                .and_then(|s| s.set_nonblocking(false).map(|()| s))
            {
                Ok(std_sock) => {
                    for i in 0..workers {
                        let Ok(sock) = std_sock.try_clone() else {
                            continue;
                        };
                        let (shared, flag) = (Arc::clone(&shared), Arc::clone(&stop_flag));
                        let runtime = tokio::runtime::Handle::current();
                        let spawned = std::thread::Builder::new()
                            .name(format!("dns-udp-{i}"))
                            .spawn(move || udp_thread(shared, sock, runtime, flag));
                        if let Err(e) = spawned {
                            warn!(error = %e, "cannot start a DNS UDP thread");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "DNS UDP socket unusable"),
            }
            continue;
        }
        let udp = Arc::new(udp);
        for _ in 0..workers {
            tokio::spawn(udp_worker(
                Arc::clone(&shared),
                Arc::clone(&udp),
                stop.clone(),
            ));
        }
    }
    let conns = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let per_source = PerClient::new();
    for tcp in listeners.tcp {
        tokio::spawn(tcp_acceptor(
            Arc::clone(&shared),
            tcp,
            (Arc::clone(&conns), Arc::clone(&per_source)),
            stop.clone(),
        ));
    }
}

async fn udp_worker(shared: Arc<Shared>, sock: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    // One byte more than the longest accepted query, to see that a datagram was longer.
    let mut buf = vec![0u8; MAX_QUERY_LEN + 1];
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let packet = &buf[..n];
        let rt = shared.runtime();
        match shared.answer(&rt, packet, Transport::Udp).await {
            Outcome::Reply(bytes) => {
                if let Err(e) = sock.send_to(&bytes, peer).await {
                    debug!(%peer, error = %e, "DNS UDP send failed");
                }
            }
            Outcome::Forward(fwd) => {
                let packet = packet.to_vec();
                let sock = Arc::clone(&sock);
                let permit = Arc::clone(&shared.forwards).try_acquire_owned();
                tokio::spawn(async move {
                    let answer = match permit {
                        Ok(_permit) => forward(&rt, &packet, &fwd, Transport::Udp).await,
                        Err(_) => wire::servfail(&fwd, &rt.settings),
                    };
                    if let Some(bytes) = answer {
                        let _ = sock.send_to(&bytes, peer).await;
                    }
                });
            }
            Outcome::Drop => {}
        }
    }
}

async fn tcp_acceptor(
    shared: Arc<Shared>,
    listener: TcpListener,
    (conns, per_source): (Arc<Semaphore>, Arc<PerClient>),
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "DNS TCP accept failed");
                // Accept errors are usually out of file descriptors; retrying at once would spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Dropping the stream closes it: refused connections cost no task.
        let Some(slot) = per_source.try_acquire(peer.ip(), MAX_TCP_PER_SOURCE) else {
            debug!(%peer, "too many DNS TCP connections from this source; closing");
            continue;
        };
        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
            debug!(%peer, "too many DNS TCP connections; closing");
            continue;
        };
        tokio::spawn(tcp_connection(
            Arc::clone(&shared),
            stream,
            (permit, slot),
            stop.clone(),
        ));
    }
}

/// Serves length-prefixed queries on one connection until it closes, idles or errs.
async fn tcp_connection(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    _held: (OwnedSemaphorePermit, Slot),
    mut stop: watch::Receiver<bool>,
) {
    // Reused across the queries of the connection.
    let mut buf = Vec::new();
    loop {
        let len = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, stream.read_u16()) => match r {
                Ok(Ok(n)) => usize::from(n),
                _ => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        // At most 64 KiB (a 16-bit length): the frame size is bounded by the protocol.
        buf.resize(len, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let rt = shared.runtime();
        let answer = match shared.answer(&rt, &buf, Transport::Tcp).await {
            Outcome::Reply(bytes) => bytes,
            Outcome::Forward(fwd) => {
                let Ok(_permit) = Arc::clone(&shared.forwards).try_acquire_owned() else {
                    match wire::servfail(&fwd, &rt.settings) {
                        Some(b) => {
                            if write_frame(&mut stream, &b).await.is_err() {
                                return;
                            }
                            // The connection stays open: the client may have more queries.
                            continue;
                        }
                        None => return,
                    }
                };
                match forward(&rt, &buf, &fwd, Transport::Tcp).await {
                    Some(b) => b,
                    None => return,
                }
            }
            // On TCP, a query not worth answering ends the connection.
            Outcome::Drop => return,
        };
        if write_frame(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

/// Writes one length-prefixed message (RFC 1035 4.2.2) in a single write, within the idle
/// timeout so that a client that stops reading cannot hold the task.
async fn write_frame(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::other("DNS message too long"))?;
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(msg);
    tokio::time::timeout(TCP_IDLE, stream.write_all(&frame))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Asks the recursors in order, each within the recursor timeout; the first usable answer
/// wins, else SERVFAIL.
///
/// The query goes over the transport it came on: a UDP client gets what fits a datagram
/// (or an empty truncated answer, to retry over TCP), a TCP client the full answer.
async fn forward(
    rt: &Runtime,
    packet: &[u8],
    fwd: &Forward,
    transport: Transport,
) -> Option<Vec<u8>> {
    for &recursor in &rt.recursors {
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(recursor, packet).await,
                Transport::Tcp => exchange_tcp(recursor, packet).await,
            }
        };
        match tokio::time::timeout(rt.recursor_timeout, exchange).await {
            Ok(Ok(answer)) => {
                if let Some(out) = wire::relay(&answer, fwd, &rt.settings) {
                    return Some(out);
                }
                debug!(%recursor, "recursor answer did not match the query");
            }
            Ok(Err(e)) => debug!(%recursor, error = %e, "recursor failed"),
            Err(_) => debug!(%recursor, "recursor timed out"),
        }
    }
    wire::servfail(fwd, &rt.settings)
}

/// One query to `recursor` over UDP from a fresh ephemeral port, so answers to different
/// client queries never share a socket (and a spoofed answer must guess the port too).
async fn exchange_udp(recursor: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if recursor.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(recursor).await?;
    sock.send(packet).await?;
    // The recursor may answer with EDNS up to 64 KiB.
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Skip stray datagrams: the answer carries the query's ID.
        if n >= 2 && packet.len() >= 2 && buf[..2] == packet[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// One query to `recursor` over a fresh TCP connection.
async fn exchange_tcp(recursor: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(recursor).await?;
    let len = u16::try_from(packet.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut frame = Vec::with_capacity(packet.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(packet);
    stream.write_all(&frame).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}
