//! Tongban's EventStoreDB-compatible endpoint: any [`EventStore`] served
//! over the EventStoreDB/KurrentDB gRPC client protocol, so the `esdb`
//! backend and unmodified official clients (Python, Node.js, Rust, …) can
//! talk to an embedded Tongban store.
//!
//! A tour:
//! - `proto/*.proto` and [`proto`]: the protocol's packages, services,
//!   messages and field numbers, compiled by `build.rs` with `protox` (no
//!   system `protoc`).
//! - [`server`]: [`serve`] and [`Endpoint`] (bind, learn the address, serve,
//!   TLS), putting the services together.
//! - `streams`: Read (streams, `$all`, subscriptions with filters and
//!   checkpoints), Append, BatchAppend, Delete, Tombstone.
//! - `persistent`: persistent subscriptions (competing consumers, retries,
//!   parking, checkpoints kept in the store so a restart resumes).
//! - `cluster`: ServerFeatures and Gossip (a one-node cluster).
//! - `auth`: basic authentication (constant-time) and the admin-only rule
//!   for `$` streams.
//! - `tls`: the certificate and key from PEM files, handshakes off the
//!   accept loop.
//! - `convert`: store types ↔ messages, store errors → gRPC statuses with
//!   EventStoreDB's `exception` metadata.
//! - [`config`]: listen address (127.0.0.1:2113 by default), TLS, users,
//!   and [`EndpointConfig::protection`]: no non-loopback address without
//!   users and TLS.
//!
//! [`EventStore`]: tongban_store::EventStore

// gRPC handlers and their helpers fail with `tonic::Status` by design.
#![allow(clippy::result_large_err)]

mod auth;
mod cluster;
pub mod config;
mod convert;
pub mod error;
mod filter;
mod persistent;
pub mod proto;
pub mod server;
mod shutdown;
mod streams;
mod tls;

pub use cluster::PROTOCOL_VERSION;
pub use config::{
    is_loopback, EndpointConfig, Missing, Protection, Secret, TlsFiles, User, DEFAULT_PORT,
};
pub use error::EndpointError;
pub use server::{serve, Endpoint, EndpointHandle};
