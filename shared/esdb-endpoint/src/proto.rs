//! Code generated from `proto/*.proto` (the EventStoreDB client protocol).
//! Modules follow the protobuf packages, so cross-package references resolve.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod event_store {
    pub mod client {
        tonic::include_proto!("event_store.client");

        pub mod streams {
            tonic::include_proto!("event_store.client.streams");
        }
        pub mod persistent_subscriptions {
            tonic::include_proto!("event_store.client.persistent_subscriptions");
        }
        pub mod gossip {
            tonic::include_proto!("event_store.client.gossip");
        }
        pub mod server_features {
            tonic::include_proto!("event_store.client.server_features");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub use event_store::client as shared;
pub use event_store::client::{
    gossip, persistent_subscriptions as persistent, server_features, streams,
};
