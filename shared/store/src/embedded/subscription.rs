//! Catch-up subscriptions.
//!
//! A subscription never holds events in a shared buffer: it reads pages
//! after its own last position from a read transaction, and when it finds
//! nothing new it waits for the writer to publish a new head. Because it
//! marks the head as seen *before* reading, a commit that lands between the
//! read and the wait still wakes it: history and live events join with no
//! gap and no duplicate. A slow consumer only delays itself.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use redb::{Database, ReadableDatabase};
use tokio::sync::watch;

use super::layout::{EVENTS, STREAM_RUNS};
use super::read::{for_each_run, missing, scan_all, scan_events, stream_state, Horizon};
use super::storage_error;
use crate::chain::Head;
use crate::error::StoreError;
use crate::event::{Position, RecordedEvent};
use crate::filter::EventFilter;
use crate::store::{Direction, ReadFrom, SubscribeFrom, Subscription, SubscriptionMessage};
use crate::stream_name::StreamName;

/// Events read per page.
const PAGE: usize = 512;
/// Events a filtered `$all` scan looks at before it reports a checkpoint.
const SCAN_LIMIT: usize = 4096;

enum Target {
    All {
        filter: EventFilter,
        after: Option<Position>,
    },
    Stream {
        stream: StreamName,
        next_revision: u64,
    },
}

struct State {
    db: Arc<Database>,
    head: watch::Receiver<Option<Head>>,
    target: Target,
    buffer: VecDeque<SubscriptionMessage>,
    caught_up: bool,
    failed: bool,
}

pub(crate) fn subscribe_all(
    db: Arc<Database>,
    head: watch::Receiver<Option<Head>>,
    from: SubscribeFrom<Position>,
    filter: EventFilter,
) -> Subscription {
    let after = match from {
        SubscribeFrom::Start => None,
        SubscribeFrom::After(p) => Some(p),
        SubscribeFrom::End => head.borrow().map(|h| h.position),
    };
    start(State {
        db,
        head,
        target: Target::All { filter, after },
        buffer: VecDeque::new(),
        caught_up: false,
        failed: false,
    })
}

pub(crate) fn subscribe_stream(
    db: Arc<Database>,
    head: watch::Receiver<Option<Head>>,
    stream: StreamName,
    from: SubscribeFrom<u64>,
) -> Subscription {
    let next_revision = match from {
        SubscribeFrom::Start => Ok(0),
        SubscribeFrom::After(r) => Ok(r.saturating_add(1)),
        SubscribeFrom::End => db
            .begin_read()
            .map_err(storage_error("starting a read"))
            .and_then(|txn| stream_state(&txn, &stream))
            .map(|state| state.map_or(0, |s| s.next_revision())),
    };
    let next_revision = match next_revision {
        Ok(n) => n,
        Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
    };
    start(State {
        db,
        head,
        target: Target::Stream {
            stream,
            next_revision,
        },
        buffer: VecDeque::new(),
        caught_up: false,
        failed: false,
    })
}

fn start(state: State) -> Subscription {
    futures::stream::unfold(state, |mut state| async move {
        if state.failed {
            return None;
        }
        let item = state.next().await;
        if item.is_err() {
            state.failed = true;
        }
        Some((item, state))
    })
    .boxed()
}

impl State {
    async fn next(&mut self) -> Result<SubscriptionMessage, StoreError> {
        loop {
            if let Some(message) = self.buffer.pop_front() {
                return Ok(message);
            }
            // Mark the current head as seen before reading: any commit after
            // this point will wake the wait below.
            let horizon = Horizon::of(*self.head.borrow_and_update());
            let found = self.fill(horizon)?;
            if found {
                continue;
            }
            if !self.caught_up {
                self.caught_up = true;
                return Ok(SubscriptionMessage::CaughtUp);
            }
            if self.head.changed().await.is_err() {
                return Err(StoreError::Unavailable {
                    reason: "the event store was closed".into(),
                });
            }
        }
    }

    /// Reads the next page into the buffer; false if there was nothing new.
    fn fill(&mut self, horizon: Horizon) -> Result<bool, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(storage_error("starting a read"))?;
        match &mut self.target {
            Target::All { filter, after } => {
                let from = after.map_or(ReadFrom::Start, |p| ReadFrom::At(p.next()));
                let scan = scan_all(
                    &txn,
                    Direction::Forwards,
                    from,
                    PAGE,
                    SCAN_LIMIT,
                    filter,
                    horizon,
                )?;
                let Some(last) = scan.last_scanned else {
                    return Ok(false);
                };
                let matched = !scan.events.is_empty();
                let last_event = scan.events.last().map(|e| e.position);
                self.buffer
                    .extend(scan.events.into_iter().map(SubscriptionMessage::Event));
                // Filtered out events still move the cursor on: say so.
                if last_event != Some(last) {
                    self.buffer.push_back(SubscriptionMessage::Checkpoint(last));
                }
                *after = Some(last);
                Ok(matched || last_event != Some(last))
            }
            Target::Stream {
                stream,
                next_revision,
            } => {
                let Some(state) = stream_state(&txn, stream)? else {
                    return Ok(false);
                };
                // Soft-deleted history is not replayed.
                let from = (*next_revision).max(state.truncate_before());
                let events = read_stream_raw(&txn, stream, from, PAGE, horizon)?;
                if events.is_empty() {
                    if state.tombstoned {
                        return Err(StoreError::StreamDeleted {
                            stream: stream.to_string(),
                        });
                    }
                    return Ok(false);
                }
                if let Some(last) = events.last() {
                    *next_revision = last.revision + 1;
                }
                self.buffer
                    .extend(events.into_iter().map(SubscriptionMessage::Event));
                Ok(true)
            }
        }
    }
}

/// Events of a stream from `from` on, ignoring max count and max age (a
/// subscription sees what is appended, as EventStoreDB's do).
fn read_stream_raw(
    txn: &redb::ReadTransaction,
    stream: &StreamName,
    from: u64,
    max: usize,
    horizon: Horizon,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let runs = txn
        .open_table(STREAM_RUNS)
        .map_err(storage_error("opening the stream index"))?;
    let events = txn
        .open_table(EVENTS)
        .map_err(storage_error("opening the events table"))?;
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    for_each_run(
        &runs,
        stream,
        from,
        u64::MAX,
        Direction::Forwards,
        |first, last| {
            let mut more = true;
            let mut seen = 0u64;
            scan_events(
                &events,
                first,
                last,
                Direction::Forwards,
                |position, stored| {
                    seen += 1;
                    more = horizon.shows(position);
                    if more {
                        out.push(stored.to_recorded(position)?);
                        more = out.len() < max;
                    }
                    Ok(more)
                },
            )?;
            if more && seen != last - first + 1 {
                return Err(missing(stream, first));
            }
            Ok(more)
        },
    )?;
    Ok(out)
}
