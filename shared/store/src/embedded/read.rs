//! Reads from a redb read transaction: stream reads that honour metadata,
//! `$all` scans with filters, and chain verification.

use redb::{ReadTransaction, ReadableTable};
use time::OffsetDateTime;

use super::layout::{ChunkEntries, StoredEvent, StreamState, EVENTS, STREAMS, STREAM_RUNS};
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
    for_each_run(&runs, stream, lo, hi, direction, |first, last| {
        let mut more = true;
        let mut seen = 0u64;
        scan_events(&events, first, last, direction, |position, stored| {
            seen += 1;
            if !horizon.shows(position) {
                // Committed but not yet durable: not there for readers yet.
                more = direction == Direction::Backwards;
                return Ok(more);
            }
            if visible
                .not_before_micros
                .is_some_and(|t| stored.recorded_at_micros < t)
            {
                // Older events only get older: backwards, once one is past
                // max age, stop.
                more = direction == Direction::Forwards;
                return Ok(more);
            }
            out.push(stored.to_recorded(position)?);
            more = out.len() < max_count;
            Ok(more)
        })?;
        if more && seen != last - first + 1 {
            return Err(missing(stream, first));
        }
        Ok(more)
    })?;
    Ok(out)
}

pub(crate) fn missing(stream: &StreamName, position: u64) -> StoreError {
    StoreError::Corruption {
        position: Position(position),
        reason: format!("stream '{stream}' indexes events that are missing"),
    }
}

/// Calls `visit(position, event)` for every stored event at `from..=to`,
/// in `direction`, until it returns false.
pub(crate) fn scan_events<T>(
    events: &T,
    from: u64,
    to: u64,
    direction: Direction,
    mut visit: impl FnMut(u64, StoredEvent<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    if from > to {
        return Ok(());
    }
    let read = storage_error("reading events");
    // The chunk holding `from` may start before it.
    let start = match events.range(..=from).map_err(&read)?.next_back() {
        Some(entry) => entry.map_err(&read)?.0.value(),
        None => from,
    };
    let chunks = events.range(start..=to).map_err(&read)?;
    match direction {
        Direction::Forwards => {
            for chunk in chunks {
                let (key, value) = chunk.map_err(&read)?;
                for entry in ChunkEntries::new(key.value(), value.value()) {
                    let (position, bytes) = entry?;
                    if position < from {
                        continue;
                    }
                    if position > to {
                        return Ok(());
                    }
                    if !visit(position, StoredEvent::decode(position, bytes)?)? {
                        return Ok(());
                    }
                }
            }
        }
        Direction::Backwards => {
            for chunk in chunks.rev() {
                let (key, value) = chunk.map_err(&read)?;
                let entries =
                    ChunkEntries::new(key.value(), value.value()).collect::<Result<Vec<_>, _>>()?;
                for &(position, bytes) in entries.iter().rev() {
                    if position < from {
                        return Ok(());
                    }
                    if position > to {
                        continue;
                    }
                    if !visit(position, StoredEvent::decode(position, bytes)?)? {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Calls `f` with the event at `position`, if there is one.
pub(crate) fn with_event<T, R>(
    events: &T,
    position: u64,
    f: impl FnOnce(StoredEvent<'_>) -> Result<R, StoreError>,
) -> Result<Option<R>, StoreError>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    let mut f = Some(f);
    let mut out = None;
    scan_events(
        events,
        position,
        position,
        Direction::Forwards,
        |_, stored| {
            if let Some(f) = f.take() {
                out = Some(f(stored)?);
            }
            Ok(false)
        },
    )?;
    Ok(out)
}

/// Calls `f` with the last event of the log, if there is one.
pub(crate) fn with_last_event<T, R>(
    events: &T,
    f: impl FnOnce(u64, StoredEvent<'_>) -> Result<R, StoreError>,
) -> Result<Option<R>, StoreError>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    let Some((key, value)) = events
        .last()
        .map_err(storage_error("reading the last event"))?
    else {
        return Ok(None);
    };
    let mut last = None;
    for entry in ChunkEntries::new(key.value(), value.value()) {
        last = Some(entry?);
    }
    match last {
        Some((position, bytes)) => Ok(Some(f(position, StoredEvent::decode(position, bytes)?)?)),
        None => Ok(None),
    }
}

pub(crate) type RunsTable = redb::ReadOnlyTable<(&'static str, u64), (u64, u64)>;

/// Calls `visit(first, last)` with the positions of the revisions
/// `lo..=hi` of `stream` that exist, one run of consecutive positions at a
/// time, in `direction`, until it returns false.
pub(crate) fn for_each_run(
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
        visit(position(from), position(to))
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
    let (lo, hi) = match (direction, from) {
        (Direction::Forwards, ReadFrom::Start) => (0, last),
        (Direction::Forwards, ReadFrom::At(p)) => (p.0, last),
        (Direction::Forwards, ReadFrom::End) => return Ok(scan),
        (Direction::Backwards, ReadFrom::End) => (0, last),
        (Direction::Backwards, ReadFrom::At(p)) => (0, p.0.min(last)),
        (Direction::Backwards, ReadFrom::Start) => (0, 0),
    };
    let mut scanned = 0usize;
    scan_events(&events, lo, hi, direction, |position, stored| {
        scan.last_scanned = Some(Position(position));
        if filter.matches(stored.stream, stored.event_type) {
            scan.events.push(stored.to_recorded(position)?);
        }
        scanned += 1;
        Ok(scan.events.len() < max_count && scanned < scan_limit)
    })?;
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
        Some(anchor) => with_event(&events, anchor, |stored| Ok(ChainHash(stored.hash)))?
            .ok_or_else(|| StoreError::Corruption {
                position: Position(anchor),
                reason: "the event before the range is missing".into(),
            })?,
    };
    let mut expected_position = from;
    scan_events(
        &events,
        from,
        to,
        Direction::Forwards,
        |position, stored| {
            if position != expected_position {
                return Err(StoreError::Corruption {
                    position: Position(expected_position),
                    reason: "the event at this position is missing".into(),
                });
            }
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
            Ok(true)
        },
    )?;
    Ok(report)
}
