//! ACLs across real processes: three servers with `default_policy = "deny"` and a client
//! agent with an agent token. A service registered through the client with a scoped token
//! reaches the catalog with that token; the client answers its own endpoints with the token's
//! permissions as its servers resolve them; a revoked token is refused on every agent within a
//! second.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, NodeSpec};
use serde_json::{Value, json};

const MGMT: &str = "0f3c9a52-64b1-4d7e-8a0c-5e1b2d3f4a6b";

async fn send(
    c: &Cluster,
    i: usize,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let client = common::client();
    let mut rb = client.request(method, c.url(i, path));
    if let Some(t) = token {
        rb = rb.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    match rb.timeout(Duration::from_secs(5)).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test]
async fn tokens_work_through_a_client_agent_and_revocation_reaches_every_agent() {
    let acl = json!({"acl": {
        "enabled": true,
        "default_policy": "deny",
        "tokens": {"initial_management": MGMT, "agent": MGMT}
    }});
    let mut c = Cluster::start(3, 3, acl.clone()).await;
    let client = c.add(NodeSpec {
        server: false,
        expect: 0,
        encrypt: None,
        extra: acl,
    });
    // The client has joined once its servers list it.
    common::eventually(
        "the client agent joins",
        Duration::from_secs(30),
        || async {
            let (s, body) = send(
                &c,
                0,
                reqwest::Method::GET,
                "/v1/agent/members",
                Some(MGMT),
                None,
            )
            .await;
            (s == 200 && body.contains(&c.servers[client].name)).then_some(())
        },
    )
    .await;
    // A scoped token, made on a server.
    let (s, body) = send(
        &c,
        0,
        reqwest::Method::PUT,
        "/v1/acl/policy",
        Some(MGMT),
        Some(json!({"Name": "web", "Rules": "service \"web\" { policy = \"write\" }\nkey_prefix \"app/\" { policy = \"write\" }"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = send(
        &c,
        0,
        reqwest::Method::PUT,
        "/v1/acl/token",
        Some(MGMT),
        Some(json!({"Policies": [{"Name": "web"}]})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let tok: Value = serde_json::from_str(&body).expect("token");
    let secret = tok["SecretID"].as_str().expect("secret").to_string();
    let accessor = tok["AccessorID"].as_str().expect("accessor").to_string();

    // Through the client: its own endpoint checks the token as the servers resolve it.
    let (s, body) = send(
        &c,
        client,
        reqwest::Method::PUT,
        "/v1/agent/service/register",
        Some(&secret),
        Some(json!({"Name": "web", "Port": 8080})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = send(
        &c,
        client,
        reqwest::Method::PUT,
        "/v1/agent/service/register",
        Some(&secret),
        Some(json!({"Name": "db", "Port": 5432})),
    )
    .await;
    assert_eq!(s, 403);
    // Anti-entropy writes it with that token (the anonymous token could not).
    common::eventually("web in the catalog", Duration::from_secs(20), || async {
        let (s, body) = send(
            &c,
            0,
            reqwest::Method::GET,
            "/v1/catalog/service/web",
            Some(MGMT),
            None,
        )
        .await;
        (s == 200 && body.contains("8080")).then_some(())
    })
    .await;
    // Forwarded writes are checked by the servers.
    let (s, _) = send(
        &c,
        client,
        reqwest::Method::PUT,
        "/v1/kv/app/x",
        Some(&secret),
        Some(json!(1)),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = send(
        &c,
        client,
        reqwest::Method::PUT,
        "/v1/kv/other",
        Some(&secret),
        Some(json!(1)),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("lacks permission 'key:write'"), "{body}");

    // Revoked: every agent refuses it within a second.
    let (s, body) = send(
        &c,
        0,
        reqwest::Method::DELETE,
        &format!("/v1/acl/token/{accessor}"),
        Some(MGMT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let revoked = Instant::now();
    for i in c.indices() {
        loop {
            let (s, body) = send(
                &c,
                i,
                reqwest::Method::GET,
                "/v1/agent/services",
                Some(&secret),
                None,
            )
            .await;
            if s == 403 {
                assert!(body.contains("ACL not found"), "{body}");
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_millis(1500),
                "agent {i} still accepts the revoked token after {:?} ({s}: {body})",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The bootstrap reset file allows exactly one more bootstrap, with the index the refusal
/// named; tokens set through the API survive a restart with `enable_token_persistence`.
#[tokio::test]
async fn bootstrap_reset_file_and_persisted_agent_tokens() {
    let mut c = Cluster::start(
        1,
        1,
        json!({"acl": {"enabled": true, "default_policy": "deny", "enable_token_persistence": true}}),
    )
    .await;
    let (s, body) = send(&c, 0, reqwest::Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 200, "{body}");
    let mgmt = serde_json::from_str::<Value>(&body).expect("JSON")["SecretID"]
        .as_str()
        .expect("secret")
        .to_string();
    let (s, body) = send(&c, 0, reqwest::Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 403);
    let index: u64 = body
        .rsplit("reset index: ")
        .next()
        .and_then(|t| t.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no reset index in {body}"));
    let data = c.servers[0].dir.join("data");
    // A wrong index is refused and leaves the file in place.
    std::fs::write(data.join("acl-bootstrap-reset"), (index + 1).to_string()).expect("write");
    let (s, body) = send(&c, 0, reqwest::Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("Invalid bootstrap reset index"), "{body}");
    std::fs::write(data.join("acl-bootstrap-reset"), index.to_string()).expect("write");
    let (s, body) = send(&c, 0, reqwest::Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        !data.join("acl-bootstrap-reset").exists(),
        "the reset file is spent"
    );
    let (s, _) = send(&c, 0, reqwest::Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 403);

    // The agent's default token, set through the API, is kept across a restart.
    let (s, body) = send(
        &c,
        0,
        reqwest::Method::PUT,
        "/v1/agent/token/default",
        Some(&mgmt),
        Some(json!({"Token": mgmt})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    c.servers[0].kill9();
    c.servers[0].spawn();
    c.wait_leader(&[0], Duration::from_secs(30)).await;
    // Without a token of its own, a request now carries the persisted default (management).
    common::eventually(
        "the persisted default token",
        Duration::from_secs(10),
        || async {
            let (s, _) = send(&c, 0, reqwest::Method::GET, "/v1/acl/tokens", None, None).await;
            (s == 200).then_some(())
        },
    )
    .await;
}
