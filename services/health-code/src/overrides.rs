//! Manual colour overrides, stream `override-<region>`: the abuse path,
//! so it is fenced.
//!
//! An override names its official, its legal basis, its reason and the appeal
//! or case it answers, and lapses at a set time. When the persons overridden in
//! a region within the configured window exceed the threshold, the request
//! needs a second, different official's approval and raises an alert event.
//! Once effective, the handler applies it to each person
//! ([`OverrideState::applications`]).

use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};
use tongban_kernel::{ActorId, DivisionCode, PersonId};
use uuid::Uuid;

use crate::context::DecisionContext;
use crate::error::HealthCodeError;
use crate::events::HealthEvent;
use crate::person::PersonCommand;
use crate::types::{Colour, OverrideAnswers};

/// Limits on overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideConfig {
    /// Persons a region may override within `window` without a second approval.
    pub threshold: usize,
    /// The counting window.
    pub window: Duration,
    /// The longest an override may last.
    pub max_duration: Duration,
}

impl Default for OverrideConfig {
    fn default() -> Self {
        Self {
            threshold: 10,
            window: Duration::hours(24),
            max_duration: Duration::days(30),
        }
    }
}

/// A recorded override request.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideRequest {
    /// The region.
    pub region: DivisionCode,
    /// Persons affected.
    pub persons: Vec<PersonId>,
    /// Imposed colour.
    pub colour: Colour,
    /// Requesting official.
    pub official: ActorId,
    /// Legal basis.
    pub legal_basis: String,
    /// Reason.
    pub reason: String,
    /// What it answers.
    pub answers: OverrideAnswers,
    /// When it lapses.
    pub expires_at: OffsetDateTime,
    /// When requested.
    pub at: OffsetDateTime,
    /// Whether it is effective (no approval needed, or approved).
    pub effective: bool,
}

/// The folded state of a region's override stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverrideState {
    /// Requests by id.
    pub requests: BTreeMap<Uuid, OverrideRequest>,
}

impl OverrideState {
    /// Folds one event.
    pub fn evolve(mut self, event: &HealthEvent) -> Self {
        match event {
            HealthEvent::OverrideRequested {
                override_id,
                region,
                persons,
                colour,
                official,
                legal_basis,
                reason,
                answers,
                expires_at,
                requires_second_approval,
                at,
            } => {
                self.requests.insert(
                    *override_id,
                    OverrideRequest {
                        region: *region,
                        persons: persons.clone(),
                        colour: *colour,
                        official: *official,
                        legal_basis: legal_basis.clone(),
                        reason: reason.clone(),
                        answers: answers.clone(),
                        expires_at: *expires_at,
                        at: *at,
                        effective: !requires_second_approval,
                    },
                );
            }
            HealthEvent::OverrideApproved { override_id, .. } => {
                if let Some(r) = self.requests.get_mut(override_id) {
                    r.effective = true;
                }
            }
            _ => {}
        }
        self
    }

    /// The person commands that apply an effective override.
    pub fn applications(&self, override_id: &Uuid) -> Vec<(PersonId, PersonCommand)> {
        let Some(r) = self.requests.get(override_id).filter(|r| r.effective) else {
            return Vec::new();
        };
        r.persons
            .iter()
            .map(|p| {
                (
                    *p,
                    PersonCommand::ApplyOverride {
                        override_id: *override_id,
                        region: r.region,
                        colour: r.colour,
                        official: r.official,
                        legal_basis: r.legal_basis.clone(),
                        reason: r.reason.clone(),
                        answers: r.answers.clone(),
                        expires_at: r.expires_at,
                    },
                )
            })
            .collect()
    }
}

/// Commands on a region's overrides.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideCommand {
    /// Request an override.
    Request {
        /// Its id.
        override_id: Uuid,
        /// The region (whose colour is overridden).
        region: DivisionCode,
        /// Persons affected.
        persons: Vec<PersonId>,
        /// Imposed colour.
        colour: Colour,
        /// Legal basis cited.
        legal_basis: String,
        /// Reason.
        reason: String,
        /// What it answers.
        answers: OverrideAnswers,
        /// When it lapses.
        expires_at: OffsetDateTime,
    },
    /// A second official approves a pending request.
    Approve {
        /// The request.
        override_id: Uuid,
    },
}

fn text(field: &'static str, value: &str) -> Result<String, HealthCodeError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 1000 {
        return Err(HealthCodeError::InvalidInput {
            field,
            rule: "must have 1 to 1000 characters".into(),
        });
    }
    Ok(v.to_owned())
}

/// Decides an override command.
pub fn decide(
    state: &OverrideState,
    command: &OverrideCommand,
    ctx: &DecisionContext<'_>,
    config: &OverrideConfig,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    match command {
        OverrideCommand::Request {
            override_id,
            region,
            persons,
            colour,
            legal_basis,
            reason,
            answers,
            expires_at,
        } => {
            if state.requests.contains_key(override_id) {
                return Ok(vec![]);
            }
            if !ctx.actor.has_health_authority_over(region) {
                return Err(HealthCodeError::Forbidden(format!(
                    "only a health official of {region} may override colours there"
                )));
            }
            if persons.is_empty() {
                return Err(HealthCodeError::InvalidInput {
                    field: "persons",
                    rule: "must name at least one person".into(),
                });
            }
            let legal_basis = text("legal_basis", legal_basis)?;
            let reason = text("reason", reason)?;
            if let OverrideAnswers::Case(case) = answers {
                text("answers.case", case)?;
            }
            if *expires_at <= ctx.now || *expires_at > ctx.now + config.max_duration {
                return Err(HealthCodeError::InvalidInput {
                    field: "expires_at",
                    rule: format!(
                        "must be after now and at most {} days ahead",
                        config.max_duration.whole_days()
                    ),
                });
            }
            let mut distinct = persons.clone();
            distinct.sort();
            distinct.dedup();
            let since = ctx.now - config.window;
            let in_window: usize = state
                .requests
                .values()
                .filter(|r| r.region == *region && r.at > since)
                .map(|r| r.persons.len())
                .sum::<usize>()
                + distinct.len();
            let requires = in_window > config.threshold;
            let mut events = vec![HealthEvent::OverrideRequested {
                override_id: *override_id,
                region: *region,
                persons: distinct,
                colour: *colour,
                official: ctx.actor.id,
                legal_basis,
                reason,
                answers: answers.clone(),
                expires_at: *expires_at,
                requires_second_approval: requires,
                at: ctx.now,
            }];
            if requires {
                events.push(HealthEvent::OverrideAlertRaised {
                    override_id: *override_id,
                    region: *region,
                    official: ctx.actor.id,
                    persons_in_window: in_window,
                    threshold: config.threshold,
                    at: ctx.now,
                });
            }
            Ok(events)
        }
        OverrideCommand::Approve { override_id } => {
            let request = state
                .requests
                .get(override_id)
                .filter(|r| !r.effective)
                .ok_or_else(|| HealthCodeError::OverrideNotPending(override_id.to_string()))?;
            if request.official == ctx.actor.id {
                return Err(HealthCodeError::SameOfficialApproval(
                    override_id.to_string(),
                ));
            }
            if !ctx.actor.has_health_authority_over(&request.region) {
                return Err(HealthCodeError::Forbidden(format!(
                    "only a health official of {} may approve this override",
                    request.region
                )));
            }
            Ok(vec![HealthEvent::OverrideApproved {
                override_id: *override_id,
                approver: ctx.actor.id,
                at: ctx.now,
            }])
        }
    }
}
