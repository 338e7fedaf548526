//! What can stop the endpoint from serving.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of [`crate::serve`] and [`crate::Endpoint`]. None of them reach a
/// client: requests fail with gRPC statuses (see [`crate::convert`]).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The listen address is taken or not ours.
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate or key file could not be read.
    #[error("failed to read the TLS {what} at {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate and key do not form a usable identity.
    #[error("the TLS certificate and key were refused: {reason}")]
    Tls { reason: String },
    /// A non-loopback address without users and TLS (see
    /// [`crate::EndpointConfig::protection`]).
    #[error(
        "refusing to serve the EventStoreDB protocol on {addr}, which other machines can reach, \
         with {missing}; configure users and TLS, or listen on a loopback address"
    )]
    Insecure {
        addr: SocketAddr,
        missing: crate::config::Missing,
    },
    /// The gRPC server failed while serving.
    #[error("the gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    /// A configuration value is invalid.
    #[error("invalid endpoint configuration {field}: {rule}")]
    Config { field: String, rule: String },
    /// Persistent-subscription state could not be loaded from the store.
    #[error("failed to load persistent subscriptions: {0}")]
    Store(#[from] tongban_store::StoreError),
}
