//! [`SharedStore`]: any event store behind one concrete type, so the
//! service's GraphQL objects need no type parameter and the gateway can put
//! a metered or remote store behind them. (`tongban-store` implements
//! [`tongban_store::EventStore`] for every `Arc` of a store.)

use std::sync::Arc;

use tongban_store::EventStore;

/// An `Arc<dyn EventStore>`, itself an [`EventStore`].
pub type SharedStore = Arc<dyn EventStore>;
