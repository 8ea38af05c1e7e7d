//! Whole clusters in one process over the in-memory networks, in virtual time: three servers
//! and a client agent, the leader cut off and healed, writes preserved, and the same seed
//! giving the same run (leaders, terms and indexes).

mod common;

use std::time::Duration;

use common::inproc::InProc;

/// What a run did, for comparing two runs of one seed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// (leader name, its term) in the order they led.
    leaders: Vec<(String, u64)>,
    /// The index each acknowledged write was read back at.
    indexes: Vec<u64>,
}

/// A current-thread runtime in virtual time (`INPROC_LOG=cairn=debug` shows the agents' logs).
fn runtime() -> tokio::runtime::Runtime {
    if let Ok(filter) = std::env::var("INPROC_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Writes through the client agent, cuts the leader off (both networks, both ways), checks a
/// new leader takes over with the write preserved, writes again, heals, and checks the old
/// leader follows and has everything. Twice over.
async fn partition_the_leader_twice(seed: u64) -> Outcome {
    let c = InProc::start(seed, 3, 1).await;
    let servers = c.servers();
    let client = 3;
    let mut outcome = Outcome {
        leaders: Vec::new(),
        indexes: Vec::new(),
    };
    for round in 0..2 {
        let leader = c.wait_leader(&servers, Duration::from_secs(30)).await;
        outcome
            .leaders
            .push((c.members[leader].name.clone(), c.term(leader)));
        let key = format!("/v1/kv/round{round}");
        let w = c.put(client, &key, "before").await;
        assert_eq!(
            (w.status, w.text.trim()),
            (200, "true"),
            "seed {seed}: {w:?}"
        );
        let r = c.get(client, &format!("{key}?consistent")).await;
        assert_eq!(r.status, 200, "seed {seed}: {r:?}");
        outcome.indexes.push(r.index.unwrap_or(0));

        let others: Vec<usize> = (0..c.members.len()).filter(|i| *i != leader).collect();
        c.partition(&[leader], &others);
        let majority: Vec<usize> = servers.iter().copied().filter(|i| *i != leader).collect();
        let next = c.wait_leader(&majority, Duration::from_secs(30)).await;
        assert_ne!(next, leader, "seed {seed}");
        outcome
            .leaders
            .push((c.members[next].name.clone(), c.term(next)));
        // The acknowledged write survived; the client keeps writing through the majority.
        let r = c.get(client, &format!("{key}?consistent&raw")).await;
        assert_eq!((r.status, r.text.as_str()), (200, "before"), "seed {seed}");
        let w = c.put(client, &key, "after").await;
        assert_eq!(
            (w.status, w.text.trim()),
            (200, "true"),
            "seed {seed}: {w:?}"
        );
        let r = c.get(client, &format!("{key}?consistent")).await;
        outcome.indexes.push(r.index.unwrap_or(0));
        // The cut-off leader cannot commit anything meanwhile.
        let refused = c.put(leader, "/v1/kv/minority", "x").await;
        assert_eq!(
            refused.status, 500,
            "seed {seed}: the minority took a write"
        );

        c.heal();
        let healed = c.wait_leader(&servers, Duration::from_secs(60)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = c.get(leader, &format!("{key}?stale&raw")).await;
            if r.status == 200 && r.text == "after" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "seed {seed}: the healed server never caught up: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let minority = c.get(healed, "/v1/kv/minority?consistent").await;
        assert_eq!(
            minority.status, 404,
            "seed {seed}: a refused write appeared"
        );
    }
    outcome
}

#[test]
fn a_partitioned_leader_is_replaced_without_losing_writes_and_a_seed_replays_the_run() {
    for seed in [7, 1009] {
        let first = runtime().block_on(partition_the_leader_twice(seed));
        let second = runtime().block_on(partition_the_leader_twice(seed));
        assert_eq!(first, second, "seed {seed} gave two different runs");
        assert_eq!(first.leaders.len(), 4);
        // Terms never go back, and each leader elected behind a cut has a newer one.
        assert!(
            first.leaders.windows(2).all(|w| w[0].1 <= w[1].1)
                && first.leaders.chunks(2).all(|p| p[0].1 < p[1].1),
            "seed {seed}: terms: {:?}",
            first.leaders
        );
        assert!(
            first.indexes.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: indexes went backwards: {:?}",
            first.indexes
        );
    }
}

/// A follower cut off from the other two refuses writes and consistent reads (after holding
/// for `rpc_hold_timeout`), the majority keeps serving, and once healed the cut-off server
/// catches up without the refused write ever appearing.
async fn cut_off_a_follower(seed: u64) {
    let c = InProc::start(seed, 3, 0).await;
    let servers = c.servers();
    let leader = c.wait_leader(&servers, Duration::from_secs(30)).await;
    let cut = (leader + 1) % 3;
    let others: Vec<usize> = servers.iter().copied().filter(|i| *i != cut).collect();
    let w = c.put(leader, "/v1/kv/before", "cut").await;
    assert_eq!((w.status, w.text.trim()), (200, "true"), "seed {seed}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.get(cut, "/v1/kv/before?stale&raw").await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: not replicated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.partition(&[cut], &others);
    // A stale read is the cut-off server's own to answer, from what it has.
    let stale = c.get(cut, "/v1/kv/before?stale&raw").await;
    assert_eq!(
        (stale.status, stale.text.as_str()),
        (200, "cut"),
        "seed {seed}: a stale read went to the unreachable leader"
    );
    let refused = c.put(cut, "/v1/kv/minority", "x").await;
    assert_eq!(
        refused.status, 500,
        "seed {seed}: the minority took a write"
    );
    let read = c.get(cut, "/v1/kv/hello?consistent").await;
    assert_eq!(
        read.status, 500,
        "seed {seed}: the minority served a consistent read"
    );
    let majority = c.wait_leader(&others, Duration::from_secs(30)).await;
    let w = c.put(majority, "/v1/kv/majority", "yes").await;
    assert_eq!((w.status, w.text.trim()), (200, "true"), "seed {seed}");
    c.heal();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.get(cut, "/v1/kv/majority?stale&raw").await;
        if (r.status, r.text.as_str()) == (200, "yes") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: no catch-up: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = c.wait_leader(&servers, Duration::from_secs(30)).await;
    let minority = c.get(leader, "/v1/kv/minority?consistent").await;
    assert_eq!(
        minority.status, 404,
        "seed {seed}: a refused write appeared"
    );
}

#[test]
fn a_minority_cut_off_refuses_writes_while_the_majority_serves() {
    for seed in [3, 17] {
        runtime().block_on(cut_off_a_follower(seed));
    }
}

/// Compare-and-set increments of one counter through the client agent while a share of the
/// server RPC replies is lost on the way back: the forwarders retry (to the same or another
/// server) with the write's identity, so no increment is applied twice. A CAS told `true`
/// took effect once; one told `false` did not take effect; one that failed outright may or may
/// not have. The final value proves it: without exactly-once forwarding a retried CAS that
/// had committed answers `false` and the counter runs ahead of the acknowledged increments.
async fn count_with_lost_replies(seed: u64) -> (u64, u64, u64) {
    let c = InProc::start(seed, 3, 1).await;
    let client = 3;
    assert_eq!(c.put(client, "/v1/kv/counter", "0").await.status, 200);
    // Replies to forwarded writes are lost (Raft's own messages are left alone: they are
    // idempotent, and their retries are what the other tests exercise).
    c.rpc.set_faults(cairn::rpc::transport::Faults {
        lose_reply: 0.25,
        only: Some("/v1/internal/write".into()),
        ..Default::default()
    });
    let (mut acked, mut unknown) = (0u64, 0u64);
    for _ in 0..40 {
        let r = c.get(client, "/v1/kv/counter?consistent").await;
        if r.status != 200 {
            continue;
        }
        let entry = &r.json()[0];
        let index = entry["ModifyIndex"].as_u64().unwrap_or(0);
        let value: u64 = entry["Value"]
            .as_str()
            .map(common::cluster::decode_b64)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let w = c
            .put(
                client,
                &format!("/v1/kv/counter?cas={index}"),
                &(value + 1).to_string(),
            )
            .await;
        match (w.status, w.text.trim()) {
            (200, "true") => acked += 1,
            (200, "false") => {}
            _ => unknown += 1,
        }
    }
    c.rpc.set_faults(cairn::rpc::transport::Faults::default());
    let leader = c.wait_leader(&c.servers(), Duration::from_secs(30)).await;
    let r = c.get(leader, "/v1/kv/counter?consistent&raw").await;
    let final_value: u64 = r.text.parse().unwrap_or(u64::MAX);
    (acked, unknown, final_value)
}

#[test]
fn a_write_retried_after_a_lost_reply_is_applied_once() {
    for seed in [5, 23, 71] {
        let (acked, unknown, value) = runtime().block_on(count_with_lost_replies(seed));
        assert!(acked > 0, "seed {seed}: nothing acknowledged");
        assert!(
            acked <= value && value <= acked + unknown,
            "seed {seed}: {acked} acknowledged, {unknown} unknown, counter at {value}"
        );
    }
}
