//! The Raft log and vote.
//!
//! A durable store keeps every entry in a `redb` file and the most recent ones, up to a memory
//! budget, decoded in memory too (a `BTreeMap`), so replicating fresh entries never touches the
//! disk while a long log (a big batch of writes, a restore) costs no memory twice; older
//! entries, read only by a lagging follower's catch-up, come from the file. Only entries the
//! writer has committed leave memory. Every mutation goes, in order, through one writer thread:
//! it takes everything queued, writes it in one transaction and commits (one fsync), then
//! acknowledges each operation. Many concurrent client writes therefore share one fsync, and
//! no append is acknowledged before it is on disk.
//!
//! The in-memory store (`-dev`) keeps every entry until openraft purges it, like the durable
//! one, but nothing spills to a file, and openraft snapshots and purges by entry count only:
//! 400 writes of 512 KiB values held 200 MiB that never came back. [`bound_in_memory`] keeps
//! it bounded in bytes: past a budget it has everything applied snapshotted and the log purged
//! up to the snapshot (purging frees the entries at once).
//!
//! On disk each entry is a version byte followed by the JSON of the entry; redb checksums its
//! pages, so a torn last commit is rolled back to the previous (acknowledged) one at open, and
//! any entry that fails to decode stops start-up with an error naming its index. An entry
//! holding a command type this version does not know (a newer server wrote it) is not
//! malformed: it is kept as written, so the log stays whole and is handed on unchanged, and the
//! state machine skips or refuses it when it comes to apply it (see `cairn_catalog::command`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::{Entry, LogId, Raft, StorageError, TypeConfig, Vote};

/// Entries by index: redb keeps them sorted, so ranges (catch-up reads, truncation, purge)
/// are range operations.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The vote, the committed log ID, the last purged log ID and the file's format, as JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// First byte of every stored entry: a later encoding can be told apart entry by entry.
const ENTRY_VERSION: u8 = 1;
/// Where the file records its format.
const FORMAT_KEY: &str = "format";
/// This build's format: a file recording another one (a future layout, another program's
/// redb file) is refused at open rather than misread.
const FORMAT: &[u8] = b"cairn-raft-log-v1";

/// Encoded bytes of recent entries a durable log keeps decoded in memory: several append
/// requests' worth (the network sends about 1 MiB at a time), so followers that keep up are
/// served from memory.
pub const DEFAULT_MEMORY_BUDGET: usize = 8 << 20;
/// redb's page cache for the log file (its default is 1 GiB): the hot entries are in memory
/// already, so the file is mostly written, and read back only for catch-up.
const REDB_CACHE: usize = 16 << 20;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database file could not be opened or created.
    #[error("raft log {path}: {source}")]
    Database {
        /// Path.
        path: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file holds something this build cannot read.
    #[error("raft log {path}: {what}")]
    Corrupt {
        /// Path.
        path: String,
        /// What is wrong.
        what: String,
    },
}

/// Bytes of entries an in-memory log may hold before [`bound_in_memory`] compacts it: what
/// the durable store keeps in memory too.
pub const IN_MEMORY_BUDGET: usize = DEFAULT_MEMORY_BUDGET;

/// How often [`bound_in_memory`] looks at the log's size: reading a counter, so cheap; the
/// log can only outgrow its budget by what is written in that time.
const COMPACT_CHECK: Duration = Duration::from_millis(250);

/// How long [`bound_in_memory`] waits for a snapshot or a purge it asked for, before looking
/// again (a large state takes a while to serialize).
const COMPACT_WAIT: Duration = Duration::from_secs(30);

/// The log as openraft sees it: recent entries in memory, plus the small records (vote,
/// committed, purged) read at every step. Shared with the writer thread under one mutex.
#[derive(Default)]
struct Cache {
    /// The most recent entries (all of them for the in-memory store). Never empty while the
    /// log holds an entry after `last_purged`: the last one always stays.
    entries: BTreeMap<u64, Slot>,
    /// Sum of the encoded sizes in `entries`.
    bytes: usize,
    /// First index in the log (in memory or only on disk).
    first: Option<u64>,
    /// The last entry removed behind a snapshot: the log's "last ID" once it is empty.
    last_purged: Option<LogId>,
    /// The vote as saved (on disk first, for the durable store).
    vote: Option<Vote>,
    /// The last committed log ID openraft reported (a hint to replay less at start).
    committed: Option<LogId>,
}

/// An entry held in memory.
struct Slot {
    entry: Entry,
    /// Encoded size (the payload's approximate size in the in-memory store).
    size: usize,
    /// Committed to the file by the writer: only such entries may leave memory.
    flushed: bool,
}

impl Cache {
    /// Drops the oldest entries beyond `budget`, but only those the writer has committed to
    /// the file, and never the last one.
    ///
    /// An entry not yet committed could not be read back from the file; the last one is what
    /// the log state (`last_log_id`) is read from.
    fn evict(&mut self, budget: usize) {
        while self.bytes > budget && self.entries.len() > 1 {
            if !self
                .entries
                .first_key_value()
                .is_some_and(|(_, s)| s.flushed)
            {
                break;
            }
            if let Some((_, slot)) = self.entries.pop_first() {
                self.bytes -= slot.size;
            }
        }
    }

    /// Adds (or replaces) the entry at its index, keeping `bytes` and `first` in step.
    fn insert(&mut self, entry: Entry, size: usize, flushed: bool) {
        let idx = entry.get_log_id().index;
        if self.first.is_none_or(|f| idx < f) {
            self.first = Some(idx);
        }
        let slot = Slot {
            entry,
            size,
            flushed,
        };
        if let Some(old) = self.entries.insert(idx, slot) {
            self.bytes -= old.size;
        }
        self.bytes += size;
    }

    /// The last entry's ID, or the last purged one's when none is left.
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, s)| *s.entry.get_log_id())
            .or(self.last_purged)
    }

    /// Marks the entries of a committed append as on disk (unless replaced meanwhile).
    ///
    /// Matched by log ID, not index: a truncation and a new leader's entry at the same index
    /// may come between the append and its commit, and the report about the old entry must
    /// not let the new one, not yet written, leave memory.
    fn mark_flushed(&mut self, written: &[(LogId, Vec<u8>)]) {
        for (id, _) in written {
            if let Some(slot) = self.entries.get_mut(&id.index)
                && slot.entry.get_log_id() == id
            {
                slot.flushed = true;
            }
        }
    }

    /// Drops the entries from `since` on (a new leader overwrites them).
    fn truncate(&mut self, since: u64) {
        for (_, slot) in self.entries.split_off(&since) {
            self.bytes -= slot.size;
        }
        // Truncated from the first entry or before it: nothing is left, on disk either.
        if self.first.is_some_and(|f| f >= since) {
            self.first = None;
        }
    }

    /// Drops the entries up to `upto` (a snapshot covers them) and remembers it as purged.
    fn purge(&mut self, upto: LogId) {
        let keep = self.entries.split_off(&(upto.index + 1));
        for (_, slot) in std::mem::replace(&mut self.entries, keep) {
            self.bytes -= slot.size;
        }
        self.last_purged = Some(upto);
        // The last entry is always in memory: none there after `upto` means none at all.
        self.first = if self.entries.is_empty() {
            None
        } else {
            Some(self.first.map_or(upto.index + 1, |f| f.max(upto.index + 1)))
        };
    }
}

/// Called once an append is on disk (or failed).
type Done = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// A change for the writer thread, applied to the file in the order sent (which is the order
/// openraft made the calls, and the order the cache already reflects).
enum Op {
    /// Encoded entries, and what to call once they are on disk.
    Append(Vec<(LogId, Vec<u8>)>, Done),
    /// Remove the entries from this index on.
    Truncate(u64, oneshot::Sender<Result<(), String>>),
    /// Remove the entries up to this ID and record it as purged.
    Purge(LogId, oneshot::Sender<Result<(), String>>),
    /// Save the vote (JSON); answered once durable.
    Vote(Vec<u8>, oneshot::Sender<Result<(), String>>),
    /// Record the committed log ID (JSON); nobody waits for it.
    Committed(Vec<u8>),
}

struct Inner {
    /// Shared with the writer thread, which marks what it committed.
    cache: Arc<Mutex<Cache>>,
    /// The file (durable store only), for reading entries memory no longer holds.
    db: Option<Arc<Database>>,
    /// Encoded bytes of entries kept in memory (durable store only).
    budget: usize,
    /// The writer thread's queue; `None` for the in-memory store, which has nothing to write.
    writer: Option<Mutex<mpsc::Sender<Op>>>,
    /// Joined on drop, so the file is closed when the last clone goes.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Closes the file: the writer finishes what is queued and releases the database, so the
    /// log can be reopened by this process right away.
    fn drop(&mut self) {
        drop(self.writer.take());
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// The log store (cheap to clone; clones share the log).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

/// A storage error in openraft's terms, which it treats as fatal (see `state_machine`).
fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, msg: impl ToString) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(msg.to_string()))
}

/// An entry as stored: [`ENTRY_VERSION`], then the entry's JSON (its command in the
/// version-1 wire form, see `cairn_catalog::command::wire`).
fn encode(entry: &Entry) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![ENTRY_VERSION];
    serde_json::to_writer(&mut out, entry)
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
    Ok(out)
}

/// What an entry of the in-memory store roughly holds: its command's payload (values, bodies)
/// plus a little for the rest; membership and blank entries are small.
/// Only an estimate, so the in-memory store never encodes an entry just to measure it; the
/// command's size bound is cheap and never below the command's encoded size.
fn approx_size(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(cmd) => 64 + cmd.encoded_size_bound(),
        _ => 256,
    }
}

/// Reads a stored entry; errors name the index, which is what an operator needs to act.
fn decode(index: u64, bytes: &[u8]) -> Result<Entry, String> {
    match bytes.split_first() {
        Some((&ENTRY_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| format!("log entry {index} is corrupt: {e}"))
        }
        Some((v, _)) => Err(format!("log entry {index} has unknown format version {v}")),
        None => Err(format!("log entry {index} is empty")),
    }
}

impl LogStore {
    /// A log kept in memory only (`-dev` and tests). Nothing is ever evicted (there is no
    /// file to read it back from): [`bound_in_memory`] keeps it small by purging instead.
    pub fn in_memory() -> LogStore {
        LogStore {
            inner: Arc::new(Inner {
                cache: Arc::new(Mutex::new(Cache::default())),
                db: None,
                budget: usize::MAX,
                writer: None,
                thread: Mutex::new(None),
            }),
        }
    }

    /// Opens (or creates) the durable log at `path`, checking every entry and keeping the
    /// most recent ones in memory.
    pub fn open(path: &Path) -> Result<LogStore, OpenError> {
        Self::open_with_budget(path, DEFAULT_MEMORY_BUDGET)
    }

    /// [`LogStore::open`] keeping up to `budget` encoded bytes of entries in memory.
    ///
    /// Reads the whole file once: every entry is decoded and checked (contiguous indexes, each
    /// where it claims to be), so damage stops start-up here, naming the entry, instead of
    /// surfacing later when a follower needs that entry.
    pub fn open_with_budget(path: &Path, budget: usize) -> Result<LogStore, OpenError> {
        let p = path.display().to_string();
        let db_err = |e: Box<dyn std::error::Error + Send + Sync>| OpenError::Database {
            path: p.clone(),
            source: e,
        };
        let corrupt = |what: String| OpenError::Corrupt {
            path: p.clone(),
            what,
        };
        // Every page's checksum is verified at open, so damage on disk stops start-up with an
        // error instead of being read back as data.
        let db = redb::Builder::new()
            .set_cache_size(REDB_CACHE)
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
                    corrupt(format!("the file is damaged ({what})"))
                }
                other => db_err(Box::new(other)),
            })?;
        let mut cache = Cache::default();
        // A new file gets the format and the tables; an existing one must have this format.
        {
            let w = db.begin_write().map_err(|e| db_err(Box::new(e)))?;
            {
                let mut meta = w.open_table(META).map_err(|e| db_err(Box::new(e)))?;
                let format = meta
                    .get(FORMAT_KEY)
                    .map_err(|e| db_err(Box::new(e)))?
                    .map(|v| v.value().to_vec());
                match format {
                    None => {
                        meta.insert(FORMAT_KEY, FORMAT)
                            .map_err(|e| db_err(Box::new(e)))?;
                    }
                    Some(f) if f == FORMAT => {}
                    Some(f) => {
                        return Err(corrupt(format!(
                            "unknown log format {:?}",
                            String::from_utf8_lossy(&f)
                        )));
                    }
                }
                w.open_table(LOGS).map_err(|e| db_err(Box::new(e)))?;
            }
            w.commit().map_err(|e| db_err(Box::new(e)))?;
        }
        {
            let r = db.begin_read().map_err(|e| db_err(Box::new(e)))?;
            let meta = r.open_table(META).map_err(|e| db_err(Box::new(e)))?;
            let read_json = |key: &str| -> Result<Option<Vec<u8>>, OpenError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| db_err(Box::new(e)))?
                    .map(|v| v.value().to_vec()))
            };
            if let Some(b) = read_json("vote")? {
                cache.vote =
                    Some(serde_json::from_slice(&b).map_err(|e| corrupt(format!("vote: {e}")))?);
            }
            if let Some(b) = read_json("committed")? {
                cache.committed =
                    serde_json::from_slice(&b).map_err(|e| corrupt(format!("committed: {e}")))?;
            }
            if let Some(b) = read_json("last_purged")? {
                cache.last_purged =
                    serde_json::from_slice(&b).map_err(|e| corrupt(format!("last_purged: {e}")))?;
            }
            let logs = r.open_table(LOGS).map_err(|e| db_err(Box::new(e)))?;
            // A hole would be a lost entry: Raft cannot go on from a log with a gap.
            let mut expected: Option<u64> = None;
            for item in logs.iter().map_err(|e| db_err(Box::new(e)))? {
                let (k, v) = item.map_err(|e| db_err(Box::new(e)))?;
                let index = k.value();
                if let Some(exp) = expected
                    && index != exp
                {
                    return Err(corrupt(format!(
                        "hole in the log: entry {exp} is missing before {index}"
                    )));
                }
                let entry = decode(index, v.value()).map_err(&corrupt)?;
                // Not an error (the state machine decides at apply), but worth saying at start:
                // this server is older than whoever wrote the entry.
                if let openraft::EntryPayload::Normal(cmd) = &entry.payload {
                    for u in cmd.unknown() {
                        tracing::warn!(
                            index,
                            command_type = %u.tag,
                            may_skip = u.ignore_unknown,
                            "the log holds a command type this version does not know"
                        );
                    }
                }
                if entry.get_log_id().index != index {
                    return Err(corrupt(format!(
                        "log entry stored at {index} claims index {}",
                        entry.get_log_id().index
                    )));
                }
                // Evicted as it loads, so start-up stays within the budget too.
                cache.insert(entry, v.value().len(), true);
                cache.evict(budget);
                expected = Some(index + 1);
            }
        }
        // From here on, every change to the file goes through the writer thread.
        let db = Arc::new(db);
        let cache = Arc::new(Mutex::new(cache));
        let (tx, rx) = mpsc::channel();
        let (wdb, wcache) = (Arc::clone(&db), Arc::clone(&cache));
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(&wdb, &wcache, rx))
            .map_err(|e| db_err(Box::new(e)))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                cache,
                db: Some(db),
                budget,
                writer: Some(Mutex::new(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an operation for the writer thread; the in-memory store has none, so nothing to
    /// do.
    fn send(&self, op: Op) -> Result<(), StorageError> {
        match &self.inner.writer {
            None => Ok(()),
            Some(tx) => tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(op)
                .map_err(|_| io_err(ErrorSubject::Logs, ErrorVerb::Write, "log writer stopped")),
        }
    }

    /// Queues an operation and waits until the writer committed it (or failed).
    async fn send_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Op,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        if self.inner.writer.is_none() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_err(subject, ErrorVerb::Write, e)),
            Err(_) => Err(io_err(subject, ErrorVerb::Write, "log writer stopped")),
        }
    }

    /// Number of entries in the log (in memory or only on disk), from the first and last
    /// indexes: the log has no holes, and older entries are not counted in memory.
    pub fn len(&self) -> usize {
        let c = self.cache();
        match (c.first, c.entries.last_key_value()) {
            (Some(f), Some((&l, _))) => usize::try_from(l + 1 - f).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// Whether the log holds no entry. Memory always holds the last entry, so no entry in
    /// memory means none at all.
    pub fn is_empty(&self) -> bool {
        self.cache().entries.is_empty()
    }

    /// Number of entries held decoded in memory (metrics and tests: the tail's size).
    pub fn in_memory_len(&self) -> usize {
        self.cache().entries.len()
    }

    /// The ID of the last entry, or of the last purged one when nothing is left (what
    /// openraft's log state reports). Public because openraft 0.9 does not expose it, and
    /// pre-vote compares it with a candidate's.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.cache().last_log_id()
    }

    /// Bytes of the entries held in memory: encoded sizes for the durable store, approximate
    /// payload sizes for the in-memory one.
    pub fn memory_bytes(&self) -> usize {
        self.cache().bytes
    }

    /// Appends entries: readable at once, `done` called once they are on disk.
    fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        done: Done,
    ) -> Result<(), StorageError> {
        let mut encoded = Vec::new();
        {
            let durable = self.inner.writer.is_some();
            let mut c = self.cache();
            // In memory at once, so readers (replication to followers) see the entries before
            // they are on disk; only the acknowledgement waits for the disk.
            for e in entries {
                if durable {
                    let bytes = encode(&e)?;
                    let id = *e.get_log_id();
                    c.insert(e, bytes.len(), false);
                    encoded.push((id, bytes));
                } else {
                    let size = approx_size(&e);
                    c.insert(e, size, true);
                }
            }
            if durable {
                c.evict(self.inner.budget);
            }
        }
        if self.inner.writer.is_some() {
            // Readable now (in memory); acknowledged once the writer thread committed it.
            self.send(Op::Append(encoded, done))?;
        } else {
            done(Ok(()));
        }
        Ok(())
    }

    /// Reads entries `start..end` from the file (those memory no longer holds). Only entries
    /// the writer committed ever leave memory, so the file holds every one asked for here.
    fn read_disk(db: &Database, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let rerr = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
        let r = db.begin_read().map_err(|e| rerr(&e))?;
        let logs = r.open_table(LOGS).map_err(|e| rerr(&e))?;
        let mut out = Vec::new();
        for item in logs.range(start..end).map_err(|e| rerr(&e))? {
            let (k, v) = item.map_err(|e| rerr(&e))?;
            out.push(decode(k.value(), v.value()).map_err(|e| rerr(&e))?);
        }
        Ok(out)
    }
}

/// The writer thread: batches everything queued into one durable transaction, then marks the
/// appended entries as on disk (they may leave memory from then on).
fn writer_loop(db: &Database, cache: &Mutex<Cache>, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        // Everything queued joins the first operation's transaction (up to a cap, so one
        // transaction stays bounded): concurrent appends share one fsync.
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // One result for the whole batch: the transaction commits or not as a whole.
        let result = write_batch(db, &batch).map_err(|e| e.to_string());
        match &result {
            Err(e) => tracing::error!(error = %e, "raft log write failed"),
            Ok(()) => {
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                for op in &batch {
                    if let Op::Append(written, _) = op {
                        c.mark_flushed(written);
                    }
                }
            }
        }
        // Acknowledged only now, after the commit: an append openraft counts as durable is.
        for op in batch {
            match op {
                Op::Append(_, done) => done(result.clone().map_err(std::io::Error::other)),
                Op::Truncate(_, tx) | Op::Purge(_, tx) | Op::Vote(_, tx) => {
                    let _ = tx.send(result.clone());
                }
                Op::Committed(_) => {}
            }
        }
    }
}

/// Applies a batch to the file in one transaction, in queue order (an append, a truncation
/// of it and the new leader's append must land in that order).
fn write_batch(db: &Database, batch: &[Op]) -> Result<(), Box<dyn std::error::Error>> {
    let mut w = db.begin_write()?;
    // The committed index is an optimisation (less replay at start): recording it alone needs
    // no fsync; the next durable commit carries it to disk.
    if batch.iter().all(|op| matches!(op, Op::Committed(_))) {
        w.set_durability(redb::Durability::None)?;
    }
    {
        let mut logs = w.open_table(LOGS)?;
        let mut meta = w.open_table(META)?;
        for op in batch {
            match op {
                Op::Append(entries, _) => {
                    for (id, bytes) in entries {
                        logs.insert(id.index, bytes.as_slice())?;
                    }
                }
                Op::Truncate(since, _) => {
                    logs.retain_in(*since.., |_, _| false)?;
                }
                Op::Purge(upto, _) => {
                    logs.retain_in(..=upto.index, |_, _| false)?;
                    let b = serde_json::to_vec(&Some(upto))?;
                    meta.insert("last_purged", b.as_slice())?;
                }
                Op::Vote(b, _) => {
                    meta.insert("vote", b.as_slice())?;
                }
                Op::Committed(b) => {
                    meta.insert("committed", b.as_slice())?;
                }
            }
        }
    }
    w.commit()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // openraft passes any kind of range: normalised to `start..end`.
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        // Held throughout, so nothing leaves memory between the two parts of the read.
        let c = self.cache();
        // Entries below the first one in memory come from the file, the rest from memory.
        let in_memory_from = c.entries.first_key_value().map_or(u64::MAX, |(&i, _)| i);
        let mut out = match &self.inner.db {
            Some(db) if start < in_memory_from => {
                Self::read_disk(db, start, end.min(in_memory_from))?
            }
            _ => Vec::new(),
        };
        out.extend(c.entries.range(start..end).map(|(_, s)| s.entry.clone()));
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    /// From memory: the last entry always stays there, so this never reads the file.
    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let c = self.cache();
        Ok(LogState {
            last_purged_log_id: c.last_purged,
            last_log_id: c.last_log_id(),
        })
    }

    /// A clone: readers share the cache and the file with the store.
    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before it returns: a server that restarts must not vote again in a term it
    /// already voted in, or two leaders could be elected in one term.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let b = serde_json::to_vec(vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.send_and_wait(|tx| Op::Vote(b, tx), ErrorSubject::Vote)
            .await?;
        self.cache().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.cache().vote)
    }

    /// Not waited for: the committed ID only saves replay work at start; losing the last one
    /// in a crash costs nothing but that.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.cache().committed = committed;
        if self.inner.writer.is_some() {
            let b = serde_json::to_vec(&committed)
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
            self.send(Op::Committed(b))?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.cache().committed)
    }

    /// Returns at once; `callback` reports the entries durable once the writer has committed
    /// them, which is when openraft counts them toward a quorum.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_then(entries, Box::new(move |r| callback.log_io_completed(r)))
    }

    /// Removes the entries from `log_id` on: a new leader's log replaces them. Waits for the
    /// file, so a restart cannot bring the removed entries back.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        {
            let mut c = self.cache();
            c.truncate(since);
            // Keep the last entry in memory (the log state comes from it): when everything
            // left is only on disk (committed there, since only such entries leave memory),
            // bring the new last one back.
            if c.entries.is_empty()
                && since > 0
                && c.first.is_some_and(|f| f < since)
                && let Some(db) = &self.inner.db
            {
                for e in Self::read_disk(db, since - 1, since)? {
                    let size = encode(&e)?.len();
                    c.insert(e, size, true);
                }
            }
        }
        self.send_and_wait(|tx| Op::Truncate(since, tx), ErrorSubject::Logs)
            .await
    }

    /// Memory first (freed at once), then the file. openraft only purges what a snapshot
    /// covers, so the entries are not needed even if the process dies in between.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache().purge(log_id);
        self.send_and_wait(|tx| Op::Purge(log_id, tx), ErrorSubject::Logs)
            .await
    }
}

/// Keeps the in-memory `log` of `raft` within about `budget` bytes, until the node shuts
/// down: whenever it holds more, everything applied is snapshotted (unless a snapshot covers
/// it already) and the log is purged up to the snapshot, which frees those entries. openraft's
/// own policy counts entries, so it never triggers on a few huge ones; the durable store needs
/// none of this (its old entries live in the file, not in memory).
///
/// A snapshot costs a pass over the state: at most one per budget's worth of bytes written
/// (small entries reach openraft's own entry-count threshold first). Purging ignores `max_in_snapshot_log_to_keep`, which is
/// only for followers catching up without a snapshot: `-dev` has none, and any follower can
/// still install the snapshot.
pub async fn bound_in_memory(raft: Raft, log: LogStore, budget: usize) {
    let mut metrics = raft.metrics();
    let mut tick = tokio::time::interval(COMPACT_CHECK);
    // After a long compaction, look again once, not once per missed tick.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // The node is gone once its metrics sender is.
        if metrics.has_changed().is_err() {
            return;
        }
        if log.memory_bytes() <= budget {
            continue;
        }
        let (applied, snapshot) = {
            let m = metrics.borrow_and_update();
            (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
        };
        let Some(applied) = applied else { continue };
        // A snapshot first, unless one already covers everything applied: the log can only be
        // purged up to a snapshot.
        if snapshot < Some(applied) {
            // An error here only means Raft has shut down.
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            let built = raft
                .wait(Some(COMPACT_WAIT))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= applied),
                    "in-memory log: snapshot",
                )
                .await;
            match built {
                Ok(_) => {}
                Err(openraft::metrics::WaitError::ShuttingDown) => return,
                // Timed out: tried again at a later tick, while the log keeps its entries.
                Err(e) => {
                    tracing::warn!(error = %e, "in-memory Raft log: no snapshot to compact to");
                    continue;
                }
            }
        }
        // Up to the snapshot actually built, which may be past `applied` by now.
        let Some(upto) = metrics.borrow().snapshot.map(|l| l.index) else {
            continue;
        };
        if raft.trigger().purge_log(upto).await.is_err() {
            return;
        }
        // Wait for the purge (openraft may delay it behind replication) before looking again,
        // so one compaction is not asked for twice.
        let purged = raft
            .wait(Some(COMPACT_WAIT))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= upto),
                "in-memory log: purge",
            )
            .await;
        if let Err(openraft::metrics::WaitError::ShuttingDown) = purged {
            return;
        }
        tracing::debug!(
            upto,
            bytes = log.memory_bytes(),
            "in-memory Raft log compacted"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_catalog::command::{KvOp, KvRequest};
    use openraft::CommittedLeaderId;

    /// A KV write of about 1 KB at `index`, so a budget of a few entries is easy to express.
    fn entry(term: u64, index: u64) -> Entry {
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(cairn_catalog::Command::Kv {
                op: KvOp::Set,
                req: KvRequest {
                    key: format!("k{index}"),
                    value: Some(vec![b'x'; 1000]),
                    ..KvRequest::default()
                },
                now_ms: 1,
            }),
        }
    }

    /// Appends one entry and waits until it is on disk.
    async fn append(log: &LogStore, e: Entry) {
        let (tx, rx) = oneshot::channel();
        log.append_then(
            [e],
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .expect("append");
        rx.await.expect("done").expect("on disk");
    }

    /// A fresh directory per test run (process ID and time), so runs never share a file.
    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cairn-log-{tag}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    fn uuid_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }

    /// A long log keeps only its tail in memory and serves the rest from the file; a
    /// truncation below what memory holds leaves the right last entry; a reopen sees it all.
    #[tokio::test]
    async fn a_long_log_keeps_a_bounded_tail_in_memory() {
        let dir = scratch("tail");
        let path = dir.join("raft.db");
        // A budget of a dozen or so of these entries (each about 1.5 KB encoded).
        let mut log = LogStore::open_with_budget(&path, 20_000).expect("open");
        for i in 1..=100u64 {
            append(&log, entry(1, i)).await;
        }
        assert_eq!(log.len(), 100);
        assert!(
            log.in_memory_len() < 30,
            "{} in memory",
            log.in_memory_len()
        );
        // One read across the boundary: the old part from the file, the tail from memory.
        let all = log.try_get_log_entries(1..=100).await.expect("read");
        let indexes: Vec<u64> = all.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (1..=100).collect::<Vec<_>>());
        // A new leader overwrites from 40 on: everything from 40 is gone, 39 is the last.
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 40))
            .await
            .expect("truncate");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(39));
        append(&log, entry(2, 40)).await;
        let got = log.try_get_log_entries(38..41).await.expect("read");
        let ids: Vec<(u64, u64)> = got
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect();
        assert_eq!(ids, vec![(1, 38), (1, 39), (2, 40)]);
        // Purge behind a snapshot, reopen: the same log.
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 10))
            .await
            .expect("purge");
        assert_eq!(log.len(), 30);
        drop(log);
        let mut log = LogStore::open_with_budget(&path, 20_000).expect("reopen");
        assert_eq!(log.len(), 30);
        let got = log.try_get_log_entries(..).await.expect("read");
        assert_eq!(got.len(), 30);
        assert_eq!(got.first().map(|e| e.log_id.index), Some(11));
        assert_eq!(got.last().map(|e| e.log_id.leader_id.term), Some(2));
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A KV write of a `value_len`-byte value: the large entries `-dev`'s bound is about.
    fn big_entry(index: u64, value_len: usize) -> Entry {
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cairn_catalog::Command::Kv {
                op: KvOp::Set,
                req: KvRequest {
                    key: "big".into(),
                    value: Some(vec![b'v'; value_len]),
                    ..KvRequest::default()
                },
                now_ms: 1,
            }),
        }
    }

    /// The in-memory log (`-dev`) counts what its entries hold, and a purge (openraft's, once a
    /// snapshot covers the entries) frees them: its size drops by what was purged.
    #[tokio::test]
    async fn purging_the_in_memory_log_frees_its_entries() {
        let mut log = LogStore::in_memory();
        for i in 1..=400u64 {
            append(&log, big_entry(i, 512 * 1024)).await;
        }
        let full = log.memory_bytes();
        assert!(full >= 400 * 512 * 1024, "{full} bytes for 400 x 512 KiB");
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 390))
            .await
            .expect("purge");
        assert_eq!(log.in_memory_len(), 10);
        let left = log.memory_bytes();
        // Sizes are the commands' encoded bounds: base64 makes a value a third larger.
        assert!(
            left <= 10 * (512 * 1024 * 4 / 3 + 1024),
            "{left} bytes left for 10 entries"
        );
        assert!(left >= 10 * 512 * 1024, "{left}");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(390));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(400));
        // Everything purged: nothing left, the last log ID is the purged one.
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 400))
            .await
            .expect("purge all");
        assert_eq!(log.memory_bytes(), 0);
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(400));
    }

    /// Entries not yet on disk never leave memory, whatever the budget.
    #[tokio::test]
    async fn unwritten_entries_stay_in_memory() {
        let mut c = Cache::default();
        for i in 1..=5 {
            c.insert(entry(1, i), 1000, i <= 2);
        }
        // Budget 0 evicts all it may: 1 and 2 are on disk, 3 is not, so 3 and after stay.
        c.evict(0);
        assert_eq!(c.entries.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        c.mark_flushed(&[(LogId::new(CommittedLeaderId::new(1, 1), 3), Vec::new())]);
        // A flush report for an entry since replaced (other term) does not count.
        c.mark_flushed(&[(LogId::new(CommittedLeaderId::new(9, 1), 4), Vec::new())]);
        c.evict(0);
        assert_eq!(c.entries.keys().copied().collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(c.bytes, 2000);
    }
}
