//! Checkpoints (venues: markets, offices, stations), stream `checkpoint-<id>`.
//!
//! A checkpoint is registered by a health official of the street (or wider
//! region) that contains it, with its community or street code and an
//! admission policy. Scans work both ways: a guard scans the person's code,
//! or the person scans the venue's signed place code and shows their own
//! code. A scan verifies signature and expiry offline, then records
//! `CodeScanned` with the result and why; an admitted scan is a venue visit
//! and a measured temperature is evidence, both appended to the person's
//! stream by the handler ([`scan_evidence`]).

use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};
use tongban_kernel::{CheckpointId, DivisionCode, DivisionLevel, EventId};

use crate::context::DecisionContext;
use crate::error::HealthCodeError;
use crate::events::{Evidence, HealthEvent};
use crate::token::{verify_code, verify_place, CodeClaims, KeyDirectory};
use crate::types::{AdmissionPolicy, Colour, ScanDirection, Temperature};

/// A registered checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Its id.
    pub id: CheckpointId,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub place: DivisionCode,
    /// Who may enter.
    pub admission: AdmissionPolicy,
}

/// The folded state of a checkpoint stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointState {
    /// The checkpoint, once registered.
    pub checkpoint: Option<Checkpoint>,
    scans: BTreeSet<EventId>,
}

impl CheckpointState {
    /// Folds one event.
    pub fn evolve(mut self, event: &HealthEvent) -> Self {
        match event {
            HealthEvent::CheckpointRegistered {
                checkpoint_id,
                name,
                place,
                admission,
                ..
            } => {
                self.checkpoint = Some(Checkpoint {
                    id: *checkpoint_id,
                    name: name.clone(),
                    place: *place,
                    admission: admission.clone(),
                });
            }
            HealthEvent::CodeScanned { scan_id, .. } => {
                self.scans.insert(*scan_id);
            }
            _ => {}
        }
        self
    }
}

/// Commands on a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointCommand {
    /// Register a venue.
    Register {
        /// Its id.
        checkpoint_id: CheckpointId,
        /// Its name.
        name: String,
        /// Community or street code.
        place: DivisionCode,
        /// Admission policy (JSON, see [`AdmissionPolicy::parse`]).
        admission: String,
    },
    /// Scan a code.
    Scan {
        /// Scan id (idempotency).
        scan_id: EventId,
        /// Who scanned whom.
        direction: ScanDirection,
        /// The person's code token.
        code_token: Vec<u8>,
        /// The venue's place code, when the person scanned the venue.
        place_token: Option<Vec<u8>>,
        /// Measured temperature, if any.
        temperature: Option<Temperature>,
    },
}

/// Admission decision for verified claims. Pure.
pub fn admit(
    policy: &AdmissionPolicy,
    claims: &CodeClaims,
    temperature: Option<Temperature>,
    now: OffsetDateTime,
) -> (bool, &'static str) {
    if temperature.is_some_and(|t| t.celsius() >= policy.max_temperature) {
        return (false, "FEVER");
    }
    match claims.colour {
        Colour::Red => (false, "RED_CODE"),
        colour if !policy.admit.contains(&colour) => (false, "COLOUR_NOT_ADMITTED"),
        Colour::Yellow => match policy.yellow_needs_negative_test_within_hours {
            Some(hours) => {
                let recent = claims
                    .negative_test_at
                    .is_some_and(|t| t <= now && now - t <= Duration::hours(i64::from(hours)));
                if recent {
                    (true, "ADMITTED_WITH_NEGATIVE_TEST")
                } else {
                    (false, "YELLOW_WITHOUT_RECENT_TEST")
                }
            }
            None => (true, "ADMITTED"),
        },
        _ => (true, "ADMITTED"),
    }
}

/// Decides a checkpoint command.
pub fn decide(
    state: &CheckpointState,
    command: &CheckpointCommand,
    ctx: &DecisionContext<'_>,
    keys: &KeyDirectory,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    match command {
        CheckpointCommand::Register {
            checkpoint_id,
            name,
            place,
            admission,
        } => {
            if state.checkpoint.is_some() {
                return Err(HealthCodeError::CheckpointAlreadyRegistered(
                    checkpoint_id.to_string(),
                ));
            }
            if !matches!(
                place.level(),
                DivisionLevel::Street | DivisionLevel::Community
            ) {
                return Err(HealthCodeError::InvalidInput {
                    field: "place",
                    rule: "a checkpoint is registered with its community or street code".into(),
                });
            }
            ctx.divisions
                .check(place)
                .map_err(|e| HealthCodeError::division("place", e))?;
            if !ctx.actor.has_health_authority_over(place) {
                return Err(HealthCodeError::Forbidden(format!(
                    "a checkpoint at {place} is registered by the street office that contains it"
                )));
            }
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 128 {
                return Err(HealthCodeError::InvalidInput {
                    field: "name",
                    rule: "must have 1 to 128 characters".into(),
                });
            }
            let admission = AdmissionPolicy::parse(admission)?;
            Ok(vec![HealthEvent::CheckpointRegistered {
                checkpoint_id: *checkpoint_id,
                name: name.to_owned(),
                place: *place,
                admission,
                by: ctx.actor.id,
                at: ctx.now,
            }])
        }
        CheckpointCommand::Scan {
            scan_id,
            direction,
            code_token,
            place_token,
            temperature,
        } => {
            let checkpoint = state.checkpoint.as_ref().ok_or_else(|| {
                HealthCodeError::CheckpointNotFound("(unregistered stream)".into())
            })?;
            if state.scans.contains(scan_id) {
                return Ok(vec![]);
            }
            if *direction == ScanDirection::PersonScansVenue {
                let token = place_token.as_ref().ok_or(HealthCodeError::InvalidInput {
                    field: "place_token",
                    rule: "required when the person scans the venue".into(),
                })?;
                let place = verify_place(keys, token)?;
                if place.checkpoint_id != checkpoint.id {
                    return Err(HealthCodeError::InvalidInput {
                        field: "place_token",
                        rule: "the place code belongs to another checkpoint".into(),
                    });
                }
            }
            let claims = verify_code(keys, code_token, ctx.now)?;
            let (admitted, reason) = admit(&checkpoint.admission, &claims, *temperature, ctx.now);
            Ok(vec![HealthEvent::CodeScanned {
                checkpoint_id: checkpoint.id,
                scan_id: *scan_id,
                code_id: claims.code_id,
                direction: *direction,
                colour: claims.colour,
                admitted,
                reason: reason.into(),
                temperature: *temperature,
                at: ctx.now,
            }])
        }
    }
}

/// The evidence a scan adds to the person's stream: a measured temperature,
/// and a venue visit when admitted.
pub fn scan_evidence(scan: &HealthEvent, place: DivisionCode) -> Vec<Evidence> {
    let HealthEvent::CodeScanned {
        checkpoint_id,
        admitted,
        temperature,
        ..
    } = scan
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(t) = temperature {
        out.push(Evidence::TemperatureMeasured {
            checkpoint: *checkpoint_id,
            place,
            temperature: *t,
        });
    }
    if *admitted {
        out.push(Evidence::VenueVisited {
            checkpoint: *checkpoint_id,
            place,
        });
    }
    out
}
