//! Behaviours Consul clients and tools tell apart, each observed with a real client or tool,
//! checked against a real `cairn agent -dev` process: re-registration with
//! `EnableTagOverride`, HTTP checks through redirects, `?peer=`, metrics and session shapes,
//! force-leave of alive members, the event list's filters and the agent's own node metadata.

mod common;

use std::time::Duration;

use common::{Agent, eventually};
use serde_json::{Value, json};

/// Tags of `web` in the catalog.
async fn catalog_tags(a: &Agent) -> Value {
    let v: Value = a.get("/v1/catalog/service/web").await.body;
    v.get(0)
        .map(|s| s["ServiceTags"].clone())
        .unwrap_or(Value::Null)
}

/// A re-registration replaces the tags in the catalog, `EnableTagOverride` or not (a database
/// manager moves its `master` tag this way); tags changed in the catalog afterwards stay.
#[tokio::test]
async fn re_registration_replaces_tags_even_with_tag_override() {
    let a = Agent::start().await;
    let def = |tags: Value| json!({"ID": "web", "Name": "web", "Port": 80, "Tags": tags, "EnableTagOverride": true});
    a.register_service(&def(json!(["master"]))).await;
    eventually("first tags", Duration::from_secs(10), || async {
        (catalog_tags(&a).await == json!(["master"])).then_some(())
    })
    .await;
    a.register_service(&def(json!(["replica"]))).await;
    eventually("re-registered tags", Duration::from_secs(10), || async {
        (catalog_tags(&a).await == json!(["replica"])).then_some(())
    })
    .await;
    // Someone else changes the tags in the catalog: the agent keeps them (the override).
    let node = a.node.clone();
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": node, "Address": "127.0.0.1", "SkipNodeUpdate": true,
                "Service": {"ID": "web", "Service": "web", "Port": 80, "Tags": ["external"],
                            "EnableTagOverride": true}}),
    )
    .await
    .expect_status(200);
    // A registration answers once an anti-entropy pass has synced it: that pass compared `web`
    // too, and left the catalog's tags alone.
    a.register_service(&json!({"Name": "other", "Port": 81}))
        .await;
    let other: Value = a.get("/v1/catalog/service/other").await.body;
    assert_eq!(other.as_array().map(Vec::len), Some(1), "synced: {other}");
    assert_eq!(catalog_tags(&a).await, json!(["external"]));
}

/// An HTTP check on the agent's own `/`, which redirects to `/ui/`, passes: redirects are
/// followed as Go's client follows them.
#[tokio::test]
async fn http_checks_follow_redirects() {
    let a = Agent::start().await;
    a.register_check(&json!({"ID": "self", "Name": "self", "HTTP": a.url("/"), "Interval": "1s"}))
        .await;
    let out: Value = eventually("the check passes", Duration::from_secs(10), || async {
        let c = a.check("self").await;
        (c["Status"] == "passing").then_some(c)
    })
    .await;
    assert!(
        out["Output"].as_str().is_some_and(|o| o.contains(": 200 ")),
        "{out}"
    );
}

/// `?peer=` names a peer, and no peering exists: empty answers, never the local catalog.
#[tokio::test]
async fn unknown_peers_answer_empty() {
    let a = Agent::start().await;
    let v: Value = a.get("/v1/catalog/services").await.body;
    assert!(v.get("consul").is_some(), "{v}");
    for (path, empty) in [
        ("/v1/catalog/services?peer=other", json!({})),
        ("/v1/catalog/nodes?peer=other", json!([])),
        ("/v1/catalog/service/consul?peer=other", json!([])),
        ("/v1/health/service/consul?peer=other", json!([])),
        ("/v1/health/state/any?peer=other", json!([])),
    ] {
        let r = a.get(path).await.expect_status(200);
        assert_eq!(r.body, empty, "{path}");
        assert!(r.index() > 0, "{path}");
    }
    let node = a.node.clone();
    let r = a
        .get(&format!("/v1/catalog/node-services/{node}?peer=other"))
        .await
        .expect_status(200);
    assert_eq!(r.body, json!({"Node": null, "Services": null}));
}

/// Shapes clients decode strictly: metric counts are integers, a session shows the legacy
/// `Checks` list and a `null` `ServiceChecks`, the agent's node carries Consul's own meta keys
/// and `/v1/agent/self`'s member is the members list's.
#[tokio::test]
async fn shapes_clients_decode_strictly() {
    let a = Agent::start().await;
    a.put("/v1/kv/x", "1").await.expect_status(200);
    let m: Value = a.get("/v1/agent/metrics").await.body;
    let counters = m["Counters"].as_array().expect("counters");
    assert!(!counters.is_empty(), "{m}");
    for c in counters {
        assert!(c["Count"].is_u64(), "{c}");
    }
    assert!(
        m["Timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(" +0000 UTC")),
        "{m}"
    );

    let id = a.put("/v1/session/create", "{}").await.body["ID"]
        .as_str()
        .expect("ID")
        .to_string();
    let s: Value = a.get(&format!("/v1/session/info/{id}")).await.body;
    assert_eq!(s[0]["NodeChecks"], json!(["serfHealth"]), "{s}");
    assert_eq!(s[0]["Checks"], json!(["serfHealth"]), "{s}");
    assert_eq!(s[0]["ServiceChecks"], Value::Null, "{s}");
    // `null` checks mean none, as Go's decoder sets the pre-filled list to nil.
    let id = a
        .put(
            "/v1/session/create",
            r#"{"NodeChecks": null, "Name": null}"#,
        )
        .await
        .expect_status(200)
        .body["ID"]
        .as_str()
        .expect("ID")
        .to_string();
    let s: Value = a.get(&format!("/v1/session/info/{id}")).await.body;
    assert_eq!(s[0]["NodeChecks"], json!([]), "{s}");

    let node = a.node.clone();
    let n: Value = a.get(&format!("/v1/catalog/node/{node}")).await.body;
    assert_eq!(n["Node"]["Meta"]["consul-network-segment"], "", "{n}");
    assert!(n["Node"]["Meta"]["consul-version"].is_string(), "{n}");
    let me: Value = a.get("/v1/agent/self").await.body;
    let members: Value = a.get("/v1/agent/members").await.body;
    let listed = members
        .as_array()
        .and_then(|l| l.iter().find(|m| m["Name"] == node.as_str()))
        .cloned()
        .expect("listed");
    assert_eq!(me["Member"], listed);
    assert!(
        me["DebugConfig"]["SerfAdvertiseAddrLAN"].is_string(),
        "{me}"
    );
}

/// Consul's Go client sends `null` for empty lists and maps; every body takes it.
#[tokio::test]
async fn null_fields_from_go_clients_are_accepted() {
    let a = Agent::start().await;
    a.put_json(
        "/v1/agent/service/register",
        &json!({"ID": "api", "Name": "api", "Tags": null, "Meta": null, "Port": 9,
                "TaggedAddresses": null, "Check": null, "Checks": null, "Weights": null,
                "Proxy": null, "Connect": null}),
    )
    .await
    .expect_status(200);
    a.put_json(
        "/v1/agent/check/register",
        &json!({"Name": "api-ttl", "ServiceID": "api", "TTL": "30s", "Args": null,
                "Header": null, "ScriptArgs": null}),
    )
    .await
    .expect_status(200);
    let r = a
        .put_json(
            "/v1/txn",
            &json!([{"KV": {"Verb": "set", "Key": "t", "Value": "dg==", "Flags": 0, "Index": 0,
                            "Session": ""}, "Node": null, "Service": null, "Check": null}]),
        )
        .await
        .expect_status(200);
    assert_eq!(r.body["Errors"], Value::Null, "{r:?}");
    a.post(
        "/v1/query",
        json!({"Name": "q", "Service": {"Service": "api", "Tags": null, "Connect": false,
                                          "Failover": {"Datacenters": null}}})
        .to_string(),
    )
    .await
    .expect_status(200);
}

/// `force-leave` of an alive member, this agent included, is accepted and changes nothing;
/// an unknown name is Consul's 404.
#[tokio::test]
async fn force_leave_accepts_alive_members() {
    let a = Agent::start().await;
    let node = a.node.clone();
    a.put_empty(&format!("/v1/agent/force-leave/{node}"))
        .await
        .expect_status(200);
    let members: Value = a.get("/v1/agent/members").await.body;
    assert_eq!(members[0]["Status"], 1, "still alive: {members}");
    let r = a
        .put_empty("/v1/agent/force-leave/nobody")
        .await
        .expect_status(404);
    assert!(r.text().contains("No node found"), "{}", r.text());
}

/// `/v1/event/list`'s `node`, `service` and `tag` are regular expressions over each event's
/// filters.
#[tokio::test]
async fn event_list_filters_are_regular_expressions() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "web-api", "Tags": ["blue"]}))
        .await;
    let node = a.node.clone();
    a.put(&format!("/v1/event/fire/deploy?node={node}"), "")
        .await
        .expect_status(200);
    a.put("/v1/event/fire/deploy?service=web-api&tag=blue", "")
        .await
        .expect_status(200);
    let count = |path: String| {
        let a = &a;
        async move {
            let v: Value = a.get(&path).await.body;
            v.as_array().map_or(0, Vec::len)
        }
    };
    eventually("both events", Duration::from_secs(5), || async {
        (count("/v1/event/list?name=deploy".into()).await == 2).then_some(())
    })
    .await;
    assert_eq!(count("/v1/event/list?service=^web".into()).await, 1);
    assert_eq!(count("/v1/event/list?tag=bl.e".into()).await, 1);
    assert_eq!(
        count(format!("/v1/event/list?node={}", &node[..4])).await,
        1
    );
    assert_eq!(count("/v1/event/list?service=nothing".into()).await, 0);
    a.get("/v1/event/list?service=(").await.expect_status(400);
}

/// `http_config.response_headers` go on every answer; `discard_check_output` keeps outputs
/// out of the agent and the catalog.
#[tokio::test]
async fn response_headers_and_discarded_check_output() {
    let a = Agent::builder()
        .config(json!({
            "http_config": {"response_headers": {"Access-Control-Allow-Origin": "*"}},
            "discard_check_output": true
        }))
        .start()
        .await;
    let r = a.get("/v1/agent/self").await.expect_status(200);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let r = a.get("/v1/kv/missing").await.expect_status(404);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    a.register_check(&json!({"ID": "t", "Name": "t", "TTL": "30s"}))
        .await;
    a.put_empty("/v1/agent/check/pass/t?note=hello")
        .await
        .expect_status(200);
    let c = eventually("passing", Duration::from_secs(5), || async {
        let c = a.check("t").await;
        (c["Status"] == "passing").then_some(c)
    })
    .await;
    assert_eq!(c["Output"], "", "{c}");
}

/// `default_query_time` applies to blocking queries without `?wait`, `max_query_time` caps
/// the ones with a longer one (Consul's defaults are 5 and 10 minutes).
#[tokio::test]
async fn query_time_settings_bound_blocking_queries() {
    let a = Agent::builder()
        .config(json!({"default_query_time": "1s", "max_query_time": "2s"}))
        .start()
        .await;
    a.put("/v1/kv/q", "1").await.expect_status(200);
    let index = a.get("/v1/kv/q").await.index();
    for path in [
        format!("/v1/kv/q?index={index}"),
        format!("/v1/kv/q?index={index}&wait=1h"),
    ] {
        let started = std::time::Instant::now();
        let r = a.get(&path).await.expect_status(200);
        assert_eq!(r.index(), index);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} waited {:?}",
            started.elapsed()
        );
    }
}

/// `session_ttl_min` lowers the shortest session TTL; such a session still expires (its TTL
/// is read back without the default bound).
#[tokio::test]
async fn session_ttl_min_is_honoured() {
    let strict = Agent::start().await;
    let r = strict
        .put("/v1/session/create", r#"{"TTL": "2s"}"#)
        .await
        .expect_status(400);
    assert!(
        r.text().contains("must be between [10s=24h0m0s]"),
        "{}",
        r.text()
    );
    let a = Agent::builder()
        .config(json!({"session_ttl_min": "1s"}))
        .start()
        .await;
    let id = a
        .put("/v1/session/create", r#"{"TTL": "2s"}"#)
        .await
        .expect_status(200)
        .body["ID"]
        .as_str()
        .expect("ID")
        .to_string();
    eventually("the session expires", Duration::from_secs(20), || async {
        let v: Value = a.get(&format!("/v1/session/info/{id}")).await.body;
        (v == json!([])).then_some(())
    })
    .await;
}

/// `tagged_addresses` from the configuration join the node's own in the catalog.
#[tokio::test]
async fn configured_tagged_addresses_reach_the_catalog() {
    let a = Agent::builder()
        .config(json!({"tagged_addresses": {"lan_custom": "127.0.0.77"}}))
        .start()
        .await;
    let node = a.node.clone();
    let tagged = eventually(
        "the node's tagged addresses",
        Duration::from_secs(10),
        || async {
            let v: Value = a.get(&format!("/v1/catalog/node/{node}")).await.body;
            let t = v["Node"]["TaggedAddresses"].clone();
            (t["lan_custom"] == "127.0.0.77").then_some(t)
        },
    )
    .await;
    assert_eq!(tagged["lan"], "127.0.0.1", "{tagged}");
}
