//! The HTTP API: Consul's `/v1` routes, one file per area. Handlers are thin: parse the
//! request, call the agent or the server, map errors to Consul's statuses and texts.
//!
//! Every route has an explicit method list; a wrong method gets 405 with an `Allow` header,
//! and `OPTIONS` is answered with `Allow` (as Consul does).
//!
//! How a request travels: [`listener`] accepts the connection and runs hyper; [`service`]
//! reads the body and fixes up Consul's method answers; the [`router`] picks the area's
//! handler under `common_layer`; the handler parses the query into the service layer's
//! typed request (`crate::api`), calls the agent's local state or `agent.backend` (this
//! agent's server role, or a server of the pool), and renders the answer
//! ([`render`], [`json_response`], [`set_meta`]). Errors travel as `crate::api::Error` up to
//! the handler and become statuses and texts only in [`error`].
//!
//! Two kinds of endpoints live side by side, and the difference shows in the helpers each uses:
//! - Server-backed reads (catalog, health, KV, sessions, ...) go through [`run_read`] or
//!   [`serve_read`] and carry the `X-Consul-*` read metadata that clients use to block.
//! - Agent-local endpoints (`/v1/agent/*`, events, host, monitor) answer from this agent's own
//!   state (its services and checks, gossip, the host), without read metadata; most of them
//!   keep working without a leader.

pub mod acl;
pub mod agent_api;
pub mod catalog;
pub mod coordinate;
pub mod error;
pub mod event;
pub mod health;
pub mod host;
pub mod keyring;
pub mod kv;
pub mod listener;
pub mod monitor;
pub mod operator;
pub mod params;
pub mod prepared_query;
pub mod render;
pub mod session;
pub mod snapshot;
pub mod status;
pub mod txn;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::agent::Agent;
use crate::api::QueryMeta;
use crate::server::query::{Answer, Read};
use error::ApiError;
use params::{Params, QueryOptions};

/// Shared handler state: the whole agent, since handlers reach its local state, its
/// configuration, its gossip pool and its backend alike.
pub type AppState = Arc<Agent>;

/// Largest request body accepted outside KV and txn (which have their own limits).
/// Registrations and definitions are small; the bound only keeps one request from holding
/// much memory.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// `-dev` answers every JSON response indented, as Consul's dev mode does.
/// A process-wide flag rather than router state because the JSON helpers are free functions
/// called from every handler; one process runs one agent, whose `-dev` cannot change.
static ALWAYS_PRETTY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Builds the router of the whole API.
///
/// Paths no area claims fall to `not_found`. `common_layer` wraps every route and the
/// fallback, so 404s and axum's own rejections get the ACL policy header and count in the
/// metrics too. The body limit set here is the default; KV, txn and snapshot routes set
/// their own.
pub fn router(agent: AppState) -> Router {
    ALWAYS_PRETTY.store(agent.config().dev, std::sync::atomic::Ordering::Relaxed);
    Router::new()
        .merge(agent_api::routes())
        .merge(catalog::routes())
        .merge(health::routes())
        .merge(kv::routes_with_limit(
            usize::try_from(agent.config().limits.kv_max_value_size).unwrap_or(usize::MAX),
        ))
        .merge(session::routes())
        .merge(snapshot::routes())
        .merge(txn::routes())
        .merge(status::routes())
        .merge(event::routes())
        .merge(operator::routes())
        .merge(keyring::routes())
        .merge(acl::routes())
        .merge(coordinate::routes())
        .merge(prepared_query::routes())
        .merge(monitor::routes())
        .merge(host::routes())
        .merge(ui::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Inside the common layer, which finds the request's token.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&agent),
            acl::guard,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&agent),
            common_layer,
        ))
        .with_state(agent)
}

/// Go's `http.NotFound` text, which Consul answers for paths it does not serve (the
/// unimplemented `/v1/config/*`, `/v1/connect/*`, ... included).
async fn not_found() -> ApiError {
    ApiError::not_found("404 page not found")
}

tokio::task_local! {
    /// The token of the request being handled (see [`request_token`]).
    static TOKEN: Option<crate::api::Token>;
}

/// The ACL token of the request this task handles, as [`token`] found it: every handler's
/// reads and writes carry it to the service layer without each handler parsing it again.
/// `None` outside a request's task: a task a handler spawns does not inherit it.
pub fn request_token() -> Option<crate::api::Token> {
    TOKEN.try_with(Clone::clone).ok().flatten()
}

impl Agent {
    /// The permissions of the request this task handles, for the agent's own endpoints.
    pub async fn authorize(&self) -> Result<crate::acl::Authorizer, ApiError> {
        Ok(self.authorize_token(request_token().as_ref()).await?)
    }
}

/// Counts requests, finds the request's token, and adds the ACL policy header Consul always
/// sends.
///
/// `X-Consul-Default-ACL-Policy: allow` is what Consul (1.9 and later) sends with ACLs
/// disabled; clients read it from every response. Requests are counted once answered, by
/// status class, for `/v1/agent/metrics`.
async fn common_layer(State(agent): State<AppState>, req: Request, next: Next) -> Response {
    // Only `token=` is looked for here: the handler's `Req` parses the whole query string.
    let from_query = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    // Without a token of its own, a request carries the agent's default one (`acl.tokens.default`),
    // as in Consul.
    let tok = token_from(req.headers(), from_query.as_deref()).or_else(|| {
        agent
            .acl_enabled()
            .then(|| agent.tokens.get("default"))
            .flatten()
            .map(crate::api::Token)
    });
    let mut resp = TOKEN.scope(tok, next.run(req)).await;
    agent.metrics.http_requests.inc();
    let status = resp.status();
    if status.is_client_error() {
        agent.metrics.http_client_errors.inc();
    } else if status.is_server_error() {
        agent.metrics.http_server_errors.inc();
    }
    let default_policy = match agent.acl.settings() {
        Some(s) if !s.default_allow => "deny",
        _ => "allow",
    };
    resp.headers_mut().insert(
        HeaderName::from_static("x-consul-default-acl-policy"),
        HeaderValue::from_static(default_policy),
    );
    // One look at the configuration (a reload may replace it): `http_config.response_headers`
    // (CORS headers, say) go on every answer as in Consul, and an agent that translates WAN
    // addresses marks every answer. The names and values were checked at start-up.
    if let Ok(c) = agent.config.read() {
        let headers = resp.headers_mut();
        for (k, v) in &c.http_response_headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        if c.translate_wan_addrs {
            headers.insert(
                HeaderName::from_static("x-consul-translate-addresses"),
                HeaderValue::from_static("true"),
            );
        }
    }
    resp
}

/// How much of an oversized request body is still read, and discarded, so that the client
/// gets its 413 instead of a connection reset while it is still sending.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a request body before routing, keeping at most `keep` bytes. What is over is read
/// and discarded (up to [`DRAIN_LIMIT`]): a handler that answers early, or a body limit that
/// refuses the request, would otherwise close the connection under a client still writing,
/// which then sees a reset rather than the answer (Go's server lingers for the same reason).
/// A body longer than `keep` stays longer than every route's limit, so it is refused there.
async fn read_body(mut body: Body, keep: usize) -> Result<bytes::Bytes, ApiError> {
    use hyper::body::Body as _;
    // Most requests (every GET) have none: nothing to poll.
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("Failed to read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if seen < keep {
                let take = data.len().min(keep - seen);
                buf.extend_from_slice(&data[..take]);
            }
            seen = seen.saturating_add(data.len());
            if seen > keep.saturating_add(DRAIN_LIMIT) {
                break;
            }
        }
    }
    Ok(buf.freeze())
}

/// The API as a service: the router plus Consul's method handling, which must sit outside
/// the router because axum only knows a route's methods (the `Allow` header) at its top level.
/// A wrong method gets 405 with `Allow: OPTIONS,<methods>`; `OPTIONS` gets 200 with `Allow`.
/// Request bodies are read in full before routing (see `read_body`).
pub fn service(
    agent: AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone
+ Send {
    // The limits in force when the service is built; the routers' own body limits come from
    // the same configuration.
    let limits = agent.config().limits;
    // One byte over the largest route limit: enough for every route to see an oversized body.
    // Only a snapshot restore may send a very large body.
    let keep = [limits.kv_max_value_size, limits.txn_max_req_len]
        .into_iter()
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .fold(MAX_BODY, usize::max)
        .saturating_add(1);
    let keep_snapshot = keep.max(snapshot::MAX_SNAPSHOT.saturating_add(1));
    let router = router(agent);
    tower::service_fn(move |req: Request| {
        let router = router.clone();
        async move {
            let method = req.method().clone();
            let (mut parts, body) = req.into_parts();
            // Consul lists every /v1 route's methods and HEAD is on none: a 405 with `Allow`,
            // not a GET without its body (whose status could be anything, a 500 included).
            // Routed with a method no route has, to learn the route's `Allow`.
            if method == Method::HEAD && parts.uri.path().starts_with("/v1/") {
                parts.method = Method::TRACE;
            }
            let limit = if parts.uri.path() == "/v1/snapshot" {
                keep_snapshot
            } else {
                keep
            };
            // A body that breaks off mid-way is answered here, before any handler sees a part.
            let body = match read_body(body, limit).await {
                Ok(b) => b,
                Err(e) => return Ok(e.into_response()),
            };
            let req = Request::from_parts(parts, Body::from(body));
            let resp = tower::ServiceExt::oneshot(router, req).await?;
            Ok(fix_method_not_allowed(resp, &method))
        }
    })
}

/// Turns axum's 405 into Consul's: `Allow` lists `OPTIONS` first and then the route's own
/// methods, without the `HEAD` that axum adds to every `GET` route (Consul serves no `HEAD`);
/// an `OPTIONS` request gets 200 with that header instead. The response is built anew, so the
/// ACL policy header that [`common_layer`] put on axum's answer is set again here.
fn fix_method_not_allowed(resp: Response, method: &Method) -> Response {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut methods: Vec<&str> = allow
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "HEAD")
        .collect();
    methods.insert(0, "OPTIONS");
    let allow =
        HeaderValue::from_str(&methods.join(",")).unwrap_or(HeaderValue::from_static("OPTIONS"));
    let mut out = if method == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        // Consul's `MethodNotAllowedError` text.
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        )
        .into_response()
    };
    out.headers_mut().insert(header::ALLOW, allow);
    out.headers_mut().insert(
        HeaderName::from_static("x-consul-default-acl-policy"),
        HeaderValue::from_static("allow"),
    );
    out
}

/// A JSON body response, compact unless `pretty` (`?pretty`) or `-dev` asks for indentation.
/// `Content-Type: application/json`, as Consul's `marshalJSON`; an encoding failure, which
/// only a bug can cause, is a 500 rather than a partial body.
pub fn json_response<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Response {
    let body = if pretty || ALWAYS_PRETTY.load(std::sync::atomic::Ordering::Relaxed) {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    match body {
        Ok(b) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Body::from(b),
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("failed to encode response: {e}")).into_response(),
    }
}

/// Adds the `X-Consul-*` headers of a read.
///
/// `X-Consul-Index` is never 0: clients pass it back as `?index`, where 0 means "answer at
/// once", so a 0 would turn their next blocking read into a busy loop. It is always present,
/// as py-consul fails on a read without it. `X-Consul-LastContact` is whole milliseconds,
/// which Go's client parses as an unsigned integer.
pub fn set_meta(headers: &mut HeaderMap, meta: &QueryMeta) {
    let put = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(HeaderName::from_static(k), v);
        }
    };
    put(headers, "x-consul-index", meta.index.max(1).to_string());
    put(
        headers,
        "x-consul-knownleader",
        meta.known_leader.to_string(),
    );
    put(
        headers,
        "x-consul-lastcontact",
        meta.last_contact_ms.to_string(),
    );
    put(
        headers,
        "x-consul-effective-consistency",
        meta.consistency.as_str().to_string(),
    );
    if meta.filtered_by_acls {
        put(
            headers,
            "x-consul-results-filtered-by-acls",
            "true".to_string(),
        );
    }
}

/// A JSON response carrying read metadata, for answers a handler builds itself instead of
/// rendering the typed reply (an empty list, an envelope, a shape of its own).
pub fn read_response(meta: &QueryMeta, value: &serde_json::Value, pretty: bool) -> Response {
    let mut resp = json_response(value, pretty);
    set_meta(resp.headers_mut(), meta);
    resp
}

/// A read's answer as a response: its shared compact encoding (rendered once per answer, for
/// every reader it is shared with) unless indentation is asked for.
///
/// The sharing matters for blocking queries: one change wakes every reader blocked on it, and
/// they all get the same `Answer`, so the JSON is encoded once rather than once per reader.
/// Indented answers are rare and are rendered per request instead.
pub fn answer_response(meta: &QueryMeta, read: &Read, answer: &Answer, pretty: bool) -> Response {
    if pretty || ALWAYS_PRETTY.load(std::sync::atomic::Ordering::Relaxed) {
        return read_response(meta, &render::render(read, &answer.reply), true);
    }
    // An encoding failure would be a bug; `null` keeps the shared bytes well-formed JSON.
    let bytes = answer.encoded(|reply| {
        serde_json::to_vec(&render::render(read, reply))
            .map(bytes::Bytes::from)
            .unwrap_or_else(|_| bytes::Bytes::from_static(b"null"))
    });
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(bytes),
    )
        .into_response();
    set_meta(resp.headers_mut(), meta);
    resp
}

/// The request's ACL token, from Consul's three places in the order its `parseTokenInternal`
/// looks at them: the `?token=` parameter, the `X-Consul-Token` header, an
/// `Authorization: Bearer` header. Empty values count as absent, so an empty one does not hide
/// a token given elsewhere.
pub fn token(headers: &HeaderMap, p: &Params) -> Option<crate::api::Token> {
    token_from(headers, p.get("token"))
}

/// [`token`] with the `token=` parameter already found (the first one, as Go's `Get`).
fn token_from(headers: &HeaderMap, query: Option<&str>) -> Option<crate::api::Token> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    query
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .or_else(|| header("x-consul-token"))
        .or_else(|| {
            header("authorization").and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .map(|t| t.trim().to_string())
            })
        })
        .map(crate::api::Token)
}

/// Refuses requests for another datacenter (federation arrives later) with Consul's error.
/// For handlers whose answer is made on this agent (status, operator, events, ...): reads and
/// writes sent to the backend carry `?dc` instead, and the server checks it.
pub fn check_dc(agent: &Agent, dc: Option<&str>) -> Result<(), ApiError> {
    match dc {
        // Consul's `structs.ErrNoDCPath`, answered as a 500.
        Some(dc) if !dc.eq_ignore_ascii_case(agent.backend.datacenter()) => {
            Err(ApiError::internal("No path to datacenter"))
        }
        _ => Ok(()),
    }
}

/// Runs a server read with the request's options and answers it: the common path of every
/// read whose Consul shape is the typed reply as [`render`] draws it.
pub async fn serve_read(
    agent: &Agent,
    read: Read,
    opts: &QueryOptions,
) -> Result<Response, ApiError> {
    let (meta, answer) = run_read(agent, read.clone(), opts).await?;
    Ok(agent_answer(agent, &meta, &read, &answer, opts.pretty))
}

/// [`answer_response`], with the answering agent's `translate_wan_addrs` applied to answers
/// about another datacenter (their encoding is then this request's own, not the shared one).
pub fn agent_answer(
    agent: &Agent,
    meta: &QueryMeta,
    read: &Read,
    answer: &Answer,
    pretty: bool,
) -> Response {
    let translate = agent
        .config
        .read()
        .map(|c| c.translate_wan_addrs)
        .unwrap_or(false);
    if translate
        && let Some(dc) = answered_in(read, &answer.reply)
        && !dc.eq_ignore_ascii_case(agent.backend.datacenter())
    {
        let mut v = render::render(read, &answer.reply);
        render::translate_wan(read, &mut v);
        return read_response(meta, &v, pretty);
    }
    answer_response(meta, read, answer, pretty)
}

/// The datacenter an answer is about, for the reads whose answers carry addresses.
fn answered_in<'a>(read: &'a Read, reply: &'a crate::api::Reply) -> Option<&'a str> {
    match (read, reply) {
        (_, crate::api::Reply::QueryResult(r)) => Some(&r.datacenter),
        (Read::CatalogNodes(sel), _)
        | (Read::CatalogService { sel, .. }, _)
        | (Read::CatalogNode { sel, .. }, _)
        | (Read::CatalogNodeServices { sel, .. }, _)
        | (Read::HealthService { sel, .. }, _) => Some(&sel.dc),
        _ => None,
    }
}

/// Runs a server read with the request's options, for handlers that look at the reply
/// before answering (a 404 on empty, a different envelope). The token comes from
/// [`request_token`], the consistency and blocking from `opts`.
pub async fn run_read(
    agent: &Agent,
    read: Read,
    opts: &QueryOptions,
) -> Result<(QueryMeta, Arc<Answer>), ApiError> {
    if opts.read.min_index > 0 {
        // Counted when asked for, whether or not the read ends up waiting.
        agent.metrics.blocking_queries.inc();
    }
    let mut read_opts = opts.read.clone();
    // `default_query_time` without `?wait`, and `max_query_time` as the longest wait.
    if let Ok(c) = agent.config.read() {
        if !opts.wait_given {
            read_opts.wait = c.default_query_time;
        }
        read_opts.wait = read_opts.wait.min(c.max_query_time);
    }
    let q = crate::api::Query {
        read,
        opts: read_opts,
        dc: opts.dc.clone(),
        token: request_token(),
    };
    Ok(agent.backend.query(&q).await?)
}

/// What every handler starts from: the query string and the read options in it, parsed once
/// by axum before the handler runs (a malformed option is answered with Consul's 400 there).
pub struct Req {
    /// The query string's parameters.
    pub p: Params,
    /// The common read options (`?index`, `?wait`, `?stale`, `?dc`, `?filter`, ...).
    pub o: QueryOptions,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Req {
    // `ApiError` as the rejection, so a malformed option is Consul's 400 text rather than
    // one of axum's.
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Req, ApiError> {
        let (p, o) = query(parts.uri.query())?;
        Ok(Req { p, o })
    }
}

/// Parses the query string and the common read options; for handlers that take the raw
/// query (`RawQuery`) rather than [`Req`].
pub fn query(raw: Option<&str>) -> Result<(Params, QueryOptions), ApiError> {
    let p = Params::parse(raw);
    let o = QueryOptions::from_params(&p)?;
    Ok((p, o))
}

/// The selection part of a catalog/health read: `?tag` (repeatable, all must match),
/// `?node-meta` (repeatable) and `?filter`. The agent's datacenter goes with it because
/// rendered nodes and instances carry a `Datacenter` field that the stored records lack.
pub fn selection(agent: &Agent, p: &Params, o: &QueryOptions) -> crate::server::query::Selection {
    crate::server::query::Selection {
        filter: o.read.filter.clone(),
        tags: p.all("tag").into_iter().map(str::to_string).collect(),
        node_meta: p.node_meta(),
        // The datacenter the read runs in: records there are shown with its name.
        dc: o
            .dc
            .clone()
            .filter(|dc| !dc.is_empty())
            .unwrap_or_else(|| agent.backend.datacenter().to_string()),
    }
}

/// Serves a catalog or health read made from the request's selection (`tag`, `node-meta`,
/// `filter`) and read options.
pub async fn serve_selected(
    agent: &Agent,
    raw_query: Option<&str>,
    make: impl FnOnce(crate::server::query::Selection) -> Read,
) -> Result<Response, ApiError> {
    let (p, o) = query(raw_query)?;
    let sel = selection(agent, &p, &o);
    serve_read_peer(agent, make(sel), &p, &o).await
}

/// Serves a catalog or health read, honouring `?peer=`: Cairn has no cluster peering, so every
/// named peer is unknown and its answer is empty (`[]`, `{}` for the services map, `null` for
/// one node), never the local catalog a client would mistake for the peer's. The local index
/// still goes out, so a blocking client blocks instead of spinning.
pub async fn serve_read_peer(
    agent: &Agent,
    read: Read,
    p: &Params,
    o: &QueryOptions,
) -> Result<Response, ApiError> {
    if p.get("peer").is_none_or(str::is_empty) {
        return serve_read(agent, read, o).await;
    }
    let (meta, answer) = run_read(agent, read.clone(), o).await?;
    let empty = match (&read, render::render(&read, &answer.reply)) {
        (_, Value::Array(_)) => Value::Array(Vec::new()),
        (Read::CatalogServices(_), _) => Value::Object(serde_json::Map::new()),
        _ => Value::Null,
    };
    Ok(read_response(&meta, &empty, o.pretty))
}

/// A `true` JSON answer, as Consul's write endpoints return (catalog register and deregister,
/// session destroy).
pub fn json_true() -> Response {
    json_response(&true, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_query_then_the_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-consul-token", HeaderValue::from_static("header"));
        h.insert("authorization", HeaderValue::from_static("Bearer bearer"));
        let t = |h: &HeaderMap, q: Option<&str>| token(h, &Params::parse(q)).map(|t| t.0);
        assert_eq!(t(&h, Some("token=query")).as_deref(), Some("query"));
        assert_eq!(t(&h, Some("token=")).as_deref(), Some("header"));
        h.remove("x-consul-token");
        assert_eq!(t(&h, None).as_deref(), Some("bearer"));
        assert_eq!(t(&HeaderMap::new(), None), None);
    }
}
