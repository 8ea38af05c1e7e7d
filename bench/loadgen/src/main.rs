//! `loadgen`: the load generator and tools of Cairn's benchmark harness (`bench/run`).
//!
//! Every subcommand prints its result as one JSON object on stdout. With `--record FILE` and one
//! or more `--emit 'ROW|FIELD|UNIT|BAR'`, it also appends a record per emit (the value of FIELD in
//! the result) to FILE, which `loadgen report` turns into the results table.

mod conn;
mod ops;
mod report;
mod run;
mod tools;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hyper::Method;
use serde::Serialize;
use serde_json::Value;

use crate::conn::Req;
use crate::ops::{Op, OpParams};
use crate::report::Record;
use crate::watch::Target;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Cairn's benchmark load generator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Emit {
    /// Append records to this JSON-lines file.
    #[arg(long)]
    record: Option<String>,
    /// "cairn", "peer" or "limit".
    #[arg(long, default_value = "cairn")]
    side: String,
    /// The system measured, as shown in the table.
    #[arg(long, default_value = "")]
    system: String,
    /// 'ROW|FIELD|UNIT|BAR': record the result's FIELD under ROW (BAR may be empty).
    #[arg(long)]
    emit: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive load: closed loop (`--clients` each in turn) or open loop (`--rate`).
    Run {
        #[arg(long, value_enum)]
        op: Op,
        /// Server address(es), comma-separated; clients are spread over them.
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<SocketAddr>,
        #[arg(long, default_value_t = 1)]
        clients: u64,
        /// Open loop: total requests per second (latency counts from each request's due time).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value = "1s", value_parser = duration)]
        warmup: Duration,
        #[arg(long, default_value = "5s", value_parser = duration)]
        duration: Duration,
        /// Stop after this many successful requests.
        #[arg(long)]
        requests: Option<u64>,
        /// Key space (request n uses key start + n % keys; 0: start + n, each key once).
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        #[arg(long, default_value_t = 0)]
        start: u64,
        #[arg(long, default_value = "b/")]
        prefix: String,
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        /// Query string for Cairn reads (`stale`, `consistent` or empty for default).
        #[arg(long, default_value = "")]
        query: String,
        /// Service name for health reads and registrations (registrations: empty spreads
        /// instances over `--services` names).
        #[arg(long, default_value = "")]
        service: String,
        #[arg(long, default_value_t = 1000)]
        services: u64,
        #[arg(long, default_value_t = 100)]
        nodes: u64,
        /// etcd range: serializable (not linearizable).
        #[arg(long)]
        serializable: bool,
        /// Operations per transaction (txn ops).
        #[arg(long, default_value_t = 64)]
        batch: u64,
        /// Path for `--op get`.
        #[arg(long, default_value = "/")]
        path: String,
        /// Server processes whose CPU time to report.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        #[command(flatten)]
        emit: Emit,
    },
    /// Park watchers on one service (Cairn) or key (etcd), change it once, time the fan-out.
    Watch {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        watchers: usize,
        #[arg(long, default_value = "web")]
        service: String,
        #[arg(long, default_value = "watched")]
        key: String,
        #[arg(long)]
        server_pid: Option<u32>,
        /// Time to let the watchers settle after the last one is sent, before measuring RSS.
        #[arg(long, default_value = "2s", value_parser = duration)]
        settle: Duration,
        #[arg(long, default_value = "30s", value_parser = duration)]
        timeout: Duration,
        #[command(flatten)]
        emit: Emit,
    },
    /// The bare axum JSON baseline: answers every GET with the same body.
    Serve {
        #[arg(long)]
        addr: SocketAddr,
        /// The body to serve (for example a saved `/v1/health/service/web` answer).
        #[arg(long)]
        body_file: String,
    },
    /// Loopback TCP round trip (one-byte ping-pong).
    Pingpong {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[command(flatten)]
        emit: Emit,
    },
    /// Poll a URL until it answers 200 with a body; print the milliseconds since `--since-ns`.
    WaitReady {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/v1/status/leader")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long, default_value = "")]
        body: String,
        /// The body must contain this.
        #[arg(long)]
        contains: Option<String>,
        /// Unix time in ns when the process was started (`date +%s%N`).
        #[arg(long)]
        since_ns: Option<u128>,
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
        #[command(flatten)]
        emit: Emit,
    },
    /// Print the client address of the cluster's leader.
    Leader {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<SocketAddr>,
    },
    /// fdatasync p50/p99 from fio's JSON output.
    Fio {
        #[arg(long)]
        file: String,
        #[command(flatten)]
        emit: Emit,
    },
    /// Append one record (a figure measured by the script).
    Record {
        #[arg(long)]
        row: String,
        #[arg(long)]
        value: f64,
        #[arg(long)]
        unit: String,
        #[arg(long, default_value = "")]
        bar: String,
        #[command(flatten)]
        emit: Emit,
    },
    /// Print the table of a results file (medians of each side, ratio, bar).
    Report {
        #[arg(long)]
        results: String,
        #[arg(long)]
        markdown: bool,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(Duration::from_secs_f64(v * mult))
}

/// Prints the result and appends the records asked for.
fn output<T: Serialize>(result: &T, emit: &Emit) -> Result<(), Error> {
    let v = serde_json::to_value(result)?;
    println!("{v}");
    let Some(path) = &emit.record else {
        return Ok(());
    };
    for e in &emit.emit {
        let parts: Vec<&str> = e.split('|').collect();
        let [row, field, unit, bar] = parts[..] else {
            return Err(format!("--emit wants ROW|FIELD|UNIT|BAR, got {e:?}").into());
        };
        let value = v[field].as_f64().unwrap_or(f64::NAN);
        report::append(
            path,
            &Record {
                row: row.into(),
                side: emit.side.clone(),
                system: emit.system.clone(),
                value,
                unit: unit.into(),
                bar: bar.into(),
                detail: v.clone(),
            },
        )?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run {
                op,
                addr,
                clients,
                rate,
                warmup,
                duration,
                requests,
                keys,
                start,
                prefix,
                value_size,
                query,
                service,
                services,
                nodes,
                serializable,
                batch,
                path,
                server_pid,
                emit,
            } => {
                let params = OpParams {
                    op,
                    prefix,
                    value: ops::value_of(value_size),
                    query,
                    service,
                    services,
                    nodes,
                    serializable,
                    batch,
                    path,
                };
                let spec = run::RunSpec {
                    addrs: addr,
                    clients,
                    rate,
                    warmup,
                    duration,
                    requests,
                    keys,
                    start,
                    server_pids: server_pid,
                };
                let r = run::run(spec, params).await?;
                if r.errors > 0 {
                    eprintln!(
                        "loadgen: {} errors, first: {}",
                        r.errors,
                        r.first_error.as_deref().unwrap_or("?")
                    );
                }
                output(&r, &emit)
            }
            Cmd::Watch {
                target,
                addr,
                watchers,
                service,
                key,
                server_pid,
                settle,
                timeout,
                emit,
            } => {
                let r = watch::watch(watch::WatchSpec {
                    target,
                    addr,
                    watchers,
                    service,
                    key,
                    server_pid,
                    settle,
                    timeout,
                })
                .await?;
                output(&r, &emit)
            }
            Cmd::Serve { addr, body_file } => {
                let body = std::fs::read(body_file)?;
                tools::serve(addr, body.into()).await
            }
            Cmd::Pingpong { count, emit } => {
                let (p50, p99) =
                    tokio::task::spawn_blocking(move || tools::pingpong(count)).await??;
                output(
                    &serde_json::json!({"p50_us": p50, "p99_us": p99, "p50_ms": p50 / 1000.0}),
                    &emit,
                )
            }
            Cmd::WaitReady {
                addr,
                path,
                method,
                body,
                contains,
                since_ns,
                timeout,
                emit,
            } => {
                let m: Method = method.parse()?;
                let ms =
                    tools::wait_ready(addr, Req::with(m, path, body), contains, since_ns, timeout)
                        .await?;
                output(&serde_json::json!({ "ms": ms }), &emit)
            }
            Cmd::Leader { target, addr } => {
                // A fresh cluster may need a moment to elect.
                let mut last = None;
                for _ in 0..300 {
                    match tools::leader(target, &addr).await {
                        Ok(a) => {
                            println!("{a}");
                            return Ok(());
                        }
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(last.unwrap_or_else(|| "no leader".into()))
            }
            Cmd::Fio { file, emit } => {
                let (p50, p99) = tools::fio_sync(&file)?;
                output(&serde_json::json!({"p50_ms": p50, "p99_ms": p99}), &emit)
            }
            Cmd::Record {
                row,
                value,
                unit,
                bar,
                emit,
            } => {
                let path = emit.record.ok_or("--record is required")?;
                report::append(
                    &path,
                    &Record {
                        row,
                        side: emit.side,
                        system: emit.system,
                        value,
                        unit,
                        bar,
                        detail: Value::Null,
                    },
                )
            }
            Cmd::Report { results, markdown } => {
                print!("{}", report::table(&results, markdown)?);
                Ok(())
            }
        }
    })
}
