//! Request identities for exactly-once writes: every write this process proposes travels with
//! a [`RequestId`] (this process's random client ID and a sequence number) that all its
//! retries share, so the state machine applies it once however many copies reach the log
//! (see `cairn_catalog::store::clients`).
//!
//! The floor sent with each request is the lowest sequence number this process still waits
//! for: the state machine may forget every result below it, and refuses late copies of them.
//!
//! One `Requests` per process role that proposes: the server's endpoints and duties, and a client
//! agent's backend. A process restart draws a new client ID, so sequence numbers never need to
//! survive a restart.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_catalog::Command;
use cairn_catalog::command::RequestId;

/// Hands out request identities and tracks which are still in flight.
#[derive(Debug)]
pub struct Requests {
    /// A random UUID drawn at start (seeded in reproducible tests): unique across processes and
    /// runs, so two processes never share a client table entry in the state machine.
    client: String,
    /// Starts at 1 and only grows: the state machine refuses a sequence below the floor it has
    /// seen, so numbers must never be reused within a run.
    next: AtomicU64,
    /// Ordered, so the floor (the lowest sequence still waiting) is its first element.
    in_flight: Mutex<BTreeSet<u64>>,
}

/// A request in flight: its sequence number counts as unfinished until this is dropped.
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<Requests>,
    seq: u64,
}

// Dropping the ticket, on success, error or cancellation alike, is what lets the floor rise: a
// write abandoned by its caller must not pin the state machine's memory of its client.
impl Drop for Ticket {
    fn drop(&mut self) {
        self.owner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.seq);
    }
}

impl Requests {
    /// Identities for a new process run (a fresh random client ID: a restarted process never
    /// reuses the sequence numbers of its previous run).
    pub fn new() -> Arc<Requests> {
        Arc::new(Requests {
            client: crate::random::uuid().to_string(),
            next: AtomicU64::new(1),
            in_flight: Mutex::new(BTreeSet::new()),
        })
    }

    /// A new identity, in flight until the ticket is dropped.
    pub fn next(self: &Arc<Self>) -> (RequestId, Ticket) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        // The floor is computed with this request already in flight, so it is never above `seq`.
        let floor = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.insert(seq);
            in_flight.first().copied().unwrap_or(seq)
        };
        let id = RequestId {
            client: self.client.clone(),
            seq,
            floor,
        };
        let ticket = Ticket {
            owner: Arc::clone(self),
            seq,
        };
        (id, ticket)
    }

    /// Gives `cmd` an identity, unless it has one already (a write forwarded to this server by
    /// another agent keeps the identity its proposer gave it). The ticket, if any, must live
    /// until the write's outcome is known or given up.
    pub fn identify(self: &Arc<Self>, cmd: Command) -> (Command, Option<Ticket>) {
        // A batch is never given an identity of its own: each command in it carries its own, and
        // the state machine deduplicates per command.
        if matches!(cmd, Command::Request { .. } | Command::Batch(_)) {
            return (cmd, None);
        }
        let (id, ticket) = self.next();
        let cmd = Command::Request {
            id,
            cmd: Box::new(cmd),
        };
        (cmd, Some(ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(cmd: &Command) -> RequestId {
        match cmd {
            Command::Request { id, .. } => id.clone(),
            other => panic!("not identified: {other:?}"),
        }
    }

    #[test]
    fn the_floor_is_the_oldest_request_still_in_flight() {
        let r = Requests::new();
        let (a, ta) = r.identify(Command::Noop);
        let (b, tb) = r.identify(Command::Noop);
        assert_eq!((id_of(&a).seq, id_of(&a).floor), (1, 1));
        assert_eq!((id_of(&b).seq, id_of(&b).floor), (2, 1));
        drop(ta);
        let (c, _tc) = r.identify(Command::Noop);
        assert_eq!((id_of(&c).seq, id_of(&c).floor), (3, 2));
        drop(tb);
        let (d, _td) = r.identify(Command::Noop);
        assert_eq!(id_of(&d).floor, 3);
        // An identified command keeps its identity.
        let (same, none) = r.identify(d.clone());
        assert_eq!(same, d);
        assert!(none.is_none());
        assert_ne!(
            id_of(&d).client,
            id_of(&Requests::new().identify(Command::Noop).0).client
        );
    }
}
