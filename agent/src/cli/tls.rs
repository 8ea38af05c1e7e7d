//! `cairn tls ca create` and `cairn tls cert create`: a private CA for the agents of a cluster
//! and the certificates it signs, with Consul's flags, file names, output lines and errors, so
//! that a runbook written for `consul tls` works unchanged (and its files work with either).
//!
//! Files are written to the current directory, as Consul does. Private keys are created with
//! mode 0600 (Consul leaves them to the umask): they grant the authority of a server.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use super::output::{err, fail, out};
use super::spec::{Http, Spec};
use crate::flags::Flag;
use crate::tls::generate::{self, CaOptions, CertOptions};

const HELP: &str = "Usage: cairn tls <subcommand> <subcommand> [options]

  This command has subcommands for interacting with Cairn's built-in TLS
  functionality.

  Create a CA

    $ cairn tls ca create

  Create a server certificate

    $ cairn tls cert create -server

  Create a client certificate

    $ cairn tls cert create -client

Subcommands:
    ca      Helpers for CAs
    cert    Helpers for certificates";

const CA_CREATE: Spec = Spec {
    usage: "
Usage: cairn tls ca create [options]

  Create a new CA for the agents of a cluster:

  $ cairn tls ca create
  ==> Saved consul-agent-ca.pem
  ==> Saved consul-agent-ca-key.pem
",
    flags: &[
        Flag::uint(
            "days",
            "Provide number of days the CA is valid for from now on. Defaults to 5 years.",
        ),
        Flag::text(
            "domain",
            "string",
            "Domain of the cluster. Only used in combination with -name-constraint. Defaults \
             to consul.",
        ),
        Flag::bool(
            "name-constraint",
            "Add name constraints for the CA. Results in rejecting certificates for other DNS \
             than specified. If turned on localhost and -domain will be added to the allowed \
             DNS. If the UI is going to be served over HTTPS its DNS has to be added with \
             -additional-name-constraint. It is not possible to add that after the fact! \
             Defaults to false.",
        ),
        Flag::list(
            "additional-name-constraint",
            "value",
            "Add name constraints for the CA. Results in rejecting certificates for other DNS \
             than specified. Can be used multiple times. Only used in combination with \
             -name-constraint.",
        ),
        Flag::text(
            "common-name",
            "string",
            "Common Name of CA. Defaults to Consul Agent CA.",
        ),
    ],
    http: Http::None,
};

const CERT_CREATE: Spec = Spec {
    usage: "
Usage: cairn tls cert create [options]

  Create a new certificate

  $ cairn tls cert create -server
  ==> WARNING: Server Certificates grants authority to become a
      server and access all state in the cluster including root keys
      and all ACL tokens. Do not distribute them to production hosts
      that are not server nodes. Store them as securely as CA keys.
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-server-consul-0.pem
  ==> Saved dc1-server-consul-0-key.pem
  $ cairn tls cert create -client
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-client-consul-0.pem
  ==> Saved dc1-client-consul-0-key.pem
",
    flags: &[
        Flag::text(
            "ca",
            "string",
            "Provide path to the ca. Defaults to #DOMAIN#-agent-ca.pem.",
        ),
        Flag::text(
            "key",
            "string",
            "Provide path to the key. Defaults to #DOMAIN#-agent-ca-key.pem.",
        ),
        Flag::bool("server", "Generate server certificate."),
        Flag::bool("client", "Generate client certificate."),
        Flag::bool("cli", "Generate cli certificate."),
        Flag::text(
            "node",
            "string",
            "When generating a server cert and this is set an additional dns name is included \
             of the form <node>.server.<datacenter>.<domain>.",
        ),
        Flag::uint(
            "days",
            "Provide number of days the certificate is valid for from now on. Defaults to 1 \
             year.",
        ),
        Flag::text(
            "dc",
            "string",
            "Provide the datacenter. Matters only for -server certificates. Defaults to dc1.",
        ),
        Flag::text(
            "domain",
            "string",
            "Provide the domain. Matters only for -server certificates.",
        ),
        Flag::list(
            "additional-dnsname",
            "value",
            "Provide an additional dnsname for Subject Alternative Names. localhost is always \
             included. This flag may be provided multiple times.",
        ),
        Flag::list(
            "additional-ipaddress",
            "value",
            "Provide an additional ipaddress for Subject Alternative Names. 127.0.0.1 is \
             always included. This flag may be provided multiple times.",
        ),
    ],
    http: Http::None,
};

/// Runs `cairn tls ...`.
pub(crate) fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, HELP) {
        return code;
    }
    let rest = &args[1..];
    match args[0].as_str() {
        "ca" => match rest.first().map(String::as_str) {
            Some("create") => ca_create(&rest[1..]),
            None | Some("-h" | "-help" | "--help") => {
                out(
                    "Usage: cairn tls ca <subcommand> [options]\n\nSubcommands:\n    create    Create a new consul CA",
                );
                ExitCode::SUCCESS
            }
            Some(other) => super::unknown_subcommand("tls ca", other, HELP),
        },
        "cert" => match rest.first().map(String::as_str) {
            Some("create") => cert_create(&rest[1..]),
            None | Some("-h" | "-help" | "--help") => {
                out(
                    "Usage: cairn tls cert <subcommand> [options]\n\nSubcommands:\n    create    Create a new certificate",
                );
                ExitCode::SUCCESS
            }
            Some(other) => super::unknown_subcommand("tls cert", other, HELP),
        },
        other => super::unknown_subcommand("tls", other, HELP),
    }
}

/// Writes `content` to a new file `name` (refusing to replace one), with `mode`.
fn write_new(name: &str, content: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(name)
        .map_err(|e| format!("open {name}: {e}"))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("write {name}: {e}"))
}

/// A day count from a flag, refusing 0 (a certificate that is never valid).
fn days(p: &crate::flags::Parsed, default: u32) -> Result<u32, String> {
    if !p.is_set("days") {
        return Ok(default);
    }
    match u32::try_from(p.uint("days")) {
        Ok(0) | Err(_) => Err("-days must be between 1 and 4294967295".into()),
        Ok(d) => Ok(d),
    }
}

fn ca_create(args: &[String]) -> ExitCode {
    let p = match super::parse(&CA_CREATE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let domain = p.text("domain").unwrap_or("consul").to_string();
    let cert_file = format!("{domain}-agent-ca.pem");
    let key_file = format!("{domain}-agent-ca-key.pem");
    for f in [&cert_file, &key_file] {
        if Path::new(f).exists() {
            return fail(format!("{f} already exists."));
        }
    }
    let days = match days(&p, 1825) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut permitted = Vec::new();
    if p.bool("name-constraint") {
        permitted = p.list("additional-name-constraint");
        permitted.push(domain.clone());
        permitted.push("localhost".into());
    }
    let ca = match generate::create_ca(&CaOptions {
        days,
        permitted_dns: permitted,
        common_name: p
            .text("common-name")
            .filter(|s| !s.is_empty())
            .map(String::from),
    }) {
        Ok(ca) => ca,
        Err(e) => return fail(e),
    };
    if let Err(e) = write_new(&cert_file, &ca.cert, 0o644) {
        return fail(e);
    }
    out(&format!("==> Saved {cert_file}"));
    if let Err(e) = write_new(&key_file, &ca.key, 0o600) {
        return fail(e);
    }
    out(&format!("==> Saved {key_file}"));
    ExitCode::SUCCESS
}

fn cert_create(args: &[String]) -> ExitCode {
    let p = match super::parse(&CERT_CREATE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let ca = p.text("ca").unwrap_or("#DOMAIN#-agent-ca.pem");
    let key = p.text("key").unwrap_or("#DOMAIN#-agent-ca-key.pem");
    if ca.is_empty() {
        return fail("Please provide the ca");
    }
    if key.is_empty() {
        return fail("Please provide the key");
    }
    let (server, client, cli) = (p.bool("server"), p.bool("client"), p.bool("cli"));
    if [server, client, cli].iter().filter(|b| **b).count() != 1 {
        return fail("Please provide either -server, -client, or -cli");
    }
    let node = p.text("node").unwrap_or_default();
    if !node.is_empty() && !server {
        return fail("-node requires -server");
    }
    let dc = p.text("dc").unwrap_or("dc1");
    let domain = p.text("domain").unwrap_or("consul");
    let days = match days(&p, 365) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut dns_names: Vec<String> = p
        .list("additional-dnsname")
        .iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    let mut ip_addresses = Vec::new();
    for ip in p.list("additional-ipaddress") {
        let ip = ip.trim();
        if ip.is_empty() {
            continue;
        }
        match ip.parse::<IpAddr>() {
            Ok(a) => ip_addresses.push(a),
            Err(_) => {
                return fail(format!(
                    "invalid -additional-ipaddress {ip:?}: not an IP address"
                ));
            }
        }
    }
    let (role, server_and_client_auth) = if server {
        ("server", true)
    } else if client {
        ("client", true)
    } else {
        ("cli", false)
    };
    let name = format!("{role}.{dc}.{domain}");
    if server && !node.is_empty() {
        dns_names.push(format!("{node}.server.{dc}.{domain}"));
    }
    dns_names.push(name.clone());
    dns_names.push("localhost".into());
    if role != "cli" {
        ip_addresses.push(IpAddr::from([127, 0, 0, 1]));
    }
    let prefix = format!("{dc}-{role}-{domain}");
    let Some((cert_file, key_file)) = (0..=10_000).find_map(|i| {
        let cert = format!("{prefix}-{i}.pem");
        let key = format!("{prefix}-{i}-key.pem");
        (!Path::new(&cert).exists() && !Path::new(&key).exists()).then_some((cert, key))
    }) else {
        return fail("Could not find a filename that doesn't already exist");
    };
    let ca_file = ca.replacen("#DOMAIN#", domain, 1);
    let ca_key_file = key.replacen("#DOMAIN#", domain, 1);
    let ca_pem = match std::fs::read_to_string(&ca_file) {
        Ok(s) => s,
        Err(e) => return fail(format!("Error reading CA: open {ca_file}: {e}")),
    };
    let ca_key_pem = match std::fs::read_to_string(&ca_key_file) {
        Ok(s) => s,
        Err(e) => return fail(format!("Error reading CA key: open {ca_key_file}: {e}")),
    };
    if server {
        out(
            "==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.",
        );
    }
    out(&format!("==> Using {ca_file} and {ca_key_file}"));
    let made = match generate::create_cert(
        &ca_pem,
        &ca_key_pem,
        &CertOptions {
            name,
            dns_names,
            ip_addresses,
            days,
            server_and_client_auth,
        },
    ) {
        Ok(m) => m,
        Err(e) => {
            err(&e);
            return ExitCode::from(1);
        }
    };
    if let Err(e) = write_new(&cert_file, &made.cert, 0o644) {
        return fail(e);
    }
    out(&format!("==> Saved {cert_file}"));
    if let Err(e) = write_new(&key_file, &made.key, 0o600) {
        return fail(e);
    }
    out(&format!("==> Saved {key_file}"));
    ExitCode::SUCCESS
}
