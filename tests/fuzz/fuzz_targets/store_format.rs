//! The embedded store's on-disk format: bytes as they could be read back
//! from `events.wal` or the events table. The first byte chooses:
//! - 0: decode them as a log, a chunk, a stored event and a stream state;
//! - 1: replay them as a write-ahead log (with positions and hashes fixed
//!   up to continue the chain, as the store's own log would) into an empty
//!   in-memory store and read everything back.
//!
//! Nothing may panic: a corrupt file is an error that names it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tongban_store::embedded::fuzzing::{decode_on_disk, replay_wal};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        decode_on_disk(rest);
    } else {
        let _ = replay_wal(rest);
    }
});
