//! Tests on a real Docker Engine: the image `docker/build` makes, a dev container reached from
//! the host, the compose cluster of docker/compose.yml under faults (a killed leader, a paused
//! server, a client cut off its network, SIGTERM, a restart of everything), the federation
//! compose file, and Docker health checks run through the engine's API.
//!
//! The image is built once per test process, from the binary under test (`docker/build` with
//! `CAIRN_BINARY`; that debug binary is dynamically linked, so its libraries go into the image,
//! where the shipped build puts a static release binary instead) and tagged with the process
//! ID. Every container, network and volume a test creates has a name unique to the run and is
//! removed by a guard when the test ends, failed or not; images left behind by a run that was
//! killed are removed by the next run. The host talks to containers only through ports
//! published on 127.0.0.1.
//!
//! Docker is required: without a reachable engine these tests fail, saying so.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Agent;

/// Serf's member states as `/v1/agent/members` reports them.
const ALIVE: u64 = 1;
const LEFT: u64 = 3;
const FAILED: u64 = 4;

/// How long a cluster may take to form, or to settle after a fault.
const SETTLE: Duration = Duration::from_secs(90);
/// Upper bound of one docker command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(180);

/// The tests of this file that use the image: the last one to finish removes it.
const IMAGE_USERS: usize = 4;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A prefix unique to this test process, for every name it gives the engine (lowercase
/// letters and digits, as compose project names need).
fn run_id() -> String {
    format!("cairntest{}", std::process::id())
}

/// Runs a program to its end (bounded); its stdout, or why it failed.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let pid = child.id();
    // A watchdog kills a command that hangs (an engine that stopped answering).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(DOCKER_TIMEOUT).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    let out = child.wait_with_output();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let out = out.map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `docker <args>` from a blocking thread.
async fn docker(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run("docker", &a, &[])
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `docker <args>`, which must succeed.
async fn docker_ok(args: &[&str]) -> String {
    match docker(args).await {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// The compose tool: `docker compose` (v2) when the CLI has it, else `docker-compose` (v1).
fn compose_cmd() -> (&'static str, &'static [&'static str]) {
    static V2: OnceLock<bool> = OnceLock::new();
    if *V2.get_or_init(|| run("docker", &["compose", "version"], &[]).is_ok()) {
        ("docker", &["compose"])
    } else {
        ("docker-compose", &[])
    }
}

/// The image under test, built on first use; counts its users so the last one removes it.
struct ImageUse {
    tag: &'static str,
}

impl ImageUse {
    fn get() -> ImageUse {
        static TAG: OnceLock<Result<String, String>> = OnceLock::new();
        let tag = TAG.get_or_init(build_image);
        match tag {
            Ok(tag) => ImageUse { tag },
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for ImageUse {
    fn drop(&mut self) {
        static DONE: AtomicUsize = AtomicUsize::new(0);
        if DONE.fetch_add(1, Ordering::SeqCst) + 1 == IMAGE_USERS {
            let _ = run("docker", &["rmi", "-f", self.tag], &[]);
        }
    }
}

/// Checks the engine, removes images of earlier runs that are gone, and builds this run's
/// image with `docker/build`.
fn build_image() -> Result<String, String> {
    run("docker", &["version", "-f", "{{.Server.Version}}"], &[]).map_err(|e| {
        format!("these tests need a Docker Engine (the project's machines and CI have one): {e}")
    })?;
    // Images of test runs whose process no longer exists (killed before cleaning up).
    if let Ok(list) = run(
        "docker",
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
        &[],
    ) {
        for image in list.lines() {
            let Some(pid) = image
                .strip_prefix("cairn-test-")
                .and_then(|r| r.split(':').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run("docker", &["rmi", "-f", image], &[]);
            }
        }
    }
    let tag = format!("cairn-test-{}:latest", std::process::id());
    let started = Instant::now();
    run(
        "docker/build",
        &[&tag],
        &[("CAIRN_BINARY", env!("CARGO_BIN_EXE_cairn"))],
    )?;
    eprintln!("image {tag} built in {:?}", started.elapsed());
    Ok(tag)
}

/// A container removed (with its anonymous volumes) when dropped.
struct Container {
    name: String,
}

impl Container {
    async fn run(name: &str, args: &[&str]) -> Container {
        let c = Container {
            name: format!("{}-{name}", run_id()),
        };
        let mut all = vec!["run", "-d", "--name", c.name.as_str()];
        all.extend_from_slice(args);
        docker_ok(&all).await;
        c
    }

    async fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.name]).await
    }

    async fn logs(&self) -> String {
        docker(&["logs", "--tail", "40", &self.name])
            .await
            .unwrap_or_else(|e| e)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run("docker", &["rm", "-f", "-v", &self.name], &[]);
    }
}

/// How to run the compose tool on one project.
#[derive(Clone)]
struct Compose {
    name: String,
    file: String,
    env: Vec<(String, String)>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let (prog, pre) = compose_cmd();
        let mut all: Vec<&str> = pre.to_vec();
        all.extend_from_slice(&["-p", &self.name, "-f", &self.file]);
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run(prog, &all, &env)
    }
}

/// A compose project, taken down with its networks and volumes when dropped.
struct Project(Compose);

impl Project {
    async fn up(suffix: &str, file: &str, env: &[(&str, String)]) -> Project {
        let p = Project(Compose {
            name: format!("{}{suffix}", run_id()),
            file: file.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        });
        p.compose(&["up", "-d"])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    async fn compose(&self, args: &[&str]) -> Result<String, String> {
        let c = self.0.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            c.run(&a)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The container ID of a service.
    async fn id(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The project's default network.
    fn network(&self) -> String {
        format!("{}_default", self.0.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // A failed test shows what the agents said.
        if std::thread::panicking()
            && let Ok(logs) = self.0.run(&["logs", "--no-color", "--tail", "40"])
        {
            eprintln!("--- logs of {} ---\n{logs}", self.0.name);
        }
        let _ = self.0.run(&["down", "-v", "--remove-orphans", "-t", "2"]);
    }
}

/// A port free for TCP and UDP on loopback a moment ago.
fn free_port() -> u16 {
    loop {
        let p = common::free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Polls `f` every 250 ms until it returns `Some`, failing after `within` with `what`.
async fn poll<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A small HTTP client for the published ports.
fn http() -> reqwest::Client {
    // reqwest needs the process's rustls provider even for plain HTTP (Cairn's: ring).
    cairn::tls::install_default_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

/// GET as JSON; None on any failure.
async fn get_json(api: &str, path: &str) -> Option<Value> {
    let r = http().get(format!("{api}{path}")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Members by name and status, as one agent sees them.
async fn members(api: &str) -> Option<BTreeMap<String, u64>> {
    let v = get_json(api, "/v1/agent/members").await?;
    Some(
        v.as_array()?
            .iter()
            .filter_map(|m| Some((m["Name"].as_str()?.to_string(), m["Status"].as_u64()?)))
            .collect(),
    )
}

/// Waits until `pred` holds for the members `api`'s agent sees.
async fn wait_members(
    api: &str,
    what: &str,
    pred: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> BTreeMap<String, u64> {
    let mut last = BTreeMap::new();
    let r = tokio::time::timeout(SETTLE, async {
        loop {
            if let Some(m) = members(api).await {
                if pred(&m) {
                    return m;
                }
                last = m;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    match r {
        Ok(m) => m,
        Err(_) => panic!("timed out waiting for {what}; members: {last:?}"),
    }
}

/// `dig +short` against a published DNS port, over UDP or TCP.
async fn dig(port: u16, name: &str, rtype: &str, tcp: bool) -> Vec<String> {
    let mut args = vec![
        "@127.0.0.1".to_string(),
        "-p".to_string(),
        port.to_string(),
        name.to_string(),
        rtype.to_string(),
        "+short".to_string(),
        "+time=2".to_string(),
        "+tries=1".to_string(),
    ];
    if tcp {
        args.push("+tcp".into());
    }
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run("dig", &a, &[])
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match out {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(e) if e.contains("No such file") => panic!("dig is needed (scripts/test installs it)"),
        Err(_) => Vec::new(),
    }
}

/// The user ID a container's main process runs as, read from the host's /proc.
async fn process_uid(c: &Container) -> String {
    let pid = c.inspect("{{.State.Pid}}").await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

/// `docker run cairn agent -dev -client 0.0.0.0` (the image's default command): API, DNS over
/// UDP and TCP and the UI answer on the published ports; `docker exec cairn members` works;
/// the process is not root; the health check turns healthy; data is a volume; SIGTERM stops
/// it cleanly.
#[tokio::test]
async fn dev_container_answers_from_the_host() {
    let image = ImageUse::get();
    let (http_port, dns_port) = (free_port(), free_port());
    let c = Container::run(
        "dev",
        &[
            "-p",
            &format!("127.0.0.1:{http_port}:8500"),
            "-p",
            &format!("127.0.0.1:{dns_port}:8600/udp"),
            "-p",
            &format!("127.0.0.1:{dns_port}:8600/tcp"),
            image.tag,
        ],
    )
    .await;
    let api = format!("http://127.0.0.1:{http_port}");
    let leader = poll("a leader", SETTLE, || async {
        let v = get_json(&api, "/v1/status/leader").await?;
        v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    })
    .await;
    assert!(leader.ends_with(":8300"), "{leader}");
    // DNS over UDP and TCP: the `consul` service of the dev server.
    for tcp in [false, true] {
        let answer = poll("a DNS answer", Duration::from_secs(30), || async {
            let a = dig(dns_port, "consul.service.consul", "A", tcp).await;
            (!a.is_empty()).then_some(a)
        })
        .await;
        assert_eq!(answer, ["127.0.0.1"], "tcp: {tcp}");
    }
    // The dashboard.
    let ui = http()
        .get(format!("{api}/ui/"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("UI: {e}"));
    assert_eq!(ui.status(), 200);
    let page = ui.text().await.unwrap_or_default();
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    // The CLI inside the container reaches its agent.
    let out = docker_ok(&["exec", &c.name, "cairn", "members"]).await;
    assert!(out.contains("alive") && out.contains("server"), "{out}");
    // Not root: the configured user and the process's real user ID.
    assert_eq!(c.inspect("{{.Config.User}}").await, "100:1000");
    assert_eq!(process_uid(&c).await, "100");
    // Data under the declared volume.
    let mounts = c.inspect("{{range .Mounts}}{{.Destination}} {{end}}").await;
    assert!(mounts.contains("/consul/data"), "{mounts}");
    // The image's HEALTHCHECK.
    poll("a healthy container", Duration::from_secs(60), || async {
        (c.inspect("{{.State.Health.Status}}").await == "healthy").then_some(())
    })
    .await;
    // SIGTERM: a clean, quick exit (not the SIGKILL after the grace period).
    let started = Instant::now();
    docker_ok(&["stop", "-t", "30", &c.name]).await;
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.inspect("{{.State.ExitCode}}").await,
        "0",
        "{}",
        c.logs().await
    );
}

/// The compose cluster: five members and one leader, the demo service in DNS and the UI; then
/// faults, every acknowledged write checked after each.
#[tokio::test]
async fn compose_cluster_survives_faults() {
    let image = ImageUse::get();
    let (http_port, dns_port) = (free_port(), free_port());
    let p = Project::up(
        "c",
        "docker/compose.yml",
        &[
            ("CAIRN_IMAGE", image.tag.to_string()),
            ("CAIRN_HTTP_PORT", http_port.to_string()),
            ("CAIRN_DNS_PORT", dns_port.to_string()),
        ],
    )
    .await;
    let api = format!("http://127.0.0.1:{http_port}");
    let all = ["server-1", "server-2", "server-3", "client-1", "client-2"];
    let all_alive = |m: &BTreeMap<String, u64>| all.iter().all(|n| m.get(*n) == Some(&ALIVE));
    wait_members(&api, "five members alive", all_alive).await;
    let servers = ["server-1", "server-2", "server-3"];
    let leader = wait_leader(&api, &p, &servers, None).await;

    // The demo service: healthy, in DNS (SRV on client-1's port 8500) and in the UI's API.
    poll("web passing", SETTLE, || async {
        let v = get_json(&api, "/v1/health/service/web?passing").await?;
        (v.as_array()?.len() == 1).then_some(())
    })
    .await;
    let srv = dig(dns_port, "web.service.consul", "SRV", false).await;
    assert!(
        srv.len() == 1 && srv[0].contains(" 8500 client-1."),
        "{srv:?}"
    );
    let ui = http()
        .get(format!("{api}/ui/dc1/services/web"))
        .send()
        .await;
    assert!(ui.is_ok_and(|r| r.status() == 200));

    let mut acked = Vec::new();
    write_keys(&api, "before", 10, &mut acked).await;

    // 1. The leader's container killed: a new leader, nothing acknowledged lost.
    let leader_c = p.id(&leader).await;
    docker_ok(&["kill", &leader_c]).await;
    let new_leader = wait_leader(&api, &p, &servers, Some(&leader)).await;
    assert_ne!(new_leader, leader);
    write_keys(&api, "after-kill", 5, &mut acked).await;
    check_keys(&api, &acked).await;
    docker_ok(&["start", &leader_c]).await;
    wait_members(&api, "the killed server back", all_alive).await;
    wait_voters(&api, 3).await;

    // 2. A follower paused past the election timeout (at most 1.2 s by default), while writes
    // go on; unpaused, it is a follower again with the data committed meanwhile.
    let leader = wait_leader(&api, &p, &servers, None).await;
    let Some(follower) = servers
        .iter()
        .find(|s| **s != leader)
        .map(|s| s.to_string())
    else {
        panic!("no follower");
    };
    let follower_c = p.id(&follower).await;
    docker_ok(&["pause", &follower_c]).await;
    let paused_at = Instant::now();
    wait_members(&api, "the paused server failed", |m| {
        m.get(&follower) == Some(&FAILED)
    })
    .await;
    // Gossip sees a failure later than Raft's election timeout passes; should it ever not, the
    // pause is stretched past that timeout here (a wait, not a check).
    let election_max = Duration::from_millis(1500);
    if let Some(rest) = election_max.checked_sub(paused_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    write_keys(&api, "while-paused", 5, &mut acked).await;
    let last = acked.last().cloned().unwrap_or_default();
    docker_ok(&["unpause", &follower_c]).await;
    wait_members(&api, "the paused server alive", all_alive).await;
    poll("the unpaused server has the data", SETTLE, || async {
        let v = docker(&["exec", &follower_c, "cairn", "kv", "get", "-stale", &last])
            .await
            .ok()?;
        (v == last).then_some(())
    })
    .await;
    let peers = docker_ok(&[
        "exec",
        &follower_c,
        "cairn",
        "operator",
        "raft",
        "list-peers",
    ])
    .await;
    let line = peers
        .lines()
        .find(|l| l.starts_with(&format!("{follower} ")))
        .unwrap_or_default();
    assert!(line.contains("follower"), "{peers}");
    check_keys(&api, &acked).await;

    // 3. A client cut off the network: failed for the others, alive again once reconnected.
    let client_c = p.id("client-2").await;
    let net = p.network();
    docker_ok(&["network", "disconnect", &net, &client_c]).await;
    wait_members(&api, "client-2 failed", |m| {
        m.get("client-2") == Some(&FAILED)
    })
    .await;
    docker_ok(&["network", "connect", &net, &client_c]).await;
    wait_members(&api, "client-2 alive again", all_alive).await;

    // 4. SIGTERM (docker stop): client-2 leaves; the others see it left, not failed.
    docker_ok(&["stop", "-t", "20", &client_c]).await;
    wait_members(&api, "client-2 left", |m| m.get("client-2") == Some(&LEFT)).await;
    let code = docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &client_c]).await;
    assert_eq!(code, "0");
    docker_ok(&["start", &client_c]).await;
    wait_members(&api, "client-2 back", all_alive).await;

    // 5. Everything restarted: every acknowledged write still there.
    p.compose(&["restart", "-t", "20"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_members(&api, "five members alive after the restart", all_alive).await;
    wait_leader(&api, &p, &servers, None).await;
    check_keys(&api, &acked).await;
}

/// The server container named by `/v1/status/leader`, once there is one (and, with `not`,
/// it is another); exactly one server says it leads.
async fn wait_leader(api: &str, p: &Project, servers: &[&str], not: Option<&str>) -> String {
    // Server name by its address on the project network.
    let mut by_ip = BTreeMap::new();
    for s in servers {
        let id = p.id(s).await;
        let ip = docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])
        .await;
        by_ip.insert(ip, s.to_string());
    }
    let name = poll("a leader", SETTLE, || async {
        let v = get_json(api, "/v1/status/leader").await?;
        let ip = v.as_str()?.rsplit_once(':')?.0.to_string();
        let name = by_ip.get(&ip)?.clone();
        (Some(name.as_str()) != not).then_some(name)
    })
    .await;
    poll("one leader in the Raft configuration", SETTLE, || async {
        let v = get_json(api, "/v1/operator/raft/configuration").await?;
        let leaders: Vec<&str> = v["Servers"]
            .as_array()?
            .iter()
            .filter(|s| s["Leader"] == true)
            .filter_map(|s| s["Node"].as_str())
            .collect();
        (leaders == [name.as_str()]).then_some(())
    })
    .await;
    name
}

/// Waits for `n` voters in the Raft configuration.
async fn wait_voters(api: &str, n: usize) {
    poll("the voters", SETTLE, || async {
        let v = get_json(api, "/v1/operator/raft/configuration").await?;
        let voters = v["Servers"]
            .as_array()?
            .iter()
            .filter(|s| s["Voter"] == true)
            .count();
        (voters == n).then_some(())
    })
    .await;
}

/// Writes `n` keys under `docker/<tag>-`, each retried until acknowledged (a write that got
/// no `true` is not acknowledged and not expected later).
async fn write_keys(api: &str, tag: &str, n: usize, acked: &mut Vec<String>) {
    for i in 0..n {
        let key = format!("docker/{tag}-{i}");
        poll(&format!("write {key}"), SETTLE, || async {
            let r = http()
                .put(format!("{api}/v1/kv/{key}"))
                .body(key.clone())
                .send()
                .await
                .ok()?;
            let ok = r.status() == 200 && r.text().await.ok()?.trim() == "true";
            ok.then_some(())
        })
        .await;
        acked.push(key);
    }
}

/// Every acknowledged key is there, with its value, in a consistent read.
async fn check_keys(api: &str, acked: &[String]) {
    let found: BTreeMap<String, String> = poll("a consistent read", SETTLE, || async {
        let v = get_json(api, "/v1/kv/docker/?recurse&consistent").await?;
        Some(
            v.as_array()?
                .iter()
                .filter_map(|e| {
                    let k = e["Key"].as_str()?.to_string();
                    let val = common::cluster::decode_b64(e["Value"].as_str()?);
                    Some((k, val))
                })
                .collect(),
        )
    })
    .await;
    for k in acked {
        assert_eq!(found.get(k), Some(k), "acknowledged write {k} lost");
    }
}

/// The federation compose file: two datacenters that know each other, a write through dc1
/// into dc2 read back in dc2.
#[tokio::test]
async fn compose_federation_joins_two_datacenters() {
    let image = ImageUse::get();
    let (dc1, dns, dc2) = (free_port(), free_port(), free_port());
    let _p = Project::up(
        "f",
        "docker/compose-federation.yml",
        &[
            ("CAIRN_IMAGE", image.tag.to_string()),
            ("CAIRN_HTTP_PORT", dc1.to_string()),
            ("CAIRN_DNS_PORT", dns.to_string()),
            ("CAIRN_HTTP_PORT_DC2", dc2.to_string()),
        ],
    )
    .await;
    let api1 = format!("http://127.0.0.1:{dc1}");
    let api2 = format!("http://127.0.0.1:{dc2}");
    poll("both datacenters", SETTLE, || async {
        let v = get_json(&api1, "/v1/catalog/datacenters").await?;
        (v == json!(["dc1", "dc2"])).then_some(())
    })
    .await;
    poll("a write into dc2 through dc1", SETTLE, || async {
        let r = http()
            .put(format!("{api1}/v1/kv/greeting?dc=dc2"))
            .body("hello")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    poll("the write read in dc2", SETTLE, || async {
        let r = http()
            .get(format!("{api2}/v1/kv/greeting?raw"))
            .send()
            .await
            .ok()?;
        (r.text().await.ok()? == "hello").then_some(())
    })
    .await;
}

/// Docker checks of an agent on the host, against a container of the image: exit 0 passing,
/// 1 warning, a command that cannot run critical, an unknown container critical with
/// Consul's text. The container also runs with Consul's interface variables.
#[tokio::test]
async fn docker_checks_run_in_a_container() {
    let image = ImageUse::get();
    let c = Container::run(
        "check",
        &[
            "-e",
            "CONSUL_BIND_INTERFACE=eth0",
            "-e",
            "CONSUL_CLIENT_INTERFACE=eth0",
            image.tag,
            "agent",
            "-dev",
        ],
    )
    .await;
    // CONSUL_BIND_INTERFACE: the agent gossips on eth0's address; CONSUL_CLIENT_INTERFACE kept
    // loopback, so `cairn members` inside works.
    let ip = c
        .inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
        .await;
    let out = poll("the agent in the container", SETTLE, || async {
        docker(&["exec", &c.name, "cairn", "members"]).await.ok()
    })
    .await;
    assert!(
        out.contains(&format!("{ip}:8301")),
        "{out}\n{}",
        c.logs().await
    );

    let a = Agent::builder().flag("-enable-script-checks").start().await;
    let checks = [
        ("pass", json!(["cairn", "version"]), "passing"),
        ("warn", json!(["cairn"]), "warning"),
        ("crit", json!(["/nonexistent/check"]), "critical"),
    ];
    for (id, args, _) in &checks {
        a.register_check(&json!({"ID": id, "Name": id, "DockerContainerID": c.name,
            "Args": args, "Interval": "1s"}))
            .await;
    }
    a.register_check(&json!({"ID": "gone", "Name": "gone",
        "DockerContainerID": format!("{}-missing", run_id()), "Args": ["true"], "Interval": "1s"}))
        .await;
    for (id, _, want) in &checks {
        let check = poll(&format!("check {id} {want}"), SETTLE, || async {
            let c = a.check(id).await;
            (c["Status"] == *want).then_some(c)
        })
        .await;
        assert_eq!(check["Type"], "docker");
        if *id == "pass" {
            assert!(
                check["Output"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Cairn"),
                "{check}"
            );
        }
    }
    let gone = poll("check gone critical", SETTLE, || async {
        let c = a.check("gone").await;
        (c["Status"] == "critical" && c["Output"] != "").then_some(c)
    })
    .await;
    assert_eq!(
        gone["Output"],
        format!(
            "create exec failed for unknown container {}-missing",
            run_id()
        )
    );
}
