//! The applications' and the inbox's GraphQL module, merged into the
//! gateway's schema.
//!
//! - Who acts: [`principal`] turns the gateway's kernel [`Actor`] into a
//!   [`Principal`]: a citizen acts as a person; an `enterprise` token acts
//!   as its enterprise (applies for its own permits, tracks them, never sees
//!   its employees' identities or even their counts); a `department` token acts as
//!   an official of that department with authority over the region the
//!   gateway put in the request as [`OfficialRegion`] (the token's `region`
//!   claim); auditors and admins read as auditors and change nothing.
//! - Queries: `myApplications`, `application` (with its status history;
//!   an official must give a `purpose` and the opening is recorded as
//!   `ApplicationOpened.v1`, which the applicant sees in `accessLog`),
//!   `applicationQueue` (the official's department and region),
//!   `workResumptionReview` (green-code counts only), `inbox`,
//!   `unreadCount`.
//! - Mutations: `submitApplication`, `acceptApplication`,
//!   `requestInformation`, `supplementApplication`, `approveApplication`,
//!   `rejectApplication`, `withdrawApplication`, `markInboxRead`.
//! - Subscription: `inboxUpdates`, the caller's own notifications from the
//!   `inbox` projection's feed.
//!
//! Mutations return the log `position`; queries take `minPosition`
//! (read your writes). Errors carry `extensions.code` from
//! [`CaseError::code`].

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{
    Context, Error, ErrorExtensions, Json, Object, Result, SimpleObject, Subscription, ID,
};
use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tongban_catalog::{DepartmentCode, ServiceCode};
use tongban_health_code::graphql::SharedStore;
use tongban_kernel::{Actor, DivisionCode, Divisions, PersonId, Role};
use tongban_projection::{FeedCursor, FeedScope, ProjectionError, ProjectionRunner};
use tongban_store::{EventStore, Position};

use crate::commands::CaseCommand;
use crate::error::CaseError;
use crate::green_share::{EmployeeRoster, GreenShare};
use crate::handler::CasesService;
use crate::inbox::{InboxQueries, InboxService, Notification, INBOX};
use crate::projections::{CaseQueries, CaseView, CASES};
use crate::types::{Applicant, CaseId, EnterpriseId, Principal};

/// The region of a department official's authority (the token's `region`
/// claim), put into the request's data by the gateway next to the
/// [`Actor`]: the kernel's department role carries only a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfficialRegion(pub DivisionCode);

/// Context data of the applications and inbox resolvers.
pub struct CasesApi {
    /// Application commands.
    pub service: Arc<CasesService<SharedStore>>,
    /// Mark-as-read.
    pub inbox: InboxService<SharedStore>,
    /// The work-resumption review's counts.
    pub green_share: Arc<dyn GreenShare>,
    /// The log (positions for read-your-writes).
    pub store: Arc<dyn EventStore>,
    /// The projections (`cases` and `inbox`).
    pub runner: Arc<ProjectionRunner>,
    /// Division codes.
    pub divisions: Arc<Divisions>,
    /// Longest wait for read models to reach a position.
    pub read_wait: Duration,
}

/// An employment registry that is not connected: the work-resumption
/// review says so instead of counting nobody.
#[derive(Debug, Default)]
pub struct NoEmploymentRegistry;

#[async_trait]
impl EmployeeRoster for NoEmploymentRegistry {
    async fn employees(&self, _enterprise: EnterpriseId) -> Result<Vec<PersonId>, CaseError> {
        Err(CaseError::Upstream {
            domain: "employment registry",
            message:
                "no employment registry is connected to this hub, so employees cannot be counted"
                    .into(),
        })
    }
}

fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// A domain error at the edge; an invalid form also lists its violations
/// as `extensions.violations` (`[{field, rule, message}]`, `field` a JSON
/// pointer) so a form can show each next to its field.
fn domain(e: CaseError) -> Error {
    let violations = match &e {
        CaseError::FormInvalid { violations, .. } => {
            let list: Vec<Value> = violations
                .iter()
                .map(
                    |v| serde_json::json!({"field": v.field, "rule": v.rule, "message": v.message}),
                )
                .collect();
            async_graphql::Value::from_json(Value::Array(list)).ok()
        }
        _ => None,
    };
    let code = e.code();
    Error::new(e.to_string()).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(v) = &violations {
            ext.set("violations", v.clone());
        }
    })
}

fn read_side(e: ProjectionError) -> Error {
    coded(e.code(), e.to_string())
}

fn forbidden(actor: &Actor, what: &str, who: &str) -> Error {
    coded(
        "FORBIDDEN",
        format!(
            "a {} may not read or do `{what}`; allowed: {who}",
            actor.role_name()
        ),
    )
}

fn api<'a>(ctx: &Context<'a>) -> Result<&'a CasesApi> {
    ctx.data::<Arc<CasesApi>>()
        .map(AsRef::as_ref)
        .map_err(|_| coded("INTERNAL", "the applications service is not configured"))
}

/// The caller's capacity in this domain, or `UNAUTHENTICATED`/`FORBIDDEN`.
pub fn principal(ctx: &Context<'_>) -> Result<Principal> {
    let actor = ctx.data_opt::<Actor>().ok_or_else(|| {
        coded(
            "UNAUTHENTICATED",
            "this field needs a bearer token (Authorization: Bearer <jwt>)",
        )
    })?;
    principal_of(actor, ctx.data_opt::<OfficialRegion>())
}

/// [`principal`] without a GraphQL context.
pub fn principal_of(actor: &Actor, region: Option<&OfficialRegion>) -> Result<Principal> {
    match &actor.role {
        Role::Citizen { person } => Ok(Principal::Person {
            actor: actor.id,
            person: *person,
        }),
        Role::Department { name } => {
            let department = DepartmentCode::parse(name).map_err(|e| {
                coded(
                    "FORBIDDEN",
                    format!("department `{name}` is not a department code: {e}"),
                )
            })?;
            let region = region.ok_or_else(|| {
                coded(
                    "FORBIDDEN",
                    "a department official's token needs a `region` claim (the region of their authority) to handle applications",
                )
            })?;
            Ok(Principal::Official {
                actor: actor.id,
                department,
                region: region.0,
            })
        }
        Role::Enterprise { enterprise } => Ok(Principal::Enterprise {
            actor: actor.id,
            enterprise: EnterpriseId::from_uuid(*enterprise),
        }),
        Role::Auditor | Role::Admin => Ok(Principal::Auditor { actor: actor.id }),
        _ => Err(forbidden(
            actor,
            "applications",
            "citizen, enterprise, department, auditor, admin",
        )),
    }
}

fn snake<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn case_id(text: &str) -> Result<CaseId> {
    CaseId::parse(text).map_err(domain)
}

fn selected_fields(ctx: &Context<'_>) -> Vec<String> {
    ctx.field()
        .selection_set()
        .map(|f| f.name().to_string())
        .filter(|n| !n.starts_with("__"))
        .collect()
}

impl CasesApi {
    fn cases(&self) -> Result<CaseQueries> {
        Ok(CaseQueries::new(
            self.runner.read_models(CASES).map_err(read_side)?,
        ))
    }

    fn inbox_queries(&self) -> Result<InboxQueries> {
        Ok(InboxQueries::new(
            self.runner.read_models(INBOX).map_err(read_side)?,
        ))
    }

    async fn wait(&self, projection: &str, min: Option<u64>) -> Result<()> {
        let Some(min) = min else { return Ok(()) };
        self.runner
            .wait_for(projection, Position(min), self.read_wait)
            .await
            .map_err(read_side)
    }

    async fn position(&self) -> Result<u64> {
        let head = self
            .store
            .head()
            .await
            .map_err(|e| coded(e.code(), e.to_string()))?;
        Ok(head.map_or(0, |h| h.position.0))
    }
}

/// One step of an application's history.
#[derive(SimpleObject)]
pub struct HistoryStep {
    /// `submit`, `accept`, `request_more_information`, `supplement`,
    /// `approve`, `reject`, `withdraw`.
    pub step: String,
    /// The status after it.
    pub status: String,
    /// The acting official's account, if an official acted.
    pub official: Option<String>,
    /// Reasons, requested information or notes.
    pub reasons: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// An official's look at an application.
#[derive(SimpleObject)]
pub struct ApplicationAccess {
    /// The official's account.
    pub official: String,
    /// Their department.
    pub department: String,
    /// Why.
    pub purpose: String,
    /// Fields returned to them.
    pub fields: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// An application, as its applicant, the handling officials and auditors
/// see it.
pub struct Application {
    view: CaseView,
    viewer: Principal,
}

#[Object]
impl Application {
    /// The application's id.
    async fn id(&self) -> ID {
        ID(self.view.case_id.clone())
    }
    /// The service's code.
    async fn service(&self) -> &str {
        &self.view.service
    }
    /// The handling department.
    async fn department(&self) -> &str {
        &self.view.department
    }
    /// Where the applicant applied (division code).
    async fn region(&self) -> &str {
        &self.view.region
    }
    /// `person` or `enterprise`.
    async fn applicant_kind(&self) -> &str {
        match self.view.applicant {
            Applicant::Person(_) => "person",
            Applicant::Enterprise(_) => "enterprise",
        }
    }
    /// The applicant's id (the applicant, handling officials, auditors).
    async fn applicant_id(&self) -> String {
        match self.view.applicant {
            Applicant::Person(p) => p.to_string(),
            Applicant::Enterprise(e) => e.to_string(),
        }
    }
    /// The form as it now is; null once the applicant's data is erased.
    async fn form(&self, ctx: &Context<'_>) -> Result<Option<Json<Value>>> {
        let api = api(ctx)?;
        crate::sealed_form::open(
            api.service.vault().as_ref(),
            &self.view.applicant,
            &self.view.form,
        )
        .map(|form| form.map(Json))
        .map_err(domain)
    }
    /// `submitted`, `under_review`, `awaiting_information`, `approved`,
    /// `rejected`, `withdrawn`.
    async fn status(&self) -> String {
        snake(&self.view.status)
    }
    /// Submitted (RFC 3339).
    async fn submitted_at(&self) -> &str {
        &self.view.submitted_at
    }
    /// When a decision is due (RFC 3339).
    async fn due_at(&self) -> &str {
        &self.view.due_at
    }
    /// Whether the decision is late.
    async fn overdue(&self) -> bool {
        self.view.is_overdue(time::OffsetDateTime::now_utc())
    }
    /// Every step, oldest first.
    async fn history(&self) -> Vec<HistoryStep> {
        self.view
            .history
            .iter()
            .map(|h| HistoryStep {
                step: snake(&h.step),
                status: snake(&h.status),
                official: h.official.clone(),
                reasons: h.reasons.clone(),
                at: h.at.clone(),
            })
            .collect()
    }
    /// For a change of residence: `approved`, `applied` or `failed: …`.
    async fn residence_change(&self) -> Option<&str> {
        self.view.residence_change.as_deref()
    }
    /// Who opened this application, why, and which fields (the applicant
    /// and auditors).
    async fn access_log(&self) -> Result<Vec<ApplicationAccess>> {
        let allowed = match &self.viewer {
            Principal::Auditor { .. } => true,
            p => p.as_applicant() == Some(self.view.applicant),
        };
        if !allowed {
            return Err(coded(
                "FORBIDDEN",
                format!(
                    "a {} may not read `Application.accessLog`; allowed: the applicant, auditor",
                    self.viewer.capacity()
                ),
            ));
        }
        Ok(self
            .view
            .access_log
            .iter()
            .map(|a| ApplicationAccess {
                official: a.official.clone(),
                department: a.department.clone(),
                purpose: a.purpose.clone(),
                fields: a.fields.clone(),
                at: a.at.clone(),
            })
            .collect())
    }
}

/// The work-resumption review: counts only, never an employee.
#[derive(SimpleObject)]
pub struct WorkResumptionReviewView {
    /// The application's id.
    pub application_id: ID,
    /// The enterprise's registered employees.
    pub registered: u32,
    /// Holding a green code.
    pub green: u32,
    /// Holding a yellow code.
    pub yellow: u32,
    /// Holding a red code.
    pub red: u32,
    /// Without a code.
    pub unknown: u32,
    /// Green share in percent, if it has employees.
    pub green_percent: Option<f64>,
}

/// A notification in the caller's inbox.
#[derive(SimpleObject, Clone)]
pub struct InboxNotification {
    /// Id (pass to `markInboxRead`).
    pub id: u64,
    /// `colour_changed`, `appeal_outcome`, `application_status`.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// The application, for application notifications.
    pub application_id: Option<ID>,
    /// Read yet.
    pub read: bool,
    /// When (RFC 3339).
    pub at: String,
}

impl From<Notification> for InboxNotification {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            kind: snake(&n.kind),
            title: n.title,
            body: n.body,
            application_id: n.case_id.map(ID),
            read: n.read,
            at: n.at,
        }
    }
}

/// What an application mutation did.
#[derive(SimpleObject)]
pub struct ApplicationWrite {
    /// The application.
    pub id: ID,
    /// Event types appended (empty when nothing changed).
    pub events: Vec<String>,
    /// Log position to pass as `minPosition` (read your writes).
    pub position: u64,
}

/// What `markInboxRead` did.
#[derive(SimpleObject)]
pub struct InboxWrite {
    /// Log position to pass as `minPosition`.
    pub position: u64,
}

/// The applications and inbox queries.
#[derive(Default)]
pub struct CasesQuery;

#[Object]
impl CasesQuery {
    /// The caller's own applications, newest first (citizens and enterprises).
    async fn my_applications(
        &self,
        ctx: &Context<'_>,
        min_position: Option<u64>,
    ) -> Result<Vec<Application>> {
        let viewer = principal(ctx)?;
        let api = api(ctx)?;
        api.wait(CASES, min_position).await?;
        Ok(api
            .cases()?
            .my_applications(&viewer)
            .await
            .map_err(domain)?
            .into_iter()
            .map(|view| Application {
                view,
                viewer: viewer.clone(),
            })
            .collect())
    }

    /// One application with its status history: for its applicant, an
    /// official of its department with authority over its region (who must
    /// give a `purpose`; the opening is recorded and shown to the
    /// applicant), or an auditor.
    async fn application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        purpose: Option<String>,
        min_position: Option<u64>,
    ) -> Result<Application> {
        let viewer = principal(ctx)?;
        let api = api(ctx)?;
        let id = case_id(&id)?;
        api.wait(CASES, min_position).await?;
        let view = api.cases()?.case(&viewer, id).await.map_err(domain)?;
        if matches!(
            viewer,
            Principal::Official { .. } | Principal::Auditor { .. }
        ) {
            let purpose = purpose.filter(|p| !p.trim().is_empty()).ok_or_else(|| {
                coded(
                    "INVALID_INPUT",
                    "invalid `purpose`: an official or auditor opening someone's application must say why",
                )
            })?;
            api.service
                .execute(
                    &viewer,
                    id,
                    CaseCommand::RecordAccess {
                        purpose,
                        fields: selected_fields(ctx),
                    },
                )
                .await
                .map_err(domain)?;
        }
        Ok(Application { view, viewer })
    }

    /// The official's queue: open applications of their department in
    /// their region, soonest due first.
    async fn application_queue(
        &self,
        ctx: &Context<'_>,
        min_position: Option<u64>,
    ) -> Result<Vec<Application>> {
        let viewer = principal(ctx)?;
        let api = api(ctx)?;
        api.wait(CASES, min_position).await?;
        Ok(api
            .cases()?
            .queue(&viewer)
            .await
            .map_err(domain)?
            .into_iter()
            .map(|view| Application {
                view,
                viewer: viewer.clone(),
            })
            .collect())
    }

    /// The work-resumption review: how many of the enterprise's registered
    /// employees hold each colour (counts only), for the reviewing official.
    async fn work_resumption_review(
        &self,
        ctx: &Context<'_>,
        id: ID,
        min_position: Option<u64>,
    ) -> Result<WorkResumptionReviewView> {
        let viewer = principal(ctx)?;
        let api = api(ctx)?;
        let id = case_id(&id)?;
        api.wait(CASES, min_position).await?;
        let review = api
            .cases()?
            .work_resumption_review(&viewer, id, api.green_share.as_ref())
            .await
            .map_err(domain)?;
        Ok(WorkResumptionReviewView {
            application_id: ID(review.case.case_id),
            registered: review.employees.registered,
            green: review.employees.green,
            yellow: review.employees.yellow,
            red: review.employees.red,
            unknown: review.employees.unknown,
            green_percent: review.green_percent,
        })
    }

    /// The caller's notifications, newest first.
    async fn inbox(
        &self,
        ctx: &Context<'_>,
        min_position: Option<u64>,
    ) -> Result<Vec<InboxNotification>> {
        let viewer = principal(ctx)?;
        let api = api(ctx)?;
        api.wait(INBOX, min_position).await?;
        Ok(api
            .inbox_queries()?
            .notifications(&viewer)
            .await
            .map_err(domain)?
            .into_iter()
            .map(InboxNotification::from)
            .collect())
    }

    /// How many of the caller's notifications are unread.
    async fn unread_count(&self, ctx: &Context<'_>, min_position: Option<u64>) -> Result<u64> {
        let viewer = principal(ctx)?;
        let api = api(ctx)?;
        api.wait(INBOX, min_position).await?;
        api.inbox_queries()?
            .unread_count(&viewer)
            .await
            .map_err(domain)
    }
}

/// The applications and inbox mutations.
#[derive(Default)]
pub struct CasesMutation;

async fn step(ctx: &Context<'_>, id: ID, command: CaseCommand) -> Result<ApplicationWrite> {
    let who = principal(ctx)?;
    let api = api(ctx)?;
    let case = case_id(&id)?;
    let events = api
        .service
        .execute(&who, case, command)
        .await
        .map_err(domain)?;
    Ok(ApplicationWrite {
        id,
        events: events.iter().map(|e| e.type_name().to_owned()).collect(),
        position: api.position().await?,
    })
}

#[Object]
impl CasesMutation {
    /// Applies for a catalogued service in `region` (a division code); the
    /// form is checked against the service's JSON Schema, each violation
    /// naming the field and the rule.
    async fn submit_application(
        &self,
        ctx: &Context<'_>,
        service: String,
        region: String,
        form: Json<Value>,
    ) -> Result<ApplicationWrite> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let service = ServiceCode::parse(&service).map_err(|e| coded(e.code(), e.to_string()))?;
        let region = api
            .divisions
            .parse_known(region.trim())
            .map_err(|e| domain(CaseError::UnknownRegion(e)))?;
        let id = api
            .service
            .submit(&who, service, region, form.0)
            .await
            .map_err(domain)?;
        Ok(ApplicationWrite {
            id: ID(id.to_string()),
            events: vec![crate::events::TYPE_NAMES[0].to_owned()],
            position: api.position().await?,
        })
    }

    /// An official of the department and region takes it up for review.
    async fn accept_application(&self, ctx: &Context<'_>, id: ID) -> Result<ApplicationWrite> {
        step(ctx, id, CaseCommand::Accept).await
    }

    /// An official asks the applicant for more information.
    async fn request_information(
        &self,
        ctx: &Context<'_>,
        id: ID,
        requested: String,
    ) -> Result<ApplicationWrite> {
        step(ctx, id, CaseCommand::RequestMoreInformation { requested }).await
    }

    /// The applicant answers with the whole, corrected form.
    async fn supplement_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        form: Json<Value>,
        #[graphql(default)] note: String,
    ) -> Result<ApplicationWrite> {
        step(ctx, id, CaseCommand::Supplement { form: form.0, note }).await
    }

    /// An official approves, with at least one reason.
    async fn approve_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reasons: Vec<String>,
    ) -> Result<ApplicationWrite> {
        step(ctx, id, CaseCommand::Approve { reasons }).await
    }

    /// An official rejects, with at least one reason.
    async fn reject_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reasons: Vec<String>,
    ) -> Result<ApplicationWrite> {
        step(ctx, id, CaseCommand::Reject { reasons }).await
    }

    /// The applicant withdraws an open application.
    async fn withdraw_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default)] reason: String,
    ) -> Result<ApplicationWrite> {
        step(ctx, id, CaseCommand::Withdraw { reason }).await
    }

    /// Marks the caller's notifications read: `ids`, or every one up to
    /// `upTo`, or all of them when neither is given.
    async fn mark_inbox_read(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] ids: Vec<u64>,
        up_to: Option<u64>,
    ) -> Result<InboxWrite> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        api.inbox
            .mark_read(&who, ids, up_to)
            .await
            .map_err(domain)?;
        Ok(InboxWrite {
            position: api.position().await?,
        })
    }
}

/// The inbox subscription.
#[derive(Default)]
pub struct CasesSubscription;

#[Subscription]
impl CasesSubscription {
    /// The caller's new notifications as they arrive (citizens and
    /// enterprises). Each has a `cursor`; pass the last one handled as
    /// `after` to resume.
    async fn inbox_updates(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<InboxUpdate>>> {
        let who = principal(ctx)?;
        let recipient = who.as_applicant().map(|a| a.key()).ok_or_else(|| {
            coded(
                "FORBIDDEN",
                format!(
                    "a {} has no inbox; persons and enterprises do",
                    who.capacity()
                ),
            )
        })?;
        let after = after
            .map(|a| {
                a.parse::<FeedCursor>()
                    .map_err(|e| coded("INVALID_INPUT", format!("invalid `after`: {e}")))
            })
            .transpose()?;
        let feed = api(ctx)?.runner.feed(INBOX).map_err(read_side)?;
        let scope = FeedScope::everything().data_classes(["inbox"]);
        Ok(feed.subscribe(after, scope).filter_map(move |item| {
            let recipient = recipient.clone();
            async move {
                match item {
                    Ok(r) if r.kind == "inbox.notification" => {
                        let to = r.payload.get("recipient").and_then(Value::as_str);
                        if to != Some(recipient.as_str()) {
                            return None;
                        }
                        let note = r
                            .payload
                            .get("notification")
                            .cloned()
                            .and_then(|n| serde_json::from_value::<Notification>(n).ok())?;
                        Some(Ok(InboxUpdate {
                            cursor: r.cursor.to_string(),
                            notification: note.into(),
                        }))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(read_side(e))),
                }
            }
        }))
    }
}

/// A new notification, live.
#[derive(SimpleObject, Clone)]
pub struct InboxUpdate {
    /// Resume cursor.
    pub cursor: String,
    /// The notification.
    pub notification: InboxNotification,
}
