//! The load driver: closed loop (N clients, each sends its next request when the last one
//! returns) or open loop (a fixed total rate spread over N connections; each request's latency
//! counts from the time it was due, so a stalled server cannot hide its stall by slowing the
//! sender: no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Error;
use crate::conn::Conn;
use crate::ops::OpParams;

/// How keys are chosen.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub addrs: Vec<SocketAddr>,
    pub clients: u64,
    /// Open loop: total requests per second; `None` for closed loop.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop after this many requests (in the measured phase) if set.
    pub requests: Option<u64>,
    /// Key space: request n uses key `n % keys` (`start + n` when `keys` is 0).
    pub keys: u64,
    pub start: u64,
    pub server_pids: Vec<u32>,
}

#[derive(Serialize, Debug, Clone)]
pub struct RunResult {
    pub op: String,
    pub mode: String,
    pub clients: u64,
    pub rate: Option<f64>,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Server CPU seconds (user + system) over the measured phase, summed over `server_pids`.
    pub server_cpu_s: Option<f64>,
    /// Requests per server CPU-second.
    pub ops_per_cpu_s: Option<f64>,
    pub first_error: Option<String>,
}

/// Clock ticks of a process (utime + stime) from /proc.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn total_ticks(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|p| cpu_ticks(*p)).sum()
}

struct Shared {
    next: AtomicU64,
    done: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant figures.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
}

pub async fn run(spec: RunSpec, params: OpParams) -> Result<RunResult, Error> {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        measuring: AtomicBool::new(spec.warmup.is_zero()),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let params = Arc::new(params);
    // Connect every client before the clock starts.
    let mut conns = Vec::new();
    for c in 0..spec.clients {
        let addr = spec.addrs[(c as usize) % spec.addrs.len()];
        let mut conn = Conn::new(addr);
        conn.connect().await?;
        conns.push(conn);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        let params = params.clone();
        let spec = spec.clone();
        tasks.push(tokio::spawn(client(
            c as u64, conn, shared, params, spec, t0,
        )));
    }
    // Phases: warm-up, then the measured window (or until `requests` are done).
    tokio::time::sleep(spec.warmup).await;
    shared.measuring.store(true, Ordering::SeqCst);
    let cpu0 = total_ticks(&spec.server_pids);
    let m0 = Instant::now();
    let deadline = m0 + spec.duration;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if let Some(n) = spec.requests
            && shared.done.load(Ordering::Relaxed) >= n
        {
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(5))).await;
    }
    let seconds = m0.elapsed().as_secs_f64();
    let cpu1 = total_ticks(&spec.server_pids);
    shared.stop.store(true, Ordering::SeqCst);
    let mut hist = new_hist();
    for t in tasks {
        let h = t.await?;
        hist.add(&h)?;
    }
    let requests = hist.len();
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    let server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) if !spec.server_pids.is_empty() => Some((b - a) as f64 / 100.0),
        _ => None,
    };
    let ops_per_s = requests as f64 / seconds;
    let first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    Ok(RunResult {
        op: format!("{:?}", params.op),
        mode: if spec.rate.is_some() {
            "open".into()
        } else {
            "closed".into()
        },
        clients: spec.clients,
        rate: spec.rate,
        seconds,
        requests,
        errors: shared.errors.load(Ordering::SeqCst),
        ops_per_s,
        mean_ms: hist.mean() / 1000.0,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        server_cpu_s,
        ops_per_cpu_s: server_cpu_s
            .filter(|c| *c > 0.0)
            .map(|c| requests as f64 / c),
        first_error,
    })
}

async fn client(
    c: u64,
    mut conn: Conn,
    shared: Arc<Shared>,
    params: Arc<OpParams>,
    spec: RunSpec,
    t0: Instant,
) -> Histogram<u64> {
    let mut hist = new_hist();
    // Open loop: this connection's k-th request is due at t0 + (k * clients + c) / rate.
    let interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.clients as f64 / r));
    let offset = spec
        .rate
        .map(|r| Duration::from_secs_f64(c as f64 / r))
        .unwrap_or_default();
    let mut k: u32 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let measuring = shared.measuring.load(Ordering::Relaxed);
        if let Some(n) = spec.requests
            && measuring
            && shared.next.load(Ordering::Relaxed) >= n
        {
            break;
        }
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let due = match interval {
            Some(iv) => {
                let due = t0 + offset + iv * k;
                k += 1;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let key = if spec.keys == 0 {
            spec.start + n
        } else {
            spec.start + n % spec.keys
        };
        let req = params.request(key);
        let res = conn.send(&req).await;
        let took = due.elapsed();
        let ok = match &res {
            Ok(r) if params.ok(r) => true,
            Ok(r) => {
                note_error(
                    &shared,
                    format!(
                        "HTTP {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                    ),
                );
                false
            }
            Err(e) => {
                note_error(&shared, e.to_string());
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
                false
            }
        };
        if shared.measuring.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
            if ok {
                let _ = hist.record((took.as_micros() as u64).max(1));
                shared.done.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    hist
}

fn note_error(shared: &Shared, e: String) {
    if let Ok(mut f) = shared.first_error.lock()
        && f.is_none()
    {
        *f = Some(e);
    }
}
