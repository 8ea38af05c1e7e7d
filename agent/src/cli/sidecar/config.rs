//! The sidecar's settings: its flags (and an optional service definition file) turned into a
//! [`Config`], and the registration body sent to the agent. No I/O besides reading the file.

use std::time::Duration;

use cairn_catalog::duration::{format_go_duration, parse_go_duration};
use serde_json::{Map, Value, json};

use super::probe::{Probe, Status};
use crate::cli::services::{field_str, find_key, services_from_file};
use crate::flags::Parsed;

/// The TTL of the sidecar's check when `-ttl` is not given.
/// With the default interval (a third of it), two updates in a row may be lost before the
/// check expires.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The longest default probe timeout (Consul's check timeout).
const MAX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// When the supervised command is started again after it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restart {
    /// Never: the sidecar exits with the command.
    Never,
    /// After a non-zero exit or a death by signal.
    OnFailure,
    /// After any exit.
    Always,
}

impl Restart {
    fn parse(s: &str) -> Result<Restart, String> {
        match s {
            // `no` as well, the word Docker's restart policies use.
            "never" | "no" => Ok(Restart::Never),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            other => Err(format!(
                "invalid -restart {other:?}: expected never, on-failure or always"
            )),
        }
    }

    /// Whether a run that ended (successfully or not) calls for another one.
    pub(crate) fn wants(self, success: bool) -> bool {
        match self {
            Restart::Never => false,
            Restart::OnFailure => !success,
            Restart::Always => true,
        }
    }

    /// The flag value that names this policy.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }
}

/// What the sidecar watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Around mode: a command it starts and supervises (program and arguments).
    Command(Vec<String>),
    /// Beside mode: a running process it does not own.
    Pid(u32),
    /// Beside mode: only the health probe.
    Endpoint,
}

/// Everything `cairn sidecar` was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The service registration body, without the sidecar's check (`Name` and `ID` set).
    /// The file's definition with the flags applied; `Check` and `Checks` are taken out and
    /// rebuilt by [`Config::registration`].
    pub service: Map<String, Value>,
    /// Checks of the service definition file, registered beside the sidecar's TTL check.
    pub extra_checks: Vec<Value>,
    /// The service ID.
    pub id: String,
    /// The service name.
    pub name: String,
    /// The TTL of the sidecar's check.
    pub ttl: Duration,
    /// How often the health probe runs and the TTL is refreshed.
    pub interval: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
    /// The health probe, if any.
    pub probe: Option<Probe>,
    /// What is watched.
    pub target: Target,
    /// The restart policy.
    pub restart: Restart,
    /// The most restarts before giving up; 0 means no limit.
    pub max_restarts: u64,
    /// The delay before the first restart (doubled on each quick failure).
    pub restart_delay: Duration,
    /// `DeregisterCriticalServiceAfter` of the sidecar's check.
    pub deregister_after: Option<Duration>,
    /// How long after a (re)start failed probes only count as warning.
    pub grace: Duration,
    /// How long the command has to exit after a forwarded SIGINT/SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

/// Parses a duration flag (Go syntax: `10s`, `1m30s`, `500ms`).
/// `None` when the flag is not given, so each caller picks its own default.
fn duration(p: &Parsed, flag: &str) -> Result<Option<Duration>, String> {
    match p.text(flag) {
        None => Ok(None),
        Some(v) => parse_go_duration(v.trim())
            .map(Some)
            .map_err(|_| format!("invalid duration {v:?} for -{flag} (expected e.g. 10s, 1m30s)")),
    }
}

/// Replaces field `name` (whatever its spelling in the file) with `value`.
///
/// The file's spelling is removed first, so the body never carries the same field twice
/// (`name` and `Name`), which the agent would have to choose between.
fn set(service: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(k) = find_key(service, name) {
        service.remove(&k);
    }
    service.insert(name.to_string(), value);
}

/// Takes the `Check` and `Checks` fields out of a service definition.
///
/// They are registered after the sidecar's own check, which must come first (see
/// [`Config::registration`]).
fn take_checks(service: &mut Map<String, Value>) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for field in ["Check", "Checks"] {
        let Some(k) = find_key(service, field) else {
            continue;
        };
        match service.remove(&k) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Object(_)) => out.push(v),
            Some(Value::Array(items)) => {
                for item in items {
                    if !item.is_object() {
                        return Err(format!("\"{k}\" must hold check objects"));
                    }
                    out.push(item);
                }
            }
            Some(_) => return Err(format!("\"{k}\" must hold check objects")),
        }
    }
    Ok(out)
}

/// The health probe from `-health-url`, `-health-tcp` or `-health-cmd` (at most one).
fn probe(p: &Parsed) -> Result<Option<Probe>, String> {
    let url = p.text("health-url").filter(|v| !v.is_empty());
    let tcp = p.text("health-tcp").filter(|v| !v.is_empty());
    let cmd = p.text("health-cmd").filter(|v| !v.is_empty());
    match (url, tcp, cmd) {
        (None, None, None) => Ok(None),
        (Some(u), None, None) => {
            let parsed =
                reqwest::Url::parse(u).map_err(|e| format!("invalid -health-url {u:?}: {e}"))?;
            match parsed.scheme() {
                // HTTPS is checked against the system's trust roots (rustls, ring).
                "http" | "https" => Ok(Some(Probe::Http(u.to_string()))),
                other => Err(format!(
                    "invalid -health-url {u:?}: unsupported scheme {other:?}"
                )),
            }
        }
        // Checked now, so a typo fails at start instead of turning the check critical.
        (None, Some(t), None) => match t.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Some(Probe::Tcp(t.to_string())))
            }
            _ => Err(format!("invalid -health-tcp {t:?}: expected host:port")),
        },
        (None, None, Some(c)) => Ok(Some(Probe::Cmd(c.to_string()))),
        _ => Err("Only one of -health-url, -health-tcp and -health-cmd may be given".into()),
    }
}

impl Config {
    /// Builds the configuration from parsed flags; the positional arguments are the command.
    pub(crate) fn from_flags(p: &Parsed) -> Result<Config, String> {
        let mut service = match p.text("service-file").filter(|f| !f.is_empty()) {
            Some(file) => {
                let mut list = services_from_file(file)?;
                if list.len() != 1 {
                    return Err(format!(
                        "{file}: holds {} services; a sidecar registers exactly one",
                        list.len()
                    ));
                }
                list.remove(0)
            }
            None => Map::new(),
        };
        let extra_checks = take_checks(&mut service)?;

        // Flags override the file; tags are added and meta merged.
        for (flag, field) in [("name", "Name"), ("id", "ID"), ("address", "Address")] {
            if let Some(v) = p.text(flag).filter(|v| !v.is_empty()) {
                set(&mut service, field, Value::String(v.to_string()));
            }
        }
        if p.is_set("port") {
            let port = p.int("port");
            if !(0..=65535).contains(&port) {
                return Err(format!("invalid -port {port}: expected 0 to 65535"));
            }
            set(&mut service, "Port", json!(port));
        }
        if !p.list("tag").is_empty() {
            let mut tags = match find_key(&service, "Tags").and_then(|k| service.remove(&k)) {
                Some(Value::Array(t)) => t,
                _ => Vec::new(),
            };
            tags.extend(p.list("tag").iter().cloned().map(Value::String));
            service.insert("Tags".into(), Value::Array(tags));
        }
        let flag_meta = p.map("meta");
        if !flag_meta.is_empty() {
            let mut meta = match find_key(&service, "Meta").and_then(|k| service.remove(&k)) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for (k, v) in flag_meta {
                meta.insert(k, Value::String(v));
            }
            service.insert("Meta".into(), Value::Object(meta));
        }

        let name = field_str(&service, "Name");
        if name.is_empty() {
            return Err("Missing service name: give -name or a -service-file naming one".into());
        }
        let mut id = field_str(&service, "ID");
        if id.is_empty() {
            id = name.clone();
            set(&mut service, "ID", Value::String(id.clone()));
        }

        let ttl = duration(p, "ttl")?.unwrap_or(DEFAULT_TTL);
        if ttl.is_zero() {
            return Err("-ttl must be greater than 0".into());
        }
        // A third of the TTL, to the millisecond (3.333s rather than 3.333333333s).
        // A third leaves room for two missed updates before the TTL runs out.
        let third = Duration::from_millis(u64::try_from((ttl / 3).as_millis()).unwrap_or(u64::MAX));
        let interval = duration(p, "interval")?.unwrap_or(third);
        if interval.is_zero() {
            return Err("-interval must be greater than 0".into());
        }
        // An update every `interval` could never keep a TTL this short alive.
        if interval >= ttl {
            return Err(format!(
                "-interval ({}) must be shorter than -ttl ({}), or the check expires between updates",
                format_go_duration(interval),
                format_go_duration(ttl)
            ));
        }
        // By default a probe ends before the next one is due.
        let timeout = duration(p, "timeout")?.unwrap_or(interval.min(MAX_DEFAULT_TIMEOUT));
        if timeout.is_zero() {
            return Err("-timeout must be greater than 0".into());
        }
        let probe = probe(p)?;

        let target = match (p.args.is_empty(), p.is_set("pid")) {
            (false, true) => {
                return Err(
                    "-pid watches a process that is already running; it cannot be combined \
                     with a command"
                        .into(),
                );
            }
            (false, false) => Target::Command(p.args.clone()),
            (true, true) => {
                let pid = u32::try_from(p.int("pid"))
                    .ok()
                    .filter(|pid| *pid > 0)
                    .ok_or_else(|| format!("invalid -pid {}", p.int("pid")))?;
                Target::Pid(pid)
            }
            (true, false) if probe.is_some() => Target::Endpoint,
            (true, false) => {
                return Err(
                    "Nothing to watch: give a command after the flags (cairn sidecar [flags] -- \
                     <command>), -pid, or a -health-url/-health-tcp/-health-cmd probe"
                        .into(),
                );
            }
        };

        let restart = Restart::parse(p.text("restart").unwrap_or("never"))?;
        // Restarting needs a process the sidecar started itself.
        if restart != Restart::Never && !matches!(target, Target::Command(_)) {
            return Err("-restart needs a command to supervise".into());
        }
        let deregister_after = duration(p, "deregister-critical-after")?.filter(|d| !d.is_zero());

        Ok(Config {
            service,
            extra_checks,
            id,
            name,
            ttl,
            interval,
            timeout,
            probe,
            target,
            restart,
            max_restarts: p.uint("max-restarts"),
            restart_delay: duration(p, "restart-delay")?.unwrap_or(Duration::from_secs(1)),
            deregister_after,
            grace: duration(p, "grace")?.unwrap_or(Duration::ZERO),
            stop_timeout: duration(p, "stop-timeout")?.unwrap_or(Duration::from_secs(10)),
        })
    }

    /// The ID of the sidecar's TTL check.
    ///
    /// `service:<id>` is the ID the agent itself gives a service's single check, so tools
    /// that look for a service's check by that ID find this one.
    pub(crate) fn check_id(&self) -> String {
        format!("service:{}", self.id)
    }

    /// What feeds the TTL check, for its notes and the logs.
    pub(crate) fn source(&self) -> String {
        let what = match &self.target {
            Target::Command(argv) => format!("process liveness of {:?}", argv.join(" ")),
            Target::Pid(pid) => format!("process liveness of PID {pid}"),
            Target::Endpoint => String::new(),
        };
        match (&self.probe, what.is_empty()) {
            (Some(p), true) => p.describe(),
            (Some(p), false) => format!("{what} and {}", p.describe()),
            (None, _) => what,
        }
    }

    /// The body of `PUT /v1/agent/service/register`: the service with the sidecar's TTL check
    /// first (ID `service:<id>`, initial status `status`), then the file's own checks.
    ///
    /// The whole service is registered in one request, checks included, so the agent never
    /// holds the service without its TTL check. The initial status is given explicitly, so a
    /// re-registration after an agent restart resumes with the current verdict rather than
    /// critical.
    pub(crate) fn registration(&self, status: Status) -> Value {
        let mut body = self.service.clone();
        let mut check = json!({
            "CheckID": self.check_id(),
            "Name": format!("Service '{}' sidecar check", self.name),
            "TTL": format_go_duration(self.ttl),
            "Status": status.as_str(),
            "Notes": format!("Fed by cairn sidecar from {}", self.source()),
        });
        if let (Some(d), Some(obj)) = (self.deregister_after, check.as_object_mut()) {
            obj.insert(
                "DeregisterCriticalServiceAfter".into(),
                Value::String(format_go_duration(d)),
            );
        }
        let mut checks = vec![check];
        checks.extend(self.extra_checks.iter().cloned());
        body.insert("Checks".into(), Value::Array(checks));
        Value::Object(body)
    }
}
