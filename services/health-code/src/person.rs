//! The person aggregate (stream `person-<id>`): registration, evidence,
//! colours per region, codes, appeals and applied overrides.
//!
//! [`decide`] checks the rules and returns events; [`PersonState::evolve`]
//! only folds. Colours are never set directly: every command that adds
//! evidence re-evaluates each region the person has a colour in, and
//! [`PersonCommand::Reevaluate`] does the same as time passes, emitting a
//! `ColourChanged` only when the outcome differs (idempotent).

use std::collections::{BTreeMap, BTreeSet};
use time::{Date, Duration, OffsetDateTime};
use tongban_kernel::{
    china_date, Actor, ActorId, DivisionCode, DivisionLevel, EventId, PersonId, Role,
};
use uuid::Uuid;

use crate::context::DecisionContext;
use crate::error::HealthCodeError;
use crate::events::{ColourCause, Evidence, EvidenceMeta, EvidenceSource, HealthEvent};
use crate::facts;
use crate::policy::Decision;
use crate::types::{BizExt, Colour, OverrideAnswers, Temperature, TestResult, TravelMode};
use crate::vault::SealedPersonalData;

/// The colour currently recorded for a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionColour {
    /// The colour.
    pub colour: Colour,
    /// The rule that produced it.
    pub rule_id: String,
    /// The reason code.
    pub reason: String,
    /// Policy id and version.
    pub policy: (String, u32),
    /// Evidence cited.
    pub evidence: Vec<EventId>,
    /// How many times the colour in this region has changed (1 for the
    /// first colour). A code carries the epoch it was issued in: a code of
    /// an earlier epoch is void (see [`PersonState::code_superseded`]). A
    /// new rule that keeps the colour does not start a new epoch.
    pub epoch: u32,
}

/// A code generated for the person, as the person's stream recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// The issuing region.
    pub region: DivisionCode,
    /// The colour signed into the code.
    pub colour: Colour,
    /// Issued (full precision; the token holds whole seconds).
    pub issued_at: OffsetDateTime,
    /// Expires.
    pub expires_at: OffsetDateTime,
    /// The region's colour epoch when the code was issued.
    pub epoch: u32,
}

/// An override in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveOverride {
    /// The override request.
    pub override_id: Uuid,
    /// The imposed colour.
    pub colour: Colour,
    /// When it lapses.
    pub expires_at: OffsetDateTime,
    /// Its order among the overrides applied to the person (the latest wins).
    pub applied: usize,
}

/// Status of an appeal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppealStatus {
    /// Waiting for an official.
    Open,
    /// The colour was upheld.
    Upheld,
    /// The colour was overridden.
    Overridden,
}

/// An appeal of the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appeal {
    /// The region whose colour is appealed.
    pub region: DivisionCode,
    /// Its status.
    pub status: AppealStatus,
}

/// The folded state of a person's stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonState {
    /// The person, once registered.
    pub person_id: Option<PersonId>,
    /// Home region (province or city).
    pub home_region: Option<DivisionCode>,
    /// Residence community.
    pub residence: Option<DivisionCode>,
    /// Sealed personal data.
    pub personal: Option<SealedPersonalData>,
    /// Whether the data key was erased.
    pub erased: bool,
    /// Evidence in append order.
    pub evidence: Vec<(EvidenceMeta, Evidence)>,
    evidence_ids: BTreeSet<EventId>,
    /// Colour per region.
    pub colours: BTreeMap<DivisionCode, RegionColour>,
    /// Overrides per region.
    pub overrides: BTreeMap<DivisionCode, ActiveOverride>,
    /// Appeals.
    pub appeals: BTreeMap<Uuid, Appeal>,
    /// Codes generated, by code id.
    pub codes: BTreeMap<Uuid, CodeRecord>,
    /// Overrides already applied (idempotency).
    applied_overrides: BTreeSet<Uuid>,
}

impl PersonState {
    /// Folds one event. Never validates.
    pub fn evolve(mut self, event: &HealthEvent) -> Self {
        self.apply(event);
        self
    }

    /// Folds one event in place.
    pub fn apply(&mut self, event: &HealthEvent) {
        match event {
            HealthEvent::PersonRegistered {
                person_id,
                home_region,
                residence,
                personal,
                ..
            } => {
                self.person_id = Some(*person_id);
                self.home_region = Some(*home_region);
                self.residence = Some(*residence);
                self.personal = Some(personal.clone());
            }
            HealthEvent::ResidenceChanged { to, .. } => self.residence = Some(*to),
            HealthEvent::PersonalDataErased { .. } => {
                self.erased = true;
                self.personal = None;
            }
            HealthEvent::EvidenceRecorded { meta, evidence, .. }
                if !self.evidence_ids.contains(&meta.id) =>
            {
                self.evidence_ids.insert(meta.id);
                self.evidence.push((meta.clone(), evidence.clone()));
            }
            HealthEvent::ColourChanged {
                region,
                colour,
                rule_id,
                reason,
                policy_id,
                policy_version,
                evidence,
                ..
            } => {
                let epoch = match self.colours.get(region) {
                    Some(before) if before.colour == *colour => before.epoch,
                    Some(before) => before.epoch + 1,
                    None => 1,
                };
                self.colours.insert(
                    *region,
                    RegionColour {
                        colour: *colour,
                        rule_id: rule_id.clone(),
                        reason: reason.clone(),
                        policy: (policy_id.clone(), *policy_version),
                        evidence: evidence.clone(),
                        epoch,
                    },
                );
            }
            HealthEvent::CodeGenerated {
                code_id,
                region,
                colour,
                issued_at,
                expires_at,
                ..
            } => {
                let epoch = self.colours.get(region).map_or(0, |c| c.epoch);
                self.codes.insert(
                    *code_id,
                    CodeRecord {
                        region: *region,
                        colour: *colour,
                        issued_at: *issued_at,
                        expires_at: *expires_at,
                        epoch,
                    },
                );
            }
            HealthEvent::AppealFiled {
                appeal_id, region, ..
            } => {
                self.appeals.insert(
                    *appeal_id,
                    Appeal {
                        region: *region,
                        status: AppealStatus::Open,
                    },
                );
            }
            HealthEvent::AppealUpheld { appeal_id, .. } => {
                if let Some(a) = self.appeals.get_mut(appeal_id) {
                    a.status = AppealStatus::Upheld;
                }
            }
            HealthEvent::ColourOverridden {
                override_id,
                region,
                colour,
                answers,
                expires_at,
                ..
            } => {
                self.applied_overrides.insert(*override_id);
                self.overrides.insert(
                    *region,
                    ActiveOverride {
                        override_id: *override_id,
                        colour: *colour,
                        expires_at: *expires_at,
                        applied: self.applied_overrides.len(),
                    },
                );
                if let OverrideAnswers::Appeal(appeal_id) = answers {
                    if let Some(a) = self.appeals.get_mut(appeal_id) {
                        a.status = AppealStatus::Overridden;
                    }
                }
            }
            _ => {}
        }
    }

    /// Folds a sequence of events from the default state.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a HealthEvent>) -> Self {
        let mut state = Self::default();
        for e in events {
            state.apply(e);
        }
        state
    }

    /// The regions the person has (or should have) a colour in.
    pub fn regions(&self) -> Vec<DivisionCode> {
        let mut regions: BTreeSet<DivisionCode> = self.colours.keys().copied().collect();
        regions.extend(self.home_region);
        regions.into_iter().collect()
    }

    /// Whether the holder's colour in the code's region changed after the
    /// code was issued: the code is void (`CODE_SUPERSEDED`). `None` when
    /// the code is not one of this person's.
    pub fn code_superseded(&self, code_id: &Uuid) -> Option<bool> {
        let code = self.codes.get(code_id)?;
        let epoch = self.colours.get(&code.region).map_or(0, |c| c.epoch);
        Some(epoch != code.epoch)
    }

    /// The newest negative nucleic-acid test sampled at or before `now`.
    pub fn latest_negative_test(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.evidence
            .iter()
            .filter_map(|(_, e)| match e {
                Evidence::NucleicAcidTested {
                    sampled_at,
                    result: TestResult::Negative,
                    ..
                } if *sampled_at <= now => Some(*sampled_at),
                _ => None,
            })
            .max()
    }
}

/// One leg of a declared itinerary.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// Evidence id for this leg.
    pub evidence_id: EventId,
    /// How.
    pub mode: TravelMode,
    /// From (county or finer; reduced to the county).
    pub from: DivisionCode,
    /// To (county or finer; reduced to the county).
    pub to: DivisionCode,
    /// Day of travel.
    pub date: Date,
}

/// Commands on a person. The seven GB/T 38963 operations are here:
/// [`DeclareHealth`](PersonCommand::DeclareHealth),
/// [`DeclareItinerary`](PersonCommand::DeclareItinerary),
/// [`QueryHealthInfo`](PersonCommand::QueryHealthInfo),
/// [`RequestCodeCall`](PersonCommand::RequestCodeCall),
/// [`GenerateCode`](PersonCommand::GenerateCode), verify (see
/// [`crate::token`] and [`crate::checkpoint`]) and
/// [`FileAppeal`](PersonCommand::FileAppeal) ("correct information").
#[derive(Debug, Clone, PartialEq)]
pub enum PersonCommand {
    /// Register in a home region (personal data already sealed).
    Register {
        /// The new person's id.
        person_id: PersonId,
        /// Home region (province or city).
        home_region: DivisionCode,
        /// Residence community (12 digits).
        residence: DivisionCode,
        /// Kind of identity document.
        id_document_kind: String,
        /// Sealed personal data.
        personal: SealedPersonalData,
    },
    /// Move to another community.
    ChangeResidence {
        /// The new community.
        to: DivisionCode,
    },
    /// Crypto-shred: the handler destroys the key after this is recorded.
    ErasePersonalData,
    /// Record evidence from a source (lab, hospital, tracing, telco, ...).
    RecordEvidence {
        /// Id, source, business time, recorder.
        meta: EvidenceMeta,
        /// The evidence.
        evidence: Evidence,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// GB/T 38963 "declare health information".
    DeclareHealth {
        /// Evidence id.
        evidence_id: EventId,
        /// Business time.
        at: OffsetDateTime,
        /// Symptoms.
        symptoms: Vec<String>,
        /// Temperature.
        temperature: Temperature,
        /// Places visited in the last 14 days (reduced to counties).
        declared_travel: Vec<DivisionCode>,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// GB/T 38963 "declare an itinerary".
    DeclareItinerary {
        /// The legs.
        trips: Vec<Trip>,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// GB/T 38963 "query health information" (recorded when someone else reads).
    QueryHealthInfo {
        /// Why.
        purpose: String,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// GB/T 38963 "request to call a code".
    RequestCodeCall {
        /// The app or scene.
        requester: String,
        /// Its purpose.
        purpose: String,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// GB/T 38963 "generate a code" in a region.
    GenerateCode {
        /// The new code's id.
        code_id: Uuid,
        /// The issuing region.
        region: DivisionCode,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// GB/T 38963 "correct information": appeal a colour.
    FileAppeal {
        /// The appeal's id.
        appeal_id: Uuid,
        /// The region whose colour is appealed.
        region: DivisionCode,
        /// Why.
        reason: String,
        /// BizExtData.
        ext: Option<BizExt>,
    },
    /// An official upholds the colour.
    UpholdAppeal {
        /// The appeal.
        appeal_id: Uuid,
        /// Why.
        reason: String,
    },
    /// Apply an approved override (from the region's override stream).
    ApplyOverride {
        /// The override request.
        override_id: Uuid,
        /// The region.
        region: DivisionCode,
        /// The imposed colour.
        colour: Colour,
        /// The requesting official.
        official: ActorId,
        /// Legal basis.
        legal_basis: String,
        /// Reason.
        reason: String,
        /// What it answers.
        answers: OverrideAnswers,
        /// When it lapses.
        expires_at: OffsetDateTime,
    },
    /// Re-evaluate colours as time passes (scheduled; idempotent).
    Reevaluate,
}

/// The colour outcome for a region: an override in force, else the policy's
/// decision. An override made in the region or in one of its sub-regions (a
/// district's official correcting a resident's code of the city) applies;
/// of several, the latest applied.
pub fn outcome(state: &PersonState, region: &DivisionCode, ctx: &DecisionContext<'_>) -> Decision {
    let policy = ctx.policies.resolve(region, ctx.now);
    if let Some(o) = state
        .overrides
        .iter()
        .filter(|(r, o)| region.contains(r) && o.expires_at > ctx.now)
        .map(|(_, o)| o)
        .max_by_key(|o| o.applied)
    {
        return Decision {
            colour: o.colour,
            rule_id: format!("override:{}", o.override_id),
            reason: "OFFICIAL_OVERRIDE".into(),
            evidence: Vec::new(),
            policy_id: policy.id.clone(),
            policy_version: policy.version,
        };
    }
    let facts = facts::compute(&state.evidence, ctx.risk, ctx.now);
    policy.evaluate(&facts)
}

fn colour_changes(
    state: &PersonState,
    person_id: PersonId,
    regions: &[DivisionCode],
    cause: &ColourCause,
    ctx: &DecisionContext<'_>,
) -> Vec<HealthEvent> {
    regions
        .iter()
        .filter_map(|region| {
            let d = outcome(state, region, ctx);
            let current = state.colours.get(region);
            let same = current.is_some_and(|c| {
                c.colour == d.colour
                    && c.rule_id == d.rule_id
                    && c.policy == (d.policy_id.clone(), d.policy_version)
            });
            (!same).then(|| HealthEvent::ColourChanged {
                person_id,
                region: *region,
                colour: d.colour,
                previous: current.map(|c| c.colour),
                policy_id: d.policy_id,
                policy_version: d.policy_version,
                rule_id: d.rule_id,
                reason: d.reason,
                evidence: d.evidence,
                cause: cause.clone(),
                at: ctx.now,
            })
        })
        .collect()
}

fn require_text(field: &'static str, text: &str, max: usize) -> Result<String, HealthCodeError> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > max {
        Err(HealthCodeError::InvalidInput {
            field,
            rule: format!("must have 1 to {max} characters"),
        })
    } else {
        Ok(t.to_owned())
    }
}

fn to_county(
    field: &'static str,
    code: &DivisionCode,
    ctx: &DecisionContext<'_>,
) -> Result<DivisionCode, HealthCodeError> {
    ctx.divisions
        .check(code)
        .map_err(|e| HealthCodeError::division(field, e))?;
    code.county().ok_or_else(|| HealthCodeError::InvalidInput {
        field,
        rule: format!(
            "{code} is a {}; travel is recorded at county level or finer",
            code.level().name()
        ),
    })
}

/// Validates and normalises evidence: division codes exist, travel and dwell
/// are reduced to counties, times are not in the future.
fn normalise_evidence(
    evidence: &Evidence,
    ctx: &DecisionContext<'_>,
) -> Result<Evidence, HealthCodeError> {
    let today = china_date(ctx.now);
    Ok(match evidence {
        Evidence::DiagnosisConfirmed { case_ref } => Evidence::DiagnosisConfirmed {
            case_ref: require_text("case_ref", case_ref, 64)?,
        },
        Evidence::DiagnosisCleared { case_ref } => Evidence::DiagnosisCleared {
            case_ref: require_text("case_ref", case_ref, 64)?,
        },
        Evidence::CloseContactIdentified {
            case_ref,
            exposure_date,
        } => {
            if *exposure_date > today {
                return Err(HealthCodeError::InvalidInput {
                    field: "exposure_date",
                    rule: "must not be in the future".into(),
                });
            }
            Evidence::CloseContactIdentified {
                case_ref: require_text("case_ref", case_ref, 64)?,
                exposure_date: *exposure_date,
            }
        }
        Evidence::NucleicAcidTested {
            sampled_at,
            result,
            lab,
        } => {
            ctx.not_in_future("sampled_at", *sampled_at)?;
            Evidence::NucleicAcidTested {
                sampled_at: *sampled_at,
                result: *result,
                lab: require_text("lab", lab, 128)?,
            }
        }
        Evidence::AntibodyTested {
            sampled_at,
            igm,
            igg,
            lab,
        } => {
            ctx.not_in_future("sampled_at", *sampled_at)?;
            Evidence::AntibodyTested {
                sampled_at: *sampled_at,
                igm: *igm,
                igg: *igg,
                lab: require_text("lab", lab, 128)?,
            }
        }
        Evidence::HealthDeclared {
            symptoms,
            temperature,
            declared_travel,
        } => {
            let mut counties = Vec::with_capacity(declared_travel.len());
            for c in declared_travel {
                let county = to_county("declared_travel", c, ctx)?;
                if !counties.contains(&county) {
                    counties.push(county);
                }
            }
            let symptoms = symptoms
                .iter()
                .map(|s| require_text("symptoms", s, 64))
                .collect::<Result<Vec<_>, _>>()?;
            Evidence::HealthDeclared {
                symptoms,
                temperature: *temperature,
                declared_travel: counties,
            }
        }
        Evidence::TemperatureMeasured {
            checkpoint,
            place,
            temperature,
        } => {
            ctx.divisions
                .check(place)
                .map_err(|e| HealthCodeError::division("place", e))?;
            Evidence::TemperatureMeasured {
                checkpoint: *checkpoint,
                place: *place,
                temperature: *temperature,
            }
        }
        Evidence::TravelRecorded {
            mode,
            from_county,
            to_county: to,
            date,
        } => {
            if *date > today {
                return Err(HealthCodeError::InvalidInput {
                    field: "date",
                    rule: "must not be in the future".into(),
                });
            }
            Evidence::TravelRecorded {
                mode: *mode,
                from_county: to_county("from", from_county, ctx)?,
                to_county: to_county("to", to, ctx)?,
                date: *date,
            }
        }
        Evidence::DwellReported { county, minutes } => {
            if *minutes == 0 || *minutes > 14 * 24 * 60 {
                return Err(HealthCodeError::InvalidInput {
                    field: "minutes",
                    rule: "a dwell lasts 1 minute to 14 days".into(),
                });
            }
            Evidence::DwellReported {
                county: to_county("county", county, ctx)?,
                minutes: *minutes,
            }
        }
        Evidence::VenueVisited { checkpoint, place } => {
            ctx.divisions
                .check(place)
                .map_err(|e| HealthCodeError::division("place", e))?;
            Evidence::VenueVisited {
                checkpoint: *checkpoint,
                place: *place,
            }
        }
    })
}

fn may_record(actor: &Actor, state: &PersonState, person: PersonId, evidence: &Evidence) -> bool {
    match &actor.role {
        Role::Citizen { person: p } => {
            *p == person && matches!(evidence, Evidence::HealthDeclared { .. })
        }
        Role::Lab { .. } => {
            matches!(
                evidence,
                Evidence::NucleicAcidTested { .. } | Evidence::AntibodyTested { .. }
            )
        }
        Role::Checkpoint { .. } => {
            matches!(
                evidence,
                Evidence::TemperatureMeasured { .. } | Evidence::VenueVisited { .. }
            )
        }
        // Officials act within their region: the person must live there or
        // be registered there.
        Role::HealthOfficial { .. } => [state.residence, state.home_region]
            .into_iter()
            .flatten()
            .any(|area| actor.has_health_authority_over(&area)),
        // Transport and telecom departments report travel and dwell only.
        Role::Department { .. } => matches!(
            evidence,
            Evidence::TravelRecorded { .. } | Evidence::DwellReported { .. }
        ),
        Role::Admin => true,
        Role::Auditor | Role::Enterprise { .. } => false,
    }
}

/// The department whose approved applications change a person's residence
/// (the cases service's residence process acts under this name).
pub const RESIDENCE_REGISTRY_DEPARTMENT: &str = "cases";

fn is_self(ctx: &DecisionContext<'_>, person: PersonId) -> bool {
    matches!(ctx.actor.role, Role::Citizen { person: p } if p == person)
}

/// Who may declare for a person (health, itinerary).
const DECLARER: &str =
    "a declaration is made by the person or a health official of their residence or home region";

/// The person themself, or a health official with authority over the
/// person's residence or home region.
fn may_declare(ctx: &DecisionContext<'_>, state: &PersonState, person: PersonId) -> bool {
    is_self(ctx, person)
        || [state.residence, state.home_region]
            .into_iter()
            .flatten()
            .any(|area| ctx.actor.has_health_authority_over(&area))
}

/// Decides a command on a person.
pub fn decide(
    state: &PersonState,
    command: &PersonCommand,
    ctx: &DecisionContext<'_>,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    if let PersonCommand::Register {
        person_id,
        home_region,
        residence,
        id_document_kind,
        personal,
    } = command
    {
        if matches!(ctx.actor.role, Role::HealthOfficial { .. })
            && !ctx.actor.has_health_authority_over(residence)
        {
            return Err(HealthCodeError::Forbidden(format!(
                "a health official registers residents of their own region only, not of {residence}"
            )));
        }
        if state.person_id.is_some() {
            return Err(HealthCodeError::PersonAlreadyRegistered(*person_id));
        }
        if !matches!(
            home_region.level(),
            DivisionLevel::Province | DivisionLevel::City
        ) {
            return Err(HealthCodeError::InvalidInput {
                field: "home_region",
                rule: "a home region is a province (2 digits) or a city (4 digits)".into(),
            });
        }
        ctx.divisions
            .check(home_region)
            .map_err(|e| HealthCodeError::division("home_region", e))?;
        ctx.divisions
            .parse_at(&residence.to_string(), DivisionLevel::Community)
            .map_err(|e| HealthCodeError::division("residence", e))?;
        if !home_region.contains(residence) {
            return Err(HealthCodeError::InvalidInput {
                field: "residence",
                rule: format!("community {residence} is not in home region {home_region}"),
            });
        }
        let registered = HealthEvent::PersonRegistered {
            person_id: *person_id,
            home_region: *home_region,
            residence: *residence,
            id_document_kind: id_document_kind.clone(),
            personal: personal.clone(),
            at: ctx.now,
        };
        let next = state.clone().evolve(&registered);
        let mut events = vec![registered];
        events.extend(colour_changes(
            &next,
            *person_id,
            &[*home_region],
            &ColourCause::FirstEvaluation,
            ctx,
        ));
        return Ok(events);
    }
    let person_id = state
        .person_id
        .ok_or(HealthCodeError::PersonNotFound(PersonId::from_u128(0)))?;
    let now = ctx.now;
    match command {
        PersonCommand::Register { .. } => Ok(vec![]),
        PersonCommand::ChangeResidence { to } => {
            let allowed = match &ctx.actor.role {
                Role::Admin => true,
                Role::Department { name } => name == RESIDENCE_REGISTRY_DEPARTMENT,
                _ => state
                    .residence
                    .is_some_and(|current| ctx.actor.has_health_authority_over(&current)),
            };
            if !allowed {
                return Err(HealthCodeError::Forbidden(
                    "a residence change comes from an approved application (the cases service), \
                     a health official of the current residence, or an admin"
                        .into(),
                ));
            }
            ctx.divisions
                .parse_at(&to.to_string(), DivisionLevel::Community)
                .map_err(|e| HealthCodeError::division("residence", e))?;
            let from = state.residence.unwrap_or(*to);
            if from == *to {
                return Ok(vec![]);
            }
            Ok(vec![HealthEvent::ResidenceChanged {
                person_id,
                from,
                to: *to,
                at: now,
            }])
        }
        PersonCommand::ErasePersonalData => {
            if !(is_self(ctx, person_id) || matches!(ctx.actor.role, Role::Admin)) {
                return Err(HealthCodeError::Forbidden(
                    "only the person or an admin may erase personal data".into(),
                ));
            }
            if state.erased {
                return Ok(vec![]);
            }
            Ok(vec![HealthEvent::PersonalDataErased {
                person_id,
                by: ctx.actor.id,
                at: now,
            }])
        }
        PersonCommand::RecordEvidence {
            meta,
            evidence,
            ext,
        } => {
            if !may_record(ctx.actor, state, person_id, evidence) {
                return Err(HealthCodeError::Forbidden(format!(
                    "a {} may not record {}",
                    ctx.actor.role_name(),
                    evidence.type_name()
                )));
            }
            record(state, person_id, meta.clone(), evidence, ext.clone(), ctx)
        }
        PersonCommand::DeclareHealth {
            evidence_id,
            at,
            symptoms,
            temperature,
            declared_travel,
            ext,
        } => {
            if !may_declare(ctx, state, person_id) {
                return Err(HealthCodeError::Forbidden(DECLARER.into()));
            }
            let meta = EvidenceMeta {
                id: *evidence_id,
                source: EvidenceSource::SelfDeclaration,
                occurred_at: *at,
                recorded_by: ctx.actor.id,
            };
            let evidence = Evidence::HealthDeclared {
                symptoms: symptoms.clone(),
                temperature: *temperature,
                declared_travel: declared_travel.clone(),
            };
            record(state, person_id, meta, &evidence, ext.clone(), ctx)
        }
        PersonCommand::DeclareItinerary { trips, ext } => {
            if !may_declare(ctx, state, person_id) {
                return Err(HealthCodeError::Forbidden(DECLARER.into()));
            }
            if trips.is_empty() {
                return Err(HealthCodeError::InvalidInput {
                    field: "trips",
                    rule: "must list at least one trip".into(),
                });
            }
            let mut next = state.clone();
            let mut events = Vec::new();
            for trip in trips {
                let meta = EvidenceMeta {
                    id: trip.evidence_id,
                    source: EvidenceSource::SelfDeclaration,
                    occurred_at: trip.date.midnight().assume_utc(),
                    recorded_by: ctx.actor.id,
                };
                let evidence = Evidence::TravelRecorded {
                    mode: trip.mode,
                    from_county: trip.from,
                    to_county: trip.to,
                    date: trip.date,
                };
                let produced = record(&next, person_id, meta, &evidence, ext.clone(), ctx)?;
                for e in &produced {
                    next.apply(e);
                }
                events.extend(produced);
            }
            Ok(events)
        }
        PersonCommand::QueryHealthInfo { purpose, ext } => {
            if is_self(ctx, person_id) {
                return Ok(vec![]);
            }
            if matches!(ctx.actor.role, Role::Citizen { .. }) {
                return Err(HealthCodeError::Forbidden(
                    "a citizen may read only their own health information".into(),
                ));
            }
            Ok(vec![HealthEvent::HealthInfoQueried {
                person_id,
                by: ctx.actor.id,
                role: ctx.actor.role_name().into(),
                purpose: require_text("purpose", purpose, 200)?,
                at: now,
                ext: ext.clone(),
            }])
        }
        PersonCommand::RequestCodeCall {
            requester,
            purpose,
            ext,
        } => {
            if !(is_self(ctx, person_id) || matches!(ctx.actor.role, Role::Checkpoint { .. })) {
                return Err(HealthCodeError::Forbidden(
                    "a code call is requested by the person or at a checkpoint".into(),
                ));
            }
            Ok(vec![HealthEvent::CodeCallRequested {
                person_id,
                requester: require_text("requester", requester, 128)?,
                purpose: require_text("purpose", purpose, 200)?,
                granted: !state.erased,
                at: now,
                ext: ext.clone(),
            }])
        }
        PersonCommand::GenerateCode {
            code_id,
            region,
            ext,
        } => {
            if !(may_declare(ctx, state, person_id) || matches!(ctx.actor.role, Role::Admin)) {
                return Err(HealthCodeError::Forbidden(
                    "a code is generated by the person, a health official of their residence \
                     or home region, or an admin"
                        .into(),
                ));
            }
            if !matches!(
                region.level(),
                DivisionLevel::Province | DivisionLevel::City
            ) {
                return Err(HealthCodeError::InvalidInput {
                    field: "region",
                    rule: "codes are issued by a province or a city".into(),
                });
            }
            ctx.divisions
                .check(region)
                .map_err(|e| HealthCodeError::division("region", e))?;
            if state.codes.contains_key(code_id) {
                return Ok(vec![]);
            }
            let policy = ctx.policies.resolve(region, now);
            let mut events = Vec::new();
            let mut next = state.clone();
            if !state.colours.contains_key(region) {
                for e in colour_changes(
                    state,
                    person_id,
                    &[*region],
                    &ColourCause::FirstEvaluation,
                    ctx,
                ) {
                    next.apply(&e);
                    events.push(e);
                }
            } else {
                for e in colour_changes(
                    state,
                    person_id,
                    &[*region],
                    &ColourCause::Reevaluation,
                    ctx,
                ) {
                    next.apply(&e);
                    events.push(e);
                }
            }
            let colour = next.colours.get(region).map_or(Colour::Green, |c| c.colour);
            if let Some(hours) = policy.document.declaration_max_age_hours {
                let f = facts::compute(&state.evidence, ctx.risk, now);
                if f.facts.hours_since_declaration > i64::from(hours) {
                    return Err(HealthCodeError::DeclarationRequired {
                        region: region.to_string(),
                        hours,
                    });
                }
            }
            events.push(HealthEvent::CodeGenerated {
                person_id,
                code_id: *code_id,
                region: *region,
                colour,
                issued_at: now,
                expires_at: now
                    + Duration::minutes(i64::from(policy.document.code_validity_minutes)),
                ext: ext.clone(),
            });
            Ok(events)
        }
        PersonCommand::FileAppeal {
            appeal_id,
            region,
            reason,
            ext,
        } => {
            if !is_self(ctx, person_id) {
                return Err(HealthCodeError::Forbidden(
                    "an appeal is filed by the person".into(),
                ));
            }
            if state.appeals.contains_key(appeal_id) {
                return Ok(vec![]);
            }
            let current =
                state
                    .colours
                    .get(region)
                    .ok_or_else(|| HealthCodeError::InvalidInput {
                        field: "region",
                        rule: format!("the person has no colour in region {region}"),
                    })?;
            Ok(vec![HealthEvent::AppealFiled {
                appeal_id: *appeal_id,
                person_id,
                region: *region,
                colour: current.colour,
                reason: require_text("reason", reason, 1000)?.into(),
                at: now,
                ext: ext.clone(),
            }])
        }
        PersonCommand::UpholdAppeal { appeal_id, reason } => {
            let appeal = state
                .appeals
                .get(appeal_id)
                .ok_or_else(|| HealthCodeError::AppealNotFound(appeal_id.to_string()))?;
            if !ctx.actor.has_health_authority_over(&appeal.region) {
                return Err(HealthCodeError::Forbidden(format!(
                    "only a health official of {} may decide this appeal",
                    appeal.region
                )));
            }
            if appeal.status != AppealStatus::Open {
                return Err(HealthCodeError::AppealAlreadyDecided(appeal_id.to_string()));
            }
            Ok(vec![HealthEvent::AppealUpheld {
                appeal_id: *appeal_id,
                person_id,
                official: ctx.actor.id,
                reason: require_text("reason", reason, 1000)?,
                at: now,
            }])
        }
        PersonCommand::ApplyOverride {
            override_id,
            region,
            colour,
            official,
            legal_basis,
            reason,
            answers,
            expires_at,
        } => {
            if state.applied_overrides.contains(override_id) {
                return Ok(vec![]);
            }
            if let OverrideAnswers::Appeal(appeal_id) = answers {
                let appeal = state
                    .appeals
                    .get(appeal_id)
                    .ok_or_else(|| HealthCodeError::AppealNotFound(appeal_id.to_string()))?;
                if appeal.status != AppealStatus::Open {
                    return Err(HealthCodeError::AppealAlreadyDecided(appeal_id.to_string()));
                }
            }
            let overridden = HealthEvent::ColourOverridden {
                person_id,
                override_id: *override_id,
                region: *region,
                colour: *colour,
                official: *official,
                legal_basis: legal_basis.clone(),
                reason: reason.clone(),
                answers: answers.clone(),
                expires_at: *expires_at,
                at: now,
            };
            let next = state.clone().evolve(&overridden);
            // The person's colours of regions containing the override's
            // (their code of the city, for a district's override); the
            // override's own region if they have none there yet.
            let mut affected: Vec<DivisionCode> = next
                .colours
                .keys()
                .filter(|r| r.contains(region))
                .copied()
                .collect();
            if affected.is_empty() {
                affected.push(*region);
            }
            let mut events = vec![overridden];
            events.extend(colour_changes(
                &next,
                person_id,
                &affected,
                &ColourCause::Override {
                    override_id: *override_id,
                },
                ctx,
            ));
            Ok(events)
        }
        PersonCommand::Reevaluate => Ok(colour_changes(
            state,
            person_id,
            &state.regions(),
            &ColourCause::Reevaluation,
            ctx,
        )),
    }
}

fn record(
    state: &PersonState,
    person_id: PersonId,
    meta: EvidenceMeta,
    evidence: &Evidence,
    ext: Option<BizExt>,
    ctx: &DecisionContext<'_>,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    ctx.not_in_future("occurred_at", meta.occurred_at)?;
    let evidence = normalise_evidence(evidence, ctx)?;
    if state.evidence_ids.contains(&meta.id) {
        return Ok(vec![]); // idempotent: this evidence is already recorded
    }
    let id = meta.id;
    let recorded = HealthEvent::EvidenceRecorded {
        person_id,
        meta,
        evidence,
        ext,
    };
    let next = state.clone().evolve(&recorded);
    let mut events = vec![recorded];
    events.extend(colour_changes(
        &next,
        person_id,
        &next.regions(),
        &ColourCause::Evidence { evidence: id },
        ctx,
    ));
    Ok(events)
}
