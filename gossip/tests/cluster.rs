//! Real sockets on 127.0.0.1 (each member binds port 0, UDP and TCP): join, failure, leave,
//! events, encryption and key rotation, and bad input. Fast timings (`Timings::local`);
//! every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use cairn_gossip::core::GossipEvent;
use cairn_gossip::envelope;
use cairn_gossip::frame::{Frame, FrameKind};
use cairn_gossip::{
    Gossip, GossipConfig, GossipError, Keyring, MemberMeta, MemberStatus, Ports, Role, Timings,
    UserEvent, keygen,
};
use tokio::sync::mpsc::Receiver;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

async fn node(name: &str, keyring: Option<Keyring>) -> (Gossip, Receiver<GossipEvent>) {
    init_logs();
    let mut cfg = GossipConfig::new(name, SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.timings = Timings::local();
    cfg.keyring = keyring;
    cfg.meta = MemberMeta {
        role: if name.ends_with('0') {
            Role::Server
        } else {
            Role::Client
        },
        datacenter: "dc1".into(),
        build: "0.1.0".into(),
        ports: Ports {
            http: 8500,
            ..Ports::default()
        },
        node_id: format!("id-{name}"),
        ..MemberMeta::default()
    };
    Gossip::start(cfg).await.expect("start")
}

/// Polls `f` every 50 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_of(g: &Gossip, name: &str) -> Option<MemberStatus> {
    g.members()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.status)
}

fn all_alive(nodes: &[Gossip], n: usize) -> bool {
    nodes.iter().all(|g| {
        let ms = g.members();
        ms.len() == n
            && ms
                .iter()
                .all(|m| m.status == MemberStatus::Alive && m.meta.datacenter == "dc1")
    })
}

async fn cluster(
    prefix: &str,
    n: usize,
    key: Option<&str>,
) -> (Vec<Gossip>, Vec<Receiver<GossipEvent>>) {
    let mut nodes = Vec::new();
    let mut rxs = Vec::new();
    for i in 0..n {
        let ring = key.map(|k| Keyring::from_base64(k, &[]).expect("key"));
        let (g, rx) = node(&format!("{prefix}-{i}"), ring).await;
        nodes.push(g);
        rxs.push(rx);
    }
    let seed = nodes[0].local_addr().to_string();
    for g in nodes.iter().skip(1) {
        assert_eq!(g.join(std::slice::from_ref(&seed)).await.expect("join"), 1);
    }
    let ok = eventually(Duration::from_secs(10), || async { all_alive(&nodes, n) }).await;
    assert!(
        ok,
        "cluster {prefix} did not converge: {:?}",
        nodes[n - 1].members()
    );
    (nodes, rxs)
}

async fn shutdown_all(nodes: &[Gossip]) {
    for g in nodes {
        g.shutdown().await;
    }
}

#[tokio::test]
async fn five_nodes_join_and_see_each_other() {
    let (nodes, mut rxs) = cluster("join", 5, None).await;
    let m = nodes[3]
        .members()
        .into_iter()
        .find(|m| m.name == "join-0")
        .expect("seed listed");
    assert_eq!(m.port, nodes[0].local_addr().port());
    assert_eq!(m.meta.role, Role::Server);
    assert_eq!(m.meta.ports.http, 8500);
    assert_eq!(m.meta.node_id, "id-join-0");
    assert_eq!(m.status.code(), 1);
    // the seed heard every joiner come up
    let mut ups = Vec::new();
    while let Ok(ev) = rxs[0].try_recv() {
        if let GossipEvent::MemberUp(m) = ev {
            ups.push(m.name);
        }
    }
    for i in 0..5 {
        assert!(ups.contains(&format!("join-{i}")), "{ups:?}");
    }
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn an_abruptly_stopped_member_is_seen_as_failed() {
    let (nodes, mut rxs) = cluster("fail", 5, None).await;
    nodes[4].shutdown().await;
    let others = &nodes[..4];
    let ok = eventually(Duration::from_secs(15), || async {
        others
            .iter()
            .all(|g| status_of(g, "fail-4") == Some(MemberStatus::Failed))
    })
    .await;
    assert!(ok, "failure not seen by all: {:?}", nodes[0].members());
    let mut failed = false;
    while let Ok(ev) = rxs[1].try_recv() {
        failed |= matches!(ev, GossipEvent::MemberFailed(m) if m.name == "fail-4");
    }
    assert!(failed);
    // a failed member can be forced out
    nodes[0]
        .force_leave("fail-4", false)
        .await
        .expect("force-leave");
    let ok = eventually(Duration::from_secs(10), || async {
        others
            .iter()
            .all(|g| status_of(g, "fail-4") == Some(MemberStatus::Left))
    })
    .await;
    assert!(ok, "force-leave not seen by all");
    // An alive member is accepted and stays alive (it would refute the intent); an unknown
    // one is an error.
    nodes[0]
        .force_leave("fail-1", false)
        .await
        .expect("alive member accepted");
    assert_eq!(status_of(&nodes[0], "fail-1"), Some(MemberStatus::Alive));
    assert!(matches!(
        nodes[0].force_leave("nobody", false).await,
        Err(GossipError::Core(_))
    ));
    shutdown_all(others).await;
}

#[tokio::test]
async fn a_leaving_member_is_seen_as_left() {
    let (nodes, mut rxs) = cluster("leave", 5, None).await;
    nodes[2].leave().await.expect("leave");
    assert_eq!(status_of(&nodes[2], "leave-2"), Some(MemberStatus::Left));
    let ok = eventually(Duration::from_secs(10), || async {
        nodes
            .iter()
            .all(|g| status_of(g, "leave-2") == Some(MemberStatus::Left))
    })
    .await;
    assert!(ok, "leave not seen by all: {:?}", nodes[0].members());
    let mut saw_failed = false;
    let mut saw_left = false;
    while let Ok(ev) = rxs[0].try_recv() {
        match ev {
            GossipEvent::MemberFailed(m) if m.name == "leave-2" => saw_failed = true,
            GossipEvent::MemberLeft(m) if m.name == "leave-2" => saw_left = true,
            _ => {}
        }
    }
    assert!(saw_left && !saw_failed);
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn user_events_reach_every_member_once() {
    let (nodes, mut rxs) = cluster("event", 5, None).await;
    let mut ev = UserEvent::new("deploy", b"v1.2.3".to_vec());
    ev.service_filter = "web".into();
    let sent = nodes[1].fire_event(ev).await.expect("fire");
    let ok = eventually(Duration::from_secs(10), || async {
        nodes
            .iter()
            .all(|g| g.events().iter().any(|e| e.id == sent.id))
    })
    .await;
    assert!(ok, "event did not reach everyone");
    for rx in &mut rxs {
        let mut count = 0;
        while let Ok(e) = rx.try_recv() {
            if matches!(&e, GossipEvent::UserEvent(u) if u.id == sent.id) {
                count += 1;
            }
        }
        assert_eq!(count, 1);
    }
    let got = nodes[4]
        .events()
        .into_iter()
        .find(|e| e.id == sent.id)
        .expect("event");
    assert_eq!(got.payload, b"v1.2.3");
    assert_eq!(got.service_filter, "web");
    assert_eq!(got.version, 1);
    // too large an event is refused up front
    let big = UserEvent::new("big", vec![0u8; 600]);
    assert!(nodes[0].fire_event(big).await.is_err());
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn metadata_changes_reach_every_member() {
    let (nodes, _rxs) = cluster("meta", 3, None).await;
    let mut meta = MemberMeta {
        datacenter: "dc1".into(),
        ..MemberMeta::default()
    };
    meta.node_meta.insert("rack".into(), "r7".into());
    nodes[1].set_meta(meta).await.expect("set meta");
    let ok = eventually(Duration::from_secs(10), || async {
        nodes.iter().all(|g| {
            g.members().iter().any(|m| {
                m.name == "meta-1" && m.meta.node_meta.get("rack").map(String::as_str) == Some("r7")
            })
        })
    })
    .await;
    assert!(ok, "metadata not updated everywhere");
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn a_member_with_another_key_cannot_join() {
    let (a, _rxa) = node(
        "key-a",
        Some(Keyring::from_base64(&keygen(), &[]).expect("key")),
    )
    .await;
    let (b, _rxb) = node(
        "key-b",
        Some(Keyring::from_base64(&keygen(), &[]).expect("key")),
    )
    .await;
    let err = b
        .join(&[a.local_addr().to_string()])
        .await
        .expect_err("join with a wrong key must fail");
    let text = err.to_string();
    assert!(text.contains("keys differ"), "{text}");
    assert!(a.stats().dropped_wrong_key >= 1);
    // a plaintext member cannot join either
    let (c, _rxc) = node("key-c", None).await;
    let err = c
        .join(&[a.local_addr().to_string()])
        .await
        .expect_err("plaintext join must fail");
    assert!(
        err.to_string().contains("requires gossip encryption"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.members().len(), 1);
    assert_eq!(b.members().len(), 1);
    assert!(a.stats().dropped_encryption_mismatch >= 1);
    for g in [a, b, c] {
        g.shutdown().await;
    }
}

#[tokio::test]
async fn keys_rotate_without_downtime() {
    let old = keygen();
    let new = keygen();
    let (nodes, mut rxs) = cluster("rot", 3, Some(&old)).await;
    let steady = |nodes: &[Gossip]| all_alive(nodes, 3);
    for g in &nodes {
        g.keyring().install(&new).expect("install");
    }
    assert!(steady(&nodes));
    for g in &nodes {
        g.keyring().use_key(&new).expect("use");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(steady(&nodes), "membership disturbed while switching keys");
    }
    for g in &nodes {
        g.keyring().remove(&old).expect("remove");
        let list = g.keyring().list().expect("list");
        assert_eq!(list.len(), 1);
        assert!(list[0].primary && list[0].key == new);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(steady(&nodes), "membership disturbed after rotation");
    for rx in &mut rxs {
        while let Ok(ev) = rx.try_recv() {
            assert!(
                !matches!(ev, GossipEvent::MemberFailed(_)),
                "failure during rotation: {ev:?}"
            );
        }
    }
    // only the new key gets in now
    let (late_old, _r1) = node(
        "rot-late-old",
        Some(Keyring::from_base64(&old, &[]).expect("key")),
    )
    .await;
    assert!(
        late_old
            .join(&[nodes[0].local_addr().to_string()])
            .await
            .is_err()
    );
    let (late_new, _r2) = node(
        "rot-late-new",
        Some(Keyring::from_base64(&new, &[]).expect("key")),
    )
    .await;
    assert_eq!(
        late_new
            .join(&[nodes[0].local_addr().to_string()])
            .await
            .expect("join with the new key"),
        1
    );
    assert!(
        nodes[0].keyring().remove(&new).is_err(),
        "the primary key cannot be removed"
    );
    late_old.shutdown().await;
    late_new.shutdown().await;
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn bad_packets_are_dropped_and_counted() {
    let (nodes, _rxs) = cluster("bad", 2, None).await;
    let target = nodes[0].local_addr();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // garbage, an unknown version, a truncated plaintext envelope, an oversized datagram
    for p in [
        vec![0xde, 0xad, 0xbe, 0xef],
        vec![7u8; 40],
        vec![0u8, 5, b'a'],
        vec![0u8; 2000],
        vec![],
    ] {
        sock.send_to(&p, target).await.expect("send");
    }
    // a well-formed envelope and frame around a bad foca message, sent twice: the second
    // copy is a replay
    let frame = Frame::encode(FrameKind::Foca, 42, 1, &[1, 2, 3]);
    let packet = envelope::plaintext("", &frame);
    sock.send_to(&packet, target).await.expect("send");
    sock.send_to(&packet, target).await.expect("send");
    let ok = eventually(Duration::from_secs(5), || async {
        let s = nodes[0].stats();
        s.dropped_oversized >= 1
            && s.dropped_replayed >= 1
            && s.dropped_truncated >= 1
            && s.dropped_malformed >= 3
    })
    .await;
    assert!(ok, "counters: {:?}", nodes[0].stats());
    // still healthy
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(all_alive(&nodes, 2));
    // a bad TCP frame (length beyond the limit) is refused too
    let mut s = tokio::net::TcpStream::connect(target)
        .await
        .expect("connect");
    use tokio::io::AsyncWriteExt;
    s.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    drop(s);
    let ok = eventually(Duration::from_secs(5), || async {
        nodes[0].stats().dropped_oversized >= 2
    })
    .await;
    assert!(ok, "counters: {:?}", nodes[0].stats());
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn a_left_member_can_join_again() {
    let (nodes, _rxs) = cluster("again", 3, None).await;
    let before = nodes[2].identity().generation();
    nodes[2].leave().await.expect("leave");
    let ok = eventually(Duration::from_secs(10), || async {
        status_of(&nodes[0], "again-2") == Some(MemberStatus::Left)
    })
    .await;
    assert!(ok);
    nodes[2]
        .join(&[nodes[0].local_addr().to_string()])
        .await
        .expect("rejoin");
    assert!(nodes[2].identity().generation() > before);
    let ok = eventually(Duration::from_secs(10), || async { all_alive(&nodes, 3) }).await;
    assert!(ok, "rejoin not seen: {:?}", nodes[0].members());
    shutdown_all(&nodes).await;
}
