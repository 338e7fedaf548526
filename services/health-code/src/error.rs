//! The domain's errors: one variant per business rule, each naming the field
//! and the rule so a person can act on it.
//!
//! At the edge each variant maps to a stable GB/T 38963 return code (see
//! [`crate::operations::ReturnCode`]) and a GraphQL `extensions.code`:
//! `INVALID_INPUT`, `NOT_FOUND`, `FORBIDDEN`, `CONFLICT`, `UNAUTHENTICATED`
//! (bad tokens) or `INTERNAL`.

use thiserror::Error;
use time::OffsetDateTime;
use tongban_kernel::{DivisionError, PersonId};

/// Errors of the health-code domain.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum HealthCodeError {
    /// A field breaks a rule (`INVALID_INPUT`).
    #[error("invalid `{field}`: {rule}")]
    InvalidInput {
        /// The field, as the caller named it.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// A division code is malformed or not in the reference data (`INVALID_INPUT`).
    #[error("invalid `{field}`: {source}")]
    Division {
        /// The field.
        field: &'static str,
        /// What is wrong with the code.
        source: DivisionError,
    },
    /// A temperature outside 30–45 °C (`INVALID_INPUT`).
    #[error("invalid `{field}`: {value} °C is outside 30–45 °C")]
    TemperatureOutOfRange {
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A business time later than now plus the tolerance (`INVALID_INPUT`).
    #[error("invalid `{field}`: {at} is in the future (now {now})")]
    FutureTime {
        /// The field.
        field: &'static str,
        /// The rejected time.
        at: OffsetDateTime,
        /// The decision's now.
        now: OffsetDateTime,
    },
    /// The actor may not do this (`FORBIDDEN`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such person (`NOT_FOUND`).
    #[error("person {0} is not registered")]
    PersonNotFound(PersonId),
    /// Registering twice (`CONFLICT`).
    #[error("person {0} is already registered")]
    PersonAlreadyRegistered(PersonId),
    /// The person's personal data was erased (`NOT_FOUND`).
    #[error("personal data of person {0} has been erased")]
    PersonErased(PersonId),
    /// No such checkpoint (`NOT_FOUND`).
    #[error("checkpoint {0} is not registered")]
    CheckpointNotFound(String),
    /// Registering a checkpoint twice (`CONFLICT`).
    #[error("checkpoint {0} is already registered")]
    CheckpointAlreadyRegistered(String),
    /// A policy (regional rules or a checkpoint admission policy) does not parse (`INVALID_INPUT`).
    #[error("invalid policy `{field}`: {message}")]
    PolicyInvalid {
        /// Where in the policy.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A code token has expired (`UNAUTHENTICATED`).
    #[error("code token expired at {expired_at}")]
    TokenExpired {
        /// When it expired.
        expired_at: OffsetDateTime,
    },
    /// A code token's signature does not verify (`UNAUTHENTICATED`).
    #[error("code token signature is not valid (forged or altered)")]
    TokenForged,
    /// A code token names a key nobody published (`UNAUTHENTICATED`).
    #[error("code token is signed by unknown key `{0}`")]
    TokenUnknownKey(String),
    /// The holder's colour changed after the code was issued: the code is
    /// void and a fresh one must be shown (`UNAUTHENTICATED`, verdict
    /// reason `CODE_SUPERSEDED`).
    #[error("code {code_id} was issued before the holder's colour changed to {colour}; it is void: ask for a fresh code")]
    CodeSuperseded {
        /// The void code.
        code_id: uuid::Uuid,
        /// The holder's colour now.
        colour: crate::types::Colour,
    },
    /// A code token is not a well-formed COSE_Sign1 health-code token (`INVALID_INPUT`).
    #[error("code token is malformed: {0}")]
    TokenMalformed(String),
    /// No such appeal (`NOT_FOUND`).
    #[error("appeal {0} not found")]
    AppealNotFound(String),
    /// The appeal was already decided (`CONFLICT`).
    #[error("appeal {0} has already been decided")]
    AppealAlreadyDecided(String),
    /// No such override request, or it is no longer pending (`NOT_FOUND`/`CONFLICT`).
    #[error("override {0} is not pending approval")]
    OverrideNotPending(String),
    /// A second approval must come from a different official (`FORBIDDEN`).
    #[error("the second approval of override {0} must come from a different official")]
    SameOfficialApproval(String),
    /// The region demands a recent declaration before a code is generated (`CONFLICT`).
    #[error("region {region} requires a health declaration within {hours} hours before a code is generated")]
    DeclarationRequired {
        /// The region.
        region: String,
        /// The maximum age of a declaration.
        hours: u32,
    },
    /// An optimistic-concurrency conflict persisted after retries (`CONFLICT`).
    #[error("concurrent change of stream {stream}; retried {attempts} times")]
    Conflict {
        /// The stream.
        stream: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The facts every replica derives from the log did not reach the
    /// position a command depends on in time (`TIMEOUT`): the command
    /// changed nothing; try again.
    #[error("the health-code views did not reach log position {position} within {waited_ms} ms (applied: {applied:?}); nothing was changed, try again")]
    Timeout {
        /// The position waited for (the log head when the command started).
        position: u64,
        /// The position the views had applied.
        applied: Option<u64>,
        /// How long the command waited.
        waited_ms: u128,
    },
    /// The event store failed (`INTERNAL`).
    #[error("event store: {0}")]
    Store(String),
    /// The key vault failed (`INTERNAL`).
    #[error("key vault: {0}")]
    Vault(String),
}

impl HealthCodeError {
    /// A division error for `field`.
    pub fn division(field: &'static str, source: DivisionError) -> Self {
        Self::Division { field, source }
    }

    /// The stable reason a code check states for this error (a verdict's
    /// `reasonCode`): `CODE_SUPERSEDED`, `CODE_EXPIRED`, `CODE_FORGED`,
    /// `CODE_UNKNOWN_KEY`, `CODE_MALFORMED`; else the `extensions.code`.
    pub fn verdict_code(&self) -> &'static str {
        match self {
            Self::CodeSuperseded { .. } => "CODE_SUPERSEDED",
            Self::TokenExpired { .. } => "CODE_EXPIRED",
            Self::TokenForged => "CODE_FORGED",
            Self::TokenUnknownKey(_) => "CODE_UNKNOWN_KEY",
            Self::TokenMalformed(_) => "CODE_MALFORMED",
            other => other.extension_code(),
        }
    }

    /// The GraphQL `extensions.code` this error becomes.
    pub fn extension_code(&self) -> &'static str {
        use HealthCodeError::*;
        match self {
            InvalidInput { .. }
            | Division { .. }
            | TemperatureOutOfRange { .. }
            | FutureTime { .. }
            | PolicyInvalid { .. }
            | TokenMalformed(_) => "INVALID_INPUT",
            Forbidden(_) | SameOfficialApproval(_) => "FORBIDDEN",
            PersonNotFound(_) | PersonErased(_) | CheckpointNotFound(_) | AppealNotFound(_) => {
                "NOT_FOUND"
            }
            PersonAlreadyRegistered(_)
            | CheckpointAlreadyRegistered(_)
            | AppealAlreadyDecided(_)
            | OverrideNotPending(_)
            | DeclarationRequired { .. }
            | Conflict { .. } => "CONFLICT",
            TokenExpired { .. } | TokenForged | TokenUnknownKey(_) | CodeSuperseded { .. } => {
                "UNAUTHENTICATED"
            }
            Timeout { .. } => "TIMEOUT",
            Store(_) | Vault(_) => "INTERNAL",
        }
    }
}
