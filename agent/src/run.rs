//! The agent process: configuration, logging, the runtime, listeners, signals and graceful
//! shutdown around an [`Agent`]. `main` only chooses between this and the CLI.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::agent::{self, Agent};
use crate::config::Config;
use crate::{config, dns, http, monitor};

/// How long in-flight HTTP requests may take to finish once shutdown starts.
///
/// Requests being served may include blocking queries parked for minutes: shutdown waits this long
/// for them, then closes them, so a stop never hangs on a client.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the process's one tracing subscriber: the text or JSON formatter on stderr and the
/// layer feeding `/v1/agent/monitor`, behind one level filter.
fn init_logging(config: &Config) {
    let level = match config.log_level.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => config.log_level.clone(),
        _ => "info".to_string(),
    };
    // Our crates log at the configured level; dependencies only from warn up unless tracing.
    let filter = if level == "trace" {
        "trace".to_string()
    } else {
        format!("warn,cairn={level},cairn_catalog={level},cairn_gossip={level}")
    };
    // `CAIRN_LOG` (an `EnvFilter` directive) overrides the configured level entirely, for debugging
    // one module without drowning in the rest.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        // Colours only on a terminal: logs redirected to a file or a journal stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(monitor::MonitorLayer);
    if config.log_json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

/// Runs `cairn agent` with its arguments until the agent stops; the process's exit code.
pub fn run_agent(args: &[String]) -> ExitCode {
    let config = match config::load(args) {
        Ok(c) => c,
        // Written without println!, which panics when the reader is gone (`cairn agent -h | head`).
        Err(e) if e.is_help() => {
            let _ = writeln!(std::io::stdout(), "{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "==> {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    // Before any socket is opened, so listeners and pooled connections all get the raised limit.
    raise_fd_limit();
    for w in &config.warnings {
        warn!("{w}");
    }
    // Built after configuration and logging: a bad flag or file is reported without starting a
    // thread.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("==> {e}");
            ExitCode::FAILURE
        }
    }
}

/// The HTTP listener's limits: `limits.http_max_conns_per_client` is read from the live
/// configuration at each accept, so a reload changes it for new connections.
fn http_limits(agent: &Arc<Agent>) -> http::listener::Limits {
    let weak = Arc::downgrade(agent);
    http::listener::Limits {
        per_client: Arc::new(move || {
            weak.upgrade().map_or(0, |a| {
                a.config
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .limits
                    .http_max_conns_per_client
            })
        }),
        header_read_timeout: http::listener::HEADER_READ_TIMEOUT,
    }
}

/// Raises the soft limit on open files to the hard limit, as Go programs (Consul included) do
/// at start: every connection is a descriptor, and a soft limit of 1024 (a common default) is
/// far below what an agent serving many clients needs. Failure only costs headroom.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => debug!(from = soft, to = hard, "raised the open files limit"),
            Err(e) => debug!(soft, hard, error = %e, "could not raise the open files limit"),
        },
        Ok((soft, _)) => debug!(limit = soft, "open files limit already at its maximum"),
        Err(e) => debug!(error = %e, "could not read the open files limit"),
    }
}

/// Where the HTTP API listens: `addresses.http` when set, else `client_addr`, as in Consul; none
/// when the HTTP port is disabled.
fn http_addrs(config: &Config) -> Vec<SocketAddr> {
    let Some(port) = config.ports.http else {
        return Vec::new();
    };
    let ips = if config.addresses.http.is_empty() {
        &config.client_addrs
    } else {
        &config.addresses.http
    };
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

/// Where the HTTPS API listens: `addresses.https` when set, else `client_addr`; none unless
/// `ports.https` is set.
fn https_addrs(config: &Config) -> Vec<SocketAddr> {
    let Some(port) = config.ports.https else {
        return Vec::new();
    };
    let ips = if config.addresses.https.is_empty() {
        &config.client_addrs
    } else {
        &config.addresses.https
    };
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

/// Starts every listener and the agent, waits for a reason to stop, then shuts down in order: leave
/// the cluster (if the reason says so), drain HTTP, stop checks, gossip and Raft.
async fn serve(config: Config) -> Result<(), agent::StartError> {
    let pid_file = config.pid_file.clone();
    let addrs = http_addrs(&config);
    let tls_addrs = https_addrs(&config);
    let dev = config.dev;
    // DNS sockets are bound before the agent is built: a DNS port in use stops start-up before any
    // Raft storage is opened or gossip started.
    let dns_listeners = dns::bind(&config)
        .await
        .map_err(|(addr, source)| agent::StartError::Bind { addr, source })?;
    // Server RPC listens on the bind address; peers reach it at the advertised one.
    let rpc_addr = SocketAddr::new(config.bind_addr, config.ports.server);
    let agent = Agent::new(config).await?;
    // Bind before announcing readiness, so "running" means reachable.
    let mut listeners = Vec::new();
    for addr in &addrs {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| agent::StartError::Bind {
                addr: *addr,
                source,
            })?;
        let local = l.local_addr().unwrap_or(*addr);
        listeners.push((local, l, false));
    }
    for addr in &tls_addrs {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| agent::StartError::Bind {
                addr: *addr,
                source,
            })?;
        let local = l.local_addr().unwrap_or(*addr);
        listeners.push((local, l, true));
    }
    if let Some(server) = &agent.server {
        let rpc_listener = tokio::net::TcpListener::bind(rpc_addr)
            .await
            .map_err(|source| agent::StartError::Bind {
                addr: rpc_addr,
                source,
            })?;
        let rpc_app = server_rpc(&agent, server);
        info!(addr = %rpc_addr, "server RPC listening");
        tokio::spawn(crate::rpc::listener::serve(
            rpc_listener,
            rpc_app,
            Arc::clone(&agent),
        ));
    }
    // Only now does the agent join the cluster and register itself: every listener is bound, so
    // whatever the cluster learns about this node is reachable.
    agent.start().await?;
    if let Some(path) = &pid_file
        && let Err(e) = std::fs::write(path, std::process::id().to_string())
    {
        warn!(path = %path.display(), error = %e, "failed to write the pid file");
    }
    dns::spawn(&agent, dns_listeners);
    let api = http::service(Arc::clone(&agent));
    let mut servers = Vec::new();
    for (addr, listener, tls) in listeners {
        let api = api.clone();
        let app = move |req: axum::extract::Request| tower::ServiceExt::oneshot(api.clone(), req);
        if tls {
            info!(%addr, "HTTPS API listening");
            let current = Arc::clone(&agent.tls.https);
            servers.push(tokio::spawn(http::listener::serve_tls(
                listener,
                app,
                http_limits(&agent),
                current,
                agent.shutdown_signal(),
            )));
            continue;
        }
        agent
            .http_addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(addr);
        info!(%addr, "HTTP API listening");
        servers.push(tokio::spawn(http::listener::serve(
            listener,
            app,
            http_limits(&agent),
            agent.shutdown_signal(),
        )));
    }
    info!(
        node = %agent.node.name,
        datacenter = %agent.backend.datacenter(),
        dev,
        "Cairn agent running!"
    );
    let why = wait_for_signals(&agent).await;
    let config = agent.config();
    // Consul's rules: an interrupt leaves unless `skip_leave_on_interrupt`, a terminate leaves only
    // with `leave_on_terminate`; an API leave or a failed server role always leaves, so peers do
    // not wait for a failure timeout.
    let leave = match &why {
        Stop::Api | Stop::Failed(_) => true,
        Stop::Interrupt => !config.skip_leave_on_interrupt,
        Stop::Terminate => config.leave_on_terminate,
    };
    if leave {
        info!("gracefully leaving the cluster");
        agent.leave().await;
    }
    info!("shutting down: draining HTTP requests");
    // After leaving, not before: the HTTP API keeps answering while the node hands over, and only
    // then do the listeners stop.
    agent.begin_shutdown();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        for s in servers {
            let _ = s.await;
        }
    })
    .await;
    if drained.is_err() {
        warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
    agent.stop().await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    if let Stop::Failed(reason) = why {
        return Err(agent::StartError::ServerFailed(reason));
    }
    info!("agent stopped");
    Ok(())
}

/// Why the agent stops.
enum Stop {
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// `PUT /v1/agent/leave`.
    Api,
    /// The server role failed for good (its Raft node stopped): the process exits non-zero
    /// rather than answer every request with an error.
    Failed(String),
}

/// Resolves with the reason once the server role (if any) fails for good.
///
/// Pending forever on a client agent, so the `select!` that waits on it never picks it.
async fn server_failure(agent: &Agent) -> String {
    let Some(server) = &agent.server else {
        return std::future::pending().await;
    };
    let mut rx = server.failure();
    match rx.wait_for(Option::is_some).await {
        Ok(why) => why.clone().unwrap_or_default(),
        Err(_) => std::future::pending().await,
    }
}

/// Waits for SIGINT, SIGTERM or an API leave; reloads on SIGHUP meanwhile.
async fn wait_for_signals(agent: &Arc<Agent>) -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        error!("failed to install signal handlers; stop the agent with PUT /v1/agent/leave");
        let mut stop = agent.shutdown_signal();
        let _ = stop.wait_for(|s| *s).await;
        return Stop::Api;
    };
    let mut stop = agent.shutdown_signal();
    loop {
        tokio::select! {
            _ = int.recv() => { info!("caught SIGINT"); return Stop::Interrupt; }
            _ = term.recv() => { info!("caught SIGTERM"); return Stop::Terminate; }
            // SIGHUP reloads in place and keeps waiting, as Consul does.
            _ = hup.recv() => {
                info!("caught SIGHUP");
                match reload(agent) {
                    Ok(()) => {
                        // Reloaded definitions reach the catalog at once rather than at the next
                        // periodic pass.
                        agent.sync_now().await;
                    }
                    Err(e) => error!("reload failed: {e}"),
                }
            }
            _ = stop.wait_for(|s| *s) => return Stop::Api,
            why = server_failure(agent) => return Stop::Failed(why),
        }
    }
}

/// Re-reads the configuration and applies what can change at run time (services, checks,
/// node meta is kept as started).
pub fn reload(agent: &Agent) -> Result<(), String> {
    info!("reloading configuration");
    let current = agent.config();
    let next = config::reload(&current).map_err(|e| e.to_string())?;
    for w in &next.warnings {
        warn!("{w}");
    }
    // Certificates first: a reload with a bad or expired certificate keeps the ones in use
    // (and says why), so the agent stays reachable.
    if let Err(e) = agent.tls.apply(&next) {
        error!("TLS configuration not reloaded, keeping the current certificates: {e}");
    } else if next.tls != current.tls || next.ports.https.is_some() {
        info!("TLS certificates reloaded; new connections use them");
    }
    *agent.config.write().unwrap_or_else(|p| p.into_inner()) = next;
    agent.load_config_definitions().map_err(|e| e.to_string())
}

/// The server RPC routes of a server agent, with the agent's own duties they need: answering
/// DNS questions client agents hand over, and firing user events other datacenters send.
pub fn server_rpc(agent: &Arc<Agent>, server: &Arc<crate::server::Server>) -> axum::Router {
    let fire: crate::rpc::EventFn = {
        let agent = Arc::clone(agent);
        Arc::new(move |ev| {
            let agent = Arc::clone(&agent);
            Box::pin(async move { agent.fire_event(ev).await })
        })
    };
    crate::server::rpc_routes::router(Arc::clone(server), dns::server::rpc_responder(agent), fire)
}
