//! The `cairn` subcommands that talk to a running agent over its HTTP API.

use std::process::ExitCode;

/// Runs a CLI subcommand (`args` excludes the program name).
pub fn run(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("version") | Some("-version") | Some("--version") => {
            println!("Cairn v{}", crate::VERSION);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "Usage: cairn <command> [args]\n\n    agent      Runs a Cairn agent\n    version    Prints the Cairn version"
            );
            ExitCode::from(1)
        }
    }
}
