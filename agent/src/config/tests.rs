//!
//! They go through [`load`] with real arguments and files in a temporary directory, so each
//! one covers the whole path (parser, file reading, per-source check, merge, build) the way
//! the agent runs it. Error tests assert that the message names the flag or key and the bad
//! value, since that is what a user needs to fix a config.
//! Unit tests of configuration loading: flags, files, merging, defaults and validation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Loads from `list`, failing the test with the loader's message if it is refused.
fn ok(list: &[&str]) -> Config {
    match load(&args(list)) {
        Ok(c) => c,
        Err(e) => panic!("load({list:?}) failed: {e}"),
    }
}

/// The error message `list` is refused with, failing the test if it is accepted.
fn err(list: &[&str]) -> String {
    match load(&args(list)) {
        Ok(c) => panic!("load({list:?}) succeeded: {c:?}"),
        Err(e) => e.0,
    }
}

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        // The process ID and a counter keep directories apart between tests running in
        // parallel and between concurrent test runs.
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "cairn-config-test-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path.display().to_string()
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

/// Loads one JSON config file (plus `extra` flags).
fn with_json(json: &str, extra: &[&str]) -> Result<Config, ConfigError> {
    let dir = TempDir::new("json");
    let file = dir.file("agent.json", json);
    let mut a = args(&["-config-file", &file]);
    a.extend(args(extra));
    load(&a)
}

/// The error message a JSON config is refused with.
fn json_err(json: &str, extra: &[&str]) -> String {
    match with_json(json, extra) {
        Ok(c) => panic!("config {json} accepted: {c:?}"),
        Err(e) => e.0,
    }
}

// ---------------------------------------------------------------- flags

/// Go's flag syntax: `-x v`, `--x=v` and the other forms all mean the same.
#[test]
fn single_and_double_dash_flags() {
    let c = ok(&[
        "-server",
        "--bootstrap-expect=3",
        "-data-dir",
        "/tmp/cairn-x",
        "--node",
        "n1",
        "-datacenter=EAST",
        "--bind=10.0.0.5",
        "-client",
        "127.0.0.1 ::1",
        "-advertise",
        "10.0.0.6",
        "-advertise-wan=203.0.113.9",
    ]);
    assert!(c.server && !c.dev && !c.bootstrap);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.data_dir.as_deref(), Some(Path::new("/tmp/cairn-x")));
    assert_eq!(c.node_name, "n1");
    // Lowercased, and the primary defaults to it.
    assert_eq!(c.datacenter, "east");
    assert_eq!(c.primary_datacenter, "east");
    assert_eq!(c.bind_addr, ip("10.0.0.5"));
    assert_eq!(c.client_addrs, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(c.advertise_addr, Some(ip("10.0.0.6")));
    assert_eq!(c.advertise_addr_wan, Some(ip("203.0.113.9")));
    // The arguments are kept as given, for reload.
    assert_eq!(c.args.len(), 13);
}

/// Every port flag, in the `-x v` and `--x=v` forms; `-1` disables a listener.
#[test]
fn port_flags_in_both_forms() {
    let c = ok(&[
        "-dev",
        "-http-port",
        "9500",
        "--dns-port=-1",
        "-server-port=9300",
        "-serf-lan-port",
        "9301",
        "--serf-wan-port",
        "9302",
        "-grpc-port=9502",
    ]);
    assert_eq!(c.ports.http, Some(9500));
    assert_eq!(c.ports.dns, None);
    assert_eq!(c.ports.server, 9300);
    assert_eq!(c.ports.serf_lan, 9301);
    assert_eq!(c.ports.serf_wan, Some(9302));
    assert_eq!(c.ports.grpc, Some(9502));
    assert_eq!(c.ports.https, None);
    // HTTPS needs a certificate: refused without one, naming what to set.
    let e = err(&["-dev", "-https-port=9501"]);
    assert!(e.contains("ports.https") && e.contains("cert_file"), "{e}");
    let c = ok(&[
        "-dev",
        "-https-port=9501",
        "-hcl",
        "tls {\n https {\n cert_file = \"c.pem\"\n key_file = \"k.pem\"\n }\n }",
    ]);
    assert_eq!(c.ports.https, Some(9501));
}

/// A boolean flag takes `=value` only; `-dev true` is a flag and a stray argument.
#[test]
fn boolean_flag_forms() {
    let c = ok(&[
        "-dev=true",
        "-ui=false",
        "--log-json",
        "-enable-script-checks=1",
    ]);
    assert!(c.dev && !c.ui && c.log_json && c.enable_script_checks);
    let c = ok(&[
        "-dev",
        "-server=false",
        "-data-dir=/tmp/cairn-y",
        "-bootstrap=false",
    ]);
    assert!(!c.server && !c.bootstrap);
    // A boolean flag never takes the next argument as its value.
    let e = err(&["-dev", "true"]);
    assert!(e.contains("unexpected argument \"true\""), "{e}");
    let e = err(&["-dev=maybe"]);
    assert!(e.contains("-dev") && e.contains("maybe"), "{e}");
}

/// List flags collect every use, in order; `-recursor` drops duplicates and adds port 53;
/// `-node-meta` splits at the first colon.
#[test]
fn repeatable_flags() {
    let c = ok(&[
        "-dev",
        "-retry-join",
        "10.0.0.1",
        "--retry-join=10.0.0.2",
        "-join",
        "10.0.0.3",
        "-join-wan=10.1.0.1",
        "-retry-join-wan",
        "10.1.0.2",
        "-recursor",
        "8.8.8.8",
        "-recursor=1.1.1.1:5353",
        "-recursor=8.8.8.8",
        "-node-meta",
        "rack:r1",
        "--node-meta=zone:a:b",
        "-node-meta=flag",
        "-retry-interval=5s",
        "-retry-max",
        "7",
    ]);
    assert_eq!(c.retry_join, vec!["10.0.0.1", "10.0.0.2"]);
    assert_eq!(c.start_join, vec!["10.0.0.3"]);
    assert_eq!(c.retry_join_wan, vec!["10.1.0.1", "10.1.0.2"]);
    assert_eq!(c.recursors, vec!["8.8.8.8:53", "1.1.1.1:5353"]);
    assert_eq!(c.node_meta.get("rack").map(String::as_str), Some("r1"));
    assert_eq!(c.node_meta.get("zone").map(String::as_str), Some("a:b"));
    // A pair without a colon is a key with an empty value.
    assert_eq!(c.node_meta.get("flag").map(String::as_str), Some(""));
    assert_eq!(c.retry_interval, Duration::from_secs(5));
    assert_eq!(c.retry_max, 7);
}

/// A non-list flag given twice keeps the last value, as Go's flag package does.
#[test]
fn last_scalar_flag_wins() {
    let c = ok(&[
        "-dev",
        "-node",
        "a",
        "-node=b",
        "-log-level",
        "warn",
        "--log-level=ERROR",
    ]);
    assert_eq!(c.node_name, "b");
    assert_eq!(c.log_level, "error");
}

#[test]
fn other_flags() {
    let c = ok(&[
        "-dev",
        "-domain",
        "Example",
        "-alt-domain=alt.test.",
        "-encrypt",
        "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
        "-pid-file=/tmp/cairn.pid",
        "-enable-local-script-checks",
        "-disable-host-node-id=false",
        "-node-id",
        "ADF4238A-882B-9DDC-4A9D-5B6758E4159E",
        "-rejoin",
    ]);
    assert_eq!(c.domain, "example.");
    assert_eq!(c.alt_domain, "alt.test.");
    assert!(c.encrypt.is_some());
    assert_eq!(c.pid_file.as_deref(), Some(Path::new("/tmp/cairn.pid")));
    assert!(c.enable_local_script_checks && !c.enable_script_checks);
    assert!(!c.disable_host_node_id);
    assert_eq!(c.node_id, "adf4238a-882b-9ddc-4a9d-5b6758e4159e");
    assert!(c.rejoin_after_leave);
}

/// Both dash forms of an unknown flag are reported under its name.
#[test]
fn unknown_flag_is_named() {
    let e = err(&["-dev", "-frobnicate"]);
    assert!(e.contains("-frobnicate"), "{e}");
    let e = err(&["--frobnicate=3"]);
    assert!(e.contains("-frobnicate"), "{e}");
}

#[test]
fn flag_syntax_errors() {
    let e = err(&["-dev", "-node"]);
    assert!(e.contains("flag needs an argument: -node"), "{e}");
    let e = err(&["---dev"]);
    assert!(e.contains("bad flag syntax"), "{e}");
    let e = err(&["-dev", "extra"]);
    assert!(e.contains("\"extra\""), "{e}");
    let e = err(&["-config-format", "yaml"]);
    assert!(e.contains("-config-format") && e.contains("yaml"), "{e}");
    let e = err(&["-node-meta", ":v"]);
    assert!(e.contains("-node-meta"), "{e}");
}

/// `-h` is reported as an error carrying the usage text, which `is_help` recognizes.
#[test]
fn help_lists_flags() {
    for h in ["-h", "-help", "--help"] {
        let e = match load(&args(&[h])) {
            Ok(_) => panic!("{h} gave a config"),
            Err(e) => e,
        };
        assert!(e.is_help(), "{e}");
        for flag in [
            "-dev",
            "-retry-join=<addr>",
            "-config-dir=<dir>",
            "-bootstrap-expect=<n>",
        ] {
            assert!(e.0.contains(flag), "help lacks {flag}");
        }
    }
    assert!(!ConfigError("x".into()).is_help());
    assert!(usage().starts_with("Usage: cairn agent"));
}

/// `--` alone ends the flags and is not an error.
#[test]
fn double_dash_ends_flags() {
    let c = ok(&["-dev", "--"]);
    assert!(c.dev);
}

// ---------------------------------------------------------------- defaults

/// A plain client: Consul's defaults for every key, and no warning.
#[test]
fn client_defaults() {
    let c = ok(&["-data-dir", "/tmp/cairn-client", "-node", "c1"]);
    assert!(!c.dev && !c.server && !c.bootstrap && !c.ui);
    assert_eq!(c.datacenter, "dc1");
    assert_eq!(c.domain, "consul.");
    assert_eq!(c.alt_domain, "");
    assert_eq!(c.client_addrs, vec![ip("127.0.0.1")]);
    assert_eq!(c.bind_addr, ip("0.0.0.0"));
    assert_eq!(c.advertise_addr, None);
    assert_eq!(c.ports.http, Some(8500));
    assert_eq!(c.ports.dns, Some(8600));
    assert_eq!(c.ports.server, 8300);
    assert_eq!(c.ports.serf_lan, 8301);
    assert_eq!(c.ports.serf_wan, Some(8302));
    assert_eq!(c.ports.https, None);
    assert_eq!(c.ports.grpc, None);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.retry_interval, Duration::from_secs(30));
    assert_eq!(c.reconnect_timeout, Duration::from_secs(72 * 3600));
    assert!(c.dns.allow_stale);
    assert_eq!(c.dns.max_stale, Duration::from_secs(87_600 * 3600));
    assert_eq!(c.dns.udp_answer_limit, 3);
    assert_eq!(c.dns.recursor_timeout, Duration::from_secs(2));
    assert!(c.dns.enable_additional_node_meta_txt);
    assert_eq!(
        (
            c.dns.soa.refresh,
            c.dns.soa.retry,
            c.dns.soa.expire,
            c.dns.soa.min_ttl
        ),
        (3600, 600, 86400, 0)
    );
    assert_eq!(c.performance.raft_multiplier, 5);
    assert_eq!(c.performance.leave_drain_time, Duration::from_secs(5));
    assert_eq!(c.performance.rpc_hold_timeout, Duration::from_secs(7));
    assert_eq!(c.limits.http_max_conns_per_client, 200);
    assert_eq!(c.limits.kv_max_value_size, 524_288);
    assert_eq!(c.limits.txn_max_req_len, 524_288);
    assert_eq!(c.telemetry.metrics_prefix, "consul");
    assert_eq!(c.telemetry.prometheus_retention_time, Duration::ZERO);
    assert_eq!(c.acl.default_policy, "allow");
    assert_eq!(c.acl.down_policy, "extend-cache");
    assert!(c.leave_on_terminate && !c.skip_leave_on_interrupt);
    assert!(c.disable_host_node_id);
    // A default configuration must be quiet: a warning here would show on every start.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// Servers default to staying in the cluster on signals; a config file can change both.
#[test]
fn server_leave_defaults_and_overrides() {
    let c = ok(&[
        "-server",
        "-data-dir",
        "/tmp/cairn-s",
        "-bootstrap-expect=3",
    ]);
    assert!(!c.leave_on_terminate && c.skip_leave_on_interrupt);
    let c = with_json(
        r#"{"leave_on_terminate": true, "skip_leave_on_interrupt": false}"#,
        &[
            "-server",
            "-data-dir",
            "/tmp/cairn-s",
            "-bootstrap-expect=3",
        ],
    )
    .expect("valid");
    assert!(c.leave_on_terminate && !c.skip_leave_on_interrupt);
}

/// `-dev` changes defaults only: explicit flags still win over it.
#[test]
fn dev_defaults() {
    let c = ok(&["-dev"]);
    assert!(c.dev && c.server && c.bootstrap && c.ui);
    assert_eq!(c.bootstrap_expect, 0);
    assert_eq!(c.bind_addr, ip("127.0.0.1"));
    assert_eq!(c.client_addrs, vec![ip("127.0.0.1")]);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.performance.raft_multiplier, 1);
    assert_eq!(
        c.telemetry.prometheus_retention_time,
        Duration::from_secs(60)
    );
    assert_eq!(c.ports.grpc, None);
    assert_eq!(c.data_dir, None);
    // The host name, since `-node` was not given.
    assert!(!c.node_name.is_empty());
    assert!(!c.leave_on_terminate && c.skip_leave_on_interrupt);
    // Flags still override -dev defaults.
    let c = ok(&["-dev", "-log-level=info", "-bind", "127.0.0.2", "-ui=false"]);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.bind_addr, ip("127.0.0.2"));
    assert!(!c.ui);
}

#[test]
fn bootstrap_expect_one_means_bootstrap() {
    let c = ok(&["-server", "-bootstrap-expect=1", "-data-dir=/tmp/cairn-b1"]);
    assert!(c.bootstrap);
    assert_eq!(c.bootstrap_expect, 0);
    assert!(
        c.warnings
            .iter()
            .any(|w| w == "BootstrapExpect is set to 1; this is the same as Bootstrap mode.")
    );
    // With -dev (a server that bootstraps itself anyway) and with -bootstrap, as in Consul.
    let c = ok(&["-dev", "-bootstrap-expect", "1"]);
    assert!(c.bootstrap && c.server);
    assert_eq!(c.bootstrap_expect, 0);
    let c = ok(&[
        "-server",
        "-bootstrap",
        "-bootstrap-expect=1",
        "-data-dir=/tmp/cairn-b1",
    ]);
    assert!(c.bootstrap);
    // From a file too.
    let c = ok(&["-dev", "-hcl", "bootstrap_expect = 1"]);
    assert!(c.bootstrap);
    // More than one still refuses -dev.
    assert!(err(&["-dev", "-bootstrap-expect=3"]).contains("bootstrap_expect"));
}

// ---------------------------------------------------------------- files

/// A config that sets nearly every supported key, with values other than the defaults and
/// in mixed spellings (`East-1`, `WARN`, `Name`), so that a key read from the wrong place
/// or not canonicalized shows in [`check_full`].
const FULL_JSON: &str = r#"{
  "datacenter": "East-1",
  "primary_datacenter": "west",
  "node_name": "web-1",
  "server": true,
  "bootstrap_expect": 3,
  "bind_addr": "10.0.0.1",
  "client_addr": "0.0.0.0",
  "advertise_addr": "10.0.0.2",
  "data_dir": "/var/lib/cairn",
  "log_level": "WARN",
  "log_json": true,
  "ui_config": {"enabled": true},
  "encrypt": "pUqJrVyVRj5jsiYEkM/tFQ==",
  "retry_join": ["10.0.0.3", "10.0.0.4"],
  "retry_interval": "1m30s",
  "retry_max": 4,
  "recursors": ["9.9.9.9"],
  "domain": "cairn",
  "ports": {"http": 18500, "dns": -1, "grpc": 8502},
  "addresses": {"http": "127.0.0.1 10.0.0.1"},
  "node_meta": {"rack": "r7"},
  "services": [{"name": "db", "port": 5432}],
  "service": {"Name": "web", "Port": 80, "check": {"http": "http://localhost/", "interval": "10s"}},
  "checks": [{"name": "disk", "args": ["df"], "interval": "1m"}],
  "dns_config": {"only_passing": true, "service_ttl": {"*": "5s", "db*": "1m"}, "udp_answer_limit": 5,
                 "soa": {"min_ttl": 30}},
  "performance": {"raft_multiplier": 2, "leave_drain_time": "10s"},
  "acl": {"enabled": true, "default_policy": "deny", "down_policy": "async-cache",
          "tokens": {"master": "root", "agent": "a-token"}},
  "telemetry": {"prometheus_retention_time": "30s", "disable_hostname": true, "metrics_prefix": "cairn"},
  "limits": {"http_max_conns_per_client": 50, "kv_max_value_size": 1024, "txn_max_req_len": 2048},
  "reconnect_timeout": "24h",
  "disable_update_check": true
}"#;

/// What [`FULL_JSON`] and [`FULL_HCL`] must both produce.
fn check_full(c: &Config) {
    assert_eq!(c.datacenter, "east-1");
    assert_eq!(c.primary_datacenter, "west");
    assert_eq!(c.node_name, "web-1");
    assert!(c.server);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.bind_addr, ip("10.0.0.1"));
    assert_eq!(c.client_addrs, vec![ip("0.0.0.0")]);
    assert_eq!(c.advertise_addr, Some(ip("10.0.0.2")));
    assert_eq!(c.data_dir.as_deref(), Some(Path::new("/var/lib/cairn")));
    assert_eq!(c.log_level, "warn");
    assert!(c.log_json && c.ui);
    assert_eq!(c.encrypt.as_deref(), Some("pUqJrVyVRj5jsiYEkM/tFQ=="));
    assert_eq!(c.retry_join, vec!["10.0.0.3", "10.0.0.4"]);
    assert_eq!(c.retry_interval, Duration::from_secs(90));
    assert_eq!(c.retry_max, 4);
    assert_eq!(c.recursors, vec!["9.9.9.9:53"]);
    assert_eq!(c.domain, "cairn.");
    assert_eq!(c.ports.http, Some(18500));
    assert_eq!(c.ports.dns, None);
    assert_eq!(c.ports.grpc, Some(8502));
    // Ports the file does not set keep their defaults: blocks merge key by key.
    assert_eq!(c.ports.server, 8300);
    assert_eq!(c.addresses.http, vec![ip("127.0.0.1"), ip("10.0.0.1")]);
    assert!(c.addresses.dns.is_empty());
    assert_eq!(c.node_meta.get("rack").map(String::as_str), Some("r7"));
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.services[0]["name"], "db");
    // Definitions keep their keys as written (`Name`); the agent decodes them later.
    assert_eq!(c.services[1]["Name"], "web");
    assert_eq!(c.services[1]["check"]["interval"], "10s");
    assert_eq!(c.checks.len(), 1);
    assert_eq!(c.checks[0]["name"], "disk");
    assert!(c.dns.only_passing);
    assert_eq!(c.dns.udp_answer_limit, 5);
    assert_eq!(c.dns.soa.min_ttl, 30);
    // Keys of a block that the file does not set keep their defaults.
    assert_eq!(c.dns.soa.refresh, 3600);
    assert_eq!(c.dns.service_ttl.get("*"), Some(&Duration::from_secs(5)));
    assert_eq!(c.dns.service_ttl.get("db*"), Some(&Duration::from_secs(60)));
    assert_eq!(c.performance.raft_multiplier, 2);
    assert_eq!(c.performance.leave_drain_time, Duration::from_secs(10));
    assert_eq!(c.performance.rpc_hold_timeout, Duration::from_secs(7));
    assert!(c.acl.enabled);
    assert_eq!(c.acl.default_policy, "deny");
    assert_eq!(c.acl.down_policy, "async-cache");
    assert_eq!(
        c.acl.tokens.get("initial_management").map(String::as_str),
        Some("root")
    );
    assert_eq!(
        c.acl.tokens.get("agent").map(String::as_str),
        Some("a-token")
    );
    assert_eq!(
        c.telemetry.prometheus_retention_time,
        Duration::from_secs(30)
    );
    assert!(c.telemetry.disable_hostname);
    assert_eq!(c.telemetry.metrics_prefix, "cairn");
    assert_eq!(c.limits.http_max_conns_per_client, 50);
    assert_eq!(c.limits.kv_max_value_size, 1024);
    assert_eq!(c.limits.txn_max_req_len, 2048);
    assert_eq!(c.reconnect_timeout, Duration::from_secs(24 * 3600));
    assert_eq!(c.config_sources.len(), 1);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn json_file() {
    let c = with_json(FULL_JSON, &[]).expect("valid config");
    check_full(&c);
}

/// The same config as [`FULL_JSON`] in HCL, written as Consul users write it: repeated
/// `ports` blocks, a `service_ttl` block with quoted keys (HCL 1 style), and legacy token
/// names.
const FULL_HCL: &str = r#"
datacenter = "East-1"
primary_datacenter = "west"
node_name = "web-1"
server = true
bootstrap_expect = 3
bind_addr = "10.0.0.1"
client_addr = "0.0.0.0"
advertise_addr = "10.0.0.2"
data_dir = "/var/lib/cairn"
log_level = "WARN"
log_json = true
ui_config {
  enabled = true
}
encrypt = "pUqJrVyVRj5jsiYEkM/tFQ=="
retry_join = ["10.0.0.3", "10.0.0.4"]
retry_interval = "1m30s"
retry_max = 4
recursors = ["9.9.9.9"]
domain = "cairn"
ports {
  http = 18500
  dns  = -1
}
ports {
  grpc = 8502
}
addresses {
  http = "127.0.0.1 10.0.0.1"
}
node_meta {
  rack = "r7"
}
services = [
  { name = "db", port = 5432 }
]
service {
  Name = "web"
  Port = 80
  check {
    http     = "http://localhost/"
    interval = "10s"
  }
}
checks = [
  {
    name     = "disk"
    args     = ["df"]
    interval = "1m"
  }
]
dns_config {
  only_passing = true
  service_ttl {
    "*"   = "5s"
    "db*" = "1m"
  }
  udp_answer_limit = 5
  soa {
    min_ttl = 30
  }
}
performance {
  raft_multiplier  = 2
  leave_drain_time = "10s"
}
acl {
  enabled        = true
  default_policy = "deny"
  down_policy    = "async-cache"
  tokens {
    master = "root"
    agent  = "a-token"
  }
}
telemetry {
  prometheus_retention_time = "30s"
  disable_hostname          = true
  metrics_prefix            = "cairn"
}
limits {
  http_max_conns_per_client = 50
  kv_max_value_size         = 1024
  txn_max_req_len           = 2048
}
reconnect_timeout    = "24h"
disable_update_check = true
"#;

/// HCL and JSON forms of one config must give the same result.
#[test]
fn hcl_file() {
    let dir = TempDir::new("hcl");
    let file = dir.file("agent.hcl", FULL_HCL);
    let c = ok(&["-config-file", &file]);
    check_full(&c);
}

/// Repeated `service` and `check` blocks, and several `check` blocks inside a service,
/// come out as the lists the registration decoder expects.
#[test]
fn hcl_service_blocks_become_services() {
    let dir = TempDir::new("hcl-services");
    let file = dir.file(
        "services.hcl",
        r#"
service {
  name = "web"
  port = 80
  tags = ["v1"]
  check {
    id       = "web-http"
    http     = "http://localhost:80/health"
    interval = "10s"
  }
}
service {
  name = "api"
  port = 81
  check {
    tcp      = "localhost:81"
    interval = "5s"
  }
  check {
    ttl = "30s"
  }
}
services {
  name = "cache"
}
check {
  name = "mem"
  ttl  = "1m"
}
"#,
    );
    let c = ok(&["-dev", "-config-file", &file]);
    // `services` entries come first: a singular `service` joins the list after the
    // list's own entries from the same file.
    let names: Vec<&str> = c
        .services
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["cache", "web", "api"]);
    let web = &c.services[1];
    assert_eq!(web["check"]["id"], "web-http");
    assert_eq!(web["tags"], serde_json::json!(["v1"]));
    let api = &c.services[2];
    // Two `check` blocks in one service arrive as a list, moved to `checks`.
    assert!(api.get("check").is_none());
    assert_eq!(api["checks"].as_array().map(Vec::len), Some(2));
    assert_eq!(c.checks.len(), 1);
    assert_eq!(c.checks[0]["name"], "mem");
}

/// Files of a directory are read by name (`a` before `b` whatever the creation order),
/// lists append in that order after the flags' lists, and non-config files and
/// subdirectories are skipped.
#[test]
fn config_dir_lexical_order_and_list_appending() {
    let dir = TempDir::new("dir");
    dir.file(
        "b.json",
        r#"{"datacenter": "dc-b", "retry_join": ["b"], "node_meta": {"b": "1"},
            "services": [{"name": "svc-b"}]}"#,
    );
    dir.file(
        "a.json",
        r#"{"datacenter": "dc-a", "retry_join": ["a"], "node_meta": {"a": "1"},
            "log_level": "warn", "services": [{"name": "svc-a"}]}"#,
    );
    dir.file(
        "c.hcl",
        "retry_join = [\"c\"]\nservice {\n  name = \"svc-c\"\n}\n",
    );
    dir.file("notes.txt", "not config");
    std::fs::create_dir_all(dir.0.join("sub.json")).expect("subdir");
    let c = ok(&["-dev", "-retry-join", "flag", "-config-dir", &dir.path()]);
    assert_eq!(c.datacenter, "dc-b");
    // Set only in `a.json`: a later file replaces only the keys it sets.
    assert_eq!(c.log_level, "warn");
    assert_eq!(c.retry_join, vec!["flag", "a", "b", "c"]);
    assert_eq!(c.node_meta.len(), 2);
    let names: Vec<&str> = c
        .services
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["svc-a", "svc-b", "svc-c"]);
    // `notes.txt` and the `sub.json` directory are not config sources.
    assert_eq!(c.config_sources.len(), 3);
    assert!(c.config_sources[0].ends_with("a.json"));
    assert!(
        c.warnings.iter().any(|w| w.contains("notes.txt")),
        "{:?}",
        c.warnings
    );
}

/// The precedence of Consul: files in order, then `-hcl`, then flags, wherever each flag
/// stands on the command line.
#[test]
fn later_sources_override_and_flags_win() {
    let dir = TempDir::new("order");
    let one = dir.file(
        "one.json",
        r#"{"datacenter": "one", "node_name": "n1", "ports": {"http": 1111, "dns": 1112}}"#,
    );
    let two = dir.file(
        "two.hcl",
        "datacenter = \"two\"\nports {\n  http = 2222\n}\n",
    );
    let c = ok(&["-dev", "-config-file", &one, "-config-file", &two]);
    assert_eq!(c.datacenter, "two");
    assert_eq!(c.node_name, "n1");
    assert_eq!(c.ports.http, Some(2222));
    assert_eq!(c.ports.dns, Some(1112));
    // Flags are applied last, wherever they appear.
    let c = ok(&[
        "-dev",
        "-datacenter",
        "flag",
        "-config-file",
        &one,
        "-config-file",
        &two,
    ]);
    assert_eq!(c.datacenter, "flag");
    // -hcl comes after files, before other flags.
    let c = ok(&[
        "-dev",
        "-config-file",
        &one,
        "-hcl",
        "datacenter = \"inline\"",
    ]);
    assert_eq!(c.datacenter, "inline");
    let c = ok(&[
        "-dev",
        "-hcl",
        "datacenter = \"inline\"",
        "-datacenter=flag",
    ]);
    assert_eq!(c.datacenter, "flag");
}

/// Without a known extension a file needs `-config-format`, and the message says so.
#[test]
fn config_format_flag() {
    let dir = TempDir::new("format");
    let file = dir.file("agent.conf", "datacenter = \"fmt\"\n");
    let e = err(&["-dev", "-config-file", &file]);
    assert!(
        e.contains("agent.conf") && e.contains("-config-format"),
        "{e}"
    );
    let c = ok(&["-dev", "-config-format=hcl", "-config-file", &file]);
    assert_eq!(c.datacenter, "fmt");
}

/// Missing files, syntax errors, HCL variables and a non-object top level all name the
/// file in the message.
#[test]
fn file_errors_name_the_file() {
    let e = err(&["-dev", "-config-file", "/nonexistent/cairn.json"]);
    assert!(e.contains("/nonexistent/cairn.json"), "{e}");
    let dir = TempDir::new("broken");
    let file = dir.file("broken.json", "{\"datacenter\": ");
    let e = err(&["-dev", "-config-file", &file]);
    assert!(e.contains("broken.json") && e.contains("JSON"), "{e}");
    let file = dir.file("broken.hcl", "ports {\n http = \n");
    let e = err(&["-dev", "-config-file", &file]);
    assert!(e.contains("broken.hcl") && e.contains("HCL"), "{e}");
    // Config files are data: a variable reference is an error, not an empty value.
    let file = dir.file("vars.hcl", "datacenter = var.dc\n");
    let e = err(&["-dev", "-config-file", &file]);
    assert!(e.contains("vars.hcl") && e.contains("datacenter"), "{e}");
    let file = dir.file("list.json", "[1, 2]");
    let e = err(&["-dev", "-config-file", &file]);
    assert!(e.contains("top level"), "{e}");
}

/// Old spellings (`ui`, `agent_master`) work, and the flag still wins over a file's alias.
#[test]
fn aliases() {
    let c = with_json(
        r#"{"ui": true, "acl": {"tokens": {"agent_master": "r"}}}"#,
        &["-dev", "-ui=false"],
    )
    .expect("valid");
    assert!(!c.ui, "the flag wins over the file");
    assert_eq!(
        c.acl.tokens.get("agent_recovery").map(String::as_str),
        Some("r")
    );
    let c = with_json(r#"{"ui": true}"#, &["-data-dir=/tmp/cairn-ui"]).expect("valid");
    assert!(c.ui);
}

/// Numbers and booleans written as strings are accepted, as by Consul's decoder.
#[test]
fn weakly_typed_values() {
    let c = with_json(
        r#"{"server": "true", "bootstrap_expect": "3", "ports": {"http": "9000"}, "data_dir": "/tmp/cairn-w"}"#,
        &[],
    )
    .expect("valid");
    assert!(c.server);
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.ports.http, Some(9000));
}

// ---------------------------------------------------------------- warnings

/// Unknown and unsupported keys warn with their full path and file, and do not stop the
/// agent.
#[test]
fn unknown_keys_warn() {
    // Keys Consul has but Cairn does not implement: a warning naming each, and the agent starts.
    let c = with_json(
        r#"{"tls": {"grpc": {}}, "dns_config": {"use_cache": true}, "audit": {"enabled": false},
            "enable_central_service_config": true, "telemetry": {"statsd_address": "127.0.0.1:8125"}}"#,
        &["-dev"],
    )
    .expect("Consul's keys are not fatal");
    let all = c.warnings.join("\n");
    assert!(
        all.contains("\"tls.grpc\"") && all.contains("not supported"),
        "{all}"
    );
    assert!(all.contains("\"dns_config.use_cache\""), "{all}");
    assert!(all.contains("\"audit\""), "{all}");
    assert!(all.contains("\"enable_central_service_config\""), "{all}");
    assert!(all.contains("\"telemetry.statsd_address\""), "{all}");
    assert!(all.contains("agent.json"), "warnings name the file: {all}");
    // Keys nobody knows: Consul's error, naming the file and every key.
    let e = json_err(r#"{"frobnicate": 1, "ports": {"htp": 1}}"#, &["-dev"]);
    assert!(e.contains("invalid config key frobnicate"), "{e}");
    assert!(e.contains("invalid config key ports.htp"), "{e}");
    assert!(e.contains("agent.json"), "{e}");
}

/// Script checks without ACLs, and a node name DNS cannot serve, are warned about.
#[test]
fn risky_settings_warn() {
    // `_` is not valid in a DNS name: the node works but DNS cannot find it.
    let c = ok(&["-dev", "-enable-script-checks", "-node", "bad_name"]);
    let all = c.warnings.join("\n");
    assert!(all.contains("enable_script_checks"), "{all}");
    assert!(all.contains("bad_name"), "{all}");
}

// ---------------------------------------------------------------- validation

/// Asserts that an error message mentions each of `needles` (flag, key, value).
fn assert_names(e: &str, needles: &[&str]) {
    for n in needles {
        assert!(e.contains(n), "error {e:?} does not name {n:?}");
    }
}

/// A bad value is reported with its key and, depending on the source, the file name or
/// the flag.
#[test]
fn invalid_bootstrap_expect() {
    assert_names(
        &json_err(r#"{"bootstrap_expect": -1}"#, &["-dev"]),
        &["bootstrap_expect", "-1"],
    );
    let dir = TempDir::new("neg");
    let file = dir.file("neg.hcl", "bootstrap_expect = -1\n");
    assert_names(
        &err(&["-dev", "-config-file", &file]),
        &["neg.hcl", "bootstrap_expect"],
    );
    assert_names(
        &err(&["-bootstrap-expect", "x"]),
        &["-bootstrap-expect", "\"x\""],
    );
}

/// Out-of-range ports, a disabled server port, and two listeners on one port.
#[test]
fn invalid_port() {
    assert_names(
        &json_err(r#"{"ports": {"http": 70000}}"#, &["-dev"]),
        &["ports.http", "70000"],
    );
    assert_names(
        &err(&["-dev", "-http-port", "70000"]),
        &["-http-port", "70000"],
    );
    assert_names(
        &json_err(r#"{"ports": {"server": -1}}"#, &["-dev"]),
        &["ports.server", "cannot be disabled"],
    );
    assert_names(
        // DNS on the HTTP port: the message names both keys.
        &err(&["-dev", "-dns-port=8500"]),
        &["ports.dns", "ports.http", "8500"],
    );
}

#[test]
fn invalid_log_level() {
    let e = json_err(r#"{"log_level": "loud"}"#, &["-dev"]);
    assert!(
        e.contains(
            "log_level: invalid value \"loud\": expected one of trace, debug, info, warn, error"
        ),
        "{e}"
    );
    assert_names(
        &err(&["-dev", "-log-level", "loud"]),
        &["-log-level", "loud"],
    );
}

/// Durations need a unit, as in Go; `reconnect_timeout` has Consul's 8h minimum.
#[test]
fn invalid_durations() {
    assert_names(
        &json_err(r#"{"retry_interval": "10x"}"#, &["-dev"]),
        &["retry_interval", "10x"],
    );
    assert_names(
        // A bare number has no unit: refused, as Go's ParseDuration does.
        &json_err(r#"{"dns_config": {"node_ttl": 10}}"#, &["-dev"]),
        &["dns_config.node_ttl"],
    );
    assert_names(
        &json_err(
            r#"{"dns_config": {"service_ttl": {"web": "soon"}}}"#,
            &["-dev"],
        ),
        &["dns_config.service_ttl.web"],
    );
    assert_names(
        &json_err(r#"{"reconnect_timeout": "1h"}"#, &["-dev"]),
        &["reconnect_timeout", "8h"],
    );
    assert_names(
        &err(&["-dev", "-retry-interval=often"]),
        &["-retry-interval"],
    );
}

/// Bad IPs, go-sockaddr templates, host names as recursors, and `0.0.0.0` advertised.
#[test]
fn invalid_addresses() {
    assert_names(
        &json_err(r#"{"bind_addr": "1.2.3"}"#, &["-dev"]),
        &["bind_addr", "1.2.3"],
    );
    assert_names(
        &err(&["-dev", "-client", "127.0.0.1 nope"]),
        &["-client", "nope"],
    );
    assert_names(
        &json_err(r#"{"bind_addr": "{{ GetPrivateIP }}"}"#, &["-dev"]),
        &["bind_addr", "templates are not supported"],
    );
    assert_names(
        &json_err(
            r#"{"addresses": {"http": "{{ GetAllInterfaces }}"}}"#,
            &["-dev"],
        ),
        &["addresses.http", "templates are not supported"],
    );
    assert_names(
        &err(&["-dev", "-recursor", "dns.google"]),
        &["-recursor", "dns.google"],
    );
    assert_names(
        // Fine to bind to, but not an address other agents can dial.
        &err(&["-dev", "-advertise", "0.0.0.0"]),
        &["advertise_addr"],
    );
}

/// Consul's bootstrap rules: not both modes, server mode only, and not with `-dev`.
#[test]
fn invalid_bootstrap_combinations() {
    assert_names(
        &err(&[
            "-server",
            "-bootstrap",
            "-bootstrap-expect=3",
            "-data-dir=/tmp/cairn-bb",
        ]),
        &["bootstrap_expect", "bootstrap"],
    );
    assert_names(
        &err(&["-bootstrap-expect=3", "-data-dir=/tmp/cairn-bc"]),
        &["bootstrap_expect", "server"],
    );
    assert_names(
        &err(&["-bootstrap", "-data-dir=/tmp/cairn-bd"]),
        &["bootstrap", "server"],
    );
    assert_names(
        // A -dev agent bootstraps itself alone.
        &err(&["-dev", "-bootstrap-expect=3"]),
        &["bootstrap_expect", "-dev"],
    );
}

/// Datacenter names must be DNS labels; upper case is lowercased, not refused.
#[test]
fn invalid_datacenter() {
    assert_names(
        &json_err(r#"{"datacenter": "dc 1"}"#, &["-dev"]),
        &["datacenter", "dc 1"],
    );
    // A dot would split the datacenter into two DNS labels.
    assert_names(&err(&["-dev", "-datacenter", "dc.1"]), &["-datacenter"]);
    assert_eq!(
        ok(&["-dev", "-datacenter", "DC_East-2"]).datacenter,
        "dc_east-2"
    );
}

/// Keys must be base64 of an AES key size, and a refused key is never echoed.
#[test]
fn invalid_encrypt() {
    assert_names(
        &err(&["-dev", "-encrypt", "not base64!"]),
        &["-encrypt", "base64"],
    );
    // 10 bytes.
    assert_names(
        &json_err(r#"{"encrypt": "AAAAAAAAAAAAAA=="}"#, &["-dev"]),
        &["encrypt", "16, 24 or 32"],
    );
    let e = json_err(r#"{"encrypt": "AAAAAAAAAAAAAA=="}"#, &["-dev"]);
    assert!(
        !e.contains("AAAAAAAAAAAAAA=="),
        "the key is not echoed: {e}"
    );
    ok(&["-dev", "-encrypt", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]); // 24 bytes
}

/// Only `-dev` runs without a data directory, and a file is not one.
#[test]
fn data_dir_required_outside_dev() {
    assert_names(&err(&["-node", "c"]), &["data_dir", "-data-dir"]);
    assert_names(&err(&["-server", "-bootstrap-expect=3"]), &["data_dir"]);
    let dir = TempDir::new("notdir");
    // A file where the data directory should be.
    let file = dir.file("file", "x");
    assert_names(
        &err(&["-data-dir", &file]),
        &["data_dir", "not a directory"],
    );
    assert!(ok(&["-dev"]).data_dir.is_none());
}

/// One refused value per kind of check, each naming its key.
#[test]
fn invalid_dns_and_others() {
    assert_names(
        &json_err(r#"{"dns_config": {"udp_answer_limit": 0}}"#, &["-dev"]),
        &["dns_config.udp_answer_limit"],
    );
    assert_names(
        &json_err(r#"{"performance": {"raft_multiplier": 11}}"#, &["-dev"]),
        &["performance.raft_multiplier", "between 1 and 10"],
    );
    assert_names(
        &json_err(r#"{"acl": {"default_policy": "maybe"}}"#, &["-dev"]),
        &["acl.default_policy"],
    );
    assert_names(&json_err(r#"{"node_id": "xyz"}"#, &["-dev"]), &["node_id"]);
    assert_names(
        &json_err(r#"{"node_meta": {"consul-x": "1"}}"#, &["-dev"]),
        &["node_meta.consul-x"],
    );
    assert_names(
        &err(&["-dev", "-node-meta", "bad key:1"]),
        &["-node-meta", "bad key"],
    );
    assert_names(&json_err(r#"{"server": "maybe"}"#, &["-dev"]), &["server"]);
    assert_names(&json_err(r#"{"ports": 8500}"#, &["-dev"]), &["ports"]);
    assert_names(
        &json_err(r#"{"services": [{"port": 80}]}"#, &["-dev"]),
        &["services[0]", "name"],
    );
    assert_names(&json_err(r#"{"service": "web"}"#, &["-dev"]), &["service"]);
    assert_names(
        &json_err(r#"{"retry_join": 5}"#, &["-dev"]),
        &["retry_join"],
    );
    assert_names(&err(&["-dev", "-domain", "a..b"]), &["-domain"]);
    assert_names(&err(&["-dev", "-alt-domain", "consul"]), &["alt_domain"]);
}

/// All errors come in one message, one per line, not just the first.
#[test]
fn several_errors_reported_together() {
    let e = json_err(
        r#"{"log_level": "loud", "ports": {"http": 70000}}"#,
        &["-dev"],
    );
    assert_names(&e, &["log_level", "ports.http"]);
    assert_eq!(e.lines().count(), 2, "{e}");
}

// ---------------------------------------------------------------- reload

/// Reload re-reads the files but keeps the original flags; a broken file on reload is an
/// error, which leaves the running configuration to the caller.
#[test]
fn reload_rereads_files_with_the_same_flags() {
    let dir = TempDir::new("reload");
    let file = dir.file(
        "agent.json",
        r#"{"log_level": "info", "services": [{"name": "a"}]}"#,
    );
    let first = ok(&["-dev", "-node", "r1", "-config-file", &file]);
    assert_eq!(first.log_level, "info");
    dir.file(
        "agent.json",
        r#"{"log_level": "trace", "services": [{"name": "a"}, {"name": "b"}]}"#,
    );
    let second = reload(&first).expect("reload");
    assert_eq!(second.log_level, "trace");
    assert_eq!(second.services.len(), 2);
    assert_eq!(second.node_name, "r1");
    assert_eq!(second.args, first.args);
    // A broken file on reload is an error; the caller keeps running the old configuration.
    dir.file("agent.json", r#"{"log_level": "loud"}"#);
    assert!(reload(&second).is_err());
}

#[test]
fn cloud_auto_join_is_refused_by_provider_name() {
    let e = err(&[
        "-server",
        "-data-dir=/tmp/cairn-cloud",
        "-retry-join",
        "provider=aws tag_key=consul tag_value=server",
    ]);
    assert!(
        e.contains("retry_join: cloud auto-join (provider=aws)"),
        "{e}"
    );
    let e = err(&["-dev", "-retry-join-wan", "provider=gce project_name=p"]);
    assert!(
        e.contains("retry_join_wan: cloud auto-join (provider=gce)"),
        "{e}"
    );
    // A host name is still a host name.
    let c = ok(&["-dev", "-retry-join", "consul.example.com"]);
    assert_eq!(c.retry_join, vec!["consul.example.com".to_string()]);
}

#[test]
fn reconnect_timeouts_have_consuls_floor() {
    let c = with_json(
        r#"{"reconnect_timeout": "9h", "reconnect_timeout_wan": "10h"}"#,
        &["-dev"],
    )
    .expect("valid");
    assert_eq!(c.reconnect_timeout, Duration::from_secs(9 * 3600));
    assert_eq!(c.reconnect_timeout_wan, Duration::from_secs(10 * 3600));
    let e = json_err(r#"{"reconnect_timeout_wan": "1h"}"#, &["-dev"]);
    assert!(e.contains("reconnect_timeout_wan"), "{e}");
}

#[test]
fn response_headers_must_be_valid_http() {
    let c = with_json(
        r#"{"http_config": {"response_headers": {"Access-Control-Allow-Origin": "*"}}}"#,
        &["-dev"],
    )
    .expect("valid");
    assert_eq!(
        c.http_response_headers
            .get("Access-Control-Allow-Origin")
            .map(String::as_str),
        Some("*")
    );
    let e = json_err(
        r#"{"http_config": {"response_headers": {"Bad Header": "x"}}}"#,
        &["-dev"],
    );
    assert!(e.contains("not a valid HTTP header"), "{e}");
}

/// Consul's legacy top-level ACL keys still configure ACLs, each with its deprecation
/// warning; `acl_datacenter` also turns ACLs on; the new key wins when both are set.
#[test]
fn legacy_acl_keys_map_to_the_acl_block_with_warnings() {
    let c = with_json(
        r#"{"acl_datacenter": "dc1", "acl_default_policy": "deny", "acl_token": "t-default",
            "acl_agent_token": "t-agent", "acl_master_token": "t-root",
            "acl_agent_master_token": "t-recovery", "acl_down_policy": "deny",
            "acl_enable_key_list_policy": true,
            "acl": {"tokens": {"agent": "t-new-agent"}}}"#,
        &["-dev"],
    )
    .expect("legacy keys load");
    assert!(c.acl.enabled);
    assert_eq!(c.acl.default_policy, "deny");
    assert_eq!(c.acl.down_policy, "deny");
    assert!(c.acl.enable_key_list_policy);
    let tok = |k: &str| c.acl.tokens.get(k).map(String::as_str);
    assert_eq!(tok("default"), Some("t-default"));
    assert_eq!(tok("agent"), Some("t-new-agent"));
    assert_eq!(tok("initial_management"), Some("t-root"));
    assert_eq!(tok("agent_recovery"), Some("t-recovery"));
    assert!(
        c.warnings.iter().any(|w| w.contains(
            "The 'acl_token' field is deprecated. Use the 'acl.tokens.default' field instead."
        )),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("'acl_datacenter' field is deprecated"))
    );
    // Secrets never appear in the configuration's debug form.
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("t-root") && !shown.contains("t-default"),
        "{shown}"
    );
    // A default policy that is neither allow nor deny is refused.
    let e = json_err(r#"{"acl": {"default_policy": "maybe"}}"#, &["-dev"]);
    assert!(e.contains("default_policy"), "{e}");
}

// ---------------------------------------------------------------- TLS

/// `tls {}`: a protocol's own value wins over `defaults`; `verify_server_hostname` implies
/// `verify_outgoing` and exists for internal RPC only.
#[test]
fn tls_blocks_and_defaults() {
    let c = with_json(
        r#"{"tls": {
            "defaults": {"ca_file": "ca.pem", "cert_file": "d.pem", "key_file": "d-key.pem",
                         "verify_incoming": true, "tls_min_version": "TLSv1_3"},
            "internal_rpc": {"verify_server_hostname": true},
            "https": {"verify_incoming": false, "cert_file": "h.pem", "key_file": "h-key.pem"}}}"#,
        &["-dev"],
    )
    .expect("valid");
    let rpc = &c.tls.internal_rpc;
    assert_eq!(
        rpc.cert_file.as_deref(),
        Some(std::path::Path::new("d.pem"))
    );
    assert!(rpc.verify_incoming && rpc.verify_outgoing && rpc.verify_server_hostname);
    assert_eq!(rpc.min_version, super::TlsMinVersion::Tls13);
    let https = &c.tls.https;
    assert_eq!(
        https.cert_file.as_deref(),
        Some(std::path::Path::new("h.pem"))
    );
    assert!(!https.verify_incoming && !https.verify_server_hostname);
    assert_eq!(
        https.ca_file.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// The deprecated top-level keys fill their new places unless those are set, each with
/// Consul's warning; `tls12` is translated with its own warning.
#[test]
fn tls_legacy_keys() {
    let c = with_json(
        r#"{"ca_file": "old-ca.pem", "cert_file": "c.pem", "key_file": "k.pem",
            "verify_incoming_rpc": true, "verify_outgoing": true, "verify_server_hostname": true,
            "tls_min_version": "tls12", "tls_prefer_server_cipher_suites": true,
            "tls": {"defaults": {"ca_file": "new-ca.pem"}}}"#,
        &["-dev"],
    )
    .expect("valid");
    let rpc = &c.tls.internal_rpc;
    assert_eq!(
        rpc.ca_file.as_deref(),
        Some(std::path::Path::new("new-ca.pem"))
    );
    assert_eq!(
        rpc.cert_file.as_deref(),
        Some(std::path::Path::new("c.pem"))
    );
    assert!(rpc.verify_incoming && rpc.verify_outgoing && rpc.verify_server_hostname);
    assert!(!c.tls.https.verify_incoming);
    assert_eq!(rpc.min_version, super::TlsMinVersion::Tls12);
    let all = c.warnings.join("\n");
    for line in [
        "The 'ca_file' field is deprecated. Use the 'tls.defaults.ca_file' field instead.",
        "The 'verify_incoming_rpc' field is deprecated. Use the 'tls.internal_rpc.verify_incoming' field instead.",
        "The 'verify_server_hostname' field is deprecated. Use the 'tls.internal_rpc.verify_server_hostname' field instead.",
        "'tls_min_version' value 'tls12' is deprecated, please specify 'TLSv1_2' instead",
        "The 'tls_prefer_server_cipher_suites' field is deprecated and will be ignored.",
    ] {
        assert!(all.contains(line), "missing {line:?} in {all}");
    }
}

/// Gossip encryption's verify flags default to on and can be turned off for a rollout.
#[test]
fn gossip_encryption_verify_flags() {
    let c = ok(&["-dev"]);
    assert!(c.encrypt_verify_incoming && c.encrypt_verify_outgoing);
    let c = with_json(
        r#"{"encrypt_verify_incoming": false, "encrypt_verify_outgoing": "false"}"#,
        &["-dev"],
    )
    .expect("valid");
    assert!(!c.encrypt_verify_incoming && !c.encrypt_verify_outgoing);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// Settings that cannot work are refused at start-up, naming the key.
#[test]
fn tls_invalid_settings() {
    let e = json_err(
        r#"{"tls": {"https": {"verify_incoming": true}}}"#,
        &["-dev"],
    );
    assert!(
        e.contains("tls.https: verify_incoming requires ca_file"),
        "{e}"
    );
    let e = json_err(
        r#"{"tls": {"defaults": {"cert_file": "c.pem"}}}"#,
        &["-dev"],
    );
    assert!(
        e.contains("cert_file and key_file must be set together"),
        "{e}"
    );
    let e = json_err(
        r#"{"tls": {"defaults": {"tls_min_version": "ssl3"}}}"#,
        &["-dev"],
    );
    assert!(e.contains("tls_min_version"), "{e}");
    let e = json_err(
        r#"{"tls": {"defaults": {"tls_cipher_suites": "TLS_RSA_WITH_RC4_128_SHA"}}}"#,
        &["-dev"],
    );
    assert!(e.contains("unsupported cipher suite"), "{e}");
    let e = json_err(r#"{"verify_outgoing": true}"#, &["-dev"]);
    assert!(e.contains("verify_outgoing requires ca_file"), "{e}");
}
