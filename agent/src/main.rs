//! `cairn`: the agent and its command-line interface.
//!
//! `cairn agent ...` runs an agent; every other subcommand is a client of a running agent's
//! HTTP API (`cli`). Flags follow Consul's Go style (`-dev`, `-http-port=8500`), and the
//! GNU style (`--dev`) works too.

#![forbid(unsafe_code)]

mod cli;
mod config;

use std::process::ExitCode;

/// The version this build reports (`cairn version`, `/v1/agent/self`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("agent") => run_agent(&args[2..]),
        _ => cli::run(&args[1..]),
    }
}

fn run_agent(args: &[String]) -> ExitCode {
    match config::load(args) {
        Ok(_config) => {
            eprintln!("the agent runtime is not built yet");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("==> {e}");
            ExitCode::FAILURE
        }
    }
}
