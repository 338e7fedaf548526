//! What one aggregate's event causes in another, as checkpointed process
//! managers on the projection runner.
//!
//! Why: a reaction done in the request (a second append) or in a spawned
//! task is lost when the process dies between the two; one done by every
//! replica is done several times. A process manager reads the log from its
//! checkpoint, issues commands that are idempotent by id, and commits its
//! checkpoint after them: after a kill -9 it replays from the checkpoint and
//! the repeated commands change nothing. Each manager runs under a lease
//! ([`Leased`]), so among replicas exactly one works it.
//!
//! - [`EvidenceManager`] (`health_code_evidence`): a `CodeScanned` on a
//!   checkpoint's stream becomes the holder's evidence (temperature, venue
//!   visit), ids derived from the scan id; an effective override reaches
//!   each of its persons. This replaces the start-up `resume`.
//! - [`WhereaboutsIndex`] (`health_code_whereabouts`): who was where — the
//!   county of residence, of each venue visit, journey, declared trip and
//!   telco dwell — so that a risk area finds the persons it touches without
//!   reading everyone. A plain read model: every replica keeps its own.
//! - [`ReevaluationManager`] (`health_code_reevaluation`): a risk area
//!   declared, changed or lifted re-evaluates only the persons the index
//!   places in it, in batches; each batch's progress (area, persons total,
//!   done, the last person done) is a row an official can see, and is where
//!   a restarted manager resumes. A re-evaluation records only colour
//!   changes, so a batch repeated after a crash changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tongban_kernel::{Actor, DivisionCode, EventMetadata, PersonId};
use tongban_projection::read_model::key::leading;
use tongban_projection::{
    ApplyError, Changes, KeyRange, LeaseConfig, Leased, Projection, ProjectionError,
    ProjectionRunner, ReadModelStore, ReadModels, Table,
};
use tongban_store::{EventFilter, EventStore, RecordedEvent, StoreError};

use crate::error::HealthCodeError;
use crate::events::{Evidence, HealthEvent};
use crate::handler::HealthCodeService;
use crate::person::PersonCommand;

/// The evidence process manager's name (and lease).
pub const EVIDENCE: &str = "health_code_evidence";
/// The whereabouts index's name.
pub const WHEREABOUTS: &str = "health_code_whereabouts";
/// The re-evaluation process manager's name (and lease).
pub const REEVALUATION: &str = "health_code_reevaluation";
/// The namespace of the re-evaluations' progress rows.
pub const PROGRESS: &str = "health_code_reevaluation_progress";

/// Persons re-evaluated per batch (one progress row write each).
pub const BATCH: usize = 512;
/// Persons re-evaluated at once within a batch.
const CONCURRENCY: usize = 16;
/// How long the re-evaluation waits for the index to reach a risk event.
const INDEX_WAIT: Duration = Duration::from_secs(30);

/// The index of who was where: (county, person) → present.
pub fn whereabouts_table() -> Table<(String, String), bool> {
    Table::new("whereabouts").binary()
}

/// Progress of re-evaluations, by the log position of the risk-area event.
pub fn progress_table() -> Table<u64, ReevaluationView> {
    Table::new("reevaluations")
}

/// One re-evaluation after a risk-area change, as an official sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReevaluationView {
    /// The log position of the risk-area event that caused it.
    pub position: u64,
    /// The area.
    pub area: String,
    /// What happened to it (`RiskAreaDeclared.v1`, ...).
    pub cause: String,
    /// Persons the index places in the area when it changed.
    pub persons_total: u64,
    /// Persons re-evaluated so far.
    pub persons_done: u64,
    /// The last person re-evaluated (persons go in id order): where a
    /// restarted manager resumes.
    pub last_person: Option<String>,
    /// Whether every person was re-evaluated.
    pub finished: bool,
}

/// Every re-evaluation this replica's manager worked, oldest first.
pub async fn reevaluations(
    progress: &ReadModels,
) -> Result<Vec<ReevaluationView>, HealthCodeError> {
    Ok(progress
        .scan_all(&progress_table(), &KeyRange::all())
        .await
        .map_err(|e| HealthCodeError::Store(e.to_string()))?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// A failure worth retrying (the store or the views were not there yet)
/// stops the batch, so the runner tries again from its checkpoint; any
/// other is about this one command and can never succeed: skipped.
fn retry_or_skip(event: &RecordedEvent, error: HealthCodeError) -> Result<(), ApplyError> {
    match error {
        HealthCodeError::Store(_)
        | HealthCodeError::Vault(_)
        | HealthCodeError::Timeout { .. }
        | HealthCodeError::Conflict { .. } => Err(ApplyError::Storage(ProjectionError::Store(
            StoreError::Unavailable {
                reason: format!(
                    "reacting to {} at {}: {error}",
                    event.event_type, event.position
                ),
            },
        ))),
        other => {
            tracing::warn!(position = %event.position, event = %event.event_type, error = %other, "a reaction can never succeed; skipped");
            Ok(())
        }
    }
}

fn actor_of(event: &RecordedEvent) -> Result<Actor, ApplyError> {
    event
        .metadata_json::<EventMetadata>()
        .map(|m| m.actor)
        .map_err(|e| ApplyError::at(event, format!("metadata without an actor: {e}")))
}

/// Scan → the holder's evidence; effective override → each person.
pub struct EvidenceManager<S: EventStore> {
    service: Arc<HealthCodeService<S>>,
}

impl<S: EventStore> EvidenceManager<S> {
    /// The manager, commanding through `service`.
    pub fn new(service: Arc<HealthCodeService<S>>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl<S: EventStore> Projection for EvidenceManager<S> {
    fn name(&self) -> &str {
        EVIDENCE
    }
    fn version(&self) -> u32 {
        1
    }
    fn filter(&self) -> EventFilter {
        EventFilter::streams(["checkpoint-", "override-"])
    }
    async fn apply(&self, events: &[RecordedEvent], _: &mut Changes<'_>) -> Result<(), ApplyError> {
        for event in events {
            let outcome = match event.event_type.as_str() {
                "CodeScanned.v1" => self.service.record_scan_evidence(event).await.map(drop),
                "OverrideRequested.v1" | "OverrideApproved.v1" => {
                    let override_id = match event.json::<HealthEvent>() {
                        Ok(
                            HealthEvent::OverrideRequested { override_id, .. }
                            | HealthEvent::OverrideApproved { override_id, .. },
                        ) => override_id,
                        _ => continue,
                    };
                    let actor = actor_of(event)?;
                    self.service
                        .settle_override(&actor, &event.stream, override_id)
                        .await
                        .map(drop)
                }
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                retry_or_skip(event, e)?;
            }
        }
        Ok(())
    }
}

/// The counties a person's event places them in.
fn counties(event: &HealthEvent) -> Option<(PersonId, Vec<DivisionCode>)> {
    let (person_id, places) = match event {
        HealthEvent::PersonRegistered {
            person_id,
            residence,
            ..
        } => (*person_id, vec![*residence]),
        HealthEvent::ResidenceChanged { person_id, to, .. } => (*person_id, vec![*to]),
        HealthEvent::EvidenceRecorded {
            person_id,
            evidence,
            ..
        } => (
            *person_id,
            match evidence {
                Evidence::VenueVisited { place, .. } => vec![*place],
                Evidence::TravelRecorded {
                    from_county,
                    to_county,
                    ..
                } => vec![*from_county, *to_county],
                Evidence::HealthDeclared {
                    declared_travel, ..
                } => declared_travel.clone(),
                Evidence::DwellReported { county, .. } => vec![*county],
                _ => return None,
            },
        ),
        _ => return None,
    };
    let mut counties: Vec<DivisionCode> = places.iter().filter_map(|p| p.county()).collect();
    counties.sort();
    counties.dedup();
    Some((person_id, counties))
}

/// The index of who was where (see the module docs).
#[derive(Debug, Default)]
pub struct WhereaboutsIndex;

#[async_trait]
impl Projection for WhereaboutsIndex {
    fn name(&self) -> &str {
        WHEREABOUTS
    }
    fn version(&self) -> u32 {
        1
    }
    fn filter(&self) -> EventFilter {
        EventFilter::streams(["person-"])
    }
    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let table = whereabouts_table();
        for event in events {
            let Ok(decoded) = event.json::<HealthEvent>() else {
                continue;
            };
            if let Some((person, counties)) = counties(&decoded) {
                for county in counties {
                    changes.put(&table, &(county.to_string(), person.to_string()), &true)?;
                }
            }
        }
        Ok(())
    }
}

/// The persons the index places in `area` (in a county inside it, or in
/// the county containing it), in id order.
pub async fn persons_touched(
    index: &ReadModels,
    area: &DivisionCode,
) -> Result<Vec<PersonId>, ProjectionError> {
    let range = match area.county() {
        Some(county) => KeyRange::prefix(leading(&county.to_string())),
        None => KeyRange::prefix(area.to_string().into_bytes()),
    };
    let mut persons: Vec<PersonId> = index
        .scan_all(&whereabouts_table(), &range)
        .await?
        .into_iter()
        .filter_map(|((_, person), _)| person.parse().ok())
        .collect();
    persons.sort();
    persons.dedup();
    Ok(persons)
}

/// Risk-area change → re-evaluate the persons it touches (module docs).
pub struct ReevaluationManager<S: EventStore> {
    service: Arc<HealthCodeService<S>>,
    index: ReadModels,
    progress: ReadModels,
    batch: usize,
}

impl<S: EventStore> ReevaluationManager<S> {
    /// The manager: commands through `service`, finds persons in `index`
    /// (the whereabouts read models), writes progress rows to `progress`.
    pub fn new(
        service: Arc<HealthCodeService<S>>,
        index: ReadModels,
        progress: ReadModels,
    ) -> Self {
        Self {
            service,
            index,
            progress,
            batch: BATCH,
        }
    }

    /// Persons per batch (at least one).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Waits until the index has applied everything up to `event`.
    async fn index_reaches(&self, event: &RecordedEvent) -> Result<(), ApplyError> {
        let started = Instant::now();
        loop {
            let checkpoint = self.index.checkpoint().await?;
            if checkpoint.and_then(|c| c.position) >= Some(event.position) {
                return Ok(());
            }
            if started.elapsed() > INDEX_WAIT {
                return Err(ApplyError::Storage(ProjectionError::Timeout {
                    projection: WHEREABOUTS.into(),
                    position: event.position.0,
                    waited_ms: INDEX_WAIT.as_millis(),
                }));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn reevaluate(
        &self,
        event: &RecordedEvent,
        area: DivisionCode,
    ) -> Result<(), ApplyError> {
        let table = progress_table();
        let key = event.position.0;
        let mut row = match self.progress.get(&table, &key).await? {
            Some(row) if row.finished => return Ok(()),
            Some(row) => row,
            None => {
                self.index_reaches(event).await?;
                let total = persons_touched(&self.index, &area).await?.len();
                ReevaluationView {
                    position: key,
                    area: area.to_string(),
                    cause: event.event_type.clone(),
                    persons_total: total as u64,
                    persons_done: 0,
                    last_person: None,
                    finished: false,
                }
            }
        };
        self.index_reaches(event).await?;
        let after: Option<PersonId> = row.last_person.as_deref().and_then(|p| p.parse().ok());
        let persons: Vec<PersonId> = persons_touched(&self.index, &area)
            .await?
            .into_iter()
            .filter(|p| after.is_none_or(|a| *p > a))
            .collect();
        self.progress.put_now(&table, &key, &row).await?;
        let actor = actor_of(event)?;
        for batch in persons.chunks(self.batch) {
            let outcomes: Vec<Result<(), HealthCodeError>> =
                futures::stream::iter(batch.iter().copied())
                    .map(|person| {
                        let service = self.service.clone();
                        let actor = actor.clone();
                        async move {
                            service
                                .person_recorded(&actor, person, PersonCommand::Reevaluate)
                                .await
                                .map(drop)
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            for outcome in outcomes {
                if let Err(e) = outcome {
                    retry_or_skip(event, e)?;
                }
            }
            row.persons_done += batch.len() as u64;
            row.last_person = batch.last().map(ToString::to_string);
            self.progress.put_now(&table, &key, &row).await?;
        }
        row.finished = true;
        self.progress.put_now(&table, &key, &row).await?;
        Ok(())
    }
}

#[async_trait]
impl<S: EventStore> Projection for ReevaluationManager<S> {
    fn name(&self) -> &str {
        REEVALUATION
    }
    fn version(&self) -> u32 {
        1
    }
    fn filter(&self) -> EventFilter {
        EventFilter::streams(["riskarea-"])
    }
    async fn apply(&self, events: &[RecordedEvent], _: &mut Changes<'_>) -> Result<(), ApplyError> {
        for event in events {
            let area = match event.json::<HealthEvent>() {
                Ok(
                    HealthEvent::RiskAreaDeclared { area, .. }
                    | HealthEvent::RiskLevelChanged { area, .. }
                    | HealthEvent::RiskAreaLifted { area, .. },
                ) => area,
                _ => continue,
            };
            self.reevaluate(event, area).await?;
        }
        Ok(())
    }
}

/// Starts the health-code reactions on `runner`: the whereabouts index and
/// the two process managers under their leases. `models` is the runner's
/// read-model store (the progress rows live there). Returns the progress
/// read models.
pub fn start_reactions<S: EventStore>(
    runner: &ProjectionRunner,
    events: Arc<dyn EventStore>,
    models: Arc<dyn ReadModelStore>,
    service: Arc<HealthCodeService<S>>,
    lease: LeaseConfig,
) -> Result<ReadModels, ProjectionError> {
    runner.start(Arc::new(WhereaboutsIndex))?;
    let index = runner.read_models(WHEREABOUTS)?;
    runner.start(Arc::new(Leased::new(
        EvidenceManager::new(service.clone()),
        events.clone(),
        lease,
    )?))?;
    let progress = ReadModels::new(models, PROGRESS);
    runner.start(Arc::new(Leased::new(
        ReevaluationManager::new(service, index, progress.clone()),
        events,
        lease,
    )?))?;
    Ok(progress)
}
