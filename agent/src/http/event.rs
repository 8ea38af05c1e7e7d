//! `/v1/event/*`: user events (fire and list, with blocking on new events).
//!
//! Events are not in the catalog: they spread by gossip, and each agent keeps the last 256 it
//! received. So both endpoints answer from this agent, and the list's `X-Consul-Index` is not
//! a Raft index but Consul's `IDToIndex` of the newest event, an opaque value that only says
//! whether the list changed.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::{get, put};

use super::error::ApiError;
use super::params::Params;
use super::{AppState, Req, check_dc, json_response};
use crate::events::UserEvent;

/// Routes of this area. `POST` to fire is accepted too: Spring Cloud Consul sends it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/event/fire/{*name}", put(fire).post(fire))
        .route("/v1/event/list", get(list))
}

/// `PUT /v1/event/fire/:name`: the body is the payload (at most 512 bytes, else 413);
/// `?node`, `?service` and `?tag` are regular expressions that choose which agents act on it.
/// Answers the event as stored, with its ID and Lamport time.
async fn fire(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { p, o, .. }: Req,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Another datacenter's event is fired there, by one of its servers.
    let remote =
        o.dc.as_deref()
            .filter(|dc| !dc.is_empty() && !dc.eq_ignore_ascii_case(a.backend.datacenter()));
    // Cairn's internal events (the keyring's) use this prefix. Refused here even for the name
    // `EventLog::create` lets through for the agent's own use: no client may fire one.
    if name.starts_with("_cairn") {
        return Err(ApiError::bad_request(format!(
            "Event name {name:?} is reserved for internal use"
        )));
    }
    // The event log validates the rest: a missing name, the payload's size, a tag filter
    // without a service filter, filters that are not regular expressions.
    let ev = a.events.create(
        &name,
        body.to_vec(),
        p.get("node").unwrap_or_default(),
        p.get("service").unwrap_or_default(),
        p.get("tag").unwrap_or_default(),
    )?;
    let ev = match remote {
        Some(dc) => a.backend.fire_event_in(dc, ev).await?,
        None => a.fire_event(ev).await?,
    };
    Ok(json_response(&ev, o.pretty))
}

/// The list's filters: `?name` selects events by exact name; `?node`, `?service` and `?tag`
/// are regular expressions (Consul's documented form, unanchored as Go's `MatchString`)
/// matched against the filter each event was fired with, so `?service=web` lists the events
/// aimed at `web`, `web-api`, .... An empty parameter filters nothing.
struct ListFilter {
    name: Option<String>,
    node: Option<regex::Regex>,
    service: Option<regex::Regex>,
    tag: Option<regex::Regex>,
}

impl ListFilter {
    /// Compiles the parameters; a pattern that is not a regular expression is a 400.
    fn parse(p: &Params) -> Result<ListFilter, ApiError> {
        let re = |key: &str| -> Result<Option<regex::Regex>, ApiError> {
            match p.get(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => regex::Regex::new(v).map(Some).map_err(|e| {
                    ApiError::bad_request(format!("Invalid regular expression for ?{key}: {e}"))
                }),
            }
        };
        Ok(ListFilter {
            name: p.get("name").filter(|v| !v.is_empty()).map(str::to_string),
            node: re("node")?,
            service: re("service")?,
            tag: re("tag")?,
        })
    }

    fn keep(&self, ev: &UserEvent) -> bool {
        let matches =
            |re: &Option<regex::Regex>, have: &str| re.as_ref().is_none_or(|r| r.is_match(have));
        self.name.as_ref().is_none_or(|n| *n == ev.name)
            && matches(&self.node, &ev.node_filter)
            && matches(&self.service, &ev.service_filter)
            && matches(&self.tag, &ev.tag_filter)
    }
}

/// `GET /v1/event/list`: the events this agent holds, oldest first, blocking on `?index`
/// until the newest one (after filtering) is another.
async fn list(State(a): State<AppState>, Req { p, o, .. }: Req) -> Result<Response, ApiError> {
    check_dc(&a, o.dc.as_deref())?;
    let filter = ListFilter::parse(&p)?;
    let authz = a.authorize().await?;
    let deadline = tokio::time::Instant::now() + o.read.wait_with_jitter();
    loop {
        // Registered before the events are read, so an event arriving in between is not
        // missed (`notify_waiters` wakes registered waiters only).
        let changed = a.events.notify.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (_, all) = a.events.list(None);
        let events: Vec<UserEvent> = all
            .into_iter()
            .filter(|e| filter.keep(e) && authz.allows(crate::acl::Access::EventRead(&e.name)))
            .collect();
        let index = events
            .last()
            .map_or(1, |e| crate::events::id_to_index(&e.id).max(1));
        // `!=`, not `>`: the index is a hash of the newest event's ID, not a counter.
        if o.read.min_index == 0
            || index != o.read.min_index
            || tokio::time::Instant::now() >= deadline
        {
            let mut r = json_response(&events, o.pretty);
            if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
                r.headers_mut()
                    .insert(HeaderName::from_static("x-consul-index"), v);
            }
            return Ok(r);
        }
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
