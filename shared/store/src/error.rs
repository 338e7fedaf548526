//! The store's typed errors.

use std::path::PathBuf;
use std::sync::Arc;

use crate::event::{CurrentRevision, ExpectedRevision, Position};

/// Everything that can go wrong in the event store. Each variant names what
/// it becomes at the edge: `CONFLICT` (HTTP 409), `NOT_FOUND` (404), `GONE`
/// (410), `INVALID_INPUT` (400), `UNAVAILABLE` (503) or `INTERNAL` (500).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// `CONFLICT`: optimistic concurrency check failed.
    #[error("wrong expected version on stream '{stream}': expected {expected}, actual {actual}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedRevision,
        actual: CurrentRevision,
    },
    /// `GONE`: the stream was tombstoned and can never be written again.
    #[error("stream '{stream}' has been deleted permanently (tombstoned)")]
    StreamDeleted { stream: String },
    /// `NOT_FOUND`.
    #[error("stream '{stream}' not found")]
    StreamNotFound { stream: String },
    /// `INVALID_INPUT`.
    #[error("invalid stream name '{name}': {reason}")]
    InvalidStreamName { name: String, reason: String },
    /// `INVALID_INPUT`.
    #[error("event {index} is too large: {size} bytes, the maximum is {max} bytes")]
    EventTooLarge {
        index: usize,
        size: usize,
        max: usize,
    },
    /// `INVALID_INPUT`.
    #[error("event {index}: {field} is not valid JSON: {reason}")]
    InvalidJson {
        index: usize,
        field: &'static str,
        reason: String,
    },
    /// `INVALID_INPUT`: any other rule an input breaks.
    #[error("invalid {field}: {rule}")]
    InvalidInput { field: String, rule: String },
    /// `INTERNAL`: the disk or the storage engine failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// `INTERNAL`: stored data does not match its hash chain or cannot be decoded.
    #[error("corruption at position {position}: {reason}")]
    Corruption { position: Position, reason: String },
    /// `INVALID_INPUT`: the path holds something that is not a Tongban store.
    #[error("{path} is not a Tongban event store: {reason}")]
    NotAStore { path: PathBuf, reason: String },
    /// `INVALID_INPUT`: the store was written by another format version.
    #[error("{path} holds store format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// `FORBIDDEN`: the backend refused the caller (e.g. EventStoreDB's
    /// access denied).
    #[error("access denied: {reason}")]
    AccessDenied { reason: String },
    /// `UNAVAILABLE`: the store is closed or its backend cannot be reached.
    #[error("the event store is unavailable: {reason}")]
    Unavailable { reason: String },
    /// `UNAVAILABLE`: a subscriber fell too far behind and was dropped; it can
    /// resume from its last position.
    #[error("subscription dropped: {reason}")]
    SubscriptionDropped { reason: String },
}

impl StoreError {
    pub(crate) fn io(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The `extensions.code` this error becomes in GraphQL.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongExpectedVersion { .. } => "CONFLICT",
            Self::StreamDeleted { .. } => "GONE",
            Self::StreamNotFound { .. } => "NOT_FOUND",
            Self::InvalidStreamName { .. }
            | Self::EventTooLarge { .. }
            | Self::InvalidJson { .. }
            | Self::InvalidInput { .. }
            | Self::NotAStore { .. }
            | Self::UnsupportedFormat { .. } => "INVALID_INPUT",
            Self::Io { .. } | Self::Corruption { .. } => "INTERNAL",
            Self::AccessDenied { .. } => "FORBIDDEN",
            Self::Unavailable { .. } | Self::SubscriptionDropped { .. } => "UNAVAILABLE",
        }
    }
}
