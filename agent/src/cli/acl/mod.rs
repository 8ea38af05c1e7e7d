//! `cairn acl ...`: the ACL system from the command line, with Consul's subcommands, flags,
//! output and error texts (`acl bootstrap`, `acl policy|role|token create|read|update|delete|
//! list`, `acl set-agent-token`).
//!
//! The commands are thin clients of `/v1/acl/*` and `/v1/agent/token/*`; what they add is what
//! Consul's CLI adds: IDs given as unique prefixes (`-id 4be5`), policies and roles named
//! instead of identified, identities written as `web:dc1,dc2`, updates that merge with the
//! current object, and the `pretty` layouts of `format`. Shared pieces live here; each object
//! has its module.

mod expanded;
mod format;
mod policy;
mod role;
mod token;
mod types;

use std::process::ExitCode;

use serde::de::DeserializeOwned;

use self::format::Format;
use self::types::{NodeIdentity, Policy, Role, ServiceIdentity, TemplateVariables, Token};
use super::client::{Client, Error};
use super::output::{err, fail, out};
use super::spec::{Http, Spec};
use crate::flags::{Flag, Parsed};

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("bootstrap", "Bootstrap Cairn's ACL system"),
    ("policy", "Manage Cairn's ACL policies"),
    ("role", "Manage Cairn's ACL roles"),
    (
        "set-agent-token",
        "Assign tokens for the Cairn agent's usage",
    ),
    ("token", "Manage Cairn's ACL tokens"),
];

/// The group's help, printed without a subcommand or with `-h`.
fn help() -> String {
    super::group_usage(
        "Usage: cairn acl <subcommand> [options] [args]\n\n  \
         This command has subcommands for interacting with Cairn's ACLs.\n  \
         Here are some simple examples, and more detailed examples are available\n  \
         in the subcommands or the documentation.\n\n  \
         Bootstrap ACLs:\n\n      \
         $ cairn acl bootstrap\n\n  \
         List all ACL tokens:\n\n      \
         $ cairn acl token list\n\n  \
         Create a new ACL policy:\n\n      \
         $ cairn acl policy create -name \"new-policy\" \\\n                                 \
         -description \"This is an example policy\" \\\n                                 \
         -rules @rules.hcl\n\n  \
         Set the default agent token:\n\n      \
         $ cairn acl set-agent-token default 0bc6bc46-f25e-4262-b2d9-ffbe1d96be6f\n\n  \
         For more examples, ask for subcommand help or view the documentation.",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn acl ...`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return super::unknown_subcommand("acl", "", &help());
    };
    match name.as_str() {
        "bootstrap" => bootstrap(rest).await,
        "set-agent-token" => set_agent_token(rest).await,
        "policy" => policy::run(rest).await,
        "role" => role::run(rest).await,
        "token" => token::run(rest).await,
        other => super::unknown_subcommand("acl", other, &help()),
    }
}

/// `-format`, on every command that prints an object.
const FORMAT: Flag = Flag::text("format", "string", "Output format {pretty|json}");

/// `-meta`, on the commands whose output has hash and indexes to show.
const META: Flag = Flag::bool(
    "meta",
    "Indicates that metadata such as the content hash and raft indices should be shown \
     for each entry",
);

/// What every `acl` command starts with: its flags parsed, the output format checked and a
/// client built.
struct Cmd {
    /// The parsed flags.
    p: Parsed,
    /// `-format`.
    format: Format,
    /// `-meta`.
    meta: bool,
    /// The agent's client.
    client: Client,
}

impl Cmd {
    /// Parses `args` against `spec`; prints help or the error and yields the exit code when the
    /// command should not go on.
    ///
    /// The format is checked before any request, unlike Consul (which checks it after the
    /// write): a typo in `-format` must not leave a created token unseen.
    fn setup(spec: &Spec, args: &[String]) -> Result<Cmd, ExitCode> {
        let p = super::parse(spec, args)?;
        let format = Format::parse(p.text("format").unwrap_or("pretty")).map_err(fail)?;
        let meta = p.bool("meta");
        let client = super::connect(&p)?;
        Ok(Cmd {
            p,
            format,
            meta,
            client,
        })
    }

    /// Prints a token in the chosen format.
    fn print_token(&self, t: &Token) {
        match self.format {
            Format::Pretty => out(&format::token(t, self.meta)),
            Format::Json => out(&format::json(t)),
        }
    }

    /// Prints a policy in the chosen format.
    fn print_policy(&self, p: &Policy) {
        match self.format {
            Format::Pretty => out(&format::policy(p, self.meta)),
            Format::Json => out(&format::json(p)),
        }
    }

    /// Prints a role in the chosen format.
    fn print_role(&self, r: &Role) {
        match self.format {
            Format::Pretty => out(&format::role(r, self.meta)),
            Format::Json => out(&format::json(r)),
        }
    }

    /// `PUT` a JSON body and decode the answer.
    async fn put_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Error> {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    /// Sends a JSON body with `method` and decodes the answer.
    async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Decode(e.to_string()))?;
        self.client
            .call(method, path, &[], Some(bytes), false)
            .await?
            .json()
    }
}

/// Prints a list unless it is empty: Consul prints nothing at all for an empty pretty list.
fn print_list(text: String) {
    if !text.is_empty() {
        out(&text);
    }
}

/// Reads one object by ID (or any path), `None` on a 404, as Consul's client treats "not found"
/// for policies and roles.
async fn read_optional<T: DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<Option<T>, Error> {
    let reply = client.get_allow_404(path, &[]).await?;
    if reply.status == 404 {
        return Ok(None);
    }
    reply.json().map(Some)
}

/// The accessor ID of the anonymous token, which `-accessor-id anonymous` names.
const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// A full ID from a unique prefix, with Consul's texts (`kind`: "token", "policy", "role").
///
/// A 36-character value is taken as a full ID without a request, as Consul does.
fn unique_prefix(
    kind: &str,
    ids: impl Iterator<Item = String>,
    partial: &str,
) -> Result<String, String> {
    let mut found: Option<String> = None;
    for id in ids.filter(|id| id.starts_with(partial)) {
        if found.is_some() {
            return Err(format!("Partial {kind} ID is not unique"));
        }
        found = Some(id);
    }
    found.ok_or_else(|| format!("No such {kind} ID with prefix: {partial}"))
}

/// A token's accessor ID from a prefix (or `anonymous`).
async fn token_accessor(client: &Client, partial: &str) -> Result<String, String> {
    if partial == "anonymous" {
        return Ok(ANONYMOUS_ACCESSOR.to_string());
    }
    if partial.len() == 36 {
        return Ok(partial.to_string());
    }
    let tokens: Vec<Token> = client
        .get_json("/v1/acl/tokens", &[])
        .await
        .map_err(|e| e.to_string())?;
    unique_prefix("token", tokens.into_iter().map(|t| t.accessor_id), partial)
}

/// A policy's ID from a prefix.
async fn policy_id(client: &Client, partial: &str) -> Result<String, String> {
    if partial.len() == 36 {
        return Ok(partial.to_string());
    }
    let policies: Vec<Policy> = client
        .get_json("/v1/acl/policies", &[])
        .await
        .map_err(|e| e.to_string())?;
    unique_prefix("policy", policies.into_iter().map(|p| p.id), partial)
}

/// A policy's ID from its exact name.
async fn policy_id_by_name(client: &Client, name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("No name specified".into());
    }
    let policies: Vec<Policy> = client
        .get_json("/v1/acl/policies", &[])
        .await
        .map_err(|e| e.to_string())?;
    policies
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.id)
        .ok_or_else(|| format!("No such policy with name {name}"))
}

/// A role's ID from a prefix.
async fn role_id(client: &Client, partial: &str) -> Result<String, String> {
    if partial.len() == 36 {
        return Ok(partial.to_string());
    }
    let roles: Vec<Role> = client
        .get_json("/v1/acl/roles", &[])
        .await
        .map_err(|e| e.to_string())?;
    unique_prefix("role", roles.into_iter().map(|r| r.id), partial)
}

/// A role's ID from its exact name.
async fn role_id_by_name(client: &Client, name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("No name specified".into());
    }
    let roles: Vec<Role> = client
        .get_json("/v1/acl/roles", &[])
        .await
        .map_err(|e| e.to_string())?;
    roles
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.id)
        .ok_or_else(|| format!("No such role with name {name}"))
}

/// `-service-identity` values: `web` or `web:dc1,dc2`.
fn service_identities(raw: &[String]) -> Result<Vec<ServiceIdentity>, String> {
    raw.iter()
        .map(|s| {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [name] => Ok(ServiceIdentity {
                    service_name: name.to_string(),
                    datacenters: Vec::new(),
                }),
                [name, dcs] => Ok(ServiceIdentity {
                    service_name: name.to_string(),
                    datacenters: dcs.split(',').map(str::to_string).collect(),
                }),
                _ => Err(format!("Malformed -service-identity argument: {s:?}")),
            }
        })
        .collect()
}

/// `-node-identity` values: `node:dc`, the datacenter required.
fn node_identities(raw: &[String]) -> Result<Vec<NodeIdentity>, String> {
    raw.iter()
        .map(|s| match s.split(':').collect::<Vec<_>>().as_slice() {
            [node, dc] => Ok(NodeIdentity {
                node_name: node.to_string(),
                datacenter: dc.to_string(),
            }),
            _ => Err(format!("Malformed -node-identity argument: {s:?}")),
        })
        .collect()
}

/// The templated policies of `-templated-policy NAME` with its `-var name:value` flags (one
/// link), or of `-templated-policy-file` (any number).
fn templated_policies(p: &Parsed) -> Result<Vec<types::TemplatedPolicy>, String> {
    let file = p.text_or_empty("templated-policy-file");
    if !file.is_empty() {
        if p.is_set("templated-policy") {
            return Err(
                "Cannot combine the use of -templated-policy flag with -templated-policy-file."
                    .into(),
            );
        }
        return templated_policies_file(file);
    }
    let Some(name) = p.text("templated-policy").filter(|n| !n.is_empty()) else {
        if p.is_set("var") {
            return Err("Cannot specify -var without -templated-policy".into());
        }
        return Ok(Vec::new());
    };
    let mut vars: Option<TemplateVariables> = None;
    for v in p.list("var") {
        match v.split(':').collect::<Vec<_>>().as_slice() {
            [key, value] if key.eq_ignore_ascii_case("name") => {
                vars = Some(TemplateVariables {
                    name: value.to_string(),
                });
            }
            [_, _] => {}
            _ => {
                return Err(format!(
                    "Malformed -var argument: {v:?}, expecting VariableName:Value"
                ));
            }
        }
    }
    Ok(vec![types::TemplatedPolicy {
        template_name: name.to_string(),
        template_variables: vars,
        datacenters: Vec::new(),
    }])
}

/// Templated policies from a file, HCL or JSON, in Consul's shape:
/// `TemplatedPolicy "builtin/service" { Name = "api" Datacenters = ["dc1"] }`, repeatable.
fn templated_policies_file(path: &str) -> Result<Vec<types::TemplatedPolicy>, String> {
    use serde_json::Value;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Failed to read templated policy file: {e}"))?;
    let doc: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => hcl::from_str(&text)
            .map_err(|e| format!("Failed to decode templated policy file: {e}"))?,
    };
    let blocks = doc
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("TemplatedPolicy"))
        })
        .and_then(|(_, v)| v.as_object())
        .ok_or_else(|| format!("{path}: no TemplatedPolicy block"))?;
    // A field of a block, whatever its case (`Name`, `name`).
    let field = |o: &serde_json::Map<String, Value>, name: &str| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut out = Vec::new();
    for (template, body) in blocks {
        // One block per label is an object; repeated labels come as a list.
        let bodies = match body {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for b in bodies {
            let o = b.as_object().cloned().unwrap_or_default();
            let name = field(&o, "Name")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let datacenters = field(&o, "Datacenters")
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                .unwrap_or_default();
            out.push(types::TemplatedPolicy {
                template_name: template.clone(),
                template_variables: (!name.is_empty()).then_some(TemplateVariables { name }),
                datacenters,
            });
        }
    }
    Ok(out)
}

/// A link by ID, as the request body carries it.
fn link_id(id: &str) -> serde_json::Value {
    serde_json::json!({ "ID": id, "Name": "" })
}

/// A link by name, resolved to an ID by the agent.
fn link_name(name: &str) -> serde_json::Value {
    serde_json::json!({ "ID": "", "Name": name })
}

/// `cairn acl bootstrap`'s interface.
const BOOTSTRAP: Spec = Spec {
    usage: "
Usage: cairn acl bootstrap [options] [FILE|-]

  The bootstrap command will request Cairn to generate a new token with unlimited
  privileges to use for management purposes and output its details. This can only
  be done once and afterwards bootstrapping will be disabled. If all tokens are
  lost and you need to bootstrap again you can follow the bootstrap reset
  procedure.

  The secret of the new token may be chosen: give a file holding it, or - to read
  it from stdin.
",
    flags: &[FORMAT],
    http: Http::Server,
};

/// `cairn acl bootstrap [FILE|-]`: the one-time creation of the first management token.
async fn bootstrap(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&BOOTSTRAP, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cmd.p.args.len() > 1 {
        return fail("This command takes up to one argument");
    }
    // The secret comes from a file or stdin only, never the command line, where it would show
    // in the process list.
    let secret = match cmd.p.args.first() {
        None => String::new(),
        Some(arg) => {
            let source = if arg == "-" {
                "-".to_string()
            } else {
                format!("@{arg}")
            };
            match super::load_data(&source) {
                Ok(s) => s.trim().to_string(),
                Err(e) => return fail(format!("Error reading provided token: {e}")),
            }
        }
    };
    let body = if secret.is_empty() {
        None
    } else {
        match serde_json::to_vec(&serde_json::json!({ "BootstrapSecret": secret })) {
            Ok(b) => Some(b),
            Err(e) => return fail(format!("Failed ACL bootstrapping: {e}")),
        }
    };
    let token: Result<Token, Error> = match cmd.client.put("/v1/acl/bootstrap", &[], body).await {
        Ok(reply) => reply.json(),
        Err(e) => Err(e),
    };
    match token {
        Ok(t) => {
            // Consul's bootstrap prints without metadata whatever the flags.
            let cmd = Cmd { meta: false, ..cmd };
            cmd.print_token(&t);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed ACL bootstrapping: {e}")),
    }
}

/// `cairn acl set-agent-token`'s interface.
const SET_AGENT_TOKEN: Spec = Spec {
    usage: "
Usage: cairn acl set-agent-token [options] TYPE TOKEN

  This command will set the corresponding token for the agent to use. If token
  persistence is not enabled, then tokens uploaded this way are not persisted
  and if the agent reloads then the tokens will need to be set again.

  TOKEN may be given as is, as @FILE to read it from a file, or as - to read it
  from stdin.

  Token Types:

    default                           The default token is the token that the agent will use for
                                      both internal agent operations and operations initiated by
                                      the HTTP and DNS interfaces when no specific token is provided.
                                      If not set the agent will use the anonymous token.

    agent                             The token that the agent will use for internal agent operations.
                                      If not given then the default token is used for these operations.

    recovery                          This sets the token that can be used to access the Agent APIs in
                                      the event that the ACL datacenter cannot be reached.

    replication                       This is the token that the agent will use for replication
                                      operations. This token will need to be configured with read access
                                      to whatever data is being replicated.

    config_file_service_registration  This is the token that the agent uses to register services
                                      and checks defined in config files. This token needs to
                                      be configured with permission for the service or checks
                                      being registered. If not set, the default token is used.
                                      If a service or check definition contains a 'token'
                                      field, then that token is used instead.

    dns                               This is the token that the agent uses to answer DNS
                                      queries. If not set, the default token is used.

  Example:

    $ cairn acl set-agent-token default c4d0f8df-3aba-4ab6-a7a0-35b760dc29a1
",
    flags: &[],
    http: Http::Server,
};

/// The API path segment of each token type the command accepts.
fn agent_token_path(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "default" => "default",
        "agent" => "agent",
        "recovery" => "agent_recovery",
        "replication" => "replication",
        "config_file_service_registration" => "config_file_service_registration",
        "dns" => "dns",
        _ => return None,
    })
}

/// `cairn acl set-agent-token TYPE TOKEN`: replaces one of the agent's own tokens.
async fn set_agent_token(args: &[String]) -> ExitCode {
    let p = match super::parse(&SET_AGENT_TOKEN, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (kind, token) = match p.args.as_slice() {
        [] => return fail("Error! Missing TYPE and TOKEN arguments"),
        [one] => {
            return match one.as_str() {
                "default" | "agent" | "recovery" | "replication" => {
                    fail("Error! Missing TOKEN argument")
                }
                _ => fail("Error! MISSING TYPE argument"),
            };
        }
        [kind, token] => match super::load_data(token) {
            Ok(t) => (kind.clone(), t.trim().to_string()),
            Err(e) => return fail(format!("Error! {e}")),
        },
        more => {
            return fail(format!(
                "Error! Too many arguments: expected 2 got {}",
                more.len()
            ));
        }
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(path) = agent_token_path(&kind) else {
        return fail("Unknown token type");
    };
    let body = match serde_json::to_vec(&serde_json::json!({ "Token": token })) {
        Ok(b) => b,
        Err(e) => return fail(format!("Failed to set ACL token {kind:?}: {e}")),
    };
    match client
        .put(&format!("/v1/agent/token/{path}"), &[], Some(body))
        .await
    {
        Ok(_) => {
            out(&format!("ACL token {kind:?} set successfully"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to set ACL token {kind:?}: {e}")),
    }
}

/// Prints a warning to stderr (Consul's `UI.Warn`).
fn warn(text: &str) {
    err(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identities_parse_as_consul() {
        let s = service_identities(&strings(&["web", "db:dc1,dc2"])).expect("ok");
        assert_eq!(s[0].service_name, "web");
        assert!(s[0].datacenters.is_empty());
        assert_eq!(s[1].datacenters, vec!["dc1", "dc2"]);
        assert_eq!(
            service_identities(&strings(&["a:b:c"])).err().as_deref(),
            Some("Malformed -service-identity argument: \"a:b:c\"")
        );
        let n = node_identities(&strings(&["n1:dc1"])).expect("ok");
        assert_eq!(
            (n[0].node_name.as_str(), n[0].datacenter.as_str()),
            ("n1", "dc1")
        );
        assert_eq!(
            node_identities(&strings(&["n1"])).err().as_deref(),
            Some("Malformed -node-identity argument: \"n1\"")
        );
    }

    /// Repeated blocks, one per label, in HCL; a datacenter list; JSON too.
    #[test]
    fn templated_policy_files() {
        let dir = std::env::temp_dir().join(format!("cairn-acl-tp-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let hcl = dir.join("t.hcl");
        std::fs::write(
            &hcl,
            "TemplatedPolicy \"builtin/service\" { Name = \"web\" }\n\
             TemplatedPolicy \"builtin/service\" {\n  Name = \"api\"\n  Datacenters = [\"dc1\"]\n}\n\
             TemplatedPolicy \"builtin/dns\" {}\n",
        )
        .expect("write");
        let got = templated_policies_file(&hcl.to_string_lossy()).expect("hcl");
        let mut names: Vec<(String, String, Vec<String>)> = got
            .into_iter()
            .map(|t| {
                let n = t.template_variables.map(|v| v.name).unwrap_or_default();
                (t.template_name, n, t.datacenters)
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("builtin/dns".into(), String::new(), vec![]),
                (
                    "builtin/service".into(),
                    "api".into(),
                    vec!["dc1".to_string()]
                ),
                ("builtin/service".into(), "web".into(), vec![]),
            ]
        );
        let json = dir.join("t.json");
        std::fs::write(
            &json,
            r#"{"TemplatedPolicy": {"builtin/node": {"Name": "n1"}}}"#,
        )
        .expect("write");
        let got = templated_policies_file(&json.to_string_lossy()).expect("json");
        assert_eq!(got.len(), 1);
        assert!(templated_policies_file("/nonexistent/x.hcl").is_err());
    }

    #[test]
    fn prefixes_must_be_unique() {
        let ids = || strings(&["abc-1", "abd-2"]).into_iter();
        assert_eq!(
            unique_prefix("policy", ids(), "abc").as_deref(),
            Ok("abc-1")
        );
        assert_eq!(
            unique_prefix("policy", ids(), "ab").err().as_deref(),
            Some("Partial policy ID is not unique")
        );
        assert_eq!(
            unique_prefix("role", ids(), "x").err().as_deref(),
            Some("No such role ID with prefix: x")
        );
    }

    #[test]
    fn agent_token_types() {
        assert_eq!(agent_token_path("recovery"), Some("agent_recovery"));
        assert_eq!(agent_token_path("dns"), Some("dns"));
        assert_eq!(agent_token_path("master"), None);
    }
}
