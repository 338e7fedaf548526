//! The health-code domain's events: past-tense facts with a stable type name
//! and version (`"type": "PersonRegistered.v1"`). Events carry the derived
//! values the read side needs (a colour change carries the new colour, the
//! policy and rule that produced it and the evidence that caused it).
//!
//! Streams: `person-<id>` (registration, evidence, colours, codes, appeals,
//! overrides applied), `riskarea-<code>`, `policy-<region>`,
//! `checkpoint-<id>`, `override-<region>`.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use tongban_kernel::{ActorId, CheckpointId, DivisionCode, EventId, PersonId};
use uuid::Uuid;

use crate::policy::PolicyDocument;
use crate::types::{
    AdmissionPolicy, BizExt, Colour, OverrideAnswers, RiskLevel, Temperature, TestResult,
    TravelMode,
};
use crate::vault::{SealedPersonalData, SealedText};

/// Where a piece of evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceSource {
    /// A hospital (diagnoses).
    Hospital,
    /// Disease control's contact tracing.
    ContactTracing,
    /// A testing laboratory.
    Lab,
    /// The person's own declaration.
    SelfDeclaration,
    /// A checkpoint (temperature, venue visit).
    Checkpoint,
    /// Railway ticketing.
    Rail,
    /// Airline ticketing.
    Air,
    /// Road checkpoints and coach ticketing.
    Road,
    /// A mobile network operator.
    Telco,
}

/// The common part of every evidence event: its id, source, business time and recorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceMeta {
    /// Identifies the evidence; colour changes cite it.
    pub id: EventId,
    /// Where it came from.
    pub source: EvidenceSource,
    /// When it happened in the world.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Who recorded it.
    pub recorded_by: ActorId,
}

/// The evidence itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A case was confirmed.
    DiagnosisConfirmed {
        /// The case reference.
        case_ref: String,
    },
    /// A confirmed case was cleared (recovered or revised).
    DiagnosisCleared {
        /// The case reference.
        case_ref: String,
    },
    /// The person was a close contact of a case.
    CloseContactIdentified {
        /// The case reference.
        case_ref: String,
        /// Date of exposure.
        exposure_date: Date,
    },
    /// Nucleic-acid (PCR) test result.
    NucleicAcidTested {
        /// When the sample was taken.
        #[serde(with = "time::serde::rfc3339")]
        sampled_at: OffsetDateTime,
        /// The result.
        result: TestResult,
        /// The laboratory.
        lab: String,
    },
    /// Antibody test result.
    AntibodyTested {
        /// When the sample was taken.
        #[serde(with = "time::serde::rfc3339")]
        sampled_at: OffsetDateTime,
        /// IgM result.
        igm: TestResult,
        /// IgG result.
        igg: TestResult,
        /// The laboratory.
        lab: String,
    },
    /// A self-declaration (GB/T 38963 "declare health information").
    HealthDeclared {
        /// Symptoms declared (empty for none).
        symptoms: Vec<String>,
        /// Temperature declared.
        temperature: Temperature,
        /// Counties declared as visited in the last 14 days.
        declared_travel: Vec<DivisionCode>,
    },
    /// A temperature taken at a checkpoint.
    TemperatureMeasured {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Where it is.
        place: DivisionCode,
        /// The reading.
        temperature: Temperature,
    },
    /// A journey, kept at county level only (data minimisation).
    TravelRecorded {
        /// How.
        mode: TravelMode,
        /// From which county.
        from_county: DivisionCode,
        /// To which county.
        to_county: DivisionCode,
        /// On which day.
        date: Date,
    },
    /// A telco report that the phone stayed in a county.
    DwellReported {
        /// The county.
        county: DivisionCode,
        /// For how long.
        minutes: u32,
    },
    /// A scan at a venue (itself travel evidence).
    VenueVisited {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Where it is (community or street).
        place: DivisionCode,
    },
}

impl Evidence {
    /// The stable event type name of this kind of evidence.
    pub fn type_name(&self) -> &'static str {
        match self {
            Evidence::DiagnosisConfirmed { .. } => "DiagnosisConfirmed.v1",
            Evidence::DiagnosisCleared { .. } => "DiagnosisCleared.v1",
            Evidence::CloseContactIdentified { .. } => "CloseContactIdentified.v1",
            Evidence::NucleicAcidTested { .. } => "NucleicAcidTested.v1",
            Evidence::AntibodyTested { .. } => "AntibodyTested.v1",
            Evidence::HealthDeclared { .. } => "HealthDeclared.v1",
            Evidence::TemperatureMeasured { .. } => "TemperatureMeasured.v1",
            Evidence::TravelRecorded { .. } => "TravelRecorded.v1",
            Evidence::DwellReported { .. } => "DwellReported.v1",
            Evidence::VenueVisited { .. } => "VenueVisited.v1",
        }
    }
}

/// Why a colour was (re)decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColourCause {
    /// New evidence arrived.
    Evidence {
        /// The evidence.
        evidence: EventId,
    },
    /// A scheduled re-evaluation (time passed, risk areas or policies changed).
    Reevaluation,
    /// A code was requested in a region that had no colour for the person yet.
    FirstEvaluation,
    /// An official overrode the colour.
    Override {
        /// The override request.
        override_id: Uuid,
    },
}

/// Every fact of the health-code domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HealthEvent {
    /// A person was registered in a home region.
    #[serde(rename = "PersonRegistered.v1")]
    PersonRegistered {
        /// The person.
        person_id: PersonId,
        /// Their home region (province or city).
        home_region: DivisionCode,
        /// Their residence community (12 digits).
        residence: DivisionCode,
        /// The kind of identity document (the number is sealed).
        id_document_kind: String,
        /// Identity, name and phone, encrypted with the person's data key.
        personal: SealedPersonalData,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The person moved to another community.
    #[serde(rename = "ResidenceChanged.v1")]
    ResidenceChanged {
        /// The person.
        person_id: PersonId,
        /// Old community.
        from: DivisionCode,
        /// New community.
        to: DivisionCode,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The person's data key was destroyed; sealed data is unreadable from now on.
    #[serde(rename = "PersonalDataErased.v1")]
    PersonalDataErased {
        /// The person.
        person_id: PersonId,
        /// Who asked.
        by: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A piece of evidence about the person.
    #[serde(rename = "EvidenceRecorded.v1")]
    EvidenceRecorded {
        /// The person.
        person_id: PersonId,
        /// Id, source, business time, recorder.
        meta: EvidenceMeta,
        /// The evidence.
        evidence: Evidence,
        /// The standard's BizExtData.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ext: Option<BizExt>,
    },
    /// The person's colour in a region changed.
    #[serde(rename = "ColourChanged.v1")]
    ColourChanged {
        /// The person.
        person_id: PersonId,
        /// The region whose policy decided.
        region: DivisionCode,
        /// The new colour.
        colour: Colour,
        /// The colour before, if any.
        previous: Option<Colour>,
        /// The policy's id.
        policy_id: String,
        /// The policy's version.
        policy_version: u32,
        /// The rule that fired (`default` for none).
        rule_id: String,
        /// The reason code.
        reason: String,
        /// The evidence events that caused it.
        evidence: Vec<EventId>,
        /// What triggered the evaluation.
        cause: ColourCause,
        /// Evaluation time.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official or department read the person's health information.
    #[serde(rename = "HealthInfoQueried.v1")]
    HealthInfoQueried {
        /// The person.
        person_id: PersonId,
        /// Who read.
        by: ActorId,
        /// Their role.
        role: String,
        /// Declared purpose.
        purpose: String,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// BizExtData.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ext: Option<BizExt>,
    },
    /// An app or scene asked to call the person's code.
    #[serde(rename = "CodeCallRequested.v1")]
    CodeCallRequested {
        /// The person.
        person_id: PersonId,
        /// The app or scene.
        requester: String,
        /// Its purpose.
        purpose: String,
        /// Whether it was granted.
        granted: bool,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// BizExtData.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ext: Option<BizExt>,
    },
    /// A code was generated (the token is signed from these values).
    #[serde(rename = "CodeGenerated.v1")]
    CodeGenerated {
        /// The person.
        person_id: PersonId,
        /// The code's id (the only link from a token to the person).
        code_id: Uuid,
        /// The issuing region.
        region: DivisionCode,
        /// The colour in the token.
        colour: Colour,
        /// Issued.
        #[serde(with = "time::serde::rfc3339")]
        issued_at: OffsetDateTime,
        /// Expires.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        /// BizExtData.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ext: Option<BizExt>,
    },
    /// The person appealed a colour ("correct information").
    #[serde(rename = "AppealFiled.v1")]
    AppealFiled {
        /// The appeal.
        appeal_id: Uuid,
        /// The person.
        person_id: PersonId,
        /// The region whose colour is appealed.
        region: DivisionCode,
        /// The colour appealed.
        colour: Colour,
        /// Why, in the person's words: sealed with their data key when
        /// appended (see [`crate::vault::SealedText`]; clear in events
        /// written before that, and in a decision not yet appended).
        reason: SealedText,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// BizExtData.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ext: Option<BizExt>,
    },
    /// An official upheld the colour.
    #[serde(rename = "AppealUpheld.v1")]
    AppealUpheld {
        /// The appeal.
        appeal_id: Uuid,
        /// The person.
        person_id: PersonId,
        /// The official.
        official: ActorId,
        /// Why.
        reason: String,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An approved override was applied to the person.
    #[serde(rename = "ColourOverridden.v1")]
    ColourOverridden {
        /// The person.
        person_id: PersonId,
        /// The override request.
        override_id: Uuid,
        /// The region.
        region: DivisionCode,
        /// The imposed colour.
        colour: Colour,
        /// The requesting official.
        official: ActorId,
        /// The legal basis cited.
        legal_basis: String,
        /// The reason given.
        reason: String,
        /// The appeal or case it answers.
        answers: OverrideAnswers,
        /// When the override lapses.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A risk area was declared.
    #[serde(rename = "RiskAreaDeclared.v1")]
    RiskAreaDeclared {
        /// The area (county, street or community).
        area: DivisionCode,
        /// Its level.
        level: RiskLevel,
        /// The declaring official.
        by: ActorId,
        /// Effective from.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A risk area's level changed.
    #[serde(rename = "RiskLevelChanged.v1")]
    RiskLevelChanged {
        /// The area.
        area: DivisionCode,
        /// The previous level.
        from: RiskLevel,
        /// The new level.
        to: RiskLevel,
        /// The official.
        by: ActorId,
        /// Effective from.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A risk area was lifted.
    #[serde(rename = "RiskAreaLifted.v1")]
    RiskAreaLifted {
        /// The area.
        area: DivisionCode,
        /// The official.
        by: ActorId,
        /// Effective from.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A region published a policy version.
    #[serde(rename = "PolicyPublished.v1")]
    PolicyPublished {
        /// The region (province or city).
        region: DivisionCode,
        /// The policy id.
        policy_id: String,
        /// Its version (1, 2, ...).
        version: u32,
        /// The rules.
        document: PolicyDocument,
        /// The publishing official.
        by: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A checkpoint was registered by the street office that contains it.
    #[serde(rename = "CheckpointRegistered.v1")]
    CheckpointRegistered {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Its name.
        name: String,
        /// Where it is (community or street).
        place: DivisionCode,
        /// Who may enter.
        admission: AdmissionPolicy,
        /// The registering official.
        by: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A code was scanned at a checkpoint.
    #[serde(rename = "CodeScanned.v1")]
    CodeScanned {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// The scan.
        scan_id: EventId,
        /// The scanned code's id.
        code_id: Uuid,
        /// Who scanned whom.
        direction: crate::types::ScanDirection,
        /// The colour that decided: the holder's at the log head when
        /// checked online, else the one signed into the token.
        colour: Colour,
        /// Admitted or not.
        admitted: bool,
        /// Why (stable code: `ADMITTED`, `RED_CODE`, `CODE_SUPERSEDED`,
        /// `YELLOW_WITHOUT_RECENT_TEST`, `FEVER`, ...).
        reason: String,
        /// Measured temperature, if any.
        temperature: Option<Temperature>,
        /// Whether the scan was decided on the holder's status at the log
        /// head (`true`) or on the token's signed colour alone (`false`;
        /// every scan recorded before this field existed was).
        #[serde(default)]
        checked_online: bool,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official asked to override colours.
    #[serde(rename = "OverrideRequested.v1")]
    OverrideRequested {
        /// The request.
        override_id: Uuid,
        /// The region.
        region: DivisionCode,
        /// The persons affected.
        persons: Vec<PersonId>,
        /// The imposed colour.
        colour: Colour,
        /// The requesting official.
        official: ActorId,
        /// The legal basis.
        legal_basis: String,
        /// The reason.
        reason: String,
        /// The appeal or case it answers.
        answers: OverrideAnswers,
        /// When it lapses.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        /// Whether a second official must approve before it applies.
        requires_second_approval: bool,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// Overrides in a region exceeded the threshold in the window.
    #[serde(rename = "OverrideAlertRaised.v1")]
    OverrideAlertRaised {
        /// The request that crossed the threshold.
        override_id: Uuid,
        /// The region.
        region: DivisionCode,
        /// The requesting official.
        official: ActorId,
        /// Persons overridden in the window, this request included.
        persons_in_window: usize,
        /// The configured threshold.
        threshold: usize,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A second official approved a pending override.
    #[serde(rename = "OverrideApproved.v1")]
    OverrideApproved {
        /// The request.
        override_id: Uuid,
        /// The approving official.
        approver: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// The purpose an appeal's reason is sealed under (see
/// [`crate::vault::seal_bytes`]).
pub const APPEAL_REASON: &str = "appeal.reason";

impl HealthEvent {
    /// This event with the free text its person wrote sealed with their
    /// data key, as it goes into the log; `None` if it carries no such
    /// text in clear. Today that is an appeal's reason; official decisions
    /// and codes (reason codes, rule ids) are not personal free text.
    pub fn sealed_for_log(
        &self,
        vault: &dyn crate::vault::KeyVault,
    ) -> Result<Option<Self>, crate::vault::VaultError> {
        match self {
            Self::AppealFiled {
                person_id,
                reason: reason @ SealedText::Clear(_),
                ..
            } => {
                let sealed = reason.sealed(vault, *person_id, APPEAL_REASON)?;
                let mut event = self.clone();
                if let Self::AppealFiled { reason, .. } = &mut event {
                    *reason = sealed;
                }
                Ok(Some(event))
            }
            _ => Ok(None),
        }
    }

    /// The stable type name used as the store's event type.
    pub fn type_name(&self) -> &'static str {
        use HealthEvent::*;
        match self {
            PersonRegistered { .. } => "PersonRegistered.v1",
            ResidenceChanged { .. } => "ResidenceChanged.v1",
            PersonalDataErased { .. } => "PersonalDataErased.v1",
            EvidenceRecorded { evidence, .. } => evidence.type_name(),
            ColourChanged { .. } => "ColourChanged.v1",
            HealthInfoQueried { .. } => "HealthInfoQueried.v1",
            CodeCallRequested { .. } => "CodeCallRequested.v1",
            CodeGenerated { .. } => "CodeGenerated.v1",
            AppealFiled { .. } => "AppealFiled.v1",
            AppealUpheld { .. } => "AppealUpheld.v1",
            ColourOverridden { .. } => "ColourOverridden.v1",
            RiskAreaDeclared { .. } => "RiskAreaDeclared.v1",
            RiskLevelChanged { .. } => "RiskLevelChanged.v1",
            RiskAreaLifted { .. } => "RiskAreaLifted.v1",
            PolicyPublished { .. } => "PolicyPublished.v1",
            CheckpointRegistered { .. } => "CheckpointRegistered.v1",
            CodeScanned { .. } => "CodeScanned.v1",
            OverrideRequested { .. } => "OverrideRequested.v1",
            OverrideAlertRaised { .. } => "OverrideAlertRaised.v1",
            OverrideApproved { .. } => "OverrideApproved.v1",
        }
    }
}
