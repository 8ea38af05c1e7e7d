//! `cairn lock`: runs a child process while holding a lock (or one of `-n` semaphore slots) in
//! the KV store, as `consul lock` does, with Consul's KV layout so that `consul lock`, Go's
//! `api.Lock`/`api.Semaphore` and this command exclude one another.
//!
//! - Lock (`-n 1`): the key `<prefix>/.lock`, acquired with a session and Consul's lock flag
//!   value.
//! - Semaphore (`-n > 1`): each contender holds `<prefix>/<session>` with the semaphore flag
//!   value; `<prefix>/.lock` holds `{"Limit": n, "Holders": {"<session>": true}}`, changed only
//!   with check-and-set, and a holder whose contender key lost its session is pruned.
//!
//! The session has a 15 s TTL renewed every 7.5 s (Go's `api.Lock` defaults). A task watches
//! the lock with blocking reads; when the lock is lost (the session expired or was destroyed,
//! the key was taken), the child is stopped. The child runs through `sh -c` unless
//! `-shell=false`; on its exit the lock is released and the session destroyed.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::process::Command;

use super::client::Client;
use super::output::{err, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's `api.LockFlagValue`: marks a key as a lock.
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// Consul's `api.SemaphoreFlagValue`: marks a semaphore's keys.
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The session TTL, renewed at half of it.
const SESSION_TTL: Duration = Duration::from_secs(15);
/// Blocking reads while waiting for or watching the lock.
const WAIT: &str = "15s";

const FLAGS: &[Flag] = &[
    Flag::uint(
        "n",
        "Optional limit on the number of concurrent lock holders. The underlying implementation \
         switches from a lock to a semaphore when increased past one. The default is one.",
    ),
    Flag::text(
        "name",
        "name",
        "Optional name to associate with the lock session. It not provided, one is generated \
         based on the provided child command.",
    ),
    Flag::bool("pass-stdin", "Pass stdin to the child process."),
    Flag::text(
        "shell",
        "true|false",
        "Use a shell to run the command (can set a custom shell via the SHELL environment \
         variable). The default value is true.",
    ),
    Flag::text(
        "timeout",
        "duration",
        "Maximum amount of time to wait to acquire the lock, specified as a duration like \"1s\" \
         or \"3h\". The default value is 0.",
    ),
    Flag::text("try", "duration", "DEPRECATED: use -timeout instead."),
    Flag::uint(
        "monitor-retry",
        "Number of times to retry if the agent returns a 500 error while the lock is monitored \
         (the default, 3, retries them).",
    ),
    Flag::bool("verbose", "Enable verbose (debugging) output."),
    Flag::bool(
        "child-exit-code",
        "Exit 2 if the child process exited with an error if this is true, otherwise this \
         doesn't propagate an error from the child. The default value is false.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process
  when successful. The child process can assume the lock is held while it
  executes. If the lock is lost or communication is disrupted the child
  process will be sent a SIGTERM signal and given time to gracefully exit.
  After the grace period expires the process will be hard terminated.

  For Consul agents on Windows, the child process is always hard terminated
  with a SIGKILL, since Windows has no POSIX compatible notion for SIGTERM.

  When -n=1, only a single lock holder or leader exists providing mutual
  exclusion. Setting a higher value switches to a semaphore allowing multiple
  holders to coordinate.

  The prefix provided must have write privileges.
",
    flags: FLAGS,
    http: Http::Client,
};

/// What holds the lock and how to give it back.
struct Held {
    client: Client,
    session: String,
    prefix: String,
    limit: u64,
}

/// Runs `cairn lock`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let [prefix, child @ ..] = p.args.as_slice() else {
        err("Key prefix and child command must be specified");
        return ExitCode::from(1);
    };
    if child.is_empty() {
        err("Key prefix and child command must be specified");
        return ExitCode::from(1);
    }
    let prefix = prefix
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string();
    let limit = if p.is_set("n") { p.uint("n") } else { 1 };
    if limit == 0 {
        err("Lock holder limit must be positive");
        return ExitCode::from(1);
    }
    let timeout = match p
        .text("timeout")
        .or(p.text("try"))
        .filter(|t| !t.is_empty())
    {
        None => None,
        Some(t) => match cairn_catalog::duration::parse_go_duration(t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => return fail(format!("Invalid timeout: {e}")),
        },
    };
    let shell = match p.text("shell") {
        None => true,
        Some(v) => !matches!(v, "false" | "0" | "f" | "F" | "FALSE" | "False"),
    };
    let verbose = p.bool("verbose");
    let retries = if p.is_set("monitor-retry") {
        p.uint("monitor-retry")
    } else {
        3
    };
    let script = child.join(" ");
    let name = p
        .text("name")
        .map(str::to_string)
        .unwrap_or_else(|| format!("Consul lock for '{script}' at '{prefix}'"));
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };

    let session = match create_session(&client, &name).await {
        Ok(s) => s,
        Err(e) => return fail(format!("Lock acquisition failed: {e}")),
    };
    let held = Held {
        client,
        session,
        prefix,
        limit,
    };
    let renew = tokio::spawn(renew_loop(held.client.clone(), held.session.clone()));
    if verbose {
        out("Attempting lock acquisition");
    }
    let acquired = match timeout {
        Some(t) => tokio::time::timeout(t, held.acquire()).await,
        None => Ok(held.acquire().await),
    };
    match acquired {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            renew.abort();
            held.cleanup().await;
            return fail(format!("Lock acquisition failed: {e}"));
        }
        Err(_) => {
            renew.abort();
            held.cleanup().await;
            return fail("Shutdown triggered or timeout during lock acquisition");
        }
    }
    if verbose {
        out("Lock acquired, starting handler");
    }

    let mut cmd = if shell {
        let sh = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
        let mut c = Command::new(sh);
        c.arg("-c").arg(&script);
        c
    } else {
        let mut c = Command::new(&child[0]);
        c.args(&child[1..]);
        c
    };
    cmd.stdin(if p.bool("pass-stdin") {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    let mut proc = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            renew.abort();
            held.cleanup().await;
            return fail(format!("Error executing handler: {e}"));
        }
    };
    let lost = held.monitor(retries);
    tokio::pin!(lost);
    let status = tokio::select! {
        s = proc.wait() => s.ok(),
        () = &mut lost => {
            err("Lock lost, killing child");
            stop_child(&mut proc).await;
            renew.abort();
            held.cleanup().await;
            return ExitCode::from(1);
        }
    };
    renew.abort();
    held.cleanup().await;
    if verbose {
        out("Cleanup succeeded");
    }
    let failed = status.is_none_or(|s| !s.success());
    if failed && p.bool("child-exit-code") {
        if verbose {
            err("Error running handler: the child exited with an error");
        }
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// Creates the lock's session (release on invalidation, Consul's 15 s TTL).
async fn create_session(client: &Client, name: &str) -> Result<String, String> {
    let body =
        json!({"Name": name, "TTL": format!("{}s", SESSION_TTL.as_secs()), "Behavior": "release"});
    let v: Value = client
        .put(
            "/v1/session/create",
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
        .map_err(|e| e.to_string())?
        .json()
        .map_err(|e| e.to_string())?;
    v["ID"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the session was created without an ID".to_string())
}

/// Renews the session at half its TTL for as long as the lock is wanted.
async fn renew_loop(client: Client, session: String) {
    loop {
        tokio::time::sleep(SESSION_TTL / 2).await;
        // A failed renewal is seen by the monitor (the session, then the lock, goes away).
        let _ = client
            .put(&format!("/v1/session/renew/{session}"), &[], None)
            .await;
    }
}

/// Sends SIGTERM, then SIGKILL after a grace period, as Consul does.
async fn stop_child(proc: &mut tokio::process::Child) {
    if let Some(pid) = proc.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(5), proc.wait())
        .await
        .is_err()
    {
        let _ = proc.kill().await;
    }
}

impl Held {
    /// The lock's own key.
    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix)
    }

    /// Waits until the lock (or a slot) is this session's.
    async fn acquire(&self) -> Result<(), String> {
        if self.limit == 1 {
            self.acquire_lock().await
        } else {
            self.acquire_slot().await
        }
    }

    /// `PUT ?acquire=<session>` of `key` with `flags`: whether this session now holds it.
    async fn acquire_key(&self, key: &str, flags: u64) -> Result<bool, String> {
        self.client
            .put(
                &kv_path(key),
                &[
                    ("acquire", self.session.clone()),
                    ("flags", flags.to_string()),
                ],
                Some(Vec::new()),
            )
            .await
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())
    }

    /// `-n 1`: acquires `<prefix>/.lock`, waiting for its holder to release it.
    async fn acquire_lock(&self) -> Result<(), String> {
        let key = self.lock_key();
        let mut index = 0;
        loop {
            let r = self
                .client
                .get_blocking(&kv_path(&key), &[("wait", WAIT.to_string())], index)
                .await
                .map_err(|e| e.to_string())?;
            index = r.index;
            let entry: Option<Value> = if r.status == 404 {
                None
            } else {
                r.json::<Value>().ok().and_then(|v| v.get(0).cloned())
            };
            if let Some(e) = &entry {
                if e["Flags"].as_u64().is_some_and(|f| f != LOCK_FLAG) {
                    return Err("Existing key does not match lock use".into());
                }
                if e["Session"].as_str().is_some_and(|s| !s.is_empty()) {
                    // Held by someone: wait for a change.
                    continue;
                }
            }
            if self.acquire_key(&key, LOCK_FLAG).await? {
                return Ok(());
            }
            // Refused (a lock delay after a release, or a race): wait for the next change.
        }
    }

    /// `-n > 1`: registers as a contender, then takes a slot in `.lock` with check-and-set.
    async fn acquire_slot(&self) -> Result<(), String> {
        let contender = format!("{}/{}", self.prefix, self.session);
        if !self.acquire_key(&contender, SEMAPHORE_FLAG).await? {
            return Err("failed to make contender entry".into());
        }
        let mut index = 0;
        loop {
            let (entries, idx) = self.prefix_entries(index).await?;
            index = idx;
            let (lock, modify) = self.decode_lock(&entries)?;
            let live: Vec<&str> = entries
                .iter()
                .filter(|e| e["Session"].as_str().is_some_and(|s| !s.is_empty()))
                .filter_map(|e| e["Key"].as_str())
                .filter_map(|k| k.strip_prefix(&format!("{}/", self.prefix)))
                .collect();
            if lock["Limit"].as_u64().is_some_and(|l| l != self.limit) {
                return Err(format!(
                    "semaphore limit conflict (lock: {}, local: {})",
                    lock["Limit"], self.limit
                ));
            }
            // Holders whose contender key lost its session are gone.
            let mut holders: Vec<String> = lock["Holders"]
                .as_object()
                .map(|h| {
                    h.keys()
                        .filter(|k| live.contains(&k.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if holders.contains(&self.session) {
                return Ok(());
            }
            if (holders.len() as u64) < self.limit {
                holders.push(self.session.clone());
                if self.write_lock(&holders, modify).await? {
                    return Ok(());
                }
            }
        }
    }

    /// The entries under the prefix (blocking on `index`) and the new index.
    async fn prefix_entries(&self, index: u64) -> Result<(Vec<Value>, u64), String> {
        let r = self
            .client
            .get_blocking(
                &kv_path(&format!("{}/", self.prefix)),
                &[("recurse", String::new()), ("wait", WAIT.to_string())],
                index,
            )
            .await
            .map_err(|e| e.to_string())?;
        let entries = if r.status == 404 {
            Vec::new()
        } else {
            r.json::<Vec<Value>>().map_err(|e| e.to_string())?
        };
        Ok((entries, r.index))
    }

    /// The semaphore's `.lock` document and its `ModifyIndex` (0 when it does not exist yet).
    fn decode_lock(&self, entries: &[Value]) -> Result<(Value, u64), String> {
        let key = self.lock_key();
        let Some(e) = entries.iter().find(|e| e["Key"] == key.as_str()) else {
            return Ok((json!({"Limit": self.limit, "Holders": {}}), 0));
        };
        if e["Flags"].as_u64().is_some_and(|f| f != SEMAPHORE_FLAG) {
            return Err("lock key is not a semaphore".into());
        }
        let raw = e["Value"].as_str().unwrap_or_default();
        let bytes = STANDARD
            .decode(raw)
            .map_err(|e| format!("failed to decode lock: {e}"))?;
        let doc: Value = if bytes.is_empty() {
            json!({"Limit": self.limit, "Holders": {}})
        } else {
            serde_json::from_slice(&bytes).map_err(|e| format!("failed to decode lock: {e}"))?
        };
        Ok((doc, e["ModifyIndex"].as_u64().unwrap_or(0)))
    }

    /// Writes `.lock` with `holders`, if nobody changed it since `modify`.
    async fn write_lock(&self, holders: &[String], modify: u64) -> Result<bool, String> {
        let doc = json!({
            "Limit": self.limit,
            "Holders": holders.iter().map(|h| (h.clone(), Value::Bool(true))).collect::<serde_json::Map<_, _>>(),
        });
        self.client
            .put(
                &kv_path(&self.lock_key()),
                &[
                    ("cas", modify.to_string()),
                    ("flags", SEMAPHORE_FLAG.to_string()),
                ],
                Some(doc.to_string().into_bytes()),
            )
            .await
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())
    }

    /// Returns when the lock is no longer this session's (after `retries` failed reads in a
    /// row, the lock counts as lost: the agent cannot vouch for it).
    async fn monitor(&self, retries: u64) {
        let mut index = 0;
        let mut failures = 0;
        loop {
            let held = if self.limit == 1 {
                match self
                    .client
                    .get_blocking(
                        &kv_path(&self.lock_key()),
                        &[("wait", WAIT.to_string())],
                        index,
                    )
                    .await
                {
                    Ok(r) => {
                        index = r.index;
                        Ok(r.status != 404
                            && r.json::<Value>().ok().is_some_and(|v| {
                                v[0]["Session"].as_str() == Some(self.session.as_str())
                            }))
                    }
                    Err(e) => Err(e),
                }
            } else {
                match self.prefix_entries(index).await {
                    Ok((entries, idx)) => {
                        index = idx;
                        Ok(self
                            .decode_lock(&entries)
                            .is_ok_and(|(doc, _)| doc["Holders"].get(&self.session).is_some()))
                    }
                    Err(e) => Err(super::client::Error::Decode(e)),
                }
            };
            match held {
                Ok(true) => failures = 0,
                Ok(false) => return,
                Err(_) if failures < retries => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Gives the lock (or slot) back and destroys the session; failures are only reported:
    /// the session's end releases everything anyway.
    async fn cleanup(&self) {
        if self.limit == 1 {
            let _ = self
                .client
                .put(
                    &kv_path(&self.lock_key()),
                    &[
                        ("release", self.session.clone()),
                        ("flags", LOCK_FLAG.to_string()),
                    ],
                    Some(Vec::new()),
                )
                .await;
        } else {
            // Out of the holders (check-and-set, retried a few times against races), then the
            // contender key.
            for _ in 0..5 {
                let Ok((entries, _)) = self.prefix_entries(0).await else {
                    break;
                };
                let Ok((doc, modify)) = self.decode_lock(&entries) else {
                    break;
                };
                let holders: Vec<String> = doc["Holders"]
                    .as_object()
                    .map(|h| h.keys().filter(|k| **k != self.session).cloned().collect())
                    .unwrap_or_default();
                if modify == 0 || self.write_lock(&holders, modify).await.unwrap_or(false) {
                    break;
                }
            }
            let _ = self
                .client
                .delete(&kv_path(&format!("{}/{}", self.prefix, self.session)), &[])
                .await;
        }
        if let Err(e) = self
            .client
            .put(&format!("/v1/session/destroy/{}", self.session), &[], None)
            .await
        {
            err(&format!("Cleanup failed: {e}"));
        }
    }
}

/// The KV API path of `key` (escaped as the CLI's other KV commands do).
fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", super::client::escape_path(key))
}
