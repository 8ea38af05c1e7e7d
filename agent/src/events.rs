//! User events this agent received: the last 256, with Consul's JSON fields and the
//! Lamport clock. Events travel through gossip (`cluster`); each member keeps those whose
//! filters select it, so `/v1/event/list` differs from one agent to the next, as in Consul.

use std::collections::VecDeque;
use std::sync::Mutex;

use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::api::Error;

/// Events kept per agent.
///
/// Consul's size: the list is a recent window, not a history, and watchers that fall further behind
/// lose events as they would with Consul.
pub const EVENT_BUFFER: usize = 256;
/// Largest payload accepted (Serf's user event limit).
///
/// An event is broadcast to every member in gossip messages; the bound keeps each broadcast small,
/// and Consul refuses larger payloads with the same limit.
pub const MAX_PAYLOAD: usize = 512;

/// A user event, as `/v1/event/fire` and `/v1/event/list` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEvent {
    /// Event UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub name: String,
    /// Payload (base64 in JSON, `null` when empty).
    #[serde(with = "cairn_catalog::model::b64_opt")]
    pub payload: Option<Vec<u8>>,
    /// Node name regex.
    pub node_filter: String,
    /// Service name regex.
    pub service_filter: String,
    /// Tag regex (with a service filter).
    pub tag_filter: String,
    /// Format version.
    pub version: u32,
    /// Lamport time.
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

/// Consul's `IDToIndex`: the index a client passes back to block for newer events.
///
/// Events have no Raft index, so Consul derives one from the newest event's UUID: any new event
/// changes it, which is all a blocking client needs. Not ordered: a blocked list returns when the
/// index differs from the client's, not when it is greater.
pub fn id_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 0;
    }
    let lower = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let upper = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    lower ^ upper
}

/// The buffer and this agent's Lamport clock, under one lock so an event's time and its place in
/// the list agree.
#[derive(Default)]
struct Inner {
    events: VecDeque<UserEvent>,
    ltime: u64,
}

/// The event buffer of an agent.
#[derive(Default)]
pub struct EventLog {
    inner: Mutex<Inner>,
    /// Signalled on every new event.
    pub notify: Notify,
}

/// Where an event is delivered: this agent's node name and its services with their tags.
pub struct Recipient<'a> {
    /// Node name.
    pub node: &'a str,
    /// (service name, tags) of local services.
    pub services: Vec<(String, Vec<String>)>,
}

/// An empty filter matches everything (`None`); others are regular expressions, as in Consul.
fn compile(what: &str, re: &str) -> Result<Option<Regex>, Error> {
    if re.is_empty() {
        return Ok(None);
    }
    Regex::new(re)
        .map(Some)
        .map_err(|e| Error::Invalid(format!("Invalid {what} filter: {e}")))
}

impl EventLog {
    /// An empty log.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Validates and stamps a new event (ID and Lamport time).
    ///
    /// Filters are compiled here only to refuse a bad one with a 400 before the event is sent; each
    /// receiver compiles them again to match.
    pub fn create(
        &self,
        name: &str,
        payload: Vec<u8>,
        node_filter: &str,
        service_filter: &str,
        tag_filter: &str,
    ) -> Result<UserEvent, Error> {
        if name.is_empty() {
            return Err(Error::Invalid("Missing name".into()));
        }
        // `_cairn*` names carry internal operations: the keyring event is created here by the agent
        // itself, every other such name is refused (the HTTP edge refuses them all).
        if name.starts_with("_cairn") && name != crate::keyring::KEYRING_EVENT {
            return Err(Error::Invalid(format!(
                "Event name {name:?} is reserved for internal use"
            )));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge(format!(
                "Payload too large: user event exceeds limit of {MAX_PAYLOAD} bytes ({} given)",
                payload.len()
            )));
        }
        if !tag_filter.is_empty() && service_filter.is_empty() {
            return Err(Error::Invalid(
                "Cannot provide tag filter without service filter".into(),
            ));
        }
        compile("node", node_filter)?;
        compile("service", service_filter)?;
        compile("tag", tag_filter)?;
        let ltime = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.ltime += 1;
            g.ltime
        };
        Ok(UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            payload: (!payload.is_empty()).then_some(payload),
            node_filter: node_filter.to_string(),
            service_filter: service_filter.to_string(),
            tag_filter: tag_filter.to_string(),
            version: 1,
            ltime,
        })
    }

    /// Whether an event's filters select this recipient.
    ///
    /// A filter that does not compile selects no one, rather than everyone: an event from a newer
    /// or foreign sender is then dropped, not delivered too widely.
    pub fn matches(ev: &UserEvent, to: &Recipient<'_>) -> bool {
        let Ok(node_re) = compile("node", &ev.node_filter) else {
            return false;
        };
        if node_re.is_some_and(|re| !re.is_match(to.node)) {
            return false;
        }
        let (Ok(svc_re), Ok(tag_re)) = (
            compile("service", &ev.service_filter),
            compile("tag", &ev.tag_filter),
        ) else {
            return false;
        };
        match svc_re {
            None => true,
            // The tag filter applies to the services the service filter selected: one service must
            // match both.
            Some(svc_re) => to.services.iter().any(|(name, tags)| {
                svc_re.is_match(name)
                    && tag_re
                        .as_ref()
                        .is_none_or(|re| tags.iter().any(|t| re.is_match(t)))
            }),
        }
    }

    /// Records a received event (deduplicated by ID) and wakes listeners.
    pub fn receive(&self, ev: UserEvent) {
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.events.iter().any(|e| e.id == ev.id) {
                return;
            }
            // Lamport rule: the clock never goes behind an event seen, so events fired here later
            // are ordered after it.
            g.ltime = g.ltime.max(ev.ltime);
            if g.events.len() == EVENT_BUFFER {
                g.events.pop_front();
            }
            g.events.push_back(ev);
        }
        self.notify.notify_waiters();
    }

    /// Events, oldest first, optionally by name, with the blocking index.
    pub fn list(&self, name: Option<&str>) -> (u64, Vec<UserEvent>) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let events: Vec<UserEvent> = g
            .events
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect();
        // Never 0 (a 0 index makes a blocking client poll without waiting).
        let index = events.last().map_or(1, |e| id_to_index(&e.id).max(1));
        (index, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_consul_id_to_index() {
        // lower 16 hex digits xor upper 16 hex digits.
        let id = "00000000-0000-0001-0000-000000000003";
        assert_eq!(id_to_index(id), 1 ^ 3);
    }

    #[test]
    fn filters_select_recipients() {
        let log = EventLog::new();
        let ev = log
            .create("deploy", b"x".to_vec(), "^web", "api", "v2")
            .expect("valid");
        let yes = Recipient {
            node: "web-1",
            services: vec![("api".into(), vec!["v2".into()])],
        };
        let wrong_tag = Recipient {
            node: "web-1",
            services: vec![("api".into(), vec!["v1".into()])],
        };
        assert!(EventLog::matches(&ev, &yes));
        assert!(!EventLog::matches(&ev, &wrong_tag));
        assert!(log.create("x", vec![0; 600], "", "", "").is_err());
        assert!(log.create("x", vec![], "(", "", "").is_err());
        assert!(log.create("x", vec![], "", "", "tag").is_err());
    }

    #[test]
    fn keeps_last_256_and_dedups() {
        let log = EventLog::new();
        let first = log.create("e", vec![], "", "", "").expect("valid");
        log.receive(first.clone());
        log.receive(first.clone());
        assert_eq!(log.list(None).1.len(), 1);
        for _ in 0..300 {
            let e = log.create("e", vec![], "", "", "").expect("valid");
            log.receive(e);
        }
        let (idx, all) = log.list(Some("e"));
        assert_eq!(all.len(), EVENT_BUFFER);
        assert!(all.iter().all(|e| e.id != first.id));
        assert_eq!(idx, id_to_index(&all[EVENT_BUFFER - 1].id).max(1));
    }
}
