//! `cairn watch`: follows a view of the catalog or the KV store with blocking queries and
//! prints it (indented JSON) each time it changes, the first result at once, or feeds it to a
//! handler command on stdin as `consul watch` does (`CONSUL_INDEX` in the environment).
//!
//! The loop is Consul's watch plan: query with the last index; an unchanged index or an
//! unchanged result is not reported; an index that goes backwards resets to 0; errors retry
//! with a growing back-off. SIGINT or SIGTERM stops the watch with exit code 0.
//!
//! Blocking queries make a watch cheap: each request parks on the server until the view's
//! index moves (or the wait ends), so a watch costs one open request, not a poll loop, and
//! reacts as soon as the change is applied.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::client::{Client, Error};
use super::output::{err, fail, json_indent, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::{Flag, Parsed};

/// Consul's flags for `watch`, with its help texts; `-once` is Cairn's addition.
const FLAGS: &[Flag] = &[
    Flag::text(
        "type",
        "type",
        "Specifies the watch type. One of key, keyprefix, services, nodes, service, checks, \
         or event.",
    ),
    Flag::text(
        "key",
        "key",
        "Specifies the key to watch. Only for 'key' type.",
    ),
    Flag::text(
        "prefix",
        "prefix",
        "Specifies the key prefix to watch. Only for 'keyprefix' type.",
    ),
    Flag::text(
        "service",
        "name",
        "Specifies the service to watch. Required for 'service' type, optional for 'checks' \
         type.",
    ),
    Flag::list(
        "tag",
        "tag",
        "Specifies the service tag to filter on (repeatable: all must match). Optional for \
         'service' type.",
    ),
    Flag::text(
        "passingonly",
        "true|false",
        "Specifies if only hosts passing all checks are displayed. Optional for 'service' \
         type. Defaults false.",
    ),
    Flag::bool("passing", "Same as -passingonly=true."),
    Flag::text(
        "state",
        "state",
        "Specifies the states to watch (any, passing, warning, critical). Optional for \
         'checks' type; the default when neither -service nor -node is given is any.",
    ),
    Flag::text(
        "node",
        "name",
        "Watches the checks of one node. Optional for 'checks' type.",
    ),
    Flag::text(
        "name",
        "name",
        "Specifies an event name to watch. Only for 'event' type.",
    ),
    Flag::bool(
        "shell",
        "Use a shell to run the handler (the SHELL environment variable, else /bin/sh). \
         Defaults true; with -shell=false the handler arguments are run directly.",
    ),
    Flag::bool(
        "once",
        "Print the first result and exit, as consul watch does without a handler.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn watch [options] [child...]

  Watches for changes in a given data view. Each time the view changes (and once
  at start) its JSON is printed to stdout, or, when a child command is given, the
  child is run with the JSON on its stdin and CONSUL_INDEX in its environment.
  The watch runs until interrupted (SIGINT) or until a handler fails.

      $ cairn watch -type=key -key=config/app
      $ cairn watch -type=keyprefix -prefix=config/ ./reload.sh
      $ cairn watch -type=service -service=web -passingonly=true
      $ cairn watch -type=checks -state=critical

  Providing the watch type is required, and other parameters may be required or
  supported depending on the watch type.
",
    flags: FLAGS,
    http: Http::Server,
};

/// How a response becomes the watched value.
///
/// Consul's watch handlers receive these shapes; a handler written for `consul watch`
/// reads the same JSON here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// One KV pair: the first element, `null` when the key is missing.
    Key,
    /// A KV listing: `null` when nothing is under the prefix (as Consul's client gives).
    KeyPrefix,
    /// The response as it is.
    Plain,
    /// Event list, pruned to the events after the last index.
    Event,
}

/// What to query.
#[derive(Debug)]
struct Plan {
    /// The endpoint of the watched view.
    path: String,
    /// Its parameters, without `index` (added per request).
    query: Vec<(&'static str, String)>,
    shape: Shape,
}

/// The watch parameters each type accepts (besides the HTTP options).
///
/// Consul refuses a parameter the type does not use rather than ignoring it, since a
/// misplaced `-key` on a `keyprefix` watch would otherwise watch something else.
fn allowed(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "key" => &["key"],
        "keyprefix" => &["prefix"],
        "services" | "nodes" => &[],
        "service" => &["service", "tag", "passingonly"],
        "checks" => &["service", "state", "node", "tag"],
        "event" => &["name"],
        _ => return None,
    })
}

/// Builds the query plan from the flags, with Consul's validation messages.
fn plan(p: &Parsed) -> Result<Plan, String> {
    let kind = p.text_or_empty("type");
    let Some(allowed) = allowed(kind) else {
        return Err(format!("Unsupported watch type: {kind}"));
    };
    let given: Vec<&str> = [
        "key",
        "prefix",
        "service",
        "tag",
        "passingonly",
        "state",
        "node",
        "name",
    ]
    .into_iter()
    .filter(|f| p.is_set(f) || (*f == "passingonly" && p.is_set("passing")))
    .collect();
    let invalid: Vec<&str> = given
        .iter()
        .copied()
        .filter(|f| !allowed.contains(f))
        .collect();
    if !invalid.is_empty() {
        return Err(format!("Invalid parameters: [{}]", invalid.join(" ")));
    }
    let text = |name: &str| p.text_or_empty(name).to_string();
    let plan = match kind {
        "key" => {
            let key = text("key");
            if key.is_empty() {
                return Err("Must specify a single key to watch".into());
            }
            Plan {
                path: format!("/v1/kv/{}", key.trim_start_matches('/')),
                query: Vec::new(),
                shape: Shape::Key,
            }
        }
        "keyprefix" => {
            let prefix = text("prefix");
            if prefix.is_empty() {
                return Err("Must specify a single prefix to watch".into());
            }
            Plan {
                path: format!("/v1/kv/{}", prefix.trim_start_matches('/')),
                query: vec![("recurse", String::new())],
                shape: Shape::KeyPrefix,
            }
        }
        "services" => Plan {
            path: "/v1/catalog/services".into(),
            query: Vec::new(),
            shape: Shape::Plain,
        },
        "nodes" => Plan {
            path: "/v1/catalog/nodes".into(),
            query: Vec::new(),
            shape: Shape::Plain,
        },
        "service" => {
            let service = text("service");
            if service.is_empty() {
                return Err("Must specify a single service to watch".into());
            }
            let mut passing = p.bool("passing");
            if let Some(v) = p.text("passingonly") {
                passing = crate::flags::parse_bool(v).ok_or_else(|| {
                    format!("Failed to parse passingonly flag: invalid syntax: {v:?}")
                })?;
            }
            let mut query: Vec<(&'static str, String)> =
                p.list("tag").iter().map(|t| ("tag", t.clone())).collect();
            if passing {
                query.push(("passing", String::new()));
            }
            Plan {
                path: format!("/v1/health/service/{service}"),
                query,
                shape: Shape::Plain,
            }
        }
        // One of service, state or node selects the endpoint; without any, every check.
        "checks" => {
            let (service, state, node) = (text("service"), text("state"), text("node"));
            let set = [&service, &state, &node]
                .iter()
                .filter(|s| !s.is_empty())
                .count();
            if set > 1 {
                return Err("Cannot specify more than one of service, state and node".into());
            }
            let path = if !service.is_empty() {
                format!("/v1/health/checks/{service}")
            } else if !node.is_empty() {
                format!("/v1/health/node/{node}")
            } else if state.is_empty() {
                "/v1/health/state/any".to_string()
            } else {
                format!("/v1/health/state/{state}")
            };
            Plan {
                path,
                query: Vec::new(),
                shape: Shape::Plain,
            }
        }
        _ => {
            let name = text("name");
            let query = if name.is_empty() {
                Vec::new()
            } else {
                vec![("name", name)]
            };
            Plan {
                path: "/v1/event/list".into(),
                query,
                shape: Shape::Event,
            }
        }
    };
    Ok(plan)
}

/// Runs one query of the plan: the index it reflects and the value.
async fn fetch(
    client: &Client,
    plan: &Plan,
    index: u64,
    last: Option<u64>,
) -> Result<(u64, Value), Error> {
    let reply = client.get_blocking(&plan.path, &plan.query, index).await?;
    // Never 0: an index of 0 would make the next request return at once, a busy loop on
    // an endpoint that reports none.
    let idx = reply.index.max(1);
    if reply.status == 404 {
        return match plan.shape {
            // A missing key or empty prefix is a value (`null`) a watch reports, not an error.
            Shape::Key | Shape::KeyPrefix => Ok((idx, Value::Null)),
            _ => Err(Error::Status {
                status: 404,
                body: String::from_utf8_lossy(&reply.body).trim_end().to_string(),
            }),
        };
    }
    let value: Value = reply.json()?;
    let value = match (plan.shape, value) {
        (Shape::Key, Value::Array(mut items)) => {
            if items.is_empty() {
                Value::Null
            } else {
                items.swap_remove(0)
            }
        }
        // The event list holds the recent events; only those after the last one seen are
        // new. When the last one has rotated out of the list, all are reported.
        (Shape::Event, Value::Array(items)) => {
            let start = last.and_then(|last| {
                items.iter().position(|e| {
                    e.get("ID")
                        .and_then(Value::as_str)
                        .is_some_and(|id| crate::events::id_to_index(id) == last)
                })
            });
            match start {
                Some(i) => Value::Array(items[i + 1..].to_vec()),
                None => Value::Array(items),
            }
        }
        (_, v) => v,
    };
    Ok((idx, value))
}

/// Runs the handler command with `data` as JSON on its stdin.
///
/// Consul's handler contract: the view's JSON on stdin, the index in `CONSUL_INDEX`, and
/// the handler's own output going to the watch's stdout and stderr.
async fn run_handler(args: &[String], shell: bool, index: u64, data: &Value) -> Result<(), String> {
    let mut cmd = if shell {
        let sh = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_string());
        let mut c = tokio::process::Command::new(sh);
        // Joined into one command line, as Consul does, so `watch ... "echo $X | jq"` works.
        c.arg("-c").arg(args.join(" "));
        c
    } else {
        let Some((program, rest)) = args.split_first() else {
            return Err("Error executing handler: no command given".into());
        };
        let mut c = tokio::process::Command::new(program);
        c.args(rest);
        c
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("Error starting handler: {e}"))?;
    let mut payload = serde_json::to_vec(data).unwrap_or_else(|_| b"null".to_vec());
    payload.push(b'\n');
    let stdin = child.stdin.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A handler that does not read its input may exit first: not an error.
            let _ = stdin.write_all(&payload).await;
        }
    };
    let (_, status) = tokio::join!(write, child.wait());
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("Error executing handler: {s}")),
        Err(e) => Err(format!("Error executing handler: {e}")),
    }
}

/// SIGINT and SIGTERM, installed once so that no signal is missed between queries.
///
/// Registered before the first query: a signal that arrives while a query or a handler
/// runs is then waited on, not lost.
struct Stop {
    int: Option<Signal>,
    term: Option<Signal>,
}

impl Stop {
    fn new() -> Stop {
        Stop {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn wait(&mut self) {
        let int = async {
            match &mut self.int {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let term = async {
            match &mut self.term {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = int => {}
            _ = term => {}
        }
    }
}

/// Runs `cairn watch`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.text_or_empty("type").is_empty() {
        err("Watch type must be specified");
        err("");
        err(&SPEC.help());
        return ExitCode::from(1);
    }
    let plan = match plan(&p) {
        Ok(plan) => plan,
        Err(e) => return fail(e),
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Fails fast when the agent is unreachable, instead of entering the retry loop.
    if let Err(e) = client.get_json::<Value>("/v1/agent/self", &[]).await {
        return fail(format!("Error querying Cairn agent: {e}"));
    }
    let handler = p.args.clone();
    // A shell unless `-shell=false` was given explicitly.
    let shell = !p.is_set("shell") || p.bool("shell");
    let once = p.bool("once");
    let mut stop = Stop::new();

    let mut index: Option<u64> = None;
    let mut last: Option<Value> = None;
    let mut failures: u32 = 0;
    loop {
        let result = tokio::select! {
            r = fetch(&client, &plan, index.unwrap_or(0), index) => r,
            _ = stop.wait() => return ExitCode::SUCCESS,
        };
        let (new_index, value) = match result {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                // Consul's back-off: 5 s times the square of the consecutive failures, at most 3
                // min.
                let retry = Duration::from_secs(5 * u64::from(failures * failures))
                    .min(Duration::from_secs(180));
                err(&format!(
                    "Watch errored: {e} (type {}), retry in {retry:?}",
                    p.text_or_empty("type")
                ));
                // The next request reads at once: the index may no longer mean anything (a server
                // restored from a snapshot, another server answering).
                index = None;
                tokio::select! {
                    _ = tokio::time::sleep(retry) => continue,
                    _ = stop.wait() => return ExitCode::SUCCESS,
                }
            }
        };
        failures = 0;
        // The wait ended without a change.
        if index == Some(new_index) {
            continue;
        }
        let old = index;
        // An index that goes backwards (a restore, a deleted key) starts over from 0.
        index = Some(match old {
            Some(prev) if prev > new_index => 0,
            _ => new_index,
        });
        // The index moved but the view did not (another key under the same index, say):
        // nothing to report, as in Consul.
        if old.is_some() && last.as_ref() == Some(&value) {
            continue;
        }
        if handler.is_empty() {
            out(&json_indent(&value, "    "));
        } else {
            let done = tokio::select! {
                r = run_handler(&handler, shell, new_index, &value) => r,
                _ = stop.wait() => return ExitCode::SUCCESS,
            };
            if let Err(e) = done {
                return fail(e);
            }
        }
        last = Some(value);
        if once {
            return ExitCode::SUCCESS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(a: &[&str]) -> Parsed {
        let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        SPEC.parse(&args).expect("parse")
    }

    /// Each type maps to Consul's endpoint and parameters.
    #[test]
    fn plans() {
        let p = plan(&parsed(&["-type", "key", "-key", "/a/b"])).expect("key");
        assert_eq!(p.path, "/v1/kv/a/b");
        assert_eq!(p.shape, Shape::Key);
        let p = plan(&parsed(&[
            "-type=service",
            "-service=web",
            "-tag=v1",
            "-passingonly=true",
        ]))
        .expect("service");
        assert_eq!(p.path, "/v1/health/service/web");
        assert_eq!(
            p.query,
            vec![("tag", "v1".to_string()), ("passing", String::new())]
        );
        let p = plan(&parsed(&["-type=checks"])).expect("checks");
        assert_eq!(p.path, "/v1/health/state/any");
        let p = plan(&parsed(&["-type=checks", "-node=n1"])).expect("checks");
        assert_eq!(p.path, "/v1/health/node/n1");
    }

    /// Missing required parameters, unknown types, foreign parameters and bad booleans.
    #[test]
    fn bad_plans() {
        assert!(plan(&parsed(&["-type=key"])).is_err());
        assert!(plan(&parsed(&["-type=keyprefix"])).is_err());
        assert!(plan(&parsed(&["-type=service"])).is_err());
        assert!(plan(&parsed(&["-type=bogus"])).is_err());
        assert_eq!(
            plan(&parsed(&["-type=services", "-key=x"])).err(),
            Some("Invalid parameters: [key]".to_string())
        );
        assert!(plan(&parsed(&["-type=checks", "-service=a", "-state=any"])).is_err());
        assert!(
            plan(&parsed(&[
                "-type=service",
                "-service=a",
                "-passingonly=maybe"
            ]))
            .is_err()
        );
    }
}
