//! Recent event ids, for idempotent appends with `Any` or `StreamExists`.
//!
//! Appends with `NoStream` or an exact revision are checked against the
//! stream itself (the events where the retry says they go), which is exact
//! for any age. Appends with `Any` have no such place, so, like
//! EventStoreDB, the store remembers recent ids in memory; a retry within
//! that window writes no duplicate. Keeping ids out of the on-disk B-trees
//! keeps random page writes out of every commit.
//!
//! A retry is recognised by its first event id (the others are then checked
//! against the stream), so the writer remembers only the first id of each
//! append: the window is the last [`RECENT_IDS`] appends, not events, and
//! remembering costs one insert per append. A "retry" that starts in the
//! middle of an earlier append is not recognised as one. On open, the ids
//! of every event of the log's tail are loaded, which is a superset.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};

use redb::ReadableDatabase;

use super::layout::{ChunkEntries, StoredEvent, EVENTS};
use super::storage_error;
use crate::error::StoreError;

/// How many recent event ids are remembered.
pub const RECENT_IDS: usize = 1 << 18;

/// Hashes event ids with one keyed multiply: ids are 128 bits already, and
/// SipHash over every id was a noticeable share of the writer's time. The
/// keys are random per process, so ids cannot be chosen to collide.
#[derive(Clone)]
pub(crate) struct IdHashState {
    keys: [u64; 2],
}

impl IdHashState {
    fn new() -> Self {
        let random = RandomState::new();
        Self {
            keys: [random.hash_one(1u8) | 1, random.hash_one(2u8)],
        }
    }
}

impl BuildHasher for IdHashState {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            keys: self.keys,
            state: 0,
        }
    }
}

pub(crate) struct IdHasher {
    keys: [u64; 2],
    state: u64,
}

impl IdHasher {
    fn mix(&mut self, word: u128) {
        let lo = (word as u64) ^ self.keys[0] ^ self.state;
        let hi = ((word >> 64) as u64) ^ self.keys[1];
        let product = u128::from(lo).wrapping_mul(u128::from(hi));
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut word = [0u8; 16];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u128::from_le_bytes(word));
        }
    }

    fn write_u128(&mut self, id: u128) {
        self.mix(id);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

pub(crate) struct IdCache {
    positions: HashMap<u128, u64, IdHashState>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl IdCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            positions: HashMap::with_hasher(IdHashState::new()),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Fills the cache from the tail of the log.
    pub fn load(db: &redb::Database, capacity: usize) -> Result<Self, StoreError> {
        let mut cache = Self::new(capacity);
        let txn = db
            .begin_read()
            .map_err(storage_error("starting a read transaction"))?;
        let events = txn
            .open_table(EVENTS)
            .map_err(storage_error("opening the events table"))?;
        let mut tail = Vec::new();
        let chunks = events
            .range(0..)
            .map_err(storage_error("reading the log tail"))?;
        for chunk in chunks.rev() {
            if tail.len() >= capacity {
                break;
            }
            let (key, value) = chunk.map_err(storage_error("reading the log tail"))?;
            let entries =
                ChunkEntries::new(key.value(), value.value()).collect::<Result<Vec<_>, _>>()?;
            for (position, bytes) in entries.into_iter().rev().take(capacity - tail.len()) {
                let stored = StoredEvent::decode(position, bytes)?;
                tail.push((u128::from_be_bytes(stored.id), position));
            }
        }
        for (id, position) in tail.into_iter().rev() {
            cache.insert(id, position);
        }
        Ok(cache)
    }

    pub fn get(&self, id: u128) -> Option<u64> {
        self.positions.get(&id).copied()
    }

    pub fn insert(&mut self, id: u128, position: u64) {
        if self.positions.insert(id, position).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.positions.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_ids_are_forgotten_first() {
        let mut cache = IdCache::new(2);
        cache.insert(1, 10);
        cache.insert(2, 20);
        cache.insert(3, 30);
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.get(2), Some(20));
        assert_eq!(cache.get(3), Some(30));
    }

    #[test]
    fn ids_that_differ_in_one_half_hash_apart() {
        let state = IdHashState::new();
        let a = state.hash_one(1u128);
        let b = state.hash_one(1u128 << 64);
        let c = state.hash_one(2u128);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
