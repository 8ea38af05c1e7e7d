//! How server RPC messages travel: a [`Transport`] posts a request body to a path on a server
//! address and returns the status and body of the answer, or why the server could not be
//! reached. The RPC client and the Raft network only ever see this trait.
//!
//! - [`Http`]: HTTP/1.1 on the server port with pooled keep-alive connections (production).
//! - [`MemoryNet`]: servers of one test process registered by address and called directly
//!   through their RPC router, with faults chosen by a seeded RNG: one-way and symmetric
//!   cuts, lost requests, lost replies (the request ran, its answer never came back) and
//!   delays, all in `tokio::time`, so a whole cluster runs in virtual time and a seed replays
//!   the same faults.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{RPC_HEADER, RPC_VERSION};

/// A boxed future, as a dyn-compatible trait returns it.
///
/// Boxed because the trait is used as `dyn Transport` (one client type for HTTP and memory), and an
/// `async fn` in a trait is not dyn-compatible.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a post returns: the answer's status and body, or why no answer came.
///
/// An error string, not `api::Error`: at this level the only failure is that no answer came; the
/// client turns it into `Error::Unavailable`.
pub type PostResult = Result<(StatusCode, Bytes), String>;

/// Carries RPC requests to servers.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` (JSON) to `path` on the server at `addr`, waiting at most `timeout`.
    fn post<'a>(
        &'a self,
        addr: &'a str,
        path: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, PostResult>;
}

/// HTTP/1.1 over TCP, or over TLS with `verify_outgoing`, with a pool of keep-alive
/// connections per server.
pub struct Http {
    /// The client and its scheme (`http` or `https`); replaced when TLS is reconfigured (a
    /// reload), so new connections use the new certificate while requests in flight finish.
    client: std::sync::RwLock<(reqwest::Client, &'static str)>,
}

impl Http {
    /// A transport with pooled connections, in plain text.
    pub fn new() -> Http {
        Http {
            client: std::sync::RwLock::new((Http::build(None), "http")),
        }
    }

    /// Dials servers over TLS with this configuration from now on (`None`: plain text).
    pub fn configure(&self, tls: Option<rustls::ClientConfig>) -> Result<(), String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = Http::build(tls);
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = (client, scheme);
        Ok(())
    }

    fn current(&self) -> (reqwest::Client, &'static str) {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn build(tls: Option<rustls::ClientConfig>) -> reqwest::Client {
        let builder = crate::tls::http_client_builder()
            // Long-lived pooled connections: Raft heartbeats and forwarded requests reuse them, so
            // a heartbeat does not pay for a TCP handshake.
            .pool_idle_timeout(Duration::from_secs(90))
            // Enough idle connections per server for bursts of forwarded writes and parked blocking
            // reads, without holding hundreds of descriptors per peer.
            .pool_max_idle_per_host(32)
            // A dead server is found out within 2 s at connection time, so failover to another
            // server does not wait for the request's own (possibly minutes long) timeout.
            .connect_timeout(Duration::from_secs(2))
            // Small request/response messages: Nagle's algorithm would add delay to every
            // heartbeat.
            .tcp_nodelay(true);
        let builder = match tls {
            Some(config) => builder.tls_backend_preconfigured(config),
            None => builder,
        };
        builder.build().unwrap_or_default()
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Transport for Http {
    fn post<'a>(
        &'a self,
        addr: &'a str,
        path: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, PostResult> {
        Box::pin(async move {
            let (client, scheme) = self.current();
            let resp = client
                .post(format!("{scheme}://{addr}{path}"))
                .header(RPC_HEADER, RPC_VERSION)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok((status, bytes))
        })
    }
}

/// The faults of an in-memory network.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability that a request is lost on its way (the caller times out).
    pub lose_request: f64,
    /// Probability that a reply is lost on its way back (the request ran; the caller times
    /// out), the case that makes a forwarded write ambiguous.
    pub lose_reply: f64,
    /// Each message waits a uniformly drawn time in this range (zero: none).
    pub delay: (Duration, Duration),
    /// Only messages to paths starting with this get the faults above (`None`: every
    /// message, Raft's included).
    /// Lets a test lose forwarded writes' replies, say, without also breaking Raft's heartbeats and
    /// the election it would cause.
    pub only: Option<String>,
}

/// Behind one mutex: on the tests' single-threaded runtime every draw from `rng` happens in the
/// same order for a given run, which is what makes a seed replay the same faults.
struct NetState {
    servers: BTreeMap<String, axum::Router>,
    /// (from, to) pairs that cannot talk.
    cuts: BTreeSet<(String, String)>,
    faults: Faults,
    rng: StdRng,
    /// Messages given a fate, those then lost included.
    delivered: u64,
}

/// An in-memory network of servers for tests (see the module comment). Cheap to clone.
#[derive(Clone)]
pub struct MemoryNet {
    state: Arc<Mutex<NetState>>,
}

/// What the network decided for one message.
struct Fate {
    delay: Duration,
    lose_request: bool,
    lose_reply: bool,
}

impl MemoryNet {
    /// An empty network whose faults are drawn from `seed`.
    pub fn new(seed: u64) -> MemoryNet {
        MemoryNet {
            state: Arc::new(Mutex::new(NetState {
                servers: BTreeMap::new(),
                cuts: BTreeSet::new(),
                faults: Faults::default(),
                rng: StdRng::seed_from_u64(seed),
                delivered: 0,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the RPC router of a server reachable at `addr`.
    pub fn serve(&self, addr: &str, router: axum::Router) {
        self.state().servers.insert(addr.to_string(), router);
    }

    /// Takes the server at `addr` off the network (a crashed process).
    pub fn unserve(&self, addr: &str) {
        self.state().servers.remove(addr);
    }

    /// The transport of the process at `from`.
    pub fn transport(&self, from: &str) -> Arc<dyn Transport> {
        Arc::new(Memory {
            net: self.clone(),
            from: from.to_string(),
        })
    }

    /// Cuts every address of `a` off from every address of `b`, both ways.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        let mut st = self.state();
        for x in a {
            for y in b {
                st.cuts.insert((x.to_string(), y.to_string()));
                st.cuts.insert((y.to_string(), x.to_string()));
            }
        }
    }

    /// Cuts messages from `from` to `to` only.
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.state().cuts.insert((from.to_string(), to.to_string()));
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.state().cuts.clear();
    }

    /// Sets the random faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.state().delivered
    }

    /// Whether messages from `from` to `to` are cut.
    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.state()
            .cuts
            .contains(&(from.to_string(), to.to_string()))
    }

    /// Decides the fate of one message to `path`, or `None` when `from` cannot reach `to`.
    ///
    /// All random draws for a message happen here, at send time, under the lock: the draws' order
    /// is the order messages are sent, not the order they are delivered.
    fn fate(&self, from: &str, to: &str, path: &str) -> Option<(axum::Router, Fate)> {
        let mut st = self.state();
        if st.cuts.contains(&(from.to_string(), to.to_string())) {
            return None;
        }
        let router = st.servers.get(to)?.clone();
        let f = match &st.faults.only {
            Some(prefix) if !path.starts_with(prefix.as_str()) => Faults::default(),
            _ => st.faults.clone(),
        };
        let lose_request = f.lose_request > 0.0 && st.rng.random_bool(f.lose_request.min(1.0));
        let lose_reply = f.lose_reply > 0.0 && st.rng.random_bool(f.lose_reply.min(1.0));
        let (lo, hi) = f.delay;
        let delay = if hi > lo {
            // Microsecond steps: fine enough for virtual-time delays, within `u64` for any sane
            // range.
            let span = u64::try_from((hi - lo).as_micros()).unwrap_or(u64::MAX);
            lo + Duration::from_micros(st.rng.random_range(0..=span))
        } else {
            lo
        };
        st.delivered += 1;
        Some((
            router,
            Fate {
                delay,
                lose_request,
                lose_reply,
            },
        ))
    }
}

/// One process's view of a [`MemoryNet`].
struct Memory {
    net: MemoryNet,
    from: String,
}

impl Transport for Memory {
    fn post<'a>(
        &'a self,
        addr: &'a str,
        path: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, PostResult> {
        Box::pin(async move {
            let Some((router, fate)) = self.net.fate(&self.from, addr, path) else {
                // A cut or a crashed server looks like a connection that never answers.
                tokio::time::sleep(timeout.min(Duration::from_secs(2))).await;
                return Err(format!("{addr}: connection refused or timed out"));
            };
            // The request vanished: the caller sees only its timeout run out, as with a dropped
            // packet.
            if fate.lose_request {
                tokio::time::sleep(timeout).await;
                return Err(format!("{addr}: request timed out"));
            }
            let call = async {
                tokio::time::sleep(fate.delay).await;
                let req = Request::post(path)
                    .header(RPC_HEADER, RPC_VERSION)
                    .body(Body::from(body))
                    .map_err(|e| e.to_string())?;
                let resp = tower::ServiceExt::oneshot(router, req)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), super::MAX_RPC_BODY)
                    .await
                    .map_err(|e| e.to_string())?;
                // The way back can be cut meanwhile.
                if self.net.is_cut(addr, &self.from) || fate.lose_reply {
                    return Err(format!("{addr}: reply lost"));
                }
                tokio::time::sleep(fate.delay).await;
                Ok((status, bytes))
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(r)) => Ok(r),
                // The reply was lost after the server acted: the caller still waits out its
                // timeout, as it would for a reply that never arrives over TCP, so it cannot tell
                // the two apart.
                Ok(Err(e)) => {
                    tokio::time::sleep(timeout).await;
                    Err(e)
                }
                Err(_) => Err(format!("{addr}: request timed out")),
            }
        })
    }
}
