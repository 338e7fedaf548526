//! Reads from a redb read transaction: stream reads that honour metadata,
//! `$all` scans with filters, and chain verification.

use redb::ReadTransaction;
use time::OffsetDateTime;

use super::layout::{StoredEvent, StreamState, EVENTS, STREAMS, STREAM_RUNS};
use super::storage_error;
use crate::chain::{ChainHash, ChainReport};
use crate::error::StoreError;
use crate::event::{micros_of, Position, RecordedEvent};
use crate::filter::EventFilter;
use crate::store::{Direction, PositionRange, ReadFrom};
use crate::stream_name::StreamName;

pub(crate) fn stream_state(
    txn: &ReadTransaction,
    stream: &StreamName,
) -> Result<Option<StreamState>, StoreError> {
    let table = match txn.open_table(STREAMS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(storage_error("opening the streams table")(e)),
    };
    match table
        .get(stream.as_str())
        .map_err(storage_error("reading a stream's state"))?
    {
        Some(bytes) => Ok(Some(StreamState::decode(stream.as_str(), bytes.value())?)),
        None => Ok(None),
    }
}

/// The last durable position: readers see nothing after it, even if the
/// writer has already committed it to redb (see `syncer`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Horizon(pub Option<u64>);

impl Horizon {
    pub fn of(head: Option<crate::chain::Head>) -> Self {
        Self(head.map(|h| h.position.0))
    }

    pub fn shows(self, position: u64) -> bool {
        self.0.is_some_and(|last| position <= last)
    }
}

/// The revisions a stream read may show, after soft delete and max count.
pub(crate) struct Visible {
    pub first: u64,
    pub last: u64,
    /// Events recorded before this time (µs) are hidden by max age.
    pub not_before_micros: Option<i64>,
}

pub(crate) fn visible_revisions(
    stream: &StreamName,
    state: &StreamState,
) -> Result<Visible, StoreError> {
    let not_found = || StoreError::StreamNotFound {
        stream: stream.to_string(),
    };
    if state.tombstoned {
        return Err(StoreError::StreamDeleted {
            stream: stream.to_string(),
        });
    }
    let last = state.last_revision.ok_or_else(not_found)?;
    let metadata = state.metadata();
    let mut first = metadata.truncate_before.unwrap_or(0);
    if let Some(max_count) = metadata.max_count {
        first = first.max((last + 1).saturating_sub(max_count));
    }
    if first > last {
        return Err(not_found());
    }
    let not_before_micros = metadata.max_age_seconds.map(|age| {
        micros_of(OffsetDateTime::now_utc())
            - i64::try_from(age).unwrap_or(i64::MAX / 2_000_000) * 1_000_000
    });
    Ok(Visible {
        first,
        last,
        not_before_micros,
    })
}

pub(crate) fn read_stream(
    txn: &ReadTransaction,
    stream: &StreamName,
    direction: Direction,
    from: ReadFrom<u64>,
    max_count: usize,
    horizon: Horizon,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let state = stream_state(txn, stream)?.ok_or_else(|| StoreError::StreamNotFound {
        stream: stream.to_string(),
    })?;
    let visible = visible_revisions(stream, &state)?;
    let (lo, hi) = match (direction, from) {
        (Direction::Forwards, ReadFrom::Start) => (visible.first, visible.last),
        (Direction::Forwards, ReadFrom::At(r)) => (r.max(visible.first), visible.last),
        (Direction::Forwards, ReadFrom::End) => return Ok(Vec::new()),
        (Direction::Backwards, ReadFrom::End) => (visible.first, visible.last),
        (Direction::Backwards, ReadFrom::At(r)) => (visible.first, r.min(visible.last)),
        (Direction::Backwards, ReadFrom::Start) => (visible.first, visible.first.min(visible.last)),
    };
    if lo > hi || max_count == 0 {
        return Ok(Vec::new());
    }
    let runs = txn
        .open_table(STREAM_RUNS)
        .map_err(storage_error("opening the stream index"))?;
    let events = txn
        .open_table(EVENTS)
        .map_err(storage_error("opening the events table"))?;
    let mut out = Vec::with_capacity(max_count.min(1024));
    for_each_position(&runs, stream, lo, hi, direction, |_, position| {
        if !horizon.shows(position) {
            // Committed but not yet durable: not there for readers yet.
            return Ok(direction == Direction::Backwards);
        }
        let bytes = events
            .get(position)
            .map_err(storage_error("reading an event"))?
            .ok_or_else(|| StoreError::Corruption {
                position: Position(position),
                reason: format!("stream '{stream}' indexes an event that is missing"),
            })?;
        let stored = StoredEvent::decode(position, bytes.value())?;
        if visible
            .not_before_micros
            .is_some_and(|t| stored.recorded_at_micros < t)
        {
            // Older events only get older: backwards, once one is past max
            // age, stop.
            return Ok(direction == Direction::Forwards);
        }
        out.push(stored.to_recorded(position)?);
        Ok(out.len() < max_count)
    })?;
    Ok(out)
}

pub(crate) type RunsTable = redb::ReadOnlyTable<(&'static str, u64), (u64, u64)>;

/// Calls `visit(revision, position)` for the revisions `lo..=hi` of `stream`
/// that exist, in `direction`, until it returns false.
pub(crate) fn for_each_position(
    runs: &RunsTable,
    stream: &StreamName,
    lo: u64,
    hi: u64,
    direction: Direction,
    mut visit: impl FnMut(u64, u64) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let read = storage_error("reading the stream index");
    let name = stream.as_str();
    if lo > hi {
        return Ok(());
    }
    // The run holding `lo` may start before it.
    let start = match runs
        .range((name, 0)..=(name, lo))
        .map_err(&read)?
        .next_back()
    {
        Some(entry) => entry.map_err(&read)?.0.value().1,
        None => lo,
    };
    let range = runs.range((name, start)..=(name, hi)).map_err(&read)?;
    let mut each_run = |entry: RunEntry<'_>| -> Result<bool, StoreError> {
        let (key, value) = entry.map_err(&read)?;
        let first_revision = key.value().1;
        let (first_position, count) = value.value();
        let Some(last_revision) = (first_revision + count).checked_sub(1) else {
            return Ok(true);
        };
        let (from, to) = (first_revision.max(lo), last_revision.min(hi));
        if from > to {
            return Ok(true);
        }
        let position = |revision: u64| first_position + (revision - first_revision);
        match direction {
            Direction::Forwards => {
                for revision in from..=to {
                    if !visit(revision, position(revision))? {
                        return Ok(false);
                    }
                }
            }
            Direction::Backwards => {
                for revision in (from..=to).rev() {
                    if !visit(revision, position(revision))? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    };
    match direction {
        Direction::Forwards => {
            for entry in range {
                if !each_run(entry)? {
                    break;
                }
            }
        }
        Direction::Backwards => {
            for entry in range.rev() {
                if !each_run(entry)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

type RunEntry<'a> = Result<
    (
        redb::AccessGuard<'a, (&'static str, u64)>,
        redb::AccessGuard<'a, (u64, u64)>,
    ),
    redb::StorageError,
>;

/// What one scan of `$all` found.
pub(crate) struct Scan {
    pub events: Vec<RecordedEvent>,
    /// The last position looked at, matched or not.
    pub last_scanned: Option<Position>,
}

/// Scans `$all` from `from` (inclusive) in `direction`, looking at no more
/// than `scan_limit` events and keeping up to `max_count` that match.
pub(crate) fn scan_all(
    txn: &ReadTransaction,
    direction: Direction,
    from: ReadFrom<Position>,
    max_count: usize,
    scan_limit: usize,
    filter: &EventFilter,
    horizon: Horizon,
) -> Result<Scan, StoreError> {
    let mut scan = Scan {
        events: Vec::with_capacity(max_count.min(4096)),
        last_scanned: None,
    };
    if max_count == 0 {
        return Ok(scan);
    }
    let events = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(scan),
        Err(e) => return Err(storage_error("opening the events table")(e)),
    };
    let Some(last) = horizon.0 else {
        return Ok(scan);
    };
    let range = match (direction, from) {
        (Direction::Forwards, ReadFrom::Start) => events.range(0..=last),
        (Direction::Forwards, ReadFrom::At(p)) => events.range(p.0..=last),
        (Direction::Forwards, ReadFrom::End) => return Ok(scan),
        (Direction::Backwards, ReadFrom::End) => events.range(0..=last),
        (Direction::Backwards, ReadFrom::At(p)) => events.range(0..=p.0.min(last)),
        (Direction::Backwards, ReadFrom::Start) => events.range(0..=0),
    }
    .map_err(storage_error("reading $all"))?;
    let mut visit = |entry: Result<
        (redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>),
        redb::StorageError,
    >,
                     scanned: usize|
     -> Result<bool, StoreError> {
        let (key, value) = entry.map_err(storage_error("reading $all"))?;
        let position = key.value();
        let stored = StoredEvent::decode(position, value.value())?;
        scan.last_scanned = Some(Position(position));
        if filter.matches(stored.stream, stored.event_type) {
            scan.events.push(stored.to_recorded(position)?);
        }
        Ok(scan.events.len() < max_count && scanned + 1 < scan_limit)
    };
    match direction {
        Direction::Forwards => {
            for (i, entry) in range.enumerate() {
                if !visit(entry, i)? {
                    break;
                }
            }
        }
        Direction::Backwards => {
            for (i, entry) in range.rev().enumerate() {
                if !visit(entry, i)? {
                    break;
                }
            }
        }
    }
    Ok(scan)
}

/// Recomputes the chain over `range`, anchored on the stored hash of the
/// event before it (or the genesis hash).
pub(crate) fn verify_chain(
    txn: &ReadTransaction,
    range: PositionRange,
    horizon: Horizon,
) -> Result<ChainReport, StoreError> {
    let mut report = ChainReport {
        events_checked: 0,
        first: None,
        last: None,
        last_hash: None,
    };
    let events = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(report),
        Err(e) => return Err(storage_error("opening the events table")(e)),
    };
    let from = range.from.map_or(0, |p| p.0);
    let Some(last) = horizon.0 else {
        return Ok(report);
    };
    let to = range.to.map_or(last, |p| p.0.min(last));
    let mut previous = match from.checked_sub(1) {
        None => ChainHash::GENESIS,
        Some(anchor) => {
            let bytes = events
                .get(anchor)
                .map_err(storage_error("reading an event"))?
                .ok_or_else(|| StoreError::Corruption {
                    position: Position(anchor),
                    reason: "the event before the range is missing".into(),
                })?;
            ChainHash(StoredEvent::decode(anchor, bytes.value())?.hash)
        }
    };
    let mut expected_position = from;
    for entry in events
        .range(from..=to)
        .map_err(storage_error("reading $all"))?
    {
        let (key, value) = entry.map_err(storage_error("reading $all"))?;
        let position = key.value();
        if position != expected_position {
            return Err(StoreError::Corruption {
                position: Position(expected_position),
                reason: "the event at this position is missing".into(),
            });
        }
        let stored = StoredEvent::decode(position, value.value())?;
        let hash = stored.link(position).hash(&previous);
        if hash.0 != stored.hash {
            return Err(StoreError::Corruption {
                position: Position(position),
                reason: format!(
                    "the stored hash {} does not match the recomputed hash {}",
                    ChainHash(stored.hash),
                    hash
                ),
            });
        }
        previous = hash;
        report.events_checked += 1;
        report.first.get_or_insert(Position(position));
        report.last = Some(Position(position));
        report.last_hash = Some(hash);
        expected_position = position + 1;
    }
    Ok(report)
}
