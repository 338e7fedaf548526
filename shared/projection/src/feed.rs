//! Departments' change feeds.
//!
//! A projection publishes change records (never raw personal events) with
//! [`Changes::publish`](crate::projection::Changes::publish). Records are
//! stored in the projection's read model, in the same transaction as its
//! checkpoint, keyed by their [`FeedCursor`]: the global log position of the
//! event that caused them and a sequence number within it. Because every
//! replica builds the same records from the same log, a consumer can resume
//! from its cursor on any gateway replica.
//!
//! A consumer ([`Feed::subscribe`]) first reads stored records after its
//! cursor page by page, then follows a bounded broadcast of new records. The
//! writer never waits for consumers; a consumer that falls more than the
//! buffer behind is dropped with [`ProjectionError::ConsumerTooSlow`] naming
//! the cursor to resume from. Delivery is at-least-once with no gap: a
//! consumer that resumes from the last cursor it handled sees everything
//! after it.
//!
//! What a consumer may see is a [`FeedScope`] its caller derives from the
//! consumer's authorisation (regions, data classes).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tongban_store::Position;

use crate::error::ProjectionError;
use crate::read_model::{Key, KeyRange, ReadModels, Table};

/// The table holding a projection's change records.
pub const FEED_TABLE: &str = "$feed";

pub(crate) fn feed_table() -> Table<(u64, u32), ChangeRecord> {
    Table::new(FEED_TABLE)
}

/// Where a consumer stands in a feed: the global log position of the event
/// behind a record and the record's number among that event's records.
/// Written `"<position>.<seq>"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeedCursor {
    pub position: Position,
    pub seq: u32,
}

impl FeedCursor {
    /// The cursor before every record of events after `position`.
    pub fn after_position(position: Position) -> Self {
        Self {
            position,
            seq: u32::MAX,
        }
    }
}

impl fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.position.0, self.seq)
    }
}

impl FromStr for FeedCursor {
    type Err = ProjectionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ProjectionError::InvalidInput {
            field: "cursor".into(),
            rule: format!("'{s}' must be '<position>.<seq>', e.g. '1042.0'"),
        };
        let (p, seq) = s.split_once('.').ok_or_else(invalid)?;
        Ok(Self {
            position: Position(p.parse().map_err(|_| invalid())?),
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

/// What a projection publishes; the runner adds the cursor and time.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeDraft {
    /// What changed, e.g. `"code.colour"`.
    pub kind: String,
    /// The division the change belongs to, for scope checks.
    pub region: Option<String>,
    /// The data class, for scope checks (e.g. `"code-status"`).
    pub data_class: String,
    pub payload: serde_json::Value,
}

impl ChangeDraft {
    pub fn new<T: Serialize>(
        kind: impl Into<String>,
        data_class: impl Into<String>,
        region: Option<String>,
        payload: &T,
    ) -> Result<Self, ProjectionError> {
        let payload = serde_json::to_value(payload).map_err(|e| ProjectionError::Encode {
            what: "a change record".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            kind: kind.into(),
            region,
            data_class: data_class.into(),
            payload,
        })
    }
}

/// A change record as consumers receive it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub cursor: FeedCursor,
    pub kind: String,
    pub region: Option<String>,
    pub data_class: String,
    /// When the causing event was committed.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub payload: serde_json::Value,
}

impl ChangeRecord {
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, ProjectionError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| ProjectionError::Decode {
            what: format!("a '{}' change record", self.kind),
            reason: e.to_string(),
        })
    }
}

/// What a consumer is allowed to receive. `None` means no restriction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedScope {
    /// Division code prefixes (`"11"` is all of Beijing).
    pub regions: Option<Vec<String>>,
    pub data_classes: Option<Vec<String>>,
}

impl FeedScope {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn regions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, regions: I) -> Self {
        self.regions = Some(regions.into_iter().map(Into::into).collect());
        self
    }

    pub fn data_classes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, classes: I) -> Self {
        self.data_classes = Some(classes.into_iter().map(Into::into).collect());
        self
    }

    pub fn allows(&self, record: &ChangeRecord) -> bool {
        let region_ok = match (&self.regions, &record.region) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(allowed), Some(r)) => allowed.iter().any(|p| r.starts_with(p.as_str())),
        };
        let class_ok = self
            .data_classes
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&record.data_class));
        region_ok && class_ok
    }
}

/// A projection's change feed.
#[derive(Clone)]
pub struct Feed {
    name: String,
    models: ReadModels,
    live: broadcast::Sender<Arc<ChangeRecord>>,
    buffer: usize,
}

/// Records read per page while catching up.
const PAGE: usize = 512;
/// Times a consumer restarts its catch-up when the live buffer overflowed
/// while it was still reading history.
const CATCH_UP_ATTEMPTS: usize = 3;

impl Feed {
    pub(crate) fn new(name: &str, models: ReadModels, buffer: usize) -> Self {
        let (live, _) = broadcast::channel(buffer.max(1));
        Self {
            name: name.to_string(),
            models,
            live,
            buffer: buffer.max(1),
        }
    }

    /// A feed read from a read model without a runner (e.g. an offline
    /// reader); it sees stored records only.
    pub fn open(name: &str, models: ReadModels) -> Self {
        Self::new(name, models, 1)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Called by the runner once records are committed.
    pub(crate) fn broadcast(&self, records: Vec<ChangeRecord>) {
        for record in records {
            // No receivers is fine: consumers read history from the table.
            let _ = self.live.send(Arc::new(record));
        }
    }

    /// Stored records strictly after `after`, one page.
    pub async fn page(
        &self,
        after: Option<FeedCursor>,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>, ProjectionError> {
        let table = feed_table();
        let range = match after {
            None => KeyRange::all(),
            Some(c) => KeyRange::all().after((c.position.0, c.seq).encode_key()),
        };
        Ok(self
            .models
            .scan(&table, &range, limit)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Records strictly after `after` that `scope` allows: history, then
    /// live. The stream ends with an error if the consumer falls more than
    /// the buffer behind or the projection stops; resume from the last
    /// cursor handled.
    pub fn subscribe(
        &self,
        after: Option<FeedCursor>,
        scope: FeedScope,
    ) -> BoxStream<'static, Result<ChangeRecord, ProjectionError>> {
        let state = Consumer {
            feed: self.clone(),
            scope,
            last: after,
            live: None,
            pending: std::collections::VecDeque::new(),
            attempts: 0,
            done: false,
        };
        futures::stream::unfold(state, |mut c| async move {
            if c.done {
                return None;
            }
            let item = c.next().await;
            if item.is_err() {
                c.done = true;
            }
            Some((item, c))
        })
        .boxed()
    }
}

struct Consumer {
    feed: Feed,
    scope: FeedScope,
    /// The last cursor delivered (or skipped by scope).
    last: Option<FeedCursor>,
    /// `Some` once history is exhausted and the consumer follows live.
    live: Option<broadcast::Receiver<Arc<ChangeRecord>>>,
    pending: std::collections::VecDeque<ChangeRecord>,
    attempts: usize,
    done: bool,
}

impl Consumer {
    async fn next(&mut self) -> Result<ChangeRecord, ProjectionError> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                self.last = Some(record.cursor);
                if self.scope.allows(&record) {
                    return Ok(record);
                }
                continue;
            }
            match self.live.as_mut() {
                None => self.catch_up().await?,
                Some(rx) => match rx.recv().await {
                    Ok(record) => {
                        if self.last.is_some_and(|l| record.cursor <= l) {
                            continue;
                        }
                        self.attempts = 0;
                        self.pending.push_back((*record).clone());
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        if self.attempts < CATCH_UP_ATTEMPTS && self.delivered_nothing_live() {
                            // Overflow while history was being read: read
                            // the table again rather than drop the consumer.
                            self.live = None;
                            continue;
                        }
                        return Err(ProjectionError::ConsumerTooSlow {
                            feed: self.feed.name.clone(),
                            resume_from: self.last,
                            missed,
                            buffer: self.feed.buffer,
                        });
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ProjectionError::FeedClosed {
                            feed: self.feed.name.clone(),
                            resume_from: self.last,
                        });
                    }
                },
            }
        }
    }

    fn delivered_nothing_live(&self) -> bool {
        self.attempts > 0
    }

    /// Subscribes to live records first, then reads history: a record
    /// committed in between is in both, and the cursor check drops the copy.
    async fn catch_up(&mut self) -> Result<(), ProjectionError> {
        let rx = self.feed.live.subscribe();
        let page = self.feed.page(self.last, PAGE).await?;
        if page.is_empty() {
            self.live = Some(rx);
            self.attempts += 1;
        } else {
            self.pending.extend(page);
        }
        Ok(())
    }
}
