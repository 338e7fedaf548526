//! What a projection is: a name, a version, a filter over `$all` and a
//! deterministic `apply` that turns a batch of events into read-model
//! changes (and change records for departments' feeds).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};
use tongban_store::{EventFilter, Position, RecordedEvent};

use crate::error::ProjectionError;
use crate::feed::{feed_table, ChangeDraft, ChangeRecord, FeedCursor};
use crate::read_model::{Key, ReadModels, Table, WriteBatch};

/// A read model fed by events. `apply` must be deterministic and write only
/// through `changes`: the runner commits the changes with the checkpoint,
/// and after a crash applies the same batch again to the state it had
/// before, so every event takes effect exactly once.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the read-model namespace, the feed's name, the status key.
    fn name(&self) -> &str;
    /// Bump it when `apply` changes meaning: the runner rebuilds from zero.
    fn version(&self) -> u32;
    /// The events this projection reads.
    fn filter(&self) -> EventFilter;
    /// Applies events (in log order, all matching `filter`).
    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError>;
}

/// Why `apply` refused a batch.
#[derive(Debug)]
pub enum ApplyError {
    /// This event cannot be applied (e.g. it does not decode).
    Event { position: Position, reason: String },
    /// Reading the read model failed.
    Storage(ProjectionError),
}

impl ApplyError {
    /// The event at fault, and why.
    pub fn at(event: &RecordedEvent, reason: impl fmt::Display) -> Self {
        Self::Event {
            position: event.position,
            reason: reason.to_string(),
        }
    }
}

impl From<ProjectionError> for ApplyError {
    fn from(e: ProjectionError) -> Self {
        Self::Storage(e)
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event { position, reason } => write!(f, "event {position}: {reason}"),
            Self::Storage(e) => write!(f, "{e}"),
        }
    }
}

/// The changes one batch makes: reads see the batch's own writes first,
/// then those of the batch before it if that one is still being committed.
pub struct Changes<'a> {
    models: &'a ReadModels,
    batch: WriteBatch,
    /// The previous batch, while its commit runs.
    uncommitted: Option<Arc<WriteBatch>>,
    published: Vec<ChangeRecord>,
    next_seq: BTreeMap<Position, u32>,
    feed: Table<(u64, u32), ChangeRecord>,
}

impl<'a> Changes<'a> {
    pub fn new(models: &'a ReadModels) -> Self {
        Self::after(models, None)
    }

    /// Changes made on top of `uncommitted`, a batch whose commit has not
    /// finished: reads see its writes before the store's rows.
    pub fn after(models: &'a ReadModels, uncommitted: Option<Arc<WriteBatch>>) -> Self {
        Self {
            models,
            batch: WriteBatch::new(),
            uncommitted,
            published: Vec::new(),
            next_seq: BTreeMap::new(),
            feed: feed_table(),
        }
    }

    /// The row's value as this batch leaves it so far.
    pub async fn get<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        key: &K,
    ) -> Result<Option<V>, ProjectionError> {
        let encoded = key.encode_key();
        let pending = self.batch.pending(table.name(), &encoded).or_else(|| {
            self.uncommitted
                .as_ref()
                .and_then(|b| b.pending(table.name(), &encoded))
        });
        match pending {
            Some(Some((bytes, _))) => table.decode_value(bytes).map(Some),
            Some(None) => Ok(None),
            None => self.models.get(table, key).await,
        }
    }

    pub fn put<K: Key, V: Serialize + DeserializeOwned>(
        &mut self,
        table: &Table<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), ProjectionError> {
        let bytes = table.encode_value(value)?;
        let index = table.index_entries(value);
        self.batch.change(
            table.name(),
            table.has_indexes(),
            key.encode_key(),
            Some((bytes, index)),
        );
        Ok(())
    }

    pub fn delete<K: Key, V: Serialize + DeserializeOwned>(
        &mut self,
        table: &Table<K, V>,
        key: &K,
    ) {
        self.batch
            .change(table.name(), table.has_indexes(), key.encode_key(), None);
    }

    /// Reads a row (or `default`), lets `f` change it, writes it back.
    pub async fn update<K: Key, V: Serialize + DeserializeOwned>(
        &mut self,
        table: &Table<K, V>,
        key: &K,
        default: impl FnOnce() -> V,
        f: impl FnOnce(&mut V),
    ) -> Result<(), ProjectionError> {
        let mut value = self.get(table, key).await?.unwrap_or_else(default);
        f(&mut value);
        self.put(table, key, &value)
    }

    /// Publishes a change record caused by `event` to this projection's
    /// feed. It is stored with the batch (so it survives and resumes) and
    /// broadcast to live consumers once committed.
    pub fn publish(
        &mut self,
        event: &RecordedEvent,
        draft: ChangeDraft,
    ) -> Result<(), ProjectionError> {
        let seq = self.next_seq.entry(event.position).or_insert(0);
        let cursor = FeedCursor {
            position: event.position,
            seq: *seq,
        };
        *seq += 1;
        let record = ChangeRecord {
            cursor,
            kind: draft.kind,
            region: draft.region,
            data_class: draft.data_class,
            at: event.recorded_at,
            payload: draft.payload,
        };
        let feed = self.feed.clone();
        self.put(&feed, &(cursor.position.0, cursor.seq), &record)?;
        self.published.push(record);
        Ok(())
    }

    pub fn namespace(&self) -> &str {
        self.models.namespace()
    }

    pub(crate) fn finish(self) -> (WriteBatch, Vec<ChangeRecord>) {
        (self.batch, self.published)
    }
}
