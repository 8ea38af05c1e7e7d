//! Whole gossip pools on the in-memory network, in virtual time: the real driver and core,
//! Consul's LAN timings, no sockets. Members join, converge, detect crashed and cut-off
//! members and re-converge after the heal; a run is reproducible from its seeds, down to
//! the virtual time of every membership event.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_gossip::transport::memory::{LinkFaults, MemoryNetwork, NetStats};
use cairn_gossip::{
    Gossip, GossipConfig, GossipError, GossipEvent, Keyring, MemberStatus, Timings,
};
use tokio::time::Instant;

/// Membership events of every member: `(virtual time, member, event)`, in arrival order.
type Log = Arc<Mutex<Vec<String>>>;

struct Pool {
    net: MemoryNetwork,
    nodes: Vec<Gossip>,
    addrs: Vec<SocketAddr>,
    log: Log,
}

/// Starts `n` members `m0..` on a fresh network (seeded with `seed`, each member with
/// `seed + i`), joins them all through `m0` and waits until everyone sees everyone alive.
async fn pool(n: usize, seed: u64, faults: LinkFaults) -> Pool {
    pool_with_key(n, seed, faults, None).await
}

/// A member's configuration on `net`: Consul's LAN timings, a fixed generation, a seed.
fn config(net: &MemoryNetwork, name: &str, seed: u64, key: Option<&str>) -> GossipConfig {
    let mut cfg = GossipConfig::new(name, net.next_addr());
    cfg.timings = Timings::lan();
    cfg.generation = Some(1);
    cfg.seed = Some(seed);
    cfg.keyring = key.map(|k| Keyring::from_base64(k, &[]).expect("key"));
    cfg
}

/// [`pool`], every member encrypting with `key` when one is given.
async fn pool_with_key(n: usize, seed: u64, faults: LinkFaults, key: Option<&str>) -> Pool {
    let net = MemoryNetwork::new(seed);
    net.set_faults(faults).expect("valid faults");
    let log: Log = Arc::default();
    let start = Instant::now();
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let name = format!("m{i}");
        let cfg = config(&net, &name, seed + i as u64, key);
        let (g, mut events) = Gossip::start_with(cfg, net.clone())
            .await
            .expect("start on the in-memory network");
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let at = start.elapsed().as_micros();
                let line = format!("{at:>12}us {name} {}", describe(&ev));
                log.lock().expect("log").push(line);
            }
        });
        addrs.push(g.local_addr());
        nodes.push(g);
    }
    let first = addrs[0].to_string();
    for g in nodes.iter().skip(1) {
        assert_eq!(g.join(std::slice::from_ref(&first)).await.expect("join"), 1);
    }
    let p = Pool {
        net,
        nodes,
        addrs,
        log,
    };
    let all: Vec<usize> = (0..n).collect();
    assert!(
        p.eventually(Duration::from_secs(30), || p.sees(
            &all,
            &all,
            MemberStatus::Alive
        ))
        .await,
        "the pool did not converge: {:?}",
        p.nodes[n - 1].members()
    );
    p
}

fn describe(ev: &GossipEvent) -> String {
    let (kind, m) = match ev {
        GossipEvent::MemberUp(m) => ("up", m),
        GossipEvent::MemberUpdate(m) => ("update", m),
        GossipEvent::MemberFailed(m) => ("failed", m),
        GossipEvent::MemberLeft(m) => ("left", m),
        GossipEvent::MemberReaped(m) => ("reaped", m),
        GossipEvent::UserEvent(e) => return format!("user-event {} {}", e.name, e.ltime),
    };
    format!(
        "{kind} {} {}:{} {:?} inc={}",
        m.name, m.addr, m.port, m.status, m.incarnation
    )
}

impl Pool {
    /// Whether every member in `observers` sees every member in `targets` as `status`.
    fn sees(&self, observers: &[usize], targets: &[usize], status: MemberStatus) -> bool {
        observers.iter().all(|&o| {
            let members = self.nodes[o].members();
            targets.iter().all(|&t| {
                let name = format!("m{t}");
                members.iter().any(|m| m.name == name && m.status == status)
            })
        })
    }

    /// Polls `f` every 100 ms of virtual time until it holds or `limit` passes.
    async fn eventually(&self, limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if f() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    async fn shutdown(&self) {
        for g in &self.nodes {
            g.shutdown().await;
        }
    }
}

/// A lossy, jittery network: 5% loss, 1-20 ms one way, 5% held back.
fn lossy() -> LinkFaults {
    LinkFaults {
        loss: 0.05,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
        reorder: 0.05,
    }
}

/// Bounds every scenario in real time too: virtual time must not cost wall-clock time.
async fn within_real_seconds<F: Future>(secs: u64, f: F) -> F::Output {
    let started = std::time::Instant::now();
    let out = f.await;
    assert!(
        started.elapsed() < Duration::from_secs(secs),
        "took {:?} of real time",
        started.elapsed()
    );
    out
}

#[tokio::test(start_paused = true)]
async fn a_pool_detects_an_isolated_member_and_reconverges_after_the_heal() {
    within_real_seconds(60, async {
        let p = pool(5, 11, LinkFaults::default()).await;
        let (rest, four) = ([0, 1, 2, 3], [4]);

        p.net.isolate(p.addrs[4]);
        assert!(
            p.eventually(Duration::from_secs(30), || p.sees(
                &rest,
                &four,
                MemberStatus::Failed
            ))
            .await,
            "m4 not seen failed: {:?}",
            p.nodes[0].members()
        );
        assert!(
            p.eventually(Duration::from_secs(30), || p.sees(
                &four,
                &rest,
                MemberStatus::Failed
            ))
            .await,
            "m4 does not see the others failed: {:?}",
            p.nodes[4].members()
        );
        // The others still see each other.
        assert!(p.sees(&rest, &rest, MemberStatus::Alive));

        p.net.heal();
        let all = [0, 1, 2, 3, 4];
        assert!(
            p.eventually(Duration::from_secs(180), || p.sees(
                &all,
                &all,
                MemberStatus::Alive
            ))
            .await,
            "no re-convergence after the heal: {:?}",
            p.nodes[0].members()
        );
        let log = p.log();
        assert!(log.iter().any(|l| l.contains(" m0 failed m4 ")), "{log:#?}");
        assert!(log.iter().any(|l| l.contains(" m4 failed m0 ")), "{log:#?}");
        assert!(p.net.stats().dropped_cut > 0);
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_split_pool_sees_the_other_side_fail_and_heals() {
    within_real_seconds(60, async {
        let p = pool(5, 23, lossy()).await;
        let (left, right) = ([0, 1], [2, 3, 4]);
        let side = |ix: &[usize]| ix.iter().map(|&i| p.addrs[i]).collect::<Vec<_>>();
        p.net.partition(&side(&left), &side(&right));
        assert!(
            p.eventually(Duration::from_secs(60), || {
                p.sees(&left, &right, MemberStatus::Failed)
                    && p.sees(&right, &left, MemberStatus::Failed)
            })
            .await,
            "the sides do not see each other fail: {:?} / {:?}",
            p.nodes[0].members(),
            p.nodes[4].members()
        );
        assert!(p.sees(&left, &left, MemberStatus::Alive));
        assert!(p.sees(&right, &right, MemberStatus::Alive));

        p.net.heal();
        let all = [0, 1, 2, 3, 4];
        assert!(
            p.eventually(Duration::from_secs(180), || p.sees(
                &all,
                &all,
                MemberStatus::Alive
            ))
            .await,
            "no re-convergence after the heal: {:?}",
            p.nodes[0].members()
        );
        let stats = p.net.stats();
        assert!(stats.dropped_loss > 0 && stats.reordered > 0, "{stats:?}");
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_crashed_member_is_seen_as_failed() {
    within_real_seconds(60, async {
        let p = pool(5, 37, lossy()).await;
        p.nodes[3].shutdown().await;
        assert!(
            p.eventually(Duration::from_secs(30), || p.sees(
                &[0, 1, 2, 4],
                &[3],
                MemberStatus::Failed
            ))
            .await,
            "m3 not seen failed: {:?}",
            p.nodes[0].members()
        );
        assert!(
            !p.net.is_bound(p.addrs[3]),
            "the crashed member's address is released"
        );
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_one_way_cut_is_bridged_by_indirect_probes() {
    within_real_seconds(60, async {
        let p = pool(5, 41, LinkFaults::default()).await;
        // m0 can hear m4 but not reach it: m0's direct probes of m4 go unanswered, its
        // indirect probes through the others succeed, so nobody is declared failed.
        p.net.cut(p.addrs[0], p.addrs[4]);
        let before = p.log().len();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let all = [0, 1, 2, 3, 4];
        assert!(
            p.sees(&all, &all, MemberStatus::Alive),
            "{:?}",
            p.nodes[0].members()
        );
        let log = p.log();
        let failures: Vec<_> = log[before..]
            .iter()
            .filter(|l| l.contains(" failed "))
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(p.net.stats().dropped_cut > 0);
        p.shutdown().await;
    })
    .await;
}

/// One scripted run in its own current-thread runtime with paused time: a lossy pool,
/// an isolation and its heal, then a crash. Returns the event log and the network's
/// counters.
fn scripted_run(seed: u64) -> (Vec<String>, NetStats) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let p = pool(5, seed, lossy()).await;
        p.net.isolate(p.addrs[2]);
        tokio::time::sleep(Duration::from_secs(20)).await;
        p.net.heal();
        tokio::time::sleep(Duration::from_secs(90)).await;
        p.nodes[1].shutdown().await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        p.shutdown().await;
        // Let the recorders drain what the members delivered before they stopped.
        tokio::time::sleep(Duration::from_millis(10)).await;
        (p.log(), p.net.stats())
    })
}

#[test]
fn the_same_seed_gives_the_same_membership_events() {
    let started = std::time::Instant::now();
    let (first, stats) = scripted_run(7);
    let (second, stats_again) = scripted_run(7);
    assert!(
        first.iter().any(|l| l.contains(" failed m2 "))
            && first.iter().any(|l| l.contains(" failed m1 ")),
        "the script should fail m2 and m1: {first:#?}"
    );
    assert_eq!(first.join("\n"), second.join("\n"), "same seed, same run");
    assert_eq!(stats, stats_again);
    let (other, _) = scripted_run(8);
    assert_ne!(first, other, "another seed, another run");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn an_encrypted_pool_converges_and_refuses_another_key() {
    // Fixed keys: the run depends on nothing but its seeds.
    let key = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=";
    let other = "4le4Eu0AsuwyYEoQJqGnWGaPFjrYBUU79v0c8bEhMC8=";
    let p = pool_with_key(5, 53, lossy(), Some(key)).await;
    let stranger_cfg = config(&p.net, "stranger", 99, Some(other));
    let (stranger, _events) = Gossip::start_with(stranger_cfg, p.net.clone())
        .await
        .expect("start");
    let err = stranger
        .join(&[p.addrs[0].to_string()])
        .await
        .expect_err("another key cannot join");
    assert!(
        matches!(&err, GossipError::JoinFailed(e) if e.iter().any(|e| e.contains("keys differ"))),
        "{err}"
    );
    assert!(p.nodes[0].stats().dropped_wrong_key >= 1);
    assert_eq!(stranger.members().len(), 1);
    assert!(p.nodes.iter().all(|g| g.members().len() == 5));
    stranger.shutdown().await;
    p.shutdown().await;
}

/// Dropping the last handle stops the member: its address is released (the driver and its
/// endpoint are gone).
#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_the_member() {
    let net = MemoryNetwork::new(3);
    let cfg = config(&net, "m0", 3, None);
    let addr = cfg.bind;
    let (g, _events) = Gossip::start_with(cfg, net.clone())
        .await
        .expect("start on the in-memory network");
    assert!(net.is_bound(addr));
    drop(g);
    let deadline = Instant::now() + Duration::from_secs(5);
    while net.is_bound(addr) {
        assert!(Instant::now() < deadline, "the member kept running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
