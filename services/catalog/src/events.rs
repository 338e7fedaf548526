//! The catalogue's facts, with stable type names and versions. Each carries
//! the full definition, so the read side never has to merge.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tongban_kernel::ActorId;

use crate::types::{ServiceCode, ServiceDefinition};

/// Every fact of the service catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CatalogEvent {
    /// A department published a service.
    #[serde(rename = "ServicePublished.v1")]
    ServicePublished {
        /// The service as published.
        definition: ServiceDefinition,
        /// Who published it.
        by: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A department changed a service; `definition` is the whole new version.
    #[serde(rename = "ServiceUpdated.v1")]
    ServiceUpdated {
        /// The service as it now is.
        definition: ServiceDefinition,
        /// Its version after the change (1 is the published one).
        version: u32,
        /// Who changed it.
        by: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// A department withdrew a service.
    #[serde(rename = "ServiceWithdrawn.v1")]
    ServiceWithdrawn {
        /// The service.
        code: ServiceCode,
        /// Why.
        reason: String,
        /// Who withdrew it.
        by: ActorId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

impl CatalogEvent {
    /// The stable type name used as the store's event type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ServicePublished { .. } => "ServicePublished.v1",
            Self::ServiceUpdated { .. } => "ServiceUpdated.v1",
            Self::ServiceWithdrawn { .. } => "ServiceWithdrawn.v1",
        }
    }
}
