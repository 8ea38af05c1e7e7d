//! Check runners: each registered check with a run spec gets one task that produces results
//! on the agent's result channel. TTL checks wait for client updates and expire; interval
//! checks (HTTP, TCP, script) run with jitter and a timeout, one run at a time, and their
//! results go through the SuccessBeforePassing / FailuresBefore* thresholds first.

mod probes;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cairn_catalog::model::HealthStatus;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::local::defs::{CheckKind, CheckSpec};

/// A check result for the agent to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// Check ID.
    pub check_id: String,
    /// Status to record.
    pub status: HealthStatus,
    /// Output.
    pub output: String,
    /// Runner generation; results of replaced runners are ignored.
    pub generation: u64,
}

/// Consul's status thresholds: a run result becomes a recorded status only after enough
/// consecutive successes or failures.
#[derive(Clone, Debug, Default)]
pub struct Thresholds {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    /// Thresholds of a spec.
    pub fn new(spec: &CheckSpec) -> Thresholds {
        Thresholds {
            success_before_passing: spec.success_before_passing,
            failures_before_warning: spec.failures_before_warning,
            failures_before_critical: spec.failures_before_critical,
            successes: 0,
            failures: 0,
        }
    }

    /// Feeds one run result; returns the status to record, if any.
    pub fn observe(&mut self, status: HealthStatus) -> Option<HealthStatus> {
        match status {
            HealthStatus::Passing | HealthStatus::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.successes >= self.success_before_passing).then_some(status)
            }
            HealthStatus::Critical => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= self.failures_before_critical {
                    Some(HealthStatus::Critical)
                } else if self.failures >= self.failures_before_warning {
                    Some(HealthStatus::Warning)
                } else {
                    None
                }
            }
        }
    }
}

struct Runner {
    handle: JoinHandle<()>,
    ttl_reset: Option<watch::Sender<Instant>>,
    generation: u64,
}

/// The running checks of an agent.
pub struct Runners {
    results: mpsc::Sender<CheckResult>,
    running: Mutex<HashMap<String, Runner>>,
    next_generation: Mutex<u64>,
    http: reqwest::Client,
}

impl Runners {
    /// Runners reporting on `results`.
    pub fn new(results: mpsc::Sender<CheckResult>) -> Runners {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Cairn Health Check/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Runners {
            results,
            running: Mutex::new(HashMap::new()),
            next_generation: Mutex::new(0),
            http,
        }
    }

    /// Starts (or restarts) the runner of a check.
    pub fn start(&self, check_id: &str, spec: &CheckSpec) {
        self.stop(check_id);
        let generation = {
            let mut g = self
                .next_generation
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *g += 1;
            *g
        };
        let id = check_id.to_string();
        let tx = self.results.clone();
        let (handle, ttl_reset) = match &spec.kind {
            CheckKind::Ttl(ttl) => {
                let (reset_tx, reset_rx) = watch::channel(Instant::now() + *ttl);
                let h = tokio::spawn(run_ttl(id.clone(), generation, reset_rx, tx));
                (h, Some(reset_tx))
            }
            CheckKind::Http { .. } | CheckKind::Tcp { .. } | CheckKind::Script { .. } => {
                let probe = probes::Probe::new(&spec.kind, spec.timeout, self.http.clone());
                let h = tokio::spawn(run_interval(
                    id.clone(),
                    generation,
                    spec.clone(),
                    probe,
                    tx,
                ));
                (h, None)
            }
            CheckKind::None => return,
            other => {
                let msg = format!(
                    "Cairn does not run {} checks yet; the check keeps its registered status",
                    other.type_name()
                );
                let h = tokio::spawn(async move {
                    let _ = tx
                        .send(CheckResult {
                            check_id: id,
                            status: HealthStatus::Critical,
                            output: msg,
                            generation,
                        })
                        .await;
                });
                (h, None)
            }
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(
            check_id.to_string(),
            Runner {
                handle,
                ttl_reset,
                generation,
            },
        );
    }

    /// Stops the runner of a check.
    pub fn stop(&self, check_id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.remove(check_id) {
            r.handle.abort();
        }
    }

    /// Stops every runner.
    pub fn stop_all(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for (_, r) in running.drain() {
            r.handle.abort();
        }
    }

    /// Resets a TTL check's timer; false when the check has no TTL.
    pub fn reset_ttl(&self, check_id: &str, ttl: Duration) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get(check_id).and_then(|r| r.ttl_reset.as_ref()) {
            Some(tx) => tx.send(Instant::now() + ttl).is_ok(),
            None => false,
        }
    }

    /// Whether `generation` is the current runner of `check_id`.
    pub fn is_current(&self, check_id: &str, generation: u64) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .get(check_id)
            .is_some_and(|r| r.generation == generation)
    }
}

async fn run_ttl(
    id: String,
    generation: u64,
    mut reset: watch::Receiver<Instant>,
    tx: mpsc::Sender<CheckResult>,
) {
    loop {
        let deadline = *reset.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                let r = CheckResult {
                    check_id: id.clone(),
                    status: HealthStatus::Critical,
                    output: "TTL expired".into(),
                    generation,
                };
                if tx.send(r).await.is_err() {
                    return;
                }
                // Expired: wait for the next update before arming again.
                if reset.changed().await.is_err() {
                    return;
                }
            }
            changed = reset.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn run_interval(
    id: String,
    generation: u64,
    spec: CheckSpec,
    probe: probes::Probe,
    tx: mpsc::Sender<CheckResult>,
) {
    // Spread the first run over the interval so checks registered together do not fire together.
    let stagger_ms = rand::random_range(0..=spec.interval.as_millis().max(1) as u64);
    tokio::time::sleep(Duration::from_millis(stagger_ms).min(spec.interval)).await;
    let mut thresholds = Thresholds::new(&spec);
    let mut tick = tokio::time::interval(spec.interval);
    // A slow run delays the next one instead of piling runs up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (status, output) = probe.run().await;
        if let Some(status) = thresholds.observe(status) {
            let r = CheckResult {
                check_id: id.clone(),
                status,
                output,
                generation,
            };
            if tx.send(r).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn spec(succ: u32, warn: u32, crit: u32) -> CheckSpec {
        CheckSpec {
            kind: CheckKind::None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            deregister_critical_service_after: Duration::ZERO,
            success_before_passing: succ,
            failures_before_warning: warn,
            failures_before_critical: crit,
            output_max_size: 4096,
        }
    }

    #[test]
    fn thresholds_default_pass_everything_through() {
        let mut t = Thresholds::new(&spec(0, 0, 0));
        assert_eq!(t.observe(Passing), Some(Passing));
        assert_eq!(t.observe(Critical), Some(Critical));
        assert_eq!(t.observe(Warning), Some(Warning));
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let mut t = Thresholds::new(&spec(2, 1, 3));
        assert_eq!(t.observe(Passing), None);
        assert_eq!(t.observe(Passing), Some(Passing));
        assert_eq!(t.observe(Critical), Some(Warning), "1 failure: warning");
        assert_eq!(t.observe(Critical), Some(Warning));
        assert_eq!(t.observe(Critical), Some(Critical), "3 failures: critical");
        assert_eq!(t.observe(Passing), None, "a success resets failures");
        assert_eq!(t.observe(Critical), Some(Warning));
    }

    #[test]
    fn warning_defaults_to_critical_threshold() {
        // FailuresBeforeWarning defaults to FailuresBeforeCritical (done in validation).
        let mut t = Thresholds::new(&spec(0, 2, 2));
        assert_eq!(t.observe(Critical), None);
        assert_eq!(t.observe(Critical), Some(Critical));
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expires_and_rearms_on_update() {
        let (tx, mut rx) = mpsc::channel(8);
        let runners = Runners::new(tx);
        let ttl = Duration::from_secs(10);
        runners.start(
            "t",
            &CheckSpec {
                kind: CheckKind::Ttl(ttl),
                ..spec(0, 0, 0)
            },
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(runners.reset_ttl("t", ttl));
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(rx.try_recv().is_err(), "reset pushed the deadline");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = rx.recv().await.expect("expired");
        assert_eq!((r.status, r.output.as_str()), (Critical, "TTL expired"));
        assert!(!runners.reset_ttl("missing", ttl));
    }
}
