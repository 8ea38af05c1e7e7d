//! `cairn acl role create|read|update|delete|list`: ACL roles, named sets of policies and
//! identities that tokens link to instead of repeating them.
//!
//! Update merges with the current role unless `-no-merge`, as Consul's command does: given
//! policies and identities are added, the name and description replaced when given.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::types::Role;
use super::{
    Cmd, FORMAT, META, format, link_id, link_name, node_identities, policy_id, print_list, role_id,
    role_id_by_name, service_identities, templated_policies,
};
use crate::cli::output::{err, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("create", "Create an ACL role"),
    ("delete", "Delete an ACL role"),
    ("list", "Lists ACL roles"),
    ("read", "Read an ACL role"),
    ("update", "Update an ACL role"),
];

/// The group's help.
fn help() -> String {
    crate::cli::group_usage(
        "Usage: cairn acl role <subcommand> [options] [args]\n\n  \
         This command has subcommands for managing Cairn's ACL roles.\n\n  \
         Create a new ACL role:\n\n      \
         $ cairn acl role create -name \"new-role\" -policy-name \"policy-1\"\n\n  \
         List all roles:\n\n      \
         $ cairn acl role list\n\n  \
         Read a role:\n\n      \
         $ cairn acl role read -name new-role\n\n  \
         Delete a role:\n\n      \
         $ cairn acl role delete -name new-role",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn acl role ...`.
pub(super) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = crate::cli::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return crate::cli::unknown_subcommand("acl role", "", &help());
    };
    match name.as_str() {
        "create" => create(rest).await,
        "read" => read(rest).await,
        "update" => update(rest).await,
        "delete" => delete(rest).await,
        "list" => list(rest).await,
        other => crate::cli::unknown_subcommand("acl role", other, &help()),
    }
}

const POLICY_ID: Flag = Flag::list(
    "policy-id",
    "string",
    "ID of a policy to use for this role. May be specified multiple times",
);
const POLICY_NAME: Flag = Flag::list(
    "policy-name",
    "string",
    "Name of a policy to use for this role. May be specified multiple times",
);
const SERVICE_IDENTITY: Flag = Flag::list(
    "service-identity",
    "string",
    "Name of a service identity to use for this role. May be specified multiple times. \
     Format is the SERVICENAME or SERVICENAME:DATACENTER1,DATACENTER2,...",
);
const NODE_IDENTITY: Flag = Flag::list(
    "node-identity",
    "string",
    "Name of a node identity to use for this role. May be specified multiple times. Format \
     is NODENAME:DATACENTER",
);
const TEMPLATED_POLICY: Flag = Flag::text(
    "templated-policy",
    "string",
    "The templated policy name. Use -var flag to specify variables when required.",
);
const VAR: Flag = Flag::list(
    "var",
    "string",
    "Templated policy variables. Must be used in combination with -templated-policy flag. \
     Format is VariableName:Value",
);
const TEMPLATED_POLICY_FILE: Flag = Flag::text(
    "templated-policy-file",
    "path",
    "Path to a file containing templated policies and variables, HCL or JSON: \
     TemplatedPolicy \"builtin/service\" { Name = \"api\" }, repeatable.",
);
const DESCRIPTION: Flag = Flag::text("description", "string", "A description of the role");

const CREATE: Spec = Spec {
    usage: "
Usage: cairn acl role create -name NAME [options]

    Create a new role:

        $ cairn acl role create -name \"new-role\" \\
                                -description \"This is an example role\" \\
                                -policy-id b52fc3de-5 \\
                                -policy-name \"acl-replication\" \\
                                -service-identity \"web\" \\
                                -service-identity \"db:east,west\"
",
    flags: &[
        META,
        Flag::text(
            "name",
            "string",
            "The new role's name. This flag is required.",
        ),
        DESCRIPTION,
        POLICY_ID,
        POLICY_NAME,
        SERVICE_IDENTITY,
        NODE_IDENTITY,
        TEMPLATED_POLICY,
        TEMPLATED_POLICY_FILE,
        VAR,
        FORMAT,
    ],
    http: Http::Server,
};

/// Resolves `-policy-id` prefixes into links.
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

/// `cairn acl role create`.
async fn create(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&CREATE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let p = &cmd.p;
    let name = p.text_or_empty("name");
    if name.is_empty() {
        err("Missing require '-name' flag");
        return fail(CREATE.help());
    }
    let linked = [
        "policy-name",
        "policy-id",
        "service-identity",
        "node-identity",
        "templated-policy",
        "templated-policy-file",
    ]
    .iter()
    .any(|f| p.is_set(f));
    if !linked {
        return fail(
            "Cannot create a role without specifying -policy-name, -policy-id, \
             -service-identity, -node-identity, -templated-policy, or -templated-policy-file \
             at least once",
        );
    }
    let mut policies: Vec<Value> = p.list("policy-name").iter().map(|n| link_name(n)).collect();
    match policy_links_by_id(&cmd, &p.list("policy-id")).await {
        Ok(mut l) => policies.append(&mut l),
        Err(code) => return code,
    }
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
    let body = json!({
        "Name": name,
        "Description": p.text_or_empty("description"),
        "Policies": policies,
        "ServiceIdentities": services,
        "NodeIdentities": nodes,
        "TemplatedPolicies": templated,
    });
    match cmd.put_json::<Role>("/v1/acl/role", &body).await {
        Ok(r) => {
            cmd.print_role(&r);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to create new role: {e}")),
    }
}

/// `-id`, of the commands that find one role.
const ID: Flag = Flag::text(
    "id",
    "string",
    "The ID of the role. It may be specified as a unique ID prefix but will error if the \
     prefix matches multiple role IDs",
);

const READ: Spec = Spec {
    usage: "
Usage: cairn acl role read [options] ROLE

    This command will retrieve and print out the details
    of a single role.

    Read:

        $ cairn acl role read -id fdabbcb5-9de5-4b1a-961f-77214ae88cba

    Read by name:

        $ cairn acl role read -name my-role
",
    flags: &[
        META,
        ID,
        Flag::text("name", "string", "The name of the role to read."),
        FORMAT,
    ],
    http: Http::Server,
};

/// `cairn acl role read -id|-name`.
async fn read(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&READ, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (id, name) = (cmd.p.text_or_empty("id"), cmd.p.text_or_empty("name"));
    if id.is_empty() && name.is_empty() {
        return fail("Must specify either the -id or -name parameters");
    }
    let found = if !id.is_empty() {
        let id = match role_id(&cmd.client, id).await {
            Ok(id) => id,
            Err(e) => return fail(format!("Error determining role ID: {e}")),
        };
        match super::read_optional::<Role>(&cmd.client, &format!("/v1/acl/role/{id}")).await {
            Ok(Some(r)) => r,
            Ok(None) => return fail(format!("Role not found with ID {id:?}")),
            Err(e) => return fail(format!("Error reading role {id:?}: {e}")),
        }
    } else {
        let path = format!("/v1/acl/role/name/{name}");
        match super::read_optional::<Role>(&cmd.client, &path).await {
            Ok(Some(r)) => r,
            Ok(None) => return fail(format!("Role not found with name {name:?}")),
            Err(e) => return fail(format!("Error reading role {name:?}: {e}")),
        }
    };
    cmd.print_role(&found);
    ExitCode::SUCCESS
}

const UPDATE: Spec = Spec {
    usage: "
Usage: cairn acl role update [options]

  Updates a role. By default it will merge the role information with its
  current state so that you do not have to provide all parameters. This
  behavior can be disabled by passing -no-merge.

  Rename the role:

          $ cairn acl role update -id abcd -name \"better-name\"

  Update all editable fields of the role:

          $ cairn acl role update -id abcd \\
                                  -name \"better-name\" \\
                                  -description \"replication\" \\
                                  -policy-name \"token-replication\" \\
                                  -service-identity \"web\"
",
    flags: &[
        META,
        ID,
        Flag::text("name", "string", "The role name."),
        DESCRIPTION,
        POLICY_ID,
        POLICY_NAME,
        SERVICE_IDENTITY,
        NODE_IDENTITY,
        TEMPLATED_POLICY,
        TEMPLATED_POLICY_FILE,
        VAR,
        Flag::bool(
            "no-merge",
            "Do not merge the current role information with what is provided to the command. \
             Instead overwrite all fields with the exception of the role ID which is \
             immutable.",
        ),
        FORMAT,
    ],
    http: Http::Server,
};

/// `cairn acl role update -id ...`.
async fn update(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&UPDATE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let p = &cmd.p;
    let partial = p.text_or_empty("id");
    if partial.is_empty() {
        return fail("Cannot update a role without specifying the -id parameter");
    }
    let id = match role_id(&cmd.client, partial).await {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining role ID: {e}")),
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
    // The current role is read in both modes, so a wrong ID fails before anything is written.
    let current =
        match super::read_optional::<Role>(&cmd.client, &format!("/v1/acl/role/{id}")).await {
            Ok(Some(r)) => r,
            Ok(None) => return fail(format!("Role not found with ID {id:?}")),
            Err(e) => return fail(format!("Error when retrieving current role: {e}")),
        };
    let new_ids = match policy_links_by_id(&cmd, &p.list("policy-id")).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let body = if p.bool("no-merge") {
        let mut policies: Vec<Value> = p.list("policy-name").iter().map(|n| link_name(n)).collect();
        policies.extend(new_ids);
        json!({
            "ID": id,
            "Name": p.text_or_empty("name"),
            "Description": p.text_or_empty("description"),
            "Policies": policies,
            "ServiceIdentities": services,
            "NodeIdentities": nodes,
            "TemplatedPolicies": templated,
        })
    } else {
        let mut r = current;
        let name = p.text_or_empty("name");
        if !name.is_empty() {
            r.name = name.to_string();
        }
        let description = p.text_or_empty("description");
        if !description.is_empty() {
            r.description = description.to_string();
        }
        let mut policies: Vec<Value> = r.policies.iter().map(|l| link_id(&l.id)).collect();
        for n in p.list("policy-name") {
            if !r.policies.iter().any(|l| l.name == n) {
                policies.push(link_name(&n));
            }
        }
        for l in new_ids {
            let new = l["ID"].as_str().unwrap_or_default();
            if !r.policies.iter().any(|c| c.id == new) {
                policies.push(l);
            }
        }
        for s in services {
            match r
                .service_identities
                .iter_mut()
                .find(|c| c.service_name == s.service_name)
            {
                Some(c) => *c = s,
                None => r.service_identities.push(s),
            }
        }
        for n in nodes {
            if !r.node_identities.contains(&n) {
                r.node_identities.push(n);
            }
        }
        for t in templated {
            if !r.templated_policies.contains(&t) {
                r.templated_policies.push(t);
            }
        }
        json!({
            "ID": id,
            "Name": r.name,
            "Description": r.description,
            "Policies": policies,
            "ServiceIdentities": r.service_identities,
            "NodeIdentities": r.node_identities,
            "TemplatedPolicies": r.templated_policies,
        })
    };
    match cmd
        .put_json::<Role>(&format!("/v1/acl/role/{id}"), &body)
        .await
    {
        Ok(r) => {
            cmd.print_role(&r);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error updating role {id:?}: {e}")),
    }
}

const DELETE: Spec = Spec {
    usage: "
Usage: cairn acl role delete [options] -id ROLE

    Deletes an ACL role by providing either the ID or a unique ID prefix.

    Delete by prefix:

        $ cairn acl role delete -id b6b85

    Delete by full ID:

        $ cairn acl role delete -id b6b856da-5193-4e78-845a-7d61ca8371ba

    Delete by name:

        $ cairn acl role delete -name my-role
",
    flags: &[
        ID,
        Flag::text("name", "string", "The name of the role to delete."),
    ],
    http: Http::Server,
};

/// `cairn acl role delete -id|-name`.
async fn delete(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&DELETE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (id, name) = (cmd.p.text_or_empty("id"), cmd.p.text_or_empty("name"));
    if id.is_empty() && name.is_empty() {
        return fail("Must specify either the -id or -name parameters");
    }
    let resolved = if id.is_empty() {
        role_id_by_name(&cmd.client, name).await
    } else {
        role_id(&cmd.client, id).await
    };
    let id = match resolved {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining role ID: {e}")),
    };
    match cmd.client.delete(&format!("/v1/acl/role/{id}"), &[]).await {
        Ok(_) => {
            out(&format!("Role {id:?} deleted successfully"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting role {id:?}: {e}")),
    }
}

const LIST: Spec = Spec {
    usage: "
Usage: cairn acl role list [options]

    Lists all the ACL roles.

    Example:

        $ cairn acl role list
",
    flags: &[META, FORMAT],
    http: Http::Server,
};

/// `cairn acl role list`.
async fn list(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&LIST, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd.client.get_json::<Vec<Role>>("/v1/acl/roles", &[]).await {
        Ok(list) => {
            match cmd.format {
                format::Format::Pretty => print_list(format::role_list(&list, cmd.meta)),
                format::Format::Json => out(&format::json(&list)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to retrieve the role list: {e}")),
    }
}
