//! The sans-IO gossip core: foca plus what Cairn adds around it (member table, metadata,
//! leave intents, user events, push/pull merges), driven by plain inputs and drained for
//! outputs. No sockets, no clock, no global randomness: time arrives as timers the caller
//! schedules and fires, randomness from a seed. The tokio driver and the deterministic
//! simulation drive the same code.
//!
//! ```text
//!   handle_packet(bytes) ─┐                         ┌─> Output::Send { to, data }
//!   handle_timer(timer)  ─┤                         ├─> Output::Schedule { after, timer }
//!   merge_remote(state)  ─┼─> foca + Book + table ──┼─> Output::Event(GossipEvent)
//!   join/leave/meta/event┘                          ├─> Output::PushPull { to, join }
//!                                                   └─> Output::LeaveDone
//! ```
//!
//! Callers must drain [`GossipCore::poll_output`] after every input and deliver every
//! scheduled timer (late is fine, lost is not).
//!
//! foca knows identities by address and only their liveness; the agent needs members by
//! name, with metadata, with *left* told apart from *failed*, and each change reported
//! once. So the core keeps a table by name of what the agent was told, and after every
//! input reconciles it with foca's liveness and the [`Book`](crate::broadcast::Book)'s
//! metadata and leave intents, emitting only the differences as [`GossipEvent`]s.
//!
//! Timers are never cancelled. Each one carries what it was armed for (a member's
//! generation, say) and does nothing when that no longer holds, which keeps the core free
//! of timer bookkeeping and makes a late timer harmless.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{
    Foca, Identity, Member as FocaMember, Notification, OwnedNotification, Runtime, State, Timer,
};
use rand_010::rngs::SmallRng;
use rand_010::{RngExt, SeedableRng};

use crate::broadcast::{
    Handler, Item, LeaveMark, LimitError, MemberMeta, SharedBook, UserEvent, VersionedMeta,
};
use crate::codec::{CodecError, WireCodec};
use crate::config::Timings;
use crate::identity::NodeId;
use crate::pushpull::{MAX_PUSHPULL_EVENTS, PushPull};
use crate::state::{Member, MemberState, MemberStatus, merge, status_of};

/// Version of Cairn's gossip protocol (codec, broadcasts, push/pull).
///
/// Published in every member's metadata ([`Member::protocol`]), so a pool running mixed
/// versions shows in the member list.
pub const PROTOCOL_VERSION: u8 = 1;
/// User events kept per member for `events()`.
///
/// The most recent of them also ride on every push/pull exchange.
pub const EVENT_RING: usize = 256;

/// foca with the crate's identity, codec and broadcast handler. foca's random choices
/// (probe order, gossip targets) need a seed for reproducible runs, not unpredictability,
/// hence `SmallRng`.
type FocaCore = Foca<NodeId, WireCodec, SmallRng, Handler>;

/// Something that happened to the cluster, as the agent hears about it.
///
/// Each event is a transition: a member's status is reported only when it differs from
/// what was reported before, however many inputs led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipEvent {
    /// A member became alive (joined, or came back).
    ///
    /// Emitted once the member's metadata is known, or after two
    /// [`Timings::meta_pull_delay`]s without it.
    MemberUp(Member),
    /// A member changed metadata, restarted with a new generation or started leaving.
    MemberUpdate(Member),
    /// A member was declared down without a leave intent.
    MemberFailed(Member),
    /// A member left gracefully or was forced out.
    MemberLeft(Member),
    /// A failed or left member was forgotten (reconnect/tombstone timeout or prune).
    ///
    /// Nothing more is reported about the name until it is seen again.
    MemberReaped(Member),
    /// A user event arrived (including our own).
    UserEvent(UserEvent),
}

/// A timer the core asked for; give it back through [`GossipCore::handle_timer`].
///
/// Opaque: a caller can only hand back what the core scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreTimer(TimerKind);

#[cfg(test)]
impl CoreTimer {
    pub(crate) fn for_tests() -> Self {
        CoreTimer(TimerKind::PushPull)
    }
}

/// What a timer was armed for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerKind {
    /// One of foca's own timers, passed through.
    Foca(Timer<NodeId>),
    /// The periodic push/pull with a random member.
    PushPull,
    /// Sends custom broadcasts that member updates crowd out of gossip packets.
    BroadcastTick,
    /// The end of [`Timings::leave_propagate_delay`].
    FinishLeave,
    /// A member came up without metadata.
    CheckMeta {
        name: Arc<str>,
        /// The generation that came up: a timer armed for a previous life of the member
        /// does nothing.
        generation: u64,
        /// 0 pulls the metadata from the member, 1 reports the member without it.
        attempt: u8,
    },
    /// Forgets a failed or left member at the end of its timeout.
    Reap {
        name: Arc<str>,
        /// The generation that went down: a member that came back or restarted since is not
        /// reaped by its previous life's timer.
        generation: u64,
    },
}

/// What the core wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a foca packet (the driver seals it).
    Send {
        ///
        /// An address, not an identity: the driver only needs where to send.
        /// Destination.
        to: SocketAddr,
        /// The packet.
        data: Vec<u8>,
    },
    /// Deliver `timer` back after `after`.
    Schedule {
        /// Delay.
        after: Duration,
        /// The timer.
        timer: CoreTimer,
    },
    /// Tell the agent.
    Event(GossipEvent),
    /// Run a push/pull exchange with `to` and hand the answer to
    /// [`GossipCore::merge_remote`].
    PushPull {
        /// The member to exchange with.
        to: SocketAddr,
        ///
        /// The answer to a join is merged with `we_joined`, so the events it carries are
        /// marked seen rather than delivered: they predate the joiner.
        /// Whether this is a join.
        join: bool,
    },
    /// The leave started by [`GossipCore::leave`] is complete.
    LeaveDone,
}

/// Why a core input failed. State is unchanged unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A packet that does not decode.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A packet larger than the configured limit.
    #[error("packet larger than the limit")]
    Oversized,
    /// A packet claiming to come from this member.
    #[error("packet from ourselves")]
    FromOurselves,
    /// An operation on an unknown member.
    #[error("no member named {0:?}")]
    UnknownMember(String),
    /// Metadata or an event beyond its bounds.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Called after the member left the cluster.
    #[error("this member has left the cluster")]
    Left,
    /// An error inside foca (its state may be affected; see foca's `Error` docs).
    #[error("foca: {0}")]
    Foca(String),
}

impl From<foca::Error> for CoreError {
    fn from(e: foca::Error) -> Self {
        match e {
            foca::Error::DataTooBig => CoreError::Oversized,
            foca::Error::DataFromOurselves => CoreError::FromOurselves,
            foca::Error::MalformedPacket
            | foca::Error::Decode(_)
            | foca::Error::CustomBroadcast(_)
            | foca::Error::IndirectForOurselves => CoreError::Malformed(e.to_string()),
            other => CoreError::Foca(other.to_string()),
        }
    }
}

/// Counters of the core (the driver adds its transport counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Packets that did not decode.
    pub malformed: u64,
    /// Packets over the size limit.
    pub oversized: u64,
    /// Packets that claimed to come from us.
    pub from_ourselves: u64,
    /// User events refused as too old.
    pub stale_events: u64,
    /// Push/pull exchanges merged.
    pub push_pulls: u64,
}

/// Configuration of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This member's identity.
    pub identity: NodeId,
    /// This member's metadata.
    pub meta: MemberMeta,
    /// Protocol timings.
    pub timings: Timings,
    /// Largest foca packet (the datagram budget minus envelope and frame headers).
    pub max_packet_size: usize,
    ///
    /// The driver draws it from the operating system unless
    /// [`GossipConfig::seed`](crate::GossipConfig::seed) is set.
    /// Seed of all randomness (member selection, shuffles).
    pub seed: u64,
}

/// foca's [`Runtime`]: what foca asks for while it runs. The core cannot react inside a
/// foca call (foca holds the borrow), so this is drained by `after_input` once the call
/// returns.
#[derive(Default)]
struct Accum {
    sends: Vec<(SocketAddr, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    notes: Vec<OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Accum {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notes.push(notification.to_owned());
    }

    /// Only the address is kept: where to send does not depend on the generation.
    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((Identity::addr(&to), data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// What the core knows and has reported about one member name.
#[derive(Debug, Clone)]
struct Record {
    /// The newest identity seen for the name (its generation and address can change).
    id: NodeId,
    /// Liveness of `id`, as foca last reported it.
    down: bool,
    /// Last incarnation a push/pull carried; [`GossipCore::members`] prefers foca's live
    /// value.
    incarnation: u16,
    /// The status the agent was last told, `None` before the first report. Reconciling
    /// compares against it, so every transition is reported once.
    reported: Option<MemberStatus>,
    /// The metadata rank of the last report: a newer rank is a [`GossipEvent::MemberUpdate`].
    reported_meta: Option<(u64, u64)>,
    /// The generation of the last report: a restart is an update even before the new
    /// generation's metadata arrives.
    reported_generation: u64,
    /// A `CheckMeta` timer is armed: reconciling runs after every input and must not arm
    /// one each time.
    meta_check_pending: bool,
}

impl Record {
    fn new(id: NodeId, down: bool) -> Self {
        Self {
            reported_generation: id.generation(),
            id,
            down,
            incarnation: 0,
            reported: None,
            reported_meta: None,
            meta_check_pending: false,
        }
    }
}

/// The gossip state machine. See the module documentation.
pub struct GossipCore {
    /// SWIM: the liveness of every identity, probing and dissemination.
    foca: FocaCore,
    /// What foca asked for during the current input.
    rt: Accum,
    /// Metadata, leave intents and the event clock, shared with foca's broadcast handler.
    book: SharedBook,
    /// Every member the agent knows of, by name, this one included. Failed members never
    /// seen alive are listed too (as Consul lists them), until reaped.
    table: BTreeMap<Arc<str>, Record>,
    /// The last [`EVENT_RING`] user events delivered.
    ring: VecDeque<UserEvent>,
    /// Outputs not yet polled.
    out: VecDeque<Output>,
    timings: Timings,
    /// Kept to rebuild foca's configuration when the cluster size changes.
    max_packet_size: usize,
    /// The core's own choices (push/pull partners, the first push/pull delay). Separate
    /// from foca's generator, so that the draws of one do not shift the other's.
    rng: SmallRng,
    /// This member's metadata as last set.
    meta: MemberMeta,
    /// Counts changes of our metadata within this generation; with the generation it ranks
    /// the copies we publish.
    meta_version: u64,
    /// A leave is in progress: an intent for us is expected, not a reason to rejoin, and
    /// foca going defunct is no cause for a warning.
    leaving: bool,
    /// The leave finished: foca declared us down, no events are fired, push/pull stops,
    /// and a join takes a new generation.
    left: bool,
    /// The cluster size foca's configuration was computed for.
    sized_for: usize,
    stats: CoreStats,
    /// A member went down during this input: the update is gossiped at once rather than at
    /// the next gossip tick, which saves up to an interval per hop of the news.
    push_updates: bool,
    /// A user event arrived during this input: relayed at once, likewise.
    push_broadcasts: bool,
}

impl std::fmt::Debug for GossipCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipCore")
            .field("identity", self.foca.identity())
            .field("members", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl GossipCore {
    /// A core for a member that knows no one yet. Drain the outputs: it schedules its
    /// periodic timers and reports itself up.
    pub fn new(cfg: CoreConfig) -> Result<Self, CoreError> {
        cfg.meta.validate()?;
        cfg.timings.validate().map_err(CoreError::Foca)?;
        let book = SharedBook::default();
        let foca = Foca::with_custom_broadcast(
            cfg.identity.clone(),
            cfg.timings.foca_config(1, cfg.max_packet_size),
            SmallRng::seed_from_u64(cfg.seed),
            WireCodec,
            Handler::new(book.clone()),
        );
        let mut table = BTreeMap::new();
        table.insert(
            Arc::clone(cfg.identity.name_arc()),
            Record::new(cfg.identity.clone(), false),
        );
        let mut core = Self {
            foca,
            rt: Accum::default(),
            book,
            table,
            ring: VecDeque::with_capacity(EVENT_RING),
            out: VecDeque::new(),
            max_packet_size: cfg.max_packet_size,
            // foca's generator takes `seed` itself; this one must draw a different stream.
            rng: SmallRng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15),
            meta: cfg.meta,
            meta_version: 1,
            leaving: false,
            left: false,
            sized_for: 1,
            stats: CoreStats::default(),
            push_updates: false,
            push_broadcasts: false,
            timings: cfg.timings,
        };
        // Queued before anyone is known, our metadata rides on the first messages to whoever we
        // join; publishing also reports ourselves up.
        core.publish_meta()?;
        // Stagger the first exchange so members started together do not sync in lockstep.
        let interval = core.timings.push_pull_interval;
        let first = interval.mul_f64(core.rng.random_range(0.5..1.0));
        core.schedule(first, TimerKind::PushPull);
        core.schedule(core.timings.gossip_interval, TimerKind::BroadcastTick);
        core.after_input();
        Ok(core)
    }

    /// This member's current identity (its generation changes on rejoin).
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Counters.
    pub fn stats(&self) -> CoreStats {
        CoreStats {
            stale_events: self.book.lock().stale_events(),
            ..self.stats
        }
    }

    /// Foca's dissemination backlogs: (member updates, custom broadcasts).
    ///
    /// For metrics: a backlog that keeps growing means updates are produced faster than
    /// gossip spreads them.
    pub fn backlog(&self) -> (usize, usize) {
        (
            self.foca.updates_backlog(),
            self.foca.custom_broadcast_backlog(),
        )
    }

    /// Number of active members foca knows (without this one).
    pub fn num_active(&self) -> usize {
        self.foca.num_members()
    }

    /// Handles a foca packet (already opened by the transport).
    pub fn handle_packet(&mut self, data: &[u8]) -> Result<(), CoreError> {
        // Drained even when foca failed: it may have acted on part of the packet first.
        let r = self.foca.handle_data(data, &mut self.rt);
        self.after_input();
        r.map_err(|e| {
            let e = CoreError::from(e);
            match e {
                CoreError::Malformed(_) => self.stats.malformed += 1,
                CoreError::Oversized => self.stats.oversized += 1,
                CoreError::FromOurselves => self.stats.from_ourselves += 1,
                _ => {}
            }
            e
        })
    }

    /// Handles a timer that came due.
    pub fn handle_timer(&mut self, timer: CoreTimer) -> Result<(), CoreError> {
        let r = match timer.0 {
            TimerKind::Foca(t) => self
                .foca
                .handle_timer(t, &mut self.rt)
                .map_err(CoreError::from),
            TimerKind::PushPull => {
                self.push_pull_tick();
                Ok(())
            }
            TimerKind::BroadcastTick => {
                self.schedule(self.timings.gossip_interval, TimerKind::BroadcastTick);
                // Member updates fill gossip packets first; when both backlogs are busy,
                // send custom broadcasts on their own so they are not starved.
                if self.foca.custom_broadcast_backlog() > 0 && self.foca.updates_backlog() > 0 {
                    self.foca.broadcast(&mut self.rt).map_err(CoreError::from)
                } else {
                    Ok(())
                }
            }
            TimerKind::FinishLeave => self.finish_leave(),
            TimerKind::CheckMeta {
                name,
                generation,
                attempt,
            } => {
                self.check_meta(&name, generation, attempt);
                Ok(())
            }
            TimerKind::Reap { name, generation } => {
                self.reap(&name, generation);
                Ok(())
            }
        };
        self.after_input();
        r
    }

    /// Sends a foca `Announce` to an address whose identity is unknown (a UDP join; the
    /// TCP push/pull join is preferred).
    pub fn announce(&mut self, to: SocketAddr) -> Result<(), CoreError> {
        let r = self
            .foca
            .announce(NodeId::placeholder(to), &mut self.rt)
            .map_err(CoreError::from);
        self.after_input();
        r
    }

    /// Prepares a join: a member that left takes a new generation so it can come back.
    ///
    /// Our identity is down everywhere after a leave, and SWIM never revives a down
    /// identity; a new generation outranks it.
    pub fn prepare_join(&mut self) -> Result<(), CoreError> {
        if !self.left {
            return Ok(());
        }
        let Some(new_id) = self.foca.identity().renew() else {
            return Err(CoreError::Left);
        };
        self.foca
            .change_identity(new_id.clone(), &mut self.rt)
            .map_err(CoreError::from)?;
        self.left = false;
        self.leaving = false;
        self.adopt_own_identity(new_id);
        self.after_input();
        Ok(())
    }

    /// Our state for a push/pull exchange.
    ///
    /// foca's membership state does not list ourselves, so our entry is added by hand.
    /// Its incarnation is 0 because foca does not expose ours; the merge keeps whatever
    /// higher value the receiver holds for the same identity.
    pub fn local_state(&self, join: bool) -> PushPull {
        let book = self.book.lock();
        let mut members: Vec<MemberState> = self
            .foca
            .iter_membership_state()
            .map(|m| MemberState {
                id: m.id().clone(),
                incarnation: m.incarnation(),
                state: m.state(),
                leave: book.leave(m.id().name()),
                meta: book.meta(m.id().name()).cloned(),
            })
            .collect();
        let me = self.foca.identity();
        members.push(MemberState {
            id: me.clone(),
            incarnation: 0,
            state: if self.left { State::Down } else { State::Alive },
            leave: book.leave(me.name()),
            meta: book.meta(me.name()).cloned(),
        });
        // The newest events: the ones a member that missed some gossip most likely lacks.
        let skip = self.ring.len().saturating_sub(MAX_PUSHPULL_EVENTS);
        PushPull {
            join,
            sender: me.clone(),
            event_clock: book.event_clock(),
            members,
            events: self.ring.iter().skip(skip).cloned().collect(),
        }
    }

    /// Merges a remote member's state (from a push/pull exchange). `we_joined` is true when
    /// this is the answer to our own join: its events are marked seen, not delivered.
    pub fn merge_remote(&mut self, remote: PushPull, we_joined: bool) {
        self.stats.push_pulls += 1;
        self.merge_state(remote, we_joined, true);
    }

    /// Loads a member list without gossiping it (restoring a saved state, or seeding a
    /// simulation); events in it are marked seen, not delivered.
    pub fn restore(&mut self, state: PushPull) {
        self.merge_state(state, true, false);
    }

    /// The merge behind [`GossipCore::merge_remote`] and [`GossipCore::restore`]: each remote
    /// member is merged with our view of its name, foca gets the liveness that changed, the
    /// book the metadata and leave intents, and the table the failed members it lacks.
    /// `broadcast` says whether foca should spread what it learns.
    fn merge_state(&mut self, remote: PushPull, we_joined: bool, broadcast: bool) {
        let me = self.foca.identity().clone();
        // Our view of every name, as states (foca holds liveness, the book the rest).
        // foca may hold several identities for one name (a restart on another address, an old
        // generation still down); they merge into one state per name, as the remote's list does.
        let mut local: HashMap<Arc<str>, MemberState> = HashMap::new();
        {
            let book = self.book.lock();
            for m in self.foca.iter_membership_state() {
                let s = MemberState {
                    id: m.id().clone(),
                    incarnation: m.incarnation(),
                    state: m.state(),
                    leave: book.leave(m.id().name()),
                    meta: book.meta(m.id().name()).cloned(),
                };
                let name = Arc::clone(m.id().name_arc());
                let merged = match local.get(&name) {
                    Some(prev) => merge(prev, &s),
                    None => s,
                };
                local.insert(name, merged);
            }
        }
        let mut updates = Vec::new();
        let mut dirty = Vec::new();
        for m in remote.members {
            let name = Arc::clone(m.id.name_arc());
            if *name == *me.name() {
                if m.id == me {
                    // Let foca refute a suspicion or rejoin after being declared down.
                    updates.push(FocaMember::new(m.id, m.incarnation, m.state));
                } else if m.id.generation() > me.generation() {
                    tracing::warn!(
                        peer = %remote.sender,
                        other = ?m.id,
                        "another identity with this member's name and a later generation is gossiped"
                    );
                }
                continue;
            }
            let merged = match local.get(&name) {
                Some(l) => merge(l, &m),
                None => m,
            };
            let before = local.get(&name);
            // Only what changes our view goes to foca; the rest of the list is what we knew.
            let liveness_changed = before.is_none_or(|l| {
                l.id != merged.id || l.incarnation != merged.incarnation || l.state != merged.state
            });
            if liveness_changed {
                updates.push(FocaMember::new(
                    merged.id.clone(),
                    merged.incarnation,
                    merged.state,
                ));
            }
            {
                let mut book = self.book.lock();
                let mut changed = false;
                // Metadata and leave intents are not foca updates: they go to the book, and the
                // names that changed are reconciled once everything is applied.
                if let Some(vm) = &merged.meta {
                    changed |= book.merge_meta(&name, vm);
                }
                if let Some(mark) = merged.leave {
                    changed |= book.merge_leave(&name, mark);
                }
                if changed {
                    dirty.push(Arc::clone(&name));
                }
            }
            // A failed member we never heard of is listed (as Consul does), unless pruned.
            if merged.state == State::Down && !self.table.contains_key(&name) {
                let pruned = merged
                    .leave
                    .is_some_and(|l| l.prune && l.generation == merged.id.generation());
                if !pruned {
                    let mut rec = Record::new(merged.id.clone(), true);
                    rec.incarnation = merged.incarnation;
                    self.table.insert(Arc::clone(&name), rec);
                    dirty.push(name);
                }
            } else if let Some(rec) = self.table.get_mut(&name)
                && rec.id == merged.id
            {
                rec.incarnation = merged.incarnation;
            }
        }
        // foca stops at the first update it refuses; the next exchange repairs the rest.
        if let Err(e) = self
            .foca
            .apply_many(updates.into_iter(), broadcast, &mut self.rt)
        {
            tracing::debug!(error = %e, "applying push/pull state");
        }
        // Events: the clock always, the events themselves unless this was our join.
        let mut delivered = Vec::new();
        {
            let mut book = self.book.lock();
            // `witness(t)` moves the clock past `t`: ours becomes at least the remote's, so our
            // next event orders after every event the remote has seen.
            book.witness(remote.event_clock.saturating_sub(1));
            for ev in remote.events {
                if book.observe_event(&ev) && !we_joined {
                    delivered.push(ev);
                }
            }
        }
        for ev in delivered {
            self.deliver_event(ev);
        }
        // Last, once foca, the book and the table all hold the merged state.
        for name in dirty {
            self.reconcile(&name);
        }
        self.after_input();
    }

    /// Starts a graceful leave: gossips a leave intent, then after
    /// [`Timings::leave_propagate_delay`] declares itself down and emits
    /// [`Output::LeaveDone`].
    ///
    /// The intent names our generation; receivers that hold it when our `Down` arrives
    /// report us *left* rather than *failed*.
    pub fn leave(&mut self) -> Result<(), CoreError> {
        if self.left {
            self.out.push_back(Output::LeaveDone);
            return Ok(());
        }
        if self.leaving {
            return Ok(());
        }
        self.leaving = true;
        let me = self.foca.identity().clone();
        let item = Item::Leave {
            name: Arc::clone(me.name_arc()),
            mark: LeaveMark {
                generation: me.generation(),
                prune: false,
            },
        };
        let r = self.add_broadcast(&item);
        if self.foca.num_members() == 0 {
            // Alone: nothing to wait for.
            self.schedule(Duration::ZERO, TimerKind::FinishLeave);
        } else {
            // Sent at once rather than at the next tick: the intent has to reach the others before
            // the `Down` that follows it.
            let _ = self.foca.broadcast(&mut self.rt);
            self.schedule(self.timings.leave_propagate_delay, TimerKind::FinishLeave);
        }
        self.after_input();
        r
    }

    /// Declares ourselves down: foca gossips it to a few members and goes defunct. `left` is
    /// set whatever foca answered, so that [`Output::LeaveDone`] always follows a leave.
    fn finish_leave(&mut self) -> Result<(), CoreError> {
        if self.left {
            return Ok(());
        }
        let r = self
            .foca
            .leave_cluster(&mut self.rt)
            .map_err(CoreError::from);
        self.left = true;
        let name = Arc::clone(self.foca.identity().name_arc());
        if let Some(rec) = self.table.get_mut(&name) {
            rec.down = true;
        }
        self.reconcile(&name);
        self.out.push_back(Output::LeaveDone);
        r
    }

    /// Forces a failed member out (`consul force-leave`); with `prune` every member forgets
    /// it at once.
    ///
    /// Only a failed member: a live one that hears its own leave intent rejoins under a
    /// new generation (see `on_item`), so forcing it out would only churn it. The intent
    /// names the failed generation, so a later restart of the member is not affected.
    pub fn force_leave(&mut self, node: &str, prune: bool) -> Result<(), CoreError> {
        // An alive member (this one included) is accepted, as Serf accepts it: the leave
        // intent Serf broadcasts is refuted by the member itself, which is alive, so the
        // outcome is no change. Nothing is broadcast here, since the refutation would win
        // anyway and the intent would only cost a round of gossip.
        if node == self.foca.identity().name() {
            return Ok(());
        }
        let Some(rec) = self.table.get(node) else {
            return Err(CoreError::UnknownMember(node.to_string()));
        };
        if !rec.down {
            return Ok(());
        }
        let item = Item::Leave {
            name: Arc::clone(rec.id.name_arc()),
            mark: LeaveMark {
                generation: rec.id.generation(),
                prune,
            },
        };
        let r = self.add_broadcast(&item);
        let _ = self.foca.broadcast(&mut self.rt);
        self.after_input();
        r
    }

    /// Replaces this member's metadata and gossips it.
    ///
    /// Unchanged metadata is not sent again. A change bumps the version, so the new copy
    /// outranks the old one in every book and in foca's queue, and is broadcast at once.
    pub fn set_meta(&mut self, meta: MemberMeta) -> Result<(), CoreError> {
        meta.validate()?;
        if meta == self.meta {
            return Ok(());
        }
        self.meta = meta;
        self.meta_version += 1;
        let r = self.publish_meta();
        let _ = self.foca.broadcast(&mut self.rt);
        self.after_input();
        r
    }

    /// This member's metadata.
    pub fn meta(&self) -> &MemberMeta {
        &self.meta
    }

    /// Fires a user event: stamps its Lamport time, delivers it locally and gossips it.
    /// Returns the event as sent.
    ///
    /// The Lamport time comes from our clock, which received events and push/pull keep
    /// ahead of everything seen, so the event orders after those.
    pub fn fire_event(&mut self, mut ev: UserEvent) -> Result<UserEvent, CoreError> {
        if self.left {
            return Err(CoreError::Left);
        }
        ev.validate()?;
        ev.ltime = self.book.lock().next_ltime();
        // Delivered locally and pushed to a few members through the inbox (see after_input).
        self.add_broadcast(&Item::Event(ev.clone()))?;
        self.after_input();
        Ok(ev)
    }

    /// The last [`EVENT_RING`] user events received, oldest first.
    pub fn events(&self) -> Vec<UserEvent> {
        self.ring.iter().cloned().collect()
    }

    /// Whether the event with this ID was seen.
    pub fn has_event(&self, id: &uuid::Uuid) -> bool {
        self.ring.iter().any(|e| &e.id == id)
    }

    /// Status of one member, if known.
    pub fn member_status(&self, name: &str) -> Option<MemberStatus> {
        let rec = self.table.get(name)?;
        Some(status_of(&rec.id, rec.down, self.book.lock().leave(name)))
    }

    /// Every known member, this one included, sorted by name.
    ///
    /// The incarnation is foca's live value when foca knows the identity, else the last
    /// one a push/pull carried.
    pub fn members(&self) -> Vec<Member> {
        let incarnations: HashMap<&NodeId, u16> = self
            .foca
            .iter_membership_state()
            .map(|m| (m.id(), m.incarnation()))
            .collect();
        let book = self.book.lock();
        self.table
            .values()
            .map(|rec| {
                let mut m = member_of(rec, &book);
                if let Some(inc) = incarnations.get(&rec.id) {
                    m.incarnation = *inc;
                }
                m
            })
            .collect()
    }

    // ---- internals ----------------------------------------------------------------------

    fn schedule(&mut self, after: Duration, kind: TimerKind) {
        self.out.push_back(Output::Schedule {
            after,
            timer: CoreTimer(kind),
        });
    }

    /// Queues an item in foca. The handler sees it first (without a sender), so what the
    /// core adds is always sent; items are bounded to fit foca's packet budget.
    fn add_broadcast(&mut self, item: &Item) -> Result<(), CoreError> {
        self.foca
            .add_broadcast(&item.encode())
            .map(|_| ())
            .map_err(CoreError::from)
    }

    /// Queues our metadata under `(generation, meta_version)`. Publishing an unchanged copy
    /// again restarts its transmissions (see `BroadcastKey`'s `invalidates`).
    fn publish_meta(&mut self) -> Result<(), CoreError> {
        let me = self.foca.identity().clone();
        let item = Item::Meta {
            name: Arc::clone(me.name_arc()),
            meta: VersionedMeta {
                generation: me.generation(),
                version: self.meta_version,
                protocol: PROTOCOL_VERSION,
                meta: self.meta.clone(),
            },
        };
        self.add_broadcast(&item)
    }

    /// After a renewal: the table follows our new identity, and our metadata is published
    /// again under the new generation, which outranks the copies of the old one.
    fn adopt_own_identity(&mut self, id: NodeId) {
        let name = Arc::clone(id.name_arc());
        let rec = self
            .table
            .entry(Arc::clone(&name))
            .or_insert_with(|| Record::new(id.clone(), false));
        rec.id = id;
        rec.down = false;
        if let Err(e) = self.publish_meta() {
            tracing::warn!(error = %e, "could not publish metadata");
        }
        self.reconcile(&name);
    }

    /// Rearms itself with the period for the current size, then picks a random active member:
    /// over time every member exchanges with every other.
    fn push_pull_tick(&mut self) {
        let n = self.foca.num_members();
        self.schedule(self.timings.push_pull_period(n + 1), TimerKind::PushPull);
        if n == 0 || self.left {
            return;
        }
        let pick = self.rng.random_range(0..n);
        if let Some(m) = self.foca.iter_members().nth(pick) {
            let to = Identity::addr(m.id());
            self.out.push_back(Output::PushPull { to, join: false });
        }
    }

    /// Runs [`Timings::meta_pull_delay`] after a member came up without metadata, and once
    /// more after the pull.
    fn check_meta(&mut self, name: &Arc<str>, generation: u64, attempt: u8) {
        let Some(rec) = self.table.get_mut(name) else {
            return;
        };
        if rec.id.generation() != generation {
            return;
        }
        rec.meta_check_pending = false;
        let addr = Identity::addr(&rec.id);
        let missing = self.book.lock().meta(name).is_none();
        // It arrived meanwhile (and reconciling reported the member), or the member was
        // reported up another way.
        if !missing
            || rec
                .reported
                .is_some_and(|s| matches!(s, MemberStatus::Alive | MemberStatus::Leaving))
        {
            return;
        }
        if attempt == 0 {
            // The broadcast did not arrive in time: pull it from the member itself.
            tracing::debug!(member = %name, "metadata not received yet, pulling it");
            self.out.push_back(Output::PushPull {
                to: addr,
                join: false,
            });
            rec.meta_check_pending = true;
            self.schedule(
                self.timings.meta_pull_delay,
                TimerKind::CheckMeta {
                    name: Arc::clone(name),
                    generation,
                    attempt: 1,
                },
            );
        } else {
            // Report it anyway; its metadata will follow as an update.
            tracing::debug!(member = %name, "reporting member without metadata");
            self.reconcile_with(name, true);
        }
    }

    /// Forgets a member at the end of its reconnect or tombstone timeout, unless it came back
    /// or restarted since. Its metadata and leave intents go too, so a later member with the
    /// name starts clean; foca forgets the identity on its own timer, which is at least as
    /// long.
    fn reap(&mut self, name: &Arc<str>, generation: u64) {
        let Some(rec) = self.table.get(name) else {
            return;
        };
        if rec.id.generation() != generation || !rec.down {
            return;
        }
        let member = member_of(rec, &self.book.lock());
        self.table.remove(name);
        self.book.lock().forget(name);
        self.out
            .push_back(Output::Event(GossipEvent::MemberReaped(member)));
    }

    /// Hands an event to the agent and keeps it in the ring, dropping the oldest.
    fn deliver_event(&mut self, ev: UserEvent) {
        if self.ring.len() >= EVENT_RING {
            self.ring.pop_front();
        }
        self.ring.push_back(ev.clone());
        self.out
            .push_back(Output::Event(GossipEvent::UserEvent(ev)));
    }

    /// Drains foca's runtime and the book's inbox into outputs and table changes.
    fn after_input(&mut self) {
        // Foca's outputs can cause more (e.g. a Rejoin publishes metadata), so loop: sends and
        // timers become outputs as they are, notifications and items may make foca work again
        // (publishing metadata, changing identity), and a pass that produces nothing ends it.
        loop {
            let sends = std::mem::take(&mut self.rt.sends);
            let timers = std::mem::take(&mut self.rt.timers);
            let notes = std::mem::take(&mut self.rt.notes);
            let items = self.book.lock().drain_inbox();
            if sends.is_empty() && timers.is_empty() && notes.is_empty() && items.is_empty() {
                // News worth spreading now rather than at the next gossip tick: a member
                // went down, or a user event arrived. Pushing it at once saves a tick per hop.
                if self.left {
                    self.push_updates = false;
                    self.push_broadcasts = false;
                }
                if std::mem::take(&mut self.push_updates) {
                    let _ = self.foca.gossip(&mut self.rt);
                    continue;
                }
                if std::mem::take(&mut self.push_broadcasts) {
                    let _ = self.foca.broadcast(&mut self.rt);
                    continue;
                }
                break;
            }
            for (to, data) in sends {
                self.out.push_back(Output::Send { to, data });
            }
            for (after, t) in timers {
                self.schedule(after, TimerKind::Foca(t));
            }
            for note in notes {
                self.on_notification(note);
            }
            for item in items {
                self.on_item(item);
            }
        }
        self.resize();
    }

    /// Keeps suspicion timeout and retransmissions in line with the cluster size.
    ///
    /// Called once per input, after membership settled. foca refuses to change the probe
    /// period and timeout at runtime; they do not depend on the size, so the new
    /// configuration is always accepted.
    fn resize(&mut self) {
        let n = self.foca.num_members() + 1;
        if n == self.sized_for {
            return;
        }
        self.sized_for = n;
        let cfg = self.timings.foca_config(n, self.max_packet_size);
        if let Err(e) = self.foca.set_config(cfg) {
            tracing::debug!(error = %e, "resizing foca configuration");
        }
    }

    /// Applies one of foca's notifications to the table.
    fn on_notification(&mut self, note: OwnedNotification<NodeId>) {
        match note {
            OwnedNotification::MemberUp(id) => self.set_liveness(id, false),
            OwnedNotification::MemberDown(id) => {
                self.push_updates = true;
                self.set_liveness(id, true);
            }
            OwnedNotification::Rename(old, new) => {
                // A restart (or renewal) at the same address: the table only moves forward in
                // generations.
                if old.name() == new.name() {
                    let name = Arc::clone(new.name_arc());
                    if let Some(rec) = self.table.get_mut(&name)
                        && rec.id.generation() <= new.generation()
                    {
                        rec.id = new;
                    }
                    self.reconcile(&name);
                } else {
                    // Another node took over this address: the old one is gone.
                    let active = self.foca.iter_members().any(|m| m.id() == &new);
                    self.set_liveness(old, true);
                    self.set_liveness(new, !active);
                }
            }
            OwnedNotification::Active => {
                tracing::debug!("joined the cluster");
                // Refresh our metadata broadcast now that there is someone to tell.
                if let Err(e) = self.publish_meta() {
                    tracing::warn!(error = %e, "could not publish metadata");
                }
            }
            OwnedNotification::Idle => tracing::debug!("no other active member"),
            // Expected after our own leave, when foca goes defunct; otherwise it means `renew`
            // gave up (the generation reached its maximum).
            OwnedNotification::Defunct => {
                if !self.leaving {
                    tracing::warn!(
                        "this member was declared down by the cluster and cannot rejoin"
                    );
                }
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(
                    generation = id.generation(),
                    "declared down by the cluster; rejoined with a new generation"
                );
                self.adopt_own_identity(id);
            }
        }
    }

    /// Records foca's view of an identity's liveness under its name, then reconciles.
    fn set_liveness(&mut self, id: NodeId, down: bool) {
        let name = Arc::clone(id.name_arc());
        match self.table.get_mut(&name) {
            Some(rec) => {
                // News about an older life of the member.
                if id.generation() < rec.id.generation() {
                    return;
                }
                if id.generation() == rec.id.generation() && id != rec.id {
                    // Same generation at another address: only the newest address matters.
                    // The higher one wins, the tie-break of the merge order, so that every
                    // member settles on the same one.
                    if id.addr() < rec.id.addr() {
                        return;
                    }
                }
                rec.id = id;
                rec.down = down;
            }
            None => {
                if down {
                    // Unknown and already down: nothing to report. It is listed quietly as
                    // failed (as `merge_state` does), unless it was pruned.
                    let pruned = self
                        .book
                        .lock()
                        .leave(&name)
                        .is_some_and(|l| l.prune && l.generation == id.generation());
                    if pruned {
                        return;
                    }
                }
                self.table.insert(Arc::clone(&name), Record::new(id, down));
            }
        }
        self.reconcile(&name);
    }

    /// Reacts to a broadcast item that was news.
    fn on_item(&mut self, item: Item) {
        match item {
            Item::Meta { name, .. } => self.reconcile(&name),
            Item::Leave { name, mark } => {
                // Our own generation is said to be leaving while we are not: someone forced us out,
                // or an old intent resurfaced. Staying would mean being listed *left* while alive,
                // so we take a new generation, which the intent does not cover.
                if *name == *self.foca.identity().name()
                    && mark.generation == self.foca.identity().generation()
                    && !self.leaving
                {
                    tracing::warn!(
                        "a leave intent for this member was gossiped while it is alive; rejoining with a new generation"
                    );
                    if let Some(new_id) = self.foca.identity().renew()
                        && self
                            .foca
                            .change_identity(new_id.clone(), &mut self.rt)
                            .is_ok()
                    {
                        self.adopt_own_identity(new_id);
                    }
                    return;
                }
                self.reconcile(&name);
                // A prune forgets the member now instead of at the tombstone timeout (Consul's
                // `force-leave -prune`).
                if mark.prune
                    && let Some(rec) = self.table.get(&name)
                    && rec.down
                    && rec.id.generation() == mark.generation
                {
                    let member = member_of(rec, &self.book.lock());
                    self.table.remove(&name);
                    self.out
                        .push_back(Output::Event(GossipEvent::MemberReaped(member)));
                }
            }
            Item::Event(ev) => {
                self.push_broadcasts = true;
                self.deliver_event(ev);
            }
        }
    }

    /// Reports what changed about `name` since the last report.
    fn reconcile(&mut self, name: &Arc<str>) {
        self.reconcile_with(name, false);
    }

    /// Compares a member's status with what the agent was told and emits the difference.
    ///
    /// At most one event per call. `force_up` is the second metadata check giving up on
    /// the metadata: the member is reported up without it.
    fn reconcile_with(&mut self, name: &Arc<str>, force_up: bool) {
        let is_self = **name == *self.foca.identity().name();
        let Some(rec) = self.table.get_mut(name) else {
            return;
        };
        let (leave, meta_rank) = {
            let book = self.book.lock();
            (book.leave(name), book.meta(name).map(|m| m.rank()))
        };
        let status = status_of(&rec.id, rec.down, leave);
        let live = matches!(status, MemberStatus::Alive | MemberStatus::Leaving);
        let was_live = matches!(
            rec.reported,
            Some(MemberStatus::Alive | MemberStatus::Leaving)
        );
        let mut schedule = None;
        // Coming up: reported only with metadata (the agent needs role, datacenter and ports),
        // except ourselves, whose metadata is local. Otherwise wait for it; `check_meta` pulls
        // it after a delay.
        let event = if live && !was_live {
            if meta_rank.is_some() || is_self || force_up {
                Some(GossipEvent::MemberUp as fn(Member) -> GossipEvent)
            } else {
                if !rec.meta_check_pending {
                    rec.meta_check_pending = true;
                    schedule = Some((
                        self.timings.meta_pull_delay,
                        TimerKind::CheckMeta {
                            name: Arc::clone(name),
                            generation: rec.id.generation(),
                            attempt: 0,
                        },
                    ));
                }
                None
            }
        // Up already: an update for alive <-> leaving, newer metadata or a new generation.
        } else if live {
            let changed = rec.reported != Some(status)
                || rec.reported_meta != meta_rank
                || rec.reported_generation != rec.id.generation();
            changed.then_some(GossipEvent::MemberUpdate as fn(Member) -> GossipEvent)
        // Down, as failed or left: the reap timer takes the matching Consul timeout. We never
        // reap ourselves.
        } else if rec.reported != Some(status) {
            let timeout = if status == MemberStatus::Left {
                self.timings.tombstone_timeout
            } else {
                self.timings.reconnect_timeout
            };
            if !is_self {
                schedule = Some((
                    timeout,
                    TimerKind::Reap {
                        name: Arc::clone(name),
                        generation: rec.id.generation(),
                    },
                ));
            }
            match (rec.reported, status) {
                (None, _) => {
                    // Never reported up: record the status quietly.
                    rec.reported = Some(status);
                    None
                }
                (_, MemberStatus::Left) => {
                    Some(GossipEvent::MemberLeft as fn(Member) -> GossipEvent)
                }
                _ => Some(GossipEvent::MemberFailed as fn(Member) -> GossipEvent),
            }
        } else {
            None
        };
        if let Some(make) = event {
            rec.reported = Some(status);
            rec.reported_meta = meta_rank;
            rec.reported_generation = rec.id.generation();
            let member = member_of(rec, &self.book.lock());
            self.out.push_back(Output::Event(make(member)));
        }
        // Armed last: `schedule` needs `self` once `rec`'s borrow of the table has ended.
        if let Some((after, kind)) = schedule {
            self.schedule(after, kind);
        }
    }
}

/// The agent's view of a record: its status from the table and the book, default
/// metadata until the real one is known.
fn member_of(rec: &Record, book: &crate::broadcast::Book) -> Member {
    let name = rec.id.name();
    let vm = book.meta(name);
    Member {
        name: name.to_string(),
        addr: rec.id.addr().ip(),
        port: rec.id.addr().port(),
        status: status_of(&rec.id, rec.down, book.leave(name)),
        meta: vm.map(|v| v.meta.clone()).unwrap_or_default(),
        incarnation: rec.incarnation,
        generation: rec.id.generation(),
        protocol: vm.map_or(0, |v| v.protocol),
    }
}

impl From<CodecError> for CoreError {
    fn from(e: CodecError) -> Self {
        CoreError::Malformed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::broadcast::{MAX_EVENT_ITEM_LEN, MAX_META_ITEM_LEN};
    use crate::codec::MAX_HEADER_LEN;
    use crate::envelope::{MAX_LABEL_LEN, overhead};
    use crate::frame::FRAME_HEADER_LEN;

    /// The largest broadcast items fit a 1400-byte datagram next to the largest header,
    /// whatever the label.
    ///
    /// The `2 + 2` is foca's two-byte count of member updates and the two-byte length it
    /// puts before each custom broadcast.
    #[test]
    fn limits() {
        let budget = 1400 - overhead(&"l".repeat(MAX_LABEL_LEN)) - FRAME_HEADER_LEN;
        let room = budget - MAX_HEADER_LEN - 2 - 2;
        assert!(MAX_EVENT_ITEM_LEN <= room, "{MAX_EVENT_ITEM_LEN} > {room}");
        assert!(MAX_META_ITEM_LEN <= room, "{MAX_META_ITEM_LEN} > {room}");
    }
}
