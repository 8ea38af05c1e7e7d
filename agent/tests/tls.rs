//! TLS end to end with real processes: `cairn tls` creating Consul's files, the HTTPS API
//! (client certificates, wrong CA, wrong name, plain HTTP and garbage on the TLS port, a client
//! that never finishes its handshake), the CLI over HTTPS, certificate reload on SIGHUP, and
//! server RPC over TLS between three servers that refuse a server of another CA and a client
//! certificate posing as a server. Certificates are made at test time with Cairn's own
//! generator (the code behind `cairn tls`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::tls::generate::{CaOptions, CertOptions, Pem, create_ca, create_cert};
use common::Agent;
use common::cluster::{Cluster, NodeSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A directory of certificates for one test, removed on drop.
struct Certs {
    dir: PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Certs {
    fn new() -> Certs {
        let dir = std::env::temp_dir().join(format!("cairn-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a certificate and key as `<name>.pem` and `<name>-key.pem`.
    fn write(&self, name: &str, pem: &Pem) -> (String, String) {
        let cert = self.path(&format!("{name}.pem"));
        let key = self.path(&format!("{name}-key.pem"));
        std::fs::write(&cert, &pem.cert).expect("write cert");
        std::fs::write(&key, &pem.key).expect("write key");
        (cert.display().to_string(), key.display().to_string())
    }

    fn ca(&self, name: &str) -> (Pem, String) {
        let ca = create_ca(&CaOptions {
            days: 30,
            permitted_dns: Vec::new(),
            common_name: None,
        })
        .expect("CA");
        let (path, _) = self.write(name, &ca);
        (ca, path)
    }
}

/// A certificate of `role` (`server`, `client`, `cli`) in dc1 from `ca`.
fn cert(ca: &Pem, role: &str) -> Pem {
    let name = format!("{role}.dc1.consul");
    create_cert(
        &ca.cert,
        &ca.key,
        &CertOptions {
            name: name.clone(),
            dns_names: vec![name, "localhost".into()],
            ip_addresses: vec![[127, 0, 0, 1].into()],
            days: 1,
            server_and_client_auth: role != "cli",
        },
    )
    .expect("certificate")
}

/// An HTTPS client trusting `ca_file`, with an optional client certificate.
fn https_client(ca_file: &str, identity: Option<&Pem>) -> reqwest::Client {
    cairn::tls::install_default_provider();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .resolve(
            "wrong.example",
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca_file).expect("ca")).expect("pem"),
        );
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert, id.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// Polls `f` every 50 ms until it yields a value or `within` passes.
async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the `cairn` binary in `dir` and returns (exit code, stdout, stderr).
fn cairn_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args).current_dir(dir);
    for var in [
        "CONSUL_HTTP_ADDR",
        "CONSUL_HTTP_SSL",
        "CONSUL_CACERT",
        "CONSUL_CAPATH",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
        "CONSUL_TLS_SERVER_NAME",
        "CONSUL_HTTP_SSL_VERIFY",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cairn tls ca create` and `cairn tls cert create`: Consul's file names, lines and errors, and
/// certificates that chain to the CA with Consul's names.
#[test]
fn tls_commands_write_consuls_files() {
    let certs = Certs::new();
    let dir = &certs.dir;
    let (code, out, _) = cairn_in(dir, &["tls", "ca", "create"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    );
    let (code, _, err) = cairn_in(dir, &["tls", "ca", "create"], &[]);
    assert_eq!(
        (code, err.trim()),
        (1, "consul-agent-ca.pem already exists.")
    );

    let (code, out, _) = cairn_in(
        dir,
        &["tls", "cert", "create", "-server", "-node", "n1"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("==> WARNING: Server Certificates grants authority"),
        "{out}"
    );
    assert!(out.ends_with(
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"
    ), "{out}");
    // The next one takes the next free number.
    let (code, out, _) = cairn_in(
        dir,
        &["tls", "cert", "create", "-server", "-dc", "dc2"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("==> Saved dc2-server-consul-0.pem"), "{out}");
    let (code, out, _) = cairn_in(dir, &["tls", "cert", "create", "-client"], &[]);
    assert_eq!(code, 0);
    assert!(!out.contains("WARNING"), "{out}");
    let (code, out, _) = cairn_in(dir, &["tls", "cert", "create", "-client"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("==> Saved dc1-client-consul-1.pem"), "{out}");
    let (code, _, _) = cairn_in(dir, &["tls", "cert", "create", "-cli"], &[]);
    assert_eq!(code, 0);

    let ca = std::fs::read_to_string(dir.join("consul-agent-ca.pem")).expect("ca");
    let server = std::fs::read_to_string(dir.join("dc1-server-consul-0.pem")).expect("server");
    for name in ["server.dc1.consul", "n1.server.dc1.consul", "localhost"] {
        cairn::tls::verify_for_name(&ca, &server, name).expect(name);
    }
    let client = std::fs::read_to_string(dir.join("dc1-client-consul-0.pem")).expect("client");
    cairn::tls::verify_for_name(&ca, &client, "client.dc1.consul").expect("client name");
    assert!(cairn::tls::verify_for_name(&ca, &client, "server.dc1.consul").is_err());
    let cli = std::fs::read_to_string(dir.join("dc1-cli-consul-0.pem")).expect("cli");
    cairn::tls::verify_for_name(&ca, &cli, "cli.dc1.consul").expect("cli name");
    // Private keys are not readable by others.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.join("dc1-server-consul-0-key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");

    for (args, msg) in [
        (
            &["tls", "cert", "create"][..],
            "Please provide either -server, -client, or -cli",
        ),
        (
            &["tls", "cert", "create", "-server", "-client"][..],
            "Please provide either -server, -client, or -cli",
        ),
        (
            &["tls", "cert", "create", "-client", "-node", "x"][..],
            "-node requires -server",
        ),
        (
            &["tls", "cert", "create", "-server", "-domain", "other"][..],
            "Error reading CA: open other-agent-ca.pem",
        ),
    ] {
        let (code, _, err) = cairn_in(dir, args, &[]);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // A name-constrained CA refuses to sign for another domain.
    let other = Certs::new();
    let (code, _, _) = cairn_in(
        &other.dir,
        &["tls", "ca", "create", "-name-constraint"],
        &[],
    );
    assert_eq!(code, 0);
    let (code, _, err) = cairn_in(
        &other.dir,
        &[
            "tls",
            "cert",
            "create",
            "-server",
            "-additional-dnsname",
            "web.example.com",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(!other.dir.join("dc1-server-consul-0.pem").exists());
}

/// An agent with plain HTTP (for the test harness) and HTTPS requiring client certificates.
async fn https_agent(certs: &Certs, extra: Value) -> (Agent, u16, Pem, String) {
    let (ca, ca_file) = certs.ca("ca");
    let (cert_file, key_file) = certs.write("server", &cert(&ca, "server"));
    let https_port = common::free_port();
    let mut config = json!({
        "ports": {"https": https_port},
        "tls": {
            "defaults": {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file},
            "https": {"verify_incoming": true},
        },
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    let agent = Agent::builder().config(config).start().await;
    (agent, https_port, ca, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_requires_the_right_ca_name_and_client_certificate() {
    let certs = Certs::new();
    let (agent, port, ca, ca_file) = https_agent(&certs, json!({})).await;
    let url = |host: &str, path: &str| format!("https://{host}:{port}{path}");
    let cli = cert(&ca, "cli");

    // Right CA and a client certificate: the API answers, the dashboard too.
    let good = https_client(&ca_file, Some(&cli));
    let r = good
        .get(url("localhost", "/v1/status/leader"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(r.status(), 200);
    let r = good.get(url("localhost", "/ui/")).send().await.expect("ui");
    assert_eq!(r.status(), 200);
    let r = good
        .put(url("localhost", "/v1/kv/over-tls"))
        .body("yes")
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 200);
    assert_eq!(agent.get("/v1/kv/over-tls?raw").await.text(), "yes");

    // The expiry is reported: the metrics gauge and /v1/agent/self.
    let metrics: Value = good
        .get(url("localhost", "/v1/agent/metrics"))
        .send()
        .await
        .expect("metrics")
        .json()
        .await
        .expect("json");
    let gauge = metrics["Gauges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["Name"] == "consul.agent.tls.cert.expiry")
        .unwrap_or_else(|| panic!("no expiry gauge: {metrics}"));
    let secs = gauge["Value"].as_f64().unwrap_or_default();
    assert!(secs > 3600.0 && secs <= 86_400.0, "{gauge}");
    let this: Value =
        serde_json::from_str(&agent.get("/v1/agent/self").await.text()).expect("json");
    assert_eq!(this["DebugConfig"]["HTTPSPort"], json!(port));
    assert!(this["DebugConfig"]["TLSCertExpiry"].is_string(), "{this}");

    // No client certificate: the handshake is refused.
    let anonymous = https_client(&ca_file, None);
    assert!(
        anonymous
            .get(url("localhost", "/v1/status/leader"))
            .send()
            .await
            .is_err()
    );
    // A client certificate from another CA: refused.
    let (other_ca, other_file) = certs.ca("other-ca");
    let stranger = https_client(&ca_file, Some(&cert(&other_ca, "cli")));
    assert!(
        stranger
            .get(url("localhost", "/v1/status/leader"))
            .send()
            .await
            .is_err()
    );
    // The agent's certificate checked against another CA: refused by the client.
    let wrong_trust = https_client(&other_file, Some(&cli));
    assert!(
        wrong_trust
            .get(url("localhost", "/v1/status/leader"))
            .send()
            .await
            .is_err()
    );
    // A name the certificate does not carry: refused.
    let by_wrong_name = https_client(&ca_file, Some(&cli));
    let e = by_wrong_name
        .get(url("wrong.example", "/v1/status/leader"))
        .send()
        .await;
    assert!(e.is_err(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_port_answers_plain_http_and_survives_garbage_and_slow_clients() {
    let certs = Certs::new();
    let (agent, port, ca, ca_file) = https_agent(&certs, json!({})).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // Plain HTTP: Go's answer at once, then the connection closes.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request"), "{answer}");
    assert!(
        answer.contains("Client sent an HTTP request to an HTTPS server."),
        "{answer}"
    );

    // A handshake record header followed by garbage: closed, not a crash.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .await
        .expect("send");
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "garbage connection not closed");

    // Slow clients: one sends nothing, one sends half a handshake; both are closed within
    // the handshake timeout (5 s), not held open.
    let started = Instant::now();
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("send");
    for s in [&mut idle, &mut half] {
        let mut sink = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "slow client not closed");
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );

    // The agent still serves HTTPS, and the CLI speaks it (flags and Consul's variables).
    let cli = cert(&ca, "cli");
    let (cli_cert, cli_key) = certs.write("cli", &cli);
    let https_addr = format!("https://127.0.0.1:{port}");
    let (code, out, err) = cairn_in(
        &certs.dir,
        &[
            "members",
            "-http-addr",
            &https_addr,
            "-ca-file",
            &ca_file,
            "-client-cert",
            &cli_cert,
            "-client-key",
            &cli_key,
            "-tls-server-name",
            "server.dc1.consul",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&agent.node), "{out}");
    let (code, out, err) = cairn_in(
        &certs.dir,
        &["kv", "put", "from-cli", "v"],
        &[
            ("CONSUL_HTTP_ADDR", &format!("localhost:{port}")),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_CACERT", &ca_file),
            ("CONSUL_CLIENT_CERT", &cli_cert),
            ("CONSUL_CLIENT_KEY", &cli_key),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(agent.get("/v1/kv/from-cli?raw").await.text(), "v");
    // Without the client certificate the CLI fails with the TLS cause, and does not hang.
    let (code, _, err) = cairn_in(
        &certs.dir,
        &["members", "-http-addr", &https_addr, "-ca-file", &ca_file],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Error retrieving members"), "{err}");
    // CONSUL_HTTP_SSL_VERIFY=false skips verification of the agent (still needs a client cert).
    let (code, _, err) = cairn_in(
        &certs.dir,
        &["members", "-http-addr", &https_addr],
        &[
            ("CONSUL_HTTP_SSL_VERIFY", "false"),
            ("CONSUL_CLIENT_CERT", &cli_cert),
            ("CONSUL_CLIENT_KEY", &cli_key),
        ],
    );
    assert_eq!(code, 0, "{err}");
}

/// The leaf certificate a fresh HTTPS connection to `port` is served.
async fn served_certificate(port: u16, ca: &Pem, cli: &Pem) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.cert.as_bytes()).expect("ca"))
        .expect("root");
    let chain =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cli.cert.as_bytes()).expect("cert")];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cli.key.as_bytes()).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(cairn::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_sighup_and_expired_ones_are_refused() {
    let certs = Certs::new();
    let (agent, port, ca, _ca_file) = https_agent(&certs, json!({})).await;
    let cli = cert(&ca, "cli");
    let before = served_certificate(port, &ca, &cli).await;

    // A connection made before the reload, kept open.
    let ca_file = certs.path("ca.pem").display().to_string();
    let kept = https_client(&ca_file, Some(&cli));
    let url = format!("https://localhost:{port}/v1/status/leader");
    assert_eq!(kept.get(&url).send().await.expect("before").status(), 200);

    // A new certificate in the same files, then SIGHUP: new connections get it.
    let renewed = cert(&ca, "server");
    certs.write("server", &renewed);
    let expected = {
        use rustls::pki_types::pem::PemObject as _;
        rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert.as_bytes())
            .expect("der")
            .to_vec()
    };
    assert_ne!(before, expected);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent.pid()).expect("pid")),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    let (ca_ref, cli_ref, expected_ref) = (&ca, &cli, &expected);
    until(
        "the renewed certificate",
        Duration::from_secs(10),
        move || async move {
            (served_certificate(port, ca_ref, cli_ref).await == *expected_ref).then_some(())
        },
    )
    .await;
    // The old client (and its pooled connection) keeps working.
    assert_eq!(kept.get(&url).send().await.expect("after").status(), 200);

    // An expired certificate: the reload keeps the current one and says why.
    let expired = {
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            &ca.cert,
            rcgen::KeyPair::from_pem(&ca.key).expect("ca key"),
        )
        .expect("issuer");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["server.dc1.consul".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let c = params.signed_by(&key, &issuer).expect("sign");
        Pem {
            cert: c.pem(),
            key: key.serialize_pem(),
        }
    };
    certs.write("server", &expired);
    let r = agent.put_empty("/v1/agent/reload").await;
    assert_eq!(r.status, 200);
    let a = &agent;
    until(
        "the refusal in the log",
        Duration::from_secs(10),
        move || async move { a.log().contains("expired at 2021-01-01").then_some(()) },
    )
    .await;
    assert_eq!(served_certificate(port, &ca, &cli).await, expected);
    // The private key never reaches the log.
    let key_body: String = expired.key.lines().nth(1).unwrap_or_default().to_string();
    assert!(!agent.log().contains(&key_body));
}

/// Consul's RPC TLS settings for a server or client agent with this certificate and CA.
fn rpc_tls(ca_file: &str, cert_file: &str, key_file: &str) -> Value {
    json!({
        "tls": {
            "defaults": {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file},
            "internal_rpc": {
                "verify_incoming": true,
                "verify_outgoing": true,
                "verify_server_hostname": true,
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_over_tls_rpc_refuse_another_ca_and_a_client_posing_as_server() {
    let certs = Certs::new();
    let (ca, ca_file) = certs.ca("ca");
    let (server_cert, server_key) = certs.write("server", &cert(&ca, "server"));
    let tls = rpc_tls(&ca_file, &server_cert, &server_key);
    let mut c = Cluster::empty();
    for _ in 0..3 {
        c.add(NodeSpec {
            server: true,
            expect: 3,
            encrypt: None,
            extra: tls.clone(),
        });
    }
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(30)).await;
    let follower = (leader + 1) % 3;
    // A write through a follower is forwarded over TLS and replicated everywhere.
    let (status, _) = c.put(follower, "/v1/kv/tls", "on").await.expect("put");
    assert_eq!(status, 200);
    for i in 0..3 {
        c.wait_value(i, "tls", "on", Duration::from_secs(10)).await;
    }
    // Nothing on the RPC port in plain text: the connection is closed and logged.
    let mut plain = TcpStream::connect(c.rpc_addr(leader))
        .await
        .expect("connect");
    plain
        .write_all(b"POST /v1/internal/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let cr = &c;
    until(
        "the plain-text refusal",
        Duration::from_secs(5),
        move || async move {
            cr.servers[leader]
                .log()
                .contains("Non-TLS connection attempted with VerifyIncoming set")
                .then_some(())
        },
    )
    .await;

    // A fourth server with a certificate (and trust) from another CA.
    let (other, other_file) = certs.ca("other-ca");
    let (o_cert, o_key) = certs.write("other-server", &cert(&other, "server"));
    let stranger = c.add(NodeSpec {
        server: true,
        expect: 3,
        encrypt: None,
        extra: rpc_tls(&other_file, &o_cert, &o_key),
    });
    // A client agent's certificate from the right CA, on an agent started as a server.
    let (p_cert, p_key) = certs.write("client", &cert(&ca, "client"));
    let poser = c.add(NodeSpec {
        server: true,
        expect: 3,
        encrypt: None,
        extra: rpc_tls(&ca_file, &p_cert, &p_key),
    });
    // Both join the gossip pool (gossip has its own keys), so the leader tries them.
    c.wait_members(leader, Duration::from_secs(30), "five members", |m| {
        m.len() == 5
    })
    .await;
    let cr = &c;
    until(
        "the refusals",
        Duration::from_secs(30),
        move || async move {
            let logs: String = (0..3).map(|i| cr.servers[i].log()).collect();
            let stranger_log = cr.servers[stranger].log();
            let poser_log = cr.servers[poser].log();
            // The servers refuse the stranger's certificate (unknown issuer), the stranger
            // refuses theirs (unknown CA); the servers refuse the poser's client certificate
            // (BadCertificate: it does not name `server.dc1.consul`).
            let refused_stranger = logs.contains("UnknownCA") || stranger_log.contains("UnknownCA");
            let refused_poser =
                poser_log.contains("BadCertificate") || logs.contains("not a server certificate");
            (refused_stranger && refused_poser).then_some(())
        },
    )
    .await;
    // Directly: a client certificate from the right CA may call client RPCs but not Raft's;
    // a server certificate may.
    // Dialled as `server.dc1.consul`, the name in the servers' certificates.
    let leader_rpc: std::net::SocketAddr = c.rpc_addr(leader).parse().expect("addr");
    let rpc_client = |id: &Pem| {
        let pem = format!("{}{}", id.cert, id.key);
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .resolve("server.dc1.consul", leader_rpc)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.as_bytes()).expect("ca"))
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"))
            .build()
            .expect("client")
    };
    let rpc_url = |path: &str| format!("https://server.dc1.consul:{}{path}", leader_rpc.port());
    let as_client = rpc_client(&cert(&ca, "client"));
    let raft = as_client
        .post(rpc_url("/v1/internal/raft/vote"))
        .body("{}")
        .send()
        .await
        .expect("TLS accepted");
    assert_eq!(raft.status(), 403);
    let as_server = rpc_client(&cert(&ca, "server"));
    let raft = as_server
        .post(rpc_url("/v1/internal/raft/vote"))
        .body("{}")
        .send()
        .await
        .expect("TLS accepted");
    assert_ne!(raft.status(), 403);
    let cr = &c;
    until(
        "the server-only refusal",
        Duration::from_secs(5),
        move || async move {
            cr.servers[leader]
                .log()
                .contains("the peer's certificate is not a server certificate")
                .then_some(())
        },
    )
    .await;

    // A new write replicates to the three servers and never reaches the other two.
    let (status, _) = c.put(leader, "/v1/kv/after", "x").await.expect("put");
    assert_eq!(status, 200);
    for i in 0..3 {
        c.wait_value(i, "after", "x", Duration::from_secs(10)).await;
    }
    for i in [stranger, poser] {
        let got = c.get(i, "/v1/kv/after?stale").await;
        assert!(
            !matches!(got, Some((200, _))),
            "{} got the write: {got:?}",
            c.servers[i].name
        );
        // Nor can they write through the cluster (forwarding is refused).
        let w = c.put(i, "/v1/kv/from-outside", "x").await;
        assert!(!matches!(w, Some((200, _))), "{w:?}");
    }
    let (_, peers) = c.get(leader, "/v1/status/peers").await.expect("peers");
    let peers = peers.to_string();
    for i in [stranger, poser] {
        assert!(
            !peers.contains(&c.rpc_addr(i)),
            "{} in {peers}",
            c.servers[i].name
        );
    }
}

/// Rolling enablement: servers that dial each other over TLS (`verify_outgoing`) but do not yet
/// require it still serve a client agent that has no certificate at all, and servers holding a
/// gossip key with both `encrypt_verify_*` flags off still gossip with it in plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_enablement_accepts_plain_clients_until_verify_incoming() {
    let certs = Certs::new();
    let (ca, ca_file) = certs.ca("ca");
    let (server_cert, server_key) = certs.write("server", &cert(&ca, "server"));
    let mut extra = json!({
        "tls": {
            "defaults": {"ca_file": ca_file, "cert_file": server_cert, "key_file": server_key},
            "internal_rpc": {"verify_outgoing": true, "verify_server_hostname": true},
        },
        "encrypt_verify_incoming": false,
        "encrypt_verify_outgoing": false,
    });
    let key = cairn_gossip::keygen();
    let mut c = Cluster::empty();
    for _ in 0..3 {
        c.add(NodeSpec {
            server: true,
            expect: 3,
            encrypt: Some(key.clone()),
            extra: extra.clone(),
        });
    }
    let leader = c.wait_leader(&c.indices(), Duration::from_secs(30)).await;
    // A client agent with neither a certificate nor the gossip key.
    extra = json!({});
    let client = c.add(NodeSpec {
        server: false,
        expect: 0,
        encrypt: None,
        extra,
    });
    c.wait_members(leader, Duration::from_secs(30), "the client joined", |m| {
        m.len() == 4 && m.values().all(|s| *s == 1)
    })
    .await;
    // Its writes reach the servers over plain RPC and replicate.
    let cr = &c;
    until(
        "a write through the client",
        Duration::from_secs(20),
        move || async move {
            matches!(cr.put(client, "/v1/kv/rolling", "1").await, Some((200, _))).then_some(())
        },
    )
    .await;
    for i in 0..3 {
        c.wait_value(i, "rolling", "1", Duration::from_secs(10))
            .await;
    }
}

/// HTTPS alone: `ports.http = -1` leaves no plain listener, and the agent is fully usable over
/// HTTPS (readiness, writes, reads, the CLI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_agent() {
    let certs = Certs::new();
    let (ca, ca_file) = certs.ca("ca");
    let (cert_file, key_file) = certs.write("server", &cert(&ca, "server"));
    let (cli_cert, cli_key) = certs.write("cli", &cert(&ca, "cli"));
    let https_port = common::free_port();
    let config = json!({
        "ports": {"https": https_port, "http": -1},
        "tls": {"defaults": {
            "ca_file": ca_file, "cert_file": cert_file, "key_file": key_file,
            "verify_incoming": true,
        }},
    });
    let config_path = certs.path("agent.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let log = std::fs::File::create(certs.path("agent.log")).expect("log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["agent", "-dev", "-config-file"])
        .arg(&config_path)
        .args(["-dns-port", "-1"])
        .args(["-server-port", &common::free_port().to_string()])
        .args(["-serf-lan-port", &common::free_port().to_string()])
        .args(["-serf-wan-port", &common::free_port().to_string()])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let client = https_client(&ca_file, Some(&cert(&ca, "cli")));
    let base = format!("https://localhost:{https_port}");
    let (c, b) = (&client, &base);
    until(
        "a leader over HTTPS",
        Duration::from_secs(30),
        move || async move {
            let r = c.get(format!("{b}/v1/status/leader")).send().await.ok()?;
            let leader: String = r.json().await.ok()?;
            (!leader.is_empty()).then_some(())
        },
    )
    .await;
    // No plain listener: the agent reports its HTTP port as off.
    let self_: Value = client
        .get(format!("{base}/v1/agent/self"))
        .send()
        .await
        .expect("self")
        .json()
        .await
        .expect("json");
    assert_eq!(self_["DebugConfig"]["HTTPPort"], json!(-1), "{self_}");
    let put = client
        .put(format!("{base}/v1/kv/only-https"))
        .body("ok")
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    let https_addr = format!("https://localhost:{https_port}");
    let (code, out, err) = cairn_in(
        &certs.dir,
        &["kv", "get", "only-https"],
        &[
            ("CONSUL_HTTP_ADDR", &https_addr),
            ("CONSUL_CACERT", &ca_file),
            ("CONSUL_CLIENT_CERT", &cli_cert),
            ("CONSUL_CLIENT_KEY", &cli_key),
        ],
    );
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");
    let _ = child.kill().await;
}
