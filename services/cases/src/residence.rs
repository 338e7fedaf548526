//! The residence process manager: an approved change of residence community
//! (`ResidenceChangeApproved`, a fact of this domain) becomes the
//! health-code domain's own `ChangeResidence` command, run by its own
//! command handler. This crate never writes health-code streams.
//!
//! - [`react`] is the pure decision: given an application's state, what (if
//!   anything) to ask of the health-code domain.
//! - [`ResidenceRegistry`] is the port the I/O edge calls; it is implemented
//!   for the health-code domain's `HealthCodeService`.
//! - [`ResidenceProcess`] is the edge: it reads `ResidenceChangeApproved`
//!   events from `$all` after a position, asks the registry, and records
//!   the outcome on the application (`ResidenceChangeApplied` or
//!   `ResidenceChangeFailed`). Recording the outcome makes it idempotent: a
//!   change already answered is never sent again. [`ResidenceProcess::run`]
//!   does the same live, from a catch-up subscription to `$all`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tongban_health_code::handler::HealthCodeService;
use tongban_health_code::person::PersonCommand;
use tongban_kernel::{Actor, ActorId, DivisionCode, PersonId, Role};
use tongban_store::{
    Direction, EventFilter, EventStore, Position, ReadFrom, SubscribeFrom, SubscriptionMessage,
};

use crate::case::CaseState;
use crate::commands::CaseCommand;
use crate::error::CaseError;
use crate::handler::CasesService;
use crate::types::{CaseId, Principal};

/// The process's account, as it appears in both domains' metadata.
pub const PROCESS_ACTOR: ActorId = ActorId::from_u128(0x7265_7369_6465_6e63_6500);

/// What the health-code domain is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidenceOrder {
    /// The application that approved it.
    pub case_id: CaseId,
    /// The person.
    pub person_id: PersonId,
    /// The new community.
    pub to: DivisionCode,
}

/// The pure decision: an approved change that has not been answered yet.
pub fn react(state: &CaseState) -> Option<ResidenceOrder> {
    let change = state.residence_change?;
    if change.applied.is_some() {
        return None;
    }
    Some(ResidenceOrder {
        case_id: state.case_id?,
        person_id: change.person_id,
        to: change.to,
    })
}

/// The health-code domain's residence register, as this process needs it.
#[async_trait]
pub trait ResidenceRegistry: Send + Sync {
    /// Changes the person's residence community; `Err` says why not.
    async fn change_residence(&self, order: &ResidenceOrder) -> Result<(), String>;
}

#[async_trait]
impl<S: EventStore> ResidenceRegistry for HealthCodeService<S> {
    async fn change_residence(&self, order: &ResidenceOrder) -> Result<(), String> {
        let actor = Actor {
            id: PROCESS_ACTOR,
            role: Role::Department {
                name: tongban_health_code::person::RESIDENCE_REGISTRY_DEPARTMENT.into(),
            },
        };
        self.person(
            &actor,
            order.person_id,
            PersonCommand::ChangeResidence { to: order.to },
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

const PAGE: usize = 256;

/// The I/O edge of the process manager.
pub struct ResidenceProcess<S: EventStore, R: ResidenceRegistry + ?Sized> {
    cases: Arc<CasesService<S>>,
    registry: Arc<R>,
}

impl<S: EventStore, R: ResidenceRegistry + ?Sized> ResidenceProcess<S, R> {
    /// A process over the cases handler and the health-code registry.
    pub fn new(cases: Arc<CasesService<S>>, registry: Arc<R>) -> Self {
        Self { cases, registry }
    }

    /// Carries out the approved change of one application, if still due.
    /// Returns whether the registry was asked.
    pub async fn handle(&self, case_id: CaseId) -> Result<bool, CaseError> {
        let state = self.cases.case(case_id).await?;
        let Some(order) = react(&state) else {
            return Ok(false);
        };
        let outcome = self.registry.change_residence(&order).await;
        if let Err(reason) = &outcome {
            tracing::warn!(case = %case_id, %reason, "the health-code domain refused a residence change");
        }
        self.cases
            .execute(
                &Principal::System {
                    actor: PROCESS_ACTOR,
                },
                case_id,
                CaseCommand::RecordResidenceOutcome { outcome },
            )
            .await?;
        Ok(true)
    }

    /// Handles every `ResidenceChangeApproved` committed after `after`
    /// (from the start if `None`). Returns the last position seen: store it
    /// and pass it next time (handling is idempotent, so a lost position
    /// only costs re-reading).
    pub async fn catch_up(&self, after: Option<Position>) -> Result<Option<Position>, CaseError> {
        let filter = EventFilter::event_types(["ResidenceChangeApproved.v1"]);
        let mut last = after;
        loop {
            let from = last.map_or(ReadFrom::Start, |p| ReadFrom::At(p.next()));
            let page = self
                .cases
                .store()
                .read_all(Direction::Forwards, from, PAGE, &filter)
                .await
                .map_err(|e| CaseError::Store(e.to_string()))?;
            for recorded in &page {
                let event: crate::events::CaseEvent = recorded
                    .json()
                    .map_err(|e| CaseError::Store(format!("undecodable case event: {e}")))?;
                self.handle(event.case_id()).await?;
                last = Some(recorded.position);
            }
            if page.len() < PAGE {
                return Ok(last);
            }
        }
    }

    /// Runs live: handles every approved change committed after `after`,
    /// then each new one as it is committed. Returns only when the
    /// subscription ends (the store closed or dropped this subscriber),
    /// with the last position handled, so the caller can resume from it.
    pub async fn run(&self, after: Option<Position>) -> (Option<Position>, CaseError) {
        let filter = EventFilter::event_types(["ResidenceChangeApproved.v1"]);
        let from = after.map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let mut subscription = self.cases.store().subscribe_to_all(from, filter);
        let mut last = after;
        while let Some(message) = subscription.next().await {
            let recorded = match message {
                Ok(SubscriptionMessage::Event(recorded)) => recorded,
                Ok(_) => continue,
                Err(e) => return (last, CaseError::Store(e.to_string())),
            };
            let handled = match recorded.json::<crate::events::CaseEvent>() {
                Ok(event) => self.handle(event.case_id()).await,
                Err(e) => Err(CaseError::Store(format!("undecodable case event: {e}"))),
            };
            if let Err(e) = handled {
                return (last, e);
            }
            last = Some(recorded.position);
        }
        (
            last,
            CaseError::Store("the event store ended the subscription".into()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::ResidenceChange;

    fn approved(applied: Option<bool>) -> CaseState {
        CaseState {
            case_id: Some(CaseId::from_u128(1)),
            residence_change: Some(ResidenceChange {
                person_id: PersonId::from_u128(2),
                to: DivisionCode::parse("110106018002").unwrap(),
                applied,
            }),
            ..CaseState::default()
        }
    }

    #[test]
    fn an_unanswered_approved_change_is_sent_to_the_health_code_domain() {
        let order = react(&approved(None)).unwrap();
        assert_eq!(order.person_id, PersonId::from_u128(2));
    }

    #[test]
    fn an_answered_change_is_never_sent_again() {
        assert_eq!(react(&approved(Some(true))), None);
        assert_eq!(react(&approved(Some(false))), None);
        assert_eq!(react(&CaseState::default()), None);
    }
}
