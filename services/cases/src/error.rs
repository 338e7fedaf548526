//! The applications domain's errors: one variant per rule, each saying what
//! to do about it.
//!
//! At the edge: `InvalidInput`, `FormInvalid`, `UnknownRegion`,
//! `NotOfferedInRegion`, `ReasonsRequired` and `WrongApplicant` become
//! `INVALID_INPUT`; `Forbidden` becomes `FORBIDDEN`; `CaseNotFound` and
//! `ServiceNotFound` become `NOT_FOUND`; `IllegalTransition`,
//! `CaseAlreadyExists`, `ServiceWithdrawn` and `Conflict` become `CONFLICT`;
//! `Store` and `Upstream` are `INTERNAL`.

use thiserror::Error;
use tongban_catalog::{FieldViolation, ServiceCode};
use tongban_kernel::DivisionError;

use crate::case::{Status, Step};
use crate::types::CaseId;

fn list(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of the applications domain.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CaseError {
    /// A field breaks a rule.
    #[error("invalid `{field}`: {rule}")]
    InvalidInput {
        /// The field.
        field: &'static str,
        /// The rule.
        rule: String,
    },
    /// The form does not satisfy the service's JSON Schema or its own rules.
    #[error("the form for `{service}` is invalid: {}", list(.violations))]
    FormInvalid {
        /// The service applied for.
        service: ServiceCode,
        /// Each field and the rule it breaks.
        violations: Vec<FieldViolation>,
    },
    /// The application's region is not a real division.
    #[error("invalid `region`: {0}")]
    UnknownRegion(DivisionError),
    /// The service is not offered where the applicant applies.
    #[error("service `{service}` is not offered in {region}; it is offered in {eligible}")]
    NotOfferedInRegion {
        /// The service.
        service: ServiceCode,
        /// Where the applicant applied.
        region: String,
        /// Where it is offered.
        eligible: String,
    },
    /// A decision needs at least one reason.
    #[error("`reasons`: {step} needs at least one non-blank reason for the applicant")]
    ReasonsRequired {
        /// The step.
        step: Step,
    },
    /// This service takes applications from persons or from enterprises only.
    #[error("service `{service}` takes applications from {expected} only, not from a {actual}")]
    WrongApplicant {
        /// The service.
        service: ServiceCode,
        /// Who may apply.
        expected: &'static str,
        /// Who tried.
        actual: &'static str,
    },
    /// The principal may not do this to this application.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The step does not follow from the application's current state.
    #[error("application {case_id} is {current}; it cannot be {attempted}")]
    IllegalTransition {
        /// The application.
        case_id: CaseId,
        /// Where it stands.
        current: Status,
        /// What was attempted.
        attempted: Step,
    },
    /// Submitting with an id that is taken.
    #[error("application {0} already exists")]
    CaseAlreadyExists(CaseId),
    /// No such application.
    #[error("application {0} does not exist")]
    CaseNotFound(CaseId),
    /// The service is not in the catalogue.
    #[error("service `{0}` is not in the catalogue")]
    ServiceNotFound(ServiceCode),
    /// The service was withdrawn: no new applications.
    #[error("service `{0}` has been withdrawn and takes no new applications")]
    ServiceWithdrawn(ServiceCode),
    /// Concurrent changes kept conflicting.
    #[error("stream `{stream}` kept changing; gave up after {attempts} attempts")]
    Conflict {
        /// The stream.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The event store or a read model failed.
    #[error("storage failed: {0}")]
    Store(String),
    /// The applicant's data is erased: nothing new of theirs can be
    /// sealed (their key is gone).
    #[error("the applicant's personal data is erased; their applications can no longer change")]
    ApplicantErased,
    /// Sealing or opening a form with the key vault failed.
    #[error("the key vault failed: {0}")]
    Vault(String),
    /// Another domain (catalogue, health code) failed.
    #[error("{domain} failed: {message}")]
    Upstream {
        /// Which domain.
        domain: &'static str,
        /// What it said.
        message: String,
    },
}

impl CaseError {
    /// The GraphQL `extensions.code` this error becomes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. }
            | Self::FormInvalid { .. }
            | Self::UnknownRegion(_)
            | Self::NotOfferedInRegion { .. }
            | Self::ReasonsRequired { .. }
            | Self::WrongApplicant { .. } => "INVALID_INPUT",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::CaseNotFound(_) | Self::ServiceNotFound(_) => "NOT_FOUND",
            Self::IllegalTransition { .. }
            | Self::CaseAlreadyExists(_)
            | Self::ServiceWithdrawn(_)
            | Self::ApplicantErased
            | Self::Conflict { .. } => "CONFLICT",
            Self::Store(_) | Self::Vault(_) | Self::Upstream { .. } => "INTERNAL",
        }
    }
}

impl From<tongban_projection::ProjectionError> for CaseError {
    fn from(e: tongban_projection::ProjectionError) -> Self {
        Self::Store(e.to_string())
    }
}
