//! The health-code service's GraphQL module, merged into the gateway's
//! schema (the gateway holds no domain logic).
//!
//! A tour:
//! - [`api`]: [`HealthCodeApi`], the context data the resolvers use (the
//!   command handler, the read models, the keyring), the caller
//!   ([`caller`]), read-your-writes waits and error mapping.
//! - [`objects`]: the output types (persons, codes, scans, appeals, ...),
//!   with field-level authorisation and access recording.
//! - [`query`]: read models as queries, plus two GB/T 38963 operations
//!   that read (`queryHealthInformation`, `verifyCode`).
//! - [`mutation`]: the other GB/T 38963 operations (`declareHealth`,
//!   `declareItinerary`, `requestCodeCall`, `generateCode`,
//!   `correctInformation`), evidence recording, risk areas, policies,
//!   checkpoints, scans, appeals and overrides.
//! - [`overrides`]: the queue of bulk overrides waiting for a second
//!   official (`pendingOverrides`).
//! - [`subscription`]: the projection's change feeds.
//! - [`keys`]: region signing keys on disk; [`store`]: a type-erased store.
//!
//! The gateway authenticates the caller and puts a [`tongban_kernel::Actor`]
//! into the request's data; resolvers never see tokens.

pub mod api;
pub mod keys;
pub mod mutation;
pub mod objects;
pub mod overrides;
pub mod query;
pub mod store;
pub mod subscription;

pub use api::{caller, HealthCodeApi, Service};
pub use keys::Keyring;
pub use mutation::HealthCodeMutation;
pub use store::SharedStore;
pub use subscription::HealthCodeSubscription;

/// Every health-code query: the read models ([`query`]) and the override
/// queue ([`overrides`]).
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "HealthCodeQueries")]
pub struct HealthCodeQuery(query::HealthCodeQuery, overrides::OverrideQuery);
