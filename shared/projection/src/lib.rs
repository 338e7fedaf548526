//! Tongban's read side: what the log is projected into, who is told about
//! changes, and how auditors travel back in time.
//!
//! A tour:
//! - [`read_model`]: storage behind the [`ReadModelStore`] trait: typed
//!   tables ([`Table`]) with order-preserving keys, prefix and range scans,
//!   secondary indexes, and a [`WriteBatch`](read_model::WriteBatch)
//!   committed atomically with the projection's checkpoint. Backends:
//!   [`EmbeddedReadModels`] (durable, redb, one file per projection beside
//!   the event store) and [`MemoryReadModels`] (scratch). A PostgreSQL
//!   backend implements the same trait; services never see which.
//! - [`projection`]: the [`Projection`] trait (name, version, filter,
//!   `apply(batch, &mut Changes)`) and [`Changes`], a batch's view of its
//!   read model with its own writes visible.
//! - [`replay`]: the one utility that feeds committed events to a
//!   projection and commits each batch with its checkpoint; the runner's
//!   catch-up and rebuilds and the auditors' time travel all use it.
//! - [`runner`]: [`ProjectionRunner`] runs many projections side by side,
//!   each from its own checkpoint, rebuilding when the version changes or an
//!   operator asks, with a [`ProjectionStatus`] each; a failing projection
//!   stops alone.
//! - [`feed`]: departments' change feeds: change records keyed by a cursor
//!   in the global log, bounded live buffers, slow consumers dropped with a
//!   cursor to resume from, scope filters from the caller's authorisation.
//! - [`lease`]: one owner among replicas for a process manager, kept in
//!   the log (`lease-<name>`, taken with an expected revision, renewed,
//!   taken over once expired), and [`Leased`], a projection run only by
//!   the lease's holder.
//! - [`audit`]: stream history and `$all` between positions or times, paged
//!   or streamed; read models as of a position or a time.
//! - [`example`]: a small projection (counts per stream category, a code
//!   colour feed) used by the tests, the crash child and the benchmark.
//!
//! Binaries: `projection-bench` (catch-up speed, peak memory, lag under
//! load) and `projection-crash-child` (the process the SIGKILL test kills).

pub mod audit;
pub mod error;
pub mod example;
pub mod feed;
pub mod lease;
pub mod projection;
pub mod read_model;
pub mod replay;
pub mod runner;

pub use audit::{Auditor, LogPoint, Page, TimeTravel};
pub use error::ProjectionError;
pub use feed::{ChangeDraft, ChangeRecord, Feed, FeedCursor, FeedScope};
pub use lease::{Lease, LeaseConfig, Leased};
pub use projection::{ApplyError, Changes, Projection};
pub use read_model::embedded::EmbeddedReadModels;
pub use read_model::memory::MemoryReadModels;
pub use read_model::{Checkpoint, Encoding, Key, KeyRange, ReadModelStore, ReadModels, Table};
pub use runner::{ProjectionRunner, ProjectionStatus, RunState, RunnerConfig};
