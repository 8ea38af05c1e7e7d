//! LAN gossip between real agent processes on loopback addresses: five agents join, a
//! SIGKILLed one is seen failed by all (and critical in the catalog), a graceful leave is seen
//! as left (and deregistered), a restarted agent rejoins, user events reach every agent, and an
//! agent with the wrong gossip key cannot join.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, NodeSpec};
use serde_json::{Value, json};

const ALIVE: u64 = 1;
const LEFT: u64 = 3;
const FAILED: u64 = 4;

fn server(encrypt: Option<&str>) -> NodeSpec {
    NodeSpec {
        server: true,
        expect: 1,
        encrypt: encrypt.map(String::from),
        extra: json!({}),
    }
}

fn client(encrypt: Option<&str>) -> NodeSpec {
    NodeSpec {
        server: false,
        expect: 0,
        encrypt: encrypt.map(String::from),
        extra: json!({}),
    }
}

/// The serfHealth status of `node` as server 0 sees it (None when the node is not there).
async fn serf_health(c: &Cluster, node: &str) -> Option<String> {
    let (status, checks) = c.get(0, &format!("/v1/health/node/{node}")).await?;
    if status != 200 {
        return None;
    }
    checks
        .as_array()?
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .and_then(|c| c["Status"].as_str().map(String::from))
}

async fn wait_serf(c: &Cluster, node: &str, want: Option<&str>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = serf_health(c, node).await;
        if got.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serfHealth of {node}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_join_fail_leave_and_rejoin() {
    let mut c = Cluster::empty();
    c.add(server(None));
    for _ in 0..4 {
        c.add(client(None));
    }
    c.wait_leader(&[0], Duration::from_secs(20)).await;
    let names: Vec<String> = c.servers.iter().map(|n| n.name.clone()).collect();
    for i in 0..5 {
        c.wait_members(i, Duration::from_secs(20), "all five alive", |m| {
            names.iter().all(|n| m.get(n) == Some(&ALIVE))
        })
        .await;
    }
    for n in &names {
        wait_serf(&c, n, Some("passing"), Duration::from_secs(10)).await;
    }

    // SIGKILL: every other agent sees the member failed; the catalog turns it critical.
    let dead = names[4].clone();
    c.servers[4].kill9();
    let started = Instant::now();
    for i in 0..4 {
        c.wait_members(i, Duration::from_secs(25), "the killed agent failed", |m| {
            m.get(&dead) == Some(&FAILED)
        })
        .await;
    }
    println!(
        "failure seen by all 4 survivors after {:?}",
        started.elapsed()
    );
    wait_serf(&c, &dead, Some("critical"), Duration::from_secs(10)).await;

    // A graceful leave: seen as left, and the node leaves the catalog.
    let leaver = names[3].clone();
    let (status, _) = c.put(3, "/v1/agent/leave", "").await.expect("leave");
    assert_eq!(status, 200);
    for i in 0..3 {
        c.wait_members(i, Duration::from_secs(15), "the leaver left", |m| {
            m.get(&leaver) == Some(&LEFT)
        })
        .await;
    }
    wait_serf(&c, &leaver, None, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = c.get(0, "/v1/catalog/nodes").await.expect("nodes");
        let present = nodes
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["Node"] == leaver.as_str()));
        if !present {
            break;
        }
        assert!(Instant::now() < deadline, "left node still in the catalog");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The killed agent restarts with the same identity and rejoins.
    c.servers[4].spawn();
    for i in [0, 1, 2, 4] {
        c.wait_members(
            i,
            Duration::from_secs(20),
            "the restarted agent alive",
            |m| m.get(&dead) == Some(&ALIVE),
        )
        .await;
    }
    wait_serf(&c, &dead, Some("passing"), Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_reach_every_agent_and_honour_node_filters() {
    let mut c = Cluster::empty();
    c.add(server(None));
    for _ in 0..3 {
        c.add(client(None));
    }
    c.wait_leader(&[0], Duration::from_secs(20)).await;
    let names: Vec<String> = c.servers.iter().map(|n| n.name.clone()).collect();
    for i in 0..4 {
        c.wait_members(i, Duration::from_secs(20), "all alive", |m| {
            names.iter().all(|n| m.get(n) == Some(&ALIVE))
        })
        .await;
    }
    let (status, body) = c
        .put(1, "/v1/event/fire/deploy", "v1.2.3")
        .await
        .expect("fire");
    assert_eq!(status, 200, "{body}");
    let fired: Value = serde_json::from_str(&body).expect("event json");
    let id = fired["ID"].as_str().expect("id").to_string();
    let only = names[2].clone();
    let (status, _) = c
        .put(1, &format!("/v1/event/fire/targeted?node={only}"), "x")
        .await
        .expect("fire");
    assert_eq!(status, 200);
    for (i, name) in names.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, events) = c.get(i, "/v1/event/list").await.expect("list");
            let list = events.as_array().cloned().unwrap_or_default();
            let got = list.iter().find(|e| e["ID"] == id.as_str());
            let targeted = list.iter().any(|e| e["Name"] == "targeted");
            if let Some(e) = got {
                assert_eq!(e["Name"], "deploy");
                assert_eq!(
                    e["Payload"]
                        .as_str()
                        .map(common::cluster::decode_b64)
                        .as_deref(),
                    Some("v1.2.3")
                );
                if i == 2 && !targeted {
                    // The targeted event may still be on its way.
                } else {
                    assert_eq!(targeted, i == 2, "node filter not honoured on {name}");
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never got the event: {list:?}",
                names[i]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_the_wrong_key_cannot_join() {
    const GOOD: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    const BAD: &str = "8yfEVb5H7Qd0b7X4u6OoLkUdRvaDt4Ecy7uxZ2p9F9E=";
    let mut c = Cluster::empty();
    c.add(server(Some(GOOD)));
    c.add(client(Some(GOOD)));
    c.add(client(Some(BAD)));
    c.wait_leader(&[0], Duration::from_secs(20)).await;
    let (good, bad) = (c.servers[1].name.clone(), c.servers[2].name.clone());
    c.wait_members(
        0,
        Duration::from_secs(15),
        "the client with the right key joined",
        |m| m.get(&good) == Some(&ALIVE),
    )
    .await;
    // Give the wrong-key agent several retry-join rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = c.members(0).await;
    assert!(!seen.contains_key(&bad), "wrong-key agent joined: {seen:?}");
    let its_view = c.members(2).await;
    assert_eq!(
        its_view.len(),
        1,
        "wrong-key agent sees others: {its_view:?}"
    );
    let log = c.servers[2].log();
    assert!(
        log.contains("key"),
        "the refused agent's log does not say why:\n{}",
        common::cluster::tail(&log)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_across_the_pool_without_downtime() {
    const OLD: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    const NEW: &str = "8yfEVb5H7Qd0b7X4u6OoLkUdRvaDt4Ecy7uxZ2p9F9E=";
    let mut c = Cluster::empty();
    c.add(server(Some(OLD)));
    c.add(client(Some(OLD)));
    c.add(client(Some(OLD)));
    c.wait_leader(&[0], Duration::from_secs(20)).await;
    let names: Vec<String> = c.servers.iter().map(|n| n.name.clone()).collect();
    for i in 0..3 {
        c.wait_members(i, Duration::from_secs(20), "all alive", |m| {
            names.iter().all(|n| m.get(n) == Some(&ALIVE))
        })
        .await;
    }
    let keyring = |c: &Cluster, i: usize| {
        let url = c.url(i, "/v1/operator/keyring");
        async move {
            let r = common::client().get(url).send().await.expect("list");
            assert_eq!(r.status().as_u16(), 200);
            let all = r.json::<Value>().await.expect("json");
            // The LAN pool's answer (a server lists its WAN pool's first), as a one-element
            // list.
            let lan = all
                .as_array()
                .and_then(|l| l.iter().find(|p| p["WAN"] == false))
                .cloned()
                .unwrap_or(Value::Null);
            json!([lan])
        }
    };
    // A server also answers for its WAN pool, with the configured key.
    let r = common::client()
        .get(c.url(0, "/v1/operator/keyring"))
        .send()
        .await
        .expect("list");
    let all: Value = r.json().await.expect("json");
    assert_eq!(all[0]["WAN"], true, "{all}");
    assert_eq!(all[0]["PrimaryKeys"][OLD], 1, "{all}");
    let op = |c: &Cluster, i: usize, method: reqwest::Method, key: &str| {
        let url = c.url(i, "/v1/operator/keyring");
        let body = json!({ "Key": key }).to_string();
        async move {
            let r = common::client()
                .request(method, url)
                .body(body)
                .send()
                .await
                .expect("keyring op");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    // Every member reports its keys: wait for the initial state.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let k = keyring(&c, 1).await;
        if k[0]["Keys"][OLD] == 3 && k[0]["PrimaryKeys"][OLD] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "initial keyring: {k}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(op(&c, 1, reqwest::Method::POST, NEW).await.0, 200);
    let k = keyring(&c, 2).await;
    assert_eq!(
        (k[0]["Keys"][NEW].clone(), k[0]["NumNodes"].clone()),
        (json!(3), json!(3)),
        "{k}"
    );
    assert_eq!(op(&c, 2, reqwest::Method::PUT, NEW).await.0, 200);
    let (status, body) = op(&c, 0, reqwest::Method::DELETE, NEW).await;
    assert_eq!(status, 400, "removing the primary key must fail: {body}");
    assert_eq!(op(&c, 0, reqwest::Method::DELETE, OLD).await.0, 200);
    let k = keyring(&c, 0).await;
    assert!(k[0]["Keys"].get(OLD).is_none(), "{k}");
    assert_eq!(k[0]["PrimaryKeys"][NEW], 3, "{k}");
    // The pool still works: a new agent with only the new key joins ...
    let late = c.add(client(Some(NEW)));
    let late_name = c.servers[late].name.clone();
    c.wait_members(
        0,
        Duration::from_secs(20),
        "the new-key agent joined",
        |m| m.get(&late_name) == Some(&ALIVE),
    )
    .await;
    // ... and a restarted agent keeps the rotated keyring from its data dir.
    c.servers[2].kill9();
    c.servers[2].spawn();
    // Its fresh process can only see the others if it joined, which needs the new key.
    let server_name = names[0].clone();
    c.wait_members(
        2,
        Duration::from_secs(25),
        "the restarted agent rejoined",
        |m| m.get(&server_name) == Some(&ALIVE) && m.len() >= 3,
    )
    .await;
}
