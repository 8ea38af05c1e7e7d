//! `cairn acl policy create|read|update|delete|list`: ACL policies, their rules given inline,
//! from a file (`@rules.hcl`) or from stdin (`-`).
//!
//! Update merges with the current policy unless `-no-merge`, as Consul's command does, so that
//! renaming a policy does not need its rules again.

use std::process::ExitCode;

use serde_json::json;

use super::types::Policy;
use super::{Cmd, FORMAT, META, format, policy_id, policy_id_by_name, print_list};
use crate::cli::output::{err, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("create", "Create an ACL policy"),
    ("delete", "Delete an ACL policy"),
    ("list", "Lists ACL policies"),
    ("read", "Read an ACL policy"),
    ("update", "Update an ACL policy"),
];

/// The group's help.
fn help() -> String {
    crate::cli::group_usage(
        "Usage: cairn acl policy <subcommand> [options] [args]\n\n  \
         This command has subcommands for managing Cairn's ACL policies.\n\n  \
         Create a new ACL policy:\n\n      \
         $ cairn acl policy create -name \"new-policy\" -rules @rules.hcl\n\n  \
         List all policies:\n\n      \
         $ cairn acl policy list\n\n  \
         Read a policy:\n\n      \
         $ cairn acl policy read -name new-policy\n\n  \
         Update a policy:\n\n      \
         $ cairn acl policy update -name new-policy -description \"updated\"\n\n  \
         Delete a policy:\n\n      \
         $ cairn acl policy delete -name new-policy",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn acl policy ...`.
pub(super) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = crate::cli::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return crate::cli::unknown_subcommand("acl policy", "", &help());
    };
    match name.as_str() {
        "create" => create(rest).await,
        "read" => read(rest).await,
        "update" => update(rest).await,
        "delete" => delete(rest).await,
        "list" => list(rest).await,
        other => crate::cli::unknown_subcommand("acl policy", other, &help()),
    }
}

/// `-rules`, shared by create and update.
const RULES: Flag = Flag::text(
    "rules",
    "string",
    "The policy rules. May be prefixed with '@' to indicate that the value is a file path \
     to load the rules from. '-' may also be given to indicate that the rules are available \
     on stdin",
);

/// `-valid-datacenter`, shared by create and update.
const VALID_DC: Flag = Flag::list(
    "valid-datacenter",
    "string",
    "Datacenter that the policy should be valid within. This flag may be specified multiple \
     times",
);

const CREATE: Spec = Spec {
    usage: "
Usage: cairn acl policy create -name NAME [options]

    The -rules option values allows loading the value from stdin, a file
    or the raw value. To use stdin pass '-' as the value. To load the value
    from a file prefix the value with an '@'. Any other values will be used
    directly.

    Create a new policy:

        $ cairn acl policy create -name \"new-policy\" \\
                                  -description \"This is an example policy\" \\
                                  -valid-datacenter \"dc1\" \\
                                  -valid-datacenter \"dc2\" \\
                                  -rules @rules.hcl
",
    flags: &[
        META,
        Flag::text(
            "name",
            "string",
            "The new policy's name. This flag is required.",
        ),
        Flag::text("description", "string", "A description of the policy"),
        VALID_DC,
        RULES,
        FORMAT,
    ],
    http: Http::Server,
};

/// `cairn acl policy create`.
async fn create(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&CREATE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let name = cmd.p.text_or_empty("name");
    if name.is_empty() {
        err("Missing require '-name' flag");
        return fail(CREATE.help());
    }
    let rules = match crate::cli::load_data(cmd.p.text_or_empty("rules")) {
        Ok(r) => r,
        Err(e) => return fail(format!("Error loading rules: {e}")),
    };
    let dcs = cmd.p.list("valid-datacenter");
    let body = json!({
        "Name": name,
        "Description": cmd.p.text_or_empty("description"),
        "Rules": rules,
        "Datacenters": dcs,
    });
    match cmd.put_json::<Policy>("/v1/acl/policy", &body).await {
        Ok(p) => {
            cmd.print_policy(&p);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to create new policy: {e}")),
    }
}

/// `-id` and `-name` of the commands that find one policy.
const ID: Flag = Flag::text(
    "id",
    "string",
    "The ID of the policy. It may be specified as a unique ID prefix but will error if the \
     prefix matches multiple policy IDs",
);

const READ: Spec = Spec {
    usage: "
Usage: cairn acl policy read [options] POLICY

    This command will retrieve and print out the details
    of a single policy.

    Read:

        $ cairn acl policy read -id fdabbcb5-9de5-4b1a-961f-77214ae88cba

    Read by name:

        $ cairn acl policy read -name my-policy
",
    flags: &[
        META,
        ID,
        Flag::text("name", "string", "The name of the policy to read."),
        FORMAT,
    ],
    http: Http::Server,
};

/// `cairn acl policy read -id|-name`.
async fn read(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&READ, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (id, name) = (cmd.p.text_or_empty("id"), cmd.p.text_or_empty("name"));
    if id.is_empty() && name.is_empty() {
        return fail("Must specify either the -id or -name parameters");
    }
    let (arg, found) = if !id.is_empty() {
        let id = match policy_id(&cmd.client, id).await {
            Ok(id) => id,
            Err(e) => return fail(format!("Error determining policy ID: {e}")),
        };
        let found =
            super::read_optional::<Policy>(&cmd.client, &format!("/v1/acl/policy/{id}")).await;
        (format!("id:{id}"), found)
    } else {
        let path = format!("/v1/acl/policy/name/{name}");
        let found = super::read_optional::<Policy>(&cmd.client, &path).await;
        (format!("name:{name}"), found)
    };
    match found {
        Ok(Some(p)) => {
            cmd.print_policy(&p);
            ExitCode::SUCCESS
        }
        Ok(None) => fail(format!("Error policy not found: {name}")),
        Err(e) => fail(format!("Error reading policy {arg:?}: {e}")),
    }
}

const UPDATE: Spec = Spec {
    usage: "
Usage: cairn acl policy update [options]

  Updates a policy. By default it will merge the policy information with its
  current state so that you do not have to provide all parameters. This
  behavior can be disabled by passing -no-merge.

  Rename the policy:

          $ cairn acl policy update -id abcd -name \"better-name\"

  Override all policy attributes:

          # this will remove any datacenter scope if provided and will remove
          # the description
          $ cairn acl policy update -id abcd -name \"better-name\" -rules @rules.hcl -no-merge
",
    flags: &[
        META,
        ID,
        Flag::text("name", "string", "The policies name."),
        Flag::text("description", "string", "A description of the policy"),
        VALID_DC,
        RULES,
        Flag::bool(
            "no-merge",
            "Do not merge the current policy information with what is provided to the \
             command. Instead overwrite all fields with the exception of the policy ID which \
             is immutable.",
        ),
        FORMAT,
    ],
    http: Http::Server,
};

/// `cairn acl policy update -id|-name ...`.
async fn update(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&UPDATE, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let p = &cmd.p;
    let (id, name) = (p.text_or_empty("id"), p.text_or_empty("name"));
    if id.is_empty() && name.is_empty() {
        return fail("Must specify either the -id or -name parameters");
    }
    let resolved = if id.is_empty() {
        policy_id_by_name(&cmd.client, name).await
    } else {
        policy_id(&cmd.client, id).await
    };
    let id = match resolved {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining policy ID: {e}")),
    };
    let rules = match crate::cli::load_data(p.text_or_empty("rules")) {
        Ok(r) => r,
        Err(e) => return fail(format!("Error loading data source: {e}")),
    };
    let dcs = p.list("valid-datacenter");
    let body = if p.bool("no-merge") {
        json!({
            "ID": id,
            "Name": name,
            "Description": p.text_or_empty("description"),
            "Rules": rules,
            "Datacenters": dcs,
        })
    } else {
        let path = format!("/v1/acl/policy/{id}");
        let current = match super::read_optional::<Policy>(&cmd.client, &path).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return fail(format!(
                    "Error reading policy {id:?}: Requested policy does not exist"
                ));
            }
            Err(e) => return fail(format!("Error reading policy {id:?}: {e}")),
        };
        // Only the flags given replace the current values.
        let pick = |flag: &str, cur: String, new: &str| {
            if p.is_set(flag) { new.to_string() } else { cur }
        };
        json!({
            "ID": id,
            "Name": pick("name", current.name, name),
            "Description": pick("description", current.description, p.text_or_empty("description")),
            "Rules": pick("rules", current.rules.unwrap_or_default(), &rules),
            "Datacenters": if dcs.is_empty() { current.datacenters.unwrap_or_default() } else { dcs },
        })
    };
    match cmd
        .put_json::<Policy>(&format!("/v1/acl/policy/{id}"), &body)
        .await
    {
        Ok(p) => {
            cmd.print_policy(&p);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error updating policy {id:?}: {e}")),
    }
}

const DELETE: Spec = Spec {
    usage: "
Usage: cairn acl policy delete [options] -id POLICY

    Deletes an ACL policy by providing either the ID or a unique ID prefix.

    Delete by prefix:

        $ cairn acl policy delete -id b6b85

    Delete by full ID:

        $ cairn acl policy delete -id b6b856da-5193-4e78-845a-7d61ca8371ba
",
    flags: &[
        ID,
        Flag::text("name", "string", "The name of the policy to delete."),
    ],
    http: Http::Server,
};

/// `cairn acl policy delete -id|-name`.
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
        policy_id_by_name(&cmd.client, name).await
    } else {
        policy_id(&cmd.client, id).await
    };
    let id = match resolved {
        Ok(id) => id,
        Err(e) => return fail(format!("Error determining policy ID: {e}")),
    };
    match cmd
        .client
        .delete(&format!("/v1/acl/policy/{id}"), &[])
        .await
    {
        Ok(_) => {
            out(&format!("Policy {id:?} deleted successfully"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting policy {id:?}: {e}")),
    }
}

const LIST: Spec = Spec {
    usage: "
Usage: cairn acl policy list [options]

    Lists all the ACL policies.

    Example:

        $ cairn acl policy list
",
    flags: &[META, FORMAT],
    http: Http::Server,
};

/// `cairn acl policy list`.
async fn list(args: &[String]) -> ExitCode {
    let cmd = match Cmd::setup(&LIST, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd
        .client
        .get_json::<Vec<Policy>>("/v1/acl/policies", &[])
        .await
    {
        Ok(list) => {
            match cmd.format {
                format::Format::Pretty => print_list(format::policy_list(&list, cmd.meta)),
                format::Format::Json => out(&format::json(&list)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Failed to retrieve the policy list: {e}")),
    }
}
