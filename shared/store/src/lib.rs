//! Tongban's event store: every government fact is an event in one log.
//!
//! A tour:
//! - [`stream_name`], [`event`], [`filter`]: the vocabulary (stream names,
//!   events to append and recorded events, positions, expected revisions,
//!   filters), shared by every backend.
//! - [`store`]: the [`EventStore`] trait with EventStoreDB/KurrentDB
//!   semantics: atomic, idempotent appends; one global log (`$all`) in commit
//!   order; catch-up subscriptions; stream metadata, soft delete, tombstone.
//! - [`chain`]: the hash chain over the global log and its canonical encoding.
//! - [`embedded`]: the default backend, durable on disk (redb), with group
//!   commit.
//! - [`testkit`]: the conformance suite every backend runs with one call.
//! - [`private_fs`]: owner-only directories and files (0700/0600), atomic
//!   writes of small secrets; every crate that writes under the data
//!   directory uses it.

pub mod chain;
pub mod embedded;
pub mod error;
pub mod event;
pub mod filter;
pub mod metadata;
pub mod private_fs;
pub mod store;
pub mod stream_name;
pub mod testkit;

pub use chain::{ChainHash, ChainReport, Head};
pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use event::{
    validate_events, AppendResult, CurrentRevision, EventData, ExpectedRevision, Position,
    RecordedEvent, MAX_EVENT_SIZE,
};
pub use filter::EventFilter;
pub use metadata::StreamMetadata;
pub use store::{
    Direction, EventStore, PositionRange, ReadFrom, SubscribeFrom, Subscription,
    SubscriptionMessage,
};
pub use stream_name::StreamName;
