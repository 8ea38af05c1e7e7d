//! Client agents in a cluster of real processes: three servers and three clients on
//! loopback addresses. A service registered on one client is seen passing from another, turns
//! critical everywhere when its HTTP target fails, survives a restart of its agent, and is
//! repaired when someone removes it from the catalog behind the agent's back.

mod common;

use std::time::{Duration, Instant};

use common::StatusServer;
use common::cluster::{Cluster, NodeSpec};
use serde_json::json;

fn spec(server: bool) -> NodeSpec {
    NodeSpec {
        server,
        expect: 3,
        encrypt: None,
        extra: json!({}),
    }
}

/// Aggregate health of `service` on `node` as agent `i` sees it (None: not in the catalog).
async fn health(c: &Cluster, i: usize, service: &str, node: &str) -> Option<String> {
    let (status, entries) = c
        .get(i, &format!("/v1/health/service/{service}?stale"))
        .await?;
    if status != 200 {
        return None;
    }
    let entry = entries
        .as_array()?
        .iter()
        .find(|e| e["Node"]["Node"] == node)?
        .clone();
    let statuses: Vec<&str> = entry["Checks"]
        .as_array()?
        .iter()
        .filter_map(|c| c["Status"].as_str())
        .collect();
    Some(
        ["critical", "warning", "passing"]
            .into_iter()
            .find(|s| statuses.contains(s))
            .unwrap_or("passing")
            .to_string(),
    )
}

async fn wait_health(c: &Cluster, i: usize, node: &str, want: Option<&str>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = health(c, i, "web", node).await;
        if got.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "web on {node} as {} sees it: {got:?}, want {want:?}\n{}",
            c.servers[i].name,
            common::cluster::tail(&c.servers[i].log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_agents_register_sync_survive_restarts_and_repair_the_catalog() {
    let mut c = Cluster::empty();
    for _ in 0..3 {
        c.add(spec(true));
    }
    for _ in 0..3 {
        c.add(spec(false));
    }
    c.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await;
    let (owner, other) = (3, 5);
    let owner_name = c.servers[owner].name.clone();
    let target = StatusServer::start(200).await;

    // Register on one client; another client sees it passing.
    let def = json!({
        "Name": "web",
        "ID": "web-1",
        "Port": 8080,
        "Check": {"HTTP": target.url("/health"), "Interval": "500ms"},
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = c
            .put(owner, "/v1/agent/service/register", &def.to_string())
            .await
            .expect("register");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "register: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_health(
        &c,
        other,
        &owner_name,
        Some("passing"),
        Duration::from_secs(15),
    )
    .await;

    // The target fails: critical everywhere within the interval plus a sync.
    target.set_status(500);
    let started = Instant::now();
    for i in [0, 4, other] {
        wait_health(
            &c,
            i,
            &owner_name,
            Some("critical"),
            Duration::from_secs(10),
        )
        .await;
    }
    println!(
        "critical everywhere {:?} after the target failed",
        started.elapsed()
    );
    target.set_status(200);
    wait_health(
        &c,
        other,
        &owner_name,
        Some("passing"),
        Duration::from_secs(10),
    )
    .await;

    // The owner restarts: its service comes back from its data dir.
    c.servers[owner].kill9();
    c.servers[owner].spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, services)) = c.get(owner, "/v1/agent/services").await
            && services.get("web-1").is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service lost after restart\n{}",
            common::cluster::tail(&c.servers[owner].log())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_health(
        &c,
        other,
        &owner_name,
        Some("passing"),
        Duration::from_secs(15),
    )
    .await;

    // Removed from the catalog behind the agent's back: the agent puts it back.
    let dereg = json!({"Node": owner_name, "ServiceID": "web-1"}).to_string();
    let (status, _) = c
        .put(0, "/v1/catalog/deregister", &dereg)
        .await
        .expect("deregister");
    assert_eq!(status, 200);
    wait_health(
        &c,
        other,
        &owner_name,
        Some("passing"),
        Duration::from_secs(10),
    )
    .await;
    // A service added to its node behind its back is removed again.
    let rogue = json!({
        "Node": owner_name,
        "Address": c.servers[owner].ip,
        "Service": {"Service": "rogue", "ID": "rogue-1"},
        "SkipNodeUpdate": true,
    })
    .to_string();
    let (status, _) = c
        .put(0, "/v1/catalog/register", &rogue)
        .await
        .expect("register");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, services) = c
            .get(
                other,
                &format!("/v1/catalog/node-services/{owner_name}?stale"),
            )
            .await
            .expect("node services");
        let ids: Vec<&str> = services["Services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ID"].as_str())
            .collect();
        if !ids.contains(&"rogue-1") && ids.contains(&"web-1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rogue service not removed: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
