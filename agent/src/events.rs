//! User events this agent received: the last 256, with Consul's JSON fields and the
//! Lamport clock. Until gossip carries them, an event fired here is delivered here only.

use std::collections::VecDeque;
use std::sync::Mutex;

use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::api::Error;

/// Events kept per agent.
pub const EVENT_BUFFER: usize = 256;
/// Largest payload accepted (Serf's user event limit).
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
pub fn id_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 0;
    }
    let lower = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let upper = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    lower ^ upper
}

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
