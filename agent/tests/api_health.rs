//! `/v1/health/*` end to end: service entries with their node and checks, the `passing`
//! filter with Go's boolean rules, check lists by node, service and state, and `?filter`.

mod common;

use common::{Agent, assert_keys, enc};
use serde_json::{Value, json};

async fn register(a: &Agent, body: Value) {
    let r = a.put_json("/v1/catalog/register", &body).await;
    assert_eq!((r.status, &r.body), (200, &json!(true)), "{}", r.text());
}

fn nodes_of(entries: &Value) -> Vec<String> {
    let mut v: Vec<String> = entries
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {entries}"))
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

fn check_ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// `web` on three external nodes: `good` (all passing), `warn` (service check warning) and
/// `down` (node's serfHealth critical, service check passing).
async fn fixture(a: &Agent) {
    let node = |name: &str, addr: &str, rack: &str, tags: Value, serf: &str, svc: &str| {
        json!({
            "Node": name, "Address": addr, "NodeMeta": {"rack": rack},
            "Service": {"ID": "web", "Service": "web", "Port": 80, "Tags": tags},
            "Checks": [
                {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": serf},
                {"CheckID": "service:web", "Name": "web check", "Status": svc, "ServiceID": "web"}
            ]
        })
    };
    register(
        a,
        node(
            "good",
            "192.0.2.1",
            "r1",
            json!(["v1", "primary"]),
            "passing",
            "passing",
        ),
    )
    .await;
    register(
        a,
        node(
            "warn",
            "192.0.2.2",
            "r2",
            json!(["v1"]),
            "passing",
            "warning",
        ),
    )
    .await;
    register(
        a,
        node(
            "down",
            "192.0.2.3",
            "r1",
            json!(["v2"]),
            "critical",
            "passing",
        ),
    )
    .await;
}

#[tokio::test]
async fn service_entries_have_consul_shape() {
    let a = Agent::start().await;
    fixture(&a).await;
    let r = a.get("/v1/health/service/web").await.expect_status(200);
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    assert!(r.index() >= 1);
    assert_eq!(nodes_of(&r.body), ["down", "good", "warn"]);
    let good = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["Node"]["Node"] == "good")
        .expect("good")
        .clone();
    assert_keys(&good, &["Node", "Service", "Checks"]);
    let n = &good["Node"];
    for k in [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "Meta",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(n.get(k).is_some(), "Node.{k} missing in {n}");
    }
    assert_eq!(n["Address"], "192.0.2.1");
    assert_eq!(n["Datacenter"], "dc1");
    assert_eq!(n["Meta"], json!({"rack": "r1"}));
    let s = &good["Service"];
    for k in [
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
    ] {
        assert!(s.get(k).is_some(), "Service.{k} missing in {s}");
    }
    assert_eq!(s["Tags"], json!(["v1", "primary"]));
    assert_eq!(s["Port"], 80);
    // Node checks and service checks together.
    assert_eq!(check_ids(&good["Checks"]), ["serfHealth", "service:web"]);
    let c = good["Checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["CheckID"] == "service:web")
        .expect("service check")
        .clone();
    for k in [
        "Node",
        "CheckID",
        "Name",
        "Status",
        "Notes",
        "Output",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "Type",
        "Definition",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(c.get(k).is_some(), "Checks[].{k} missing in {c}");
    }
    assert_eq!(c["ServiceName"], "web");
    assert_eq!(c["ServiceTags"], json!(["v1", "primary"]));
    let serf = good["Checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .expect("serfHealth")
        .clone();
    assert_eq!(serf["ServiceTags"], json!([]), "[] not null");
    assert_eq!(serf["ServiceID"], "");

    // A service without tags: `Service.Tags` is `[]`.
    register(
        &a,
        json!({"Node": "bare", "Address": "192.0.2.9", "Service": {"Service": "plain"}}),
    )
    .await;
    let r = a.get("/v1/health/service/plain").await.body;
    assert_eq!(r[0]["Service"]["Tags"], json!([]));
    assert_eq!(r[0]["Checks"], json!([]));
    // Unknown service: `[]` with an index.
    let r = a.get("/v1/health/service/nope").await.expect_status(200);
    assert_eq!(r.body, json!([]));
    assert!(r.index() >= 1);
}

#[tokio::test]
async fn passing_follows_go_parse_bool() {
    let a = Agent::start().await;
    fixture(&a).await;
    for q in [
        "passing",
        "passing=",
        "passing=1",
        "passing=true",
        "passing=True",
        "passing=TRUE",
        "passing=t",
    ] {
        let r = a
            .get(&format!("/v1/health/service/web?{q}"))
            .await
            .expect_status(200);
        assert_eq!(nodes_of(&r.body), ["good"], "?{q}");
    }
    for q in ["passing=false", "passing=0", "passing=False", "passing=f"] {
        let r = a
            .get(&format!("/v1/health/service/web?{q}"))
            .await
            .expect_status(200);
        assert_eq!(nodes_of(&r.body), ["down", "good", "warn"], "?{q}");
    }
    for q in ["passing=bogus", "passing=yes", "passing=2"] {
        let r = a.get(&format!("/v1/health/service/web?{q}")).await;
        assert_eq!(
            (r.status, r.text()),
            (400, "Invalid value for ?passing".to_string()),
            "?{q}"
        );
    }
    // `tag` (repeatable, AND) with `passing`, as consul-template and Spring send them.
    let r = a.get("/v1/health/service/web?tag=v1&passing=1").await;
    assert_eq!(nodes_of(&r.body), ["good"]);
    let r = a.get("/v1/health/service/web?tag=v1").await;
    assert_eq!(nodes_of(&r.body), ["good", "warn"]);
    let r = a.get("/v1/health/service/web?tag=v1&tag=primary").await;
    assert_eq!(nodes_of(&r.body), ["good"]);
    let r = a.get("/v1/health/service/web?node-meta=rack:r1").await;
    assert_eq!(nodes_of(&r.body), ["down", "good"]);
}

#[tokio::test]
async fn serf_health_critical_drops_the_node_from_passing() {
    let a = Agent::start().await;
    fixture(&a).await;
    let r = a.get("/v1/health/service/web?passing").await;
    assert!(!nodes_of(&r.body).contains(&"down".to_string()));
    // The node recovers: it is back.
    register(
        &a,
        json!({"Node": "down", "Address": "192.0.2.3", "SkipNodeUpdate": true,
               "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"}}),
    )
    .await;
    let r = a.get("/v1/health/service/web?passing").await;
    assert_eq!(nodes_of(&r.body), ["down", "good"]);
    // A node-level warning (not only critical) is enough to leave `passing`.
    register(
        &a,
        json!({"Node": "good", "Address": "192.0.2.1", "SkipNodeUpdate": true,
               "Check": {"CheckID": "mem", "Name": "memory", "Status": "warning"}}),
    )
    .await;
    let r = a.get("/v1/health/service/web?passing").await;
    assert_eq!(nodes_of(&r.body), ["down"]);
}

#[tokio::test]
async fn checks_by_service_node_and_state() {
    let a = Agent::start().await;
    fixture(&a).await;

    let r = a.get("/v1/health/checks/web").await.expect_status(200);
    assert!(r.index() >= 1);
    let list = r.body.as_array().expect("list");
    assert_eq!(list.len(), 3, "one service check per instance: {}", r.body);
    assert!(list.iter().all(|c| c["ServiceName"] == "web"));
    assert_eq!(a.get("/v1/health/checks/nope").await.body, json!([]));
    let r = a.get("/v1/health/checks/web?node-meta=rack:r2").await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["Node"], "warn");

    let r = a.get("/v1/health/node/down").await.expect_status(200);
    assert!(r.index() >= 1);
    assert_eq!(check_ids(&r.body), ["serfHealth", "service:web"]);
    assert_eq!(a.get("/v1/health/node/nope").await.body, json!([]));

    let count = |v: &Value| v.as_array().map(Vec::len).unwrap_or(usize::MAX);
    let any = a.get("/v1/health/state/any").await.expect_status(200).body;
    // 3 nodes × 2 checks + the agent's own serfHealth.
    assert_eq!(count(&any), 7, "{any}");
    let passing = a.get("/v1/health/state/passing").await.body;
    assert_eq!(count(&passing), 5);
    let warning = a.get("/v1/health/state/warning").await.body;
    assert_eq!(count(&warning), 1);
    assert_eq!(warning[0]["Node"], "warn");
    let critical = a.get("/v1/health/state/critical").await.body;
    assert_eq!(count(&critical), 1);
    assert_eq!(critical[0]["CheckID"], "serfHealth");
    let r = a.get("/v1/health/state/critical").await;
    assert!(r.index() >= 1);
    let r = a.get("/v1/health/state/any?node-meta=rack:r2").await;
    assert_eq!(count(&r.body), 2);

    // Consul validates the state (verify: Consul may answer `[]` instead of 400).
    for bad in ["bogus", "Passing", "unknown"] {
        let r = a.get(&format!("/v1/health/state/{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(!r.text().is_empty());
    }
}

#[tokio::test]
async fn filters_on_service_entries_and_checks() {
    let a = Agent::start().await;
    fixture(&a).await;
    let f = |expr: &str| format!("/v1/health/service/web?filter={}", enc(expr));

    let r = a.get(&f("\"primary\" in Service.Tags")).await;
    assert_eq!(nodes_of(&r.expect_status(200).body), ["good"]);
    let r = a.get(&f("Service.Tags contains \"v2\"")).await;
    assert_eq!(nodes_of(&r.body), ["down"]);
    let r = a.get(&f("Node.Meta.rack == \"r2\"")).await;
    assert_eq!(nodes_of(&r.body), ["warn"]);
    // Any check warning / critical.
    let r = a.get(&f("Checks.Status == \"warning\"")).await;
    assert_eq!(nodes_of(&r.body), ["warn"]);
    let r = a.get(&f("\"critical\" in Checks.Status")).await;
    assert_eq!(nodes_of(&r.body), ["down"]);
    // Every check passing, Consul's own idiom.
    let r = a.get(&f("not Checks.Status != \"passing\"")).await;
    assert_eq!(nodes_of(&r.body), ["good"]);
    let r = a
        .get(&f(
            "(Node.Meta.rack == \"r1\" or Node.Node == \"warn\") and Service.Port == 80",
        ))
        .await;
    assert_eq!(nodes_of(&r.body), ["down", "good", "warn"]);
    // Filter and passing together.
    let r = a
        .get(&format!(
            "/v1/health/service/web?passing&filter={}",
            enc("Node.Meta.rack == \"r1\"")
        ))
        .await;
    assert_eq!(nodes_of(&r.body), ["good"]);

    // Check lists filter on check fields.
    let r = a
        .get(&format!(
            "/v1/health/state/any?filter={}",
            enc("Status != \"passing\"")
        ))
        .await
        .expect_status(200);
    assert_eq!(check_ids(&r.body), ["serfHealth", "service:web"]);
    let r = a
        .get(&format!(
            "/v1/health/node/good?filter={}",
            enc("ServiceID == \"\"")
        ))
        .await;
    assert_eq!(check_ids(&r.body), ["serfHealth"]);

    // Bad expressions: 400 with a message, for every endpoint taking a filter.
    for path in [
        "/v1/health/service/web",
        "/v1/health/checks/web",
        "/v1/health/node/good",
        "/v1/health/state/any",
    ] {
        for expr in ["Service.Tags ==", "NoSuch.Field == 1", "((Status == \"x\""] {
            let r = a.get(&format!("{path}?filter={}", enc(expr))).await;
            assert_eq!(r.status, 400, "{path} {expr}: {}", r.text());
            assert!(!r.text().is_empty());
        }
    }
}

/// Answers are shared between identical reads at one index: every change that alters an answer
/// must move its index, so a repeated read never returns the previous answer.
#[tokio::test]
async fn repeated_reads_see_node_level_changes() {
    let a = Agent::start().await;
    fixture(&a).await;
    let addr_of = |entries: &Value, node: &str| -> String {
        entries
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["Node"]["Node"] == node || e["Node"] == node)
            .map(|e| {
                e["Node"]["Address"]
                    .as_str()
                    .or(e["Address"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default()
    };
    for _ in 0..2 {
        let h = a.get("/v1/health/service/web").await;
        assert_eq!(addr_of(&h.body, "warn"), "192.0.2.2", "{}", h.text());
        let c = a.get("/v1/catalog/service/web").await;
        assert_eq!(addr_of(&c.body, "warn"), "192.0.2.2", "{}", c.text());
    }
    // Only the node changes (its address and meta); the service entries must follow.
    register(
        &a,
        json!({"Node": "warn", "Address": "192.0.2.99", "NodeMeta": {"rack": "r9"}}),
    )
    .await;
    let h = a.get("/v1/health/service/web").await;
    assert_eq!(addr_of(&h.body, "warn"), "192.0.2.99", "{}", h.text());
    let c = a.get("/v1/catalog/service/web").await;
    assert_eq!(addr_of(&c.body, "warn"), "192.0.2.99", "{}", c.text());
    let n = a.get("/v1/catalog/node/warn").await;
    assert_eq!(n.body["Node"]["Meta"]["rack"], "r9", "{}", n.text());
    let r = a.get("/v1/catalog/nodes?node-meta=rack:r9").await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{}", r.text());
    // A service check turning critical is seen by the check lists and by `passing`.
    let before = a.get("/v1/health/state/critical").await;
    register(
        &a,
        json!({"Node": "good", "Address": "192.0.2.1", "SkipNodeUpdate": true,
               "Check": {"CheckID": "service:web", "Name": "web check", "Status": "critical",
                         "ServiceID": "web"}}),
    )
    .await;
    let after = a.get("/v1/health/state/critical").await;
    assert!(after.index() > before.index());
    assert!(
        check_ids(&after.body).len() > check_ids(&before.body).len(),
        "{} -> {}",
        before.text(),
        after.text()
    );
    let r = a.get("/v1/health/service/web?passing").await;
    assert!(!nodes_of(&r.body).contains(&"good".to_string()));
}
