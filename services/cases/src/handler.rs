//! Command handling on the event store: load `case-<id>` (opening its
//! sealed forms), fold, read the catalogued service through the
//! catalogue's own handler, decide, seal the forms and append with the
//! expected revision, decide again on a conflict.

use std::sync::Arc;

use tongban_catalog::{CatalogService, ServiceState};
use tongban_health_code::vault::KeyVault;
use tongban_kernel::{Clock, CorrelationId, Divisions};
use tongban_store::{
    Direction, EventData, EventStore, ExpectedRevision, ReadFrom, StoreError, StreamName,
};

use crate::case::{self, CaseContext, CaseState};
use crate::commands::CaseCommand;
use crate::error::CaseError;
use crate::events::{CaseEvent, CaseMetadata};
use crate::sealed_form;
use crate::types::{Applicant, CaseId, Principal};

/// How many times a command is decided again after a concurrency conflict.
pub const MAX_ATTEMPTS: u32 = 5;

/// The stream category of applications.
pub const CATEGORY: &str = "case";

const PAGE: usize = 1024;

fn store_err(e: StoreError) -> CaseError {
    CaseError::Store(e.to_string())
}

/// The stream of one application.
pub fn case_stream(case_id: CaseId) -> Result<StreamName, CaseError> {
    StreamName::parse(format!("{CATEGORY}-{case_id}")).map_err(store_err)
}

/// Applications: commands in, events out, on any [`EventStore`].
pub struct CasesService<S: EventStore> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    divisions: Arc<Divisions>,
    catalog: Arc<CatalogService<S>>,
    vault: Arc<dyn KeyVault>,
}

impl<S: EventStore> std::fmt::Debug for CasesService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CasesService").finish_non_exhaustive()
    }
}

impl<S: EventStore> CasesService<S> {
    /// Applications over `store`, reading services from `catalog`, forms
    /// sealed with applicants' keys from `vault`.
    pub fn new(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        divisions: Arc<Divisions>,
        catalog: Arc<CatalogService<S>>,
        vault: Arc<dyn KeyVault>,
    ) -> Self {
        Self {
            store,
            clock,
            divisions,
            catalog,
            vault,
        }
    }

    /// The key vault forms are sealed with (readers open forms through it).
    pub fn vault(&self) -> &Arc<dyn KeyVault> {
        &self.vault
    }

    /// The event with its form opened, for deciding: a form sealed in the
    /// log is opened with the applicant's key, an erased one becomes null.
    fn opened(
        &self,
        event: CaseEvent,
        applicant: Option<Applicant>,
    ) -> Result<CaseEvent, CaseError> {
        let mut event = event;
        let applicant = match &event {
            CaseEvent::ApplicationSubmitted { applicant, .. } => Some(*applicant),
            _ => applicant,
        };
        if let (
            CaseEvent::ApplicationSubmitted { form, .. }
            | CaseEvent::ApplicationSupplemented { form, .. },
            Some(applicant),
        ) = (&mut event, applicant)
        {
            *form = sealed_form::open(self.vault.as_ref(), &applicant, form)?.unwrap_or_default();
        }
        Ok(event)
    }

    /// The event as it goes into the log: its form sealed with the
    /// applicant's key.
    fn sealed(
        &self,
        event: &CaseEvent,
        applicant: Option<Applicant>,
    ) -> Result<CaseEvent, CaseError> {
        let mut event = event.clone();
        let applicant = match &event {
            CaseEvent::ApplicationSubmitted { applicant, .. } => Some(*applicant),
            _ => applicant,
        };
        if let CaseEvent::ApplicationSubmitted { form, .. }
        | CaseEvent::ApplicationSupplemented { form, .. } = &mut event
        {
            let applicant = applicant.ok_or_else(|| {
                CaseError::Store("a form for an application without an applicant".into())
            })?;
            *form = sealed_form::seal(self.vault.as_ref(), &applicant, form)?;
        }
        Ok(event)
    }

    /// The event store (the process managers read `$all` from it).
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The folded state of an application and its stream revision.
    pub async fn load(&self, case_id: CaseId) -> Result<(CaseState, Option<u64>), CaseError> {
        let name = case_stream(case_id)?;
        let mut state = CaseState::default();
        let mut revision = None;
        let mut from = ReadFrom::Start;
        loop {
            let page = match self
                .store
                .read_stream(&name, Direction::Forwards, from, PAGE)
                .await
            {
                Ok(page) => page,
                Err(StoreError::StreamNotFound { .. }) => return Ok((state, None)),
                Err(e) => return Err(store_err(e)),
            };
            for recorded in &page {
                let event: CaseEvent = recorded.json().map_err(|e| {
                    CaseError::Store(format!(
                        "event {} of {name} is not a case event: {e}",
                        recorded.revision
                    ))
                })?;
                let event = self.opened(event, state.applicant)?;
                state = state.evolve(&event);
                revision = Some(recorded.revision);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => from = ReadFrom::At(last.revision + 1),
                _ => break,
            }
        }
        Ok((state, revision))
    }

    /// The current state of an application.
    pub async fn case(&self, case_id: CaseId) -> Result<CaseState, CaseError> {
        let (state, revision) = self.load(case_id).await?;
        match revision {
            Some(_) => Ok(state),
            None => Err(CaseError::CaseNotFound(case_id)),
        }
    }

    async fn service_for(
        &self,
        state: &CaseState,
        command: &CaseCommand,
    ) -> Result<Option<ServiceState>, CaseError> {
        let code = match command {
            CaseCommand::Submit { service, .. } => Some(service.clone()),
            CaseCommand::Supplement { .. } => state.service.clone(),
            _ => None,
        };
        let Some(code) = code else { return Ok(None) };
        let service = self
            .catalog
            .service(&code)
            .await
            .map_err(|e| CaseError::Upstream {
                domain: "catalog",
                message: e.to_string(),
            })?;
        Ok(service.definition.is_some().then_some(service))
    }

    /// Runs a command on application `case_id` (for `Submit`, the id in the command).
    #[tracing::instrument(name = "cases.execute", skip_all, fields(case = %case_id, step = ?command.step()))]
    pub async fn execute(
        &self,
        principal: &Principal,
        case_id: CaseId,
        command: CaseCommand,
    ) -> Result<Vec<CaseEvent>, CaseError> {
        let name = case_stream(case_id)?;
        let correlation = CorrelationId::new();
        for _attempt in 0..MAX_ATTEMPTS {
            let (state, revision) = self.load(case_id).await?;
            if revision.is_none() && !matches!(command, CaseCommand::Submit { .. }) {
                return Err(CaseError::CaseNotFound(case_id));
            }
            let service = self.service_for(&state, &command).await?;
            let now = self.clock.now();
            let ctx = CaseContext {
                principal,
                now,
                divisions: &self.divisions,
                service: service.as_ref(),
            };
            let events = case::decide(&state, &command, &ctx)?;
            if events.is_empty() {
                return Ok(events);
            }
            let region = state.region.or(match &command {
                CaseCommand::Submit { region, .. } => Some(*region),
                _ => None,
            });
            let metadata = CaseMetadata {
                correlation_id: correlation,
                causation_id: None,
                principal: principal.clone(),
                region,
                occurred_at: now,
            };
            let data = events
                .iter()
                .map(|e| {
                    let stored = self.sealed(e, state.applicant)?;
                    EventData::json(stored.type_name(), &stored)
                        .and_then(|d| d.with_metadata(&metadata))
                        .map_err(store_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.store.append(&name, expected, data).await {
                Ok(_) => return Ok(events),
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    tracing::debug!("concurrency conflict; deciding again");
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(CaseError::Conflict {
            stream: name.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Submits a new application; returns its id.
    pub async fn submit(
        &self,
        principal: &Principal,
        service: tongban_catalog::ServiceCode,
        region: tongban_kernel::DivisionCode,
        form: serde_json::Value,
    ) -> Result<CaseId, CaseError> {
        let case_id = CaseId::new();
        self.execute(
            principal,
            case_id,
            CaseCommand::Submit {
                case_id,
                service,
                region,
                form,
            },
        )
        .await?;
        Ok(case_id)
    }
}
