//! Network coordinates (`/v1/coordinate`): the batch update agents send and the reads.
//!
//! Keyed by (node, segment) in the replicated state, so `?near=` sorting answers the same on
//! every server. A node's coordinates go when the node is deregistered.

use std::sync::Arc;

use super::{State, StoreError, Tx, WatchKey};
use crate::command::Response;
use crate::model::{Coordinate, CoordinateEntry};

impl Tx<'_> {
    /// `CoordinateUpdate`: sets nodes' coordinates. All or nothing on invalid values; entries
    /// for nodes not in the catalog are skipped, as Consul does (a node may leave between the
    /// agent's update and its application).
    pub(crate) fn coordinate_update(
        &mut self,
        entries: &[CoordinateEntry],
    ) -> Result<Response, StoreError> {
        // Checked before anything is written: one bad entry refuses the whole batch.
        if let Some(bad) = entries.iter().find(|e| !e.coord.is_valid()) {
            return Err(StoreError::Invalid(format!(
                "invalid coordinate for node {}",
                bad.node
            )));
        }
        let mut any = false;
        for e in entries {
            if !self.st.nodes.contains_key(&e.node) {
                continue;
            }
            self.st.coordinates.insert(
                (e.node.clone(), e.segment.clone()),
                Arc::new(e.coord.clone()),
            );
            any = true;
        }
        // A batch that only named unknown nodes changed nothing, so wakes nobody.
        if any {
            self.bump(WatchKey::Coordinates);
        }
        Ok(Response::Done)
    }
}

impl State {
    /// Every stored network coordinate, by node then segment; with `node`, that node's only.
    /// One index for the whole table: any update moves it.
    pub fn coordinates(&self, node: Option<&str>) -> (u64, Vec<CoordinateEntry>) {
        let entries = self
            .coordinates
            .iter()
            .filter(|((n, _), _)| node.is_none_or(|want| n == want))
            .map(|((n, seg), c)| CoordinateEntry {
                node: n.clone(),
                segment: seg.clone(),
                coord: Coordinate::clone(c),
            })
            .collect();
        (self.index_of(&WatchKey::Coordinates), entries)
    }
}
