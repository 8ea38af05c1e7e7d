//! Service and check definitions as clients send them (`PUT /v1/agent/service/register`,
//! `PUT /v1/agent/check/register`, `services[]`/`checks[]` in config files), and their
//! validation into the agent's local records.
//!
//! The structs mirror Consul's JSON field names (`PascalCase`, with Consul's acronyms such as
//! `HTTP`, `TTL`, `GRPCUseTLS`); other spellings (`http`, `interval`, snake case from HCL) are
//! folded onto them by `crate::api::decode` before serde sees the body, so one struct serves
//! the HTTP API, config files and the data directory. Validation uses Consul's error texts,
//! since clients and scripts written for Consul match on them.
//!
//! A check comes out in two parts: the catalog record ([`HealthCheck`], what every server
//! stores and serves) and the run spec ([`CheckSpec`], what only this agent needs to run it).

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_catalog::duration::parse_go_duration;
use cairn_catalog::model::{
    CheckDefinition, HealthCheck, HealthStatus, Service, ServiceAddress, Weights,
};
use serde::{Deserialize, Serialize};

use tracing::warn;

use crate::api::Error;

/// A duration as clients send it: a Go duration string or nanoseconds.
///
/// Go's `time.Duration` encodes as integer nanoseconds, so clients built on Go structs
/// send numbers; people and most other clients send strings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// `"10s"`.
    Str(String),
    /// Nanoseconds.
    Num(u64),
}

/// A client's duration; absent or empty is zero. The error names `field`.
///
/// An empty string is "not set", as Consul treats it, not a parse error.
pub(crate) fn dur(field: &str, v: &Option<RawDuration>) -> Result<Duration, Error> {
    match v {
        None => Ok(Duration::ZERO),
        Some(RawDuration::Num(n)) => Ok(Duration::from_nanos(*n)),
        Some(RawDuration::Str(s)) if s.is_empty() => Ok(Duration::ZERO),
        Some(RawDuration::Str(s)) => {
            parse_go_duration(s).map_err(|e| Error::Invalid(format!("Invalid {field}: {e}")))
        }
    }
}

/// Weights as sent (either field may be missing).
///
/// Options, not zeros, so that a missing field can take Consul's default (1) while an
/// explicit `Passing: 0` is refused.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightsDef {
    /// Weight when passing.
    pub passing: Option<u32>,
    /// Weight when warning.
    pub warning: Option<u32>,
}

/// A check definition as sent by clients (Consul's `CheckDefinition`/`CheckType`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckDef {
    /// ID (`ID` or `CheckID`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Alternative spelling of the ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// Service instance the check belongs to.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Notes.
    pub notes: String,
    /// Initial status.
    /// Empty means critical: a new check does not make its service look healthy before it
    /// has run once.
    pub status: String,
    /// Script arguments.
    pub args: Vec<String>,
    /// Script arguments (older name).
    pub script_args: Vec<String>,
    /// Legacy shell script.
    /// Run as `/bin/sh -c <script>`, as Consul ran it before `Args` existed.
    pub script: String,
    /// HTTP URL.
    #[serde(rename = "HTTP")]
    pub http: String,
    /// HTTP headers.
    /// A list per name, since HTTP allows a header more than once; sent in order.
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP method.
    pub method: String,
    /// HTTP body.
    pub body: String,
    /// Do not follow redirects (followed by default, up to 10, as Consul does).
    pub disable_redirects: bool,
    /// TCP address.
    #[serde(rename = "TCP")]
    pub tcp: String,
    /// TLS for TCP.
    /// Kept in the catalog record; the TCP probe itself only connects.
    #[serde(rename = "TCPUseTLS")]
    pub tcp_use_tls: bool,
    /// UDP address.
    #[serde(rename = "UDP")]
    pub udp: String,
    /// gRPC endpoint.
    #[serde(rename = "GRPC")]
    pub grpc: String,
    /// TLS for gRPC.
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    /// HTTP/2 ping endpoint.
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    /// TLS for H2PING.
    /// An option because Consul's default is `true`: an absent field must not read `false`.
    #[serde(rename = "H2PingUseTLS")]
    pub h2ping_use_tls: Option<bool>,
    /// TLS server name.
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    /// Skip TLS verification.
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// TTL.
    #[serde(rename = "TTL")]
    pub ttl: Option<RawDuration>,
    /// Interval.
    /// Raised to [`MIN_INTERVAL`] for running; kept as given in the catalog record.
    pub interval: Option<RawDuration>,
    /// Timeout.
    /// Per run; unset means 10s, or 30s for scripts.
    pub timeout: Option<RawDuration>,
    /// Deregister the service after it stayed critical this long.
    /// The agent's reaper applies it, never sooner than its one-minute floor (none in -dev).
    pub deregister_critical_service_after: Option<RawDuration>,
    /// Successes needed to turn passing.
    /// Counts warnings as successes too (see `crate::checks::Thresholds`).
    pub success_before_passing: u32,
    /// Failures needed to turn warning.
    pub failures_before_warning: u32,
    /// Failures needed to turn critical.
    pub failures_before_critical: u32,
    /// Alias: node.
    /// Empty: the service is looked up on this agent, without a server round trip.
    pub alias_node: String,
    /// Alias: service ID.
    pub alias_service: String,
    /// Docker container (script in a container).
    /// Run through the Docker Engine API (`checks::docker`).
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    /// Shell for Docker checks.
    pub shell: String,
    /// Output cap.
    /// 0: [`DEFAULT_OUTPUT_MAX`].
    pub output_max_size: usize,
    /// OS service (systemd unit).
    /// Consul runs these on Windows only; Cairn asks systemd.
    #[serde(rename = "OSService")]
    pub os_service: String,
}

/// What a check does when it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// Updated by clients; critical when no update comes within the TTL.
    /// No runner polls anything: the deadline is pushed forward by each update.
    Ttl(Duration),
    /// HTTP request.
    Http {
        /// URL.
        url: String,
        /// Method.
        method: String,
        /// Headers.
        header: BTreeMap<String, Vec<String>>,
        /// Body.
        body: String,
        /// Skip TLS verification.
        tls_skip_verify: bool,
        /// TLS server name.
        tls_server_name: String,
        /// Do not follow redirects (`DisableRedirects`).
        disable_redirects: bool,
    },
    /// TCP connect.
    Tcp {
        /// Address.
        addr: String,
    },
    /// UDP datagram.
    Udp {
        /// Address.
        addr: String,
    },
    /// gRPC health protocol.
    Grpc {
        /// Endpoint.
        target: String,
        /// Use TLS.
        tls: bool,
        /// Skip TLS verification.
        tls_skip_verify: bool,
        /// TLS server name (SNI and certificate name).
        tls_server_name: String,
    },
    /// HTTP/2 ping.
    H2ping {
        /// Address.
        addr: String,
        /// Use TLS.
        tls: bool,
        /// Skip TLS verification.
        tls_skip_verify: bool,
        /// TLS server name (SNI and certificate name).
        tls_server_name: String,
    },
    /// A local script.
    Script {
        /// Arguments (first is the program).
        args: Vec<String>,
    },
    /// Script in a Docker container.
    Docker {
        /// Container.
        container: String,
        /// Shell for `script` (empty: the agent's `$SHELL`, else `/bin/sh`).
        shell: String,
        /// Arguments: the command run in the container.
        args: Vec<String>,
        /// The legacy script, run as `<shell> -c <script>` when there are no `args`.
        script: String,
    },
    /// Mirrors another service or node.
    /// No interval: it follows changes as they happen.
    Alias {
        /// Node.
        node: String,
        /// Service ID.
        service: String,
    },
    /// OS service state.
    OsService {
        /// Unit name.
        name: String,
    },
    /// No runner: the status is whatever was registered (catalog-style checks).
    None,
}

impl CheckKind {
    /// Consul's `Type` string.
    ///
    /// Shown as the check's `Type` in the API, and the name in messages about it.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Ttl(_) => "ttl",
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::H2ping { .. } => "h2ping",
            CheckKind::Script { .. } => "script",
            CheckKind::Docker { .. } => "docker",
            CheckKind::Alias { .. } => "alias",
            CheckKind::OsService { .. } => "os_service",
            CheckKind::None => "",
        }
    }
}

/// How a check runs: its kind and the parameters shared by all kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckSpec {
    /// Kind.
    pub kind: CheckKind,
    /// Run interval.
    pub interval: Duration,
    /// Per-run timeout.
    pub timeout: Duration,
    /// Remove the service after it stayed critical this long (zero: never).
    pub deregister_critical_service_after: Duration,
    /// Successes needed to turn passing.
    pub success_before_passing: u32,
    /// Failures needed to turn warning.
    pub failures_before_warning: u32,
    /// Failures needed to turn critical.
    pub failures_before_critical: u32,
    /// Output cap in bytes.
    /// Applied both to what probes keep and to what is recorded.
    pub output_max_size: usize,
}

/// Where a registration came from: config files may run local scripts, the API may not
/// unless `enable_script_checks` is on.
///
/// Also decides what a config reload may remove: only config-file entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `PUT /v1/agent/...`.
    Api,
    /// A config file.
    Config,
}

/// Script-check permissions of the agent.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScriptPolicy {
    /// `enable_script_checks`.
    pub any: bool,
    /// `enable_local_script_checks`.
    pub local: bool,
}

impl ScriptPolicy {
    /// `enable_script_checks` allows scripts from anywhere; `enable_local_script_checks`
    /// only from config files, which someone with access to the host wrote.
    fn allows(&self, source: Source) -> bool {
        self.any || (self.local && source == Source::Config)
    }
}

/// Default per-check output cap.
/// Consul's default: enough for an error message or a short status page, small enough
/// that thousands of checks do not bloat the catalog every server holds.
pub const DEFAULT_OUTPUT_MAX: usize = 4096;

/// Consul's `checks.MinInterval`: an interval check runs at most once a second whatever its
/// `Interval` says (`"1ns"` is accepted and run every second, with a warning), so a definition
/// cannot make the agent fork a script or open connections in a tight loop. Timeouts are not
/// clamped (Consul does not either): one run at a time, so a short one only fails the check.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl CheckDef {
    /// The check's ID as given (`ID` or `CheckID`).
    ///
    /// Consul accepts both spellings; `ID` wins when both are set.
    pub fn given_id(&self) -> &str {
        if self.id.is_empty() {
            &self.check_id
        } else {
            &self.id
        }
    }

    /// Validates the definition into a catalog check (status and identity) and a run spec.
    /// `node` is this agent's node; `id`/`name` have been defaulted by the caller.
    ///
    /// Exactly one kind may be set; error texts are Consul's where Consul has one, since
    /// clients match on them.
    pub fn validate(
        &self,
        node: &str,
        id: String,
        name: String,
        scripts: ScriptPolicy,
        source: Source,
    ) -> Result<(HealthCheck, CheckSpec), Error> {
        // The ID as given (or the name, which stands in for it); generated IDs
        // (`service:<id>:<n>`) are bounded by their service's ID.
        validate_id_len("Check ID", self.given_id())?;
        validate_id_len("Check name", &self.name)?;
        validate_id_len("Check ServiceID", &self.service_id)?;
        let ttl = dur("TTL", &self.ttl)?;
        let interval = dur("Interval", &self.interval)?;
        let timeout = dur("Timeout", &self.timeout)?;
        let dcsa = dur(
            "DeregisterCriticalServiceAfter",
            &self.deregister_critical_service_after,
        )?;
        // `ScriptArgs` is the older name of `Args`; `Args` wins when both are set.
        let args = if self.args.is_empty() {
            self.script_args.clone()
        } else {
            self.args.clone()
        };
        let mut kinds: Vec<(&str, CheckKind)> = Vec::new();
        if !self.http.is_empty() {
            kinds.push((
                "HTTP",
                CheckKind::Http {
                    url: self.http.clone(),
                    // Uppercased so that `get` works: HTTP methods are case-sensitive, and servers
                    // expect them in upper case.
                    method: if self.method.is_empty() {
                        "GET".into()
                    } else {
                        self.method.to_uppercase()
                    },
                    header: self.header.clone(),
                    body: self.body.clone(),
                    tls_skip_verify: self.tls_skip_verify,
                    tls_server_name: self.tls_server_name.clone(),
                    disable_redirects: self.disable_redirects,
                },
            ));
        }
        if !self.tcp.is_empty() {
            kinds.push((
                "TCP",
                CheckKind::Tcp {
                    addr: self.tcp.clone(),
                },
            ));
        }
        if !self.udp.is_empty() {
            kinds.push((
                "UDP",
                CheckKind::Udp {
                    addr: self.udp.clone(),
                },
            ));
        }
        if !self.grpc.is_empty() {
            kinds.push((
                "GRPC",
                CheckKind::Grpc {
                    target: self.grpc.clone(),
                    tls: self.grpc_use_tls,
                    tls_skip_verify: self.tls_skip_verify,
                    tls_server_name: self.tls_server_name.clone(),
                },
            ));
        }
        if !self.h2ping.is_empty() {
            kinds.push((
                "H2PING",
                CheckKind::H2ping {
                    addr: self.h2ping.clone(),
                    // Consul's default: H2PING goes over TLS unless told otherwise.
                    tls: self.h2ping_use_tls.unwrap_or(true),
                    tls_skip_verify: self.tls_skip_verify,
                    tls_server_name: self.tls_server_name.clone(),
                },
            ));
        }
        // `Args` belong to the Docker check when a container is named, to a script check
        // otherwise.
        if !self.docker_container_id.is_empty() {
            kinds.push((
                "DockerContainerID",
                CheckKind::Docker {
                    container: self.docker_container_id.clone(),
                    shell: self.shell.clone(),
                    args: args.clone(),
                    script: self.script.clone(),
                },
            ));
        } else if !args.is_empty() || !self.script.is_empty() {
            let args = if args.is_empty() {
                vec!["/bin/sh".into(), "-c".into(), self.script.clone()]
            } else {
                args
            };
            kinds.push(("Args", CheckKind::Script { args }));
        }
        if !self.alias_service.is_empty() || !self.alias_node.is_empty() {
            kinds.push((
                "AliasService",
                CheckKind::Alias {
                    node: self.alias_node.clone(),
                    service: self.alias_service.clone(),
                },
            ));
        }
        if !self.os_service.is_empty() {
            kinds.push((
                "OSService",
                CheckKind::OsService {
                    name: self.os_service.clone(),
                },
            ));
        }
        if !ttl.is_zero() {
            kinds.push(("TTL", CheckKind::Ttl(ttl)));
        }
        // Several kinds in one definition is a mistake; refusing names the conflict instead
        // of running only one of them.
        if kinds.len() > 1 {
            let names: Vec<&str> = kinds.iter().map(|(n, _)| *n).collect();
            return Err(Error::Invalid(format!(
                "Invalid check: only one of {} may be set",
                names.join(", ")
            )));
        }
        // Nothing set: no runner. The API refuses such a check; a config-file check may be
        // one, and its status then stays as registered.
        let kind = kinds.pop().map(|(_, k)| k).unwrap_or(CheckKind::None);
        let needs_interval = matches!(
            kind,
            CheckKind::Http { .. }
                | CheckKind::Tcp { .. }
                | CheckKind::Udp { .. }
                | CheckKind::Grpc { .. }
                | CheckKind::H2ping { .. }
                | CheckKind::Script { .. }
                | CheckKind::Docker { .. }
                | CheckKind::OsService { .. }
        );
        if needs_interval && interval.is_zero() {
            return Err(Error::Invalid(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP, GRPC or OSService checks".into(),
            ));
        }
        let run_interval = if needs_interval && interval < MIN_INTERVAL {
            warn!(
                check = %id,
                interval = ?interval,
                minimum_interval = ?MIN_INTERVAL,
                "check has interval below minimum"
            );
            MIN_INTERVAL
        } else {
            interval
        };
        // An alias follows changes as they happen: there is no interval to set.
        if matches!(kind, CheckKind::Alias { .. }) && !interval.is_zero() {
            return Err(Error::Invalid(
                "Invalid check: Interval cannot be set for Alias checks".into(),
            ));
        }
        if matches!(kind, CheckKind::Script { .. } | CheckKind::Docker { .. })
            && !scripts.allows(source)
        {
            return Err(Error::PermissionDenied(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true".into(),
            ));
        }
        // 0 for FailuresBeforeCritical means "at once", so any warning threshold fits it.
        if self.failures_before_warning > self.failures_before_critical
            && self.failures_before_critical > 0
        {
            return Err(Error::Invalid(
                "Invalid check: FailuresBeforeWarning must be <= FailuresBeforeCritical".into(),
            ));
        }
        let status = match self.status.as_str() {
            "" => HealthStatus::Critical,
            s => HealthStatus::parse(s).ok_or_else(|| {
                Error::Invalid(format!(
                    "Invalid check: Status {s:?} must be passing, warning or critical"
                ))
            })?,
        };
        // Consul's defaults: scripts often do real work, probes should answer fast.
        let default_timeout = match kind {
            CheckKind::Script { .. } | CheckKind::Docker { .. } => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        };
        let definition = CheckDefinition {
            http: self.http.clone(),
            header: self.header.clone(),
            method: self.method.clone(),
            body: self.body.clone(),
            tls_server_name: self.tls_server_name.clone(),
            tls_skip_verify: self.tls_skip_verify,
            tcp: self.tcp.clone(),
            tcp_use_tls: self.tcp_use_tls,
            udp: self.udp.clone(),
            grpc: self.grpc.clone(),
            grpc_use_tls: self.grpc_use_tls,
            interval,
            timeout,
            deregister_critical_service_after: dcsa,
        };
        let check = HealthCheck {
            node: node.to_string(),
            check_id: id,
            name,
            status,
            notes: self.notes.clone(),
            service_id: self.service_id.clone(),
            check_type: kind.type_name().to_string(),
            interval,
            timeout,
            definition,
            ..HealthCheck::default()
        };
        let spec = CheckSpec {
            kind,
            // The record keeps the interval as registered (as Consul's does); the runner uses
            // the clamped one.
            interval: run_interval,
            timeout: if timeout.is_zero() {
                default_timeout
            } else {
                timeout
            },
            deregister_critical_service_after: dcsa,
            success_before_passing: self.success_before_passing,
            // Unset, it equals FailuresBeforeCritical: no warning stage unless asked for.
            failures_before_warning: if self.failures_before_warning == 0 {
                self.failures_before_critical
            } else {
                self.failures_before_warning
            },
            failures_before_critical: self.failures_before_critical,
            output_max_size: if self.output_max_size == 0 {
                DEFAULT_OUTPUT_MAX
            } else {
                self.output_max_size
            },
        };
        Ok((check, spec))
    }
}

/// A service definition as sent by clients.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceDef {
    /// Kind.
    pub kind: String,
    /// ID (defaults to the name).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name (required).
    pub name: String,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Address.
    pub address: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Weights.
    pub weights: Option<WeightsDef>,
    /// Tag override.
    pub enable_tag_override: bool,
    /// One check.
    pub check: Option<CheckDef>,
    /// Checks.
    pub checks: Vec<CheckDef>,
    /// Connect proxy settings (accepted, not used).
    /// Accepted so that definitions written for Consul's service mesh register; Cairn has
    /// no mesh, and the values are dropped.
    pub proxy: Option<serde_json::Value>,
    /// Connect settings (accepted, not used).
    pub connect: Option<serde_json::Value>,
    /// ACL token for the registration.
    /// Accepted and not used (Consul syncs the service with it).
    pub token: String,
}

/// Consul's service kinds. `typical` is the explicit spelling of the default (stored as
/// empty); the gateway and proxy kinds are recorded as given, without mesh behaviour.
const SERVICE_KINDS: &[&str] = &[
    "",
    "typical",
    "connect-proxy",
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
];

/// Longest ID or name accepted at registration, in bytes.
///
/// What is registered must stay addressable: IDs and names travel in URL paths
/// (`/v1/agent/service/deregister/<id>`, `/v1/agent/check/pass/<id>`, `/v1/catalog/node/<node>`)
/// where a byte may take three characters percent-encoded, and the HTTP server refuses URIs
/// over 64 KiB (414). Without a bound, a 100 KB ID registered fine and could never be removed.
/// 8 KiB keeps the worst case (24 KiB encoded) far below the URI limit, query string included,
/// and is far above any real ID (DNS names stop at 253 bytes). Consul sets no bound of its own;
/// its Go server simply reads URIs of up to 1 MiB.
pub const MAX_ID_LEN: usize = 8 * 1024;

/// Refuses an ID or name longer than [`MAX_ID_LEN`]; `what` names it in the message
/// (`"Service ID"`).
pub fn validate_id_len(what: &str, value: &str) -> Result<(), Error> {
    if value.len() > MAX_ID_LEN {
        return Err(Error::Invalid(format!(
            "{what} is too long (limit: {MAX_ID_LEN} bytes)"
        )));
    }
    Ok(())
}

/// Consul's metadata rules: at most 64 pairs, keys of `[A-Za-z0-9_-]` up to 128 bytes that do
/// not start with `consul-`, values up to 512 bytes.
///
/// The texts are Consul's, "Node metadata" even for a service, as Consul words it.
pub fn validate_meta(what: &str, meta: &BTreeMap<String, String>) -> Result<(), Error> {
    validate_meta_allowing(what, meta, &[])
}

/// The node metadata keys agents set on their own node, as Consul's agents do: allowed in
/// catalog registrations despite the reserved `consul-` prefix.
pub const AGENT_NODE_META: &[&str] = &["consul-network-segment", "consul-version"];

/// [`validate_meta`], with `allowed` keys exempt from the reserved prefix (Consul's
/// `allowedConsulKeys`).
pub fn validate_meta_allowing(
    what: &str,
    meta: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<(), Error> {
    if meta.len() > 64 {
        return Err(Error::Invalid(format!(
            "Invalid {what} Meta: Node metadata cannot contain more than 64 key/value pairs"
        )));
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err(Error::Invalid(format!(
                "Invalid {what} Meta: Key cannot be blank"
            )));
        }
        if k.len() > 128 {
            return Err(Error::Invalid(format!(
                "Invalid {what} Meta: Key is too long (limit: 128 characters)"
            )));
        }
        if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::Invalid(format!(
                "Invalid {what} Meta: Key contains invalid characters: {k:?}"
            )));
        }
        if k.starts_with("consul-") && !allowed.contains(&k.as_str()) {
            return Err(Error::Invalid(format!(
                "Invalid {what} Meta: Key prefix 'consul-' is reserved for internal use"
            )));
        }
        if v.len() > 512 {
            return Err(Error::Invalid(format!(
                "Invalid {what} Meta: Value is too long (limit: 512 characters)"
            )));
        }
    }
    Ok(())
}

impl ServiceDef {
    /// Validates into a service record and its checks with their run specs.
    pub fn validate(
        &self,
        node: &str,
        scripts: ScriptPolicy,
        source: Source,
    ) -> Result<(Service, Vec<(HealthCheck, CheckSpec)>), Error> {
        if self.name.is_empty() {
            return Err(Error::Invalid("Missing service name".into()));
        }
        validate_id_len("Service name", &self.name)?;
        validate_id_len("Service ID", &self.id)?;
        if !SERVICE_KINDS.contains(&self.kind.as_str()) {
            return Err(Error::Invalid(format!(
                "Invalid service kind: {:?}",
                self.kind
            )));
        }
        validate_meta("Service", &self.meta)?;
        let weights = match &self.weights {
            None => Weights::default(),
            Some(w) => {
                let passing = w.passing.unwrap_or(1);
                if passing == 0 {
                    return Err(Error::Invalid("Passing must be greater than 0".into()));
                }
                Weights {
                    passing,
                    warning: w.warning.unwrap_or(1),
                }
            }
        };
        let id = if self.id.is_empty() {
            self.name.clone()
        } else {
            self.id.clone()
        };
        let service = Service {
            kind: if self.kind == "typical" {
                String::new()
            } else {
                self.kind.clone()
            },
            id: id.clone(),
            service: self.name.clone(),
            tags: self.tags.clone().unwrap_or_default(),
            address: self.address.clone(),
            tagged_addresses: self.tagged_addresses.clone(),
            meta: self.meta.clone(),
            port: self.port,
            weights,
            enable_tag_override: self.enable_tag_override,
            create_index: 0,
            modify_index: 0,
        };
        // `Check` and `Checks` may both be given; `Check` counts first.
        let defs: Vec<&CheckDef> = self.check.iter().chain(self.checks.iter()).collect();
        if defs
            .iter()
            // Checked for all checks before any is validated, with Consul's (ungrammatical)
            // message, which clients may match.
            .any(|d| !d.status.is_empty() && HealthStatus::parse(&d.status).is_none())
        {
            return Err(Error::Invalid(
                "Status for checks must 'passing', 'warning', 'critical'".into(),
            ));
        }
        let many = defs.len() > 1;
        let mut checks = Vec::new();
        for (i, def) in defs.iter().enumerate() {
            let cid = match def.given_id() {
                // Consul's generated IDs: `service:<id>` for a lone check, numbered from 1 when
                // there are several.
                "" if many => format!("service:{id}:{}", i + 1),
                "" => format!("service:{id}"),
                given => given.to_string(),
            };
            let name = if def.name.is_empty() {
                format!("Service '{}' check", self.name)
            } else {
                def.name.clone()
            };
            let mut def = (*def).clone();
            // A check inside a service definition always belongs to that service, whatever
            // its own ServiceID says.
            def.service_id = id.clone();
            let (mut check, spec) = def.validate(node, cid, name, scripts, source)?;
            if matches!(spec.kind, CheckKind::None) {
                return Err(Error::Invalid(
                    "Invalid check: Must provide TTL or Script/DockerContainerID/HTTP/TCP/UDP/GRPC/H2PING/AliasNode/AliasService and Interval".into(),
                ));
            }
            check.service_name = service.service.clone();
            check.service_tags = service.tags.clone();
            checks.push((check, spec));
        }
        Ok((service, checks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode::decode;
    use serde_json::json;

    /// What Go's `AgentServiceRegistration` and `AgentCheckRegistration` send: `null` for every
    /// empty list and map (`Checks`, `Meta`, `TaggedAddresses`, `Header`, `Args`, ...).
    #[test]
    fn null_members_are_absent() {
        let check = json!({"CheckID": "c", "Name": "c", "Notes": "n", "Status": "passing",
            "HTTP": "http://127.0.0.1/", "Header": {"X": ["y"]}, "Method": "GET", "Body": "b",
            "Interval": "10s", "Timeout": "1s", "TLSServerName": "x", "TLSSkipVerify": true,
            "DeregisterCriticalServiceAfter": "1m", "SuccessBeforePassing": 1,
            "FailuresBeforeCritical": 2, "OutputMaxSize": 100, "DisableRedirects": true});
        crate::api::decode::assert_null_is_absent::<ServiceDef>(json!({
            "ID": "web1", "Name": "web", "Tags": ["a"], "Address": "10.0.0.1", "Port": 80,
            "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
            "Meta": {"k": "v"}, "EnableTagOverride": true,
            "Weights": {"Passing": 3, "Warning": 1},
            "Check": {"TTL": "10s", "Notes": "n"},
            "Checks": [check.clone(), {"Name": "s", "Args": ["/bin/true"], "Interval": "5s"}]
        }));
        let mut with_service = check;
        with_service["ServiceID"] = json!("web1");
        with_service["ID"] = json!("c");
        crate::api::decode::assert_null_is_absent::<CheckDef>(with_service);
    }

    /// No scripts allowed.
    fn policy() -> ScriptPolicy {
        ScriptPolicy::default()
    }

    /// Lowercase keys (as python-consul sends) and Consul's Go spellings decode to the same
    /// definition.
    #[test]
    fn python_and_go_bodies_agree() {
        let py = br#"{"name":"web","id":"web1","port":8080,"tags":["a"],"enabletagoverride":true,
            "check":{"http":"http://127.0.0.1:1/health","interval":"10s","DeregisterCriticalServiceAfter":"1m"}}"#;
        let go = br#"{"Name":"web","ID":"web1","Port":8080,"Tags":["a"],"EnableTagOverride":true,
            "Check":{"HTTP":"http://127.0.0.1:1/health","Interval":"10s","DeregisterCriticalServiceAfter":"1m"}}"#;
        let a = decode::<ServiceDef>(py)
            .expect("py")
            .validate("n", policy(), Source::Api)
            .expect("valid");
        let b = decode::<ServiceDef>(go)
            .expect("go")
            .validate("n", policy(), Source::Api)
            .expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.1[0].0.check_id, "service:web1");
        assert_eq!(a.1[0].0.status, HealthStatus::Critical);
        assert_eq!(
            a.1[0].1.deregister_critical_service_after,
            Duration::from_secs(60)
        );
    }

    /// Several unnamed checks get `service:<id>:<n>` IDs, from 1.
    #[test]
    fn multiple_checks_are_numbered() {
        let body =
            br#"{"Name":"web","Checks":[{"TTL":"10s"},{"TCP":"127.0.0.1:1","Interval":"5s"}]}"#;
        let (_, checks) = decode::<ServiceDef>(body)
            .expect("decode")
            .validate("n", policy(), Source::Api)
            .expect("valid");
        let ids: Vec<_> = checks.iter().map(|(c, _)| c.check_id.as_str()).collect();
        assert_eq!(ids, vec!["service:web:1", "service:web:2"]);
    }

    /// Each refusal names what is wrong, in Consul's words.
    #[test]
    fn bad_checks_are_refused_with_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"Name":"w","Check":{"TTL":"ten"}}"#, "Invalid TTL"),
            (
                br#"{"Name":"w","Check":{"HTTP":"http://x","TCP":"x:1","Interval":"1s"}}"#,
                "HTTP, TCP",
            ),
            (
                br#"{"Name":"w","Check":{"HTTP":"http://x"}}"#,
                "Interval must be > 0",
            ),
            (
                br#"{"Name":"w","Check":{"Args":["true"],"Interval":"1s"}}"#,
                "Scripts are disabled",
            ),
            (
                br#"{"Name":"w","Check":{"TTL":"1s","Status":"great"}}"#,
                "Status",
            ),
            (br#"{"Name":"w","Check":{}}"#, "Must provide TTL"),
            (br#"{"Name":"w","Meta":{"consul-x":"1"}}"#, "reserved"),
            (br#"{"Port":80}"#, "Missing service name"),
            (
                br#"{"Name":"w","Weights":{"Passing":0}}"#,
                "Passing must be greater than 0",
            ),
        ];
        for (body, want) in cases {
            let r = decode::<ServiceDef>(body)
                .map_err(|e| e.to_string())
                .and_then(|d| {
                    d.validate("n", policy(), Source::Api)
                        .map_err(|e| e.to_string())
                });
            let e = r.expect_err(want);
            assert!(e.contains(want), "{e} lacks {want:?}");
        }
    }

    /// `enable_local_script_checks` allows scripts from config files, not from the API.
    #[test]
    fn local_scripts_only_from_config() {
        let body = br#"{"Name":"w","Check":{"Args":["true"],"Interval":"1s"}}"#;
        let d = decode::<ServiceDef>(body).expect("decode");
        let local = ScriptPolicy {
            any: false,
            local: true,
        };
        assert!(d.validate("n", local, Source::Api).is_err());
        assert!(d.validate("n", local, Source::Config).is_ok());
    }

    /// Every interval check kind runs at most once a second, as Consul's `MinInterval`; longer
    /// intervals are kept; the record shows what was registered.
    #[test]
    fn intervals_under_a_second_are_raised_to_a_second() {
        let scripts = ScriptPolicy {
            any: true,
            local: true,
        };
        let kinds = [
            json!({"HTTP": "http://127.0.0.1:1/"}),
            json!({"TCP": "127.0.0.1:1"}),
            json!({"UDP": "127.0.0.1:1"}),
            json!({"GRPC": "127.0.0.1:1"}),
            json!({"H2PING": "127.0.0.1:1"}),
            json!({"Args": ["true"]}),
            json!({"Script": "true"}),
            json!({"DockerContainerID": "c1", "Args": ["true"]}),
            json!({"OSService": "sshd"}),
        ];
        for kind in kinds {
            for (given, runs) in [
                (json!("1ns"), Duration::from_secs(1)),
                (json!(1), Duration::from_secs(1)),
                (json!("999ms"), Duration::from_secs(1)),
                (json!("1s"), Duration::from_secs(1)),
                (json!("2500ms"), Duration::from_millis(2500)),
            ] {
                let mut body = kind.clone();
                body["Name"] = json!("c");
                body["Interval"] = given.clone();
                let def: CheckDef = crate::api::decode::decode_value(body).expect("decode");
                let (check, spec) = def
                    .validate("n", "c".into(), "c".into(), scripts, Source::Config)
                    .unwrap_or_else(|e| panic!("{kind} {given}: {e}"));
                assert_eq!(spec.interval, runs, "{kind} every {given}");
                let registered = match &given {
                    serde_json::Value::Number(n) => {
                        Duration::from_nanos(n.as_u64().expect("nanoseconds"))
                    }
                    v => parse_go_duration(v.as_str().expect("text")).expect("duration"),
                };
                assert_eq!(check.interval, registered, "{kind} record");
            }
        }
    }

    /// IDs and names that could not be addressed by URL afterwards are refused, from the API
    /// and from config files alike (both validate here); the bound itself is accepted.
    #[test]
    fn ids_and_names_longer_than_a_url_can_carry_are_refused() {
        let long = "x".repeat(100 * 1024);
        let max = "é".repeat(MAX_ID_LEN / 2);
        let service = |id: &str, name: &str| ServiceDef {
            id: id.into(),
            name: name.into(),
            ..ServiceDef::default()
        };
        for source in [Source::Api, Source::Config] {
            for (def, want) in [
                (service(&long, "web"), "Service ID is too long"),
                (service("", &long), "Service name is too long"),
            ] {
                let e = def.validate("n", policy(), source).expect_err(want);
                assert!(
                    matches!(&e, Error::Invalid(m) if m.starts_with(want)),
                    "{e}"
                );
            }
            assert!(service(&max, &max).validate("n", policy(), source).is_ok());
            let check = CheckDef {
                id: long.clone(),
                name: "c".into(),
                ttl: Some(RawDuration::Str("10s".into())),
                ..CheckDef::default()
            };
            let e = check
                .validate("n", long.clone(), "c".into(), policy(), source)
                .expect_err("long check ID");
            assert!(e.to_string().starts_with("Check ID is too long"), "{e}");
            let check = CheckDef {
                id: String::new(),
                name: long.clone(),
                ..check
            };
            let e = check
                .validate("n", long.clone(), long.clone(), policy(), source)
                .expect_err("long check name");
            assert!(e.to_string().starts_with("Check name is too long"), "{e}");
            // A service at the bound gets generated check IDs a little longer: still fine.
            let mut def = service(&max, "web");
            def.check = Some(CheckDef {
                ttl: Some(RawDuration::Str("10s".into())),
                ..CheckDef::default()
            });
            assert!(def.validate("n", policy(), source).is_ok());
        }
    }
}
