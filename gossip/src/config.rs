//! Protocol timings and their translation into foca's [`foca::Config`].
//!
//! The defaults follow memberlist's LAN profile, which Consul uses for its LAN pool
//! (`gossip_lan` in Consul's configuration): probe every second with a 500 ms timeout and
//! three indirect probes, gossip every 200 ms to three members, a suspicion timeout of
//! `suspicion_mult * log10(N) * probe_interval` and `retransmit_mult * log10(N + 1)`
//! transmissions per update, both recomputed as the cluster grows or shrinks, and a
//! push/pull exchange every 30 s (stretched for clusters over 32 members, as memberlist does).
//!
//! foca is configured once per cluster size: [`Timings::foca_config`] is called again by the
//! core whenever the number of members changes, so everything here that depends on `n` is
//! recomputed, while what foca refuses to change at runtime (the probe period and timeout,
//! turning a periodic task on) depends only on the timings.

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// Gossip protocol timings. All are configurable; tests use [`Timings::local`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// How often a member probes another (memberlist `ProbeInterval`).
    ///
    /// foca probes members round-robin over a shuffled list, so each member is probed about
    /// once every `n` intervals.
    pub probe_interval: Duration,
    /// How long a direct probe waits before indirect probes (`ProbeTimeout`).
    ///
    /// Must be shorter than the interval ([`Timings::validate`]): a probe and its indirect
    /// probes end before the next probe starts. foca calls it `probe_rtt`.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly (`IndirectChecks`).
    ///
    /// Asking others to probe a member that did not answer keeps a lossy link between two
    /// members from getting the target suspected. foca also uses this count as the fan-out
    /// of the gossip and broadcasts the core pushes out of turn (`Foca::gossip`,
    /// `Foca::broadcast`).
    pub indirect_checks: usize,
    /// Suspicion timeout multiplier (`SuspicionMult`).
    ///
    /// A suspected member has this many probe intervals (scaled by `log10(n)`) to refute
    /// before it is declared down; see [`Timings::suspicion_timeout`].
    pub suspicion_mult: u32,
    /// Retransmission multiplier (`RetransmitMult`).
    ///
    /// Scales how many messages each update rides on; see [`Timings::retransmits`].
    pub retransmit_mult: u32,
    /// How often pending updates are gossiped (`GossipInterval`).
    pub gossip_interval: Duration,
    /// Members gossiped to each interval (`GossipNodes`).
    pub gossip_nodes: usize,
    /// Full state exchange period (`PushPullInterval`), before scaling with cluster size.
    pub push_pull_interval: Duration,
    /// How often a member asks a random member for more members (foca's periodic announce).
    ///
    /// Lets a member that only knows part of the pool (joined through one seed, or on one side
    /// of a healed partition) find the rest without waiting for a push/pull.
    pub announce_interval: Duration,
    /// How often members considered down are contacted, to heal partitions.
    ///
    /// foca announces itself to two members it considers down at this period; when a
    /// partition heals, the other side answers and both sides learn each other again.
    pub down_announce_interval: Duration,
    /// Connect, read and write timeout of TCP exchanges (`TCPTimeout`).
    ///
    /// Bounds every stream exchange end to end, so a peer that connects and stalls cannot hold
    /// one of the driver's few connection slots.
    pub tcp_timeout: Duration,
    /// How long a leaving member keeps gossiping its intent before going down.
    ///
    /// The intent must reach the others before the `Down` that follows it, or they report the
    /// member *failed* instead of *left*.
    pub leave_propagate_delay: Duration,
    /// How long to wait for a new member's metadata broadcast before pulling it directly.
    ///
    /// A member is reported up only once its metadata is known (the agent needs its role,
    /// datacenter and ports). When the broadcast is lost the core pulls the metadata from the
    /// member with a push/pull; one more delay later it reports the member without it.
    pub meta_pull_delay: Duration,
    /// How long a failed member is kept before it is reaped (Consul `reconnect_timeout`).
    ///
    /// Consul keeps failed members listed so operators see them and so they can come back;
    /// after this they are reaped.
    pub reconnect_timeout: Duration,
    /// How long a left member is kept before it is reaped (Serf `TombstoneTimeout`).
    ///
    /// Left members stay listed as *left* meanwhile, so every member agrees on why they are
    /// gone.
    pub tombstone_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self::lan()
    }
}

impl Timings {
    /// memberlist's `DefaultLANConfig`, as Consul's LAN pool.
    pub fn lan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(30),
            announce_interval: Duration::from_secs(30),
            down_announce_interval: Duration::from_secs(65),
            tcp_timeout: Duration::from_secs(10),
            leave_propagate_delay: Duration::from_secs(1),
            meta_pull_delay: Duration::from_secs(2),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
        }
    }

    /// memberlist's `DefaultWANConfig`, as Consul's WAN pool.
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            push_pull_interval: Duration::from_secs(60),
            announce_interval: Duration::from_secs(60),
            down_announce_interval: Duration::from_secs(125),
            tcp_timeout: Duration::from_secs(30),
            ..Self::lan()
        }
    }

    /// Fast timings for loopback clusters and tests (like Consul's `-dev` gossip: 100 ms
    /// probes, suspicion multiplier 3).
    pub fn local() -> Self {
        Self {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(50),
            indirect_checks: 3,
            suspicion_mult: 3,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(50),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(5),
            announce_interval: Duration::from_secs(5),
            down_announce_interval: Duration::from_secs(5),
            tcp_timeout: Duration::from_secs(2),
            leave_propagate_delay: Duration::from_millis(300),
            meta_pull_delay: Duration::from_millis(300),
            reconnect_timeout: Duration::from_secs(3600),
            tombstone_timeout: Duration::from_secs(3600),
        }
    }

    /// Checks the timings are usable.
    ///
    /// These are the preconditions of foca's configuration (non-zero periods and counts) and
    /// of the probe cycle (a timeout shorter than the interval). The error is a sentence for
    /// the operator.
    pub fn validate(&self) -> Result<(), String> {
        if self.probe_interval.is_zero() || self.gossip_interval.is_zero() {
            return Err("probe and gossip intervals must be positive".into());
        }
        if self.probe_timeout >= self.probe_interval {
            return Err("probe timeout must be shorter than the probe interval".into());
        }
        if self.indirect_checks == 0 || self.gossip_nodes == 0 {
            return Err("indirect checks and gossip nodes must be at least 1".into());
        }
        if self.suspicion_mult == 0 || self.retransmit_mult == 0 {
            return Err("suspicion and retransmit multipliers must be at least 1".into());
        }
        if self.push_pull_interval.is_zero()
            || self.announce_interval.is_zero()
            || self.down_announce_interval.is_zero()
        {
            return Err("push/pull and announce intervals must be positive".into());
        }
        Ok(())
    }

    /// Suspicion timeout for a cluster of `n` members:
    /// `suspicion_mult * max(1, log10(n)) * probe_interval`.
    ///
    /// The formula of memberlist's `suspicionTimeout`. A refutation spreads in about
    /// `log(n)` gossip rounds, so the wait grows with it; the floor of one keeps small pools
    /// from declaring members down faster than `suspicion_mult` probe intervals.
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * scale)
    }

    /// Transmissions of each update: `retransmit_mult * ceil(log10(n + 1))`, in `1..=255`.
    ///
    /// memberlist's `retransmitLimit`: epidemic dissemination reaches every member with high
    /// probability after `O(log n)` rounds, so each update is piggybacked that many times and
    /// then dropped from the backlog. The bound is foca's `NonZeroU8`.
    pub fn retransmits(&self, n: usize) -> u8 {
        let scale = ((n as f64) + 1.0).log10().ceil().max(1.0);
        let tx = f64::from(self.retransmit_mult) * scale;
        if tx >= 255.0 { 255 } else { (tx as u8).max(1) }
    }

    /// Push/pull period for `n` members: memberlist doubles it, then triples it, ... for
    /// each doubling of the cluster beyond 32 members.
    ///
    /// Every exchange carries the whole member list, so the pool's push/pull traffic grows
    /// with `n²` per period; memberlist's `pushPullScale` stretches the period to keep it in
    /// check.
    pub fn push_pull_period(&self, n: usize) -> Duration {
        if n <= 32 {
            return self.push_pull_interval;
        }
        let mult = ((n as f64).log2() - 32f64.log2()).ceil() + 1.0;
        self.push_pull_interval.mul_f64(mult.max(1.0))
    }

    /// The foca configuration for a cluster of `n` members and a packet budget.
    ///
    /// `max_packet_size` is the budget left for foca inside one datagram; foca neither builds
    /// nor accepts a larger packet.
    pub fn foca_config(&self, n: usize, max_packet_size: usize) -> foca::Config {
        let size =
            NonZeroU32::new(u32::try_from(n.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        // Every field `new_lan` derives from the size is overwritten below; it only supplies the
        // defaults we do not set.
        let mut c = foca::Config::new_lan(size);
        c.probe_period = self.probe_interval;
        c.probe_rtt = self.probe_timeout;
        c.num_indirect_probes =
            NonZeroUsize::new(self.indirect_checks).unwrap_or(NonZeroUsize::MIN);
        c.max_transmissions = NonZeroU8::new(self.retransmits(n)).unwrap_or(NonZeroU8::MIN);
        c.suspect_to_down_after = self.suspicion_timeout(n);
        // foca remembers a down identity (and refuses stale news that it is alive) at least as
        // long as the core lists it as failed or left.
        c.remove_down_after = Some(self.reconnect_timeout.max(self.tombstone_timeout));
        c.max_packet_size = NonZeroUsize::new(max_packet_size).unwrap_or(NonZeroUsize::MIN);
        // A member declared down learns it the next time it talks to someone, and renews its
        // identity (see `crate::identity`) instead of gossiping unheard.
        c.notify_down_members = true;
        // The periodic tasks are always on: `Foca::set_config` refuses to turn one on later, and
        // the core calls it at every change of the cluster size.
        c.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.announce_interval,
            num_members: NonZeroUsize::MIN,
        });
        c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.down_announce_interval,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: NonZeroUsize::new(self.gossip_nodes).unwrap_or(NonZeroUsize::MIN),
        });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures memberlist's formulas give for its LAN profile.
    #[test]
    fn suspicion_and_retransmits_grow_with_log_n() {
        let t = Timings::lan();
        assert_eq!(t.suspicion_timeout(1), Duration::from_secs(4));
        assert_eq!(t.suspicion_timeout(10), Duration::from_secs(4));
        assert_eq!(t.suspicion_timeout(100), Duration::from_secs(8));
        assert_eq!(t.suspicion_timeout(1000), Duration::from_secs(12));
        assert_eq!(t.retransmits(1), 4);
        assert_eq!(t.retransmits(5), 4);
        assert_eq!(t.retransmits(100), 12);
        assert_eq!(t.retransmits(1000), 16);
    }

    /// Twice the period at 64 members, then one more multiple per doubling.
    #[test]
    fn push_pull_stretches_beyond_32_members() {
        let t = Timings::lan();
        assert_eq!(t.push_pull_period(10), Duration::from_secs(30));
        assert_eq!(t.push_pull_period(64), Duration::from_secs(60));
        assert_eq!(t.push_pull_period(1000), Duration::from_secs(180));
    }

    /// Every preset passes validation, and its probe period and packet budget reach foca.
    #[test]
    fn presets_are_valid() {
        for t in [Timings::lan(), Timings::wan(), Timings::local()] {
            assert_eq!(t.validate(), Ok(()));
            let c = t.foca_config(5, 1300);
            assert_eq!(c.probe_period, t.probe_interval);
            assert_eq!(c.max_packet_size.get(), 1300);
        }
        let bad = Timings {
            probe_timeout: Duration::from_secs(2),
            ..Timings::lan()
        };
        assert!(bad.validate().is_err());
    }
}
