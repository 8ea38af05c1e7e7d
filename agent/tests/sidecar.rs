//! `cairn sidecar` end to end with real processes: a dev agent per test (see `common`), the
//! sidecar binary, and the example service of `examples/sidecar/service.py` (python3) or
//! plain shell commands as the supervised child. Each test runs under a 30 s bound; the
//! sidecar is stopped with SIGTERM (then SIGKILL) when its handle is dropped, and it stops
//! its child in turn.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Agent, eventually, free_port};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The bound of every test.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a state change may take to show in the agent.
const CHANGE: Duration = Duration::from_secs(10);

/// The example service the README runs.
fn example_service() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sidecar/service.py")
}

/// Runs a test body under [`TEST_TIMEOUT`].
async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test took longer than its 30 s bound");
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("cairn-sidecar-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `cairn sidecar`, its stderr in a log file.
struct Sidecar {
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl Sidecar {
    /// Starts `cairn sidecar -http-addr <addr> args...`.
    fn start(addr: &str, args: &[&str]) -> Sidecar {
        let dir = TempDir::new();
        let log = dir.path("sidecar.log");
        let file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("sidecar")
            .arg("-http-addr")
            .arg(addr)
            .args(args)
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CAIRN_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn cairn sidecar");
        Sidecar {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    fn pid(&self) -> Pid {
        let id = self.child.as_ref().map_or(0, Child::id);
        Pid::from_raw(i32::try_from(id).expect("pid fits"))
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal the sidecar");
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("query sidecar status"))
    }

    /// Waits for the sidecar to exit, failing after `timeout`.
    async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "sidecar still running after {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`.
    async fn logged(&self, text: &str) {
        eventually(&format!("{text:?} in the sidecar log"), CHANGE, || async {
            self.log().contains(text).then_some(())
        })
        .await;
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                // SIGTERM lets it stop its child and deregister; SIGKILL if it hangs.
                let pid = Pid::from_raw(i32::try_from(c.id()).unwrap_or(0));
                let _ = kill(pid, Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- sidecar log ----\n{}", self.log());
        }
    }
}

/// The agent's view of a check (`Null` when absent).
async fn check(agent: &Agent, id: &str) -> Value {
    agent.check(id).await
}

/// Waits until check `id` has `status`; returns it.
async fn wait_status(agent: &Agent, id: &str, status: &str) -> Value {
    eventually(&format!("{id} {status}"), CHANGE, || async {
        let c = check(agent, id).await;
        (c["Status"] == status).then_some(c)
    })
    .await
}

/// Waits until the service is gone from the agent and the catalog.
async fn wait_gone(agent: &Agent, id: &str, name: &str) {
    eventually(&format!("{id} deregistered"), CHANGE, || async {
        let local = agent.get("/v1/agent/services").await.body;
        let health = agent.get(&format!("/v1/health/service/{name}")).await.body;
        (local.get(id).is_none() && health == Value::Array(vec![])).then_some(())
    })
    .await;
}

/// The `pid=N` the example service puts in its health output.
fn pid_in(output: &Value) -> i32 {
    let s = output.as_str().unwrap_or_default();
    let n = s
        .split("pid=")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .unwrap_or_default();
    n.parse()
        .unwrap_or_else(|_| panic!("no pid in check output {s:?}"))
}

#[tokio::test]
async fn passing_then_critical_then_deregistered_on_sigterm() {
    bounded(async {
        let agent = Agent::start().await;
        let port = free_port().to_string();
        let tmp = TempDir::new();
        let down = tmp.path("down");
        let url = format!("http://127.0.0.1:{port}/health");
        let script = example_service();
        let mut sidecar = Sidecar::start(
            &agent.base,
            &[
                "-name",
                "web",
                "-id",
                "web-1",
                "-port",
                &port,
                "-tag",
                "v1",
                "-meta",
                "team=core",
                "-ttl",
                "3s",
                "-health-url",
                &url,
                "--",
                "python3",
                script.to_str().expect("utf-8 path"),
                &port,
                down.to_str().expect("utf-8 path"),
            ],
        );

        // Registered and passing, visible in the health endpoint with its tags and meta.
        let healthy = eventually("web passing", CHANGE, || async {
            let r = agent.get("/v1/health/service/web?passing").await.body;
            (r.as_array().is_some_and(|a| a.len() == 1)).then_some(r)
        })
        .await;
        assert_eq!(healthy[0]["Service"]["ID"], "web-1");
        assert_eq!(healthy[0]["Service"]["Tags"], serde_json::json!(["v1"]));
        assert_eq!(healthy[0]["Service"]["Meta"]["team"], "core");
        let c = check(&agent, "service:web-1").await;
        assert_eq!(c["Type"], "ttl");
        assert!(
            c["Output"]
                .as_str()
                .is_some_and(|o| o.contains("200 OK Output: ok pid=")),
            "{c}"
        );

        // The health endpoint fails: critical, with the endpoint's answer as the output.
        std::fs::write(&down, b"").expect("create the fail file");
        let c = wait_status(&agent, "service:web-1", "critical").await;
        let out = c["Output"].as_str().unwrap_or_default();
        assert!(out.contains("500") && out.contains("failing"), "{c}");
        std::fs::remove_file(&down).expect("remove the fail file");
        wait_status(&agent, "service:web-1", "passing").await;

        // SIGHUP reaches the child; the sidecar keeps running.
        sidecar.signal(Signal::SIGHUP);
        sidecar.logged("received SIGHUP, reloading").await;
        assert!(sidecar.try_wait().is_none());

        // SIGTERM: forwarded, the child exits 0, the service is deregistered.
        sidecar.signal(Signal::SIGTERM);
        assert_eq!(sidecar.exit_code(CHANGE).await, 0);
        let log = sidecar.log();
        assert!(log.contains("received SIGTERM, shutting down"), "{log}");
        assert!(log.contains("deregistered service"), "{log}");
        wait_gone(&agent, "web-1", "web").await;
    })
    .await;
}

#[tokio::test]
async fn restarts_on_failure_then_gives_up() {
    bounded(async {
        let agent = Agent::start().await;
        let port = free_port().to_string();
        let url = format!("http://127.0.0.1:{port}/health");
        let script = example_service();
        let mut sidecar = Sidecar::start(
            &agent.base,
            &[
                "-name",
                "api",
                "-ttl",
                "3s",
                "-health-url",
                &url,
                "-restart",
                "on-failure",
                "-restart-delay",
                "200ms",
                "-max-restarts",
                "1",
                "--",
                "python3",
                script.to_str().expect("utf-8 path"),
                &port,
            ],
        );
        let first = pid_in(&wait_status(&agent, "service:api", "passing").await["Output"]);

        // Killed: restarted, and passing again with a new process.
        kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill the child");
        let second = eventually("a restarted child passing", CHANGE, || async {
            let c = check(&agent, "service:api").await;
            if c["Status"] != "passing" {
                return None;
            }
            let pid = pid_in(&c["Output"]);
            (pid != first).then_some(pid)
        })
        .await;
        assert!(sidecar.try_wait().is_none(), "the sidecar keeps running");
        assert!(
            sidecar
                .log()
                .contains("restarting in 200ms (restart 1 of 1)")
        );

        // Killed again: -max-restarts is reached, the sidecar exits with 128 + SIGKILL.
        kill(Pid::from_raw(second), Signal::SIGKILL).expect("kill the child");
        assert_eq!(sidecar.exit_code(CHANGE).await, 137);
        assert!(sidecar.log().contains("giving up after 1 restart(s)"));
        wait_gone(&agent, "api", "api").await;
    })
    .await;
}

#[tokio::test]
async fn exits_with_the_command_exit_code() {
    bounded(async {
        let agent = Agent::start().await;
        let tmp = TempDir::new();
        let go = tmp.path("go");
        let script = format!(
            "while [ ! -e '{}' ]; do sleep 0.05; done; exit 7",
            go.display()
        );
        let mut sidecar = Sidecar::start(
            &agent.base,
            &["-name", "job", "-ttl", "3s", "--", "sh", "-c", &script],
        );
        // Without a probe, a running process is passing.
        let c = wait_status(&agent, "service:job", "passing").await;
        assert!(
            c["Output"]
                .as_str()
                .is_some_and(|o| o.starts_with("process ") && o.ends_with(" running")),
            "{c}"
        );
        std::fs::write(&go, b"").expect("create the go file");
        assert_eq!(sidecar.exit_code(CHANGE).await, 7);
        assert!(sidecar.log().contains("exited with code 7; not restarting"));
        wait_gone(&agent, "job", "job").await;
    })
    .await;
}

/// A TCP proxy in front of an agent whose target can change (or refuse connections), to
/// stand for an agent that goes away and comes back at the same address.
struct Proxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let upstream: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let target = Arc::clone(&upstream);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *target.lock().expect("proxy lock");
                let Some(to) = to else {
                    drop(inbound);
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            upstream,
            task,
        }
    }

    fn point_at(&self, agent: Option<&Agent>) {
        let to = agent.map(|a| SocketAddr::from(([127, 0, 0, 1], a.http_port)));
        *self.upstream.lock().expect("proxy lock") = to;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn registers_when_the_agent_comes_and_again_after_it_restarts() {
    bounded(async {
        let proxy = Proxy::start().await;
        let addr = format!("http://{}", proxy.addr);
        let sidecar = Sidecar::start(
            &addr,
            &["-name", "cache", "-ttl", "3s", "--", "sleep", "60"],
        );
        // No agent yet: the child runs anyway and registration is retried.
        sidecar.logged("cannot reach the agent").await;
        sidecar.logged("started process").await;

        let first = Agent::start().await;
        proxy.point_at(Some(&first));
        wait_status(&first, "service:cache", "passing").await;

        // The agent goes away and a new one (empty, as a restarted -dev agent) takes its place.
        // The sidecar notices through a failed update, or a failed registration when the agent
        // died before answering it.
        let failures = |log: String| log.matches(" failed").count();
        let before = failures(sidecar.log());
        drop(first);
        proxy.point_at(None);
        eventually("a failure logged after the agent left", CHANGE, || async {
            (failures(sidecar.log()) > before).then_some(())
        })
        .await;
        let second = Agent::start().await;
        proxy.point_at(Some(&second));
        wait_status(&second, "service:cache", "passing").await;

        // Removed behind the sidecar's back: registered again at the next update.
        second
            .put_empty("/v1/agent/service/deregister/cache")
            .await
            .expect_status(200);
        wait_status(&second, "service:cache", "passing").await;
        sidecar.logged("the agent lost check").await;
    })
    .await;
}

#[tokio::test]
async fn beside_mode_watches_a_pid_and_an_endpoint() {
    bounded(async {
        let agent = Agent::start().await;

        // -pid: passing while the process lives; when it is gone, deregistered and exit 0.
        let mut watched = Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let pid = watched.id().to_string();
        let mut by_pid = Sidecar::start(
            &agent.base,
            &["-name", "legacy", "-pid", &pid, "-ttl", "3s"],
        );
        let c = wait_status(&agent, "service:legacy", "passing").await;
        assert_eq!(c["Output"], format!("process {pid} running"));
        let _ = watched.kill();
        let _ = watched.wait();
        assert_eq!(by_pid.exit_code(CHANGE).await, 0);
        wait_gone(&agent, "legacy", "legacy").await;

        // Endpoint only: follows a TCP listener; SIGINT stops the sidecar.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().expect("addr").to_string();
        let mut by_tcp = Sidecar::start(
            &agent.base,
            &["-name", "db", "-health-tcp", &target, "-ttl", "3s"],
        );
        let c = wait_status(&agent, "service:db", "passing").await;
        assert_eq!(c["Output"], format!("TCP connect {target}: Success"));
        drop(listener);
        wait_status(&agent, "service:db", "critical").await;
        by_tcp.signal(Signal::SIGINT);
        assert_eq!(by_tcp.exit_code(CHANGE).await, 0);
        wait_gone(&agent, "db", "db").await;
    })
    .await;
}

#[tokio::test]
async fn grace_period_then_critical() {
    bounded(async {
        let agent = Agent::start().await;
        let _sidecar = Sidecar::start(
            &agent.base,
            &[
                "-name",
                "slow",
                "-ttl",
                "3s",
                "-grace",
                "3s",
                "-health-cmd",
                "echo not ready; exit 2",
                "--",
                "sleep",
                "60",
            ],
        );
        let started = Instant::now();
        let c = eventually("a failed probe within the grace period", CHANGE, || async {
            let c = check(&agent, "service:slow").await;
            let probed = c["Output"]
                .as_str()
                .is_some_and(|o| o.contains("not ready"));
            probed.then_some(c)
        })
        .await;
        assert_eq!(c["Status"], "warning", "{c}");
        assert!(
            c["Output"]
                .as_str()
                .is_some_and(|o| o.contains("grace period")),
            "{c}"
        );
        let c = wait_status(&agent, "service:slow", "critical").await;
        assert_eq!(c["Output"], "not ready");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "grace honoured"
        );
    })
    .await;
}

#[tokio::test]
async fn refused_starts() {
    bounded(async {
        let agent = Agent::start().await;
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
                .arg("sidecar")
                .arg("-http-addr")
                .arg(&agent.base)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run cairn sidecar");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };

        let (code, err) = run(&["-name", "x"]);
        assert_eq!(code, 1);
        assert!(err.contains("Nothing to watch"), "{err}");

        // A command that does not exist: 127, as a shell, and nothing left registered.
        let (code, err) = run(&["-name", "ghost", "--", "/nonexistent/cairn-test-binary"]);
        assert_eq!(code, 127, "{err}");
        assert!(err.contains("cannot start"), "{err}");
        assert!(agent.get("/v1/agent/services").await.body.get("ghost").is_none());

        // A definition the agent refuses: exit 1 before anything starts.
        let tmp = TempDir::new();
        let file = tmp.path("bad.json");
        std::fs::write(
            &file,
            r#"{"service": {"name": "bad", "checks": [{"http": "http://x/", "interval": "soon"}]}}"#,
        )
        .expect("write file");
        let (code, err) = run(&[
            "-service-file",
            file.to_str().expect("utf-8 path"),
            "--",
            "sleep",
            "60",
        ]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("Error registering service"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn sigterm_while_waiting_to_restart() {
    bounded(async {
        let agent = Agent::start().await;
        let mut sidecar = Sidecar::start(
            &agent.base,
            &[
                "-name",
                "cron",
                "-ttl",
                "3s",
                "-restart",
                "always",
                "-restart-delay",
                "20s",
                "--",
                "sh",
                "-c",
                "exit 3",
            ],
        );
        // The command ended at once; the check says when it comes back.
        let c = eventually("the restart delay in the check", CHANGE, || async {
            let c = check(&agent, "service:cron").await;
            let waiting = c["Output"]
                .as_str()
                .is_some_and(|o| o.contains("exited with code 3; restarting in 20s"));
            waiting.then_some(c)
        })
        .await;
        assert_eq!(c["Status"], "critical");
        // A stop signal during the delay: no restart, exit with the last exit code.
        sidecar.signal(Signal::SIGTERM);
        assert_eq!(sidecar.exit_code(CHANGE).await, 3);
        wait_gone(&agent, "cron", "cron").await;
    })
    .await;
}
