//! The `EventStore` trait: what every backend promises.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::chain::{ChainReport, Head};
use crate::error::StoreError;
use crate::event::{AppendResult, EventData, ExpectedRevision, Position, RecordedEvent};
use crate::filter::EventFilter;
use crate::metadata::{StreamMetadata, StreamMetadataResult};
use crate::stream_name::StreamName;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Forwards,
    Backwards,
}

/// Where a read starts. `At` is inclusive: the event at that revision or
/// position is the first one returned (if it is visible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom<T> {
    Start,
    End,
    At(T),
}

/// Where a subscription starts. `After` is exclusive: resuming after a
/// position delivers only what comes strictly after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeFrom<T> {
    /// All history, then live events.
    Start,
    /// Only events committed after the subscription starts.
    End,
    /// History strictly after this point, then live events.
    After(T),
}

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriptionMessage {
    Event(RecordedEvent),
    /// History has been delivered; what follows is live. Sent once.
    CaughtUp,
    /// A filtered `$all` subscription scanned up to this position without
    /// finding more matches: a consumer can store it as its cursor.
    Checkpoint(Position),
}

/// A subscription: an endless stream of messages, ending only with an error
/// (e.g. the store closed, or the subscriber was dropped for falling behind).
pub type Subscription = BoxStream<'static, Result<SubscriptionMessage, StoreError>>;

/// A range of global positions, both ends inclusive and optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PositionRange {
    pub from: Option<Position>,
    pub to: Option<Position>,
}

impl PositionRange {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn between(from: Position, to: Position) -> Self {
        Self {
            from: Some(from),
            to: Some(to),
        }
    }
}

/// One log of events with EventStoreDB/KurrentDB semantics.
///
/// - An append is atomic: all of its events or none, and no reader ever sees
///   part of one. Appending the same event ids again at the same expected
///   revision succeeds without writing duplicates.
/// - `$all` order is commit order; positions only grow.
/// - Subscriptions deliver history, then live events, with no gap, no
///   duplicate and in order.
/// - Stream reads honour stream metadata (max count, max age, truncate
///   before); `$all` reads show the whole log, which the hash chain covers.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its revision matches `expected`.
    /// Returns once the events are durable.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError>;

    /// Appends to one of the hub's own system streams (`$name`; not `$$`
    /// metadata streams): chain checkpoints, subscription state. Ordinary
    /// appends refuse `$` streams, so users cannot write these; only the
    /// hub's own components call this.
    async fn append_to_system_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError>;

    /// Reads up to `max_count` visible events of a stream.
    /// Fails with `StreamNotFound` if it never existed or was soft-deleted
    /// without being re-created, and `StreamDeleted` if tombstoned.
    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom<u64>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `max_count` events of `$all` that match `filter`.
    async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Catch-up subscription to one stream, by revision.
    fn subscribe_to_stream(&self, stream: &StreamName, from: SubscribeFrom<u64>) -> Subscription;

    /// Catch-up subscription to `$all`, by position, with a filter.
    fn subscribe_to_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription;

    async fn get_stream_metadata(
        &self,
        stream: &StreamName,
    ) -> Result<StreamMetadataResult, StoreError>;

    /// Replaces a stream's metadata; `expected` is checked against the
    /// metadata stream (`$$stream`).
    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, StoreError>;

    /// Soft delete: the stream reads as not found until written again; a
    /// re-created stream continues its revisions.
    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError>;

    /// Tombstone: the stream is gone forever; reads and appends fail with
    /// `StreamDeleted`.
    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError>;

    /// The last position and its hash, `None` for an empty log.
    async fn head(&self) -> Result<Option<Head>, StoreError>;

    /// Recomputes the hash chain over `range`; fails with `Corruption` naming
    /// the first position whose stored hash does not match.
    async fn verify_chain(&self, range: PositionRange) -> Result<ChainReport, StoreError>;
}

/// An `Arc` of a store is a store: `Arc<dyn EventStore>` can be handed to
/// anything generic over [`EventStore`] without a forwarding wrapper.
#[async_trait]
impl<S: EventStore + ?Sized> EventStore for std::sync::Arc<S> {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        (**self).append(stream, expected, events).await
    }

    async fn append_to_system_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        (**self)
            .append_to_system_stream(stream, expected, events)
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom<u64>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        (**self)
            .read_stream(stream, direction, from, max_count)
            .await
    }

    async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        (**self).read_all(direction, from, max_count, filter).await
    }

    fn subscribe_to_stream(&self, stream: &StreamName, from: SubscribeFrom<u64>) -> Subscription {
        (**self).subscribe_to_stream(stream, from)
    }

    fn subscribe_to_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        (**self).subscribe_to_all(from, filter)
    }

    async fn get_stream_metadata(
        &self,
        stream: &StreamName,
    ) -> Result<StreamMetadataResult, StoreError> {
        (**self).get_stream_metadata(stream).await
    }

    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, StoreError> {
        (**self)
            .set_stream_metadata(stream, expected, metadata)
            .await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        (**self).delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        (**self).tombstone_stream(stream, expected).await
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        (**self).head().await
    }

    async fn verify_chain(&self, range: PositionRange) -> Result<ChainReport, StoreError> {
        (**self).verify_chain(range).await
    }
}
