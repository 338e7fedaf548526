//! Metadata every event carries.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::actor::Actor;
use crate::division::DivisionCode;
use crate::ids::{CorrelationId, EventId};

/// Who caused an event, on whose behalf, in which region and when it happened
/// in the world (business time, as opposed to the time it was recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ties together everything one request caused.
    pub correlation_id: CorrelationId,
    /// The event or command that directly caused this one.
    pub causation_id: Option<EventId>,
    /// Who acted.
    pub actor: Actor,
    /// The region whose authority the event was recorded under.
    pub region: Option<DivisionCode>,
    /// Business time.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}
