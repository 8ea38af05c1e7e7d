//! `cairn docker-entrypoint`: the container image's entrypoint, in the binary because the
//! image (`FROM scratch`) has no shell to run Consul's `docker-entrypoint.sh`.
//!
//! It keeps the conventions of Consul's image, so compose files and `docker run` lines written
//! for `hashicorp/consul` work unchanged:
//! - `agent ...` runs the agent with `-data-dir=$CONSUL_DATA_DIR` (default `/consul/data`, the
//!   image's volume) and `-config-dir=$CONSUL_CONFIG_DIR` (default `/consul/config`), before the
//!   given arguments, so flags on the command line still win;
//! - `CONSUL_LOCAL_CONFIG` (JSON) is written to `$CONSUL_CONFIG_DIR/local.json` first;
//! - `CONSUL_BIND_INTERFACE` / `CONSUL_CLIENT_INTERFACE` name an interface whose first IPv4
//!   address becomes `-bind` / `-client` (`CONSUL_BIND` / `CONSUL_CLIENT` give the option
//!   itself instead). The client option also keeps `127.0.0.1`, so `docker exec <c> cairn
//!   members` and the image's `HEALTHCHECK` reach the agent from inside the container;
//! - anything else (`members`, `version`, `-version`) is a CLI command.
//!
//! The agent then runs in this process, as PID 1: SIGTERM from `docker stop` reaches it
//! directly and is handled by the agent's own rules (docs/decisions.md, "The container
//! image"). There is no privilege drop: the image runs as the non-root user `cairn` from the
//! start, so Consul's `CONSUL_UID`/`CONSUL_GID`/`CONSUL_DISABLE_PERM_MGMT` have nothing to do.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;

/// Where the image keeps agent state (its declared volume), as Consul's image does.
pub const DEFAULT_DATA_DIR: &str = "/consul/data";
/// Where the image reads configuration files from, as Consul's image does.
pub const DEFAULT_CONFIG_DIR: &str = "/consul/config";

/// What the entrypoint runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// `cairn agent` with these arguments (`agent` excluded).
    Agent {
        /// The agent's arguments.
        args: Vec<String>,
        /// `CONSUL_LOCAL_CONFIG`, to write to `local.json` in the config directory.
        local_config: Option<(String, String)>,
        /// Lines to print first (what the interface lookups found).
        notes: Vec<String>,
    },
    /// A CLI command with these arguments.
    Cli(Vec<String>),
}

/// Decides what to run from the container's arguments and environment.
///
/// `env` reads a variable (empty counts as unset, as in the shell script's `-z` tests);
/// `iface` finds an interface's first IPv4 address. Both are parameters so the rules are
/// tested without a container.
pub fn plan(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    iface: &dyn Fn(&str) -> Option<Ipv4Addr>,
) -> Result<Plan, String> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    if args.first().map(String::as_str) != Some("agent") {
        return Ok(Plan::Cli(args.to_vec()));
    }
    let mut notes = Vec::new();
    let mut lookup = |var: &str, what: &str| -> Result<Option<IpAddr>, String> {
        let Some(name) = env(var) else {
            return Ok(None);
        };
        let ip = iface(&name)
            .ok_or_else(|| format!("Could not find IP for interface '{name}', exiting"))?;
        notes.push(format!(
            "==> Found address '{ip}' for interface '{name}', setting {what} option..."
        ));
        Ok(Some(IpAddr::V4(ip)))
    };
    let bind = match env("CONSUL_BIND") {
        Some(opt) => Some(opt),
        None => lookup("CONSUL_BIND_INTERFACE", "bind")?.map(|ip| format!("-bind={ip}")),
    };
    let client = match env("CONSUL_CLIENT") {
        Some(opt) => Some(opt),
        None => lookup("CONSUL_CLIENT_INTERFACE", "client")?
            .map(|ip| format!("-client={ip} {}", Ipv4Addr::LOCALHOST)),
    };
    let data_dir = env("CONSUL_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
    let config_dir = env("CONSUL_CONFIG_DIR").unwrap_or_else(|| DEFAULT_CONFIG_DIR.to_string());
    let local_config = env("CONSUL_LOCAL_CONFIG").map(|text| {
        let path = Path::new(&config_dir).join("local.json");
        (path.display().to_string(), text)
    });
    let mut out = vec![
        format!("-data-dir={data_dir}"),
        format!("-config-dir={config_dir}"),
    ];
    // The shell script splits these on spaces (`$CONSUL_BIND` unquoted); a whole option in one
    // word is the common case, and `-client=a b` must stay one word for two addresses.
    for opt in [bind, client].into_iter().flatten() {
        if opt.starts_with("-client=") || opt.starts_with("-bind=") {
            out.push(opt);
        } else {
            out.extend(opt.split_whitespace().map(str::to_string));
        }
    }
    out.extend(args[1..].iter().cloned());
    Ok(Plan::Agent {
        args: out,
        local_config,
        notes,
    })
}

/// The first IPv4 address of a network interface, as Consul's script reads it from `ip addr`.
fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != name {
            return None;
        }
        let sin = *ifa.address.as_ref()?.as_sockaddr_in()?;
        Some(sin.ip())
    })
}

/// Runs the entrypoint with the container's arguments (`docker-entrypoint` excluded).
pub fn run(args: &[String]) -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    match plan(args, &env, &interface_ipv4) {
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Ok(Plan::Cli(args)) => crate::cli::run(&args),
        Ok(Plan::Agent {
            args,
            local_config,
            notes,
        }) => {
            for n in notes {
                eprintln!("{n}");
            }
            if let Some((path, text)) = local_config
                && let Err(e) = std::fs::write(&path, format!("{text}\n"))
            {
                eprintln!("==> could not write CONSUL_LOCAL_CONFIG to {path}: {e}");
                return ExitCode::FAILURE;
            }
            crate::run::run_agent(&args)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn eth0(name: &str) -> Option<Ipv4Addr> {
        (name == "eth0").then_some(Ipv4Addr::new(10, 1, 2, 3))
    }

    /// The image's default command: data and config directories first, the user's flags last.
    #[test]
    fn agent_gets_the_image_directories() {
        let p = plan(
            &args(&["agent", "-dev", "-client", "0.0.0.0"]),
            &env_of(&[]),
            &eth0,
        );
        assert_eq!(
            p,
            Ok(Plan::Agent {
                args: args(&[
                    "-data-dir=/consul/data",
                    "-config-dir=/consul/config",
                    "-dev",
                    "-client",
                    "0.0.0.0"
                ]),
                local_config: None,
                notes: vec![],
            })
        );
    }

    /// Consul's variables: interfaces become addresses, local config goes to `local.json`.
    #[test]
    fn consul_image_variables() {
        let env = env_of(&[
            ("CONSUL_BIND_INTERFACE", "eth0"),
            ("CONSUL_CLIENT_INTERFACE", "eth0"),
            ("CONSUL_LOCAL_CONFIG", r#"{"server": true}"#),
            ("CONSUL_DATA_DIR", "/data"),
        ]);
        let Ok(Plan::Agent {
            args: a,
            local_config,
            notes,
        }) = plan(&args(&["agent", "-server"]), &env, &eth0)
        else {
            panic!("an agent plan");
        };
        assert_eq!(
            a,
            args(&[
                "-data-dir=/data",
                "-config-dir=/consul/config",
                "-bind=10.1.2.3",
                "-client=10.1.2.3 127.0.0.1",
                "-server"
            ])
        );
        assert_eq!(
            local_config,
            Some((
                "/consul/config/local.json".into(),
                r#"{"server": true}"#.into()
            ))
        );
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("'10.1.2.3' for interface 'eth0'"));
    }

    /// `CONSUL_BIND`/`CONSUL_CLIENT` are options themselves and win over the interfaces.
    #[test]
    fn explicit_options_win() {
        let env = env_of(&[
            ("CONSUL_BIND", "-bind=192.0.2.1"),
            ("CONSUL_BIND_INTERFACE", "eth9"),
            ("CONSUL_CLIENT", "-client 0.0.0.0"),
        ]);
        let Ok(Plan::Agent { args: a, .. }) = plan(&args(&["agent"]), &env, &eth0) else {
            panic!("an agent plan");
        };
        assert_eq!(&a[2..], args(&["-bind=192.0.2.1", "-client", "0.0.0.0"]));
    }

    /// A missing interface stops the start with Consul's message.
    #[test]
    fn missing_interface_is_an_error() {
        let env = env_of(&[("CONSUL_BIND_INTERFACE", "eth9")]);
        assert_eq!(
            plan(&args(&["agent"]), &env, &eth0),
            Err("Could not find IP for interface 'eth9', exiting".into())
        );
    }

    /// Everything else is the CLI: `members`, `version`, `-version`, nothing at all.
    #[test]
    fn other_commands_are_the_cli() {
        for a in [&["members"][..], &["-version"], &["kv", "get", "x"], &[]] {
            assert_eq!(plan(&args(a), &env_of(&[]), &eth0), Ok(Plan::Cli(args(a))));
        }
    }

    /// The real lookup finds loopback's address.
    #[test]
    fn loopback_has_an_address() {
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("cairn-no-such-if"), None);
    }
}
