//! gRPC checks: the standard `grpc.health.v1.Health/Check` unary call over HTTP/2 (h2c, or
//! TLS with ALPN `h2` when `GRPCUseTLS`), as Consul's `GrpcHealthProbe` makes it.
//!
//! The target is `host:port` or `host:port/service`; the service part (possibly empty) is
//! the request's `service` field. `SERVING` ⇒ passing (`gRPC check <target>: success`);
//! another status ⇒ critical (`gRPC <target> serving status: NOT_SERVING`); a failed call ⇒
//! critical with grpc-go's error form (`rpc error: code = Unavailable desc = ...`).
//!
//! The call is small enough to make by hand on the h2 crate (which H2PING needs anyway): the
//! two protobuf messages have one field each, so they are encoded and decoded here rather
//! than pulling tonic and prost into the agent.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use cairn_catalog::model::HealthStatus;
use hyper::http::{HeaderMap, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::probes::{AbortOnDrop, connect_tcp, split_host_port};
use super::tls::{ALPN_H2, TlsClient};

/// Path of the health-check method.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// Largest response message accepted.
/// A HealthCheckResponse is a few bytes; the bound only keeps a misbehaving server from
/// making the agent buffer a large body.
const MAX_MESSAGE: usize = 64 * 1024;

/// A prepared gRPC health check.
#[derive(Debug)]
pub struct GrpcProbe {
    /// The target as registered, for outputs.
    target: String,
    /// `host:port`, dialled and sent as the request's authority.
    authority: String,
    /// Host part, for the TLS server name.
    host: String,
    /// The `service` field of the request (empty: the server as a whole).
    service: String,
    tls: Option<TlsClient>,
    timeout: Duration,
}

impl GrpcProbe {
    /// Prepares a check of `target` (`host:port[/service]`), over TLS when `use_tls`.
    pub fn new(
        target: &str,
        use_tls: bool,
        tls_skip_verify: bool,
        tls_server_name: &str,
        timeout: Duration,
    ) -> Result<GrpcProbe, String> {
        // Split at the first `/`: gRPC service names hold dots but no slash.
        let (authority, service) = match target.split_once('/') {
            Some((a, s)) => (a, s),
            None => (target, ""),
        };
        let Some((host, _)) = split_host_port(authority) else {
            return Err(format!(
                "rpc error: code = Unavailable desc = invalid target {target:?}: expected host:port[/service]"
            ));
        };
        let tls = if use_tls {
            Some(TlsClient::new(
                tls_skip_verify,
                tls_server_name,
                &[ALPN_H2],
            )?)
        } else {
            None
        };
        Ok(GrpcProbe {
            target: target.to_string(),
            authority: authority.to_string(),
            host: host.to_string(),
            service: service.to_string(),
            tls,
            timeout,
        })
    }

    /// Runs once.
    pub async fn run(&self) -> (HealthStatus, String) {
        let call = async {
            let stream = connect_tcp(&self.authority, self.timeout)
                .await
                .map_err(|e| unavailable(&format!("connection error: {e}")))?;
            match &self.tls {
                None => self.call(stream).await,
                Some(tls) => {
                    let s = tls
                        .connect(stream, &self.host)
                        .await
                        .map_err(|e| unavailable(&format!("connection error: {e}")))?;
                    self.call(s).await
                }
            }
        };
        // One timeout over dial, TLS, HTTP/2 handshake and call, reported with grpc-go's
        // DeadlineExceeded text.
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => (
                HealthStatus::Critical,
                "rpc error: code = DeadlineExceeded desc = context deadline exceeded".into(),
            ),
            Ok(Err(e)) => (HealthStatus::Critical, e),
            // SERVING.
            Ok(Ok(1)) => (
                HealthStatus::Passing,
                format!("gRPC check {}: success", self.target),
            ),
            Ok(Ok(status)) => (
                HealthStatus::Critical,
                format!(
                    "gRPC {} serving status: {}",
                    self.target,
                    serving_status_name(status)
                ),
            ),
        }
    }

    /// Makes the call; returns the raw serving status.
    ///
    /// Follows the gRPC over HTTP/2 protocol: a POST with `content-type: application/grpc`,
    /// one length-prefixed message each way, and the status in `grpc-status`, normally in the
    /// trailers.
    async fn call<T>(&self, io: T) -> Result<u64, String>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (client, conn) = h2::client::handshake(io)
            .await
            .map_err(|e| unavailable(&format!("connection error: {e}")))?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut client = client
            // Waits until the connection may open a stream (the server's SETTINGS arrived).
            .ready()
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let req = Request::post(format!("{scheme}://{}{CHECK_PATH}", self.authority))
            .header("content-type", "application/grpc")
            // Required by the protocol: it tells proxies the client understands trailers,
            // where gRPC carries its status.
            .header("te", "trailers")
            .header(
                // The deadline in milliseconds (`m`), so the server can give up when the agent
                // has; at least 1, since 0 would be already expired.
                "grpc-timeout",
                format!("{}m", self.timeout.as_millis().max(1)),
            )
            .header(
                "user-agent",
                concat!("cairn-health-check/", env!("CARGO_PKG_VERSION")),
            )
            .body(())
            .map_err(|e| internal(&e.to_string()))?;
        // The headers go first with the stream left open; the message follows and ends it.
        let (response, mut send) = client
            .send_request(req, false)
            .map_err(|e| unavailable(&e.to_string()))?;
        send.send_data(encode_request(&self.service), true)
            .map_err(|e| unavailable(&e.to_string()))?;
        let response = response.await.map_err(|e| unavailable(&e.to_string()))?;
        let (parts, mut body) = response.into_parts();
        // gRPC always answers HTTP 200; anything else is a proxy or a server that is not
        // speaking gRPC, reported with grpc-go's mapping.
        if parts.status != StatusCode::OK {
            return Err(format!(
                "rpc error: code = {} desc = unexpected HTTP status code received from server: {}",
                code_for_http(parts.status),
                parts.status
            ));
        }
        // A "trailers-only" answer carries the status in the headers.
        if let Some(err) = grpc_error(&parts.headers) {
            return Err(err);
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| unavailable(&e.to_string()))?;
            // Hand the window back, or a response larger than the initial window would
            // stall the stream.
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
            // + 5: the message's length prefix.
            if data.len() > MAX_MESSAGE + 5 {
                return Err(internal("response message too large"));
            }
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        match trailers {
            Some(t) => {
                if let Some(err) = grpc_error(&t) {
                    return Err(err);
                }
                if !t.contains_key("grpc-status") {
                    return Err(internal(
                        "server closed the stream without sending a status",
                    ));
                }
            }
            // A trailers-only answer already carried its (OK) status in the headers.
            None if parts.headers.contains_key("grpc-status") => {}
            None => {
                return Err(internal(
                    "server closed the stream without sending trailers",
                ));
            }
        }
        decode_response(data.freeze())
    }
}

/// grpc-go's text for an `Unavailable` error: what a failed connection reports.
fn unavailable(desc: &str) -> String {
    format!("rpc error: code = Unavailable desc = {desc}")
}

/// grpc-go's text for an `Internal` error: a protocol violation by the server.
fn internal(desc: &str) -> String {
    format!("rpc error: code = Internal desc = {desc}")
}

/// grpc-go's mapping of a non-200 HTTP status to a gRPC code.
///
/// From gRPC's HTTP-to-gRPC status mapping: a 200 is required, and a proxy's error page
/// (404 for a server without gRPC routes, 503 for a down backend) reads as the gRPC error
/// a native client would see.
fn code_for_http(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Internal",
        401 => "Unauthenticated",
        403 => "PermissionDenied",
        404 => "Unimplemented",
        429 | 502 | 503 | 504 => "Unavailable",
        _ => "Unknown",
    }
}

/// The gRPC status code names.
///
/// Indexed by the numeric code (`OK` = 0 ... `Unauthenticated` = 16); a code beyond them
/// prints as `Code(n)`, as grpc-go does.
fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("Code({code})"))
}

/// An error for a non-OK `grpc-status` in `headers`, if any.
fn grpc_error(headers: &HeaderMap) -> Option<String> {
    let status = headers.get("grpc-status")?;
    let code: u32 = match status.to_str().ok().and_then(|s| s.trim().parse().ok()) {
        Some(c) => c,
        None => return Some(internal("malformed grpc-status")),
    };
    if code == 0 {
        return None;
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(format!(
        "rpc error: code = {} desc = {message}",
        code_name(code)
    ))
}

/// Decodes `grpc-message`'s percent-encoding.
///
/// The gRPC spec percent-encodes `grpc-message`; a `%` not followed by two hex digits is
/// kept as is rather than failing the whole message.
fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Protobuf's base-128 varint: seven bits per byte, low bits first, high bit set on all
/// but the last byte.
fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Reads a varint; `None` when the buffer ends inside one or it runs past 64 bits (at most
/// ten bytes), which only a corrupt message does.
fn get_varint(buf: &mut Bytes) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A length-prefixed gRPC message holding `HealthCheckRequest { service = 1 }`.
///
/// An empty service is sent as an empty message, as proto3 omits default values. The frame
/// is gRPC's: a compression flag byte, then the message length as a big-endian `u32`.
fn encode_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + msg.len());
    framed.put_u8(0); // not compressed
    framed.put_u32(msg.len() as u32);
    framed.put_slice(&msg);
    framed.freeze()
}

/// The `status` field of a length-prefixed `HealthCheckResponse` (0, UNKNOWN, when absent).
///
/// Fields other than `status` are skipped by wire type, as any protobuf reader must, so a
/// server built from a newer `health.proto` still decodes. Groups (wire types 3 and 4)
/// were never used by this message and are refused.
fn decode_response(mut data: Bytes) -> Result<u64, String> {
    if data.len() < 5 {
        return Err(internal("response carried no message"));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        return Err(internal("compressed response message was not requested"));
    }
    if len > data.len() {
        return Err(internal("truncated response message"));
    }
    let mut msg = data.split_to(len);
    let mut status = 0;
    while msg.has_remaining() {
        let bad = || internal("malformed HealthCheckResponse");
        let key = get_varint(&mut msg).ok_or_else(bad)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = get_varint(&mut msg).ok_or_else(bad)?;
                if field == 1 {
                    status = v;
                }
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if msg.remaining() < n {
                    return Err(bad());
                }
                msg.advance(n);
            }
            2 => {
                let n = get_varint(&mut msg).ok_or_else(bad)? as usize;
                if msg.remaining() < n {
                    return Err(bad());
                }
                msg.advance(n);
            }
            _ => return Err(bad()),
        }
    }
    Ok(status)
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus` names.
///
/// A number the enum does not know is printed as itself.
fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_servers::{GrpcServer, self_signed_acceptor};
    use HealthStatus::*;
    use tonic_health::ServingStatus;

    fn probe(target: &str, tls: bool, skip: bool) -> GrpcProbe {
        GrpcProbe::new(target, tls, skip, "", Duration::from_secs(5)).expect("valid")
    }

    /// The hand-written encoding against known bytes, including unknown fields and bad
    /// frames.
    #[test]
    fn messages_round_trip() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        let resp = |m: &[u8]| {
            let mut b = vec![0, 0, 0, 0, m.len() as u8];
            b.extend_from_slice(m);
            decode_response(Bytes::from(b))
        };
        assert_eq!(resp(&[0x08, 1]), Ok(1));
        assert_eq!(resp(&[]), Ok(0));
        // Unknown fields before the status are skipped.
        assert_eq!(resp(&[0x12, 2, b'x', b'y', 0x08, 2]), Ok(2));
        assert!(resp(&[0x08]).is_err());
        assert!(decode_response(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
        assert_eq!(percent_decode(b"unknown%20service%"), "unknown service%");
    }

    /// Against tonic-health, the reference server: SERVING passes, NOT_SERVING is critical.
    #[tokio::test]
    async fn serving_then_not_serving() {
        let s = GrpcServer::start(None).await;
        let target = s.addr.to_string();
        assert_eq!(
            probe(&target, false, false).run().await,
            (Passing, format!("gRPC check {target}: success"))
        );
        s.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        assert_eq!(
            probe(&target, false, false).run().await,
            (
                Critical,
                format!("gRPC {target} serving status: NOT_SERVING")
            )
        );
    }

    /// The `/service` part of the target is asked for; an unknown one is NotFound.
    #[tokio::test]
    async fn named_services() {
        let s = GrpcServer::start(None).await;
        s.reporter
            .set_service_status("shop.Cart", ServingStatus::Serving)
            .await;
        let t = format!("{}/shop.Cart", s.addr);
        assert_eq!(probe(&t, false, false).run().await.0, Passing);
        let t = format!("{}/shop.Missing", s.addr);
        let (st, out) = probe(&t, false, false).run().await;
        assert_eq!(st, Critical);
        assert!(
            out.starts_with("rpc error: code = NotFound desc = "),
            "{out}"
        );
    }

    /// GRPCUseTLS with and without TLSSkipVerify, and plain text against a TLS server.
    #[tokio::test]
    async fn tls_with_and_without_verification() {
        let s = GrpcServer::start(Some(self_signed_acceptor(&[ALPN_H2]))).await;
        let target = s.addr.to_string();
        assert_eq!(probe(&target, true, true).run().await.0, Passing);
        let (st, out) = probe(&target, true, false).run().await;
        assert_eq!(st, Critical);
        assert!(out.contains("certificate"), "{out}");
        // Plain text against a TLS server fails too.
        assert_eq!(probe(&target, false, false).run().await.0, Critical);
    }

    /// A closed port, an HTTP/2 server that is not gRPC, and a target without a port.
    #[tokio::test]
    async fn unreachable_and_not_grpc() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let (st, out) = probe(&format!("127.0.0.1:{port}"), false, false)
            .run()
            .await;
        assert_eq!(st, Critical);
        assert!(
            out.starts_with("rpc error: code = Unavailable desc = connection error: dial tcp"),
            "{out}"
        );
        // An HTTP/2 server that is not a gRPC server answers 200 without grpc-status.
        let (addr, _t) = crate::checks::test_servers::h2_server(None).await;
        let (st, out) = probe(&addr.to_string(), false, false).run().await;
        assert_eq!(st, Critical);
        assert!(out.starts_with("rpc error: code = "), "{out}");
        assert!(GrpcProbe::new("nohost", false, false, "", Duration::from_secs(1)).is_err());
    }
}
