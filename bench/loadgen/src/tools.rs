//! Small tools the harness script needs: the bare axum baseline server, loopback round trip,
//! readiness timing, finding a cluster's leader, and reading fio's JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::Error;
use crate::conn::{Req, once};
use crate::watch::Target;

/// A bare axum server answering every GET with a fixed JSON body (the P3 baseline: the HTTP
/// stack's cost with no lookup behind it).
pub async fn serve(addr: SocketAddr, body: Bytes) -> Result<(), Error> {
    let handler = move || {
        let body = body.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    };
    let app = Router::new().fallback(get(handler));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Loopback TCP ping-pong of one byte: returns (p50, p99) round trip in microseconds.
pub fn pingpong(count: usize) -> Result<(f64, f64), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut b = [0u8; 1];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        if i >= count / 10 {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(c);
    let _ = server.join();
    rtts.sort_by(f64::total_cmp);
    let p = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    Ok((p(0.5), p(0.99)))
}

/// Polls `req` on a fresh connection every millisecond until the answer is 200 and its body
/// holds `contains` (and is not empty or `""`), and returns the milliseconds since `since_ns`
/// (Unix time in nanoseconds, taken by the caller just before it started the server).
pub async fn wait_ready(
    addr: SocketAddr,
    req: Req,
    contains: Option<String>,
    since_ns: Option<u128>,
    timeout: Duration,
) -> Result<f64, Error> {
    let t0 = Instant::now();
    loop {
        if let Ok(r) = once(addr, &req).await {
            let body = String::from_utf8_lossy(&r.body);
            let good = r.status == 200
                && !body.trim().is_empty()
                && body.trim() != "\"\""
                && contains.as_deref().is_none_or(|c| body.contains(c));
            if good {
                break;
            }
        }
        if t0.elapsed() > timeout {
            return Err(format!("not ready after {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(match since_ns {
        Some(s) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            now.saturating_sub(s) as f64 / 1e6
        }
        None => t0.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Which of `addrs` (HTTP/client addresses) belongs to the leader.
pub async fn leader(target: Target, addrs: &[SocketAddr]) -> Result<SocketAddr, Error> {
    match target {
        Target::Cairn => {
            // `/v1/status/leader` names the leader's server (RPC) address; the harness gives
            // every server its own loopback IP, so the IP tells which HTTP address it is.
            for a in addrs {
                let r = once(*a, &Req::get("/v1/status/leader")).await?;
                let v: Value = serde_json::from_slice(&r.body)?;
                let s = v.as_str().unwrap_or_default();
                if let Some((ip, _)) = s.rsplit_once(':')
                    && let Some(found) = addrs.iter().find(|x| x.ip().to_string() == ip)
                {
                    return Ok(*found);
                }
            }
            Err("no leader".into())
        }
        Target::Etcd => {
            for a in addrs {
                let r = once(
                    *a,
                    &Req::with(
                        Method::POST,
                        "/v3/maintenance/status",
                        json!({}).to_string(),
                    ),
                )
                .await?;
                let v: Value = serde_json::from_slice(&r.body)?;
                let me = &v["header"]["member_id"];
                if !me.is_null() && *me == v["leader"] {
                    return Ok(*a);
                }
            }
            Err("no leader".into())
        }
    }
}

/// fdatasync latency percentiles (p50, p99) in milliseconds from fio's JSON output.
pub fn fio_sync(path: &str) -> Result<(f64, f64), Error> {
    let text = std::fs::read_to_string(path)?;
    // fio may print notes before the JSON document.
    let start = text.find('{').ok_or("no JSON in fio output")?;
    let v: Value = serde_json::from_str(&text[start..])?;
    let pct = &v["jobs"][0]["sync"]["lat_ns"]["percentile"];
    let get = |k: &str| {
        pct[k]
            .as_f64()
            .map(|ns| ns / 1e6)
            .ok_or_else(|| format!("fio JSON has no sync percentile {k}"))
    };
    Ok((get("50.000000")?, get("99.000000")?))
}
