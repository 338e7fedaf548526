//! The hash chain over the global log.
//!
//! Each event's hash is SHA-256 over the previous event's hash followed by
//! the event's canonical encoding:
//!
//! ```text
//! "tongban-chain-v1" || prev_hash (32) || position (u64 BE)
//!   || len(stream) (u32 BE) || stream || revision (u64 BE) || id (16)
//!   || len(type) (u32 BE) || type || len(data) (u32 BE) || data
//!   || len(metadata) (u32 BE) || metadata || recorded_at (i64 BE, µs since epoch)
//! ```
//!
//! The first event's predecessor hash is 32 zero bytes. Changing any stored
//! byte of any event changes its hash and breaks every link after it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Position;

const DOMAIN: &[u8] = b"tongban-chain-v1";

/// A SHA-256 hash in the chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The predecessor of the first event.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", &self.to_hex()[..16])
    }
}

/// The fields of an event that the chain covers.
pub struct ChainLink<'a> {
    pub position: Position,
    pub stream: &'a str,
    pub revision: u64,
    pub id: &'a [u8; 16],
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    pub recorded_at_micros: i64,
}

fn len32(bytes: &[u8]) -> [u8; 4] {
    // Events are capped at 16 MiB, so every length fits.
    u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes()
}

impl ChainLink<'_> {
    /// The hash of this event given its predecessor's hash.
    pub fn hash(&self, previous: &ChainHash) -> ChainHash {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(previous.0);
        h.update(self.position.0.to_be_bytes());
        h.update(len32(self.stream.as_bytes()));
        h.update(self.stream.as_bytes());
        h.update(self.revision.to_be_bytes());
        h.update(self.id);
        h.update(len32(self.event_type.as_bytes()));
        h.update(self.event_type.as_bytes());
        h.update(len32(self.data));
        h.update(self.data);
        h.update(len32(self.metadata));
        h.update(self.metadata);
        h.update(self.recorded_at_micros.to_be_bytes());
        ChainHash(h.finalize().into())
    }
}

/// The end of the log: its last position and that event's hash, which can be
/// signed and published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub position: Position,
    pub hash: ChainHash,
}

/// What `verify_chain` checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Number of events whose links were recomputed.
    pub events_checked: u64,
    /// First and last positions checked, if any.
    pub first: Option<Position>,
    pub last: Option<Position>,
    /// Hash of the last event checked.
    pub last_hash: Option<ChainHash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link<'a>(data: &'a [u8], id: &'a [u8; 16]) -> ChainLink<'a> {
        ChainLink {
            position: Position(7),
            stream: "person-1",
            revision: 2,
            id,
            event_type: "HealthDeclared",
            data,
            metadata: b"{}",
            recorded_at_micros: 1,
        }
    }

    #[test]
    fn any_changed_byte_changes_the_hash() {
        let id = [1u8; 16];
        let a = link(br#"{"t":36.5}"#, &id).hash(&ChainHash::GENESIS);
        let b = link(br#"{"t":36.6}"#, &id).hash(&ChainHash::GENESIS);
        assert_ne!(a, b);
    }

    #[test]
    fn the_hash_covers_the_predecessor() {
        let id = [1u8; 16];
        let a = link(b"{}", &id).hash(&ChainHash::GENESIS);
        let b = link(b"{}", &id).hash(&ChainHash([9; 32]));
        assert_ne!(a, b);
    }

    #[test]
    fn length_prefixes_keep_field_boundaries_apart() {
        let id = [1u8; 16];
        let mut x = link(b"{}", &id);
        x.stream = "ab";
        x.event_type = "c";
        let mut y = link(b"{}", &id);
        y.stream = "a";
        y.event_type = "bc";
        assert_ne!(x.hash(&ChainHash::GENESIS), y.hash(&ChainHash::GENESIS));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = ChainHash([0xab; 32]);
        assert_eq!(ChainHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ChainHash::from_hex("zz"), None);
    }
}
