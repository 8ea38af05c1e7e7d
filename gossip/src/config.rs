//! Protocol timings and their translation into foca's [`foca::Config`].
//!
//! The defaults follow memberlist's LAN profile, which Consul uses for its LAN pool
//! (`gossip_lan` in Consul's configuration): probe every second with a 500 ms timeout and
//! three indirect probes, gossip every 200 ms to three members, a suspicion timeout of
//! `suspicion_mult * log10(N) * probe_interval` and `retransmit_mult * log10(N + 1)`
//! transmissions per update, both recomputed as the cluster grows or shrinks, and a
//! push/pull exchange every 30 s (stretched for clusters over 32 members, as memberlist does).

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// Gossip protocol timings. All are configurable; tests use [`Timings::local`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// How often a member probes another (memberlist `ProbeInterval`).
    pub probe_interval: Duration,
    /// How long a direct probe waits before indirect probes (`ProbeTimeout`).
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly (`IndirectChecks`).
    pub indirect_checks: usize,
    /// Suspicion timeout multiplier (`SuspicionMult`).
    pub suspicion_mult: u32,
    /// Retransmission multiplier (`RetransmitMult`).
    pub retransmit_mult: u32,
    /// How often pending updates are gossiped (`GossipInterval`).
    pub gossip_interval: Duration,
    /// Members gossiped to each interval (`GossipNodes`).
    pub gossip_nodes: usize,
    /// Full state exchange period (`PushPullInterval`), before scaling with cluster size.
    pub push_pull_interval: Duration,
    /// How often a member asks a random member for more members (foca's periodic announce).
    pub announce_interval: Duration,
    /// How often members considered down are contacted, to heal partitions.
    pub down_announce_interval: Duration,
    /// Connect, read and write timeout of TCP exchanges (`TCPTimeout`).
    pub tcp_timeout: Duration,
    /// How long a leaving member keeps gossiping its intent before going down.
    pub leave_propagate_delay: Duration,
    /// How long to wait for a new member's metadata broadcast before pulling it directly.
    pub meta_pull_delay: Duration,
    /// How long a failed member is kept before it is reaped (Consul `reconnect_timeout`).
    pub reconnect_timeout: Duration,
    /// How long a left member is kept before it is reaped (Serf `TombstoneTimeout`).
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
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * scale)
    }

    /// Transmissions of each update: `retransmit_mult * ceil(log10(n + 1))`, in `1..=255`.
    pub fn retransmits(&self, n: usize) -> u8 {
        let scale = ((n as f64) + 1.0).log10().ceil().max(1.0);
        let tx = f64::from(self.retransmit_mult) * scale;
        if tx >= 255.0 { 255 } else { (tx as u8).max(1) }
    }

    /// Push/pull period for `n` members: memberlist doubles it, then triples it, ... for
    /// each doubling of the cluster beyond 32 members.
    pub fn push_pull_period(&self, n: usize) -> Duration {
        if n <= 32 {
            return self.push_pull_interval;
        }
        let mult = ((n as f64).log2() - 32f64.log2()).ceil() + 1.0;
        self.push_pull_interval.mul_f64(mult.max(1.0))
    }

    /// The foca configuration for a cluster of `n` members and a packet budget.
    pub fn foca_config(&self, n: usize, max_packet_size: usize) -> foca::Config {
        let size =
            NonZeroU32::new(u32::try_from(n.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let mut c = foca::Config::new_lan(size);
        c.probe_period = self.probe_interval;
        c.probe_rtt = self.probe_timeout;
        c.num_indirect_probes =
            NonZeroUsize::new(self.indirect_checks).unwrap_or(NonZeroUsize::MIN);
        c.max_transmissions = NonZeroU8::new(self.retransmits(n)).unwrap_or(NonZeroU8::MIN);
        c.suspect_to_down_after = self.suspicion_timeout(n);
        c.remove_down_after = Some(self.reconnect_timeout.max(self.tombstone_timeout));
        c.max_packet_size = NonZeroUsize::new(max_packet_size).unwrap_or(NonZeroUsize::MIN);
        c.notify_down_members = true;
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

    #[test]
    fn push_pull_stretches_beyond_32_members() {
        let t = Timings::lan();
        assert_eq!(t.push_pull_period(10), Duration::from_secs(30));
        assert_eq!(t.push_pull_period(64), Duration::from_secs(60));
        assert_eq!(t.push_pull_period(1000), Duration::from_secs(180));
    }

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
