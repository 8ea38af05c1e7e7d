//! Unit tests of the sidecar's pure parts (flags, registration body, verdict, backoff,
//! restart policy, exit codes) and of the probes against local targets.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::config::{Config, Restart, Target};
use super::probe::{Outcome, Probe, Prober, Status, exit_status, http_status, truncate};
use super::supervise::{Backoff, Liveness, describe_exit, exit_code, pid_alive, verdict};
use super::{SPEC, config};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The configuration `a` parses to, or the error it is refused with.
fn config(a: &[&str]) -> Result<Config, String> {
    let p = SPEC.parse(&args(a)).expect("flags parse");
    Config::from_flags(&p)
}

/// Writes a file in a per-process temporary directory; its path.
fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("cairn-sidecar-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

/// The registration body carries the flags' fields and the TTL check first, with its
/// status, TTL and deregistration delay.
#[test]
fn flags_build_the_registration() {
    let c = config(&[
        "-name",
        "web",
        "-id",
        "web-1",
        "-port",
        "8080",
        "-address",
        "10.0.0.5",
        "-tag",
        "v1",
        "-tag=blue",
        "-meta",
        "team=core",
        "-ttl",
        "6s",
        "-deregister-critical-after",
        "90m",
        "--",
        "python3",
        "-m",
        "http.server",
    ])
    .expect("config");
    assert_eq!(c.id, "web-1");
    // A third of the 6s TTL; the probe timeout defaults to the interval.
    assert_eq!(c.interval, Duration::from_secs(2));
    assert_eq!(c.timeout, Duration::from_secs(2));
    assert_eq!(
        c.target,
        Target::Command(args(&["python3", "-m", "http.server"]))
    );
    assert_eq!(c.restart, Restart::Never);
    let body = c.registration(Status::Critical);
    assert_eq!(body["Name"], "web");
    assert_eq!(body["ID"], "web-1");
    assert_eq!(body["Port"], 8080);
    assert_eq!(body["Address"], "10.0.0.5");
    assert_eq!(body["Tags"], json!(["v1", "blue"]));
    assert_eq!(body["Meta"], json!({"team": "core"}));
    let checks = body["Checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["CheckID"], "service:web-1");
    assert_eq!(checks[0]["TTL"], "6s");
    assert_eq!(checks[0]["Status"], "critical");
    // Sent as Go formats durations, which the agent parses back.
    assert_eq!(checks[0]["DeregisterCriticalServiceAfter"], "1h30m0s");
}

/// The defaults derived from other settings.
#[test]
fn id_defaults_to_name_and_intervals_to_a_third_of_the_ttl() {
    let c = config(&["-name", "api", "-health-tcp", "127.0.0.1:1"]).expect("config");
    assert_eq!(c.id, "api");
    assert_eq!(c.check_id(), "service:api");
    assert_eq!(c.ttl, config::DEFAULT_TTL);
    // A third of the default 10s, cut to the millisecond.
    assert_eq!(c.interval, Duration::from_millis(3333));
    assert_eq!(c.target, Target::Endpoint);
    assert_eq!(c.registration(Status::Warning)["ID"], "api");
    assert!(
        c.registration(Status::Warning)["Checks"][0]
            .get("DeregisterCriticalServiceAfter")
            .is_none()
    );
}

/// A service file gives the base; flags override scalars, add tags and merge meta; the
/// file's checks follow the sidecar's.
#[test]
fn service_file_with_flags_on_top() {
    let file = temp_file(
        "svc.json",
        r#"{"service": {"name": "db", "id": "db-a", "port": 5432, "tags": ["primary"],
            "meta": {"a": "1"},
            "check": {"tcp": "127.0.0.1:5432", "interval": "10s"}}}"#,
    );
    let c = config(&[
        "-service-file",
        &file,
        "-id",
        "db-b",
        "-tag",
        "extra",
        "-meta",
        "b=2",
        "-pid",
        "1",
    ])
    .expect("config");
    assert_eq!(c.name, "db");
    assert_eq!(c.id, "db-b");
    assert_eq!(c.target, Target::Pid(1));
    let body = c.registration(Status::Passing);
    assert_eq!(body["ID"], "db-b");
    assert!(body.get("id").is_none(), "the file's spelling is replaced");
    // A field no flag touches keeps the file's spelling.
    assert_eq!(body["port"], 5432);
    assert_eq!(body["Tags"], json!(["primary", "extra"]));
    assert_eq!(body["Meta"], json!({"a": "1", "b": "2"}));
    let checks = body["Checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2, "the sidecar's check and the file's");
    assert_eq!(checks[0]["CheckID"], "service:db-b");
    assert_eq!(checks[1]["tcp"], "127.0.0.1:5432");
    assert!(body.get("check").is_none());

    let hcl = temp_file(
        "svc.hcl",
        "service {\n  name = \"cache\"\n  port = 6379\n}\n",
    );
    let c = config(&["-service-file", &hcl, "--", "true"]).expect("hcl");
    assert_eq!(c.id, "cache");

    let two = temp_file(
        "two.json",
        r#"{"services": [{"name": "a"}, {"name": "b"}]}"#,
    );
    assert!(
        config(&["-service-file", &two, "--", "true"])
            .expect_err("two services")
            .contains("exactly one")
    );
}

/// Each inconsistent combination is refused before anything starts.
#[test]
fn bad_flags_are_refused() {
    let err = |a: &[&str]| config(a).expect_err("should fail");
    assert!(err(&["--", "true"]).contains("Missing service name"));
    assert!(err(&["-name", "x"]).contains("Nothing to watch"));
    assert!(err(&["-name", "x", "-pid", "1", "--", "true"]).contains("cannot be combined"));
    assert!(err(&["-name", "x", "-pid", "0"]).contains("invalid -pid"));
    // A duration needs a unit, as in Go.
    assert!(err(&["-name", "x", "-ttl", "10", "--", "true"]).contains("invalid duration"));
    assert!(err(&["-name", "x", "-ttl", "0s", "--", "true"]).contains("-ttl"));
    assert!(
        err(&["-name", "x", "-ttl", "5s", "-interval", "5s", "--", "true"])
            .contains("shorter than -ttl")
    );
    assert!(err(&["-name", "x", "-restart", "sometimes", "--", "true"]).contains("-restart"));
    assert!(
        // Nothing to restart without a command.
        err(&["-name", "x", "-restart", "always", "-health-tcp", "h:1"])
            .contains("needs a command")
    );
    assert!(err(&["-name", "x", "-port", "70000", "--", "true"]).contains("-port"));
    assert!(
        err(&[
            "-name",
            "x",
            "-health-url",
            "http://a/",
            "-health-tcp",
            "a:1"
        ])
        .contains("Only one")
    );
    assert!(err(&["-name", "x", "-health-url", "ftp://a/"]).contains("unsupported scheme"));
    assert!(err(&["-name", "x", "-health-url", "not a url"]).contains("-health-url"));
    assert!(err(&["-name", "x", "-health-tcp", "nohost"]).contains("host:port"));
}

/// Which exits each policy restarts after.
#[test]
fn restart_policies() {
    assert!(!Restart::Never.wants(false));
    assert!(!Restart::Never.wants(true));
    assert!(Restart::OnFailure.wants(false));
    assert!(!Restart::OnFailure.wants(true));
    assert!(Restart::Always.wants(true));
    assert!(Restart::Always.wants(false));
}

/// The restart delays double, stop at the cap, and start over after a reset.
#[test]
fn backoff_doubles_up_to_the_cap_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
    let seq: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
    assert_eq!(seq, vec![500, 1000, 2000, 3000, 3000]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_millis(500));
    // A zero delay does not spin.
    let mut z = Backoff::new(Duration::ZERO, Duration::from_secs(30));
    assert_eq!(z.next_delay(), Duration::ZERO);
    assert_eq!(z.next_delay(), Duration::from_millis(100));
    assert_eq!(z.next_delay(), Duration::from_millis(200));
}

/// A probe result.
fn outcome(status: Status, output: &str) -> Outcome {
    Outcome {
        status,
        output: output.to_string(),
    }
}

/// Liveness first, then the probe, with the grace period softening failures to warning.
#[test]
fn verdicts() {
    let up = Liveness::Up("process 7 running".into());
    let down = Liveness::Down("process 7 exited with code 1".into());
    let bad = outcome(Status::Critical, "HTTP GET x: 500");
    let good = outcome(Status::Passing, "HTTP GET x: 200 OK");
    let grace = Some(Duration::from_secs(5));

    let v = verdict(&down, true, Some(&good), None);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(v.output, "process 7 exited with code 1");

    let v = verdict(&up, false, None, None);
    assert_eq!(
        (v.status, v.output.as_str()),
        (Status::Passing, "process 7 running")
    );

    assert_eq!(verdict(&up, true, None, None).status, Status::Critical);
    assert_eq!(verdict(&up, true, None, grace).status, Status::Warning);

    let v = verdict(&up, true, Some(&bad), None);
    assert_eq!(
        (v.status, v.output.as_str()),
        (Status::Critical, "HTTP GET x: 500")
    );
    let v = verdict(&up, true, Some(&bad), grace);
    assert_eq!(v.status, Status::Warning);
    assert!(v.output.contains("grace period") && v.output.contains("500"));

    assert_eq!(
        verdict(&up, true, Some(&good), grace).status,
        Status::Passing
    );
    let warn = outcome(Status::Warning, "429");
    assert_eq!(
        verdict(&up, true, Some(&warn), None).status,
        Status::Warning
    );
    // A grace period never hides a dead process.
    assert_eq!(verdict(&down, true, None, grace).status, Status::Critical);
}

/// Consul's HTTP and exit-code mappings, and the output cap.
#[test]
fn status_mappings() {
    assert_eq!(http_status(200), Status::Passing);
    assert_eq!(http_status(204), Status::Passing);
    assert_eq!(http_status(429), Status::Warning);
    assert_eq!(http_status(301), Status::Critical);
    assert_eq!(http_status(500), Status::Critical);
    assert_eq!(exit_status(Some(0)), Status::Passing);
    assert_eq!(exit_status(Some(1)), Status::Warning);
    assert_eq!(exit_status(Some(2)), Status::Critical);
    assert_eq!(exit_status(None), Status::Critical);
    let long = "é".repeat(3000);
    let cut = truncate(long);
    assert!(cut.len() <= super::probe::OUTPUT_MAX);
    assert!(cut.chars().all(|c| c == 'é'));
}

/// An exit code passes through; a death by signal gives 128 + the signal.
#[test]
fn exit_codes_like_a_shell() {
    let exited = ExitStatus::from_raw(3 << 8);
    assert_eq!(exit_code(exited), 3);
    assert_eq!(describe_exit(exited), "exited with code 3");
    let killed = ExitStatus::from_raw(9);
    assert_eq!(exit_code(killed), 137);
    assert_eq!(describe_exit(killed), "was killed by SIGKILL");
}

/// This process is alive; a PID far above the kernel's limit is not.
#[test]
fn own_pid_is_alive() {
    assert!(pid_alive(std::process::id()));
    assert!(!pid_alive(0x7fff_fff0));
}

/// A one-shot-per-connection HTTP responder on loopback answering `status` and `body`.
async fn http_target(status: u16, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/health")
}

/// Status classes and the output line of the HTTP probe.
#[tokio::test]
async fn http_probe() {
    let prober = Prober::new(Duration::from_secs(2)).expect("prober");
    let url = http_target(200, "all good\n").await;
    let o = prober.run(&Probe::Http(url.clone())).await;
    assert_eq!(o.status, Status::Passing);
    assert_eq!(o.output, format!("HTTP GET {url}: 200 OK Output: all good"));

    let url = http_target(429, "slow down").await;
    assert_eq!(prober.run(&Probe::Http(url)).await.status, Status::Warning);
    let url = http_target(503, "down").await;
    let o = prober.run(&Probe::Http(url)).await;
    assert_eq!(o.status, Status::Critical);
    assert!(
        o.output.contains("503") && o.output.ends_with("down"),
        "{o:?}"
    );
    // Redirects are not followed.
    let url = http_target(302, "").await;
    assert_eq!(prober.run(&Probe::Http(url)).await.status, Status::Critical);

    let port = free_port().await;
    let o = prober
        .run(&Probe::Http(format!("http://127.0.0.1:{port}/")))
        .await;
    assert_eq!(o.status, Status::Critical);
    assert!(o.output.starts_with("Get "), "{o:?}");
}

/// A loopback port with nothing listening (bound, then released).
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

/// A listening port passes, a closed one is critical.
#[tokio::test]
async fn tcp_probe() {
    let prober = Prober::new(Duration::from_secs(2)).expect("prober");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let o = prober.run(&Probe::Tcp(addr.clone())).await;
    assert_eq!(o.status, Status::Passing);
    assert_eq!(o.output, format!("TCP connect {addr}: Success"));
    drop(listener);
    let o = prober.run(&Probe::Tcp(addr)).await;
    assert_eq!(o.status, Status::Critical);
    assert!(o.output.starts_with("dial tcp"), "{o:?}");
}

/// Exit codes map to statuses, the output is kept, and a timeout kills the command.
#[tokio::test]
async fn cmd_probe() {
    let prober = Prober::new(Duration::from_secs(2)).expect("prober");
    let o = prober.run(&Probe::Cmd("echo fine".into())).await;
    assert_eq!((o.status, o.output.as_str()), (Status::Passing, "fine"));
    let o = prober.run(&Probe::Cmd("echo meh >&2; exit 1".into())).await;
    assert_eq!((o.status, o.output.as_str()), (Status::Warning, "meh"));
    let o = prober.run(&Probe::Cmd("exit 2".into())).await;
    assert_eq!(o.status, Status::Critical);
    assert_eq!(o.output, "health command exited with code 2");

    let quick = Prober::new(Duration::from_millis(300)).expect("prober");
    let started = std::time::Instant::now();
    let o = quick.run(&Probe::Cmd("sleep 5".into())).await;
    assert_eq!(o.status, Status::Critical);
    assert!(o.output.starts_with("Timed out"), "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The help shows the sidecar's own flags and the shared HTTP ones.
#[test]
fn help_lists_the_flags() {
    let help = SPEC.help();
    for flag in [
        "-health-url=<url>",
        "-restart=<policy>",
        "-service-file=<path>",
        "-http-addr=<address>",
    ] {
        assert!(help.contains(flag), "{flag} missing in help");
    }
}
