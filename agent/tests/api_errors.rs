//! Bad requests end to end: wrong methods (405 with `Allow`), `OPTIONS`, unknown routes,
//! malformed or mistyped bodies and oversized ones. Always a 4xx with a message, never a 5xx
//! or a partial write. And the redirect from `/` to the dashboard. Abusive clients too: one
//! address holding many connections must not lock the others out.

mod common;

use common::Agent;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let a = Agent::start().await;
    let cases: &[(Method, &str, &str)] = &[
        (Method::POST, "/v1/agent/service/register", "OPTIONS,PUT"),
        (Method::GET, "/v1/agent/service/register", "OPTIONS,PUT"),
        (Method::GET, "/v1/agent/check/pass/x", "OPTIONS,PUT"),
        (Method::PUT, "/v1/agent/services", "OPTIONS,GET"),
        (Method::DELETE, "/v1/catalog/nodes", "OPTIONS,GET"),
        (Method::POST, "/v1/catalog/register", "OPTIONS,PUT"),
        (Method::PUT, "/v1/health/service/web", "OPTIONS,GET"),
        (Method::POST, "/v1/kv/key", "OPTIONS,GET,PUT,DELETE"),
        (Method::POST, "/v1/txn", "OPTIONS,PUT"),
        (Method::GET, "/v1/session/create", "OPTIONS,PUT"),
        (Method::PUT, "/v1/status/leader", "OPTIONS,GET"),
        (Method::GET, "/v1/agent/leave", "OPTIONS,PUT"),
    ];
    for (method, path, allow) in cases {
        let r = a.request(method.clone(), path, None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(
            r.header("Allow").as_deref(),
            Some(*allow),
            "{method} {path}"
        );
        assert_eq!(
            r.text(),
            format!("method {method} not allowed"),
            "{method} {path}"
        );
    }
    // The agent is still running (GET /v1/agent/leave did nothing).
    a.get("/v1/status/leader").await.expect_status(200);
}

#[tokio::test]
async fn options_answers_allow() {
    let a = Agent::start().await;
    for (path, allow) in [
        ("/v1/agent/service/register", "OPTIONS,PUT"),
        ("/v1/agent/services", "OPTIONS,GET"),
        ("/v1/kv/some/key", "OPTIONS,GET,PUT,DELETE"),
        ("/v1/catalog/service/web", "OPTIONS,GET"),
    ] {
        let r = a.request(Method::OPTIONS, path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Allow").as_deref(), Some(allow), "{path}");
        assert!(r.bytes.is_empty(), "{path}: {}", r.text());
    }
    // OPTIONS never runs the handler.
    let r = a.request(Method::OPTIONS, "/v1/kv/opt", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(a.get("/v1/kv/opt").await.status, 404);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let a = Agent::start().await;
    for path in [
        "/v1/nope",
        "/v1/agent/nope",
        "/v1/catalog/nope",
        "/v2/agent/self",
        "/nope",
    ] {
        let r = a.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
}

#[tokio::test]
async fn root_redirects_to_the_ui() {
    let a = Agent::start().await;
    let r = a.get("/").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location").as_deref(), Some("/ui/"));
    let r = a.get("/ui/").await.expect_status(200);
    let ct = r.header("Content-Type").expect("content type");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(r.text().to_lowercase().contains("<html"), "{}", r.text());
    // A client following redirects ends on a 2xx.
    let follow = cairn::tls::http_client_builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = follow.get(a.url("/")).send().await.expect("request");
    assert!(r.status().is_success(), "{}", r.status());
    assert!(r.url().path().starts_with("/ui"));
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400() {
    let a = Agent::start().await;
    let cases: &[(&str, &[u8])] = &[
        ("/v1/agent/service/register", b"{\"Name\": "),
        ("/v1/agent/service/register", b"not json"),
        ("/v1/agent/service/register", b"{\"Name\": 5}"),
        (
            "/v1/agent/service/register",
            b"{\"Name\": \"w\", \"Port\": \"eighty\"}",
        ),
        (
            "/v1/agent/service/register",
            b"{\"Name\": \"w\", \"Port\": 70000}",
        ),
        (
            "/v1/agent/service/register",
            b"{\"Name\": \"w\", \"Tags\": \"a\"}",
        ),
        (
            "/v1/agent/service/register",
            b"{\"Name\": \"w\", \"Meta\": {\"k\": 1}}",
        ),
        (
            "/v1/agent/service/register",
            b"{\"Name\": \"w\", \"Check\": {\"TTL\": true}}",
        ),
        (
            "/v1/agent/service/register",
            b"{\"Name\": \"w\", \"Check\": {\"TTL\": \"soon\"}}",
        ),
        ("/v1/agent/service/register", b"[]"),
        ("/v1/agent/service/register", b""),
        (
            "/v1/agent/check/register",
            b"{\"Name\": \"c\", \"TTL\": [1]}",
        ),
        ("/v1/agent/check/register", b"{"),
        ("/v1/agent/check/update/x", b"{\"Status\": 1}"),
        (
            "/v1/catalog/register",
            b"{\"Node\": [], \"Address\": \"a\"}",
        ),
        (
            "/v1/catalog/register",
            b"{\"Node\": \"n\", \"Address\": \"a\", \"NodeMeta\": {\"consul-x\": \"1\"}}",
        ),
        ("/v1/catalog/deregister", b"{\"Node\": 1}"),
        ("/v1/session/create", b"{\"TTL\": 5}"),
        ("/v1/session/create", b"{\"LockDelay\": \"forever\"}"),
        ("/v1/txn", b"{}"),
        (
            "/v1/txn",
            b"[{\"KV\": {\"Verb\": \"set\", \"Key\": \"k\", \"Value\": \"not base64!\"}}]",
        ),
    ];
    for (path, body) in cases {
        let r = a.put(path, body.to_vec()).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "PUT {path} {shown}: {}", r.text());
        assert!(
            !r.text().trim().is_empty(),
            "PUT {path} {shown}: no message"
        );
        assert!(
            r.header("Content-Type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "PUT {path} {shown}: {:?}",
            r.header("Content-Type")
        );
    }
    let r = a.put("/v1/agent/service/register", "{\"Name\": ").await;
    assert!(
        r.text().starts_with("Request decode failed: "),
        "{}",
        r.text()
    );
    // Nothing was written by any of them.
    assert_eq!(a.get("/v1/agent/services").await.body, json!({}));
    assert_eq!(a.checks().await, json!({}));
    assert_eq!(a.get("/v1/session/list").await.body, json!([]));
    assert_eq!(a.get("/v1/kv/k").await.status, 404);
}

#[tokio::test]
async fn garbage_never_gets_a_5xx() {
    let a = Agent::start().await;
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = "{\"a\":".repeat(50_000);
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"\"string\"".to_vec(),
        b"123".to_vec(),
        b"{\"ID\": null, \"Name\": null, \"Checks\": null}".to_vec(),
        b"{\"Name\": \"x\", \"Checks\": [null, 1, \"a\"]}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        deep_array.into_bytes(),
        deep_object.into_bytes(),
    ];
    let paths = [
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/agent/check/update/nope",
        "/v1/agent/check/pass/nope",
        "/v1/agent/service/maintenance/nope?enable=true",
        "/v1/agent/maintenance?enable=maybe",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
        "/v1/session/create",
        "/v1/session/renew/nope",
        "/v1/session/destroy/nope",
        "/v1/txn",
        "/v1/event/fire/e",
        "/v1/kv/garbage",
        "/v1/kv/garbage?cas=x",
        "/v1/kv/garbage?flags=-5",
        "/v1/kv/garbage?acquire=nope",
    ];
    for path in paths {
        for body in &bodies {
            let r = a.put(path, body.clone()).await;
            let shown: String = String::from_utf8_lossy(body).chars().take(40).collect();
            assert!(
                r.status < 500,
                "PUT {path} {shown}: {} {}",
                r.status,
                r.text()
            );
            if r.status >= 400 {
                assert!(
                    !r.text().trim().is_empty(),
                    "PUT {path} {shown}: {} without a message",
                    r.status
                );
            }
        }
    }
    // Query strings too.
    for path in [
        "/v1/health/service/x?passing=%ZZ",
        "/v1/catalog/service/x?tag=%00",
        "/v1/kv/x?index=99999999999999999999999",
        "/v1/catalog/nodes?filter=%28%28%28",
        "/v1/catalog/nodes?wait=9999999999999h&index=1",
        "/v1/agent/services?filter=Port%20%3D%3D%20%22x%22",
    ] {
        let r = a.get(path).await;
        assert!(r.status < 500, "GET {path}: {} {}", r.status, r.text());
    }
    // The agent is still healthy and empty.
    a.get("/v1/status/leader").await.expect_status(200);
    assert_eq!(a.get("/v1/agent/services").await.body, json!({}));
}

#[tokio::test]
async fn oversized_bodies_are_413_or_400() {
    let a = Agent::start().await;
    let big = vec![b' '; 6 * 1024 * 1024];
    for path in [
        "/v1/agent/service/register",
        "/v1/catalog/register",
        "/v1/txn",
        "/v1/session/create",
        "/v1/event/fire/big",
    ] {
        let r = a.put(path, big.clone()).await;
        assert!(
            r.status == 413 || r.status == 400,
            "PUT {path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().trim().is_empty(), "PUT {path}: no message");
    }
    // A large but valid registration is fine.
    let tags: Vec<String> = (0..2000).map(|i| format!("tag-{i}")).collect();
    a.register_service(&json!({"Name": "many", "Tags": tags}))
        .await;
    let s = a.get("/v1/agent/service/many").await.expect_status(200);
    assert_eq!(s.body["Tags"].as_array().map(Vec::len), Some(2000));
}

#[tokio::test]
async fn pretty_output() {
    // `-dev` indents every answer, as Consul's dev mode does (compact output outside -dev is
    // checked in the cluster tests).
    let a = Agent::start().await;
    let plain = a.get("/v1/catalog/nodes").await;
    assert!(plain.text().contains("\n "), "{}", plain.text());
    let pretty = a.get("/v1/catalog/nodes?pretty").await;
    assert!(pretty.text().contains("\n "), "{}", pretty.text());
    assert_eq!(plain.body, pretty.body);
}

/// One address holding many idle connections locks nobody else out (black-box finding: under
/// `ulimit -n 1024`, 1,100 idle connections from one address made the API time out for
/// everyone). The client's connections beyond `limits.http_max_conns_per_client` (Consul's
/// default, 200) get Consul's 429 and are closed, and other clients are served at once.
#[tokio::test]
async fn one_address_with_many_idle_connections_locks_nobody_out() {
    // This process holds more than a thousand descriptors below.
    cairn::run::raise_fd_limit();
    let a = Agent::builder().ulimit("-n 1024").start().await;
    let addr = format!("127.0.0.1:{}", a.http_port);
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // Another address is served, promptly.
    let other = cairn::tls::http_client_builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("client");
    let r = other
        .get(a.url("/v1/status/leader"))
        .send()
        .await
        .expect("another address is served");
    assert_eq!(r.status(), 200);
    // The last connections of the crowded address were refused with Consul's text (or, past
    // the refusals answered at once, just closed).
    let mut last = idle.pop().expect("a connection");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut last, &mut answer),
    )
    .await
    .expect("the refused connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 429 ")
                && answer.ends_with(
                    "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
                )),
        "{answer}"
    );
    let mut refused = 0;
    for s in idle.iter_mut().skip(200).take(100) {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(s, &mut buf),
        )
        .await
        .expect("a refused connection is closed");
        if String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 429 ") {
            refused += 1;
        }
    }
    assert!(refused > 0, "no connection got the 429");
}

/// The agent raises its soft open-files limit to the hard one at start, as Consul does.
#[tokio::test]
async fn the_agent_raises_its_soft_open_files_limit() {
    let a = Agent::builder().ulimit("-S -n 256").start().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", a.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(fields[3], fields[4], "{line}");
    assert_ne!(fields[3], "256", "{line}");
}

/// Sends raw bytes on a fresh connection and reads the answer until the agent closes or
/// `wait` passes; the answer as text.
async fn raw_exchange(a: &Agent, request: &[u8], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", a.http_port))
        .await
        .expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return String::from_utf8_lossy(&out).into_owned(),
        }
    }
}

/// Every refusal carries Consul's status and a message, whoever refuses: the HTTP layer
/// (malformed request, URI or head too long, undecodable path, bad query), the body decoder
/// (an array where an object is expected, at any depth: black-box finding, `[]` created a
/// session and reset autopilot's settings) and the handlers (an unparsable join address was a
/// 500; `HEAD` on a route was whatever the GET gave, a 500 on the keyring).
#[tokio::test]
async fn every_refusal_has_the_right_status_and_a_message() {
    let a = Agent::start().await;
    let before = a.get("/v1/operator/autopilot/configuration").await.body;
    let long = "a".repeat(70_000);
    let big = "b".repeat(1_100_000);
    let raw: Vec<(Vec<u8>, u16)> = vec![
        (b"GET /v1/kv/a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        (b"GET /v1/kv/a HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400),
        (b"G@T /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        (
            b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            format!("GET /v1/kv/{long} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            414,
        ),
        (
            format!("GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").into_bytes(),
            431,
        ),
    ];
    for (req, status) in raw {
        let head = String::from_utf8_lossy(&req[..req.len().min(40)]).into_owned();
        let out = raw_exchange(&a, &req, std::time::Duration::from_secs(10)).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head}: {out}"
        );
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        assert!(!body.trim().is_empty(), "{head}: no message in {out:?}");
    }

    let routed: Vec<(reqwest::Method, &str, Option<&str>, u16)> = vec![
        (reqwest::Method::GET, "/v1/kv/%FF", None, 400),
        (
            reqwest::Method::GET,
            "/v1/catalog/service/%C3%28",
            None,
            400,
        ),
        (
            reqwest::Method::GET,
            "/v1/health/service/web?index=abc",
            None,
            400,
        ),
        (reqwest::Method::GET, "/v1/kv/a?wait=forever", None, 400),
        (reqwest::Method::PUT, "/v1/session/create", Some("[]"), 400),
        (
            reqwest::Method::PUT,
            "/v1/session/create",
            Some("[\"n\", \"x\"]"),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/v1/operator/autopilot/configuration",
            Some("[]"),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/v1/agent/service/register",
            Some("[\"web\"]"),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/v1/agent/service/register",
            Some("{\"Name\": \"w\", \"Check\": []}"),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/v1/agent/service/register",
            Some("{\"Name\": \"w\", \"Weights\": [5, 1]}"),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/v1/catalog/register",
            Some("[]"),
            400,
        ),
        (
            reqwest::Method::PUT,
            "/v1/agent/check/register",
            Some("[]"),
            400,
        ),
        (reqwest::Method::POST, "/v1/query", Some("[]"), 400),
        (
            reqwest::Method::PUT,
            "/v1/agent/join/garbage!!:xx",
            None,
            400,
        ),
        (reqwest::Method::PUT, "/v1/agent/join/host:99999", None, 400),
        (reqwest::Method::PUT, "/v1/agent/join/%5B::1", None, 400),
    ];
    for (method, path, body, status) in routed {
        let r = a
            .request(method.clone(), path, body.map(|b| b.as_bytes().to_vec()))
            .await;
        assert_eq!(r.status, status, "{method} {path} {body:?}: {}", r.text());
        assert!(
            !r.text().trim().is_empty(),
            "{method} {path} {body:?}: no message"
        );
    }
    let r = a.put("/v1/session/create", "[]").await.expect_status(400);
    assert!(
        r.text().starts_with("Request decode failed: "),
        "{}",
        r.text()
    );

    // HEAD is on no /v1 route in Consul: 405 with `Allow` (a HEAD answer has no body).
    for (path, allow) in [
        ("/v1/operator/keyring", "OPTIONS,GET,POST,PUT,DELETE"),
        ("/v1/status/leader", "OPTIONS,GET"),
        ("/v1/kv/a", "OPTIONS,GET,PUT,DELETE"),
    ] {
        let r = a.request(reqwest::Method::HEAD, path, None).await;
        assert_eq!(r.status, 405, "HEAD {path}");
        assert_eq!(r.header("Allow").as_deref(), Some(allow), "HEAD {path}");
    }

    // Nothing was changed by the refused bodies.
    assert_eq!(a.get("/v1/session/list").await.body, json!([]));
    assert_eq!(
        a.get("/v1/operator/autopilot/configuration").await.body,
        before
    );
    assert_eq!(a.get("/v1/agent/services").await.body, json!({}));
}
