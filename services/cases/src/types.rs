//! Value types of the applications domain: ids, who applies, who acts.

use std::fmt;

use serde::{Deserialize, Serialize};
use tongban_catalog::DepartmentCode;
use tongban_kernel::{ActorId, DivisionCode, PersonId};
use uuid::Uuid;

use crate::error::CaseError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an existing UUID (e.g. from a token's subject).
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
            pub fn parse(text: &str) -> Result<Self, CaseError> {
                Uuid::parse_str(text.trim()).map(Self).map_err(|_| CaseError::InvalidInput {
                    field: $field,
                    rule: format!("`{text}` is not a UUID"),
                })
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
    };
}

uuid_id!(
    /// An application (a case).
    CaseId,
    "case_id"
);
uuid_id!(
    /// A registered enterprise (by its id in the hub, not its credit code).
    EnterpriseId,
    "enterprise_id"
);

/// Who an application belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Applicant {
    /// A person applying for themself.
    Person(PersonId),
    /// An enterprise.
    Enterprise(EnterpriseId),
}

impl Applicant {
    /// A stable key for indexes and the inbox: `person-<id>` or `enterprise-<id>`.
    pub fn key(&self) -> String {
        match self {
            Self::Person(p) => format!("person-{p}"),
            Self::Enterprise(e) => format!("enterprise-{e}"),
        }
    }
}

/// Who is acting, in which capacity. The gateway builds it from the
/// authenticated session; the domain decides what each capacity may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "capacity", rename_all = "snake_case")]
pub enum Principal {
    /// A member of the public, acting for themself.
    Person {
        /// The acting account.
        actor: ActorId,
        /// The person they are.
        person: PersonId,
    },
    /// An enterprise's authorised account.
    Enterprise {
        /// The acting account.
        actor: ActorId,
        /// The enterprise.
        enterprise: EnterpriseId,
    },
    /// An official of a department with authority over a region.
    Official {
        /// The acting account.
        actor: ActorId,
        /// Their department.
        department: DepartmentCode,
        /// The region of their authority (cases in areas inside it).
        region: DivisionCode,
    },
    /// An auditor: reads everything, changes nothing.
    Auditor {
        /// The acting account.
        actor: ActorId,
    },
    /// The hub itself (process managers).
    System {
        /// The process's account.
        actor: ActorId,
    },
}

impl Principal {
    /// The acting account.
    pub fn actor(&self) -> ActorId {
        match self {
            Self::Person { actor, .. }
            | Self::Enterprise { actor, .. }
            | Self::Official { actor, .. }
            | Self::Auditor { actor }
            | Self::System { actor } => *actor,
        }
    }

    /// The applicant this principal applies as, if it can apply.
    pub fn as_applicant(&self) -> Option<Applicant> {
        match self {
            Self::Person { person, .. } => Some(Applicant::Person(*person)),
            Self::Enterprise { enterprise, .. } => Some(Applicant::Enterprise(*enterprise)),
            _ => None,
        }
    }

    /// A short name of the capacity, for error messages.
    pub fn capacity(&self) -> &'static str {
        match self {
            Self::Person { .. } => "person",
            Self::Enterprise { .. } => "enterprise",
            Self::Official { .. } => "official",
            Self::Auditor { .. } => "auditor",
            Self::System { .. } => "system process",
        }
    }

    /// Whether this is an official of `department` whose region contains `area`.
    pub fn is_official_for(&self, department: &DepartmentCode, area: &DivisionCode) -> bool {
        matches!(self, Self::Official { department: d, region, .. } if d == department && region.contains(area))
    }
}
