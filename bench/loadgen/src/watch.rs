//! Watch fan-out: park N watchers on one service (Cairn blocking queries) or one key (etcd watches
//! through the JSON gateway's streaming `/v3/watch`), make one change, and time until every
//! watcher has been told. Each watcher has its own connection. Reports the server's RSS growth per
//! watcher while they are parked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};

use crate::Error;
use crate::conn::{Conn, Req};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Cairn,
    Etcd,
}

#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub target: Target,
    pub addr: SocketAddr,
    pub watchers: usize,
    pub service: String,
    pub key: String,
    pub server_pid: Option<u32>,
    pub settle: Duration,
    pub timeout: Duration,
}

#[derive(Serialize, Debug)]
pub struct WatchResult {
    pub target: String,
    pub watchers: usize,
    pub notified: usize,
    pub early: usize,
    pub failed: usize,
    pub setup_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub all_ms: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_parked_kb: Option<u64>,
    pub rss_per_watcher_kb: Option<f64>,
}

pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// What one watcher saw.
enum Outcome {
    /// Notified at this instant.
    Notified(Instant),
    /// Returned before the change was made.
    Early,
    Failed(String),
}

pub async fn watch(spec: WatchSpec) -> Result<WatchResult, Error> {
    let mut ctl = Conn::new(spec.addr);
    // Cairn: the index to block on. etcd: nothing to read first.
    let index = match spec.target {
        Target::Cairn => {
            let r = ctl
                .send(&Req::get(format!("/v1/health/service/{}", spec.service)))
                .await?;
            r.index.ok_or("no X-Consul-Index on the health endpoint")?
        }
        Target::Etcd => 0,
    };
    let rss_before = spec.server_pid.and_then(rss_kb);
    let t_setup = Instant::now();
    let change_at: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    // Connect at most 256 at a time, so the listen backlog is never the limit.
    let connecting = Arc::new(Semaphore::new(256));
    let parked = Arc::new(Barrier::new(spec.watchers + 1));
    let mut tasks = Vec::with_capacity(spec.watchers);
    for _ in 0..spec.watchers {
        let spec = spec.clone();
        let connecting = connecting.clone();
        let parked = parked.clone();
        let change_at = change_at.clone();
        tasks.push(tokio::spawn(async move {
            let out = one(&spec, index, connecting, &parked, &change_at).await;
            out.unwrap_or_else(|e| Outcome::Failed(e.to_string()))
        }));
    }
    // Each watcher passes the barrier once its request is on the wire (Cairn) or its watch is
    // confirmed as created (etcd); a failed watcher passes it too.
    parked.wait().await;
    let setup_s = t_setup.elapsed().as_secs_f64();
    tokio::time::sleep(spec.settle).await;
    let rss_parked = spec.server_pid.and_then(rss_kb);
    // The change.
    let now = Instant::now();
    let _ = change_at.set(now);
    let r = match spec.target {
        Target::Cairn => {
            ctl.send(&Req::with(
                Method::PUT,
                "/v1/catalog/register",
                json!({"Node": "watch-change", "Address": "127.0.0.1",
                       "Service": {"Service": spec.service, "ID": "watch-change", "Port": 1}})
                .to_string(),
            ))
            .await?
        }
        Target::Etcd => {
            ctl.send(&Req::with(
                Method::POST,
                "/v3/kv/put",
                json!({"key": B64.encode(&spec.key), "value": B64.encode("changed")}).to_string(),
            ))
            .await?
        }
    };
    if r.status != 200 {
        return Err(format!("change failed: HTTP {}", r.status).into());
    }
    let mut lat = Vec::new();
    let (mut early, mut failed) = (0, 0);
    for t in tasks {
        match t.await? {
            Outcome::Notified(at) => lat.push(at.saturating_duration_since(now)),
            Outcome::Early => early += 1,
            Outcome::Failed(e) => {
                if failed == 0 {
                    eprintln!("watcher failed: {e}");
                }
                failed += 1
            }
        }
    }
    lat.sort();
    let pct = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i].as_secs_f64() * 1000.0
        }
    };
    let per = match (rss_before, rss_parked) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a)) as f64 / spec.watchers as f64),
        _ => None,
    };
    Ok(WatchResult {
        target: format!("{:?}", spec.target),
        watchers: spec.watchers,
        notified: lat.len(),
        early,
        failed,
        setup_s,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        all_ms: if lat.len() == spec.watchers {
            pct(1.0)
        } else {
            f64::NAN
        },
        rss_before_kb: rss_before,
        rss_parked_kb: rss_parked,
        rss_per_watcher_kb: per,
    })
}

async fn one(
    spec: &WatchSpec,
    index: u64,
    connecting: Arc<Semaphore>,
    parked: &Barrier,
    change_at: &std::sync::OnceLock<Instant>,
) -> Result<Outcome, Error> {
    let mut conn = Conn::new(spec.addr);
    let mut passed = false;
    let res = async {
        {
            let _permit = connecting.acquire().await?;
            conn.connect().await?;
        }
        match spec.target {
            Target::Cairn => {
                let req = Req::get(format!(
                    "/v1/health/service/{}?index={index}&wait=10m",
                    spec.service
                ));
                // The request is written when the response future is first polled; give it a
                // moment on the wire, then report parked.
                let fut = conn.send(&req);
                tokio::pin!(fut);
                let early = tokio::select! {
                    r = &mut fut => Some(r),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => None,
                };
                if let Some(r) = early {
                    r?;
                    return Ok(Outcome::Early);
                }
                passed = true;
                parked.wait().await;
                let r = tokio::time::timeout(spec.timeout, fut).await??;
                let at = Instant::now();
                if r.status != 200 {
                    return Err(format!("HTTP {}", r.status).into());
                }
                if change_at.get().is_none() {
                    return Ok(Outcome::Early);
                }
                Ok(Outcome::Notified(at))
            }
            Target::Etcd => {
                let req = Req::with(
                    Method::POST,
                    "/v3/watch",
                    json!({"create_request": {"key": B64.encode(&spec.key)}}).to_string(),
                );
                let resp = conn.send_streaming(&req).await?;
                if resp.status() != 200 {
                    return Err(format!("HTTP {}", resp.status()).into());
                }
                let mut body = resp.into_body();
                let mut seen = Vec::new();
                // The first message confirms the watch ("created": true).
                while !contains(&seen, b"\"created\"") {
                    match body.frame().await {
                        Some(f) => {
                            if let Ok(d) = f?.into_data() {
                                seen.extend_from_slice(&d)
                            }
                        }
                        None => return Err("watch stream ended".into()),
                    }
                }
                passed = true;
                parked.wait().await;
                let wait = async {
                    while !contains(&seen, b"\"events\"") {
                        match body.frame().await {
                            Some(f) => {
                                if let Ok(d) = f?.into_data() {
                                    seen.extend_from_slice(&d)
                                }
                            }
                            None => return Err::<(), Error>("watch stream ended".into()),
                        }
                    }
                    Ok(())
                };
                tokio::time::timeout(spec.timeout, wait).await??;
                let at = Instant::now();
                if change_at.get().is_none() {
                    return Ok(Outcome::Early);
                }
                Ok(Outcome::Notified(at))
            }
        }
    }
    .await;
    if !passed {
        parked.wait().await;
    }
    res
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
