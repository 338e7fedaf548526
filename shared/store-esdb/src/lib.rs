//! The `esdb` backend of Tongban's event store: an EventStoreDB/KurrentDB
//! node or cluster through the official `eventstore` client (v4), behind
//! the same [`EventStore`] trait and conformance suite as the embedded
//! store.
//!
//! A tour:
//! - [`config`]: connection string (`esdb://host:2113?tls=false`,
//!   `esdb+discover://…` for clusters), retry backoff, chain witness
//!   settings.
//! - [`store`]: [`EsdbStore`], the trait implementation: expected
//!   revisions, idempotent appends, reads of streams and `$all`, metadata,
//!   soft delete and tombstone, with retries on transient failures.
//! - `subscription`: catch-up subscriptions with server-side filters that
//!   resubscribe from their last position after a connection loss.
//! - `chain`: the chain witness. Several writers may append at once, so the
//!   hash chain follows `$all` order after commit: the witness reads `$all`,
//!   hashes it, and appends signed checkpoints to the `$tongban-chain` system stream;
//!   `verify_chain` recomputes and compares.
//! - `convert` and [`error`]: client types and errors to the store's.
//!
//! Positions on this backend are EventStoreDB commit positions: they grow
//! with commit order but are not consecutive.
//!
//! [`EventStore`]: tongban_store::EventStore

mod chain;
pub mod config;
mod convert;
pub mod error;
pub mod store;
mod subscription;

pub use chain::{CHECKPOINT_EVENT_TYPE, CHECKPOINT_STREAM};
pub use config::{EsdbConfig, RetryPolicy};
pub use error::EsdbError;
pub use store::EsdbStore;
