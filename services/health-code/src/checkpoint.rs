//! Checkpoints (venues: markets, offices, stations), stream `checkpoint-<id>`.
//!
//! A checkpoint is registered by a health official of the street (or wider
//! region) that contains it, with its community or street code and an
//! admission policy. Scans work both ways: a guard scans the person's code,
//! or the person scans the venue's signed place code and shows their own
//! code. A scan verifies signature and expiry, then decides on the holder's
//! status at the log head ([`CodeStatus::online`]): a code issued before the
//! holder's latest colour change in its region is void (`CODE_SUPERSEDED`)
//! and the current colour, not the one signed into the code, is what the
//! guard sees. Only when the holder is not known to this hub (or a device
//! has no connection to it) does the signed colour decide, within the
//! code's short validity, and the verdict says so ([`CheckMode::Offline`]).
//! The scan records `CodeScanned` with the result and why; an admitted scan
//! is a venue visit and a measured temperature is evidence, both appended
//! to the person's stream by the handler ([`scan_evidence`]).

use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};
use tongban_kernel::{CheckpointId, DivisionCode, DivisionLevel, EventId};

use crate::context::DecisionContext;
use crate::error::HealthCodeError;
use crate::events::{Evidence, HealthEvent};
use crate::person::PersonState;
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

/// How a code was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Against the holder's status at the log head: the holder is known to
    /// this hub.
    Online,
    /// Against the colour signed into the code alone, within the code's
    /// validity: no connection to the hub, or a holder it does not know.
    Offline,
}

/// What admission decides on: the holder's status at the log head, or the
/// code's signed claims when checked offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeStatus {
    /// How it was checked.
    pub mode: CheckMode,
    /// The colour that decides: the holder's current colour in the code's
    /// region online, the signed colour offline.
    pub colour: Colour,
    /// The colour signed into the code.
    pub signed_colour: Colour,
    /// The holder's colour changed after the code was issued: the code is
    /// void. Never known offline.
    pub superseded: bool,
    /// The newest negative test (sample time) the decision may rely on.
    pub negative_test_at: Option<OffsetDateTime>,
}

impl CodeStatus {
    /// The status a code's signed claims state by themselves.
    pub fn offline(claims: &CodeClaims) -> Self {
        Self {
            mode: CheckMode::Offline,
            colour: claims.colour,
            signed_colour: claims.colour,
            superseded: false,
            negative_test_at: claims.negative_test_at,
        }
    }

    /// The status of a code at the log head, from its holder's folded
    /// stream: void if the colour in the code's region changed after it was
    /// issued, and the current colour either way. `None` when the code is
    /// not one of `holder`'s.
    pub fn online(claims: &CodeClaims, holder: &PersonState, now: OffsetDateTime) -> Option<Self> {
        let code = holder.codes.get(&claims.code_id)?;
        let superseded = holder.code_superseded(&claims.code_id)?;
        let colour = holder
            .colours
            .get(&code.region)
            .map_or(code.colour, |c| c.colour);
        Some(Self {
            mode: CheckMode::Online,
            colour,
            signed_colour: claims.colour,
            superseded,
            negative_test_at: holder.latest_negative_test(now),
        })
    }
}

/// Verifies a code token (signature, key, expiry) and says what its status
/// is: online from `holder` (the state of the person the code names, read
/// at the log head) when the code is theirs, else offline from the signed
/// claims. Pure.
pub fn check_code(
    keys: &KeyDirectory,
    token: &[u8],
    holder: Option<&PersonState>,
    now: OffsetDateTime,
) -> Result<(CodeClaims, CodeStatus), HealthCodeError> {
    let claims = verify_code(keys, token, now)?;
    let status = holder
        .and_then(|h| CodeStatus::online(&claims, h, now))
        .unwrap_or_else(|| CodeStatus::offline(&claims));
    Ok((claims, status))
}

/// Admission decision for a checked code. Pure. A measured fever denies
/// first, then a void code (`CODE_SUPERSEDED`: the guard asks for a fresh
/// code), then the colour that decides.
pub fn admit(
    policy: &AdmissionPolicy,
    status: &CodeStatus,
    temperature: Option<Temperature>,
    now: OffsetDateTime,
) -> (bool, &'static str) {
    if temperature.is_some_and(|t| t.celsius() >= policy.max_temperature) {
        return (false, "FEVER");
    }
    if status.superseded {
        return (false, "CODE_SUPERSEDED");
    }
    match status.colour {
        Colour::Red => (false, "RED_CODE"),
        colour if !policy.admit.contains(&colour) => (false, "COLOUR_NOT_ADMITTED"),
        Colour::Yellow => match policy.yellow_needs_negative_test_within_hours {
            Some(hours) => {
                let recent = status
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

/// Decides a checkpoint command. A scan decides on `holder`, the state of
/// the person the code names at the log head (see [`check_code`]); `None`
/// (a holder this hub does not know) decides offline.
pub fn decide(
    state: &CheckpointState,
    command: &CheckpointCommand,
    ctx: &DecisionContext<'_>,
    keys: &KeyDirectory,
    holder: Option<&PersonState>,
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
            let (claims, status) = check_code(keys, code_token, holder, ctx.now)?;
            let (admitted, reason) = admit(&checkpoint.admission, &status, *temperature, ctx.now);
            Ok(vec![HealthEvent::CodeScanned {
                checkpoint_id: checkpoint.id,
                scan_id: *scan_id,
                code_id: claims.code_id,
                direction: *direction,
                colour: status.colour,
                admitted,
                reason: reason.into(),
                temperature: *temperature,
                checked_online: status.mode == CheckMode::Online,
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
