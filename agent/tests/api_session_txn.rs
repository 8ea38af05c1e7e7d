//! `/v1/session/*` and `/v1/txn` end to end: session defaults and lifecycle, TTL expiry,
//! lock-delay and behaviours on KV locks; transactions that apply all or nothing.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, assert_has_keys, b64};
use serde_json::{Value, json};

async fn create(a: &Agent, body: Value) -> String {
    let r = a
        .put_json("/v1/session/create", &body)
        .await
        .expect_status(200);
    common::assert_keys(&r.body, &["ID"]);
    let id = r.body["ID"].as_str().expect("ID").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    id
}

async fn info(a: &Agent, id: &str) -> Value {
    a.get(&format!("/v1/session/info/{id}"))
        .await
        .expect_status(200)
        .body
}

async fn kv_put(a: &Agent, path: &str, body: &str) -> bool {
    let r = a.put(&format!("/v1/kv/{path}"), body).await;
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
    r.body.as_bool().expect("bool")
}

#[tokio::test]
async fn create_with_defaults_and_read_back() {
    let a = Agent::start().await;
    // An empty body is allowed; everything defaults.
    let r = a.put_empty("/v1/session/create").await.expect_status(200);
    let id = r.body["ID"].as_str().expect("ID").to_string();
    let list = info(&a, &id).await;
    let s = &list[0];
    assert_has_keys(
        s,
        &[
            "ID",
            "Name",
            "Node",
            "LockDelay",
            "Behavior",
            "TTL",
            "NodeChecks",
            "ServiceChecks",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(s["ID"], json!(id));
    assert_eq!(s["Node"], json!(a.node));
    assert_eq!(s["LockDelay"], json!(15_000_000_000u64));
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["TTL"], "");
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert!(s["CreateIndex"].as_u64().is_some_and(|i| i > 0));

    // Explicit values, Python-style lowercase keys.
    let id2 = create(
        &a,
        json!({"name": "locker", "lockdelay": "5s", "behavior": "delete", "ttl": "30s",
               "node_checks": []}),
    )
    .await;
    let s = &info(&a, &id2).await[0];
    assert_eq!(s["Name"], "locker");
    assert_eq!(s["LockDelay"], json!(5_000_000_000u64));
    assert_eq!(s["Behavior"], "delete");
    assert_eq!(s["TTL"], "30s");
    assert_eq!(s["NodeChecks"], json!([]));

    let r = a.get("/v1/session/list").await.expect_status(200);
    assert!(r.index() >= 1);
    let mut ids: Vec<&str> = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["ID"].as_str().expect("ID"))
        .collect();
    ids.sort_unstable();
    let mut want = vec![id.as_str(), id2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let r = a
        .get(&format!("/v1/session/node/{}", a.node))
        .await
        .expect_status(200);
    assert!(r.index() >= 1);
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));
    assert_eq!(
        a.get("/v1/session/node/nope").await.body,
        json!([]),
        "[] not null"
    );
    let r = a
        .get("/v1/session/info/00000000-0000-0000-0000-000000000000")
        .await
        .expect_status(200);
    assert_eq!(r.body, json!([]));
    assert!(r.index() >= 1);

    // Bad input.
    let r = a
        .put_json("/v1/session/create", &json!({"TTL": "5s"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Invalid Session TTL"), "{}", r.text());
    let r = a
        .put_json("/v1/session/create", &json!({"Behavior": "explode"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Behavior"), "{}", r.text());
    let r = a.put("/v1/session/create", "{not json").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn renew_and_destroy() {
    let a = Agent::start().await;
    let id = create(&a, json!({"TTL": "15s", "LockDelay": "0s"})).await;
    let r = a
        .put_empty(&format!("/v1/session/renew/{id}"))
        .await
        .expect_status(200);
    assert_eq!(r.body[0]["ID"], json!(id));
    assert_eq!(r.body[0]["TTL"], "15s");
    let r = a
        .put_empty("/v1/session/renew/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            "Session id '00000000-0000-0000-0000-000000000000' not found".to_string()
        )
    );

    // Destroy releases its locks (behavior release): the key stays, unlocked.
    assert!(kv_put(&a, &format!("res?acquire={id}"), "mine").await);
    let r = a
        .put_empty(&format!("/v1/session/destroy/{id}"))
        .await
        .expect_status(200);
    assert_eq!(r.body, json!(true));
    assert_eq!(info(&a, &id).await, json!([]));
    let e = &a.get("/v1/kv/res").await.expect_status(200).body[0];
    assert!(e.get("Session").is_none(), "{e}");
    assert_eq!(e["Value"], json!(b64("mine")));
    // Destroying again is fine.
    let r = a
        .put_empty(&format!("/v1/session/destroy/{id}"))
        .await
        .expect_status(200);
    assert_eq!(r.body, json!(true));
    // Wrong methods.
    assert_eq!(
        a.get(&format!("/v1/session/destroy/{id}")).await.status,
        405
    );
    assert_eq!(a.put_empty("/v1/session/list").await.status, 405);
}

#[tokio::test]
async fn behavior_delete_deletes_held_keys() {
    let a = Agent::start().await;
    let id = create(&a, json!({"Behavior": "delete", "LockDelay": "0s"})).await;
    assert!(kv_put(&a, &format!("svc/leader?acquire={id}"), "me").await);
    assert!(kv_put(&a, "svc/other", "stays").await);
    a.put_empty(&format!("/v1/session/destroy/{id}"))
        .await
        .expect_status(200);
    assert_eq!(a.get("/v1/kv/svc/leader").await.status, 404);
    assert_eq!(a.get("/v1/kv/svc/other").await.status, 200);
}

#[tokio::test]
async fn lock_delay_blocks_reacquire() {
    let a = Agent::start().await;
    let s1 = create(&a, json!({"LockDelay": "2s"})).await;
    let s2 = create(&a, json!({"LockDelay": "0s"})).await;
    assert!(kv_put(&a, &format!("leader?acquire={s1}"), "one").await);
    // Taken before the destroy: the delay runs from the invalidation inside the request.
    let invalidated = Instant::now();
    a.put_empty(&format!("/v1/session/destroy/{s1}"))
        .await
        .expect_status(200);
    assert!(
        !kv_put(&a, &format!("leader?acquire={s2}"), "two").await,
        "lock-delay must refuse an immediate re-acquire"
    );
    let acquired = a
        .eventually(
            "acquire after the lock delay",
            Duration::from_secs(6),
            || async {
                kv_put(&a, &format!("leader?acquire={s2}"), "two")
                    .await
                    .then(Instant::now)
            },
        )
        .await;
    let waited = acquired.duration_since(invalidated);
    assert!(
        waited >= Duration::from_millis(1950),
        "re-acquired after {waited:?}"
    );
    let e = &a.get("/v1/kv/leader").await.body[0];
    assert_eq!(e["Session"], json!(s2));
    assert_eq!(e["LockIndex"], 2);
}

/// The shortest session TTL is 10 s and the leader waits up to twice the TTL, so this test
/// takes 10–20 s.
#[tokio::test]
async fn ttl_session_expires_and_releases_locks() {
    let a = Agent::start().await;
    let created = Instant::now();
    let id = create(&a, json!({"TTL": "10s", "LockDelay": "0s"})).await;
    assert!(kv_put(&a, &format!("ttl-lock?acquire={id}"), "held").await);
    a.eventually(
        "TTL session invalidation",
        Duration::from_secs(23),
        || async { (info(&a, &id).await == json!([])).then_some(()) },
    )
    .await;
    let lived = created.elapsed();
    assert!(
        lived >= Duration::from_secs(10),
        "invalidated after {lived:?}, before its TTL"
    );
    let e = &a.get("/v1/kv/ttl-lock").await.expect_status(200).body[0];
    assert!(e.get("Session").is_none(), "{e}");
}

async fn txn(a: &Agent, ops: &Value) -> common::Resp {
    a.put_json("/v1/txn", ops).await
}

#[tokio::test]
async fn txn_kv_verbs() {
    let a = Agent::start().await;
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("1"), "Flags": 7}},
            {"KV": {"Verb": "set", "Key": "t/b", "Value": b64("2")}},
            {"KV": {"Verb": "cas", "Key": "t/c", "Value": b64("3"), "Index": 0}},
        ]),
    )
    .await
    .expect_status(200);
    common::assert_keys(&r.body, &["Results", "Errors"]);
    assert_eq!(r.body["Errors"], Value::Null);
    let results = r.body["Results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    let set = &results[0]["KV"];
    assert_eq!(set["Key"], "t/a");
    assert_eq!(set["Flags"], 7);
    assert_eq!(set["Value"], Value::Null, "writes do not echo the value");
    let idx_a = set["ModifyIndex"].as_u64().expect("index");

    // Reads: get, get-tree, check-index, check-not-exists. Read-only: served with headers.
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "get", "Key": "t/a"}},
            {"KV": {"Verb": "get-tree", "Key": "t/"}},
            {"KV": {"Verb": "check-index", "Key": "t/a", "Index": idx_a}},
            {"KV": {"Verb": "check-not-exists", "Key": "t/zzz"}},
        ]),
    )
    .await
    .expect_status(200);
    let results = r.body["Results"].as_array().expect("results");
    assert_eq!(results[0]["KV"]["Value"], json!(b64("1")));
    let tree: Vec<&str> = results[1..4]
        .iter()
        .map(|x| x["KV"]["Key"].as_str().expect("key"))
        .collect();
    assert_eq!(tree, ["t/a", "t/b", "t/c"]);
    assert!(r.index() >= idx_a);
    assert_eq!(r.header("X-Consul-KnownLeader").as_deref(), Some("true"));
    assert!(r.header("X-Consul-LastContact").is_some());

    // delete, delete-cas, delete-tree, lock/unlock with a session.
    let s = create(&a, json!({"LockDelay": "0s"})).await;
    let idx_b = a.get("/v1/kv/t/b").await.body[0]["ModifyIndex"]
        .as_u64()
        .expect("index");
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "delete", "Key": "t/a"}},
            {"KV": {"Verb": "delete-cas", "Key": "t/b", "Index": idx_b}},
            {"KV": {"Verb": "lock", "Key": "l/x", "Value": b64("locked"), "Session": s}},
        ]),
    )
    .await
    .expect_status(200);
    assert_eq!(r.body["Errors"], Value::Null);
    assert_eq!(a.get("/v1/kv/t/a").await.status, 404);
    assert_eq!(a.get("/v1/kv/t/b").await.status, 404);
    let e = &a.get("/v1/kv/l/x").await.body[0];
    assert_eq!(
        (e["Session"].as_str(), e["LockIndex"].as_u64()),
        (Some(s.as_str()), Some(1))
    );
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "check-session", "Key": "l/x", "Session": s}},
            {"KV": {"Verb": "unlock", "Key": "l/x", "Session": s}},
            {"KV": {"Verb": "delete-tree", "Key": "t/"}},
        ]),
    )
    .await
    .expect_status(200);
    assert_eq!(r.body["Errors"], Value::Null);
    assert!(a.get("/v1/kv/l/x").await.body[0].get("Session").is_none());
    assert_eq!(a.get("/v1/kv/t/c").await.status, 404);
}

/// Consul returns the entry (without its value) for `check-index` and `check-session`, and
/// the requested key with a `null` value for `get-or-empty` on a missing key
/// (`state/txn.go` txnKVS).
#[tokio::test]
async fn txn_check_verbs_return_the_entry() {
    let a = Agent::start().await;
    let s = create(&a, json!({"LockDelay": "0s"})).await;
    assert!(kv_put(&a, &format!("c/k?acquire={s}"), "v").await);
    let idx = a.get("/v1/kv/c/k").await.body[0]["ModifyIndex"]
        .as_u64()
        .expect("index");
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "check-index", "Key": "c/k", "Index": idx}},
            {"KV": {"Verb": "check-session", "Key": "c/k", "Session": s}},
            {"KV": {"Verb": "get-or-empty", "Key": "c/missing"}},
        ]),
    )
    .await
    .expect_status(200);
    let results = r.body["Results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{}", r.body);
    assert_eq!(results[0]["KV"]["Key"], "c/k");
    assert_eq!(results[0]["KV"]["Value"], Value::Null);
    assert_eq!(results[1]["KV"]["Session"], json!(s));
    assert_eq!(results[2]["KV"]["Key"], "c/missing");
    assert_eq!(results[2]["KV"]["Value"], Value::Null);
}

#[tokio::test]
async fn txn_failure_rolls_back_everything() {
    let a = Agent::start().await;
    assert!(kv_put(&a, "exists", "v").await);
    let before = a.get("/v1/kv/exists").await.body[0].clone();
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "set", "Key": "new/one", "Value": b64("1")}},
            {"KV": {"Verb": "set", "Key": "exists", "Value": b64("changed")}},
            {"KV": {"Verb": "cas", "Key": "exists", "Value": b64("x"), "Index": 999_999}},
            {"KV": {"Verb": "set", "Key": "new/two", "Value": b64("2")}},
        ]),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.body["Results"], Value::Null);
    let errors = r.body["Errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    common::assert_keys(&errors[0], &["OpIndex", "What"]);
    assert_eq!(errors[0]["OpIndex"], 2);
    assert!(errors[0]["What"].as_str().is_some_and(|w| !w.is_empty()));
    // Nothing applied.
    assert_eq!(a.get("/v1/kv/new/one").await.status, 404);
    assert_eq!(a.get("/v1/kv/new/two").await.status, 404);
    assert_eq!(a.get("/v1/kv/exists").await.body[0], before);

    let r = txn(
        &a,
        &json!([{"KV": {"Verb": "check-not-exists", "Key": "exists"}}]),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["Errors"][0]["OpIndex"], 0);
    let r = txn(&a, &json!([{"KV": {"Verb": "bogus", "Key": "x"}}])).await;
    assert!(r.status == 400 || r.status == 409, "{r:?}");
}

/// An unknown verb is refused before anything is proposed, with Consul's per-operation error
/// in a 409 (as when verbs were checked only on apply); a wrongly typed verb is a bad body.
#[tokio::test]
async fn txn_unknown_verbs_are_a_conflict_naming_each_operation() {
    let a = Agent::start().await;
    let r = txn(
        &a,
        &json!([
            {"KV": {"Verb": "set", "Key": "v/one", "Value": b64("1")}},
            {"KV": {"Verb": "bogus", "Key": "x"}},
            {"Node": {"Verb": "upsert", "Node": {"Node": "n", "Address": "192.0.2.1"}}},
            {"Service": {"Verb": "SET", "Node": "n", "Service": {"Service": "s"}}},
            {"Check": {"Verb": "get-tree", "Check": {"Node": "n", "CheckID": "c"}}},
            {"KV": {"Key": "no-verb"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        r.body,
        json!({"Results": null, "Errors": [
            {"OpIndex": 1, "What": "unknown KV verb \"bogus\""},
            {"OpIndex": 2, "What": "unknown Node verb \"upsert\""},
            {"OpIndex": 3, "What": "unknown Service verb \"SET\""},
            {"OpIndex": 4, "What": "unknown Check verb \"get-tree\""},
            {"OpIndex": 5, "What": "unknown KV verb \"\""},
        ]})
    );
    assert_eq!(a.get("/v1/kv/v/one").await.status, 404, "nothing applied");
    // A read-only transaction with a bad verb answers the same way.
    let r = txn(
        &a,
        &json!([{"KV": {"Verb": "get", "Key": "x"}}, {"KV": {"Verb": "peek", "Key": "x"}}]),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body["Errors"],
        json!([{"OpIndex": 1, "What": "unknown KV verb \"peek\""}])
    );
    let r = txn(&a, &json!([{"Node": {"Verb": ["set"]}}])).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn txn_limits_and_bad_bodies() {
    let a = Agent::start().await;
    let op = json!({"KV": {"Verb": "set", "Key": "k", "Value": b64("v")}});
    let ops: Vec<Value> = std::iter::repeat_n(op.clone(), 129).collect();
    let r = txn(&a, &json!(ops)).await;
    assert_eq!(
        (r.status, r.text()),
        (
            413,
            "Transaction contains too many operations (129 > 128)".to_string()
        )
    );
    assert_eq!(a.get("/v1/kv/k").await.status, 404, "nothing applied");
    let ops: Vec<Value> = std::iter::repeat_n(op, 128).collect();
    txn(&a, &json!(ops)).await.expect_status(200);

    for body in ["{not json", "{\"KV\": {}}", "[{\"KV\": {\"Verb\": 5}}]"] {
        let r = a.put("/v1/txn", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(!r.text().is_empty());
    }
    let r = a.get("/v1/txn").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow").as_deref(), Some("OPTIONS,PUT"));
}

#[tokio::test]
async fn txn_node_service_check_verbs() {
    let a = Agent::start().await;
    let r = txn(
        &a,
        &json!([
            {"Node": {"Verb": "set", "Node": {"Node": "txn-node", "Address": "192.0.2.50"}}},
            {"Service": {"Verb": "set", "Node": "txn-node",
                         "Service": {"ID": "s1", "Service": "txnsvc", "Port": 9000}}},
            {"Check": {"Verb": "set", "Check": {"Node": "txn-node", "CheckID": "c1",
                       "Name": "c1", "Status": "passing", "ServiceID": "s1"}}},
        ]),
    )
    .await
    .expect_status(200);
    assert_eq!(r.body["Errors"], Value::Null);
    let results = r.body["Results"].as_array().expect("results");
    assert_eq!(results[0]["Node"]["Node"], "txn-node");
    assert_eq!(results[1]["Service"]["Service"], "txnsvc");
    assert_eq!(results[2]["Check"]["CheckID"], "c1");
    let h = a.get("/v1/health/service/txnsvc?passing").await.body;
    assert_eq!(h[0]["Node"]["Node"], "txn-node");
    let r = txn(
        &a,
        &json!([{"Service": {"Verb": "get", "Node": "txn-node", "Service": {"ID": "s1"}}}]),
    )
    .await
    .expect_status(200);
    assert_eq!(r.body["Results"][0]["Service"]["Port"], 9000);
    let r = txn(
        &a,
        &json!([{"Node": {"Verb": "delete", "Node": {"Node": "txn-node"}}}]),
    )
    .await
    .expect_status(200);
    assert_eq!(r.body["Errors"], Value::Null);
    assert_eq!(a.get("/v1/catalog/node/txn-node").await.body, Value::Null);
}
