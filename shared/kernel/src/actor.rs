//! Actors and their roles.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::division::DivisionCode;
use crate::ids::{ActorId, CheckpointId, PersonId};

/// Someone or something that acts in the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Stable identifier of the actor.
    pub id: ActorId,
    /// What the actor is allowed to do.
    pub role: Role,
}

/// The roles of the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Role {
    /// A member of the public acting for themself.
    Citizen {
        /// The person they are.
        person: PersonId,
    },
    /// A checkpoint's scanning device or guard.
    Checkpoint {
        /// The checkpoint.
        checkpoint: CheckpointId,
    },
    /// A testing laboratory.
    Lab {
        /// The laboratory's name.
        name: String,
    },
    /// A health official with authority over a region and, optionally, only
    /// some of its sub-regions.
    HealthOfficial {
        /// The region (province, city, county or street) of their authority.
        region: DivisionCode,
        /// If not empty, the authority is limited to these areas inside `region`.
        sub_regions: Vec<DivisionCode>,
    },
    /// Another government department (read-side consumer).
    Department {
        /// The department's name.
        name: String,
    },
    /// An enterprise's authorised account: applies for the enterprise's own
    /// permits and tracks them; never sees its employees' identities.
    Enterprise {
        /// The enterprise's id in the hub (not its credit code).
        enterprise: Uuid,
    },
    /// An auditor: may read and replay, never change.
    Auditor,
    /// A platform administrator.
    Admin,
}

impl Actor {
    /// A citizen acting for themself.
    pub fn citizen(id: ActorId, person: PersonId) -> Self {
        Self {
            id,
            role: Role::Citizen { person },
        }
    }

    /// A health official of `region`.
    pub fn health_official(id: ActorId, region: DivisionCode) -> Self {
        Self {
            id,
            role: Role::HealthOfficial {
                region,
                sub_regions: Vec::new(),
            },
        }
    }

    /// Whether this actor holds health authority over `area`: it is a health
    /// official whose region contains the area (and, if sub-regions are listed,
    /// one of them contains it).
    pub fn has_health_authority_over(&self, area: &DivisionCode) -> bool {
        match &self.role {
            Role::HealthOfficial {
                region,
                sub_regions,
            } => {
                region.contains(area)
                    && (sub_regions.is_empty() || sub_regions.iter().any(|s| s.contains(area)))
            }
            _ => false,
        }
    }

    /// A short name of the role, for error messages and audit trails.
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Citizen { .. } => "citizen",
            Role::Checkpoint { .. } => "checkpoint",
            Role::Lab { .. } => "lab",
            Role::HealthOfficial { .. } => "health_official",
            Role::Department { .. } => "department",
            Role::Enterprise { .. } => "enterprise",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    #[test]
    fn official_of_fengtai_has_authority_over_huaxiang_but_not_over_dongcheng() {
        let official = Actor::health_official(ActorId::from_u128(1), code("110106"));
        assert!(official.has_health_authority_over(&code("110106018")));
        assert!(!official.has_health_authority_over(&code("110101")));
    }

    #[test]
    fn official_limited_to_sub_regions_has_no_authority_elsewhere_in_region() {
        let official = Actor {
            id: ActorId::from_u128(1),
            role: Role::HealthOfficial {
                region: code("11"),
                sub_regions: vec![code("110106")],
            },
        };
        assert!(official.has_health_authority_over(&code("110106018")));
        assert!(!official.has_health_authority_over(&code("110101")));
    }

    #[test]
    fn a_citizen_has_no_health_authority() {
        let citizen = Actor::citizen(ActorId::from_u128(1), PersonId::from_u128(2));
        assert!(!citizen.has_health_authority_over(&code("110106")));
    }
}
