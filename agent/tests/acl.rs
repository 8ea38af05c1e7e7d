//! ACLs against a real `cairn agent -dev` with `default_policy = "deny"`: bootstrap, the
//! token/policy/role API with Consul's texts, a narrowly scoped token, and a sweep of every
//! route of the HTTP router (read from its source, so a new route is swept without being
//! listed here) with a token that has no permissions: nothing it does may succeed or reveal
//! what other tokens stored.

mod common;

use std::time::Duration;

use common::{Agent, eventually};
use reqwest::Method;
use serde_json::{Value, json};

const MGMT: &str = "5b1e1c2a-7d1f-4e0a-9d2b-3c4e5f6a7b8c";

/// A `-dev` agent with ACLs on, default deny, and `MGMT` as initial management token (which
/// its own helpers send).
async fn acl_agent() -> Agent {
    Agent::builder()
        .config(json!({
            "acl": {
                "enabled": true,
                "default_policy": "deny",
                "tokens": {"initial_management": MGMT, "agent": MGMT}
            }
        }))
        .token(MGMT)
        .start()
        .await
}

/// A request with `token` (none: no header).
async fn call(
    a: &Agent,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut rb = a.client().request(method, a.url(path));
    if let Some(t) = token {
        rb = rb.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        rb = rb.body(serde_json::to_vec(&b).expect("encodes"));
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap_or_default(), headers)
}

/// Creates a token linking `rules` through a new policy; returns its secret.
async fn token_with_rules(a: &Agent, name: &str, rules: &str) -> String {
    token_with_rules_by(a, MGMT, name, rules).await
}

/// [`token_with_rules`] written with the management token `mgmt`.
async fn token_with_rules_by(a: &Agent, mgmt: &str, name: &str, rules: &str) -> String {
    let (s, body, _) = call(
        a,
        Method::PUT,
        "/v1/acl/policy",
        Some(mgmt),
        Some(json!({"Name": name, "Rules": rules})),
    )
    .await;
    assert_eq!(s, 200, "policy {name}: {body}");
    let (s, body, _) = call(
        a,
        Method::PUT,
        "/v1/acl/token",
        Some(mgmt),
        Some(json!({"Description": name, "Policies": [{"Name": name}]})),
    )
    .await;
    assert_eq!(s, 200, "token {name}: {body}");
    let v: Value = serde_json::from_str(&body).expect("token JSON");
    v["SecretID"].as_str().expect("secret").to_string()
}

#[tokio::test]
async fn disabled_acls_answer_401_on_the_acl_api() {
    let a = Agent::start().await;
    for path in ["/v1/acl/tokens", "/v1/acl/policies", "/v1/acl/token/self"] {
        let (s, body, _) = call(&a, Method::GET, path, None, None).await;
        assert_eq!((s, body.as_str()), (401, "ACL support disabled"), "{path}");
    }
}

#[tokio::test]
async fn bootstrap_is_once_and_the_api_answers_as_consul() {
    let a = Agent::builder()
        .config(json!({"acl": {
            "enabled": true,
            "default_policy": "deny",
            "tokens": {"agent_recovery": "8a1c2d3e-0000-4000-8000-00000000abcd"}
        }}))
        .token("8a1c2d3e-0000-4000-8000-00000000abcd")
        .start()
        .await;
    // Before the bootstrap, an unknown secret says so.
    let (s, body, _) = call(&a, Method::GET, "/v1/kv/x", Some("nope"), None).await;
    assert_eq!(s, 403);
    assert!(body.contains("ACL not found"), "{body}");
    let (s, body, _) = call(&a, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 200, "{body}");
    let boot: Value = serde_json::from_str(&body).expect("JSON");
    let mgmt = boot["SecretID"].as_str().expect("secret").to_string();
    assert_eq!(boot["ID"], boot["SecretID"], "the legacy ID field");
    assert_eq!(boot["Policies"][0]["Name"], "global-management");
    assert_eq!(boot["Description"], "Bootstrap Token (Global Management)");
    let (s, body, _) = call(&a, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 403);
    assert!(
        body.starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{body}"
    );
    // token/self with the management token shows its secret.
    let (s, body, _) = call(&a, Method::GET, "/v1/acl/token/self", Some(&mgmt), None).await;
    assert_eq!(s, 200);
    let me: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(me["SecretID"], mgmt.as_str());
    // `?expanded` carries the linked policies and the agent's ACL settings.
    let acc = me["AccessorID"].as_str().expect("accessor").to_string();
    let (s, body, _) = call(
        &a,
        Method::GET,
        &format!("/v1/acl/token/{acc}?expanded"),
        Some(&mgmt),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let x: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(x["ExpandedPolicies"][0]["Name"], "global-management");
    assert_eq!(x["AgentACLDefaultPolicy"], "deny");
    assert_eq!(x["AccessorID"], acc.as_str());
    // Bad input: bad rules are a 400 naming the parse failure; an unknown policy name, a
    // duplicate name and an uppercase service identity are refused with Consul's texts.
    let (s, body, _) = call(
        &a,
        Method::PUT,
        "/v1/acl/policy",
        Some(&mgmt),
        Some(json!({"Name": "bad", "Rules": "service \"web\" { policy = \"list\" }"})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.starts_with("Failed to parse ACL rules: "), "{body}");
    let (s, body, _) = call(
        &a,
        Method::PUT,
        "/v1/acl/token",
        Some(&mgmt),
        Some(json!({"Policies": [{"Name": "missing"}]})),
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (500, "No such ACL policy with name \"missing\"")
    );
    let ro = token_with_rules_by(&a, &mgmt, "reader", "").await;
    let (s, body, _) = call(
        &a,
        Method::PUT,
        "/v1/acl/policy",
        Some(&mgmt),
        Some(json!({"Name": "reader", "Rules": ""})),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("already exists"), "{body}");
    let (s, body, _) = call(
        &a,
        Method::PUT,
        "/v1/acl/token",
        Some(&mgmt),
        Some(json!({"ServiceIdentities": [{"ServiceName": "Web"}]})),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("has an invalid name"), "{body}");
    // Nothing was stored by the refused writes: the policies are the two built-ins and
    // `reader`.
    let (_, body, _) = call(&a, Method::GET, "/v1/acl/policies", Some(&mgmt), None).await;
    let names: Vec<String> = serde_json::from_str::<Value>(&body)
        .expect("JSON")
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // A token with acl:read sees secrets hidden.
    let aclread = token_with_rules_by(&a, &mgmt, "aclread", "acl = \"read\"").await;
    let (s, body, _) = call(&a, Method::GET, "/v1/acl/tokens", Some(&aclread), None).await;
    assert_eq!(s, 200);
    assert!(body.contains("<hidden>") && !body.contains(&mgmt), "{body}");
    // Deleting the anonymous token or one's own is refused; a policy-less token cannot read.
    let (s, body, _) = call(
        &a,
        Method::DELETE,
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        Some(&mgmt),
        None,
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (500, "Delete operation not permitted on the anonymous token")
    );
    let (s, _, _) = call(&a, Method::GET, "/v1/acl/tokens", Some(&ro), None).await;
    assert_eq!(s, 403);
    // The recovery token reaches this agent's own endpoints only.
    let (s, _, _) = call(&a, Method::GET, "/v1/agent/self", None, None).await;
    assert_eq!(s, 403);
    assert_eq!(a.get("/v1/agent/self").await.status, 200);
    let (s, _, _) = call(
        &a,
        Method::GET,
        "/v1/kv/x",
        Some("8a1c2d3e-0000-4000-8000-00000000abcd"),
        None,
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_scoped_token_reaches_exactly_its_keys_and_services() {
    let a = acl_agent().await;
    let t = token_with_rules(
        &a,
        "app",
        "key_prefix \"app/\" { policy = \"write\" }\nkey \"app/locked\" { policy = \"read\" }\nservice \"web\" { policy = \"write\" }\nnode_prefix \"\" { policy = \"read\" }",
    )
    .await;
    let put = |path: &'static str| {
        let t = t.clone();
        let a = &a;
        async move {
            call(a, Method::PUT, path, Some(&t), Some(json!("v")))
                .await
                .0
        }
    };
    assert_eq!(put("/v1/kv/app/x").await, 200);
    assert_eq!(put("/v1/kv/other").await, 403);
    assert_eq!(put("/v1/kv/app/locked").await, 403);
    let (s, body, _) = call(&a, Method::PUT, "/v1/kv/other", Some(&t), Some(json!("v"))).await;
    assert_eq!(s, 403);
    assert!(
        body.ends_with("lacks permission 'key:write' on \"other\""),
        "{body}"
    );
    // A transaction lists each operation the token may not do, and nothing is applied.
    let (s, body, _) = call(
        &a,
        Method::PUT,
        "/v1/txn",
        Some(&t),
        Some(json!([
            {"KV": {"Verb": "set", "Key": "app/t", "Value": "eA=="}},
            {"KV": {"Verb": "set", "Key": "other/t", "Value": "eA=="}}
        ])),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["Errors"][0]["OpIndex"], 1, "{body}");
    assert!(
        v["Errors"][0]["What"]
            .as_str()
            .unwrap_or_default()
            .contains("key:write")
    );
    assert_eq!(a.get("/v1/kv/app/t").await.status, 404, "nothing applied");
    // A recursive delete over a key it may only read is refused.
    let (s, _, _) = call(&a, Method::DELETE, "/v1/kv/app/?recurse", Some(&t), None).await;
    assert_eq!(s, 403);
    // Lists drop what the token may not read and say so.
    a.put("/v1/kv/secret/k", "s").await.expect_status(200);
    let (s, body, h) = call(&a, Method::GET, "/v1/kv/?recurse", Some(&t), None).await;
    assert_eq!(s, 200);
    assert!(
        body.contains("app/x") && !body.contains("secret/k"),
        "{body}"
    );
    assert_eq!(
        h.get("x-consul-results-filtered-by-acls")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    // Services: web may be registered through the agent, db may not.
    let reg = |name: &'static str| json!({"Name": name, "Port": 80});
    let (s, _, _) = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(&t),
        Some(reg("web")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = call(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        Some(&t),
        Some(reg("db")),
    )
    .await;
    assert_eq!(s, 403);
    // The service reaches the catalog through anti-entropy with its registration token.
    eventually("web in the catalog", Duration::from_secs(10), || async {
        let (_, body, _) = call(&a, Method::GET, "/v1/catalog/services", Some(&t), None).await;
        body.contains("\"web\"").then_some(())
    })
    .await;
    // Anonymous sees nothing, and is not told it was filtered.
    let (s, body, h) = call(&a, Method::GET, "/v1/catalog/services", None, None).await;
    assert_eq!((s, body.as_str()), (200, "{}"));
    assert!(h.get("x-consul-results-filtered-by-acls").is_none());
    // Revoking the token takes effect on its next request.
    let (_, body, _) = call(&a, Method::GET, "/v1/acl/token/self", Some(&t), None).await;
    let acc = serde_json::from_str::<Value>(&body).expect("JSON")["AccessorID"]
        .as_str()
        .expect("accessor")
        .to_string();
    let (s, _, _) = call(
        &a,
        Method::DELETE,
        &format!("/v1/acl/token/{acc}"),
        Some(MGMT),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, body, _) = call(&a, Method::GET, "/v1/kv/app/x", Some(&t), None).await;
    assert_eq!((s, body.as_str()), (403, "ACL not found"));
}

/// Every `(path, methods)` the HTTP router declares, read from its source files.
fn routes() -> Vec<(String, Vec<Method>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("http sources") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's arguments, up to the matching parenthesis.
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &rest[..end];
            let Some(q1) = args.find('"') else { continue };
            let Some(q2) = args[q1 + 1..].find('"') else {
                continue;
            };
            let route = args[q1 + 1..q1 + 1 + q2].to_string();
            let handlers = &args[q1 + 2 + q2..];
            let mut methods = Vec::new();
            for (word, m) in [
                ("get(", Method::GET),
                ("put(", Method::PUT),
                ("post(", Method::POST),
                ("delete(", Method::DELETE),
            ] {
                if handlers.contains(word) {
                    methods.push(m);
                }
            }
            if handlers.contains("any(") {
                methods = vec![Method::GET, Method::PUT, Method::POST, Method::DELETE];
            }
            out.push((route, methods));
        }
    }
    assert!(
        out.len() > 60,
        "the router's routes were not found: {out:?}"
    );
    out
}

/// Path parameters replaced by names of the objects the sweep guards (`session`: the ID of
/// the marker session, for the session routes).
fn concrete(route: &str, session: &str) -> String {
    if route.starts_with("/v1/session/") && route.ends_with("{id}") {
        return route.replace("{id}", session);
    }
    if route.starts_with("/v1/agent/service/") || route.starts_with("/v1/agent/health/service/id/")
    {
        return route.replace("{*id}", "markersvc");
    }
    if route.starts_with("/v1/agent/check/") {
        return route.replace("{*id}", "markercheck");
    }
    route
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                match seg.trim_start_matches(['{', '*']).trim_end_matches('}') {
                    "key" => "marker/k".to_string(),
                    "name" => "markersvc".to_string(),
                    "service" => "markersvc".to_string(),
                    _ => "marker-id".to_string(),
                }
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Routes anyone may call (Consul's unauthenticated endpoints and the dashboard's files).
fn public(route: &str) -> bool {
    route == "/"
        || route.starts_with("/ui")
        || route.starts_with("/v1/status/")
        || matches!(
            route,
            "/v1/catalog/datacenters"
                | "/v1/coordinate/datacenters"
                | "/v1/agent/version"
                | "/v1/acl/token/self"
                | "/v1/acl/replication"
        )
}

#[tokio::test]
async fn no_route_lets_a_token_without_permissions_through() {
    let a = acl_agent().await;
    // What the sweep must not reach: a key, a service, a session, a named prepared query, an
    // event.
    a.put("/v1/kv/marker/k", "marker-value")
        .await
        .expect_status(200);
    a.register_service(&json!({"Name": "markersvc", "Port": 1}))
        .await;
    a.register_check(&json!({"Name": "markercheck", "TTL": "30s"}))
        .await;
    let node = a.node.clone();
    let session = a
        .put_json(
            "/v1/session/create",
            &json!({"Name": "markersession", "Node": node}),
        )
        .await
        .expect_status(200)
        .body["ID"]
        .as_str()
        .expect("session ID")
        .to_string();
    let q = a
        .post(
            "/v1/query",
            serde_json::to_vec(&json!({"Name": "markerq", "Service": {"Service": "markersvc"}}))
                .expect("encodes"),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.text());
    a.put("/v1/event/fire/markerev", "x")
        .await
        .expect_status(200);
    eventually(
        "the marker service in the catalog",
        Duration::from_secs(10),
        || async {
            let v = a.get("/v1/catalog/services").await.body;
            v.get("markersvc").map(|_| ())
        },
    )
    .await;
    let nobody = token_with_rules(&a, "nothing", "").await;
    // Bodies that would succeed with permission, so that a missing check is not hidden by
    // a validation error.
    let bodies = |route: &str| -> Option<Value> {
        Some(match route {
            "/v1/kv/{*key}" => json!("overwritten"),
            "/v1/catalog/register" => json!({"Node": "sweep", "Address": "127.0.0.9"}),
            "/v1/catalog/deregister" => json!({"Node": node}),
            "/v1/agent/service/register" => json!({"Name": "sweepsvc"}),
            "/v1/agent/check/register" => json!({"Name": "sweepcheck", "TTL": "10s"}),
            "/v1/session/create" => json!({"Node": node}),
            "/v1/query" => json!({"Name": "sweepq", "Service": {"Service": "markersvc"}}),
            "/v1/txn" => json!([{"KV": {"Verb": "set", "Key": "marker/k", "Value": "eA=="}}]),
            "/v1/acl/policy" => json!({"Name": "sweep"}),
            "/v1/acl/token" => json!({"Description": "sweep"}),
            "/v1/acl/role" => json!({"Name": "sweep"}),
            "/v1/coordinate/update" => json!({"Node": node, "Coord": {"Vec": [0.0]}}),
            _ => return None,
        })
    };
    let mut failures = Vec::new();
    for (route, methods) in routes() {
        if public(&route) {
            continue;
        }
        let path = concrete(&route, &session);
        for m in methods {
            // Leaving or reloading would end the sweep early; both are refused below anyway
            // (and checked for refusal like every other route).
            let (s, body, _) = call(&a, m.clone(), &path, Some(&nobody), bodies(&route)).await;
            let ok = (200..300).contains(&s);
            // A refusal may name what was asked for; an answer may not show it.
            let leaks = ok && body.contains("marker");
            // Reads may answer 200 only with nothing of what other tokens stored; writes may
            // never succeed.
            let write = m != Method::GET;
            if (ok && write) || leaks {
                failures.push(format!("{m} {path} -> {s}: {body}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "routes that let the token through:\n{}",
        failures.join("\n")
    );
    // The writes changed nothing.
    let v = a.get("/v1/kv/marker/k?raw").await;
    assert_eq!(v.text(), "marker-value");
    assert_eq!(a.get("/v1/catalog/node/sweep").await.body, Value::Null);
    let s = a.get(&format!("/v1/session/info/{session}")).await.body;
    assert_eq!(s[0]["Name"], "markersession", "the session survived");
    assert!(
        a.get("/v1/agent/services")
            .await
            .body
            .get("markersvc")
            .is_some()
    );
    assert!(
        a.get("/v1/agent/checks")
            .await
            .body
            .get("markercheck")
            .is_some()
    );
    // And the agent is still running and serving its management token.
    assert_eq!(a.get("/v1/agent/self").await.status, 200);
}

/// `dig` against the agent's DNS port: the status line and the answer lines.
fn dig(port: u16, name: &str) -> (String, Vec<String>) {
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tries=1",
            "+time=2",
            name,
        ])
        .output()
        .expect("dig (installed by scripts/test)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let answers = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (status, answers)
}

#[tokio::test]
async fn dns_answers_only_what_its_token_may_read() {
    let a = acl_agent().await;
    a.register_service(&json!({"Name": "dnsweb", "Port": 80}))
        .await;
    let port = a.get("/v1/agent/self").await.body["DebugConfig"]["DNSPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("DNS port");
    eventually("dnsweb in the catalog", Duration::from_secs(10), || async {
        a.get("/v1/catalog/service/dnsweb")
            .await
            .body
            .get(0)
            .map(|_| ())
    })
    .await;
    // Anonymous (no DNS or default token) under default deny: nothing is answered.
    let (status, answers) = dig(port, "dnsweb.service.consul");
    assert_eq!(status, "NXDOMAIN", "{answers:?}");
    // A DNS token that may read services and nodes: the instance is answered.
    let reader = token_with_rules(
        &a,
        "dns",
        "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    )
    .await;
    a.put_json("/v1/agent/token/dns", &json!({"Token": reader}))
        .await
        .expect_status(200);
    let (status, answers) = dig(port, "dnsweb.service.consul");
    assert_eq!(status, "NOERROR");
    assert!(
        answers.iter().any(|l| l.contains("127.0.0.1")),
        "{answers:?}"
    );
    // An unknown kind is Consul's 404.
    let r = a
        .put_json("/v1/agent/token/foo", &json!({"Token": "x"}))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Token \"foo\" is unknown");
}

#[tokio::test]
async fn prepared_query_tokens_are_hidden_and_never_stored_redacted() {
    let a = acl_agent().await;
    let created = a
        .post(
            "/v1/query",
            serde_json::to_vec(
                &json!({"Name": "webq", "Token": MGMT, "Service": {"Service": "web"}}),
            )
            .expect("encodes"),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let reader = token_with_rules(&a, "qread", "query_prefix \"\" { policy = \"read\" }").await;
    let (s, body, _) = call(&a, Method::GET, "/v1/query", Some(&reader), None).await;
    assert_eq!(s, 200);
    assert!(body.contains("<hidden>") && !body.contains(MGMT), "{body}");
    let (s, body, _) = call(&a, Method::GET, "/v1/query", Some(MGMT), None).await;
    assert_eq!(s, 200);
    assert!(body.contains(MGMT), "{body}");
    let (s, body, _) = call(
        &a,
        Method::POST,
        "/v1/query",
        Some(MGMT),
        Some(json!({"Name": "other", "Token": "<hidden>", "Service": {"Service": "web"}})),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.starts_with("Bad Token '<hidden>'"), "{body}");
    // Without `query:read`, the query is not listed.
    let nobody = token_with_rules(&a, "none", "").await;
    let (s, body, _) = call(&a, Method::GET, "/v1/query", Some(&nobody), None).await;
    assert_eq!((s, body.as_str()), (200, "[]"));
}
