//! Auditors' replay: read any stream's history and `$all` between positions
//! or times, page by page or as a stream; rebuild any projection's read
//! model as of a position or a time into a scratch store (time travel).
//!
//! Times map to positions through `recorded_at`, which never goes backwards
//! in `$all`: "as of t" means every event committed at or before t.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use time::OffsetDateTime;
use tongban_store::{
    Direction, EventFilter, EventStore, Position, ReadFrom, RecordedEvent, StreamName,
};

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::read_model::{ReadModelStore, ReadModels};
use crate::replay::{prepare, replay};

/// A point in the log, by position or by commit time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogPoint {
    Start,
    /// This position, inclusive.
    Position(Position),
    /// The last event committed at or before this time, inclusive.
    Time(OffsetDateTime),
    End,
}

/// One page of events and where the next one starts (`None`: no more).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<C> {
    pub events: Vec<RecordedEvent>,
    pub next: Option<C>,
}

/// What an audit rebuild produced.
pub struct TimeTravel {
    /// The read model as it was, in the scratch store.
    pub models: ReadModels,
    /// The last position included (`None`: the log was empty then).
    pub as_of: Option<Position>,
}

/// Read-only access to history for auditors.
#[derive(Clone)]
pub struct Auditor {
    events: Arc<dyn EventStore>,
}

impl Auditor {
    pub fn new(events: Arc<dyn EventStore>) -> Self {
        Self { events }
    }

    /// One page of a stream's history from revision `from`.
    pub async fn stream_page(
        &self,
        stream: &StreamName,
        from: u64,
        limit: usize,
    ) -> Result<Page<u64>, ProjectionError> {
        let limit = limit.max(1);
        let events = self
            .events
            .read_stream(stream, Direction::Forwards, ReadFrom::At(from), limit)
            .await?;
        let next = match events.last() {
            Some(last) if events.len() == limit => Some(last.revision + 1),
            _ => None,
        };
        Ok(Page { events, next })
    }

    /// The last position committed at or before `at`, `None` if none was.
    pub async fn position_at(
        &self,
        at: OffsetDateTime,
    ) -> Result<Option<Position>, ProjectionError> {
        let Some(head) = self.events.head().await? else {
            return Ok(None);
        };
        // Binary search for the first position committed after `at`.
        let (mut lo, mut hi) = (0u64, head.position.0 + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let found = self
                .events
                .read_all(
                    Direction::Forwards,
                    ReadFrom::At(Position(mid)),
                    1,
                    &EventFilter::all(),
                )
                .await?;
            let after = found.first().is_none_or(|e| e.recorded_at > at);
            if after {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo.checked_sub(1).map(Position))
    }

    /// Resolves a point to a position: `Ok(None)` means before the first
    /// event.
    pub async fn resolve(&self, point: LogPoint) -> Result<Option<Position>, ProjectionError> {
        match point {
            LogPoint::Start => Ok(None),
            LogPoint::Position(p) => Ok(Some(p)),
            LogPoint::Time(t) => self.position_at(t).await,
            LogPoint::End => Ok(self.events.head().await?.map(|h| h.position)),
        }
    }

    /// One page of `$all` events matching `filter` after `after` (or from
    /// the start) up to `to` inclusive.
    pub async fn all_page(
        &self,
        filter: &EventFilter,
        after: Option<Position>,
        to: Position,
        limit: usize,
    ) -> Result<Page<Position>, ProjectionError> {
        let limit = limit.max(1);
        let from = after.map_or(ReadFrom::Start, |p| ReadFrom::At(p.next()));
        if after.is_some_and(|a| a >= to) {
            return Ok(Page {
                events: Vec::new(),
                next: None,
            });
        }
        let mut events = self
            .events
            .read_all(Direction::Forwards, from, limit, filter)
            .await?;
        let full = events.len() == limit;
        events.retain(|e| e.position <= to);
        let next = match events.last() {
            Some(last) if full && events.len() == limit && last.position < to => {
                Some(last.position)
            }
            _ => None,
        };
        Ok(Page { events, next })
    }

    /// `$all` events matching `filter` from `from` to `to` (both
    /// inclusive), streamed page by page.
    pub fn all_between(
        &self,
        from: LogPoint,
        to: LogPoint,
        filter: EventFilter,
        page_size: usize,
    ) -> BoxStream<'static, Result<RecordedEvent, ProjectionError>> {
        let state = Walk {
            auditor: self.clone(),
            filter,
            page_size,
            from,
            to,
            bounds: None,
            buffer: VecDeque::new(),
            exhausted: false,
            failed: false,
        };
        futures::stream::unfold(state, |mut walk| async move {
            if walk.failed {
                return None;
            }
            match walk.next().await {
                Ok(Some(event)) => Some((Ok(event), walk)),
                Ok(None) => None,
                Err(e) => {
                    walk.failed = true;
                    Some((Err(e), walk))
                }
            }
        })
        .boxed()
    }

    /// The position just before the first event at or after `point`.
    async fn before(&self, point: LogPoint) -> Result<Option<Position>, ProjectionError> {
        Ok(match point {
            LogPoint::Start => None,
            LogPoint::Position(p) => p.0.checked_sub(1).map(Position),
            LogPoint::Time(t) => {
                self.position_at(t - time::Duration::microseconds(1))
                    .await?
            }
            LogPoint::End => self.resolve(LogPoint::End).await?,
        })
    }

    /// Rebuilds `projection`'s read model as of `point` into `scratch`
    /// (typically [`MemoryReadModels`](crate::read_model::memory::MemoryReadModels)),
    /// with the same replay the runner uses.
    pub async fn rebuild_as_of(
        &self,
        projection: &dyn Projection,
        point: LogPoint,
        scratch: Arc<dyn ReadModelStore>,
        batch_size: usize,
    ) -> Result<TimeTravel, ProjectionError> {
        let models = ReadModels::new(scratch, projection.name());
        models
            .store()
            .reset(models.namespace(), projection.version())
            .await?;
        let (mut checkpoint, _) = prepare(projection, &models).await?;
        let as_of = self.resolve(point).await?;
        if let Some(until) = as_of {
            replay(
                self.events.as_ref(),
                projection,
                &models,
                &mut checkpoint,
                until,
                batch_size,
                |_, _| ControlFlow::Continue(()),
            )
            .await?;
        }
        Ok(TimeTravel { models, as_of })
    }
}

struct Walk {
    auditor: Auditor,
    filter: EventFilter,
    page_size: usize,
    from: LogPoint,
    to: LogPoint,
    /// (read after, last position), once resolved; `None` end: empty log.
    bounds: Option<(Option<Position>, Option<Position>)>,
    buffer: VecDeque<RecordedEvent>,
    /// The last page has been read.
    exhausted: bool,
    failed: bool,
}

impl Walk {
    async fn next(&mut self) -> Result<Option<RecordedEvent>, ProjectionError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Some(event));
            }
            let (after, end) = match self.bounds {
                Some(b) => b,
                None => {
                    let b = (
                        self.auditor.before(self.from).await?,
                        self.auditor.resolve(self.to).await?,
                    );
                    self.bounds = Some(b);
                    b
                }
            };
            let Some(end) = end else {
                return Ok(None);
            };
            if self.exhausted || after.is_some_and(|a| a >= end) {
                return Ok(None);
            }
            let page = self
                .auditor
                .all_page(&self.filter, after, end, self.page_size)
                .await?;
            let last = page.events.last().map(|e| e.position);
            match page.next {
                Some(next) => self.bounds = Some((Some(next), Some(end))),
                None => {
                    self.bounds = Some((last.or(after), Some(end)));
                    self.exhausted = true;
                }
            }
            self.buffer.extend(page.events);
            if self.buffer.is_empty() {
                return Ok(None);
            }
        }
    }
}
