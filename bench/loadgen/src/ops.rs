//! The operations the load generator sends, built with the same key and value sizes for Cairn and
//! for etcd.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::ValueEnum;
use hyper::Method;
use serde_json::json;

use crate::conn::{Req, Resp};

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// Cairn `PUT /v1/kv/<key>` with the value as the body.
    CairnKvPut,
    /// Cairn `GET /v1/kv/<key>?<query>`.
    CairnKvGet,
    /// Cairn `PUT /v1/catalog/register` (node + one service instance).
    CairnRegister,
    /// Cairn `PUT /v1/agent/service/register` on an agent (500 instances re-registered in turn
    /// with a changing port; the agent answers once anti-entropy wrote it to the catalog).
    CairnAgentRegister,
    /// Cairn `GET /v1/health/service/<service>?<query>`.
    CairnHealth,
    /// Cairn `PUT /v1/txn` with `--batch` KV sets.
    CairnTxnPut,
    /// etcd `POST /v3/kv/put`.
    EtcdPut,
    /// etcd `POST /v3/kv/put` whose value is the JSON body Cairn's register gets.
    EtcdPutRegister,
    /// etcd `POST /v3/kv/range` (`--serializable` for serializable reads).
    EtcdRange,
    /// etcd `POST /v3/kv/txn` with `--batch` puts.
    EtcdTxnPut,
    /// `GET <path>` (the bare axum baseline).
    Get,
}

/// Parameters shared by every request of a run.
#[derive(Clone, Debug)]
pub struct OpParams {
    pub op: Op,
    /// Keys are `<prefix><index>` with the index zero-padded to 6 digits (8-byte keys with "b/").
    pub prefix: String,
    pub value: String,
    pub query: String,
    pub service: String,
    pub services: u64,
    pub nodes: u64,
    pub serializable: bool,
    pub batch: u64,
    pub path: String,
}

/// The value sent by writes: `size` printable bytes.
pub fn value_of(size: usize) -> String {
    (0..size)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

pub fn key(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:06}")
}

fn register_body(p: &OpParams, i: u64) -> String {
    let service = if p.service.is_empty() {
        format!("svc-{}", i % p.services.max(1))
    } else {
        p.service.clone()
    };
    json!({
        "Node": format!("node-{}", i % p.nodes.max(1)),
        "Address": "127.0.0.1",
        "Service": {
            "Service": service,
            "ID": format!("{service}-{i}"),
            "Port": 8080 + (i % 1000),
            "Tags": ["bench"],
        },
    })
    .to_string()
}

impl OpParams {
    /// The request for key (or item) number `i`.
    pub fn request(&self, i: u64) -> Req {
        let q = |path: String| {
            if self.query.is_empty() {
                path
            } else {
                format!("{path}?{}", self.query)
            }
        };
        match self.op {
            Op::CairnKvPut => Req::with(
                Method::PUT,
                format!("/v1/kv/{}", key(&self.prefix, i)),
                self.value.clone(),
            ),
            Op::CairnKvGet => Req::get(q(format!("/v1/kv/{}", key(&self.prefix, i)))),
            Op::CairnRegister => {
                Req::with(Method::PUT, "/v1/catalog/register", register_body(self, i))
            }
            Op::CairnAgentRegister => {
                let service = if self.service.is_empty() {
                    "bench-agent".to_string()
                } else {
                    self.service.clone()
                };
                Req::with(
                    Method::PUT,
                    "/v1/agent/service/register",
                    json!({
                        "Name": service,
                        // 500 instances, each re-registered with a new port: an agent holds a
                        // realistic number of services and every request changes the catalog.
                        "ID": format!("{service}-{}", key(&self.prefix, i % 500)),
                        "Port": 8080 + (i % 1000),
                        "Tags": ["bench"],
                    })
                    .to_string(),
                )
            }
            Op::CairnHealth => Req::get(q(format!("/v1/health/service/{}", self.service))),
            Op::CairnTxnPut => {
                let ops: Vec<_> = (i * self.batch..(i + 1) * self.batch)
                    .map(|k| {
                        json!({"KV": {"Verb": "set", "Key": key(&self.prefix, k),
                                      "Value": B64.encode(&self.value)}})
                    })
                    .collect();
                Req::with(Method::PUT, "/v1/txn", json!(ops).to_string())
            }
            Op::EtcdPut => Req::with(
                Method::POST,
                "/v3/kv/put",
                json!({"key": B64.encode(key(&self.prefix, i)), "value": B64.encode(&self.value)})
                    .to_string(),
            ),
            Op::EtcdPutRegister => Req::with(
                Method::POST,
                "/v3/kv/put",
                json!({"key": B64.encode(key(&self.prefix, i)),
                       "value": B64.encode(register_body(self, i))})
                .to_string(),
            ),
            Op::EtcdRange => Req::with(
                Method::POST,
                "/v3/kv/range",
                json!({"key": B64.encode(key(&self.prefix, i)), "serializable": self.serializable})
                    .to_string(),
            ),
            Op::EtcdTxnPut => {
                let ops: Vec<_> = (i * self.batch..(i + 1) * self.batch)
                    .map(|k| {
                        json!({"request_put": {"key": B64.encode(key(&self.prefix, k)),
                                               "value": B64.encode(&self.value)}})
                    })
                    .collect();
                Req::with(
                    Method::POST,
                    "/v3/kv/txn",
                    json!({"success": ops}).to_string(),
                )
            }
            Op::Get => Req::get(self.path.clone()),
        }
    }

    /// Whether a response counts as a success.
    pub fn ok(&self, r: &Resp) -> bool {
        if r.status != 200 {
            return false;
        }
        match self.op {
            Op::CairnKvPut => r.body.as_ref() == b"true",
            // A read of a key that is absent counts as an error: the harness fills the keys first.
            Op::EtcdRange => r.body.windows(5).any(|w| w == b"\"kvs\""),
            _ => true,
        }
    }
}
