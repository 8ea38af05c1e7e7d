//! The server RPC listener (port 8300): HTTP/1.1 in plain text or over TLS on the same port, as
//! Consul's RPC port takes both during a rollout.
//!
//! A connection whose first byte is a TLS handshake record is TLS (if this server has a
//! certificate); anything else is plain text, accepted only while `verify_incoming` is off
//! (Consul's log line "Non-TLS connection attempted with VerifyIncoming set" otherwise). The
//! handshake is bounded by [`crate::tls::HANDSHAKE_TIMEOUT`]. Each request carries a [`Peer`]
//! saying whether the caller may make server-only calls (Raft, writes forwarded to the leader):
//! with `verify_incoming` and `verify_server_hostname`, only a peer whose certificate names
//! `server.<dc>.<domain>` may, so a client agent's certificate cannot pose as a server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// What the listener learned about the caller of a request.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The caller may make server-only calls.
    pub may_act_as_server: bool,
}

/// Paths only servers may call when [`Peer::may_act_as_server`] is enforced.
fn server_only(path: &str) -> bool {
    path.starts_with("/v1/internal/raft/") || path == "/v1/internal/write-leader"
}

/// Middleware refusing server-only calls from peers that are not servers.
pub async fn require_server(req: Request, next: Next) -> Response {
    let allowed = req
        .extensions()
        .get::<Peer>()
        .is_none_or(|p| p.may_act_as_server);
    if !allowed && server_only(req.uri().path()) {
        warn!(
            path = %req.uri().path(),
            "server RPC refused: the peer's certificate is not a server certificate"
        );
        return (
            StatusCode::FORBIDDEN,
            "this call needs a server certificate (verify_server_hostname)",
        )
            .into_response();
    }
    next.run(req).await
}

/// Serves `router` on `listener` with the TLS policy `state` holds at each accept.
pub async fn serve(listener: TcpListener, router: axum::Router, state: Arc<crate::agent::Agent>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "server RPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let policy = state.tls.rpc_policy();
        let router = router.clone();
        tokio::spawn(async move {
            connection(stream, peer, router, policy).await;
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    policy: crate::tls::RpcPolicy,
) {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return;
    }
    if first[0] == crate::tls::HANDSHAKE_RECORD {
        let Some(config) = policy.config.clone() else {
            warn!(%peer, "TLS connection on server RPC, but this server has no certificate");
            return;
        };
        let accepted = tokio::time::timeout(
            crate::tls::HANDSHAKE_TIMEOUT,
            tokio_rustls::TlsAcceptor::from(config).accept(stream),
        )
        .await;
        let tls = match accepted {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(%peer, error = %e, "server RPC TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "server RPC TLS handshake timed out");
                return;
            }
        };
        let is_server = match (&policy.servers_only, tls.get_ref().1.peer_certificates()) {
            (None, _) => true,
            (Some(domain), Some([leaf, ..])) => crate::tls::is_server_cert(leaf, domain),
            (Some(_), _) => false,
        };
        http1(
            tls,
            peer,
            router,
            Peer {
                may_act_as_server: is_server,
            },
        )
        .await;
    } else {
        if policy.verify_incoming {
            warn!(%peer, "Non-TLS connection attempted with VerifyIncoming set");
            return;
        }
        let may = policy.servers_only.is_none();
        http1(
            stream,
            peer,
            router,
            Peer {
                may_act_as_server: may,
            },
        )
        .await;
    }
}

async fn http1<T>(io: T, peer: SocketAddr, router: axum::Router, who: Peer)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(who);
        async move {
            let resp = tower::ServiceExt::oneshot(router, req).await;
            Ok::<_, Infallible>(match resp {
                Ok(r) => r,
                Err(never) => match never {},
            })
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!(%peer, error = %e, "server RPC connection ended with an error");
    }
}
