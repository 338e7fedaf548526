//! Command handling on the event store: load `catalog-<code>`, fold, decide,
//! append with the expected revision, decide again on a conflict.

use std::sync::Arc;

use tongban_kernel::{Actor, Clock, CorrelationId, Divisions, EventMetadata};
use tongban_store::{
    Direction, EventData, EventStore, ExpectedRevision, ReadFrom, StoreError, StreamName,
};

use crate::commands::CatalogCommand;
use crate::error::CatalogError;
use crate::events::CatalogEvent;
use crate::service::{self, CatalogContext, ServiceState};
use crate::types::ServiceCode;

/// How many times a command is decided again after a concurrency conflict.
pub const MAX_ATTEMPTS: u32 = 5;

const PAGE: usize = 1024;

/// The stream category of catalogued services.
pub const CATEGORY: &str = "catalog";

fn store_err(e: StoreError) -> CatalogError {
    CatalogError::Store(e.to_string())
}

/// The stream of one service.
pub fn service_stream(code: &ServiceCode) -> Result<StreamName, CatalogError> {
    StreamName::parse(format!("{CATEGORY}-{code}")).map_err(store_err)
}

/// The catalogue: commands in, events out, on any [`EventStore`].
pub struct CatalogService<S: EventStore> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    divisions: Arc<Divisions>,
}

impl<S: EventStore> std::fmt::Debug for CatalogService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogService").finish_non_exhaustive()
    }
}

impl<S: EventStore> CatalogService<S> {
    /// A catalogue over `store`.
    pub fn new(store: Arc<S>, clock: Arc<dyn Clock>, divisions: Arc<Divisions>) -> Self {
        Self {
            store,
            clock,
            divisions,
        }
    }

    /// The folded state of a service and its stream revision (`None`: never published).
    pub async fn load(
        &self,
        code: &ServiceCode,
    ) -> Result<(ServiceState, Option<u64>), CatalogError> {
        let name = service_stream(code)?;
        let mut state = ServiceState::default();
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
                let event: CatalogEvent = recorded.json().map_err(|e| {
                    CatalogError::Store(format!(
                        "event {} of {name} is not a catalogue event: {e}",
                        recorded.revision
                    ))
                })?;
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

    /// The current state of a service (empty if never published).
    pub async fn service(&self, code: &ServiceCode) -> Result<ServiceState, CatalogError> {
        Ok(self.load(code).await?.0)
    }

    /// Runs a command: publish, update or withdraw.
    #[tracing::instrument(name = "catalog.execute", skip_all, fields(actor = %actor.id))]
    pub async fn execute(
        &self,
        actor: &Actor,
        command: CatalogCommand,
    ) -> Result<Vec<CatalogEvent>, CatalogError> {
        let code = match &command {
            CatalogCommand::PublishService(d) | CatalogCommand::UpdateService(d) => d.code.clone(),
            CatalogCommand::WithdrawService { code, .. } => code.clone(),
        };
        let name = service_stream(&code)?;
        let correlation = CorrelationId::new();
        for _attempt in 0..MAX_ATTEMPTS {
            let (state, revision) = self.load(&code).await?;
            let now = self.clock.now();
            let ctx = CatalogContext {
                actor,
                now,
                divisions: &self.divisions,
            };
            let events = service::decide(&state, &command, &ctx)?;
            if events.is_empty() {
                return Ok(events);
            }
            let metadata = EventMetadata {
                correlation_id: correlation,
                causation_id: None,
                actor: actor.clone(),
                region: None,
                occurred_at: now,
            };
            let data = events
                .iter()
                .map(|e| EventData::json(e.type_name(), e).and_then(|d| d.with_metadata(&metadata)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_err)?;
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.store.append(&name, expected, data).await {
                Ok(_) => return Ok(events),
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    tracing::debug!("concurrency conflict; deciding again");
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(CatalogError::Conflict {
            stream: name.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }
}
