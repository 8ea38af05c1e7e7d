//! DNS interface tests against real `cairn agent -dev` processes on loopback: every name form
//! and record type, health changes showing at once, Consul's trimming and truncation rules
//! with the TCP retry, EDNS sizes, forwarding to a recursor stub run by the test, and bad
//! packets. Queries are built and read with hickory-proto; `dig` is used too when installed.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdp};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A port free for both UDP and TCP a moment ago.
fn free_port() -> u16 {
    loop {
        let tcp = StdTcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if StdUdp::bind(("127.0.0.1", port)).is_ok() && common::not_handed_out(port) {
            return port;
        }
    }
}

/// A running agent, killed on drop.
struct Agent {
    child: Child,
    http: String,
    dns: SocketAddr,
    dir: PathBuf,
    client: reqwest::Client,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Agent {
    async fn start(config: Option<Value>, flags: &[&str]) -> Agent {
        let mut last = String::new();
        for _ in 0..3 {
            match Agent::try_start(config.clone(), flags).await {
                Ok(a) => return a,
                Err(log) => last = log,
            }
        }
        panic!("agent did not start:\n{last}");
    }

    async fn try_start(config: Option<Value>, flags: &[&str]) -> Result<Agent, String> {
        let dir = std::env::temp_dir().join(format!("cairn-dnstest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let http_port = free_port();
        let dns_port = free_port();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-dev".into(),
            "-node".into(),
            "alpha".into(),
            "-http-port".into(),
            http_port.to_string(),
            "-dns-port".into(),
            dns_port.to_string(),
            "-server-port".into(),
            free_port().to_string(),
            "-serf-lan-port".into(),
            free_port().to_string(),
            "-serf-wan-port".into(),
            free_port().to_string(),
        ];
        if let Some(cfg) = config {
            let path = dir.join("config.json");
            std::fs::write(&path, cfg.to_string()).map_err(|e| e.to_string())?;
            args.push("-config-file".into());
            args.push(path.display().to_string());
        }
        args.extend(flags.iter().map(|s| s.to_string()));
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut agent = Agent {
            child,
            http: format!("http://127.0.0.1:{http_port}"),
            dns: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), dns_port),
            dir,
            client: cairn::tls::http_client_builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", log()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in time:\n{}", log()));
            }
            if agent.ready().await {
                return Ok(agent);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// HTTP answers with a leader, and DNS knows the agent's own node.
    async fn ready(&self) -> bool {
        let Ok(r) = self
            .client
            .get(format!("{}/v1/status/leader", self.http))
            .send()
            .await
        else {
            return false;
        };
        if !r.status().is_success() || r.json::<String>().await.is_ok_and(|l| l.is_empty()) {
            return false;
        }
        matches!(
            try_udp(self.dns, &query("alpha.node.consul.", RecordType::A, None)).await,
            Some(m) if m.metadata.response_code == ResponseCode::NoError
        )
    }

    async fn put(&self, path: &str, body: Value) {
        let r = self
            .client
            .put(format!("{}{path}", self.http))
            .json(&body)
            .send()
            .await
            .expect("HTTP request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {path}: {status} {text}");
    }

    async fn udp(&self, name: &str, qtype: RecordType) -> Message {
        udp(self.dns, &query(name, qtype, None)).await.0
    }

    async fn tcp(&self, name: &str, qtype: RecordType) -> Message {
        tcp(self.dns, &query(name, qtype, None)).await
    }
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    msg.to_vec().expect("encode")
}

/// Sends a datagram and waits for one answer (None after a timeout).
async fn try_udp_raw(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    sock.connect(server).await.ok()?;
    sock.send(packet).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(wait, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn try_udp(server: SocketAddr, packet: &[u8]) -> Option<Message> {
    let bytes = try_udp_raw(server, packet, Duration::from_millis(500)).await?;
    Message::from_vec(&bytes).ok()
}

async fn udp(server: SocketAddr, packet: &[u8]) -> (Message, usize) {
    let bytes = try_udp_raw(server, packet, QUERY_TIMEOUT)
        .await
        .expect("a UDP answer");
    assert_eq!(bytes[..2], packet[..2], "the answer carries the query's ID");
    (
        Message::from_vec(&bytes).expect("decode answer"),
        bytes.len(),
    )
}

async fn tcp_exchange(stream: &mut TcpStream, packet: &[u8]) -> Vec<u8> {
    let mut frame = (packet.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(packet);
    stream.write_all(&frame).await.expect("write");
    let len = tokio::time::timeout(QUERY_TIMEOUT, stream.read_u16())
        .await
        .expect("answer in time")
        .expect("read length");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("read answer");
    buf
}

async fn tcp(server: SocketAddr, packet: &[u8]) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    Message::from_vec(&tcp_exchange(&mut stream, packet).await).expect("decode answer")
}

fn addrs(records: &[Record]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn srv_targets(m: &Message) -> Vec<(u16, u16, u16, String)> {
    let mut v: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[track_caller]
fn assert_nxdomain_with_soa(m: &Message) {
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m}");
    assert!(m.answers.is_empty(), "{m}");
    assert!(
        matches!(m.authorities.first().map(|r| &r.data), Some(RData::SOA(_))),
        "{m}"
    );
}

/// `dig +short` output lines, or None when dig is not installed.
fn dig(server: SocketAddr, args: &[&str]) -> Option<Vec<String>> {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(text.lines().map(str::to_string).collect())
}

async fn register_web(agent: &Agent) {
    agent
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "ID": "web1", "Port": 8080, "Address": "192.0.2.10",
                   "Tags": ["v1", "Primary"], "Check": {"TTL": "60s", "Status": "passing"}}),
        )
        .await;
    agent
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "ID": "web2", "Port": 8081, "Tags": ["v2"],
                   "Weights": {"Passing": 7, "Warning": 2},
                   "Check": {"TTL": "60s", "Status": "passing"}}),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_form_and_record_type() {
    let agent = Agent::start(None, &["-node-meta", "rack:r1"]).await;
    register_web(&agent).await;

    // A: the service address, else the node's; authoritative, TTL 0, no RA without recursors.
    let m = agent.udp("web.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert_eq!(addrs(&m.answers), vec![ip("127.0.0.1"), ip("192.0.2.10")]);
    assert!(m.answers.iter().all(|r| r.ttl == 0));
    for name in [
        "web.service.dc1.consul.",
        "web.service.dc1.dc.consul.",
        "Web.SERVICE.Consul.",
    ] {
        let m = agent.udp(name, RecordType::A).await;
        assert_eq!(m.answers.len(), 2, "{name}: {m}");
    }
    // Tags, the RFC 2782 forms.
    let m = agent.udp("v1.web.service.consul.", RecordType::A).await;
    assert_eq!(addrs(&m.answers), vec![ip("192.0.2.10")]);
    let m = agent
        .udp("primary.web.service.consul.", RecordType::A)
        .await;
    assert_eq!(addrs(&m.answers), vec![ip("192.0.2.10")]);
    let m = agent.udp("_web._v2.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![(1, 7, 8081, "alpha.node.dc1.consul.".into())]
    );
    let m = agent
        .udp("_web._tcp.service.consul.", RecordType::SRV)
        .await;
    assert_eq!(m.answers.len(), 2);
    let m = agent.udp("_web._tcp.consul.", RecordType::SRV).await;
    assert_eq!(m.answers.len(), 2);
    // SRV: targets, weights, additional A and node meta TXT.
    let m = agent.udp("web.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![
            (1, 1, 8080, "c000020a.addr.dc1.consul.".into()),
            (1, 7, 8081, "alpha.node.dc1.consul.".into()),
        ]
    );
    let extra: Vec<String> = m.additionals.iter().map(|r| r.to_string()).collect();
    assert!(
        extra
            .iter()
            .any(|r| r.starts_with("c000020a.addr.dc1.consul.") && r.ends_with("192.0.2.10")),
        "{extra:?}"
    );
    assert!(
        extra
            .iter()
            .any(|r| r.starts_with("alpha.node.dc1.consul.") && r.ends_with("127.0.0.1")),
        "{extra:?}"
    );
    assert!(extra.iter().any(|r| r.contains("rack=r1")), "{extra:?}");
    // Servers: the consul service, NS and SOA.
    let m = agent.udp("consul.service.consul.", RecordType::SRV).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(srv_targets(&m)[0].3, "alpha.node.dc1.consul.");
    let m = agent.udp("consul.", RecordType::NS).await;
    assert_eq!(m.answers[0].data.to_string(), "alpha.node.dc1.consul.");
    assert_eq!(addrs(&m.additionals), vec![ip("127.0.0.1")]);
    let m = agent.udp("consul.", RecordType::SOA).await;
    assert!(matches!(m.answers[0].data, RData::SOA(_)), "{m}");
    // Nodes: A (+ meta TXT in additional), ANY (A + TXT), TXT.
    let m = agent.udp("alpha.node.consul.", RecordType::A).await;
    assert_eq!(addrs(&m.answers), vec![ip("127.0.0.1")]);
    assert!(
        m.additionals
            .iter()
            .any(|r| r.data.to_string() == "rack=r1"),
        "node meta TXT in the additional section: {m}"
    );
    let m = agent.udp("ALPHA.node.dc1.consul.", RecordType::ANY).await;
    assert_eq!(addrs(&m.answers), vec![ip("127.0.0.1")]);
    assert!(
        m.answers.iter().any(|r| r.data.to_string() == "rack=r1"),
        "{m}"
    );
    let m = agent.udp("alpha.node.consul.", RecordType::TXT).await;
    assert!(m.answers.iter().all(|r| r.record_type() == RecordType::TXT));
    // addr and PTR.
    let m = agent.udp("c000020a.addr.dc1.consul.", RecordType::A).await;
    assert_eq!(addrs(&m.answers), vec![ip("192.0.2.10")]);
    let m = agent
        .udp(
            "7f000001000000000000000000000001.addr.consul.",
            RecordType::AAAA,
        )
        .await;
    assert_eq!(addrs(&m.answers), vec![ip("7f00:1::1")]);
    let m = agent.udp("1.0.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.answers.len(), 1, "{m}");
    assert_eq!(m.answers[0].data.to_string(), "alpha.node.dc1.consul.");
    let m = agent.udp("10.2.0.192.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.answers[0].data.to_string(), "web.service.dc1.consul.");
    // Unknown names: NXDOMAIN with the SOA in the authority section.
    for name in [
        "nope.service.consul.",
        "nope.node.consul.",
        "web.service.dc9.consul.",
        "consul.",
        "9.9.9.9.in-addr.arpa.",
    ] {
        assert_nxdomain_with_soa(&agent.udp(name, RecordType::A).await);
    }
    // Known name, no record of the type: NOERROR, no answer, SOA.
    let m = agent.udp("web.service.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    // Outside the domain without recursors: REFUSED.
    let m = agent.udp("example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // TCP answers the same, several queries on one connection.
    let mut stream = TcpStream::connect(agent.dns).await.expect("connect");
    for _ in 0..3 {
        let bytes = tcp_exchange(
            &mut stream,
            &query("web.service.consul.", RecordType::SRV, None),
        )
        .await;
        let m = Message::from_vec(&bytes).expect("decode");
        assert_eq!(m.answers.len(), 2);
    }
    // And dig agrees, when installed.
    if let Some(lines) = dig(agent.dns, &["+short", "web.service.consul"]) {
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            vec!["127.0.0.1".to_string(), "192.0.2.10".to_string()]
        );
        let srv = dig(
            agent.dns,
            &["+short", "+tcp", "_web._v2.service.consul", "SRV"],
        )
        .unwrap_or_default();
        assert_eq!(srv, vec!["1 7 8081 alpha.node.dc1.consul.".to_string()]);
        let nx = dig(agent.dns, &["nope.service.consul"]).unwrap_or_default();
        assert!(nx.iter().any(|l| l.contains("status: NXDOMAIN")), "{nx:?}");
        assert!(
            nx.iter()
                .any(|l| l.contains("IN\tSOA\tns.consul. hostmaster.consul.")),
            "{nx:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_changes_show_within_a_second() {
    let agent = Agent::start(None, &[]).await;
    register_web(&agent).await;
    let m = agent.udp("web.service.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 2);

    let within_a_second = |want: Vec<IpAddr>| {
        let agent = &agent;
        async move {
            let start = Instant::now();
            loop {
                let m = agent.udp("web.service.consul.", RecordType::A).await;
                if addrs(&m.answers) == want {
                    return (m, start.elapsed());
                }
                assert!(
                    start.elapsed() < Duration::from_secs(1),
                    "still {m} after a second, want {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // A check turning critical removes the instance.
    agent
        .put("/v1/agent/check/fail/service:web2?note=down", json!(null))
        .await;
    within_a_second(vec![ip("192.0.2.10")]).await;
    // Warning is still served (only_passing is off).
    agent
        .put("/v1/agent/check/warn/service:web1?note=meh", json!(null))
        .await;
    agent
        .put("/v1/agent/check/pass/service:web2", json!(null))
        .await;
    within_a_second(vec![ip("127.0.0.1"), ip("192.0.2.10")]).await;
    let m = agent.udp("web.service.consul.", RecordType::SRV).await;
    assert!(
        srv_targets(&m).contains(&(1, 1, 8080, "c000020a.addr.dc1.consul.".into())),
        "warning weight"
    );
    // Maintenance mode hides the instance.
    agent
        .put(
            "/v1/agent/service/maintenance/web1?enable=true&reason=test",
            json!(null),
        )
        .await;
    within_a_second(vec![ip("127.0.0.1")]).await;
    // Nothing healthy: NXDOMAIN with the SOA (Consul's answer).
    agent
        .put("/v1/agent/check/fail/service:web2", json!(null))
        .await;
    let start = Instant::now();
    loop {
        let m = agent.udp("web.service.consul.", RecordType::A).await;
        if m.metadata.response_code == ResponseCode::NXDomain {
            assert_nxdomain_with_soa(&m);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new registration shows at once.
    agent
        .put(
            "/v1/agent/service/register",
            json!({"Name": "cache", "Port": 6379, "Address": "192.0.2.99"}),
        )
        .await;
    let m = agent.udp("cache.service.consul.", RecordType::A).await;
    assert_eq!(addrs(&m.answers), vec![ip("192.0.2.99")]);
}

/// A recursor stub: answers every A question with 203.0.113.7 over UDP and TCP.
async fn recursor_stub() -> SocketAddr {
    // The same port for UDP and TCP: retry until both are free.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = udp.local_addr().expect("addr");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    fn answer(packet: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(packet).ok()?;
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        let question = q.queries.first()?.clone();
        r.add_answer(Record::from_rdata(
            question.name().clone(),
            42,
            RData::A(A::new(203, 0, 113, 7)),
        ));
        r.add_query(question);
        r.to_vec().ok()
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            if let Some(a) = answer(&buf[..n]) {
                let _ = udp.send_to(&a, peer).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let Ok(len) = s.read_u16().await else { return };
                let mut buf = vec![0u8; usize::from(len)];
                if s.read_exact(&mut buf).await.is_err() {
                    return;
                }
                if let Some(a) = answer(&buf) {
                    let mut frame = (a.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&a);
                    let _ = s.write_all(&frame).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_truncation_ttls_and_recursors() {
    let stub = recursor_stub().await;
    // A recursor that never answers comes first: the stub answers after the timeout.
    let silent = StdUdp::bind("127.0.0.1:0").expect("bind silent");
    let silent_addr = silent.local_addr().expect("addr");
    let config = json!({
        "alt_domain": "cairn.test.",
        "recursors": [silent_addr.to_string(), stub.to_string()],
        "dns_config": {
            "only_passing": true,
            "enable_truncate": true,
            "node_ttl": "10s",
            "service_ttl": {"api*": "5s", "*": "1s"},
            "recursor_timeout": "300ms",
        }
    });
    let agent = Agent::start(Some(config), &[]).await;
    for i in 0..20 {
        let status = if i == 0 { "warning" } else { "passing" };
        agent
            .put(
                "/v1/catalog/register",
                json!({"Node": format!("api-node-{i}"), "Address": format!("10.20.0.{}", i + 1),
                       "Service": {"Service": "api", "ID": "api", "Port": 9000},
                       "Check": {"CheckID": "api-check", "Name": "api", "ServiceID": "api",
                                 "Status": status}}),
            )
            .await;
    }
    // Plain UDP: udp_answer_limit (3) answers, TC set (enable_truncate); TCP has them all.
    let (m, len) = udp(
        agent.dns,
        &query("api.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.answers.len(), 3, "{m}");
    assert!(m.metadata.truncation);
    assert!(len <= 512);
    assert!(m.answers.iter().all(|r| r.ttl == 5), "service_ttl api*");
    let m = agent.tcp("api.service.consul.", RecordType::A).await;
    assert_eq!(
        m.answers.len(),
        19,
        "only_passing drops the warning instance"
    );
    assert!(!m.metadata.truncation);
    assert!(!addrs(&m.answers).contains(&ip("10.20.0.1")));
    // The SRV answer is trimmed over UDP, then complete over TCP with every address.
    let (m, _) = udp(
        agent.dns,
        &query("api.service.consul.", RecordType::SRV, None),
    )
    .await;
    assert!(m.metadata.truncation);
    assert!(m.answers.len() < 19);
    let m = agent.tcp("api.service.consul.", RecordType::SRV).await;
    assert_eq!(m.answers.len(), 19);
    assert_eq!(addrs(&m.additionals).len(), 19);
    // EDNS: the client's size is honoured and echoed.
    for size in [600u16, 1232, 4096] {
        let (m, len) = udp(
            agent.dns,
            &query("api.service.consul.", RecordType::SRV, Some(size)),
        )
        .await;
        assert!(len <= usize::from(size), "{len} > {size}");
        assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(size));
        assert!(m.answers.len() > 3, "{size}: {}", m.answers.len());
        assert_eq!(m.metadata.truncation, m.answers.len() < 19);
    }
    // Node TTL, alternative domain.
    let m = agent.udp("api-node-3.node.consul.", RecordType::A).await;
    assert_eq!(m.answers[0].ttl, 10);
    let m = agent.udp("api.service.cairn.test.", RecordType::SRV).await;
    assert!(
        srv_targets(&m)
            .iter()
            .all(|t| t.3.ends_with(".node.dc1.cairn.test.")),
        "{m}"
    );
    let m = agent.udp("consul.service.consul.", RecordType::A).await;
    assert_eq!(m.answers[0].ttl, 1, "service_ttl *");
    // Names outside the domain go to the recursors in order; RA is set.
    let m = agent.udp("www.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert_eq!(addrs(&m.answers), vec![ip("203.0.113.7")]);
    assert!(m.metadata.recursion_available);
    let m = agent.tcp("www.example.org.", RecordType::A).await;
    assert_eq!(addrs(&m.answers), vec![ip("203.0.113.7")]);
    // Unknown reverse names too.
    let m = agent.udp("7.113.0.203.in-addr.arpa.", RecordType::A).await;
    assert_eq!(addrs(&m.answers), vec![ip("203.0.113.7")]);
    let m = agent.udp("api.service.consul.", RecordType::A).await;
    assert!(m.metadata.recursion_available);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursor_failure_is_servfail() {
    let silent = StdUdp::bind("127.0.0.1:0").expect("bind");
    let config = json!({
        "recursors": [silent.local_addr().expect("addr").to_string()],
        "dns_config": {"recursor_timeout": "200ms"}
    });
    let agent = Agent::start(Some(config), &[]).await;
    let start = Instant::now();
    let m = agent.udp("www.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.metadata.recursion_available);
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_packets_get_errors_and_never_stop_the_server() {
    let agent = Agent::start(None, &[]).await;
    let good = query("alpha.node.consul.", RecordType::A, None);
    // Garbage too short for a header: no answer.
    assert!(
        try_udp_raw(agent.dns, &[0xde, 0xad], Duration::from_millis(300))
            .await
            .is_none()
    );
    // A header followed by garbage: FORMERR.
    let mut cut = good.clone();
    cut.truncate(17);
    let (m, _) = udp(agent.dns, &cut).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Unknown opcode: NOTIMP.
    let mut notify = good.clone();
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    let (m, _) = udp(agent.dns, &notify).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // An oversized query: REFUSED (UDP and TCP).
    let mut big = good.clone();
    big.resize(6000, 0);
    let (m, _) = udp(agent.dns, &big).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = tcp(agent.dns, &big).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // A label flood: 127 one-byte labels.
    let flood = format!("{}consul.", "a.".repeat(120));
    let (m, _) = udp(agent.dns, &query(&flood, RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Random bytes of every length: whatever happens, the server still answers afterwards.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..200usize {
        let mut p = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            p.push(seed as u8);
        }
        if len >= 3 {
            p[2] &= 0x7f; // a query, not a response
        }
        let _ = try_udp_raw(agent.dns, &p, Duration::from_millis(20)).await;
    }
    // A TCP client that sends half a frame and goes away.
    {
        let mut s = TcpStream::connect(agent.dns).await.expect("connect");
        s.write_all(&[0x00, 0x40, 0x01]).await.expect("write");
    }
    let (m, _) = udp(agent.dns, &good).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = tcp(agent.dns, &good).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

/// One source holding idle TCP connections does not shut the others out (black-box finding:
/// one global cap of 512 let a single address take every TCP slot): a source's connections
/// beyond its cap are closed at once, and a query from another address is still answered.
#[tokio::test]
async fn one_source_cannot_take_every_tcp_connection() {
    // This process holds more than a thousand descriptors below.
    cairn::run::raise_fd_limit();
    let agent = Agent::start(None, &[]).await;
    let q = query("consul.service.consul.", RecordType::A, None);
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(TcpStream::connect(agent.dns).await.expect("connect"));
    }
    // The last ones are over every cap: the server closes them without a word.
    let mut last = idle.pop().expect("a connection");
    let mut buf = [0u8; 2];
    let n = tokio::time::timeout(QUERY_TIMEOUT, last.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "a connection over the cap is closed");
    // Another source is served.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from(([127, 0, 0, 2], 0)))
        .expect("bind 127.0.0.2");
    let mut other = sock.connect(agent.dns).await.expect("connect");
    let m = Message::from_vec(&tcp_exchange(&mut other, &q).await).expect("decode answer");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // The connections kept are closed once idle for 10 s.
    let first = idle.first_mut().expect("a connection");
    let n = tokio::time::timeout(Duration::from_secs(20), first.read(&mut buf))
        .await
        .expect("an idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "an idle connection is closed");
}
