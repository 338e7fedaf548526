//! The facts a decision uses beyond its own stream (policies in force, the
//! risk map, code → person, checkpoint → place, the persons registered),
//! derived by every replica from `$all`.
//!
//! Why: with several gateway replicas on one log, a fact recorded through
//! one replica must be seen by the others before they decide, or two
//! replicas decide differently on the same log (a code generated on A would
//! be unknown at B). So no replica keeps a private copy updated by its own
//! writes: one task per service follows `$all` (a catch-up subscription,
//! history then live) and applies every health-code event in log order,
//! recording the position it has applied. A command first reads the log
//! head and waits (bounded) until the views have applied it; its own writes
//! reach the views the same way, in log order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tongban_kernel::{ActorId, CheckpointId, DivisionCode, EventId, EventMetadata, PersonId};
use tongban_store::{EventFilter, EventStore, Position, RecordedEvent, SubscribeFrom};
use tongban_store::{StoreError, SubscriptionMessage};
use uuid::Uuid;

use crate::checkpoint;
use crate::error::HealthCodeError;
use crate::events::{Evidence, HealthEvent};
use crate::policy::PolicyBook;
use crate::risk::RiskMap;

/// The stream categories whose events the views read.
pub const CATEGORIES: [&str; 4] = ["person-", "riskarea-", "policy-", "checkpoint-"];

/// How long a command waits by default for the views to reach the log head.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Events applied per lock of the views.
const CHUNK: usize = 1024;

/// Wait before subscribing again after the subscription failed.
const RETRY: Duration = Duration::from_millis(200);

/// The id of the `index`-th piece of evidence a scan adds to the person's
/// stream: derived from the scan's id, so recording it again (after a
/// crash, or by another replica) is recognised and changes nothing.
pub fn scan_evidence_id(scan_id: EventId, index: usize) -> EventId {
    EventId::from_u128(scan_id.uuid().as_u128() ^ (index as u128 + 1))
}

/// A scan in the log whose evidence has not (yet) reached the person's
/// stream: what the evidence process manager records, and what a command on
/// that person records first if the manager has not got there yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingScan {
    /// The log position of the scan.
    pub position: Position,
    /// The code's holder.
    pub person_id: PersonId,
    /// The checkpoint.
    pub checkpoint_id: CheckpointId,
    /// Business time of the scan.
    pub at: OffsetDateTime,
    /// Who recorded the scan (the checkpoint's device or the person).
    pub recorder: ActorId,
    /// The evidence with its derived ids.
    pub evidence: Vec<(EventId, Evidence)>,
}

/// Read models derived from `$all`, the same at every replica for the same
/// position.
#[derive(Debug, Default)]
pub(crate) struct Views {
    pub(crate) policies: PolicyBook,
    pub(crate) risk: RiskMap,
    pub(crate) persons: Vec<PersonId>,
    pub(crate) codes: BTreeMap<Uuid, PersonId>,
    pub(crate) places: BTreeMap<CheckpointId, DivisionCode>,
    /// Scans whose evidence the person's stream does not show yet.
    pub(crate) pending: BTreeMap<PersonId, Vec<PendingScan>>,
}

impl Views {
    /// The evidence a scan at `position` adds to its holder's stream, if the
    /// code and the checkpoint are known (both precede the scan in the log).
    pub(crate) fn pending_scan(
        &self,
        scan: &HealthEvent,
        position: Position,
        recorder: ActorId,
    ) -> Option<PendingScan> {
        let HealthEvent::CodeScanned {
            checkpoint_id,
            scan_id,
            code_id,
            at,
            ..
        } = scan
        else {
            return None;
        };
        let person_id = *self.codes.get(code_id)?;
        let place = *self.places.get(checkpoint_id)?;
        let evidence: Vec<(EventId, Evidence)> = checkpoint::scan_evidence(scan, place)
            .into_iter()
            .enumerate()
            .map(|(i, e)| (scan_evidence_id(*scan_id, i), e))
            .collect();
        (!evidence.is_empty()).then_some(PendingScan {
            position,
            person_id,
            checkpoint_id: *checkpoint_id,
            at: *at,
            recorder,
            evidence,
        })
    }

    /// Forgets a pending scan that can never be recorded (e.g. the person
    /// was erased).
    pub(crate) fn forget(&mut self, person_id: PersonId, position: Position) {
        if let Some(scans) = self.pending.get_mut(&person_id) {
            scans.retain(|p| p.position != position);
            if scans.is_empty() {
                self.pending.remove(&person_id);
            }
        }
    }

    /// Folds one recorded event: the pending scans, then [`apply`](Self::apply).
    fn apply_recorded(&mut self, recorded: &RecordedEvent, event: &HealthEvent) {
        match event {
            HealthEvent::CodeScanned { .. } => {
                let recorder = recorded
                    .metadata_json::<EventMetadata>()
                    .map_or(ActorId::from_u128(0), |m| m.actor.id);
                if let Some(p) = self.pending_scan(event, recorded.position, recorder) {
                    self.pending.entry(p.person_id).or_default().push(p);
                }
            }
            HealthEvent::EvidenceRecorded {
                person_id, meta, ..
            } => {
                if let Some(scans) = self.pending.get_mut(person_id) {
                    for scan in scans.iter_mut() {
                        scan.evidence.retain(|(id, _)| *id != meta.id);
                    }
                    scans.retain(|p| !p.evidence.is_empty());
                    if scans.is_empty() {
                        self.pending.remove(person_id);
                    }
                }
            }
            _ => {}
        }
        self.apply(event);
    }

    /// Folds one event. Only folds: never validates.
    pub(crate) fn apply(&mut self, event: &HealthEvent) {
        self.policies.apply(event);
        self.risk.apply(event);
        match event {
            HealthEvent::PersonRegistered { person_id, .. } => {
                if let Err(i) = self.persons.binary_search(person_id) {
                    self.persons.insert(i, *person_id);
                }
            }
            HealthEvent::CodeGenerated {
                code_id, person_id, ..
            } => {
                self.codes.insert(*code_id, *person_id);
            }
            HealthEvent::CheckpointRegistered {
                checkpoint_id,
                place,
                ..
            } => {
                self.places.insert(*checkpoint_id, *place);
            }
            _ => {}
        }
    }
}

/// How far the views have followed the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Applied {
    /// The last log position applied (of any stream: other events are
    /// skipped but still move the position).
    pub(crate) position: Option<Position>,
    /// Health-code events applied since the service started.
    pub(crate) events: usize,
}

/// The views, the position they have applied and the task that follows the
/// log. Shared between the service and that task.
pub(crate) struct LogViews {
    views: RwLock<Views>,
    applied: watch::Sender<Applied>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Default for LogViews {
    fn default() -> Self {
        Self {
            views: RwLock::new(Views::default()),
            applied: watch::channel(Applied::default()).0,
            task: Mutex::new(None),
        }
    }
}

impl Drop for LogViews {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for LogViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogViews")
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

impl LogViews {
    /// Changes the views (only to forget what can never happen).
    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Views> {
        self.views
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the views.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How far the views have followed the log.
    pub(crate) fn applied(&self) -> Applied {
        self.applied.borrow().clone()
    }

    /// Starts following `store` unless already following. The task holds
    /// only a weak reference: it ends when the service is dropped.
    pub(crate) fn follow<S: EventStore>(self: &Arc<Self>, store: &Arc<S>) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task.is_some() {
            return;
        }
        let weak = Arc::downgrade(self);
        let store = store.clone();
        *task = Some(tokio::spawn(async move {
            loop {
                let from = match weak.upgrade() {
                    Some(views) => views.applied().position,
                    None => return,
                };
                let from = from.map_or(SubscribeFrom::Start, SubscribeFrom::After);
                let mut subscription = store
                    .subscribe_to_all(from, EventFilter::all())
                    .ready_chunks(CHUNK);
                let error = loop {
                    let Some(chunk) = subscription.next().await else {
                        break StoreError::Unavailable {
                            reason: "the subscription ended".into(),
                        };
                    };
                    let Some(views) = weak.upgrade() else { return };
                    if let Err(e) = views.apply_chunk(chunk) {
                        break e;
                    }
                };
                tracing::warn!(error = %error, "following the log for the health-code views failed; subscribing again");
                tokio::time::sleep(RETRY).await;
            }
        }));
    }

    /// Applies a chunk of subscription messages in order; stops at the
    /// first error (after applying what came before it).
    fn apply_chunk(
        &self,
        chunk: Vec<Result<SubscriptionMessage, StoreError>>,
    ) -> Result<(), StoreError> {
        let mut views = self
            .views
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut applied = self.applied();
        let mut failure = None;
        for message in chunk {
            match message {
                Ok(SubscriptionMessage::Event(recorded)) => {
                    if let Some(event) = health_event(&recorded) {
                        views.apply_recorded(&recorded, &event);
                        applied.events += 1;
                    }
                    applied.position = applied.position.max(Some(recorded.position));
                }
                Ok(SubscriptionMessage::Checkpoint(p)) => {
                    applied.position = applied.position.max(Some(p));
                }
                Ok(SubscriptionMessage::CaughtUp) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(views);
        self.applied.send_replace(applied);
        failure.map_or(Ok(()), Err)
    }

    /// Waits until the views have applied `position` (or anything after).
    pub(crate) async fn reach(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<(), HealthCodeError> {
        let mut applied = self.applied.subscribe();
        let reached = applied.wait_for(|a| a.position.is_some_and(|p| p >= position));
        let outcome = match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(HealthCodeError::Store(
                "the health-code views stopped following the log".into(),
            )),
            Err(_) => Err(HealthCodeError::Timeout {
                position: position.0,
                applied: self.applied().position.map(|p| p.0),
                waited_ms: timeout.as_millis(),
            }),
        };
        outcome
    }
}

/// The health-code event `recorded` holds, if it is one the views read.
pub(crate) fn health_event(recorded: &RecordedEvent) -> Option<HealthEvent> {
    let stream = recorded.stream.as_str();
    if !CATEGORIES.iter().any(|c| stream.starts_with(c)) {
        return None;
    }
    recorded.json::<HealthEvent>().ok()
}
