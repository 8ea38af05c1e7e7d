//! Deterministic simulations of many gossip cores over an in-memory network with seeded
//! loss, delay and partitions (no sockets). Each scenario is a script of operations and
//! assertions on simulated time.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use cairn_gossip::core::GossipEvent;
use cairn_gossip::sim::{Sim, SimConfig, sim_name};
use cairn_gossip::{MemberStatus, Timings, UserEvent};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn cluster(n: usize, cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg);
    for _ in 0..n {
        sim.add_node().expect("node");
    }
    sim
}

/// Everyone alive sees everyone else alive.
fn converged(sim: &Sim, n: usize) -> bool {
    (0..n).filter(|i| sim.is_up(*i)).all(|i| {
        let (seeing, total) = sim.count_seeing(&sim_name(i), MemberStatus::Alive);
        seeing == total
    })
}

#[test]
fn nodes_join_through_one_seed_and_converge() {
    let n = 8;
    let mut sim = cluster(n, SimConfig::default());
    for i in 1..n {
        sim.join(i, 0);
    }
    let t = sim.run_until_true(secs(30.0), secs(0.1), |s| converged(s, n));
    assert!(t.is_some(), "not converged after 30 s");
    // every member also learned everyone's metadata
    let core = sim.core(n - 1).expect("core");
    let members = core.members();
    assert_eq!(members.len(), n);
    assert!(members.iter().all(|m| m.meta.datacenter == "dc1"));
}

#[test]
fn a_crashed_member_is_declared_failed_by_all() {
    let n = 20;
    let mut sim = cluster(n, SimConfig::default());
    sim.bootstrap();
    sim.run_until(secs(5.0));
    let failures = Rc::new(RefCell::new(0usize));
    let f = Rc::clone(&failures);
    sim.set_recorder(move |_, _, ev| {
        if matches!(ev, GossipEvent::MemberFailed(m) if m.name == sim_name(3)) {
            *f.borrow_mut() += 1;
        }
    });
    let crash_at = sim.now();
    sim.crash(3);
    let name = sim_name(3);
    let done = sim.run_until_true(secs(60.0), secs(0.1), |s| {
        let (seeing, total) = s.count_seeing(&name, MemberStatus::Failed);
        seeing == total
    });
    let took = done.expect("failure not detected within 55 s") - crash_at;
    // memberlist's envelope: suspicion 4*log10(20) s, probe and dissemination on top
    let envelope = Timings::lan().suspicion_timeout(n) + secs(3.0);
    assert!(
        took <= envelope,
        "detected in {took:?}, envelope {envelope:?}"
    );
    assert_eq!(*failures.borrow(), n - 1);
}

#[test]
fn a_leaving_member_is_seen_as_left_not_failed() {
    let n = 10;
    let mut sim = cluster(n, SimConfig::default());
    sim.bootstrap();
    sim.run_until(secs(3.0));
    let failed = Rc::new(RefCell::new(0usize));
    let f = Rc::clone(&failed);
    sim.set_recorder(move |_, _, ev| {
        if matches!(ev, GossipEvent::MemberFailed(_)) {
            *f.borrow_mut() += 1;
        }
    });
    sim.leave(4).expect("leave");
    let name = sim_name(4);
    let t = sim.run_until_true(secs(20.0), secs(0.1), |s| {
        s.has_left(4) && {
            let (seeing, total) = s.count_seeing(&name, MemberStatus::Left);
            seeing == total
        }
    });
    assert!(t.is_some(), "leave not seen by all");
    assert_eq!(
        *failed.borrow(),
        0,
        "a graceful leave was reported as a failure"
    );
}

#[test]
fn events_reach_everyone_despite_loss() {
    let n = 30;
    let mut sim = cluster(
        n,
        SimConfig {
            loss: 0.10,
            seed: 7,
            ..SimConfig::default()
        },
    );
    sim.bootstrap();
    sim.run_until(secs(2.0));
    let start = sim.now();
    let ev = sim
        .fire_event(5, UserEvent::new("deploy", b"v42".to_vec()))
        .expect("fire");
    let t = sim.run_until_true(secs(20.0), secs(0.05), |s| {
        let (have, total) = s.count_with_event(&ev.id);
        have == total
    });
    let took = t.expect("event did not reach everyone") - start;
    assert!(took < secs(5.0), "event took {took:?}");
    // delivered once per member
    let core = sim.core(9).expect("core");
    assert_eq!(core.events().iter().filter(|e| e.id == ev.id).count(), 1);
}

#[test]
fn no_false_failures_with_loss_and_a_slow_member() {
    let n = 16;
    let mut sim = cluster(
        n,
        SimConfig {
            loss: 0.10,
            seed: 11,
            ..SimConfig::default()
        },
    );
    sim.bootstrap();
    sim.set_slow(2, Duration::from_millis(150));
    let failed = Rc::new(RefCell::new(Vec::new()));
    let f = Rc::clone(&failed);
    sim.set_recorder(move |t, i, ev| {
        if let GossipEvent::MemberFailed(m) = ev {
            f.borrow_mut().push((t, i, m.name.clone()));
        }
    });
    sim.run_until(secs(60.0));
    assert!(
        failed.borrow().is_empty(),
        "false failures: {:?}",
        failed.borrow()
    );
}

#[test]
fn a_partition_heals() {
    let n = 10;
    let mut t = Timings::lan();
    t.down_announce_interval = Duration::from_secs(5);
    let mut sim = cluster(
        n,
        SimConfig {
            timings: t,
            seed: 3,
            ..SimConfig::default()
        },
    );
    sim.bootstrap();
    sim.run_until(secs(2.0));
    for i in 0..n / 2 {
        sim.set_group(i, 1);
    }
    // each side declares the other failed
    let split = sim.run_until_true(secs(40.0), secs(0.2), |s| {
        s.count_seeing(&sim_name(0), MemberStatus::Failed).0 == n / 2
            && s.count_seeing(&sim_name(n - 1), MemberStatus::Failed).0 == n / 2
    });
    assert!(split.is_some(), "the partition was not detected");
    for i in 0..n / 2 {
        sim.set_group(i, 0);
    }
    // after healing, announces to down members and renewed identities bring everyone back
    let healed = sim.run_until_true(secs(120.0), secs(0.2), |s| converged(s, n));
    assert!(healed.is_some(), "the partition did not heal");
}

#[test]
fn a_restarted_member_replaces_its_old_identity() {
    let n = 6;
    let mut sim = cluster(n, SimConfig::default());
    sim.bootstrap();
    sim.run_until(secs(2.0));
    sim.crash(2);
    sim.run_until(secs(3.0));
    sim.restart(2, 2).expect("restart");
    sim.join(2, 0);
    let name = sim_name(2);
    let t = sim.run_until_true(secs(30.0), secs(0.1), |s| {
        s.count_seeing(&name, MemberStatus::Alive).0 == n - 1
            && (0..n).all(|i| {
                s.core(i)
                    .and_then(|c| c.members().into_iter().find(|m| m.name == name))
                    .is_some_and(|m| m.generation == 2)
            })
    });
    assert!(
        t.is_some(),
        "restarted member not seen alive with its new generation"
    );
}

#[test]
fn simulations_are_deterministic() {
    let run = || {
        let mut sim = cluster(
            12,
            SimConfig {
                loss: 0.05,
                seed: 99,
                ..SimConfig::default()
            },
        );
        sim.bootstrap();
        sim.run_until(secs(3.0));
        sim.crash(1);
        sim.run_until(secs(20.0));
        (0..12).map(|i| sim.traffic(i)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// Detection and dissemination times in a large cluster, printed as figures.
fn large_cluster_figures(n: usize) {
    let mut sim = cluster(n, SimConfig::default());
    sim.bootstrap();
    sim.run_until(secs(3.0));

    let start = sim.now();
    let ev = sim
        .fire_event(1, UserEvent::new("rollout", b"go".to_vec()))
        .expect("fire");
    let spread = sim
        .run_until_true(start + secs(30.0), secs(0.05), |s| {
            let (have, total) = s.count_with_event(&ev.id);
            have == total
        })
        .expect("event did not reach all")
        - start;

    let victim = n / 2;
    let name = sim_name(victim);
    let crash_at = sim.now();
    sim.crash(victim);
    let detect = sim
        .run_until_true(crash_at + secs(60.0), secs(0.1), |s| {
            let (seeing, total) = s.count_seeing(&name, MemberStatus::Failed);
            seeing == total
        })
        .expect("failure not detected by all")
        - crash_at;
    let envelope = Timings::lan().suspicion_timeout(n) + secs(2.0);
    let bytes: u64 = (0..n).map(|i| sim.traffic(i).bytes_sent).sum();
    println!(
        "{n} members: event reached all in {:.2} s; crash seen failed by all in {:.2} s \
         (memberlist envelope {:.2} s); {:.0} B/s sent per member on average",
        spread.as_secs_f64(),
        detect.as_secs_f64(),
        envelope.as_secs_f64(),
        bytes as f64 / sim.now().as_secs_f64() / n as f64
    );
    assert!(spread < secs(5.0));
    assert!(detect <= envelope + secs(2.0), "{detect:?} vs {envelope:?}");
}

#[test]
fn two_hundred_members() {
    large_cluster_figures(200);
}

/// About 15 s unoptimised; `-- --nocapture` shows the figures (the `simulation` benchmark
/// prints more of them).
#[test]
fn one_thousand_members() {
    large_cluster_figures(1000);
}
