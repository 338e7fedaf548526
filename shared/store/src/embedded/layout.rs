//! The on-disk layout of the embedded store: one redb file, `events.redb`,
//! holding these tables.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | format marker and version |
//! | `events` | first global position of a chunk | a chunk of events (see below) |
//! | `streams` | stream name | [`StreamState`] (postcard) |
//! | `stream_runs` | (stream name, first revision) | (first position, count) |
//!
//! The events of one append take consecutive revisions of their stream and
//! consecutive positions of the log, so the stream index holds one *run*
//! per append rather than one entry per event: revision `first + i` is at
//! position `position + i` for `i < count`.
//!
//! The events table holds *chunks*: the events of one append (up to
//! [`CHUNK_BYTES`]) under the position of the first, as entries
//! `position (u64 LE) | length (u32 LE) | stored event` — the same bytes
//! the write-ahead log holds, so the writer inserts a slice of its log
//! batch. One B-tree entry per append instead of one per event is what lets
//! the writer keep up with batched appends. Positions within a chunk follow
//! each other; a chunk that says otherwise is corrupt.
//!
//! A stored event is a fixed header with the fields that depend on where
//! the event lands in the log, followed by its *body*, which does not, so
//! the appending task encodes the body before the writer thread sees it:
//!
//! ```text
//! revision (u64 LE) | recorded_at (i64 LE, µs) | hash (32)
//!   | id (16) | len(stream) | len(type) | len(data) | len(metadata)   (u32 LE each)
//!   | stream | type | data | metadata
//! ```
//!
//! Earlier format versions (1: postcard events and one index entry per
//! event; 2: one events-table entry per event) are refused with
//! [`StoreError::UnsupportedFormat`].

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::chain::{ChainHash, ChainLink};
use crate::error::StoreError;
use crate::event::{time_of_micros, EventData, Position, RecordedEvent};
use crate::metadata::StreamMetadata;
use crate::stream_name::StreamName;

pub const FILE_NAME: &str = "events.redb";
/// Written into `meta` under [`FORMAT_KEY`]; anything else is not a store.
pub const FORMAT_MARKER: &[u8] = b"tongban-event-store";
pub const FORMAT_VERSION: u32 = 3;
pub const FORMAT_KEY: &str = "format";
pub const VERSION_KEY: &str = "version";
/// The first bytes of every redb file.
pub const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
/// (stream, first revision) → (first position, number of events).
pub const STREAM_RUNS: TableDefinition<(&str, u64), (u64, u64)> =
    TableDefinition::new("stream_runs");

/// A chunk is closed once it holds this many bytes; a longer append goes
/// into several chunks.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Position and length in front of every entry of a chunk or log batch.
pub const ENTRY_PREFIX: usize = 12;

/// The entries of a chunk, checked to follow each other from `first`.
pub struct ChunkEntries<'a> {
    bytes: &'a [u8],
    /// The position the next entry must have; `None` past the last
    /// position there can be (a chunk that goes on there is corrupt).
    next: Option<u64>,
}

impl<'a> ChunkEntries<'a> {
    pub fn new(first: u64, bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: Some(first),
        }
    }
}

impl<'a> Iterator for ChunkEntries<'a> {
    type Item = Result<(u64, &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let Some(expected) = self.next else {
            self.bytes = &[];
            return Some(Err(corrupt(
                u64::MAX,
                "the chunk holding this position goes on past it",
            )));
        };
        let entry = (|| {
            let position = u64::from_le_bytes(self.bytes.get(..8)?.try_into().ok()?);
            let len = u32_at(self.bytes, 8)?;
            let stored = self.bytes.get(ENTRY_PREFIX..ENTRY_PREFIX + len)?;
            Some((position, stored, ENTRY_PREFIX + len))
        })();
        match entry {
            Some((position, stored, used)) if position == expected => {
                self.bytes = &self.bytes[used..];
                self.next = expected.checked_add(1);
                Some(Ok((position, stored)))
            }
            _ => {
                self.bytes = &[];
                Some(Err(corrupt(
                    expected,
                    "the chunk holding this position is malformed",
                )))
            }
        }
    }
}

/// Bytes of the position-dependent header of a stored event.
pub const HEADER_LEN: usize = 8 + 8 + 32;
/// Bytes of the fixed part of a body: the id and four lengths.
const BODY_FIXED_LEN: usize = 16 + 4 * 4;

/// An event as stored under its position, borrowing from the page it was
/// read from.
pub struct StoredEvent<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub id: [u8; 16],
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    pub recorded_at_micros: i64,
    pub hash: [u8; 32],
}

fn corrupt(position: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corruption {
        position: Position(position),
        reason: reason.into(),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(<[u8; 4]>::try_from(b).ok()?) as usize)
}

fn len32(len: usize, field: &str) -> Result<[u8; 4], StoreError> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| StoreError::InvalidInput {
            field: field.into(),
            rule: "must stay under 4 GiB".into(),
        })
}

/// The fields of an event body, borrowed from its encoding.
pub struct Body<'a> {
    pub id: [u8; 16],
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
}

impl<'a> Body<'a> {
    /// Splits an encoded body into its fields; `None` if it is malformed.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let id = <[u8; 16]>::try_from(bytes.get(..16)?).ok()?;
        let stream_len = u32_at(bytes, 16)?;
        let type_len = u32_at(bytes, 20)?;
        let data_len = u32_at(bytes, 24)?;
        let metadata_len = u32_at(bytes, 28)?;
        let rest = bytes.get(BODY_FIXED_LEN..)?;
        let (stream, rest) = rest.split_at_checked(stream_len)?;
        let (event_type, rest) = rest.split_at_checked(type_len)?;
        let (data, rest) = rest.split_at_checked(data_len)?;
        if rest.len() != metadata_len {
            return None;
        }
        Some(Self {
            id,
            stream: std::str::from_utf8(stream).ok()?,
            event_type: std::str::from_utf8(event_type).ok()?,
            data,
            metadata: rest,
        })
    }

    /// The chain link of this body at its place in the log.
    pub fn link(&self, position: u64, revision: u64, recorded_at_micros: i64) -> ChainLink<'_> {
        ChainLink {
            position: Position(position),
            stream: self.stream,
            revision,
            id: &self.id,
            event_type: self.event_type,
            data: self.data,
            metadata: self.metadata,
            recorded_at_micros,
        }
    }
}

/// The bodies of the events of one append, encoded by the appending task
/// so that the writer thread only adds the header.
pub(crate) struct EncodedEvents {
    bytes: Vec<u8>,
    /// Where each body ends in `bytes`.
    ends: Vec<usize>,
}

impl EncodedEvents {
    pub fn encode(stream: &str, events: &[EventData]) -> Result<Self, StoreError> {
        let total = events
            .iter()
            .map(|e| BODY_FIXED_LEN + stream.len() + e.size())
            .sum();
        let mut bytes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(events.len());
        for event in events {
            bytes.extend_from_slice(event.id.as_bytes());
            bytes.extend_from_slice(&len32(stream.len(), "stream")?);
            bytes.extend_from_slice(&len32(event.event_type.len(), "event_type")?);
            bytes.extend_from_slice(&len32(event.data.len(), "data")?);
            bytes.extend_from_slice(&len32(event.metadata.len(), "metadata")?);
            bytes.extend_from_slice(stream.as_bytes());
            bytes.extend_from_slice(event.event_type.as_bytes());
            bytes.extend_from_slice(&event.data);
            bytes.extend_from_slice(&event.metadata);
            ends.push(bytes.len());
        }
        Ok(Self { bytes, ends })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes of all bodies together.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Each encoded body, in order.
    pub fn bodies(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// The ids of the events, in order.
    pub fn ids(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        self.bodies().map(|body| {
            body.get(..16)
                .and_then(|id| <[u8; 16]>::try_from(id).ok())
                .unwrap_or_default()
        })
    }
}

/// Writes the header of a stored event; the body follows it.
pub fn encode_header(revision: u64, recorded_at_micros: i64, hash: &ChainHash) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&revision.to_le_bytes());
    header[8..16].copy_from_slice(&recorded_at_micros.to_le_bytes());
    header[16..].copy_from_slice(&hash.0);
    header
}

impl<'a> StoredEvent<'a> {
    pub fn decode(position: u64, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let (header, body) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| corrupt(position, "the stored event is shorter than its header"))?;
        let revision = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
        let recorded_at_micros = i64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let hash = <[u8; 32]>::try_from(&header[16..]).unwrap_or_default();
        let body = Body::parse(body)
            .ok_or_else(|| corrupt(position, "the stored event's body cannot be decoded"))?;
        Ok(Self {
            stream: body.stream,
            revision,
            id: body.id,
            event_type: body.event_type,
            data: body.data,
            metadata: body.metadata,
            recorded_at_micros,
            hash,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(entries: &[(u64, &[u8])]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (position, stored) in entries {
            bytes.extend_from_slice(&position.to_le_bytes());
            bytes.extend_from_slice(&(stored.len() as u32).to_le_bytes());
            bytes.extend_from_slice(stored);
        }
        bytes
    }

    #[test]
    fn a_stored_event_decodes_to_what_was_encoded() {
        let event = EventData::raw("Registered", &br#"{"a":1}"#[..]).with_raw_metadata("{}");
        let encoded =
            EncodedEvents::encode("person-1", std::slice::from_ref(&event)).expect("encodes");
        let body = encoded.bodies().next().expect("one body");
        let mut stored = encode_header(7, 42, &ChainHash([3; 32])).to_vec();
        stored.extend_from_slice(body);
        let decoded = StoredEvent::decode(9, &stored).expect("decodes");
        assert_eq!(decoded.stream, "person-1");
        assert_eq!(decoded.revision, 7);
        assert_eq!(decoded.recorded_at_micros, 42);
        assert_eq!(decoded.hash, [3; 32]);
        assert_eq!(decoded.id, *event.id.as_bytes());
        assert_eq!(decoded.event_type, "Registered");
        assert_eq!(decoded.data, &br#"{"a":1}"#[..]);
        assert_eq!(decoded.metadata, &b"{}"[..]);
        assert!(StoredEvent::decode(9, &stored[..stored.len() - 1]).is_err());
    }

    #[test]
    fn a_chunk_whose_positions_do_not_follow_each_other_is_corrupt() {
        let bytes = chunk(&[(5, b"a"), (6, b"b")]);
        let entries: Vec<_> = ChunkEntries::new(5, &bytes)
            .collect::<Result<_, _>>()
            .expect("ok");
        assert_eq!(entries, vec![(5, &b"a"[..]), (6, &b"b"[..])]);
        let bytes = chunk(&[(5, b"a"), (7, b"b")]);
        let result: Result<Vec<_>, _> = ChunkEntries::new(5, &bytes).collect();
        assert!(matches!(
            result,
            Err(StoreError::Corruption {
                position: Position(6),
                ..
            })
        ));
        let truncated = &chunk(&[(5, b"abc")])[..14];
        assert!(ChunkEntries::new(5, truncated).any(|e| e.is_err()));
    }

    /// Found by the `store_format` fuzz target: the position after the
    /// last one overflowed (a panic with overflow checks).
    #[test]
    fn a_chunk_that_goes_on_past_the_last_position_is_corrupt_not_a_panic() {
        let bytes = chunk(&[(u64::MAX, b"a"), (0, b"b")]);
        let entries: Vec<_> = ChunkEntries::new(u64::MAX, &bytes).collect();
        assert!(matches!(entries[0], Ok((u64::MAX, b"a"))));
        assert!(matches!(
            entries[1],
            Err(StoreError::Corruption {
                position: Position(u64::MAX),
                ..
            })
        ));
        assert_eq!(entries.len(), 2);
    }

    /// The fuzz entry points decode a real log and replay it.
    #[test]
    fn the_fuzz_entry_points_decode_and_replay_a_log() {
        let event = EventData::raw("Registered", &br#"{"a":1}"#[..]).with_raw_metadata("{}");
        let encoded =
            EncodedEvents::encode("person-1", std::slice::from_ref(&event)).expect("encodes");
        let body = encoded.bodies().next().expect("one body");
        let header = encode_header(0, 42, &ChainHash([0; 32]));
        let mut batch = super::super::wal::WalBatch::default();
        batch.push_event(0, &header, body);
        batch.push_event(1, &header, body);
        let payload = batch.since(0).to_vec();
        let mut log = b"TBW2".to_vec();
        log.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        log.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        log.extend_from_slice(&payload);
        assert!(super::super::fuzzing::decode_on_disk(&log) >= 2);
        assert_eq!(super::super::fuzzing::replay_wal(&log).expect("replays"), 2);
    }
}
