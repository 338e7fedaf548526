//! The applications domain's facts, with stable type names and versions.
//! Events carry what the read side needs (the due date after a
//! supplement, the applicant on submission).
//!
//! Streams: `case-<id>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tongban_catalog::{DepartmentCode, ServiceCode};
use tongban_kernel::{ActorId, CorrelationId, DivisionCode, EventId, PersonId};

use crate::types::{Applicant, CaseId, Principal};

/// Every fact about applications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CaseEvent {
    /// An applicant submitted an application.
    #[serde(rename = "ApplicationSubmitted.v1")]
    ApplicationSubmitted {
        /// The application.
        case_id: CaseId,
        /// The service.
        service: ServiceCode,
        /// The catalogue version of the service applied for.
        service_version: u32,
        /// The handling department.
        department: DepartmentCode,
        /// Where the applicant applied.
        region: DivisionCode,
        /// Who applied.
        applicant: Applicant,
        /// The form as submitted: in clear as decided, sealed with the
        /// applicant's key in the log (see [`crate::sealed_form`]).
        form: Value,
        /// When a decision is due.
        #[serde(with = "time::serde::rfc3339")]
        due_at: OffsetDateTime,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official took the application up.
    #[serde(rename = "ApplicationAccepted.v1")]
    ApplicationAccepted {
        /// The application.
        case_id: CaseId,
        /// The official.
        official: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official asked for more information; the due date pauses.
    #[serde(rename = "MoreInformationRequested.v1")]
    MoreInformationRequested {
        /// The application.
        case_id: CaseId,
        /// The official.
        official: ActorId,
        /// What is needed.
        requested: String,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The applicant supplied a corrected form; the due date moves by the
    /// time the application waited for them.
    #[serde(rename = "ApplicationSupplemented.v1")]
    ApplicationSupplemented {
        /// The application.
        case_id: CaseId,
        /// The whole form as it now is (sealed in the log, like the
        /// submitted one).
        form: Value,
        /// What changed.
        note: String,
        /// The new due date.
        #[serde(with = "time::serde::rfc3339")]
        due_at: OffsetDateTime,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official approved.
    #[serde(rename = "ApplicationApproved.v1")]
    ApplicationApproved {
        /// The application.
        case_id: CaseId,
        /// The official.
        official: ActorId,
        /// Why.
        reasons: Vec<String>,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official rejected.
    #[serde(rename = "ApplicationRejected.v1")]
    ApplicationRejected {
        /// The application.
        case_id: CaseId,
        /// The official.
        official: ActorId,
        /// Why.
        reasons: Vec<String>,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The applicant withdrew.
    #[serde(rename = "ApplicationWithdrawn.v1")]
    ApplicationWithdrawn {
        /// The application.
        case_id: CaseId,
        /// Why.
        reason: String,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An approved change of residence community, for the health-code
    /// domain to carry out (see [`crate::residence`]).
    #[serde(rename = "ResidenceChangeApproved.v1")]
    ResidenceChangeApproved {
        /// The application.
        case_id: CaseId,
        /// The person moving.
        person_id: PersonId,
        /// The new community (12 digits).
        to: DivisionCode,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The health-code domain changed the person's residence community.
    #[serde(rename = "ResidenceChangeApplied.v1")]
    ResidenceChangeApplied {
        /// The application.
        case_id: CaseId,
        /// The person.
        person_id: PersonId,
        /// The new community.
        to: DivisionCode,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An official opened the application (access transparency: the
    /// applicant sees who looked, why and at which fields). Changes no
    /// status.
    #[serde(rename = "ApplicationOpened.v1")]
    ApplicationOpened {
        /// The application.
        case_id: CaseId,
        /// The official.
        official: ActorId,
        /// Their department.
        department: String,
        /// Why they opened it.
        purpose: String,
        /// The fields returned to them.
        fields: Vec<String>,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The health-code domain refused the change.
    #[serde(rename = "ResidenceChangeFailed.v1")]
    ResidenceChangeFailed {
        /// The application.
        case_id: CaseId,
        /// The person.
        person_id: PersonId,
        /// What the health-code domain said.
        reason: String,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// Every case event type name (for subscriptions' filters).
pub const TYPE_NAMES: [&str; 11] = [
    "ApplicationSubmitted.v1",
    "ApplicationAccepted.v1",
    "MoreInformationRequested.v1",
    "ApplicationSupplemented.v1",
    "ApplicationApproved.v1",
    "ApplicationRejected.v1",
    "ApplicationWithdrawn.v1",
    "ResidenceChangeApproved.v1",
    "ResidenceChangeApplied.v1",
    "ResidenceChangeFailed.v1",
    "ApplicationOpened.v1",
];

impl CaseEvent {
    /// The stable type name used as the store's event type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ApplicationSubmitted { .. } => TYPE_NAMES[0],
            Self::ApplicationAccepted { .. } => TYPE_NAMES[1],
            Self::MoreInformationRequested { .. } => TYPE_NAMES[2],
            Self::ApplicationSupplemented { .. } => TYPE_NAMES[3],
            Self::ApplicationApproved { .. } => TYPE_NAMES[4],
            Self::ApplicationRejected { .. } => TYPE_NAMES[5],
            Self::ApplicationWithdrawn { .. } => TYPE_NAMES[6],
            Self::ResidenceChangeApproved { .. } => TYPE_NAMES[7],
            Self::ResidenceChangeApplied { .. } => TYPE_NAMES[8],
            Self::ResidenceChangeFailed { .. } => TYPE_NAMES[9],
            Self::ApplicationOpened { .. } => TYPE_NAMES[10],
        }
    }

    /// The application the event is about.
    pub fn case_id(&self) -> CaseId {
        match self {
            Self::ApplicationSubmitted { case_id, .. }
            | Self::ApplicationAccepted { case_id, .. }
            | Self::MoreInformationRequested { case_id, .. }
            | Self::ApplicationSupplemented { case_id, .. }
            | Self::ApplicationApproved { case_id, .. }
            | Self::ApplicationRejected { case_id, .. }
            | Self::ApplicationWithdrawn { case_id, .. }
            | Self::ResidenceChangeApproved { case_id, .. }
            | Self::ResidenceChangeApplied { case_id, .. }
            | Self::ResidenceChangeFailed { case_id, .. }
            | Self::ApplicationOpened { case_id, .. } => *case_id,
        }
    }
}

/// The metadata every case event carries: like the kernel's
/// `EventMetadata`, with the acting [`Principal`] (which may be an
/// enterprise or a department official, capacities the kernel's roles do
/// not have).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseMetadata {
    /// Ties together everything one request caused.
    pub correlation_id: CorrelationId,
    /// The event that directly caused this one.
    pub causation_id: Option<EventId>,
    /// Who acted, in which capacity.
    pub principal: Principal,
    /// The region of the application.
    pub region: Option<DivisionCode>,
    /// Business time.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}
