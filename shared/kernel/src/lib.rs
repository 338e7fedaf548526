//! Shared kernel of Tongban: the vocabulary every domain speaks.
//!
//! A tour:
//! - [`ids`]: typed identifiers (UUID newtypes) so a person id is never
//!   confused with a checkpoint id.
//! - [`clock`]: the [`Clock`] trait; decisions take "now" from a clock, never
//!   from the system directly, so tests and audit replays are deterministic.
//! - [`division`]: China's administrative division codes.
//!   [`DivisionCode::parse`] checks the shape; the [`Divisions`] registry loads
//!   the real reference data (copied into `shared/divisions/`) and answers
//!   "does this code exist", "what is it called" and "does region A contain
//!   area B".
//! - [`actor`]: who does things: citizens, checkpoints, labs, health
//!   officials (with their region), departments, auditors, admins.
//! - [`metadata`]: the metadata every event carries (correlation, causation,
//!   actor, region, business time).
//! - [`error`]: the kernel's typed errors.

pub mod actor;
pub mod clock;
pub mod division;
pub mod error;
pub mod ids;
pub mod metadata;

pub use actor::{Actor, Role};
pub use clock::{china_date, Clock, FixedClock, SystemClock, CHINA_STANDARD_TIME};
pub use division::{DivisionCode, DivisionLevel, Divisions};
pub use error::{DivisionError, KernelError};
pub use ids::{ActorId, CheckpointId, CorrelationId, EventId, PersonId};
pub use metadata::EventMetadata;
