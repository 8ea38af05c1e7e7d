//! Answers shared between requests: the latest answer of each cacheable read, with the index it
//! reflects, so every reader woken by one change (and every poller between changes) is served
//! from one evaluation and one JSON encoding.
//!
//! Correct only because each cacheable read's index moves whenever its answer changes (see
//! `Read::cache_index`), and the cache is emptied when the whole state is replaced. Only the latest
//! answer per read is kept: readers ask for the current state, so an older index is never asked for
//! again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::query::Answer;

/// Distinct reads whose answers are kept; the cache is emptied when it fills.
///
/// Emptied rather than evicted one by one: the cache only saves work, so losing it costs one
/// evaluation per read, and a full clear needs no bookkeeping per entry. 4096 distinct reads is far
/// more than the hot set of pollers and watchers it serves.
const CAPACITY: usize = 4096;

/// Latest answers by read (keyed by the read's JSON form).
#[derive(Default)]
pub struct Answers {
    /// A plain mutex: each access is one lookup or insert, and the answer is computed outside the
    /// lock, so readers never wait on one another's evaluation.
    map: Mutex<HashMap<String, (u64, Arc<Answer>)>>,
}

impl Answers {
    fn map(&self) -> MutexGuard<'_, HashMap<String, (u64, Arc<Answer>)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer kept for `read` if it was computed at `index`.
    ///
    /// An answer filed under another index is not returned: the state has moved since.
    pub fn get(&self, read: &str, index: u64) -> Option<Arc<Answer>> {
        match self.map().get(read) {
            Some((i, a)) if *i == index => Some(Arc::clone(a)),
            _ => None,
        }
    }

    /// Keeps an answer computed at `index`.
    ///
    /// Replaces what was kept for the same read: two readers racing at the same index computed
    /// equal answers, so either may win.
    pub fn put(&self, read: String, index: u64, answer: Arc<Answer>) {
        let mut map = self.map();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(read, (index, answer));
    }

    /// Forgets everything (the state was replaced, so indexes no longer identify answers).
    pub fn clear(&self) {
        self.map().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_per_index_and_cleared() {
        let a = Answers::default();
        let ans = Arc::new(Answer::new(crate::api::Reply::KvKeys(vec!["a".into()])));
        a.put("r".into(), 5, Arc::clone(&ans));
        assert!(a.get("r", 5).is_some());
        assert!(a.get("r", 6).is_none(), "another index is another answer");
        assert!(a.get("s", 5).is_none());
        a.clear();
        assert!(a.get("r", 5).is_none());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let a = Answers::default();
        for i in 0..CAPACITY {
            a.put(
                format!("r{i}"),
                1,
                Arc::new(Answer::new(crate::api::Reply::Kv(None))),
            );
        }
        a.put(
            "last".into(),
            1,
            Arc::new(Answer::new(crate::api::Reply::Kv(None))),
        );
        assert!(a.get("r0", 1).is_none());
        assert!(a.get("last", 1).is_some());
    }
}
