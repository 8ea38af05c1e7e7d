//! Gossip figures from the deterministic simulation (P6, P7 in targets.md): simulated
//! seconds to detect a crashed member and to spread a user event to every member, and the
//! bytes per second each member sends, for several cluster sizes.
//!
//! `cargo bench -p cairn-gossip --bench simulation [-- SIZES...]` (default 5 20 100 1000).
//! Options: `--loss P` (packet loss, default 0), `--seeds K` (runs per size, default 3).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use cairn_gossip::core::GossipEvent;
use cairn_gossip::sim::{Sim, SimConfig, sim_name};
use cairn_gossip::{MemberStatus, Timings, UserEvent};

struct Figures {
    first_detect: f64,
    all_detect: f64,
    event_all: f64,
    bytes_per_sec: f64,
    false_failures: usize,
    wall: f64,
}

fn run(n: usize, seed: u64, loss: f64) -> Option<Figures> {
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        seed,
        loss,
        timings: Timings::lan(),
        ..SimConfig::default()
    });
    for _ in 0..n {
        sim.add_node().ok()?;
    }
    sim.bootstrap();
    let victim = n / 2;
    let victim_name = sim_name(victim);
    let first = Rc::new(RefCell::new(None::<Duration>));
    let false_failures = Rc::new(RefCell::new(0usize));
    let (f, ff) = (Rc::clone(&first), Rc::clone(&false_failures));
    let vn = victim_name.clone();
    sim.set_recorder(move |t, _, ev| {
        if let GossipEvent::MemberFailed(m) = ev {
            if m.name == vn {
                f.borrow_mut().get_or_insert(t);
            } else {
                *ff.borrow_mut() += 1;
            }
        }
    });

    // Warm up, then measure steady-state traffic over 20 s.
    sim.run_until(Duration::from_secs(10));
    let before: u64 = (0..n).map(|i| sim.traffic(i).bytes_sent).sum();
    let t0 = sim.now();
    sim.run_until(t0 + Duration::from_secs(20));
    let after: u64 = (0..n).map(|i| sim.traffic(i).bytes_sent).sum();
    let bytes_per_sec = (after - before) as f64 / 20.0 / n as f64;

    // Event spread.
    let start = sim.now();
    let ev = sim
        .fire_event(0, UserEvent::new("bench", b"x".to_vec()))
        .ok()?;
    let done = sim.run_until_true(
        start + Duration::from_secs(60),
        Duration::from_millis(50),
        |s| {
            let (have, total) = s.count_with_event(&ev.id);
            have == total
        },
    )?;
    let event_all = (done - start).as_secs_f64();

    // Failure detection.
    let crash_at = sim.now();
    sim.crash(victim);
    let all = sim.run_until_true(
        crash_at + Duration::from_secs(120),
        Duration::from_millis(100),
        |s| {
            let (seeing, total) = s.count_seeing(&victim_name, MemberStatus::Failed);
            seeing == total
        },
    )?;
    let first_detect = (*first.borrow())?.saturating_sub(crash_at).as_secs_f64();
    let ff = *false_failures.borrow();
    Some(Figures {
        first_detect,
        all_detect: (all - crash_at).as_secs_f64(),
        event_all,
        bytes_per_sec,
        false_failures: ff,
        wall: wall.elapsed().as_secs_f64(),
    })
}

fn main() {
    let mut sizes = Vec::new();
    let mut loss = 0.0;
    let mut seeds = 3u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loss" => loss = args.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
            "--seeds" => seeds = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--bench" => {}
            other => {
                if let Ok(n) = other.parse() {
                    sizes.push(n);
                }
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![5, 20, 100, 1000];
    }
    println!(
        "gossip simulation (LAN timings, loss {loss}, {seeds} seeds per size; simulated seconds)"
    );
    println!(
        "{:>6} {:>12} {:>12} {:>12} {:>10} {:>12} {:>10} {:>8}",
        "N", "detect 1st", "detect all", "envelope", "event all", "B/s/node", "false pos", "wall s"
    );
    for n in sizes {
        let envelope = Timings::lan().suspicion_timeout(n).as_secs_f64() + 2.0;
        for seed in 0..seeds {
            match run(n, 0xF0CA + seed, loss) {
                Some(f) => println!(
                    "{:>6} {:>12.2} {:>12.2} {:>12.2} {:>10.2} {:>12.0} {:>10} {:>8.1}",
                    n,
                    f.first_detect,
                    f.all_detect,
                    envelope,
                    f.event_all,
                    f.bytes_per_sec,
                    f.false_failures,
                    f.wall
                ),
                None => println!("{n:>6} run with seed {seed} did not complete"),
            }
        }
    }
}
