//! The catalogue's errors: one variant per rule, each naming what to fix.
//!
//! At the edge: `InvalidInput`, `InvalidSchema`, `UnknownRegion` and
//! `NoEligibleRegion` become `INVALID_INPUT`; `Forbidden` becomes
//! `FORBIDDEN`; `NotPublished` becomes `NOT_FOUND`; `AlreadyPublished`,
//! `Withdrawn` and `Conflict` become `CONFLICT`; `Store` is `INTERNAL`.

use thiserror::Error;
use tongban_kernel::DivisionError;

use crate::types::{DepartmentCode, ServiceCode};

/// Errors of the service catalogue.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CatalogError {
    /// A field breaks a rule.
    #[error("invalid `{field}`: {rule}")]
    InvalidInput {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// The application form's JSON Schema is not a valid JSON Schema.
    #[error("invalid `form_schema` at `{path}`: {message}")]
    InvalidSchema {
        /// Where in the schema (JSON pointer).
        path: String,
        /// What the meta-schema says.
        message: String,
    },
    /// An eligible region is malformed or not a real division.
    #[error("invalid `eligible_regions`: {0}")]
    UnknownRegion(DivisionError),
    /// A service must be eligible somewhere.
    #[error("invalid `eligible_regions`: a service must be eligible in at least one region")]
    NoEligibleRegion,
    /// The actor may not publish or change this department's services.
    #[error("forbidden: a {role} may not change services of department `{department}`; only that department or an admin may")]
    Forbidden {
        /// The actor's role.
        role: &'static str,
        /// The department that owns the service.
        department: DepartmentCode,
    },
    /// Publishing a code that is already in the catalogue.
    #[error("service `{0}` is already published; update it instead")]
    AlreadyPublished(ServiceCode),
    /// Updating or withdrawing a code that was never published.
    #[error("service `{0}` is not in the catalogue")]
    NotPublished(ServiceCode),
    /// Changing a withdrawn service.
    #[error("service `{0}` has been withdrawn and can no longer be changed or applied for")]
    Withdrawn(ServiceCode),
    /// A service cannot move to another department by an update.
    #[error("service `{code}` belongs to department `{owner}`; it cannot be moved to `{requested}` by an update")]
    DepartmentChanged {
        /// The service.
        code: ServiceCode,
        /// Its department.
        owner: DepartmentCode,
        /// The department the update names.
        requested: DepartmentCode,
    },
    /// Concurrent changes kept conflicting.
    #[error("stream `{stream}` kept changing; gave up after {attempts} attempts")]
    Conflict {
        /// The stream.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The event store or read model failed.
    #[error("storage failed: {0}")]
    Store(String),
}

impl CatalogError {
    /// The GraphQL `extensions.code` this error becomes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. }
            | Self::InvalidSchema { .. }
            | Self::UnknownRegion(_)
            | Self::NoEligibleRegion => "INVALID_INPUT",
            Self::Forbidden { .. } => "FORBIDDEN",
            Self::NotPublished(_) => "NOT_FOUND",
            Self::AlreadyPublished(_)
            | Self::Withdrawn(_)
            | Self::DepartmentChanged { .. }
            | Self::Conflict { .. } => "CONFLICT",
            Self::Store(_) => "INTERNAL",
        }
    }
}
