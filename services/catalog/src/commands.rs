//! What departments ask of the catalogue.

use crate::types::ServiceDefinition;

/// Commands on one catalogued service (stream `catalog-<code>`).
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogCommand {
    /// Put a new service in the catalogue.
    PublishService(ServiceDefinition),
    /// Replace a published service's definition (same code and department).
    UpdateService(ServiceDefinition),
    /// Take a service out of the catalogue; open applications continue.
    WithdrawService {
        /// The service.
        code: crate::types::ServiceCode,
        /// Why, for applicants and auditors.
        reason: String,
    },
}
