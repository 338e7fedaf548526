//! Given/when/then scenarios of appeals and overrides: the abuse path is
//! fenced by legal basis, authority, a threshold with a second approval and
//! an alert, and a set expiry.

use crate::support;

use support::*;
use time::Duration;
use tongban_health_code::events::{ColourCause, HealthEvent};
use tongban_health_code::overrides::{decide, OverrideCommand, OverrideConfig, OverrideState};
use tongban_health_code::person::{AppealStatus, PersonCommand};
use tongban_health_code::policy::PolicyBook;
use tongban_health_code::risk::RiskMap;
use tongban_health_code::types::{Colour, OverrideAnswers};
use tongban_health_code::{DecisionContext, HealthCodeError};
use tongban_kernel::{Actor, PersonId};
use uuid::Uuid;

const OVERRIDE: Uuid = Uuid::from_u128(0x0E);
const APPEAL: Uuid = Uuid::from_u128(0xA1);

fn request(persons: Vec<PersonId>, answers: OverrideAnswers, legal_basis: &str) -> OverrideCommand {
    OverrideCommand::Request {
        override_id: OVERRIDE,
        region: code(BEIJING),
        persons,
        colour: Colour::Green,
        legal_basis: legal_basis.into(),
        reason: "telco record shows the phone was lent".into(),
        answers,
        expires_at: T0 + Duration::days(7),
    }
}

fn run(
    state: &OverrideState,
    command: &OverrideCommand,
    actor: &Actor,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    let (policies, risk) = (PolicyBook::new(), RiskMap::new());
    let ctx = DecisionContext {
        now: T0,
        divisions: divisions(),
        policies: &policies,
        risk: &risk,
        actor,
    };
    decide(
        state,
        command,
        &ctx,
        &OverrideConfig {
            threshold: 3,
            ..OverrideConfig::default()
        },
    )
}

fn persons(n: u128) -> Vec<PersonId> {
    (1..=n).map(PersonId::from_u128).collect()
}

#[test]
fn an_override_answering_an_appeal_turns_the_colour_and_closes_the_appeal() {
    let state = OverrideState::default();
    let events = run(
        &state,
        &request(
            vec![PERSON],
            OverrideAnswers::Appeal(APPEAL),
            "《传染病防治法》第十二条",
        ),
        &beijing_official(),
    )
    .unwrap();
    assert!(matches!(
        &events[..],
        [HealthEvent::OverrideRequested {
            requires_second_approval: false,
            ..
        }]
    ));
    let state = state.evolve(&events[0]);
    let applications = state.applications(&OVERRIDE);
    assert_eq!(applications.len(), 1);
    let (person, command) = applications.into_iter().next().unwrap();
    assert_eq!(person, PERSON);

    let appeal = HealthEvent::AppealFiled {
        appeal_id: APPEAL,
        person_id: PERSON,
        region: code(BEIJING),
        colour: Colour::Red,
        reason: "I was never a contact".into(),
        at: T0 - Duration::hours(5),
        ext: None,
    };
    let then = scenario()
        .given([
            registered(),
            green_in(BEIJING),
            close_contact(2, time::macros::date!(2020 - 06 - 10)),
            appeal,
        ])
        .when(PersonCommand::Reevaluate)
        .and_then_at(T0)
        .when(command)
        .then_colour(BEIJING, Colour::Green, "OFFICIAL_OVERRIDE");
    assert!(matches!(
        then.events(),
        [
            HealthEvent::ColourOverridden { .. },
            HealthEvent::ColourChanged {
                cause: ColourCause::Override { .. },
                previous: Some(Colour::Red),
                ..
            }
        ]
    ));
    assert_eq!(then.after.appeals[&APPEAL].status, AppealStatus::Overridden);
}

#[test]
fn an_override_without_a_legal_basis_is_rejected() {
    let err = run(
        &OverrideState::default(),
        &request(vec![PERSON], OverrideAnswers::Case("BJ-1".into()), "  "),
        &beijing_official(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::InvalidInput {
            field: "legal_basis",
            ..
        }
    ));
}

#[test]
fn an_official_of_another_region_may_not_override() {
    let err = run(
        &OverrideState::default(),
        &request(vec![PERSON], OverrideAnswers::Case("BJ-1".into()), "basis"),
        &shanghai_official(),
    )
    .unwrap_err();
    assert!(matches!(err, HealthCodeError::Forbidden(_)));
}

#[test]
fn overriding_more_persons_than_the_threshold_needs_a_second_official_and_raises_an_alert() {
    let events = run(
        &OverrideState::default(),
        &request(
            persons(4),
            OverrideAnswers::Case("HN-bank-2022".into()),
            "none",
        ),
        &beijing_official(),
    )
    .unwrap();
    assert!(matches!(
        &events[..],
        [
            HealthEvent::OverrideRequested {
                requires_second_approval: true,
                ..
            },
            HealthEvent::OverrideAlertRaised {
                persons_in_window: 4,
                threshold: 3,
                ..
            }
        ]
    ));
    let state = events
        .iter()
        .fold(OverrideState::default(), |s, e| s.evolve(e));
    assert!(
        state.applications(&OVERRIDE).is_empty(),
        "nothing applies before approval"
    );

    let same = run(
        &state,
        &OverrideCommand::Approve {
            override_id: OVERRIDE,
        },
        &beijing_official(),
    )
    .unwrap_err();
    assert!(matches!(same, HealthCodeError::SameOfficialApproval(_)));
    let approved = run(
        &state,
        &OverrideCommand::Approve {
            override_id: OVERRIDE,
        },
        &second_beijing_official(),
    )
    .unwrap();
    let state = state.evolve(&approved[0]);
    assert_eq!(state.applications(&OVERRIDE).len(), 4);
    let again = run(
        &state,
        &OverrideCommand::Approve {
            override_id: OVERRIDE,
        },
        &second_beijing_official(),
    )
    .unwrap_err();
    assert!(matches!(again, HealthCodeError::OverrideNotPending(_)));
}

#[test]
fn small_overrides_add_up_within_the_window() {
    let first = OverrideCommand::Request {
        override_id: Uuid::from_u128(1),
        region: code(BEIJING),
        persons: persons(3),
        colour: Colour::Red,
        legal_basis: "basis".into(),
        reason: "reason".into(),
        answers: OverrideAnswers::Case("C-1".into()),
        expires_at: T0 + Duration::days(1),
    };
    let events = run(&OverrideState::default(), &first, &beijing_official()).unwrap();
    assert!(matches!(
        &events[..],
        [HealthEvent::OverrideRequested {
            requires_second_approval: false,
            ..
        }]
    ));
    let state = OverrideState::default().evolve(&events[0]);
    let events = run(
        &state,
        &request(
            vec![PersonId::from_u128(99)],
            OverrideAnswers::Case("C-2".into()),
            "basis",
        ),
        &beijing_official(),
    )
    .unwrap();
    assert!(matches!(
        &events[..],
        [
            HealthEvent::OverrideRequested {
                requires_second_approval: true,
                ..
            },
            HealthEvent::OverrideAlertRaised { .. }
        ]
    ));
}

#[test]
fn an_override_lapses_at_its_expiry_and_the_policy_colour_returns() {
    let overridden = HealthEvent::ColourOverridden {
        person_id: PERSON,
        override_id: OVERRIDE,
        region: code(BEIJING),
        colour: Colour::Red,
        official: beijing_official().id,
        legal_basis: "basis".into(),
        reason: "reason".into(),
        answers: OverrideAnswers::Case("C".into()),
        expires_at: T0 + Duration::days(2),
        at: T0,
    };
    let red = HealthEvent::ColourChanged {
        person_id: PERSON,
        region: code(BEIJING),
        colour: Colour::Red,
        previous: Some(Colour::Green),
        policy_id: "national-baseline".into(),
        policy_version: 1,
        rule_id: format!("override:{OVERRIDE}"),
        reason: "OFFICIAL_OVERRIDE".into(),
        evidence: vec![],
        cause: ColourCause::Override {
            override_id: OVERRIDE,
        },
        at: T0,
    };
    scenario()
        .at(T0 + Duration::days(1))
        .given([
            registered(),
            green_in(BEIJING),
            overridden.clone(),
            red.clone(),
        ])
        .when(PersonCommand::Reevaluate)
        .then_no_events();
    scenario()
        .at(T0 + Duration::days(2))
        .given([registered(), green_in(BEIJING), overridden, red])
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Green, "NO_RISK");
}

#[test]
fn an_override_must_lapse_within_the_configured_maximum() {
    let cmd = OverrideCommand::Request {
        override_id: OVERRIDE,
        region: code(BEIJING),
        persons: vec![PERSON],
        colour: Colour::Red,
        legal_basis: "basis".into(),
        reason: "reason".into(),
        answers: OverrideAnswers::Case("C".into()),
        expires_at: T0 + Duration::days(365),
    };
    let err = run(&OverrideState::default(), &cmd, &beijing_official()).unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::InvalidInput {
            field: "expires_at",
            ..
        }
    ));
}

fn apply_in(region: &str, id: u128, colour: Colour) -> PersonCommand {
    PersonCommand::ApplyOverride {
        override_id: Uuid::from_u128(id),
        region: code(region),
        colour,
        official: beijing_official().id,
        legal_basis: "《传染病防治法》第十二条".into(),
        reason: "district review".into(),
        answers: OverrideAnswers::Case("FT-2020-061".into()),
        expires_at: T0 + Duration::days(7),
    }
}

#[test]
fn a_districts_override_turns_the_residents_code_of_the_city() {
    // Given a Beijing resident with a green code of Beijing (region 11),
    // when Fengtai's officials override their colour to yellow,
    // then their code of Beijing turns yellow (not a new code of Fengtai).
    let then = scenario()
        .at(T0)
        .given([registered(), green_in(BEIJING)])
        .when(apply_in(FENGTAI, 0xF1, Colour::Yellow))
        .then_colour(BEIJING, Colour::Yellow, "OFFICIAL_OVERRIDE");
    assert!(!then.after.colours.contains_key(&code(FENGTAI)));
}

#[test]
fn the_latest_override_within_a_region_wins_and_other_regions_are_untouched() {
    // Given a resident of Beijing also holding a code of Shanghai, with a
    // district override to yellow applied,
    // when Beijing's officials then override to green,
    // then the Beijing code is green and the Shanghai code stays as it was.
    scenario()
        .at(T0)
        .given([registered(), green_in(BEIJING), green_in(SHANGHAI)])
        .when(apply_in(FENGTAI, 0xF1, Colour::Yellow))
        .then_colour(BEIJING, Colour::Yellow, "OFFICIAL_OVERRIDE")
        .and_then_at(T0 + Duration::hours(1))
        .when(apply_in(BEIJING, 0xF2, Colour::Green))
        .then_colour(BEIJING, Colour::Green, "OFFICIAL_OVERRIDE")
        .then_colour(SHANGHAI, Colour::Green, "NO_RISK");
}
