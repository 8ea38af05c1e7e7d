//! `/v1/agent/*`: the local agent's services, checks, maintenance, membership, self
//! description, metrics and lifecycle.
//!
//! These endpoints answer from this agent, not from the catalog: the services and checks it
//! owns (`crate::local`), its gossip view and its configuration. That is Consul's model: an
//! agent is the authority for its own registrations, and anti-entropy copies them into the
//! catalog. So a registration here answers once the local state has changed and a catalog
//! sync was attempted (bounded in time, see `Agent::register_service`); it works without a
//! leader, and the catalog catches up later.
//!
//! No answer here carries `X-Consul-Index`: there is no Raft index for local state. The one
//! blocking endpoint, `GET /v1/agent/service/:id`, blocks on a content hash instead.
//!
//! Where Consul's handler checks something itself before calling the agent (a 404 for an
//! unknown ID, the order of its 400s), the handler here does the same check first, so that
//! the status and text are Consul's even where `Agent`'s own methods are more lenient.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use cairn_catalog::filter::Filter;
use cairn_catalog::model::{HealthCheck, HealthStatus, Service};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::params::{Params, QueryOptions, parse_bool};
use super::{AppState, json_response};
use crate::acl::Access;
use crate::api::decode::decode;
use crate::local::defs::{CheckDef, ServiceDef};
use crate::local::{LocalState, NODE_MAINT_ID, SERVICE_MAINT_PREFIX};
use crate::metrics;

use crate::CONSUL_COMPAT_VERSION;

/// Routes of this area. IDs are matched with `{*id}` (the rest of the path) because service
/// and check IDs may contain `/`, as Consul takes everything after the prefix.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/version", get(version))
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/service/register", put(service_register))
        .route(
            "/v1/agent/service/deregister/{*id}",
            put(service_deregister),
        )
        .route(
            "/v1/agent/service/maintenance/{*id}",
            put(service_maintenance),
        )
        .route("/v1/agent/service/{*id}", get(service_get))
        .route("/v1/agent/health/service/id/{*id}", get(health_by_id))
        .route("/v1/agent/health/service/name/{*name}", get(health_by_name))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/check/register", put(check_register))
        .route("/v1/agent/check/deregister/{*id}", put(check_deregister))
        .route("/v1/agent/check/pass/{*id}", put(check_pass))
        .route("/v1/agent/check/warn/{*id}", put(check_warn))
        .route("/v1/agent/check/fail/{*id}", put(check_fail))
        .route("/v1/agent/check/update/{*id}", put(check_update))
        .route("/v1/agent/maintenance", put(node_maintenance))
        .route("/v1/agent/join/{*addr}", put(join))
        .route("/v1/agent/leave", put(leave))
        .route("/v1/agent/force-leave/{*node}", put(force_leave))
        .route("/v1/agent/reload", put(reload))
        .route("/v1/agent/metrics", get(metrics_endpoint))
}

/// A local service as `/v1/agent/services` shows it: Consul's `AgentService`, which is not the
/// catalog's shape (no node fields, `Service` for the name). `TaggedAddresses` and `Kind` are
/// left out when empty, as Consul's `omitempty` does; `Datacenter` is this agent's, as Consul
/// fills it in for the answer. Also the `?filter` schema of the agent's service endpoints.
pub fn agent_service_json(s: &Service, dc: &str) -> Value {
    let mut v = json!({
        "ID": s.id,
        "Service": s.service,
        "Tags": s.tags,
        "Meta": s.meta,
        "Port": s.port,
        "Address": s.address,
        "Weights": s.weights,
        "EnableTagOverride": s.enable_tag_override,
        "Datacenter": dc,
    });
    if !s.tagged_addresses.is_empty() {
        v["TaggedAddresses"] = json!(s.tagged_addresses);
    }
    if !s.kind.is_empty() {
        v["Kind"] = json!(s.kind);
    }
    v
}

/// A local check in Consul's `HealthCheck` shape (the same record the catalog stores).
fn check_json(c: &HealthCheck) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// Parses `?filter` and checks it against `schema`, a record of the answer's shape. The check
/// runs before anything is filtered, so a misspelt selector is a 400 even when there is
/// nothing to filter; the text is Consul's.
fn compile_filter(expr: Option<&str>, schema: Value) -> Result<Option<Filter>, ApiError> {
    let Some(expr) = expr else { return Ok(None) };
    let f = Filter::parse(expr).map_err(|e| {
        ApiError::bad_request(format!(
            "Failed to create boolean expression evaluator: {e}"
        ))
    })?;
    f.validate(&schema).map_err(|e| {
        ApiError::bad_request(format!(
            "Failed to create boolean expression evaluator: {e}"
        ))
    })?;
    Ok(Some(f))
}

/// Whether `v` passes the filter (no filter: everything does). An error here comes from the
/// data (a value the selector's type cannot take) and is a 400, as Consul's.
fn keep(f: Option<&Filter>, v: &Value) -> Result<bool, ApiError> {
    match f {
        None => Ok(true),
        Some(f) => f
            .matches(v)
            .map_err(|e| ApiError::bad_request(format!("Failed to apply filter: {e}"))),
    }
}

/// The agent's local state, locked. A poisoned lock is taken anyway: the state is plain data,
/// and refusing every later request would be worse than reading what a panic left. Handlers
/// copy out what they need and drop the guard before any `.await`.
fn local(agent: &AppState) -> std::sync::MutexGuard<'_, LocalState> {
    agent.local.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /v1/agent/services`: this agent's services keyed by ID (`?filter` applies to each).
/// Not blocking, as in Consul.
async fn services(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let o = QueryOptions::from_params(&p)?;
    let dc = a.backend.datacenter().to_string();
    let f = compile_filter(
        o.read.filter.as_deref(),
        agent_service_json(&Service::default(), ""),
    )?;
    let authz = a.authorize().await?;
    let mut out = serde_json::Map::new();
    for (id, s) in &local(&a).services {
        if !authz.allows(Access::ServiceRead(&s.service.service)) {
            continue;
        }
        let v = agent_service_json(&s.service, &dc);
        if keep(f.as_ref(), &v)? {
            out.insert(id.clone(), v);
        }
    }
    Ok(json_response(&out, o.pretty))
}

/// The `ContentHash` of an answer: a hash of its JSON text. `DefaultHasher::new()` has fixed
/// keys, so equal content hashes equally for as long as this binary runs; a hash that stops
/// matching (after an upgrade) only costs the client one immediate answer.
fn content_hash(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// `GET /v1/agent/service/:id`: one local service, with Consul's hash-based blocking. With
/// `?hash` equal to the current `ContentHash`, the request waits (`?wait`, plus jitter) for a
/// local change that alters the answer; otherwise, or at the deadline, it answers at once.
/// The hash is in the body and in `X-Consul-ContentHash`, where Go's client reads it.
async fn service_get(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let o = QueryOptions::from_params(&p)?;
    let dc = a.backend.datacenter().to_string();
    let name = local(&a)
        .services
        .get(&id)
        .map(|s| s.service.service.clone());
    if let Some(name) = name {
        a.authorize().await?.require(Access::ServiceRead(&name))?;
    }
    // With jitter, as for index-based blocking: many clients waiting with the same `?wait`
    // do not all come back at the same moment.
    let deadline = tokio::time::Instant::now() + o.read.wait_with_jitter();
    loop {
        // Registered before the state is read: a change landing between the read and the
        // wait still wakes this request (`notify_waiters` only wakes registered waiters).
        let changed = a.local_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let v = {
            let l = local(&a);
            l.services
                .get(&id)
                .map(|s| agent_service_json(&s.service, &dc))
        };
        // Consul's text for this endpoint, which differs from the deregister/maintenance one.
        // A service removed while a request waits answers 404 too.
        let Some(mut v) = v else {
            return Err(ApiError::not_found(format!("unknown service ID: {id}")));
        };
        let hash = content_hash(&v);
        let unchanged = o.hash.as_deref() == Some(hash.as_str());
        if !unchanged || tokio::time::Instant::now() >= deadline {
            v["ContentHash"] = json!(hash);
            let mut resp = json_response(&v, o.pretty);
            if let Ok(h) = HeaderValue::from_str(&hash) {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-consul-contenthash"), h);
            }
            return Ok(resp);
        }
        // Any local change wakes every waiter; the loop re-hashes, so a change to another
        // service just goes back to waiting.
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// `PUT /v1/agent/service/register`: adds or replaces a service (and its checks) on this
/// agent. The body is a service definition, decoded case-insensitively as Consul's
/// (py-consul sends lowercase and snake_case keys). `?replace-existing-checks` drops the
/// service's checks that the new definition no longer has (never its maintenance check).
/// Answers an empty 200, as Consul.
async fn service_register(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    // Parsed as a Go boolean; a value that is not one is a 400 rather than a silent "no".
    let replace = p.flag("replace-existing-checks")?;
    let def: ServiceDef = decode(&body)?;
    let authz = a.authorize().await?;
    authz.require(Access::ServiceWrite(&def.name))?;
    let id = if def.id.is_empty() {
        def.name.clone()
    } else {
        def.id.clone()
    };
    // Replacing an instance of another service needs write on that one too.
    let existing = local(&a)
        .services
        .get(&id)
        .map(|s| s.service.service.clone());
    if let Some(old) = existing {
        authz.require(Access::ServiceWrite(&old))?;
    }
    // The token the service syncs with: its own, else the request's.
    let token = if def.token.is_empty() {
        super::request_token().map(|t| t.0).unwrap_or_default()
    } else {
        def.token.clone()
    };
    // Recorded before the registration, whose first sync already carries it.
    let previous = a.service_token(&id);
    a.set_service_token(&id, &token);
    if let Err(e) = a.register_service(def, replace).await {
        a.set_service_token(&id, previous.as_deref().unwrap_or_default());
        return Err(e.into());
    }
    Ok(StatusCode::OK.into_response())
}

/// `service:read` on a service, for the agent's health endpoints.
async fn read_allowed(a: &AppState, name: &str) -> Result<(), ApiError> {
    a.authorize().await?.require(Access::ServiceRead(name))?;
    Ok(())
}

/// A check's write permission: `service:write` on its service, else `node:write` on this node.
async fn check_write(a: &AppState, service: Option<&str>) -> Result<(), ApiError> {
    let authz = a.authorize().await?;
    match service {
        Some(s) => authz.require(Access::ServiceWrite(s))?,
        None => authz.require(Access::NodeWrite(&a.node.name))?,
    }
    Ok(())
}

/// The permission to update a check's status (unknown checks are left to the update's own
/// error).
async fn check_update_allowed(a: &AppState, id: &str) -> Result<(), ApiError> {
    let service = local(a)
        .checks
        .get(id)
        .map(|c| c.check.service_name.clone());
    match service {
        Some(s) if !s.is_empty() => check_write(a, Some(&s)).await,
        Some(_) => check_write(a, None).await,
        None => Ok(()),
    }
}

/// Consul's 404 for a service ID the agent does not know (`vetServiceUpdateWithAuthorizer`).
fn unknown_service(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

/// Consul's 404 for a check ID the agent does not know (`vetCheckUpdateWithAuthorizer`).
fn unknown_check(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

/// `PUT /v1/agent/service/deregister/:id`: removes a service and its checks. Consul vets the
/// ID first, so an unknown one is a 404 here, although `Agent::deregister_service` itself
/// treats it as a no-op.
async fn service_deregister(
    State(a): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(name) = local(&a)
        .services
        .get(&id)
        .map(|s| s.service.service.clone())
    else {
        return Err(unknown_service(&id));
    };
    a.authorize().await?.require(Access::ServiceWrite(&name))?;
    a.deregister_service(&id).await;
    Ok(StatusCode::OK.into_response())
}

/// The required `?enable` of the maintenance endpoints, with Consul's two texts. Not a presence
/// flag: Consul parses the value with `ParseBool`, so a bare `?enable` is a 400, not "true".
fn enable_param(p: &Params) -> Result<bool, ApiError> {
    match p.get("enable") {
        None => Err(ApiError::bad_request("Missing value for enable")),
        Some(v) => parse_bool(v)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value for enable: {v:?}"))),
    }
}

/// `PUT /v1/agent/service/maintenance/:id?enable=..&reason=..`: puts a service in or out of
/// maintenance, a critical `_service_maintenance:<id>` check whose notes are the reason
/// (Consul's default sentence when none is given). Critical means the instance drops out of
/// DNS and `?passing` until maintenance ends. Checks in Consul's order: `enable`, then the ID.
async fn service_maintenance(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let enable = enable_param(&p)?;
    let Some(name) = local(&a)
        .services
        .get(&id)
        .map(|s| s.service.service.clone())
    else {
        return Err(unknown_service(&id));
    };
    a.authorize().await?.require(Access::ServiceWrite(&name))?;
    // Empty means "no reason given": the local state then writes Consul's default notes.
    let reason = p.get("reason").unwrap_or_default().to_string();
    a.set_maintenance(Some(&id), enable, &reason).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/maintenance?enable=..&reason=..`: the same for the whole node, with a
/// `_node_maintenance` check; since node checks count for every service on the node, all of
/// this agent's instances become critical.
async fn node_maintenance(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let enable = enable_param(&p)?;
    let reason = p.get("reason").unwrap_or_default().to_string();
    a.set_maintenance(None, enable, &reason).await?;
    Ok(StatusCode::OK.into_response())
}

/// Consul's aggregation for agent health endpoints: maintenance, then critical, warning,
/// passing. (Go's `HealthChecks.AggregatedStatus`: a maintenance check outranks everything,
/// even though it is itself critical; no checks at all is passing.)
fn aggregate(checks: &[&HealthCheck]) -> &'static str {
    if checks
        .iter()
        .any(|c| c.check_id == NODE_MAINT_ID || c.check_id.starts_with(SERVICE_MAINT_PREFIX))
    {
        return "maintenance";
    }
    HealthStatus::worst(checks.iter().map(|c| c.status)).as_str()
}

/// The status code for an aggregated status, as Consul's `agentHealthService`: load balancers
/// probe these endpoints and act on the code alone, so warning gets its own (429) and
/// everything not passing or warning, maintenance included, is 503.
fn health_code(status: &str) -> StatusCode {
    match status {
        "passing" => StatusCode::OK,
        "warning" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Consul's `returnTextPlain`: `Accept: text/plain...` or `?format=text`. The text answer is
/// the bare status word, for probes that compare the body.
fn wants_text(p: &Params, headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
        || p.get("format") == Some("text")
}

/// One local service's health: its aggregated status and Consul's `AgentServiceChecksInfo`.
/// The node's own checks (empty `ServiceID`) count too, as Consul's
/// `ChecksForService(id, true)`: a node in maintenance takes every service down with it.
fn service_health(l: &LocalState, id: &str, dc: &str) -> Option<(&'static str, Value)> {
    let s = l.services.get(id)?;
    let checks: Vec<&HealthCheck> = l
        .checks
        .values()
        .filter(|c| c.check.service_id == id || c.check.service_id.is_empty())
        .map(|c| &c.check)
        .collect();
    let status = aggregate(&checks);
    let v = json!({
        "AggregatedStatus": status,
        "Service": agent_service_json(&s.service, dc),
        "Checks": checks.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
    });
    Some((status, v))
}

/// An agent health answer: Consul's status code, the reason in `X-Consul-Reason`, and the
/// body as text or JSON.
///
/// The body goes with every code, 429 and 503 included, as Consul sends it. The reason is the
/// status word, or the not-found text.
fn health_response(
    code: StatusCode,
    reason: &str,
    text: bool,
    body: &Value,
    pretty: bool,
) -> Response {
    let mut r = if text {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            reason.to_string(),
        )
            .into_response()
    } else {
        json_response(body, pretty)
    };
    *r.status_mut() = code;
    if let Ok(v) = HeaderValue::from_str(reason) {
        r.headers_mut()
            .insert(HeaderName::from_static("x-consul-reason"), v);
    }
    r
}

/// `GET /v1/agent/health/service/id/:id`: one instance's health. An unknown ID is a 404 whose
/// JSON body still has Consul's shape (`AggregatedStatus: critical`, `Service` and `Checks`
/// null), as Consul's.
async fn health_by_id(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = Params::parse(q.as_deref());
    let dc = a.backend.datacenter().to_string();
    let name = local(&a)
        .services
        .get(&id)
        .map(|s| s.service.service.clone());
    if let Some(name) = name
        && let Err(e) = read_allowed(&a, &name).await
    {
        return e.into_response();
    }
    // Only `?pretty` and `?format` are read: no other option applies here, so a malformed one
    // is ignored rather than refused.
    let found = service_health(&local(&a), &id, &dc);
    let text = wants_text(&p, &headers);
    match found {
        None => health_response(
            StatusCode::NOT_FOUND,
            &format!("ServiceId {id} not found"),
            text,
            &json!({"AggregatedStatus": "critical", "Service": null, "Checks": null}),
            p.has("pretty"),
        ),
        Some((status, v)) => {
            health_response(health_code(status), status, text, &v, p.has("pretty"))
        }
    }
}

/// `GET /v1/agent/health/service/name/:name`: every local instance of a service, as a list,
/// with the code of the worst one; 404 (and an empty list) when this agent has none.
async fn health_by_name(
    State(a): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = Params::parse(q.as_deref());
    let dc = a.backend.datacenter().to_string();
    if let Err(e) = read_allowed(&a, &name).await {
        return e.into_response();
    }
    let results: Vec<(&'static str, Value)> = {
        let l = local(&a);
        // Names compare exactly, case included.
        l.services
            .values()
            .filter(|s| s.service.service == name)
            .filter_map(|s| service_health(&l, &s.service.id, &dc))
            .collect()
    };
    let text = wants_text(&p, &headers);
    // The worst instance decides: passing (200) < warning (429) < critical/maintenance (503).
    let worst = results
        .iter()
        .map(|(s, _)| *s)
        .max_by_key(|s| health_code(s).as_u16());
    let (code, reason) = match worst {
        None => (
            StatusCode::NOT_FOUND,
            format!("ServiceName {name} Not Found"),
        ),
        Some(s) => (health_code(s), s.to_string()),
    };
    let list: Vec<Value> = results.into_iter().map(|(_, v)| v).collect();
    health_response(code, &reason, text, &json!(list), p.has("pretty"))
}

/// `GET /v1/agent/checks`: this agent's checks keyed by check ID, maintenance checks included
/// (`?filter` applies to each). Not blocking, as in Consul.
async fn checks(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let o = QueryOptions::from_params(&p)?;
    let f = compile_filter(
        o.read.filter.as_deref(),
        check_json(&HealthCheck::default()),
    )?;
    let authz = a.authorize().await?;
    let mut out = serde_json::Map::new();
    for (id, c) in &local(&a).checks {
        let visible = if c.check.service_name.is_empty() {
            authz.allows(Access::NodeRead(&c.check.node))
        } else {
            authz.allows(Access::ServiceRead(&c.check.service_name))
        };
        if !visible {
            continue;
        }
        let v = check_json(&c.check);
        if keep(f.as_ref(), &v)? {
            out.insert(id.clone(), v);
        }
    }
    Ok(json_response(&out, o.pretty))
}

/// `PUT /v1/agent/check/register`: adds a check to this agent, bound to a local service when
/// it names one. A check without an ID takes its name as ID, as in Consul.
async fn check_register(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let def: CheckDef = decode(&body)?;
    // Consul's checks and texts, in its order, before the definition itself is validated
    // (a name, a known status, then the service it names).
    if def.name.is_empty() {
        return Err(ApiError::bad_request("Missing check name"));
    }
    if !def.status.is_empty() && HealthStatus::parse(&def.status).is_none() {
        return Err(ApiError::bad_request("Bad check status"));
    }
    // A 404 in Consul's handler; `Agent::register_check` would call it invalid (400).
    let service = if def.service_id.is_empty() {
        None
    } else {
        match local(&a).services.get(&def.service_id) {
            Some(s) => Some(s.service.service.clone()),
            None => {
                return Err(ApiError::not_found(format!(
                    "ServiceID {:?} does not exist",
                    def.service_id
                )));
            }
        }
    };
    check_write(&a, service.as_deref()).await?;
    a.register_check(def).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/check/deregister/:id`: removes a check. Unknown IDs are Consul's 404 (its
/// handler vets the ID first), although the agent's own removal would be a no-op.
async fn check_deregister(
    State(a): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(service) = local(&a)
        .checks
        .get(&id)
        .map(|c| c.check.service_name.clone())
    else {
        return Err(unknown_check(&id));
    };
    check_write(
        &a,
        Some(&service).filter(|s| !s.is_empty()).map(|s| s.as_str()),
    )
    .await?;
    a.deregister_check(&id).await;
    Ok(StatusCode::OK.into_response())
}

/// The shared body of `check/pass|warn|fail/:id`: sets a TTL check's status and restarts its
/// TTL; `?note` becomes the check's `Output`. An unknown ID is Consul's 404 text, a check
/// without a TTL a 400 (the agent's errors).
async fn ttl_update(
    a: AppState,
    id: String,
    q: Option<String>,
    status: HealthStatus,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let note = p.get("note").unwrap_or_default().to_string();
    check_update_allowed(&a, &id).await?;
    a.update_ttl(&id, status, &note).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/check/pass/:id`, what heartbeat clients call periodically (Spring Cloud
/// Consul passes its `service:<id>` check this way).
async fn check_pass(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    ttl_update(a, id, q, HealthStatus::Passing).await
}

/// `PUT /v1/agent/check/warn/:id`.
async fn check_warn(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    ttl_update(a, id, q, HealthStatus::Warning).await
}

/// `PUT /v1/agent/check/fail/:id`.
async fn check_fail(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    ttl_update(a, id, q, HealthStatus::Critical).await
}

/// The body of `PUT /v1/agent/check/update/:id` (Consul's `checkUpdate`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckUpdate {
    /// `passing`, `warning` or `critical`, exactly; anything else (an absent one included)
    /// is Consul's 400.
    status: String,
    /// Becomes the check's `Output`, as `?note` does for the other three.
    output: String,
}

/// `PUT /v1/agent/check/update/:id`: the body form of pass/warn/fail, used by Go's client
/// (`UpdateTTL`); the output travels in the body instead of `?note`.
async fn check_update(
    State(a): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let u: CheckUpdate = decode(&body)?;
    // Exact lowercase, as Consul compares against its constants (`Passing` is refused).
    let status = HealthStatus::parse(&u.status)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid check status: '{}'", u.status)))?;
    check_update_allowed(&a, &id).await?;
    a.update_ttl(&id, status, &u.output).await?;
    Ok(StatusCode::OK.into_response())
}

/// This agent as a member of the pool, built from its configuration rather than taken from
/// gossip, for `/v1/agent/self` (`Member`) and the one-member WAN list. The tags follow what
/// Consul's serf members carry and what `crate::cluster::member_json` shows for the others
/// (servers are told apart by `role=consul`, with their RPC `port`); the protocol numbers
/// are those Consul's serf reports.
fn member_json(a: &AppState) -> Value {
    let c = a.config();
    let addr = a.node.address.clone();
    // Sorted, so the JSON is stable from one call to the next.
    let mut tags = BTreeMap::new();
    // `<Consul API level>:cairn-<version>`, the shape of Consul's `<version>:<revision>`.
    tags.insert(
        "build",
        format!("{CONSUL_COMPAT_VERSION}:cairn-{}", crate::VERSION),
    );
    tags.insert("dc", c.datacenter.clone());
    tags.insert("id", a.node.id.clone());
    tags.insert("segment", String::new());
    tags.insert("vsn", "2".into());
    tags.insert("vsn_min", "2".into());
    tags.insert("vsn_max", "3".into());
    // A server advertises its RPC port and bootstrap settings, as Consul's servers do; a
    // client is `role=node` with nothing more.
    if c.server {
        tags.insert("role", "consul".into());
        tags.insert("port", c.ports.server.to_string());
        tags.insert("raft_vsn", "3".into());
        tags.insert("expect", c.bootstrap_expect.to_string());
        if c.bootstrap {
            tags.insert("bootstrap", "1".into());
        }
        if let Some(p) = c.ports.serf_wan {
            tags.insert("wan_join_port", p.to_string());
        }
    } else {
        tags.insert("role", "node".into());
    }
    // `Status: 1` is serf's "alive": an agent answering is alive by definition.
    json!({
        "Name": a.node.name,
        "Addr": addr,
        "Port": c.ports.serf_lan,
        "Tags": tags,
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// `GET /v1/agent/members`: the LAN pool as this agent's gossip sees it (eventually
/// consistent, as in Consul), or with `?wan` the WAN pool.
async fn members(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    if p.flag("wan")? {
        // The WAN pool's members (`<node>.<dc>`), on servers; Consul's `null` elsewhere.
        let Some(wan) = &a.wan else {
            return Ok(json_response(&Value::Null, p.has("pretty")));
        };
        let authz = a.authorize().await?;
        let members: Vec<Value> = wan
            .members()
            .iter()
            .filter(|m| authz.allows(Access::NodeRead(&m.name)))
            .map(crate::cluster::member_json)
            .collect();
        return Ok(json_response(&members, p.has("pretty")));
    }
    let authz = a.authorize().await?;
    let mut list = a.members_json();
    if !authz.is_unrestricted() {
        list.retain(|m| {
            m.get("Name")
                .and_then(Value::as_str)
                .is_some_and(|n| authz.allows(Access::NodeRead(n)))
        });
    }
    Ok(json_response(&list, p.has("pretty")))
}

/// `GET /v1/agent/self`: this agent's configuration, member, coordinate and stats in Consul's
/// shape, a subset of Consul's: tools read a few fields only (Prometheus and Fabio take
/// `Config.Datacenter` when they are not given a datacenter). Answers without a leader: the
/// leader's address is then empty.
async fn agent_self(State(a): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(q.as_deref());
    let c = a.config();
    // Catalog sizes are known locally on servers only.
    let (nodes, services, kv, sessions) = match &a.server {
        Some(server) => {
            let st = server.state();
            (
                st.nodes().1.len().to_string(),
                st.service_names().1.len().to_string(),
                st.kv_len().to_string(),
                st.sessions().1.len().to_string(),
            )
        }
        None => Default::default(),
    };
    // What this agent owns, maintenance checks included.
    let (local_services, local_checks) = {
        let l = local(&a);
        (l.services.len(), l.checks.len())
    };
    // Asked of the backend, so a client agent reports the leader its servers know; an error
    // (no server reachable) leaves it empty rather than failing the request.
    let leader = a
        .backend
        .status()
        .await
        .ok()
        .and_then(|s| s.leader)
        .unwrap_or_default();
    let is_leader = a.server.as_ref().is_some_and(|s| s.is_leader());
    // `Config.Version` is the Consul API level Cairn implements (clients gate features on
    // it); Cairn's own version is in `Revision` and `CairnVersion`. `Coord` is a new node's
    // coordinate in serf's default configuration (8 dimensions, error 1.5, minimum height),
    // since Cairn computes none. `Stats` values are strings, as Consul's
    // `map[string]map[string]string`. Ports that are off are -1, Consul's convention.
    let mut v = json!({
        // What the dashboard's agent view shows, and `cairn maint` reads `NodeName` from.
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": if c.primary_datacenter.is_empty() { &c.datacenter } else { &c.primary_datacenter },
            "NodeName": a.node.name,
            "NodeID": a.node.id,
            "Server": c.server,
            "Revision": format!("cairn-{}", crate::VERSION),
            "Version": CONSUL_COMPAT_VERSION,
            "VersionPrerelease": "",
            "VersionMetadata": "",
            "BuildDate": "",
            "Product": "cairn",
            "CairnVersion": crate::VERSION,
        },
        // Consul's whole runtime configuration lives here; Cairn gives the fields the
        // dashboard shows (addresses, ports, data directory, ...), under Consul's names.
        "DebugConfig": {
            "Datacenter": c.datacenter,
            "NodeName": a.node.name,
            "NodeID": a.node.id,
            "ServerMode": c.server,
            "DevMode": c.dev,
            "Bootstrap": c.bootstrap,
            "BootstrapExpect": c.bootstrap_expect,
            "BindAddr": c.bind_addr.to_string(),
            "AdvertiseAddrLAN": a.node.address,
            "AdvertiseAddrWAN": a.node.tagged_addresses.get("wan").cloned().unwrap_or_else(|| a.node.address.clone()),
            // Go's `net.TCPAddr` strings, as Consul's runtime configuration shows them.
            "SerfAdvertiseAddrLAN": format!("{}:{}", a.node.address, c.ports.serf_lan),
            "SerfBindAddrLAN": std::net::SocketAddr::new(c.bind_addr, c.ports.serf_lan).to_string(),
            "SerfPortWAN": c.ports.serf_wan.map_or(-1, i32::from),
            "SerfAdvertiseAddrWAN": c.ports.serf_wan.map(|p| format!("{}:{p}", a.node.tagged_addresses.get("wan").cloned().unwrap_or_else(|| a.node.address.clone()))),
            "SerfBindAddrWAN": c.ports.serf_wan.map(|p| std::net::SocketAddr::new(c.bind_addr, p).to_string()),
            "RPCAdvertiseAddr": format!("{}:{}", a.node.address, c.ports.server),
            "RPCBindAddr": std::net::SocketAddr::new(c.bind_addr, c.ports.server).to_string(),
            "TaggedAddresses": a.node.tagged_addresses,
            "PrimaryDatacenter": if c.primary_datacenter.is_empty() { &c.datacenter } else { &c.primary_datacenter },
            "RetryJoinWAN": c.retry_join_wan,
            "ClientAddrs": c.client_addrs.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            "DataDir": c.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "DNSDomain": c.domain,
            "HTTPPort": c.ports.http.map_or(-1, i32::from),
            "HTTPSPort": c.ports.https.map_or(-1, i32::from),
            // When the agent's own TLS certificate expires (the soonest of HTTPS and RPC).
            "TLSCertExpiry": a.tls.expiry().and_then(|v| chrono::DateTime::from_timestamp(v.not_after, 0)).map(|t| t.to_rfc3339()),
            "DNSPort": c.ports.dns.map_or(-1, i32::from),
            "ServerPort": c.ports.server,
            "SerfPortLAN": c.ports.serf_lan,
            "LogLevel": c.log_level,
            "UIConfig": {"Enabled": c.ui},
            "EnableScriptChecks": c.enable_script_checks,
            "EnableLocalScriptChecks": c.enable_local_script_checks,
            "NodeMeta": c.node_meta,
            "RetryJoinLAN": c.retry_join,
            "ACLsEnabled": c.acl.enabled,
        },
        "Coord": {"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1.0e-5},
        // The agent's own entry of `/v1/agent/members` (same tags, same status), so the two
        // agree as in Consul; the locally built one only before gossip lists this member.
        "Member": a
            .gossip
            .members()
            .iter()
            .find(|m| m.name == a.node.name)
            .map_or_else(|| member_json(&a), crate::cluster::member_json),
        // `cairn info` prints these sections the way `consul info` does.
        "Stats": {
            "agent": {"checks": local_checks.to_string(), "services": local_services.to_string()},
            "build": {"version": CONSUL_COMPAT_VERSION, "cairn": crate::VERSION},
            "consul": {
                "server": c.server.to_string(),
                "leader": is_leader.to_string(),
                "leader_addr": leader,
                "known_datacenters": a
                    .server
                    .as_ref()
                    .map_or(1, |s| s.router.datacenters().len())
                    .to_string(),
                "bootstrap": c.bootstrap.to_string(),
            },
            "catalog": {
                "nodes": nodes,
                "services": services,
                "kv_entries": kv,
                "sessions": sessions,
            },
            "runtime": {
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "rss_bytes": metrics::rss_bytes().to_string(),
            },
        },
        // The node's metadata as the catalog has it, the keys Consul's agents add included.
        "Meta": a.node.meta,
        // No service mesh: no proxy is supported and the xDS ports are off.
        "xDS": {"SupportedProxies": {}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}},
    });
    // Clients have no Raft: the section is absent rather than empty, as on a Consul client.
    if let Some(server) = &a.server {
        v["Stats"]["raft"] = raft_stats(server);
    }
    json_response(&v, p.has("pretty"))
}

/// `GET /v1/agent/version`: the Consul API level with Cairn's version in `HumanVersion`. No
/// build SHA or date is embedded in the binary, so those are empty.
async fn version(State(_a): State<AppState>) -> Response {
    json_response(
        &json!({
            "SHA": "",
            "BuildDate": "",
            "HumanVersion": format!("{CONSUL_COMPAT_VERSION} (cairn {})", crate::VERSION),
            "FIPS": "",
        }),
        false,
    )
}

/// A server's `Stats.raft` in `/v1/agent/self`: Consul's keys (values as strings) for what
/// openraft reports; operators and tests read the term and state here.
fn raft_stats(server: &crate::server::Server) -> Value {
    let m = server.raft().metrics().borrow().clone();
    let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index).to_string();
    // Consul's (hashicorp/raft's) state names; openraft's `Shutdown` reads as a follower.
    let state = match m.state {
        openraft::ServerState::Leader => "Leader",
        openraft::ServerState::Candidate => "Candidate",
        openraft::ServerState::Learner => "Learner",
        _ => "Follower",
    };
    json!({
        "term": m.current_term.to_string(),
        "state": state,
        "last_log_index": m.last_log_index.unwrap_or(0).to_string(),
        "applied_index": index(m.last_applied),
        "last_snapshot_index": index(m.snapshot),
        "num_peers": m.membership_config.membership().voter_ids().count().saturating_sub(1).to_string(),
    })
}

/// `PUT /v1/agent/join/:addr`: joins this agent's LAN pool to the member at `addr`. The
/// address is checked before anything is tried, so a malformed one is a 400 rather than a
/// failed join.
async fn join(
    State(a): State<AppState>,
    Path(addr): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    check_join_address(&addr)?;
    let p = Params::parse(q.as_deref());
    // A failure to reach the address is the agent's 500, in Consul's
    // `1 error occurred: ... Failed to join` form.
    if p.flag("wan")? {
        a.join_wan(&[addr]).await?;
    } else {
        a.join(&[addr]).await?;
    }
    Ok(StatusCode::OK.into_response())
}

/// Refuses, with 400, a join address that is not an address at all: `host`, `host:port`,
/// `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`, where a host is a DNS name. What fails only when
/// tried (no such host, nobody answering) stays Consul's 500 "Failed to join".
fn check_join_address(addr: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("Invalid join address {addr:?}: {why}"));
    let addr = addr.trim();
    if addr.parse::<std::net::SocketAddr>().is_ok()
        || addr.parse::<std::net::IpAddr>().is_ok()
        || addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    {
        return Ok(());
    }
    // Only names (and `name:port`) are left; a bare IPv6 address would have parsed above.
    let host = match addr.rsplit_once(':') {
        Some((host, port)) => {
            if port.parse::<u16>().is_err() {
                return Err(bad("invalid port"));
            }
            host
        }
        None => addr,
    };
    if host.starts_with('[') {
        return Err(bad("invalid IPv6 address"));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    // DNS name rules (a label of 1 to 63 letters, digits or `-`, at most 253 in all), with
    // `_` allowed as well, since container and VM host names often carry one.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(bad("not a host name or IP address"));
    }
    Ok(())
}

/// `PUT /v1/agent/force-leave/:node`: moves a failed member to `left`; with `?prune` every
/// member forgets it. An alive member, this agent included, is accepted and stays alive (it
/// refutes the intent in Consul); an unknown node is a 404. `?wan` acts on the WAN pool
/// (`<node>.<dc>` names; servers only).
async fn force_leave(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let prune = p.flag("prune")?;
    if p.flag("wan")? {
        a.force_leave_wan(&node, prune).await?;
    } else {
        a.force_leave(&node, prune).await?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/leave`: answers, then starts the shutdown; the run loop then leaves the
/// cluster gracefully (a server hands over leadership and leaves the Raft configuration) and
/// drains the API. As in Consul, the agent process stops afterwards.
async fn leave(State(a): State<AppState>) -> Response {
    tracing::info!("leave requested through the API: shutting down gracefully");
    let agent = a.clone();
    tokio::spawn(async move {
        // Let this response go out before the listener starts draining.
        tokio::time::sleep(Duration::from_millis(50)).await;
        agent.begin_shutdown();
    });
    StatusCode::OK.into_response()
}

/// `PUT /v1/agent/reload`: re-reads the configuration files (services, checks and the
/// settings that may change at run time), then runs an anti-entropy pass so that the
/// catalog shows the reloaded definitions by the time the caller gets its 200.
async fn reload(State(a): State<AppState>) -> Result<Response, ApiError> {
    crate::reload(&a).map_err(|e| ApiError::internal(format!("Failed reloading: {e}")))?;
    a.sync_now().await;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/agent/metrics`: the agent's metrics as Consul's JSON (`Gauges`, `Counters`, ...),
/// or in Prometheus' text format with `?format=prometheus` or an OpenMetrics `Accept` (how
/// Prometheus itself asks). As in Consul, the Prometheus form must be enabled with a positive
/// `telemetry.prometheus_retention_time`; otherwise it is Consul's 415.
async fn metrics_endpoint(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let samples = crate::telemetry::collect(&a);
    // `consul` unless configured, so that dashboards and alerts written for Consul's metric
    // names work unchanged.
    let prefix = a.config().telemetry.metrics_prefix;
    let prom = p.get("format") == Some("prometheus")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(accepts_openmetrics);
    if prom {
        if a.config().telemetry.prometheus_retention_time.is_zero() {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Prometheus is not enabled since its retention time is not positive",
            ));
        }
        // The classic Prometheus text format (0.0.4), which every Prometheus version reads.
        return Ok((
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::render_prometheus(&prefix, &samples),
        )
            .into_response());
    }
    // Go's `time.Time.String()` of the interval start, rounded to the second, in UTC, as
    // go-metrics writes it (`2026-12-07 20:40:00 +0000 UTC`).
    let ts = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S +0000 UTC")
        .to_string();
    Ok(json_response(
        &metrics::render_json(&prefix, &samples, &ts),
        p.has("pretty"),
    ))
}

/// Consul's `acceptsOpenMetricsMimeType`: `application/openmetrics-text`, or `text/plain`
/// with `version=0.4.0`.
fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|mime| {
        let mut parts = mime.split(';').map(str::trim);
        let base = parts.next().unwrap_or_default().to_ascii_lowercase();
        base == "application/openmetrics-text"
            || (base == "text/plain" && parts.next() == Some("version=0.4.0"))
    })
}

/// The address check alone; the endpoints themselves are tested through the API in
/// `agent/tests/`.
#[cfg(test)]
mod tests {
    /// `null` in a TTL update body is absent.
    #[test]
    fn check_update_null_members_are_absent() {
        crate::api::decode::assert_null_is_absent::<super::CheckUpdate>(serde_json::json!({
            "Status": "passing", "Output": "ok"
        }));
    }

    use super::check_join_address;

    /// Host names (with `_`, with a trailing dot) and every IP form pass; what cannot be an
    /// address at all is a 400 with the address quoted.
    #[test]
    fn join_addresses_that_are_not_addresses_are_refused() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8301",
            "::1",
            "[::1]",
            "[::1]:8301",
            "consul-server-1",
            "consul.service.dc1.consul.:8301",
            "host_name:1",
        ] {
            assert!(check_join_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "garbage!!:xx",
            "host:99999",
            "host:",
            "[::1",
            "[::1]:port",
            "a b",
            "",
            "..",
            "%%%%",
            "host/path",
        ] {
            let e = check_join_address(bad).expect_err(bad);
            assert_eq!(e.status.as_u16(), 400, "{bad}");
            assert!(e.message.starts_with("Invalid join address"), "{bad}: {e}");
        }
    }
}
