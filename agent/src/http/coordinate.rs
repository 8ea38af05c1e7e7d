//! `/v1/coordinate/*`: nodes' network coordinates, stored in the replicated catalog.
//!
//! Cairn's gossip does not compute Vivaldi coordinates yet, so the only coordinates are those
//! written with `PUT /v1/coordinate/update`; nodes without one are absent from the lists, as
//! in Consul before a node's first update. `?near` sorting therefore keeps the catalog order.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use cairn_catalog::model::CoordinateEntry;
use cairn_gossip::Role;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Req, answer_response, json_response, query, run_read, set_meta, token};
use crate::api::Reply;
use crate::api::decode::decode;
use crate::api::{Write, WriteOp};
use crate::server::query::Read;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/coordinate/datacenters", get(datacenters))
        .route("/v1/coordinate/nodes", get(nodes))
        .route("/v1/coordinate/node/{*node}", get(node))
        .route("/v1/coordinate/update", put(update))
}

/// The servers of each known datacenter with their coordinates (only this one: no WAN yet).
///
/// Consul's shape for the WAN area: servers named `<node>.<dc>` as in the WAN pool, and only
/// coordinates of the default segment. The servers are the members gossip knows as servers
/// of this datacenter.
async fn datacenters(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, mut o) = query(q.as_deref())?;
    let dc = a.backend.datacenter().to_string();
    let servers: Vec<String> = a
        .gossip
        .members()
        .iter()
        .filter(|m| m.meta.role == Role::Server && m.meta.datacenter == dc)
        .map(|m| m.name.clone())
        .collect();
    // Works without a leader, as Consul's does.
    o.read.consistency = crate::api::Consistency::Stale;
    o.read.min_index = 0;
    // A failed read (no server reachable) is a list without coordinates, not an error: the
    // datacenter itself is still known.
    let coords = match run_read(&a, Read::Coordinates { node: None }, &o).await {
        Ok((_, answer)) => entries(&answer.reply),
        Err(_) => Vec::new(),
    };
    // WAN coordinates are the servers' coordinates of the default segment; a server without
    // one is left out.
    let list: Vec<Value> = coords
        .into_iter()
        .filter(|c| c.segment.is_empty() && servers.contains(&c.node))
        .map(|c| json!({"Node": format!("{}.{dc}", c.node), "Coord": c.coord}))
        .collect();
    Ok(json_response(
        &json!([{"Datacenter": dc, "AreaID": "WAN", "Coordinates": list}]),
        o.pretty,
    ))
}

/// The coordinates of a reply; a reply of another kind (which would be a bug) reads as none.
fn entries(reply: &Reply) -> Vec<CoordinateEntry> {
    match reply {
        Reply::Coordinates(c) => c.clone(),
        _ => Vec::new(),
    }
}

/// Every node's coordinate (`?segment` narrows to one segment); blocking.
/// `?segment=` with an empty value selects the default segment, whose name is empty.
async fn nodes(State(a): State<AppState>, Req { p, o, .. }: Req) -> Result<Response, ApiError> {
    let read = Read::Coordinates { node: None };
    let (meta, answer) = run_read(&a, read.clone(), &o).await?;
    match p.get("segment") {
        None => Ok(answer_response(&meta, &read, &answer, o.pretty)),
        Some(seg) => {
            // The read has no segment: the list is narrowed here and rendered per request.
            let list: Vec<CoordinateEntry> = entries(&answer.reply)
                .into_iter()
                .filter(|c| c.segment == seg)
                .collect();
            let mut r = json_response(&list, o.pretty);
            set_meta(r.headers_mut(), &meta);
            Ok(r)
        }
    }
}

/// One node's coordinates (one per segment); 404 when it has none, with the read metadata so
/// that a client can block until one is written.
async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    let read = Read::Coordinates { node: Some(node) };
    let (meta, answer) = run_read(&a, read.clone(), &o).await?;
    if entries(&answer.reply).is_empty() {
        let mut r = StatusCode::NOT_FOUND.into_response();
        set_meta(r.headers_mut(), &meta);
        return Ok(r);
    }
    Ok(answer_response(&meta, &read, &answer, o.pretty))
}

/// Sets a node's coordinate (`{Node, Segment, Coord}`); an empty 200. The coordinate goes
/// into the replicated catalog and is dropped with its node.
async fn update(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let entry: CoordinateEntry = decode(&body)?;
    let w = Write::new(WriteOp::CoordinateUpdate { entry })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    a.backend.write(w).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod null_tests {
    use super::*;

    #[test]
    fn null_members_are_absent() {
        crate::api::decode::assert_null_is_absent::<CoordinateEntry>(serde_json::json!({
            "Node": "n", "Segment": "",
            "Coord": {"Vec": [0.1, 0.2], "Error": 1.5, "Adjustment": 0.0, "Height": 0.0001}
        }));
    }
}
