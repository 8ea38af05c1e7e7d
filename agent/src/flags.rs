//! The one command-line flag parser of `cairn`, for `cairn agent` and every CLI subcommand,
//! with the rules of Go's `flag` package that Consul's users rely on.
//!
//! `-name`, `--name`, `-name=value` and `-name value` all work; a boolean takes no separate
//! argument (`-dev`, `-dev=false`), so `-dev true` leaves `true` as a positional argument;
//! repeated flags are all kept, in order; parsing stops at the first argument that is not a
//! flag (`-` alone is one) and after `--`; `-h`/`-help` ask for help. Error texts are Go's
//! (`flag provided but not defined: -x`), which scripts written for Consul may match.
//!
//! A command describes its flags in a static table of [`Flag`]s; [`parse`] looks names up
//! through a closure, so the agent (whose flags also carry a config target) and the CLI
//! (whose commands add shared HTTP options) keep their own tables. clap was not used: it has
//! no single-dash long flags and its errors and help differ from Consul's.

use std::fmt::Write as _;

/// What a flag holds; decides whether it takes an argument and how the argument is checked.
///
/// Values are kept as the text given (checked, not converted) and read back typed by [`Parsed`]:
/// the agent maps them onto config keys, where the config layer converts them like values from a
/// file.
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

/// One flag: a name, what it holds, and its help entry.
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

    /// Checks one argument of this flag, with Go's messages.
    ///
    /// Checked while parsing, as Go's `flag` does, so a bad value is reported with its flag name
    /// before the command does anything.
    fn check(&self, value: &str) -> Result<(), ParseError> {
        let ok = match self.kind {
            Kind::Bool => {
                if parse_bool(value).is_none() {
                    return Err(ParseError::Bad(format!(
                        "invalid boolean value \"{value}\" for -{}: parse error",
                        self.name
                    )));
                }
                true
            }
            Kind::Text | Kind::List => true,
            // Decimal only, unlike Go's `flag`, which also reads `0x`, `0o` and `0b` prefixes (and
            // refuses a leading `+`, which this accepts).
            Kind::Uint => value.parse::<u64>().is_ok(),
            Kind::Int => value.parse::<i64>().is_ok(),
            Kind::Map => {
                if !value.contains('=') {
                    return Err(ParseError::Bad(format!(
                        "invalid value \"{value}\" for flag -{}: missing '=' in key=value",
                        self.name
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
                self.name
            )))
        }
    }
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// `-h` or `-help` was given.
    Help,
    /// A usage error, with its message (naming the flag or the argument).
    Bad(String),
}

/// Parses `args` (after the command name); `find` returns the flag of a name, if defined.
pub(crate) fn parse(
    args: &[String],
    find: impl Fn(&str) -> Option<&'static Flag>,
) -> Result<Parsed, ParseError> {
    let mut given = Vec::new();
    let mut i = 0;
    // Go's rules, in order: `--` ends the flags (and is consumed), a non-flag or a lone `-` ends
    // them (and is kept), anything else must be a known flag.
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
        // `---x`, `-=x`: Go's "bad flag syntax", refused rather than guessed at.
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ParseError::Bad(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        // Help only when the command defines no `h`/`help` flag of its own, as in Go.
        let Some(flag) = find(name) else {
            if name == "h" || name == "help" {
                return Err(ParseError::Help);
            }
            return Err(ParseError::Bad(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        i += 1;
        let value = match (inline, flag.kind) {
            (Some(v), _) => v.to_string(),
            // A bare boolean never takes the next argument: `-dev true` leaves `true` positional,
            // as Go does, so boolean flags cannot swallow what follows them.
            (None, Kind::Bool) => "true".to_string(),
            // The next argument is the value even when it starts with `-` (`-key -b` sets `key` to
            // `-b`), as in Go.
            (None, _) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| ParseError::Bad(format!("flag needs an argument: -{name}")))?;
                i += 1;
                v.clone()
            }
        };
        flag.check(&value)?;
        given.push((flag, value));
    }
    Ok(Parsed {
        given,
        args: args.get(i..).unwrap_or_default().to_vec(),
    })
}

/// Go's `strconv.ParseBool`.
///
/// Exactly its spellings and no others (`yes`, `on` are errors), so scripts behave as they do with
/// Consul.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The flags that were given, in order, and the positional arguments after them.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// In command-line order: repeated flags keep every value, and the last one wins for a single
    /// value, as in Go.
    given: Vec<(&'static Flag, String)>,
    /// The arguments after the flags.
    pub args: Vec<String>,
}

impl Parsed {
    /// Every flag given, in command-line order, with its (checked) value; a boolean given
    /// without a value reads `true`.
    pub(crate) fn given(&self) -> impl Iterator<Item = (&'static Flag, &str)> {
        self.given.iter().map(|(f, v)| (*f, v.as_str()))
    }

    /// Every value of the flag `name`, in order.
    /// Looked up by name at each access: commands read a handful of flags once, so a scan beats
    /// building a map.
    fn values<'s>(&'s self, name: &str) -> Vec<&'s str> {
        self.given
            .iter()
            .filter(|(f, _)| f.name == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value given for `name`: a later flag overrides an earlier one, as in Go.
    fn last(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(f, _)| f.name == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the flag was given at all.
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.last(name).is_some()
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
    ///
    /// The value was checked while parsing, so the fallback to 0 only covers an absent flag.
    pub(crate) fn uint(&self, name: &str) -> u64 {
        self.last(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// A signed flag's value (0 when absent).
    pub(crate) fn int(&self, name: &str) -> i64 {
        self.last(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// All values of a repeatable flag, in order.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.values(name).into_iter().map(str::to_string).collect()
    }

    /// All `key=value` pairs of a map flag, in order (a later key overrides an earlier one
    /// when collected into a map).
    pub(crate) fn map(&self, name: &str) -> Vec<(String, String)> {
        self.values(name)
            .into_iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Appends a help section: a heading, then each flag as `-name` or `-name=<value>` with its
/// help wrapped at 80 columns (Consul's layout).
pub(crate) fn help_section<'a>(
    out: &mut String,
    heading: &str,
    flags: impl IntoIterator<Item = &'a Flag>,
) {
    let _ = write!(out, "\n{heading}\n");
    for f in flags {
        if f.kind == Kind::Bool {
            let _ = write!(out, "\n  -{}\n", f.name);
        } else {
            let _ = write!(out, "\n  -{}=<{}>\n", f.name, f.value);
        }
        let mut line = String::new();
        for word in f.help.split_whitespace() {
            // 74 columns of text after the 5-column indent: lines stay within 80 columns.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag::bool("recurse", "r"),
        Flag::text("key", "key", "k"),
        Flag::uint("flags", "f"),
        Flag::int("offset", "o"),
        Flag::list("tag", "tag", "t"),
        Flag::map("meta", "m"),
    ];

    fn find(name: &str) -> Option<&'static Flag> {
        FLAGS.iter().find(|f| f.name == name)
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str]) -> Result<Parsed, ParseError> {
        parse(&args(a), find)
    }

    fn bad(a: &[&str]) -> String {
        match run(a) {
            Err(ParseError::Bad(m)) => m,
            other => panic!("{a:?} gave {other:?}"),
        }
    }

    #[test]
    fn go_and_gnu_styles() {
        let p = run(&[
            "-recurse",
            "--key=a",
            "-flags",
            "7",
            "-offset=-3",
            "-tag=x",
            "--tag",
            "y",
            "-meta",
            "a=b=c",
            "--key",
            "-b",
            "rest",
            "-recurse",
        ])
        .expect("parse");
        assert!(p.bool("recurse"));
        assert_eq!(
            p.text("key"),
            Some("-b"),
            "the last value wins, even one with a dash"
        );
        assert_eq!(p.uint("flags"), 7);
        assert_eq!(p.int("offset"), -3);
        assert_eq!(p.list("tag"), args(&["x", "y"]));
        assert_eq!(p.map("meta"), vec![("a".to_string(), "b=c".to_string())]);
        assert_eq!(p.args, args(&["rest", "-recurse"]));
        let order: Vec<&str> = p.given().map(|(f, _)| f.name).collect();
        assert_eq!(
            order,
            [
                "recurse", "key", "flags", "offset", "tag", "tag", "meta", "key"
            ]
        );
    }

    #[test]
    fn booleans_take_no_separate_argument() {
        let p = run(&["-recurse", "false"]).expect("parse");
        assert!(p.bool("recurse"));
        assert_eq!(p.args, args(&["false"]));
        let p = run(&["-recurse=false", "--recurse=T", "-recurse=0"]).expect("parse");
        assert!(!p.bool("recurse") && p.is_set("recurse"));
        assert!(!run(&[]).expect("parse").is_set("recurse"));
    }

    #[test]
    fn stops_at_dash_and_double_dash() {
        let p = run(&["-key", "k", "-", "x"]).expect("parse");
        assert_eq!(p.args, args(&["-", "x"]));
        let p = run(&["--", "-recurse"]).expect("parse");
        assert!(!p.bool("recurse"));
        assert_eq!(p.args, args(&["-recurse"]));
        let p = run(&["-recurse", "--"]).expect("parse");
        assert!(p.args.is_empty());
    }

    #[test]
    fn errors_and_help() {
        for h in ["-h", "--help", "-help", "-h=x"] {
            assert_eq!(run(&[h]).err(), Some(ParseError::Help), "{h}");
        }
        assert_eq!(bad(&["-nope"]), "flag provided but not defined: -nope");
        assert_eq!(bad(&["--nope=1"]), "flag provided but not defined: -nope");
        assert_eq!(
            bad(&["-flags=x"]),
            "invalid value \"x\" for flag -flags: parse error"
        );
        assert!(bad(&["-flags=-1"]).contains("invalid value"));
        assert_eq!(
            bad(&["-recurse=maybe"]),
            "invalid boolean value \"maybe\" for -recurse: parse error"
        );
        assert_eq!(bad(&["-key"]), "flag needs an argument: -key");
        assert!(bad(&["-meta", "novalue"]).contains("missing '='"));
        for syntax in ["---key", "-=x", "--=x"] {
            assert_eq!(bad(&[syntax]), format!("bad flag syntax: {syntax}"));
        }
    }

    #[test]
    fn help_layout() {
        let mut out = String::new();
        help_section(&mut out, "Options", FLAGS);
        assert!(out.starts_with("\nOptions\n"));
        assert!(out.contains("\n  -recurse\n     r\n"));
        assert!(out.contains("\n  -flags=<uint>\n"));
        assert!(out.contains("\n  -meta=<key=value>\n"));
        const LONG: Flag = Flag::text(
            "x",
            "v",
            "A help text long enough to be wrapped: it goes on and on, past the eighty \
             columns of a terminal, so that the layout has to break it over several lines \
             without ever cutting a word in two.",
        );
        let mut out = String::new();
        help_section(&mut out, "H", [&LONG]);
        assert!(out.lines().count() > 4, "{out}");
        assert!(out.lines().all(|l| l.len() <= 80), "{out}");
    }
}
