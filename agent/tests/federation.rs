//! WAN federation against real processes on loopback: two datacenters (a `-dev` server each)
//! joined through the WAN pool, then the datacenter list, WAN members, `?dc=` reads (blocking
//! too) and writes in both directions, the errors for unknown datacenters, and DNS names with a
//! datacenter, answered by the other datacenter's server.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Agent, eventually, free_port};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// A `-dev` server of datacenter `dc` with its WAN and DNS ports chosen here, optionally
/// WAN-joining `join`.
async fn server(dc: &str, wan: u16, dns: u16, join: Option<u16>) -> Agent {
    let mut b = Agent::builder()
        // dc1 answers about other datacenters with their WAN addresses.
        .config(json!({"translate_wan_addrs": dc == "dc1"}))
        .flag("-datacenter")
        .flag(dc)
        .flag("-serf-wan-port")
        .flag(&wan.to_string())
        .flag("-dns-port")
        .flag(&dns.to_string())
        // Both pools encrypted with the one configured key.
        .flag("-encrypt")
        .flag("pUqJrVyVRj5jsiYEkM/tFQ==");
    if let Some(port) = join {
        b = b.flag("-retry-join-wan").flag(&format!("127.0.0.1:{port}"));
    }
    b.start().await
}

/// One UDP question to a DNS server; the answer message.
async fn ask(dns: u16, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let packet = m.to_vec().expect("encode");
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let server = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), dns);
    // Retried: UDP may be lost, and the first remote answer can take a round trip more.
    for _ in 0..10 {
        sock.send_to(&packet, server).await.expect("send");
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
        {
            return Message::from_vec(&buf[..n]).expect("decode answer");
        }
    }
    panic!("no DNS answer for {name}");
}

#[tokio::test]
async fn two_datacenters_federate_over_the_wan_pool() {
    let (wan1, wan2, dns1, dns2) = (free_port(), free_port(), free_port(), free_port());
    let dc1 = server("dc1", wan1, dns1, None).await;
    let dc2 = server("dc2", wan2, dns2, Some(wan1)).await;

    // Both learn both datacenters, their own first.
    for (agent, want) in [(&dc1, ["dc1", "dc2"]), (&dc2, ["dc2", "dc1"])] {
        eventually("datacenters listed", Duration::from_secs(20), || async {
            let v: Value = agent.get("/v1/catalog/datacenters").await.body;
            (v == json!(want)).then_some(())
        })
        .await;
    }
    // WAN members are the servers, named `<node>.<dc>`; a LAN listing does not show them.
    let wan: Value = dc1.get("/v1/agent/members?wan=1").await.body;
    let mut names: Vec<String> = wan
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    let mut want = vec![format!("{}.dc1", dc1.node), format!("{}.dc2", dc2.node)];
    want.sort();
    assert_eq!(names, want);
    for m in wan.as_array().expect("members") {
        assert_eq!(m["Tags"]["role"], "consul", "{m}");
    }

    // A write for dc2 sent to dc1 lands in dc2 only.
    dc1.put("/v1/kv/app/greeting?dc=dc2", "hello")
        .await
        .expect_status(200);
    let r = dc2.get("/v1/kv/app/greeting?raw").await.expect_status(200);
    assert_eq!(r.text(), "hello");
    dc1.get("/v1/kv/app/greeting").await.expect_status(404);
    // Reads for dc2 through dc1, with dc2's index.
    let r = dc1
        .get("/v1/kv/app/greeting?dc=dc2")
        .await
        .expect_status(200);
    let index = r.index();
    assert_eq!(r.header("x-consul-knownleader").as_deref(), Some("true"));
    let local = dc2.get("/v1/kv/app/greeting").await;
    assert_eq!(local.index(), index, "the remote datacenter's index");

    // A blocking read through dc1 wakes on dc2's write.
    let blocked = {
        let client = dc1.client().clone();
        let url = dc1.url(&format!(
            "/v1/kv/app/greeting?dc=dc2&raw&index={index}&wait=20s"
        ));
        tokio::spawn(async move {
            client
                .get(url)
                .send()
                .await
                .expect("blocking read")
                .text()
                .await
                .expect("body")
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    dc2.put("/v1/kv/app/greeting", "changed")
        .await
        .expect_status(200);
    let woke = tokio::time::timeout(Duration::from_secs(15), blocked)
        .await
        .expect("the blocking read returns")
        .expect("task");
    assert_eq!(woke, "changed");

    // A service registered in dc2 is seen from dc1 with dc2's name on its node.
    dc2.register_service(&json!({"Name": "web", "Port": 8080, "Tags": ["v1"]}))
        .await;
    let entries: Value = eventually("web in dc2 via dc1", Duration::from_secs(10), || async {
        let v: Value = dc1.get("/v1/health/service/web?dc=dc2").await.body;
        (v.as_array().is_some_and(|a| a.len() == 1)).then_some(v)
    })
    .await;
    assert_eq!(entries[0]["Node"]["Node"], dc2.node.as_str());
    assert_eq!(entries[0]["Node"]["Datacenter"], "dc2");
    let services: Value = dc1.get("/v1/catalog/services?dc=dc2").await.body;
    assert_eq!(services["web"], json!(["v1"]));
    let local: Value = dc1.get("/v1/catalog/services").await.body;
    assert!(
        local.get("web").is_none(),
        "dc1's own catalog has no web: {local}"
    );

    // A prepared query stored in dc1 fails over to dc2, where the instances are; with
    // `NearestN` too. Without a failover the answer stays dc1's empty one.
    for (name, failover) in [
        ("by-list", json!({"Datacenters": ["nowhere", "dc2"]})),
        ("by-nearest", json!({"NearestN": 1})),
        ("none", json!({})),
    ] {
        let r = dc1
            .post(
                "/v1/query",
                json!({"Name": name, "Service": {"Service": "web", "Failover": failover}})
                    .to_string(),
            )
            .await
            .expect_status(200);
        assert!(r.body["ID"].is_string(), "{r:?}");
        let v: Value = dc1
            .get(&format!("/v1/query/{name}/execute"))
            .await
            .expect_status(200)
            .body;
        let nodes = v["Nodes"].as_array().expect("nodes").len();
        match name {
            "none" => {
                assert_eq!(
                    (nodes, &v["Datacenter"], &v["Failovers"]),
                    (0, &json!("dc1"), &json!(0)),
                    "{v}"
                );
            }
            // The unknown datacenter counts as tried, as Consul counts it.
            "by-list" => {
                assert_eq!(
                    (nodes, &v["Datacenter"], &v["Failovers"]),
                    (1, &json!("dc2"), &json!(2)),
                    "{v}"
                );
            }
            _ => {
                assert_eq!(
                    (nodes, &v["Datacenter"], &v["Failovers"]),
                    (1, &json!("dc2"), &json!(1)),
                    "{v}"
                );
            }
        }
    }

    // An event fired for dc2 through dc1 is delivered in dc2.
    let r = dc1
        .put("/v1/event/fire/deploy?dc=dc2", "v2")
        .await
        .expect_status(200);
    let id = r.body["ID"].as_str().expect("event ID").to_string();
    eventually("the event in dc2", Duration::from_secs(10), || async {
        let v: Value = dc2.get("/v1/event/list?name=deploy").await.body;
        v.as_array()
            .is_some_and(|a| a.iter().any(|e| e["ID"] == id.as_str()))
            .then_some(())
    })
    .await;

    // Status, Raft configuration, transactions and session renewals for dc2 through dc1.
    let leader2: Value = dc2.get("/v1/status/leader").await.body;
    let leader_via1: Value = dc1
        .get("/v1/status/leader?dc=dc2")
        .await
        .expect_status(200)
        .body;
    assert_eq!(leader_via1, leader2);
    assert_ne!(leader_via1, dc1.get("/v1/status/leader").await.body);
    let peers: Value = dc1.get("/v1/status/peers?dc=dc2").await.body;
    assert_eq!(peers, json!([leader2]));
    let raft: Value = dc1
        .get("/v1/operator/raft/configuration?dc=dc2")
        .await
        .expect_status(200)
        .body;
    assert_eq!(raft["Servers"][0]["Node"], dc2.node.as_str(), "{raft}");
    let r = dc1
        .put_json(
            "/v1/txn?dc=dc2",
            &json!([{"KV": {"Verb": "set", "Key": "txn-key", "Value": "eA=="}}]),
        )
        .await
        .expect_status(200);
    assert_eq!(r.body["Errors"], Value::Null, "{r:?}");
    dc2.get("/v1/kv/txn-key").await.expect_status(200);
    let sid = dc2
        .put("/v1/session/create", r#"{"TTL": "30s"}"#)
        .await
        .body["ID"]
        .as_str()
        .expect("session")
        .to_string();
    let renewed: Value = dc1
        .put_empty(&format!("/v1/session/renew/{sid}?dc=dc2"))
        .await
        .expect_status(200)
        .body;
    assert_eq!(renewed[0]["ID"], sid.as_str());
    dc1.put_empty(&format!("/v1/session/renew/{sid}"))
        .await
        .expect_status(404);

    // translate_wan_addrs (on in dc1): answers about dc2 carry WAN addresses; dc2's own
    // answers, and dc1's about itself, do not.
    dc2.put_json(
        "/v1/catalog/register",
        &json!({"Node": "ext", "Address": "127.0.0.50",
                "TaggedAddresses": {"lan": "127.0.0.50", "wan": "127.0.0.99"},
                "Service": {"Service": "ext", "Address": "127.0.0.51", "Port": 80,
                            "TaggedAddresses": {"wan": {"Address": "127.0.0.98", "Port": 9999}}}}),
    )
    .await
    .expect_status(200);
    let r = dc1
        .get("/v1/health/service/ext?dc=dc2")
        .await
        .expect_status(200);
    assert_eq!(
        r.header("x-consul-translate-addresses").as_deref(),
        Some("true")
    );
    assert_eq!(r.body[0]["Node"]["Address"], "127.0.0.99", "{:?}", r.body);
    assert_eq!(
        r.body[0]["Service"]["Address"], "127.0.0.98",
        "{:?}",
        r.body
    );
    assert_eq!(r.body[0]["Service"]["Port"], 9999, "{:?}", r.body);
    let r = dc1.get("/v1/catalog/service/ext?dc=dc2").await.body;
    assert_eq!(
        (&r[0]["Address"], &r[0]["ServiceAddress"]),
        (&json!("127.0.0.99"), &json!("127.0.0.98"))
    );
    let own = dc2.get("/v1/health/service/ext").await;
    assert_eq!(own.body[0]["Node"]["Address"], "127.0.0.50");
    assert_eq!(own.header("x-consul-translate-addresses"), None);

    // Usage: `?dc=` answers for dc2 under its name; `?global` for both.
    let u: Value = dc1
        .get("/v1/operator/usage?dc=dc2")
        .await
        .expect_status(200)
        .body;
    let keys: Vec<&String> = u["Usage"].as_object().expect("usage").keys().collect();
    assert_eq!(keys, vec!["dc2"], "{u}");
    let u: Value = dc1
        .get("/v1/operator/usage?global")
        .await
        .expect_status(200)
        .body;
    let keys: Vec<&String> = u["Usage"].as_object().expect("usage").keys().collect();
    assert_eq!(keys, vec!["dc1", "dc2"], "{u}");
    assert!(u["Usage"]["dc2"]["Services"].as_u64() >= Some(2), "{u}");

    // Unknown datacenters: Consul's error, at once.
    let r = dc1
        .get("/v1/kv/app/greeting?dc=nowhere")
        .await
        .expect_status(500);
    assert_eq!(r.text(), "No path to datacenter");
    let r = dc1
        .put("/v1/kv/app/greeting?dc=nowhere", "x")
        .await
        .expect_status(500);
    assert_eq!(r.text(), "No path to datacenter");

    // DNS: dc1's server answers dc2's names through a dc2 server; unknown datacenters stay
    // NXDOMAIN.
    let m = ask(dns1, "web.service.dc2.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    let ips: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    assert_eq!(ips, vec![IpAddr::from([127, 0, 0, 1])], "{m:?}");
    let m = ask(dns1, "v1.web.service.dc2.consul.", RecordType::SRV).await;
    assert_eq!(m.answers.len(), 1, "{m:?}");
    let m = ask(
        dns1,
        &format!("{}.node.dc2.consul.", dc2.node),
        RecordType::A,
    )
    .await;
    assert_eq!(m.answers.len(), 1, "{m:?}");
    let m = ask(dns1, "web.service.nowhere.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    let m = ask(dns1, "web.service.consul.", RecordType::A).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "dc1 has no web: {m:?}"
    );
    // dc2 answers its own name with its datacenter spelled out too.
    let m = ask(dns2, "web.service.dc2.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1, "{m:?}");

    // dc2 goes away (killed, not left): requests for it fail in bounded time, with Consul's
    // texts, and dc1's own requests are unaffected.
    drop(dc2);
    let text = eventually("dc2 seen unreachable", Duration::from_secs(60), || async {
        let started = std::time::Instant::now();
        let r = dc1.get("/v1/kv/app/greeting?dc=dc2").await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a read for a dead datacenter took {:?}",
            started.elapsed()
        );
        (r.status == 500
            && r.text()
                .contains("Remote DC has no server currently reachable"))
        .then(|| r.text())
    })
    .await;
    assert_eq!(text, "Remote DC has no server currently reachable");
    dc1.get("/v1/catalog/services").await.expect_status(200);
}
