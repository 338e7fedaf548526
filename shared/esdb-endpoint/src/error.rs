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
    #[error("the TLS configuration was refused: {0}")]
    Tls(#[source] tonic::transport::Error),
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
