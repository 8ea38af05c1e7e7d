//! Coordinates, operator usage and the ACL endpoints of an agent without ACLs, end to end.

mod common;

use common::Agent;
use serde_json::json;

fn coord(x: f64) -> serde_json::Value {
    json!({"Vec": [x, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 0.5, "Adjustment": 0.0, "Height": 1e-5})
}

#[tokio::test]
async fn coordinates_are_stored_listed_blocked_on_and_dropped_with_their_node() {
    let a = Agent::start().await;
    let dcs = a.get("/v1/coordinate/datacenters").await;
    assert_eq!(dcs.status, 200, "{}", dcs.text());
    assert_eq!(dcs.body[0]["Datacenter"], "dc1");
    assert_eq!(dcs.body[0]["AreaID"], "WAN");
    assert!(dcs.body[0]["Coordinates"].is_array());

    let empty = a.get("/v1/coordinate/nodes").await;
    assert_eq!((empty.status, &empty.body), (200, &json!([])));
    let index = empty.index();
    assert!(index > 0);
    assert_eq!(a.get("/v1/coordinate/node/ext").await.status, 404);

    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.0.0.9"}),
        )
        .await;
    assert_eq!(r.status, 200);
    // A blocked reader wakes on the update.
    let url = format!("/v1/coordinate/nodes?index={index}&wait=5s");
    let update = json!({"Node": "ext", "Segment": "", "Coord": coord(0.25)});
    let (woke, r) = tokio::join!(a.get(&url), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        a.put_json("/v1/coordinate/update", &update).await
    });
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(woke.index() > index);
    assert_eq!(woke.body[0]["Node"], "ext");
    assert_eq!(woke.body[0]["Coord"]["Vec"][0], 0.25);

    let one = a.get("/v1/coordinate/node/ext").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body.as_array().map(Vec::len), Some(1));
    assert_eq!(one.body[0]["Segment"], "");

    // Unknown nodes are skipped; bad coordinates and a missing node are refused.
    let r = a
        .put_json(
            "/v1/coordinate/update",
            &json!({"Node": "nobody", "Coord": coord(1.0)}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.get("/v1/coordinate/node/nobody").await.status, 404);
    let bad = a
        .put_json(
            "/v1/coordinate/update",
            &json!({"Node": "ext", "Coord": {"Vec": [1.0, 2.0]}}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let missing = a
        .put_json("/v1/coordinate/update", &json!({"Coord": coord(1.0)}))
        .await;
    assert_eq!(missing.status, 400);

    // Deregistering the node drops its coordinate.
    let r = a
        .put_json("/v1/catalog/deregister", &json!({"Node": "ext"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.get("/v1/coordinate/node/ext").await.status, 404);
    assert_eq!(a.get("/v1/coordinate/nodes").await.body, json!([]));
}

#[tokio::test]
async fn usage_counts_services_instances_and_nodes() {
    let a = Agent::start().await;
    let before = a.get("/v1/operator/usage").await;
    assert_eq!(before.status, 200, "{}", before.text());
    let dc = &before.body["Usage"]["dc1"];
    // The agent's own `consul` service counts, but is not billable.
    assert_eq!(dc["Services"], 1);
    assert_eq!(dc["ServiceInstances"], 1);
    assert_eq!(dc["BillableServiceInstances"], 0);
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 0);
    assert_eq!(before.body["KnownLeader"], true);
    assert!(before.index() > 0);
    for (node, id) in [("n1", "web1"), ("n2", "web2")] {
        let r = a
            .put_json(
                "/v1/catalog/register",
                &json!({"Node": node, "Address": "10.0.0.1",
                        "Service": {"ID": id, "Service": "web", "Port": 80}}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n2", "Address": "10.0.0.1",
                    "Service": {"ID": "web-proxy", "Service": "web-sidecar-proxy",
                                "Kind": "connect-proxy", "Port": 21000}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let after = a.get("/v1/operator/usage").await;
    let dc = &after.body["Usage"]["dc1"];
    assert_eq!(dc["Services"], 3);
    assert_eq!(dc["ServiceInstances"], 4);
    assert_eq!(dc["BillableServiceInstances"], 2);
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 1);
    assert_eq!(dc["Nodes"], 3);
}

#[tokio::test]
async fn acl_endpoints_say_acls_are_disabled() {
    let a = Agent::start().await;
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/acl/bootstrap"),
        (reqwest::Method::GET, "/v1/acl/tokens"),
        (reqwest::Method::GET, "/v1/acl/token/self"),
        (reqwest::Method::PUT, "/v1/acl/policy"),
        (reqwest::Method::PUT, "/v1/agent/token/default"),
    ] {
        let r = a.request(method.clone(), path, None).await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert!(r.text().contains("ACL support disabled"), "{}", r.text());
    }
}

#[tokio::test]
async fn autopilot_configuration_is_replicated_and_changed_with_cas() {
    let a = Agent::start().await;
    // The first leader records the configured settings.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let current = loop {
        let r = a.get("/v1/operator/autopilot/configuration").await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.body["ModifyIndex"].as_u64().unwrap_or(0) > 0 {
            break r.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recorded: {}",
            r.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(current["CleanupDeadServers"], true);
    assert_eq!(current["LastContactThreshold"], "200ms");
    assert_eq!(current["ServerStabilizationTime"], "10s");
    assert_eq!(current["MaxTrailingLogs"], 250);
    let index = current["ModifyIndex"].as_u64().unwrap_or(0);

    let mut next = current.clone();
    next["CleanupDeadServers"] = json!(false);
    next["LastContactThreshold"] = json!("1s");
    let stale = a
        .put_json(
            &format!("/v1/operator/autopilot/configuration?cas={}", index + 1000),
            &next,
        )
        .await;
    assert_eq!((stale.status, &stale.body), (200, &json!(false)));
    let ok = a
        .put_json(
            &format!("/v1/operator/autopilot/configuration?cas={index}"),
            &next,
        )
        .await;
    assert_eq!((ok.status, &ok.body), (200, &json!(true)), "{}", ok.text());
    let after = a.get("/v1/operator/autopilot/configuration").await;
    assert_eq!(after.body["CleanupDeadServers"], false);
    assert_eq!(after.body["LastContactThreshold"], "1s");
    assert!(after.body["ModifyIndex"].as_u64().unwrap_or(0) > index);
    assert_eq!(after.body["CreateIndex"], current["CreateIndex"]);

    let bad = a
        .put_json(
            "/v1/operator/autopilot/configuration",
            &json!({"LastContactThreshold": "soon"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
}

/// Reads a streamed body until `want` shows up (or panics after 10 s).
async fn read_until(resp: &mut reqwest::Response, want: &str) -> String {
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("stream ended or timed out ({other:?}); saw: {seen}"),
        }
    }
    seen
}

#[tokio::test]
async fn monitor_streams_log_lines_as_text_or_json() {
    let a = Agent::start().await;
    let mut text = a
        .client()
        .get(a.url("/v1/agent/monitor?loglevel=info"))
        .send()
        .await
        .expect("monitor");
    assert_eq!(text.status().as_u16(), 200);
    let mut json = a
        .client()
        .get(a.url("/v1/agent/monitor?logjson"))
        .send()
        .await
        .expect("monitor");
    let mut quiet = a
        .client()
        .get(a.url("/v1/agent/monitor?loglevel=err"))
        .send()
        .await
        .expect("monitor");
    // The streams are attached once their headers are back; then the agent logs.
    let r = a.put_empty("/v1/agent/reload").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The module is the logging code's (the reload lives in `run.rs`).
    let seen = read_until(&mut text, "reloading configuration").await;
    assert!(
        seen.contains("[INFO]  cairn::run: reloading configuration"),
        "{seen}"
    );
    let seen = read_until(&mut json, "reloading configuration").await;
    let line = seen
        .lines()
        .find(|l| l.contains("reloading configuration"))
        .expect("line");
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(v["@level"], "info");
    assert_eq!(v["@module"], "cairn::run");
    // An error-level monitor saw nothing of it.
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), quiet.chunk()).await;
    assert!(nothing.is_err(), "an err-level monitor got {nothing:?}");

    let bad = a.get("/v1/agent/monitor?loglevel=loud").await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn autopilot_health_and_state_describe_the_servers() {
    let a = Agent::start().await;
    let h = a.get("/v1/operator/autopilot/health").await;
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.body["Healthy"], true);
    assert_eq!(h.body["FailureTolerance"], 0);
    assert_eq!(h.body["Servers"][0]["Leader"], true);
    let s = a.get("/v1/operator/autopilot/state").await;
    assert_eq!(s.status, 200, "{}", s.text());
    let leader = s.body["Leader"].as_str().expect("leader").to_string();
    assert!(!leader.is_empty());
    assert_eq!(s.body["Voters"], json!([leader.clone()]));
    let me = &s.body["Servers"][leader.as_str()];
    assert_eq!(me["Status"], "leader");
    assert_eq!(me["NodeStatus"], "alive");
    assert_eq!(me["Healthy"], true);
    assert_eq!(s.body["Healthy"], true);
}
