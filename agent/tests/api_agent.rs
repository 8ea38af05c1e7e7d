//! `/v1/agent/*` end to end against a real `cairn agent -dev`: registration bodies as the
//! clients send them, checks and their lifecycle, maintenance, the agent-local health
//! endpoints, self/members/metrics, reload and leave.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, StatusServer, assert_has_keys, assert_keys, free_port};
use serde_json::{Value, json};

/// Consul's default maintenance notes (`agent/agent.go`).
const NODE_MAINT_DEFAULT: &str = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const SERVICE_MAINT_DEFAULT: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Services and checks as the agent reports them, without fields that legitimately differ
/// between two registrations (nothing, today: both must be identical).
async fn local_state(a: &Agent) -> (Value, Value) {
    let services = a.get("/v1/agent/services").await.expect_status(200).body;
    let checks = a.checks().await;
    (services, checks)
}

#[tokio::test]
async fn register_pascal_and_python_bodies_give_identical_state() {
    let a = Agent::start().await;
    // What NPM, Spring and the Go client send.
    let pascal = json!({
        "Name": "web", "ID": "web1", "Port": 8080, "Address": "10.0.0.5",
        "Tags": ["v1", "primary"], "Meta": {"Version_Key": "1.2"},
        "EnableTagOverride": true,
        "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 8080}},
        "Weights": {"Passing": 3, "Warning": 1},
        "Checks": [
            {"TTL": "30s", "Notes": "heartbeat", "DeregisterCriticalServiceAfter": "10m"},
            {"HTTP": "http://127.0.0.1:1/health", "Interval": "10s", "Timeout": "1s",
             "TLSSkipVerify": true, "Header": {"X-Token": ["a"]}}
        ]
    });
    // What py-consul sends: lowercase and snake_case, mixed with PascalCase.
    let python = json!({
        "name": "web", "id": "web1", "port": 8080, "address": "10.0.0.5",
        "tags": ["v1", "primary"], "meta": {"Version_Key": "1.2"},
        "enabletagoverride": true,
        "tagged_addresses": {"lan": {"address": "10.0.0.5", "port": 8080}},
        "weights": {"passing": 3, "warning": 1},
        "checks": [
            {"ttl": "30s", "notes": "heartbeat", "DeregisterCriticalServiceAfter": "10m"},
            {"http": "http://127.0.0.1:1/health", "interval": "10s", "timeout": "1s",
             "tls_skip_verify": true, "header": {"X-Token": ["a"]}}
        ]
    });
    a.register_service(&pascal).await;
    let first = local_state(&a).await;
    a.put_empty("/v1/agent/service/deregister/web1")
        .await
        .expect_status(200);
    assert_eq!(
        a.get("/v1/agent/services").await.body,
        json!({}),
        "deregistered"
    );
    a.register_service(&python).await;
    let second = local_state(&a).await;
    assert_eq!(first, second);

    let svc = &first.0["web1"];
    assert_eq!(
        *svc,
        json!({
            "ID": "web1", "Service": "web", "Tags": ["v1", "primary"],
            "Meta": {"Version_Key": "1.2"}, "Port": 8080, "Address": "10.0.0.5",
            "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 8080}},
            "Weights": {"Passing": 3, "Warning": 1}, "EnableTagOverride": true,
            "Datacenter": "dc1"
        })
    );
    let ttl = &first.1["service:web1:1"];
    assert_eq!(ttl["Type"], "ttl");
    assert_eq!(ttl["Notes"], "heartbeat");
    assert_eq!(ttl["Definition"]["DeregisterCriticalServiceAfter"], "10m0s");
    let http = &first.1["service:web1:2"];
    assert_eq!(http["Type"], "http");
    assert_eq!(http["Definition"]["HTTP"], "http://127.0.0.1:1/health");
    assert_eq!(http["Definition"]["TLSSkipVerify"], true);
    assert_eq!(http["Definition"]["Header"], json!({"X-Token": ["a"]}));
    assert_eq!(http["Interval"], "10s");
    assert_eq!(http["Timeout"], "1s");
}

#[tokio::test]
async fn check_and_checks_get_consul_ids_names_and_critical_status() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "api", "Tags": ["t"], "Check": {"TTL": "30s"}}))
        .await;
    a.register_service(&json!({
        "Name": "db", "ID": "db1",
        "Checks": [{"TTL": "30s"}, {"TTL": "30s", "CheckID": "custom", "Name": "mine"},
                   {"TTL": "30s", "Status": "passing"}]
    }))
    .await;
    let checks = a.checks().await;
    let mut ids: Vec<&String> = checks.as_object().expect("map").keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["custom", "service:api", "service:db1:1", "service:db1:3"]
    );

    let api = &checks["service:api"];
    assert_has_keys(
        api,
        &[
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
        ],
    );
    assert_eq!(api["Node"], json!(a.node));
    assert_eq!(api["CheckID"], "service:api");
    assert_eq!(api["Name"], "Service 'api' check");
    assert_eq!(api["Status"], "critical", "default status is critical");
    assert_eq!(api["ServiceID"], "api");
    assert_eq!(api["ServiceName"], "api");
    assert_eq!(api["ServiceTags"], json!(["t"]));
    assert_eq!(checks["custom"]["Name"], "mine");
    assert_eq!(checks["custom"]["ServiceID"], "db1");
    assert_eq!(checks["service:db1:3"]["Status"], "passing");
    assert_eq!(checks["service:db1:1"]["Status"], "critical");

    // A service without tags shows `[]`, not null, on the agent and in the catalog.
    a.register_service(&json!({"Name": "bare"})).await;
    let s = a
        .get("/v1/agent/service/bare")
        .await
        .expect_status(200)
        .body;
    assert_eq!(s["Tags"], json!([]));
    assert_eq!(s["Meta"], json!({}));
    assert_eq!(s["Weights"], json!({"Passing": 1, "Warning": 1}));

    // A check registered on its own, bound to a service, and one with a bad status.
    a.register_check(&json!({"Name": "disk", "TTL": "30s", "ServiceID": "api"}))
        .await;
    let disk = a.check("disk").await;
    assert_eq!(disk["ServiceName"], "api");
    assert_eq!(disk["Status"], "critical");
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "x", "TTL": "30s", "Status": "great"}),
        )
        .await;
    assert_eq!((r.status, r.text()), (400, "Bad check status".to_string()));
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "x", "TTL": "30s", "ServiceID": "nope"}),
        )
        .await;
    assert_eq!(
        (r.status, r.text()),
        (404, "ServiceID \"nope\" does not exist".to_string())
    );
    let r = a
        .put_json("/v1/agent/check/register", &json!({"TTL": "30s"}))
        .await;
    assert_eq!(
        (r.status, r.text()),
        (400, "Missing check name".to_string())
    );
    let r = a
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "w", "Check": {"TTL": "30s", "Status": "great"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            "Status for checks must 'passing', 'warning', 'critical'".to_string()
        )
    );
    let r = a
        .put_json("/v1/agent/service/register", &json!({"Port": 80}))
        .await;
    assert_eq!(
        (r.status, r.text()),
        (400, "Missing service name".to_string())
    );
}

#[tokio::test]
async fn ttl_pass_warn_fail_and_update_set_status_and_output() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "web", "ID": "web1", "Check": {"TTL": "30s"}}))
        .await;
    let id = "service:web1";
    let cases = [
        ("pass", "passing", "all good"),
        ("warn", "warning", "slow"),
        ("fail", "critical", "down"),
    ];
    for (verb, status, note) in cases {
        a.put_empty(&format!(
            "/v1/agent/check/{verb}/{id}?note={}",
            common::enc(note)
        ))
        .await
        .expect_status(200);
        let c = a.check(id).await;
        assert_eq!(
            (c["Status"].as_str(), c["Output"].as_str()),
            (Some(status), Some(note))
        );
        // The catalog sees the change at once (status changes are not deferred).
        let h = a.get("/v1/health/checks/web").await.expect_status(200).body;
        assert_eq!(h[0]["Status"], status);
    }
    a.put_json(
        &format!("/v1/agent/check/update/{id}"),
        &json!({"Status": "passing", "Output": "via update"}),
    )
    .await
    .expect_status(200);
    let c = a.check(id).await;
    assert_eq!(
        (&c["Status"], &c["Output"]),
        (&json!("passing"), &json!("via update"))
    );
    // Lowercase body, as Python clients send.
    a.put_json(
        &format!("/v1/agent/check/update/{id}"),
        &json!({"status": "warning", "output": "lower"}),
    )
    .await
    .expect_status(200);
    assert_eq!(a.check(id).await["Status"], "warning");

    let r = a
        .put_json(
            &format!("/v1/agent/check/update/{id}"),
            &json!({"Status": "bogus"}),
        )
        .await;
    assert_eq!(
        (r.status, r.text()),
        (400, "Invalid check status: 'bogus'".to_string())
    );
    let r = a.put_empty("/v1/agent/check/pass/nope").await;
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
                .to_string()
        )
    );
    // A check that is not a TTL check cannot be updated.
    a.register_check(&json!({"Name": "tcp", "TCP": "127.0.0.1:1", "Interval": "10s"}))
        .await;
    let r = a.put_empty("/v1/agent/check/pass/tcp").await;
    assert!(r.status >= 400 && r.status < 500, "{r:?}");
    assert!(
        r.text().contains("does not have associated TTL"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn ttl_check_expires_to_critical() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "beat", "Check": {"TTL": "1s"}}))
        .await;
    a.register_check(&json!({"Name": "quiet", "TTL": "1s"}))
        .await;
    // Taken before the update: the TTL clock restarts while the request is served.
    let passed = Instant::now();
    a.put_empty("/v1/agent/check/pass/service:beat?note=alive")
        .await
        .expect_status(200);
    a.put_empty("/v1/agent/check/pass/quiet")
        .await
        .expect_status(200);
    assert_eq!(a.check("service:beat").await["Status"], "passing");
    let c = a
        .eventually("TTL expiry", Duration::from_secs(5), || async {
            let c = a.check("service:beat").await;
            (c["Status"] == "critical").then_some(c)
        })
        .await;
    assert!(
        passed.elapsed() >= Duration::from_millis(950),
        "expired too early"
    );
    assert!(
        c["Output"]
            .as_str()
            .is_some_and(|o| o.starts_with("TTL expired")),
        "{c}"
    );
    let q = a
        .eventually("TTL expiry", Duration::from_secs(5), || async {
            let c = a.check("quiet").await;
            (c["Status"] == "critical").then_some(c)
        })
        .await;
    assert_eq!(q["Output"], "TTL expired");
    // The catalog follows promptly (status changes are synced at once).
    a.eventually(
        "catalog sees the expiry",
        Duration::from_secs(2),
        || async {
            let h = a.get("/v1/health/checks/beat").await.body;
            (h[0]["Status"] == "critical").then_some(())
        },
    )
    .await;
}

/// Consul keeps the last output in the expiry text (`CheckTTL.getExpiredOutput`).
#[tokio::test]
async fn ttl_expiry_output_keeps_the_last_output() {
    let a = Agent::start().await;
    a.register_check(&json!({"Name": "beat", "TTL": "1s"}))
        .await;
    a.put_empty("/v1/agent/check/pass/beat?note=alive")
        .await
        .expect_status(200);
    let c = a
        .eventually("TTL expiry", Duration::from_secs(5), || async {
            let c = a.check("beat").await;
            (c["Status"] == "critical").then_some(c)
        })
        .await;
    assert_eq!(
        c["Output"],
        "TTL expired (last output before timeout follows): alive"
    );
}

#[tokio::test]
async fn service_maintenance() {
    let a = Agent::start().await;
    a.register_service(
        &json!({"Name": "web", "ID": "web1", "Check": {"TTL": "30s", "Status": "passing"}}),
    )
    .await;
    assert_eq!(
        a.get("/v1/health/service/web?passing")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    a.put_empty("/v1/agent/service/maintenance/web1?enable=true&reason=deploying%20v2")
        .await
        .expect_status(200);
    let m = a.check("_service_maintenance:web1").await;
    assert_eq!(m["Status"], "critical");
    assert_eq!(m["Notes"], "deploying v2");
    assert_eq!(m["ServiceID"], "web1");
    assert_eq!(m["ServiceName"], "web");
    assert_eq!(m["Name"], "Service Maintenance Mode");
    // Out of `?passing` and critical on the agent's health endpoint.
    assert_eq!(
        a.get("/v1/health/service/web?passing").await.body,
        json!([])
    );
    let r = a.get("/v1/agent/health/service/id/web1?format=text").await;
    assert_eq!((r.status, r.text()), (503, "maintenance".to_string()));

    // Python sends `enable=False`; re-enabling without a reason gives Consul's default text.
    a.put_empty("/v1/agent/service/maintenance/web1?enable=False")
        .await
        .expect_status(200);
    assert_eq!(a.check("_service_maintenance:web1").await, Value::Null);
    a.put_empty("/v1/agent/service/maintenance/web1?enable=True")
        .await
        .expect_status(200);
    assert_eq!(
        a.check("_service_maintenance:web1").await["Notes"],
        SERVICE_MAINT_DEFAULT
    );
    a.put_empty("/v1/agent/service/maintenance/web1?enable=false")
        .await
        .expect_status(200);
    assert_eq!(
        a.get("/v1/health/service/web?passing")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let r = a.put_empty("/v1/agent/service/maintenance/web1").await;
    assert_eq!(
        (r.status, r.text()),
        (400, "Missing value for enable".to_string())
    );
    let r = a
        .put_empty("/v1/agent/service/maintenance/web1?enable=maybe")
        .await;
    assert_eq!(
        (r.status, r.text()),
        (400, "Invalid value for enable: \"maybe\"".to_string())
    );
    let r = a
        .put_empty("/v1/agent/service/maintenance/nope?enable=true")
        .await;
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            "Unknown service ID \"nope\". Ensure that the service ID is passed, not the service name."
                .to_string()
        )
    );
}

#[tokio::test]
async fn node_maintenance() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "web", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    a.put_empty("/v1/agent/maintenance?enable=true")
        .await
        .expect_status(200);
    let m = a.check("_node_maintenance").await;
    assert_eq!(m["Status"], "critical");
    assert_eq!(m["Notes"], NODE_MAINT_DEFAULT);
    assert_eq!(m["Name"], "Node Maintenance Mode");
    assert_eq!(m["ServiceID"], "");
    // Every service of the node leaves `?passing`.
    assert_eq!(
        a.get("/v1/health/service/web?passing").await.body,
        json!([])
    );
    let node = a.get(&format!("/v1/health/node/{}", a.node)).await.body;
    assert!(
        node.as_array()
            .expect("list")
            .iter()
            .any(|c| c["CheckID"] == "_node_maintenance" && c["Status"] == "critical"),
        "{node}"
    );
    // Idempotent, with a reason this time.
    a.put_empty("/v1/agent/maintenance?enable=true&reason=kernel%20upgrade")
        .await
        .expect_status(200);
    assert_eq!(
        a.check("_node_maintenance").await["Notes"],
        "kernel upgrade"
    );
    a.put_empty("/v1/agent/maintenance?enable=false")
        .await
        .expect_status(200);
    assert_eq!(a.check("_node_maintenance").await, Value::Null);
    assert_eq!(
        a.get("/v1/health/service/web?passing")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let r = a.put_empty("/v1/agent/maintenance").await;
    assert_eq!(
        (r.status, r.text()),
        (400, "Missing value for enable".to_string())
    );
    let r = a.put_empty("/v1/agent/maintenance?reason=x").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn deregister_service_and_check() {
    let a = Agent::start().await;
    a.register_service(
        &json!({"Name": "web", "ID": "web1", "Checks": [{"TTL": "30s"}, {"TTL": "30s"}]}),
    )
    .await;
    a.register_check(&json!({"Name": "node-level", "TTL": "30s"}))
        .await;
    assert_eq!(
        a.get("/v1/catalog/service/web")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    a.put_empty("/v1/agent/service/deregister/web1")
        .await
        .expect_status(200);
    assert_eq!(a.get("/v1/agent/services").await.body, json!({}));
    let checks = a.checks().await;
    assert_eq!(
        checks
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["node-level".to_string()]),
        "the service's checks went with it"
    );
    assert_eq!(a.get("/v1/catalog/service/web").await.body, json!([]));
    assert_eq!(a.get("/v1/health/checks/web").await.body, json!([]));

    a.put_empty("/v1/agent/check/deregister/node-level")
        .await
        .expect_status(200);
    assert_eq!(a.checks().await, json!({}));

    let r = a.put_empty("/v1/agent/service/deregister/web1").await;
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            "Unknown service ID \"web1\". Ensure that the service ID is passed, not the service name."
                .to_string()
        )
    );
    let r = a.put_empty("/v1/agent/check/deregister/nope").await;
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
                .to_string()
        )
    );
}

#[tokio::test]
async fn services_and_checks_listing_with_filter() {
    let a = Agent::start().await;
    assert_eq!(
        a.get("/v1/agent/services").await.expect_status(200).body,
        json!({})
    );
    assert_eq!(a.checks().await, json!({}));
    a.register_service(&json!({"Name": "web", "ID": "web1", "Port": 80, "Tags": ["blue"], "Check": {"TTL": "30s"}}))
        .await;
    a.register_service(&json!({"Name": "web", "ID": "web2", "Port": 81, "Tags": ["green"]}))
        .await;
    a.register_service(&json!({"Name": "db", "Port": 5432}))
        .await;
    let all = a.get("/v1/agent/services").await;
    assert_eq!(
        all.header("Content-Type").as_deref(),
        Some("application/json")
    );
    let mut ids: Vec<String> = all.body.as_object().expect("map").keys().cloned().collect();
    ids.sort();
    assert_eq!(ids, ["db", "web1", "web2"]);
    let r = a
        .get(&format!(
            "/v1/agent/services?filter={}",
            common::enc("Service == \"web\" and \"green\" in Tags")
        ))
        .await
        .expect_status(200);
    assert_eq!(r.body.as_object().map(|m| m.len()), Some(1));
    assert_eq!(r.body["web2"]["Port"], 81);
    let r = a
        .get(&format!(
            "/v1/agent/checks?filter={}",
            common::enc("ServiceID == \"web1\"")
        ))
        .await
        .expect_status(200);
    assert_eq!(r.body.as_object().map(|m| m.len()), Some(1));
    let r = a
        .get(&format!(
            "/v1/agent/services?filter={}",
            common::enc("Port ==")
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn agent_service_get_and_hash_blocking() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "web", "ID": "web1", "Port": 80, "Tags": ["a"]}))
        .await;
    let r = a.get("/v1/agent/service/web1").await.expect_status(200);
    let hash = r
        .header("X-Consul-ContentHash")
        .expect("content hash header");
    assert_eq!(r.body["ContentHash"], json!(hash));
    assert_eq!(r.body["ID"], "web1");
    assert_eq!(r.body["Service"], "web");
    assert_eq!(r.body["Port"], 80);

    // Same hash: blocks for `wait`, then answers the same hash.
    let t = Instant::now();
    let r2 = a
        .get(&format!("/v1/agent/service/web1?hash={hash}&wait=300ms"))
        .await
        .expect_status(200);
    assert!(t.elapsed() >= Duration::from_millis(280), "returned early");
    assert_eq!(r2.header("X-Consul-ContentHash"), Some(hash.clone()));

    // A change wakes the blocked reader with a new hash.
    let path = format!("/v1/agent/service/web1?hash={hash}&wait=10s");
    let blocked = a.get(&path);
    let change = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        a.register_service(&json!({"Name": "web", "ID": "web1", "Port": 81, "Tags": ["a"]}))
            .await;
        t
    };
    let (r3, changed_at) = tokio::join!(blocked, change);
    assert!(
        changed_at.elapsed() < Duration::from_secs(2),
        "not woken by the change"
    );
    assert_eq!(r3.body["Port"], 81);
    assert_ne!(r3.header("X-Consul-ContentHash"), Some(hash));

    let r = a.get("/v1/agent/service/nope").await;
    assert_eq!(
        (r.status, r.text()),
        (404, "unknown service ID: nope".to_string())
    );
    let r = a.get("/v1/agent/service/web1?wait=soon").await;
    assert_eq!((r.status, r.text()), (400, "Invalid wait time".to_string()));
}

#[tokio::test]
async fn agent_health_by_id_and_name() {
    let a = Agent::start().await;
    a.register_service(
        &json!({"Name": "web", "ID": "web1", "Check": {"TTL": "30s", "Status": "passing"}}),
    )
    .await;
    a.register_service(
        &json!({"Name": "web", "ID": "web2", "Check": {"TTL": "30s", "Status": "passing"}}),
    )
    .await;

    let r = a
        .get("/v1/agent/health/service/id/web1")
        .await
        .expect_status(200);
    assert_keys(&r.body, &["AggregatedStatus", "Service", "Checks"]);
    assert_eq!(r.body["AggregatedStatus"], "passing");
    assert_eq!(r.body["Service"]["ID"], "web1");
    assert_eq!(r.body["Checks"][0]["CheckID"], "service:web1");
    let r = a.get("/v1/agent/health/service/id/web1?format=text").await;
    assert_eq!((r.status, r.text()), (200, "passing".to_string()));
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let r = a
        .client()
        .get(a.url("/v1/agent/health/service/id/web1"))
        .header("Accept", "text/plain")
        .send()
        .await
        .expect("request");
    assert_eq!(r.text().await.expect("body"), "passing");

    a.put_empty("/v1/agent/check/warn/service:web2")
        .await
        .expect_status(200);
    let r = a.get("/v1/agent/health/service/id/web2?format=text").await;
    assert_eq!((r.status, r.text()), (429, "warning".to_string()));
    let r = a.get("/v1/agent/health/service/name/web").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));
    assert_eq!(r.header("X-Consul-Reason").as_deref(), Some("warning"));

    a.put_empty("/v1/agent/check/fail/service:web1")
        .await
        .expect_status(200);
    let r = a.get("/v1/agent/health/service/id/web1").await;
    assert_eq!(
        (r.status, &r.body["AggregatedStatus"]),
        (503, &json!("critical"))
    );
    let r = a.get("/v1/agent/health/service/name/web?format=text").await;
    assert_eq!((r.status, r.text()), (503, "critical".to_string()));

    // A node-level check counts for every service of the node.
    a.put_empty("/v1/agent/check/pass/service:web1")
        .await
        .expect_status(200);
    a.put_empty("/v1/agent/check/pass/service:web2")
        .await
        .expect_status(200);
    a.register_check(&json!({"Name": "mem", "TTL": "30s", "Status": "warning"}))
        .await;
    let r = a.get("/v1/agent/health/service/id/web1?format=text").await;
    assert_eq!((r.status, r.text()), (429, "warning".to_string()));

    let r = a.get("/v1/agent/health/service/id/nope?format=text").await;
    assert_eq!(
        (r.status, r.text()),
        (404, "ServiceId nope not found".to_string())
    );
    let r = a.get("/v1/agent/health/service/id/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
    );
    let r = a
        .get("/v1/agent/health/service/name/nope?format=text")
        .await;
    assert_eq!(
        (r.status, r.text()),
        (404, "ServiceName nope Not Found".to_string())
    );
    let r = a.get("/v1/agent/health/service/name/nope").await;
    assert_eq!((r.status, &r.body), (404, &json!([])));
}

#[tokio::test]
async fn agent_self_members_and_version() {
    let a = Agent::start().await;
    let r = a.get("/v1/agent/self").await.expect_status(200);
    let v = &r.body;
    for k in [
        "Config",
        "DebugConfig",
        "Coord",
        "Member",
        "Stats",
        "Meta",
        "xDS",
    ] {
        assert!(v[k].is_object(), "{k} is not an object: {}", v[k]);
    }
    assert_eq!(v["Config"]["Datacenter"], "dc1");
    assert_eq!(v["Config"]["NodeName"], json!(a.node));
    assert_eq!(v["Config"]["Server"], true);
    assert!(v["Config"]["Version"].is_string());
    assert!(
        v["Config"]["NodeID"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    assert_eq!(v["Member"]["Name"], json!(a.node));
    assert_eq!(v["Member"]["Tags"]["role"], "consul");
    assert_eq!(v["Member"]["Tags"]["dc"], "dc1");
    assert_eq!(v["Coord"]["Vec"].as_array().map(Vec::len), Some(8));
    for (section, values) in v["Stats"].as_object().expect("Stats") {
        for (k, val) in values.as_object().expect("Stats section") {
            assert!(
                val.is_string(),
                "Stats.{section}.{k} must be a string: {val}"
            );
        }
    }

    let m = a.get("/v1/agent/members").await.expect_status(200).body;
    let list = m.as_array().expect("members list");
    assert_eq!(list.len(), 1);
    assert_keys(
        &list[0],
        &[
            "Name",
            "Addr",
            "Port",
            "Tags",
            "Status",
            "ProtocolMin",
            "ProtocolMax",
            "ProtocolCur",
            "DelegateMin",
            "DelegateMax",
            "DelegateCur",
        ],
    );
    assert_eq!(list[0]["Name"], json!(a.node));
    assert_eq!(list[0]["Status"], 1);
    assert!(list[0]["Port"].is_u64());
    let wan = a
        .get("/v1/agent/members?wan=1")
        .await
        .expect_status(200)
        .body;
    assert_eq!(wan[0]["Name"], json!(format!("{}.dc1", a.node)));

    let v = a.get("/v1/agent/version").await.expect_status(200).body;
    assert!(v["HumanVersion"].is_string());
}

#[tokio::test]
async fn metrics_json_and_prometheus() {
    let a = Agent::start().await;
    let r = a.get("/v1/agent/metrics").await.expect_status(200);
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    let v = &r.body;
    assert!(v["Timestamp"].is_string());
    for k in ["Gauges", "Points", "Counters", "Samples"] {
        assert!(v[k].is_array(), "{k}: {}", v[k]);
    }
    let g = &v["Gauges"][0];
    assert_has_keys(g, &["Name", "Value", "Labels"]);
    let c = &v["Counters"][0];
    assert_has_keys(
        c,
        &[
            "Name", "Count", "Sum", "Min", "Max", "Mean", "Stddev", "Labels",
        ],
    );

    let r = a
        .get("/v1/agent/metrics?format=prometheus")
        .await
        .expect_status(200);
    let ct = r.header("Content-Type").expect("content type");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = r.text();
    assert!(text.contains("# TYPE "), "{text}");
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("consul_")
                && l.split(' ')
                    .nth(1)
                    .is_some_and(|n| n.parse::<f64>().is_ok())),
        "{text}"
    );
    let r = a
        .client()
        .get(a.url("/v1/agent/metrics"))
        .header("Accept", "application/openmetrics-text")
        .send()
        .await
        .expect("request");
    assert!(r.text().await.expect("body").contains("# TYPE "));
}

#[tokio::test]
async fn prometheus_refused_without_retention_time() {
    let a = Agent::builder()
        .config(json!({"telemetry": {"prometheus_retention_time": "0s"}}))
        .start()
        .await;
    let r = a.get("/v1/agent/metrics?format=prometheus").await;
    assert_eq!(
        (r.status, r.text()),
        (
            415,
            "Prometheus is not enabled since its retention time is not positive".to_string()
        )
    );
    a.get("/v1/agent/metrics").await.expect_status(200);
}

#[tokio::test]
async fn leave_exits_the_process_cleanly() {
    let mut a = Agent::start().await;
    a.put_empty("/v1/agent/leave").await.expect_status(200);
    let status = a
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("agent exited after leave");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn reload_picks_up_config_file_changes() {
    let a = Agent::builder()
        .config(json!({"services": [{"name": "from-file", "port": 1000}]}))
        .start()
        .await;
    let s = a.get("/v1/agent/services").await.body;
    assert_eq!(s["from-file"]["Port"], 1000);
    a.write_config(&json!({
        "services": [{"name": "from-file", "port": 2000}, {"name": "added", "port": 3000}]
    }));
    a.put_empty("/v1/agent/reload").await.expect_status(200);
    let s = a.get("/v1/agent/services").await.body;
    assert_eq!(s["from-file"]["Port"], 2000);
    assert_eq!(s["added"]["Port"], 3000);
    let cat = a.get("/v1/catalog/service/added").await.body;
    assert_eq!(cat[0]["ServicePort"], 3000);
    // Wrong method on reload.
    let r = a.get("/v1/agent/reload").await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn deregister_critical_service_after() {
    let a = Agent::start().await;
    let registered = Instant::now();
    a.register_service(&json!({
        "Name": "doomed", "Check": {"TTL": "30s", "DeregisterCriticalServiceAfter": "1s"}
    }))
    .await;
    a.register_service(&json!({
        "Name": "kept", "Check": {"TTL": "30s", "Status": "passing", "DeregisterCriticalServiceAfter": "1s"}
    }))
    .await;
    a.eventually(
        "reaping of the critical service",
        Duration::from_secs(8),
        || async {
            let s = a.get("/v1/agent/services").await.body;
            s.get("doomed").is_none().then_some(())
        },
    )
    .await;
    assert!(
        registered.elapsed() >= Duration::from_millis(950),
        "reaped before DeregisterCriticalServiceAfter"
    );
    assert_eq!(a.check("service:doomed").await, Value::Null);
    a.eventually("catalog removal", Duration::from_secs(3), || async {
        let c = a.get("/v1/catalog/service/doomed").await.body;
        (c == json!([])).then_some(())
    })
    .await;
    assert!(a.get("/v1/agent/services").await.body.get("kept").is_some());
}

#[tokio::test]
async fn http_check_follows_the_target() {
    let server = StatusServer::start(200).await;
    let a = Agent::start().await;
    a.register_service(&json!({
        "Name": "site", "Port": server.addr.port(),
        "Check": {"HTTP": server.url("/health"), "Interval": "200ms", "Timeout": "1s"}
    }))
    .await;
    a.eventually("HTTP check passing", Duration::from_secs(5), || async {
        let c = a.check("service:site").await;
        (c["Status"] == "passing").then_some(())
    })
    .await;
    server.set_status(500);
    let c = a
        .eventually("HTTP check critical", Duration::from_secs(5), || async {
            let c = a.check("service:site").await;
            (c["Status"] == "critical").then_some(c)
        })
        .await;
    assert!(
        c["Output"].as_str().is_some_and(|o| o.contains("500")),
        "{c}"
    );
    server.set_status(429);
    a.eventually(
        "HTTP check warning on 429",
        Duration::from_secs(5),
        || async {
            let c = a.check("service:site").await;
            (c["Status"] == "warning").then_some(())
        },
    )
    .await;
    let h = a.get("/v1/health/checks/site").await.body;
    assert_eq!(h[0]["Type"], "http");
}

#[tokio::test]
async fn tcp_check_passes_and_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open = listener.local_addr().expect("addr");
    let closed = free_port();
    let a = Agent::start().await;
    a.register_check(&json!({"Name": "open", "TCP": open.to_string(), "Interval": "200ms"}))
        .await;
    a.register_check(&json!({"Name": "closed", "TCP": format!("127.0.0.1:{closed}"), "Interval": "200ms", "Status": "passing"}))
        .await;
    a.eventually("TCP checks settle", Duration::from_secs(5), || async {
        let c = a.checks().await;
        (c["open"]["Status"] == "passing" && c["closed"]["Status"] == "critical").then_some(())
    })
    .await;
    assert_eq!(a.check("open").await["Type"], "tcp");
    drop(listener);
}

#[tokio::test]
async fn script_checks_refused_without_enable_script_checks() {
    let a = Agent::start().await;
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "s", "Args": ["/bin/true"], "Interval": "10s"}),
        )
        .await;
    assert!(r.status == 403 || r.status == 400, "{r:?}");
    assert!(r.text().contains("enable_script_checks"), "{}", r.text());
    let r = a
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "w", "Check": {"args": ["/bin/true"], "interval": "10s"}}),
        )
        .await;
    assert!(r.status == 403 || r.status == 400, "{r:?}");
    assert_eq!(
        a.get("/v1/agent/services").await.body,
        json!({}),
        "nothing registered"
    );

    let b = Agent::builder().flag("-enable-script-checks").start().await;
    b.register_check(
        &json!({"Name": "s", "Args": ["/bin/sh", "-c", "echo fine"], "Interval": "200ms"}),
    )
    .await;
    let c = b
        .eventually("script check passing", Duration::from_secs(5), || async {
            let c = b.check("s").await;
            (c["Status"] == "passing").then_some(c)
        })
        .await;
    assert_eq!(c["Type"], "script");
    assert!(
        c["Output"].as_str().is_some_and(|o| o.contains("fine")),
        "{c}"
    );
}

#[tokio::test]
async fn host_reports_memory_cpus_host_and_disk() {
    let a = common::Agent::start().await;
    let r = a.get("/v1/agent/host").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = &r.body;
    assert!(b["Memory"]["total"].as_u64().unwrap_or(0) > 0, "{b}");
    assert!(b["CPU"].as_array().is_some_and(|c| !c.is_empty()), "{b}");
    assert_eq!(b["Host"]["os"], "linux");
    assert!(
        !b["Host"]["hostname"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert!(b["Disk"]["total"].as_u64().unwrap_or(0) > 0, "{b}");
    assert!(b["CollectionTime"].as_u64().unwrap_or(0) > 0);
    assert!(b["Errors"].is_null(), "{}", b["Errors"]);
}

/// An object registered must stay removable (black-box finding: a 100 KB or 1 MiB service or
/// check ID registered with 200 and then could not be deregistered: 414/431). IDs and names
/// that no URL can carry are refused with 400; the longest accepted one, even percent-encoded
/// byte by byte, is deregistered by URL.
#[tokio::test]
async fn ids_too_long_for_a_url_are_refused_and_the_longest_accepted_can_be_removed() {
    let a = Agent::start().await;
    for len in [100 * 1024, 1024 * 1024] {
        let long = "x".repeat(len);
        let r = a
            .put_json(
                "/v1/agent/service/register",
                &json!({"Name": "web", "ID": long}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(
            r.text().starts_with("Service ID is too long"),
            "{}",
            r.text()
        );
        let r = a
            .put_json("/v1/agent/service/register", &json!({"Name": long}))
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let r = a
            .put_json(
                "/v1/agent/check/register",
                &json!({"Name": "c", "ID": long, "TTL": "10s"}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().starts_with("Check ID is too long"), "{}", r.text());
        let r = a
            .put_json(
                "/v1/agent/check/register",
                &json!({"Name": long, "TTL": "10s"}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
    }
    assert_eq!(a.get("/v1/agent/services").await.body, json!({}));
    assert!(a.checks().await.as_object().is_some_and(|m| m.is_empty()));

    // At the bound (8 KiB of two-byte characters: 24 KiB once percent-encoded).
    let id = "é".repeat(4096);
    a.register_service(&json!({"Name": "web", "ID": id, "Check": {"TTL": "10s"}}))
        .await;
    a.register_check(&json!({"Name": "c", "ID": id, "TTL": "10s"}))
        .await;
    let path = common::enc(&id);
    a.put_empty(&format!("/v1/agent/check/pass/{path}"))
        .await
        .expect_status(200);
    a.put_empty(&format!("/v1/agent/check/deregister/{path}"))
        .await
        .expect_status(200);
    a.put_empty(&format!("/v1/agent/service/deregister/{path}"))
        .await
        .expect_status(200);
    assert_eq!(a.get("/v1/agent/services").await.body, json!({}));
    assert!(a.checks().await.as_object().is_some_and(|m| m.is_empty()));
}
