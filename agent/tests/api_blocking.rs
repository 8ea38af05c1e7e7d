//! Blocking queries and read metadata end to end: the `X-Consul-*` headers on every read,
//! `index`/`wait` with Go durations, wake-ups only for what changed, consistency flags, and
//! user events with their opaque index.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{Agent, Resp, b64};
use serde_json::{Value, json};

/// A wake-up must arrive this soon after the change.
const WAKE_BOUND: Duration = Duration::from_millis(500);

async fn register_ext(a: &Agent, node: &str, service: &str, port: u16) {
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": node, "Address": "192.0.2.1",
                    "Service": {"Service": service, "Port": port}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Runs a blocking GET and, `delay` after it started, `change`. Returns the response, how
/// long the GET took, and how long after the change started the response arrived.
async fn block_then<F, Fut>(
    a: &Agent,
    path: &str,
    delay: Duration,
    change: F,
) -> (Resp, Duration, Duration)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let read = async {
        let r = a.get(path).await;
        (r, Instant::now())
    };
    let write = async {
        tokio::time::sleep(delay).await;
        let t = Instant::now();
        change().await;
        t
    };
    let ((r, done), changed_at) = tokio::join!(read, write);
    (
        r,
        done.duration_since(start),
        done.saturating_duration_since(changed_at),
    )
}

#[tokio::test]
async fn every_read_carries_consul_headers() {
    let a = Agent::start().await;
    register_ext(&a, "ext", "web", 80).await;
    assert_eq!(a.put("/v1/kv/k", "v").await.status, 200);
    let sid = a.put_empty("/v1/session/create").await.body["ID"]
        .as_str()
        .expect("session")
        .to_string();
    let paths = [
        "/v1/catalog/nodes".to_string(),
        "/v1/catalog/services".into(),
        "/v1/catalog/service/web".into(),
        "/v1/catalog/service/none".into(),
        "/v1/catalog/node/ext".into(),
        "/v1/catalog/node/none".into(),
        "/v1/catalog/node-services/ext".into(),
        "/v1/health/node/ext".into(),
        "/v1/health/checks/web".into(),
        "/v1/health/service/web".into(),
        "/v1/health/service/none".into(),
        "/v1/health/state/any".into(),
        "/v1/health/state/critical".into(),
        "/v1/kv/k".into(),
        "/v1/kv/missing".into(),
        "/v1/kv/?recurse".into(),
        "/v1/kv/?keys".into(),
        "/v1/session/list".into(),
        format!("/v1/session/info/{sid}"),
        format!("/v1/session/node/{}", a.node),
    ];
    for p in &paths {
        let r = a.get(p).await;
        assert!(r.status == 200 || r.status == 404, "{p}: {}", r.status);
        assert!(r.index() >= 1, "{p}: X-Consul-Index");
        assert_eq!(
            r.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "{p}"
        );
        let lc = r.header("X-Consul-LastContact").expect("LastContact");
        assert!(lc.parse::<u64>().is_ok(), "{p}: LastContact {lc}");
        assert_eq!(
            r.header("X-Consul-Effective-Consistency").as_deref(),
            Some("leader"),
            "{p}"
        );
    }
    // Consistency modes as Go (empty values) and Python (`=1`) send them.
    for (q, want) in [
        ("stale=", "stale"),
        ("stale", "stale"),
        ("stale=1", "stale"),
        ("consistent=", "consistent"),
        ("consistent=1", "consistent"),
        ("cached=", "leader"),
    ] {
        let r = a
            .get(&format!("/v1/catalog/services?{q}"))
            .await
            .expect_status(200);
        assert_eq!(
            r.header("X-Consul-Effective-Consistency").as_deref(),
            Some(want),
            "?{q}"
        );
    }
    let r = a.get("/v1/catalog/services?stale=&consistent=").await;
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.".to_string()
        )
    );
    for q in ["wait=10", "wait=abc", "wait=-", "wait=1x"] {
        let r = a.get(&format!("/v1/catalog/services?index=1&{q}")).await;
        assert_eq!(
            (r.status, r.text()),
            (400, "Invalid wait time".to_string()),
            "{q}"
        );
    }
    for q in ["index=abc", "index=-1", "index=1.5"] {
        let r = a.get(&format!("/v1/catalog/services?{q}")).await;
        assert_eq!(
            (r.status, r.text()),
            (400, "Invalid index".to_string()),
            "{q}"
        );
    }
    // Go and Python send these; all accepted.
    for q in [
        "wait=120000ms",
        "wait=1s",
        "wait=10s",
        "wait=5m",
        "wait=1ms",
        "wait=11m",
    ] {
        a.get(&format!("/v1/catalog/services?{q}"))
            .await
            .expect_status(200);
    }
}

#[tokio::test]
async fn blocking_timeout_returns_the_same_index() {
    let a = Agent::start().await;
    let idx = a.get("/v1/catalog/services").await.index();
    let t = Instant::now();
    let r = a
        .get(&format!("/v1/catalog/services?index={idx}&wait=1s"))
        .await
        .expect_status(200);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "returned after {took:?}"
    );
    // wait plus at most wait/16 jitter, and generous slack for a loaded machine.
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    assert_eq!(r.index(), idx);
    // Milliseconds, as the Go client writes it.
    let t = Instant::now();
    let r = a
        .get(&format!("/v1/kv/nothing?index={}&wait=300ms", r.index()))
        .await;
    assert_eq!(r.status, 404);
    assert!(t.elapsed() >= Duration::from_millis(280));
    // index=0 never blocks.
    let t = Instant::now();
    a.get("/v1/catalog/services?index=0&wait=5s")
        .await
        .expect_status(200);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn service_change_wakes_its_readers_within_milliseconds() {
    let a = Agent::start().await;
    register_ext(&a, "n1", "web", 80).await;
    register_ext(&a, "n1", "db", 5432).await;
    let idx = a.get("/v1/health/service/web").await.index();

    // A change to another service does not wake a reader of `web`.
    let path = format!("/v1/health/service/web?index={idx}&wait=1s");
    let (r, took, _) = block_then(&a, &path, Duration::from_millis(200), || async {
        register_ext(&a, "n2", "db", 5433).await;
    })
    .await;
    assert!(
        took >= Duration::from_millis(950),
        "woken by a change to another service after {took:?}"
    );
    assert_eq!(r.index(), idx);

    // A change to `web` wakes it at once, with a larger index, even with Go's long wait.
    let path = format!("/v1/health/service/web?index={idx}&wait=120000ms&stale=");
    let (r, took, after_change) = block_then(&a, &path, Duration::from_millis(300), || async {
        register_ext(&a, "n2", "web", 8080).await;
    })
    .await;
    assert!(
        took >= Duration::from_millis(250),
        "did not block: {took:?}"
    );
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the change"
    );
    assert!(r.index() > idx);
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));

    // The same for the catalog reads Prometheus and Traefik block on.
    let idx = a.get("/v1/catalog/services").await.index();
    let path = format!("/v1/catalog/services?index={idx}&wait=10s");
    let (r, _, after_change) = block_then(&a, &path, Duration::from_millis(200), || async {
        register_ext(&a, "n3", "cache", 6379).await;
    })
    .await;
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the change"
    );
    assert!(r.body.get("cache").is_some());

    // An agent-side check update wakes readers of the service's health.
    a.register_service(&json!({"Name": "api", "Check": {"TTL": "30s"}}))
        .await;
    let idx = a.get("/v1/health/service/api").await.index();
    let path = format!("/v1/health/service/api?index={idx}&wait=10s");
    let (r, _, after_change) = block_then(&a, &path, Duration::from_millis(200), || async {
        a.put_empty("/v1/agent/check/pass/service:api")
            .await
            .expect_status(200);
    })
    .await;
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the change"
    );
    let checks = r.body[0]["Checks"].as_array().expect("checks");
    let svc = checks
        .iter()
        .find(|c| c["CheckID"] == "service:api")
        .expect("service check");
    assert_eq!(svc["Status"], "passing");
}

#[tokio::test]
async fn kv_prefix_change_wakes_only_its_readers() {
    let a = Agent::start().await;
    assert_eq!(a.put("/v1/kv/app/a", "1").await.status, 200);
    assert_eq!(a.put("/v1/kv/other/a", "1").await.status, 200);
    let idx = a.get("/v1/kv/app/?recurse").await.index();

    let path = format!("/v1/kv/app/?recurse&index={idx}&wait=1s");
    let (r, took, _) = block_then(&a, &path, Duration::from_millis(200), || async {
        assert_eq!(a.put("/v1/kv/other/b", "2").await.status, 200);
    })
    .await;
    assert!(
        took >= Duration::from_millis(950),
        "woken by a write under another prefix after {took:?}"
    );
    assert_eq!(r.index(), idx);

    let path = format!("/v1/kv/app/?recurse&index={idx}&wait=10s");
    let (r, _, after_change) = block_then(&a, &path, Duration::from_millis(200), || async {
        assert_eq!(a.put("/v1/kv/app/b", "2").await.status, 200);
    })
    .await;
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the change"
    );
    assert!(r.index() > idx);
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));

    // A delete under the prefix moves its index too.
    let idx = r.index();
    let path = format!("/v1/kv/app/?keys&index={idx}&wait=10s");
    let (r, _, after_change) = block_then(&a, &path, Duration::from_millis(200), || async {
        assert_eq!(a.delete("/v1/kv/app/a").await.status, 200);
    })
    .await;
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the delete"
    );
    assert!(r.index() > idx);
    assert_eq!(r.body, json!(["app/b"]));

    // Waiting on a missing key: woken by its creation (py-consul's `kv.get` watch).
    let r = a.get("/v1/kv/later").await;
    assert_eq!(r.status, 404);
    let path = format!("/v1/kv/later?index={}&wait=10s", r.index());
    let (r, _, after_change) = block_then(&a, &path, Duration::from_millis(200), || async {
        assert_eq!(a.put("/v1/kv/later", "now").await.status, 200);
    })
    .await;
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the create"
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["Value"], json!(b64("now")));
}

/// Consul's `uuidToUint64`: the event list index is the XOR of the UUID's two halves.
fn id_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    assert_eq!(hex.len(), 32, "a UUID: {id}");
    let low = u64::from_str_radix(&hex[..16], 16).expect("hex");
    let high = u64::from_str_radix(&hex[16..], 16).expect("hex");
    low ^ high
}

#[tokio::test]
async fn events_fire_and_list_with_blocking() {
    let a = Agent::start().await;
    let r = a.get("/v1/event/list").await.expect_status(200);
    assert_eq!(r.body, json!([]));
    assert_eq!(r.index(), 1, "no events: index 1, never 0");

    // Events are delivered to agents matching their filters: this one runs `web` tagged v1.
    a.register_service(&json!({"Name": "web", "Tags": ["v1"]}))
        .await;
    let r = a
        .put("/v1/event/fire/elsewhere?service=nope", "")
        .await
        .expect_status(200);
    assert_eq!(r.body["ServiceFilter"], "nope");
    let r = a
        .put("/v1/event/fire/deploy?service=web&tag=v1", "payload-1")
        .await
        .expect_status(200);
    let ev = r.body.clone();
    for k in [
        "ID",
        "Name",
        "Payload",
        "NodeFilter",
        "ServiceFilter",
        "TagFilter",
        "Version",
        "LTime",
    ] {
        assert!(ev.get(k).is_some(), "{k} missing in {ev}");
    }
    assert_eq!(ev["Name"], "deploy");
    assert_eq!(ev["ServiceFilter"], "web");
    assert_eq!(ev["TagFilter"], "v1");
    assert_eq!(ev["Version"], 1);
    assert_eq!(ev["Payload"], json!(b64("payload-1")));
    // Spring Cloud fires with POST.
    let r = a
        .post("/v1/event/fire/restart", "")
        .await
        .expect_status(200);
    let second = r.body["ID"].as_str().expect("ID").to_string();
    assert_eq!(r.body["Payload"], Value::Null);

    let r = a.get("/v1/event/list").await.expect_status(200);
    let list = r.body.as_array().expect("events");
    let names: Vec<&str> = list
        .iter()
        .map(|e| e["Name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["deploy", "restart"]);
    assert_eq!(r.index(), id_to_index(&second));
    let r = a.get("/v1/event/list?name=deploy").await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.index(), id_to_index(ev["ID"].as_str().expect("ID")));

    // Blocking: no new event, then a new one wakes the reader.
    let idx = id_to_index(&second);
    let t = Instant::now();
    let r = a
        .get(&format!("/v1/event/list?index={idx}&wait=500ms"))
        .await;
    assert!(t.elapsed() >= Duration::from_millis(450));
    assert_eq!(r.index(), idx);
    let path = format!("/v1/event/list?index={idx}&wait=10s");
    let (r, _, after_change) = block_then(&a, &path, Duration::from_millis(200), || async {
        a.put("/v1/event/fire/third", "3").await.expect_status(200);
    })
    .await;
    assert!(
        after_change < WAKE_BOUND,
        "woken {after_change:?} after the event"
    );
    let list = r.body.as_array().expect("events");
    let last = list.last().expect("an event");
    assert_eq!(last["Name"], "third");
    assert_eq!(r.index(), id_to_index(last["ID"].as_str().expect("ID")));

    assert_eq!(a.get("/v1/event/fire/x").await.status, 405);
    // Consul's validation (`validateUserEventParams`); a 4xx here, never a 5xx.
    let r = a.put("/v1/event/fire/x?tag=v1", "").await;
    assert!(r.status >= 400 && r.status < 500, "{r:?}");
    assert!(
        r.text()
            .contains("Cannot provide tag filter without service filter"),
        "{}",
        r.text()
    );
}
