//! The durable read-model store: one redb file per namespace in a directory
//! beside the event store's (`<data>/projections/<namespace>.redb`), so
//! projections commit independently and a rebuild drops one file's tables.
//!
//! Tables of a file: `rows` ((table, key) → value), `index` ((table, index,
//! index key, key) → ()), `carried` ((table, key) → the index entries the
//! row carries, so an overwrite removes stale ones) and `meta` (the
//! checkpoint). Rows and checkpoint always commit together. A commit is
//! fsynced (`Durability::Immediate`) when the file's last fsynced commit is
//! older than [`DURABLE_EVERY`] ([`DURABLE_EVERY_CATCHING_UP`] for a batch
//! of a catch-up, at once for the batch that ends it); commits in between (a projection catching up commits
//! many batches a second) are not fsynced. A crash then rolls the file back
//! to its last fsynced commit, rows and checkpoint together, and the
//! projection re-applies the events after that checkpoint from the log:
//! never an event twice or skipped, at the cost of redoing that much work.
//! An fsync writes out every page the commits since the last one left
//! dirty and holds up the next commit meanwhile (0.1–0.3 s in a catch-up):
//! once a second it cost a catch-up a fifth of its speed, once every five
//! seconds it made a live projection's p99 lag 150 ms instead of 20 ms.
//! Dropping the store fsyncs every file it opened.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tongban_store::Position;

use super::{
    validate_namespace, BatchChange, BatchDurability, Checkpoint, IndexEntry, IndexRow, KeyRange,
    ReadModelStore, Row, WriteBatch,
};
use crate::error::ProjectionError;

type RowKey<'a> = (&'a str, &'a [u8]);
type IndexKey<'a> = (&'a str, &'a str, &'a [u8], &'a [u8]);

const ROWS: TableDefinition<RowKey<'static>, &[u8]> = TableDefinition::new("rows");
const INDEX: TableDefinition<IndexKey<'static>, ()> = TableDefinition::new("index");
const CARRIED: TableDefinition<RowKey<'static>, &[u8]> = TableDefinition::new("carried");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHECKPOINT_KEY: &str = "checkpoint";

/// Page cache of one read-model file. redb's default (1 GiB per file) let
/// a catch-up of 1M events hold ~300 MB more with no gain in speed.
const CACHE_BYTES: usize = 256 << 20;

/// Longest time between two fsynced commits of one read-model file: after a
/// crash, the work of at most this long is redone from the log.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The same while a projection catches up with history.
pub const DURABLE_EVERY_CATCHING_UP: Duration = Duration::from_secs(5);

fn storage<E: Into<redb::Error>>(context: &'static str) -> impl Fn(E) -> ProjectionError {
    move |e| ProjectionError::storage(context, e.into())
}

/// Read models on disk, one redb file per namespace.
pub struct EmbeddedReadModels {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<Database>>>,
    /// When each file's last fsynced commit started.
    durable_at: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for EmbeddedReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedReadModels")
            .field("dir", &self.dir)
            .finish()
    }
}

impl EmbeddedReadModels {
    /// Opens (creating if needed) the read-model directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ProjectionError> {
        let dir = dir.as_ref().to_path_buf();
        tongban_store::private_fs::create_dir_all(&dir).map_err(|e| {
            ProjectionError::storage(
                format!("creating the read-model directory {}", dir.display()),
                e,
            )
        })?;
        Ok(Self {
            dir,
            open: Mutex::new(HashMap::new()),
            durable_at: Mutex::new(HashMap::new()),
        })
    }

    /// The read-model directory conventionally kept beside an event store's
    /// data directory.
    pub fn beside(data_dir: impl AsRef<Path>) -> Result<Self, ProjectionError> {
        Self::open(data_dir.as_ref().join("projections"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db(&self, namespace: &str) -> Result<Arc<Database>, ProjectionError> {
        validate_namespace(namespace)?;
        let mut open = self.open.lock().map_err(|_| ProjectionError::Storage {
            context: "locking the open read-model files".into(),
            source: Arc::new(std::io::Error::other("a thread panicked")),
        })?;
        if let Some(db) = open.get(namespace) {
            return Ok(db.clone());
        }
        let path = self.dir.join(format!("{namespace}.redb"));
        // Owner-only from the start (redb would create it with the umask).
        tongban_store::private_fs::ensure_file(&path)
            .map_err(|e| ProjectionError::storage(format!("creating {}", path.display()), e))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => ProjectionError::Storage {
                    context: format!("opening {}", path.display()),
                    source: Arc::new(std::io::Error::other(
                        "the file is already open in another process",
                    )),
                },
                other => ProjectionError::storage(format!("opening {}", path.display()), other),
            })?;
        let txn = db
            .begin_write()
            .map_err(storage("starting a write transaction"))?;
        {
            txn.open_table(ROWS).map_err(storage("creating tables"))?;
            txn.open_table(INDEX).map_err(storage("creating tables"))?;
            txn.open_table(CARRIED)
                .map_err(storage("creating tables"))?;
            txn.open_table(META).map_err(storage("creating tables"))?;
        }
        txn.commit().map_err(storage("creating tables"))?;
        let db = Arc::new(db);
        open.insert(namespace.to_string(), db.clone());
        tracing::debug!(path = %path.display(), "read-model file opened");
        Ok(db)
    }
}

impl EmbeddedReadModels {
    /// Whether the next commit of `namespace` must be fsynced (and if so,
    /// notes that it is).
    fn durable_turn(&self, namespace: &str, every: Duration) -> bool {
        let Ok(mut at) = self.durable_at.lock() else {
            return true;
        };
        let now = Instant::now();
        match at.get(namespace) {
            Some(last) if now.duration_since(*last) < every => false,
            _ => {
                at.insert(namespace.to_string(), now);
                true
            }
        }
    }
}

impl Drop for EmbeddedReadModels {
    // Commits that were not fsynced become durable with the next durable
    // commit, even an empty one.
    fn drop(&mut self) {
        let Ok(open) = self.open.get_mut() else {
            return;
        };
        for (namespace, db) in open.iter() {
            let flushed = (|| -> Result<(), redb::Error> {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                txn.commit()?;
                Ok(())
            })();
            if let Err(e) = flushed {
                tracing::warn!(namespace, error = %e, "read-model file not flushed on close; the projection will redo its last batches from the log");
            }
        }
    }
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, ProjectionError> {
    postcard::from_bytes(bytes).map_err(|e| ProjectionError::Decode {
        what: "a checkpoint".into(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, ProjectionError> {
    postcard::to_allocvec(value).map_err(|e| ProjectionError::Encode {
        what: what.into(),
        reason: e.to_string(),
    })
}

fn lower<'a>(table: &'a str, bound: &'a Bound<Vec<u8>>) -> Bound<RowKey<'a>> {
    match bound {
        Bound::Included(k) => Bound::Included((table, k.as_slice())),
        Bound::Excluded(k) => Bound::Excluded((table, k.as_slice())),
        Bound::Unbounded => Bound::Included((table, &[][..])),
    }
}

fn commit_blocking(
    db: &Database,
    namespace: &str,
    expected: Option<Position>,
    next: Checkpoint,
    batch: &WriteBatch,
    durable: bool,
) -> Result<(), ProjectionError> {
    let mut txn = db
        .begin_write()
        .map_err(storage("starting a write transaction"))?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })
    .map_err(storage("choosing the commit's durability"))?;
    {
        let mut meta = txn.open_table(META).map_err(storage("opening meta"))?;
        let found = meta
            .get(CHECKPOINT_KEY)
            .map_err(storage("reading the checkpoint"))?
            .map(|g| decode_checkpoint(g.value()))
            .transpose()?
            .and_then(|c| c.position);
        if found != expected {
            return Err(ProjectionError::CheckpointConflict {
                projection: namespace.to_string(),
                expected,
                found,
            });
        }
        let mut rows = txn.open_table(ROWS).map_err(storage("opening rows"))?;
        let mut index = txn.open_table(INDEX).map_err(storage("opening index"))?;
        let mut carried = txn
            .open_table(CARRIED)
            .map_err(storage("opening carried"))?;
        for BatchChange {
            table,
            key,
            change,
            indexed,
        } in batch.changes()
        {
            let id = (table, key);
            if indexed {
                let old = carried
                    .remove(id)
                    .map_err(storage("reading index entries"))?
                    .map(|g| postcard::from_bytes::<Vec<IndexEntry>>(g.value()))
                    .transpose()
                    .map_err(|e| ProjectionError::Decode {
                        what: "a row's index entries".into(),
                        reason: e.to_string(),
                    })?;
                for e in old.unwrap_or_default() {
                    index
                        .remove((table, e.index.as_str(), e.key.as_slice(), key))
                        .map_err(storage("removing an index entry"))?;
                }
            }
            match change {
                Some((value, entries)) => {
                    for e in entries {
                        index
                            .insert((table, e.index.as_str(), e.key.as_slice(), key), ())
                            .map_err(storage("writing an index entry"))?;
                    }
                    if !entries.is_empty() {
                        carried
                            .insert(id, encode("index entries", entries)?.as_slice())
                            .map_err(storage("writing index entries"))?;
                    }
                    rows.insert(id, value.as_slice())
                        .map_err(storage("writing a row"))?;
                }
                None => {
                    rows.remove(id).map_err(storage("deleting a row"))?;
                }
            }
        }
        meta.insert(CHECKPOINT_KEY, encode("a checkpoint", &next)?.as_slice())
            .map_err(storage("writing the checkpoint"))?;
    }
    txn.commit()
        .map_err(storage("committing read-model changes"))
}

fn reset_blocking(db: &Database, version: u32) -> Result<(), ProjectionError> {
    let mut txn = db
        .begin_write()
        .map_err(storage("starting a write transaction"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(storage("asking for a durable commit"))?;
    txn.delete_table(ROWS).map_err(storage("dropping rows"))?;
    txn.delete_table(INDEX).map_err(storage("dropping index"))?;
    txn.delete_table(CARRIED)
        .map_err(storage("dropping carried"))?;
    {
        txn.open_table(ROWS).map_err(storage("creating tables"))?;
        txn.open_table(INDEX).map_err(storage("creating tables"))?;
        txn.open_table(CARRIED)
            .map_err(storage("creating tables"))?;
        let mut meta = txn.open_table(META).map_err(storage("opening meta"))?;
        meta.insert(
            CHECKPOINT_KEY,
            encode("a checkpoint", &Checkpoint::empty(version))?.as_slice(),
        )
        .map_err(storage("writing the checkpoint"))?;
    }
    txn.commit().map_err(storage("committing a reset"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProjectionError> + Send + 'static,
) -> Result<T, ProjectionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProjectionError::storage("waiting for a read-model commit", e))?
}

#[async_trait]
impl ReadModelStore for EmbeddedReadModels {
    async fn checkpoint(&self, namespace: &str) -> Result<Option<Checkpoint>, ProjectionError> {
        let db = self.db(namespace)?;
        let txn = db.begin_read().map_err(storage("starting a read"))?;
        let meta = txn.open_table(META).map_err(storage("opening meta"))?;
        let found = meta
            .get(CHECKPOINT_KEY)
            .map_err(storage("reading the checkpoint"))?;
        found.map(|g| decode_checkpoint(g.value())).transpose()
    }

    async fn get(
        &self,
        namespace: &str,
        table: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ProjectionError> {
        let db = self.db(namespace)?;
        let txn = db.begin_read().map_err(storage("starting a read"))?;
        let rows = txn.open_table(ROWS).map_err(storage("opening rows"))?;
        let found = rows.get((table, key)).map_err(storage("reading a row"))?;
        Ok(found.map(|g| g.value().to_vec()))
    }

    async fn scan(
        &self,
        namespace: &str,
        table: &str,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<Row>, ProjectionError> {
        let db = self.db(namespace)?;
        let txn = db.begin_read().map_err(storage("starting a read"))?;
        let rows = txn.open_table(ROWS).map_err(storage("opening rows"))?;
        let mut out = Vec::new();
        let iter = rows
            .range::<RowKey<'_>>((lower(table, &range.start), Bound::Unbounded))
            .map_err(storage("scanning rows"))?;
        for entry in iter {
            let (k, v) = entry.map_err(storage("scanning rows"))?;
            let (t, key) = k.value();
            if t != table || range.is_past(key) || out.len() >= limit {
                break;
            }
            out.push(Row {
                key: key.to_vec(),
                value: v.value().to_vec(),
            });
        }
        Ok(out)
    }

    async fn scan_index(
        &self,
        namespace: &str,
        table: &str,
        index: &str,
        range: &KeyRange,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
    ) -> Result<Vec<IndexRow>, ProjectionError> {
        let db = self.db(namespace)?;
        let txn = db.begin_read().map_err(storage("starting a read"))?;
        let entries = txn.open_table(INDEX).map_err(storage("opening index"))?;
        let rows = txn.open_table(ROWS).map_err(storage("opening rows"))?;
        let start: Bound<IndexKey<'_>> = match (after, &range.start) {
            (Some((ikey, key)), _) => Bound::Excluded((table, index, ikey, key)),
            (None, Bound::Included(s) | Bound::Excluded(s)) => {
                Bound::Included((table, index, s.as_slice(), &[][..]))
            }
            (None, Bound::Unbounded) => Bound::Included((table, index, &[][..], &[][..])),
        };
        let mut out = Vec::new();
        let iter = entries
            .range::<IndexKey<'_>>((start, Bound::Unbounded))
            .map_err(storage("scanning an index"))?;
        for entry in iter {
            let (k, _) = entry.map_err(storage("scanning an index"))?;
            let (t, i, ikey, key) = k.value();
            if t != table || i != index || range.is_past(ikey) || out.len() >= limit {
                break;
            }
            if !range.contains(ikey) {
                continue;
            }
            let Some(value) = rows
                .get((table, key))
                .map_err(storage("reading an indexed row"))?
            else {
                continue;
            };
            out.push(IndexRow {
                index_key: ikey.to_vec(),
                key: key.to_vec(),
                value: value.value().to_vec(),
            });
        }
        Ok(out)
    }

    async fn commit(
        &self,
        namespace: &str,
        expected: Option<Position>,
        next: Checkpoint,
        batch: Arc<WriteBatch>,
    ) -> Result<(), ProjectionError> {
        let db = self.db(namespace)?;
        let every = match batch.durability() {
            BatchDurability::Live => DURABLE_EVERY,
            BatchDurability::CatchUp => DURABLE_EVERY_CATCHING_UP,
            BatchDurability::Now => Duration::ZERO,
        };
        let durable = self.durable_turn(namespace, every);
        let namespace = namespace.to_string();
        blocking(move || commit_blocking(&db, &namespace, expected, next, &batch, durable)).await
    }

    async fn reset(&self, namespace: &str, version: u32) -> Result<(), ProjectionError> {
        let db = self.db(namespace)?;
        blocking(move || reset_blocking(&db, version)).await
    }
}
