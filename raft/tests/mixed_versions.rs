//! Servers of different versions sharing one log: a log written by version 1 still opens, and
//! entries of a newer version's command types are kept whole in the log (and on the wire) and
//! then skipped or refused by the state machine, as their writer said.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_catalog::command::{KvOp, KvRequest, KvVerb, TxnOp};
use cairn_catalog::{Changes, Command, Store};
use cairn_raft::log_store::LogStore;
use cairn_raft::state_machine::{ApplyObserver, StateMachine};
use cairn_raft::{Entry, TypeConfig};
use openraft::storage::{RaftLogReader, RaftStateMachine};
use openraft::{EntryPayload, RaftLogId};

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-raft-mixed-{}-{}",
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

/// A log entry as version 1 wrote it (captured from that build): a transaction, one of whose
/// operations has a verb that does not exist (version 1 checked verbs only when applying).
const V1_TXN: &str = r#"{"log_id":{"leader_id":{"term":3,"node_id":7},"index":1},"payload":{"Normal":{"Txn":{"ops":[{"KV":{"Verb":"set","Key":"t/a","Value":"MQ==","Flags":7,"Index":0,"Session":""}},{"KV":{"Verb":"bogus","Key":"x","Value":null,"Flags":0,"Index":0,"Session":""}}],"now_ms":5}}}}"#;
const V1_BLANK: &str =
    r#"{"log_id":{"leader_id":{"term":3,"node_id":7},"index":2},"payload":"Blank"}"#;

/// An entry a newer version writes: a command type this version does not know, with or
/// without the flag that lets older servers skip it.
fn newer(index: u64, flagged: bool) -> String {
    let flag = if flagged {
        r#","ignore_unknown":true"#
    } else {
        ""
    };
    format!(
        r#"{{"log_id":{{"leader_id":{{"term":3,"node_id":7}},"index":{index}}},"payload":{{"Normal":{{"PeeringWrite":{{"Peer":"dc2","Weight":3}}{flag}}}}}}}"#
    )
}

/// Writes a log file in the on-disk layout (format marker, then version byte 1 and the JSON
/// of each entry), as an older or newer server would have left it.
fn write_log(path: &std::path::Path, entries: &[(u64, String)]) {
    const LOGS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("raft_meta");
    let db = redb::Database::create(path).expect("create");
    let w = db.begin_write().expect("begin");
    {
        let mut meta = w.open_table(META).expect("meta");
        meta.insert("format", b"cairn-raft-log-v1".as_slice())
            .expect("format");
        let mut logs = w.open_table(LOGS).expect("logs");
        for (index, json) in entries {
            let mut bytes = vec![1u8];
            bytes.extend_from_slice(json.as_bytes());
            logs.insert(*index, bytes.as_slice()).expect("entry");
        }
    }
    w.commit().expect("commit");
}

#[tokio::test]
async fn a_version_1_log_and_a_newer_ones_entries_open_and_read_back_whole() {
    let dir = Scratch::new();
    let path = dir.0.join("raft.db");
    write_log(
        &path,
        &[
            (1, V1_TXN.to_string()),
            (2, V1_BLANK.to_string()),
            (3, newer(3, true)),
            (4, newer(4, false)),
        ],
    );
    let mut log = LogStore::open(&path).expect("opens");
    let entries = log.try_get_log_entries(1..=4).await.expect("reads");
    assert_eq!(entries.len(), 4);
    let EntryPayload::Normal(Command::Txn { ops, .. }) = &entries[0].payload else {
        panic!("{:?}", entries[0].payload)
    };
    assert!(matches!(&ops[0], TxnOp::Kv(o) if o.verb == KvVerb::Set));
    assert!(matches!(&ops[1], TxnOp::Unrecognized(_)));
    assert!(matches!(entries[1].payload, EntryPayload::Blank));
    for (e, flagged) in [(&entries[2], true), (&entries[3], false)] {
        let EntryPayload::Normal(Command::Unknown(u)) = &e.payload else {
            panic!("{:?}", e.payload)
        };
        assert_eq!(
            (u.tag.as_str(), u.ignore_unknown),
            ("PeeringWrite", flagged)
        );
    }
    // Written back (to this log, to a follower) as they were written.
    let texts = [
        V1_TXN.to_string(),
        V1_BLANK.to_string(),
        newer(3, true),
        newer(4, false),
    ];
    for (e, text) in entries.iter().zip(texts) {
        let again: serde_json::Value = serde_json::to_value(e).expect("encodes");
        let first: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(again, first, "entry {}", e.get_log_id().index);
    }
}

/// openraft's append request, as the server port carries it between servers, passes entries of
/// unknown types through unchanged.
#[test]
fn append_requests_carry_unknown_entries_unchanged() {
    let entries: Vec<Entry> = [newer(5, true), newer(6, false)]
        .iter()
        .map(|t| serde_json::from_str(t).expect("entry"))
        .collect();
    let req = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: openraft::Vote::new_committed(3, 7),
        prev_log_id: None,
        entries,
        leader_commit: None,
    };
    let wire = serde_json::to_vec(&req).expect("encodes");
    let back: openraft::raft::AppendEntriesRequest<TypeConfig> =
        serde_json::from_slice(&wire).expect("decodes");
    assert_eq!(back.entries, req.entries);
    assert!(back.entries.iter().all(|e| matches!(
        &e.payload,
        EntryPayload::Normal(Command::Unknown(u)) if u.tag == "PeeringWrite"
    )));
}

#[derive(Default)]
struct Counting {
    skipped: Mutex<Vec<(u64, String)>>,
}

impl ApplyObserver for Counting {
    fn applied(&self, _: &Changes) {}
    fn reset(&self) {}
    fn skipped_unknown(&self, index: u64, tag: &str) {
        if let Ok(mut s) = self.skipped.lock() {
            s.push((index, tag.to_string()));
        }
    }
}

fn put(index: u64, key: &str) -> Entry {
    openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 7), index),
        payload: EntryPayload::Normal(Command::Kv {
            op: KvOp::Set,
            req: KvRequest {
                key: key.into(),
                value: Some(b"v".to_vec()),
                ..KvRequest::default()
            },
            now_ms: 1,
        }),
    }
}

/// The "older" state machine meets the "newer" writer's entries: the skippable one applies as
/// a no-op and is counted; the other stops the state machine with an error naming its type and
/// index, before anything of it (or after it) is applied.
#[tokio::test]
async fn the_state_machine_skips_or_stops_as_the_entry_says() {
    let store = Arc::new(Store::new());
    let observer = Arc::new(Counting::default());
    let mut sm = StateMachine::open(Arc::clone(&store), None, observer.clone()).expect("open");
    let skip: Entry = serde_json::from_str(&newer(2, true)).expect("entry");
    let results = sm.apply(vec![put(1, "a"), skip]).await.expect("applies");
    assert_eq!(results.len(), 2);
    assert_eq!(results[1].result, Ok(cairn_catalog::Response::Done));
    assert_eq!(store.read().last_index(), 2);
    assert_eq!(
        observer
            .skipped
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default(),
        vec![(2, "PeeringWrite".to_string())]
    );

    let stop: Entry = serde_json::from_str(&newer(3, false)).expect("entry");
    let err = sm
        .apply(vec![stop, put(4, "b")])
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("PeeringWrite") && text.contains("log entry 3"),
        "{text}"
    );
    assert_eq!(store.read().last_index(), 2, "stopped before entry 3");
    assert!(store.read().kv_get("b").1.is_none());
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied.map(|l| l.index), Some(2));
}
