//! A CLI command's interface: its usage text, its own flags and the shared HTTP options it
//! takes (`-http-addr`, `-token`, ... and, for reads served by servers, `-datacenter` and
//! `-stale`). Parsing is the crate's one flag parser (`crate::flags`); this module only
//! adds the option sets every command shares and Consul's help layout for them.

use crate::flags::{self, Flag, ParseError, Parsed};

/// Which shared HTTP options a command takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Http {
    /// None: the command does not talk to an agent.
    None,
    /// `-http-addr`, `-token`, `-token-file`.
    Client,
    /// The client options plus `-datacenter` and `-stale`, for commands that read from servers.
    Server,
}

/// The options of every command that talks to an agent, with Consul's names and
/// environment variables.
const CLIENT_FLAGS: &[Flag] = &[
    Flag::text(
        "http-addr",
        "address",
        "The address and port of the agent's HTTP API, as http://host:port or host:port. \
         Also CONSUL_HTTP_ADDR. Default http://127.0.0.1:8500.",
    ),
    Flag::text(
        "token",
        "value",
        "ACL token to send with each request (X-Consul-Token). Also CONSUL_HTTP_TOKEN.",
    ),
    Flag::text(
        "token-file",
        "path",
        "File holding the ACL token; -token and CONSUL_HTTP_TOKEN take precedence. \
         Also CONSUL_HTTP_TOKEN_FILE.",
    ),
    Flag::text(
        "ca-file",
        "path",
        "Path to a CA file to use for TLS when communicating with the agent. Also \
         CONSUL_CACERT.",
    ),
    Flag::text(
        "ca-path",
        "path",
        "Path to a directory of CA certificates to use for TLS when communicating with the \
         agent. Also CONSUL_CAPATH.",
    ),
    Flag::text(
        "client-cert",
        "path",
        "Path to a client cert file to use for TLS when verify_incoming is enabled. Also \
         CONSUL_CLIENT_CERT.",
    ),
    Flag::text(
        "client-key",
        "path",
        "Path to a client key file to use for TLS when verify_incoming is enabled. Also \
         CONSUL_CLIENT_KEY.",
    ),
    Flag::text(
        "tls-server-name",
        "name",
        "The server name to use as the SNI host when connecting via TLS. Also \
         CONSUL_TLS_SERVER_NAME.",
    ),
];

/// The options of commands whose reads are served by the servers: agent-local endpoints
/// have no datacenter or consistency to choose.
const SERVER_FLAGS: &[Flag] = &[
    Flag::text(
        "datacenter",
        "name",
        "Datacenter to query. Defaults to the datacenter of the agent.",
    ),
    Flag::bool(
        "stale",
        "Allow any server to answer the read, not only the leader. Faster and scales reads, \
         but the answer may be slightly out of date.",
    ),
];

/// A command's interface, declared as a `const` next to the command.
///
/// Static data, so that `-h` needs no work beyond formatting and every command's interface
/// can be read in one place in its module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    /// The usage text: a `Usage:` line and a description.
    pub usage: &'static str,
    /// The command's own flags.
    pub flags: &'static [Flag],
    /// The shared HTTP options.
    pub http: Http,
}

impl Spec {
    fn http_flags(&self) -> &'static [Flag] {
        match self.http {
            Http::None => &[],
            Http::Client | Http::Server => CLIENT_FLAGS,
        }
    }

    fn server_flags(&self) -> &'static [Flag] {
        match self.http {
            Http::Server => SERVER_FLAGS,
            Http::None | Http::Client => &[],
        }
    }

    /// A flag this command accepts: its own, then the shared ones. A shared flag the command
    /// does not take (`-stale` on an agent-local command) is unknown, as in Consul.
    fn find(&self, name: &str) -> Option<&'static Flag> {
        self.flags
            .iter()
            .chain(self.http_flags())
            .chain(self.server_flags())
            .find(|f| f.name == name)
    }

    /// The help text: usage, then the HTTP options, then the command's options.
    ///
    /// Consul's layout: `HTTP API Options` first, `Command Options` after.
    pub(crate) fn help(&self) -> String {
        let mut out = self.usage.trim_matches('\n').to_string();
        out.push('\n');
        if self.http != Http::None {
            let http = self.http_flags().iter().chain(self.server_flags());
            flags::help_section(&mut out, "HTTP API Options", http);
        }
        if !self.flags.is_empty() {
            flags::help_section(&mut out, "Command Options", self.flags);
        }
        out
    }

    /// Parses `args` (after the command name) against this command's flags.
    pub(crate) fn parse(&self, args: &[String]) -> Result<Parsed, ParseError> {
        flags::parse(args, |name| self.find(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        usage: "\nUsage: cairn test\n",
        flags: &[Flag::bool("recurse", "r"), Flag::uint("flags", "f")],
        http: Http::Server,
    };

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// The shared options parse with the command's own; `-stale` only where servers answer.
    #[test]
    fn shared_http_options() {
        let p = SPEC
            .parse(&args(&[
                "-http-addr=h:1",
                "--stale",
                "-token",
                "t",
                "-recurse",
                "k",
            ]))
            .expect("parse");
        assert_eq!(p.text("http-addr"), Some("h:1"));
        assert_eq!(p.text("token"), Some("t"));
        assert!(p.bool("stale") && p.bool("recurse"));
        assert_eq!(p.args, args(&["k"]));
        let client = Spec {
            http: Http::Client,
            ..SPEC
        };
        assert_eq!(
            client.parse(&args(&["-stale"])).err(),
            Some(ParseError::Bad(
                "flag provided but not defined: -stale".into()
            ))
        );
        assert_eq!(SPEC.parse(&args(&["-h"])).err(), Some(ParseError::Help));
    }

    /// Sections appear in Consul's order and only when the command has such options.
    #[test]
    fn help_sections() {
        let help = SPEC.help();
        assert!(
            help.starts_with("Usage: cairn test\n\nHTTP API Options\n"),
            "{help}"
        );
        assert!(help.contains("-http-addr=<address>"));
        assert!(help.contains("\n  -stale\n"));
        assert!(help.contains("\nCommand Options\n"));
        assert!(help.contains("\n  -recurse\n"));
        assert!(help.contains("-flags=<uint>"));
        let none = Spec {
            http: Http::None,
            flags: &[],
            ..SPEC
        };
        assert_eq!(none.help(), "Usage: cairn test\n");
    }
}
