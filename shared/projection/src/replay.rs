//! The replay utility: feeds committed events to a projection in batches,
//! committing each batch with the checkpoint. The runner uses it to catch
//! up (and so to rebuild); auditors use it to build a read model as of a
//! position into a scratch store. One code path, one meaning.

use std::ops::ControlFlow;
use std::sync::Arc;

use tongban_store::{Direction, EventStore, Position, ReadFrom, RecordedEvent};
use tracing::Instrument;

use crate::error::ProjectionError;
use crate::feed::ChangeRecord;
use crate::projection::{ApplyError, Changes, Projection};
use crate::read_model::{BatchDurability, Checkpoint, ReadModels, WriteBatch};

/// A batch applied to a projection but not yet committed.
struct Applied {
    batch: Arc<WriteBatch>,
    published: Vec<ChangeRecord>,
    next: Checkpoint,
}

/// Applies `events` (possibly none) on top of `base` (and of `uncommitted`,
/// the batch before, if its commit has not finished) and prepares the
/// checkpoint that moves to `scanned_to` (at least the last event's
/// position).
async fn apply_events(
    projection: &dyn Projection,
    models: &ReadModels,
    durability: BatchDurability,
    uncommitted: Option<Arc<WriteBatch>>,
    base: &Checkpoint,
    events: &[RecordedEvent],
    scanned_to: Position,
) -> Result<Applied, ProjectionError> {
    let last = events
        .last()
        .map_or(scanned_to, |e| e.position.max(scanned_to));
    let span = tracing::debug_span!(
        "projection.apply",
        projection = projection.name(),
        events = events.len(),
        to = last.0
    );
    async {
        let mut changes = Changes::after(models, uncommitted);
        if !events.is_empty() {
            projection
                .apply(events, &mut changes)
                .await
                .map_err(|e| apply_failure(projection.name(), events, e))?;
        }
        let (mut batch, published) = changes.finish();
        batch.set_durability(durability);
        Ok(Applied {
            batch: Arc::new(batch),
            published,
            next: Checkpoint {
                version: base.version,
                position: Some(last),
                events_applied: base.events_applied + events.len() as u64,
            },
        })
    }
    .instrument(span)
    .await
}

/// Commits an applied batch with its checkpoint, which must follow
/// `checkpoint`. Returns the change records the batch published.
async fn commit_applied(
    models: &ReadModels,
    checkpoint: &mut Checkpoint,
    applied: Applied,
) -> Result<Vec<ChangeRecord>, ProjectionError> {
    let span = tracing::debug_span!(
        "projection.commit",
        projection = models.namespace(),
        rows = applied.batch.len(),
        to = applied.next.position.map_or(0, |p| p.0)
    );
    models
        .store()
        .commit(
            models.namespace(),
            checkpoint.position,
            applied.next,
            applied.batch,
        )
        .instrument(span)
        .await?;
    *checkpoint = applied.next;
    Ok(applied.published)
}

/// Applies `events` (possibly none) and moves the checkpoint to
/// `scanned_to` (at least the last event's position), in one commit.
/// Returns the change records the batch published.
pub async fn apply_batch(
    projection: &dyn Projection,
    models: &ReadModels,
    checkpoint: &mut Checkpoint,
    events: &[RecordedEvent],
    scanned_to: Position,
) -> Result<Vec<ChangeRecord>, ProjectionError> {
    let applied = apply_events(
        projection,
        models,
        BatchDurability::Live,
        None,
        checkpoint,
        events,
        scanned_to,
    )
    .await?;
    commit_applied(models, checkpoint, applied).await
}

fn apply_failure(name: &str, events: &[RecordedEvent], error: ApplyError) -> ProjectionError {
    match error {
        ApplyError::Storage(e) => e,
        ApplyError::Event { position, reason } => {
            let event = events.iter().find(|e| e.position == position);
            ProjectionError::Apply {
                projection: name.to_string(),
                position,
                stream: event.map(|e| e.stream.to_string()).unwrap_or_default(),
                event_type: event.map(|e| e.event_type.clone()).unwrap_or_default(),
                reason,
            }
        }
    }
}

/// Loads the namespace's checkpoint, starting it over if it was built by
/// another version (or never built).
pub async fn prepare(
    projection: &dyn Projection,
    models: &ReadModels,
) -> Result<(Checkpoint, bool), ProjectionError> {
    match models.checkpoint().await? {
        Some(c) if c.version == projection.version() => Ok((c, false)),
        found => {
            if let Some(old) = found {
                tracing::info!(
                    projection = projection.name(),
                    from = old.version,
                    to = projection.version(),
                    "projection version changed: rebuilding from zero"
                );
            }
            models
                .store()
                .reset(models.namespace(), projection.version())
                .await?;
            Ok((Checkpoint::empty(projection.version()), true))
        }
    }
}

/// Feeds committed events after the checkpoint up to `until` (inclusive)
/// to `projection`, `batch_size` at a time. After each commit `on_batch`
/// sees the checkpoint and the published records, and can stop the replay.
///
/// Three things overlap: batch N is committed while batch N+1 is applied
/// (its reads see N's writes before the store's rows) and the page after
/// N+1 is read from the log. Commits still happen one after the other, in
/// order, each with its checkpoint; a batch applied when a commit fails or
/// `on_batch` stops is dropped, uncommitted.
pub async fn replay(
    events: &dyn EventStore,
    projection: &dyn Projection,
    models: &ReadModels,
    checkpoint: &mut Checkpoint,
    until: Position,
    batch_size: usize,
    mut on_batch: impl FnMut(&Checkpoint, Vec<ChangeRecord>) -> ControlFlow<()>,
) -> Result<(), ProjectionError> {
    let filter = projection.filter();
    let batch_size = batch_size.max(1);
    let read =
        |from: ReadFrom<Position>| events.read_all(Direction::Forwards, from, batch_size, &filter);
    // How far events are applied (committed or not).
    let mut applied_to = *checkpoint;
    let mut uncommitted: Option<Applied> = None;
    let mut prefetched: Option<Vec<RecordedEvent>> = None;
    loop {
        let done = applied_to.position.is_some_and(|p| p >= until);
        if done && uncommitted.is_none() {
            return Ok(());
        }
        let page = if done {
            None
        } else {
            let mut page = match prefetched.take() {
                Some(page) => page,
                None => {
                    let from = applied_to
                        .position
                        .map_or(ReadFrom::Start, |p| ReadFrom::At(p.next()));
                    read(from).await?
                }
            };
            // A short page scanned to the head, which is past `until`.
            let exhausted = page.len() < batch_size;
            page.retain(|e| e.position <= until);
            let scanned_to = if exhausted || page.len() < batch_size {
                until
            } else {
                page.last().map_or(until, |e| e.position)
            };
            Some((page, scanned_to))
        };
        let read_from = page
            .as_ref()
            .and_then(|(_, scanned_to)| (*scanned_to < until).then(|| scanned_to.next()));
        let to_commit = uncommitted.take();
        let overlay = to_commit.as_ref().map(|a| a.batch.clone());
        let commit = async {
            match to_commit {
                Some(applied) => commit_applied(models, checkpoint, applied).await.map(Some),
                None => Ok(None),
            }
        };
        let next = async {
            match read_from {
                Some(from) => read(ReadFrom::At(from)).await.map(Some),
                None => Ok(None),
            }
        };
        let apply = async {
            match &page {
                // The batch that reaches `until` is durable when committed,
                // so that a catch-up ends with its work on disk.
                Some((page, scanned_to)) => apply_events(
                    projection,
                    models,
                    if *scanned_to < until {
                        BatchDurability::CatchUp
                    } else {
                        BatchDurability::Now
                    },
                    overlay,
                    &applied_to,
                    page,
                    *scanned_to,
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        };
        // The commit and the read start work off this task when first
        // polled; the apply then runs here.
        let (committed, next, applied) = futures::join!(commit, next, apply);
        if let Some(published) = committed? {
            if on_batch(checkpoint, published).is_break() {
                return Ok(());
            }
        }
        if let Some(applied) = applied? {
            applied_to = applied.next;
            uncommitted = Some(applied);
        }
        prefetched = next?;
    }
}
