//! Risk areas: declared, changed and lifted at county, street or community
//! level, only by a health official of a region that contains the area.
//!
//! Stream `riskarea-<code>`. [`decide`] checks authority and transitions;
//! [`RiskMap`] folds all risk-area events into the levels in force at a time.

use std::collections::BTreeMap;
use time::OffsetDateTime;
use tongban_kernel::{Actor, DivisionCode, DivisionLevel, Divisions};

use crate::error::HealthCodeError;
use crate::events::HealthEvent;
use crate::types::RiskLevel;

/// Commands on a risk area.
#[derive(Debug, Clone, PartialEq)]
pub enum RiskAreaCommand {
    /// Declare the area at a level, or change its level if already declared.
    Declare {
        /// The area.
        area: DivisionCode,
        /// The level.
        level: RiskLevel,
    },
    /// Lift the area.
    Lift {
        /// The area.
        area: DivisionCode,
    },
}

/// The state of one risk area stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskAreaState {
    /// The level in force, if declared and not lifted.
    pub level: Option<RiskLevel>,
}

impl RiskAreaState {
    /// Folds one event (never validates).
    pub fn evolve(mut self, event: &HealthEvent) -> Self {
        match event {
            HealthEvent::RiskAreaDeclared { level, .. } => self.level = Some(*level),
            HealthEvent::RiskLevelChanged { to, .. } => self.level = Some(*to),
            HealthEvent::RiskAreaLifted { .. } => self.level = None,
            _ => {}
        }
        self
    }
}

/// Decides a risk-area command.
pub fn decide(
    state: &RiskAreaState,
    command: &RiskAreaCommand,
    actor: &Actor,
    divisions: &Divisions,
    now: OffsetDateTime,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    let area = match command {
        RiskAreaCommand::Declare { area, .. } | RiskAreaCommand::Lift { area } => *area,
    };
    if !matches!(
        area.level(),
        DivisionLevel::County | DivisionLevel::Street | DivisionLevel::Community
    ) {
        return Err(HealthCodeError::InvalidInput {
            field: "area",
            rule: "risk areas are declared at county, street or community level".into(),
        });
    }
    divisions
        .check(&area)
        .map_err(|e| HealthCodeError::division("area", e))?;
    if !actor.has_health_authority_over(&area) {
        return Err(HealthCodeError::Forbidden(format!(
            "only a health official of a region containing {area} may declare or lift it"
        )));
    }
    Ok(match (command, state.level) {
        (RiskAreaCommand::Declare { level, .. }, None) => {
            vec![HealthEvent::RiskAreaDeclared {
                area,
                level: *level,
                by: actor.id,
                at: now,
            }]
        }
        (RiskAreaCommand::Declare { level, .. }, Some(current)) if current == *level => vec![],
        (RiskAreaCommand::Declare { level, .. }, Some(current)) => {
            vec![HealthEvent::RiskLevelChanged {
                area,
                from: current,
                to: *level,
                by: actor.id,
                at: now,
            }]
        }
        (RiskAreaCommand::Lift { .. }, None) => vec![],
        (RiskAreaCommand::Lift { .. }, Some(_)) => {
            vec![HealthEvent::RiskAreaLifted {
                area,
                by: actor.id,
                at: now,
            }]
        }
    })
}

/// All risk areas with their history, answering "what was in force at t".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskMap {
    history: BTreeMap<DivisionCode, Vec<(OffsetDateTime, Option<RiskLevel>)>>,
}

impl RiskMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one risk-area event.
    pub fn apply(&mut self, event: &HealthEvent) {
        let (area, at, level) = match event {
            HealthEvent::RiskAreaDeclared {
                area, level, at, ..
            } => (area, at, Some(*level)),
            HealthEvent::RiskLevelChanged { area, to, at, .. } => (area, at, Some(*to)),
            HealthEvent::RiskAreaLifted { area, at, .. } => (area, at, None),
            _ => return,
        };
        let entries = self.history.entry(*area).or_default();
        let index = entries.partition_point(|(t, _)| t <= at);
        entries.insert(index, (*at, level));
    }

    /// Builds a map from events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a HealthEvent>) -> Self {
        let mut map = Self::new();
        for e in events {
            map.apply(e);
        }
        map
    }

    /// The level of `area` in force at `at`.
    pub fn level_at(&self, area: &DivisionCode, at: OffsetDateTime) -> Option<RiskLevel> {
        let entries = self.history.get(area)?;
        let index = entries.partition_point(|(t, _)| *t <= at);
        index.checked_sub(1).and_then(|i| entries[i].1)
    }

    /// Areas in force at `at` with at least `min` level.
    pub fn areas_at(
        &self,
        at: OffsetDateTime,
        min: RiskLevel,
    ) -> impl Iterator<Item = (DivisionCode, RiskLevel)> + '_ {
        self.history.keys().filter_map(move |area| {
            self.level_at(area, at)
                .filter(|l| *l >= min)
                .map(|l| (*area, l))
        })
    }

    /// The highest level of an area in force at `at` that contains `place`.
    pub fn level_containing(&self, place: &DivisionCode, at: OffsetDateTime) -> Option<RiskLevel> {
        self.areas_at(at, RiskLevel::Low)
            .filter(|(area, _)| area.contains(place))
            .map(|(_, l)| l)
            .max()
    }

    /// The highest level of an area in force at `at` that lies in `county`
    /// or contains it ("a county that contains a risk area").
    pub fn level_in_county(&self, county: &DivisionCode, at: OffsetDateTime) -> Option<RiskLevel> {
        self.areas_at(at, RiskLevel::Low)
            .filter(|(area, _)| county.contains(area) || area.contains(county))
            .map(|(_, l)| l)
            .max()
    }
}
