//! `cairn`: runs an agent (`cairn agent ...`) or a CLI command against one.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // ring is the one TLS provider of the process (no aws-lc); reqwest's clients read it.
    cairn::tls::install_default_provider();
    match args.get(1).map(String::as_str) {
        Some("agent") => cairn::run::run_agent(&args[2..]),
        // The container image's entrypoint (docker/Dockerfile): Consul's image conventions.
        Some("docker-entrypoint") => cairn::docker_entrypoint::run(&args[2..]),
        _ => cairn::cli::run(&args[1..]),
    }
}
