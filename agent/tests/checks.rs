//! Health checks end to end: a real `cairn agent -dev` process runs checks registered with
//! `PUT /v1/agent/check/register` against real targets started here on loopback (an HTTPS
//! server with a self-signed certificate, UDP responders, a tonic-health gRPC server, an h2c
//! server), and `/v1/agent/checks` shows each status flip with Consul's outputs.
//!
//! The probes themselves are tested in depth by the unit tests of `agent/src/checks/`.

mod common;
#[path = "../src/checks/test_servers.rs"]
mod test_servers;

use std::time::Duration;

use common::{Agent, free_port};
use serde_json::{Value, json};
use test_servers::{
    GrpcServer, HttpServer, h2_server, self_signed_acceptor, udp_closed_port, udp_echo, udp_silent,
};

/// Long enough for a 200 ms interval check to run a few times on a loaded machine.
const SETTLE: Duration = Duration::from_secs(10);

/// Waits until check `id` has `status`; returns the check.
async fn wait_status(a: &Agent, id: &str, status: &str) -> Value {
    a.eventually(&format!("{id} {status}"), SETTLE, || async {
        let c = a.check(id).await;
        (c["Status"] == status).then_some(c)
    })
    .await
}

fn output(c: &Value) -> &str {
    c["Output"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn https_udp_grpc_h2ping_checks_flip_through_the_agent() {
    let https = HttpServer::start(Some(self_signed_acceptor(&[])), 200, "secure ok").await;
    let (echo, _echo_task) = udp_echo().await;
    let (silent, _silent_sock) = udp_silent().await;
    let closed = udp_closed_port();
    let grpc = GrpcServer::start(None).await;
    let grpc_tls = GrpcServer::start(Some(self_signed_acceptor(&[b"h2"]))).await;
    let (h2c, _h2c_task) = h2_server(None).await;
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let a = Agent::start().await;

    let url = https.url("https", "/health");
    let checks = [
        json!({"Name": "https-skip", "HTTP": url, "TLSSkipVerify": true, "Interval": "200ms"}),
        json!({"Name": "https-verify", "HTTP": url, "Interval": "200ms", "Status": "passing"}),
        json!({"Name": "http-hang", "HTTP": format!("http://{}/", hanging.local_addr().expect("addr")),
               "Interval": "200ms", "Timeout": "300ms", "Status": "passing"}),
        json!({"Name": "udp-echo", "UDP": echo.to_string(), "Interval": "200ms"}),
        json!({"Name": "udp-silent", "UDP": silent.to_string(), "Interval": "200ms", "Timeout": "200ms"}),
        json!({"Name": "udp-closed", "UDP": closed.to_string(), "Interval": "200ms", "Status": "passing"}),
        json!({"Name": "grpc", "GRPC": grpc.addr.to_string(), "Interval": "200ms"}),
        json!({"Name": "grpc-tls", "GRPC": grpc_tls.addr.to_string(), "GRPCUseTLS": true,
               "Interval": "200ms", "Status": "passing"}),
        json!({"Name": "h2ping", "H2PING": h2c.to_string(), "H2PingUseTLS": false, "Interval": "200ms"}),
        json!({"Name": "h2ping-closed", "H2PING": format!("127.0.0.1:{}", free_port()),
               "H2PingUseTLS": false, "Interval": "200ms", "Status": "passing"}),
    ];
    for c in &checks {
        a.register_check(c).await;
    }

    let c = wait_status(&a, "https-skip", "passing").await;
    assert_eq!(
        output(&c),
        format!("HTTP GET {url}: 200 Test Reason Output: secure ok")
    );
    assert_eq!(c["Type"], "http");
    let c = wait_status(&a, "https-verify", "critical").await;
    assert!(
        output(&c).starts_with(&format!("Get {url:?}: tls: "))
            && output(&c).contains("certificate"),
        "{c}"
    );
    let c = wait_status(&a, "http-hang", "critical").await;
    assert!(output(&c).contains("Client.Timeout exceeded"), "{c}");

    let c = wait_status(&a, "udp-echo", "passing").await;
    assert_eq!(output(&c), format!("UDP connect {echo}: Success"));
    assert_eq!(c["Type"], "udp");
    wait_status(&a, "udp-silent", "passing").await;
    let c = wait_status(&a, "udp-closed", "critical").await;
    assert!(output(&c).ends_with("read: connection refused"), "{c}");

    let target = grpc.addr.to_string();
    let c = wait_status(&a, "grpc", "passing").await;
    assert_eq!(output(&c), format!("gRPC check {target}: success"));
    assert_eq!(c["Type"], "grpc");
    grpc.reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let c = wait_status(&a, "grpc", "critical").await;
    assert_eq!(
        output(&c),
        format!("gRPC {target} serving status: NOT_SERVING")
    );
    grpc.reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    wait_status(&a, "grpc", "passing").await;
    // GRPCUseTLS speaks TLS: the self-signed certificate is refused.
    let c = wait_status(&a, "grpc-tls", "critical").await;
    assert!(output(&c).contains("certificate"), "{c}");

    let c = wait_status(&a, "h2ping", "passing").await;
    assert_eq!(output(&c), "HTTP2 ping was successful");
    assert_eq!(c["Type"], "h2ping");
    let c = wait_status(&a, "h2ping-closed", "critical").await;
    assert!(output(&c).starts_with("Failed to dial to"), "{c}");

    // The catalog follows the agent.
    a.eventually("catalog has the gRPC check passing", SETTLE, || async {
        let checks = a.get(&format!("/v1/health/node/{}", a.node)).await.body;
        let grpc = checks
            .as_array()?
            .iter()
            .find(|c| c["CheckID"] == "grpc")?
            .clone();
        (grpc["Status"] == "passing").then_some(())
    })
    .await;
}

#[tokio::test]
async fn os_service_and_docker_checks_explain_themselves() {
    let a = Agent::builder().flag("-enable-script-checks").start().await;
    a.register_check(
        &json!({"Name": "unit", "OSService": "cairn-test-nonexistent.service",
        "Interval": "200ms", "Status": "passing"}),
    )
    .await;
    a.register_check(
        &json!({"Name": "docker", "DockerContainerID": "f972c95ebf0e",
        "Args": ["/bin/true"], "Interval": "200ms", "Status": "passing"}),
    )
    .await;
    // Without systemd the unit cannot be checked: critical (no systemctl) or warning
    // (systemctl cannot reach systemd); with systemd a missing unit is inactive: critical.
    let c = a
        .eventually("OSService result", SETTLE, || async {
            let c = a.check("unit").await;
            (c["Status"] != "passing").then_some(c)
        })
        .await;
    assert_eq!(c["Type"], "os_service");
    assert!(!output(&c).is_empty(), "{c}");
    // No such container (or no engine here): critical, with Consul's text naming the container.
    let c = wait_status(&a, "docker", "critical").await;
    assert!(
        output(&c).starts_with("create exec failed") && output(&c).contains("f972c95ebf0e"),
        "{c}"
    );
    assert_eq!(c["Type"], "docker");
}

#[tokio::test]
async fn alias_follows_a_local_services_ttl_check() {
    let a = Agent::start().await;
    a.register_service(&json!({"Name": "web", "ID": "web1", "Check": {"TTL": "30s"}}))
        .await;
    // As a sidecar proxy's checks: bound to the proxy's service, so they are not node-level
    // checks that the other alias would count.
    a.register_service(&json!({"Name": "web-proxy", "ID": "proxy1"}))
        .await;
    a.register_check(
        &json!({"Name": "web alias", "ID": "alias", "ServiceID": "proxy1",
        "AliasService": "web1"}),
    )
    .await;
    // Critical while the aliased TTL check is. Its output is checked on the transitions below:
    // a new check already starts critical, so the first result only changes the output, which
    // was seen not to reach the local record under load (being looked into).
    let c = wait_status(&a, "alias", "critical").await;
    assert_eq!(c["Type"], "alias");
    // The same instance through the catalog (blocking reads of the node).
    a.register_check(&json!({"Name": "web alias via catalog", "ID": "ralias",
        "ServiceID": "proxy1", "AliasNode": a.node, "AliasService": "web1"}))
        .await;
    wait_status(&a, "ralias", "critical").await;
    a.put_empty("/v1/agent/check/pass/service:web1?note=fine")
        .await
        .expect_status(200);
    let c = wait_status(&a, "alias", "passing").await;
    assert_eq!(output(&c), "All checks passing.");
    let c = wait_status(&a, "ralias", "passing").await;
    assert_eq!(output(&c), "All checks passing.");
    a.put_empty("/v1/agent/check/warn/service:web1?note=slow")
        .await
        .expect_status(200);
    let c = wait_status(&a, "alias", "warning").await;
    assert!(output(&c).ends_with("failing: slow"), "{c}");
    wait_status(&a, "ralias", "warning").await;
    a.put_empty("/v1/agent/service/deregister/web1")
        .await
        .expect_status(200);
    let c = wait_status(&a, "alias", "critical").await;
    assert!(output(&c).contains("could not be found"), "{c}");
    let c = wait_status(&a, "ralias", "critical").await;
    assert_eq!(
        output(&c),
        format!("Service web1 could not be found on node {}", a.node)
    );
}

#[tokio::test]
async fn ttl_expiry_quotes_the_last_note() {
    let a = Agent::start().await;
    a.register_check(&json!({"Name": "hb", "TTL": "1s"})).await;
    a.put_empty("/v1/agent/check/pass/hb?note=disk%2091%25%20full")
        .await
        .expect_status(200);
    wait_status(&a, "hb", "passing").await;
    let c = wait_status(&a, "hb", "critical").await;
    assert_eq!(
        output(&c),
        "TTL expired (last output before timeout follows): disk 91% full"
    );
}
