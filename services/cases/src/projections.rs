//! The `cases` read model: every application with its full status history,
//! found by applicant ("my applications") and by department (officials'
//! queues, narrowed to the official's region). Every query takes the
//! [`Principal`] and answers only what it may see.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tongban_kernel::DivisionCode;
use tongban_projection::{ApplyError, ChangeDraft, Changes, Projection, ReadModels, Table};
use tongban_store::{EventFilter, RecordedEvent};

use crate::case::{Status, Step};
use crate::error::CaseError;
use crate::events::CaseEvent;
use crate::green_share::{GreenShare, HeadCount};
use crate::standard::WORK_RESUMPTION;
use crate::types::{Applicant, CaseId, Principal};

/// The projection's name (its read-model namespace and feed).
pub const CASES: &str = "cases";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// One entry of an application's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The step taken.
    pub step: Step,
    /// The status after it.
    pub status: Status,
    /// The acting official, if an official acted.
    pub official: Option<String>,
    /// Reasons, requested information or notes.
    pub reasons: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// An official's look at an application, as its applicant sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// The official's account.
    pub official: String,
    /// Their department.
    pub department: String,
    /// Why they looked.
    pub purpose: String,
    /// The fields returned to them.
    pub fields: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// An application as the portal and the officials' queue show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseView {
    /// The application.
    pub case_id: String,
    /// The service's code.
    pub service: String,
    /// The handling department.
    pub department: String,
    /// Where the applicant applied.
    pub region: String,
    /// Who applied.
    pub applicant: Applicant,
    /// The form as it now is, sealed with the applicant's key (forms
    /// from before sealing are in clear); open it with
    /// [`crate::sealed_form::open`].
    pub form: Value,
    /// Where it stands.
    pub status: Status,
    /// Submitted (RFC 3339).
    pub submitted_at: String,
    /// When a decision is due (RFC 3339).
    pub due_at: String,
    /// Every step, oldest first.
    pub history: Vec<HistoryEntry>,
    /// For a residence change: `approved`, `applied` or `failed: <reason>`.
    pub residence_change: Option<String>,
    /// Every time an official opened it, oldest first.
    #[serde(default)]
    pub access_log: Vec<AccessEntry>,
}

impl CaseView {
    /// Whether the decision is late at `now`.
    pub fn is_overdue(&self, now: OffsetDateTime) -> bool {
        self.status.is_open()
            && OffsetDateTime::parse(&self.due_at, &Rfc3339).is_ok_and(|due| now > due)
    }

    fn region_code(&self) -> Option<DivisionCode> {
        DivisionCode::parse(&self.region).ok()
    }

    /// Whether `principal` may see this application: its applicant, an
    /// official of its department with authority over its region, or an
    /// auditor.
    pub fn is_visible_to(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Person { .. } | Principal::Enterprise { .. } => {
                principal.as_applicant() == Some(self.applicant)
            }
            Principal::Official {
                department, region, ..
            } => {
                department.as_str() == self.department
                    && self.region_code().is_some_and(|r| region.contains(&r))
            }
            Principal::Auditor { .. } | Principal::System { .. } => true,
        }
    }
}

/// What an application-status change record in the feed carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseStatusChange {
    /// The application.
    pub case_id: String,
    /// Applicant key (`person-<id>` or `enterprise-<id>`).
    pub applicant: String,
    /// Handling department.
    pub department: String,
    /// The new status.
    pub status: Status,
}

/// The projection.
#[derive(Clone)]
pub struct CasesViews {
    /// case id -> application, indexed by applicant key and by department.
    pub cases: Table<String, CaseView>,
}

impl Default for CasesViews {
    fn default() -> Self {
        Self {
            cases: Table::new("cases")
                .with_index("by_applicant", |c: &CaseView| vec![c.applicant.key()])
                .with_index("by_department", |c: &CaseView| vec![c.department.clone()]),
        }
    }
}

fn entry(
    step: Step,
    status: Status,
    official: Option<String>,
    reasons: Vec<String>,
    at: OffsetDateTime,
) -> HistoryEntry {
    HistoryEntry {
        step,
        status,
        official,
        reasons,
        at: rfc3339(at),
    }
}

#[async_trait]
impl Projection for CasesViews {
    fn name(&self) -> &str {
        CASES
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> EventFilter {
        EventFilter::streams([format!("{}-", crate::handler::CATEGORY)])
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        for recorded in events {
            let event: CaseEvent = recorded.json().map_err(|e| ApplyError::at(recorded, e))?;
            let key = event.case_id().to_string();
            let view = if let CaseEvent::ApplicationSubmitted {
                case_id,
                service,
                department,
                region,
                applicant,
                form,
                due_at,
                at,
                ..
            } = &event
            {
                Some(CaseView {
                    case_id: case_id.to_string(),
                    service: service.to_string(),
                    department: department.to_string(),
                    region: region.to_string(),
                    applicant: *applicant,
                    form: form.clone(),
                    status: Status::Submitted,
                    submitted_at: rfc3339(*at),
                    due_at: rfc3339(*due_at),
                    history: vec![entry(Step::Submit, Status::Submitted, None, vec![], *at)],
                    residence_change: None,
                    access_log: Vec::new(),
                })
            } else {
                changes.get(&self.cases, &key).await?
            };
            let Some(mut view) = view else {
                return Err(ApplyError::at(
                    recorded,
                    "an event of an application never submitted",
                ));
            };
            let before = view.status;
            match event {
                CaseEvent::ApplicationSubmitted { .. } => {}
                CaseEvent::ApplicationAccepted { official, at, .. } => {
                    view.status = Status::UnderReview;
                    view.history.push(entry(
                        Step::Accept,
                        view.status,
                        Some(official.to_string()),
                        vec![],
                        at,
                    ));
                }
                CaseEvent::MoreInformationRequested {
                    official,
                    requested,
                    at,
                    ..
                } => {
                    view.status = Status::AwaitingInformation;
                    view.history.push(entry(
                        Step::RequestMoreInformation,
                        view.status,
                        Some(official.to_string()),
                        vec![requested],
                        at,
                    ));
                }
                CaseEvent::ApplicationSupplemented {
                    form,
                    note,
                    due_at,
                    at,
                    ..
                } => {
                    view.status = Status::UnderReview;
                    view.form = form;
                    view.due_at = rfc3339(due_at);
                    let notes = if note.is_empty() { vec![] } else { vec![note] };
                    view.history
                        .push(entry(Step::Supplement, view.status, None, notes, at));
                }
                CaseEvent::ApplicationApproved {
                    official,
                    reasons,
                    at,
                    ..
                } => {
                    view.status = Status::Approved;
                    view.history.push(entry(
                        Step::Approve,
                        view.status,
                        Some(official.to_string()),
                        reasons,
                        at,
                    ));
                }
                CaseEvent::ApplicationRejected {
                    official,
                    reasons,
                    at,
                    ..
                } => {
                    view.status = Status::Rejected;
                    view.history.push(entry(
                        Step::Reject,
                        view.status,
                        Some(official.to_string()),
                        reasons,
                        at,
                    ));
                }
                CaseEvent::ApplicationWithdrawn { reason, at, .. } => {
                    view.status = Status::Withdrawn;
                    let reasons = if reason.is_empty() {
                        vec![]
                    } else {
                        vec![reason]
                    };
                    view.history
                        .push(entry(Step::Withdraw, view.status, None, reasons, at));
                }
                CaseEvent::ResidenceChangeApproved { .. } => {
                    view.residence_change = Some("approved".into());
                }
                CaseEvent::ResidenceChangeApplied { .. } => {
                    view.residence_change = Some("applied".into());
                }
                CaseEvent::ResidenceChangeFailed { reason, .. } => {
                    view.residence_change = Some(format!("failed: {reason}"));
                }
                CaseEvent::ApplicationOpened {
                    official,
                    department,
                    purpose,
                    fields,
                    at,
                    ..
                } => view.access_log.push(AccessEntry {
                    official: official.to_string(),
                    department,
                    purpose,
                    fields,
                    at: rfc3339(at),
                }),
            }
            if recorded.event_type == crate::events::TYPE_NAMES[0] || view.status != before {
                let change = CaseStatusChange {
                    case_id: view.case_id.clone(),
                    applicant: view.applicant.key(),
                    department: view.department.clone(),
                    status: view.status,
                };
                let draft = ChangeDraft::new(
                    "case.status",
                    "case-status",
                    Some(view.region.clone()),
                    &change,
                )?;
                changes.publish(recorded, draft)?;
            }
            changes.put(&self.cases, &key, &view)?;
        }
        Ok(())
    }
}

/// What the official reviewing a work-resumption permit sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkResumptionReview {
    /// The application.
    pub case: CaseView,
    /// The enterprise's registered employees by colour: counts only.
    pub employees: HeadCount,
    /// Green share in percent, if it has employees.
    pub green_percent: Option<f64>,
}

/// Queries on the `cases` read model, each answering only what the
/// principal may see.
#[derive(Clone)]
pub struct CaseQueries {
    models: ReadModels,
    views: CasesViews,
}

impl CaseQueries {
    /// Queries over the projection's read models.
    pub fn new(models: ReadModels) -> Self {
        Self {
            models,
            views: CasesViews::default(),
        }
    }

    /// One application, if the principal may see it (`NOT_FOUND` otherwise,
    /// so outsiders cannot probe for ids; `FORBIDDEN` for an official of
    /// another department or region).
    pub async fn case(
        &self,
        principal: &Principal,
        case_id: CaseId,
    ) -> Result<CaseView, CaseError> {
        let view = self
            .models
            .get(&self.views.cases, &case_id.to_string())
            .await?
            .ok_or(CaseError::CaseNotFound(case_id))?;
        if view.is_visible_to(principal) {
            return Ok(view);
        }
        match principal {
            Principal::Official { .. } => Err(CaseError::Forbidden(format!(
                "application {case_id} belongs to department `{}` in {}, outside your authority",
                view.department, view.region
            ))),
            _ => Err(CaseError::CaseNotFound(case_id)),
        }
    }

    /// The principal's own applications, newest first.
    pub async fn my_applications(&self, principal: &Principal) -> Result<Vec<CaseView>, CaseError> {
        let applicant = principal.as_applicant().ok_or_else(|| {
            CaseError::Forbidden(format!(
                "a {} has no applications of its own",
                principal.capacity()
            ))
        })?;
        let mut rows: Vec<CaseView> = self
            .models
            .by_index_key(&self.views.cases, "by_applicant", &applicant.key())
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        rows.sort_by(|a, b| b.submitted_at.cmp(&a.submitted_at));
        Ok(rows)
    }

    /// An official's queue: open applications of their department in their
    /// region, soonest due first.
    pub async fn queue(&self, principal: &Principal) -> Result<Vec<CaseView>, CaseError> {
        let Principal::Official { department, .. } = principal else {
            return Err(CaseError::Forbidden(format!(
                "only officials have queues; you act as a {}",
                principal.capacity()
            )));
        };
        let mut rows: Vec<CaseView> = self
            .models
            .by_index_key(&self.views.cases, "by_department", &department.to_string())
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v.status.is_open() && v.is_visible_to(principal))
            .collect();
        rows.sort_by(|a, b| a.due_at.cmp(&b.due_at));
        Ok(rows)
    }

    /// The work-resumption review: the application and the share of the
    /// enterprise's employees holding a green code. Officials of the case
    /// only; the enterprise itself never gets the workforce view.
    pub async fn work_resumption_review(
        &self,
        principal: &Principal,
        case_id: CaseId,
        share: &dyn GreenShare,
    ) -> Result<WorkResumptionReview, CaseError> {
        if !matches!(principal, Principal::Official { .. }) {
            return Err(CaseError::Forbidden(
                "only the reviewing official sees the workforce's health-code counts".into(),
            ));
        }
        let case = self.case(principal, case_id).await?;
        let Applicant::Enterprise(enterprise) = case.applicant else {
            return Err(CaseError::InvalidInput {
                field: "case_id",
                rule: format!("application {case_id} is not an enterprise's application"),
            });
        };
        if case.service != WORK_RESUMPTION {
            return Err(CaseError::InvalidInput {
                field: "case_id",
                rule: format!(
                    "application {case_id} is for `{}`, not `{WORK_RESUMPTION}`",
                    case.service
                ),
            });
        }
        let employees = share.green_share(enterprise).await?;
        Ok(WorkResumptionReview {
            green_percent: employees.green_percent(),
            case,
            employees,
        })
    }
}
