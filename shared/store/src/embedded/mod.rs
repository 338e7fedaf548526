//! The embedded backend: the default store, on disk in one redb file.
//!
//! - [`layout`]: tables, encodings and the format version.
//! - [`writer`]: the one writer thread, group commit, expected-revision
//!   checks, idempotency, metadata, deletes.
//! - [`read`]: stream and `$all` reads, chain verification.
//! - [`subscription`]: catch-up subscriptions.
//!
//! Durability: an append is answered only once the write-ahead log holding
//! it is synced (see [`wal`] and [`syncer`]); redb commits without syncing
//! and is checkpointed durably when quiet. Readers use MVCC read
//! transactions, see nothing past the durable head, and never block the
//! writer.

#[doc(hidden)]
pub mod fuzzing;
mod id_cache;
pub mod layout;
mod read;
mod subscription;
mod syncer;
mod wal;
mod writer;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::{ChainHash, ChainReport, Head};
use crate::error::StoreError;
use crate::event::{
    validate_events, AppendResult, EventData, ExpectedRevision, Position, RecordedEvent,
};
use crate::filter::EventFilter;
use crate::metadata::{StreamMetadata, StreamMetadataResult};
use crate::store::{Direction, EventStore, PositionRange, ReadFrom, SubscribeFrom, Subscription};
use crate::stream_name::StreamName;
use layout::EncodedEvents;
use layout::{EVENTS, FORMAT_KEY, FORMAT_MARKER, FORMAT_VERSION, META, VERSION_KEY};
use writer::{Cursor, WriteOp, WriteRequest};

/// Appends waiting for the writer before new ones wait for room.
const QUEUE_DEPTH: usize = 8192;
/// Batches committed to redb and waiting for the log syncer.
const SYNC_QUEUE_DEPTH: usize = 8;

pub(crate) fn storage_error<E: Into<redb::Error>>(
    context: &'static str,
) -> impl Fn(E) -> StoreError {
    move |e| {
        let e: redb::Error = e.into();
        StoreError::io(context, e)
    }
}

/// Reads of `$all` asking for at least this many events run on the
/// blocking pool.
const LARGE_READ: usize = 256;

/// The embedded event store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
    head: watch::Receiver<Option<Head>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating the directory and an empty store
    /// if there is none. A directory holding a file that is not a Tongban
    /// store, or a store of another format version, is refused untouched.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        crate::private_fs::create_dir_all(dir).map_err(|e| {
            StoreError::io(format!("creating the data directory {}", dir.display()), e)
        })?;
        let path = dir.join(layout::FILE_NAME);
        let db = if path.exists() {
            open_existing(&path)?
        } else {
            create_new(&path)?
        };
        let db = Arc::new(db);
        let mut wal = wal::Wal::open(dir)?;
        let entries = wal.entries()?;
        if !entries.is_empty() {
            let replayed = writer::replay(&db, entries)?;
            tracing::info!(
                replayed,
                "replayed the write-ahead log after an unclean stop"
            );
            wal.reset()?;
        }
        let cursor = load_cursor(&db)?;
        let recent_ids = id_cache::IdCache::load(&db, id_cache::RECENT_IDS)?;
        let (head_tx, head_rx) = watch::channel(cursor.head());
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let broken = syncer::Broken::default();
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE_DEPTH);
        let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE_DEPTH);
        let syncer_db = db.clone();
        let syncer_broken = broken.clone();
        let syncer_thread = std::thread::Builder::new()
            .name("tongban-store-sync".into())
            .spawn(move || syncer::run(syncer_db, wal, job_rx, head_tx, syncer_broken, spare_tx))
            .map_err(|e| StoreError::io("starting the log syncer thread", e))?;
        let writer_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("tongban-store-writer".into())
            .spawn(move || {
                writer::run(writer_db, rx, cursor, recent_ids, job_tx, broken, spare_rx);
                // The writer dropped its end of the job queue: the syncer
                // finishes what is queued, checkpoints and stops.
                if syncer_thread.join().is_err() {
                    tracing::error!("the log syncer thread panicked");
                }
            })
            .map_err(|e| StoreError::io("starting the writer thread", e))?;
        tracing::info!(path = %path.display(), head = ?cursor.head(), "event store opened");
        Ok(Self {
            db,
            writer: Arc::new(Writer {
                requests: Some(tx),
                thread: Mutex::new(Some(thread)),
            }),
            head: head_rx,
            path: Arc::new(path),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes this handle. When it is the last one, waits (off the async
    /// runtime) until queued appends are committed, the log is checkpointed
    /// and the file is released, so that the directory can be opened again.
    /// Dropping the last handle does the same, blocking the dropping thread.
    pub async fn close(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    async fn write(&self, op: WriteOp) -> Result<AppendResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the event store is closed".into(),
        };
        let requests = self.writer.requests.as_ref().ok_or_else(closed)?;
        requests
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    fn horizon(&self) -> read::Horizon {
        read::Horizon::of(*self.head.borrow())
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db
            .begin_read()
            .map_err(storage_error("starting a read transaction"))
    }
}

/// The writer thread of a store and the queue to it, shared by every clone.
struct Writer {
    requests: Option<mpsc::Sender<WriteRequest>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is queued and stop;
        // joining it means the file is released once the last handle is gone.
        drop(self.requests.take());
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the event store writer thread panicked");
            }
        }
    }
}

/// A file that cannot be opened is an I/O problem (a read-only copy, a full
/// disk), named as such; anything else redb refuses is not a store.
fn open_failed(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            let context = if io.kind() == std::io::ErrorKind::PermissionDenied {
                format!("opening {} (permission denied on it)", path.display())
            } else {
                format!("opening {}", path.display())
            };
            StoreError::io(context, io)
        }
        other => not_a_store(path, other.to_string()),
    }
}

fn not_a_store(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::NotAStore {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn open_existing(path: &Path) -> Result<Database, StoreError> {
    // Look at the file before redb does, so that a foreign file is refused
    // without being touched.
    let mut magic = [0u8; 9];
    let mut file =
        File::open(path).map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    if file.read_exact(&mut magic).is_err() || magic != layout::REDB_MAGIC {
        return Err(not_a_store(
            path,
            "the file does not start with a store header",
        ));
    }
    drop(file);
    // Check the format through a read-only handle: redb marks a file it
    // opens for writing, and a foreign file must stay as it was.
    let needs_repair = match redb::ReadOnlyDatabase::open(path) {
        Ok(db) => {
            check_format(&db, path)?;
            false
        }
        // After an unclean stop redb must repair the file before anything
        // can read it; the header said redb, so let it, then check.
        Err(redb::DatabaseError::RepairAborted) => true,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(already_open(path)),
        Err(other) => return Err(open_failed(path, other)),
    };
    let db = Database::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => already_open(path),
        other => open_failed(path, other),
    })?;
    if needs_repair {
        tracing::info!(path = %path.display(), "repaired the store file after an unclean stop");
        check_format(&db, path)?;
    }
    Ok(db)
}

fn already_open(path: &Path) -> StoreError {
    StoreError::Unavailable {
        reason: format!(
            "{} is already open (by another process, or by a handle in this process that is still open)",
            path.display()
        ),
    }
}

fn check_format(db: &impl ReadableDatabase, path: &Path) -> Result<(), StoreError> {
    let txn = db
        .begin_read()
        .map_err(storage_error("starting a read transaction"))?;
    let meta = txn
        .open_table(META)
        .map_err(|e| not_a_store(path, format!("no format table ({e})")))?;
    let marker = meta
        .get(FORMAT_KEY)
        .map_err(storage_error("reading the format marker"))?
        .map(|g| g.value().to_vec());
    if marker.as_deref() != Some(FORMAT_MARKER) {
        return Err(not_a_store(path, "the format marker is missing"));
    }
    let version = meta
        .get(VERSION_KEY)
        .map_err(storage_error("reading the format version"))?
        .and_then(|g| <[u8; 4]>::try_from(g.value()).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| not_a_store(path, "the format version is missing"))?;
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn create_new(path: &Path) -> Result<Database, StoreError> {
    crate::private_fs::ensure_file(path)
        .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
    let db = Database::create(path).map_err(storage_error("creating the store file"))?;
    let txn = db
        .begin_write()
        .map_err(storage_error("starting a write transaction"))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(storage_error("creating the format table"))?;
        meta.insert(FORMAT_KEY, FORMAT_MARKER)
            .map_err(storage_error("writing the format marker"))?;
        meta.insert(VERSION_KEY, FORMAT_VERSION.to_be_bytes().as_slice())
            .map_err(storage_error("writing the format version"))?;
        // Create every table so that readers never meet a missing one.
        txn.open_table(EVENTS)
            .map_err(storage_error("creating tables"))?;
        txn.open_table(layout::STREAMS)
            .map_err(storage_error("creating tables"))?;
        txn.open_table(layout::STREAM_RUNS)
            .map_err(storage_error("creating tables"))?;
    }
    txn.commit()
        .map_err(storage_error("committing the new store"))?;
    Ok(db)
}

fn load_cursor(db: &Database) -> Result<Cursor, StoreError> {
    let txn = db
        .begin_read()
        .map_err(storage_error("starting a read transaction"))?;
    let events = txn
        .open_table(EVENTS)
        .map_err(storage_error("opening the events table"))?;
    let last = read::with_last_event(&events, |position, stored| {
        Ok(Cursor {
            next_position: position + 1,
            last_hash: ChainHash(stored.hash),
            last_recorded_at_micros: stored.recorded_at_micros,
        })
    })?;
    Ok(last.unwrap_or(Cursor {
        next_position: 0,
        last_hash: ChainHash::GENESIS,
        last_recorded_at_micros: i64::MIN,
    }))
}

#[async_trait]
impl EventStore for EmbeddedStore {
    #[tracing::instrument(name = "store.append", skip(self, events), fields(stream = %stream, events = events.len()))]
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        stream.ensure_writable()?;
        validate_events(&events)?;
        // Encoded here, in the appending task, so the writer thread does not.
        let events = EncodedEvents::encode(stream.as_str(), &events)?;
        self.write(WriteOp::Append {
            stream: stream.clone(),
            expected,
            events,
        })
        .await
    }

    #[tracing::instrument(name = "store.append_system", skip(self, events), fields(stream = %stream, events = events.len()))]
    async fn append_to_system_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        stream.ensure_system()?;
        validate_events(&events)?;
        let events = EncodedEvents::encode(stream.as_str(), &events)?;
        self.write(WriteOp::Append {
            stream: stream.clone(),
            expected,
            events,
        })
        .await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom<u64>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read::read_stream(
            &self.read_txn()?,
            stream,
            direction,
            from,
            max_count,
            self.horizon(),
        )
    }

    async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let horizon = self.horizon();
        if max_count < LARGE_READ {
            let scan = read::scan_all(
                &self.read_txn()?,
                direction,
                from,
                max_count,
                usize::MAX,
                filter,
                horizon,
            )?;
            return Ok(scan.events);
        }
        // A page this large takes milliseconds: read it off the async
        // workers (a projection catching up applies one page while the
        // next is read).
        let db = self.db.clone();
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db
                .begin_read()
                .map_err(storage_error("starting a read transaction"))?;
            read::scan_all(
                &txn,
                direction,
                from,
                max_count,
                usize::MAX,
                &filter,
                horizon,
            )
            .map(|scan| scan.events)
        })
        .await
        .map_err(|e| StoreError::io("reading $all", e))?
    }

    fn subscribe_to_stream(&self, stream: &StreamName, from: SubscribeFrom<u64>) -> Subscription {
        subscription::subscribe_stream(self.db.clone(), self.head.clone(), stream.clone(), from)
    }

    fn subscribe_to_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        subscription::subscribe_all(self.db.clone(), self.head.clone(), from, filter)
    }

    async fn get_stream_metadata(
        &self,
        stream: &StreamName,
    ) -> Result<StreamMetadataResult, StoreError> {
        let txn = self.read_txn()?;
        let state = read::stream_state(&txn, stream)?.unwrap_or_default();
        if state.tombstoned {
            return Err(StoreError::StreamDeleted {
                stream: stream.to_string(),
            });
        }
        let meta_state = read::stream_state(&txn, &stream.metadata_stream())?;
        Ok(StreamMetadataResult {
            metadata: state.metadata(),
            revision: meta_state.and_then(|s| s.last_revision),
        })
    }

    #[tracing::instrument(name = "store.set_metadata", skip(self, metadata), fields(stream = %stream))]
    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, StoreError> {
        stream.ensure_writable()?;
        metadata.validate()?;
        self.write(WriteOp::SetMetadata {
            stream: stream.clone(),
            expected,
            metadata,
        })
        .await
    }

    #[tracing::instrument(name = "store.delete", skip(self), fields(stream = %stream))]
    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        stream.ensure_writable()?;
        let result = self
            .write(WriteOp::Delete {
                stream: stream.clone(),
                expected,
            })
            .await?;
        Ok(result.position)
    }

    #[tracing::instrument(name = "store.tombstone", skip(self), fields(stream = %stream))]
    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        stream.ensure_writable()?;
        let result = self
            .write(WriteOp::Tombstone {
                stream: stream.clone(),
                expected,
            })
            .await?;
        Ok(result.position)
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        Ok(*self.head.borrow())
    }

    async fn verify_chain(&self, range: PositionRange) -> Result<ChainReport, StoreError> {
        let db = self.db.clone();
        let horizon = self.horizon();
        tokio::task::spawn_blocking(move || {
            let txn = db
                .begin_read()
                .map_err(storage_error("starting a read transaction"))?;
            read::verify_chain(&txn, range, horizon)
        })
        .await
        .map_err(|e| StoreError::io("verifying the chain", e))?
    }
}
