//! An in-memory network for running whole gossip pools inside one test process.
//!
//! A [`MemoryNetwork`] is a cheap-to-clone handle on a shared network. Each member binds its
//! own [`SocketAddr`] on it (any address; [`MemoryNetwork::next_addr`] hands out fresh ones)
//! and no socket is ever opened:
//!
//! - datagrams go into the receiver's inbox, a queue ordered by delivery time (then by send
//!   order), so equal delays keep their order and a run does not depend on how tokio orders
//!   timers that fall due together;
//! - streams are [`tokio::io::duplex`] pairs handed to the listener's accept queue.
//!
//! Faults come from one seeded RNG ([`StdRng`]) drawn in the order packets are sent:
//! [`LinkFaults`] loses, delays and reorders datagrams, and the network can cut links one
//! way ([`MemoryNetwork::cut`]), between groups ([`MemoryNetwork::partition`]) or around a
//! member ([`MemoryNetwork::isolate`]) until [`MemoryNetwork::heal`]. Every delay is a tokio
//! timer, so under `#[tokio::test(start_paused = true)]` (a current-thread runtime) a pool
//! runs in virtual time and, with the members' own seeds set
//! ([`GossipConfig::seed`](crate::GossipConfig::seed)), a run is a function of its seeds.
//!
//! Semantics worth knowing when writing a test:
//!
//! - cuts are checked when a datagram is sent (one already in flight still arrives) and when
//!   a stream is opened (an open stream is not cut);
//! - a stream needs both directions: a one-way cut either way blocks it, and the connect
//!   never completes (the driver's TCP timeout ends it), like a black-holed SYN;
//! - a connect to an address nobody has bound is refused at once, like a closed port on a
//!   live host; a datagram to it is dropped;
//! - a member's address is released when its endpoint is dropped (after
//!   [`Gossip::shutdown`](crate::Gossip::shutdown)), so a member can restart on it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_010::rngs::StdRng;
use rand_010::{RngExt, SeedableRng};
use tokio::io::DuplexStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep, timeout_at};

use super::{Endpoint, Transport};
use crate::driver::DEFAULT_PORT;

/// Datagrams waiting in one member's inbox; more are dropped, as by a full socket buffer.
///
/// Bounds the memory a member that stopped reading (a stalled or stopped driver) can hold.
pub const INBOX_CAPACITY: usize = 4096;
/// Streams waiting to be accepted by one member; more are refused.
pub const ACCEPT_BACKLOG: usize = 128;
/// Bytes buffered in each direction of a stream.
///
/// A writer beyond it waits for the reader, as with a TCP window.
const STREAM_BUFFER: usize = 64 * 1024;
/// First port handed out when a member binds port 0.
///
/// Where IANA's dynamic port range starts. Ports are handed out in order, so unlike the
/// operating system's choice the port a member gets is reproducible.
const FIRST_EPHEMERAL_PORT: u16 = 49_152;
/// Extra hold-back of a reordered datagram on top of `max_delay`.
///
/// With it, a datagram sent at the same instant overtakes the held-back one even when
/// drawn the largest delay (a tie would keep the send order).
const REORDER_MARGIN: Duration = Duration::from_millis(1);

/// How the links of a [`MemoryNetwork`] misbehave. Applies to datagrams; opening a stream
/// takes one delay and is never lost (a lost SYN would be retried by TCP).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkFaults {
    /// Probability that a datagram is lost, in `0.0..=1.0`.
    pub loss: f64,
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Largest one-way delay; delays are uniform between the two (so unequal bounds
    /// already reorder some datagrams).
    pub max_delay: Duration,
    /// Probability, in `0.0..=1.0`, that a datagram is held back a further `max_delay`
    /// (plus a millisecond), so that what is sent right after it overtakes it.
    pub reorder: f64,
}

impl Default for LinkFaults {
    /// A perfect network: nothing lost, nothing reordered, 1 ms per hop.
    fn default() -> Self {
        Self {
            loss: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            reorder: 0.0,
        }
    }
}

impl LinkFaults {
    /// Checks the probabilities and the delay range.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, value) in [("loss", self.loss), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::Probability { name, value });
            }
        }
        if self.min_delay > self.max_delay {
            return Err(FaultsError::DelayRange {
                min: self.min_delay,
                max: self.max_delay,
            });
        }
        Ok(())
    }
}

/// Why a [`LinkFaults`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    /// A probability outside `0.0..=1.0` (or NaN).
    #[error("{name} must be a probability between 0 and 1, not {value}")]
    Probability {
        /// Which field.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// `min_delay` is larger than `max_delay`.
    #[error("the smallest delay ({min:?}) is larger than the largest ({max:?})")]
    DelayRange {
        /// The smallest delay given.
        min: Duration,
        /// The largest delay given.
        max: Duration,
    },
}

/// What the network did with the traffic handed to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Datagrams queued for delivery.
    pub queued: u64,
    /// Datagrams queued with an extra hold-back (see [`LinkFaults::reorder`]).
    pub reordered: u64,
    /// Datagrams lost at random.
    pub dropped_loss: u64,
    /// Datagrams dropped by a cut link.
    pub dropped_cut: u64,
    /// Datagrams to an address nobody has bound.
    pub dropped_unbound: u64,
    /// Datagrams dropped because the receiver's inbox was full.
    pub dropped_full: u64,
    /// Streams opened.
    pub connects: u64,
    /// Stream opens refused (nobody bound, or accept backlog full).
    pub connects_refused: u64,
    /// Stream opens black-holed by a cut link.
    pub connects_cut: u64,
}

/// A datagram on its way.
struct Pending {
    at: Instant,
    /// Send order, breaking ties between equal delivery times.
    seq: u64,
    from: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    // Reversed: `BinaryHeap` is a max-heap and the earliest delivery comes first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One member's datagram inbox: the queue plus a wake-up for its single reader.
///
/// `Notify::notify_one` stores a permit when nobody waits, so a datagram queued between
/// the reader's look at the queue and its wait still wakes it.
#[derive(Default)]
struct Inbox {
    queue: Mutex<BinaryHeap<Pending>>,
    ready: Notify,
}

impl Inbox {
    fn queue(&self) -> MutexGuard<'_, BinaryHeap<Pending>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stream waiting to be accepted: the listener's end and the connecting address.
type Incoming = (DuplexStream, SocketAddr);

/// A bound address.
struct Host {
    /// Which endpoint holds it (an address can be bound again after release).
    id: u64,
    inbox: Arc<Inbox>,
    /// The accept queue, [`ACCEPT_BACKLOG`] deep.
    backlog: mpsc::Sender<Incoming>,
}

/// The network, behind one lock: every send and connect reads the faults and the cuts.
struct State {
    /// Every fault decision, drawn in send order: a run is a function of the seed and of
    /// the order in which members send.
    rng: StdRng,
    faults: LinkFaults,
    hosts: BTreeMap<SocketAddr, Host>,
    /// Directed links `(from, to)` that carry nothing.
    cuts: BTreeSet<(SocketAddr, SocketAddr)>,
    /// Addresses cut from everyone else, both ways.
    isolated: BTreeSet<SocketAddr>,
    /// Ids of bindings, see [`Host::id`].
    next_endpoint: u64,
    /// Send order of datagrams, see [`Pending`].
    next_seq: u64,
    /// The last host number [`MemoryNetwork::next_addr`] handed out.
    next_host: u32,
    stats: NetStats,
}

impl State {
    /// Whether cuts or isolation block `from -> to`. A member always reaches itself.
    fn blocked(&self, from: SocketAddr, to: SocketAddr) -> bool {
        from != to
            && (self.cuts.contains(&(from, to))
                || self.isolated.contains(&from)
                || self.isolated.contains(&to))
    }

    /// A one-way delay, uniform between the two bounds.
    fn delay(&mut self) -> Duration {
        let (min, max) = (self.faults.min_delay, self.faults.max_delay);
        if min >= max {
            min
        } else {
            self.rng.random_range(min..=max)
        }
    }

    /// A biased coin. Nothing is drawn when `p` is 0, so a fault that is off does not
    /// shift the draws of the others.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p)
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    // A std lock held for a few instructions, never across an await.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies cuts and faults to one datagram and queues it at the receiver.
    fn send(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let mut st = self.lock();
        st.stats.sent += 1;
        // Cuts apply when a datagram is sent: one already in flight still arrives.
        if st.blocked(from, to) {
            st.stats.dropped_cut += 1;
            return;
        }
        let Some(inbox) = st.hosts.get(&to).map(|h| Arc::clone(&h.inbox)) else {
            st.stats.dropped_unbound += 1;
            return;
        };
        // The draw order (loss, delay, reorder) is part of what a seed reproduces.
        let loss = st.faults.loss;
        if st.chance(loss) {
            st.stats.dropped_loss += 1;
            return;
        }
        let mut delay = st.delay();
        let reorder = st.faults.reorder;
        if st.chance(reorder) {
            delay += st.faults.max_delay + REORDER_MARGIN;
            st.stats.reordered += 1;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        {
            let mut queue = inbox.queue();
            if queue.len() >= INBOX_CAPACITY {
                st.stats.dropped_full += 1;
                return;
            }
            queue.push(Pending {
                at: Instant::now() + delay,
                seq,
                from,
                data: data.to_vec(),
            });
        }
        st.stats.queued += 1;
        // The reader re-checks the head: this datagram may be due before the one it waits for.
        inbox.ready.notify_one();
    }
}

/// A shared in-memory network; clone the handle to give it to each member
/// ([`Gossip::start_with`](crate::Gossip::start_with)) and keep one to inject faults.
#[derive(Clone)]
pub struct MemoryNetwork {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("MemoryNetwork")
            .field("hosts", &st.hosts.keys().collect::<Vec<_>>())
            .field("faults", &st.faults)
            .field("cuts", &st.cuts)
            .field("isolated", &st.isolated)
            .finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// A perfect network ([`LinkFaults::default`]) whose faults, once set, are drawn from
    /// `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    rng: StdRng::seed_from_u64(seed),
                    faults: LinkFaults::default(),
                    hosts: BTreeMap::new(),
                    cuts: BTreeSet::new(),
                    isolated: BTreeSet::new(),
                    next_endpoint: 0,
                    next_seq: 0,
                    next_host: 0,
                    stats: NetStats::default(),
                }),
            }),
        }
    }

    /// Replaces the link faults (for datagrams sent from now on).
    ///
    /// Datagrams already queued keep the delays they were given.
    pub fn set_faults(&self, faults: LinkFaults) -> Result<(), FaultsError> {
        faults.validate()?;
        self.shared.lock().faults = faults;
        Ok(())
    }

    /// The current link faults.
    pub fn faults(&self) -> LinkFaults {
        self.shared.lock().faults.clone()
    }

    /// A fresh address nobody has bound: `10.0.0.1:8301`, `10.0.0.2:8301`, ... (the gossip
    /// port, so `join("10.0.0.1")` finds it as it would on a real network).
    pub fn next_addr(&self) -> SocketAddr {
        let mut st = self.shared.lock();
        loop {
            st.next_host = st.next_host.wrapping_add(1);
            let ip = Ipv4Addr::from(0x0A00_0000_u32 | (st.next_host & 0x00FF_FFFF));
            let addr = SocketAddr::new(IpAddr::V4(ip), DEFAULT_PORT);
            if !st.hosts.contains_key(&addr) && !ip.is_unspecified() {
                return addr;
            }
        }
    }

    /// Whether an endpoint is bound on `addr`.
    pub fn is_bound(&self, addr: SocketAddr) -> bool {
        self.shared.lock().hosts.contains_key(&addr)
    }

    /// Cuts the link from `from` to `to` (one way): datagrams from `from` to `to` are
    /// dropped and no stream opens between them; `to` can still send datagrams to `from`.
    pub fn cut(&self, from: SocketAddr, to: SocketAddr) {
        self.shared.lock().cuts.insert((from, to));
    }

    /// Cuts every link between the two groups, both ways; links within a group stay up.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut st = self.shared.lock();
        for &x in a {
            for &y in b {
                st.cuts.insert((x, y));
                st.cuts.insert((y, x));
            }
        }
    }

    /// Cuts `addr` from every other address, both ways, including members that bind later.
    pub fn isolate(&self, addr: SocketAddr) {
        self.shared.lock().isolated.insert(addr);
    }

    /// Removes every cut and isolation.
    pub fn heal(&self) {
        let mut st = self.shared.lock();
        st.cuts.clear();
        st.isolated.clear();
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.shared.lock().stats
    }
}

impl Transport for MemoryNetwork {
    type Endpoint = MemoryEndpoint;

    async fn bind(self, addr: SocketAddr) -> io::Result<MemoryEndpoint> {
        // Nothing can be sent to an unspecified address, so a member bound there could not be
        // reached.
        if addr.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the in-memory network needs a specific address, not an unspecified one \
                 (MemoryNetwork::next_addr hands out fresh ones)",
            ));
        }
        let mut st = self.shared.lock();
        let addr = if addr.port() == 0 {
            // Port 0: the first free port from the start of the dynamic range.
            (FIRST_EPHEMERAL_PORT..=u16::MAX)
                .map(|port| SocketAddr::new(addr.ip(), port))
                .find(|a| !st.hosts.contains_key(a))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "no free port left on {} in the in-memory network",
                            addr.ip()
                        ),
                    )
                })?
        } else if st.hosts.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound on the in-memory network"),
            ));
        } else {
            addr
        };
        let id = st.next_endpoint;
        st.next_endpoint += 1;
        let inbox = Arc::new(Inbox::default());
        let (backlog, accept) = mpsc::channel(ACCEPT_BACKLOG);
        st.hosts.insert(
            addr,
            Host {
                id,
                inbox: Arc::clone(&inbox),
                backlog,
            },
        );
        drop(st);
        Ok(MemoryEndpoint {
            net: Arc::clone(&self.shared),
            addr,
            id,
            inbox,
            accept: tokio::sync::Mutex::new(accept),
        })
    }
}

/// One member's endpoint on a [`MemoryNetwork`]; releases its address when dropped.
pub struct MemoryEndpoint {
    net: Arc<Shared>,
    addr: SocketAddr,
    id: u64,
    inbox: Arc<Inbox>,
    /// A tokio mutex, held across the wait: one accept at a time, as on a listener.
    accept: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
}

impl std::fmt::Debug for MemoryEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEndpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MemoryEndpoint {
    fn drop(&mut self) {
        let mut st = self.net.lock();
        if st.hosts.get(&self.addr).is_some_and(|h| h.id == self.id) {
            st.hosts.remove(&self.addr);
        }
    }
}

impl Endpoint for MemoryEndpoint {
    type Stream = DuplexStream;

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let next = {
                let mut queue = self.inbox.queue();
                match queue.peek().map(|p| p.at) {
                    Some(at) if at <= Instant::now() => {
                        if let Some(p) = queue.pop() {
                            let n = p.data.len().min(buf.len());
                            if let (Some(dst), Some(src)) = (buf.get_mut(..n), p.data.get(..n)) {
                                dst.copy_from_slice(src);
                            }
                            return Ok((n, p.from));
                        }
                        None
                    }
                    other => other,
                }
            };
            // Popping happens above, without awaiting: cancelling here loses nothing.
            // Sleep until the head is due, or until a send wakes us: it may queue an earlier one.
            match next {
                Some(at) => {
                    let _ = timeout_at(at, self.inbox.ready.notified()).await;
                }
                None => self.inbox.ready.notified().await,
            }
        }
    }

    // Succeeds whatever happens to the datagram, like UDP: loss and cuts are the network's.
    async fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.net.send(self.addr, to, packet);
        Ok(packet.len())
    }

    async fn accept(&self) -> io::Result<(DuplexStream, SocketAddr)> {
        let mut accept = self.accept.lock().await;
        accept.recv().await.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the endpoint is no longer bound on the in-memory network",
            )
        })
    }

    async fn connect(&self, to: SocketAddr) -> io::Result<DuplexStream> {
        // One network delay first, then the cut check: a cut made meanwhile applies.
        let delay = self.net.lock().delay();
        sleep(delay).await;
        let backlog = {
            let mut st = self.net.lock();
            if st.blocked(self.addr, to) || st.blocked(to, self.addr) {
                st.stats.connects_cut += 1;
                None
            } else if let Some(h) = st.hosts.get(&to) {
                Some(h.backlog.clone())
            } else {
                st.stats.connects_refused += 1;
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nothing is bound on {to} in the in-memory network"),
                ));
            }
        };
        let Some(backlog) = backlog else {
            // Black-holed: never answers; the caller's timeout ends the attempt.
            return std::future::pending().await;
        };
        let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
        // A full accept queue refuses the connection, as a listener's full backlog does.
        let accepted = backlog.try_send((theirs, self.addr)).is_ok();
        let mut st = self.net.lock();
        if accepted {
            st.stats.connects += 1;
            Ok(ours)
        } else {
            st.stats.connects_refused += 1;
            Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{to} is not accepting connections (backlog full)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 9, 0, last], 7000))
    }

    async fn bind(net: &MemoryNetwork, a: SocketAddr) -> MemoryEndpoint {
        net.clone().bind(a).await.expect("bind")
    }

    async fn recv(e: &MemoryEndpoint) -> (Vec<u8>, SocketAddr, Duration) {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let (n, from) = e.recv_from(&mut buf).await.expect("recv");
        (buf[..n].to_vec(), from, start.elapsed())
    }

    /// Equal delays keep the send order, and the first datagram waits the 1 ms hop.
    #[tokio::test(start_paused = true)]
    async fn datagrams_arrive_in_order_after_the_delay() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (bind(&net, addr(1)).await, bind(&net, addr(2)).await);
        for i in 0..3u8 {
            a.send_to(&[i], b.local_addr()).await.expect("send");
        }
        for i in 0..3u8 {
            let (data, from, waited) = recv(&b).await;
            assert_eq!((data, from), (vec![i], a.local_addr()));
            let expected = if i == 0 { 1 } else { 0 };
            assert_eq!(waited, Duration::from_millis(expected));
        }
        assert_eq!(net.stats().queued, 3);
    }

    /// A short buffer truncates the datagram, as UDP's `recv_from` does.
    #[tokio::test(start_paused = true)]
    async fn datagrams_are_truncated_to_the_buffer() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (bind(&net, addr(1)).await, bind(&net, addr(2)).await);
        a.send_to(&[7; 10], b.local_addr()).await.expect("send");
        let mut buf = [0u8; 4];
        let (n, _) = b.recv_from(&mut buf).await.expect("recv");
        assert_eq!((n, buf), (4, [7; 4]));
    }

    /// Reordering changes the order, never the set of datagrams delivered.
    #[tokio::test(start_paused = true)]
    async fn reordering_lets_later_datagrams_overtake() {
        let net = MemoryNetwork::new(7);
        net.set_faults(LinkFaults {
            reorder: 0.5,
            ..LinkFaults::default()
        })
        .expect("faults");
        let (a, b) = (bind(&net, addr(1)).await, bind(&net, addr(2)).await);
        for i in 0..40u8 {
            a.send_to(&[i], b.local_addr()).await.expect("send");
        }
        let mut got = Vec::new();
        for _ in 0..40 {
            got.push(recv(&b).await.0[0]);
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..40).collect::<Vec<u8>>(), "nothing lost");
        assert_ne!(got, sorted, "some overtaken");
        assert!(net.stats().reordered > 0);
    }

    /// Loss is random but reproducible: the same seed loses the same datagrams.
    #[tokio::test(start_paused = true)]
    async fn loss_follows_the_seed() {
        async fn delivered(seed: u64) -> (Vec<u8>, NetStats) {
            let net = MemoryNetwork::new(seed);
            net.set_faults(LinkFaults {
                loss: 0.3,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(9),
                reorder: 0.0,
            })
            .expect("faults");
            let (a, b) = (bind(&net, addr(1)).await, bind(&net, addr(2)).await);
            for i in 0..100u8 {
                a.send_to(&[i], b.local_addr()).await.expect("send");
            }
            let stats = net.stats();
            let mut got = Vec::new();
            for _ in 0..stats.queued {
                got.push(recv(&b).await.0[0]);
            }
            (got, stats)
        }
        let (one, stats) = delivered(42).await;
        assert_eq!(stats.sent, 100);
        assert!(
            stats.dropped_loss > 10 && stats.dropped_loss < 60,
            "{stats:?}"
        );
        assert_eq!(stats.queued + stats.dropped_loss, 100);
        assert_eq!(delivered(42).await.0, one, "same seed, same run");
        assert_ne!(delivered(43).await.0, one, "another seed, another run");
    }

    /// A one-way cut keeps the other direction up, blocks streams both ways, and heals.
    #[tokio::test(start_paused = true)]
    async fn one_way_cuts_drop_one_direction_until_healed() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (bind(&net, addr(1)).await, bind(&net, addr(2)).await);
        net.cut(a.local_addr(), b.local_addr());
        a.send_to(b"lost", b.local_addr()).await.expect("send");
        b.send_to(b"back", a.local_addr()).await.expect("send");
        assert_eq!(recv(&a).await.0, b"back");
        assert_eq!(net.stats().dropped_cut, 1);
        // Streams need both directions.
        let attempt = tokio::time::timeout(Duration::from_secs(5), b.connect(a.local_addr()));
        assert!(attempt.await.is_err(), "black-holed");
        net.heal();
        a.send_to(b"after", b.local_addr()).await.expect("send");
        assert_eq!(recv(&b).await.0, b"after");
    }

    /// Partitions cut between groups only; isolation cuts a member from all but itself.
    #[tokio::test(start_paused = true)]
    async fn partitions_and_isolation_cut_both_ways() {
        let net = MemoryNetwork::new(1);
        let mut e = Vec::new();
        for i in 1..=4 {
            e.push(bind(&net, addr(i)).await);
        }
        let ad: Vec<SocketAddr> = e.iter().map(Endpoint::local_addr).collect();
        net.partition(&ad[..2], &ad[2..]);
        e[0].send_to(b"x", ad[2]).await.expect("send");
        e[3].send_to(b"x", ad[1]).await.expect("send");
        e[0].send_to(b"in", ad[1]).await.expect("send");
        assert_eq!(
            recv(&e[1]).await,
            (b"in".to_vec(), ad[0], Duration::from_millis(1))
        );
        assert_eq!(net.stats().dropped_cut, 2);
        net.heal();
        net.isolate(ad[0]);
        e[1].send_to(b"x", ad[0]).await.expect("send");
        e[0].send_to(b"x", ad[1]).await.expect("send");
        e[0].send_to(b"self", ad[0]).await.expect("send");
        assert_eq!(recv(&e[0]).await.0, b"self");
        assert_eq!(net.stats().dropped_cut, 4);
    }

    /// A stream is a byte pipe each way, and closing one end ends the other's reads.
    #[tokio::test(start_paused = true)]
    async fn streams_carry_bytes_both_ways() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (bind(&net, addr(1)).await, bind(&net, addr(2)).await);
        let mut client = a.connect(b.local_addr()).await.expect("connect");
        let (mut server, peer) = b.accept().await.expect("accept");
        assert_eq!(peer, a.local_addr());
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.expect("write");
        drop(server);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"pong");
        assert_eq!(net.stats().connects, 1);
    }

    /// Binding follows the real network's rules: exclusive addresses, port 0, no unspecified
    /// address, and a dropped endpoint frees its address for a restart.
    #[tokio::test(start_paused = true)]
    async fn addresses_are_exclusive_and_released_on_drop() {
        let net = MemoryNetwork::new(1);
        let a = bind(&net, addr(1)).await;
        let again = net.clone().bind(addr(1)).await;
        assert_eq!(
            again.map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::AddrInUse)
        );
        let any = net.clone().bind(SocketAddr::from(([10, 9, 0, 1], 0))).await;
        assert_eq!(
            any.expect("port 0").local_addr().port(),
            FIRST_EPHEMERAL_PORT
        );
        let unspecified = net
            .clone()
            .bind(SocketAddr::from(([0, 0, 0, 0], 7000)))
            .await;
        assert_eq!(
            unspecified.map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::AddrNotAvailable)
        );
        let other = bind(&net, addr(2)).await;
        drop(a);
        assert!(!net.is_bound(addr(1)));
        let refused = other.connect(addr(1)).await;
        assert_eq!(
            refused.map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionRefused)
        );
        other.send_to(b"x", addr(1)).await.expect("send");
        assert_eq!(net.stats().dropped_unbound, 1);
        let back = bind(&net, addr(1)).await;
        assert_eq!(back.local_addr(), addr(1));
    }

    /// Bad fault settings are refused whole and leave the previous ones in place.
    #[test]
    fn fresh_addresses_differ_and_bad_faults_are_refused() {
        let net = MemoryNetwork::new(1);
        let (x, y) = (net.next_addr(), net.next_addr());
        assert_ne!(x, y);
        assert_eq!(x, SocketAddr::from(([10, 0, 0, 1], DEFAULT_PORT)));
        let bad = LinkFaults {
            loss: 1.5,
            ..LinkFaults::default()
        };
        assert!(matches!(
            net.set_faults(bad),
            Err(FaultsError::Probability { name: "loss", .. })
        ));
        let nan = LinkFaults {
            reorder: f64::NAN,
            ..LinkFaults::default()
        };
        assert!(net.set_faults(nan).is_err());
        let backwards = LinkFaults {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(1),
            ..LinkFaults::default()
        };
        let e = net.set_faults(backwards).expect_err("refused");
        assert!(e.to_string().contains("larger than the largest"), "{e}");
        assert_eq!(net.faults(), LinkFaults::default());
    }
}
