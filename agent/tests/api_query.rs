//! `/v1/query`: prepared queries end to end: create, read, update, delete, execute (tags,
//! health, limit), templates with regexp captures, explain, names, sessions.

mod common;

use common::Agent;
use serde_json::{Value, json};

async fn register(a: &Agent, node: &str, id: &str, tags: &[&str], status: &str) {
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({
                "Node": node, "Address": "10.0.0.1",
                "Service": {"ID": id, "Service": "db", "Tags": tags, "Port": 5432},
                "Check": {"CheckID": format!("{id}-check"), "Name": "c", "Status": status,
                          "ServiceID": id}
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["Nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no Nodes in {v}"))
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn prepared_queries_are_stored_executed_and_removed() {
    let a = Agent::start().await;
    register(&a, "n1", "db1", &["primary", "v1"], "passing").await;
    register(&a, "n2", "db2", &["replica", "v1"], "warning").await;
    register(&a, "n3", "db3", &["replica", "v2"], "critical").await;

    // Create: Consul's body, with the nulls Go clients send.
    let r = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(
                serde_json::to_vec(&json!({
                    "Name": "db-v1",
                    "Session": "",
                    "Service": {"Service": "db", "Tags": ["v1"], "OnlyPassing": false,
                                "Failover": {"NearestN": 0, "Datacenters": null},
                                "NodeMeta": null},
                    "DNS": {"TTL": "10s"}
                }))
                .expect("json"),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.body["ID"].as_str().expect("ID").to_string();

    let list = a.get("/v1/query").await;
    assert_eq!(list.status, 200);
    assert!(list.index() > 0);
    assert_eq!(list.body[0]["ID"], id.as_str());
    assert_eq!(list.body[0]["Name"], "db-v1");
    assert_eq!(list.body[0]["DNS"]["TTL"], "10s");
    let one = a.get(&format!("/v1/query/{id}")).await;
    assert_eq!(one.body.as_array().map(Vec::len), Some(1));
    assert_eq!(a.get("/v1/query/nope").await.status, 404);

    // Execute by name and by ID: critical instances are out, warning in unless OnlyPassing.
    for key in ["db-v1", id.as_str()] {
        let ex = a.get(&format!("/v1/query/{key}/execute")).await;
        assert_eq!(ex.status, 200, "{}", ex.text());
        assert_eq!(ids(&ex.body), vec!["db1", "db2"]);
        assert_eq!(ex.body["Service"], "db");
        assert_eq!(ex.body["Datacenter"], "dc1");
        assert_eq!(ex.body["DNS"]["TTL"], "10s");
        assert!(ex.index() > 0);
    }
    let ex = a.get("/v1/query/db-v1/execute?limit=1").await;
    assert_eq!(ex.body["Nodes"].as_array().map(Vec::len), Some(1));

    // Update: only passing, excluding replicas.
    let up = a
        .put_json(
            &format!("/v1/query/{id}"),
            &json!({"Name": "db-v1", "Service": {"Service": "db", "Tags": ["!replica"],
                    "OnlyPassing": true}}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text());
    let ex = a.get("/v1/query/db-v1/execute").await;
    assert_eq!(ids(&ex.body), vec!["db1"]);

    // A second query cannot take the name; a query needs a service unless it is a template.
    let dup = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(br#"{"Name": "db-v1", "Service": {"Service": "db"}}"#.to_vec()),
        )
        .await;
    assert_eq!(dup.status, 400, "{}", dup.text());
    let bad = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(br#"{"Name": "x", "Service": {}}"#.to_vec()),
        )
        .await;
    assert_eq!(bad.status, 400);

    let del = a
        .request(reqwest::Method::DELETE, &format!("/v1/query/{id}"), None)
        .await;
    assert_eq!(del.status, 200);
    assert_eq!(a.get("/v1/query/db-v1/execute").await.status, 404);
}

#[tokio::test]
async fn templates_match_by_prefix_and_render_captures() {
    let a = Agent::start().await;
    register(&a, "n1", "db1", &["primary"], "passing").await;
    register(&a, "n2", "db2", &["replica"], "passing").await;
    let r = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(
                serde_json::to_vec(&json!({
                    "Name": "geo-",
                    "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.+?)-(.+)$"},
                    "Service": {"Service": "${match(1)}", "Tags": ["${match(2)}"]}
                }))
                .expect("json"),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ex = a.get("/v1/query/geo-db-replica/execute").await;
    assert_eq!(ex.status, 200, "{}", ex.text());
    assert_eq!(ids(&ex.body), vec!["db2"]);
    let explain = a.get("/v1/query/geo-db-primary/explain").await;
    assert_eq!(explain.status, 200);
    assert_eq!(explain.body["Query"]["Service"]["Service"], "db");
    assert_eq!(explain.body["Query"]["Service"]["Tags"], json!(["primary"]));
    let bad = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(
                br#"{"Name": "t", "Template": {"Type": "weird"}, "Service": {"Service": "x"}}"#
                    .to_vec(),
            ),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_query_tied_to_a_session_goes_with_it() {
    let a = Agent::start().await;
    let s = a.put("/v1/session/create", "{}").await;
    let sid = s.body["ID"].as_str().expect("session").to_string();
    let r = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(
                serde_json::to_vec(
                    &json!({"Name": "tied", "Session": sid, "Service": {"Service": "consul"}}),
                )
                .expect("json"),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ex = a.get("/v1/query/tied/execute").await;
    assert_eq!(ex.body["Nodes"].as_array().map(Vec::len), Some(1));
    let d = a.put(&format!("/v1/session/destroy/{sid}"), "").await;
    assert_eq!(d.status, 200);
    assert_eq!(a.get("/v1/query").await.body, json!([]));
    let unknown = a
        .request(
            reqwest::Method::POST,
            "/v1/query",
            Some(
                br#"{"Name": "t2", "Session": "no-such-session", "Service": {"Service": "x"}}"#
                    .to_vec(),
            ),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text());
}
