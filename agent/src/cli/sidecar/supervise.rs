//! The sidecar's main loop. One task owns the supervised process (or the watched PID), the
//! health probe schedule and the signals; it turns liveness and the last probe result into a
//! verdict ([`verdict`]) that a second task ([`super::report::feed`]) keeps pushing into the
//! agent's TTL check. The process runs in its own process group, so a terminal's Ctrl-C
//! reaches it once, through the sidecar.
//!
//! Everything that changes state happens on the one task, in `select!` branches, so the
//! liveness, the probe results and the restart bookkeeping need no locks; the probe runs on
//! a task of its own so that a slow probe never delays a signal or an exit.

use std::io::IsTerminal;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cairn_catalog::duration::format_go_duration;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::{Config, Target};
use super::probe::{Outcome, Prober, Status};
use super::report::{self, RegisterError, Report};
use crate::cli::client::Client;
use crate::cli::output::fail;

/// How long the first registration attempt may take before the command starts anyway.
/// The service must not wait for discovery to start: past this, registration continues in
/// the background.
const FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The probe cadence after a (re)start until the first passing result.
/// So that a freshly started service turns passing within half a second of being ready,
/// not a whole interval later.
const FAST_PROBE: Duration = Duration::from_millis(500);

/// How often a watched PID (`-pid`) is checked, at most.
/// There is no portable way to wait for a process that is not a child: it is polled.
const PID_POLL: Duration = Duration::from_secs(1);

/// A run at least this long resets the restart backoff.
/// A crash after a long healthy run is a new incident, not part of a crash loop.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// The longest restart delay (unless `-restart-delay` is longer).
const RESTART_MAX_DELAY: Duration = Duration::from_secs(30);

/// The shortest delay after the first one, so a zero `-restart-delay` cannot spin.
const BACKOFF_FLOOR: Duration = Duration::from_millis(100);

/// How long the reporter may take to finish its current agent call on exit.
/// Bounds shutdown when the agent hangs; each agent call is bounded too.
const REPORTER_STOP: Duration = Duration::from_secs(5);

/// Deregistration attempts on exit.
/// A restarting agent may miss the first; if all fail, the TTL expiry covers it.
const DEREGISTER_ATTEMPTS: u32 = 3;

/// Exponential backoff: `min`, then doubling up to `max`.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Backoff {
    /// Starts at `min` and doubles up to `max` (at least `min`).
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            current: None,
        }
    }

    /// The next delay.
    ///
    /// The first delay is `min` itself, even 0 (an immediate first restart); later ones are
    /// at least [`BACKOFF_FLOOR`].
    pub(crate) fn next_delay(&mut self) -> Duration {
        let next = match self.current {
            None => self.min,
            Some(c) => (c * 2).max(BACKOFF_FLOOR).min(self.max.max(BACKOFF_FLOOR)),
        };
        self.current = Some(next);
        next
    }

    /// Starts over at `min`.
    pub(crate) fn reset(&mut self) {
        self.current = None;
    }
}

/// Whether what the sidecar watches is alive, with a line for the check output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Running (or nothing to run: only an endpoint is watched).
    Up(String),
    /// Not running, stopping or gone.
    Down(String),
}

/// The TTL check's verdict. A process that is down is critical. Without a probe, a running
/// process is passing. With one, the last probe result counts, except that within the grace
/// period (`grace` is then the period's length) a failure only makes the check warning.
pub(crate) fn verdict(
    live: &Liveness,
    probed: bool,
    last: Option<&Outcome>,
    grace: Option<Duration>,
) -> Report {
    let report = |status, output: String| Report { status, output };
    match (live, probed, last, grace) {
        (Liveness::Down(why), ..) => report(Status::Critical, why.clone()),
        (Liveness::Up(what), false, ..) => report(Status::Passing, what.clone()),
        (Liveness::Up(_), true, None, Some(g)) => report(
            Status::Warning,
            format!(
                "starting: waiting for the first health result (grace period {})",
                format_go_duration(g)
            ),
        ),
        (Liveness::Up(_), true, None, None) => report(
            Status::Critical,
            "waiting for the first health result".to_string(),
        ),
        (Liveness::Up(_), true, Some(o), Some(g)) if o.status != Status::Passing => report(
            Status::Warning,
            format!(
                "within the {} grace period after start: {}",
                format_go_duration(g),
                o.output
            ),
        ),
        (Liveness::Up(_), true, Some(o), _) => report(o.status, o.output.clone()),
    }
}

/// The exit code the sidecar reports for a process: its own, or 128 + the signal that
/// killed it (as shells do).
pub(crate) fn exit_code(st: ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// How a process ended, in words.
pub(crate) fn describe_exit(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by {}", signal_name(s)),
        _ => "ended".to_string(),
    }
}

fn signal_name(n: i32) -> String {
    Signal::try_from(n)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {n}"))
}

/// Whether a process exists (and is not a zombie). A process of another user counts.
///
/// `kill(pid, 0)` tests for existence without sending anything; `EPERM` means the process
/// exists but belongs to someone else. A zombie has exited and only waits for its parent
/// to collect it, so it counts as gone.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) => !is_zombie(pid),
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Linux: a zombie has state `Z` in `/proc/<pid>/stat` (after the parenthesized name).
///
/// The name is skipped by the last `)`, since a process name may itself hold spaces and
/// parentheses.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Sends `sig` to a process, logging a failure.
fn send(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if let Err(e) = kill(Pid::from_raw(raw), sig) {
        log_warn!("sending {} to process {pid} failed: {e}", sig.as_str());
    }
}

/// Sends `sig` to a process group (the supervised process leads its own), falling back on
/// the process alone.
fn send_group(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    // The group may be gone or the process may have left it (`setsid`); the process
    // alone still gets the signal.
    if killpg(Pid::from_raw(raw), sig).is_err() {
        send(pid, sig);
    }
}

/// The signals the sidecar handles.
///
/// Installed before the command starts, so that a signal arriving early is handled
/// rather than killing the sidecar with its default action.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// A running supervised process.
struct Proc {
    child: Child,
    pid: u32,
    started: Instant,
}

/// A forwarded SIGINT/SIGTERM the process has yet to obey.
///
/// While it exists the process is reported down (stopping), and an exit ends the sidecar
/// instead of triggering a restart.
struct Stop {
    signal: Signal,
    deadline: Instant,
    killed: bool,
}

/// The main loop's state, owned by its one task.
struct Sidecar {
    cfg: Arc<Config>,
    client: Client,
    prober: Arc<Prober>,
    tx: watch::Sender<Report>,
    stop_reporter: watch::Sender<bool>,
    reporter: Option<JoinHandle<()>>,
    proc: Option<Proc>,
    stop: Option<Stop>,
    restart_at: Option<Instant>,
    /// Why nothing runs (after an exit), for the check output.
    down_note: String,
    restarts: u64,
    backoff: Backoff,
    last_code: i32,
    /// Bumped on every (re)start, so a probe of a previous run does not count.
    generation: u64,
    probe_task: Option<JoinHandle<(u64, Outcome)>>,
    last: Option<Outcome>,
    /// Whether the current run has passed once: until then probes run at [`FAST_PROBE`].
    seen_pass: bool,
    next_probe: Instant,
    run_started: Instant,
    next_pid_poll: Instant,
    /// Beside mode: the watched PID was found gone.
    pid_gone: bool,
}

/// The process's exit, or never when none runs (a `select!` branch that stays idle).
async fn wait_proc(proc: &mut Option<Proc>) -> std::io::Result<ExitStatus> {
    match proc {
        Some(p) => p.child.wait().await,
        None => std::future::pending().await,
    }
}

/// The running probe's result, or never when none runs.
async fn join_probe(task: &mut Option<JoinHandle<(u64, Outcome)>>) -> Option<(u64, Outcome)> {
    match task {
        Some(t) => t.await.ok(),
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the sidecar until the process ends for good or a signal stops it; returns the exit
/// code (the process's).
pub(crate) async fn run(cfg: Config, client: Client, agent: &str) -> ExitCode {
    let cfg = Arc::new(cfg);
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(format!("Error installing signal handlers: {e}")),
    };
    let prober = match Prober::new(cfg.timeout) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(format!("Error: {e}")),
    };
    log_info!(
        "sidecar for service {:?} (ID {:?}) through the agent at {agent}: check {:?} with TTL {}, fed every {} from {}",
        cfg.name,
        cfg.id,
        cfg.check_id(),
        format_go_duration(cfg.ttl),
        format_go_duration(cfg.interval),
        cfg.source()
    );

    // Until the first result the check is not passing: a service must prove itself before
    // it receives traffic (warning when a grace period allows a slow start).
    let initial = Report {
        status: if cfg.grace.is_zero() {
            Status::Critical
        } else {
            Status::Warning
        },
        output: "starting".to_string(),
    };
    let registered = match report::register(&client, &cfg, initial.status, FIRST_CALL_TIMEOUT).await
    {
        Ok(()) => {
            log_info!(
                "registered service {:?} (ID {:?}, check {:?})",
                cfg.name,
                cfg.id,
                cfg.check_id()
            );
            true
        }
        // A definition the agent refuses will be refused again: a configuration error,
        // reported before anything is started.
        Err(RegisterError::Rejected(e)) => {
            return fail(format!("Error registering service {:?}: {e}", cfg.id));
        }
        Err(RegisterError::Failed(e)) => {
            log_warn!(
                "cannot reach the agent ({e}); starting anyway and registering once it answers"
            );
            false
        }
    };
    let (tx, rx) = watch::channel(initial);
    let (stop_reporter, stop_rx) = watch::channel(false);
    let reporter = tokio::spawn(report::feed(
        client.clone(),
        Arc::clone(&cfg),
        rx,
        stop_rx,
        registered,
    ));
    let now = Instant::now();
    let mut sidecar = Sidecar {
        backoff: Backoff::new(cfg.restart_delay, RESTART_MAX_DELAY),
        cfg,
        client,
        prober,
        tx,
        stop_reporter,
        reporter: Some(reporter),
        proc: None,
        stop: None,
        restart_at: None,
        down_note: "not started".to_string(),
        restarts: 0,
        last_code: 0,
        generation: 0,
        probe_task: None,
        last: None,
        seen_pass: false,
        next_probe: now,
        run_started: now,
        next_pid_poll: now,
        pid_gone: false,
    };
    if matches!(sidecar.cfg.target, Target::Command(_))
        && let Err(code) = sidecar.spawn()
    {
        return sidecar.finish(code).await;
    }
    sidecar.run(&mut signals).await
}

impl Sidecar {
    async fn run(mut self, sig: &mut Signals) -> ExitCode {
        loop {
            self.publish();
            let probe_due = self.probe_task.is_none() && self.should_probe();
            let grace_end = self.grace_end();
            let stop_deadline = self.stop.as_ref().filter(|s| !s.killed).map(|s| s.deadline);
            let watch_pid = matches!(self.cfg.target, Target::Pid(_));
            tokio::select! {
                _ = sig.int.recv() => {
                    if let Some(code) = self.on_stop_signal(Signal::SIGINT) {
                        return self.finish(code).await;
                    }
                }
                _ = sig.term.recv() => {
                    if let Some(code) = self.on_stop_signal(Signal::SIGTERM) {
                        return self.finish(code).await;
                    }
                }
                _ = sig.hup.recv() => self.on_hup(),
                res = wait_proc(&mut self.proc) => {
                    if let Some(code) = self.on_exit(res) {
                        return self.finish(code).await;
                    }
                }
                _ = sleep_opt(self.restart_at) => {
                    self.restart_at = None;
                    if let Err(code) = self.spawn() {
                        let note = format!("the command could not be started (exit code {code})");
                        if let Some(code) = self.after_run(false, code, note, Duration::ZERO) {
                            return self.finish(code).await;
                        }
                    }
                }
                _ = sleep_opt(stop_deadline) => self.kill_now(),
                _ = tokio::time::sleep_until(self.next_probe), if probe_due => self.start_probe(),
                res = join_probe(&mut self.probe_task) => self.on_probe(res),
                // Wakes the loop when the grace period ends, so the verdict is recomputed at once.
                _ = sleep_opt(grace_end) => {}
                _ = tokio::time::sleep_until(self.next_pid_poll), if watch_pid => {
                    if let Some(code) = self.poll_pid() {
                        return self.finish(code).await;
                    }
                }
            }
        }
    }

    /// What the watched thing is doing.
    fn liveness(&self) -> Liveness {
        if let Some(stop) = &self.stop {
            let pid = self.proc.as_ref().map_or(0, |p| p.pid);
            return Liveness::Down(format!(
                "stopping: {} forwarded to process {pid}",
                stop.signal.as_str()
            ));
        }
        match &self.cfg.target {
            Target::Command(_) => match &self.proc {
                Some(p) => Liveness::Up(format!("process {} running", p.pid)),
                None => Liveness::Down(self.down_note.clone()),
            },
            Target::Pid(pid) if self.pid_gone => Liveness::Down(format!("process {pid} is gone")),
            Target::Pid(pid) => Liveness::Up(format!("process {pid} running")),
            Target::Endpoint => Liveness::Up("watching the health endpoint".to_string()),
        }
    }

    /// The end of the current grace period, if one is running.
    fn grace_end(&self) -> Option<Instant> {
        let end = self.run_started + self.cfg.grace;
        (!self.cfg.grace.is_zero() && Instant::now() < end).then_some(end)
    }

    /// Recomputes the verdict and hands it to the reporter if it changed.
    fn publish(&mut self) {
        let grace = self.grace_end().map(|_| self.cfg.grace);
        let live = self.liveness();
        let new = verdict(&live, self.cfg.probe.is_some(), self.last.as_ref(), grace);
        let old = self.tx.borrow().status;
        // Process events (exits, signals) are logged where they happen.
        if new.status != old && matches!(live, Liveness::Up(_)) {
            let check = self.cfg.check_id();
            match new.status {
                Status::Passing => log_info!("check {check:?} is now passing: {}", new.output),
                s => log_warn!("check {check:?} is now {}: {}", s.as_str(), new.output),
            }
        }
        // Only a real change wakes the reporter; the periodic refresh is its own timer.
        self.tx.send_if_modified(|cur| {
            if *cur == new {
                false
            } else {
                *cur = new;
                true
            }
        });
    }

    /// Probes run while there is something to probe, and not while the process is being
    /// stopped.
    fn should_probe(&self) -> bool {
        self.cfg.probe.is_some()
            && self.stop.is_none()
            && match self.cfg.target {
                Target::Command(_) => self.proc.is_some(),
                Target::Pid(_) => !self.pid_gone,
                Target::Endpoint => true,
            }
    }

    fn start_probe(&mut self) {
        let Some(probe) = self.cfg.probe.clone() else {
            return;
        };
        let prober = Arc::clone(&self.prober);
        let generation = self.generation;
        self.probe_task = Some(tokio::spawn(async move {
            (generation, prober.run(&probe).await)
        }));
    }

    fn on_probe(&mut self, res: Option<(u64, Outcome)>) {
        self.probe_task = None;
        if let Some((generation, outcome)) = res
            && generation == self.generation
        {
            if outcome.status == Status::Passing {
                self.seen_pass = true;
            }
            self.last = Some(outcome);
        }
        let every = if self.seen_pass {
            self.cfg.interval
        } else {
            self.cfg.interval.min(FAST_PROBE)
        };
        self.next_probe = Instant::now() + every;
    }

    /// Starts a new run: probe results so far no longer count, the grace period restarts.
    /// A probe in flight describes the previous process: it is abandoned, and its result
    /// would be ignored anyway (see `generation`).
    fn new_run(&mut self, now: Instant) {
        self.generation += 1;
        if let Some(t) = self.probe_task.take() {
            t.abort();
        }
        self.last = None;
        self.seen_pass = false;
        self.next_probe = now;
        self.run_started = now;
    }

    /// Starts the command; on failure returns the exit code a shell would give (127 not
    /// found, 126 not executable).
    fn spawn(&mut self) -> Result<(), i32> {
        let cfg = Arc::clone(&self.cfg);
        let Target::Command(argv) = &cfg.target else {
            return Ok(());
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(1);
        };
        let mut cmd = Command::new(program);
        // Its own process group: a terminal's Ctrl-C goes to the foreground group (the
        // sidecar), which forwards it once instead of the process getting it twice.
        // `kill_on_drop`: should the sidecar's state be dropped without `finish` (a panic),
        // the process is killed rather than left unsupervised.
        cmd.args(args).process_group(0).kill_on_drop(true);
        if std::io::stdin().is_terminal() {
            // Outside the terminal's foreground group, reading it would stop the process.
            cmd.stdin(Stdio::null());
        }
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id().unwrap_or(0);
                let now = Instant::now();
                self.proc = Some(Proc {
                    child,
                    pid,
                    started: now,
                });
                self.new_run(now);
                if self.restarts == 0 {
                    log_info!("started process {pid}: {}", argv.join(" "));
                } else {
                    log_info!(
                        "restarted process {pid} (restart {}): {}",
                        self.restarts,
                        argv.join(" ")
                    );
                }
                Ok(())
            }
            Err(e) => {
                let code = match e.kind() {
                    // A shell's codes: 127 not found, 126 not executable.
                    std::io::ErrorKind::NotFound => 127,
                    std::io::ErrorKind::PermissionDenied => 126,
                    _ => 1,
                };
                log_error!("cannot start {program:?}: {e}");
                self.last_code = code;
                Err(code)
            }
        }
    }

    /// The process ended; returns the exit code when the sidecar should exit too.
    fn on_exit(&mut self, res: std::io::Result<ExitStatus>) -> Option<i32> {
        let proc = self.proc.take()?;
        let (success, code, how) = match res {
            Ok(st) => (st.success(), exit_code(st), describe_exit(st)),
            Err(e) => (false, 1, format!("could not be waited for: {e}")),
        };
        self.last_code = code;
        let note = format!("process {} {how}", proc.pid);
        if let Some(stop) = self.stop.take() {
            log_info!("{note} after {}", stop.signal.as_str());
            return Some(code);
        }
        self.after_run(success, code, note, proc.started.elapsed())
    }

    /// Applies the restart policy after a run that lasted `ran`; returns the exit code when
    /// the sidecar should exit.
    fn after_run(&mut self, success: bool, code: i32, note: String, ran: Duration) -> Option<i32> {
        if ran >= STABLE_RUN {
            self.backoff.reset();
        }
        let policy = self.cfg.restart;
        if !policy.wants(success) {
            if success {
                log_info!("{note}; not restarting (-restart={})", policy.as_str());
            } else {
                log_warn!("{note}; not restarting (-restart={})", policy.as_str());
            }
            return Some(code);
        }
        let max = self.cfg.max_restarts;
        if max > 0 && self.restarts >= max {
            log_error!(
                "{note}; giving up after {} restart(s) (-max-restarts={max})",
                self.restarts
            );
            return Some(code);
        }
        let delay = self.backoff.next_delay();
        self.restarts += 1;
        self.restart_at = Some(Instant::now() + delay);
        let of = if max > 0 {
            format!(" of {max}")
        } else {
            String::new()
        };
        self.down_note = format!(
            "{note}; restarting in {} (restart {}{of})",
            format_go_duration(delay),
            self.restarts
        );
        log_warn!("{}", self.down_note);
        None
    }

    /// SIGINT or SIGTERM: forwarded to the process, which then has `-stop-timeout` to exit;
    /// with no process, the sidecar stops at once (returns the exit code).
    fn on_stop_signal(&mut self, sig: Signal) -> Option<i32> {
        let name = sig.as_str();
        let Some(p) = &self.proc else {
            log_info!("received {name}: stopping");
            return Some(self.last_code);
        };
        send(p.pid, sig);
        if self.stop.is_some() {
            log_info!("received {name} again: forwarded to process {}", p.pid);
        } else {
            log_info!(
                "received {name}: forwarded to process {}; waiting up to {} for it to exit",
                p.pid,
                format_go_duration(self.cfg.stop_timeout)
            );
            self.stop = Some(Stop {
                signal: sig,
                deadline: Instant::now() + self.cfg.stop_timeout,
                killed: false,
            });
            // A stop request cancels a pending restart.
            self.restart_at = None;
        }
        None
    }

    fn on_hup(&mut self) {
        match &self.proc {
            Some(p) => {
                send(p.pid, Signal::SIGHUP);
                log_info!("received SIGHUP: forwarded to process {}", p.pid);
            }
            None => log_info!("received SIGHUP: no process to forward it to"),
        }
    }

    /// The process ignored the forwarded signal for `-stop-timeout`: SIGKILL its group.
    fn kill_now(&mut self) {
        if let (Some(p), Some(stop)) = (&self.proc, &mut self.stop) {
            log_warn!(
                "process {} did not exit within {} of {}; sending SIGKILL",
                p.pid,
                format_go_duration(self.cfg.stop_timeout),
                stop.signal.as_str()
            );
            // The whole group: helpers the process started would otherwise survive it.
            send_group(p.pid, Signal::SIGKILL);
            stop.killed = true;
        }
    }

    /// Beside mode: checks the watched PID; returns the exit code when it is gone.
    fn poll_pid(&mut self) -> Option<i32> {
        let Target::Pid(pid) = self.cfg.target else {
            return None;
        };
        if pid_alive(pid) {
            self.next_pid_poll = Instant::now() + self.cfg.interval.min(PID_POLL);
            return None;
        }
        self.pid_gone = true;
        log_warn!("process {pid} is gone");
        // The watched process ending is the normal end of beside mode.
        Some(0)
    }

    /// Stops feeding the check, deregisters the service and returns `code`.
    async fn finish(mut self, code: i32) -> ExitCode {
        if let Some(t) = self.probe_task.take() {
            t.abort();
        }
        // Stop feeding the check, letting a call in flight finish (so no registration can
        // land after the deregistration below); abort only if the agent hangs.
        let _ = self.stop_reporter.send(true);
        if let Some(mut r) = self.reporter.take()
            && tokio::time::timeout(REPORTER_STOP, &mut r).await.is_err()
        {
            r.abort();
            let _ = r.await;
        }
        if let Some(mut p) = self.proc.take() {
            send_group(p.pid, Signal::SIGKILL);
            let _ = p.child.wait().await;
        }
        let mut done = false;
        for attempt in 1..=DEREGISTER_ATTEMPTS {
            match report::deregister(&self.client, &self.cfg.id).await {
                Ok(()) => {
                    log_info!(
                        "deregistered service {:?} (ID {:?})",
                        self.cfg.name,
                        self.cfg.id
                    );
                    done = true;
                    break;
                }
                Err(e) => {
                    log_warn!(
                        "deregistering service {:?} failed (attempt {attempt} of {DEREGISTER_ATTEMPTS}): {e}",
                        self.cfg.id
                    );
                    if attempt < DEREGISTER_ATTEMPTS {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        if !done {
            let reap = match self.cfg.deregister_after {
                Some(d) => format!(", and remove it {} later", format_go_duration(d)),
                None => String::new(),
            };
            log_warn!(
                "service {:?} is still registered: the agent will mark it critical when its TTL ({}) runs out{reap}",
                self.cfg.id,
                format_go_duration(self.cfg.ttl)
            );
        }
        log_info!("exiting with code {code}");
        // Exit codes are 8 bits, as the shell sees them.
        ExitCode::from(u8::try_from(code.rem_euclid(256)).unwrap_or(1))
    }
}
