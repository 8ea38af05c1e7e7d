//! Prepared queries (`/v1/query`): creation, replacement and deletion, and the reads.
//!
//! The store only keeps queries and enforces what must hold across all of them (unique IDs and
//! names, a live session); executing a query (templates, failover, sorting by distance) is the
//! server's job, on a read of the state. A query tied to a session is deleted with it.

use std::sync::Arc;

use super::{State, StoreError, Tx, WatchKey};
use crate::command::Response;
use crate::model::PreparedQuery;

impl Tx<'_> {
    /// `QuerySet`: creates (`create`) or replaces a prepared query. IDs and names are unique,
    /// and neither may be the other's (a name must not look up another query's ID); a query
    /// tied to a session needs that session to exist.
    pub(crate) fn query_set(
        &mut self,
        query: &PreparedQuery,
        create: bool,
    ) -> Result<Response, StoreError> {
        let existing = self.st.queries.get(&query.id).cloned();
        // The proposer chose a fresh ID for a create, so a taken one is refused rather than
        // overwritten; an update must name an existing query.
        match (&existing, create) {
            (Some(_), true) => {
                return Err(StoreError::Invalid(format!(
                    "prepared query ID {} is already in use",
                    query.id
                )));
            }
            (None, false) => {
                return Err(StoreError::NotFound(format!(
                    "Cannot modify non-existent prepared query: '{}'",
                    query.id
                )));
            }
            _ => {}
        }
        // Queries are executed by name or by ID through one lookup, so a name must be neither
        // another query's name nor any query's ID (found by scanning the table).
        if !query.name.is_empty() {
            for other in self.st.queries.values() {
                if other.id != query.id && other.name == query.name {
                    return Err(StoreError::Invalid(format!(
                        "name '{}' aliases an existing query name",
                        query.name
                    )));
                }
            }
            if self.st.queries.contains_key(&query.name) {
                return Err(StoreError::Invalid(format!(
                    "name '{}' aliases an existing query ID",
                    query.name
                )));
            }
        }
        if !query.session.is_empty() && !self.st.sessions.contains_key(&query.session) {
            return Err(StoreError::Invalid(format!(
                "invalid session '{}'",
                query.session
            )));
        }
        // The indexes are the store's: a replacement keeps its creation index.
        let mut q = query.clone();
        q.create_index = existing.map_or(self.index, |e| e.create_index);
        q.modify_index = self.index;
        self.st.queries.insert(q.id.clone(), Arc::new(q));
        self.bump(WatchKey::Queries);
        Ok(Response::Done)
    }

    /// `QueryDelete`: deletes a prepared query (nothing if it does not exist).
    pub(crate) fn query_delete(&mut self, id: &str) -> Response {
        // Only a real deletion moves the index; deleting a missing query still succeeds.
        if self.st.queries.remove(id).is_some() {
            self.bump(WatchKey::Queries);
        }
        Response::Done
    }
}

impl State {
    /// Every prepared query, by ID, with the query table's index (lookups by name or template
    /// prefix are done on this list by the caller).
    pub fn queries(&self) -> (u64, Vec<Arc<PreparedQuery>>) {
        (
            self.index_of(&WatchKey::Queries),
            self.queries.values().cloned().collect(),
        )
    }
}
