//! The `cairn` CLI subcommands end to end: each test starts its own `cairn agent -dev` (see
//! `common`) and runs the real binary against it, checking output, exit codes and the effect
//! through the HTTP API.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Agent, b64};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Upper bound of one CLI run.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// What a CLI run produced.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }

    #[track_caller]
    fn code(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        self
    }
}

/// A `cairn` command with Consul's environment variables cleared and, when an agent is
/// given, `CONSUL_HTTP_ADDR` pointing at it.
fn command(agent: Option<&Agent>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .env_remove("CONSUL_HTTP_SSL")
        .kill_on_drop(true);
    if let Some(a) = agent {
        c.env("CONSUL_HTTP_ADDR", &a.base);
    }
    c
}

/// Runs `cairn args...` with `stdin` as its input.
async fn run_with(agent: Option<&Agent>, args: &[&str], stdin: &[u8]) -> Out {
    let mut child = command(agent, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).await.expect("write stdin");
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("cairn {args:?} did not finish in {RUN_TIMEOUT:?}"))
        .expect("wait for cairn");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `cairn args...` against `agent`.
async fn cairn(agent: &Agent, args: &[&str]) -> Out {
    run_with(Some(agent), args, b"").await
}

/// Runs `cairn args...` without an agent.
async fn cairn_alone(args: &[&str]) -> Out {
    run_with(None, args, b"").await
}

/// A scratch file path unique to this test process.
fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-clitest-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir.join(name)
}

/// A KV entry through the HTTP API (`Null` when missing).
async fn kv_entry(a: &Agent, key: &str) -> Value {
    let r = a.get(&format!("/v1/kv/{key}")).await;
    if r.status == 404 {
        return Value::Null;
    }
    r.expect_status(200).body[0].clone()
}

/// The `Key  Value` line of `kv get -detailed` output.
fn detail(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(field)).then(|| parts.collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| panic!("no {field} in {out:?}"))
}

#[tokio::test]
async fn usage_help_and_bad_usage() {
    // `cairn` alone lists the commands and fails, like `consul`.
    let out = cairn_alone(&[]).await.code(1);
    assert!(out.stderr.contains("Available commands are:"), "{out:?}");
    for c in [
        "members", "catalog", "kv", "services", "watch", "maint", "info",
    ] {
        assert!(
            out.stderr.contains(&format!("    {c} ")),
            "{c} missing: {out:?}"
        );
    }
    let out = cairn_alone(&["--help"]).await.ok();
    assert!(out.stdout.contains("Usage: cairn"));

    // Every command and subcommand has -h (and --help) with its flags, exit code 0.
    let helps: &[(&[&str], &[&str])] = &[
        (
            &["members"],
            &["-detailed", "-status", "-wan", "-http-addr"],
        ),
        (&["catalog", "datacenters"], &["-datacenter"]),
        (
            &["catalog", "nodes"],
            &["-detailed", "-service", "-near", "-node-meta", "-filter"],
        ),
        (&["catalog", "services"], &["-node", "-tags", "-node-meta"]),
        (
            &["kv", "get"],
            &[
                "-recurse",
                "-detailed",
                "-keys",
                "-separator",
                "-base64",
                "-stale",
            ],
        ),
        (
            &["kv", "put"],
            &[
                "-cas",
                "-modify-index",
                "-flags",
                "-acquire",
                "-release",
                "-session",
                "-base64",
            ],
        ),
        (&["kv", "delete"], &["-recurse", "-cas", "-modify-index"]),
        (&["kv", "export"], &["-http-addr"]),
        (&["kv", "import"], &["-http-addr"]),
        (
            &["services", "register"],
            &["-name", "-id", "-address", "-port", "-tag", "-meta"],
        ),
        (&["services", "deregister"], &["-id"]),
        (&["leave"], &["-http-addr"]),
        (&["join"], &["-wan"]),
        (&["reload"], &["-token"]),
        (&["maint"], &["-enable", "-disable", "-service", "-reason"]),
        (&["version"], &["-format"]),
        (&["info"], &["-http-addr"]),
        (
            &["watch"],
            &[
                "-type",
                "-key",
                "-prefix",
                "-service",
                "-tag",
                "-passingonly",
                "-state",
            ],
        ),
    ];
    for (cmd, flags) in helps {
        for h in ["-h", "--help"] {
            let mut args = cmd.to_vec();
            args.push(h);
            let out = cairn_alone(&args).await.ok();
            assert!(
                out.stdout
                    .contains(&format!("Usage: cairn {}", cmd.join(" "))),
                "{args:?}: {out:?}"
            );
            for f in *flags {
                assert!(out.stdout.contains(&format!("  {f}")), "{args:?} lacks {f}");
            }
        }
    }
    // Groups: -h succeeds, no subcommand fails, both list the subcommands.
    for g in ["kv", "catalog", "services"] {
        let out = cairn_alone(&[g, "-h"]).await.ok();
        assert!(out.stdout.contains("Subcommands:"), "{out:?}");
        let out = cairn_alone(&[g]).await.code(1);
        assert!(out.stderr.contains("Subcommands:"), "{out:?}");
    }

    // Bad usage: exit 1 with a message, before any connection is attempted.
    let out = cairn_alone(&["nonsense"]).await.code(1);
    assert!(out.stderr.contains("Unknown command: nonsense"), "{out:?}");
    let out = cairn_alone(&["kv", "get", "-bogus"]).await.code(1);
    assert!(
        out.stderr.contains("flag provided but not defined: -bogus"),
        "{out:?}"
    );
    let out = cairn_alone(&["kv", "get"]).await.code(1);
    assert!(out.stderr.contains("Missing KEY argument"), "{out:?}");
    let out = cairn_alone(&["kv", "put", "-flags=x", "k"]).await.code(1);
    assert!(out.stderr.contains("invalid value"), "{out:?}");
    let out = cairn_alone(&["kv", "put", "-cas", "k", "v"]).await.code(1);
    assert!(out.stderr.contains("-modify-index"), "{out:?}");
    let out = cairn_alone(&["kv", "delete", "-cas", "-recurse", "-modify-index=3", "k"])
        .await
        .code(1);
    assert!(out.stderr.contains("Cannot specify both"), "{out:?}");
    let out = cairn_alone(&["kv", "put", "-acquire", "k"]).await.code(1);
    assert!(out.stderr.contains("Missing -session"), "{out:?}");
    let out = cairn_alone(&["maint", "-enable", "-disable"]).await.code(1);
    assert!(
        out.stderr.contains("Only one of -enable or -disable"),
        "{out:?}"
    );
    let out = cairn_alone(&["watch"]).await.code(1);
    assert!(
        out.stderr.contains("Watch type must be specified"),
        "{out:?}"
    );
    let out = cairn_alone(&["watch", "-type=key"]).await.code(1);
    assert!(out.stderr.contains("Must specify a single key"), "{out:?}");
    let out = cairn_alone(&["watch", "-type=services", "-key=x"])
        .await
        .code(1);
    assert!(out.stderr.contains("Invalid parameters: [key]"), "{out:?}");
    let out = cairn_alone(&["services", "register"]).await.code(1);
    assert!(
        out.stderr.contains("requires at least one argument"),
        "{out:?}"
    );
    let out = cairn_alone(&["members", "extra"]).await.code(1);
    assert!(out.stderr.contains("Too many arguments"), "{out:?}");
    let out = cairn_alone(&["members", "-http-addr=unix:///tmp/cairn.sock"])
        .await
        .code(1);
    assert!(
        out.stderr.contains("unix sockets are not supported"),
        "{out:?}"
    );

    // No agent listening: Consul's "Error ...: <cause>", exit 1.
    let closed = common::free_port();
    let addr = format!("-http-addr=127.0.0.1:{closed}");
    let out = cairn_alone(&["members", &addr]).await.code(1);
    assert!(
        out.stderr.starts_with("Error retrieving members: "),
        "{out:?}"
    );
    assert!(out.stderr.contains("connect"), "{out:?}");

    // Tools read Consul's first line and compare the version in it: the API level implemented.
    let out = cairn_alone(&["version"]).await.ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("Consul v{}", cairn::CONSUL_COMPAT_VERSION),
        "{out:?}"
    );
    assert!(out.stdout.contains("\nCairn v"), "{out:?}");
    let out = cairn_alone(&["version", "-format=json"]).await.ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("version JSON");
    assert_eq!(v["Version"], cairn::CONSUL_COMPAT_VERSION);
    assert!(v["CairnVersion"].is_string());
}

#[tokio::test]
async fn kv_put_get_delete_round_trip() {
    let a = Agent::start().await;
    let out = cairn(&a, &["kv", "put", "app/name", "hello world"])
        .await
        .ok();
    assert_eq!(out.stdout, "Success! Data written to: app/name\n");
    assert_eq!(kv_entry(&a, "app/name").await["Value"], b64("hello world"));

    let out = cairn(&a, &["kv", "get", "app/name"]).await.ok();
    assert_eq!(out.stdout, "hello world\n");
    // A leading slash is dropped, as Consul does.
    let out = cairn(&a, &["kv", "get", "/app/name"]).await.ok();
    assert_eq!(out.stdout, "hello world\n");

    // Flags, GNU-style flags and -http-addr with a scheme instead of the environment.
    let addr = format!("--http-addr={}", a.base);
    run_with(
        None,
        &["kv", "put", &addr, "--flags", "42", "app/flagged", "x"],
        b"",
    )
    .await
    .ok();
    let out = cairn(&a, &["kv", "get", "-detailed", "app/flagged"])
        .await
        .ok();
    assert_eq!(detail(&out.stdout, "Flags"), "42");
    assert_eq!(detail(&out.stdout, "Key"), "app/flagged");
    assert_eq!(detail(&out.stdout, "Session"), "-");
    assert_eq!(detail(&out.stdout, "Value"), "x");
    let idx = kv_entry(&a, "app/flagged").await["ModifyIndex"]
        .as_u64()
        .expect("index");
    assert_eq!(detail(&out.stdout, "ModifyIndex"), idx.to_string());
    assert!(out.stdout.starts_with("CreateIndex      "), "{out:?}");

    // `-` reads stdin, `@file` reads a file, -base64 decodes.
    run_with(Some(&a), &["kv", "put", "app/stdin", "-"], b"from\nstdin")
        .await
        .ok();
    assert_eq!(kv_entry(&a, "app/stdin").await["Value"], b64("from\nstdin"));
    let file = temp_path("value.bin");
    std::fs::write(&file, b"file contents").expect("write");
    let at = format!("@{}", file.display());
    cairn(&a, &["kv", "put", "app/file", &at]).await.ok();
    assert_eq!(
        kv_entry(&a, "app/file").await["Value"],
        b64("file contents")
    );
    let encoded = b64("decoded");
    cairn(&a, &["kv", "put", "-base64", "app/b64", &encoded])
        .await
        .ok();
    assert_eq!(kv_entry(&a, "app/b64").await["Value"], b64("decoded"));
    let out = cairn(&a, &["kv", "get", "-base64", "app/b64"]).await.ok();
    assert_eq!(out.stdout, format!("{encoded}\n"));
    // An empty value.
    cairn(&a, &["kv", "put", "app/empty"]).await.ok();
    let out = cairn(&a, &["kv", "get", "app/empty"]).await.ok();
    assert_eq!(out.stdout, "\n");

    // Listings.
    let out = cairn(&a, &["kv", "get", "-recurse", "app/"]).await.ok();
    assert_eq!(
        out.stdout,
        "app/b64:decoded\napp/empty:\napp/file:file contents\napp/flagged:x\n\
         app/name:hello world\napp/stdin:from\nstdin\n"
    );
    cairn(&a, &["kv", "put", "app/sub/deep", "1"]).await.ok();
    let out = cairn(&a, &["kv", "get", "-keys", "app/"]).await.ok();
    assert_eq!(
        out.stdout,
        "app/b64\napp/empty\napp/file\napp/flagged\napp/name\napp/stdin\napp/sub/\n"
    );
    let out = cairn(&a, &["kv", "get", "-keys", "-separator=", "app/sub"])
        .await
        .ok();
    assert_eq!(out.stdout, "app/sub/deep\n");
    let out = cairn(&a, &["kv", "get", "-recurse", "-detailed", "app/sub"])
        .await
        .ok();
    assert_eq!(detail(&out.stdout, "Key"), "app/sub/deep");
    // Nothing under a prefix: no output, success.
    let out = cairn(&a, &["kv", "get", "-recurse", "nothing/"]).await.ok();
    assert_eq!(out.stdout, "");

    // A missing key is an error.
    let out = cairn(&a, &["kv", "get", "missing"]).await.code(1);
    assert_eq!(out.stderr, "Error! No key exists at: missing\n");

    // Deletes.
    let out = cairn(&a, &["kv", "delete", "app/name"]).await.ok();
    assert_eq!(out.stdout, "Success! Deleted key: app/name\n");
    assert_eq!(kv_entry(&a, "app/name").await, Value::Null);
    let out = cairn(&a, &["kv", "delete", "-recurse", "app/"]).await.ok();
    assert_eq!(out.stdout, "Success! Deleted keys with prefix: app/\n");
    assert_eq!(a.get("/v1/kv/app/?recurse").await.status, 404);
}

#[tokio::test]
async fn kv_check_and_set() {
    let a = Agent::start().await;
    cairn(&a, &["kv", "put", "cfg", "v1"]).await.ok();
    let idx = kv_entry(&a, "cfg").await["ModifyIndex"]
        .as_u64()
        .expect("index");

    // A stale index is refused and changes nothing.
    let stale = format!("-modify-index={}", idx - 1);
    let out = cairn(&a, &["kv", "put", "-cas", &stale, "cfg", "v2"])
        .await
        .code(1);
    assert_eq!(out.stderr, "Error! Did not write to cfg: CAS failed\n");
    assert_eq!(kv_entry(&a, "cfg").await["Value"], b64("v1"));

    // The current index wins.
    let current = format!("-modify-index={idx}");
    let out = cairn(&a, &["kv", "put", "-cas", &current, "cfg", "v2"])
        .await
        .ok();
    assert_eq!(out.stdout, "Success! Data written to: cfg\n");
    assert_eq!(kv_entry(&a, "cfg").await["Value"], b64("v2"));
    // ... once.
    let out = cairn(&a, &["kv", "put", "-cas", &current, "cfg", "v3"])
        .await
        .code(1);
    assert!(out.stderr.contains("CAS failed"), "{out:?}");

    // Delete with CAS: the old index fails, the new one succeeds.
    let out = cairn(&a, &["kv", "delete", "-cas", &current, "cfg"])
        .await
        .code(1);
    assert_eq!(out.stderr, "Error! Did not delete key cfg: CAS failed\n");
    let idx = kv_entry(&a, "cfg").await["ModifyIndex"]
        .as_u64()
        .expect("index");
    let current = format!("-modify-index={idx}");
    cairn(&a, &["kv", "delete", "-cas", &current, "cfg"])
        .await
        .ok();
    assert_eq!(kv_entry(&a, "cfg").await, Value::Null);
    // -modify-index without -cas is refused.
    let out = cairn(&a, &["kv", "delete", &current, "cfg"]).await.code(1);
    assert!(out.stderr.contains("without -cas"), "{out:?}");

    // Locks with a session.
    let r = a
        .put_json("/v1/session/create", &serde_json::json!({"Name": "cli"}))
        .await
        .expect_status(200);
    let session = r.body["ID"].as_str().expect("session").to_string();
    let s = format!("-session={session}");
    let out = cairn(&a, &["kv", "put", "-acquire", &s, "lock", "me"])
        .await
        .ok();
    assert_eq!(out.stdout, "Success! Lock acquired on: lock\n");
    assert_eq!(kv_entry(&a, "lock").await["Session"], session.as_str());
    let out = cairn(&a, &["kv", "get", "-detailed", "lock"]).await.ok();
    assert_eq!(detail(&out.stdout, "Session"), session);
    assert_eq!(detail(&out.stdout, "LockIndex"), "1");
    let out = cairn(&a, &["kv", "put", "-release", &s, "lock"]).await.ok();
    assert_eq!(out.stdout, "Success! Lock released on: lock\n");
    assert!(
        kv_entry(&a, "lock")
            .await
            .get("Session")
            .is_none_or(Value::is_null)
    );
    let out = cairn(
        &a,
        &[
            "kv",
            "put",
            "-acquire",
            "-session=00000000-0000-0000-0000-000000000000",
            "lock",
        ],
    )
    .await
    .code(1);
    assert!(out.stderr.contains("Error!"), "{out:?}");
}

#[tokio::test]
async fn kv_export_import_round_trip() {
    let a = Agent::start().await;
    cairn(&a, &["kv", "put", "exp/a", "alpha"]).await.ok();
    cairn(&a, &["kv", "put", "-flags=7", "exp/b/c", "bravo"])
        .await
        .ok();
    cairn(&a, &["kv", "put", "other", "not exported"])
        .await
        .ok();

    let out = cairn(&a, &["kv", "export", "exp/"]).await.ok();
    // Consul's format: a tab-indented list of {key, flags, value(base64)}.
    assert_eq!(
        out.stdout,
        format!(
            "[\n\t{{\n\t\t\"key\": \"exp/a\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"{}\"\n\t}},\n\
             \t{{\n\t\t\"key\": \"exp/b/c\",\n\t\t\"flags\": 7,\n\t\t\"value\": \"{}\"\n\t}}\n]\n",
            b64("alpha"),
            b64("bravo")
        )
    );
    let export = out.stdout;
    let out = cairn(&a, &["kv", "export", "nothing/"]).await.ok();
    assert_eq!(out.stdout, "[]\n");

    // Import from a file.
    cairn(&a, &["kv", "delete", "-recurse", "exp/"]).await.ok();
    let file = temp_path("export.json");
    std::fs::write(&file, &export).expect("write export");
    let at = format!("@{}", file.display());
    let out = cairn(&a, &["kv", "import", &at]).await.ok();
    assert_eq!(out.stdout, "Imported: exp/a\nImported: exp/b/c\n");
    assert_eq!(kv_entry(&a, "exp/a").await["Value"], b64("alpha"));
    let b = kv_entry(&a, "exp/b/c").await;
    assert_eq!(b["Value"], b64("bravo"));
    assert_eq!(b["Flags"], 7);

    // Import from stdin, into a fresh agent: the same export again.
    let fresh = Agent::start().await;
    run_with(Some(&fresh), &["kv", "import", "-"], export.as_bytes())
        .await
        .ok();
    let again = cairn(&fresh, &["kv", "export", "exp/"]).await.ok();
    assert_eq!(again.stdout, export);

    // Bad input.
    let out = run_with(Some(&a), &["kv", "import", "-"], b"{not json")
        .await
        .code(1);
    assert!(out.stderr.contains("Cannot unmarshal data"), "{out:?}");
    let out = run_with(
        Some(&a),
        &["kv", "import", "-"],
        br#"[{"key": "x", "flags": 0, "value": "***"}]"#,
    )
    .await
    .code(1);
    assert!(out.stderr.contains("base 64"), "{out:?}");
}

#[tokio::test]
async fn services_register_deregister_and_catalog() {
    let a = Agent::start().await;
    // From flags.
    let out = cairn(
        &a,
        &[
            "services",
            "register",
            "-name=api",
            "-id=api-1",
            "-port=9000",
            "-tag=v1",
            "-tag=blue",
            "-meta=team=core",
            "-address=10.1.2.3",
        ],
    )
    .await
    .ok();
    assert_eq!(out.stdout, "Registered service: api\n");
    let svc = a
        .get("/v1/agent/service/api-1")
        .await
        .expect_status(200)
        .body;
    assert_eq!(svc["Service"], "api");
    assert_eq!(svc["Port"], 9000);
    assert_eq!(svc["Address"], "10.1.2.3");
    assert_eq!(svc["Tags"], serde_json::json!(["v1", "blue"]));
    assert_eq!(svc["Meta"]["team"], "core");

    // From a JSON file with `services` and an HCL file with `service` and a check.
    let json_file = temp_path("svcs.json");
    std::fs::write(
        &json_file,
        r#"{"services": [{"name": "db", "port": 5432, "tags": ["primary"]},
                         {"Name": "cache", "ID": "cache-1"}]}"#,
    )
    .expect("write");
    let hcl_file = temp_path("web.hcl");
    std::fs::write(
        &hcl_file,
        "service {\n  name = \"web\"\n  id = \"web-1\"\n  port = 8080\n  tags = [\"v2\"]\n  \
         check {\n    ttl = \"30s\"\n  }\n}\n",
    )
    .expect("write");
    let json_path = json_file.display().to_string();
    let hcl_path = hcl_file.display().to_string();
    let out = cairn(&a, &["services", "register", &json_path, &hcl_path])
        .await
        .ok();
    assert_eq!(
        out.stdout,
        "Registered service: db\nRegistered service: cache\nRegistered service: web\n"
    );
    assert!(a.check("service:web-1").await.is_object());

    let out = cairn(&a, &["catalog", "services"]).await.ok();
    assert_eq!(out.stdout, "api\ncache\nconsul\ndb\nweb\n");
    let out = cairn(&a, &["catalog", "services", "-tags"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"api         blue,v1"), "{out:?}");
    assert!(lines.contains(&"db          primary"), "{out:?}");
    let out = cairn(&a, &["catalog", "services", "-node", &a.node])
        .await
        .ok();
    assert!(out.stdout.contains("web\n"), "{out:?}");
    let out = cairn(&a, &["catalog", "services", "-node=nonexistent"])
        .await
        .ok();
    assert!(out.stderr.contains("No services match"), "{out:?}");

    let out = cairn(&a, &["catalog", "nodes", "-service=web"]).await.ok();
    assert!(out.stdout.starts_with("Node"), "{out:?}");
    assert!(out.stdout.contains(&a.node), "{out:?}");
    let out = cairn(&a, &["catalog", "nodes", "-service=nothing"])
        .await
        .ok();
    assert!(out.stderr.contains("No nodes match"), "{out:?}");

    // Deregister by file and by ID.
    let out = cairn(&a, &["services", "deregister", &json_path])
        .await
        .ok();
    assert_eq!(
        out.stdout,
        "Deregistered service: db\nDeregistered service: cache-1\n"
    );
    let out = cairn(&a, &["services", "deregister", "-id=api-1"])
        .await
        .ok();
    assert_eq!(out.stdout, "Deregistered service: api-1\n");
    let out = cairn(&a, &["catalog", "services"]).await.ok();
    assert_eq!(out.stdout, "consul\nweb\n");

    // The agent's refusal comes back as Consul's error text.
    let out = cairn(&a, &["services", "register", "-name=bad", "-port=99999999"])
        .await
        .code(1);
    assert!(
        out.stderr
            .starts_with("Error registering service \"bad\": Unexpected response code: 400"),
        "{out:?}"
    );
}

#[tokio::test]
async fn members_info_and_catalog_reads() {
    let a = Agent::start().await;
    let out = cairn(&a, &["members"]).await.ok();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(row[0], a.node);
    assert_eq!(row[2], "alive");
    assert_eq!(row[3], "server");
    assert_eq!(row[6], "dc1");
    assert_eq!(row[7], "default");
    assert_eq!(row[8], "<all>");
    assert!(
        !row[4].contains(':'),
        "build shown without revision: {row:?}"
    );

    let out = cairn(&a, &["members", "-detailed"]).await.ok();
    assert!(out.stdout.starts_with("Node"), "{out:?}");
    assert!(out.stdout.contains("role=consul"), "{out:?}");
    assert!(out.stdout.contains("dc=dc1"), "{out:?}");
    cairn(&a, &["members", "-status=alive"]).await.ok();
    let out = cairn(&a, &["members", "-status=failed"]).await.code(2);
    assert_eq!(out.stdout, "");
    cairn(&a, &["members", "-status=("]).await.code(1);

    let out = cairn(&a, &["info"]).await.ok();
    assert!(out.stdout.contains("agent:\n"), "{out:?}");
    assert!(out.stdout.contains("consul:\n"), "{out:?}");
    assert!(out.stdout.contains("\tleader = true\n"), "{out:?}");

    let out = cairn(&a, &["catalog", "datacenters"]).await.ok();
    assert_eq!(out.stdout, "dc1\n");

    let out = cairn(&a, &["catalog", "nodes"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Node", "ID", "Address", "DC"]
    );
    assert!(lines[1].starts_with(&a.node), "{out:?}");
    let out = cairn(&a, &["catalog", "nodes", "-detailed"]).await.ok();
    assert!(out.stdout.contains("TaggedAddresses"), "{out:?}");
    assert!(out.stdout.contains("lan=127.0.0.1"), "{out:?}");
    let filter = format!("-filter=Node == \"{}\"", a.node);
    let out = cairn(&a, &["catalog", "nodes", &filter, "-near=_agent"])
        .await
        .ok();
    assert!(out.stdout.contains(&a.node), "{out:?}");
    let out = cairn(&a, &["catalog", "nodes", "-filter=Node == \"other\""])
        .await
        .ok();
    assert!(out.stderr.contains("No nodes match"), "{out:?}");
    let out = cairn(&a, &["catalog", "nodes", "-node-meta=rack=r9"])
        .await
        .ok();
    assert!(out.stderr.contains("No nodes match"), "{out:?}");
    // API errors: Consul's text with the status and body, exit 1.
    let out = cairn(&a, &["catalog", "nodes", "-filter=Node =="])
        .await
        .code(1);
    assert!(
        out.stderr
            .starts_with("Error listing nodes: Unexpected response code: 400 ("),
        "{out:?}"
    );
    let out = cairn(&a, &["catalog", "nodes", "-datacenter=nowhere"])
        .await
        .code(1);
    assert!(
        out.stderr.contains("Unexpected response code: 500"),
        "{out:?}"
    );
    // The token travels (ACLs are off, so it is accepted and ignored).
    cairn(&a, &["catalog", "nodes", "-token=secret", "-stale"])
        .await
        .ok();
}

#[tokio::test]
async fn maint_enable_disable_and_list() {
    let a = Agent::start().await;
    let out = cairn(&a, &["maint"]).await.ok();
    assert_eq!(out.stdout, "");

    let out = cairn(&a, &["maint", "-enable", "-reason", "disk swap"])
        .await
        .ok();
    assert_eq!(out.stdout, "Node maintenance is now enabled\n");
    let checks = a
        .get(&format!("/v1/health/node/{}", a.node))
        .await
        .expect_status(200)
        .body;
    let maint = checks
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["CheckID"] == "_node_maintenance")
        .unwrap_or_else(|| panic!("no maintenance check in {checks}"))
        .clone();
    assert_eq!(maint["Status"], "critical");
    assert_eq!(maint["Notes"], "disk swap");
    let out = cairn(&a, &["maint"]).await.ok();
    assert_eq!(
        out.stdout,
        format!("Node:\n  Name:   {}\n  Reason: disk swap\n\n", a.node)
    );

    cairn(&a, &["services", "register", "-name=web", "-id=web-1"])
        .await
        .ok();
    let out = cairn(
        &a,
        &["maint", "-enable", "-service=web-1", "-reason=deploy"],
    )
    .await
    .ok();
    assert_eq!(
        out.stdout,
        "Service maintenance is now enabled for \"web-1\"\n"
    );
    let out = cairn(&a, &["maint"]).await.ok();
    assert!(
        out.stdout
            .contains("Service:\n  ID:     web-1\n  Reason: deploy\n"),
        "{out:?}"
    );

    let out = cairn(&a, &["maint", "-disable"]).await.ok();
    assert_eq!(out.stdout, "Node maintenance is now disabled\n");
    cairn(&a, &["maint", "-disable", "-service=web-1"])
        .await
        .ok();
    let checks = a
        .get(&format!("/v1/health/node/{}", a.node))
        .await
        .expect_status(200)
        .body;
    assert!(
        !checks.to_string().contains("_node_maintenance"),
        "{checks}"
    );
    assert_eq!(cairn(&a, &["maint"]).await.ok().stdout, "");

    let out = cairn(&a, &["maint", "-enable", "-service=nope"])
        .await
        .code(1);
    assert!(
        out.stderr
            .starts_with("Error enabling service maintenance: Unexpected response code: 404"),
        "{out:?}"
    );
    let out = cairn(&a, &["maint", "-reason=x"]).await.code(1);
    assert!(
        out.stderr.contains("only be provided with -enable"),
        "{out:?}"
    );
}

#[tokio::test]
async fn join_reload_and_leave() {
    let mut a = Agent::start().await;
    let out = cairn(&a, &["reload"]).await.ok();
    assert_eq!(out.stdout, "Configuration reload triggered\n");

    // This agent runs a single-member pool: joining elsewhere fails with the agent's error.
    let out = cairn(&a, &["join", "192.0.2.1:8301"]).await.code(1);
    assert!(
        out.stderr
            .contains("Error joining address '192.0.2.1:8301'"),
        "{out:?}"
    );
    assert!(out.stderr.contains("Failed to join any nodes."), "{out:?}");
    let out = cairn(&a, &["join"]).await.code(1);
    assert!(out.stderr.contains("At least one address"), "{out:?}");

    let out = cairn(&a, &["leave"]).await.ok();
    assert_eq!(out.stdout, "Graceful leave complete\n");
    let status = a.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "agent did not exit after leave: {status:?}"
    );
}

/// A running `cairn watch` whose stdout is collected.
struct Watch {
    child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    seen: String,
}

impl Watch {
    fn start(agent: &Agent, args: &[&str]) -> Watch {
        let mut child = command(Some(agent), args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn watch");
        let stdout = child.stdout.take().expect("stdout");
        Watch {
            child,
            stdout,
            seen: String::new(),
        }
    }

    /// Reads output until `pred` holds for everything read so far.
    async fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !pred(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stdout.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {:?}", self.seen))
                .expect("read watch output");
            assert!(n > 0, "watch exited before {what}; got {:?}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Sends SIGINT and returns the exit code.
    async fn interrupt(mut self) -> Option<i32> {
        let pid = self.child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("watch stops on SIGINT")
            .expect("wait for watch");
        status.code()
    }
}

#[tokio::test]
async fn watch_prints_first_result_and_each_change() {
    let a = Agent::start().await;
    // A missing key: the first result (null) comes at once.
    let mut w = Watch::start(&a, &["watch", "-type=key", "-key=watched"]);
    w.until("the first result", |s| s.starts_with("null\n"))
        .await;

    cairn(&a, &["kv", "put", "watched", "one"]).await.ok();
    let v1 = format!("\"Value\": \"{}\"", b64("one"));
    w.until("the first change", |s| s.contains(&v1)).await;
    assert!(
        w.seen.contains("\n    \"Key\": \"watched\""),
        "{:?}",
        w.seen
    );
    // A write elsewhere does not print; the next change does.
    cairn(&a, &["kv", "put", "unrelated", "x"]).await.ok();
    cairn(&a, &["kv", "put", "watched", "two"]).await.ok();
    let v2 = format!("\"Value\": \"{}\"", b64("two"));
    w.until("the second change", |s| s.contains(&v2)).await;
    assert_eq!(w.seen.matches("\"Key\"").count(), 2, "{:?}", w.seen);
    assert_eq!(w.interrupt().await, Some(0));

    // Services: the list as JSON, then the change.
    let mut w = Watch::start(&a, &["watch", "-type", "services"]);
    w.until("the service list", |s| s.contains("\"consul\": []"))
        .await;
    cairn(&a, &["services", "register", "-name=web", "-tag=t1"])
        .await
        .ok();
    w.until("the new service", |s| s.contains("\"web\": ["))
        .await;
    assert_eq!(w.interrupt().await, Some(0));

    // A service's health entries, and checks by state.
    let mut w = Watch::start(&a, &["watch", "-type=service", "-service=web"]);
    w.until("the web entry", |s| s.contains("\"Service\": \"web\""))
        .await;
    assert_eq!(w.interrupt().await, Some(0));
    let mut w = Watch::start(&a, &["watch", "-type=checks", "-state=passing"]);
    w.until("serfHealth", |s| s.contains("serfHealth")).await;
    assert_eq!(w.interrupt().await, Some(0));
    let mut w = Watch::start(&a, &["watch", "-type=nodes"]);
    w.until("the node", |s| s.contains(&a.node)).await;
    assert_eq!(w.interrupt().await, Some(0));

    // -once prints one result and exits, as consul watch does without a handler.
    let out = cairn(&a, &["watch", "-type=keyprefix", "-prefix=none/", "-once"])
        .await
        .ok();
    assert_eq!(out.stdout, "null\n");
}

#[tokio::test]
async fn watch_runs_a_handler_with_json_on_stdin() {
    let a = Agent::start().await;
    let sink = temp_path("handler.out");
    let handler = format!(
        "cat >> {0}; echo \" index=$CONSUL_INDEX\" >> {0}",
        sink.display()
    );
    let mut w = Watch::start(&a, &["watch", "-type=keyprefix", "-prefix=h/", &handler]);
    let read = || std::fs::read_to_string(&sink).unwrap_or_default();
    common::eventually("the first handler run", Duration::from_secs(10), || async {
        read().contains("index=").then_some(())
    })
    .await;
    assert!(read().starts_with("null\n index="), "{:?}", read());

    cairn(&a, &["kv", "put", "h/x", "payload"]).await.ok();
    let idx = kv_entry(&a, "h/x").await["ModifyIndex"]
        .as_u64()
        .expect("index");
    let runs = common::eventually(
        "the second handler run",
        Duration::from_secs(10),
        || async {
            let text = read();
            (text.matches("index=").count() >= 2).then_some(text)
        },
    )
    .await;
    let second = runs.lines().nth(2).expect("second payload");
    let v: Value = serde_json::from_str(second).expect("handler got JSON");
    assert_eq!(v[0]["Key"], "h/x");
    assert_eq!(v[0]["Value"], b64("payload"));
    assert!(runs.ends_with(&format!(" index={idx}\n")), "{runs:?}");
    assert_eq!(w.interrupt().await, Some(0));
    w = Watch::start(&a, &["watch", "-type=key", "-key=h/x", "exit 3"]);
    let status = tokio::time::timeout(Duration::from_secs(10), w.child.wait())
        .await
        .expect("a failing handler stops the watch")
        .expect("wait");
    assert_eq!(status.code(), Some(1));
}

/// A stand-in agent that answers every request with one KV entry and records the request
/// heads, to see exactly what the CLI sends.
struct Recorder {
    addr: String,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr").to_string();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&heads);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let seen = std::sync::Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let body = r#"[{"Key":"k","Value":"eA==","Flags":0,"CreateIndex":5,"ModifyIndex":5,"LockIndex":0}]"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 5\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Recorder { addr, heads, task }
    }

    /// The head of the last request, lower-cased.
    fn last(&self) -> String {
        self.heads
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .unwrap_or_default()
            .to_lowercase()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn token_datacenter_stale_and_address_reach_the_agent() {
    let r = Recorder::start().await;
    let addr = format!("-http-addr={}", r.addr);

    // Flags: token header, dc and stale on reads, a path-escaped key.
    let out = cairn_alone(&[
        "kv",
        "get",
        &addr,
        "-token=secret",
        "-datacenter=dc9",
        "-stale",
        "a b",
    ])
    .await
    .ok();
    assert_eq!(out.stdout, "x\n");
    let head = r.last();
    assert!(
        head.starts_with("get /v1/kv/a%20b?dc=dc9&stale= http/1.1\r\n"),
        "{head:?}"
    );
    assert!(head.contains("\r\nx-consul-token: secret\r\n"), "{head:?}");

    // The environment: CONSUL_HTTP_ADDR (no scheme) and CONSUL_HTTP_TOKEN.
    let mut c = command(None, &["kv", "get", "k"]);
    c.env("CONSUL_HTTP_ADDR", &r.addr)
        .env("CONSUL_HTTP_TOKEN", "from-env");
    let out = c.output().await.expect("run");
    assert!(out.status.success(), "{out:?}");
    let head = r.last();
    assert!(head.starts_with("get /v1/kv/k http/1.1\r\n"), "{head:?}");
    assert!(
        head.contains("\r\nx-consul-token: from-env\r\n"),
        "{head:?}"
    );

    // A token file, and the flag winning over the environment.
    let file = temp_path("token");
    std::fs::write(&file, "from-file\n").expect("write token");
    let tf = format!("-token-file={}", file.display());
    let mut c = command(None, &["kv", "get", &addr, &tf, "k"]);
    c.env("CONSUL_HTTP_TOKEN", "from-env");
    assert!(c.output().await.expect("run").status.success());
    assert!(r.last().contains("\r\nx-consul-token: from-file\r\n"));
    let mut c = command(None, &["kv", "get", &addr, "-token=flag", "k"]);
    c.env("CONSUL_HTTP_TOKEN", "from-env");
    assert!(c.output().await.expect("run").status.success());
    assert!(r.last().contains("\r\nx-consul-token: flag\r\n"));

    // Writes carry dc but not stale; no token means no header.
    cairn_alone(&["kv", "put", &addr, "-datacenter=dc9", "k", "v"])
        .await
        .ok();
    let head = r.last();
    assert!(
        head.starts_with("put /v1/kv/k?dc=dc9 http/1.1\r\n"),
        "{head:?}"
    );
    assert!(!head.contains("x-consul-token"), "{head:?}");
}

#[tokio::test]
async fn event_keygen_and_snapshot_commands() {
    let a = Agent::start().await;
    let out = cairn(&a, &["event", "-name", "deploy", "v2"]).await.ok();
    let id = out
        .stdout
        .trim()
        .strip_prefix("Event ID: ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_string();
    let list = a.get("/v1/event/list?name=deploy").await.expect_status(200);
    assert!(
        list.body
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["ID"] == id.as_str())),
        "{}",
        list.body
    );
    cairn(&a, &["event"]).await.code(1);

    let key = cairn_alone(&["keygen"]).await.ok().stdout;
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim())
        .expect("base64 key");
    assert_eq!(raw.len(), 32);

    cairn(&a, &["kv", "put", "snap", "shot"]).await.ok();
    let file = temp_path("state.snap");
    let f = file.display().to_string();
    let out = cairn(&a, &["snapshot", "save", &f]).await.ok();
    assert!(
        out.stdout.contains("Saved and verified snapshot"),
        "{out:?}"
    );
    let out = cairn_alone(&["snapshot", "inspect", &f]).await.ok();
    assert!(out.stdout.contains("KV entries  1"), "{out:?}");
    cairn(&a, &["kv", "put", "snap", "changed"]).await.ok();
    cairn(&a, &["snapshot", "restore", &f]).await.ok();
    assert_eq!(
        cairn(&a, &["kv", "get", "snap"]).await.ok().stdout.trim(),
        "shot"
    );
    std::fs::write(&file, b"not a snapshot").expect("write");
    cairn_alone(&["snapshot", "inspect", &f]).await.code(1);
}

#[tokio::test]
async fn operator_autopilot_get_and_set_config() {
    let a = Agent::start().await;
    // Wait until the leader recorded the settings (they have an index then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while a.get("/v1/operator/autopilot/configuration").await.body["ModifyIndex"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "settings never recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = cairn(&a, &["operator", "autopilot", "get-config"])
        .await
        .ok();
    assert!(
        out.stdout.starts_with("CleanupDeadServers = true\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("LastContactThreshold = 200ms\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("RedundancyZoneTag = \"\"\n"),
        "{}",
        out.stdout
    );
    let out = cairn(
        &a,
        &[
            "operator",
            "autopilot",
            "set-config",
            "-cleanup-dead-servers=false",
            "-max-trailing-logs=10",
            "-server-stabilization-time=30s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.stdout, "Configuration updated!\n");
    let out = cairn(&a, &["operator", "autopilot", "get-config"])
        .await
        .ok();
    assert!(
        out.stdout.contains("CleanupDeadServers = false\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("MaxTrailingLogs = 10\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ServerStabilizationTime = 30s\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("LastContactThreshold = 200ms\n"),
        "{}",
        out.stdout
    );
    let bad = cairn(
        &a,
        &[
            "operator",
            "autopilot",
            "set-config",
            "-cleanup-dead-servers=maybe",
        ],
    )
    .await;
    assert_ne!(bad.code, 0);
}

#[tokio::test]
async fn monitor_prints_log_lines_as_they_come() {
    use tokio::io::AsyncBufReadExt;
    let a = Agent::start().await;
    let mut child = command(Some(&a), &["monitor", "-log-level=info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn monitor");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // Keep asking for a reload until the monitor, once attached, shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let found = loop {
        let _ = a.put_empty("/v1/agent/reload").await;
        match tokio::time::timeout(std::time::Duration::from_millis(500), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.contains("reloading configuration") => break l,
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(other) => panic!("monitor ended: {other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line from monitor"
        );
    };
    assert!(found.contains("[INFO]"), "{found}");
    let _ = child.kill().await;
}

/// `cairn validate`: Consul's messages and exit codes, for files and directories; a key Consul
/// knows but Cairn lacks warns, a key nobody knows fails.
#[tokio::test]
async fn validate_checks_files_and_directories() {
    let good = temp_path("good.hcl");
    std::fs::write(
        &good,
        "datacenter = \"dc1\"\ndata_dir = \"/tmp/cairn-validate\"\nserver = true\n\
         bootstrap_expect = 3\naudit {\n  enabled = false\n}\n",
    )
    .expect("write");
    let out = cairn_alone(&["validate", good.to_str().expect("path")])
        .await
        .ok();
    assert_eq!(out.stdout, "Configuration is valid!\n");
    assert!(out.stderr.contains("\"audit\""), "{out:?}");
    let dir = good
        .parent()
        .expect("dir")
        .to_str()
        .expect("path")
        .to_string();
    let out = cairn_alone(&["validate", "-quiet", &dir]).await.ok();
    assert_eq!(out.stdout, "");

    let bad = temp_path("bad.json");
    std::fs::write(&bad, r#"{"data_dir": "/tmp/x", "datacentre": "dc1"}"#).expect("write");
    let out = cairn_alone(&["validate", bad.to_str().expect("path")])
        .await
        .code(1);
    assert!(
        out.stderr.starts_with("Config validation failed: ")
            && out.stderr.contains("invalid config key datacentre"),
        "{out:?}"
    );
    let out = cairn_alone(&["validate"]).await.code(1);
    assert!(
        out.stderr
            .contains("Must specify at least one config file or directory"),
        "{out:?}"
    );
}

/// `cairn operator autopilot state`: Consul's layout, and its JSON with `-format=json`.
#[tokio::test]
async fn operator_autopilot_state_prints_consuls_layout() {
    let a = Agent::start().await;
    let out = cairn(&a, &["operator", "autopilot", "state"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Healthy:                      true", "{out:?}");
    assert_eq!(lines[1], "Failure Tolerance:            0", "{out:?}");
    assert!(
        lines[3].starts_with("Leader:                       "),
        "{out:?}"
    );
    assert_eq!(lines[4], "Voters:", "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("      Name:            {}\n", a.node)),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("      Status:          leader\n"),
        "{out:?}"
    );
    let out = cairn(&a, &["operator", "autopilot", "state", "-format=json"])
        .await
        .ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["Healthy"], true);
}

/// `cairn lock`: the child runs under the lock in Consul's KV layout, a second holder waits
/// (and gives up at `-timeout`), `-n` makes a semaphore, and the child's failure is reported
/// only with `-child-exit-code`.
#[tokio::test]
async fn lock_runs_the_child_under_a_lock_or_semaphore() {
    let a = Agent::start().await;
    let out = cairn(&a, &["lock", "app/l1", "echo hello"]).await.ok();
    assert_eq!(out.stdout, "hello\n");
    // Released and the session gone.
    let e = kv_entry(&a, "app/l1/.lock").await;
    assert_eq!(e["Flags"], 0x2ddc_cbc0_58a5_0c18_u64, "{e}");
    assert!(e.get("Session").is_none() || e["Session"].is_null(), "{e}");
    let sessions: Value = a.get("/v1/session/list").await.body;
    assert_eq!(sessions, serde_json::json!([]));

    // While one holds the lock, another waits and gives up at its timeout.
    let (first, second) = tokio::join!(cairn(&a, &["lock", "app/l2", "sleep 2"]), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cairn(&a, &["lock", "-timeout", "500ms", "app/l2", "echo second"]).await
    });
    first.ok();
    let second = second.code(1);
    assert!(second.stdout.is_empty(), "{second:?}");
    assert!(
        second
            .stderr
            .contains("Shutdown triggered or timeout during lock acquisition"),
        "{second:?}"
    );

    // A semaphore of two: two holders at once, a third waits.
    let (h1, h2, third) = tokio::join!(
        cairn(&a, &["lock", "-n", "2", "app/sem", "sleep 2"]),
        cairn(&a, &["lock", "-n", "2", "app/sem", "sleep 2"]),
        async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cairn(
                &a,
                &[
                    "lock",
                    "-n",
                    "2",
                    "-timeout",
                    "500ms",
                    "app/sem",
                    "echo third",
                ],
            )
            .await
        }
    );
    h1.ok();
    h2.ok();
    third.code(1);

    // The child's exit status.
    cairn(&a, &["lock", "app/l3", "exit 3"]).await.ok();
    cairn(&a, &["lock", "-child-exit-code", "app/l3", "exit 3"])
        .await
        .code(2);
    let out = cairn(&a, &["lock", "app/only-prefix"]).await.code(1);
    assert!(
        out.stderr
            .contains("Key prefix and child command must be specified"),
        "{out:?}"
    );
}

/// `cairn operator usage instances`: Consul's layout (totals, then the tab-aligned tables).
#[tokio::test]
async fn operator_usage_instances_prints_consuls_layout() {
    let a = Agent::start().await;
    a.register_service(&serde_json::json!({"Name": "web", "Port": 80}))
        .await;
    let out = cairn(&a, &["operator", "usage", "instances"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Billable Service Instances Total: 1", "{out:?}");
    assert_eq!(lines[1], "dc1 Billable Service Instances: 1", "{out:?}");
    assert_eq!(lines[2], "", "{out:?}");
    assert_eq!(lines[3], "Billable Services", "{out:?}");
    assert_eq!(lines[4], "Services      Service instances", "{out:?}");
    assert_eq!(lines[5], "2             1", "{out:?}");
    assert!(out.stdout.contains("\nConnect Services\nType"), "{out:?}");
    let out = cairn(
        &a,
        &["operator", "usage", "instances", "-billable", "-connect"],
    )
    .await
    .code(1);
    assert!(
        out.stderr
            .contains("Cannot specify both -billable and -connect flags"),
        "{out:?}"
    );
}
