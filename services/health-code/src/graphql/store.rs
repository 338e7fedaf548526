//! [`SharedStore`]: any event store behind one concrete type, so the
//! service's GraphQL objects need no type parameter and the gateway can put
//! a metered or remote store behind them.

use std::sync::Arc;

use async_trait::async_trait;
use tongban_store::chain::{ChainReport, Head};
use tongban_store::metadata::StreamMetadataResult;
use tongban_store::{
    AppendResult, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position,
    PositionRange, ReadFrom, RecordedEvent, StoreError, StreamMetadata, StreamName, SubscribeFrom,
    Subscription,
};

/// An `Arc<dyn EventStore>` that is itself an [`EventStore`].
#[derive(Clone)]
pub struct SharedStore(pub Arc<dyn EventStore>);

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedStore")
    }
}

#[async_trait]
impl EventStore for SharedStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        self.0.append(stream, expected, events).await
    }

    async fn append_to_system_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        self.0
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
        self.0.read_stream(stream, direction, from, max_count).await
    }

    async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_all(direction, from, max_count, filter).await
    }

    fn subscribe_to_stream(&self, stream: &StreamName, from: SubscribeFrom<u64>) -> Subscription {
        self.0.subscribe_to_stream(stream, from)
    }

    fn subscribe_to_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        self.0.subscribe_to_all(from, filter)
    }

    async fn get_stream_metadata(
        &self,
        stream: &StreamName,
    ) -> Result<StreamMetadataResult, StoreError> {
        self.0.get_stream_metadata(stream).await
    }

    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, StoreError> {
        self.0.set_stream_metadata(stream, expected, metadata).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        self.0.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        self.0.tombstone_stream(stream, expected).await
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.0.head().await
    }

    async fn verify_chain(&self, range: PositionRange) -> Result<ChainReport, StoreError> {
        self.0.verify_chain(range).await
    }
}
