//! `/v1/acl/*` and `/v1/agent/token/*`: bootstrap, tokens, policies, roles, templated
//! policies, and the agent's own tokens, in Consul's shapes and texts.
//!
//! With ACLs disabled every one of these answers as a Consul agent with ACLs disabled does:
//! 401 "ACL support disabled", which clients and the Consul CLI report as such.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use cairn_catalog::acl::{AclPolicy, AclRole, AclToken};
use serde_json::{Value, json};
use sha2::Digest;

use super::error::ApiError;
use super::{AppState, Req, json_response, serve_read};
use crate::acl::{Access, builtin};
use crate::api::acl::{PolicySpec, RoleSpec, TokenFilter, TokenSpec};
use crate::api::decode::decode;
use crate::api::{Read, Token, Write, WriteOp, Written};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/acl/bootstrap", put(bootstrap).post(bootstrap))
        .route("/v1/acl/token", put(token_create))
        .route("/v1/acl/token/self", get(token_self))
        .route(
            "/v1/acl/token/{id}",
            get(token_read).put(token_update).delete(token_delete),
        )
        .route("/v1/acl/token/{id}/clone", put(token_clone))
        .route("/v1/acl/tokens", get(token_list))
        .route("/v1/acl/policy", put(policy_create))
        .route("/v1/acl/policy/name/{name}", get(policy_by_name))
        .route(
            "/v1/acl/policy/{id}",
            get(policy_read).put(policy_update).delete(policy_delete),
        )
        .route("/v1/acl/policies", get(policy_list))
        .route("/v1/acl/role", put(role_create))
        .route("/v1/acl/role/name/{name}", get(role_by_name))
        .route(
            "/v1/acl/role/{id}",
            get(role_read).put(role_update).delete(role_delete),
        )
        .route("/v1/acl/roles", get(role_list))
        .route("/v1/acl/templated-policies", get(templated_list))
        .route("/v1/acl/templated-policy/name/{*name}", get(templated_read))
        .route(
            "/v1/acl/templated-policy/preview/{*name}",
            post(templated_preview),
        )
        .route("/v1/acl/replication", get(replication))
        .route("/v1/acl/{*rest}", any(unknown))
        .route("/v1/agent/token/{kind}", put(agent_token))
}

/// Consul's `ErrDisabled`, with the 401 that Consul answers it with.
pub fn disabled() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "ACL support disabled")
}

fn enabled(a: &AppState) -> Result<(), ApiError> {
    if a.acl_enabled() {
        Ok(())
    } else {
        Err(disabled())
    }
}

async fn unknown(State(a): State<AppState>) -> ApiError {
    if !a.acl_enabled() {
        return disabled();
    }
    ApiError::not_found("404 page not found")
}

/// Go's `time.Time` JSON form.
fn time(ms: u64) -> Value {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let nanos = u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0);
    match chrono::DateTime::<chrono::Utc>::from_timestamp(secs, nanos) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => Value::Null,
    }
}

/// A token in Consul's shape; empty link lists are left out, as Consul's `omitempty`.
pub fn token_json(t: &AclToken) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("AccessorID".into(), json!(t.accessor_id));
    m.insert("SecretID".into(), json!(t.secret_id));
    m.insert("Description".into(), json!(t.description));
    put_links(
        &mut m,
        Links {
            policies: &t.policies,
            roles: &t.roles,
            services: &t.service_identities,
            nodes: &t.node_identities,
            templated: &t.templated_policies,
        },
    );
    m.insert("Local".into(), json!(t.local));
    if !t.auth_method.is_empty() {
        m.insert("AuthMethod".into(), json!(t.auth_method));
    }
    if let Some(e) = t.expiration_ms {
        m.insert("ExpirationTime".into(), time(e));
    }
    m.insert("CreateTime".into(), time(t.create_time_ms));
    m.insert("Hash".into(), json!(t.hash));
    m.insert("CreateIndex".into(), json!(t.create_index));
    m.insert("ModifyIndex".into(), json!(t.modify_index));
    Value::Object(m)
}

/// What tokens and roles link to, rendered the same way for both.
struct Links<'a> {
    policies: &'a [cairn_catalog::acl::AclLink],
    roles: &'a [cairn_catalog::acl::AclLink],
    services: &'a [cairn_catalog::acl::AclServiceIdentity],
    nodes: &'a [cairn_catalog::acl::AclNodeIdentity],
    templated: &'a [cairn_catalog::acl::AclTemplatedPolicy],
}

/// Adds the non-empty link lists (Consul's `omitempty`).
fn put_links(m: &mut serde_json::Map<String, Value>, l: Links<'_>) {
    let ids = |ls: &[cairn_catalog::acl::AclLink]| {
        Value::Array(
            ls.iter()
                .map(|l| json!({"ID": l.id, "Name": l.name}))
                .collect(),
        )
    };
    if !l.policies.is_empty() {
        m.insert("Policies".into(), ids(l.policies));
    }
    if !l.roles.is_empty() {
        m.insert("Roles".into(), ids(l.roles));
    }
    if !l.services.is_empty() {
        m.insert("ServiceIdentities".into(), service_identities(l.services));
    }
    if !l.nodes.is_empty() {
        m.insert(
            "NodeIdentities".into(),
            Value::Array(
                l.nodes
                    .iter()
                    .map(|n| json!({"NodeName": n.node_name, "Datacenter": n.datacenter}))
                    .collect(),
            ),
        );
    }
    if !l.templated.is_empty() {
        m.insert("TemplatedPolicies".into(), templated(l.templated));
    }
}

fn service_identities(ids: &[cairn_catalog::acl::AclServiceIdentity]) -> Value {
    Value::Array(
        ids.iter()
            .map(|s| {
                let mut o = json!({"ServiceName": s.service_name});
                if !s.datacenters.is_empty() {
                    o["Datacenters"] = json!(s.datacenters);
                }
                o
            })
            .collect(),
    )
}

fn templated(ts: &[cairn_catalog::acl::AclTemplatedPolicy]) -> Value {
    Value::Array(
        ts.iter()
            .map(|t| {
                let mut o = json!({"TemplateName": t.template_name});
                if !t.name.is_empty() {
                    o["TemplateVariables"] = json!({"name": t.name});
                }
                if !t.datacenters.is_empty() {
                    o["Datacenters"] = json!(t.datacenters);
                }
                o
            })
            .collect(),
    )
}

/// A policy in Consul's shape (`rules`: the list stub leaves them out).
pub fn policy_json(p: &AclPolicy, rules: bool) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("ID".into(), json!(p.id));
    m.insert("Name".into(), json!(p.name));
    m.insert("Description".into(), json!(p.description));
    if rules {
        m.insert("Rules".into(), json!(p.rules));
    }
    if !p.datacenters.is_empty() {
        m.insert("Datacenters".into(), json!(p.datacenters));
    }
    m.insert("Hash".into(), json!(p.hash));
    m.insert("CreateIndex".into(), json!(p.create_index));
    m.insert("ModifyIndex".into(), json!(p.modify_index));
    Value::Object(m)
}

/// A role in Consul's shape.
pub fn role_json(r: &AclRole) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("ID".into(), json!(r.id));
    m.insert("Name".into(), json!(r.name));
    m.insert("Description".into(), json!(r.description));
    put_links(
        &mut m,
        Links {
            policies: &r.policies,
            roles: &[],
            services: &r.service_identities,
            nodes: &r.node_identities,
            templated: &r.templated_policies,
        },
    );
    m.insert("Hash".into(), json!(r.hash));
    m.insert("CreateIndex".into(), json!(r.create_index));
    m.insert("ModifyIndex".into(), json!(r.modify_index));
    Value::Object(m)
}

/// Decodes a body with the area's error prefix (`Token decoding failed: ...`).
fn body<T: serde::de::DeserializeOwned + Default>(b: &[u8], what: &str) -> Result<T, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode(b).map_err(|e| {
        let text = e.to_string();
        let text = text
            .strip_prefix("Request decode failed: ")
            .unwrap_or(&text);
        ApiError::bad_request(format!("{what} decoding failed: {text}"))
    })
}

async fn write(a: &AppState, op: WriteOp, dc: Option<&str>) -> Result<Written, ApiError> {
    let w = Write::new(op).in_dc(dc).with_token(super::request_token());
    Ok(a.backend.write(w).await?.1)
}

fn written_response(w: Written, pretty: bool) -> Result<Response, ApiError> {
    let v = match w {
        Written::AclToken(t) => token_json(&t),
        Written::AclPolicy(p) => policy_json(&p, true),
        Written::AclRole(r) => role_json(&r),
        Written::Bool(b) => json!(b),
        Written::Done => json!(true),
        other => {
            return Err(ApiError::internal(format!(
                "unexpected answer to an ACL write: {other:?}"
            )));
        }
    };
    Ok(json_response(&v, pretty))
}

/// `PUT /v1/acl/bootstrap`: the management token, with the legacy `ID` (its secret) beside.
async fn bootstrap(
    State(a): State<AppState>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        bootstrap_secret: String,
    }
    let req: Body = body(&b, "Bootstrap")?;
    let secret = (!req.bootstrap_secret.is_empty()).then_some(Token(req.bootstrap_secret));
    let w = write(&a, WriteOp::AclBootstrap { secret }, o.dc.as_deref()).await?;
    let Written::AclToken(t) = w else {
        return Err(ApiError::internal("bootstrap answered no token"));
    };
    let mut v = token_json(&t);
    v["ID"] = json!(t.secret_id);
    Ok(json_response(&v, o.pretty))
}

async fn token_create(
    State(a): State<AppState>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: TokenSpec = body(&b, "Token")?;
    let w = write(
        &a,
        WriteOp::AclTokenSet {
            spec,
            accessor: None,
        },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn token_update(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: TokenSpec = body(&b, "Token")?;
    let w = write(
        &a,
        WriteOp::AclTokenSet {
            spec,
            accessor: Some(id),
        },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn token_clone(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: TokenSpec = body(&b, "Token")?;
    let w = write(
        &a,
        WriteOp::AclTokenClone {
            accessor: id,
            description: spec.description,
        },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn token_delete(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let w = write(
        &a,
        WriteOp::AclTokenDelete { accessor: id },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn token_read(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { p, o }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    if !p.has("expanded") {
        return serve_read(&a, Read::AclToken { accessor: id }, &o).await;
    }
    // `?expanded`: the token with everything it links to, as Consul's `ACLTokenExpanded`.
    let (meta, answer) = super::run_read(&a, Read::AclToken { accessor: id }, &o).await?;
    let crate::api::Reply::AclTokens(ts) = &answer.reply else {
        return Err(crate::api::read::unexpected("AclTokens", &answer.reply).into());
    };
    let Some(t) = ts.first() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "token does not exist: ACL not found",
        ));
    };
    let mut roles = Vec::new();
    let mut policy_ids: Vec<String> = t.policies.iter().map(|l| l.id.clone()).collect();
    for l in &t.roles {
        let read = Read::AclRole {
            id: Some(l.id.clone()),
            name: None,
        };
        if let Ok((_, r)) = super::run_read(&a, read, &o).await
            && let crate::api::Reply::AclRoles(rs) = &r.reply
            && let Some(role) = rs.first()
        {
            policy_ids.extend(role.policies.iter().map(|l| l.id.clone()));
            roles.push(role_json(role));
        }
    }
    policy_ids.dedup();
    let mut policies = Vec::new();
    for id in policy_ids {
        let read = Read::AclPolicy {
            id: Some(id),
            name: None,
        };
        if let Ok((_, r)) = super::run_read(&a, read, &o).await
            && let crate::api::Reply::AclPolicies(ps) = &r.reply
            && let Some(pol) = ps.first()
        {
            policies.push(policy_json(pol, true));
        }
    }
    let c = a.config();
    let v = json!({
        "AgentACLDefaultPolicy": c.acl.default_policy,
        "AgentACLDownPolicy": c.acl.down_policy,
        "ExpandedPolicies": policies,
        "ExpandedRoles": roles,
        "NamespaceDefaultPolicyIDs": null,
        "NamespaceDefaultRoleIDs": null,
        "ResolvedByAgent": a.node.name,
    });
    // Consul embeds the token's own fields at the top level of the expanded answer.
    let mut out = token_json(t);
    if let (Value::Object(o2), Value::Object(extra)) = (&mut out, v) {
        o2.extend(extra);
    }
    let mut resp = json_response(&out, o.pretty);
    super::set_meta(resp.headers_mut(), &meta);
    Ok(resp)
}

async fn token_self(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    enabled(&a)?;
    serve_read(&a, Read::AclTokenSelf, &o).await
}

async fn token_list(State(a): State<AppState>, Req { p, o }: Req) -> Result<Response, ApiError> {
    enabled(&a)?;
    let f = TokenFilter {
        policy: p
            .get("policy")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        role: p.get("role").filter(|s| !s.is_empty()).map(str::to_string),
        service_name: p
            .get("servicename")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        auth_method: p
            .get("authmethod")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    serve_read(&a, Read::AclTokens(f), &o).await
}

async fn policy_create(
    State(a): State<AppState>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: PolicySpec = body(&b, "Policy")?;
    let w = write(
        &a,
        WriteOp::AclPolicySet { spec, id: None },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn policy_update(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: PolicySpec = body(&b, "Policy")?;
    let w = write(
        &a,
        WriteOp::AclPolicySet { spec, id: Some(id) },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn policy_delete(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let w = write(&a, WriteOp::AclPolicyDelete { id }, o.dc.as_deref()).await?;
    written_response(w, o.pretty)
}

async fn policy_read(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    serve_read(
        &a,
        Read::AclPolicy {
            id: Some(id),
            name: None,
        },
        &o,
    )
    .await
}

async fn policy_by_name(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    serve_read(
        &a,
        Read::AclPolicy {
            id: None,
            name: Some(name),
        },
        &o,
    )
    .await
}

async fn policy_list(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    enabled(&a)?;
    serve_read(&a, Read::AclPolicies, &o).await
}

async fn role_create(
    State(a): State<AppState>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: RoleSpec = body(&b, "Role")?;
    let w = write(&a, WriteOp::AclRoleSet { spec, id: None }, o.dc.as_deref()).await?;
    written_response(w, o.pretty)
}

async fn role_update(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let spec: RoleSpec = body(&b, "Role")?;
    let w = write(
        &a,
        WriteOp::AclRoleSet { spec, id: Some(id) },
        o.dc.as_deref(),
    )
    .await?;
    written_response(w, o.pretty)
}

async fn role_delete(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    let w = write(&a, WriteOp::AclRoleDelete { id }, o.dc.as_deref()).await?;
    written_response(w, o.pretty)
}

async fn role_read(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    serve_read(
        &a,
        Read::AclRole {
            id: Some(id),
            name: None,
        },
        &o,
    )
    .await
}

async fn role_by_name(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    serve_read(
        &a,
        Read::AclRole {
            id: None,
            name: Some(name),
        },
        &o,
    )
    .await
}

async fn role_list(State(a): State<AppState>, Req { p, o }: Req) -> Result<Response, ApiError> {
    enabled(&a)?;
    let policy = p
        .get("policy")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    serve_read(&a, Read::AclRoles { policy }, &o).await
}

fn template_json(t: &builtin::Template) -> Value {
    let schema = if t.needs_name {
        "{\n    \"type\": \"object\",\n    \"properties\": {\n        \"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }\n    },\n    \"required\": [\"name\"],\n    \"definitions\": {\n        \"min-length-one\": {\n                \"type\": \"string\",\n                \"minLength\": 1\n        }\n    }\n}"
    } else {
        ""
    };
    json!({
        "TemplateName": t.name,
        "Schema": schema,
        "Template": t.template,
        "Description": t.description,
    })
}

async fn templated_list(
    State(a): State<AppState>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    a.authorize().await?.require(crate::acl::Access::AclRead)?;
    let m: serde_json::Map<String, Value> = builtin::TEMPLATES
        .iter()
        .map(|t| (t.name.to_string(), template_json(t)))
        .collect();
    Ok(json_response(&Value::Object(m), o.pretty))
}

async fn templated_read(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    a.authorize().await?.require(crate::acl::Access::AclRead)?;
    let t = builtin::template(&name)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid templated policy Name: {name}")))?;
    Ok(json_response(&template_json(t), o.pretty))
}

async fn templated_preview(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { o, .. }: Req,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    a.authorize().await?.require(crate::acl::Access::AclRead)?;
    let t = builtin::template(&name)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid templated policy Name: {name}")))?;
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Vars {
        name: String,
    }
    let vars: Vars = body(&b, "Templated policy")?;
    if t.needs_name && vars.name.is_empty() {
        return Err(ApiError::bad_request(
            "Failed to validate templated policy variables: name is required",
        ));
    }
    let rules = builtin::render_template(t, &vars.name);
    // Named after a digest of the rules, so one rendering always previews under one ID.
    let digest = sha2::Sha256::digest(rules.as_bytes());
    let tail: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("00000000-0000-0000-0000-{tail}");
    let v = json!({
        "ID": id,
        "Name": format!("synthetic-policy-{}", &id[24..]),
        "Description": "synthetic policy generated from templated policy: ".to_string() + t.name,
        "Rules": rules,
        "Hash": "",
        "CreateIndex": 0,
        "ModifyIndex": 0,
    });
    Ok(json_response(&v, o.pretty))
}

/// `GET /v1/acl/replication`: a single datacenter is its own primary, so nothing replicates.
async fn replication(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    enabled(&a)?;
    let zero = "0001-01-01T00:00:00Z";
    let v = json!({
        "Enabled": false,
        "Running": false,
        "SourceDatacenter": a.backend.datacenter(),
        "ReplicationType": "",
        "ReplicatedIndex": 0,
        "ReplicatedRoleIndex": 0,
        "ReplicatedTokenIndex": 0,
        "LastSuccess": zero,
        "LastError": zero,
        "LastErrorMessage": "",
    });
    Ok(json_response(&v, o.pretty))
}

/// `PUT /v1/agent/token/:kind`: replaces one of the agent's own tokens (in memory, and in the
/// data directory with `acl.enable_token_persistence`).
async fn agent_token(
    State(a): State<AppState>,
    Path(kind): Path<String>,
    b: Bytes,
) -> Result<Response, ApiError> {
    enabled(&a)?;
    a.authorize()
        .await?
        .require(crate::acl::Access::AgentWrite(&a.node.name))?;
    let Some(kind) = crate::acl::tokens::canonical(&kind) else {
        return Err(ApiError::not_found(format!("Token {kind:?} is unknown")));
    };
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        token: String,
    }
    let req: Body = body(&b, "Token")?;
    a.tokens.set(kind, &req.token);
    if a.config().acl.enable_token_persistence
        && let Err(e) = a.tokens.persist()
    {
        tracing::warn!(error = %e, "could not persist the agent's ACL tokens");
    }
    Ok(StatusCode::OK.into_response())
}

/// The permission an agent-local endpoint needs, by method and path: the endpoints that the
/// agent answers itself, without a server endpoint that checks for it. Endpoints whose
/// permission depends on the body (service and check registration) or that filter their
/// answers check in their handlers; everything that reaches a server is checked there.
pub fn required<'a>(method: &Method, path: &'a str, node: &'a str) -> Option<Access<'a>> {
    let get = method == Method::GET || method == Method::HEAD;
    Some(match path {
        "/v1/agent/self" | "/v1/agent/metrics" | "/v1/agent/monitor" => Access::AgentRead(node),
        "/v1/agent/leave" | "/v1/agent/reload" => Access::AgentWrite(node),
        "/v1/agent/maintenance" => Access::NodeWrite(node),
        "/v1/agent/host" => Access::OperatorRead,
        "/v1/operator/keyring" if get => Access::KeyringRead,
        "/v1/operator/keyring" => Access::KeyringWrite,
        "/v1/operator/raft/configuration"
        | "/v1/operator/autopilot/health"
        | "/v1/operator/autopilot/state" => Access::OperatorRead,
        "/v1/operator/raft/peer" | "/v1/operator/raft/transfer-leader" => Access::OperatorWrite,
        // Snapshots hold every secret: `acl:write`, as Consul asks.
        "/v1/snapshot" => Access::AclWrite,
        p if p.starts_with("/v1/agent/join/") => Access::AgentWrite(node),
        p if p.starts_with("/v1/agent/force-leave/") => Access::OperatorWrite,
        p if p.starts_with("/v1/event/fire/") => Access::EventWrite(&p["/v1/event/fire/".len()..]),
        _ => return None,
    })
}

/// Checks [`required`] before the handler runs (ACLs enabled only).
pub async fn guard(
    State(a): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !a.acl_enabled() {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let node = a.node.name.clone();
    if let Some(access) = required(req.method(), &path, &node) {
        let authz = match a.authorize().await {
            Ok(z) => z,
            Err(e) => return e.into_response(),
        };
        if !authz.allows(access) {
            // Event fires answer Consul's legacy plain text.
            let text = if matches!(access, Access::EventWrite(_)) {
                "Permission denied".to_string()
            } else {
                authz.denial(access)
            };
            return ApiError::new(StatusCode::FORBIDDEN, text).into_response();
        }
    }
    next.run(req).await
}
