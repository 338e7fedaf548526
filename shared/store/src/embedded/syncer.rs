//! The log syncer: the second stage of the commit pipeline.
//!
//! The writer applies a batch, commits it to redb without syncing and hands
//! its log records here, then goes on with the next batch. The syncer
//! appends every record waiting to the write-ahead log, syncs once, and only
//! then publishes the new head and answers the appends. Readers see nothing
//! past the published head, so nothing is visible before it is durable, and
//! the writer's work on the next batch overlaps this stage's fsync.
//!
//! In quiet moments (and whenever the log grows large) the syncer makes redb
//! durable with a checkpoint and empties the log.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, Durability};
use tokio::sync::{oneshot, watch};

use super::storage_error;
use super::wal::{Wal, WalBatch};
use crate::chain::Head;
use crate::error::StoreError;
use crate::event::AppendResult;

/// Log buffers larger than this are freed rather than handed back to the
/// writer for reuse.
const SPARE_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Checkpoint after this long without a new batch...
const QUIET: Duration = Duration::from_millis(20);
/// ...if the last checkpoint is at least this old...
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// ...and in any case once the log is this large, which bounds the replay
/// after a crash.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) type Reply = oneshot::Sender<Result<AppendResult, StoreError>>;

/// One committed batch waiting to be made durable.
pub(crate) struct SyncJob {
    pub log: WalBatch,
    /// The head once this batch is durable.
    pub head: Option<Head>,
    pub replies: Vec<(Reply, Result<AppendResult, StoreError>)>,
}

/// Set once the log could not be written: redb may then hold events that
/// are not durable, so no further write is safe until the store is reopened.
#[derive(Clone, Default)]
pub(crate) struct Broken(Arc<Mutex<Option<StoreError>>>);

impl Broken {
    pub fn get(&self) -> Option<StoreError> {
        self.0.lock().ok().and_then(|b| b.clone())
    }

    fn set(&self, error: StoreError) {
        if let Ok(mut b) = self.0.lock() {
            b.get_or_insert(error);
        }
    }
}

pub(crate) fn run(
    db: Arc<Database>,
    mut wal: Wal,
    jobs: mpsc::Receiver<SyncJob>,
    head: watch::Sender<Option<Head>>,
    broken: Broken,
    spares: mpsc::SyncSender<Vec<u8>>,
) {
    let mut last_checkpoint = Instant::now();
    loop {
        let first = match jobs.recv_timeout(QUIET) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if wal.len() > 0 && last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                    checkpoint_logged(&db, &mut wal, &broken);
                    last_checkpoint = Instant::now();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        group.extend(jobs.try_iter());
        let failure = match broken.get() {
            Some(error) => Some(error),
            None => {
                let logs: Vec<&WalBatch> = group.iter().map(|j| &j.log).collect();
                let span = tracing::debug_span!("sync", batches = group.len());
                let _entered = span.enter();
                wal.append(&logs).err().map(|error| {
                    tracing::error!(%error, "the write-ahead log could not be written");
                    let error = StoreError::Unavailable {
                        reason: format!("the store must be reopened: {error}"),
                    };
                    broken.set(error.clone());
                    error
                })
            }
        };
        match failure {
            None => {
                if let Some(new_head) = group.iter().rev().find_map(|j| j.head) {
                    // Publish before answering, so that a writer that reads
                    // right after its append returns finds its events.
                    head.send_replace(Some(new_head));
                }
                for job in group {
                    for (reply, outcome) in job.replies {
                        let _ = reply.send(outcome);
                    }
                    recycle(&spares, job.log);
                }
            }
            Some(error) => {
                for job in group {
                    for (reply, _) in job.replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
        if wal.len() >= CHECKPOINT_BYTES {
            checkpoint_logged(&db, &mut wal, &broken);
            last_checkpoint = Instant::now();
        }
    }
    checkpoint_logged(&db, &mut wal, &broken);
    tracing::debug!("event store log syncer stopped");
}

/// Hands a written batch's buffer back to the writer, which would otherwise
/// allocate (and fault in) a fresh one for every commit.
fn recycle(spares: &mpsc::SyncSender<Vec<u8>>, log: WalBatch) {
    let buffer = log.into_buffer();
    if buffer.capacity() <= SPARE_BUFFER_BYTES {
        // A full pool or a stopped writer: the buffer is simply freed.
        let _ = spares.try_send(buffer);
    }
}

fn checkpoint_logged(db: &Database, wal: &mut Wal, broken: &Broken) {
    if broken.get().is_some() || wal.len() == 0 {
        return;
    }
    if let Err(error) = checkpoint(db, wal) {
        tracing::error!(%error, "checkpoint failed; the log keeps the events");
    }
}

/// Makes everything committed to redb durable, then empties the log. Every
/// record in the log is already in redb (the writer commits before handing
/// a batch over), so nothing is lost.
fn checkpoint(db: &Database, wal: &mut Wal) -> Result<(), StoreError> {
    let span = tracing::debug_span!("checkpoint", wal_bytes = wal.len());
    let _entered = span.enter();
    let mut txn = db
        .begin_write()
        .map_err(storage_error("starting a checkpoint"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(storage_error("asking for a durable checkpoint"))?;
    txn.commit()
        .map_err(storage_error("committing a checkpoint"))?;
    wal.reset()
}
