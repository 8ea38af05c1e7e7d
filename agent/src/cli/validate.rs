//! `cairn validate`: checks configuration files and directories as the agent would read them,
//! without starting anything, as `consul validate` does. Runbooks and CI pipelines run it before
//! a rollout and look at the exit code: 0 and `Configuration is valid!`, or 1 and the reasons.

use std::process::ExitCode;

use super::output::{err, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `validate`.
const FLAGS: &[Flag] = &[
    Flag::text(
        "config-format",
        "hcl|json",
        "Config files are in this format irrespective of their extension. Must be 'hcl' or 'json'.",
    ),
    Flag::bool(
        "quiet",
        "When given, a successful run will produce no output.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn validate [options] FILE_OR_DIRECTORY...

  Performs a thorough sanity test on configuration files. For each file
  or directory given, the validate command will attempt to parse the
  contents just as the \"cairn agent\" command would, and catch any errors.

  This is useful to do a test of the configuration only, without actually
  starting the agent. This performs all of the validation the agent would, so
  this should be given the complete set of configuration files that are going
  to be loaded by the agent. This command cannot operate on partial
  configuration fragments since those won't pass the full agent validation.

  Returns 0 if the configuration is valid, or 1 if there are problems.
",
    flags: FLAGS,
    http: Http::None,
};

/// Runs `cairn validate`.
pub(crate) fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() {
        err("Must specify at least one config file or directory");
        return ExitCode::from(1);
    }
    // The agent's own loader, fed the paths as `-config-file`/`-config-dir`: the same checks
    // and the same messages as at start-up.
    let mut agent_args = Vec::new();
    if let Some(format) = p.text("config-format") {
        agent_args.push(format!("-config-format={format}"));
    }
    for path in &p.args {
        let flag = if std::path::Path::new(path).is_dir() {
            "-config-dir"
        } else {
            "-config-file"
        };
        agent_args.push(flag.to_string());
        agent_args.push(path.clone());
    }
    match crate::config::load(&agent_args) {
        Ok(config) => {
            for w in &config.warnings {
                err(w);
            }
            if !p.bool("quiet") {
                out("Configuration is valid!");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Config validation failed: {e}")),
    }
}
