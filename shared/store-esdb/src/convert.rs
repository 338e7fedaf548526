//! Client events to store events.

use bytes::Bytes;
use time::OffsetDateTime;
use tongban_store::{ChainHash, Position, RecordedEvent, StoreError, StreamName};

/// A recorded event without its chain hash yet (the witness fills it in).
pub(crate) fn recorded(event: &eventstore::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let position = Position(event.position.commit);
    let stream =
        StreamName::parse(event.stream_id.clone()).map_err(|e| StoreError::Corruption {
            position,
            reason: format!("the node returned an invalid stream name: {e}"),
        })?;
    // "created" is in 100 ns ticks since the Unix epoch; the store keeps µs.
    let micros = event
        .metadata
        .get("created")
        .and_then(|t| t.parse::<i64>().ok())
        .map_or_else(|| event.created.timestamp_micros(), |ticks| ticks / 10);
    let recorded_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(RecordedEvent {
        stream,
        revision: event.revision,
        position,
        id: event.id,
        event_type: event.event_type.clone(),
        data: event.data.clone(),
        metadata: if event.custom_metadata.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            event.custom_metadata.clone()
        },
        recorded_at,
        hash: ChainHash::GENESIS,
    })
}

pub(crate) fn client_position(position: Position) -> eventstore::Position {
    eventstore::Position {
        commit: position.0,
        prepare: position.0,
    }
}
