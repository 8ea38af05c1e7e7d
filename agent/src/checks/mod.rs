//! Check runners: each registered check with a run spec gets one task that produces results
//! on the agent's result channel. TTL checks wait for client updates and expire; interval
//! checks run with jitter and a timeout, one run at a time, and their results go through the
//! SuccessBeforePassing / FailuresBefore* thresholds first; alias checks follow the health of
//! another service instance.
//!
//! What each kind does (Consul's semantics; each module documents the details and output
//! texts):
//!
//! | Kind | Module | Passing | Critical |
//! | --- | --- | --- | --- |
//! | HTTP(S) | [`http`] | 2xx (429: warning) | other codes, errors, timeout |
//! | TCP | [`probes`] | connect | refused, timeout |
//! | UDP | [`udp`] | any reply, or silence until the timeout | send/receive error (ICMP unreachable) |
//! | gRPC | [`grpc`] | `grpc.health.v1` SERVING | other status, errors |
//! | H2PING | [`h2ping`] | PING acknowledged | no ack, errors |
//! | Script | [`probes`] | exit 0 (1: warning) | other exits, timeout |
//! | OSService | [`os_service`] | systemd unit `active` | `inactive`/`failed` (others: warning) |
//! | Alias | [`alias`] | aliased checks passing | a critical check, instance missing |
//! | Docker | [`docker`] | exec in the container exits 0 (1: warning) | other exits, engine errors, timeout |
//!
//! Every run is bounded by the check's Timeout (default 10 s, scripts 30 s) and a run never
//! overlaps the previous one; outputs are capped at OutputMaxSize (4 KB by default).
//!
//! Dependencies added for checks, and why:
//! - `hyper` (`client`, `http1`), `hyper-util` (`tokio`), `http-body-util`: the HTTP(S) check
//!   makes one HTTP/1.1 request per run on its own connection, which gives exact control of
//!   SNI, Host and keep-alive (reqwest's rustls features would need a process-wide crypto
//!   provider, or every other reqwest client in the binary panics when built).
//! - `h2`: HTTP/2 client for H2PING (hyper exposes no PING) and for the gRPC health call, a
//!   unary request small enough to encode by hand (no tonic/prost in the agent).
//! - `rustls` (`ring`, no aws-lc-rs so no cmake/C++ build) and `tokio-rustls`: TLS for HTTPS,
//!   gRPC and H2PING checks, with `TLSSkipVerify` and `TLSServerName`.
//! - `rustls-native-certs`: the system trust store, as Consul (Go) uses; lighter than
//!   `rustls-platform-verifier` (which on Linux wraps the same loader) and, unlike the
//!   compiled-in `webpki-roots`, it honours private CAs installed on the machine and
//!   `SSL_CERT_FILE`/`SSL_CERT_DIR`, which internal health endpoints commonly rely on.
//! - Docker checks: no client crate; the three Engine API calls they make are spoken over
//!   hyper on the engine's unix socket ([`docker`] and docs/dependencies.md say why).
//! - Tests only: `rcgen` (self-signed certificates), `tonic` + `tonic-health` (the reference
//!   gRPC health server) and `tokio-stream`.
//!
//! Runners only produce results: they never touch the local state. The agent records each
//! result, which keeps one writer for check statuses (API updates, TTL expiries and runs all
//! go through the same path) and lets a runner be aborted at any await without leaving a
//! half-made change behind.

pub mod alias;
mod docker;
mod grpc;
mod h2ping;
mod http;
mod os_service;
mod probes;
#[cfg(test)]
pub mod test_servers;
pub(crate) mod tls;
mod udp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_catalog::model::HealthStatus;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::local::defs::{CheckKind, CheckSpec};
use crate::local::truncate_output;
pub use alias::{AgentAliasSource, AliasSource};

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
    /// A runner that was stopped may already have a result in the channel; the agent compares
    /// this with [`Runners::is_current`] so that an old definition's last result cannot
    /// overwrite the status of its replacement.
    pub generation: u64,
}

/// Consul's status thresholds: a run result becomes a recorded status only after enough
/// consecutive successes or failures.
#[derive(Clone, Debug, Default)]
pub struct Thresholds {
    /// `SuccessBeforePassing`: consecutive non-critical runs before passing is recorded.
    success_before_passing: u32,
    /// `FailuresBeforeWarning`: consecutive critical runs before warning is recorded.
    failures_before_warning: u32,
    /// `FailuresBeforeCritical`: consecutive critical runs before critical is recorded.
    failures_before_critical: u32,
    /// The current streak of non-critical runs.
    successes: u32,
    /// The current streak of critical runs.
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
    ///
    /// `None` keeps the status recorded so far: a streak below its threshold changes nothing,
    /// which is how a flapping check is kept from flapping its service. With all thresholds at
    /// 0 (the default) every result is recorded as it is.
    pub fn observe(&mut self, status: HealthStatus) -> Option<HealthStatus> {
        match status {
            // A warning counts as a success, as in Consul's status handler: only critical runs
            // build up failures, and a warning is recorded as itself once the streak is long
            // enough.
            HealthStatus::Passing | HealthStatus::Warning => {
                // Saturating: a streak never wraps back below its threshold, however long it runs.
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
                    // Between the two thresholds a failing check is recorded as warning; the check
                    // definition fills FailuresBeforeWarning with FailuresBeforeCritical when
                    // unset.
                    Some(HealthStatus::Warning)
                } else {
                    None
                }
            }
        }
    }
}

/// What a TTL runner is told on each update: the new deadline and the output of that update
/// (kept for the expiry message).
///
/// Sent on a `watch` channel: only the latest update matters, so a burst of updates between
/// two polls of the runner collapses into one.
#[derive(Clone, Debug)]
struct TtlReset {
    deadline: Instant,
    last_output: String,
}

/// Consul's output when a TTL expires: `TTL expired`, followed by the last output when the
/// last update carried one.
pub fn ttl_expired_output(last_output: &str) -> String {
    if last_output.is_empty() {
        "TTL expired".to_string()
    } else {
        format!("TTL expired (last output before timeout follows): {last_output}")
    }
}

/// The task of one check and how to reach it.
struct Runner {
    handle: JoinHandle<()>,
    /// For TTL checks only: where updates re-arm the deadline.
    ttl_reset: Option<watch::Sender<TtlReset>>,
    /// Stamped on every result of this runner.
    generation: u64,
}

/// The running checks of an agent.
pub struct Runners {
    results: mpsc::Sender<CheckResult>,
    /// By check ID; at most one runner per check.
    running: Mutex<HashMap<String, Runner>>,
    /// One counter for all checks, so a generation is never reused, even by a check that is
    /// deregistered and registered again under the same ID.
    next_generation: Mutex<u64>,
    /// Set once the agent exists (it is built after the runners); see
    /// [`Runners::set_alias_source`].
    alias_source: RwLock<Option<Arc<dyn AliasSource>>>,
}

impl Runners {
    /// Runners reporting on `results`.
    pub fn new(results: mpsc::Sender<CheckResult>) -> Runners {
        Runners {
            results,
            running: Mutex::new(HashMap::new()),
            next_generation: Mutex::new(0),
            alias_source: RwLock::new(None),
        }
    }

    /// Sets where alias checks read health from (the agent: [`AgentAliasSource`]). Alias
    /// checks started before this report that they cannot run; set it before loading checks.
    pub fn set_alias_source(&self, source: Arc<dyn AliasSource>) {
        *self.alias_source.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Starts (or restarts) the runner of a check.
    ///
    /// The old runner is stopped first, so two runners never report for one check. A check
    /// without a run spec (`CheckKind::None`: a catalog-style check whose status is whatever was
    /// registered) gets no task.
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
            CheckKind::None => return,
            // The deadline is armed at registration: a TTL check that never hears from its
            // service expires after one TTL, as in Consul.
            CheckKind::Ttl(ttl) => {
                let (reset_tx, reset_rx) = watch::channel(TtlReset {
                    deadline: Instant::now() + *ttl,
                    last_output: String::new(),
                });
                let h = tokio::spawn(run_ttl(
                    id.clone(),
                    generation,
                    reset_rx,
                    tx,
                    spec.output_max_size,
                ));
                (h, Some(reset_tx))
            }
            CheckKind::Alias { node, service } => {
                let source = self
                    .alias_source
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let h = match source {
                    Some(source) => tokio::spawn(alias::run(
                        id.clone(),
                        generation,
                        node.clone(),
                        service.clone(),
                        source,
                        tx,
                        spec.output_max_size,
                    )),
                    None => tokio::spawn(report_once(
                        id.clone(),
                        generation,
                        tx,
                        "alias checks cannot run: this agent has no alias source".into(),
                    )),
                };
                (h, None)
            }
            _ => match probes::Probe::new(&spec.kind, spec.timeout, spec.output_max_size) {
                // A definition that cannot run (a bad URL): nothing to repeat, say once and
                // clearly why.
                probes::Probe::Fixed(_, output) => (
                    tokio::spawn(report_once(id.clone(), generation, tx, output)),
                    None,
                ),
                probe => {
                    let h = tokio::spawn(run_interval(
                        id.clone(),
                        generation,
                        spec.clone(),
                        probe,
                        tx,
                    ));
                    (h, None)
                }
            },
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
    ///
    /// The task is aborted at its next await; a result it already sent is filtered out by
    /// its generation.
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

    /// Resets a TTL check's timer after an update without output; false when the check has no
    /// TTL. Prefer [`Runners::reset_ttl_with_output`], which lets an expiry quote the output.
    pub fn reset_ttl(&self, check_id: &str, ttl: Duration) -> bool {
        self.reset_ttl_with_output(check_id, ttl, "")
    }

    /// Resets a TTL check's timer after an update whose (stored, truncated) output was
    /// `output`: if the TTL then expires, the check turns critical with
    /// `TTL expired (last output before timeout follows): <output>`. False when the check has
    /// no TTL.
    pub fn reset_ttl_with_output(&self, check_id: &str, ttl: Duration, output: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get(check_id).and_then(|r| r.ttl_reset.as_ref()) {
            Some(tx) => tx
                .send(TtlReset {
                    deadline: Instant::now() + ttl,
                    last_output: output.to_string(),
                })
                // Fails only when the runner task is gone.
                .is_ok(),
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

/// Reports a check that cannot run as critical, once: repeating the same explanation on
/// every interval would add nothing but load.
async fn report_once(
    check_id: String,
    generation: u64,
    tx: mpsc::Sender<CheckResult>,
    output: String,
) {
    let _ = tx
        .send(CheckResult {
            check_id,
            status: HealthStatus::Critical,
            output,
            generation,
        })
        .await;
}

/// The TTL runner: reports critical when the deadline passes without an update.
async fn run_ttl(
    id: String,
    generation: u64,
    mut reset: watch::Receiver<TtlReset>,
    tx: mpsc::Sender<CheckResult>,
    max_output: usize,
) {
    loop {
        let TtlReset {
            deadline,
            last_output,
            // `borrow_and_update` marks this value seen, so `changed()` below waits for the
            // next update rather than firing for this one.
        } = reset.borrow_and_update().clone();
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                let r = CheckResult {
                    check_id: id.clone(),
                    status: HealthStatus::Critical,
                    output: truncate_output(&ttl_expired_output(&last_output), max_output),
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
            // An update before the deadline: loop to re-arm with the new deadline.
            changed = reset.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Extra time given to a probe past the check's timeout before the runner gives up on it
/// (every probe enforces the timeout itself; this is the backstop).
/// Long enough for a probe to report its own, more precise timeout message first.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// The runner of an interval check: one probe at a time, every `interval`, each result
/// passed through the thresholds.
async fn run_interval(
    id: String,
    generation: u64,
    spec: CheckSpec,
    probe: probes::Probe,
    tx: mpsc::Sender<CheckResult>,
) {
    // Spread the first run over the interval so checks registered together do not fire together.
    let stagger_ms = crate::random::up_to(spec.interval.as_millis().max(1) as u64);
    tokio::time::sleep(Duration::from_millis(stagger_ms).min(spec.interval)).await;
    let mut thresholds = Thresholds::new(&spec);
    // `interval` panics on a zero period; the definition's validation should never let one
    // through, and this keeps a bad one from taking the runner down.
    let mut tick = tokio::time::interval(spec.interval.max(Duration::from_millis(1)));
    // A slow run delays the next one instead of piling runs up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (status, output) =
            match tokio::time::timeout(spec.timeout + TIMEOUT_GRACE, probe.run()).await {
                Ok(r) => r,
                Err(_) => (
                    HealthStatus::Critical,
                    // Consul's message for a run that outlives its timeout.
                    format!("Timed out ({:?}) running check", spec.timeout),
                ),
            };
        if let Some(status) = thresholds.observe(status) {
            let r = CheckResult {
                check_id: id.clone(),
                status,
                // Capped here as well as in the probes: the output is stored in the catalog and
                // sent to every server.
                output: truncate_output(&output, spec.output_max_size),
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

    /// A spec with the given thresholds and a 1 s interval and timeout.
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

    /// Zero thresholds (the default) record every result as it comes.
    #[test]
    fn thresholds_default_pass_everything_through() {
        let mut t = Thresholds::new(&spec(0, 0, 0));
        assert_eq!(t.observe(Passing), Some(Passing));
        assert_eq!(t.observe(Critical), Some(Critical));
        assert_eq!(t.observe(Warning), Some(Warning));
    }

    /// Streaks are consecutive: one result of the other kind starts the count again.
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

    /// An update pushes the deadline; the expiry is reported once with Consul's text.
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

    /// The expiry message quotes the output of the last update, as Consul's does.
    #[tokio::test(start_paused = true)]
    async fn ttl_expiry_quotes_the_last_output() {
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
        assert!(runners.reset_ttl_with_output("t", ttl, "disk 91% full"));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let r = rx.recv().await.expect("expired");
        assert_eq!(
            (r.status, r.output.as_str()),
            (
                Critical,
                "TTL expired (last output before timeout follows): disk 91% full"
            )
        );
        // An update without output: the plain message again.
        assert!(runners.reset_ttl_with_output("t", ttl, ""));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let r = rx.recv().await.expect("expired again");
        assert_eq!(r.output, "TTL expired");
    }

    /// A real TCP probe through the runner; its output is cut to OutputMaxSize with Consul's
    /// ` ...` marker.
    #[tokio::test]
    async fn interval_runs_are_capped_and_bounded() {
        let (tx, mut rx) = mpsc::channel(8);
        let runners = Runners::new(tx);
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        runners.start(
            "tcp",
            &CheckSpec {
                kind: CheckKind::Tcp { addr: addr.clone() },
                interval: Duration::from_millis(50),
                output_max_size: 10,
                ..spec(0, 0, 0)
            },
        );
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a result in time")
            .expect("result");
        assert_eq!(r.status, Passing);
        assert_eq!(r.output, "TCP connec ...", "capped at OutputMaxSize");
        runners.stop_all();
    }

    /// Checks that cannot run report critical once, with an output that says why.
    #[tokio::test]
    async fn alias_without_a_source_says_so() {
        let (tx, mut rx) = mpsc::channel(8);
        let runners = Runners::new(tx);
        runners.start(
            "a",
            &CheckSpec {
                kind: CheckKind::Alias {
                    node: String::new(),
                    service: "web".into(),
                },
                ..spec(0, 0, 0)
            },
        );
        let r = rx.recv().await.expect("alias result");
        assert_eq!(r.status, Critical);
        assert!(r.output.contains("alias source"), "{}", r.output);
    }
}
