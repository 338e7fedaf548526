//! One persistent-subscription group at run time: reads its source, hands
//! events to connected consumers (round robin or dispatch to single), tracks
//! acks, retries and parks, and checkpoints in the store.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex, Notify};
use tongban_store::{
    Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom, RecordedEvent,
    StoreError, StreamName, SubscribeFrom,
};
use tonic::Status;
use uuid::Uuid;

use crate::convert;
use crate::filter::{EsdbFilter, FilterParts};
use crate::proto::persistent::ReadResp;
use crate::shutdown::Shutdown;

/// How events are shared among a group's consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Strategy {
    RoundRobin,
    DispatchToSingle,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "RoundRobin",
            Self::DispatchToSingle => "DispatchToSingle",
        }
    }
}

/// A stored filter of a group on `$all`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredFilter {
    pub on_stream: bool,
    pub regex: String,
    pub prefixes: Vec<String>,
}

/// A group's settings, as kept in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// A stream name, or `$all`.
    pub source: String,
    pub group: String,
    /// Revision or position to start after; `None`: from the start;
    /// `Some(u64::MAX)`: from the end at creation.
    pub start_after: Option<u64>,
    pub from_end: bool,
    pub max_retry_count: i32,
    pub strategy: Strategy,
    pub message_timeout_ms: u64,
    pub checkpoint_after_ms: u64,
    pub min_checkpoint_count: u64,
    pub max_subscriber_count: i32,
    pub filter: Option<StoredFilter>,
}

impl Settings {
    pub fn key(&self) -> String {
        key(&self.source, &self.group)
    }
}

pub(crate) fn key(source: &str, group: &str) -> String {
    format!("{source}::{group}")
}

/// Every stream holding persistent-subscription state starts with this.
pub(crate) const STATE_STREAM_PREFIX: &str = "$tongban-psub-";

fn state_stream(key: &str, what: &str) -> Result<StreamName, StoreError> {
    StreamName::parse(format!("{STATE_STREAM_PREFIX}{key}-{what}"))
}

/// Event type of a persistent subscription's saved state.
const STATE_EVENT_TYPE: &str = "PersistentSubscriptionStateSaved.v1";

/// Reads the latest state saved in a system stream as `T`.
pub(crate) async fn load_doc<T: for<'de> Deserialize<'de>>(
    store: &dyn EventStore,
    stream: &StreamName,
) -> Result<Option<T>, StoreError> {
    let last = match store
        .read_stream(stream, Direction::Backwards, ReadFrom::End, 1)
        .await
    {
        Ok(events) => events,
        Err(StoreError::StreamNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(last.first().and_then(|e| e.json().ok()))
}

/// Saves `doc` as the latest state in a system stream of the hub's own.
pub(crate) async fn save_doc<T: Serialize>(
    store: &dyn EventStore,
    stream: &StreamName,
    doc: &T,
) -> Result<(), StoreError> {
    let event = EventData::json(STATE_EVENT_TYPE, doc)?;
    store
        .append_to_system_stream(stream, ExpectedRevision::Any, vec![event])
        .await
        .map(|_| ())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointDoc {
    cursor: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ParkedDoc {
    parked: Vec<ParkedRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ParkedRef {
    stream: String,
    revision: u64,
}

struct Pending {
    event: RecordedEvent,
    retry: i32,
    /// Place in source order, for checkpoints; `None` for replayed parked
    /// messages (already past the checkpoint).
    seq: Option<u64>,
}

struct InFlight {
    pending: Pending,
    consumer: u64,
    sent_at: Instant,
}

struct Consumer {
    id: u64,
    tx: mpsc::Sender<Result<ReadResp, Status>>,
    capacity: usize,
    in_flight: usize,
    structured: bool,
}

#[derive(Default)]
struct State {
    consumers: Vec<Consumer>,
    next: usize,
    queue: VecDeque<Pending>,
    in_flight: HashMap<Uuid, InFlight>,
    /// Sequence numbers read but not yet acked, parked or skipped.
    unresolved: BTreeSet<u64>,
    cursors: HashMap<u64, u64>,
    next_seq: u64,
    /// Highest cursor read from the source.
    last_read: Option<u64>,
    checkpoint: Option<u64>,
    resolved_since_checkpoint: u64,
    parked: Vec<ParkedRef>,
    total_items: i64,
}

/// A running group.
pub(crate) struct Group {
    pub settings: Settings,
    store: Arc<dyn EventStore>,
    state: Mutex<State>,
    wake: Notify,
    stop: Notify,
    next_consumer: std::sync::atomic::AtomicU64,
}

/// Events kept in memory ahead of consumers.
const READ_AHEAD: usize = 512;

impl Group {
    /// Starts a group: loads its checkpoint and parked list, then reads
    /// its source after the checkpoint.
    pub async fn start(
        store: Arc<dyn EventStore>,
        settings: Settings,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, StoreError> {
        let key = settings.key();
        let checkpoint: Option<CheckpointDoc> =
            load_doc(store.as_ref(), &state_stream(&key, "checkpoint")?).await?;
        let parked: Option<ParkedDoc> =
            load_doc(store.as_ref(), &state_stream(&key, "parked")?).await?;
        let state = State {
            checkpoint: checkpoint.and_then(|c| c.cursor),
            parked: parked.unwrap_or_default().parked,
            ..State::default()
        };
        let group = Arc::new(Self {
            settings,
            store,
            state: Mutex::new(state),
            wake: Notify::new(),
            stop: Notify::new(),
            next_consumer: std::sync::atomic::AtomicU64::new(1),
        });
        tokio::spawn(group.clone().feed(shutdown.clone()));
        tokio::spawn(group.clone().tick(shutdown));
        Ok(group)
    }

    pub fn stop(&self) {
        self.stop.notify_waiters();
        self.stop.notify_one();
    }

    fn filter(&self) -> Result<Option<EsdbFilter>, Status> {
        self.settings
            .filter
            .as_ref()
            .map(|f| {
                EsdbFilter::parse(FilterParts {
                    on_stream: f.on_stream,
                    regex: &f.regex,
                    prefixes: &f.prefixes,
                    max_window: None,
                    multiplier: 1,
                })
            })
            .transpose()
    }

    /// Reads the source into the queue, holding back while consumers are
    /// behind.
    async fn feed(self: Arc<Self>, mut shutdown: Shutdown) {
        let after = self
            .state
            .lock()
            .await
            .checkpoint
            .or(self.settings.start_after);
        let filter = match self.filter() {
            Ok(f) => f,
            Err(status) => {
                tracing::warn!(%status, group = %self.settings.key(), "invalid stored filter");
                None
            }
        };
        let mut subscription = if self.settings.source == "$all" {
            let from = match after {
                Some(p) => SubscribeFrom::After(Position(p)),
                None if self.settings.from_end => SubscribeFrom::End,
                None => SubscribeFrom::Start,
            };
            let store_filter = filter
                .as_ref()
                .map(EsdbFilter::store_filter)
                .unwrap_or_default();
            self.store.subscribe_to_all(from, store_filter)
        } else {
            let Ok(stream) = StreamName::parse(self.settings.source.clone()) else {
                return;
            };
            let from = match after {
                Some(r) => SubscribeFrom::After(r),
                None if self.settings.from_end => SubscribeFrom::End,
                None => SubscribeFrom::Start,
            };
            self.store.subscribe_to_stream(&stream, from)
        };
        let is_all = self.settings.source == "$all";
        loop {
            // Back-pressure: wait while enough is buffered or in flight.
            loop {
                let busy = {
                    let s = self.state.lock().await;
                    s.queue.len() + s.in_flight.len() >= READ_AHEAD
                };
                if !busy {
                    break;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            let next = tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.stop.notified() => return,
                next = subscription.next() => next,
            };
            let event = match next {
                // A group's own bookkeeping is never delivered to consumers.
                Some(Ok(tongban_store::SubscriptionMessage::Event(e)))
                    if e.stream.as_str().starts_with(STATE_STREAM_PREFIX) =>
                {
                    continue
                }
                Some(Ok(tongban_store::SubscriptionMessage::Event(e))) => e,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(%e, group = %self.settings.key(), "persistent subscription source failed");
                    return;
                }
                None => return,
            };
            let cursor = if is_all {
                event.position.0
            } else {
                event.revision
            };
            let mut s = self.state.lock().await;
            s.last_read = Some(cursor);
            if filter.as_ref().is_some_and(|f| !f.matches(&event)) {
                if s.unresolved.is_empty() {
                    s.checkpoint = Some(cursor);
                }
                continue;
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            s.unresolved.insert(seq);
            s.cursors.insert(seq, cursor);
            s.queue.push_back(Pending {
                event,
                retry: 0,
                seq: Some(seq),
            });
            self.dispatch(&mut s);
        }
    }

    /// Hands queued events to consumers with free slots.
    fn dispatch(&self, s: &mut State) {
        while !s.queue.is_empty() && !s.consumers.is_empty() {
            let n = s.consumers.len();
            let pick = match self.settings.strategy {
                Strategy::DispatchToSingle => {
                    s.consumers.iter().position(|c| c.in_flight < c.capacity)
                }
                Strategy::RoundRobin => (0..n)
                    .map(|i| (s.next + i) % n)
                    .find(|&i| s.consumers[i].in_flight < s.consumers[i].capacity),
            };
            let Some(i) = pick else { return };
            s.next = (i + 1) % n;
            let Some(pending) = s.queue.pop_front() else {
                return;
            };
            let consumer = &mut s.consumers[i];
            let message =
                convert::persistent_event(&pending.event, pending.retry, consumer.structured);
            if consumer.tx.try_send(Ok(message)).is_err() {
                // The consumer is gone or full: keep the event for another.
                s.queue.push_front(pending);
                let id = consumer.id;
                s.consumers.retain(|c| c.id != id);
                continue;
            }
            consumer.in_flight += 1;
            let id = consumer.id;
            s.total_items += 1;
            s.in_flight.insert(
                pending.event.id,
                InFlight {
                    pending,
                    consumer: id,
                    sent_at: Instant::now(),
                },
            );
        }
    }

    pub async fn connect(
        &self,
        tx: mpsc::Sender<Result<ReadResp, Status>>,
        capacity: usize,
        structured: bool,
    ) -> Result<u64, Status> {
        let id = self
            .next_consumer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut s = self.state.lock().await;
        let max = self.settings.max_subscriber_count;
        if max > 0 && s.consumers.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
            return Err(Status::failed_precondition(
                "the persistent subscription has its maximum number of subscribers",
            ));
        }
        s.consumers.push(Consumer {
            id,
            tx,
            capacity: capacity.clamp(1, 10_000),
            in_flight: 0,
            structured,
        });
        self.dispatch(&mut s);
        Ok(id)
    }

    /// A consumer left: its unacknowledged events go to the others.
    pub async fn disconnect(&self, consumer: u64) {
        let mut s = self.state.lock().await;
        s.consumers.retain(|c| c.id != consumer);
        let ids: Vec<Uuid> = s
            .in_flight
            .iter()
            .filter(|(_, f)| f.consumer == consumer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(f) = s.in_flight.remove(&id) {
                s.queue.push_front(f.pending);
            }
        }
        self.dispatch(&mut s);
    }

    fn take(s: &mut State, id: &Uuid) -> Option<Pending> {
        let f = s.in_flight.remove(id)?;
        if let Some(c) = s.consumers.iter_mut().find(|c| c.id == f.consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        Some(f.pending)
    }

    fn resolve(s: &mut State, pending: &Pending) {
        if let Some(seq) = pending.seq {
            s.unresolved.remove(&seq);
            s.resolved_since_checkpoint += 1;
            // The checkpoint is the cursor just below the oldest unresolved.
            let upto = match s.unresolved.first() {
                Some(&oldest) => oldest.checked_sub(1),
                None => s.next_seq.checked_sub(1),
            };
            if let Some(upto) = upto {
                if let Some(&cursor) = s.cursors.get(&upto) {
                    s.checkpoint = Some(cursor);
                }
                s.cursors.retain(|&seq, _| seq > upto);
            }
        }
    }

    pub async fn ack(&self, ids: &[Uuid]) {
        let save = {
            let mut s = self.state.lock().await;
            for id in ids {
                if let Some(p) = Self::take(&mut s, id) {
                    Self::resolve(&mut s, &p);
                }
            }
            self.dispatch(&mut s);
            s.resolved_since_checkpoint >= self.settings.min_checkpoint_count.max(1)
        };
        self.wake.notify_one();
        if save {
            self.save_checkpoint().await;
        }
    }

    /// Nack: `park`, `retry` (parks past the max retry count), `skip`.
    pub async fn nack(&self, ids: &[Uuid], action: NackAction) {
        let mut to_park = Vec::new();
        {
            let mut s = self.state.lock().await;
            for id in ids {
                let Some(mut p) = Self::take(&mut s, id) else {
                    continue;
                };
                match action {
                    NackAction::Skip => Self::resolve(&mut s, &p),
                    NackAction::Park => {
                        Self::resolve(&mut s, &p);
                        to_park.push(p);
                    }
                    NackAction::Retry => {
                        p.retry += 1;
                        if p.retry > self.settings.max_retry_count {
                            Self::resolve(&mut s, &p);
                            to_park.push(p);
                        } else {
                            s.queue.push_front(p);
                        }
                    }
                }
            }
            self.dispatch(&mut s);
        }
        self.wake.notify_one();
        if !to_park.is_empty() {
            self.park(to_park).await;
        }
    }

    async fn park(&self, events: Vec<Pending>) {
        let doc = {
            let mut s = self.state.lock().await;
            for p in &events {
                tracing::info!(group = %self.settings.key(), stream = %p.event.stream, revision = p.event.revision, "message parked");
                s.parked.push(ParkedRef {
                    stream: p.event.stream.to_string(),
                    revision: p.event.revision,
                });
            }
            ParkedDoc {
                parked: s.parked.clone(),
            }
        };
        if let Err(e) = self.save("parked", &doc).await {
            tracing::warn!(%e, "failed to store parked messages");
        }
    }

    /// Puts parked messages back in front of the queue.
    pub async fn replay_parked(&self, stop_at: Option<usize>) -> Result<(), StoreError> {
        let replay: Vec<ParkedRef> = {
            let mut s = self.state.lock().await;
            let n = stop_at.unwrap_or(s.parked.len()).min(s.parked.len());
            s.parked.drain(..n).collect()
        };
        let mut events = Vec::new();
        for r in &replay {
            let stream = StreamName::parse(r.stream.clone())?;
            match self
                .store
                .read_stream(&stream, Direction::Forwards, ReadFrom::At(r.revision), 1)
                .await
            {
                Ok(mut read) if !read.is_empty() => events.push(read.remove(0)),
                Ok(_)
                | Err(StoreError::StreamNotFound { .. } | StoreError::StreamDeleted { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let doc = {
            let mut s = self.state.lock().await;
            for event in events.into_iter().rev() {
                s.queue.push_front(Pending {
                    event,
                    retry: 0,
                    seq: None,
                });
            }
            self.dispatch(&mut s);
            ParkedDoc {
                parked: s.parked.clone(),
            }
        };
        self.save("parked", &doc).await
    }

    async fn save<T: Serialize>(&self, what: &str, doc: &T) -> Result<(), StoreError> {
        let stream = state_stream(&self.settings.key(), what)?;
        save_doc(self.store.as_ref(), &stream, doc).await
    }

    pub async fn save_checkpoint(&self) {
        let cursor = {
            let mut s = self.state.lock().await;
            if s.resolved_since_checkpoint == 0 {
                return;
            }
            s.resolved_since_checkpoint = 0;
            s.checkpoint
        };
        if let Err(e) = self.save("checkpoint", &CheckpointDoc { cursor }).await {
            tracing::warn!(%e, "failed to store a persistent subscription checkpoint");
        }
    }

    /// Message timeouts and the checkpoint timer.
    async fn tick(self: Arc<Self>, mut shutdown: Shutdown) {
        let every = Duration::from_millis(self.settings.checkpoint_after_ms.clamp(100, 60_000));
        let timeout = Duration::from_millis(self.settings.message_timeout_ms.max(100));
        loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    self.save_checkpoint().await;
                    return;
                }
                _ = self.stop.notified() => {
                    self.save_checkpoint().await;
                    return;
                }
                _ = tokio::time::sleep(every.min(Duration::from_millis(500))) => {}
            }
            let expired: Vec<Uuid> = {
                let s = self.state.lock().await;
                s.in_flight
                    .iter()
                    .filter(|(_, f)| f.sent_at.elapsed() > timeout)
                    .map(|(id, _)| *id)
                    .collect()
            };
            if !expired.is_empty() {
                self.nack(&expired, NackAction::Retry).await;
            }
            self.save_checkpoint().await;
        }
    }

    pub async fn info(&self) -> crate::proto::persistent::SubscriptionInfo {
        let s = self.state.lock().await;
        let st = &self.settings;
        crate::proto::persistent::SubscriptionInfo {
            event_source: st.source.clone(),
            group_name: st.group.clone(),
            status: "Live".into(),
            connections: s
                .consumers
                .iter()
                .map(
                    |c| crate::proto::persistent::subscription_info::ConnectionInfo {
                        from: format!("consumer-{}", c.id),
                        username: String::new(),
                        available_slots: i32::try_from(c.capacity.saturating_sub(c.in_flight))
                            .unwrap_or(i32::MAX),
                        in_flight_messages: i32::try_from(c.in_flight).unwrap_or(i32::MAX),
                        connection_name: format!("consumer-{}", c.id),
                        ..Default::default()
                    },
                )
                .collect(),
            total_items: s.total_items,
            last_checkpointed_event_position: s
                .checkpoint
                .map(|c| c.to_string())
                .unwrap_or_default(),
            last_known_event_position: s.last_read.map(|c| c.to_string()).unwrap_or_default(),
            start_from: match (st.start_after, st.from_end) {
                (Some(n), _) => n.to_string(),
                (None, true) => "-1".into(),
                (None, false) => "0".into(),
            },
            message_timeout_milliseconds: i32::try_from(st.message_timeout_ms).unwrap_or(i32::MAX),
            max_retry_count: st.max_retry_count,
            check_point_after_milliseconds: i32::try_from(st.checkpoint_after_ms)
                .unwrap_or(i32::MAX),
            min_check_point_count: i32::try_from(st.min_checkpoint_count).unwrap_or(i32::MAX),
            max_check_point_count: i32::try_from(st.min_checkpoint_count).unwrap_or(i32::MAX),
            total_in_flight_messages: i32::try_from(s.in_flight.len()).unwrap_or(i32::MAX),
            outstanding_messages_count: i32::try_from(s.in_flight.len()).unwrap_or(i32::MAX),
            named_consumer_strategy: st.strategy.name().into(),
            max_subscriber_count: st.max_subscriber_count,
            parked_message_count: i64::try_from(s.parked.len()).unwrap_or(i64::MAX),
            read_buffer_count: i32::try_from(s.queue.len()).unwrap_or(i32::MAX),
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NackAction {
    Park,
    Retry,
    Skip,
}
