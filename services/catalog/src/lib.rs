//! Tongban's service catalogue: what government services exist, who offers
//! them, where, and what the application form asks for.
//!
//! A tour:
//! - [`types`]: parsed value types: [`ServiceCode`], [`DepartmentCode`],
//!   [`FormSchema`] (a JSON Schema checked against its meta-schema when
//!   parsed, with [`FormSchema::validate`] naming the field and the rule of
//!   every violation) and [`ServiceDefinition`].
//! - [`commands`]: `PublishService`, `UpdateService`, `WithdrawService`.
//! - [`events`]: `ServicePublished.v1`, `ServiceUpdated.v1`,
//!   `ServiceWithdrawn.v1`, each carrying the full definition the read side
//!   needs.
//! - [`service`]: the catalogued-service aggregate: pure `decide` and
//!   `evolve`.
//! - [`error`]: [`CatalogError`], one variant per rule.
//! - [`handler`]: [`CatalogService`]: load the `catalog-<code>` stream,
//!   decide, append with the expected revision, retry on conflict.
//! - [`projections`]: the `catalog` read model, searchable by keyword and
//!   region (a service eligible for a region serves everything inside it).
//! - [`graphql`]: the GraphQL module the gateway merges in (search,
//!   publish, update, withdraw).

pub mod commands;
pub mod error;
pub mod events;
pub mod graphql;
pub mod handler;
pub mod projections;
pub mod service;
pub mod types;

pub use commands::CatalogCommand;
pub use error::CatalogError;
pub use events::CatalogEvent;
pub use handler::CatalogService;
pub use projections::{CatalogQueries, CatalogViews, Search, ServiceView};
pub use service::{ServiceState, ServiceStatus};
pub use types::{DepartmentCode, FieldViolation, FormSchema, ServiceCode, ServiceDefinition};
