//! The write-ahead log that makes group commit cheap.
//!
//! A durable redb commit rewrites B-tree pages all over the file and syncs
//! them; on this class of machine that costs several times a plain
//! append-and-fdatasync. So each commit first appends the events it adds to
//! `events.wal` and syncs that (one sequential write), then commits to redb
//! without syncing. Every so often a checkpoint commits redb durably and
//! empties the log. After a crash, redb comes back at its last durable
//! commit and [`replay`] re-applies what the log holds beyond it.
//!
//! Record: `magic (4) | payload length (u32 LE) | CRC-32 of payload (u32 LE) |
//! payload`, where the payload is a sequence of `position (u64 LE) | length
//! (u32 LE) | stored event` entries (see [`layout`](super::layout)). The
//! magic names the format version: `TBW2`; a log of version 1 (`TBW1`) is
//! refused rather than dropped. A torn or corrupt tail ends the replay:
//! its append was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::layout;
use crate::error::StoreError;

pub const FILE_NAME: &str = "events.wal";
const MAGIC: &[u8; 4] = b"TBW2";
/// The log of format version 1, whose events this build cannot replay.
const MAGIC_V1: &[u8; 4] = b"TBW1";
const HEADER: usize = 12;

pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
}

/// The events of one commit, as they go into the log.
#[derive(Default)]
pub(crate) struct WalBatch {
    payload: Vec<u8>,
}

impl WalBatch {
    /// An empty batch that writes into `buffer`, reusing its allocation.
    pub fn reusing(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        Self { payload: buffer }
    }

    /// The batch's buffer, for [`WalBatch::reusing`] once it is written.
    pub fn into_buffer(self) -> Vec<u8> {
        self.payload
    }

    #[cfg(test)]
    pub fn push(&mut self, position: u64, stored: &[u8]) {
        self.payload.extend_from_slice(&position.to_le_bytes());
        // Events are capped at 16 MiB plus a small header.
        let len = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        self.payload.extend_from_slice(&len.to_le_bytes());
        self.payload.extend_from_slice(stored);
    }

    /// Makes room for `events` more events whose bodies take `body_bytes`.
    pub fn reserve(&mut self, events: usize, body_bytes: usize) {
        self.payload
            .reserve(body_bytes + events * (layout::ENTRY_PREFIX + layout::HEADER_LEN));
    }

    /// Adds a stored event made of `header` and `body`.
    pub fn push_event(&mut self, position: u64, header: &[u8; layout::HEADER_LEN], body: &[u8]) {
        self.payload.extend_from_slice(&position.to_le_bytes());
        // Events are capped at 16 MiB plus a small header.
        let len = u32::try_from(header.len() + body.len()).unwrap_or(u32::MAX);
        self.payload.extend_from_slice(&len.to_le_bytes());
        self.payload.extend_from_slice(header);
        self.payload.extend_from_slice(body);
    }

    /// Where the next entry will start.
    pub fn mark(&self) -> usize {
        self.payload.len()
    }

    /// The entries pushed since `mark`: a chunk for the events table.
    pub fn since(&self, mark: usize) -> &[u8] {
        self.payload.get(mark..).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

impl Wal {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let file = crate::private_fs::owner_only(&mut OpenOptions::new())
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
            .len();
        Ok(Self { file, path, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends the events of several commits and syncs them to disk once.
    pub fn append(&mut self, batches: &[&WalBatch]) -> Result<(), StoreError> {
        let io = |e| StoreError::io(format!("writing {}", self.path.display()), e);
        let mut written = 0u64;
        for batch in batches.iter().filter(|b| !b.is_empty()) {
            let payload = &batch.payload;
            let len = u32::try_from(payload.len()).map_err(|_| StoreError::InvalidInput {
                field: "events".into(),
                rule: "one commit must stay under 4 GiB".into(),
            })?;
            let mut header = [0u8; HEADER];
            header[..4].copy_from_slice(MAGIC);
            header[4..8].copy_from_slice(&len.to_le_bytes());
            header[8..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
            self.file.write_all(&header).map_err(io)?;
            self.file.write_all(payload).map_err(io)?;
            written += (HEADER + payload.len()) as u64;
        }
        if written > 0 {
            self.file.sync_data().map_err(io)?;
            self.len += written;
        }
        Ok(())
    }

    /// Empties the log once redb holds everything in it durably.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let io = |e| StoreError::io(format!("emptying {}", self.path.display()), e);
        self.file.set_len(0).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        self.len = 0;
        Ok(())
    }

    /// Every intact entry in the log, in order: (position, stored event).
    pub fn entries(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let io = |e| StoreError::io(format!("reading {}", self.path.display()), e);
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.file.read_to_end(&mut bytes).map_err(io)?;
        if bytes.starts_with(MAGIC_V1) {
            return Err(StoreError::UnsupportedFormat {
                path: self.path.clone(),
                found: 1,
                supported: layout::FORMAT_VERSION,
            });
        }
        let (entries, at) = parse(&bytes);
        if at < bytes.len() {
            tracing::warn!(
                path = %self.path.display(),
                dropped_bytes = bytes.len() - at,
                "the write-ahead log ends in a torn record; it was never acknowledged"
            );
        }
        Ok(entries)
    }
}

/// Splits the bytes of a log into its intact entries: (position, stored
/// event). Returns them with the length of the intact prefix; parsing
/// stops at the first record whose magic, length or checksum is wrong.
pub(crate) fn parse(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, usize) {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at + HEADER <= bytes.len() {
        if &bytes[at..at + 4] != MAGIC {
            break;
        }
        let len = u32_at(bytes, at + 4) as usize;
        let crc = u32_at(bytes, at + 8);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut p = 0usize;
        while p + layout::ENTRY_PREFIX <= payload.len() {
            let position = u64::from_le_bytes(payload[p..p + 8].try_into().unwrap_or_default());
            let n = u32_at(payload, p + 8) as usize;
            let Some(stored) = payload.get(p + 12..p + 12 + n) else {
                break;
            };
            entries.push((position, stored.to_vec()));
            p += 12 + n;
        }
        at += HEADER + len;
    }
    (entries, at)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let mut batch = WalBatch::default();
        batch.push(0, b"first");
        batch.push(1, b"second");
        wal.append(&[&batch]).unwrap();
        let mut batch = WalBatch::default();
        batch.push(2, b"third");
        wal.append(&[&batch]).unwrap();
        // A torn write: half a record.
        wal.file.write_all(b"TBW1\x10\x00\x00\x00").unwrap();
        let entries = wal.entries().unwrap();
        assert_eq!(
            entries,
            vec![
                (0, b"first".to_vec()),
                (1, b"second".to_vec()),
                (2, b"third".to_vec())
            ]
        );
        wal.reset().unwrap();
        assert!(wal.entries().unwrap().is_empty());
    }

    #[test]
    fn a_record_with_a_bad_checksum_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let mut batch = WalBatch::default();
        batch.push(0, b"kept");
        wal.append(&[&batch]).unwrap();
        let mut batch = WalBatch::default();
        batch.push(1, b"flipped");
        wal.append(&[&batch]).unwrap();
        drop(wal);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        assert_eq!(wal.entries().unwrap(), vec![(0, b"kept".to_vec())]);
    }
}
