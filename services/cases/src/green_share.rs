//! The work-resumption review's view of an enterprise's workforce: how many
//! of its registered employees hold a green code, as counts only. No
//! employee's identity, colour or data ever leaves this module.
//!
//! The gateway implements [`GreenShare`] (or uses [`HealthCodeGreenShare`]
//! with its own [`EmployeeRoster`]); the cases domain only sees the counts.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tongban_health_code::projections::HealthCodeViews;
use tongban_kernel::PersonId;
use tongban_projection::ReadModels;

use crate::error::CaseError;
use crate::types::EnterpriseId;

/// Counts of an enterprise's registered employees by current home-region
/// colour. Counts only, by design.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadCount {
    /// Registered employees.
    pub registered: u32,
    /// Holding a green code.
    pub green: u32,
    /// Holding a yellow code.
    pub yellow: u32,
    /// Holding a red code.
    pub red: u32,
    /// Without a code (not registered with the health code, or erased).
    pub unknown: u32,
}

impl HeadCount {
    /// The green share in percent (one decimal), `None` with no employees.
    pub fn green_percent(&self) -> Option<f64> {
        (self.registered > 0)
            .then(|| (f64::from(self.green) * 1000.0 / f64::from(self.registered)).round() / 10.0)
    }
}

/// What the work-resumption review needs from the health-code read side.
#[async_trait]
pub trait GreenShare: Send + Sync {
    /// Counts of `enterprise`'s registered employees by colour.
    async fn green_share(&self, enterprise: EnterpriseId) -> Result<HeadCount, CaseError>;
}

/// Who works for an enterprise (the registry of employment, outside this domain).
#[async_trait]
pub trait EmployeeRoster: Send + Sync {
    /// The persons registered as `enterprise`'s employees.
    async fn employees(&self, enterprise: EnterpriseId) -> Result<Vec<PersonId>, CaseError>;
}

/// [`GreenShare`] computed from the health-code projection's `persons` table.
pub struct HealthCodeGreenShare<R: EmployeeRoster> {
    roster: R,
    models: ReadModels,
    views: HealthCodeViews,
}

impl<R: EmployeeRoster> HealthCodeGreenShare<R> {
    /// Over the `health_code` read models and a roster.
    pub fn new(roster: R, health_code_models: ReadModels) -> Self {
        Self {
            roster,
            models: health_code_models,
            views: HealthCodeViews::default(),
        }
    }
}

#[async_trait]
impl<R: EmployeeRoster> GreenShare for HealthCodeGreenShare<R> {
    async fn green_share(&self, enterprise: EnterpriseId) -> Result<HeadCount, CaseError> {
        let mut count = HeadCount::default();
        for person in self.roster.employees(enterprise).await? {
            count.registered += 1;
            let view = self
                .models
                .get(&self.views.tables.persons, &person.to_string())
                .await?;
            let colour = view
                .filter(|v| !v.erased)
                .and_then(|v| v.home_colour().map(|c| c.colour.clone()));
            match colour.as_deref() {
                Some("green") => count.green += 1,
                Some("yellow") => count.yellow += 1,
                Some("red") => count.red += 1,
                _ => count.unknown += 1,
            }
        }
        Ok(count)
    }
}
