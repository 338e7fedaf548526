//! The application aggregate: a generic workflow for any catalogued service.
//!
//! ```text
//! submitted --accept--> under review --approve--> approved
//!     |                   |    ^   \--reject---> rejected
//!     |   request more    v    | supplement
//!     +---information--> awaiting information
//! submitted / under review / awaiting information --withdraw--> withdrawn
//!                                                 --reject----> rejected
//! ```
//!
//! `decide` checks who acts, then whether the step follows from the
//! current state, then the input; `evolve` folds and never validates.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tongban_catalog::{DepartmentCode, ServiceCode, ServiceState, ServiceStatus};
use tongban_kernel::{ActorId, DivisionCode, Divisions, PersonId};

use crate::commands::CaseCommand;
use crate::error::CaseError;
use crate::events::CaseEvent;
use crate::standard;
use crate::types::{Applicant, CaseId, Principal};

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Submitted, waiting for an official.
    Submitted,
    /// An official is reviewing it.
    UnderReview,
    /// Waiting for the applicant to supply more information.
    AwaitingInformation,
    /// Approved (final).
    Approved,
    /// Rejected (final).
    Rejected,
    /// Withdrawn by the applicant (final).
    Withdrawn,
}

impl Status {
    /// Whether the application still waits for someone.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::Submitted | Self::UnderReview | Self::AwaitingInformation
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Submitted => "submitted",
            Self::UnderReview => "under review",
            Self::AwaitingInformation => "awaiting more information",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Withdrawn => "withdrawn",
        })
    }
}

/// A step of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Submit.
    Submit,
    /// Accept for review.
    Accept,
    /// Ask for more information.
    RequestMoreInformation,
    /// Supply more information.
    Supplement,
    /// Approve.
    Approve,
    /// Reject.
    Reject,
    /// Withdraw.
    Withdraw,
    /// Record the residence change's outcome.
    RecordResidenceOutcome,
    /// Record that an official opened it.
    RecordAccess,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Submit => "submitted",
            Self::Accept => "accepted",
            Self::RequestMoreInformation => "asked for more information",
            Self::Supplement => "supplemented",
            Self::Approve => "approved",
            Self::Reject => "rejected",
            Self::Withdraw => "withdrawn",
            Self::RecordResidenceOutcome => "given a residence-change outcome",
            Self::RecordAccess => "opened",
        })
    }
}

impl CaseCommand {
    /// The workflow step this command attempts.
    pub fn step(&self) -> Step {
        match self {
            Self::Submit { .. } => Step::Submit,
            Self::Accept => Step::Accept,
            Self::RequestMoreInformation { .. } => Step::RequestMoreInformation,
            Self::Supplement { .. } => Step::Supplement,
            Self::Approve { .. } => Step::Approve,
            Self::Reject { .. } => Step::Reject,
            Self::Withdraw { .. } => Step::Withdraw,
            Self::RecordResidenceOutcome { .. } => Step::RecordResidenceOutcome,
            Self::RecordAccess { .. } => Step::RecordAccess,
        }
    }
}

/// An approved residence change and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidenceChange {
    /// The person.
    pub person_id: PersonId,
    /// The new community.
    pub to: DivisionCode,
    /// `None` while the health-code domain has not answered; `Some(true)`
    /// once applied, `Some(false)` if refused.
    pub applied: Option<bool>,
}

/// The folded state of a `case-<id>` stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseState {
    /// The application, once submitted.
    pub case_id: Option<CaseId>,
    /// The service.
    pub service: Option<ServiceCode>,
    /// The handling department.
    pub department: Option<DepartmentCode>,
    /// Where the applicant applied.
    pub region: Option<DivisionCode>,
    /// Who applied.
    pub applicant: Option<Applicant>,
    /// The form as it now is.
    pub form: Value,
    /// Where it stands.
    pub status: Option<Status>,
    /// When a decision is due.
    pub due_at: Option<OffsetDateTime>,
    /// Since when it waits for the applicant.
    pub awaiting_since: Option<OffsetDateTime>,
    /// An approved residence change, for the process manager.
    pub residence_change: Option<ResidenceChange>,
}

impl CaseState {
    /// Folds one event. Never validates.
    pub fn evolve(mut self, event: &CaseEvent) -> Self {
        match event {
            CaseEvent::ApplicationSubmitted {
                case_id,
                service,
                department,
                region,
                applicant,
                form,
                due_at,
                ..
            } => {
                self.case_id = Some(*case_id);
                self.service = Some(service.clone());
                self.department = Some(department.clone());
                self.region = Some(*region);
                self.applicant = Some(*applicant);
                self.form = form.clone();
                self.status = Some(Status::Submitted);
                self.due_at = Some(*due_at);
            }
            CaseEvent::ApplicationAccepted { .. } => self.status = Some(Status::UnderReview),
            CaseEvent::MoreInformationRequested { at, .. } => {
                self.status = Some(Status::AwaitingInformation);
                self.awaiting_since = Some(*at);
            }
            CaseEvent::ApplicationSupplemented { form, due_at, .. } => {
                self.form = form.clone();
                self.due_at = Some(*due_at);
                self.awaiting_since = None;
                self.status = Some(Status::UnderReview);
            }
            CaseEvent::ApplicationApproved { .. } => self.status = Some(Status::Approved),
            CaseEvent::ApplicationRejected { .. } => self.status = Some(Status::Rejected),
            CaseEvent::ApplicationWithdrawn { .. } => self.status = Some(Status::Withdrawn),
            CaseEvent::ResidenceChangeApproved { person_id, to, .. } => {
                self.residence_change = Some(ResidenceChange {
                    person_id: *person_id,
                    to: *to,
                    applied: None,
                });
            }
            CaseEvent::ResidenceChangeApplied { .. } => {
                if let Some(change) = &mut self.residence_change {
                    change.applied = Some(true);
                }
            }
            CaseEvent::ResidenceChangeFailed { .. } => {
                if let Some(change) = &mut self.residence_change {
                    change.applied = Some(false);
                }
            }
            CaseEvent::ApplicationOpened { .. } => {}
        }
        self
    }
}

/// What a decision may look at besides the stream.
#[derive(Debug, Clone, Copy)]
pub struct CaseContext<'a> {
    /// Who acts.
    pub principal: &'a Principal,
    /// The decision's now.
    pub now: OffsetDateTime,
    /// The real division codes.
    pub divisions: &'a Divisions,
    /// The catalogued service the application is (or would be) for.
    pub service: Option<&'a ServiceState>,
}

fn reasons_given(step: Step, reasons: &[String]) -> Result<Vec<String>, CaseError> {
    let kept: Vec<String> = reasons
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    if kept.is_empty() {
        Err(CaseError::ReasonsRequired { step })
    } else {
        Ok(kept)
    }
}

fn submit(
    state: &CaseState,
    case_id: CaseId,
    code: &ServiceCode,
    region: &DivisionCode,
    form: &Value,
    ctx: &CaseContext<'_>,
) -> Result<Vec<CaseEvent>, CaseError> {
    let applicant = ctx.principal.as_applicant().ok_or_else(|| {
        CaseError::Forbidden(format!(
            "a {} cannot apply for services; persons and enterprises apply",
            ctx.principal.capacity()
        ))
    })?;
    if state.case_id.is_some() {
        return Err(CaseError::CaseAlreadyExists(case_id));
    }
    let service = ctx
        .service
        .ok_or_else(|| CaseError::ServiceNotFound(code.clone()))?;
    let definition = match (service.status, service.definition.as_ref()) {
        (Some(ServiceStatus::Published), Some(d)) => d,
        (Some(ServiceStatus::Withdrawn), _) => {
            return Err(CaseError::ServiceWithdrawn(code.clone()))
        }
        _ => return Err(CaseError::ServiceNotFound(code.clone())),
    };
    ctx.divisions
        .check(region)
        .map_err(CaseError::UnknownRegion)?;
    if !definition.is_offered_in(region) {
        return Err(CaseError::NotOfferedInRegion {
            service: code.clone(),
            region: region.to_string(),
            eligible: definition
                .eligible_regions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    standard::check_applicant(code, &applicant)?;
    check_form(
        code,
        definition.form_schema.validate(form),
        form,
        ctx.divisions,
    )?;
    let days = i64::from(definition.processing_days);
    Ok(vec![CaseEvent::ApplicationSubmitted {
        case_id,
        service: code.clone(),
        service_version: service.version,
        department: definition.department.clone(),
        region: *region,
        applicant,
        form: form.clone(),
        due_at: ctx.now + Duration::days(days),
        at: ctx.now,
    }])
}

fn check_form(
    code: &ServiceCode,
    schema_result: Result<(), Vec<tongban_catalog::FieldViolation>>,
    form: &Value,
    divisions: &Divisions,
) -> Result<(), CaseError> {
    let mut violations = schema_result.err().unwrap_or_default();
    if violations.is_empty() {
        violations.extend(standard::check_form(code, form, divisions));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(CaseError::FormInvalid {
            service: code.clone(),
            violations,
        })
    }
}

fn official_of_case(
    state: &CaseState,
    ctx: &CaseContext<'_>,
    step: Step,
) -> Result<ActorId, CaseError> {
    let (Some(department), Some(region)) = (&state.department, &state.region) else {
        return Err(CaseError::Forbidden(
            "the application has no department".into(),
        ));
    };
    if ctx.principal.is_official_for(department, region) {
        Ok(ctx.principal.actor())
    } else {
        Err(CaseError::Forbidden(format!(
            "only an official of department `{department}` with authority over {region} may mark this application {step}; you act as a {}",
            ctx.principal.capacity()
        )))
    }
}

fn applicant_of_case(
    state: &CaseState,
    ctx: &CaseContext<'_>,
    step: Step,
) -> Result<(), CaseError> {
    if ctx.principal.as_applicant().is_some() && ctx.principal.as_applicant() == state.applicant {
        Ok(())
    } else {
        Err(CaseError::Forbidden(format!(
            "only the applicant may have this application {step}"
        )))
    }
}

/// Decides a command on one application.
pub fn decide(
    state: &CaseState,
    command: &CaseCommand,
    ctx: &CaseContext<'_>,
) -> Result<Vec<CaseEvent>, CaseError> {
    if let CaseCommand::Submit {
        case_id,
        service,
        region,
        form,
    } = command
    {
        return submit(state, *case_id, service, region, form, ctx);
    }
    let (Some(case_id), Some(status)) = (state.case_id, state.status) else {
        return Err(CaseError::CaseNotFound(CaseId::from_u128(0)));
    };
    let step = command.step();
    let illegal = || CaseError::IllegalTransition {
        case_id,
        current: status,
        attempted: step,
    };
    let now = ctx.now;
    match command {
        CaseCommand::Submit { .. } => Err(CaseError::CaseAlreadyExists(case_id)),
        CaseCommand::Accept => {
            let official = official_of_case(state, ctx, step)?;
            if status != Status::Submitted {
                return Err(illegal());
            }
            Ok(vec![CaseEvent::ApplicationAccepted {
                case_id,
                official,
                at: now,
            }])
        }
        CaseCommand::RequestMoreInformation { requested } => {
            let official = official_of_case(state, ctx, step)?;
            if !matches!(status, Status::Submitted | Status::UnderReview) {
                return Err(illegal());
            }
            if requested.trim().is_empty() {
                return Err(CaseError::InvalidInput {
                    field: "requested",
                    rule: "say what information the applicant must supply".into(),
                });
            }
            Ok(vec![CaseEvent::MoreInformationRequested {
                case_id,
                official,
                requested: requested.trim().to_owned(),
                at: now,
            }])
        }
        CaseCommand::Supplement { form, note } => {
            applicant_of_case(state, ctx, step)?;
            if status != Status::AwaitingInformation {
                return Err(illegal());
            }
            let code = state.service.clone().ok_or_else(illegal)?;
            let definition = ctx
                .service
                .and_then(|s| s.definition.as_ref())
                .ok_or_else(|| CaseError::ServiceNotFound(code.clone()))?;
            check_form(
                &code,
                definition.form_schema.validate(form),
                form,
                ctx.divisions,
            )?;
            let waited = state
                .awaiting_since
                .map_or(Duration::ZERO, |since| now - since);
            let due_at = state.due_at.unwrap_or(now) + waited.max(Duration::ZERO);
            Ok(vec![CaseEvent::ApplicationSupplemented {
                case_id,
                form: form.clone(),
                note: note.trim().to_owned(),
                due_at,
                at: now,
            }])
        }
        CaseCommand::Approve { reasons } => {
            let official = official_of_case(state, ctx, step)?;
            if status != Status::UnderReview {
                return Err(illegal());
            }
            let reasons = reasons_given(step, reasons)?;
            let mut events = vec![CaseEvent::ApplicationApproved {
                case_id,
                official,
                reasons,
                at: now,
            }];
            events.extend(standard::on_approval(state, case_id, ctx.divisions, now)?);
            Ok(events)
        }
        CaseCommand::Reject { reasons } => {
            let official = official_of_case(state, ctx, step)?;
            if !status.is_open() {
                return Err(illegal());
            }
            let reasons = reasons_given(step, reasons)?;
            Ok(vec![CaseEvent::ApplicationRejected {
                case_id,
                official,
                reasons,
                at: now,
            }])
        }
        CaseCommand::Withdraw { reason } => {
            applicant_of_case(state, ctx, step)?;
            if !status.is_open() {
                return Err(illegal());
            }
            Ok(vec![CaseEvent::ApplicationWithdrawn {
                case_id,
                reason: reason.trim().to_owned(),
                at: now,
            }])
        }
        CaseCommand::RecordAccess { purpose, fields } => {
            // Auditors (and admins, who read as auditors) are recorded too:
            // the applicant sees every reader of their form.
            let (official, department) = match &ctx.principal {
                Principal::Auditor { actor } => (*actor, "audit".to_owned()),
                _ => (
                    official_of_case(state, ctx, step)?,
                    state
                        .department
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
            };
            if purpose.trim().is_empty() {
                return Err(CaseError::InvalidInput {
                    field: "purpose",
                    rule: "opening someone's application needs a purpose".into(),
                });
            }
            Ok(vec![CaseEvent::ApplicationOpened {
                case_id,
                official,
                department,
                purpose: purpose.trim().to_owned(),
                fields: fields.clone(),
                at: now,
            }])
        }
        CaseCommand::RecordResidenceOutcome { outcome } => {
            if !matches!(ctx.principal, Principal::System { .. }) {
                return Err(CaseError::Forbidden(
                    "only the hub's residence process records residence-change outcomes".into(),
                ));
            }
            let Some(change) = state.residence_change else {
                return Err(illegal());
            };
            if change.applied.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![match outcome {
                Ok(()) => CaseEvent::ResidenceChangeApplied {
                    case_id,
                    person_id: change.person_id,
                    to: change.to,
                    at: now,
                },
                Err(reason) => CaseEvent::ResidenceChangeFailed {
                    case_id,
                    person_id: change.person_id,
                    reason: reason.clone(),
                    at: now,
                },
            }])
        }
    }
}
