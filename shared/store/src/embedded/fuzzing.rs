//! Entry points for the fuzz targets in `tests/fuzz`: the decoders of the
//! bytes the embedded store reads back from disk (the write-ahead log, the
//! chunks of the events table, stream states) and the log replay that runs
//! on them after a crash. Not part of the store's API.
//!
//! Each function must return, never panic, whatever the bytes are: a
//! corrupt file is an error that names what is wrong.

use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::layout::{ChunkEntries, StoredEvent, StreamState, EVENTS, STREAMS};
use super::{wal, writer};
use crate::chain::ChainHash;
use crate::error::StoreError;

/// Decodes `bytes` as the store reads them from disk: as a write-ahead log
/// (each entry as a stored event, then as a recorded event), as a chunk of
/// the events table, and as a stream state. Returns how many stored events
/// decoded.
pub fn decode_on_disk(bytes: &[u8]) -> usize {
    let (entries, intact) = wal::parse(bytes);
    assert!(intact <= bytes.len(), "the intact prefix is inside the log");
    let mut decoded = 0;
    for (position, stored) in &entries {
        decoded += usize::from(decode_stored(*position, stored));
    }
    let first = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes);
    for entry in ChunkEntries::new(first, bytes) {
        match entry {
            Ok((position, stored)) => decoded += usize::from(decode_stored(position, stored)),
            Err(_) => break,
        }
    }
    decoded += usize::from(decode_stored(first, bytes));
    if let Ok(state) = StreamState::decode("fuzz-1", bytes) {
        let truncate_before = state.truncate_before();
        let _ = state.current(truncate_before);
        let _ = state.metadata();
    }
    decoded
}

fn decode_stored(position: u64, bytes: &[u8]) -> bool {
    let Ok(stored) = StoredEvent::decode(position, bytes) else {
        return false;
    };
    let _ = stored.link(position).hash(&ChainHash::GENESIS);
    let _ = stored.to_recorded(position);
    true
}

/// Replays the write-ahead log in `bytes` into an empty in-memory store,
/// after rewriting each decodable entry's position and hash so that the
/// entries continue the chain (as a log the store wrote itself would), and
/// reads every replayed event back. Returns how many events were replayed,
/// or the error that refused the log.
pub fn replay_wal(bytes: &[u8]) -> Result<u64, StoreError> {
    let (entries, _) = wal::parse(bytes);
    let mut chained = Vec::with_capacity(entries.len());
    let mut previous = ChainHash::GENESIS;
    for (_, mut stored) in entries.into_iter().take(64) {
        let position = chained.len() as u64;
        let hash = match StoredEvent::decode(position, &stored) {
            Ok(event) => event.link(position).hash(&previous),
            // An entry that does not decode stays as it is: replay refuses it.
            Err(_) => ChainHash::GENESIS,
        };
        if let Some(slot) = stored.get_mut(16..48) {
            slot.copy_from_slice(&hash.0);
        }
        previous = hash;
        chained.push((position, stored));
    }
    let db = Database::builder()
        .create_with_backend(InMemoryBackend::new())
        .map_err(super::storage_error("creating an in-memory store"))?;
    let replayed = writer::replay(&db, chained)?;
    let txn = db
        .begin_read()
        .map_err(super::storage_error("reading the replayed store"))?;
    let events = txn
        .open_table(EVENTS)
        .map_err(super::storage_error("opening the events table"))?;
    let mut read_back = 0u64;
    let mut previous = ChainHash::GENESIS;
    for chunk in events
        .iter()
        .map_err(super::storage_error("reading the events table"))?
    {
        let (key, value) = chunk.map_err(super::storage_error("reading a chunk"))?;
        for entry in ChunkEntries::new(key.value(), value.value()) {
            let (position, stored) = entry?;
            let event = StoredEvent::decode(position, stored)?;
            assert_eq!(
                event.link(position).hash(&previous).0,
                event.hash,
                "a replayed event continues the chain"
            );
            previous = ChainHash(event.hash);
            read_back += 1;
        }
    }
    assert_eq!(read_back, replayed, "every replayed event reads back");
    let streams = txn
        .open_table(STREAMS)
        .map_err(super::storage_error("opening the streams table"))?;
    for state in streams
        .iter()
        .map_err(super::storage_error("reading the streams table"))?
    {
        let (name, bytes) = state.map_err(super::storage_error("reading a stream"))?;
        let state = StreamState::decode(name.value(), bytes.value())?;
        let _ = state.next_revision();
    }
    Ok(replayed)
}
