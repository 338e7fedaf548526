//! Tongban's applications: one generic workflow for any catalogued service,
//! the three concrete services built on it, the residence process manager
//! and the inbox.
//!
//! A tour:
//! - [`types`]: [`CaseId`], [`EnterpriseId`], [`Applicant`] and
//!   [`Principal`] (who acts, in which capacity: person, enterprise,
//!   department official with a region, auditor, the hub itself).
//! - [`commands`], [`events`]: `Submit`, `Accept`, `RequestMoreInformation`,
//!   `Supplement`, `Approve`, `Reject`, `Withdraw`; `ApplicationSubmitted.v1`
//!   and the other facts, plus [`events::CaseMetadata`].
//! - [`case`]: the application aggregate, pure `decide`/`evolve`: who may
//!   take which step, which steps follow from which status
//!   ([`CaseError::IllegalTransition`] names both), forms checked against
//!   the service's JSON Schema, due dates that pause while the applicant is
//!   asked for more information.
//! - [`standard`]: the three concrete services (work-resumption permit,
//!   elderly-care subsidy, change of residence community): catalogue entries
//!   with their schemas and their own rules.
//! - [`handler`]: [`CasesService`]: load `case-<id>`, read the service from
//!   the catalogue, decide, append with the expected revision, retry.
//! - [`residence`]: the process manager that turns an approved residence
//!   change into the health-code domain's own `ChangeResidence` command.
//! - [`green_share`]: the [`GreenShare`] port (counts only) the
//!   work-resumption review reads.
//! - [`projections`]: the `cases` read model and [`CaseQueries`] (my
//!   applications, officials' queues, the work-resumption review), each
//!   query authorised by the principal.
//! - [`inbox`]: per-person notifications (colour changes, appeal outcomes,
//!   application status) with unread counts and mark-as-read.
//! - [`sealed_form`]: forms sealed with the applicant's data key in the
//!   log and the read model (the health-code domain's key vault), opened
//!   for authorised readers, unreadable after erasure.
//! - [`error`]: [`CaseError`], one variant per rule.
//! - [`graphql`]: the GraphQL module the gateway merges in (applications,
//!   officials' queues, the work-resumption review, the inbox and its live
//!   updates).

pub mod case;
pub mod commands;
pub mod error;
pub mod events;
pub mod graphql;
pub mod green_share;
pub mod handler;
pub mod inbox;
pub mod projections;
pub mod residence;
pub mod sealed_form;
pub mod standard;
pub mod types;

pub use case::{CaseState, Status, Step};
pub use commands::CaseCommand;
pub use error::CaseError;
pub use events::CaseEvent;
pub use green_share::{EmployeeRoster, GreenShare, HeadCount, HealthCodeGreenShare};
pub use handler::CasesService;
pub use inbox::{InboxQueries, InboxService, InboxViews, Notification};
pub use projections::{CaseQueries, CaseView, CasesViews, WorkResumptionReview};
pub use residence::{ResidenceProcess, ResidenceRegistry};
pub use types::{Applicant, CaseId, EnterpriseId, Principal};
