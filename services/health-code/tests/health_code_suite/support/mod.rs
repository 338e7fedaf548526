//! Given/when/then support for the health-code scenarios.
#![allow(dead_code)]

use std::sync::OnceLock;
use time::macros::datetime;
use time::{Date, Duration, OffsetDateTime};
use tongban_health_code::events::{Evidence, EvidenceMeta, EvidenceSource, HealthEvent};
use tongban_health_code::person::{decide, PersonCommand, PersonState};
use tongban_health_code::policy::PolicyBook;
use tongban_health_code::risk::RiskMap;
use tongban_health_code::types::{Colour, RiskLevel, TestResult};
use tongban_health_code::vault::SealedPersonalData;
use tongban_health_code::{DecisionContext, HealthCodeError};
use tongban_kernel::{
    Actor, ActorId, CheckpointId, DivisionCode, Divisions, EventId, PersonId, Role,
};

pub fn divisions() -> &'static Divisions {
    static D: OnceLock<Divisions> = OnceLock::new();
    D.get_or_init(|| Divisions::load_default().expect("division data in shared/divisions"))
}

pub fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).expect("test code")
}

/// 13 June 2020, noon: two days after the Xinfadi cluster was found.
pub const T0: OffsetDateTime = datetime!(2020-06-13 12:00 UTC);

pub const PERSON: PersonId = PersonId::from_u128(0x1001);
pub const BEIJING: &str = "11";
pub const FENGTAI: &str = "110106";
pub const HUAXIANG: &str = "110106018";
pub const HUAXIANG_COMMUNITY: &str = "110106018002";
pub const DONGCHENG_COMMUNITY: &str = "110101001001";
pub const SHANGHAI: &str = "31";
pub const HUANGPU_COMMUNITY: &str = "310101002001";
pub const CHANGAN_SHIJIAZHUANG: &str = "130102";

pub fn beijing_official() -> Actor {
    Actor::health_official(ActorId::from_u128(0xB1), code(BEIJING))
}
pub fn second_beijing_official() -> Actor {
    Actor::health_official(ActorId::from_u128(0xB2), code(BEIJING))
}
pub fn fengtai_official() -> Actor {
    Actor::health_official(ActorId::from_u128(0xF1), code(FENGTAI))
}
pub fn dongcheng_official() -> Actor {
    Actor::health_official(ActorId::from_u128(0xD1), code("110101"))
}
pub fn shanghai_official() -> Actor {
    Actor::health_official(ActorId::from_u128(0x51), code(SHANGHAI))
}
pub fn lab() -> Actor {
    Actor {
        id: ActorId::from_u128(0x1AB),
        role: Role::Lab {
            name: "Beijing CDC lab".into(),
        },
    }
}
pub fn citizen() -> Actor {
    Actor::citizen(ActorId::from_u128(0xC1), PERSON)
}
pub fn checkpoint_device() -> Actor {
    Actor {
        id: ActorId::from_u128(0xCD),
        role: Role::Checkpoint {
            checkpoint: CheckpointId::from_u128(0xAA),
        },
    }
}

pub fn sealed() -> SealedPersonalData {
    SealedPersonalData {
        alg: "ChaCha20-Poly1305".into(),
        nonce: "00".repeat(12),
        ciphertext: "ab".repeat(40),
    }
}

pub fn registered_in(home: &str, residence: &str) -> HealthEvent {
    HealthEvent::PersonRegistered {
        person_id: PERSON,
        home_region: code(home),
        residence: code(residence),
        id_document_kind: "resident_id".into(),
        personal: sealed(),
        at: T0 - Duration::days(30),
    }
}

pub fn registered() -> HealthEvent {
    registered_in(BEIJING, DONGCHENG_COMMUNITY)
}

pub fn green_in(region: &str) -> HealthEvent {
    HealthEvent::ColourChanged {
        person_id: PERSON,
        region: code(region),
        colour: Colour::Green,
        previous: None,
        policy_id: "national-baseline".into(),
        policy_version: 1,
        rule_id: "default".into(),
        reason: "NO_RISK".into(),
        evidence: vec![],
        cause: tongban_health_code::events::ColourCause::FirstEvaluation,
        at: T0 - Duration::days(30),
    }
}

pub fn meta(id: u128, source: EvidenceSource, at: OffsetDateTime, by: &Actor) -> EvidenceMeta {
    EvidenceMeta {
        id: EventId::from_u128(id),
        source,
        occurred_at: at,
        recorded_by: by.id,
    }
}

pub fn evidence(id: u128, source: EvidenceSource, at: OffsetDateTime, e: Evidence) -> HealthEvent {
    HealthEvent::EvidenceRecorded {
        person_id: PERSON,
        meta: meta(id, source, at, &beijing_official()),
        evidence: e,
        ext: None,
    }
}

pub fn venue_visit(id: u128, at: OffsetDateTime, place: &str) -> HealthEvent {
    evidence(
        id,
        EvidenceSource::Checkpoint,
        at,
        Evidence::VenueVisited {
            checkpoint: CheckpointId::from_u128(0xAA),
            place: code(place),
        },
    )
}

pub fn nat(id: u128, at: OffsetDateTime, result: TestResult) -> HealthEvent {
    evidence(
        id,
        EvidenceSource::Lab,
        at,
        Evidence::NucleicAcidTested {
            sampled_at: at,
            result,
            lab: "CDC".into(),
        },
    )
}

pub fn close_contact(id: u128, exposure: Date) -> HealthEvent {
    evidence(
        id,
        EvidenceSource::ContactTracing,
        exposure.midnight().assume_utc() + Duration::days(1),
        Evidence::CloseContactIdentified {
            case_ref: "BJ-2020-0611-01".into(),
            exposure_date: exposure,
        },
    )
}

pub fn risk_declared(area: &str, level: RiskLevel, at: OffsetDateTime) -> HealthEvent {
    HealthEvent::RiskAreaDeclared {
        area: code(area),
        level,
        by: fengtai_official().id,
        at,
    }
}

/// A given/when/then scenario on the person aggregate.
pub struct Scenario {
    pub now: OffsetDateTime,
    pub actor: Actor,
    pub policies: PolicyBook,
    pub risk: RiskMap,
    pub given: Vec<HealthEvent>,
}

pub fn scenario() -> Scenario {
    Scenario {
        now: T0,
        actor: beijing_official(),
        policies: PolicyBook::new(),
        risk: RiskMap::new(),
        given: Vec::new(),
    }
}

impl Scenario {
    pub fn at(mut self, now: OffsetDateTime) -> Self {
        self.now = now;
        self
    }
    pub fn by(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }
    pub fn with_risk(mut self, event: HealthEvent) -> Self {
        self.risk.apply(&event);
        self
    }
    pub fn with_policy(mut self, event: HealthEvent) -> Self {
        self.policies.apply(&event);
        self
    }
    pub fn given(mut self, events: impl IntoIterator<Item = HealthEvent>) -> Self {
        self.given.extend(events);
        self
    }
    pub fn state(&self) -> PersonState {
        PersonState::from_events(&self.given)
    }
    pub fn when(self, command: PersonCommand) -> Then {
        let state = self.state();
        let ctx = DecisionContext {
            now: self.now,
            divisions: divisions(),
            policies: &self.policies,
            risk: &self.risk,
            actor: &self.actor,
        };
        let result = decide(&state, &command, &ctx);
        let after = match &result {
            Ok(events) => events.iter().fold(state, |s, e| s.evolve(e)),
            Err(_) => state,
        };
        Then {
            result,
            after,
            scenario: self,
        }
    }
}

pub struct Then {
    pub result: Result<Vec<HealthEvent>, HealthCodeError>,
    pub after: PersonState,
    pub scenario: Scenario,
}

impl Then {
    pub fn then_expect(self, expected: Vec<HealthEvent>) -> Self {
        assert_eq!(
            self.result.as_ref().expect("command should succeed"),
            &expected
        );
        self
    }
    pub fn then_fails(self, check: impl FnOnce(&HealthCodeError) -> bool) -> Self {
        match &self.result {
            Err(e) => assert!(check(e), "unexpected error: {e:?}"),
            Ok(events) => panic!("expected a failure, got {events:?}"),
        }
        self
    }
    pub fn events(&self) -> &[HealthEvent] {
        self.result.as_ref().expect("command should succeed")
    }
    pub fn colour_changes(&self) -> Vec<(DivisionCode, Colour, String)> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                HealthEvent::ColourChanged {
                    region,
                    colour,
                    reason,
                    ..
                } => Some((*region, *colour, reason.clone())),
                _ => None,
            })
            .collect()
    }
    pub fn then_colour(self, region: &str, colour: Colour, reason: &str) -> Self {
        let c = self
            .after
            .colours
            .get(&code(region))
            .expect("a colour in the region");
        assert_eq!(
            (c.colour, c.reason.as_str()),
            (colour, reason),
            "colour in {region}"
        );
        self
    }
    pub fn then_no_events(self) -> Self {
        assert_eq!(self.events(), &[] as &[HealthEvent]);
        self
    }
    /// Continue: the produced events become history, at a later time.
    pub fn and_then_at(self, now: OffsetDateTime) -> Scenario {
        let mut s = self.scenario;
        if let Ok(events) = self.result {
            s.given.extend(events);
        }
        s.now = now;
        s
    }
}
