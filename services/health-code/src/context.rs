//! What a decision may look at besides its own stream: the time, the real
//! division codes, the policies and risk areas in force (themselves folds of
//! events), and the acting actor. Everything here is read-only.

use time::{Duration, OffsetDateTime};
use tongban_kernel::{Actor, Divisions};

use crate::error::HealthCodeError;
use crate::policy::PolicyBook;
use crate::risk::RiskMap;

/// How far in the future a business time may lie (clock skew of devices).
pub const FUTURE_TOLERANCE: Duration = Duration::minutes(5);

/// The read-only inputs of a decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext<'a> {
    /// Now, from the clock.
    pub now: OffsetDateTime,
    /// The division registry.
    pub divisions: &'a Divisions,
    /// Policies published so far.
    pub policies: &'a PolicyBook,
    /// Risk areas declared so far.
    pub risk: &'a RiskMap,
    /// Who acts.
    pub actor: &'a Actor,
}

impl DecisionContext<'_> {
    /// Rejects a business time later than now plus [`FUTURE_TOLERANCE`].
    pub fn not_in_future(
        &self,
        field: &'static str,
        at: OffsetDateTime,
    ) -> Result<(), HealthCodeError> {
        if at > self.now + FUTURE_TOLERANCE {
            Err(HealthCodeError::FutureTime {
                field,
                at,
                now: self.now,
            })
        } else {
            Ok(())
        }
    }
}
