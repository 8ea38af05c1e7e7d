//! A single-node Raft on the durable store: acknowledged writes survive a restart (log replay
//! and snapshot + log), and damaged files stop start-up instead of serving wrong data. And on
//! the in-memory store (`-dev`): its log stays within its byte budget however large the
//! entries, without losing a write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_catalog::command::{KvOp, KvRequest};
use cairn_catalog::{Command, Store};
use cairn_raft::log_store::LogStore;
use cairn_raft::state_machine::{NoObserver, StateMachine};
use cairn_raft::{Raft, ServerNode, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-raft-dur-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network that has no peers (single node).
struct NoNet;
struct NoConn;

impl RaftNetworkFactory<TypeConfig> for NoNet {
    type Network = NoConn;
    async fn new_client(&mut self, _: u64, _: &ServerNode) -> NoConn {
        NoConn
    }
}

fn unreachable<E: std::error::Error>() -> RPCError<u64, ServerNode, E> {
    RPCError::Unreachable(openraft::error::Unreachable::new(&std::io::Error::other(
        "no peers",
    )))
}

impl RaftNetwork<TypeConfig> for NoConn {
    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, ServerNode, RaftError<u64>>> {
        Err(unreachable())
    }
    async fn install_snapshot(
        &mut self,
        _: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, ServerNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }
    async fn vote(
        &mut self,
        _: VoteRequest<u64>,
        _: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, ServerNode, RaftError<u64>>> {
        Err(unreachable())
    }
}

async fn start(dir: &Path) -> (Raft, Arc<Store>) {
    let store = Arc::new(Store::new());
    let log = LogStore::open(&dir.join("raft.db")).expect("open log");
    let sm = StateMachine::open(
        Arc::clone(&store),
        Some(dir.join("snap")),
        Arc::new(NoObserver),
    )
    .expect("open state machine");
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    let raft = Raft::new(
        1,
        Arc::new(config.validate().expect("config")),
        NoNet,
        log,
        sm,
    )
    .await
    .expect("raft");
    (raft, store)
}

async fn wait_leader(raft: &Raft) {
    raft.wait(Some(Duration::from_secs(5)))
        .current_leader(1, "leader")
        .await
        .expect("becomes leader");
}

fn put(key: &str, value: &str) -> Command {
    Command::Kv {
        op: KvOp::Set,
        req: KvRequest {
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
            ..KvRequest::default()
        },
        now_ms: 1,
    }
}

async fn wait_applied(store: &Store, index: u64) {
    for _ in 0..200 {
        if store.read().last_index() >= index {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "state machine stuck at {} waiting for {index}",
        store.read().last_index()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_restart_and_snapshots() {
    let dir = Scratch::new();
    let (raft, _) = start(&dir.0).await;
    let mut members = BTreeMap::new();
    members.insert(
        1u64,
        ServerNode {
            name: "s1".into(),
            addr: "127.0.0.1:1".into(),
            id: "x".into(),
        },
    );
    raft.initialize(members).await.expect("initialize");
    wait_leader(&raft).await;
    // Concurrent writes: they share fsyncs through the writer's group commit.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let r = raft.clone();
        tasks.push(tokio::spawn(async move {
            r.client_write(put(&format!("k/{i}"), "v"))
                .await
                .expect("write")
        }));
    }
    let mut last = 0;
    for t in tasks {
        let resp = t.await.expect("join");
        assert!(resp.data.result.is_ok());
        last = last.max(resp.log_id.index);
    }
    raft.shutdown().await.expect("shutdown");
    drop(raft);

    // Restart: the state comes back from the log alone.
    let (raft, store) = start(&dir.0).await;
    wait_applied(&store, last).await;
    assert_eq!(store.read().kv_list("k/").1.len(), 50);
    wait_leader(&raft).await;
    raft.trigger().snapshot().await.expect("snapshot");
    raft.wait(Some(Duration::from_secs(5)))
        .snapshot(
            openraft::LogId::new(openraft::CommittedLeaderId::new(0, 0), 0),
            "any",
        )
        .await
        .ok();
    for _ in 0..100 {
        if dir.0.join("snap/state.snap").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dir.0.join("snap/state.snap").exists(), "snapshot written");
    let resp = raft
        .client_write(put("after", "snap"))
        .await
        .expect("write");
    raft.shutdown().await.expect("shutdown");
    drop(raft);

    // Restart: snapshot plus the entries after it.
    let (_raft, store) = start(&dir.0).await;
    wait_applied(&store, resp.log_id.index).await;
    let st = store.read();
    assert_eq!(st.kv_list("k/").1.len(), 50);
    assert!(st.kv_get("after").1.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_stop_start_up() {
    let dir = Scratch::new();
    {
        let (raft, _) = start(&dir.0).await;
        let mut members = BTreeMap::new();
        members.insert(1u64, ServerNode::default());
        raft.initialize(members).await.expect("initialize");
        wait_leader(&raft).await;
        raft.client_write(put("a", "b")).await.expect("write");
        raft.trigger().snapshot().await.expect("snapshot");
        for _ in 0..100 {
            if dir.0.join("snap/state.snap").exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        raft.shutdown().await.expect("shutdown");
    }
    // A flipped byte in the snapshot is caught by its checksum.
    let snap = dir.0.join("snap/state.snap");
    let mut bytes = std::fs::read(&snap).expect("snapshot exists");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&snap, &bytes).expect("write");
    let err = StateMachine::open(
        Arc::new(Store::new()),
        Some(dir.0.join("snap")),
        Arc::new(NoObserver),
    )
    .err()
    .expect("corrupt snapshot refused");
    assert!(err.to_string().contains("checksum"), "{err}");

    // An entry in an unknown format stops the log from opening, naming the entry.
    {
        let db = redb::Database::create(dir.0.join("raft.db")).expect("db");
        let w = db.begin_write().expect("txn");
        {
            let mut t = w
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("raft_log"))
                .expect("table");
            let last = redb::ReadableTable::last(&t)
                .expect("read")
                .map(|(k, _)| k.value())
                .expect("entries");
            t.insert(last, &[9u8, 1, 2, 3][..]).expect("insert");
        }
        w.commit().expect("commit");
    }
    let err = LogStore::open(&dir.0.join("raft.db"))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("unknown format version 9"),
        "{err}"
    );
}

fn entry(index: u64, cmd: Command) -> cairn_raft::Entry {
    openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(cmd),
    }
}

/// openraft builds a snapshot in a task of its own while later entries are applied: the
/// snapshot must hold the state as of its own last log id, never a later one (which would make
/// the file unreadable at the next start and on followers that install it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_the_state_of_its_own_log_id() {
    use openraft::storage::RaftStateMachine;
    use openraft::{RaftLogId, RaftSnapshotBuilder};
    let dir = Scratch::new();
    let store = Arc::new(Store::new());
    let mut sm = StateMachine::open(
        Arc::clone(&store),
        Some(dir.0.join("snap")),
        Arc::new(NoObserver),
    )
    .expect("open state machine");
    sm.apply(vec![entry(1, put("a", "1")), entry(2, put("b", "2"))])
        .await
        .expect("apply");
    let mut builder = sm.get_snapshot_builder().await;
    sm.apply(vec![entry(3, put("c", "3"))])
        .await
        .expect("apply");
    let snap = builder.build_snapshot().await.expect("build");
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
    let bytes = snap.snapshot.into_inner();
    let (meta, state) = cairn_raft::state_machine::decode_snapshot(&bytes).expect("decodes");
    assert_eq!(state.last_index(), 2);
    assert!(state.kv_get("b").1.is_some());
    assert!(state.kv_get("c").1.is_none(), "a later entry leaked in");
    assert_eq!(
        meta.last_log_id.map(|l| *l.get_log_id()),
        snap.meta.last_log_id
    );
    // And the file on disk opens at the next start.
    let reopened = StateMachine::open(
        Arc::new(Store::new()),
        Some(dir.0.join("snap")),
        Arc::new(NoObserver),
    );
    assert!(reopened.is_ok(), "snapshot file unreadable at start");
}

/// A flipped byte in an acknowledged entry of the log file (disk damage, not a torn write) is
/// caught by redb's page checksums at open: start-up stops with an error naming the file, and
/// the damaged value is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_file_stops_start_up() {
    let dir = Scratch::new();
    let marker = "cairn-marker-value-0123456789";
    {
        let (raft, _) = start(&dir.0).await;
        let mut members = BTreeMap::new();
        members.insert(1u64, ServerNode::default());
        raft.initialize(members).await.expect("initialize");
        wait_leader(&raft).await;
        raft.client_write(put("a", marker)).await.expect("write");
        raft.shutdown().await.expect("shutdown");
    }
    let path = dir.0.join("raft.db");
    let mut bytes = std::fs::read(&path).expect("log file");
    // The entry is stored as JSON with the value in base64: damage every copy of it.
    let needle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, marker);
    let needle = &needle.as_bytes()[..16];
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + 4] ^= 0x01;
            hits += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    assert!(hits > 0, "the entry was not found in the log file");
    std::fs::write(&path, &bytes).expect("write");
    match LogStore::open(&path) {
        Err(e) => assert!(e.to_string().contains("raft.db"), "{e}"),
        Ok(_) => panic!("a damaged log file was opened"),
    }
}

/// `-dev`'s in-memory log is compacted by bytes: overwriting one key with 512 KiB values (each
/// far from openraft's entry-count thresholds) keeps the log near its budget instead of
/// holding every value written, and the latest value is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_log_stays_within_its_budget() {
    let store = Arc::new(Store::new());
    let log = LogStore::in_memory();
    let sm =
        StateMachine::open(Arc::clone(&store), None, Arc::new(NoObserver)).expect("state machine");
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        // `-dev`'s (Consul's) defaults: they count entries, never reached here.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(16_384),
        max_in_snapshot_log_to_keep: 10_240,
        ..Default::default()
    };
    let raft = Raft::new(
        1,
        Arc::new(config.validate().expect("config")),
        NoNet,
        log.clone(),
        sm,
    )
    .await
    .expect("raft");
    let mut members = BTreeMap::new();
    members.insert(
        1u64,
        ServerNode {
            name: "s1".into(),
            addr: "127.0.0.1:1".into(),
            id: "x".into(),
        },
    );
    raft.initialize(members).await.expect("initialize");
    wait_leader(&raft).await;
    let budget = 4 << 20;
    let compactor = tokio::spawn(cairn_raft::log_store::bound_in_memory(
        raft.clone(),
        log.clone(),
        budget,
    ));
    let value = "v".repeat(512 * 1024);
    let mut last = 0;
    for _ in 0..100 {
        let resp = raft.client_write(put("big", &value)).await.expect("write");
        last = resp.log_id.index;
    }
    // 100 entries of 512 KiB: 50 MiB without compaction. The compactor brings it back under
    // the budget (a few entries may have come in since its last pass).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.memory_bytes() > budget {
        assert!(
            std::time::Instant::now() < deadline,
            "the in-memory log still holds {} bytes",
            log.memory_bytes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_applied(&store, last).await;
    let (_, entries) = store.read().kv_list("big");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value.as_ref().map(Vec::len), Some(512 * 1024));
    raft.shutdown().await.expect("shutdown");
    tokio::time::timeout(Duration::from_secs(5), compactor)
        .await
        .expect("the compactor ends with the node")
        .expect("join");
}
