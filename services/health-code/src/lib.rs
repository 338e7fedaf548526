//! The health-code domain of Tongban.
//!
//! Everything here is events, decided by pure functions of past events and a
//! clock, so that auditors and citizens can always see why a code has its
//! colour. A tour:
//!
//! - [`events`]: every fact, with a stable type name and version.
//! - [`types`], [`resident_id`]: value types parsed once (colours,
//!   temperatures, admission policies, GB 11643 resident ID numbers).
//! - [`vault`]: personal data sealed with per-person keys kept outside the
//!   log (crypto-shredding), with a durable redb vault.
//! - [`facts`]: what rules can see, computed from evidence and risk areas.
//! - [`policy`]: regional JsonLogic policies, the national baseline, and
//!   their evaluation to a colour with a reason code.
//! - [`risk`]: risk areas, declared only by the region that contains them.
//! - [`person`]: the person aggregate (`decide`/`evolve`): evidence, colours
//!   per region, codes, appeals and applied overrides.
//! - [`overrides`]: manual colour changes, with a second official's approval
//!   and an alert above a threshold.
//! - [`token`], [`qr`]: signed code tokens (COSE_Sign1 over CBOR, Ed25519,
//!   key ids and rotation, offline verification) and their QR rendering.
//! - [`region_keys`]: region signing keys with ids, status and rotation, in
//!   a store every replica shares (key files here, PostgreSQL elsewhere).
//! - [`checkpoint`]: venues, admission policies, place codes and scans.
//! - [`operations`]: the seven GB/T 38963 operations with BizExtData and
//!   stable return codes.
//! - [`handler`]: command handling on the event store (load, decide, append
//!   with the expected revision, retry on conflict).
//! - [`log_views`]: the facts decisions use beyond their own stream
//!   (policies, risk map, code → person, checkpoint → place), followed by
//!   every replica from `$all` and read at the position a command depends on.
//! - [`projections`]: the read models (codes, colour counts, risk areas,
//!   scan logs, travel, appeals, access log) and change feeds.
//! - [`reactions`]: process managers on the projection runner (scan →
//!   evidence, override → persons, risk area → the persons it touches),
//!   checkpointed, idempotent by id, one owner among replicas by a lease.
//! - [`graphql`]: this service's part of the gateway's schema.

pub mod checkpoint;
pub mod context;
pub mod error;
pub mod events;
pub mod facts;
pub mod graphql;
pub mod handler;
pub mod log_views;
pub mod operations;
pub mod overrides;
pub mod person;
pub mod policy;
pub mod projections;
pub mod qr;
pub mod reactions;
pub mod region_keys;
pub mod resident_id;
pub mod risk;
pub mod token;
pub mod types;
pub mod vault;

pub use context::DecisionContext;
pub use error::HealthCodeError;
pub use events::{Evidence, EvidenceMeta, EvidenceSource, HealthEvent};
pub use person::{PersonCommand, PersonState};
pub use types::{Colour, RiskLevel, Temperature, TestResult};
