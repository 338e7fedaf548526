//! The catalogued-service aggregate: `decide` checks the rules and returns
//! events; `evolve` folds them and never validates.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tongban_kernel::{Actor, Divisions, Role};

use crate::commands::CatalogCommand;
use crate::error::CatalogError;
use crate::events::CatalogEvent;
use crate::types::ServiceDefinition;

/// Longest name, description and document label, in characters.
const MAX_TEXT: usize = 4000;

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Open for applications.
    Published,
    /// Withdrawn: no new applications.
    Withdrawn,
}

/// The folded state of a `catalog-<code>` stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceState {
    /// The current definition, once published.
    pub definition: Option<ServiceDefinition>,
    /// Published or withdrawn, once published.
    pub status: Option<ServiceStatus>,
    /// 1 when published, +1 per update.
    pub version: u32,
}

impl ServiceState {
    /// Folds one event. Never validates.
    pub fn evolve(mut self, event: &CatalogEvent) -> Self {
        match event {
            CatalogEvent::ServicePublished { definition, .. } => {
                self.definition = Some(definition.clone());
                self.status = Some(ServiceStatus::Published);
                self.version = 1;
            }
            CatalogEvent::ServiceUpdated {
                definition,
                version,
                ..
            } => {
                self.definition = Some(definition.clone());
                self.version = *version;
            }
            CatalogEvent::ServiceWithdrawn { .. } => self.status = Some(ServiceStatus::Withdrawn),
        }
        self
    }

    /// The definition if the service is open for applications.
    pub fn open_definition(&self) -> Option<&ServiceDefinition> {
        match self.status {
            Some(ServiceStatus::Published) => self.definition.as_ref(),
            _ => None,
        }
    }
}

/// What a decision may look at besides the stream.
#[derive(Debug, Clone, Copy)]
pub struct CatalogContext<'a> {
    /// Who acts.
    pub actor: &'a Actor,
    /// The decision's now.
    pub now: OffsetDateTime,
    /// The real division codes.
    pub divisions: &'a Divisions,
}

fn may_manage(actor: &Actor, definition: &ServiceDefinition) -> Result<(), CatalogError> {
    match &actor.role {
        Role::Admin => Ok(()),
        Role::Department { name } if name == definition.department.as_str() => Ok(()),
        _ => Err(CatalogError::Forbidden {
            role: actor.role_name(),
            department: definition.department.clone(),
        }),
    }
}

fn check_text(field: &'static str, text: &str, required: bool) -> Result<(), CatalogError> {
    if required && text.trim().is_empty() {
        return Err(CatalogError::InvalidInput {
            field,
            rule: "must not be blank".into(),
        });
    }
    if text.chars().count() > MAX_TEXT {
        return Err(CatalogError::InvalidInput {
            field,
            rule: format!("must be at most {MAX_TEXT} characters"),
        });
    }
    Ok(())
}

fn check_definition(
    definition: &ServiceDefinition,
    divisions: &Divisions,
) -> Result<(), CatalogError> {
    check_text("name", &definition.name, true)?;
    check_text("description", &definition.description, false)?;
    for document in &definition.required_documents {
        check_text("required_documents", document, true)?;
    }
    if definition.eligible_regions.is_empty() {
        return Err(CatalogError::NoEligibleRegion);
    }
    for region in &definition.eligible_regions {
        divisions
            .check(region)
            .map_err(CatalogError::UnknownRegion)?;
    }
    if !(1..=365).contains(&definition.processing_days) {
        return Err(CatalogError::InvalidInput {
            field: "processing_days",
            rule: format!(
                "{} days is outside 1 to 365 days",
                definition.processing_days
            ),
        });
    }
    Ok(())
}

/// Decides a command on one service.
pub fn decide(
    state: &ServiceState,
    command: &CatalogCommand,
    ctx: &CatalogContext<'_>,
) -> Result<Vec<CatalogEvent>, CatalogError> {
    let by = ctx.actor.id;
    let at = ctx.now;
    match command {
        CatalogCommand::PublishService(definition) => {
            may_manage(ctx.actor, definition)?;
            if state.definition.is_some() {
                return Err(CatalogError::AlreadyPublished(definition.code.clone()));
            }
            check_definition(definition, ctx.divisions)?;
            Ok(vec![CatalogEvent::ServicePublished {
                definition: definition.clone(),
                by,
                at,
            }])
        }
        CatalogCommand::UpdateService(definition) => {
            let current = state
                .definition
                .as_ref()
                .ok_or_else(|| CatalogError::NotPublished(definition.code.clone()))?;
            may_manage(ctx.actor, current)?;
            if state.status == Some(ServiceStatus::Withdrawn) {
                return Err(CatalogError::Withdrawn(current.code.clone()));
            }
            if definition.department != current.department {
                return Err(CatalogError::DepartmentChanged {
                    code: current.code.clone(),
                    owner: current.department.clone(),
                    requested: definition.department.clone(),
                });
            }
            check_definition(definition, ctx.divisions)?;
            if definition == current {
                return Ok(vec![]);
            }
            Ok(vec![CatalogEvent::ServiceUpdated {
                definition: definition.clone(),
                version: state.version + 1,
                by,
                at,
            }])
        }
        CatalogCommand::WithdrawService { code, reason } => {
            let current = state
                .definition
                .as_ref()
                .ok_or_else(|| CatalogError::NotPublished(code.clone()))?;
            may_manage(ctx.actor, current)?;
            check_text("reason", reason, true)?;
            if state.status == Some(ServiceStatus::Withdrawn) {
                return Ok(vec![]);
            }
            Ok(vec![CatalogEvent::ServiceWithdrawn {
                code: current.code.clone(),
                reason: reason.clone(),
                by,
                at,
            }])
        }
    }
}
