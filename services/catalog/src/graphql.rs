//! The catalogue's GraphQL module, merged into the gateway's schema.
//!
//! - Queries: `catalogue` (search by keyword and region; public, like a
//!   printed service guide) and `catalogueService` (one service by code).
//!   Withdrawn services are listed only for departments and admins.
//! - Mutations: `publishService`, `updateService`, `withdrawService`, for
//!   the owning department's officials and admins (the aggregate decides;
//!   other roles get `FORBIDDEN` before it is asked).
//!
//! Every mutation returns the log `position` it wrote; queries take
//! `minPosition` and answer once the `catalog` read model has reached it.
//! Errors carry `extensions.code` from [`CatalogError::code`].

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{
    Context, Error, ErrorExtensions, InputObject, Json, Object, Result, SimpleObject,
};
use async_trait::async_trait;
use serde_json::Value;
use tongban_kernel::{Actor, DivisionCode, Role};
use tongban_projection::{ProjectionError, ProjectionRunner};
use tongban_store::{EventStore, Position};

use crate::commands::CatalogCommand;
use crate::error::CatalogError;
use crate::events::CatalogEvent;
use crate::handler::CatalogService;
use crate::projections::{CatalogQueries, Search, ServiceView, CATALOG};
use crate::types::{DepartmentCode, FormSchema, ServiceCode, ServiceDefinition};

/// The catalogue's command port, so the context data needs no store type.
#[async_trait]
pub trait CatalogCommands: Send + Sync {
    /// Runs a command (see [`CatalogService::execute`]).
    async fn execute(
        &self,
        actor: &Actor,
        command: CatalogCommand,
    ) -> Result<Vec<CatalogEvent>, CatalogError>;
}

#[async_trait]
impl<S: EventStore> CatalogCommands for CatalogService<S> {
    async fn execute(
        &self,
        actor: &Actor,
        command: CatalogCommand,
    ) -> Result<Vec<CatalogEvent>, CatalogError> {
        CatalogService::execute(self, actor, command).await
    }
}

/// Context data of the catalogue resolvers.
pub struct CatalogApi {
    /// Commands.
    pub commands: Arc<dyn CatalogCommands>,
    /// The log (positions for read-your-writes).
    pub store: Arc<dyn EventStore>,
    /// The projections (the `catalog` read model).
    pub runner: Arc<ProjectionRunner>,
    /// Longest wait for the read model to reach a position.
    pub read_wait: Duration,
}

fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

fn domain(e: CatalogError) -> Error {
    coded(e.code(), e.to_string())
}

fn read_side(e: ProjectionError) -> Error {
    coded(e.code(), e.to_string())
}

fn api<'a>(ctx: &Context<'a>) -> Result<&'a CatalogApi> {
    ctx.data::<Arc<CatalogApi>>()
        .map(AsRef::as_ref)
        .map_err(|_| coded("INTERNAL", "the catalogue is not configured"))
}

fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Actor> {
    ctx.data_opt::<Actor>().ok_or_else(|| {
        coded(
            "UNAUTHENTICATED",
            "this field needs a bearer token (Authorization: Bearer <jwt>)",
        )
    })
}

impl CatalogApi {
    fn queries(&self) -> Result<CatalogQueries> {
        Ok(CatalogQueries::new(
            self.runner.read_models(CATALOG).map_err(read_side)?,
        ))
    }

    async fn wait(&self, min: Option<u64>) -> Result<()> {
        let Some(min) = min else { return Ok(()) };
        self.runner
            .wait_for(CATALOG, Position(min), self.read_wait)
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

/// A catalogued service.
#[derive(SimpleObject)]
pub struct CatalogueService {
    /// Stable code, e.g. `elderly-care-subsidy`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Handling department.
    pub department: String,
    /// What it is for and who may apply.
    pub description: String,
    /// Documents to provide.
    pub required_documents: Vec<String>,
    /// Where it is offered (division codes; each serves everything inside it).
    pub eligible_regions: Vec<String>,
    /// The application form's JSON Schema.
    pub form_schema: Json<Value>,
    /// Promised processing time, in days.
    pub processing_days: u32,
    /// `published` or `withdrawn`.
    pub status: String,
    /// 1 when published, +1 per update.
    pub version: u32,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<ServiceView> for CatalogueService {
    fn from(v: ServiceView) -> Self {
        Self {
            status: serde_json::to_value(v.status)
                .ok()
                .and_then(|s| s.as_str().map(str::to_owned))
                .unwrap_or_default(),
            code: v.code,
            name: v.name,
            department: v.department,
            description: v.description,
            required_documents: v.required_documents,
            eligible_regions: v.eligible_regions,
            form_schema: Json(v.form_schema),
            processing_days: v.processing_days,
            version: v.version,
            updated_at: v.updated_at,
        }
    }
}

/// A service definition to publish or update.
#[derive(InputObject)]
pub struct ServiceInput {
    /// Stable code (3 to 64 of a-z, 0-9, '-').
    pub code: String,
    /// Display name.
    pub name: String,
    /// The handling department's code (yours).
    pub department: String,
    /// What it is for and who may apply.
    #[graphql(default)]
    pub description: String,
    /// Documents to provide.
    #[graphql(default)]
    pub required_documents: Vec<String>,
    /// Division codes where it is offered.
    pub eligible_regions: Vec<String>,
    /// The application form's JSON Schema.
    pub form_schema: Json<Value>,
    /// Promised processing time, in days (1 to 365).
    pub processing_days: u32,
}

impl ServiceInput {
    fn definition(self) -> Result<ServiceDefinition, CatalogError> {
        let eligible_regions = self
            .eligible_regions
            .iter()
            .map(|r| DivisionCode::parse(r.trim()).map_err(CatalogError::UnknownRegion))
            .collect::<Result<_, _>>()?;
        Ok(ServiceDefinition {
            code: ServiceCode::parse(&self.code)?,
            name: self.name,
            department: DepartmentCode::parse(&self.department)?,
            description: self.description,
            required_documents: self.required_documents,
            eligible_regions,
            form_schema: FormSchema::parse(self.form_schema.0)?,
            processing_days: self.processing_days,
        })
    }
}

/// What a catalogue mutation did.
#[derive(SimpleObject)]
pub struct CatalogueWrite {
    /// The service.
    pub code: String,
    /// Event types appended (empty when nothing changed).
    pub events: Vec<String>,
    /// Log position to pass as `minPosition` (read your writes).
    pub position: u64,
}

fn may_manage_services(actor: &Actor) -> Result<()> {
    match actor.role {
        Role::Department { .. } | Role::Admin => Ok(()),
        _ => Err(coded(
            "FORBIDDEN",
            format!(
                "a {} may not change the service catalogue; allowed: the owning department, admin",
                actor.role_name()
            ),
        )),
    }
}

/// The catalogue's queries.
#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// Searches the catalogue: every word of `keyword` must occur in the
    /// code, name, description, department or documents; `region` keeps
    /// services offered there. Public. `includeWithdrawn` is for departments
    /// and admins.
    async fn catalogue(
        &self,
        ctx: &Context<'_>,
        keyword: Option<String>,
        region: Option<String>,
        department: Option<String>,
        #[graphql(default)] include_withdrawn: bool,
        min_position: Option<u64>,
    ) -> Result<Vec<CatalogueService>> {
        let api = api(ctx)?;
        if include_withdrawn {
            let actor = caller(ctx)?;
            if !matches!(actor.role, Role::Department { .. } | Role::Admin) {
                return Err(coded(
                    "FORBIDDEN",
                    format!(
                        "a {} may not list withdrawn services; allowed: department, admin",
                        actor.role_name()
                    ),
                ));
            }
        }
        let region = region
            .map(|r| {
                DivisionCode::parse(r.trim()).map_err(|e| domain(CatalogError::UnknownRegion(e)))
            })
            .transpose()?;
        api.wait(min_position).await?;
        let search = Search {
            keyword: keyword.filter(|k| !k.trim().is_empty()),
            region,
            department: department.filter(|d| !d.trim().is_empty()),
            include_withdrawn,
        };
        Ok(api
            .queries()?
            .search(&search)
            .await
            .map_err(read_side)?
            .into_iter()
            .map(CatalogueService::from)
            .collect())
    }

    /// One catalogued service by code (withdrawn ones too). Public.
    async fn catalogue_service(
        &self,
        ctx: &Context<'_>,
        code: String,
        min_position: Option<u64>,
    ) -> Result<Option<CatalogueService>> {
        let api = api(ctx)?;
        api.wait(min_position).await?;
        Ok(api
            .queries()?
            .service(code.trim())
            .await
            .map_err(read_side)?
            .map(CatalogueService::from))
    }
}

/// The catalogue's mutations.
#[derive(Default)]
pub struct CatalogMutation;

impl CatalogMutation {
    async fn run(
        ctx: &Context<'_>,
        code: String,
        command: impl FnOnce() -> Result<CatalogCommand, CatalogError>,
    ) -> Result<CatalogueWrite> {
        let actor = caller(ctx)?;
        may_manage_services(actor)?;
        let api = api(ctx)?;
        let events = api
            .commands
            .execute(actor, command().map_err(domain)?)
            .await
            .map_err(domain)?;
        Ok(CatalogueWrite {
            code,
            events: events.iter().map(|e| e.type_name().to_owned()).collect(),
            position: api.position().await?,
        })
    }
}

#[Object]
impl CatalogMutation {
    /// Publishes a new service (its department's officials, admins).
    async fn publish_service(
        &self,
        ctx: &Context<'_>,
        service: ServiceInput,
    ) -> Result<CatalogueWrite> {
        let code = service.code.trim().to_owned();
        Self::run(ctx, code, || {
            Ok(CatalogCommand::PublishService(service.definition()?))
        })
        .await
    }

    /// Replaces a published service's definition (same code and department).
    async fn update_service(
        &self,
        ctx: &Context<'_>,
        service: ServiceInput,
    ) -> Result<CatalogueWrite> {
        let code = service.code.trim().to_owned();
        Self::run(ctx, code, || {
            Ok(CatalogCommand::UpdateService(service.definition()?))
        })
        .await
    }

    /// Withdraws a service: no new applications; open ones continue.
    async fn withdraw_service(
        &self,
        ctx: &Context<'_>,
        code: String,
        reason: String,
    ) -> Result<CatalogueWrite> {
        let text = code.trim().to_owned();
        Self::run(ctx, text, || {
            Ok(CatalogCommand::WithdrawService {
                code: ServiceCode::parse(&code)?,
                reason,
            })
        })
        .await
    }
}
