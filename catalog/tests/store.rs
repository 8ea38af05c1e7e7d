//! Behaviour of the state store through its public API: registration semantics, per-key
//! indexes, KV CAS and locks, sessions, transactions, and the snapshot round trip.

use cairn_catalog::command::{
    DeregisterRequest, KvOp, KvRequest, KvVerb, RegisterRequest, TxnKvOp, TxnOp,
};
use cairn_catalog::model::{HealthCheck, HealthStatus, Service, Session, SessionBehavior};
use cairn_catalog::{Command, Response, State, WatchKey, snapshot};

fn reg(node: &str, svc: Option<(&str, &str)>, checks: Vec<HealthCheck>) -> Command {
    Command::Register {
        req: RegisterRequest {
            node: node.into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            service: svc.map(|(id, name)| Service {
                id: id.into(),
                service: name.into(),
                port: 80,
                ..Service::default()
            }),
            checks,
            ..RegisterRequest::default()
        },
        now_ms: 1_000,
    }
}

fn check(id: &str, svc: &str, status: HealthStatus) -> HealthCheck {
    HealthCheck {
        check_id: id.into(),
        name: id.into(),
        service_id: svc.into(),
        status,
        ..HealthCheck::default()
    }
}

fn kv(op: KvOp, key: &str, value: &str, index: u64, session: &str, now_ms: u64) -> Command {
    Command::Kv {
        op,
        req: KvRequest {
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
            flags: 0,
            index,
            session: session.into(),
        },
        now_ms,
    }
}

struct Log {
    st: State,
    next: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            st: State::new(),
            next: 1,
        }
    }
    fn apply(&mut self, cmd: Command) -> Result<Response, cairn_catalog::StoreError> {
        let idx = self.next;
        self.next += 1;
        self.st.apply(idx, &cmd).result
    }
}

#[test]
fn registration_is_idempotent_and_keeps_indexes() {
    let mut log = Log::new();
    log.apply(reg("n1", Some(("web1", "web")), vec![]))
        .expect("register");
    let before = log.st.service_index("web");
    let (_, nodes) = log.st.service_nodes("web");
    assert_eq!(nodes[0].service.create_index, 1);
    // Re-registering identical data changes nothing.
    let applied = log.st.apply(2, &reg("n1", Some(("web1", "web")), vec![]));
    assert!(applied.changes.is_empty());
    assert_eq!(log.st.service_index("web"), before);
    assert_eq!(log.st.service_nodes("web").1[0].service.modify_index, 1);
}

#[test]
fn a_change_to_one_service_does_not_move_another() {
    let mut log = Log::new();
    log.apply(reg("n1", Some(("web1", "web")), vec![]))
        .expect("web");
    log.apply(reg("n2", Some(("db1", "db")), vec![]))
        .expect("db");
    let web = log.st.service_index("web");
    log.apply(reg(
        "n2",
        None,
        vec![check("db-alive", "db1", HealthStatus::Passing)],
    ))
    .expect("db check");
    assert_eq!(log.st.service_index("web"), web, "web must not wake");
    assert!(log.st.service_index("db") > web);
    // A node-level check moves every service on that node.
    let db = log.st.service_index("db");
    log.apply(reg(
        "n2",
        None,
        vec![check("serfHealth", "", HealthStatus::Passing)],
    ))
    .expect("node check");
    assert!(log.st.service_index("db") > db);
    assert_eq!(log.st.service_index("web"), web);
}

#[test]
fn check_for_unknown_service_is_refused_without_change() {
    let mut log = Log::new();
    log.apply(reg("n1", None, vec![])).expect("node");
    let idx = log.st.index_of(&WatchKey::Checks);
    let err = log
        .apply(reg(
            "n1",
            None,
            vec![check("c", "nope", HealthStatus::Passing)],
        ))
        .expect_err("unknown service");
    assert!(err.to_string().contains("Unknown service ID"), "{err}");
    assert_eq!(log.st.index_of(&WatchKey::Checks), idx);
    assert!(log.st.node_checks("n1").1.is_empty());
}

#[test]
fn deregistering_a_node_removes_its_services_and_checks() {
    let mut log = Log::new();
    log.apply(reg(
        "n1",
        Some(("web1", "web")),
        vec![check("service:web1", "web1", HealthStatus::Passing)],
    ))
    .expect("register");
    let idx_before = log.st.service_index("web");
    log.apply(Command::Deregister {
        req: DeregisterRequest {
            node: "n1".into(),
            ..DeregisterRequest::default()
        },
        now_ms: 0,
    })
    .expect("deregister");
    assert!(log.st.node("n1").is_none());
    assert!(log.st.service_nodes("web").1.is_empty());
    assert!(log.st.checks_in_state(None).1.is_empty());
    assert!(
        log.st.service_index("web") > idx_before,
        "index never goes back"
    );
}

#[test]
fn kv_cas_semantics() {
    let mut log = Log::new();
    assert_eq!(
        log.apply(kv(KvOp::Cas, "k", "a", 0, "", 0)),
        Ok(Response::Bool(true))
    );
    assert_eq!(
        log.apply(kv(KvOp::Cas, "k", "b", 0, "", 0)),
        Ok(Response::Bool(false))
    );
    let (_, e) = log.st.kv_get("k");
    let m = e.expect("exists").modify_index;
    assert_eq!(
        log.apply(kv(KvOp::Cas, "k", "c", m, "", 0)),
        Ok(Response::Bool(true))
    );
    assert_eq!(
        log.apply(kv(KvOp::Cas, "k", "d", m, "", 0)),
        Ok(Response::Bool(false))
    );
    assert_eq!(
        log.st.kv_get("k").1.expect("k").value.as_deref(),
        Some(&b"c"[..])
    );
    assert_eq!(
        log.apply(kv(KvOp::DeleteCas, "k", "", 0, "", 0)),
        Ok(Response::Bool(false))
    );
    let m = log.st.kv_get("k").1.expect("k").modify_index;
    assert_eq!(
        log.apply(kv(KvOp::DeleteCas, "k", "", m, "", 0)),
        Ok(Response::Bool(true))
    );
    assert!(log.st.kv_get("k").1.is_none());
}

#[test]
fn kv_prefix_index_moves_on_delete() {
    let mut log = Log::new();
    log.apply(kv(KvOp::Set, "a/1", "x", 0, "", 0)).expect("set");
    log.apply(kv(KvOp::Set, "a/2", "x", 0, "", 0)).expect("set");
    log.apply(kv(KvOp::Set, "b/1", "x", 0, "", 0)).expect("set");
    let (idx, entries) = log.st.kv_list("a/");
    assert_eq!((idx, entries.len()), (2, 2));
    log.apply(kv(KvOp::Delete, "a/2", "", 0, "", 0))
        .expect("delete");
    let (idx2, entries) = log.st.kv_list("a/");
    assert_eq!(entries.len(), 1);
    assert_eq!(idx2, 4, "the delete moved the prefix index");
    assert_eq!(log.st.kv_list("b/").0, 3, "other prefixes unaffected");
    let (_, keys) = log.st.kv_keys("", "/");
    assert_eq!(keys, vec!["a/".to_string(), "b/".to_string()]);
}

fn session(id: &str, behavior: SessionBehavior, delay_s: u64) -> Command {
    Command::SessionCreate {
        session: Session {
            id: id.into(),
            node: "n1".into(),
            behavior,
            lock_delay: delay_s * 1_000_000_000,
            node_checks: vec!["serfHealth".into()],
            ..Session::default()
        },
    }
}

#[test]
fn locks_sessions_and_lock_delay() {
    let mut log = Log::new();
    log.apply(reg(
        "n1",
        None,
        vec![check("serfHealth", "", HealthStatus::Passing)],
    ))
    .expect("node");
    log.apply(session("s1", SessionBehavior::Release, 15))
        .expect("s1");
    log.apply(session("s2", SessionBehavior::Release, 0))
        .expect("s2");
    assert_eq!(
        log.apply(kv(KvOp::Lock, "lock", "me", 0, "s1", 1_000)),
        Ok(Response::Bool(true))
    );
    assert_eq!(
        log.apply(kv(KvOp::Lock, "lock", "you", 0, "s2", 1_000)),
        Ok(Response::Bool(false))
    );
    let e = log.st.kv_get("lock").1.expect("lock");
    assert_eq!((e.lock_index, e.session.as_deref()), (1, Some("s1")));
    // The node's serfHealth going critical invalidates s1 and arms the 15 s lock delay.
    log.apply(Command::Register {
        req: RegisterRequest {
            node: "n1".into(),
            skip_node_update: true,
            checks: vec![check("serfHealth", "", HealthStatus::Critical)],
            ..RegisterRequest::default()
        },
        now_ms: 2_000,
    })
    .expect("critical");
    assert!(log.st.session("s1").1.is_none());
    assert!(
        log.st.session("s2").1.is_none(),
        "s2 is bound to serfHealth too"
    );
    let e = log.st.kv_get("lock").1.expect("kept on release");
    assert_eq!(e.session, None);
    log.apply(reg(
        "n1",
        None,
        vec![check("serfHealth", "", HealthStatus::Passing)],
    ))
    .expect("healthy again");
    log.apply(session("s3", SessionBehavior::Delete, 0))
        .expect("s3");
    assert_eq!(
        log.apply(kv(KvOp::Lock, "lock", "x", 0, "s3", 10_000)),
        Ok(Response::Bool(false)),
        "within the lock delay"
    );
    assert_eq!(
        log.apply(kv(KvOp::Lock, "lock", "x", 0, "s3", 17_001)),
        Ok(Response::Bool(true))
    );
    assert_eq!(log.st.kv_get("lock").1.expect("lock").lock_index, 2);
    log.apply(Command::SessionDestroy {
        id: "s3".into(),
        now_ms: 20_000,
    })
    .expect("destroy");
    assert!(
        log.st.kv_get("lock").1.is_none(),
        "behavior delete removes the key"
    );
}

#[test]
fn lock_with_unknown_session_is_an_error() {
    let mut log = Log::new();
    let err = log
        .apply(kv(KvOp::Lock, "k", "v", 0, "nope", 0))
        .expect_err("invalid session");
    assert!(err.to_string().contains("invalid session"));
    assert!(log.st.kv_get("k").1.is_none());
}

#[test]
fn txn_is_all_or_nothing() {
    let mut log = Log::new();
    log.apply(kv(KvOp::Set, "x", "1", 0, "", 0)).expect("x");
    let op = |verb: &str, key: &str, index: u64| {
        TxnOp::Kv(TxnKvOp {
            value: Some(b"v".to_vec()),
            index,
            ..TxnKvOp::new(KvVerb::parse(verb).expect("verb"), key)
        })
    };
    let r = log
        .apply(Command::Txn {
            ops: vec![op("set", "y", 0), op("cas", "x", 99), op("get", "zz", 0)],
            now_ms: 0,
        })
        .expect("txn");
    let Response::Txn { results, errors } = r else {
        panic!("txn response")
    };
    assert!(results.is_empty());
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].op_index, 1);
    assert!(log.st.kv_get("y").1.is_none(), "rolled back");
    let r = log
        .apply(Command::Txn {
            ops: vec![op("set", "y", 0), op("cas", "x", 1), op("get", "x", 0)],
            now_ms: 0,
        })
        .expect("txn");
    let Response::Txn { results, errors } = r else {
        panic!("txn response")
    };
    assert!(errors.is_empty());
    assert_eq!(results.len(), 3);
    assert!(log.st.kv_get("y").1.is_some());
}

#[test]
fn snapshot_rejects_damage() {
    let mut log = Log::new();
    log.apply(kv(KvOp::Set, "k", "v", 0, "", 0)).expect("set");
    let bytes = snapshot::write(&log.st).expect("snapshot");
    let mut bad = bytes.clone();
    let last = bad.len() - 2;
    bad[last] ^= 0x20;
    assert!(matches!(
        snapshot::read(&bad),
        Err(snapshot::SnapshotError::Checksum)
    ));
    assert!(snapshot::read(&bytes[..10]).is_err());
    assert!(snapshot::read(b"hello world, this is not a snapshot at all.....").is_err());
    assert_eq!(snapshot::index_of(&bytes).expect("valid"), 1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arb_command() -> impl Strategy<Value = Command> {
        let node = prop::sample::select(vec!["n1", "n2", "n3"]);
        let svc = prop::sample::select(vec!["web", "db", "cache"]);
        let key = prop::sample::select(vec!["a", "a/b", "a/c", "b", "b/x/y"]);
        let status = prop::sample::select(vec![
            HealthStatus::Passing,
            HealthStatus::Warning,
            HealthStatus::Critical,
        ]);
        prop_oneof![
            (node.clone(), svc.clone(), 0u8..3).prop_map(|(n, s, i)| {
                let id = format!("{s}{i}");
                reg(n, Some((&id, s)), vec![])
            }),
            (node.clone(), svc.clone(), 0u8..3, status.clone()).prop_map(|(n, s, i, st)| {
                let id = format!("{s}{i}");
                reg(n, None, vec![check(&format!("c-{id}"), &id, st)])
            }),
            (node.clone(), status).prop_map(|(n, st)| reg(
                n,
                None,
                vec![check("serfHealth", "", st)]
            )),
            (node.clone(), svc, 0u8..3).prop_map(|(n, s, i)| Command::Deregister {
                req: DeregisterRequest {
                    node: n.into(),
                    service_id: format!("{s}{i}"),
                    ..DeregisterRequest::default()
                },
                now_ms: 5,
            }),
            node.clone().prop_map(|n| Command::Deregister {
                req: DeregisterRequest {
                    node: n.into(),
                    ..DeregisterRequest::default()
                },
                now_ms: 5,
            }),
            (key.clone(), "[a-z]{0,3}").prop_map(|(k, v): (&str, String)| kv(
                KvOp::Set,
                k,
                &v,
                0,
                "",
                0
            )),
            (key.clone(), 0u64..20).prop_map(|(k, i)| kv(KvOp::Cas, k, "c", i, "", 0)),
            key.clone().prop_map(|k| kv(KvOp::Delete, k, "", 0, "", 0)),
            key.clone()
                .prop_map(|k| kv(KvOp::DeleteTree, k, "", 0, "", 0)),
            (key.clone(), 0u8..2, 0u64..50_000).prop_map(|(k, s, t)| kv(
                KvOp::Lock,
                k,
                "l",
                0,
                &format!("s{s}"),
                t
            )),
            (key, 0u8..2).prop_map(|(k, s)| kv(KvOp::Unlock, k, "u", 0, &format!("s{s}"), 0)),
            (node, 0u8..2, prop::bool::ANY).prop_map(|(n, s, del)| Command::SessionCreate {
                session: Session {
                    id: format!("s{s}"),
                    node: n.into(),
                    lock_delay: 1_000_000_000,
                    behavior: if del {
                        SessionBehavior::Delete
                    } else {
                        SessionBehavior::Release
                    },
                    ..Session::default()
                },
            }),
            (0u8..2, 0u64..50_000).prop_map(|(s, t)| Command::SessionDestroy {
                id: format!("s{s}"),
                now_ms: t,
            }),
            (0u64..30).prop_map(|up_to| Command::ReapTombstones { up_to }),
        ]
    }

    /// Everything observable through the read API, for comparing two states.
    fn observe(st: &State) -> String {
        let mut out = String::new();
        let (i, nodes) = st.nodes();
        out += &format!("nodes@{i}:{:?}\n", nodes);
        let (i, names) = st.service_names();
        out += &format!("services@{i}:{:?}\n", names);
        for name in names.keys() {
            let (i, csn) = st.check_service_nodes(name);
            let v: Vec<_> = csn
                .iter()
                .map(|c| (&c.node, &c.service, &c.checks))
                .collect();
            out += &format!("svc {name}@{i}:{v:?}\n");
        }
        for n in ["n1", "n2", "n3"] {
            out += &format!(
                "node {n}: {:?} {:?}\n",
                st.node_services(n),
                st.node_checks(n)
            );
            out += &format!("sessions {n}: {:?}\n", st.node_sessions(n));
        }
        for p in ["", "a", "a/", "b/"] {
            out += &format!("kv {p}: {:?} {:?}\n", st.kv_list(p), st.kv_keys(p, "/"));
        }
        for k in ["a", "a/b", "zz"] {
            out += &format!("get {k}: {:?}\n", st.kv_get(k));
        }
        out += &format!("checks: {:?}\n", st.checks_in_state(None));
        out
    }

    fn watched_indexes(st: &State) -> Vec<u64> {
        let mut v = vec![
            st.index_of(&WatchKey::Nodes),
            st.index_of(&WatchKey::Services),
            st.index_of(&WatchKey::Checks),
            st.index_of(&WatchKey::Sessions),
            st.index_of(&WatchKey::Kv),
        ];
        for s in ["web", "db", "cache"] {
            v.push(st.service_index(s));
        }
        for n in ["n1", "n2", "n3"] {
            v.push(st.node_index(n));
        }
        for p in ["", "a", "b/"] {
            v.push(st.kv_list(p).0);
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn indexes_never_go_back_and_snapshots_are_exact(cmds in prop::collection::vec(arb_command(), 1..60)) {
            let mut st = State::new();
            let mut last = watched_indexes(&st);
            for (i, cmd) in cmds.iter().enumerate() {
                let applied = st.apply(i as u64 + 1, cmd);
                prop_assert_eq!(st.last_index(), i as u64 + 1);
                let now = watched_indexes(&st);
                for (a, b) in last.iter().zip(now.iter()) {
                    // Tombstone reaping may lower a prefix index; nothing else may.
                    if !matches!(cmd, Command::ReapTombstones { .. }) {
                        prop_assert!(b >= a, "index went back after {:?}: {:?} -> {:?}", cmd, last, now);
                    }
                }
                if applied.result.is_err() {
                    prop_assert!(applied.changes.is_empty());
                }
                last = now;
            }
            let bytes = snapshot::write(&st).expect("snapshot");
            let restored = snapshot::read(&bytes).expect("restore");
            prop_assert_eq!(observe(&st), observe(&restored));
            prop_assert_eq!(snapshot::write(&restored).expect("snapshot"), bytes);
        }
    }
}

#[test]
fn a_batch_applies_each_command_on_its_own_at_one_index() {
    let mut log = Log::new();
    let r = log
        .apply(Command::Batch(vec![
            kv(KvOp::Cas, "k", "first", 0, "", 0),
            kv(KvOp::Cas, "k", "second", 0, "", 0),
            kv(KvOp::Lock, "l", "x", 0, "no-such-session", 0),
            kv(KvOp::Set, "other", "y", 0, "", 0),
        ]))
        .expect("batch");
    let Response::Batch(results) = r else {
        panic!("batch response: {r:?}")
    };
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], Ok(Response::Bool(true)));
    assert_eq!(
        results[1],
        Ok(Response::Bool(false)),
        "the second CAS sees the first"
    );
    assert!(
        results[2].is_err(),
        "a failed command does not stop the batch"
    );
    assert_eq!(results[3], Ok(Response::Bool(true)));
    let k = log.st.kv_get("k").1.expect("k");
    let other = log.st.kv_get("other").1.expect("other");
    assert_eq!(k.value.as_deref(), Some(&b"first"[..]));
    assert_eq!(
        (k.modify_index, other.modify_index),
        (1, 1),
        "one entry, one index"
    );
    assert!(log.st.kv_get("l").1.is_none());
    assert_eq!(log.st.last_index(), 1);
}

fn chunk(id: &str, offset: usize, data: &[u8]) -> Command {
    Command::RestoreChunk {
        id: id.into(),
        offset: offset as u64,
        data: data.to_vec(),
    }
}

/// A restore too large for one entry arrives in pieces, in order; a Raft snapshot taken half
/// way carries the pieces (a server that installs it finishes the restore like the others);
/// out-of-order pieces, a wrong length and a superseded restore are refused.
#[test]
fn a_restore_in_pieces_survives_a_snapshot_half_way() {
    let mut src = Log::new();
    for i in 0..50 {
        src.apply(kv(KvOp::Set, &format!("k/{i}"), "value", 0, "", 0))
            .expect("set");
    }
    let archive = snapshot::write(&src.st).expect("snapshot");
    let pieces: Vec<&[u8]> = archive.chunks(archive.len() / 3 + 1).collect();
    assert_eq!(pieces.len(), 3);

    let mut log = Log::new();
    log.apply(kv(KvOp::Set, "old", "x", 0, "", 0)).expect("set");
    log.apply(chunk("r1", 0, pieces[0])).expect("first piece");
    // Out of order: refused, nothing changes.
    assert!(log.apply(chunk("r1", 5, pieces[1])).is_err());
    log.apply(chunk("r1", pieces[0].len(), pieces[1]))
        .expect("second piece");
    // A server that installs a snapshot taken now sees the same pieces.
    let raft_snapshot = snapshot::write(&log.st).expect("snapshot");
    let mut other = Log {
        st: snapshot::read(&raft_snapshot).expect("snapshot with staged pieces"),
        next: log.next,
    };
    // Operators' archives leave the pieces out.
    let archive_now = snapshot::write_archive(&log.st).expect("snapshot");
    assert!(archive_now.len() < raft_snapshot.len());
    assert!(snapshot::read(&archive_now).is_ok());

    for l in [&mut log, &mut other] {
        let offset = pieces[0].len() + pieces[1].len();
        l.apply(chunk("r1", offset, pieces[2])).expect("last piece");
        let wrong = Command::RestoreFinish {
            id: "r1".into(),
            len: archive.len() as u64 + 1,
        };
        assert!(l.apply(wrong).is_err(), "wrong length accepted");
        l.apply(Command::RestoreFinish {
            id: "r1".into(),
            len: archive.len() as u64,
        })
        .expect("finish");
        assert!(l.st.kv_get("old").1.is_none());
        assert_eq!(l.st.kv_list("k/").1.len(), 50);
    }
    // The staging is gone: the same restore cannot finish twice.
    let again = Command::RestoreFinish {
        id: "r1".into(),
        len: archive.len() as u64,
    };
    assert!(log.apply(again).is_err());

    // A second restore replaces a first one half way; an abort drops the pieces.
    log.apply(chunk("a", 0, pieces[0])).expect("a");
    log.apply(chunk("b", 0, pieces[0])).expect("b");
    assert!(log.apply(chunk("a", pieces[0].len(), pieces[1])).is_err());
    log.apply(Command::RestoreAbort { id: "b".into() })
        .expect("abort");
    assert!(log.apply(chunk("b", pieces[0].len(), pieces[1])).is_err());
}

/// Coordinates are kept for catalog nodes only, survive a snapshot and leave with their node.
#[test]
fn coordinates_follow_their_node_and_survive_snapshots() {
    use cairn_catalog::model::{Coordinate, CoordinateEntry};
    let mut log = Log::new();
    log.apply(reg("n1", None, vec![])).expect("register");
    let entry = |node: &str| CoordinateEntry {
        node: node.into(),
        segment: String::new(),
        coord: Coordinate {
            vec: vec![0.5; 8],
            error: 1.5,
            adjustment: 0.0,
            height: 1e-5,
        },
    };
    log.apply(Command::CoordinateUpdate {
        entries: vec![entry("n1"), entry("ghost")],
    })
    .expect("update");
    let (idx, all) = log.st.coordinates(None);
    assert_eq!(all, vec![entry("n1")]);
    assert_eq!(idx, 2);
    let restored = snapshot::read(&snapshot::write(&log.st).expect("snapshot")).expect("snapshot");
    assert_eq!(restored.coordinates(Some("n1")).1, vec![entry("n1")]);
    let mut bad = entry("n1");
    bad.coord.error = f64::NAN;
    assert!(
        log.apply(Command::CoordinateUpdate { entries: vec![bad] })
            .is_err()
    );
    log.apply(Command::Deregister {
        req: DeregisterRequest {
            node: "n1".into(),
            ..DeregisterRequest::default()
        },
        now_ms: 0,
    })
    .expect("deregister");
    assert!(log.st.coordinates(None).1.is_empty());
}

/// Prepared queries: unique IDs and names, updates keep their creation index, snapshots keep
/// them.
#[test]
fn prepared_queries_are_unique_and_survive_snapshots() {
    use cairn_catalog::model::{PreparedQuery, QueryService};
    let q = |id: &str, name: &str| PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: QueryService {
            service: "db".into(),
            ..QueryService::default()
        },
        ..PreparedQuery::default()
    };
    let mut log = Log::new();
    log.apply(Command::QuerySet {
        query: q("a", "first"),
        create: true,
    })
    .expect("create");
    // Same ID again, a taken name, a name equal to another query's ID, an unknown update.
    for (query, create) in [
        (q("a", "other"), true),
        (q("b", "first"), true),
        (q("c", "a"), true),
        (q("zzz", "x"), false),
    ] {
        assert!(log.apply(Command::QuerySet { query, create }).is_err());
    }
    log.apply(Command::QuerySet {
        query: q("a", "renamed"),
        create: false,
    })
    .expect("update");
    let (_, all) = log.st.queries();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "renamed");
    assert_eq!(all[0].create_index, 1);
    assert!(all[0].modify_index > 1);
    let restored = snapshot::read(&snapshot::write(&log.st).expect("snapshot")).expect("snapshot");
    assert_eq!(restored.queries().1, all);
    log.apply(Command::QueryDelete { id: "a".into() })
        .expect("delete");
    assert!(log.st.queries().1.is_empty());
}

/// A check written by a transaction without a CheckID is stored under its name, as a
/// registered one is, and the transaction answers it (it used to roll back, looking the check
/// up under the empty ID it was not stored under).
#[test]
fn a_txn_check_without_an_id_is_stored_under_its_name() {
    use cairn_catalog::command::{CatalogVerb, TxnCheckOp, TxnResult};
    let mut log = Log::new();
    log.apply(reg("n1", None, vec![])).expect("node");
    let r = log
        .apply(Command::Txn {
            ops: vec![TxnOp::Check(TxnCheckOp {
                verb: CatalogVerb::Set,
                check: HealthCheck {
                    node: "n1".into(),
                    name: "disk".into(),
                    ..HealthCheck::default()
                },
            })],
            now_ms: 0,
        })
        .expect("txn");
    let Response::Txn { results, errors } = r else {
        panic!("txn response")
    };
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        matches!(&results[..], [TxnResult::Check(c)] if c.check_id == "disk"),
        "{results:?}"
    );
}
