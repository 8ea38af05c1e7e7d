//! `cairn acl ...` end to end: the real binary against a real `cairn agent -dev` with ACLs on
//! and `default_policy = "deny"`. Outputs are checked line by line against Consul's layouts
//! and texts, and the effect of what the commands write is checked by using the tokens.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Agent;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The initial management token of the agents here.
const MGMT: &str = "5b1e1c2a-7d1f-4e0a-9d2b-3c4e5f6a7b8c";

/// Upper bound of one CLI run.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

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
    fn fails(self) -> Out {
        assert_eq!(self.code, 1, "expected exit code 1: {self:?}");
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:?}");
        self
    }

    /// The value of a `Label:   value` line of the pretty output.
    #[track_caller]
    fn field(&self, label: &str) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} line in {self:?}"))
    }

    /// The output as JSON.
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Runs `cairn args...` against `agent` with `token` (none: no token at all) and `stdin`.
async fn run(agent: &Agent, token: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args)
        .env("CONSUL_HTTP_ADDR", &agent.base)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .env_remove("CONSUL_HTTP_SSL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(t) = token {
        c.env("CONSUL_HTTP_TOKEN", t);
    }
    let mut child = c.spawn().expect("spawn cairn");
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

/// Runs `cairn args...` with the management token.
async fn cairn(agent: &Agent, args: &[&str]) -> Out {
    run(agent, Some(MGMT), args, b"").await
}

/// Whether `s` is a time as Go prints a UTC `time.Time`: `2025-07-01 10:00:00.123 +0000 UTC`.
fn is_go_time(s: &str) -> bool {
    let Some(rest) = s.strip_suffix(" +0000 UTC") else {
        return false;
    };
    let (secs, frac) = rest.split_once('.').unwrap_or((rest, "1"));
    chrono::NaiveDateTime::parse_from_str(secs, "%Y-%m-%d %H:%M:%S").is_ok()
        && !frac.is_empty()
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !frac.ends_with('0')
}

/// The bootstrap prints the new management token in Consul's layout, once; its secret then
/// works as `-token` for `token read -self`.
#[tokio::test]
async fn bootstrap_once_then_read_self() {
    let recovery = "8a1c2d3e-0000-4000-8000-00000000abcd";
    let a = Agent::builder()
        .config(json!({"acl": {
            "enabled": true,
            "default_policy": "deny",
            "tokens": {"agent_recovery": recovery}
        }}))
        .token(recovery)
        .start()
        .await;

    // The secret is chosen on stdin (a newline, as `echo` adds, is not part of it).
    let chosen = "0e8f2f6c-3b4d-4c1e-9a7b-5d6c7e8f9a0b";
    let boot = run(
        &a,
        None,
        &["acl", "bootstrap", "-"],
        format!("{chosen}\n").as_bytes(),
    )
    .await
    .ok();
    let lines: Vec<&str> = boot.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{boot:?}");
    assert!(lines[0].starts_with("AccessorID:       "), "{boot:?}");
    assert!(lines[1].starts_with("SecretID:         "), "{boot:?}");
    assert_eq!(
        lines[2],
        "Description:      Bootstrap Token (Global Management)"
    );
    assert_eq!(lines[3], "Local:            false");
    let created = lines[4]
        .strip_prefix("Create Time:      ")
        .unwrap_or_default();
    assert!(is_go_time(created), "{created:?}");
    assert_eq!(lines[5], "Policies:");
    assert_eq!(
        lines[6],
        "   00000000-0000-0000-0000-000000000001 - global-management"
    );
    // `UI.Info` of a text that ends with a newline: a blank line closes the output.
    assert!(boot.stdout.ends_with("global-management\n\n"), "{boot:?}");
    let accessor = boot.field("AccessorID");
    let secret = boot.field("SecretID");
    assert_eq!(secret, chosen);

    let again = run(&a, None, &["acl", "bootstrap"], b"").await.fails();
    assert!(
        again.stderr.starts_with(
            "Failed ACL bootstrapping: Unexpected response code: 403 \
             (Permission denied: ACL bootstrap no longer allowed (reset index: "
        ),
        "{again:?}"
    );

    let me = run(
        &a,
        None,
        &["acl", "token", "read", "-self", "-token", &secret],
        b"",
    )
    .await
    .ok();
    assert_eq!(me.field("AccessorID"), accessor);
    assert_eq!(me.field("SecretID"), secret);
    // The same from the environment, as JSON with Go's field order.
    let me = run(
        &a,
        Some(&secret),
        &["acl", "token", "read", "-self", "-format=json"],
        b"",
    )
    .await
    .ok();
    assert!(me.stdout.starts_with("{\n    \"CreateIndex\": "), "{me:?}");
    assert_eq!(me.json()["AccessorID"], accessor.as_str());
    assert_eq!(me.json()["Policies"][0]["Name"], "global-management");
}

/// A `-dev` agent with ACLs on, default deny, and `MGMT` as initial management token.
async fn acl_agent() -> Agent {
    Agent::builder()
        .config(json!({
            "acl": {
                "enabled": true,
                "default_policy": "deny",
                "tokens": {"initial_management": MGMT, "agent": MGMT}
            }
        }))
        .token(MGMT)
        .start()
        .await
}

/// Policies from a file and from stdin, read by name and ID prefix, listed, merged on update
/// and deleted; tokens linking them by name, with identities and a TTL, used for real;
/// update, clone, list, delete; errors with Consul's texts.
#[tokio::test]
async fn policies_and_tokens() {
    let a = acl_agent().await;

    // A policy from a file.
    let rules_path = a.dir.join("app.hcl");
    let rules = "key_prefix \"app/\" {\n  policy = \"write\"\n}\n";
    std::fs::write(&rules_path, rules).expect("write rules");
    let file_arg = format!("@{}", rules_path.display());
    let app = cairn(
        &a,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "app",
            "-description",
            "App keys",
            "-rules",
            &file_arg,
        ],
    )
    .await
    .ok();
    let app_id = app.field("ID");
    assert_eq!(
        app.stdout,
        format!(
            "ID:           {app_id}\nName:         app\nDescription:  App keys\n\
             Datacenters:  \nRules:\n{rules}\n"
        )
    );

    // A policy from stdin, valid in dc1 only, with its metadata.
    let web = run(
        &a,
        Some(MGMT),
        &[
            "acl",
            "policy",
            "create",
            "-name=web-read",
            "-rules",
            "-",
            "-valid-datacenter",
            "dc1",
            "-meta",
        ],
        b"service \"web\" { policy = \"read\" }",
    )
    .await
    .ok();
    let web_id = web.field("ID");
    assert_eq!(web.field("Datacenters"), "dc1");
    let hash = web.field("Hash");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{web:?}"
    );
    assert!(web.field("Create Index").parse::<u64>().is_ok());
    assert!(
        web.stdout
            .ends_with("Rules:\nservice \"web\" { policy = \"read\" }\n")
    );

    // Read by name as JSON (Go's field order), by ID prefix as pretty.
    let read = cairn(
        &a,
        &["acl", "policy", "read", "-name", "app", "-format", "json"],
    )
    .await
    .ok();
    assert!(read.stdout.starts_with("{\n    \"ID\": "), "{read:?}");
    assert_eq!(read.json()["Rules"], rules);
    assert_eq!(read.json()["Datacenters"], Value::Null);
    let read = cairn(&a, &["acl", "policy", "read", "-id", &app_id[..8]])
        .await
        .ok();
    assert_eq!(read.field("ID"), app_id);
    assert_eq!(read.field("Name"), "app");

    let list = cairn(&a, &["acl", "policy", "list"]).await.ok();
    assert!(
        list.stdout.contains(&format!(
            "app:\n   ID:           {app_id}\n   Description:  App keys\n   Datacenters:  \n"
        )),
        "{list:?}"
    );
    assert!(list.stdout.contains("web-read:\n"), "{list:?}");
    assert!(
        list.stdout.contains(
            "global-management:\n   ID:           00000000-0000-0000-0000-000000000001\n"
        )
    );

    // Update merges: a new description, the rules kept.
    let up = cairn(
        &a,
        &[
            "acl",
            "policy",
            "update",
            "-name",
            "app",
            "-description",
            "All app keys",
        ],
    )
    .await
    .ok();
    assert_eq!(up.field("Description"), "All app keys");
    assert!(up.stdout.ends_with(&format!("Rules:\n{rules}\n")), "{up:?}");

    // Token errors: no link, an unknown policy, a bad TTL.
    let none = cairn(&a, &["acl", "token", "create", "-description", "x"])
        .await
        .fails();
    assert_eq!(
        none.stderr,
        "Cannot create a token without specifying -policy-name, -policy-id, -role-name, \
         -role-id, -service-identity, -node-identity, -templated-policy, or \
         -templated-policy-file at least once\n"
    );
    let unknown = cairn(&a, &["acl", "token", "create", "-policy-name", "nope"])
        .await
        .fails();
    assert!(
        unknown
            .stderr
            .starts_with("Failed to create new token: Unexpected response code: "),
        "{unknown:?}"
    );
    assert!(
        unknown
            .stderr
            .ends_with("(No such ACL policy with name \"nope\")\n"),
        "{unknown:?}"
    );
    let ttl = cairn(
        &a,
        &[
            "acl",
            "token",
            "create",
            "-policy-name",
            "app",
            "-expires-ttl",
            "soon",
        ],
    )
    .await
    .fails();
    assert!(
        ttl.stderr
            .starts_with("invalid value \"soon\" for flag -expires-ttl: parse error\n"),
        "{ttl:?}"
    );

    // A token with a policy by name, identities and a TTL.
    let t1 = cairn(
        &a,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "t1",
            "-policy-name",
            "app",
            "-service-identity",
            "web:dc1,dc2",
            "-node-identity",
            "n1:dc1",
            "-expires-ttl",
            "1h",
        ],
    )
    .await
    .ok();
    let acc = t1.field("AccessorID");
    let secret = t1.field("SecretID");
    assert!(is_go_time(&t1.field("Expiration Time")), "{t1:?}");
    assert!(
        t1.stdout.ends_with(&format!(
            "Policies:\n   {app_id} - app\nService Identities:\n   web (Datacenters: dc1, dc2)\n\
             Node Identities:\n   n1 (Datacenter: dc1)\n\n"
        )),
        "{t1:?}"
    );
    // The token grants what its policy says, and nothing else.
    run(&a, Some(&secret), &["kv", "put", "app/x", "1"], b"")
        .await
        .ok();
    let denied = run(&a, Some(&secret), &["kv", "put", "other/x", "1"], b"")
        .await
        .fails();
    assert!(denied.stderr.contains("403"), "{denied:?}");
    let me = run(&a, Some(&secret), &["acl", "token", "read", "-self"], b"")
        .await
        .ok();
    assert_eq!(me.field("AccessorID"), acc);
    assert_eq!(me.field("Description"), "t1");

    // Templated policies from a file; the token is then listed too.
    let tp_path = a.dir.join("templated.hcl");
    std::fs::write(
        &tp_path,
        "TemplatedPolicy \"builtin/service\" {\n  Name = \"api\"\n}\n",
    )
    .expect("write templated policy file");
    let tp_arg = tp_path.display().to_string();
    let tp = cairn(
        &a,
        &["acl", "token", "create", "-templated-policy-file", &tp_arg],
    )
    .await
    .ok();
    assert!(
        tp.stdout.ends_with(
            "Templated Policies:\n   builtin/service\n      Name: api\n      Datacenters: all\n\n"
        ),
        "{tp:?}"
    );
    let tp_acc = tp.field("AccessorID");

    // The list: anonymous, management, t1 and the templated one, separated by blank lines.
    let list = cairn(&a, &["acl", "token", "list"]).await.ok();
    assert_eq!(list.stdout.matches("AccessorID:").count(), 4, "{list:?}");
    assert_eq!(
        list.stdout.matches("\n\nAccessorID:").count(),
        3,
        "{list:?}"
    );
    assert!(
        list.stdout
            .contains(&format!("AccessorID:       {tp_acc}\n"))
    );
    assert!(
        list.stdout.contains(&format!(
            "AccessorID:       {acc}\nSecretID:         {secret}\nDescription:      t1\n"
        )),
        "{list:?}"
    );
    let listed = cairn(&a, &["acl", "token", "list", "-format", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(4));
    assert_eq!(listed[0]["Legacy"], false, "{listed}");

    // Update by prefix: append a policy (identities kept), then replace the policies.
    let up = cairn(
        &a,
        &[
            "acl",
            "token",
            "update",
            "-accessor-id",
            &acc[..8],
            "-append-policy-name",
            "web-read",
            "-description",
            "t1b",
        ],
    )
    .await
    .ok();
    assert_eq!(up.field("Description"), "t1b");
    assert!(
        up.stdout.contains(&format!(
            "Policies:\n   {app_id} - app\n   {web_id} - web-read\nService Identities:\n   \
             web (Datacenters: dc1, dc2)\n"
        )),
        "{up:?}"
    );
    let up = cairn(
        &a,
        &[
            "acl",
            "token",
            "update",
            "-accessor-id",
            &acc,
            "-policy-name",
            "web-read",
        ],
    )
    .await
    .ok();
    assert!(
        up.stdout.contains(&format!(
            "Policies:\n   {web_id} - web-read\nService Identities:"
        )),
        "{up:?}"
    );
    let both = cairn(
        &a,
        &[
            "acl",
            "token",
            "update",
            "-accessor-id",
            &acc,
            "-policy-name",
            "app",
            "-append-policy-name",
            "web-read",
        ],
    )
    .await
    .fails();
    assert!(
        both.stderr.starts_with(
            "Cannot combine the use of policy-id/policy-name flags with append- variants."
        ),
        "{both:?}"
    );

    // The expanded read shows the policy's rules and the layers.
    let exp = cairn(
        &a,
        &["acl", "token", "read", "-accessor-id", &acc, "-expanded"],
    )
    .await
    .ok();
    assert!(
        exp.stdout.contains(&format!(
            "Policies:\n\tPolicy Name: web-read\n\t\tID: {web_id}\n\t\tDescription: \n\t\tRules:\n\
             \t\t\tservice \"web\" {{ policy = \"read\" }}\n\n"
        )),
        "{exp:?}"
    );
    assert!(
        exp.stdout
            .contains("=== End of Authorizer Layer 0: Token ===\n")
    );
    assert!(
        exp.stdout
            .contains(&format!("Resolved By Agent: \"{}\"\n", a.node))
    );

    // Clone: a new token with the same links and the given description.
    let clone = cairn(
        &a,
        &[
            "acl",
            "token",
            "clone",
            "-accessor-id",
            &acc,
            "-description",
            "cloned",
        ],
    )
    .await
    .ok();
    let clone_acc = clone.field("AccessorID");
    assert_ne!(clone_acc, acc);
    assert_ne!(clone.field("SecretID"), secret);
    assert_eq!(clone.field("Description"), "cloned");
    assert!(
        clone
            .stdout
            .contains(&format!("Policies:\n   {web_id} - web-read\n"))
    );

    // Delete, then the token is gone.
    let del = cairn(&a, &["acl", "token", "delete", "-accessor-id", &clone_acc])
        .await
        .ok();
    assert_eq!(
        del.stdout,
        format!("Token \"{clone_acc}\" deleted successfully\n")
    );
    let gone = cairn(&a, &["acl", "token", "read", "-accessor-id", &clone_acc])
        .await
        .fails();
    assert_eq!(
        gone.stderr,
        format!(
            "Error reading token \"{clone_acc}\": Unexpected response code: 403 \
             (token does not exist: ACL not found)\n"
        )
    );
    let missing = cairn(&a, &["acl", "token", "read"]).await.fails();
    assert_eq!(missing.stderr, "Must specify the -accessor-id parameter\n");

    // Without a token, reads are refused with the agent's text.
    let anon = run(&a, None, &["acl", "policy", "list"], b"").await.fails();
    assert!(
        anon.stderr.starts_with(
            "Failed to retrieve the policy list: Unexpected response code: 403 (Permission denied"
        ),
        "{anon:?}"
    );

    // Policy delete by ID; a token linking it keeps no link to it.
    let del = cairn(&a, &["acl", "policy", "delete", "-id", &web_id])
        .await
        .ok();
    assert_eq!(
        del.stdout,
        format!("Policy \"{web_id}\" deleted successfully\n")
    );
    let gone = cairn(&a, &["acl", "policy", "read", "-name", "web-read"])
        .await
        .fails();
    assert_eq!(gone.stderr, "Error policy not found: web-read\n");
    let bad = cairn(&a, &["acl", "policy", "list", "-format", "yaml"])
        .await
        .fails();
    assert_eq!(bad.stderr, "Unknown format: yaml\n");
}

/// Roles: create with a policy by name and a service identity, read, merge-update by ID
/// prefix, list, link from a token, delete by name; then `set-agent-token` and the group help.
#[tokio::test]
async fn roles_agent_tokens_and_help() {
    let a = acl_agent().await;
    cairn(
        &a,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "kv-read",
            "-rules",
            "key_prefix \"\" { policy = \"read\" }",
        ],
    )
    .await
    .ok();
    let role = cairn(
        &a,
        &[
            "acl",
            "role",
            "create",
            "-name",
            "ops",
            "-description",
            "Operators",
            "-policy-name",
            "kv-read",
            "-service-identity",
            "db",
        ],
    )
    .await
    .ok();
    let rid = role.field("ID");
    let pid = cairn(
        &a,
        &["acl", "policy", "read", "-name", "kv-read", "-format=json"],
    )
    .await
    .ok()
    .json()["ID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        role.stdout,
        format!(
            "ID:           {rid}\nName:         ops\nDescription:  Operators\nPolicies:\n   \
             {pid} - kv-read\nService Identities:\n   db (Datacenters: all)\n\n"
        )
    );
    let none = cairn(&a, &["acl", "role", "create", "-name", "empty"])
        .await
        .fails();
    assert!(
        none.stderr
            .starts_with("Cannot create a role without specifying -policy-name"),
        "{none:?}"
    );

    let up = cairn(
        &a,
        &[
            "acl",
            "role",
            "update",
            "-id",
            &rid[..6],
            "-node-identity",
            "n2:dc1",
        ],
    )
    .await
    .ok();
    assert!(
        up.stdout.ends_with(
            "Service Identities:\n   db (Datacenters: all)\nNode Identities:\n   n2 (Datacenter: dc1)\n\n"
        ),
        "{up:?}"
    );
    assert_eq!(up.field("Description"), "Operators");

    let list = cairn(&a, &["acl", "role", "list"]).await.ok();
    assert_eq!(
        list.stdout,
        format!(
            "ops:\n   ID:           {rid}\n   Description:  Operators\n   Policies:\n      \
             {pid} - kv-read\n   Service Identities:\n      db (Datacenters: all)\n   \
             Node Identities:\n      n2 (Datacenter: dc1)\n\n"
        )
    );
    let read = cairn(
        &a,
        &["acl", "role", "read", "-name", "ops", "-format", "json"],
    )
    .await
    .ok();
    assert_eq!(read.json()["NodeIdentities"][0]["NodeName"], "n2");

    // A token through the role reads keys.
    let t = cairn(&a, &["acl", "token", "create", "-role-name", "ops"])
        .await
        .ok();
    assert!(
        t.stdout.contains(&format!("Roles:\n   {rid} - ops\n")),
        "{t:?}"
    );
    let secret = t.field("SecretID");
    cairn(&a, &["kv", "put", "k", "v"]).await.ok();
    let got = run(&a, Some(&secret), &["kv", "get", "k"], b"").await.ok();
    assert_eq!(got.stdout, "v\n");

    let del = cairn(&a, &["acl", "role", "delete", "-name", "ops"])
        .await
        .ok();
    assert_eq!(del.stdout, format!("Role \"{rid}\" deleted successfully\n"));
    let gone = cairn(&a, &["acl", "role", "read", "-name", "ops"])
        .await
        .fails();
    assert_eq!(gone.stderr, "Role not found with name \"ops\"\n");

    // set-agent-token: the default token then answers requests that carry none.
    let reader = cairn(&a, &["acl", "token", "create", "-policy-name", "kv-read"])
        .await
        .ok()
        .field("SecretID");
    let before = run(&a, None, &["kv", "get", "k"], b"").await.fails();
    assert!(before.stderr.contains("403"), "{before:?}");
    let set = cairn(&a, &["acl", "set-agent-token", "default", &reader])
        .await
        .ok();
    assert_eq!(set.stdout, "ACL token \"default\" set successfully\n");
    let after = run(&a, None, &["kv", "get", "k"], b"").await.ok();
    assert_eq!(after.stdout, "v\n");
    let set = run(
        &a,
        Some(MGMT),
        &["acl", "set-agent-token", "agent", "-"],
        MGMT.as_bytes(),
    )
    .await
    .ok();
    assert_eq!(set.stdout, "ACL token \"agent\" set successfully\n");
    let bogus = cairn(&a, &["acl", "set-agent-token", "bogus", "x"])
        .await
        .fails();
    assert_eq!(bogus.stderr, "Unknown token type\n");
    let short = cairn(&a, &["acl", "set-agent-token", "agent"])
        .await
        .fails();
    assert_eq!(short.stderr, "Error! Missing TOKEN argument\n");
    let denied = run(
        &a,
        Some(&reader),
        &["acl", "set-agent-token", "agent", "x"],
        b"",
    )
    .await
    .fails();
    assert!(
        denied
            .stderr
            .starts_with("Failed to set ACL token \"agent\": Unexpected response code: 403 ("),
        "{denied:?}"
    );

    // The group alone lists its subcommands (exit 1, stderr); -h of a command, exit 0.
    let group = cairn(&a, &["acl"]).await.fails();
    for sub in ["bootstrap", "policy", "role", "set-agent-token", "token"] {
        assert!(group.stderr.contains(&format!("\n    {sub} ")), "{group:?}");
    }
    let help = cairn(&a, &["acl", "token", "create", "-h"]).await.ok();
    assert!(
        help.stdout
            .starts_with("Usage: cairn acl token create [options]")
    );
    assert!(help.stdout.contains("-policy-name=<string>"));
}
