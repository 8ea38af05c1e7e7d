//! Autopilot's settings (`/v1/operator/autopilot/configuration`): one record, written by the
//! first leader from its configuration or by an operator, with check-and-set.
//!
//! In the replicated state rather than in each server's configuration, so that every server
//! acts on the same settings and a change made through the API outlives leader changes.

use std::sync::Arc;

use super::{State, Tx, WatchKey};
use crate::command::Response;
use crate::model::AutopilotConfig;

impl Tx<'_> {
    /// `AutopilotSet`: replaces the settings; with `cas`, only if their ModifyIndex is that
    /// (0: only if none are set yet). Answers whether it wrote, as Consul's `?cas=` does.
    pub(crate) fn autopilot_set(&mut self, config: &AutopilotConfig, cas: Option<u64>) -> Response {
        // No settings yet reads as index 0, so `cas: Some(0)` writes only the first settings:
        // what a new leader uses to seed them from its configuration without overwriting an
        // operator's.
        let current = self.st.autopilot.as_ref().map_or(0, |c| c.modify_index);
        if cas.is_some_and(|want| want != current) {
            return Response::Bool(false);
        }
        // The first write's index survives replacements, as a record's `CreateIndex` does.
        let mut next = config.clone();
        next.create_index = self
            .st
            .autopilot
            .as_ref()
            .map_or(self.index, |c| c.create_index);
        next.modify_index = self.index;
        self.st.autopilot = Some(Arc::new(next));
        self.bump(WatchKey::Autopilot);
        Response::Bool(true)
    }
}

impl State {
    /// Autopilot's settings, if written; `None` until the first leader (or an operator)
    /// writes them, so callers fall back to their configured defaults.
    pub fn autopilot(&self) -> (u64, Option<Arc<AutopilotConfig>>) {
        (self.index_of(&WatchKey::Autopilot), self.autopilot.clone())
    }
}
