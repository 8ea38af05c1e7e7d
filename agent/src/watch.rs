//! Wake-ups for blocking queries: a change wakes the readers of what changed, not every reader.
//!
//! Readers subscribe to one target (a catalog [`WatchKey`] or a KV prefix) *before* reading
//! the state, so a change that lands between the read and the wait is never missed. Writers
//! report the [`Changes`] of each applied command; the hub wakes the matching subscribers.
//! Subscriptions are reference counted: the hub holds weak references and forgets targets
//! nobody watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use cairn_catalog::{Changes, WatchKey};
use tokio::sync::Notify;

/// What a blocking query waits on.
///
/// Coarse keys keep the registry small (one entry per watched node, service, table or prefix); a
/// reader woken by a change that did not move its answer's index checks and waits again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A catalog watch key.
    Key(WatchKey),
    /// Every KV key starting with this prefix (a single key is its own prefix).
    KvPrefix(String),
}

/// Weak references: a target stays registered only while some reader holds its [`Subscription`],
/// and dead entries are dropped when a notification finds them or a sweep runs.
#[derive(Default)]
struct Maps {
    keys: HashMap<WatchKey, Weak<Notify>>,
    kv: HashMap<String, Weak<Notify>>,
    /// Size at the last sweep of dead entries.
    /// Sweeping again only once the map has doubled keeps the cost amortized: a burst of
    /// short-lived subscriptions cannot make every subscribe walk the whole map.
    swept_at: usize,
}

/// The registry of blocked readers.
#[derive(Default)]
pub struct WatchHub {
    maps: Mutex<Maps>,
}

/// A subscription: holds the target alive; [`Subscription::notified`] resolves on the next
/// change after it was enabled.
pub struct Subscription {
    notify: Arc<Notify>,
}

impl Subscription {
    /// A future that resolves on the next change. Create it and call `enable` on it (pinned)
    /// before reading, then await it after: `notify_waiters` only wakes futures that are
    /// already enabled, so a change between the read and the first poll is otherwise missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl WatchHub {
    /// A new hub.
    pub fn new() -> WatchHub {
        WatchHub::default()
    }

    /// Subscribes to a target.
    pub fn subscribe(&self, target: &Target) -> Subscription {
        let mut m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let notify = match target {
            Target::Key(k) => Self::get_or_insert(&mut m.keys, k.clone()),
            Target::KvPrefix(p) => Self::get_or_insert(&mut m.kv, p.clone()),
        };
        // Small maps are never swept: a few dead entries cost less than walking them.
        let total = m.keys.len() + m.kv.len();
        if total > 1024 && total > 2 * m.swept_at {
            m.keys.retain(|_, w| w.strong_count() > 0);
            m.kv.retain(|_, w| w.strong_count() > 0);
            m.swept_at = m.keys.len() + m.kv.len();
        }
        Subscription { notify }
    }

    /// The live `Notify` of a target, or a new one: all readers of a target share one, so a change
    /// wakes them with one call.
    fn get_or_insert<K: std::hash::Hash + Eq>(
        map: &mut HashMap<K, Weak<Notify>>,
        key: K,
    ) -> Arc<Notify> {
        if let Some(n) = map.get(&key).and_then(Weak::upgrade) {
            return n;
        }
        let n = Arc::new(Notify::new());
        map.insert(key, Arc::downgrade(&n));
        n
    }

    /// Wakes the subscribers of everything in `changes`.
    pub fn notify(&self, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        if changes.all {
            self.notify_all();
            return;
        }
        // Collected under the lock, woken after it: a woken reader that subscribes again must not
        // wait for this writer to finish.
        let mut wake: Vec<Arc<Notify>> = Vec::new();
        {
            let mut m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
            for k in &changes.keys {
                match m.keys.get(k).map(Weak::upgrade) {
                    Some(Some(n)) => wake.push(n),
                    Some(None) => {
                        m.keys.remove(k);
                    }
                    None => {}
                }
            }
            // A KV write wakes readers of the key itself and of every prefix of it.
            if !m.kv.is_empty() {
                for key in &changes.kv_keys {
                    Self::collect_prefixes(&m.kv, key, &mut wake);
                }
            }
        }
        for n in wake {
            n.notify_waiters();
        }
    }

    /// Collects the live subscribers whose prefix is a prefix of `key`, choosing the cheaper
    /// of scanning the subscriptions or probing each prefix of the key.
    fn collect_prefixes(
        map: &HashMap<String, Weak<Notify>>,
        key: &str,
        out: &mut Vec<Arc<Notify>>,
    ) {
        // A key of length n has n+1 prefixes: probing them costs O(n) lookups, scanning costs
        // O(subscriptions); whichever is smaller.
        if map.len() <= key.len() {
            out.extend(
                map.iter()
                    .filter(|(p, _)| key.starts_with(p.as_str()))
                    .filter_map(|(_, w)| w.upgrade()),
            );
        } else {
            let ends = key
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(key.len()));
            for end in ends {
                if let Some(n) = map.get(&key[..end]).and_then(Weak::upgrade) {
                    out.push(n);
                }
            }
        }
    }

    /// Wakes every subscriber (the whole state was replaced).
    pub fn notify_all(&self) {
        let wake: Vec<Arc<Notify>> = {
            let m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
            m.keys
                .values()
                .chain(m.kv.values())
                .filter_map(Weak::upgrade)
                .collect()
        };
        for n in wake {
            n.notify_waiters();
        }
    }

    /// Number of live subscription targets (for metrics).
    pub fn targets(&self) -> usize {
        let m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        m.keys.values().filter(|w| w.strong_count() > 0).count()
            + m.kv.values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn changes(keys: Vec<WatchKey>, kv: Vec<&str>) -> Changes {
        Changes {
            keys,
            kv_keys: kv.into_iter().map(String::from).collect(),
            all: false,
        }
    }

    #[tokio::test]
    async fn wakes_only_matching_subscribers() {
        let hub = WatchHub::new();
        let web = hub.subscribe(&Target::Key(WatchKey::Service("web".into())));
        let db = hub.subscribe(&Target::Key(WatchKey::Service("db".into())));
        let kv = hub.subscribe(&Target::KvPrefix("app/".into()));
        let w = web.notified();
        let d = db.notified();
        let k = kv.notified();
        tokio::pin!(w, d, k);
        w.as_mut().enable();
        d.as_mut().enable();
        k.as_mut().enable();
        hub.notify(&changes(
            vec![WatchKey::Service("web".into())],
            vec!["app/x/y"],
        ));
        tokio::time::timeout(Duration::from_millis(100), w)
            .await
            .expect("web woken");
        tokio::time::timeout(Duration::from_millis(100), k)
            .await
            .expect("prefix woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), d)
                .await
                .is_err(),
            "db must not wake"
        );
    }

    // Enough dead subscriptions to pass the 1024-entry threshold and trigger sweeps; only the
    // one still held must survive.
    #[test]
    fn forgets_dropped_targets() {
        let hub = WatchHub::new();
        for i in 0..3000 {
            drop(hub.subscribe(&Target::KvPrefix(format!("k{i}"))));
        }
        let _keep = hub.subscribe(&Target::KvPrefix("keep".into()));
        assert_eq!(hub.targets(), 1);
        let m = hub.maps.lock().expect("lock");
        assert!(m.kv.len() < 3000, "dead entries swept");
    }
}
