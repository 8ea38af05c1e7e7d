//! `GET /v1/agent/monitor`: streams the agent's log lines as they are logged (`loglevel`,
//! `logjson`), until the client goes away or the agent shuts down.
//!
//! The response is an endless chunked body fed by a task. Two ends matter: the client going
//! away (the body is dropped, the channel closes) and the agent shutting down, without which
//! a graceful shutdown, which waits for requests in flight, would wait for a stream that
//! never ends.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::ApiError;
use super::params::{Params, parse_bool};
use crate::monitor;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/agent/monitor", get(stream))
}

/// `GET /v1/agent/monitor`: lines at `?loglevel` (Consul's names, `info` when absent) or
/// more severe; Consul's 400 `Unknown log level` otherwise. `?logjson` switches to Consul's
/// JSON lines unless its value is a false boolean (Consul turns JSON on whenever the
/// parameter is present). A monitor sees at most what the agent logs at its `-log-level`.
async fn stream(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let raw_level = p.get("loglevel").unwrap_or_default();
    let level = monitor::parse_level(raw_level)
        .ok_or_else(|| ApiError::bad_request(format!("Unknown log level: {raw_level}")))?;
    let json = match p.get("logjson") {
        None => false,
        Some(v) => parse_bool(v).unwrap_or(true),
    };
    // Subscribed before answering: every line logged from here on is sent.
    let mut lines = monitor::subscribe();
    let mut stop = a.shutdown_signal();
    // A small buffer: a slow client holds back this task, and the broadcast behind it drops
    // lines for it (reported below) instead of the agent buffering without bound.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                l = lines.recv() => l,
                _ = stop.wait_for(|s| *s) => break,
                () = tx.closed() => break,
            };
            let text = match line {
                Ok(l) if l.within(level) => {
                    if json {
                        l.json()
                    } else {
                        l.text()
                    }
                }
                Ok(_) => continue,
                // A slow reader loses lines rather than holding the agent back.
                Err(RecvError::Lagged(n)) => format!("[WARN] monitor: {n} log lines dropped\n"),
                // The sender is process-wide and never dropped; ending the stream is the only
                // sensible answer should it ever be.
                Err(RecvError::Closed) => break,
            };
            if tx.send(Ok(Bytes::from(text))).await.is_err() {
                break;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    // 200 and the headers go out at once; lines follow as they are logged.
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}
