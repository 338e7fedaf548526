//! The single writer thread and its group commit.
//!
//! Appends from every task queue up here. The writer takes everything that is
//! waiting, applies each request in turn inside one write transaction (each
//! with its own expected-revision check, so one request's failure writes
//! nothing of it and does not affect the others), commits once to redb without
//! syncing, and hands the batch's log records and answers to the syncer, which
//! answers only once the log is synced. While the syncer syncs, the writer
//! applies the next batch, so durability does not cap throughput at the
//! disk's sync rate.
//!
//! What the writer does per event is kept small: the appending task has
//! already encoded the event's body ([`EncodedEvents`]); the writer hashes
//! the chain link, adds the header, and copies it into the log batch, whose
//! bytes for one append are then inserted as one chunk. Per append it writes
//! one stream-index run and remembers one id; per commit, each touched
//! stream's state once.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::id_cache::IdCache;
use super::layout::{
    encode_header, Body, EncodedEvents, StoredEvent, StreamState, CHUNK_BYTES, ENTRY_PREFIX,
    EVENTS, STREAMS, STREAM_RUNS,
};
use super::read::{scan_events, with_event, with_last_event};
use super::storage_error;
use super::syncer::{Broken, SyncJob};
use super::wal::WalBatch;
use crate::chain::{ChainHash, Head};
use crate::error::StoreError;
use crate::event::{
    micros_of, AppendResult, CurrentRevision, EventData, ExpectedRevision, Position,
};
use crate::metadata::{StreamMetadata, METADATA_EVENT_TYPE, TOMBSTONE_EVENT_TYPE};
use crate::store::Direction;
use crate::stream_name::StreamName;

/// Most requests one commit takes.
const MAX_BATCH_REQUESTS: usize = 4096;
/// Most payload bytes one commit takes (a single larger request still goes alone).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

pub(crate) enum WriteOp {
    Append {
        stream: StreamName,
        expected: ExpectedRevision,
        /// Encoded by the appending task (see [`EncodedEvents`]).
        events: EncodedEvents,
    },
    SetMetadata {
        stream: StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    },
    Delete {
        stream: StreamName,
        expected: ExpectedRevision,
    },
    Tombstone {
        stream: StreamName,
        expected: ExpectedRevision,
    },
}

impl WriteOp {
    fn size(&self) -> usize {
        match self {
            WriteOp::Append { events, .. } => events.byte_len(),
            _ => 256,
        }
    }
}

pub(crate) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// Where the log ends: the next position, the last hash, the last time.
#[derive(Clone, Copy)]
pub(crate) struct Cursor {
    pub next_position: u64,
    pub last_hash: ChainHash,
    pub last_recorded_at_micros: i64,
}

impl Cursor {
    pub fn head(&self) -> Option<Head> {
        self.next_position.checked_sub(1).map(|p| Head {
            position: Position(p),
            hash: self.last_hash,
        })
    }
}

pub(crate) fn run(
    db: Arc<Database>,
    mut requests: mpsc::Receiver<WriteRequest>,
    mut cursor: Cursor,
    mut recent_ids: IdCache,
    syncer: std::sync::mpsc::SyncSender<SyncJob>,
    broken: Broken,
    spares: std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(256);
    while let Some(first) = requests.blocking_recv() {
        let mut bytes = first.op.size();
        batch.push(first);
        while batch.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
            match requests.try_recv() {
                Ok(next) => {
                    bytes += next.op.size();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let span = tracing::debug_span!("commit", requests = batch.len(), bytes);
        let _entered = span.enter();
        let (ops, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|r| (r.op, r.reply)).unzip();
        if let Some(error) = broken.get() {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
            continue;
        }
        let log = spares.try_recv().map(WalBatch::reusing).unwrap_or_default();
        match commit_batch(&db, ops, cursor, &mut recent_ids, log) {
            Ok(Committed {
                outcomes,
                cursor: committed,
                log,
            }) => {
                cursor = committed;
                let job = SyncJob {
                    log,
                    head: cursor.head(),
                    replies: replies.into_iter().zip(outcomes).collect(),
                };
                if let Err(unsent) = syncer.send(job) {
                    for (reply, _) in unsent.0.replies {
                        let _ = reply.send(Err(StoreError::Unavailable {
                            reason: "the event store's log writer stopped".into(),
                        }));
                    }
                }
            }
            Err(error) => {
                // Nothing of this batch reached redb or the log.
                tracing::error!(%error, "commit failed; every append in the batch is refused");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
    tracing::debug!("event store writer stopped");
}

/// Revisions of a stream at consecutive positions: (first revision, first
/// position, count).
type Run = (u64, u64, u64);

/// Re-applies log entries that redb lost in a crash. Returns how many.
pub(crate) fn replay(db: &Database, entries: Vec<(u64, Vec<u8>)>) -> Result<u64, StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(storage_error("starting the log replay"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(storage_error("asking for a durable replay"))?;
    let mut replayed = 0;
    {
        let mut events = txn
            .open_table(EVENTS)
            .map_err(storage_error("opening the events table"))?;
        let mut streams = txn
            .open_table(STREAMS)
            .map_err(storage_error("opening the streams table"))?;
        let mut runs = txn
            .open_table(STREAM_RUNS)
            .map_err(storage_error("opening the stream index"))?;
        let (mut next, mut previous) = with_last_event(&events, |position, stored| {
            Ok((position + 1, ChainHash(stored.hash)))
        })?
        .unwrap_or((0, ChainHash::GENESIS));
        let write = storage_error("replaying the log");
        // Per stream: its state, and the run of revisions being replayed
        // (first revision, first position, count), written at the end.
        let mut states: HashMap<String, (StreamState, Vec<Run>)> = HashMap::new();
        for (position, bytes) in entries {
            if position < next {
                continue;
            }
            let stored = StoredEvent::decode(position, &bytes)?;
            if position != next || stored.link(position).hash(&previous).0 != stored.hash {
                tracing::warn!(
                    position,
                    "the write-ahead log does not continue the chain here; replay stops"
                );
                break;
            }
            // Each replayed event becomes a chunk of its own.
            let mut chunk = Vec::with_capacity(ENTRY_PREFIX + bytes.len());
            chunk.extend_from_slice(&position.to_le_bytes());
            chunk.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            chunk.extend_from_slice(&bytes);
            events.insert(position, chunk.as_slice()).map_err(&write)?;
            let (state, stream_runs) = match states.get_mut(stored.stream) {
                Some(entry) => entry,
                None => {
                    let state = match streams.get(stored.stream).map_err(&write)? {
                        Some(b) => StreamState::decode(stored.stream, b.value())?,
                        None => StreamState::default(),
                    };
                    states
                        .entry(stored.stream.to_owned())
                        .or_insert((state, Vec::new()))
                }
            };
            match stream_runs.last_mut() {
                Some((first_revision, first_position, count))
                    if *first_revision + *count == stored.revision
                        && *first_position + *count == position =>
                {
                    *count += 1;
                }
                _ => stream_runs.push((stored.revision, position, 1)),
            }
            state.last_revision = Some(stored.revision);
            if stored.event_type == TOMBSTONE_EVENT_TYPE {
                state.tombstoned = true;
            }
            if let (METADATA_EVENT_TYPE, Some(target)) =
                (stored.event_type, stored.stream.strip_prefix("$$"))
            {
                let target_state = match states.get_mut(target) {
                    Some((state, _)) => state,
                    None => {
                        let state = match streams.get(target).map_err(&write)? {
                            Some(b) => StreamState::decode(target, b.value())?,
                            None => StreamState::default(),
                        };
                        &mut states
                            .entry(target.to_owned())
                            .or_insert((state, Vec::new()))
                            .0
                    }
                };
                target_state.metadata_json = Some(stored.data.to_vec());
            }
            previous = ChainHash(stored.hash);
            next += 1;
            replayed += 1;
        }
        for (stream, (state, stream_runs)) in &states {
            streams
                .insert(stream.as_str(), state.encode()?.as_slice())
                .map_err(&write)?;
            for &(first_revision, first_position, count) in stream_runs {
                runs.insert((stream.as_str(), first_revision), (first_position, count))
                    .map_err(&write)?;
            }
        }
    }
    txn.commit()
        .map_err(storage_error("committing the log replay"))?;
    Ok(replayed)
}

type Outcomes = Vec<Result<AppendResult, StoreError>>;

struct Committed {
    outcomes: Outcomes,
    cursor: Cursor,
    log: WalBatch,
}

/// Applies a batch and commits it to redb without syncing: its events are
/// beyond the published head, so no reader sees them until the syncer has
/// made them durable in the log.
fn commit_batch(
    db: &Database,
    ops: Vec<WriteOp>,
    start: Cursor,
    recent_ids: &mut IdCache,
    log: WalBatch,
) -> Result<Committed, StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(storage_error("starting a write transaction"))?;
    txn.set_durability(Durability::None)
        .map_err(storage_error("asking for a fast commit"))?;
    let mut cursor = start;
    let now = micros_of(OffsetDateTime::now_utc());
    // Recorded-at never goes backwards in `$all`, even if the clock does.
    cursor.last_recorded_at_micros = cursor.last_recorded_at_micros.max(now);
    let (outcomes, log) = {
        let mut tables = Tables::open(&txn, recent_ids, log)?;
        let events: usize = ops
            .iter()
            .map(|op| match op {
                WriteOp::Append { events, .. } => events.len(),
                _ => 1,
            })
            .sum();
        let bytes = ops.iter().map(WriteOp::size).sum();
        tables.log.reserve(events, bytes);
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(tables.apply(op, &mut cursor)?);
        }
        tables.flush_states()?;
        (outcomes, tables.log)
    };
    txn.commit().map_err(storage_error("committing appends"))?;
    Ok(Committed {
        outcomes,
        cursor,
        log,
    })
}

struct Tables<'txn> {
    events: Table<'txn, u64, &'static [u8]>,
    streams: Table<'txn, &'static str, &'static [u8]>,
    stream_runs: Table<'txn, (&'static str, u64), (u64, u64)>,
    /// Ids are remembered as they are written. Should the commit fail, an
    /// id points at a position that holds another event (or none), which
    /// [`Tables::revision_at`] sees, so a stale entry is never believed.
    recent_ids: &'txn mut IdCache,
    /// The state of every stream this commit touched, written once at the
    /// end of the commit rather than once per request.
    states: HashMap<String, StreamState>,
    /// What this commit adds to the write-ahead log.
    log: WalBatch,
}

/// The outcome of one request: the outer error aborts the whole commit (the
/// storage failed); the inner one refuses only this request.
type Applied = Result<Result<AppendResult, StoreError>, StoreError>;

impl<'txn> Tables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        recent_ids: &'txn mut IdCache,
        log: WalBatch,
    ) -> Result<Self, StoreError> {
        let open = storage_error("opening tables");
        Ok(Self {
            events: txn.open_table(EVENTS).map_err(&open)?,
            streams: txn.open_table(STREAMS).map_err(&open)?,
            stream_runs: txn.open_table(STREAM_RUNS).map_err(&open)?,
            recent_ids,
            states: HashMap::new(),
            log,
        })
    }

    /// Writes the state of every stream this commit touched.
    fn flush_states(&mut self) -> Result<(), StoreError> {
        for (stream, state) in self.states.drain() {
            let bytes = state.encode()?;
            self.streams
                .insert(stream.as_str(), bytes.as_slice())
                .map_err(storage_error("writing a stream's state"))?;
        }
        Ok(())
    }

    fn apply(&mut self, op: WriteOp, cursor: &mut Cursor) -> Applied {
        match op {
            WriteOp::Append {
                stream,
                expected,
                events,
            } => self.append(&stream, expected, events, cursor),
            WriteOp::SetMetadata {
                stream,
                expected,
                metadata,
            } => self.set_metadata(&stream, expected, metadata, cursor),
            WriteOp::Delete { stream, expected } => self.delete(&stream, expected, cursor),
            WriteOp::Tombstone { stream, expected } => self.tombstone(&stream, expected, cursor),
        }
    }

    fn state(&self, stream: &StreamName) -> Result<StreamState, StoreError> {
        if let Some(state) = self.states.get(stream.as_str()) {
            return Ok(state.clone());
        }
        match self
            .streams
            .get(stream.as_str())
            .map_err(storage_error("reading a stream's state"))?
        {
            Some(bytes) => StreamState::decode(stream.as_str(), bytes.value()),
            None => Ok(StreamState::default()),
        }
    }

    fn put_state(&mut self, stream: &StreamName, state: StreamState) {
        match self.states.get_mut(stream.as_str()) {
            Some(kept) => *kept = state,
            None => {
                self.states.insert(stream.as_str().to_owned(), state);
            }
        }
    }

    /// The position of `revision` of `stream`, if the stream has it.
    fn position_of(&self, stream: &StreamName, revision: u64) -> Result<Option<u64>, StoreError> {
        let read = storage_error("reading the stream index");
        let mut runs = self
            .stream_runs
            .range((stream.as_str(), 0)..=(stream.as_str(), revision))
            .map_err(&read)?;
        let Some(run) = runs.next_back() else {
            return Ok(None);
        };
        let (key, value) = run.map_err(&read)?;
        let (_, first_revision) = key.value();
        let (first_position, count) = value.value();
        let offset = revision - first_revision;
        Ok((offset < count).then_some(first_position + offset))
    }

    fn append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: EncodedEvents,
        cursor: &mut Cursor,
    ) -> Applied {
        let mut state = self.state(stream)?;
        if state.tombstoned {
            return Ok(Err(StoreError::StreamDeleted {
                stream: stream.to_string(),
            }));
        }
        let truncate_before = state.truncate_before();
        if let Some(done) = self.already_appended(stream, expected, &events, truncate_before)? {
            return Ok(Ok(done));
        }
        let current = state.current(truncate_before);
        if let Err(e) = check_expected(stream, expected, current) {
            return Ok(Err(e));
        }
        let result = self.write_events(stream, &mut state, &events, cursor)?;
        self.put_state(stream, state);
        Ok(Ok(result))
    }

    /// Idempotency: if these exact event ids already follow each other in
    /// this stream where `expected` says they go, answer the original result.
    fn already_appended(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &EncodedEvents,
        truncate_before: u64,
    ) -> Result<Option<AppendResult>, StoreError> {
        let Some(first) = events.ids().next() else {
            return Ok(None);
        };
        let first_revision = match expected {
            ExpectedRevision::NoStream => truncate_before,
            ExpectedRevision::Exact(n) => n.saturating_add(1),
            ExpectedRevision::Any | ExpectedRevision::StreamExists => {
                let Some(position) = self.recent_ids.get(u128::from_be_bytes(first)) else {
                    return Ok(None);
                };
                match self.revision_at(stream, position, &first)? {
                    Some(revision) => revision,
                    None => return Ok(None),
                }
            }
        };
        // The events of one append sit at consecutive positions, so a retry
        // is one scan from where its first event is.
        let Some(first_position) = self.position_of(stream, first_revision)? else {
            return Ok(None);
        };
        let ids: Vec<[u8; 16]> = events.ids().collect();
        let count = ids.len() as u64;
        let last_position = first_position + (count - 1);
        let mut matched = 0usize;
        scan_events(
            &self.events,
            first_position,
            last_position,
            Direction::Forwards,
            |position, stored| {
                let same = ids.get(matched).is_some_and(|id| *id == stored.id)
                    && position == first_position + matched as u64
                    && stored.stream == stream.as_str()
                    && stored.revision == first_revision + matched as u64;
                if same {
                    matched += 1;
                }
                Ok(same)
            },
        )?;
        if matched != ids.len() {
            return Ok(None);
        }
        Ok(Some(AppendResult {
            next_expected_revision: first_revision + (count - 1),
            first_position: Position(first_position),
            position: Position(last_position),
        }))
    }

    /// The revision of the event at `position` if it is `id` in `stream`.
    fn revision_at(
        &self,
        stream: &StreamName,
        position: u64,
        id: &[u8; 16],
    ) -> Result<Option<u64>, StoreError> {
        let revision = with_event(&self.events, position, |stored| {
            Ok((stored.stream == stream.as_str() && stored.id == *id).then_some(stored.revision))
        })?;
        Ok(revision.flatten())
    }

    fn write_events(
        &mut self,
        stream: &StreamName,
        state: &mut StreamState,
        events: &EncodedEvents,
        cursor: &mut Cursor,
    ) -> Result<AppendResult, StoreError> {
        let first_position = cursor.next_position;
        let first_revision = state.next_revision();
        let write = storage_error("writing an event");
        let mut chunk_start = self.log.mark();
        let mut chunk_first = first_position;
        for body in events.bodies() {
            let revision = state.next_revision();
            let position = cursor.next_position;
            let fields = Body::parse(body).ok_or_else(|| StoreError::Corruption {
                position: Position(position),
                reason: "an event to append was encoded wrongly".into(),
            })?;
            let recorded_at = cursor.last_recorded_at_micros;
            let hash = fields
                .link(position, revision, recorded_at)
                .hash(&cursor.last_hash);
            let header = encode_header(revision, recorded_at, &hash);
            self.log.push_event(position, &header, body);
            if position == first_position {
                // Retries are found by their first id (see `id_cache`).
                self.recent_ids
                    .insert(u128::from_be_bytes(fields.id), position);
            }
            state.last_revision = Some(revision);
            cursor.next_position += 1;
            cursor.last_hash = hash;
            if self.log.mark() - chunk_start >= CHUNK_BYTES {
                let chunk = self.log.since(chunk_start);
                self.events.insert(chunk_first, chunk).map_err(&write)?;
                chunk_start = self.log.mark();
                chunk_first = cursor.next_position;
            }
        }
        if self.log.mark() > chunk_start {
            let chunk = self.log.since(chunk_start);
            self.events.insert(chunk_first, chunk).map_err(&write)?;
        }
        let count = cursor.next_position - first_position;
        if count > 0 {
            self.stream_runs
                .insert((stream.as_str(), first_revision), (first_position, count))
                .map_err(&write)?;
        }
        Ok(AppendResult {
            next_expected_revision: state.last_revision.unwrap_or(0),
            first_position: Position(first_position),
            position: Position(cursor.next_position - 1),
        })
    }

    /// Writes one event the store makes itself (metadata, tombstone).
    fn write_system_event(
        &mut self,
        stream: &StreamName,
        state: &mut StreamState,
        event: EventData,
        cursor: &mut Cursor,
    ) -> Result<AppendResult, StoreError> {
        let events = EncodedEvents::encode(stream.as_str(), &[event])?;
        self.write_events(stream, state, &events, cursor)
    }

    fn set_metadata(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
        cursor: &mut Cursor,
    ) -> Applied {
        let mut target = self.state(stream)?;
        if target.tombstoned {
            return Ok(Err(StoreError::StreamDeleted {
                stream: stream.to_string(),
            }));
        }
        let meta_stream = stream.metadata_stream();
        let mut meta_state = self.state(&meta_stream)?;
        if let Err(e) = check_expected(&meta_stream, expected, meta_state.current(0)) {
            return Ok(Err(e));
        }
        // A soft delete is not undone by a metadata change that does not
        // mention it.
        let mut metadata = metadata;
        if metadata.truncate_before.is_none() {
            metadata.truncate_before = target.metadata().truncate_before;
        }
        let json = match serde_json::to_vec(&metadata) {
            Ok(json) => json,
            Err(e) => {
                return Ok(Err(StoreError::InvalidInput {
                    field: "metadata".into(),
                    rule: format!("cannot be encoded as JSON: {e}"),
                }))
            }
        };
        let event = EventData::raw(METADATA_EVENT_TYPE, json.clone());
        let result = self.write_system_event(&meta_stream, &mut meta_state, event, cursor)?;
        self.put_state(&meta_stream, meta_state);
        target.metadata_json = Some(json);
        self.put_state(stream, target);
        Ok(Ok(result))
    }

    fn delete(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        cursor: &mut Cursor,
    ) -> Applied {
        let state = self.state(stream)?;
        if state.tombstoned {
            return Ok(Err(StoreError::StreamDeleted {
                stream: stream.to_string(),
            }));
        }
        let mut metadata = state.metadata();
        let current = state.current(metadata.truncate_before.unwrap_or(0));
        if let Err(e) = check_expected(stream, expected, current) {
            return Ok(Err(e));
        }
        if current == CurrentRevision::NoStream {
            return Ok(Err(StoreError::StreamNotFound {
                stream: stream.to_string(),
            }));
        }
        metadata.truncate_before = Some(state.next_revision());
        self.set_metadata(stream, ExpectedRevision::Any, metadata, cursor)
    }

    fn tombstone(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        cursor: &mut Cursor,
    ) -> Applied {
        let mut state = self.state(stream)?;
        if state.tombstoned {
            return Ok(Err(StoreError::StreamDeleted {
                stream: stream.to_string(),
            }));
        }
        let current = state.current(state.truncate_before());
        if let Err(e) = check_expected(stream, expected, current) {
            return Ok(Err(e));
        }
        let event = EventData::raw(TOMBSTONE_EVENT_TYPE, &b"{}"[..]);
        let result = self.write_system_event(stream, &mut state, event, cursor)?;
        state.tombstoned = true;
        self.put_state(stream, state);
        Ok(Ok(result))
    }
}

pub(crate) fn check_expected(
    stream: &StreamName,
    expected: ExpectedRevision,
    actual: CurrentRevision,
) -> Result<(), StoreError> {
    let ok = match (expected, actual) {
        (ExpectedRevision::Any, _) => true,
        (ExpectedRevision::NoStream, CurrentRevision::NoStream) => true,
        (ExpectedRevision::StreamExists, CurrentRevision::Current(_)) => true,
        (ExpectedRevision::Exact(n), CurrentRevision::Current(m)) => n == m,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::WrongExpectedVersion {
            stream: stream.to_string(),
            expected,
            actual,
        })
    }
}
