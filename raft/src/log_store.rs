//! The Raft log and vote.
//!
//! Entries live in memory (a `BTreeMap`, so replication reads never touch the disk) and, for a
//! durable store, in a `redb` file. Every mutation goes, in order, through one writer thread:
//! it takes everything queued, writes it in one transaction and commits (one fsync), then
//! acknowledges each operation. Many concurrent client writes therefore share one fsync, and
//! no append is acknowledged before it is on disk.
//!
//! On disk each entry is a version byte followed by the JSON of the entry; redb checksums its
//! pages, so a torn last commit is rolled back to the previous (acknowledged) one at open, and
//! any entry that fails to decode stops start-up with an error naming its index.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const ENTRY_VERSION: u8 = 1;
const FORMAT_KEY: &str = "format";
const FORMAT: &[u8] = b"cairn-raft-log-v1";

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

#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

enum Op {
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    Truncate(u64, oneshot::Sender<Result<(), String>>),
    Purge(LogId, oneshot::Sender<Result<(), String>>),
    Vote(Vec<u8>, oneshot::Sender<Result<(), String>>),
    Committed(Vec<u8>),
}

struct Inner {
    cache: Mutex<Cache>,
    writer: Option<Mutex<mpsc::Sender<Op>>>,
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

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, msg: impl ToString) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(msg.to_string()))
}

fn encode(entry: &Entry) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![ENTRY_VERSION];
    serde_json::to_writer(&mut out, entry)
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
    Ok(out)
}

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
    /// A log kept in memory only (`-dev` and tests).
    pub fn in_memory() -> LogStore {
        LogStore {
            inner: Arc::new(Inner {
                cache: Mutex::new(Cache::default()),
                writer: None,
                thread: Mutex::new(None),
            }),
        }
    }

    /// Opens (or creates) the durable log at `path`, loading it into memory.
    pub fn open(path: &Path) -> Result<LogStore, OpenError> {
        let p = path.display().to_string();
        let db_err = |e: Box<dyn std::error::Error + Send + Sync>| OpenError::Database {
            path: p.clone(),
            source: e,
        };
        let corrupt = |what: String| OpenError::Corrupt {
            path: p.clone(),
            what,
        };
        let db = Database::create(path).map_err(|e| db_err(Box::new(e)))?;
        let mut cache = Cache::default();
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
                if entry.get_log_id().index != index {
                    return Err(corrupt(format!(
                        "log entry stored at {index} claims index {}",
                        entry.get_log_id().index
                    )));
                }
                cache.entries.insert(index, entry);
                expected = Some(index + 1);
            }
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(db, rx))
            .map_err(|e| db_err(Box::new(e)))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                cache: Mutex::new(cache),
                writer: Some(Mutex::new(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

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

    /// Number of entries held (for metrics).
    pub fn len(&self) -> usize {
        self.cache().entries.len()
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.cache().entries.is_empty()
    }
}

/// The writer thread: batches everything queued into one durable transaction.
fn writer_loop(db: Database, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = write_batch(&db, &batch).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        for op in batch {
            match op {
                Op::Append(_, cb) => {
                    cb.log_io_completed(result.clone().map_err(std::io::Error::other))
                }
                Op::Truncate(_, tx) | Op::Purge(_, tx) | Op::Vote(_, tx) => {
                    let _ = tx.send(result.clone());
                }
                Op::Committed(_) => {}
            }
        }
    }
}

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
                    for (i, bytes) in entries {
                        logs.insert(*i, bytes.as_slice())?;
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
        Ok(self
            .cache()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let c = self.cache();
        let last = c
            .entries
            .last_key_value()
            .map(|(_, e)| *e.get_log_id())
            .or(c.last_purged);
        Ok(LogState {
            last_purged_log_id: c.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

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

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let durable = self.inner.writer.is_some();
            let mut c = self.cache();
            for e in entries {
                let idx = e.get_log_id().index;
                if durable {
                    encoded.push((idx, encode(&e)?));
                }
                c.entries.insert(idx, e);
            }
        }
        if self.inner.writer.is_some() {
            // Readable now (in memory); acknowledged once the writer thread committed it.
            self.send(Op::Append(encoded, callback))?;
        } else {
            callback.log_io_completed(Ok(()));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut c = self.cache();
            let _ = c.entries.split_off(&log_id.index);
        }
        self.send_and_wait(|tx| Op::Truncate(log_id.index, tx), ErrorSubject::Logs)
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut c = self.cache();
            let keep = c.entries.split_off(&(log_id.index + 1));
            c.entries = keep;
            c.last_purged = Some(log_id);
        }
        self.send_and_wait(|tx| Op::Purge(log_id, tx), ErrorSubject::Logs)
            .await
    }
}
