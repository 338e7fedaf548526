//! Typed identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use crate::error::KernelError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an existing UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// A deterministic identifier from a number (tests, demos).
            pub const fn from_u128(n: u128) -> Self {
                Self(Uuid::from_u128(n))
            }
            /// The underlying UUID.
            pub const fn uuid(&self) -> Uuid {
                self.0
            }
            /// Parses the hyphenated UUID form.
            pub fn parse(text: &str) -> Result<Self, KernelError> {
                Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|_| KernelError::BadId { field: $field, value: text.to_owned() })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = KernelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// A person known to the health-code domain (not their ID number).
    PersonId,
    "person_id"
);
uuid_id!(
    /// A registered checkpoint (venue).
    CheckpointId,
    "checkpoint_id"
);
uuid_id!(
    /// An event, evidence item or decision that others can refer to.
    EventId,
    "event_id"
);
uuid_id!(
    /// Ties together the events caused by one request.
    CorrelationId,
    "correlation_id"
);
uuid_id!(
    /// An actor (official, lab, checkpoint device, department, ...).
    ActorId,
    "actor_id"
);
