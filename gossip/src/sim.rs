//! A deterministic simulation of many [`GossipCore`]s over an in-memory network: no
//! sockets, no clock, no threads. Time is simulated, the network drops, delays and
//! partitions messages from a seeded RNG, so a run is a pure function of its seed.
//!
//! Used by the tests (failure detection, dissemination, partitions) and by the
//! `simulation` benchmark, which prints the figures for 1,000 members.
//!
//! Push/pull exchanges are performed directly between the two cores (after one network
//! delay, if both are reachable); packets are not sealed, so byte counts add the
//! envelope and frame overhead of an encrypted packet.
//!
//! Unlike a pool of drivers on [`MemoryNetwork`](crate::transport::memory::MemoryNetwork),
//! nothing here runs concurrently: events are processed one at a time in `(time, seq)`
//! order, so thousands of cores run on one thread, and the same inputs always give the
//! same run, whatever the machine.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand_010::rngs::SmallRng;
use rand_010::{RngExt, SeedableRng};

use crate::broadcast::{MemberMeta, UserEvent};
use crate::config::Timings;
use crate::core::{CoreConfig, CoreError, CoreTimer, GossipCore, GossipEvent, Output};
use crate::envelope::{NONCE_LEN, TAG_LEN};
use crate::frame::FRAME_HEADER_LEN;
use crate::identity::NodeId;
use crate::pushpull::PushPull;
use crate::state::{MemberState, MemberStatus};

/// Bytes an encrypted envelope and frame add to each packet.
///
/// The AES-GCM envelope (version, nonce, tag) plus the frame header.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN + FRAME_HEADER_LEN;
/// The foca packet budget of a 1400-byte datagram.
///
/// The budget the driver computes for its default datagram size with encryption and an
/// empty label, so simulated packets carry what real ones would.
pub const SIM_PACKET_BUDGET: usize = 1400 - SEALED_OVERHEAD;

/// Network and protocol parameters of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of everything random.
    ///
    /// The network's draws come from it directly; each node's core gets a seed derived
    /// from it.
    pub seed: u64,
    /// Protocol timings of every node.
    pub timings: Timings,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Largest one-way delay.
    pub max_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0xF0CA,
            timings: Timings::lan(),
            loss: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }
}

/// What a queued event does. `epoch` is the node's epoch when the event was queued: a
/// crash or restart bumps it, so what was meant for the previous life (its timers, the
/// packets in flight to it, its exchanges) is dropped.
enum EvKind {
    /// Load a member list into a node (see [`Sim::bootstrap`]).
    Restore {
        node: usize,
        epoch: u32,
        state: Box<PushPull>,
    },
    /// A packet arrives at a node.
    Deliver {
        to: usize,
        epoch: u32,
        data: Vec<u8>,
    },
    /// A core timer comes due.
    Timer {
        node: usize,
        epoch: u32,
        timer: CoreTimer,
    },
    /// An exchange between two cores, performed whole when it comes due.
    PushPull {
        from: usize,
        epoch: u32,
        to: usize,
        join: bool,
    },
}

/// A queued event. `seq` breaks ties between events due at the same time in the order
/// they were queued, which is what makes a run a function of its seed.
struct Ev {
    at: Duration,
    seq: u64,
    kind: EvKind,
}

impl PartialEq for Ev {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ev {}

impl PartialOrd for Ev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Reversed: `BinaryHeap` is a max-heap and the earliest event comes first.
impl Ord for Ev {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Per-node traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTraffic {
    /// Packets sent.
    pub packets_sent: u64,
    /// Bytes sent, sealed (UDP payload and push/pull frames).
    pub bytes_sent: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Bytes received, sealed.
    pub bytes_received: u64,
}

/// One simulated member.
struct SimNode {
    core: GossipCore,
    /// Running; a crashed node neither sends nor receives.
    up: bool,
    /// Bumped by a crash or a restart, see [`EvKind`].
    epoch: u32,
    /// Partition group: nodes only reach nodes of their own group.
    group: u8,
    /// Added to everything the node receives or schedules.
    slow: Duration,
    traffic: NodeTraffic,
    /// Finished a graceful leave; no longer counted by the `count_*` checks.
    left: bool,
}

/// Called with `(time, node, event)` for every event a core emits.
type Recorder = Box<dyn FnMut(Duration, usize, &GossipEvent)>;
/// Called with `(time, from, to, packet)` for every packet sent.
type Tap = Box<dyn FnMut(Duration, usize, usize, &[u8])>;

/// The simulation.
pub struct Sim {
    cfg: SimConfig,
    now: Duration,
    seq: u64,
    /// The network's draws (delays, loss) and the bootstrap jitter; cores have their own.
    rng: SmallRng,
    /// Events to come, earliest first.
    queue: BinaryHeap<Ev>,
    nodes: Vec<SimNode>,
    /// Where a core's `Send` and `PushPull` outputs go.
    by_addr: HashMap<SocketAddr, usize>,
    recorder: Option<Recorder>,
    tap: Option<Tap>,
    errors: u64,
    dropped: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// The simulated address of node `i`.
///
/// `10.b.c.d` from the low three bytes of `i`: distinct for up to 2^24 nodes.
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    let [_, b, c, d] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, b, c, d), 8301))
}

/// The simulated name of node `i`.
pub fn sim_name(i: usize) -> String {
    format!("node-{i:04}")
}

impl Sim {
    /// An empty simulation.
    pub fn new(cfg: SimConfig) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(cfg.seed),
            cfg,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            recorder: None,
            tap: None,
            errors: 0,
            dropped: 0,
        }
    }

    /// Calls `f` for every event any node emits.
    pub fn set_recorder(&mut self, f: impl FnMut(Duration, usize, &GossipEvent) + 'static) {
        self.recorder = Some(Box::new(f));
    }

    /// Calls `f(time, from, to, packet)` for every packet sent (before loss).
    pub fn set_tap(&mut self, f: impl FnMut(Duration, usize, usize, &[u8]) + 'static) {
        self.tap = Some(Box::new(f));
    }

    /// Simulated time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of nodes (crashed included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Packets that failed to decode or were refused by a core.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Packets the network dropped (loss, partition, crashed receiver).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The core of node `i`.
    pub fn core(&self, i: usize) -> Option<&GossipCore> {
        self.nodes.get(i).map(|n| &n.core)
    }

    /// Traffic of node `i`.
    pub fn traffic(&self, i: usize) -> NodeTraffic {
        self.nodes.get(i).map(|n| n.traffic).unwrap_or_default()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.up)
    }

    /// Adds a node (alone until it joins or the cluster is bootstrapped).
    pub fn add_node(&mut self) -> Result<usize, CoreError> {
        let i = self.nodes.len();
        let core = self.make_core(i, 1)?;
        self.nodes.push(SimNode {
            core,
            up: true,
            epoch: 0,
            group: 0,
            slow: Duration::ZERO,
            traffic: NodeTraffic::default(),
            left: false,
        });
        self.by_addr.insert(sim_addr(i), i);
        self.drain(i);
        Ok(i)
    }

    fn make_core(&mut self, i: usize, generation: u64) -> Result<GossipCore, CoreError> {
        let id = NodeId::new(&sim_name(i), sim_addr(i), generation)
            .map_err(|e| CoreError::Foca(e.to_string()))?;
        GossipCore::new(CoreConfig {
            identity: id,
            meta: MemberMeta {
                datacenter: "dc1".into(),
                build: "0.1.0".into(),
                ..MemberMeta::default()
            },
            timings: self.cfg.timings.clone(),
            max_packet_size: SIM_PACKET_BUDGET,
            // Derived per node, so that nodes do not make the same choices in lockstep.
            seed: self
                .cfg
                .seed
                .wrapping_add(i as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15),
        })
    }

    /// Makes every running node know every other (as if each had done a push/pull with a
    /// member that knows everyone), without gossiping it: a converged cluster. Each node
    /// learns it at a random moment of the next probe interval, so that periodic timers
    /// are not in lockstep; run the simulation past that interval before measuring.
    pub fn bootstrap(&mut self) {
        let members: Vec<MemberState> = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .flat_map(|n| {
                n.core
                    .local_state(false)
                    .members
                    .into_iter()
                    // Each node's own entry, as it advertises it (with its metadata).
                    .filter(|m| m.id == *n.core.identity())
            })
            .collect();
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            if !node.up {
                continue;
            }
            let state = Box::new(PushPull {
                join: false,
                sender: node.core.identity().clone(),
                event_clock: 0,
                members: members.clone(),
                events: Vec::new(),
            });
            let epoch = node.epoch;
            let span = u64::try_from(self.cfg.timings.probe_interval.as_micros()).unwrap_or(1);
            let at = self.now + Duration::from_micros(self.rng.random_range(0..span.max(1)));
            self.push(
                at,
                EvKind::Restore {
                    node: i,
                    epoch,
                    state,
                },
            );
        }
    }

    /// Node `i` joins through node `seed` (a push/pull exchange).
    pub fn join(&mut self, i: usize, seed: usize) {
        let Some(epoch) = self.nodes.get(i).map(|n| n.epoch) else {
            return;
        };
        let at = self.now + self.delay();
        self.push(
            at,
            EvKind::PushPull {
                from: i,
                epoch,
                to: seed,
                join: true,
            },
        );
    }

    /// Stops node `i` abruptly: it neither sends nor receives any more.
    ///
    /// The epoch bump drops its pending timers and whatever is in flight to it.
    pub fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.up = false;
            n.epoch += 1;
        }
    }

    /// Restarts a crashed node `i` with a new generation (it is alone until it joins).
    ///
    /// Nothing survives but the address; the generation should exceed the previous one for
    /// the cluster to accept the new identity over the old.
    pub fn restart(&mut self, i: usize, generation: u64) -> Result<(), CoreError> {
        let core = self.make_core(i, generation)?;
        if let Some(n) = self.nodes.get_mut(i) {
            n.core = core;
            n.up = true;
            n.epoch += 1;
            n.left = false;
        }
        self.drain(i);
        Ok(())
    }

    /// Places node `i` in partition group `group` (nodes only talk within a group).
    pub fn set_group(&mut self, i: usize, group: u8) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.group = group;
        }
    }

    /// Delays everything node `i` receives or schedules by `extra` (a CPU-starved member).
    pub fn set_slow(&mut self, i: usize, extra: Duration) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.slow = extra;
        }
    }

    /// Sets the packet loss probability.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Node `i` fires a user event.
    pub fn fire_event(&mut self, i: usize, ev: UserEvent) -> Result<UserEvent, CoreError> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| CoreError::UnknownMember(sim_name(i)))?;
        let ev = node.core.fire_event(ev)?;
        self.drain(i);
        Ok(ev)
    }

    /// Node `i` starts a graceful leave.
    pub fn leave(&mut self, i: usize) -> Result<(), CoreError> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| CoreError::UnknownMember(sim_name(i)))?;
        node.core.leave()?;
        self.drain(i);
        Ok(())
    }

    /// Whether node `i` finished leaving.
    pub fn has_left(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.left)
    }

    /// How many running nodes see `name` with `status`, and how many running nodes
    /// other than `name` itself there are.
    pub fn count_seeing(&self, name: &str, status: MemberStatus) -> (usize, usize) {
        let mut seeing = 0;
        let mut total = 0;
        for n in self.nodes.iter().filter(|n| n.up && !n.left) {
            if n.core.identity().name() == name {
                continue;
            }
            total += 1;
            if n.core.member_status(name) == Some(status) {
                seeing += 1;
            }
        }
        (seeing, total)
    }

    /// How many running nodes have the event, out of how many running nodes.
    pub fn count_with_event(&self, id: &uuid::Uuid) -> (usize, usize) {
        let up = self.nodes.iter().filter(|n| n.up && !n.left);
        let total = up.clone().count();
        (up.filter(|n| n.core.has_event(id)).count(), total)
    }

    /// Runs until simulated time `until`.
    ///
    /// Time only moves forward, and reaches `until` even when nothing is queued.
    pub fn run_until(&mut self, until: Duration) {
        while self.queue.peek().is_some_and(|e| e.at <= until) {
            if let Some(ev) = self.queue.pop() {
                self.now = self.now.max(ev.at);
                self.process(ev.kind);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs, checking `done` every `step`, until it holds (returns the time) or `deadline`.
    pub fn run_until_true(
        &mut self,
        deadline: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        while self.now < deadline {
            if done(self) {
                return Some(self.now);
            }
            let next = (self.now + step).min(deadline);
            self.run_until(next);
        }
        done(self).then_some(self.now)
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = (self.cfg.min_delay, self.cfg.max_delay);
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from((hi - lo).as_micros()).unwrap_or(u64::MAX);
        lo + Duration::from_micros(self.rng.random_range(0..=span))
    }

    fn push(&mut self, at: Duration, kind: EvKind) {
        self.seq += 1;
        self.queue.push(Ev {
            at,
            seq: self.seq,
            kind,
        });
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        match (self.nodes.get(a), self.nodes.get(b)) {
            (Some(x), Some(y)) => x.up && y.up && x.group == y.group,
            _ => false,
        }
    }

    fn process(&mut self, kind: EvKind) {
        match kind {
            EvKind::Restore { node, epoch, state } => {
                let Some(n) = self.nodes.get_mut(node) else {
                    return;
                };
                // Only if the node is still in the life the restore was queued for.
                if n.up && n.epoch == epoch {
                    n.core.restore(*state);
                    self.drain(node);
                }
            }
            EvKind::Deliver { to, epoch, data } => {
                let Some(n) = self.nodes.get_mut(to) else {
                    return;
                };
                if !n.up || n.epoch != epoch {
                    self.dropped += 1;
                    return;
                }
                n.traffic.packets_received += 1;
                // Counted as on the wire: the sealed size.
                n.traffic.bytes_received += (data.len() + SEALED_OVERHEAD) as u64;
                if n.core.handle_packet(&data).is_err() {
                    self.errors += 1;
                }
                self.drain(to);
            }
            EvKind::Timer { node, epoch, timer } => {
                let Some(n) = self.nodes.get_mut(node) else {
                    return;
                };
                if !n.up || n.epoch != epoch {
                    return;
                }
                let _ = n.core.handle_timer(timer);
                self.drain(node);
            }
            EvKind::PushPull {
                from,
                epoch,
                to,
                join,
            } => {
                // Reachability is checked once, when the exchange comes due: a stream is not cut
                // halfway.
                if self.nodes.get(from).is_none_or(|n| n.epoch != epoch)
                    || !self.reachable(from, to)
                {
                    return;
                }
                let (Some(a), Some(b)) = (self.nodes.get(from), self.nodes.get(to)) else {
                    return;
                };
                // Both states are taken before either merge, as on the wire: the responder answers
                // with its state before merging the request. The `+ 4` is the stream's length
                // prefix.
                let request = a.core.local_state(join);
                let answer = b.core.local_state(false);
                let (req_len, ans_len) = (
                    (request.encode().len() + SEALED_OVERHEAD + 4) as u64,
                    (answer.encode().len() + SEALED_OVERHEAD + 4) as u64,
                );
                if let Some(b) = self.nodes.get_mut(to) {
                    b.core.merge_remote(request, false);
                    b.traffic.bytes_sent += ans_len;
                    b.traffic.bytes_received += req_len;
                }
                self.drain(to);
                if let Some(a) = self.nodes.get_mut(from) {
                    a.core.merge_remote(answer, join);
                    a.traffic.bytes_sent += req_len;
                    a.traffic.bytes_received += ans_len;
                }
                self.drain(from);
            }
        }
    }

    /// Turns node `i`'s outputs into queued events.
    fn drain(&mut self, i: usize) {
        let mut outs = Vec::new();
        let (epoch, slow) = match self.nodes.get_mut(i) {
            Some(n) => {
                while let Some(o) = n.core.poll_output() {
                    outs.push(o);
                }
                (n.epoch, n.slow)
            }
            None => return,
        };
        for out in outs {
            match out {
                Output::Send { to, data } => {
                    if let Some(n) = self.nodes.get_mut(i) {
                        n.traffic.packets_sent += 1;
                        n.traffic.bytes_sent += (data.len() + SEALED_OVERHEAD) as u64;
                    }
                    // Counted as sent before the network decides: loss and partitions happen on the
                    // way, as on a real network.
                    let Some(&j) = self.by_addr.get(&to) else {
                        self.dropped += 1;
                        continue;
                    };
                    if let Some(tap) = self.tap.as_mut() {
                        tap(self.now, i, j, &data);
                    }
                    let lost = self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.min(1.0));
                    if lost || !self.reachable(i, j) {
                        self.dropped += 1;
                        continue;
                    }
                    let (to_epoch, to_slow) = self
                        .nodes
                        .get(j)
                        .map_or((0, Duration::ZERO), |n| (n.epoch, n.slow));
                    // The receiver's slowness delays what it receives.
                    let at = self.now + self.delay() + to_slow;
                    self.push(
                        at,
                        EvKind::Deliver {
                            to: j,
                            epoch: to_epoch,
                            data,
                        },
                    );
                }
                Output::Schedule { after, timer } => {
                    let at = self.now + after + slow;
                    self.push(
                        at,
                        EvKind::Timer {
                            node: i,
                            epoch,
                            timer,
                        },
                    );
                }
                Output::Event(ev) => {
                    if let Some(rec) = self.recorder.as_mut() {
                        rec(self.now, i, &ev);
                    }
                }
                Output::PushPull { to, join } => {
                    if let Some(&j) = self.by_addr.get(&to) {
                        // A round trip before the exchange completes.
                        let at = self.now + self.delay() * 2;
                        self.push(
                            at,
                            EvKind::PushPull {
                                from: i,
                                epoch,
                                to: j,
                                join,
                            },
                        );
                    }
                }
                Output::LeaveDone => {
                    if let Some(n) = self.nodes.get_mut(i) {
                        n.left = true;
                    }
                }
            }
        }
    }
}
