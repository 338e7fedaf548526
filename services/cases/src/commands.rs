//! What applicants, officials and the hub ask of an application.

use serde_json::Value;
use tongban_catalog::ServiceCode;
use tongban_kernel::DivisionCode;

use crate::types::CaseId;

/// Commands on one application (stream `case-<id>`).
#[derive(Debug, Clone, PartialEq)]
pub enum CaseCommand {
    /// An applicant applies for a catalogued service.
    Submit {
        /// The new application's id.
        case_id: CaseId,
        /// The service.
        service: ServiceCode,
        /// Where the applicant applies (decides the handling office).
        region: DivisionCode,
        /// The form, checked against the service's JSON Schema.
        form: Value,
    },
    /// An official takes the application up for review.
    Accept,
    /// An official asks the applicant for more information.
    RequestMoreInformation {
        /// What is needed, in words.
        requested: String,
    },
    /// The applicant answers with a corrected, complete form.
    Supplement {
        /// The whole form again, checked against the schema.
        form: Value,
        /// What changed.
        note: String,
    },
    /// An official approves, with reasons.
    Approve {
        /// Why.
        reasons: Vec<String>,
    },
    /// An official rejects, with reasons.
    Reject {
        /// Why.
        reasons: Vec<String>,
    },
    /// The applicant withdraws.
    Withdraw {
        /// Why (may be blank).
        reason: String,
    },
    /// An official records that they opened the application, with why and
    /// which fields (the applicant can see it).
    RecordAccess {
        /// Why they opened it.
        purpose: String,
        /// The fields returned to them.
        fields: Vec<String>,
    },
    /// The residence process manager records what the health-code domain did
    /// with an approved change of residence community.
    RecordResidenceOutcome {
        /// `Ok` if the change was applied, `Err` with the reason otherwise.
        outcome: Result<(), String>,
    },
}
