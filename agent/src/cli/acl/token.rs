//! `cairn acl token create|read|update|clone|delete|list`: ACL tokens and their links to
//! policies, roles, identities and templated policies.
//!
//! Links are given by name or ID (a unique ID prefix is enough); names are resolved by the
//! agent, so a typo fails with the agent's `No such ACL policy with name "x"`. Update keeps the
//! token's other fields: `-policy-name` replaces the policies, `-append-policy-name` adds to
//! them, as in Consul.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::types::{Link, Token};
use super::{
    Cmd, FORMAT, META, format, link_id, link_name, node_identities, policy_id, print_list, role_id,
    service_identities, templated_policies, token_accessor, warn,
};
use crate::cli::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("clone", "Clone an ACL token"),
    ("create", "Create an ACL token"),
    ("delete", "Delete an ACL token"),
    ("list", "List ACL tokens"),
    ("read", "Read an ACL token"),
    ("update", "Update an ACL token"),
];

/// The group's help.
fn help() -> String {
    crate::cli::group_usage(
        "Usage: cairn acl token <subcommand> [options] [args]\n\n  \
         This command has subcommands for managing Cairn's ACL tokens.\n\n  \
         Create a new ACL token:\n\n      \
         $ cairn acl token create -description \"This is an example token\" \\\n                               \
         -policy-name \"policy-1\" -service-identity \"web\"\n\n  \
         List all tokens:\n\n      \
         $ cairn acl token list\n\n  \
         Read the token in use:\n\n      \
         $ cairn acl token read -self\n\n  \
         Delete a token:\n\n      \
         $ cairn acl token delete -accessor-id 986193",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn acl token ...`.
pub(super) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = crate::cli::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return crate::cli::unknown_subcommand("acl token", "", &help());
    };
    match name.as_str() {
        "create" => create(rest).await,
        "read" => read(rest).await,
        "update" => update(rest).await,
        "clone" => clone(rest).await,
        "delete" => delete(rest).await,
        "list" => list(rest).await,
        other => crate::cli::unknown_subcommand("acl token", other, &help()),
    }
}

const POLICY_ID: Flag = Flag::list(
    "policy-id",
    "string",
    "ID of a policy to use for this token. May be specified multiple times",
);
const POLICY_NAME: Flag = Flag::list(
    "policy-name",
    "string",
    "Name of a policy to use for this token. May be specified multiple times",
);
const ROLE_ID: Flag = Flag::list(
    "role-id",
    "string",
    "ID of a role to use for this token. May be specified multiple times",
);
const ROLE_NAME: Flag = Flag::list(
    "role-name",
    "string",
    "Name of a role to use for this token. May be specified multiple times",
);
const SERVICE_IDENTITY: Flag = Flag::list(
    "service-identity",
    "string",
    "Name of a service identity to use for this token. May be specified multiple times. \
     Format is the SERVICENAME or SERVICENAME:DATACENTER1,DATACENTER2,...",
);
const NODE_IDENTITY: Flag = Flag::list(
    "node-identity",
    "string",
    "Name of a node identity to use for this token. May be specified multiple times. \
     Format is NODENAME:DATACENTER",
);
const TEMPLATED_POLICY: Flag = Flag::text(
    "templated-policy",
    "string",
    "The templated policy name. Use -var flag to specify variables when required.",
);
const VAR: Flag = Flag::list(
    "var",
    "string",
    "Templated policy variables. Must be used in combination with -templated-policy flag \
     to specify required variables. May be specified multiple times with different \
     variables. Format is VariableName:Value",
);
const TEMPLATED_POLICY_FILE: Flag = Flag::text(
    "templated-policy-file",
    "path",
    "Path to a file containing templated policies and variables, HCL or JSON: \
     TemplatedPolicy \"builtin/service\" { Name = \"api\" }, repeatable.",
);
const DESCRIPTION: Flag = Flag::text("description", "string", "A description of the token");

const CREATE: Spec = Spec {
    usage: "
Usage: cairn acl token create [options]

  When creating a new token policies may be linked using either the -policy-id
  or the -policy-name options. When specifying policies by IDs you may use a
  unique prefix of the UUID as a shortcut for specifying the entire UUID.

  Create a new token:

          $ cairn acl token create -description \"Replication token\" \\
                                   -policy-id b52fc3de-5 \\
                                   -policy-name \"acl-replication\" \\
                                   -role-id c630d4ef-6 \\
                                   -role-name \"db-updater\" \\
                                   -service-identity \"web\" \\
                                   -service-identity \"db:east,west\" \\
                                   -templated-policy \"builtin/service\" -var \"name:api\"
",
    flags: &[
        Flag::text(
            "accessor",
            "string",
            "Create the token with this Accessor ID. It must be a UUID. If not specified one \
             will be auto-generated",
        ),
        Flag::text(
            "secret",
            "string",
            "Create the token with this Secret ID. It must be a UUID. If not specified one \
             will be auto-generated",
        ),
        META,
        Flag::bool("local", "Create this as a datacenter local token"),
        DESCRIPTION,
        POLICY_ID,
        POLICY_NAME,
        ROLE_ID,
        ROLE_NAME,
        SERVICE_IDENTITY,
        NODE_IDENTITY,
        TEMPLATED_POLICY,
        TEMPLATED_POLICY_FILE,
        VAR,
        Flag::text(
            "expires-ttl",
            "duration",
            "Duration of time this token should be valid for",
        ),
        FORMAT,
    ],
    http: Http::Server,
};

/// Resolves `-policy-id` prefixes into links, with Consul's message for a prefix that matches
/// nothing or several policies.
async fn policy_links_by_id(cmd: &Cmd, ids: &[String]) -> Result<Vec<Value>, ExitCode> {
    let mut out = Vec::new();
    for partial in ids {
        match policy_id(&cmd.client, partial).await {
            Ok(id) => out.push(link_id(&id)),
            Err(e) => return Err(fail(format!("Error resolving policy ID {partial}: {e}"))),
        }
    }
    Ok(out)
}

/// Resolves `-role-id` prefixes into links.
async fn role_links_by_id(cmd: &Cmd, ids: &[String]) -> Result<Vec<Value>, ExitCode> {
    let mut out = Vec::new();
    for partial in ids {
        match role_id(&cmd.client, partial).await {
            Ok(id) => out.push(link_id(&id)),
            Err(e) => return Err(fail(format!("Error resolving role ID {partial}: {e}"))),
        }
    }
    Ok(out)
}

/// `cairn acl token create`.
async fn create(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&CREATE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let p = &cmd.p;
    let linked = [
        "policy-name",
        "policy-id",
        "role-name",
        "role-id",
        "service-identity",
        "node-identity",
        "templated-policy",
        "templated-policy-file",
    ]
    .iter()
    .any(|f| p.is_set(f));
    if !linked {
        return fail(
            "Cannot create a token without specifying -policy-name, -policy-id, -role-name, \
             -role-id, -service-identity, -node-identity, -templated-policy, or \
             -templated-policy-file at least once",
        );
    }
    // Go's `flag.Duration` refuses a bad value while parsing, before anything is sent.
    let ttl = match p.text("expires-ttl") {
        None => None,
        Some(v) => match cairn_catalog::duration::parse_go_duration(v) {
            Ok(d) => Some(d),
            Err(_) => {
                crate::cli::output::err(&format!(
                    "invalid value {v:?} for flag -expires-ttl: parse error"
                ));
                return fail(CREATE.help());
            }
        },
    };
    let services = match service_identities(&p.list("service-identity")) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let nodes = match node_identities(&p.list("node-identity")) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let templated = match templated_policies(p) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let mut policies: Vec<Value> = p.list("policy-name").iter().map(|n| link_name(n)).collect();
    match policy_links_by_id(&cmd, &p.list("policy-id")).await {
        Ok(mut l) => policies.append(&mut l),
        Err(code) => return code,
    }
    let mut roles: Vec<Value> = p.list("role-name").iter().map(|n| link_name(n)).collect();
    match role_links_by_id(&cmd, &p.list("role-id")).await {
        Ok(mut l) => roles.append(&mut l),
        Err(code) => return code,
    }
    let mut body = json!({
        "AccessorID": p.text_or_empty("accessor"),
        "SecretID": p.text_or_empty("secret"),
        "Description": p.text_or_empty("description"),
        "Policies": policies,
        "Roles": roles,
        "ServiceIdentities": services,
        "NodeIdentities": nodes,
        "TemplatedPolicies": templated,
        "Local": p.bool("local"),
    });
    // Nanoseconds, as Go's client sends a `time.Duration`; only a positive TTL is sent.
    if let Some(d) = ttl.filter(|d| !d.is_zero()) {
        body["ExpirationTTL"] = json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
    match cmd.put_json::<Token>("/v1/acl/token", &body).await {
        Ok(t) => {
            cmd.print_token(&t);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to create new token: {e}")),
    }
}

/// `-accessor-id`, of the commands that find one token.
const ACCESSOR_ID: Flag = Flag::text(
    "accessor-id",
    "string",
    "The Accessor ID of the token. It may be specified as a unique ID prefix but will error \
     if the prefix matches multiple token Accessor IDs",
);

/// `-id`, Consul's deprecated spelling of `-accessor-id`.
const DEPRECATED_ID: Flag = Flag::text("id", "string", "DEPRECATED. Use -accessor-id instead.");

const READ: Spec = Spec {
    usage: "
Usage: cairn acl token read [options] -accessor-id TOKENID

  This command will retrieve and print out the details of
  a single token.

  Using a partial ID:

          $ cairn acl token read -accessor-id 4be56c77-82

  Using the full ID:

          $ cairn acl token read -accessor-id 4be56c77-8244-4c7d-b08c-667b8c71baed

  The token in use (-token, CONSUL_HTTP_TOKEN, ...):

          $ cairn acl token read -self
",
    flags: &[
        META,
        Flag::bool(
            "self",
            "Indicates that the current HTTP token should be read by secret ID instead of \
             expecting a -accessor-id option",
        ),
        Flag::bool(
            "expanded",
            "Indicates that the contents of the policies and roles affecting the token should \
             also be shown.",
        ),
        ACCESSOR_ID,
        FORMAT,
        DEPRECATED_ID,
    ],
    http: Http::Server,
};

/// The accessor given with `-accessor-id`, or the deprecated `-id` with Consul's warning.
fn accessor_flag(cmd: &Cmd, missing: &str) -> Result<String, ExitCode> {
    let accessor = cmd.p.text_or_empty("accessor-id");
    if !accessor.is_empty() {
        return Ok(accessor.to_string());
    }
    let id = cmd.p.text_or_empty("id");
    if id.is_empty() {
        return Err(fail(missing));
    }
    warn("Use the -accessor-id parameter to specify token by Accessor ID");
    Ok(id.to_string())
}

/// `cairn acl token read -accessor-id|-self`.
async fn read(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&READ, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let expanded = cmd.p.bool("expanded");
    if cmd.p.bool("self") {
        if expanded {
            return fail(
                "Cannot use both -expanded and -self. Instead, use -expanded and \
                 -accessor-id=<accessor id>.",
            );
        }
        return match cmd
            .client
            .get_json::<Token>("/v1/acl/token/self", &[])
            .await
        {
            Ok(t) => {
                cmd.print_token(&t);
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error reading token: {e}")),
        };
    }
    let accessor = match accessor_flag(&cmd, "Must specify the -accessor-id parameter") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let id = match token_accessor(&cmd.client, &accessor).await {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining token ID: {e}")),
    };
    let token = match cmd
        .client
        .get_json::<Token>(&format!("/v1/acl/token/{id}"), &[])
        .await
    {
        Ok(t) => t,
        Err(e) => return fail(format!("Error reading token {id:?}: {e}")),
    };
    if expanded {
        return super::expanded::print(&cmd, &token).await;
    }
    cmd.print_token(&token);
    ExitCode::SUCCESS
}

const UPDATE: Spec = Spec {
    usage: "
Usage: cairn acl token update [options]

    This command will update a token. Some parts such as marking the token local
    cannot be changed.

    Update a token description and add a policy to the existing ones:

        $ cairn acl token update -accessor-id abcd -description \"replication\" \\
                                 -append-policy-name \"token-replication\"

    Update all editable fields of the token:

        $ cairn acl token update -accessor-id abcd \\
                                 -description \"replication\" \\
                                 -policy-name \"token-replication\" \\
                                 -role-name \"db-updater\"
",
    flags: &[
        META,
        ACCESSOR_ID,
        DESCRIPTION,
        Flag::list(
            "policy-id",
            "string",
            "ID of a policy to use for this token. Overwrites existing policies. May be \
             specified multiple times",
        ),
        Flag::list(
            "append-policy-id",
            "string",
            "ID of a policy to use for this token. The token retains existing policies. May \
             be specified multiple times",
        ),
        Flag::list(
            "policy-name",
            "string",
            "Name of a policy to use for this token. Overwrites existing policies. May be \
             specified multiple times",
        ),
        Flag::list(
            "append-policy-name",
            "string",
            "Name of a policy to add to this token. The token retains existing policies. May \
             be specified multiple times",
        ),
        Flag::list(
            "role-id",
            "string",
            "ID of a role to use for this token. Overwrites existing roles. May be specified \
             multiple times",
        ),
        Flag::list(
            "role-name",
            "string",
            "Name of a role to use for this token. Overwrites existing roles. May be specified \
             multiple times",
        ),
        Flag::list(
            "append-role-id",
            "string",
            "ID of a role to add to this token. The token retains existing roles. May be \
             specified multiple times",
        ),
        Flag::list(
            "append-role-name",
            "string",
            "Name of a role to add to this token. The token retains existing roles. May be \
             specified multiple times",
        ),
        SERVICE_IDENTITY,
        Flag::list(
            "append-service-identity",
            "string",
            "Name of a service identity to use for this token. This token retains existing \
             service identities. May be specified multiple times. Format is the SERVICENAME \
             or SERVICENAME:DATACENTER1,DATACENTER2,...",
        ),
        NODE_IDENTITY,
        Flag::list(
            "append-node-identity",
            "string",
            "Name of a node identity to use for this token. This token retains existing node \
             identities. May be specified multiple times. Format is NODENAME:DATACENTER",
        ),
        TEMPLATED_POLICY,
        TEMPLATED_POLICY_FILE,
        VAR,
        FORMAT,
        DEPRECATED_ID,
    ],
    http: Http::Server,
};

/// The current links as request links (by ID: the agent re-resolves names on output).
fn as_links(links: &[Link]) -> Vec<Value> {
    links.iter().map(|l| link_id(&l.id)).collect()
}

/// `cairn acl token update -accessor-id ...`.
async fn update(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&UPDATE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let p = &cmd.p;
    let accessor = match accessor_flag(
        &cmd,
        "Cannot update a token without specifying the -accessor-id parameter",
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let id = match token_accessor(&cmd.client, &accessor).await {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining token ID: {e}")),
    };
    let mut t = match cmd
        .client
        .get_json::<Token>(&format!("/v1/acl/token/{id}"), &[])
        .await
    {
        Ok(t) => t,
        Err(e) => return fail(format!("Error when retrieving current token: {e}")),
    };
    // An empty -description keeps the current one, as in Consul.
    let description = p.text_or_empty("description");
    if !description.is_empty() {
        t.description = description.to_string();
    }

    let (set_svc, add_svc) = (
        p.list("service-identity"),
        p.list("append-service-identity"),
    );
    if !set_svc.is_empty() && !add_svc.is_empty() {
        return fail(
            "Cannot combine the use of service-identity flag with append-service-identity. \
             To set or overwrite existing service identities, use -service-identity. \
             To append to existing service identities, use -append-service-identity.",
        );
    }
    let services = match service_identities(if add_svc.is_empty() {
        &set_svc
    } else {
        &add_svc
    }) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (set_node, add_node) = (p.list("node-identity"), p.list("append-node-identity"));
    if !set_node.is_empty() && !add_node.is_empty() {
        return fail(
            "Cannot combine the use of node-identity flag with append-node-identity. \
             To set or overwrite existing node identities, use -node-identity. \
             To append to existing node identities, use -append-node-identity.",
        );
    }
    let nodes = match node_identities(if add_node.is_empty() {
        &set_node
    } else {
        &add_node
    }) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };

    // Policies: replaced by -policy-*, added to by -append-policy-*, else kept.
    let (set_pid, set_pname) = (p.list("policy-id"), p.list("policy-name"));
    let (add_pid, add_pname) = (p.list("append-policy-id"), p.list("append-policy-name"));
    let replace_policies = !set_pid.is_empty() || !set_pname.is_empty();
    if replace_policies && (!add_pid.is_empty() || !add_pname.is_empty()) {
        return fail(
            "Cannot combine the use of policy-id/policy-name flags with append- variants. \
             To set or overwrite existing policies, use -policy-id or -policy-name. \
             To append to existing policies, use -append-policy-id or -append-policy-name.",
        );
    }
    let (pids, pnames, mut policies) = if replace_policies {
        (set_pid, set_pname, Vec::new())
    } else {
        (add_pid, add_pname, as_links(&t.policies))
    };
    policies.extend(pnames.iter().map(|n| link_name(n)));
    match policy_links_by_id(&cmd, &pids).await {
        Ok(mut l) => policies.append(&mut l),
        Err(code) => return code,
    }

    // Roles: the same rules.
    let (set_rid, set_rname) = (p.list("role-id"), p.list("role-name"));
    let (add_rid, add_rname) = (p.list("append-role-id"), p.list("append-role-name"));
    let replace_roles = !set_rid.is_empty() || !set_rname.is_empty();
    if replace_roles && (!add_rid.is_empty() || !add_rname.is_empty()) {
        return fail(
            "Cannot combine the use of role-id/role-name flags with append- variants. \
             To set or overwrite existing roles, use -role-id or -role-name. \
             To append to existing roles, use -append-role-id or -append-role-name.",
        );
    }
    let (rids, rnames, mut roles) = if replace_roles {
        (set_rid, set_rname, Vec::new())
    } else {
        (add_rid, add_rname, as_links(&t.roles))
    };
    roles.extend(rnames.iter().map(|n| link_name(n)));
    match role_links_by_id(&cmd, &rids).await {
        Ok(mut l) => roles.append(&mut l),
        Err(code) => return code,
    }

    // Identities: appended ones replace a same-named one, `-service-identity` replaces them
    // all. Without either flag they are kept: Consul's command would drop them, which turns a
    // description change into a silent loss of rights.
    if !set_svc.is_empty() {
        t.service_identities = services;
    } else {
        for s in services {
            match t
                .service_identities
                .iter_mut()
                .find(|c| c.service_name == s.service_name)
            {
                Some(c) => *c = s,
                None => t.service_identities.push(s),
            }
        }
    }
    if !set_node.is_empty() {
        t.node_identities = nodes;
    } else {
        for n in nodes {
            if !t.node_identities.contains(&n) {
                t.node_identities.push(n);
            }
        }
    }
    if p.is_set("templated-policy") || p.is_set("templated-policy-file") {
        match templated_policies(p) {
            Ok(tp) => t.templated_policies = tp,
            Err(e) => return fail(e),
        }
    }
    let mut body = json!({
        "AccessorID": t.accessor_id,
        "SecretID": t.secret_id,
        "Description": t.description,
        "Policies": policies,
        "Roles": roles,
        "ServiceIdentities": t.service_identities,
        "NodeIdentities": t.node_identities,
        "TemplatedPolicies": t.templated_policies,
        "Local": t.local,
    });
    if let Some(e) = &t.expiration_time {
        body["ExpirationTime"] = json!(e);
    }
    match cmd
        .put_json::<Token>(&format!("/v1/acl/token/{id}"), &body)
        .await
    {
        Ok(t) => {
            cmd.print_token(&t);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to update token {id}: {e}")),
    }
}

const CLONE: Spec = Spec {
    usage: "
Usage: cairn acl token clone [options]

    This command will clone a token. When cloning an alternate description may be given
    for use with the new token.

    Example:

        $ cairn acl token clone -accessor-id abcd -description \"replication\"
",
    flags: &[
        Flag::text(
            "accessor-id",
            "string",
            "The Accessor ID of the token to clone. It may be specified as a unique ID prefix \
             but will error if the prefix matches multiple token Accessor IDs. The special \
             value of 'anonymous' may be provided instead of the anonymous tokens accessor ID",
        ),
        Flag::text(
            "description",
            "string",
            "A description of the new cloned token",
        ),
        FORMAT,
        DEPRECATED_ID,
    ],
    http: Http::Server,
};

/// `cairn acl token clone -accessor-id ... [-description ...]`.
async fn clone(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&CLONE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let accessor = match accessor_flag(
        &cmd,
        "Cannot update a token without specifying the -accessor-id parameter",
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let id = match token_accessor(&cmd.client, &accessor).await {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining token Accessor ID: {e}")),
    };
    let body = json!({ "Description": cmd.p.text_or_empty("description") });
    match cmd
        .put_json::<Token>(&format!("/v1/acl/token/{id}/clone"), &body)
        .await
    {
        Ok(t) => {
            cmd.print_token(&t);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error cloning token: {e}")),
    }
}

const DELETE: Spec = Spec {
    usage: "
Usage: cairn acl token delete [options] -accessor-id TOKEN

    Deletes an ACL token by providing either the ID or a unique ID prefix.

    Delete by prefix:

        $ cairn acl token delete -accessor-id b6b85

    Delete by full ID:

        $ cairn acl token delete -accessor-id b6b856da-5193-4e78-845a-7d61ca8371ba
",
    flags: &[ACCESSOR_ID, DEPRECATED_ID],
    http: Http::Server,
};

/// `cairn acl token delete -accessor-id ...`.
async fn delete(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&DELETE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let accessor = match accessor_flag(&cmd, "Must specify the -accessor-id parameter") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let id = match token_accessor(&cmd.client, &accessor).await {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining token ID: {e}")),
    };
    match cmd.client.delete(&format!("/v1/acl/token/{id}"), &[]).await {
        Ok(_) => {
            out(&format!("Token {id:?} deleted successfully"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting token {id:?}: {e}")),
    }
}

const LIST: Spec = Spec {
    usage: "
Usage: cairn acl token list [options]

  List all the ACL tokens.

          $ cairn acl token list
",
    flags: &[META, FORMAT],
    http: Http::Server,
};

/// `cairn acl token list`.
async fn list(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&LIST, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd
        .client
        .get_json::<Vec<Token>>("/v1/acl/tokens", &[])
        .await
    {
        Ok(mut list) => {
            match cmd.format {
                format::Format::Pretty => print_list(format::token_list(&list, cmd.meta)),
                format::Format::Json => {
                    // Go's list entries carry `Legacy`.
                    for t in &mut list {
                        t.legacy = Some(false);
                    }
                    out(&format::json(&list));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to retrieve the token list: {e}")),
    }
}
