//! `/v1/kv/*` end to end: values, listings, flags, check-and-set, deletes, size limits and
//! locks held by sessions, with Consul's status codes and headers.

mod common;

use common::{Agent, assert_keys, b64};
use serde_json::{Value, json};

/// `PUT /v1/kv/<path>` answering `true` or `false`.
async fn put(a: &Agent, path: &str, body: &str) -> bool {
    let r = a.put(&format!("/v1/kv/{path}"), body).await;
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
    r.body
        .as_bool()
        .unwrap_or_else(|| panic!("PUT {path} answered {}", r.text()))
}

async fn del(a: &Agent, path: &str) -> bool {
    let r = a.delete(&format!("/v1/kv/{path}")).await;
    assert_eq!(r.status, 200, "DELETE {path}: {}", r.text());
    r.body
        .as_bool()
        .unwrap_or_else(|| panic!("DELETE {path} answered {}", r.text()))
}

async fn entry(a: &Agent, key: &str) -> Value {
    let r = a.get(&format!("/v1/kv/{key}")).await.expect_status(200);
    let list = r.body.as_array().expect("a list of one entry");
    assert_eq!(list.len(), 1);
    list[0].clone()
}

async fn session(a: &Agent, body: Value) -> String {
    let r = a
        .put_json("/v1/session/create", &body)
        .await
        .expect_status(200);
    r.body["ID"].as_str().expect("session ID").to_string()
}

#[tokio::test]
async fn put_get_delete_and_raw() {
    let a = Agent::start().await;
    assert!(put(&a, "config/app", "hello").await);
    let r = a.get("/v1/kv/config/app").await.expect_status(200);
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    let e = &r.body[0];
    assert_keys(
        e,
        &[
            "CreateIndex",
            "ModifyIndex",
            "LockIndex",
            "Key",
            "Flags",
            "Value",
        ],
    );
    assert_eq!(e["Key"], "config/app");
    assert_eq!(e["Value"], json!(b64("hello")));
    assert_eq!(e["Flags"], 0);
    assert_eq!(e["LockIndex"], 0);
    let created = e["CreateIndex"].as_u64().expect("index");
    assert_eq!(e["ModifyIndex"].as_u64(), Some(created));
    assert_eq!(
        r.index(),
        created,
        "X-Consul-Index of a key is its ModifyIndex"
    );
    assert!(r.header("X-Consul-KnownLeader").is_some());

    // Raw bytes, served as plain text that browsers must not sniff.
    let r = a.get("/v1/kv/config/app?raw").await.expect_status(200);
    assert_eq!(r.bytes, b"hello");
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.header("Content-Type")
    );
    assert_eq!(
        r.header("X-Content-Type-Options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(r.index(), created);
    // Binary values round-trip.
    let bin: Vec<u8> = (0u8..=255).collect();
    let r = a.put("/v1/kv/bin", bin.clone()).await;
    assert_eq!(r.body, json!(true));
    assert_eq!(a.get("/v1/kv/bin?raw").await.bytes, bin);
    // An empty value is `null`.
    assert!(put(&a, "empty", "").await);
    assert_eq!(entry(&a, "empty").await["Value"], Value::Null);

    // Update keeps CreateIndex and moves ModifyIndex.
    assert!(put(&a, "config/app", "world").await);
    let e = entry(&a, "config/app").await;
    assert_eq!(e["CreateIndex"].as_u64(), Some(created));
    assert!(e["ModifyIndex"].as_u64().expect("index") > created);
    assert_eq!(e["Value"], json!(b64("world")));

    assert!(del(&a, "config/app").await);
    // Missing key: 404 with an empty body, still carrying the index headers.
    let r = a.get("/v1/kv/config/app").await;
    assert_eq!(r.status, 404);
    assert!(r.bytes.is_empty(), "{}", r.text());
    assert!(r.index() >= 1);
    assert!(r.header("X-Consul-KnownLeader").is_some());
    assert!(r.header("X-Consul-LastContact").is_some());
    let r = a.get("/v1/kv/never/existed?raw").await;
    assert_eq!(r.status, 404);
    assert!(r.index() >= 1);
    // Deleting a missing key is still `true`.
    assert!(del(&a, "config/app").await);

    let r = a.get("/v1/kv/").await;
    assert_eq!((r.status, r.text()), (400, "Missing key name".to_string()));
    let r = a.put("/v1/kv/", "x").await;
    assert_eq!((r.status, r.text()), (400, "Missing key name".to_string()));
    let r = a.delete("/v1/kv/").await;
    assert_eq!((r.status, r.text()), (400, "Missing key name".to_string()));
}

#[tokio::test]
async fn recurse_keys_and_separator() {
    let a = Agent::start().await;
    for (k, v) in [
        ("web/foo", "1"),
        ("web/bar", "2"),
        ("web/subdir/x", "3"),
        ("web/subdir/y", "4"),
        ("webby", "5"),
        ("other/z", "6"),
    ] {
        assert!(put(&a, k, v).await);
    }
    let r = a.get("/v1/kv/web/?recurse").await.expect_status(200);
    let keys: Vec<&str> = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["Key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["web/bar", "web/foo", "web/subdir/x", "web/subdir/y"]);
    let max = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["ModifyIndex"].as_u64().expect("index"))
        .max()
        .expect("entries");
    assert_eq!(r.index(), max, "recurse index is the highest ModifyIndex");
    // Python sends `recurse=1`.
    let r = a.get("/v1/kv/web?recurse=1").await.expect_status(200);
    assert_eq!(
        r.body.as_array().map(Vec::len),
        Some(5),
        "prefix, not directory"
    );

    let r = a.get("/v1/kv/web/?keys").await.expect_status(200);
    assert_eq!(
        r.body,
        json!(["web/bar", "web/foo", "web/subdir/x", "web/subdir/y"])
    );
    let r = a
        .get("/v1/kv/web/?keys&separator=/")
        .await
        .expect_status(200);
    assert_eq!(r.body, json!(["web/bar", "web/foo", "web/subdir/"]));
    let r = a.get("/v1/kv/?keys&separator=/").await.expect_status(200);
    assert_eq!(r.body, json!(["other/", "web/", "webby"]));
    // Python sends `keys=True`.
    let r = a.get("/v1/kv/other?keys=True").await.expect_status(200);
    assert_eq!(r.body, json!(["other/z"]));

    // Nothing under a prefix: 404 with an index; the root with no keys is `[]`.
    let r = a.get("/v1/kv/nothing/?recurse").await;
    assert_eq!(r.status, 404);
    assert!(r.index() >= 1);
    let r = a.get("/v1/kv/nothing/?keys").await;
    assert_eq!(r.status, 404);
    assert!(r.index() >= 1);
    let r = a.get("/v1/kv/?recurse").await.expect_status(200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(6));
    let b = Agent::start().await;
    let r = b.get("/v1/kv/?keys").await.expect_status(200);
    assert_eq!(r.body, json!([]));
    assert!(r.index() >= 1);
}

#[tokio::test]
async fn flags_and_check_and_set() {
    let a = Agent::start().await;
    assert!(put(&a, "f?flags=42", "x").await);
    assert_eq!(entry(&a, "f").await["Flags"], 42);
    assert!(put(&a, "f?flags=18446744073709551615", "x").await);
    assert_eq!(entry(&a, "f").await["Flags"], json!(u64::MAX));
    let r = a.put("/v1/kv/f?flags=-1", "x").await;
    assert!(r.status >= 400 && r.status < 500, "{r:?}");

    // cas=0: create only.
    assert!(put(&a, "c?cas=0", "first").await);
    assert!(!put(&a, "c?cas=0", "second").await);
    let e = entry(&a, "c").await;
    assert_eq!(e["Value"], json!(b64("first")));
    let idx = e["ModifyIndex"].as_u64().expect("index");
    // cas=<ModifyIndex>: only while unchanged.
    assert!(!put(&a, &format!("c?cas={}", idx + 100), "wrong").await);
    assert!(put(&a, &format!("c?cas={idx}"), "third").await);
    assert!(!put(&a, &format!("c?cas={idx}"), "stale").await);
    assert_eq!(entry(&a, "c").await["Value"], json!(b64("third")));

    // DELETE ?cas: 0 never matches an existing key; the right index deletes.
    let idx = entry(&a, "c").await["ModifyIndex"].as_u64().expect("index");
    assert!(!del(&a, "c?cas=0").await);
    assert!(!del(&a, &format!("c?cas={}", idx - 1)).await);
    assert_eq!(a.get("/v1/kv/c").await.status, 200, "still there");
    assert!(del(&a, &format!("c?cas={idx}")).await);
    assert_eq!(a.get("/v1/kv/c").await.status, 404);

    let r = a.put("/v1/kv/c?cas=abc", "x").await;
    assert!(r.status >= 400 && r.status < 500, "{r:?}");
    // cas, acquire and release do not compose.
    let r = a.put("/v1/kv/c?cas=0&acquire=x", "x").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().starts_with("Conflicting flags"), "{}", r.text());
    let r = a.delete("/v1/kv/c?cas=1&recurse").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().starts_with("Conflicting flags"), "{}", r.text());
}

#[tokio::test]
async fn delete_recurse() {
    let a = Agent::start().await;
    for k in ["app/a", "app/b/c", "apple", "keep/me"] {
        assert!(put(&a, k, "v").await);
    }
    assert!(del(&a, "app/?recurse").await);
    assert_eq!(a.get("/v1/kv/app/a").await.status, 404);
    assert_eq!(a.get("/v1/kv/app/b/c").await.status, 404);
    assert_eq!(a.get("/v1/kv/apple").await.status, 200);
    assert!(del(&a, "app?recurse").await);
    assert_eq!(a.get("/v1/kv/apple").await.status, 404);
    assert_eq!(a.get("/v1/kv/keep/me").await.status, 200);
    // The whole store.
    assert!(del(&a, "?recurse").await);
    assert_eq!(a.get("/v1/kv/keep/me").await.status, 404);
}

#[tokio::test]
async fn value_size_limit() {
    let a = Agent::start().await;
    let max = 512 * 1024;
    let r = a.put("/v1/kv/big", vec![b'x'; max]).await;
    assert_eq!(
        (r.status, &r.body),
        (200, &json!(true)),
        "exactly the limit"
    );
    assert_eq!(a.get("/v1/kv/big?raw").await.bytes.len(), max);
    let r = a.put("/v1/kv/big", vec![b'y'; max + 1]).await;
    assert_eq!(r.status, 413);
    let want = format!(
        "Request body({} bytes) too large, max size: {max} bytes. See ",
        max + 1
    );
    assert!(r.text().starts_with(&want), "{}", r.text());
    assert!(r.text().contains("kv_max_value_size"), "{}", r.text());
    // Nothing changed.
    assert_eq!(a.get("/v1/kv/big?raw").await.bytes, vec![b'x'; max]);
    // Far larger bodies are refused the same way, never with a 5xx.
    let r = a.put("/v1/kv/huge", vec![b'z'; 8 * 1024 * 1024]).await;
    assert_eq!(r.status, 413, "{}", r.text());

    // The limit follows `limits.kv_max_value_size`.
    let b = Agent::builder()
        .config(json!({"limits": {"kv_max_value_size": 16}}))
        .start()
        .await;
    let r = b.put("/v1/kv/k", vec![b'a'; 17]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text()
            .starts_with("Request body(17 bytes) too large, max size: 16 bytes."),
        "{}",
        r.text()
    );
    assert_eq!(b.put("/v1/kv/k", vec![b'a'; 16]).await.status, 200);
}

#[tokio::test]
async fn locks_with_sessions() {
    let a = Agent::start().await;
    let s1 = session(&a, json!({"Name": "one", "LockDelay": "0s"})).await;
    let s2 = session(&a, json!({"Name": "two", "LockDelay": "0s"})).await;

    assert!(put(&a, &format!("lock?acquire={s1}"), "held by one").await);
    let e = entry(&a, "lock").await;
    assert_eq!(e["Session"], json!(s1));
    assert_eq!(e["LockIndex"], 1);
    assert_eq!(e["Value"], json!(b64("held by one")));
    // Another session cannot take it, nor release it.
    assert!(!put(&a, &format!("lock?acquire={s2}"), "two wants it").await);
    assert!(!put(&a, &format!("lock?release={s2}"), "").await);
    assert_eq!(entry(&a, "lock").await["Session"], json!(s1));
    // The holder re-acquiring keeps the LockIndex and updates the value.
    assert!(put(&a, &format!("lock?acquire={s1}"), "still one").await);
    let e = entry(&a, "lock").await;
    assert_eq!(
        (e["LockIndex"].as_u64(), &e["Value"]),
        (Some(1), &json!(b64("still one")))
    );
    // A plain write does not need the lock and keeps the holder.
    assert!(put(&a, "lock", "plain write").await);
    assert_eq!(entry(&a, "lock").await["Session"], json!(s1));

    assert!(put(&a, &format!("lock?release={s1}"), "released").await);
    let e = entry(&a, "lock").await;
    assert!(
        e.get("Session").is_none(),
        "no Session field once released: {e}"
    );
    assert_eq!(e["LockIndex"], 1);
    assert!(put(&a, &format!("lock?acquire={s2}"), "two").await);
    let e = entry(&a, "lock").await;
    assert_eq!(
        (e["Session"].as_str(), e["LockIndex"].as_u64()),
        (Some(s2.as_str()), Some(2))
    );

    // Unknown or malformed sessions are refused with a message.
    let r = a
        .put(
            "/v1/kv/other?acquire=00000000-0000-0000-0000-000000000000",
            "x",
        )
        .await;
    assert!(r.status >= 400 && r.status < 500, "{r:?}");
    assert!(!r.text().is_empty());
    assert_eq!(a.get("/v1/kv/other").await.status, 404, "nothing written");
    // Acquire and release together conflict.
    let r = a
        .put(&format!("/v1/kv/lock?acquire={s1}&release={s1}"), "x")
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn index_headers_on_every_kv_read() {
    let a = Agent::start().await;
    assert!(put(&a, "h/a", "1").await);
    for path in [
        "/v1/kv/h/a",
        "/v1/kv/h/a?raw",
        "/v1/kv/h/?recurse",
        "/v1/kv/h/?keys",
        "/v1/kv/h/missing",
        "/v1/kv/zzz/?recurse",
    ] {
        let r = a.get(path).await;
        assert!(r.index() >= 1, "{path}");
        assert_eq!(
            r.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "{path}"
        );
        assert_eq!(
            r.header("X-Consul-LastContact").as_deref(),
            Some("0"),
            "{path}"
        );
        assert_eq!(
            r.header("X-Consul-Effective-Consistency").as_deref(),
            Some("leader"),
            "{path}"
        );
    }
}

/// Answers are shared between identical reads at one index: a lock taken or released by a
/// session must show in the very next read of the key.
#[tokio::test]
async fn repeated_reads_see_locks_come_and_go() {
    let a = Agent::start().await;
    a.get("/v1/kv/lock").await.expect_status(404);
    a.get("/v1/kv/lock").await.expect_status(404);
    assert!(put(&a, "lock", "v1").await);
    assert_eq!(entry(&a, "lock").await["Session"], Value::Null);
    assert_eq!(entry(&a, "lock").await["Value"], b64("v1"));
    let id = session(&a, json!({"Name": "holder"})).await;
    assert!(put(&a, &format!("lock?acquire={id}"), "v1").await);
    let held = entry(&a, "lock").await;
    assert_eq!(held["Session"], id.as_str(), "{held}");
    assert_eq!(held["LockIndex"], 1);
    // Destroying the session releases the lock: the entry loses its holder.
    a.put_empty(&format!("/v1/session/destroy/{id}"))
        .await
        .expect_status(200);
    let released = entry(&a, "lock").await;
    assert_eq!(released["Session"], Value::Null, "{released}");
    let info = a.get(&format!("/v1/session/info/{id}")).await;
    assert_eq!(info.body, json!([]), "{}", info.text());
}
