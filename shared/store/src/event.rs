//! Events to append, events as recorded, positions and revisions.

use std::fmt;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::ChainHash;
use crate::error::StoreError;
use crate::stream_name::StreamName;

/// Largest event (type, data and metadata together), in bytes.
pub const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// Longest event type name, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// A place in the global log (`$all`): the n-th event ever committed,
/// counting from 0. Positions follow commit order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Position(pub u64);

impl Position {
    pub const START: Position = Position(0);

    pub fn next(self) -> Position {
        Position(self.0.saturating_add(1))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

/// What the writer believes about the stream it appends to (optimistic
/// concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist (or must have been soft-deleted).
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's last revision must be exactly this one.
    Exact(u64),
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(n) => write!(f, "revision {n}"),
        }
    }
}

/// Where a stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CurrentRevision {
    NoStream,
    Current(u64),
}

impl CurrentRevision {
    pub fn revision(self) -> Option<u64> {
        match self {
            Self::NoStream => None,
            Self::Current(n) => Some(n),
        }
    }
}

impl fmt::Display for CurrentRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Current(n) => write!(f, "revision {n}"),
        }
    }
}

/// An event to append. `data` and `metadata` are JSON documents (checked on
/// append); keeping them as bytes lets the store move them without
/// re-encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct EventData {
    pub id: Uuid,
    pub event_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
}

impl EventData {
    /// An event with a fresh id, the given type and `data` encoded as JSON,
    /// with empty metadata (`{}`).
    pub fn json<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<Self, StoreError> {
        let data = serde_json::to_vec(data).map_err(|e| StoreError::InvalidJson {
            index: 0,
            field: "data",
            reason: e.to_string(),
        })?;
        Ok(Self {
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            data: Bytes::from(data),
            metadata: Bytes::from_static(b"{}"),
        })
    }

    /// An event from raw JSON bytes (validated on append).
    pub fn raw(event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            data: data.into(),
            metadata: Bytes::from_static(b"{}"),
        }
    }

    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    pub fn with_metadata<T: Serialize + ?Sized>(
        mut self,
        metadata: &T,
    ) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(metadata).map_err(|e| StoreError::InvalidJson {
            index: 0,
            field: "metadata",
            reason: e.to_string(),
        })?;
        self.metadata = Bytes::from(bytes);
        Ok(self)
    }

    pub fn with_raw_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Bytes this event takes against [`MAX_EVENT_SIZE`].
    pub fn size(&self) -> usize {
        self.event_type.len() + self.data.len() + self.metadata.len()
    }

    /// Checks what a store requires of an event at `index` in an append.
    pub fn validate(&self, index: usize) -> Result<(), StoreError> {
        let size = self.size();
        if size > MAX_EVENT_SIZE {
            return Err(StoreError::EventTooLarge {
                index,
                size,
                max: MAX_EVENT_SIZE,
            });
        }
        if self.event_type.is_empty() || self.event_type.len() > MAX_EVENT_TYPE_BYTES {
            return Err(StoreError::InvalidInput {
                field: format!("events[{index}].event_type"),
                rule: "an event type must be 1 to 255 bytes".into(),
            });
        }
        if self.event_type.chars().any(char::is_control) {
            return Err(StoreError::InvalidInput {
                field: format!("events[{index}].event_type"),
                rule: "an event type must not contain control characters".into(),
            });
        }
        check_json(&self.data, index, "data")?;
        check_json(&self.metadata, index, "metadata")?;
        Ok(())
    }
}

/// Checks what every backend requires of the events of one append: at
/// least one, each valid, no event id twice.
pub fn validate_events(events: &[EventData]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidInput {
            field: "events".into(),
            rule: "an append needs at least one event".into(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        event.validate(index)?;
        if !seen.insert(event.id) {
            return Err(StoreError::InvalidInput {
                field: format!("events[{index}].id"),
                rule: format!("event id {} appears twice in one append", event.id),
            });
        }
    }
    Ok(())
}

fn check_json(bytes: &[u8], index: usize, field: &'static str) -> Result<(), StoreError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| StoreError::InvalidJson {
            index,
            field,
            reason: e.to_string(),
        })
}

/// An event as the log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub stream: StreamName,
    /// 0-based revision within its stream.
    pub revision: u64,
    /// Place in the global log.
    pub position: Position,
    pub id: Uuid,
    pub event_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
    /// When the store committed it (UTC, microsecond precision).
    pub recorded_at: OffsetDateTime,
    /// Hash chain link: covers the previous event's hash and this event.
    pub hash: ChainHash,
}

impl RecordedEvent {
    /// Decodes the data as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// Decodes the metadata as `T`.
    pub fn metadata_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.metadata)
    }

    /// The recorded-at time in microseconds since the Unix epoch, as the
    /// hash chain encodes it.
    pub fn recorded_at_micros(&self) -> i64 {
        micros_of(self.recorded_at)
    }
}

pub(crate) fn micros_of(at: OffsetDateTime) -> i64 {
    let nanos = at.unix_timestamp_nanos() / 1_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

pub(crate) fn time_of_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What a successful append answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's revision after the append: pass it as
    /// `ExpectedRevision::Exact` to append next.
    pub next_expected_revision: u64,
    /// Position of the first event of the append. (Over the EventStoreDB
    /// protocol, which answers only the last position, finding it costs the
    /// `esdb` backend one extra read for appends of several events.)
    pub first_position: Position,
    /// Position of the last event of the append.
    pub position: Position,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_over_sixteen_mebibytes_is_too_large() {
        let data = format!("\"{}\"", "x".repeat(MAX_EVENT_SIZE));
        let event = EventData::raw("Big", data);
        assert!(matches!(
            event.validate(3),
            Err(StoreError::EventTooLarge { index: 3, .. })
        ));
    }

    #[test]
    fn malformed_json_names_the_event_and_the_field() {
        let event = EventData::raw("Bad", "{not json");
        match event.validate(1) {
            Err(StoreError::InvalidJson { index, field, .. }) => {
                assert_eq!((index, field), (1, "data"));
            }
            other => panic!("expected invalid JSON, got {other:?}"),
        }
        let event = EventData::raw("Bad", "{}").with_raw_metadata("[1,");
        assert!(matches!(
            event.validate(0),
            Err(StoreError::InvalidJson {
                field: "metadata",
                ..
            })
        ));
    }

    #[test]
    fn microsecond_times_round_trip() {
        let at = time_of_micros(1_700_000_000_123_456);
        assert_eq!(micros_of(at), 1_700_000_000_123_456);
    }
}
