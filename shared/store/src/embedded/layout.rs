//! The on-disk layout of the embedded store: one redb file, `events.redb`,
//! holding these tables.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | format marker and version |
//! | `events` | global position | the event ([`StoredEvent`], postcard) |
//! | `streams` | stream name | [`StreamState`] (postcard) |
//! | `stream_index` | (stream name, revision) | global position |

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::chain::{ChainHash, ChainLink};
use crate::error::StoreError;
use crate::event::{time_of_micros, Position, RecordedEvent};
use crate::metadata::StreamMetadata;
use crate::stream_name::StreamName;

pub const FILE_NAME: &str = "events.redb";
/// Written into `meta` under [`FORMAT_KEY`]; anything else is not a store.
pub const FORMAT_MARKER: &[u8] = b"tongban-event-store";
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_KEY: &str = "format";
pub const VERSION_KEY: &str = "version";
/// The first bytes of every redb file.
pub const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
pub const STREAM_INDEX: TableDefinition<(&str, u64), u64> = TableDefinition::new("stream_index");

/// An event as stored under its position, borrowing from the page it was
/// read from.
#[derive(Serialize, Deserialize)]
pub struct StoredEvent<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub id: [u8; 16],
    pub event_type: &'a str,
    #[serde(with = "serde_bytes", borrow)]
    pub data: &'a [u8],
    #[serde(with = "serde_bytes", borrow)]
    pub metadata: &'a [u8],
    pub recorded_at_micros: i64,
    pub hash: [u8; 32],
}

impl<'a> StoredEvent<'a> {
    pub fn decode(position: u64, bytes: &'a [u8]) -> Result<Self, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Corruption {
            position: Position(position),
            reason: format!("the stored event cannot be decoded: {e}"),
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_stdvec(self).map_err(|e| StoreError::InvalidInput {
            field: "event".into(),
            rule: format!("cannot be encoded: {e}"),
        })
    }

    pub fn link(&self, position: u64) -> ChainLink<'_> {
        ChainLink {
            position: Position(position),
            stream: self.stream,
            revision: self.revision,
            id: &self.id,
            event_type: self.event_type,
            data: self.data,
            metadata: self.metadata,
            recorded_at_micros: self.recorded_at_micros,
        }
    }

    pub fn to_recorded(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        // Stored names were validated on append; a stored name that no longer
        // parses means the bytes changed underneath us.
        let stream = StreamName::parse(self.stream).map_err(|e| StoreError::Corruption {
            position: Position(position),
            reason: format!("stored stream name is invalid: {e}"),
        });
        let stream = match stream {
            Ok(s) => s,
            // `$$name` metadata streams may exceed 255 bytes; they are still ours.
            Err(_) if self.stream.starts_with("$$") => StreamName::parse(&self.stream[2..])
                .map(|s| s.metadata_stream())
                .map_err(|e| StoreError::Corruption {
                    position: Position(position),
                    reason: format!("stored stream name is invalid: {e}"),
                })?,
            Err(e) => return Err(e),
        };
        Ok(RecordedEvent {
            stream,
            revision: self.revision,
            position: Position(position),
            id: uuid::Uuid::from_bytes(self.id),
            event_type: self.event_type.to_string(),
            data: bytes::Bytes::copy_from_slice(self.data),
            metadata: bytes::Bytes::copy_from_slice(self.metadata),
            recorded_at: time_of_micros(self.recorded_at_micros),
            hash: ChainHash(self.hash),
        })
    }
}

/// What the store knows about a stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    /// Revision of the last event ever written, soft-deleted ones included.
    pub last_revision: Option<u64>,
    pub tombstoned: bool,
    /// The stream's metadata as JSON (`$maxCount`, `$maxAge`, `$tb`, custom).
    pub metadata_json: Option<Vec<u8>>,
}

impl StreamState {
    pub fn decode(stream: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Corruption {
            position: Position(0),
            reason: format!("the state of stream '{stream}' cannot be decoded: {e}"),
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_stdvec(self).map_err(|e| StoreError::InvalidInput {
            field: "stream state".into(),
            rule: format!("cannot be encoded: {e}"),
        })
    }

    pub fn metadata(&self) -> StreamMetadata {
        self.metadata_json
            .as_deref()
            .and_then(|json| serde_json::from_slice(json).ok())
            .unwrap_or_default()
    }

    /// First revision that soft deletion has not hidden.
    pub fn truncate_before(&self) -> u64 {
        self.metadata().truncate_before.unwrap_or(0)
    }

    /// The revision an expected-revision check compares against: a stream
    /// whose every event is soft-deleted counts as no stream.
    pub fn current(&self, truncate_before: u64) -> crate::event::CurrentRevision {
        match self.last_revision {
            Some(last) if last >= truncate_before => crate::event::CurrentRevision::Current(last),
            _ => crate::event::CurrentRevision::NoStream,
        }
    }

    pub fn next_revision(&self) -> u64 {
        self.last_revision.map_or(0, |r| r + 1)
    }
}
