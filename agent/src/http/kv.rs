//! `/v1/kv/*`: the key/value store (get, list, keys, raw; put with flags, CAS and locks;
//! delete, recursive and CAS).
//!
//! Consul's KV API is the part clients lean on hardest for exact behaviour: locks and leader
//! election (`?acquire`/`?release` with sessions), create-only writes (`?cas=0`), config
//! watches that block on a prefix (Spring, consul-template). The quirks kept here are those
//! they depend on: a missing key is a 404 that still carries `X-Consul-Index` (so a client can
//! block until the key appears), the store's root key list is `[]` rather than a 404,
//! `?recurse`, `?keys` and `?raw` are presence flags, and the 413 and conflicting-flags texts
//! are Consul's.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::params::Params;
use super::{AppState, Req, json_response, query, run_read, set_meta, token};
use crate::api::write::{KvDeleteMode, KvSetMode};
use crate::api::{Reply, Write, WriteOp, Written};
use crate::server::query::Read;

/// Routes of this area. `max_value` is `limits.kv_max_value_size`.
///
/// The root has its own route because `{*key}` does not match an empty rest: `/v1/kv/` is
/// where `?recurse` and `?keys` over the whole store are asked.
pub fn routes_with_limit(max_value: usize) -> axum::Router<AppState> {
    Router::new()
        .route("/v1/kv/", get(get_root).put(put_root).delete(delete_root))
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        // Read one byte more than allowed so that an oversized value gets Consul's 413.
        // (A value just over the limit reaches `kv_put` and gets Consul's text; a body past
        // this layer's limit is refused by axum, also with 413, with axum's text.)
        .layer(DefaultBodyLimit::max(max_value.saturating_add(1)))
}

/// `GET /v1/kv/`: the root, meaningful with `?recurse` or `?keys`.
async fn get_root(s: State<AppState>, r: Req) -> Result<Response, ApiError> {
    kv_get(s, String::new(), r).await
}
/// `GET /v1/kv/:key`.
async fn get_key(
    s: State<AppState>,
    Path(key): Path<String>,
    r: Req,
) -> Result<Response, ApiError> {
    kv_get(s, key, r).await
}
/// `PUT /v1/kv/`: the empty key, which the server refuses with Consul's `Missing key name`.
async fn put_root(
    s: State<AppState>,
    q: RawQuery,
    h: HeaderMap,
    b: Bytes,
) -> Result<Response, ApiError> {
    kv_put(s, String::new(), q, h, b).await
}
/// `PUT /v1/kv/:key`.
async fn put_key(
    s: State<AppState>,
    Path(key): Path<String>,
    q: RawQuery,
    h: HeaderMap,
    b: Bytes,
) -> Result<Response, ApiError> {
    kv_put(s, key, q, h, b).await
}
/// `DELETE /v1/kv/`: with `?recurse`, the whole store (without it, `Missing key name`).
async fn delete_root(s: State<AppState>, q: RawQuery, h: HeaderMap) -> Result<Response, ApiError> {
    kv_delete(s, String::new(), q, h).await
}
/// `DELETE /v1/kv/:key`.
async fn delete_key(
    s: State<AppState>,
    Path(key): Path<String>,
    q: RawQuery,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    kv_delete(s, key, q, h).await
}

/// Every KV read: one key, the entries under a prefix (`?recurse`), or only their names
/// (`?keys`, grouped at `?separator`). `?keys` wins over `?recurse`, as Consul checks it
/// first; `?raw` applies to a single key only.
async fn kv_get(
    State(a): State<AppState>,
    key: String,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    let recurse = p.presence("recurse");
    let keys = p.presence("keys");
    let raw = p.presence("raw");
    // Consul's 400, before any read: the root is not a key.
    if key.is_empty() && !recurse && !keys {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let root_keys = keys && key.is_empty();
    // `?separator` only means something with `?keys`: the names are cut after the first
    // separator past the prefix, so a "directory" shows once, with its trailing separator.
    let read = if keys {
        Read::KvKeys {
            prefix: key,
            separator: p.get("separator").unwrap_or_default().to_string(),
        }
    } else if recurse {
        Read::KvList { prefix: key }
    } else {
        Read::KvGet { key }
    };
    let (meta, answer) = run_read(&a, read.clone(), &o).await?;
    let empty = match &answer.reply {
        Reply::Kv(e) => e.is_none(),
        Reply::KvList(l) => l.is_empty(),
        Reply::KvKeys(k) => k.is_empty(),
        // Another kind of reply would be a bug in the read's dispatch: a 500 that names it.
        other => return Err(crate::api::read::unexpected("KV", other).into()),
    };
    if empty && root_keys {
        // Consul answers an empty store's key list with `[]`, not a 404.
        return Ok(super::read_response(
            &meta,
            &serde_json::json!([]),
            o.pretty,
        ));
    }
    // An empty 404 with the read metadata: the index lets a client block until the key is
    // created (py-consul's `kv.get` returns `(index, None)` from it).
    if empty {
        let mut r = StatusCode::NOT_FOUND.into_response();
        set_meta(r.headers_mut(), &meta);
        return Ok(r);
    }
    // The value's bytes as they are, with Consul's headers against a browser running them:
    // `text/plain` with `nosniff` so no other type is guessed, and a sandboxing CSP should the
    // value still be rendered. A value stored empty answers an empty body.
    if let (true, Reply::Kv(Some(entry))) = (raw, &answer.reply) {
        let mut r = (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("sandbox"),
                ),
            ],
            entry.value.clone().unwrap_or_default(),
        )
            .into_response();
        set_meta(r.headers_mut(), &meta);
        return Ok(r);
    }
    Ok(super::answer_response(&meta, &read, &answer, o.pretty))
}

/// Consul's `conflictingFlags`: at most one of `flags` may be given; the error quotes the
/// whole query as Go's `url.Values.Encode` writes it (keys sorted).
fn conflicting_flags(p: &Params, raw: Option<&str>, flags: &[&str]) -> Result<(), ApiError> {
    if flags.iter().filter(|f| p.has(f)).count() < 2 {
        return Ok(());
    }
    // Go's `url.Values.Encode` sorts by key and keeps each key's values in their order: a
    // stable sort on the key alone does the same. The trailing newline is Consul's too.
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Err(ApiError::bad_request(format!(
        "Conflicting flags: {encoded}\n"
    )))
}

/// Consul's 413 for a value over `kv_max_value_size`, link to the setting included (clients
/// show the text as it is).
fn too_large(size: u64, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Request body({size} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size."
        ),
    )
}

/// Every KV write: the body is the value, raw bytes of any content type. `?flags` is an opaque
/// number kept with the key; `?cas`, `?acquire` and `?release` make the write conditional and
/// at most one may be given. Answers `true` or `false` (a CAS that lost, a lock held by
/// another session), as Consul does.
async fn kv_put(
    State(a): State<AppState>,
    key: String,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
    let max = a.config().limits.kv_max_value_size;
    // Consul's message quotes the request's `Content-Length`; the bytes read stand in for a
    // chunked request, which declares none.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if body.len() as u64 > max {
        return Err(too_large(declared.unwrap_or(body.len() as u64), max));
    }
    // The three conditions exclude each other, so the order of the match below is moot.
    conflicting_flags(&p, q.as_deref(), &["cas", "acquire", "release"])?;
    let flags = p.u64("flags")?.unwrap_or(0);
    let acquire = p.get("acquire").map(str::to_string);
    let release = p.get("release").map(str::to_string);
    let cas = p.u64("cas")?;
    let mode = match (acquire, release, cas) {
        (Some(s), _, _) => KvSetMode::Acquire(s),
        (None, Some(s), _) => KvSetMode::Release(s),
        (None, None, Some(i)) => KvSetMode::Cas(i),
        (None, None, None) => KvSetMode::Set,
    };
    // An empty body stores no value, which reads back as `"Value": null`, as in Consul.
    let op = WriteOp::KvSet {
        key,
        value: (!body.is_empty()).then(|| body.to_vec()),
        flags,
        mode,
    };
    let w = Write::new(op)
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    let (_, r) = a.backend.write(w).await?;
    Ok(json_response(&matches!(r, Written::Bool(true)), false))
}

/// Every KV delete: one key, a whole prefix (`?recurse`; at the root, the whole store), or
/// one key if unchanged since `?cas=<ModifyIndex>`. Answers `true` or `false` as the store
/// decides (a CAS delete that lost is `false`).
async fn kv_delete(
    State(a): State<AppState>,
    key: String,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
    conflicting_flags(&p, q.as_deref(), &["recurse", "cas"])?;
    let mode = if p.presence("recurse") {
        KvDeleteMode::Tree
    } else if let Some(i) = p.u64("cas")? {
        KvDeleteMode::Cas(i)
    } else {
        KvDeleteMode::Key
    };
    let w = Write::new(WriteOp::KvDelete { key, mode })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    let (_, r) = a.backend.write(w).await?;
    Ok(json_response(&matches!(r, Written::Bool(true)), false))
}
