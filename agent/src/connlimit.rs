//! Per-client connection accounting for the agent's TCP listeners (HTTP API, DNS over TCP).
//!
//! A listener that only bounds its connections globally lets one client hold every slot and
//! shut everyone else out (a few hundred idle connections from one address were enough to
//! make the API time out for all). Consul counts open connections per client IP and refuses
//! a client's connections beyond `limits.http_max_conns_per_client`; this module is that
//! count. A [`Slot`] is held for as long as the connection is open and gives its place back
//! when dropped, so a connection task that ends in any way (closed, timed out, panicked)
//! releases it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client address, shared by the accept loops of one kind of listener.
#[derive(Debug, Default)]
pub struct PerClient {
    /// A plain mutex: taken once per accept and once per close, never across an await.
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection of a client; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// An empty count.
    pub fn new() -> Arc<PerClient> {
        Arc::new(PerClient::default())
    }

    /// Takes a place for a new connection from `ip`, unless the client already has `limit`
    /// open (`0`: no limit, as Consul's `http_max_conns_per_client = 0`). IPv4 clients reaching
    /// a dual-stack socket (`::ffff:a.b.c.d`) count as their IPv4 address.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<Slot> {
        // Without this, one client could hold twice its share through both address forms.
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        // Refused without taking a place: the client's existing slots still hold its count, and
        // their release frees the entry.
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Arc::clone(self),
            ip,
        })
    }

    /// Connections `ip` has open.
    pub fn open(&self, ip: IpAddr) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            // Forget clients without connections, so the map stays as large as what is open.
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_limit_and_dropping_frees_a_place() {
        let clients = PerClient::new();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut held: Vec<Slot> = (0..3)
            .map(|_| clients.try_acquire(a, 3).expect("under the limit"))
            .collect();
        assert!(clients.try_acquire(a, 3).is_none(), "a is at its limit");
        assert!(clients.try_acquire(b, 3).is_some(), "b is not a");
        drop(held.pop());
        assert_eq!(clients.open(a), 2);
        assert!(clients.try_acquire(a, 3).is_some(), "a place was freed");
    }

    #[test]
    fn zero_means_no_limit_and_mapped_ipv4_is_the_same_client() {
        let clients = PerClient::new();
        let v4: IpAddr = [127, 0, 0, 1].into();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("mapped address");
        let held: Vec<Slot> = (0..1000)
            .map(|_| clients.try_acquire(v4, 0).expect("no limit"))
            .collect();
        assert_eq!(clients.open(mapped), 1000);
        drop(held);
        assert_eq!(clients.open(v4), 0);
        assert!(clients.counts.lock().expect("lock").is_empty());
    }
}
