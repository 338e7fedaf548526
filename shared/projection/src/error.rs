//! The read side's typed errors.

use std::sync::Arc;

use tongban_store::{Position, StoreError};

use crate::feed::FeedCursor;

/// Everything that can go wrong on the read side. Each variant names what it
/// becomes at the edge: `CONFLICT` (HTTP 409), `NOT_FOUND` (404),
/// `INVALID_INPUT` (400), `UNAVAILABLE` (503) or `INTERNAL` (500).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProjectionError {
    /// `INTERNAL`: the read-model storage failed.
    #[error("read-model storage failed while {context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// `INTERNAL`: a stored row or key cannot be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },
    /// `INTERNAL`: a value cannot be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode { what: String, reason: String },
    /// `CONFLICT`: another runner moved this projection's checkpoint (two
    /// runners on one read-model store); nothing was written.
    #[error(
        "projection '{projection}' checkpoint moved under us: expected {expected:?}, found {found:?}"
    )]
    CheckpointConflict {
        projection: String,
        expected: Option<Position>,
        found: Option<Position>,
    },
    /// `INTERNAL`: a projection refused an event; it stops until an operator
    /// restarts or rebuilds it.
    #[error("projection '{projection}' failed on event {position} ({event_type} in '{stream}'): {reason}")]
    Apply {
        projection: String,
        position: Position,
        stream: String,
        event_type: String,
        reason: String,
    },
    /// `NOT_FOUND`.
    #[error("no projection named '{name}' is running")]
    UnknownProjection { name: String },
    /// `INVALID_INPUT`.
    #[error("invalid {field}: {rule}")]
    InvalidInput { field: String, rule: String },
    /// `TIMEOUT`: a read model did not reach a log position within the
    /// wait it was given (read-your-writes).
    #[error(
        "the read model '{projection}' did not reach log position {position} within {waited_ms} ms; retry later"
    )]
    Timeout {
        projection: String,
        position: u64,
        waited_ms: u128,
    },
    /// Whatever the event store answered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `UNAVAILABLE`: a feed consumer fell more than the buffer behind and
    /// was dropped so that it slows no one else; resume from `resume_from`.
    #[error(
        "feed '{feed}': consumer dropped after falling {missed} records behind (buffer {buffer}); resume from cursor {}",
        resume_from.map_or_else(|| "the start".to_string(), |c| c.to_string())
    )]
    ConsumerTooSlow {
        feed: String,
        resume_from: Option<FeedCursor>,
        missed: u64,
        buffer: usize,
    },
    /// `UNAVAILABLE`: the feed's projection stopped; resume from
    /// `resume_from` once it runs again.
    #[error(
        "feed '{feed}' closed; resume from cursor {}",
        resume_from.map_or_else(|| "the start".to_string(), |c| c.to_string())
    )]
    FeedClosed {
        feed: String,
        resume_from: Option<FeedCursor>,
    },
    /// `UNAVAILABLE`: the runner was shut down.
    #[error("the projection runner is shut down")]
    ShutDown,
}

impl ProjectionError {
    pub(crate) fn storage(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Storage {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The `extensions.code` this error becomes in GraphQL.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Storage { .. }
            | Self::Decode { .. }
            | Self::Encode { .. }
            | Self::Apply { .. } => "INTERNAL",
            Self::CheckpointConflict { .. } => "CONFLICT",
            Self::UnknownProjection { .. } => "NOT_FOUND",
            Self::InvalidInput { .. } => "INVALID_INPUT",
            Self::Timeout { .. } => "TIMEOUT",
            Self::Store(e) => e.code(),
            Self::ShutDown | Self::ConsumerTooSlow { .. } | Self::FeedClosed { .. } => {
                "UNAVAILABLE"
            }
        }
    }
}
