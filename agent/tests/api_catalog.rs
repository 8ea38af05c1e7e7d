//! `/v1/catalog/*` end to end: registration of external nodes, services and checks, and the
//! catalog reads with Consul's shapes, filters and headers.

mod common;

use common::{Agent, assert_has_keys, assert_keys, enc};
use serde_json::{Value, json};

/// Registers an external node (no agent of its own, so anti-entropy leaves it alone).
async fn register(a: &Agent, body: Value) {
    let r = a.put_json("/v1/catalog/register", &body).await;
    assert_eq!((r.status, &r.body), (200, &json!(true)), "{}", r.text());
}

fn names(list: &Value, field: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x[field].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// Two external nodes with `web` instances and a `db` on the first.
async fn fixture(a: &Agent) {
    register(
        a,
        json!({
            "Node": "ext1", "Address": "192.0.2.10", "Datacenter": "dc1",
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "TaggedAddresses": {"lan": "192.0.2.10", "wan": "198.51.100.10"},
            "NodeMeta": {"rack": "r1", "env": "prod"},
            "Service": {
                "ID": "web-1", "Service": "web", "Tags": ["prod", "v1"], "Port": 8080,
                "Address": "10.0.0.1", "Meta": {"version": "1"},
                "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 8080}},
                "Weights": {"Passing": 10, "Warning": 1}
            },
            "Check": {"CheckID": "service:web-1", "Name": "web check", "Status": "passing", "ServiceID": "web-1"}
        }),
    )
    .await;
    register(
        a,
        json!({
            "Node": "ext2", "Address": "192.0.2.11", "NodeMeta": {"rack": "r2", "env": "prod"},
            "Service": {"ID": "web-2", "Service": "web", "Tags": ["canary", "v1"], "Port": 8081}
        }),
    )
    .await;
    register(
        a,
        json!({
            "Node": "ext1", "Address": "192.0.2.10", "SkipNodeUpdate": true,
            "Service": {"Service": "db", "Port": 5432}
        }),
    )
    .await;
}

#[tokio::test]
async fn register_and_read_service_instances() {
    let a = Agent::start().await;
    fixture(&a).await;

    let r = a.get("/v1/catalog/service/web").await.expect_status(200);
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    assert!(r.index() >= 1);
    let list = r.body.as_array().expect("list");
    assert_eq!(list.len(), 2);
    let w1 = list
        .iter()
        .find(|s| s["ServiceID"] == "web-1")
        .expect("web-1");
    assert_has_keys(
        w1,
        &[
            "ID",
            "Node",
            "Address",
            "Datacenter",
            "TaggedAddresses",
            "NodeMeta",
            "CreateIndex",
            "ModifyIndex",
            "ServiceAddress",
            "ServiceEnableTagOverride",
            "ServiceID",
            "ServiceName",
            "ServicePort",
            "ServiceMeta",
            "ServiceTaggedAddresses",
            "ServiceTags",
            "ServiceKind",
            "ServiceProxy",
            "ServiceConnect",
            "ServiceWeights",
        ],
    );
    assert_eq!(w1["ID"], "40e4a748-2192-161a-0510-9bf59fe950b5");
    assert_eq!(w1["Node"], "ext1");
    assert_eq!(w1["Address"], "192.0.2.10");
    assert_eq!(w1["Datacenter"], "dc1");
    assert_eq!(
        w1["TaggedAddresses"],
        json!({"lan": "192.0.2.10", "wan": "198.51.100.10"})
    );
    assert_eq!(w1["NodeMeta"], json!({"rack": "r1", "env": "prod"}));
    assert_eq!(w1["ServiceName"], "web");
    assert_eq!(w1["ServiceAddress"], "10.0.0.1");
    assert_eq!(w1["ServicePort"], 8080);
    assert_eq!(w1["ServiceTags"], json!(["prod", "v1"]));
    assert_eq!(w1["ServiceMeta"], json!({"version": "1"}));
    assert_eq!(
        w1["ServiceTaggedAddresses"],
        json!({"lan": {"Address": "10.0.0.1", "Port": 8080}})
    );
    assert_eq!(w1["ServiceWeights"], json!({"Passing": 10, "Warning": 1}));
    assert_eq!(w1["ServiceEnableTagOverride"], false);
    assert!(w1["CreateIndex"].as_u64().is_some_and(|i| i > 0));
    assert!(w1["ModifyIndex"].as_u64().is_some_and(|i| i > 0));
    let w2 = list
        .iter()
        .find(|s| s["ServiceID"] == "web-2")
        .expect("web-2");
    assert_eq!(
        w2["ServiceAddress"], "",
        "empty: clients fall back to Address"
    );
    assert_eq!(w2["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(w2["ServiceTaggedAddresses"], json!({}));

    // A service registered without an ID gets its name as ID.
    let db = a.get("/v1/catalog/service/db").await.body;
    assert_eq!(db[0]["ServiceID"], "db");
    // Unknown service: `[]`, with an index.
    let r = a.get("/v1/catalog/service/nope").await.expect_status(200);
    assert_eq!(r.body, json!([]));
    assert!(r.index() >= 1);
}

#[tokio::test]
async fn service_tag_node_meta_and_filter() {
    let a = Agent::start().await;
    fixture(&a).await;
    let ids = |r: &common::Resp| names(&r.body, "ServiceID");

    let r = a.get("/v1/catalog/service/web?tag=v1").await;
    assert_eq!(ids(&r), ["web-1", "web-2"]);
    // Repeated `tag` is AND.
    let r = a.get("/v1/catalog/service/web?tag=v1&tag=prod").await;
    assert_eq!(ids(&r), ["web-1"]);
    let r = a.get("/v1/catalog/service/web?tag=prod&tag=canary").await;
    assert_eq!(r.body, json!([]));
    let r = a.get("/v1/catalog/service/web?node-meta=rack:r2").await;
    assert_eq!(ids(&r), ["web-2"]);
    let r = a
        .get("/v1/catalog/service/web?node-meta=env:prod&node-meta=rack:r1")
        .await;
    assert_eq!(ids(&r), ["web-1"]);
    let r = a
        .get(&format!(
            "/v1/catalog/service/web?filter={}",
            enc("ServicePort == 8081")
        ))
        .await
        .expect_status(200);
    assert_eq!(ids(&r), ["web-2"]);
    let r = a
        .get(&format!(
            "/v1/catalog/service/web?filter={}",
            enc("\"canary\" not in ServiceTags and NodeMeta.rack == \"r1\"")
        ))
        .await
        .expect_status(200);
    assert_eq!(ids(&r), ["web-1"]);
    let r = a
        .get(&format!(
            "/v1/catalog/service/web?filter={}",
            enc("ServiceMeta.version matches \"^1\"")
        ))
        .await
        .expect_status(200);
    assert_eq!(ids(&r), ["web-1"]);
    let r = a
        .get(&format!(
            "/v1/catalog/service/web?filter={}",
            enc("NoSuchField == 1")
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // `near` is accepted.
    a.get("/v1/catalog/service/web?near=_agent")
        .await
        .expect_status(200);
}

#[tokio::test]
async fn nodes_and_services_lists() {
    let a = Agent::start().await;
    fixture(&a).await;

    let r = a.get("/v1/catalog/nodes").await.expect_status(200);
    assert!(r.index() >= 1);
    assert_eq!(
        names(&r.body, "Node"),
        ["ext1".to_string(), "ext2".into(), a.node.clone()]
    );
    let ext1 = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .find(|n| n["Node"] == "ext1")
        .expect("ext1")
        .clone();
    assert_keys(
        &ext1,
        &[
            "ID",
            "Node",
            "Address",
            "Datacenter",
            "TaggedAddresses",
            "Meta",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(ext1["Meta"], json!({"rack": "r1", "env": "prod"}));
    let r = a.get("/v1/catalog/nodes?node-meta=rack:r2").await;
    assert_eq!(names(&r.body, "Node"), ["ext2"]);
    let r = a
        .get(&format!(
            "/v1/catalog/nodes?filter={}",
            enc("Meta.env == \"prod\" and Address != \"192.0.2.11\"")
        ))
        .await;
    assert_eq!(names(&r.body, "Node"), ["ext1"]);

    // Services: name → union of tags; the agent's own `consul` service is there too.
    let r = a.get("/v1/catalog/services").await.expect_status(200);
    assert!(r.index() >= 1);
    let s = r.body.as_object().expect("map");
    assert_eq!(s["consul"], json!([]));
    assert_eq!(s["db"], json!([]));
    let mut web: Vec<String> = serde_json::from_value(s["web"].clone()).expect("tags");
    web.sort();
    assert_eq!(web, ["canary", "prod", "v1"]);
    let r = a.get("/v1/catalog/services?node-meta=rack:r2").await;
    let keys: Vec<&String> = r.body.as_object().expect("map").keys().collect();
    assert_eq!(keys, ["web"]);
    let r = a
        .get(&format!(
            "/v1/catalog/services?filter={}",
            enc("ServiceName == \"db\"")
        ))
        .await
        .expect_status(200);
    assert_eq!(r.body, json!({"db": []}));

    let r = a.get("/v1/catalog/datacenters").await.expect_status(200);
    assert_eq!(r.body, json!(["dc1"]));
}

#[tokio::test]
async fn node_and_node_services() {
    let a = Agent::start().await;
    fixture(&a).await;

    let r = a.get("/v1/catalog/node/ext1").await.expect_status(200);
    assert!(r.index() >= 1);
    assert_keys(&r.body, &["Node", "Services"]);
    assert_eq!(r.body["Node"]["Node"], "ext1");
    assert_eq!(r.body["Node"]["Address"], "192.0.2.10");
    let services = r.body["Services"].as_object().expect("map by ID");
    let mut ids: Vec<&String> = services.keys().collect();
    ids.sort();
    assert_eq!(ids, ["db", "web-1"]);
    let web = &services["web-1"];
    assert_has_keys(
        web,
        &[
            "ID",
            "Service",
            "Tags",
            "Address",
            "Meta",
            "Port",
            "Weights",
            "EnableTagOverride",
            "TaggedAddresses",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(web["Service"], "web");
    assert_eq!(services["db"]["Tags"], json!([]));
    let r = a
        .get(&format!(
            "/v1/catalog/node/ext1?filter={}",
            enc("Port == 5432")
        ))
        .await;
    assert_eq!(
        r.body["Services"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["db".to_string()])
    );

    // Unknown node: `null` with 200 and an index.
    let r = a.get("/v1/catalog/node/nope").await.expect_status(200);
    assert_eq!(r.body, Value::Null);
    assert_eq!(r.text().trim(), "null");
    assert!(r.index() >= 1);

    let r = a
        .get("/v1/catalog/node-services/ext1")
        .await
        .expect_status(200);
    assert_keys(&r.body, &["Node", "Services"]);
    let list = r.body["Services"].as_array().expect("list form");
    assert_eq!(names(&r.body["Services"], "ID"), ["db", "web-1"]);
    assert_eq!(list.len(), 2);
    // Unknown node: Consul answers 200 with an empty record (verify).
    let r = a.get("/v1/catalog/node-services/nope").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body["Node"], Value::Null);
    assert!(r.index() >= 1);
}

#[tokio::test]
async fn register_checks_and_deregister() {
    let a = Agent::start().await;
    register(
        &a,
        json!({
            "Node": "ext", "Address": "192.0.2.20",
            "Service": {"ID": "api-1", "Service": "api", "Port": 80},
            "Checks": [
                {"CheckID": "api-alive", "Name": "alive", "Status": "passing", "ServiceID": "api-1",
                 "Definition": {"HTTP": "http://192.0.2.20/health", "Interval": "10s", "Timeout": "2s"}},
                {"CheckID": "node-disk", "Name": "disk", "Status": "warning", "Output": "80% full"}
            ]
        }),
    )
    .await;
    let checks = a.get("/v1/health/node/ext").await.expect_status(200).body;
    assert_eq!(names(&checks, "CheckID"), ["api-alive", "node-disk"]);
    let alive = checks
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["CheckID"] == "api-alive")
        .expect("api-alive")
        .clone();
    assert_eq!(alive["Node"], "ext");
    assert_eq!(alive["ServiceName"], "api");
    assert_eq!(alive["ServiceTags"], json!([]));
    assert_eq!(alive["Definition"]["HTTP"], "http://192.0.2.20/health");
    assert_eq!(alive["Definition"]["Interval"], "10s");
    let disk = checks
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["CheckID"] == "node-disk")
        .expect("node-disk")
        .clone();
    assert_eq!(
        (&disk["Status"], &disk["Output"], &disk["ServiceID"]),
        (&json!("warning"), &json!("80% full"), &json!(""))
    );

    // Deregister one check, then the service (its checks go with it), then the node.
    let dereg = |body: Value| {
        let a = &a;
        async move {
            let r = a.put_json("/v1/catalog/deregister", &body).await;
            assert_eq!((r.status, &r.body), (200, &json!(true)), "{}", r.text());
        }
    };
    dereg(json!({"Node": "ext", "CheckID": "node-disk"})).await;
    assert_eq!(
        names(&a.get("/v1/health/node/ext").await.body, "CheckID"),
        ["api-alive"]
    );
    dereg(json!({"Node": "ext", "ServiceID": "api-1"})).await;
    assert_eq!(a.get("/v1/catalog/service/api").await.body, json!([]));
    assert_eq!(a.get("/v1/health/node/ext").await.body, json!([]));
    assert_eq!(
        a.get("/v1/catalog/node/ext").await.body["Node"]["Node"],
        "ext"
    );
    dereg(json!({"Node": "ext"})).await;
    assert_eq!(a.get("/v1/catalog/node/ext").await.body, Value::Null);
    assert!(!names(&a.get("/v1/catalog/nodes").await.body, "Node").contains(&"ext".to_string()));

    // Python sends lowercase keys and `WriteRequest`; accepted.
    register(
        &a,
        json!({"node": "py", "address": "192.0.2.30", "service": {"service": "pysvc", "port": 1},
               "WriteRequest": {"Token": ""}}),
    )
    .await;
    assert_eq!(
        a.get("/v1/catalog/service/pysvc").await.body[0]["Node"],
        "py"
    );
}

#[tokio::test]
async fn bad_registrations_are_4xx() {
    let a = Agent::start().await;
    let cases = [
        (json!({"Address": "192.0.2.1"}), "Must provide node"),
        (json!({"Node": "x"}), "Must provide address"),
        (
            json!({"Node": "x", "Address": "192.0.2.1", "Service": {"Port": 1}}),
            "Must provide service name",
        ),
    ];
    for (body, want) in cases {
        let r = a.put_json("/v1/catalog/register", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(want), "{body}: {}", r.text());
    }
    let r = a
        .put_json("/v1/catalog/deregister", &json!({"ServiceID": "x"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Must provide node"), "{}", r.text());
    let r = a.put("/v1/catalog/register", "{\"Node\": ").await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("Request decode failed"),
        "{}",
        r.text()
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "x", "Address": "192.0.2.1", "Service": {"Service": "s", "Port": "eighty"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // Nothing was written by the refused requests.
    assert!(!names(&a.get("/v1/catalog/nodes").await.body, "Node").contains(&"x".to_string()));
}

#[tokio::test]
async fn other_datacenter_is_refused_as_consul_does() {
    let a = Agent::start().await;
    for path in [
        "/v1/catalog/nodes?dc=other",
        "/v1/catalog/services?dc=other",
        "/v1/catalog/service/consul?dc=other",
        "/v1/health/service/consul?dc=other",
        "/v1/kv/x?dc=other",
    ] {
        let r = a.get(path).await;
        assert_eq!(
            (r.status, r.text()),
            (500, "No path to datacenter".to_string()),
            "{path}"
        );
    }
    let r = a
        .put_json(
            "/v1/catalog/register?dc=other",
            &json!({"Node": "x", "Address": "192.0.2.1"}),
        )
        .await;
    assert_eq!(
        (r.status, r.text()),
        (500, "No path to datacenter".to_string())
    );
    // The local datacenter by name is fine.
    a.get("/v1/catalog/nodes?dc=dc1").await.expect_status(200);
}

#[tokio::test]
async fn agent_node_is_in_the_catalog_with_serf_health() {
    let a = Agent::start().await;
    let node = a
        .get(&format!("/v1/catalog/node/{}", a.node))
        .await
        .expect_status(200)
        .body;
    assert_eq!(node["Node"]["Node"], json!(a.node));
    assert_eq!(node["Node"]["Address"], "127.0.0.1");
    assert_eq!(node["Services"]["consul"]["Service"], "consul");
    let checks = a.get(&format!("/v1/health/node/{}", a.node)).await.body;
    let serf = &checks[0];
    assert_eq!(serf["CheckID"], "serfHealth");
    assert_eq!(serf["Name"], "Serf Health Status");
    assert_eq!(serf["Status"], "passing");
    assert_eq!(serf["Output"], "Agent alive and reachable");
}

/// The catalog refuses what no URL could address afterwards (node names, service and check
/// IDs and names over the agent's bound), like the agent endpoints.
#[tokio::test]
async fn catalog_register_refuses_ids_too_long_for_a_url() {
    let a = Agent::start().await;
    let long = "x".repeat(100 * 1024);
    let cases = [
        (
            json!({"Node": long, "Address": "10.0.0.1"}),
            "Node name is too long",
        ),
        (
            json!({"Node": "ext", "Address": "10.0.0.1", "Service": {"Service": "web", "ID": long}}),
            "Service ID is too long",
        ),
        (
            json!({"Node": "ext", "Address": "10.0.0.1", "Service": {"Service": long}}),
            "Service name is too long",
        ),
        (
            json!({"Node": "ext", "Address": "10.0.0.1", "Check": {"CheckID": long, "Name": "c"}}),
            "Check ID is too long",
        ),
    ];
    for (body, want) in cases {
        let r = a.put_json("/v1/catalog/register", &body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().starts_with(want), "{want}: {}", r.text());
    }
    let nodes = a.get("/v1/catalog/nodes").await.expect_status(200).body;
    assert_eq!(names(&nodes, "Node"), vec![a.node.clone()]);
}
