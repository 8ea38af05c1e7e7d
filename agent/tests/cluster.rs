//! Multi-server clusters of real agent processes on loopback addresses (127.x.y.2, .3, ...):
//! formation with `-bootstrap-expect`, replication, leader failover under a write load with
//! no acknowledged write lost, whole-cluster restart, a lagging server catching up from a
//! snapshot, and a paused follower that must not depose a healthy leader when it resumes.
//! (Network partitions are tested in process, on the in-memory networks: `inproc_cluster.rs`.)

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_form_replicate_and_survive_leader_kill_under_load() {
    let c = Cluster::start(3, 3, json!({})).await;
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    // A write through a follower is visible everywhere.
    let (status, body) = c.put(follower, "/v1/kv/hello", "world").await.expect("put");
    assert_eq!((status, body.trim()), (200, "true"));
    for i in 0..3 {
        c.wait_value(i, "hello", "world", Duration::from_secs(5))
            .await;
    }
    // Every server is a voter and in the catalog with a passing serfHealth.
    let (_, peers) = c.get(leader, "/v1/status/peers").await.expect("peers");
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = c
            .get(leader, "/v1/health/state/passing")
            .await
            .expect("health");
        let serf: BTreeSet<String> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["CheckID"] == "serfHealth")
            .filter_map(|c| c["Node"].as_str().map(String::from))
            .collect();
        if serf.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serfHealth not passing on all: {serf:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A steady write load through the survivors while the leader is SIGKILLed.
    let c = Arc::new(Mutex::new(c));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let first_after: Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (c, acked, stop, killed_at, first_after, survivors) = (
            Arc::clone(&c),
            Arc::clone(&acked),
            Arc::clone(&stop),
            Arc::clone(&killed_at),
            Arc::clone(&first_after),
            survivors.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("load/w{w}-{n}");
                let target = survivors[n % survivors.len()];
                let url = c.lock().await.url(target, &format!("/v1/kv/{key}"));
                let client = common::client();
                let ok = client
                    .put(url)
                    .body("x")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success());
                if let Some(r) = ok
                    && r.text().await.unwrap_or_default().trim() == "true"
                {
                    acked.lock().expect("acked").push(key);
                    if killed_at.lock().expect("k").is_some() {
                        first_after
                            .lock()
                            .expect("f")
                            .get_or_insert_with(Instant::now);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.lock().await.servers[leader].kill9();
    *killed_at.lock().expect("k") = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let c = c.lock().await;
    let killed = killed_at.lock().expect("k").expect("killed");
    let resumed = first_after
        .lock()
        .expect("f")
        .expect("writes resumed after the leader was killed");
    let failover = resumed.duration_since(killed);
    println!("failover: writes resumed {failover:?} after SIGKILL of the leader");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    let new_leader = c.wait_leader(&survivors, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() > 20,
        "too few writes acknowledged: {}",
        acked.len()
    );
    let present = c.consistent_keys(new_leader, "load/").await;
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The killed server turns critical in the catalog once gossip notices.
    let dead = c.servers[leader].name.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, checks) = c
            .get(new_leader, &format!("/v1/health/node/{dead}"))
            .await
            .expect("node");
        let status = checks
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["CheckID"] == "serfHealth")
            .and_then(|c| c["Status"].as_str().map(String::from));
        if status.as_deref() == Some("critical") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serfHealth of {dead} still {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_every_acknowledged_write() {
    let mut c = Cluster::start(3, 3, json!({})).await;
    for k in 0..60 {
        let (s, b) = c
            .put(k % 3, &format!("/v1/kv/data/{k}"), "v")
            .await
            .expect("put");
        assert_eq!((s, b.trim()), (200, "true"));
    }
    for s in &mut c.servers {
        s.kill9();
    }
    for s in &mut c.servers {
        s.spawn();
    }
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(30)).await;
    let keys = c.consistent_keys(leader, "data/").await;
    assert_eq!(keys.len(), 60, "keys after restart: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_fell_behind_a_snapshot_catches_up() {
    let c = Cluster::start(
        3,
        3,
        json!({"raft_snapshot_threshold": 50, "raft_trailing_logs": 5}),
    )
    .await;
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    let lagger = (leader + 1) % 3;
    c.servers[lagger].signal("-STOP");
    for k in 0..150 {
        let (s, _) = c
            .put(leader, &format!("/v1/kv/snap/{k}"), &k.to_string())
            .await
            .expect("put");
        assert_eq!(s, 200);
    }
    // The leader took a snapshot and dropped the log behind it.
    let snap = c.servers[leader].dir.join("data/raft/snapshots/state.snap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !snap.exists() {
        assert!(
            Instant::now() < deadline,
            "no snapshot taken at {}",
            snap.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.servers[lagger].signal("-CONT");
    c.wait_value(lagger, "snap/149", "149", Duration::from_secs(30))
        .await;
    c.wait_value(lagger, "snap/0", "0", Duration::from_secs(5))
        .await;
    // The state is in place a moment before the line announcing it is written.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.servers[lagger].log().contains("raft snapshot installed") {
        assert!(
            Instant::now() < deadline,
            "the lagging server caught up without a snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_into_a_fresh_cluster() {
    let a = Cluster::start(3, 3, json!({})).await;
    for k in 0..30 {
        let (s, _) = a
            .put(k % 3, &format!("/v1/kv/snap/{k}"), "v")
            .await
            .expect("put");
        assert_eq!(s, 200);
    }
    let client = common::client();
    let follower = (a.wait_leader(&a.indices(), Duration::from_secs(10)).await + 1) % 3;
    let resp = client
        .get(a.url(follower, "/v1/snapshot"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(resp.status().as_u16(), 200);
    let index: u64 = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("X-Consul-Index");
    assert!(index > 30);
    let bytes = resp.bytes().await.expect("body");

    let b = Cluster::start(1, 1, json!({})).await;
    let (s, _) = b.put(0, "/v1/kv/only-in-b", "x").await.expect("put");
    assert_eq!(s, 200);
    // A damaged archive is refused and changes nothing.
    let mut bad = bytes.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let r = client
        .put(b.url(0, "/v1/snapshot"))
        .body(bad)
        .send()
        .await
        .expect("restore");
    assert_eq!(r.status().as_u16(), 400);
    assert!(b.consistent_keys(0, "").await.contains("only-in-b"));
    let r = client
        .put(b.url(0, "/v1/snapshot"))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("restore");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let keys = b.consistent_keys(0, "").await;
    assert_eq!(keys.iter().filter(|k| k.starts_with("snap/")).count(), 30);
    assert!(!keys.contains("only-in-b"), "restore replaces the state");
}

/// A follower owed more data than one replication request can carry in time (openraft drops an
/// append after one heartbeat interval; here ~10 MB of 500 KB values) catches up in several
/// bounded requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_owed_many_large_entries_catches_up() {
    let c = Cluster::start(3, 3, json!({})).await;
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    let lagger = (leader + 1) % 3;
    c.servers[lagger].signal("-STOP");
    let value = "v".repeat(500 * 1024);
    // Generous timeouts, and retries as a client does: on a busy test machine the two live
    // servers may miss heartbeats and change leaders meanwhile.
    let client = common::client();
    for k in 0..20 {
        let mut attempts = 0;
        loop {
            let r = client
                .put(c.url((leader + 2) % 3, &format!("/v1/kv/large/{k}")))
                .body(value.clone())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 200 => break,
                other => {
                    attempts += 1;
                    assert!(attempts < 10, "put {k} keeps failing: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    c.servers[lagger].signal("-CONT");
    c.wait_value(lagger, "large/19", &value, Duration::from_secs(60))
        .await;
}

/// An archive larger than one Raft entry may carry goes in pieces: `cairn snapshot save` from a
/// follower of one cluster, `cairn snapshot restore` through a follower of another; every
/// server of the second ends with the first's data and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_restores_in_pieces_through_a_follower() {
    let a = Cluster::start(3, 3, json!({})).await;
    let big = "x".repeat(400 * 1024);
    for k in 0..16 {
        let (s, _) = a
            .put(k % 3, &format!("/v1/kv/big/{k}"), &big)
            .await
            .expect("put");
        assert_eq!(s, 200);
    }
    let dir = tempdir("large-snapshot");
    let file = dir.join("big.snap");
    let cli = |addr: String, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .arg(format!("-http-addr={addr}"))
            .arg(&file)
            .output()
            .expect("run cairn");
        assert!(
            out.status.success(),
            "cairn {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let leader_a = a.wait_leader(&a.indices(), Duration::from_secs(10)).await;
    let f = (leader_a + 1) % 3;
    let saved = cli(
        format!("{}:{}", a.servers[f].ip, a.http_port),
        &["snapshot", "save"],
    );
    assert!(saved.contains("Saved and verified snapshot"), "{saved}");
    let size = std::fs::metadata(&file).expect("snapshot file").len();
    assert!(
        size > 8 * 1024 * 1024,
        "only {size} bytes: not several pieces"
    );

    let b = Cluster::start(3, 3, json!({})).await;
    let (s, _) = b.put(0, "/v1/kv/only-in-b", "x").await.expect("put");
    assert_eq!(s, 200);
    let leader_b = b.wait_leader(&b.indices(), Duration::from_secs(10)).await;
    let f = (leader_b + 1) % 3;
    let restored = cli(
        format!("{}:{}", b.servers[f].ip, b.http_port),
        &["snapshot", "restore"],
    );
    assert!(restored.contains("Restored snapshot"), "{restored}");
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let keys = match b.get(i, "/v1/kv/?keys&stale").await {
                Some((200, v)) => v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let bigs = keys.iter().filter(|k| k.starts_with("big/")).count();
            if bigs == 16 && !keys.iter().any(|k| k == "only-in-b") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server {i} after the restore: {keys:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, body) = b
        .get(leader_b, "/v1/kv/big/7?consistent")
        .await
        .expect("read");
    assert_eq!(status, 200);
    let value = body[0]["Value"].as_str().unwrap_or_default();
    assert_eq!(common::cluster::decode_b64(value), big);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cairn-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_transfer_and_remove_peers() {
    let mut c = Cluster::start(3, 3, json!({})).await;
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    let addr = |i: usize| format!("{}:{}", c.servers[i].ip, c.http_port);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "operator",
            "raft",
            "list-peers",
            "-http-addr",
            &addr(leader),
        ])
        .output()
        .expect("cairn operator");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(" leader ")).count(),
        1,
        "{text}"
    );

    // Transfer leadership to a chosen follower, asked through another node.
    let (_, cfg) = c
        .get(leader, "/v1/operator/raft/configuration")
        .await
        .expect("config");
    let target = (leader + 1) % 3;
    let target_id = cfg["Servers"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["Address"] == c.rpc_addr(target).as_str())
                .and_then(|s| s["ID"].as_str())
        })
        .expect("target id")
        .to_string();
    let asker = (leader + 2) % 3;
    let r = common::client()
        .post(c.url(
            asker,
            &format!("/v1/operator/raft/transfer-leader?id={target_id}"),
        ))
        .send()
        .await
        .expect("transfer");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    assert_eq!(
        c.wait_leader(&c.indices(), Duration::from_secs(10)).await,
        target
    );

    // A dead server is removed by address; the peers shrink to two.
    let dead = (target + 1) % 3;
    let dead_addr = c.rpc_addr(dead);
    c.servers[dead].kill9();
    let r = common::client()
        .delete(c.url(
            target,
            &format!("/v1/operator/raft/peer?address={dead_addr}"),
        ))
        .send()
        .await
        .expect("remove");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let (_, peers) = c.get(target, "/v1/status/peers").await.expect("peers");
    let peers: Vec<&str> = peers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(!peers.contains(&dead_addr.as_str()));
    let (s, _) = c
        .put(target, "/v1/kv/after-removal", "ok")
        .await
        .expect("put");
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_servers_two_joining_later_are_promoted_and_two_losses_are_tolerated() {
    let mut c = Cluster::start(3, 3, json!({})).await;
    for _ in 0..2 {
        c.add(common::cluster::NodeSpec {
            server: true,
            expect: 3,
            encrypt: None,
            extra: json!({}),
        });
    }
    // Autopilot adds the newcomers as learners, then promotes them once caught up and stable.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = c.wait_leader(&[0, 1, 2], Duration::from_secs(10)).await;
        let (_, cfg) = c
            .get(leader, "/v1/operator/raft/configuration")
            .await
            .expect("configuration");
        let voters = cfg["Servers"]
            .as_array()
            .map_or(0, |s| s.iter().filter(|s| s["Voter"] == true).count());
        if voters == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "voters: {cfg}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    // Two of five servers die: three remain, a quorum, and writes go on.
    let doomed: Vec<usize> = (0..5).filter(|i| *i != leader).take(2).collect();
    for &i in &doomed {
        c.servers[i].kill9();
    }
    let alive: Vec<usize> = (0..5).filter(|i| !doomed.contains(i)).collect();
    let (s, body) = c.put(alive[0], "/v1/kv/five", "ok").await.expect("put");
    assert_eq!((s, body.trim()), (200, "true"));
    for &i in &alive {
        c.wait_value(i, "five", "ok", Duration::from_secs(5)).await;
    }
}

/// A write whose answer was lost in transit (the leader died after committing it, a reply
/// timed out) is retried by its forwarder, possibly through another server: every copy of it
/// carries the same request identity, so it takes effect once and every copy answers as the
/// first did (a CAS that succeeded never reports `false` to its retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_forwarded_write_is_applied_once() {
    let c = Cluster::start(3, 3, json!({})).await;
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    let followers: Vec<usize> = c.indices().into_iter().filter(|i| *i != leader).collect();
    let rpc = cairn::tls::http_client_builder().build().expect("client");
    let cas_create = json!({
        "op": {"KvSet": {"key": "once", "value": "djE=", "flags": 0, "mode": {"Cas": 0}}},
        "dc": null, "token": null,
        "id": {"client": "test-client", "seq": 1, "floor": 1},
    });
    // The first copy through one follower, the retry through the other, then through the
    // leader itself: one ModifyIndex, and `true` each time.
    let mut answers = Vec::new();
    for i in [followers[0], followers[1], leader] {
        let r = rpc
            .post(format!("http://{}/v1/internal/write", c.rpc_addr(i)))
            .header("x-cairn-rpc", "2")
            .json(&cas_create)
            .send()
            .await
            .expect("rpc");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        answers.push(v[1].clone());
    }
    assert!(
        answers.iter().all(|a| *a == json!({"Bool": true})),
        "{answers:?}"
    );
    let (_, entry) = c.get(leader, "/v1/kv/once?consistent").await.expect("get");
    let entry = &entry[0];
    assert_eq!(entry["CreateIndex"], entry["ModifyIndex"], "{entry}");
    // A newer request of the same client that says it is done with the first: a late copy
    // of the first is refused instead of being applied again.
    let next = json!({
        "op": {"KvSet": {"key": "other", "value": "djI=", "flags": 0, "mode": "Set"}},
        "dc": null, "token": null,
        "id": {"client": "test-client", "seq": 2, "floor": 2},
    });
    for body in [&next, &cas_create] {
        rpc.post(format!("http://{}/v1/internal/write", c.rpc_addr(leader)))
            .header("x-cairn-rpc", "2")
            .json(body)
            .send()
            .await
            .expect("rpc");
    }
    let (_, after) = c.get(leader, "/v1/kv/once?consistent").await.expect("get");
    assert_eq!(after[0]["ModifyIndex"], entry["ModifyIndex"], "{after}");
}

/// A server's Raft term and state, from `/v1/agent/self` (`Stats.raft`).
async fn raft_term(c: &Cluster, i: usize) -> Option<(u64, String)> {
    let (status, v) = c.get(i, "/v1/agent/self").await?;
    if status != 200 {
        return None;
    }
    let raft = &v["Stats"]["raft"];
    Some((
        raft["term"].as_str()?.parse().ok()?,
        raft["state"].as_str()?.to_string(),
    ))
}

/// A follower paused (SIGSTOP) for longer than the election timeout does not depose a healthy
/// leader when it resumes (black-box finding: it called an election on SIGCONT, and its higher
/// term cost the cluster about a second of "No cluster leader"). Throughout and after the
/// pause the leader and its term stay the same, and the resumed follower rejoins that term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_follower_does_not_depose_a_healthy_leader() {
    let c = Cluster::start(3, 3, json!({})).await;
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(10)).await;
    let leader_addr = c.rpc_addr(leader);
    let (term, state) = raft_term(&c, leader).await.expect("the leader's term");
    assert_eq!(state, "Leader");
    let follower = (leader + 1) % 3;
    c.servers[follower].signal("-STOP");
    // The pause is the fault itself: well past the election timeout (raft_multiplier 5: a
    // follower's timer runs out 1.8-2.4 s after it last heard from the leader).
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.servers[follower].signal("-CONT");
    // Watch the cluster for a while after the resume: the leader stays, with its term, and
    // the resumed follower follows it in that term.
    let mut rejoined = false;
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        let now = raft_term(&c, leader).await;
        assert_eq!(
            now,
            Some((term, "Leader".to_string())),
            "the leader changed after the follower resumed (was term {term})\n{}",
            common::cluster::tail(&c.servers[leader].log())
        );
        for i in c.indices() {
            if let Some((200, Value::String(l))) = c.get(i, "/v1/status/leader").await {
                assert!(
                    l.is_empty() && i == follower || l == leader_addr,
                    "server {i} sees leader {l:?}, not {leader_addr}"
                );
            }
        }
        if raft_term(&c, follower).await == Some((term, "Follower".to_string())) {
            rejoined = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejoined, "the resumed follower never followed term {term}");
    // And it is a working member again: a write through it is acknowledged.
    let (status, _) = c
        .put(follower, "/v1/kv/after-pause", "ok")
        .await
        .expect("put through the resumed follower");
    assert_eq!(status, 200);
}
