//! The tokio driver: the owner task, timers and short-lived tasks around the sans-IO core,
//! and the [`Gossip`] handle the agent uses.
//!
//! One task owns the [`GossipCore`] and is fed by a command channel, the endpoint's
//! datagrams and a timer queue; after every input it drains the core's outputs (send,
//! schedule, event, push/pull). Stream connections (push/pull exchanges, oversized packets)
//! run in their own short-lived tasks and talk to the owner through the same command
//! channel. Readers get snapshots (`members`, `events`) through a `watch` channel, counters
//! through atomics.
//!
//! ```text
//!  endpoint datagrams ──┐
//!  endpoint accept ─────┼──> owner task ── GossipCore ──> send / spawn connect / events
//!  Gossip handle ─cmd───┤        ^
//!  timer queue ──due────┘        └── push/pull results
//! ```
//!
//! # The transport seam
//!
//! The driver opens no socket itself: it binds an [`Endpoint`] through a [`Transport`]
//! ([`Gossip::start_with`]) and only ever sends and receives datagrams and opens and accepts
//! streams on it. [`Gossip::start`] uses [`NetTransport`], tokio UDP and TCP on one port;
//! tests use [`MemoryNetwork`](crate::transport::memory::MemoryNetwork), so that a whole
//! pool runs in one process, under virtual time and with seeded faults. What makes the
//! protocol safe on a real network stays here, above the seam, and is the same on every
//! transport: the datagram budget and the fallback to a stream for larger packets, the
//! 4-byte length framing and its limit, the connection limit, timeouts, envelopes,
//! encryption, frames and replay detection.
//!
//! For a run to be reproducible the driver's own randomness can be seeded
//! ([`GossipConfig::seed`]: the core's seed, the frames' instance id and the nonces), and
//! the owner task polls its inputs in a fixed order rather than tokio's random one.
//!
//! The core is never shared: only the owner task touches it, so it needs no lock, and
//! everything that waits on the network (connects, stream reads, DNS) happens in other
//! tasks, which report back as commands. What the stream tasks and the handle do need
//! (keys, sealing, the replay guard, counters) is in the shared `Wire`, behind short std
//! locks and atomics.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand_010::rngs::StdRng;
use rand_010::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};

use crate::broadcast::{MemberMeta, UserEvent};
use crate::config::Timings;
use crate::core::{CoreConfig, CoreError, CoreTimer, GossipCore, GossipEvent, Output};
use crate::envelope::{self, NONCE_LEN, OpenError, VERSION_PLAINTEXT};
use crate::frame::{FRAME_HEADER_LEN, Frame, FrameKind, RejectReason, Replay, ReplayGuard};
use crate::identity::{IdentityError, NodeId};
use crate::keyring::{Key, KeyInfo, Keyring, KeyringError};
use crate::pushpull::PushPull;
use crate::state::Member;
use crate::transport::{Endpoint, NetTransport, Transport};

/// Consul's default LAN gossip port.
pub const DEFAULT_PORT: u16 = 8301;
/// Default UDP datagram budget (memberlist's `UDPBufferSize`).
///
/// Below the 1500-byte Ethernet MTU with room for the IP and UDP headers and some
/// tunnelling, so datagrams are not fragmented: losing one fragment loses the datagram.
pub const UDP_PACKET_SIZE: usize = 1400;
/// Largest TCP frame accepted.
///
/// Room for the full state of a pool of many thousands of members. A frame buffer is
/// allocated before the frame is opened, so this is also what an unauthenticated peer can
/// make us allocate per connection.
pub const MAX_TCP_FRAME: usize = 8 << 20;
/// Concurrent inbound TCP connections served; more are closed at once.
///
/// Each connection is a task that may hold a frame buffer, so the bound caps the memory a
/// flood of connections can take. Refused connections are closed rather than queued: the
/// peer's exchange fails and it tries again at its next push/pull.
const MAX_TCP_CONNECTIONS: usize = 64;
/// Senders remembered by the replay guard.
///
/// Far more than the members of a pool, so that only a flood of invented instances can
/// evict a real sender (see [`ReplayGuard`]).
const REPLAY_SENDERS: usize = 4096;
/// Minimum time between two warnings of the same kind.
///
/// A misconfigured peer (another key, another pool) sends several packets a second; one
/// warning per kind every 10 s says what is wrong without flooding the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Everything [`Gossip::start`] needs.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Node name (unique in the pool).
    pub name: String,
    /// Address to bind UDP and TCP on; port 0 picks a free port.
    ///
    /// One port for both, as Consul's Serf ports: members reach each other's streams at
    /// the address they gossip with.
    pub bind: SocketAddr,
    /// Address other members reach us at; defaults to the bound address (required when
    /// binding to an unspecified address such as `0.0.0.0`). Port 0 means the bound port.
    pub advertise: Option<SocketAddr>,
    /// Our metadata.
    pub meta: MemberMeta,
    /// Encryption keys; `None` sends plaintext.
    pub keyring: Option<Keyring>,
    /// Refuse plaintext packets when a keyring is set (Consul `encrypt_verify_incoming`).
    ///
    /// With both this and `encrypt_verify_outgoing` off, a keyed member sends plaintext and
    /// takes both forms. Consul's rolling enablement installs the key that way everywhere,
    /// then turns outgoing on everywhere, then incoming.
    pub encrypt_verify_incoming: bool,
    /// Encrypt outgoing packets when a keyring is set (Consul `encrypt_verify_outgoing`).
    pub encrypt_verify_outgoing: bool,
    /// Pool label, authenticated with every packet (e.g. distinct for LAN and WAN).
    ///
    /// Compared on plaintext packets and authenticated on sealed ones (see
    /// [`crate::envelope`]), so that two pools sharing a network never merge.
    pub label: String,
    /// Protocol timings.
    pub timings: Timings,
    /// UDP datagram budget.
    ///
    /// Must leave foca at least 1 KiB once the envelope and frame headers are taken off
    /// (checked at start).
    pub udp_packet_size: usize,
    /// Start generation; defaults to the wall clock in milliseconds.
    ///
    /// The wall clock makes a restart outrank the previous run without stored state, as
    /// long as the clock does not go back across the restart.
    pub generation: Option<u64>,
    /// Capacity of the event channel; events are dropped (and counted) when it is full.
    ///
    /// The owner task never waits on the agent: a slow consumer loses events rather than
    /// stalling failure detection.
    pub event_buffer: usize,
    /// Seed of the member's own randomness (the SWIM core's choices, the instance id of
    /// its frames and the encryption nonces), mixed with `name` so that members sharing a
    /// seed still differ. `None` (the default) draws from the operating system.
    ///
    /// For reproducible tests only (with a fixed `generation` and, for a whole pool, the
    /// in-memory transport under paused time): a seeded member repeats its nonces every
    /// time it starts, which must never happen with a real encryption key.
    pub seed: Option<u64>,
}

impl GossipConfig {
    /// A LAN configuration with defaults for everything but name and bind address.
    pub fn new(name: impl Into<String>, bind: SocketAddr) -> Self {
        Self {
            name: name.into(),
            bind,
            advertise: None,
            meta: MemberMeta::default(),
            keyring: None,
            encrypt_verify_incoming: true,
            encrypt_verify_outgoing: true,
            label: String::new(),
            timings: Timings::lan(),
            udp_packet_size: UDP_PACKET_SIZE,
            generation: None,
            event_buffer: 4096,
            seed: None,
        }
    }
}

/// Errors of the gossip handle.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// Invalid configuration.
    #[error("invalid gossip configuration: {0}")]
    Config(String),
    /// Binding the gossip port failed.
    #[error("cannot bind gossip port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// An address given to `join` could not be resolved.
    #[error("cannot resolve {addr:?}: {reason}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No member could be contacted.
    #[error("failed to join any member: {}", .0.join("; "))]
    JoinFailed(Vec<String>),
    /// The core refused the operation.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A keyring operation failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Keyring operations need encryption to be enabled.
    #[error("gossip encryption is not enabled on this member")]
    EncryptionDisabled,
    /// The driver has stopped.
    #[error("gossip has shut down")]
    Shutdown,
    /// The operation did not finish in time.
    #[error("gossip operation timed out")]
    Timeout,
}

impl From<IdentityError> for GossipError {
    fn from(e: IdentityError) -> Self {
        GossipError::Config(e.to_string())
    }
}

/// Transport and protocol counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Packets received (UDP datagrams and TCP frames).
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Dropped: did not decode (envelope, frame or foca message).
    pub dropped_malformed: u64,
    /// Dropped: shorter than their headers.
    pub dropped_truncated: u64,
    /// Dropped: larger than the datagram budget or a TCP frame limit.
    pub dropped_oversized: u64,
    /// Dropped: no installed key could decrypt them (or tampered).
    pub dropped_wrong_key: u64,
    /// Dropped: plaintext while encryption is required, or encrypted without a key here.
    pub dropped_encryption_mismatch: u64,
    /// Dropped: plaintext from another pool (label).
    pub dropped_label: u64,
    /// Dropped: already seen or older than the replay window.
    pub dropped_replayed: u64,
    /// User events refused as older than the deduplication window.
    pub stale_events: u64,
    /// Events not delivered because the event channel was full.
    pub events_dropped: u64,
    /// Push/pull exchanges completed.
    pub push_pulls: u64,
    /// Push/pull exchanges that failed.
    pub push_pull_failures: u64,
}

/// The counters behind [`GossipStats`]. Atomics, bumped by the owner task and the stream
/// tasks without a lock; `Relaxed` since each counter stands alone and is only read for
/// stats.
#[derive(Default)]
struct Counters {
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_truncated: AtomicU64,
    dropped_oversized: AtomicU64,
    dropped_wrong_key: AtomicU64,
    dropped_encryption_mismatch: AtomicU64,
    dropped_label: AtomicU64,
    dropped_replayed: AtomicU64,
    stale_events: AtomicU64,
    events_dropped: AtomicU64,
    push_pulls: AtomicU64,
    push_pull_failures: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, AtomicOrdering::Relaxed);
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(
        u64::try_from(n).unwrap_or(u64::MAX),
        AtomicOrdering::Relaxed,
    );
}

fn get(c: &AtomicU64) -> u64 {
    c.load(AtomicOrdering::Relaxed)
}

/// The transport state shared by the owner task, TCP tasks and the handle: keys, sealing,
/// replay detection, counters and rate-limited warnings.
struct Wire {
    /// Read for every packet, written only by keyring operations.
    keyring: RwLock<Option<Keyring>>,
    label: String,
    /// Refuse plaintext when a keyring is set.
    verify_incoming: bool,
    /// Seal with the primary key when a keyring is set; plaintext otherwise.
    verify_outgoing: bool,
    /// Random at every start, so that this run's frames never look like replays of the
    /// previous run's (see [`crate::frame`]).
    instance: u64,
    /// Shared by everything that seals for this member; `fetch_add` gives each frame its
    /// own number.
    seq: AtomicU64,
    /// One guard for datagrams and streams, since senders number both in one sequence.
    replay: Mutex<ReplayGuard>,
    nonces: Nonces,
    counters: Counters,
    /// When each kind of warning was last logged (see [`Wire::warn`]).
    warned: Mutex<HashMap<&'static str, Instant>>,
}

/// Where encryption nonces come from.
enum Nonces {
    /// The operating system, as in production.
    Os,
    /// A seeded generator, for reproducible test runs ([`GossipConfig::seed`]).
    Seeded(Box<Mutex<StdRng>>),
}

impl Nonces {
    fn next(&self) -> [u8; NONCE_LEN] {
        match self {
            Nonces::Os => envelope::random_nonce(),
            Nonces::Seeded(rng) => {
                let mut n = [0u8; NONCE_LEN];
                rng.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fill_bytes(&mut n);
                n
            }
        }
    }
}

/// An opened frame: kind plus plaintext (body at `FRAME_HEADER_LEN..`).
///
/// The header stays in `plain` and [`Opened::body`] skips it, which saves copying the
/// body out.
struct Opened {
    kind: FrameKind,
    plain: Vec<u8>,
}

impl Opened {
    fn body(&self) -> &[u8] {
        self.plain.get(FRAME_HEADER_LEN..).unwrap_or_default()
    }
}

/// Why an inbound packet was dropped.
///
/// An open failure is kept: a stream answers it with a reject notice. The others get
/// silence.
#[derive(Debug, Clone, Copy)]
enum Dropped {
    Open(OpenError),
    Malformed,
    Replayed,
}

impl Wire {
    // Locks below are std locks held for a few instructions, never across an await.
    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Option<Keyring>> {
        self.keyring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn keys_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<Keyring>> {
        self.keyring.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Frames and seals a packet: the next sequence number, a fresh nonce, and the primary
    /// key unless outgoing encryption is off (rolling enablement).
    fn seal(&self, kind: FrameKind, body: &[u8]) -> Vec<u8> {
        let seq = self.seq.fetch_add(1, AtomicOrdering::Relaxed);
        let frame = Frame::encode(kind, self.instance, seq, body);
        let keys = self.keys();
        let ring = if self.verify_outgoing {
            keys.as_ref()
        } else {
            None
        };
        envelope::seal(ring, &self.label, &frame, self.nonces.next())
    }

    /// Opens an inbound packet and checks it against the replay guard, counting and
    /// logging whatever is dropped. Bytes and packets are counted first, so drops are in
    /// the totals too.
    fn open(
        &self,
        packet: &[u8],
        from: SocketAddr,
        transport: &'static str,
    ) -> Result<Opened, Dropped> {
        add(&self.counters.bytes_received, packet.len());
        bump(&self.counters.packets_received);
        let plain = {
            let keys = self.keys();
            envelope::open(keys.as_ref(), &self.label, packet, !self.verify_incoming)
        };
        let plain = match plain {
            Ok(p) => p,
            Err(e) => {
                self.count_open_error(e, from, transport);
                return Err(Dropped::Open(e));
            }
        };
        let (kind, instance, seq) = match Frame::decode(&plain) {
            Ok(f) => (f.kind, f.instance, f.seq),
            Err(e) => {
                bump(&self.counters.dropped_malformed);
                tracing::debug!(%from, transport, error = %e, "dropping gossip packet: bad frame");
                return Err(Dropped::Malformed);
            }
        };
        // Checked once the frame is open: with encryption only authenticated sequence numbers
        // enter the window.
        let verdict = self
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(instance, seq);
        if verdict != Replay::Fresh {
            bump(&self.counters.dropped_replayed);
            tracing::debug!(%from, transport, ?verdict, "dropping replayed gossip packet");
            return Err(Dropped::Replayed);
        }
        Ok(Opened { kind, plain })
    }

    /// Every drop is counted; those an operator can fix (keys, encryption settings, pool
    /// labels) are also warned about, rate-limited, and the rest stays at debug level.
    fn count_open_error(&self, e: OpenError, from: SocketAddr, transport: &'static str) {
        let c = &self.counters;
        match e {
            OpenError::Empty | OpenError::UnknownVersion(_) => bump(&c.dropped_malformed),
            OpenError::Truncated => bump(&c.dropped_truncated),
            OpenError::LabelMismatch => bump(&c.dropped_label),
            OpenError::Unencrypted | OpenError::NoKeyConfigured => {
                bump(&c.dropped_encryption_mismatch);
            }
            OpenError::WrongKey => bump(&c.dropped_wrong_key),
        }
        match e {
            OpenError::WrongKey => self.warn("wrong-key", || {
                tracing::warn!(%from, transport, "dropping gossip traffic: no installed key could decrypt it; is the same encryption key (encrypt) configured on every member?");
            }),
            OpenError::Unencrypted => self.warn("unencrypted", || {
                tracing::warn!(%from, transport, "dropping unencrypted gossip traffic: encryption is enabled here; configure the same key (encrypt) on the sender");
            }),
            OpenError::NoKeyConfigured => self.warn("no-key", || {
                tracing::warn!(%from, transport, "dropping encrypted gossip traffic: no encryption key is configured here");
            }),
            OpenError::LabelMismatch => self.warn("label", || {
                tracing::warn!(%from, transport, "dropping gossip traffic from another pool (label mismatch)");
            }),
            _ => tracing::debug!(%from, transport, error = %e, "dropping malformed gossip packet"),
        }
    }

    /// Calls `log` at most once per [`WARN_EVERY`] for `kind`, else logs at debug.
    fn warn(&self, kind: &'static str, log: impl FnOnce()) {
        let now = Instant::now();
        let due = {
            let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            match w.get(kind) {
                Some(at) if now.duration_since(*at) < WARN_EVERY => false,
                _ => {
                    w.insert(kind, now);
                    true
                }
            }
        };
        if due {
            log();
        } else {
            tracing::debug!(kind, "gossip warning suppressed (rate limit)");
        }
    }

    /// A rejection notice: in plaintext, since the peer may hold no key or another one, and
    /// outside the sequence (seq 0), since the peer reads it without its replay guard.
    fn reject_frame(&self, reason: RejectReason) -> Vec<u8> {
        let frame = Frame::encode(FrameKind::Reject, self.instance, 0, &[reason.tag()]);
        envelope::plaintext(&self.label, &frame)
    }

    /// Reads a rejection notice from a packet that did not open.
    ///
    /// Tried before opening an answer: a notice is plaintext, so a keyed initiator that
    /// refuses plaintext would otherwise drop it and log a less useful reason.
    fn read_reject(&self, packet: &[u8]) -> Option<RejectReason> {
        let (&version, rest) = packet.split_first()?;
        if version != VERSION_PLAINTEXT {
            return None;
        }
        let frame = Frame::decode(envelope::open_plaintext(&self.label, rest).ok()?).ok()?;
        if frame.kind != FrameKind::Reject {
            return None;
        }
        Some(RejectReason::from_tag(*frame.body.first()?))
    }

    fn stats(&self) -> GossipStats {
        let c = &self.counters;
        GossipStats {
            packets_received: get(&c.packets_received),
            packets_sent: get(&c.packets_sent),
            bytes_received: get(&c.bytes_received),
            bytes_sent: get(&c.bytes_sent),
            dropped_malformed: get(&c.dropped_malformed),
            dropped_truncated: get(&c.dropped_truncated),
            dropped_oversized: get(&c.dropped_oversized),
            dropped_wrong_key: get(&c.dropped_wrong_key),
            dropped_encryption_mismatch: get(&c.dropped_encryption_mismatch),
            dropped_label: get(&c.dropped_label),
            dropped_replayed: get(&c.dropped_replayed),
            stale_events: get(&c.stale_events),
            events_dropped: get(&c.events_dropped),
            push_pulls: get(&c.push_pulls),
            push_pull_failures: get(&c.push_pull_failures),
        }
    }
}

/// The reason a reject notice gives for an open failure; only the mismatches the peer's
/// operator can fix are named.
fn reject_reason(e: OpenError) -> RejectReason {
    match e {
        OpenError::WrongKey => RejectReason::WrongKey,
        OpenError::Unencrypted => RejectReason::EncryptionRequired,
        OpenError::NoKeyConfigured => RejectReason::EncryptionNotConfigured,
        OpenError::LabelMismatch => RejectReason::LabelMismatch,
        _ => RejectReason::Other,
    }
}

/// What readers see without asking the owner task.
///
/// Replaced after every turn of the owner task that changed something, through a `watch`
/// channel: reading members or events never waits on the owner task.
#[derive(Debug, Clone)]
struct View {
    identity: NodeId,
    members: Vec<Member>,
    events: Vec<UserEvent>,
}

/// Where the owner task answers a command.
type Reply<T> = oneshot::Sender<Result<T, GossipError>>;

/// Everything that reaches the owner task: the handle's requests, and the results of the
/// tasks it spawned, which cannot touch the core themselves.
enum Command {
    Join {
        addrs: Vec<SocketAddr>,
        reply: Reply<usize>,
    },
    /// The results of all of a join's exchanges, merged in one turn so that the reply can
    /// count the members that answered.
    JoinDone {
        results: Vec<(SocketAddr, Result<PushPull, String>)>,
        reply: Reply<usize>,
    },
    /// The result of a periodic (or metadata) push/pull.
    PushPullDone {
        from: SocketAddr,
        result: Result<PushPull, String>,
    },
    /// An inbound exchange: the connection task waits for our answer.
    ServePushPull {
        remote: PushPull,
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// A foca packet that came over a stream.
    Packet {
        data: Vec<u8>,
        from: SocketAddr,
    },
    Leave {
        reply: Reply<()>,
    },
    ForceLeave {
        node: String,
        prune: bool,
        reply: Reply<()>,
    },
    SetMeta {
        meta: MemberMeta,
        reply: Reply<()>,
    },
    FireEvent {
        event: UserEvent,
        reply: Reply<UserEvent>,
    },
    Shutdown {
        /// `None` when the last handle was dropped.
        reply: Option<oneshot::Sender<()>>,
    },
}

/// What the clones of a [`Gossip`] share; dropping the last one stops the driver.
struct Inner {
    cmd: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<View>>,
    wire: Arc<Wire>,
    /// The bound address (the port is known only after binding port 0).
    local_addr: SocketAddr,
    /// For the handle's own timeouts.
    timings: Timings,
    /// Set when the last handle goes: a watch, not a command, because `drop` cannot wait for
    /// room in a full command channel, and the driver holds senders of that channel itself,
    /// so a lost `Shutdown` would leave it running for good.
    dropped: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop the driver (abruptly, like a crash).
        self.dropped.send_replace(true);
    }
}

/// A cheap-to-clone handle on a running gossip member.
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("identity", &self.inner.view.borrow().identity)
            .finish_non_exhaustive()
    }
}

/// Keyring operations on a running member (local to it, like one member's share of
/// `consul keyring`; the agent fans them out to every member).
///
/// The ring is the one the driver seals and opens with, so a change applies from the
/// next packet.
#[derive(Clone)]
pub struct KeyringHandle {
    wire: Arc<Wire>,
}

impl KeyringHandle {
    /// Installed keys, primary first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, GossipError> {
        self.wire
            .keys()
            .as_ref()
            .map(Keyring::list)
            .ok_or(GossipError::EncryptionDisabled)
    }

    /// Installs a base64 key (accepted, not yet used to send).
    pub fn install(&self, key: &str) -> Result<(), GossipError> {
        let key = Key::from_base64(key)?;
        let mut guard = self.wire.keys_mut();
        let ring = guard.as_mut().ok_or(GossipError::EncryptionDisabled)?;
        ring.install(key);
        Ok(())
    }

    /// Makes an installed key the primary one.
    pub fn use_key(&self, key: &str) -> Result<(), GossipError> {
        let key = Key::from_base64(key)?;
        let mut guard = self.wire.keys_mut();
        let ring = guard.as_mut().ok_or(GossipError::EncryptionDisabled)?;
        ring.use_key(&key)?;
        tracing::info!(key = %key.fingerprint(), "gossip primary key changed");
        Ok(())
    }

    /// Removes an installed key that is not the primary.
    pub fn remove(&self, key: &str) -> Result<(), GossipError> {
        let key = Key::from_base64(key)?;
        let mut guard = self.wire.keys_mut();
        let ring = guard.as_mut().ok_or(GossipError::EncryptionDisabled)?;
        ring.remove(&key)?;
        Ok(())
    }
}

impl Gossip {
    /// Binds UDP and TCP on `cfg.bind`, starts the driver and returns the handle and the
    /// event channel. The member is alone until [`Gossip::join`].
    pub async fn start(
        cfg: GossipConfig,
    ) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), GossipError> {
        Self::start_with(cfg, NetTransport).await
    }

    /// [`Gossip::start`] on another transport: binds `cfg.bind` on `transport` (for tests,
    /// a [`MemoryNetwork`](crate::transport::memory::MemoryNetwork) handle). Everything
    /// else (bounds, framing, encryption, push/pull) is the same as on the real network.
    pub async fn start_with<T: Transport>(
        cfg: GossipConfig,
        transport: T,
    ) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), GossipError> {
        cfg.timings.validate().map_err(GossipError::Config)?;
        cfg.meta
            .validate()
            .map_err(|e| GossipError::Config(e.to_string()))?;
        if cfg.label.len() > envelope::MAX_LABEL_LEN {
            return Err(GossipError::Config(format!(
                "label longer than {} bytes",
                envelope::MAX_LABEL_LEN
            )));
        }
        // foca's packet budget: the datagram minus the largest envelope and the frame header,
        // so a sealed foca packet always fits one datagram. The 1 KiB floor keeps every bounded
        // broadcast item (all under 1 KiB) within it, since foca refuses larger items.
        let budget = cfg
            .udp_packet_size
            .checked_sub(envelope::overhead(&cfg.label) + FRAME_HEADER_LEN)
            .filter(|b| *b >= 1024)
            .ok_or_else(|| GossipError::Config("UDP packet size too small".into()))?;

        let endpoint =
            Arc::new(
                transport
                    .bind(cfg.bind)
                    .await
                    .map_err(|source| GossipError::Bind {
                        addr: cfg.bind,
                        source,
                    })?,
            );
        let local_addr = endpoint.local_addr();
        let advertise = match cfg.advertise {
            // Port 0 in the advertise address means the bound port, known only now.
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), local_addr.port()),
            Some(a) => a,
            // Nobody can reach 0.0.0.0: the identity needs a real address.
            None if local_addr.ip().is_unspecified() => {
                return Err(GossipError::Config(
                    "an advertise address is required when binding to an unspecified address"
                        .into(),
                ));
            }
            None => local_addr,
        };
        let generation = cfg.generation.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        let identity = NodeId::new(&cfg.name, advertise, generation)?;
        let mut rng = cfg
            .seed
            .map(|seed| StdRng::seed_from_u64(member_seed(seed, &cfg.name)));
        let mut draw = || rng.as_mut().map_or_else(rand_010::random, Rng::next_u64);
        // Drawn in a fixed order (the core's seed, the instance, then the nonces), so that a
        // seeded member is reproducible.
        let (core_seed, instance) = (draw(), draw());
        let core = GossipCore::new(CoreConfig {
            identity: identity.clone(),
            meta: cfg.meta.clone(),
            timings: cfg.timings.clone(),
            max_packet_size: budget,
            seed: core_seed,
        })?;

        let wire = Arc::new(Wire {
            keyring: RwLock::new(cfg.keyring.clone()),
            label: cfg.label.clone(),
            verify_incoming: cfg.encrypt_verify_incoming,
            verify_outgoing: cfg.encrypt_verify_outgoing,
            instance,
            seq: AtomicU64::new(0),
            replay: Mutex::new(ReplayGuard::new(REPLAY_SENDERS)),
            nonces: rng.map_or(Nonces::Os, |r| Nonces::Seeded(Box::new(Mutex::new(r)))),
            counters: Counters::default(),
            warned: Mutex::new(HashMap::new()),
        });
        // Bounded: when the owner task falls behind, senders wait instead of growing a queue.
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (ev_tx, ev_rx) = mpsc::channel(cfg.event_buffer.max(1));
        let (view_tx, view_rx) = watch::channel(Arc::new(View {
            identity: identity.clone(),
            members: core.members(),
            events: Vec::new(),
        }));
        let accept = tokio::spawn(accept_loop(
            Arc::clone(&endpoint),
            Arc::clone(&wire),
            cmd_tx.clone(),
            cfg.timings.tcp_timeout,
        ));
        let driver = Driver {
            core,
            endpoint,
            wire: Arc::clone(&wire),
            cmd_tx: cmd_tx.clone(),
            events: ev_tx,
            view: view_tx,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            tasks: JoinSet::new(),
            pending_leave: Vec::new(),
            accept,
            udp_packet_size: cfg.udp_packet_size,
            tcp_timeout: cfg.timings.tcp_timeout,
            // Publishes the first view once the core's start-up outputs are in.
            changed: true,
        };
        let (dropped, dropped_rx) = watch::channel(false);
        tokio::spawn(driver.run(cmd_rx, dropped_rx));
        tracing::info!(node = %identity.name(), addr = %advertise, bind = %local_addr, encrypted = cfg.keyring.is_some(), "gossip started");
        Ok((
            Gossip {
                inner: Arc::new(Inner {
                    cmd: cmd_tx,
                    view: view_rx,
                    wire,
                    local_addr,
                    timings: cfg.timings,
                    dropped,
                }),
            },
            ev_rx,
        ))
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Our current identity (its generation changes when we rejoin).
    pub fn identity(&self) -> NodeId {
        self.inner.view.borrow().identity.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(make(tx))
            .await
            .map_err(|_| GossipError::Shutdown)?;
        rx.await.map_err(|_| GossipError::Shutdown)?
    }

    /// Joins the pool through the given members (`"host:port"`, `"host"` for port 8301,
    /// or `"[v6]:port"`): a push/pull exchange with each. Returns how many answered.
    ///
    /// Names are resolved here, in the caller's task: the owner task never waits on DNS.
    /// Seeds that fail to resolve or to answer are listed in the error when none answers.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, GossipError> {
        let mut resolved = Vec::new();
        let mut errors = Vec::new();
        // An address without a port means this pool's own port, as memberlist resolves it: a
        // WAN join to `10.0.0.1` reaches the WAN pool there, not the LAN one.
        let default_port = match self.inner.local_addr.port() {
            0 => DEFAULT_PORT,
            p => p,
        };
        for a in addrs {
            match resolve(a, default_port).await {
                Ok(sa) => resolved.push(sa),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if resolved.is_empty() {
            return Err(GossipError::JoinFailed(errors));
        }
        // The exchanges run in parallel, each bounded by the TCP timeout; this bound only keeps
        // a wedged driver from hanging the caller.
        let limit = self.inner.timings.tcp_timeout * 2 + Duration::from_secs(1);
        match timeout(
            limit,
            self.call(|reply| Command::Join {
                addrs: resolved,
                reply,
            }),
        )
        .await
        {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(GossipError::JoinFailed(mut more))) => {
                errors.append(&mut more);
                Err(GossipError::JoinFailed(errors))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GossipError::Timeout),
        }
    }

    /// Leaves gracefully: gossips a leave intent, waits for it to spread, then declares
    /// itself down. The member stays running (and can `join` again) until `shutdown`.
    pub async fn leave(&self) -> Result<(), GossipError> {
        // The leave itself takes `leave_propagate_delay`; the margin covers the owner task's
        // turns.
        let limit = self.inner.timings.leave_propagate_delay + Duration::from_secs(5);
        timeout(limit, self.call(|reply| Command::Leave { reply }))
            .await
            .map_err(|_| GossipError::Timeout)?
    }

    /// Every known member, this one included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.inner.view.borrow().members.clone()
    }

    /// Moves a failed member to *left*; with `prune` every member forgets it.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), GossipError> {
        let node = node.to_string();
        self.call(|reply| Command::ForceLeave { node, prune, reply })
            .await
    }

    /// Replaces our metadata and gossips it.
    pub async fn set_meta(&self, meta: MemberMeta) -> Result<(), GossipError> {
        self.call(|reply| Command::SetMeta { meta, reply }).await
    }

    /// Fires a user event to every member; returns it with its Lamport time.
    pub async fn fire_event(&self, event: UserEvent) -> Result<UserEvent, GossipError> {
        self.call(|reply| Command::FireEvent { event, reply }).await
    }

    /// The last 256 user events received (our own included), oldest first.
    pub fn events(&self) -> Vec<UserEvent> {
        self.inner.view.borrow().events.clone()
    }

    /// Keyring operations.
    pub fn keyring(&self) -> KeyringHandle {
        KeyringHandle {
            wire: Arc::clone(&self.inner.wire),
        }
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.inner.wire.stats()
    }

    /// Stops the driver and closes the sockets, without leaving (others will see this
    /// member fail). Call [`Gossip::leave`] first for a graceful exit.
    ///
    /// Waits until the driver task has stopped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .cmd
            .send(Command::Shutdown { reply: Some(tx) })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// The seed of one member's generator: the configured seed mixed with the member's name
/// (FNV-1a), so members started from one seed draw different numbers.
fn member_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ seed
}

/// Resolves `"host:port"`, `"host"` (default port), `"[v6]:port"` or a bare IPv6 address.
async fn resolve(addr: &str, default_port: u16) -> Result<SocketAddr, GossipError> {
    let fail = |reason: String| GossipError::Resolve {
        addr: addr.to_string(),
        reason,
    };
    let addr_trim = addr.trim();
    if let Ok(sa) = addr_trim.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = addr_trim.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let target = if addr_trim.contains(':') {
        addr_trim.to_string()
    } else {
        format!("{addr_trim}:{default_port}")
    };
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))
}

/// Writes one packet on a stream: a 4-byte big-endian length, then the packet, since
/// streams have no message boundaries.
async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(data).await?;
    stream.flush().await
}

/// Reads one length-prefixed packet. The length is checked against [`MAX_TCP_FRAME`]
/// before anything is allocated.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_TCP_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_TCP_FRAME}"),
        ));
    }
    // Grow with the bytes that really arrive rather than trusting the announced length: the
    // frame is not authenticated yet, and 64 connections announcing 8 MiB each would otherwise
    // commit half a gigabyte before a byte of payload came in.
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    stream.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {len} bytes", buf.len()),
        ));
    }
    Ok(buf)
}

/// Accepts streams and serves each in its own task, at most [`MAX_TCP_CONNECTIONS`] at
/// once, each bounded by the TCP timeout.
async fn accept_loop<E: Endpoint>(
    endpoint: Arc<E>,
    wire: Arc<Wire>,
    cmd: mpsc::Sender<Command>,
    tcp_timeout: Duration,
) {
    let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match endpoint.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "gossip TCP accept failed");
                // An accept that failed (out of file descriptors, say) tends to fail again at once;
                // the pause keeps the loop from spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::debug!(%peer, "too many gossip TCP connections; closing");
            continue;
        };
        let wire = Arc::clone(&wire);
        let cmd = cmd.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // The whole exchange is bounded: a peer that connects and stalls frees its slot after
            // the TCP timeout.
            if timeout(tcp_timeout, serve_conn(stream, peer, &wire, &cmd))
                .await
                .is_err()
            {
                tracing::debug!(%peer, "gossip TCP exchange timed out");
            }
        });
    }
}

/// Serves one inbound stream: one frame in, at most one frame out.
async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    wire: &Wire,
    cmd: &mpsc::Sender<Command>,
) {
    let packet = match read_frame(&mut stream).await {
        Ok(p) => p,
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                bump(&wire.counters.dropped_oversized);
            }
            tracing::debug!(%peer, error = %e, "reading gossip TCP frame");
            return;
        }
    };
    let opened = match wire.open(&packet, peer, "tcp") {
        Ok(o) => o,
        // Only open failures get a notice: they are mismatches the peer's operator can fix. A
        // replayed or malformed frame gets silence.
        Err(Dropped::Open(e)) => {
            let notice = wire.reject_frame(reject_reason(e));
            let _ = write_frame(&mut stream, &notice).await;
            return;
        }
        Err(_) => return,
    };
    match opened.kind {
        FrameKind::PushPullRequest => {
            let remote = match PushPull::decode(opened.body()) {
                Ok(r) => r,
                Err(e) => {
                    bump(&wire.counters.dropped_malformed);
                    tracing::debug!(%peer, error = %e, "malformed push/pull request");
                    return;
                }
            };
            // The owner task answers, since it owns the core.
            let (tx, rx) = oneshot::channel();
            if cmd
                .send(Command::ServePushPull { remote, reply: tx })
                .await
                .is_err()
            {
                return;
            }
            if let Ok(answer) = rx.await {
                add(&wire.counters.bytes_sent, answer.len());
                bump(&wire.counters.packets_sent);
                if let Err(e) = write_frame(&mut stream, &answer).await {
                    tracing::debug!(%peer, error = %e, "writing push/pull answer");
                }
            }
        }
        // A foca packet too large for one datagram (see `Driver::send`).
        FrameKind::Foca => {
            let _ = cmd
                .send(Command::Packet {
                    data: opened.body().to_vec(),
                    from: peer,
                })
                .await;
        }
        // Answers are only read by the initiator; unsolicited, they are garbage.
        FrameKind::PushPullResponse | FrameKind::Reject => {
            bump(&wire.counters.dropped_malformed);
        }
    }
}

/// Runs one push/pull exchange as the initiator.
///
/// Connect, request and answer all fall within one TCP timeout.
async fn push_pull<E: Endpoint>(
    endpoint: Arc<E>,
    to: SocketAddr,
    request: Vec<u8>,
    wire: Arc<Wire>,
    tcp_timeout: Duration,
) -> Result<PushPull, String> {
    let exchange = async {
        let mut stream = endpoint
            .connect(to)
            .await
            .map_err(|e| format!("connect to {to}: {e}"))?;
        add(&wire.counters.bytes_sent, request.len());
        bump(&wire.counters.packets_sent);
        write_frame(&mut stream, &request)
            .await
            .map_err(|e| format!("send to {to}: {e}"))?;
        let answer = read_frame(&mut stream).await.map_err(|e| {
            // A peer that closes without answering refused us silently: connection limit, replay,
            // bad frame.
            if e.kind() == io::ErrorKind::UnexpectedEof {
                format!("{to} closed the connection without answering")
            } else {
                format!("read from {to}: {e}")
            }
        })?;
        if let Some(reason) = wire.read_reject(&answer) {
            return Err(format!("{to} refused the exchange: {}", reason.explain()));
        }
        let opened = match wire.open(&answer, to, "tcp") {
            Ok(o) => o,
            Err(Dropped::Open(e)) => return Err(format!("cannot open the answer of {to}: {e}")),
            Err(_) => return Err(format!("bad answer from {to}")),
        };
        if opened.kind != FrameKind::PushPullResponse {
            return Err(format!("unexpected answer from {to}"));
        }
        PushPull::decode(opened.body()).map_err(|e| format!("bad answer from {to}: {e}"))
    };
    match timeout(tcp_timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("exchange with {to} timed out")),
    }
}

/// One scheduled core timer. `seq` orders timers due at the same instant by scheduling
/// order, so that runs are reproducible.
struct TimerEntry {
    at: Instant,
    seq: u64,
    timer: CoreTimer,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The owner task's state.
struct Driver<E> {
    core: GossipCore,
    /// Shared with the accept loop and the tasks running exchanges.
    endpoint: Arc<E>,
    wire: Arc<Wire>,
    /// Cloned into spawned tasks so they can report back.
    cmd_tx: mpsc::Sender<Command>,
    events: mpsc::Sender<GossipEvent>,
    view: watch::Sender<Arc<View>>,
    /// The core's timers, earliest first: one sleep for the earliest rather than a task
    /// per timer.
    timers: BinaryHeap<TimerEntry>,
    timer_seq: u64,
    /// Outbound exchanges and stream sends, aborted at shutdown.
    tasks: JoinSet<()>,
    /// Callers waiting for the leave to finish; several may wait on one leave.
    pending_leave: Vec<Reply<()>>,
    /// The accept loop, aborted at shutdown.
    accept: JoinHandle<()>,
    /// The datagram budget: larger outgoing packets go over a stream, larger incoming
    /// datagrams are dropped.
    udp_packet_size: usize,
    tcp_timeout: Duration,
    /// Whether the view must be published again after this turn.
    changed: bool,
}

impl<E: Endpoint> Driver<E> {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut dropped: watch::Receiver<bool>,
    ) {
        // Larger than any UDP datagram (its length field is 16 bits), so an oversized one
        // arrives whole and is dropped as oversized rather than truncated into garbage.
        let mut buf = vec![0u8; 65_536];
        // Some state changes without an output (foca's incarnations, the stale-event counter),
        // so the view is published again at least once a second.
        let mut refresh = tokio::time::interval(Duration::from_secs(1));
        let mut shutdown_reply = None;
        self.flush().await;
        loop {
            let next = self.timers.peek().map(|t| t.at);
            // A fixed polling order (not tokio's random one) keeps seeded runs reproducible.
            // Datagrams come last: a flood of them cannot hold back commands or timers, and
            // the inputs before them are bounded (one command per turn from a bounded set of
            // senders, due timers in one go), so datagrams are served between them.
            tokio::select! {
                biased;
                _ = dropped.wait_for(|d| *d) => break,
                cmd = cmd_rx.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown { reply }) => {
                        shutdown_reply = reply;
                        break;
                    }
                    Some(c) => self.on_command(c),
                },
                () = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => self.fire_timers(),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = refresh.tick() => self.changed = true,
                r = self.endpoint.recv_from(&mut buf) => match r {
                    Ok((len, from)) => self.on_datagram(buf.get(..len).unwrap_or_default(), from),
                    Err(e) => tracing::debug!(error = %e, "gossip UDP receive failed"),
                },
            }
            self.flush().await;
        }
        // Stopping: the accept loop and every task go with the owner task, and callers
        // still waiting for a leave get `Shutdown` rather than hang.
        self.accept.abort();
        self.tasks.abort_all();
        for reply in self.pending_leave.drain(..) {
            let _ = reply.send(Err(GossipError::Shutdown));
        }
        tracing::info!(node = %self.core.identity().name(), "gossip stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// The size is checked before opening, so an oversized datagram costs no decryption.
    fn on_datagram(&mut self, packet: &[u8], from: SocketAddr) {
        if packet.len() > self.udp_packet_size {
            bump(&self.wire.counters.dropped_oversized);
            add(&self.wire.counters.bytes_received, packet.len());
            tracing::debug!(%from, len = packet.len(), "dropping oversized gossip datagram");
            return;
        }
        let Ok(opened) = self.wire.open(packet, from, "udp") else {
            return;
        };
        // Push/pull only ever travels on streams.
        if opened.kind != FrameKind::Foca {
            bump(&self.wire.counters.dropped_malformed);
            return;
        }
        self.on_packet(opened.body(), from);
    }

    /// Hands a foca packet to the core. A packet "from ourselves" counts as malformed: our
    /// own packet echoed back, or a peer using our identity.
    fn on_packet(&mut self, body: &[u8], from: SocketAddr) {
        if let Err(e) = self.core.handle_packet(body) {
            let c = &self.wire.counters;
            match e {
                CoreError::Oversized => bump(&c.dropped_oversized),
                CoreError::Malformed(_) | CoreError::FromOurselves => bump(&c.dropped_malformed),
                _ => {}
            }
            tracing::debug!(%from, error = %e, "gossip packet refused");
        }
    }

    /// Runs every timer already due, earliest first.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|t| t.at <= now) {
            if let Some(entry) = self.timers.pop()
                && let Err(e) = self.core.handle_timer(entry.timer)
            {
                tracing::debug!(error = %e, "gossip timer");
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        // Any command may change what readers see.
        self.changed = true;
        match cmd {
            Command::Join { addrs, reply } => {
                if let Err(e) = self.core.prepare_join() {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                // Sealed once for every seed: each receiver has its own replay guard, and sending
                // the same ciphertext again reuses no nonce for different data.
                let request = self.wire.seal(
                    FrameKind::PushPullRequest,
                    &self.core.local_state(true).encode(),
                );
                let wire = Arc::clone(&self.wire);
                let endpoint = Arc::clone(&self.endpoint);
                let cmd = self.cmd_tx.clone();
                let t = self.tcp_timeout;
                self.tasks.spawn(async move {
                    let mut set = JoinSet::new();
                    for to in addrs {
                        let (req, wire) = (request.clone(), Arc::clone(&wire));
                        let endpoint = Arc::clone(&endpoint);
                        set.spawn(async move { (to, push_pull(endpoint, to, req, wire, t).await) });
                    }
                    let mut results = Vec::new();
                    while let Some(r) = set.join_next().await {
                        if let Ok(r) = r {
                            results.push(r);
                        }
                    }
                    let _ = cmd.send(Command::JoinDone { results, reply }).await;
                });
            }
            Command::JoinDone { results, reply } => {
                let mut ok = 0;
                let mut errors = Vec::new();
                for (to, r) in results {
                    match r {
                        Ok(state) => {
                            bump(&self.wire.counters.push_pulls);
                            ok += 1;
                            self.core.merge_remote(state, true);
                        }
                        Err(e) => {
                            bump(&self.wire.counters.push_pull_failures);
                            self.wire.warn("join", || {
                                tracing::warn!(%to, error = %e, "gossip join failed");
                            });
                            // Fall back to a UDP announce: it may still get us in.
                            let _ = self.core.announce(to);
                            errors.push(e);
                        }
                    }
                }
                let _ = reply.send(if ok > 0 {
                    Ok(ok)
                } else {
                    Err(GossipError::JoinFailed(errors))
                });
            }
            Command::PushPullDone { from, result } => match result {
                Ok(state) => {
                    bump(&self.wire.counters.push_pulls);
                    self.core.merge_remote(state, false);
                }
                Err(e) => {
                    bump(&self.wire.counters.push_pull_failures);
                    self.wire.warn("push-pull", || {
                        tracing::warn!(peer = %from, error = %e, "gossip push/pull failed");
                    });
                }
            },
            // Our answer is our state before the merge, as memberlist answers: the initiator merges
            // it with what it has, so echoing its own news back would add bytes, not information.
            Command::ServePushPull { remote, reply } => {
                let answer = self.wire.seal(
                    FrameKind::PushPullResponse,
                    &self.core.local_state(false).encode(),
                );
                let _ = reply.send(answer);
                bump(&self.wire.counters.push_pulls);
                self.core.merge_remote(remote, false);
            }
            Command::Packet { data, from } => self.on_packet(&data, from),
            Command::Leave { reply } => match self.core.leave() {
                Ok(()) => self.pending_leave.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::ForceLeave { node, prune, reply } => {
                let _ = reply.send(self.core.force_leave(&node, prune).map_err(Into::into));
            }
            Command::SetMeta { meta, reply } => {
                let _ = reply.send(self.core.set_meta(meta).map_err(Into::into));
            }
            Command::FireEvent { event, reply } => {
                let _ = reply.send(self.core.fire_event(event).map_err(Into::into));
            }
            Command::Shutdown { .. } => {}
        }
    }

    /// Drains the core's outputs and publishes the view when something changed.
    ///
    /// Async only because datagrams are sent from here; stream sends run in tasks.
    async fn flush(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { to, data } => self.send(to, &data).await,
                Output::Schedule { after, timer } => {
                    self.timer_seq += 1;
                    self.timers.push(TimerEntry {
                        at: Instant::now() + after,
                        seq: self.timer_seq,
                        timer,
                    });
                }
                Output::Event(ev) => {
                    self.changed = true;
                    if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(ev) {
                        bump(&self.wire.counters.events_dropped);
                        self.wire.warn("events-full", || {
                            tracing::warn!("gossip event channel full; dropping events");
                        });
                    }
                }
                // Sealed now, from the core's state at this instant; the exchange runs in a task
                // and its result comes back as a command.
                Output::PushPull { to, join } => {
                    let request = self.wire.seal(
                        FrameKind::PushPullRequest,
                        &self.core.local_state(join).encode(),
                    );
                    let wire = Arc::clone(&self.wire);
                    let endpoint = Arc::clone(&self.endpoint);
                    let cmd = self.cmd_tx.clone();
                    let t = self.tcp_timeout;
                    self.tasks.spawn(async move {
                        let result = push_pull(endpoint, to, request, wire, t).await;
                        let _ = cmd.send(Command::PushPullDone { from: to, result }).await;
                    });
                }
                Output::LeaveDone => {
                    self.changed = true;
                    for reply in self.pending_leave.drain(..) {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
        if self.changed {
            self.changed = false;
            self.wire
                .counters
                .stale_events
                .store(self.core.stats().stale_events, AtomicOrdering::Relaxed);
            // `send_replace` stores the view even when no handle is left to read it.
            self.view.send_replace(Arc::new(View {
                identity: self.core.identity().clone(),
                members: self.core.members(),
                events: self.core.events(),
            }));
        }
    }

    /// Seals a foca packet and sends it as a datagram.
    async fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let packet = self.wire.seal(FrameKind::Foca, data);
        if packet.len() > self.udp_packet_size {
            // Too large for one datagram: deliver it over TCP.
            // Not expected: foca keeps its packets within the budget computed at start, which
            // leaves room for the largest envelope. Should it happen, the packet goes over a
            // stream rather than being lost.
            let wire = Arc::clone(&self.wire);
            let endpoint = Arc::clone(&self.endpoint);
            let t = self.tcp_timeout;
            self.tasks.spawn(async move {
                let sent = timeout(t, async {
                    let mut s = endpoint.connect(to).await?;
                    write_frame(&mut s, &packet).await
                })
                .await;
                match sent {
                    Ok(Ok(())) => {
                        add(&wire.counters.bytes_sent, packet.len());
                        bump(&wire.counters.packets_sent);
                    }
                    _ => tracing::debug!(%to, "sending a large gossip message over TCP failed"),
                }
            });
            return;
        }
        match self.endpoint.send_to(&packet, to).await {
            Ok(n) => {
                add(&self.wire.counters.bytes_sent, n);
                bump(&self.wire.counters.packets_sent);
            }
            // A failed send is a lost datagram, which SWIM tolerates.
            Err(e) => tracing::debug!(%to, error = %e, "gossip UDP send failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame reads whole or not at all; a frame that announces more than it carries fails
    /// without the announced size having been committed up front.
    #[tokio::test]
    async fn frames_read_only_what_arrives() {
        let mut whole = 5u32.to_be_bytes().to_vec();
        whole.extend_from_slice(b"hello");
        assert_eq!(
            read_frame(&mut whole.as_slice()).await.expect("a frame"),
            b"hello"
        );
        let mut short = (8u32 << 20).to_be_bytes().to_vec();
        short.extend_from_slice(b"only this");
        let e = read_frame(&mut short.as_slice())
            .await
            .expect_err("cut short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let too_big = ((8u32 << 20) + 1).to_be_bytes();
        let e = read_frame(&mut too_big.as_slice())
            .await
            .expect_err("over the limit");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    /// `join` accepts what Consul's `-join` does: a port is optional, IPv6 may be bracketed.
    #[tokio::test]
    async fn addresses_resolve_with_the_default_port() -> Result<(), GossipError> {
        assert_eq!(
            resolve("127.0.0.1", DEFAULT_PORT).await?,
            SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
        );
        assert_eq!(
            resolve("127.0.0.1:9000", DEFAULT_PORT).await?,
            SocketAddr::from(([127, 0, 0, 1], 9000))
        );
        assert_eq!(resolve("[::1]:9000", DEFAULT_PORT).await?.port(), 9000);
        assert_eq!(resolve("::1", DEFAULT_PORT).await?.port(), DEFAULT_PORT);
        assert_eq!(
            resolve("localhost", DEFAULT_PORT).await?.port(),
            DEFAULT_PORT
        );
        assert!(resolve("no-such-host.invalid", DEFAULT_PORT).await.is_err());
        // Without a port, the pool's own: a WAN join reaches the WAN port.
        assert_eq!(resolve("127.0.0.1", 8302).await?.port(), 8302);
        Ok(())
    }

    /// A seed makes a member's nonces reproducible, and the name keeps members sharing a
    /// seed apart.
    #[test]
    fn seeded_members_draw_their_own_reproducible_numbers() {
        assert_ne!(member_seed(7, "a"), member_seed(7, "b"));
        assert_ne!(member_seed(7, "a"), member_seed(8, "a"));
        let nonces = |seed: u64, name: &str| {
            let rng = StdRng::seed_from_u64(member_seed(seed, name));
            let n = Nonces::Seeded(Box::new(Mutex::new(rng)));
            [n.next(), n.next()]
        };
        let [first, second] = nonces(7, "a");
        assert_ne!(first, second, "a fresh nonce every time");
        assert_eq!(
            nonces(7, "a"),
            [first, second],
            "the same seed repeats them"
        );
        assert_ne!(nonces(7, "b")[0], first, "another member, other nonces");
        assert_ne!(Nonces::Os.next(), Nonces::Os.next());
    }

    /// The operator has to know which address was taken.
    #[tokio::test]
    async fn a_bind_failure_names_the_address() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = Gossip::start(GossipConfig::new("n", addr))
            .await
            .expect_err("port taken");
        assert!(
            matches!(&err, GossipError::Bind { addr: a, .. } if *a == addr),
            "{err}"
        );
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    /// The heap's reversed order gives the earliest deadline first.
    #[test]
    fn timers_pop_earliest_first() {
        let now = Instant::now();
        let mut heap = BinaryHeap::new();
        for (i, ms) in [30u64, 10, 20].iter().enumerate() {
            heap.push(TimerEntry {
                at: now + Duration::from_millis(*ms),
                seq: i as u64,
                timer: CoreTimer::for_tests(),
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|t| t.seq)).collect();
        assert_eq!(order, vec![1, 2, 0]);
    }
}
