//! The replay utility: feeds committed events to a projection in batches,
//! committing each batch with the checkpoint. The runner uses it to catch
//! up (and so to rebuild); auditors use it to build a read model as of a
//! position into a scratch store. One code path, one meaning.

use std::ops::ControlFlow;

use tongban_store::{Direction, EventStore, Position, ReadFrom, RecordedEvent};
use tracing::Instrument;

use crate::error::ProjectionError;
use crate::feed::ChangeRecord;
use crate::projection::{ApplyError, Changes, Projection};
use crate::read_model::{Checkpoint, ReadModels};

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
    let last = events
        .last()
        .map_or(scanned_to, |e| e.position.max(scanned_to));
    let span = tracing::debug_span!(
        "projection.batch",
        projection = projection.name(),
        events = events.len(),
        to = last.0
    );
    async {
        let mut changes = Changes::new(models);
        if !events.is_empty() {
            projection
                .apply(events, &mut changes)
                .await
                .map_err(|e| apply_failure(projection.name(), events, e))?;
        }
        let (batch, published) = changes.finish();
        let next = Checkpoint {
            version: checkpoint.version,
            position: Some(last),
            events_applied: checkpoint.events_applied + events.len() as u64,
        };
        models
            .store()
            .commit(models.namespace(), checkpoint.position, next, batch)
            .await?;
        *checkpoint = next;
        Ok(published)
    }
    .instrument(span)
    .await
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
/// The next page of events is read while the current one is applied and
/// committed (reading the log needs nothing from the read model), so the
/// commit's write and the log's read overlap; batches are still applied
/// and committed one after the other, in order.
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
    let mut prefetched: Option<Vec<RecordedEvent>> = None;
    loop {
        if checkpoint.position.is_some_and(|p| p >= until) {
            return Ok(());
        }
        let mut page = match prefetched.take() {
            Some(page) => page,
            None => {
                let from = checkpoint
                    .position
                    .map_or(ReadFrom::Start, |p| ReadFrom::At(p.next()));
                events
                    .read_all(Direction::Forwards, from, batch_size, &filter)
                    .await?
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
        let next = async {
            if scanned_to >= until {
                return Ok(None);
            }
            let from = ReadFrom::At(scanned_to.next());
            events
                .read_all(Direction::Forwards, from, batch_size, &filter)
                .await
                .map(Some)
        };
        let (published, next) = futures::join!(
            apply_batch(projection, models, checkpoint, &page, scanned_to),
            next
        );
        if on_batch(checkpoint, published?).is_break() {
            return Ok(());
        }
        prefetched = next?;
    }
}
