//! Command handling on the event store: load the stream, fold it, decide,
//! append with the expected revision, and on a concurrency conflict load and
//! decide again (a bounded number of times). I/O lives here and nowhere else:
//! sealing personal data with the key vault, signing tokens, reading the
//! policies and risk areas in force, fanning a scan or an approved override
//! out to the persons' streams.
//!
//! Streams: `person-<uuid>`, `riskarea-<code>`, `policy-<region>`,
//! `checkpoint-<uuid>`, `override-<region>`. Every event carries
//! [`EventMetadata`] (correlation, causation, actor, region, business time).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;
use tongban_kernel::{
    Actor, CheckpointId, Clock, CorrelationId, DivisionCode, Divisions, EventId, EventMetadata,
    PersonId, Role,
};
use tongban_store::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom, StoreError,
    StreamName,
};
use uuid::Uuid;

use crate::checkpoint::{self, CheckpointCommand, CheckpointState};
use crate::context::DecisionContext;
use crate::error::HealthCodeError;
use crate::events::{EvidenceMeta, EvidenceSource, HealthEvent};
use crate::overrides::{self, OverrideCommand, OverrideConfig, OverrideState};
use crate::person::{self, PersonCommand, PersonState};
use crate::policy::{self, PolicyBook, PublishPolicy};
use crate::risk::{self, RiskAreaCommand, RiskAreaState, RiskMap};
use crate::token::{
    sign_code, sign_place, CodeClaims, KeyDirectory, PlaceClaims, RegionKey, RegionSigner,
};
use crate::vault::{self, KeyVault, PersonalData};

/// How many times a command is decided again after a concurrency conflict.
pub const MAX_ATTEMPTS: u32 = 5;

const PAGE: usize = 1024;

fn store_err(e: StoreError) -> HealthCodeError {
    HealthCodeError::Store(e.to_string())
}

fn stream(name: String) -> Result<StreamName, HealthCodeError> {
    StreamName::parse(name).map_err(store_err)
}

/// Stream of a person.
pub fn person_stream(id: PersonId) -> Result<StreamName, HealthCodeError> {
    stream(format!("person-{id}"))
}

/// Read models the service keeps in memory, rebuilt from `$all`.
#[derive(Debug, Default)]
struct Views {
    policies: PolicyBook,
    risk: RiskMap,
    persons: Vec<PersonId>,
    codes: BTreeMap<Uuid, PersonId>,
    places: BTreeMap<CheckpointId, DivisionCode>,
}

impl Views {
    fn apply(&mut self, event: &HealthEvent) {
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

/// A code ready to show: its claims, the signed token and its QR text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// What the token says.
    pub claims: CodeClaims,
    /// The COSE_Sign1 bytes.
    pub token: Vec<u8>,
    /// `HC1:` + Base45, for the QR code.
    pub text: String,
}

/// The health-code service: commands in, events out, on any [`EventStore`].
pub struct HealthCodeService<S: EventStore> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    divisions: Arc<Divisions>,
    vault: Arc<dyn KeyVault>,
    override_config: OverrideConfig,
    views: RwLock<Views>,
    signers: RwLock<BTreeMap<DivisionCode, RegionSigner>>,
    directory: RwLock<KeyDirectory>,
}

impl<S: EventStore> std::fmt::Debug for HealthCodeService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCodeService").finish_non_exhaustive()
    }
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: EventStore> HealthCodeService<S> {
    /// A service over `store`; call [`rebuild`](Self::rebuild) to load history.
    pub fn new(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        divisions: Arc<Divisions>,
        vault: Arc<dyn KeyVault>,
        override_config: OverrideConfig,
    ) -> Self {
        Self {
            store,
            clock,
            divisions,
            vault,
            override_config,
            views: RwLock::new(Views::default()),
            signers: RwLock::new(BTreeMap::new()),
            directory: RwLock::new(KeyDirectory::new()),
        }
    }

    /// Rebuilds the in-memory read models from the whole log.
    pub async fn rebuild(&self) -> Result<usize, HealthCodeError> {
        let filter = EventFilter::streams(["person-", "riskarea-", "policy-", "checkpoint-"]);
        let mut views = Views::default();
        let mut from = ReadFrom::Start;
        let mut count = 0;
        loop {
            let page = self
                .store
                .read_all(Direction::Forwards, from, PAGE, &filter)
                .await
                .map_err(store_err)?;
            let Some(last) = page.last() else { break };
            from = ReadFrom::At(last.position.next());
            for recorded in &page {
                if let Ok(event) = recorded.json::<HealthEvent>() {
                    views.apply(&event);
                    count += 1;
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        *write_lock(&self.views) = views;
        Ok(count)
    }

    /// Installs a region's signing key and publishes its public key.
    pub fn install_region_key(&self, key: RegionKey) {
        let region = key.region();
        write_lock(&self.directory).publish(key.published());
        let mut signers = write_lock(&self.signers);
        match signers.get_mut(&region) {
            Some(signer) => {
                signer.rotate(key);
            }
            None => {
                signers.insert(region, RegionSigner::new(key));
            }
        }
    }

    /// The public key directory (what checkpoints carry offline).
    pub fn directory(&self) -> KeyDirectory {
        read_lock(&self.directory).clone()
    }

    /// Persons known to the service.
    pub fn persons(&self) -> Vec<PersonId> {
        read_lock(&self.views).persons.clone()
    }

    async fn load<St: Default>(
        &self,
        name: &StreamName,
        fold: impl Fn(St, &HealthEvent) -> St,
    ) -> Result<(St, Option<u64>), HealthCodeError> {
        let mut state = St::default();
        let mut revision = None;
        let mut from = ReadFrom::Start;
        loop {
            let page = match self
                .store
                .read_stream(name, Direction::Forwards, from, PAGE)
                .await
            {
                Ok(page) => page,
                Err(StoreError::StreamNotFound { .. }) => return Ok((state, None)),
                Err(e) => return Err(store_err(e)),
            };
            for recorded in &page {
                let event: HealthEvent = recorded.json().map_err(|e| {
                    HealthCodeError::Store(format!(
                        "event {} of {} is not a health-code event: {e}",
                        recorded.revision, name
                    ))
                })?;
                state = fold(state, &event);
                revision = Some(recorded.revision);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => from = ReadFrom::At(last.revision + 1),
                _ => break,
            }
        }
        Ok((state, revision))
    }

    /// Loads, decides, appends with the expected revision; retries on conflict.
    #[tracing::instrument(name = "health_code.execute", skip_all, fields(stream = %name))]
    async fn execute<St: Default>(
        &self,
        name: &StreamName,
        actor: &Actor,
        region: Option<DivisionCode>,
        correlation: CorrelationId,
        fold: impl Fn(St, &HealthEvent) -> St,
        decide: impl Fn(&St, &DecisionContext<'_>) -> Result<Vec<HealthEvent>, HealthCodeError>,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        for _attempt in 0..MAX_ATTEMPTS {
            let (state, revision) = self.load(name, &fold).await?;
            let now = self.clock.now();
            let events = {
                let views = read_lock(&self.views);
                let ctx = DecisionContext {
                    now,
                    divisions: &self.divisions,
                    policies: &views.policies,
                    risk: &views.risk,
                    actor,
                };
                decide(&state, &ctx)?
            };
            if events.is_empty() {
                return Ok(events);
            }
            let metadata = EventMetadata {
                correlation_id: correlation,
                causation_id: None,
                actor: actor.clone(),
                region,
                occurred_at: now,
            };
            let data = events
                .iter()
                .map(|e| EventData::json(e.type_name(), e).and_then(|d| d.with_metadata(&metadata)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_err)?;
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.store.append(name, expected, data).await {
                Ok(_) => {
                    let mut views = write_lock(&self.views);
                    for e in &events {
                        views.apply(e);
                    }
                    return Ok(events);
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    tracing::debug!("concurrency conflict; deciding again");
                    continue;
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(HealthCodeError::Conflict {
            stream: name.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Runs a command on a person's stream.
    pub async fn person(
        &self,
        actor: &Actor,
        person_id: PersonId,
        command: PersonCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let name = person_stream(person_id)?;
        self.execute(
            &name,
            actor,
            None,
            CorrelationId::new(),
            |s: PersonState, e| s.evolve(e),
            |s, ctx| match person::decide(s, &command, ctx) {
                Err(HealthCodeError::PersonNotFound(_)) => {
                    Err(HealthCodeError::PersonNotFound(person_id))
                }
                other => other,
            },
        )
        .await
    }

    /// Registers a person: seals their personal data with a fresh data key.
    pub async fn register_person(
        &self,
        actor: &Actor,
        person_id: PersonId,
        home_region: DivisionCode,
        residence: DivisionCode,
        personal: &PersonalData,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let sealed = vault::seal(self.vault.as_ref(), person_id, personal)
            .map_err(|e| HealthCodeError::Vault(e.to_string()))?;
        let command = PersonCommand::Register {
            person_id,
            home_region,
            residence,
            id_document_kind: personal.id_document.kind().into(),
            personal: sealed,
        };
        self.person(actor, person_id, command).await
    }

    /// Reads a person's personal data; a read by anyone but the person is recorded first.
    pub async fn read_personal_data(
        &self,
        actor: &Actor,
        person_id: PersonId,
        purpose: &str,
    ) -> Result<PersonalData, HealthCodeError> {
        self.person(
            actor,
            person_id,
            PersonCommand::QueryHealthInfo {
                purpose: purpose.into(),
                ext: None,
            },
        )
        .await?;
        let (state, _) = self
            .load(&person_stream(person_id)?, |s: PersonState, e| s.evolve(e))
            .await?;
        let sealed = state
            .personal
            .ok_or(HealthCodeError::PersonErased(person_id))?;
        vault::open(self.vault.as_ref(), person_id, &sealed).map_err(|e| match e {
            vault::VaultError::KeyErased(_) => HealthCodeError::PersonErased(person_id),
            other => HealthCodeError::Vault(other.to_string()),
        })
    }

    /// Erases a person's personal data: records the erasure, then destroys the key.
    pub async fn erase_personal_data(
        &self,
        actor: &Actor,
        person_id: PersonId,
    ) -> Result<(), HealthCodeError> {
        self.person(actor, person_id, PersonCommand::ErasePersonalData)
            .await?;
        self.vault
            .erase(person_id)
            .map_err(|e| HealthCodeError::Vault(e.to_string()))?;
        Ok(())
    }

    /// Generates a code in `region` and signs it with the region's active key.
    pub async fn generate_code(
        &self,
        actor: &Actor,
        person_id: PersonId,
        region: DivisionCode,
    ) -> Result<IssuedCode, HealthCodeError> {
        let code_id = Uuid::now_v7();
        let events = self
            .person(
                actor,
                person_id,
                PersonCommand::GenerateCode {
                    code_id,
                    region,
                    ext: None,
                },
            )
            .await?;
        let (state, _) = self
            .load(&person_stream(person_id)?, |s: PersonState, e| s.evolve(e))
            .await?;
        let Some(HealthEvent::CodeGenerated {
            colour,
            issued_at,
            expires_at,
            ..
        }) = events
            .iter()
            .find(|e| matches!(e, HealthEvent::CodeGenerated { .. }))
        else {
            return Err(HealthCodeError::Store("no code was generated".into()));
        };
        let claims = CodeClaims {
            code_id,
            colour: *colour,
            region,
            issued_at: truncate(*issued_at),
            expires_at: truncate(*expires_at),
            negative_test_at: state.latest_negative_test(*issued_at).map(truncate),
        };
        let token = {
            let signers = read_lock(&self.signers);
            let signer = signers
                .get(&region)
                .ok_or_else(|| HealthCodeError::InvalidInput {
                    field: "region",
                    rule: format!("region {region} has no signing key installed"),
                })?;
            sign_code(signer.active(), &claims)?
        };
        let text = crate::token::code_text(&token);
        Ok(IssuedCode {
            claims,
            token,
            text,
        })
    }

    /// Declares, changes or lifts a risk area.
    pub async fn risk_area(
        &self,
        actor: &Actor,
        command: RiskAreaCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let area = match &command {
            RiskAreaCommand::Declare { area, .. } | RiskAreaCommand::Lift { area } => *area,
        };
        let name = stream(format!("riskarea-{area}"))?;
        let divisions = self.divisions.clone();
        self.execute(
            &name,
            actor,
            Some(area),
            CorrelationId::new(),
            |s: RiskAreaState, e| s.evolve(e),
            |s, ctx| risk::decide(s, &command, ctx.actor, &divisions, ctx.now),
        )
        .await
    }

    /// Publishes a region's policy.
    pub async fn publish_policy(
        &self,
        actor: &Actor,
        command: PublishPolicy,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let name = stream(format!("policy-{}", command.region))?;
        self.execute(
            &name,
            actor,
            Some(command.region),
            CorrelationId::new(),
            |s: (), _| s,
            |_, ctx| policy::decide_publish(ctx.policies, &command, ctx.actor, ctx.now),
        )
        .await
    }

    /// Re-evaluates every known person (the scheduled sweep). Returns the colour changes.
    pub async fn reevaluate_all(&self, actor: &Actor) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let mut changes = Vec::new();
        for person_id in self.persons() {
            changes.extend(
                self.person(actor, person_id, PersonCommand::Reevaluate)
                    .await?,
            );
        }
        Ok(changes)
    }

    /// Registers a checkpoint.
    pub async fn checkpoint(
        &self,
        actor: &Actor,
        checkpoint_id: CheckpointId,
        command: CheckpointCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let name = stream(format!("checkpoint-{checkpoint_id}"))?;
        let directory = self.directory();
        let events = self
            .execute(
                &name,
                actor,
                None,
                CorrelationId::new(),
                |s: CheckpointState, e| s.evolve(e),
                |s, ctx| checkpoint::decide(s, &command, ctx, &directory),
            )
            .await?;
        for scan in &events {
            self.fan_out_scan(actor, scan).await?;
        }
        Ok(events)
    }

    /// A scan is evidence about the person the code belongs to: a measured
    /// temperature, and a venue visit when admitted. Idempotent (evidence ids
    /// derive from the scan id), so it can be repeated after a crash.
    async fn fan_out_scan(&self, actor: &Actor, scan: &HealthEvent) -> Result<(), HealthCodeError> {
        let HealthEvent::CodeScanned {
            checkpoint_id,
            scan_id,
            code_id,
            at,
            ..
        } = scan
        else {
            return Ok(());
        };
        let (person, place) = {
            let views = read_lock(&self.views);
            (
                views.codes.get(code_id).copied(),
                views.places.get(checkpoint_id).copied(),
            )
        };
        let (Some(person), Some(place)) = (person, place) else {
            return Ok(());
        };
        // Recorded on behalf of the checkpoint, whichever side scanned.
        let recorder = Actor {
            id: actor.id,
            role: Role::Checkpoint {
                checkpoint: *checkpoint_id,
            },
        };
        for (i, evidence) in checkpoint::scan_evidence(scan, place)
            .into_iter()
            .enumerate()
        {
            let id = EventId::from_u128(scan_id.uuid().as_u128() ^ (i as u128 + 1));
            let meta = EvidenceMeta {
                id,
                source: EvidenceSource::Checkpoint,
                occurred_at: *at,
                recorded_by: actor.id,
            };
            self.person(
                &recorder,
                person,
                PersonCommand::RecordEvidence {
                    meta,
                    evidence,
                    ext: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Finishes work a crash may have interrupted between two appends:
    /// scans whose evidence has not reached the person's stream and effective
    /// overrides not yet applied to every person. Both steps are idempotent;
    /// call after [`rebuild`](Self::rebuild) at start-up. Returns how many
    /// scans and overrides were looked at.
    pub async fn resume(&self, actor: &Actor) -> Result<usize, HealthCodeError> {
        let filter = EventFilter::streams(["checkpoint-", "override-"]);
        let mut from = ReadFrom::Start;
        let mut seen = 0;
        let mut overrides: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        loop {
            let page = self
                .store
                .read_all(Direction::Forwards, from, PAGE, &filter)
                .await
                .map_err(store_err)?;
            let Some(last) = page.last() else { break };
            from = ReadFrom::At(last.position.next());
            for recorded in &page {
                match recorded.json::<HealthEvent>() {
                    Ok(scan @ HealthEvent::CodeScanned { .. }) => {
                        seen += 1;
                        self.fan_out_scan(actor, &scan).await?;
                    }
                    Ok(HealthEvent::OverrideRequested { override_id, .. }) => {
                        seen += 1;
                        overrides
                            .entry(recorded.stream.as_str().to_owned())
                            .or_default()
                            .push(override_id);
                    }
                    _ => {}
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        for (name, ids) in overrides {
            let (state, _) = self
                .load(&stream(name)?, |s: OverrideState, e| s.evolve(e))
                .await?;
            for id in ids {
                for (person_id, apply) in state.applications(&id) {
                    self.person(actor, person_id, apply).await?;
                }
            }
        }
        Ok(seen)
    }

    /// Signs a checkpoint's place code with the key of a region containing it.
    pub fn place_code(&self, checkpoint_id: CheckpointId) -> Result<Vec<u8>, HealthCodeError> {
        let place = read_lock(&self.views)
            .places
            .get(&checkpoint_id)
            .copied()
            .ok_or_else(|| HealthCodeError::CheckpointNotFound(checkpoint_id.to_string()))?;
        let signers = read_lock(&self.signers);
        let signer = signers
            .iter()
            .find(|(region, _)| region.contains(&place))
            .map(|(_, s)| s)
            .ok_or_else(|| HealthCodeError::InvalidInput {
                field: "place",
                rule: format!("no region containing {place} has a signing key installed"),
            })?;
        sign_place(
            signer.active(),
            &PlaceClaims {
                checkpoint_id,
                place,
                issued_at: truncate(self.clock.now()),
            },
        )
    }

    /// Requests or approves an override; applies it to each person once effective.
    pub async fn override_colours(
        &self,
        actor: &Actor,
        region: DivisionCode,
        command: OverrideCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        let name = stream(format!("override-{region}"))?;
        let config = self.override_config;
        let override_id = match &command {
            OverrideCommand::Request { override_id, .. }
            | OverrideCommand::Approve { override_id } => *override_id,
        };
        let events = self
            .execute(
                &name,
                actor,
                Some(region),
                CorrelationId::new(),
                |s: OverrideState, e| s.evolve(e),
                |s, ctx| overrides::decide(s, &command, ctx, &config),
            )
            .await?;
        if !events.is_empty() {
            let (state, _) = self.load(&name, |s: OverrideState, e| s.evolve(e)).await?;
            for (person_id, apply) in state.applications(&override_id) {
                self.person(actor, person_id, apply).await?;
            }
        }
        Ok(events)
    }

    /// The folded state of a person (for queries and tests).
    pub async fn person_state(&self, person_id: PersonId) -> Result<PersonState, HealthCodeError> {
        Ok(self
            .load(&person_stream(person_id)?, |s: PersonState, e| s.evolve(e))
            .await?
            .0)
    }

    /// Every event of a person's stream, in order (audit replay).
    pub async fn person_history(
        &self,
        person_id: PersonId,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        Ok(self
            .load(&person_stream(person_id)?, |mut v: Vec<HealthEvent>, e| {
                v.push(e.clone());
                v
            })
            .await?
            .0)
    }
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.unix_timestamp()).unwrap_or(t)
}
