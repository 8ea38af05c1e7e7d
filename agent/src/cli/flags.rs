//! A small table-driven flag parser with Go's `flag` package semantics, as Consul's CLI uses.
//!
//! `-name`, `--name`, `-name=value`, `-name value` (not for booleans, which take
//! `-name=false`), parsing stops at the first argument that is not a flag (so a handler
//! command or a value starting with `-` after the key is left alone), `--` ends the flags, and
//! `-h`/`-help` ask for help. Each command describes its flags in a static table; the HTTP
//! options shared by every command that talks to an agent are added by [`Http`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a flag holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A switch: `-recurse` or `-recurse=false`.
    Bool,
    /// A string; the last occurrence wins.
    Text,
    /// An unsigned 64-bit integer.
    Uint,
    /// A signed 64-bit integer.
    Int,
    /// A string that may be given several times; all occurrences are kept.
    List,
    /// `key=value`, repeatable.
    Map,
}

/// One flag of a command.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flag {
    /// The name without dashes.
    pub name: &'static str,
    /// The value kind.
    pub kind: Kind,
    /// The placeholder shown in help (`-name=<value>`).
    pub value: &'static str,
    /// One or two sentences of help.
    pub help: &'static str,
}

impl Flag {
    /// A boolean switch.
    pub(crate) const fn bool(name: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            kind: Kind::Bool,
            value: "",
            help,
        }
    }

    /// A string flag.
    pub(crate) const fn text(name: &'static str, value: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            kind: Kind::Text,
            value,
            help,
        }
    }

    /// An unsigned integer flag.
    pub(crate) const fn uint(name: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            kind: Kind::Uint,
            value: "uint",
            help,
        }
    }

    /// A signed integer flag.
    pub(crate) const fn int(name: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            kind: Kind::Int,
            value: "int",
            help,
        }
    }

    /// A repeatable string flag.
    pub(crate) const fn list(name: &'static str, value: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            kind: Kind::List,
            value,
            help,
        }
    }

    /// A repeatable `key=value` flag.
    pub(crate) const fn map(name: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            kind: Kind::Map,
            value: "key=value",
            help,
        }
    }
}

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
];

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

/// A command's interface: its usage text, its own flags and the shared HTTP options it takes.
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
    fn http_flags(&self) -> Vec<&'static Flag> {
        match self.http {
            Http::None => Vec::new(),
            Http::Client => CLIENT_FLAGS.iter().collect(),
            Http::Server => CLIENT_FLAGS.iter().chain(SERVER_FLAGS).collect(),
        }
    }

    fn find(&self, name: &str) -> Option<&'static Flag> {
        self.flags
            .iter()
            .find(|f| f.name == name)
            .or_else(|| self.http_flags().into_iter().find(|f| f.name == name))
    }

    /// The help text: usage, then the HTTP options, then the command's options.
    pub(crate) fn help(&self) -> String {
        let mut out = self.usage.trim_matches('\n').to_string();
        out.push('\n');
        let http = self.http_flags();
        if !http.is_empty() {
            out.push_str("\nHTTP API Options\n");
            for f in http {
                describe(&mut out, f);
            }
        }
        if !self.flags.is_empty() {
            out.push_str("\nCommand Options\n");
            for f in self.flags {
                describe(&mut out, f);
            }
        }
        out
    }

    /// Parses `args` (after the command name).
    pub(crate) fn parse(&self, args: &[String]) -> Result<Parsed, ParseError> {
        let mut values: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg == "--" {
                i += 1;
                break;
            }
            if !arg.starts_with('-') || arg == "-" {
                break;
            }
            let body = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .unwrap_or(arg);
            if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
                return Err(ParseError::Bad(format!("bad flag syntax: {arg}")));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(flag) = self.find(name) else {
                if name == "h" || name == "help" {
                    return Err(ParseError::Help);
                }
                return Err(ParseError::Bad(format!(
                    "flag provided but not defined: -{name}"
                )));
            };
            let value = if flag.kind == Kind::Bool {
                let v = inline.unwrap_or_else(|| "true".to_string());
                if parse_bool(&v).is_none() {
                    return Err(ParseError::Bad(format!(
                        "invalid boolean value \"{v}\" for -{name}: parse error"
                    )));
                }
                v
            } else {
                match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => {
                                return Err(ParseError::Bad(format!(
                                    "flag needs an argument: -{name}"
                                )));
                            }
                        }
                    }
                }
            };
            validate(flag, &value)?;
            values.entry(flag.name).or_default().push(value);
            i += 1;
        }
        Ok(Parsed {
            values,
            args: args[i.min(args.len())..].to_vec(),
        })
    }
}

fn validate(flag: &Flag, value: &str) -> Result<(), ParseError> {
    let ok = match flag.kind {
        Kind::Bool | Kind::Text | Kind::List => true,
        Kind::Uint => value.parse::<u64>().is_ok(),
        Kind::Int => value.parse::<i64>().is_ok(),
        Kind::Map => {
            if !value.contains('=') {
                return Err(ParseError::Bad(format!(
                    "invalid value \"{value}\" for flag -{}: missing '=' in key=value",
                    flag.name
                )));
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::Bad(format!(
            "invalid value \"{value}\" for flag -{}: parse error",
            flag.name
        )))
    }
}

/// Appends one flag's help entry, wrapped at 80 columns.
fn describe(out: &mut String, f: &Flag) {
    if f.kind == Kind::Bool {
        let _ = write!(out, "\n  -{}\n", f.name);
    } else {
        let _ = write!(out, "\n  -{}=<{}>\n", f.name, f.value);
    }
    let mut line = String::new();
    for word in f.help.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 74 {
            let _ = writeln!(out, "     {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "     {line}");
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// `-h` or `-help` was given.
    Help,
    /// A usage error, with its message.
    Bad(String),
}

/// The flags that were given and the remaining positional arguments.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    values: BTreeMap<&'static str, Vec<String>>,
    /// The arguments after the flags.
    pub args: Vec<String>,
}

impl Parsed {
    fn last(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Whether the flag was given at all.
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A boolean flag's value (false when absent).
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.last(name).and_then(parse_bool).unwrap_or(false)
    }

    /// A string flag's last value.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.last(name)
    }

    /// A string flag's last value, or "" when absent.
    pub(crate) fn text_or_empty(&self, name: &str) -> &str {
        self.last(name).unwrap_or("")
    }

    /// An unsigned flag's value (0 when absent).
    pub(crate) fn uint(&self, name: &str) -> u64 {
        self.last(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// A signed flag's value (0 when absent).
    pub(crate) fn int(&self, name: &str) -> i64 {
        self.last(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// All values of a repeatable flag, in order.
    pub(crate) fn list(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// All `key=value` pairs of a map flag, in order (a later key overrides an earlier one
    /// when collected into a map).
    pub(crate) fn map(&self, name: &str) -> Vec<(String, String)> {
        self.list(name)
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag::bool("recurse", "r"),
        Flag::text("key", "key", "k"),
        Flag::uint("flags", "f"),
        Flag::list("tag", "tag", "t"),
        Flag::map("meta", "m"),
    ];
    const SPEC: Spec = Spec {
        usage: "Usage: cairn test",
        flags: FLAGS,
        http: Http::Server,
    };

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_and_gnu_styles() {
        let p = SPEC
            .parse(&args(&[
                "-recurse",
                "--key=a",
                "-flags",
                "7",
                "-tag=x",
                "--tag",
                "y",
                "-meta",
                "a=b=c",
                "-http-addr=h:1",
                "--stale",
                "rest",
                "-recurse",
            ]))
            .expect("parse");
        assert!(p.bool("recurse"));
        assert_eq!(p.text("key"), Some("a"));
        assert_eq!(p.uint("flags"), 7);
        assert_eq!(p.list("tag"), &["x".to_string(), "y".to_string()]);
        assert_eq!(p.map("meta"), vec![("a".to_string(), "b=c".to_string())]);
        assert_eq!(p.text("http-addr"), Some("h:1"));
        assert!(p.bool("stale"));
        assert_eq!(p.args, args(&["rest", "-recurse"]));
    }

    #[test]
    fn stops_at_dash_and_double_dash() {
        let p = SPEC.parse(&args(&["-key", "k", "-", "x"])).expect("parse");
        assert_eq!(p.args, args(&["-", "x"]));
        let p = SPEC.parse(&args(&["--", "-recurse"])).expect("parse");
        assert!(!p.bool("recurse"));
        assert_eq!(p.args, args(&["-recurse"]));
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(SPEC.parse(&args(&["-h"])).err(), Some(ParseError::Help));
        assert_eq!(SPEC.parse(&args(&["--help"])).err(), Some(ParseError::Help));
        assert!(matches!(
            SPEC.parse(&args(&["-nope"])),
            Err(ParseError::Bad(m)) if m.contains("not defined: -nope")
        ));
        assert!(matches!(
            SPEC.parse(&args(&["-flags=x"])),
            Err(ParseError::Bad(m)) if m.contains("invalid value")
        ));
        assert!(matches!(
            SPEC.parse(&args(&["-recurse=maybe"])),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            SPEC.parse(&args(&["-key"])),
            Err(ParseError::Bad(m)) if m.contains("needs an argument")
        ));
        assert!(matches!(
            SPEC.parse(&args(&["-meta", "novalue"])),
            Err(ParseError::Bad(_))
        ));
        let help = SPEC.help();
        assert!(help.contains("-http-addr=<address>"));
        assert!(help.contains("-stale"));
        assert!(help.contains("\n  -recurse\n"));
        assert!(help.contains("-flags=<uint>"));
    }
}
