//! Command handling on the event store: fold the stream, decide, append with
//! the expected revision, and on a concurrency conflict catch up and decide
//! again (a bounded number of times). I/O lives here and nowhere else:
//! sealing personal data with the key vault, signing tokens, reading the
//! policies and risk areas in force, fanning a scan or an approved override
//! out to the persons' streams.
//!
//! Streams: `person-<uuid>`, `riskarea-<code>`, `policy-<region>`,
//! `checkpoint-<uuid>`, `override-<region>`. Every event carries
//! [`EventMetadata`] (correlation, causation, actor, region, business time).
//!
//! Folded states are kept in a bounded cache (`StateCache`), one entry per
//! recently used stream with the revision it was folded to. A command decides
//! on it, appends with `Exact(revision)` and folds its own events into the
//! entry: a stream that grows by one event per scan costs the same on its
//! thousandth scan as on its first. Writes by another node on the same store
//! are seen by reading only the events after the cached revision: when the
//! append is refused as a conflict, and before a command answers that it
//! changes nothing or is refused. Commands on one stream
//! take turns on the entry's lock, so one node does not conflict with itself.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use tongban_kernel::{
    Actor, CheckpointId, Clock, CorrelationId, DivisionCode, Divisions, EventMetadata, PersonId,
    Role,
};
use tongban_store::{
    Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom, StoreError, StreamName,
};
use uuid::Uuid;

use crate::checkpoint::{self, CheckpointCommand, CheckpointState, CodeStatus};
use crate::context::DecisionContext;
use crate::error::HealthCodeError;
use crate::events::{EvidenceMeta, EvidenceSource, HealthEvent};
use crate::log_views::{self, LogViews, PendingScan};
use crate::overrides::{self, OverrideCommand, OverrideConfig, OverrideState};
use crate::person::{self, PersonCommand, PersonState};
use crate::policy::{self, PolicyBook, PublishPolicy};
use crate::risk::{self, RiskAreaCommand, RiskAreaState};
use crate::token::{
    peek_code_claims, sign_code, sign_place, CodeClaims, KeyDirectory, PlaceClaims, RegionKey,
    RegionSigner,
};
use crate::vault::{self, KeyVault, PersonalData};

/// How many times a command is decided again after a concurrency conflict.
pub const MAX_ATTEMPTS: u32 = 5;

/// How many streams' folded states the service keeps (least recently used
/// first out).
pub const CACHED_STREAMS: usize = 16_384;

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

/// What a command recorded: its events and where its append landed in the
/// log (read your writes: pass the position as `minPosition`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// The events appended, empty when the command changed nothing.
    pub events: Vec<HealthEvent>,
    /// Position of the last event appended; `None` when nothing was appended.
    pub position: Option<Position>,
}

impl Recorded {
    /// Adds what a follow-up append recorded (the later position wins).
    fn and(mut self, next: Recorded) -> Self {
        self.events.extend(next.events);
        self.position = self.position.max(next.position);
        self
    }
}

/// A stream's folded state and the revision it was folded to (`None`: the
/// stream has no events). Type-erased so one cache serves every aggregate.
struct Folded {
    state: Box<dyn Any + Send>,
    revision: Option<u64>,
}

/// One stream's cache entry. Empty until folded, and emptied while a command
/// works on it, so a command cancelled half-way leaves nothing stale behind.
type Slot = Arc<tokio::sync::Mutex<Option<Folded>>>;

/// Bounded cache of folded stream states, least recently used out first.
/// Only a speed-up: an evicted or missing entry is folded again from the
/// store, and a stale one is caught up (or corrected by the expected
/// revision check) before any decision is appended.
struct StateCache {
    capacity: usize,
    slots: Mutex<Slots>,
}

/// The entries, and their names in order of last use (a tick per use).
#[derive(Default)]
struct Slots {
    tick: u64,
    entries: HashMap<StreamName, (Slot, u64)>,
    by_use: BTreeMap<u64, StreamName>,
}

impl StateCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: Mutex::new(Slots::default()),
        }
    }

    /// The entry of `name`, created empty on first use; evicts the least
    /// recently used entry when full. A command still holding an evicted
    /// entry finishes on it; the expected revision keeps it honest.
    fn slot(&self, name: &StreamName) -> Slot {
        let mut guard = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slots = &mut *guard;
        slots.tick += 1;
        let tick = slots.tick;
        if let Some((slot, used)) = slots.entries.get_mut(name) {
            slots.by_use.remove(used);
            *used = tick;
            slots.by_use.insert(tick, name.clone());
            return slot.clone();
        }
        while slots.entries.len() >= self.capacity {
            let Some((_, oldest)) = slots.by_use.pop_first() else {
                break;
            };
            slots.entries.remove(&oldest);
        }
        let slot = Slot::default();
        slots.entries.insert(name.clone(), (slot.clone(), tick));
        slots.by_use.insert(tick, name.clone());
        slot
    }

    /// How many streams have an entry.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .len()
    }
}

/// Takes a stream's state out of its entry: the cached one if there is one
/// folded with the same aggregate.
fn take_folded<St: Send + 'static>(entry: &mut Option<Folded>) -> Option<(St, Option<u64>)> {
    let Folded { state, revision } = entry.take()?;
    state.downcast::<St>().ok().map(|state| (*state, revision))
}

fn put_folded<St: Send + 'static>(entry: &mut Option<Folded>, state: St, revision: Option<u64>) {
    *entry = Some(Folded {
        state: Box::new(state),
        revision,
    });
}

/// A failure to seal an event's free text: after erasure the person has no
/// key, so nothing new of theirs can be written.
fn sealing_error(event: &HealthEvent, error: vault::VaultError) -> HealthCodeError {
    match error {
        vault::VaultError::KeyErased(person) => HealthCodeError::PersonErased(person),
        other => HealthCodeError::Vault(format!(
            "failed to seal {} for the log: {other}",
            event.type_name()
        )),
    }
}

/// Decides several commands on one person as one atomic append: each is
/// decided on the state the previous ones' events lead to. Pure.
pub fn decide_person_commands(
    state: &PersonState,
    commands: &[PersonCommand],
    ctx: &DecisionContext<'_>,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    let mut events = Vec::new();
    let mut next: Option<PersonState> = None;
    for (i, command) in commands.iter().enumerate() {
        let produced = person::decide(next.as_ref().unwrap_or(state), command, ctx)?;
        if !produced.is_empty() && i + 1 < commands.len() {
            let next = next.get_or_insert_with(|| state.clone());
            for e in &produced {
                next.apply(e);
            }
        }
        events.extend(produced);
    }
    Ok(events)
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
    /// Position of the append that recorded the code.
    pub position: Option<Position>,
}

/// The person a code belongs to, with their state folded to the log head.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The person.
    pub person_id: PersonId,
    /// Their state at the log head.
    pub state: PersonState,
}

/// A code checked against the log head (or offline, see [`CodeStatus`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedCode {
    /// What the token says.
    pub claims: CodeClaims,
    /// What decides: the holder's status at the head, or the signed claims.
    pub status: CodeStatus,
    /// The holder, when this hub knows them.
    pub holder: Option<Holder>,
}

/// A checkpoint command's outcome with what the guard is shown beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOutcome {
    /// The checkpoint's events and the last append's position.
    pub recorded: Recorded,
    /// The scanned code's claims (the decision verified them); `None` for
    /// a registration.
    pub claims: Option<CodeClaims>,
    /// The code's holder as the scan saw them, when this hub knows them.
    pub holder: Option<Holder>,
}

/// The health-code service: commands in, events out, on any [`EventStore`].
pub struct HealthCodeService<S: EventStore> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    divisions: Arc<Divisions>,
    vault: Arc<dyn KeyVault>,
    override_config: OverrideConfig,
    views: Arc<LogViews>,
    view_wait: Duration,
    signers: RwLock<BTreeMap<DivisionCode, RegionSigner>>,
    directory: RwLock<Arc<KeyDirectory>>,
    states: StateCache,
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
            views: Arc::new(LogViews::default()),
            view_wait: log_views::DEFAULT_WAIT,
            signers: RwLock::new(BTreeMap::new()),
            directory: RwLock::new(Arc::new(KeyDirectory::new())),
            states: StateCache::new(CACHED_STREAMS),
        }
    }

    /// How long a command waits for the views to reach the log head
    /// before it fails with `TIMEOUT` (default 5 s).
    pub fn with_view_wait(mut self, wait: Duration) -> Self {
        self.view_wait = wait;
        self
    }

    /// Starts following the log (if not yet) and waits until the views
    /// have applied the head as it is now, however long that takes (start-up
    /// catch-up). Returns how many health-code events the views applied.
    pub async fn rebuild(&self) -> Result<usize, HealthCodeError> {
        self.views.follow(&self.store);
        if let Some(head) = self.store.head().await.map_err(store_err)? {
            self.views.reach(head.position, Duration::MAX).await?;
        }
        Ok(self.views.applied().events)
    }

    /// Makes sure the views have applied at least the log head as it is
    /// when called (bounded wait, `TIMEOUT` otherwise): what any replica
    /// recorded before this command began is seen by its decision.
    pub async fn sync_views(&self) -> Result<(), HealthCodeError> {
        self.views.follow(&self.store);
        if let Some(head) = self.store.head().await.map_err(store_err)? {
            if self.views.applied().position < Some(head.position) {
                self.views.reach(head.position, self.view_wait).await?;
            }
        }
        Ok(())
    }

    /// The log position the views have applied (`None`: nothing yet).
    pub fn views_position(&self) -> Option<Position> {
        self.views.applied().position
    }

    /// Installs a region's signing key and publishes its public key.
    pub fn install_region_key(&self, key: RegionKey) {
        let region = key.region();
        Arc::make_mut(&mut *write_lock(&self.directory)).publish(key.published());
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

    /// Replaces every region key at once (what a keyring loaded from its
    /// store): `signing` are the keys that sign, one per region; they and
    /// `verifying` (older keys not retired) make the directory. A key left
    /// out — a retired one — verifies nothing any more.
    pub fn replace_region_keys(&self, signing: Vec<RegionKey>, verifying: Vec<RegionKey>) {
        let mut directory = KeyDirectory::new();
        for key in signing.iter().chain(&verifying) {
            directory.publish(key.published());
        }
        let signers = signing
            .into_iter()
            .map(|key| (key.region(), RegionSigner::new(key)))
            .collect();
        *write_lock(&self.signers) = signers;
        *write_lock(&self.directory) = Arc::new(directory);
    }

    /// Whether `region` has a signing key installed.
    pub fn signs_for(&self, region: DivisionCode) -> bool {
        read_lock(&self.signers).contains_key(&region)
    }

    /// Whether the directory holds the key `kid`.
    pub fn knows_kid(&self, kid: &str) -> bool {
        read_lock(&self.directory).get(kid).is_some()
    }

    /// The public key directory (what checkpoints carry offline).
    pub fn directory(&self) -> KeyDirectory {
        KeyDirectory::clone(&read_lock(&self.directory))
    }

    /// Persons known to the service (as far as the views have followed
    /// the log; see [`sync_views`](Self::sync_views)).
    pub fn persons(&self) -> Vec<PersonId> {
        self.views.read().persons.clone()
    }

    async fn load<St: Default>(
        &self,
        name: &StreamName,
        fold: impl Fn(St, &HealthEvent) -> St,
    ) -> Result<(St, Option<u64>), HealthCodeError> {
        self.catch_up(name, St::default(), None, &fold).await
    }

    /// Folds the events of `name` after `revision` into `state`.
    async fn catch_up<St: Default>(
        &self,
        name: &StreamName,
        mut state: St,
        mut revision: Option<u64>,
        fold: &impl Fn(St, &HealthEvent) -> St,
    ) -> Result<(St, Option<u64>), HealthCodeError> {
        let mut from = revision.map_or(ReadFrom::Start, |r| ReadFrom::At(r + 1));
        loop {
            let page = match self
                .store
                .read_stream(name, Direction::Forwards, from, PAGE)
                .await
            {
                Ok(page) => page,
                // Never written (or deleted since it was folded): nothing to fold.
                Err(StoreError::StreamNotFound { .. }) => return Ok((St::default(), None)),
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

    /// The current folded state of `name`, through the cache.
    async fn current<St: Default + Clone + Send + 'static>(
        &self,
        name: &StreamName,
        fold: impl Fn(St, &HealthEvent) -> St,
    ) -> Result<St, HealthCodeError> {
        let slot = self.states.slot(name);
        let mut entry = slot.lock().await;
        let (state, revision) = take_folded::<St>(&mut entry).unwrap_or_default();
        let (state, revision) = self.catch_up(name, state, revision, &fold).await?;
        let current = state.clone();
        put_folded(&mut entry, state, revision);
        Ok(current)
    }

    /// Catches the stream's cached state up, decides, appends with the
    /// expected revision and folds its own events into the cache; on a
    /// concurrency conflict catches up and decides again.
    #[tracing::instrument(name = "health_code.execute", skip_all, fields(stream = %name))]
    async fn execute<St: Default + Send + 'static>(
        &self,
        name: &StreamName,
        actor: &Actor,
        region: Option<DivisionCode>,
        correlation: CorrelationId,
        fold: impl Fn(St, &HealthEvent) -> St,
        decide: impl Fn(&St, &DecisionContext<'_>) -> Result<Vec<HealthEvent>, HealthCodeError>,
    ) -> Result<Recorded, HealthCodeError> {
        self.sync_views().await?;
        let slot = self.states.slot(name);
        let mut entry = slot.lock().await;
        let cached = take_folded::<St>(&mut entry);
        // Whether `state` includes everything the store had since this call began.
        let mut caught_up = cached.is_none();
        let (mut state, mut revision) = cached.unwrap_or_default();
        if caught_up {
            (state, revision) = self.catch_up(name, state, revision, &fold).await?;
        }
        let mut attempts = 0;
        loop {
            let now = self.clock.now();
            let decided = {
                let views = self.views.read();
                let ctx = DecisionContext {
                    now,
                    divisions: &self.divisions,
                    policies: &views.policies,
                    risk: &views.risk,
                    actor,
                };
                decide(&state, &ctx)
            };
            let events = match decided {
                Ok(events) if !events.is_empty() => events,
                // Events decided on a cached state need no read first: the
                // expected revision refuses them if the stream moved. A
                // refusal or a no-op has no such check, so it is decided
                // again if another node wrote since the state was cached.
                unchanged => {
                    if !caught_up {
                        let cached_at = revision;
                        (state, revision) = self.catch_up(name, state, revision, &fold).await?;
                        caught_up = true;
                        if revision != cached_at {
                            continue;
                        }
                    }
                    put_folded(&mut entry, state, revision);
                    return unchanged.map(|_| Recorded::default());
                }
            };
            let metadata = EventMetadata {
                correlation_id: correlation,
                causation_id: None,
                actor: actor.clone(),
                region,
                occurred_at: now,
            };
            let data = events
                .iter()
                .map(|e| {
                    // What a person wrote goes into the log sealed; the
                    // caller and the cache keep the decided (clear) event.
                    let sealed = e
                        .sealed_for_log(self.vault.as_ref())
                        .map_err(|err| sealing_error(e, err))?;
                    let stored = sealed.as_ref().unwrap_or(e);
                    EventData::json(stored.type_name(), stored)
                        .and_then(|d| d.with_metadata(&metadata))
                        .map_err(store_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.store.append(name, expected, data).await {
                Ok(appended) => {
                    for e in &events {
                        state = fold(state, e);
                    }
                    put_folded(&mut entry, state, Some(appended.next_expected_revision));
                    drop(entry);
                    // Read your writes: the views see this append (in log
                    // order, after everything before it) before the command
                    // answers. The append is durable either way.
                    if let Err(e) = self.views.reach(appended.position, self.view_wait).await {
                        tracing::warn!(error = %e, "the views are behind this node's own append");
                    }
                    return Ok(Recorded {
                        events,
                        position: Some(appended.position),
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    attempts += 1;
                    if attempts >= MAX_ATTEMPTS {
                        put_folded(&mut entry, state, revision);
                        return Err(HealthCodeError::Conflict {
                            stream: name.to_string(),
                            attempts: MAX_ATTEMPTS,
                        });
                    }
                    tracing::debug!("concurrency conflict; catching up and deciding again");
                    (state, revision) = self.catch_up(name, state, revision, &fold).await?;
                    caught_up = true;
                }
                Err(e) => return Err(store_err(e)),
            }
        }
    }

    /// Runs a command on a person's stream.
    pub async fn person(
        &self,
        actor: &Actor,
        person_id: PersonId,
        command: PersonCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        Ok(self
            .person_recorded(actor, person_id, command)
            .await?
            .events)
    }

    /// Runs a command on a person's stream; says where it was appended.
    pub async fn person_recorded(
        &self,
        actor: &Actor,
        person_id: PersonId,
        command: PersonCommand,
    ) -> Result<Recorded, HealthCodeError> {
        self.person_commands(actor, person_id, std::slice::from_ref(&command))
            .await
    }

    /// Runs several commands on a person's stream as one atomic append
    /// (see [`decide_person_commands`]).
    /// Scans of the person already in the log have their evidence recorded
    /// first, so the decision sees them.
    pub async fn person_commands(
        &self,
        actor: &Actor,
        person_id: PersonId,
        commands: &[PersonCommand],
    ) -> Result<Recorded, HealthCodeError> {
        self.sync_views().await?;
        self.settle_scans(person_id).await?;
        self.person_commands_settled(actor, person_id, commands)
            .await
    }

    async fn person_commands_settled(
        &self,
        actor: &Actor,
        person_id: PersonId,
        commands: &[PersonCommand],
    ) -> Result<Recorded, HealthCodeError> {
        let name = person_stream(person_id)?;
        self.execute(
            &name,
            actor,
            None,
            CorrelationId::new(),
            |s: PersonState, e| s.evolve(e),
            |s, ctx| match decide_person_commands(s, commands, ctx) {
                // A citizen acting on someone else learns nothing about
                // whether that person exists.
                Err(HealthCodeError::PersonNotFound(_)) => match actor.role {
                    Role::Citizen { person } if person != person_id => Err(
                        HealthCodeError::Forbidden("a citizen acts only for themself".into()),
                    ),
                    _ => Err(HealthCodeError::PersonNotFound(person_id)),
                },
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
        Ok(self
            .register_person_recorded(actor, person_id, home_region, residence, personal)
            .await?
            .events)
    }

    /// [`register_person`](Self::register_person), saying where it was appended.
    pub async fn register_person_recorded(
        &self,
        actor: &Actor,
        person_id: PersonId,
        home_region: DivisionCode,
        residence: DivisionCode,
        personal: &PersonalData,
    ) -> Result<Recorded, HealthCodeError> {
        let sealed = vault::seal(self.vault.as_ref(), person_id, personal)
            .map_err(|e| HealthCodeError::Vault(e.to_string()))?;
        let command = PersonCommand::Register {
            person_id,
            home_region,
            residence,
            id_document_kind: personal.id_document.kind().into(),
            personal: sealed,
        };
        self.person_recorded(actor, person_id, command).await
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
        let state = self.person_state(person_id).await?;
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
        self.erase_personal_data_recorded(actor, person_id)
            .await
            .map(drop)
    }

    /// [`erase_personal_data`](Self::erase_personal_data), saying where the
    /// erasure was appended.
    pub async fn erase_personal_data_recorded(
        &self,
        actor: &Actor,
        person_id: PersonId,
    ) -> Result<Recorded, HealthCodeError> {
        let recorded = self
            .person_recorded(actor, person_id, PersonCommand::ErasePersonalData)
            .await?;
        self.vault
            .erase(person_id)
            .map_err(|e| HealthCodeError::Vault(e.to_string()))?;
        Ok(recorded)
    }

    /// Generates a code in `region` and signs it with the region's active key.
    pub async fn generate_code(
        &self,
        actor: &Actor,
        person_id: PersonId,
        region: DivisionCode,
    ) -> Result<IssuedCode, HealthCodeError> {
        let code_id = Uuid::now_v7();
        let Recorded { events, position } = self
            .person_recorded(
                actor,
                person_id,
                PersonCommand::GenerateCode {
                    code_id,
                    region,
                    ext: None,
                },
            )
            .await?;
        let state = self.person_state(person_id).await?;
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
            position,
        })
    }

    /// Declares, changes or lifts a risk area.
    pub async fn risk_area(
        &self,
        actor: &Actor,
        command: RiskAreaCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        Ok(self.risk_area_recorded(actor, command).await?.events)
    }

    /// [`risk_area`](Self::risk_area), saying where it was appended.
    pub async fn risk_area_recorded(
        &self,
        actor: &Actor,
        command: RiskAreaCommand,
    ) -> Result<Recorded, HealthCodeError> {
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
        Ok(self.publish_policy_recorded(actor, command).await?.events)
    }

    /// [`publish_policy`](Self::publish_policy), saying where it was appended.
    pub async fn publish_policy_recorded(
        &self,
        actor: &Actor,
        command: PublishPolicy,
    ) -> Result<Recorded, HealthCodeError> {
        let name = stream(format!("policy-{}", command.region))?;
        self.execute(
            &name,
            actor,
            Some(command.region),
            CorrelationId::new(),
            |mut book: PolicyBook, e| {
                book.apply(e);
                book
            },
            |book, ctx| policy::decide_publish(book, &command, ctx.actor, ctx.now),
        )
        .await
    }

    /// Re-evaluates every known person (the scheduled sweep). Returns the colour changes.
    pub async fn reevaluate_all(&self, actor: &Actor) -> Result<Vec<HealthEvent>, HealthCodeError> {
        Ok(self.reevaluate_all_recorded(actor).await?.events)
    }

    /// [`reevaluate_all`](Self::reevaluate_all), saying where the last
    /// change was appended.
    pub async fn reevaluate_all_recorded(
        &self,
        actor: &Actor,
    ) -> Result<Recorded, HealthCodeError> {
        self.sync_views().await?;
        let mut changes = Recorded::default();
        for person_id in self.persons() {
            changes = changes.and(
                self.person_recorded(actor, person_id, PersonCommand::Reevaluate)
                    .await?,
            );
        }
        Ok(changes)
    }

    /// Registers a checkpoint or records a scan (and its evidence).
    pub async fn checkpoint(
        &self,
        actor: &Actor,
        checkpoint_id: CheckpointId,
        command: CheckpointCommand,
    ) -> Result<Vec<HealthEvent>, HealthCodeError> {
        Ok(self
            .checkpoint_recorded(actor, checkpoint_id, command)
            .await?
            .events)
    }

    /// [`checkpoint`](Self::checkpoint), saying where the last append (the
    /// scan's evidence on the person's stream) landed. The events are the
    /// checkpoint's own.
    pub async fn checkpoint_recorded(
        &self,
        actor: &Actor,
        checkpoint_id: CheckpointId,
        command: CheckpointCommand,
    ) -> Result<Recorded, HealthCodeError> {
        Ok(self
            .scan_recorded(actor, checkpoint_id, command)
            .await?
            .recorded)
    }

    /// [`checkpoint_recorded`](Self::checkpoint_recorded), also returning
    /// the scanned code's holder as the scan saw them (the state read at the
    /// log head before deciding), for the verdict.
    pub async fn scan_recorded(
        &self,
        actor: &Actor,
        checkpoint_id: CheckpointId,
        command: CheckpointCommand,
    ) -> Result<ScanOutcome, HealthCodeError> {
        let name = stream(format!("checkpoint-{checkpoint_id}"))?;
        let directory = Arc::clone(&read_lock(&self.directory));
        let (claims, holder) = match &command {
            CheckpointCommand::Scan { code_token, .. } => (
                peek_code_claims(code_token),
                self.code_holder(code_token).await?,
            ),
            CheckpointCommand::Register { .. } => (None, None),
        };
        let holder_state = holder.as_ref().map(|h| &h.state);
        // One durable append: the scan's evidence reaches the person's
        // stream through the evidence process manager (or the next command
        // on that person, whichever comes first; see `settle_scans`).
        let recorded = self
            .execute(
                &name,
                actor,
                None,
                CorrelationId::new(),
                |s: CheckpointState, e| s.evolve(e),
                |s, ctx| checkpoint::decide(s, &command, ctx, &directory, holder_state),
            )
            .await?;
        Ok(ScanOutcome {
            recorded,
            claims,
            holder,
        })
    }

    /// The person a code token names, with their state folded to the log
    /// head (not a cached copy: the cache is caught up from the store
    /// first). `None` when the token names no code this hub generated.
    /// The token is not verified here; deciding on it verifies it.
    pub async fn code_holder(&self, token: &[u8]) -> Result<Option<Holder>, HealthCodeError> {
        let Some(claims) = peek_code_claims(token) else {
            return Ok(None);
        };
        self.sync_views().await?;
        let Some(person_id) = self.views.read().codes.get(&claims.code_id).copied() else {
            return Ok(None);
        };
        let state = self.person_state(person_id).await?;
        Ok(Some(Holder { person_id, state }))
    }

    /// GB/T 38963 "verify a code" against the log head: signature, key and
    /// expiry, then the holder's current status when this hub knows them
    /// (a superseded code is void), else the signed colour (offline).
    pub async fn check_code(&self, token: &[u8]) -> Result<CheckedCode, HealthCodeError> {
        let holder = self.code_holder(token).await?;
        let directory = Arc::clone(&read_lock(&self.directory));
        let (claims, status) = checkpoint::check_code(
            &directory,
            token,
            holder.as_ref().map(|h| &h.state),
            self.clock.now(),
        )?;
        Ok(CheckedCode {
            claims,
            status,
            holder,
        })
    }

    /// Records the evidence of a scan in the log (`CodeScanned` at
    /// `recorded`) on its holder's stream: a measured temperature, and a
    /// venue visit when admitted, in one append. Idempotent (the evidence
    /// ids derive from the scan id), so the evidence process manager can
    /// repeat it after a crash and a command on the person can do it first.
    /// Nothing to do for a code or checkpoint this hub does not know.
    pub async fn record_scan_evidence(
        &self,
        recorded: &tongban_store::RecordedEvent,
    ) -> Result<Recorded, HealthCodeError> {
        let scan: HealthEvent = match recorded.json() {
            Ok(scan @ HealthEvent::CodeScanned { .. }) => scan,
            _ => return Ok(Recorded::default()),
        };
        self.views.follow(&self.store);
        self.views.reach(recorded.position, self.view_wait).await?;
        let recorder = recorded
            .metadata_json::<EventMetadata>()
            .map_or(tongban_kernel::ActorId::from_u128(0), |m| m.actor.id);
        let pending = self
            .views
            .read()
            .pending_scan(&scan, recorded.position, recorder);
        match pending {
            Some(pending) => self.record_pending_scan(&pending).await,
            None => Ok(Recorded::default()),
        }
    }

    async fn record_pending_scan(
        &self,
        pending: &PendingScan,
    ) -> Result<Recorded, HealthCodeError> {
        // Recorded on behalf of the checkpoint, whichever side scanned.
        let recorder = Actor {
            id: pending.recorder,
            role: Role::Checkpoint {
                checkpoint: pending.checkpoint_id,
            },
        };
        let commands: Vec<PersonCommand> = pending
            .evidence
            .iter()
            .map(|(id, evidence)| PersonCommand::RecordEvidence {
                meta: EvidenceMeta {
                    id: *id,
                    source: EvidenceSource::Checkpoint,
                    occurred_at: pending.at,
                    recorded_by: pending.recorder,
                },
                evidence: evidence.clone(),
                ext: None,
            })
            .collect();
        let outcome = self
            .person_commands_settled(&recorder, pending.person_id, &commands)
            .await;
        match outcome {
            Err(
                HealthCodeError::PersonNotFound(_)
                | HealthCodeError::PersonErased(_)
                | HealthCodeError::Forbidden(_)
                | HealthCodeError::InvalidInput { .. }
                | HealthCodeError::FutureTime { .. },
            ) => {
                // It can never be recorded: nothing to wait for.
                tracing::warn!(person = %pending.person_id, position = %pending.position, error = ?outcome.as_ref().err(), "a scan's evidence cannot be recorded; skipped");
                self.views
                    .write()
                    .forget(pending.person_id, pending.position);
                Ok(Recorded::default())
            }
            other => other,
        }
    }

    /// Records the evidence of every scan of `person_id` already in the
    /// (followed) log that has not reached their stream, so that a decision
    /// on the person sees every scan before it, whether or not the evidence
    /// process manager got there first (both are idempotent).
    async fn settle_scans(&self, person_id: PersonId) -> Result<(), HealthCodeError> {
        let pending = self
            .views
            .read()
            .pending
            .get(&person_id)
            .cloned()
            .unwrap_or_default();
        for scan in &pending {
            self.record_pending_scan(scan).await?;
        }
        Ok(())
    }

    /// Applies an effective override to each of its persons (idempotent:
    /// an override already applied changes nothing). Called by the
    /// reaction process manager for every override event, so an override
    /// approved just before a crash still reaches every person.
    pub async fn settle_override(
        &self,
        actor: &Actor,
        stream_name: &StreamName,
        override_id: Uuid,
    ) -> Result<Recorded, HealthCodeError> {
        let (state, _) = self
            .load(stream_name, |s: OverrideState, e| s.evolve(e))
            .await?;
        let mut recorded = Recorded::default();
        for (person_id, apply) in state.applications(&override_id) {
            recorded = recorded.and(self.person_recorded(actor, person_id, apply).await?);
        }
        Ok(recorded)
    }

    /// Signs a checkpoint's place code with the key of a region containing it.
    pub fn place_code(&self, checkpoint_id: CheckpointId) -> Result<Vec<u8>, HealthCodeError> {
        let place = self
            .views
            .read()
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
        Ok(self
            .override_colours_recorded(actor, region, command)
            .await?
            .events)
    }

    /// [`override_colours`](Self::override_colours), saying where the last
    /// append (the override's, or its last application to a person) landed.
    /// The events are the override stream's own.
    pub async fn override_colours_recorded(
        &self,
        actor: &Actor,
        region: DivisionCode,
        command: OverrideCommand,
    ) -> Result<Recorded, HealthCodeError> {
        // Authorise before reading: whoever holds no authority over the
        // region learns nothing about its overrides.
        if !actor.has_health_authority_over(&region) {
            return Err(HealthCodeError::Forbidden(format!(
                "only a health official of {region} may request or approve overrides there"
            )));
        }
        let name = stream(format!("override-{region}"))?;
        let config = self.override_config;
        let override_id = match &command {
            OverrideCommand::Request { override_id, .. }
            | OverrideCommand::Approve { override_id } => *override_id,
        };
        let mut recorded = self
            .execute(
                &name,
                actor,
                Some(region),
                CorrelationId::new(),
                |s: OverrideState, e| s.evolve(e),
                |s, ctx| overrides::decide(s, &command, ctx, &config),
            )
            .await?;
        if !recorded.events.is_empty() {
            let (state, _) = self.load(&name, |s: OverrideState, e| s.evolve(e)).await?;
            for (person_id, apply) in state.applications(&override_id) {
                let applied = self.person_recorded(actor, person_id, apply).await?;
                recorded.position = recorded.position.max(applied.position);
            }
        }
        Ok(recorded)
    }

    /// The folded state of a person (for queries and tests).
    /// Every scan of theirs already in the log is part of it (see
    /// [`person_commands`](Self::person_commands)).
    pub async fn person_state(&self, person_id: PersonId) -> Result<PersonState, HealthCodeError> {
        self.sync_views().await?;
        self.settle_scans(person_id).await?;
        self.current(&person_stream(person_id)?, |s: PersonState, e| s.evolve(e))
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::parse(s.to_owned()).unwrap_or_else(|e| panic!("test stream name: {e}"))
    }

    #[test]
    fn the_cache_keeps_the_recently_used_streams_and_drops_the_least_recently_used() {
        // Given a cache of two streams holding a and b, where a was used last,
        let cache = StateCache::new(2);
        let a = cache.slot(&name("person-a"));
        let b = cache.slot(&name("person-b"));
        assert!(Arc::ptr_eq(&a, &cache.slot(&name("person-a"))));

        // when a third stream is used,
        cache.slot(&name("person-c"));

        // then b is dropped and a is kept.
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&a, &cache.slot(&name("person-a"))));
        assert!(!Arc::ptr_eq(&b, &cache.slot(&name("person-b"))));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_state_folded_by_another_aggregate_is_not_taken_for_this_one() {
        // Given an entry holding a checkpoint's state at revision 3,
        let mut entry = None;
        put_folded(&mut entry, CheckpointState::default(), Some(3));

        // when a person's state is taken from it,
        let taken = take_folded::<PersonState>(&mut entry);

        // then there is none: the person's stream is folded from the start.
        assert!(taken.is_none());
        assert!(entry.is_none());
    }
}
