//! The `catalog` read model: one row per service, searchable by keyword and
//! region. A region matches a service eligible for that region or for any
//! region containing it (a service of Beijing serves every community in it).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tongban_kernel::DivisionCode;
use tongban_projection::{
    ApplyError, Changes, KeyRange, Projection, ProjectionError, ReadModels, Table,
};
use tongban_store::{EventFilter, RecordedEvent};

use crate::events::CatalogEvent;
use crate::service::ServiceStatus;
use crate::types::ServiceDefinition;

/// The projection's name (its read-model namespace).
pub const CATALOG: &str = "catalog";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A service as the portal shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Stable code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Handling department.
    pub department: String,
    /// Description.
    pub description: String,
    /// Documents to provide.
    pub required_documents: Vec<String>,
    /// Eligible regions (division codes).
    pub eligible_regions: Vec<String>,
    /// The application form's JSON Schema.
    pub form_schema: Value,
    /// Promised processing time, in days.
    pub processing_days: u32,
    /// Published or withdrawn.
    pub status: ServiceStatus,
    /// 1 when published, +1 per update.
    pub version: u32,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl ServiceView {
    fn from_definition(d: &ServiceDefinition, version: u32, at: OffsetDateTime) -> Self {
        Self {
            code: d.code.to_string(),
            name: d.name.clone(),
            department: d.department.to_string(),
            description: d.description.clone(),
            required_documents: d.required_documents.clone(),
            eligible_regions: d.eligible_regions.iter().map(ToString::to_string).collect(),
            form_schema: d.form_schema.as_json().clone(),
            processing_days: d.processing_days,
            status: ServiceStatus::Published,
            version,
            updated_at: rfc3339(at),
        }
    }

    /// Whether the service is offered in `area` (an eligible region is it or contains it).
    pub fn is_offered_in(&self, area: &DivisionCode) -> bool {
        self.eligible_regions
            .iter()
            .filter_map(|r| DivisionCode::parse(r).ok())
            .any(|r| r.contains(area))
    }

    /// Whether every word of `keyword` occurs (case-insensitively) in the
    /// code, name, description, department or required documents.
    pub fn matches_keyword(&self, keyword: &str) -> bool {
        let haystack = format!(
            "{} {} {} {} {}",
            self.code,
            self.name,
            self.description,
            self.department,
            self.required_documents.join(" ")
        )
        .to_lowercase();
        keyword
            .split_whitespace()
            .all(|word| haystack.contains(&word.to_lowercase()))
    }
}

/// The projection.
#[derive(Clone)]
pub struct CatalogViews {
    /// code -> service, indexed by department.
    pub services: Table<String, ServiceView>,
}

impl Default for CatalogViews {
    fn default() -> Self {
        Self {
            services: Table::new("services").with_index("by_department", |s: &ServiceView| {
                vec![s.department.clone()]
            }),
        }
    }
}

#[async_trait]
impl Projection for CatalogViews {
    fn name(&self) -> &str {
        CATALOG
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> EventFilter {
        EventFilter::streams([format!("{}-", crate::handler::CATEGORY)])
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        for recorded in events {
            let event: CatalogEvent = recorded.json().map_err(|e| ApplyError::at(recorded, e))?;
            match event {
                CatalogEvent::ServicePublished { definition, at, .. } => {
                    let view = ServiceView::from_definition(&definition, 1, at);
                    changes.put(&self.services, &view.code.clone(), &view)?;
                }
                CatalogEvent::ServiceUpdated {
                    definition,
                    version,
                    at,
                    ..
                } => {
                    let key = definition.code.to_string();
                    let status = changes
                        .get(&self.services, &key)
                        .await?
                        .map_or(ServiceStatus::Published, |v| v.status);
                    let mut view = ServiceView::from_definition(&definition, version, at);
                    view.status = status;
                    changes.put(&self.services, &key, &view)?;
                }
                CatalogEvent::ServiceWithdrawn { code, at, .. } => {
                    let key = code.to_string();
                    if let Some(mut view) = changes.get(&self.services, &key).await? {
                        view.status = ServiceStatus::Withdrawn;
                        view.updated_at = rfc3339(at);
                        changes.put(&self.services, &key, &view)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A catalogue search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    /// Words that must all occur (case-insensitive); `None` for any.
    pub keyword: Option<String>,
    /// The applicant's area: only services offered there.
    pub region: Option<DivisionCode>,
    /// Only this department's services.
    pub department: Option<String>,
    /// Include withdrawn services (departments' own listings).
    pub include_withdrawn: bool,
}

/// Queries on the `catalog` read model.
#[derive(Clone)]
pub struct CatalogQueries {
    models: ReadModels,
    views: CatalogViews,
}

impl CatalogQueries {
    /// Queries over the projection's read models.
    pub fn new(models: ReadModels) -> Self {
        Self {
            models,
            views: CatalogViews::default(),
        }
    }

    /// One service by code.
    pub async fn service(&self, code: &str) -> Result<Option<ServiceView>, ProjectionError> {
        self.models
            .get(&self.views.services, &code.to_string())
            .await
    }

    /// Services matching `search`, by code.
    pub async fn search(&self, search: &Search) -> Result<Vec<ServiceView>, ProjectionError> {
        let rows = match &search.department {
            Some(d) => {
                self.models
                    .by_index_key(&self.views.services, "by_department", d)
                    .await?
            }
            None => {
                self.models
                    .scan_all(&self.views.services, &KeyRange::all())
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| search.include_withdrawn || v.status == ServiceStatus::Published)
            .filter(|v| search.region.as_ref().is_none_or(|r| v.is_offered_in(r)))
            .filter(|v| {
                search
                    .keyword
                    .as_deref()
                    .is_none_or(|k| v.matches_keyword(k))
            })
            .collect())
    }
}
