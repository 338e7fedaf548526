//! Given/when/then scenarios of the person aggregate: registration, evidence,
//! colours under the national baseline and regional policies, the Xinfadi
//! outbreak, appeals and privacy.

use crate::support;

use serde_json::json;
use support::*;
use time::macros::date;
use time::Duration;
use tongban_health_code::events::{ColourCause, Evidence, EvidenceSource, HealthEvent};
use tongban_health_code::person::{PersonCommand, Trip};
use tongban_health_code::policy::{
    baseline_document, decide_publish, PolicyBook, PolicyDocument, PublishPolicy, RuleSpec,
};
use tongban_health_code::risk::{decide as decide_risk, RiskAreaCommand, RiskAreaState};
use tongban_health_code::types::{Colour, RiskLevel, Temperature, TestResult, TravelMode};
use tongban_health_code::HealthCodeError;
use tongban_kernel::{Actor, ActorId, Role};
use tongban_kernel::{DivisionError, EventId, PersonId};
use uuid::Uuid;

fn register(home: &str, residence: &str) -> PersonCommand {
    PersonCommand::Register {
        person_id: PERSON,
        home_region: code(home),
        residence: code(residence),
        id_document_kind: "resident_id".into(),
        personal: sealed(),
    }
}

fn record(
    id: u128,
    source: EvidenceSource,
    at: time::OffsetDateTime,
    e: Evidence,
) -> PersonCommand {
    PersonCommand::RecordEvidence {
        meta: meta(id, source, at, &beijing_official()),
        evidence: e,
        ext: None,
    }
}

fn published(region: &str, id: &str, version: u32, document: PolicyDocument) -> HealthEvent {
    HealthEvent::PolicyPublished {
        region: code(region),
        policy_id: id.into(),
        version,
        document,
        by: beijing_official().id,
        at: T0 - Duration::days(60),
    }
}

/// A policy that only counts high-risk areas and ignores telco dwell.
fn high_only_policy() -> PolicyDocument {
    let mut doc = baseline_document();
    doc.rules.retain(|r| r.id != "yellow.risk_dwell");
    for r in &mut doc.rules {
        if r.id == "yellow.risk_travel" {
            r.when = json!({"<": [{"var": "high_risk_county_travel_days"}, 7]});
        }
    }
    doc
}

// ---- registration -------------------------------------------------------

#[test]
fn registering_a_person_records_sealed_data_and_a_green_colour_in_the_home_region() {
    scenario()
        .when(register(BEIJING, DONGCHENG_COMMUNITY))
        .then_expect(vec![
            HealthEvent::PersonRegistered {
                person_id: PERSON,
                home_region: code(BEIJING),
                residence: code(DONGCHENG_COMMUNITY),
                id_document_kind: "resident_id".into(),
                personal: sealed(),
                at: T0,
            },
            HealthEvent::ColourChanged {
                person_id: PERSON,
                region: code(BEIJING),
                colour: Colour::Green,
                previous: None,
                policy_id: "national-baseline".into(),
                policy_version: 1,
                rule_id: "default".into(),
                reason: "NO_RISK".into(),
                evidence: vec![],
                cause: ColourCause::FirstEvaluation,
                at: T0,
            },
        ]);
}

#[test]
fn registering_with_a_community_that_does_not_exist_is_rejected_naming_the_field() {
    scenario()
        .when(register(BEIJING, "110101001999"))
        .then_fails(|e| {
            matches!(
                e,
                HealthCodeError::Division {
                    field: "residence",
                    source: DivisionError::Unknown { .. }
                }
            )
        });
}

#[test]
fn a_county_code_padded_to_twelve_digits_is_not_a_community() {
    scenario()
        .when(register(BEIJING, "110106000000"))
        .then_fails(|e| {
            matches!(
                e,
                HealthCodeError::Division {
                    field: "residence",
                    ..
                }
            )
        });
}

#[test]
fn a_residence_outside_the_home_region_is_rejected() {
    scenario()
        .when(register(SHANGHAI, DONGCHENG_COMMUNITY))
        .then_fails(|e| {
            matches!(
                e,
                HealthCodeError::InvalidInput {
                    field: "residence",
                    ..
                }
            )
        });
}

#[test]
fn registering_the_same_person_twice_conflicts() {
    scenario()
        .given([registered()])
        .when(register(BEIJING, DONGCHENG_COMMUNITY))
        .then_fails(|e| matches!(e, HealthCodeError::PersonAlreadyRegistered(p) if *p == PERSON));
}

#[test]
fn a_command_for_an_unregistered_person_fails_with_not_found() {
    scenario()
        .when(PersonCommand::Reevaluate)
        .then_fails(|e| e.extension_code() == "NOT_FOUND");
}

#[test]
fn moving_to_another_community_is_an_event() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::ChangeResidence {
            to: code(HUAXIANG_COMMUNITY),
        })
        .then_expect(vec![HealthEvent::ResidenceChanged {
            person_id: PERSON,
            from: code(DONGCHENG_COMMUNITY),
            to: code(HUAXIANG_COMMUNITY),
            at: T0,
        }]);
}

#[test]
fn a_citizen_cannot_move_their_own_residence_without_an_application() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .by(citizen())
        .when(PersonCommand::ChangeResidence {
            to: code(HUAXIANG_COMMUNITY),
        })
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
}

#[test]
fn an_official_of_another_region_cannot_move_a_residence() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .by(shanghai_official())
        .when(PersonCommand::ChangeResidence {
            to: code(HUAXIANG_COMMUNITY),
        })
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
}

#[test]
fn an_official_records_evidence_only_about_people_of_their_region() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .by(shanghai_official())
        .when(record(
            1,
            EvidenceSource::Hospital,
            T0,
            Evidence::DiagnosisConfirmed {
                case_ref: "SH-1".into(),
            },
        ))
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
}

#[test]
fn a_department_reports_travel_but_not_diagnoses() {
    let transport = Actor {
        id: ActorId::from_u128(0xDE),
        role: Role::Department {
            name: "transport".into(),
        },
    };
    scenario()
        .given([registered(), green_in(BEIJING)])
        .by(transport)
        .when(record(
            1,
            EvidenceSource::Hospital,
            T0,
            Evidence::DiagnosisConfirmed {
                case_ref: "BJ-9".into(),
            },
        ))
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
}

// ---- evidence and the baseline -----------------------------------------

#[test]
fn a_confirmed_case_turns_red_citing_the_diagnosis_and_the_baseline_rule() {
    let then = scenario()
        .given([registered(), green_in(BEIJING)])
        .when(record(
            1,
            EvidenceSource::Hospital,
            T0,
            Evidence::DiagnosisConfirmed {
                case_ref: "BJ-1".into(),
            },
        ));
    match &then.events()[1] {
        HealthEvent::ColourChanged {
            colour,
            previous,
            policy_id,
            policy_version,
            rule_id,
            reason,
            evidence,
            cause,
            ..
        } => {
            assert_eq!(*colour, Colour::Red);
            assert_eq!(*previous, Some(Colour::Green));
            assert_eq!(
                (policy_id.as_str(), *policy_version),
                ("national-baseline", 1)
            );
            assert_eq!(
                (rule_id.as_str(), reason.as_str()),
                ("red.confirmed", "CONFIRMED_OR_POSITIVE")
            );
            assert_eq!(evidence, &vec![EventId::from_u128(1)]);
            assert_eq!(
                *cause,
                ColourCause::Evidence {
                    evidence: EventId::from_u128(1)
                }
            );
        }
        other => panic!("expected a colour change, got {other:?}"),
    }
}

#[test]
fn close_contact_turns_red_for_fourteen_days_from_exposure() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .when(record(
            2,
            EvidenceSource::ContactTracing,
            T0,
            Evidence::CloseContactIdentified {
                case_ref: "BJ-1".into(),
                exposure_date: date!(2020 - 06 - 10),
            },
        ))
        .then_colour(BEIJING, Colour::Red, "CLOSE_CONTACT")
        .and_then_at(T0 + Duration::days(10))
        .when(PersonCommand::Reevaluate)
        .then_no_events();
}

#[test]
fn close_contacts_return_to_green_after_quarantine_and_two_negative_tests() {
    let d = date!(2020 - 06 - 10);
    scenario()
        .at(T0 + Duration::days(15))
        .given([registered(), green_in(BEIJING), close_contact(2, d)])
        .given([
            nat(3, T0 + Duration::days(5), TestResult::Negative),
            nat(4, T0 + Duration::days(12), TestResult::Negative),
        ])
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Green, "NO_RISK");
}

#[test]
fn a_close_contact_without_two_negative_tests_stays_red_after_fourteen_days() {
    scenario()
        .at(T0 + Duration::days(15))
        .given([
            registered(),
            green_in(BEIJING),
            close_contact(2, date!(2020 - 06 - 10)),
        ])
        .given([nat(3, T0 + Duration::days(12), TestResult::Negative)])
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Red, "CLOSE_CONTACT");
}

#[test]
fn a_fever_at_a_checkpoint_turns_red_until_a_negative_test_is_sampled() {
    let fever = Temperature::parse("temperature", 38.2).unwrap();
    scenario()
        .by(checkpoint_device())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::RecordEvidence {
            meta: meta(5, EvidenceSource::Checkpoint, T0, &checkpoint_device()),
            evidence: Evidence::TemperatureMeasured {
                checkpoint: tongban_kernel::CheckpointId::from_u128(0xAA),
                place: code(HUAXIANG_COMMUNITY),
                temperature: fever,
            },
            ext: None,
        })
        .then_colour(BEIJING, Colour::Red, "FEVER_PENDING_TEST")
        .and_then_at(T0 + Duration::hours(6))
        .by(lab())
        .when(PersonCommand::RecordEvidence {
            meta: meta(6, EvidenceSource::Lab, T0 + Duration::hours(2), &lab()),
            evidence: Evidence::NucleicAcidTested {
                sampled_at: T0 + Duration::hours(2),
                result: TestResult::Negative,
                lab: "CDC".into(),
            },
            ext: None,
        })
        .then_colour(BEIJING, Colour::Green, "NO_RISK");
}

#[test]
fn temperatures_outside_thirty_to_forty_five_degrees_are_rejected() {
    assert!(matches!(
        Temperature::parse("temperature", 46.0),
        Err(HealthCodeError::TemperatureOutOfRange {
            field: "temperature",
            ..
        })
    ));
}

#[test]
fn evidence_with_a_business_time_in_the_future_is_rejected_and_appends_nothing() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .when(record(
            7,
            EvidenceSource::Hospital,
            T0 + Duration::hours(1),
            Evidence::DiagnosisConfirmed {
                case_ref: "X".into(),
            },
        ))
        .then_fails(|e| {
            matches!(
                e,
                HealthCodeError::FutureTime {
                    field: "occurred_at",
                    ..
                }
            )
        });
}

#[test]
fn a_small_clock_skew_within_the_tolerance_is_accepted() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .when(record(
            7,
            EvidenceSource::Hospital,
            T0 + Duration::minutes(2),
            Evidence::DiagnosisConfirmed {
                case_ref: "X".into(),
            },
        ))
        .then_colour(BEIJING, Colour::Red, "CONFIRMED_OR_POSITIVE");
}

#[test]
fn travel_finer_than_a_county_is_reduced_to_the_county() {
    let then = scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::DeclareItinerary {
            trips: vec![Trip {
                evidence_id: EventId::from_u128(8),
                mode: TravelMode::Rail,
                from: code(HUAXIANG_COMMUNITY),
                to: code("310101002"),
                date: date!(2020 - 06 - 12),
            }],
            ext: None,
        });
    match &then.events()[0] {
        HealthEvent::EvidenceRecorded {
            evidence:
                Evidence::TravelRecorded {
                    from_county,
                    to_county,
                    ..
                },
            ..
        } => {
            assert_eq!(
                (from_county.to_string(), to_county.to_string()),
                ("110106".into(), "310101".into())
            );
        }
        other => panic!("expected travel evidence, got {other:?}"),
    }
}

#[test]
fn recording_the_same_evidence_twice_is_idempotent() {
    scenario()
        .given([
            registered(),
            green_in(BEIJING),
            nat(3, T0 - Duration::hours(3), TestResult::Negative),
        ])
        .by(lab())
        .when(PersonCommand::RecordEvidence {
            meta: meta(3, EvidenceSource::Lab, T0 - Duration::hours(3), &lab()),
            evidence: Evidence::NucleicAcidTested {
                sampled_at: T0 - Duration::hours(3),
                result: TestResult::Negative,
                lab: "CDC".into(),
            },
            ext: None,
        })
        .then_no_events();
}

#[test]
fn a_citizen_may_not_record_their_own_lab_results() {
    scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(record(
            9,
            EvidenceSource::Lab,
            T0,
            Evidence::NucleicAcidTested {
                sampled_at: T0,
                result: TestResult::Negative,
                lab: "x".into(),
            },
        ))
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
}

#[test]
fn a_declared_fever_turns_yellow() {
    scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::DeclareHealth {
            evidence_id: EventId::from_u128(10),
            at: T0,
            symptoms: vec![],
            temperature: Temperature::parse("temperature", 37.5).unwrap(),
            declared_travel: vec![],
            ext: None,
        })
        .then_colour(BEIJING, Colour::Yellow, "DECLARED_FEVER_OR_SYMPTOMS");
}

// ---- Xinfadi ------------------------------------------------------------

#[test]
fn xinfadi_visitors_who_scanned_in_at_huaxiang_within_fourteen_days_turn_yellow() {
    scenario()
        .given([
            registered(),
            green_in(BEIJING),
            venue_visit(20, T0 - Duration::days(10), HUAXIANG_COMMUNITY),
        ])
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::hours(1),
        ))
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Yellow, "RISK_AREA_VENUE_VISIT");
}

#[test]
fn xinfadi_visitors_from_more_than_fourteen_days_ago_stay_green() {
    scenario()
        .given([
            registered(),
            green_in(BEIJING),
            venue_visit(20, T0 - Duration::days(15), HUAXIANG_COMMUNITY),
        ])
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::hours(1),
        ))
        .when(PersonCommand::Reevaluate)
        .then_no_events();
}

#[test]
fn xinfadi_a_telco_dwell_of_four_hours_in_fengtai_turns_yellow_under_the_baseline() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::days(1),
        ))
        .when(record(
            21,
            EvidenceSource::Telco,
            T0 - Duration::days(2),
            Evidence::DwellReported {
                county: code(FENGTAI),
                minutes: 240,
            },
        ))
        .then_colour(BEIJING, Colour::Yellow, "RISK_AREA_DWELL");
}

#[test]
fn xinfadi_a_dwell_shorter_than_four_hours_does_not_count() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::days(1),
        ))
        .when(record(
            21,
            EvidenceSource::Telco,
            T0 - Duration::days(2),
            Evidence::DwellReported {
                county: code(FENGTAI),
                minutes: 239,
            },
        ))
        .then_expect(vec![HealthEvent::EvidenceRecorded {
            person_id: PERSON,
            meta: meta(
                21,
                EvidenceSource::Telco,
                T0 - Duration::days(2),
                &beijing_official(),
            ),
            evidence: Evidence::DwellReported {
                county: code(FENGTAI),
                minutes: 239,
            },
            ext: None,
        }]);
}

#[test]
fn xinfadi_a_dwell_does_not_count_under_a_policy_that_ignores_it() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .with_policy(published(BEIJING, "beijing-2020", 1, high_only_policy()))
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::days(1),
        ))
        .when(record(
            21,
            EvidenceSource::Telco,
            T0 - Duration::days(2),
            Evidence::DwellReported {
                county: code(FENGTAI),
                minutes: 300,
            },
        ))
        .then_colour(BEIJING, Colour::Green, "NO_RISK");
}

#[test]
fn xinfadi_close_contacts_turn_red_and_return_to_green_after_quarantine_and_two_negative_tests() {
    let exposure = date!(2020 - 06 - 08);
    scenario()
        .given([registered(), green_in(BEIJING)])
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::days(1),
        ))
        .when(record(
            30,
            EvidenceSource::ContactTracing,
            T0,
            Evidence::CloseContactIdentified {
                case_ref: "XFD-001".into(),
                exposure_date: exposure,
            },
        ))
        .then_colour(BEIJING, Colour::Red, "CLOSE_CONTACT")
        .and_then_at(T0 + Duration::days(13))
        .given([
            nat(31, T0 + Duration::days(3), TestResult::Negative),
            nat(32, T0 + Duration::days(9), TestResult::Negative),
        ])
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Green, "NO_RISK");
}

#[test]
fn a_traveller_from_a_medium_risk_county_is_yellow_in_one_province_and_green_in_another() {
    let then = scenario()
        .by(citizen())
        .at(T0 + Duration::hours(1))
        .given([
            registered_in(SHANGHAI, HUANGPU_COMMUNITY),
            green_in(SHANGHAI),
            green_in(BEIJING),
        ])
        .with_policy(published(SHANGHAI, "shanghai-2020", 1, high_only_policy()))
        .with_risk(risk_declared(
            CHANGAN_SHIJIAZHUANG,
            RiskLevel::Medium,
            T0 - Duration::days(3),
        ))
        .when(PersonCommand::DeclareItinerary {
            trips: vec![Trip {
                evidence_id: EventId::from_u128(40),
                mode: TravelMode::Rail,
                from: code(CHANGAN_SHIJIAZHUANG),
                to: code("310101"),
                date: date!(2020 - 06 - 12),
            }],
            ext: None,
        });
    let changes = then.colour_changes();
    assert!(changes.contains(&(
        code(BEIJING),
        Colour::Yellow,
        "RISK_AREA_TRAVEL".to_string()
    )));
    assert!(!changes
        .iter()
        .any(|(region, colour, _)| *region == code(SHANGHAI) && *colour != Colour::Green));
    then.then_colour(BEIJING, Colour::Yellow, "RISK_AREA_TRAVEL")
        .then_colour(SHANGHAI, Colour::Green, "NO_RISK");
}

#[test]
fn yellow_ages_out_after_fourteen_days_and_re_evaluation_is_idempotent() {
    scenario()
        .at(T0 + Duration::days(5))
        .given([
            registered(),
            green_in(BEIJING),
            venue_visit(20, T0 - Duration::days(2), HUAXIANG_COMMUNITY),
        ])
        .with_risk(risk_declared(HUAXIANG, RiskLevel::High, T0))
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Yellow, "RISK_AREA_VENUE_VISIT")
        .and_then_at(T0 + Duration::days(12))
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Green, "NO_RISK")
        .and_then_at(T0 + Duration::days(12))
        .when(PersonCommand::Reevaluate)
        .then_no_events();
}

#[test]
fn lifting_a_risk_area_returns_its_visitors_to_green_on_re_evaluation() {
    scenario()
        .given([
            registered(),
            green_in(BEIJING),
            venue_visit(20, T0 - Duration::days(2), HUAXIANG_COMMUNITY),
        ])
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 - Duration::days(1),
        ))
        .with_risk(HealthEvent::RiskAreaLifted {
            area: code(HUAXIANG),
            by: fengtai_official().id,
            at: T0 - Duration::hours(1),
        })
        .when(PersonCommand::Reevaluate)
        .then_no_events();
}

// ---- risk areas and policies -------------------------------------------

#[test]
fn only_an_official_of_a_region_containing_the_area_may_declare_it() {
    let cmd = RiskAreaCommand::Declare {
        area: code(HUAXIANG),
        level: RiskLevel::High,
    };
    let ok = decide_risk(
        &RiskAreaState::default(),
        &cmd,
        &fengtai_official(),
        divisions(),
        T0,
    )
    .unwrap();
    assert_eq!(ok, vec![risk_declared(HUAXIANG, RiskLevel::High, T0)]);
    let err = decide_risk(
        &RiskAreaState::default(),
        &cmd,
        &dongcheng_official(),
        divisions(),
        T0,
    )
    .unwrap_err();
    assert!(matches!(err, HealthCodeError::Forbidden(_)));
    // Raising the level is a change; declaring the same level again changes nothing.
    let state = RiskAreaState::default().evolve(&ok[0]);
    assert!(
        decide_risk(&state, &cmd, &fengtai_official(), divisions(), T0)
            .unwrap()
            .is_empty()
    );
    let medium = RiskAreaCommand::Declare {
        area: code(HUAXIANG),
        level: RiskLevel::Medium,
    };
    assert!(matches!(
        decide_risk(&state, &medium, &fengtai_official(), divisions(), T0).unwrap()[..],
        [HealthEvent::RiskLevelChanged {
            from: RiskLevel::High,
            to: RiskLevel::Medium,
            ..
        }]
    ));
}

#[test]
fn risk_areas_are_declared_at_county_street_or_community_level_only() {
    let cmd = RiskAreaCommand::Declare {
        area: code("1101"),
        level: RiskLevel::High,
    };
    let err = decide_risk(
        &RiskAreaState::default(),
        &cmd,
        &beijing_official(),
        divisions(),
        T0,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::InvalidInput { field: "area", .. }
    ));
    let unknown = RiskAreaCommand::Declare {
        area: code("110106999"),
        level: RiskLevel::High,
    };
    let err = decide_risk(
        &RiskAreaState::default(),
        &unknown,
        &beijing_official(),
        divisions(),
        T0,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::Division { field: "area", .. }
    ));
}

#[test]
fn publishing_a_policy_increments_its_version_and_rejects_rules_that_do_not_parse() {
    let book = PolicyBook::new();
    let cmd = PublishPolicy {
        region: code(BEIJING),
        policy_id: "beijing".into(),
        document: baseline_document(),
    };
    let events = decide_publish(&book, &cmd, &beijing_official(), T0).unwrap();
    assert!(matches!(
        &events[..],
        [HealthEvent::PolicyPublished { version: 1, .. }]
    ));
    let mut book = book;
    book.apply(&events[0]);
    let events = decide_publish(&book, &cmd, &beijing_official(), T0).unwrap();
    assert!(matches!(
        &events[..],
        [HealthEvent::PolicyPublished { version: 2, .. }]
    ));

    let mut typo = baseline_document();
    typo.rules.push(RuleSpec {
        id: "yellow.typo".into(),
        colour: Colour::Yellow,
        reason: "TYPO".into(),
        when: json!({"<": [{"var": "days_since_contact"}, 14]}),
    });
    let err = decide_publish(
        &book,
        &PublishPolicy {
            document: typo,
            ..cmd.clone()
        },
        &beijing_official(),
        T0,
    )
    .unwrap_err();
    assert!(
        matches!(err, HealthCodeError::PolicyInvalid { ref field, .. } if field == "rules[7].when"),
        "{err}"
    );

    let err = decide_publish(&book, &cmd, &shanghai_official(), T0).unwrap_err();
    assert!(matches!(err, HealthCodeError::Forbidden(_)));
}

#[test]
fn a_city_without_a_policy_follows_its_province_and_a_province_without_one_the_baseline() {
    let mut book = PolicyBook::new();
    book.apply(&published(BEIJING, "beijing", 1, high_only_policy()));
    assert_eq!(book.resolve(&code("1101"), T0).id, "beijing");
    assert_eq!(book.resolve(&code(SHANGHAI), T0).id, "national-baseline");
}

// ---- codes, declarations, queries, appeals, erasure ---------------------

#[test]
fn a_region_that_demands_a_recent_declaration_refuses_a_code_without_one() {
    let mut doc = baseline_document();
    doc.declaration_max_age_hours = Some(24);
    let code_id = Uuid::from_u128(0xC0DE);
    scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .with_policy(published(BEIJING, "beijing", 1, doc))
        .when(PersonCommand::GenerateCode {
            code_id,
            region: code(BEIJING),
            ext: None,
        })
        .then_fails(|e| matches!(e, HealthCodeError::DeclarationRequired { hours: 24, .. }))
        .and_then_at(T0)
        .when(PersonCommand::DeclareHealth {
            evidence_id: EventId::from_u128(50),
            at: T0 - Duration::hours(1),
            symptoms: vec![],
            temperature: Temperature::parse("temperature", 36.5).unwrap(),
            declared_travel: vec![],
            ext: None,
        })
        .and_then_at(T0)
        .when(PersonCommand::GenerateCode {
            code_id,
            region: code(BEIJING),
            ext: None,
        })
        .then_colour(BEIJING, Colour::Green, "NO_RISK");
}

#[test]
fn generating_a_code_in_a_new_region_evaluates_that_regions_policy_first() {
    let then = scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::GenerateCode {
            code_id: Uuid::from_u128(1),
            region: code(SHANGHAI),
            ext: None,
        });
    assert!(matches!(
        then.events(),
        [
            HealthEvent::ColourChanged {
                cause: ColourCause::FirstEvaluation,
                ..
            },
            HealthEvent::CodeGenerated {
                colour: Colour::Green,
                ..
            }
        ]
    ));
}

#[test]
fn an_officials_read_of_health_information_is_an_event_the_person_can_see() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::QueryHealthInfo {
            purpose: "epidemiological investigation".into(),
            ext: None,
        })
        .then_expect(vec![HealthEvent::HealthInfoQueried {
            person_id: PERSON,
            by: beijing_official().id,
            role: "health_official".into(),
            purpose: "epidemiological investigation".into(),
            at: T0,
            ext: None,
        }]);
    scenario()
        .by(citizen())
        .given([registered()])
        .when(PersonCommand::QueryHealthInfo {
            purpose: "my own".into(),
            ext: None,
        })
        .then_no_events();
}

#[test]
fn an_appeal_is_upheld_only_by_an_official_of_the_region_and_only_once() {
    let appeal_id = Uuid::from_u128(0xA1);
    let filed = scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::FileAppeal {
            appeal_id,
            region: code(BEIJING),
            reason: "I was never there".into(),
            ext: None,
        });
    assert!(matches!(
        filed.events(),
        [HealthEvent::AppealFiled {
            colour: Colour::Green,
            ..
        }]
    ));
    let s = filed.and_then_at(T0 + Duration::hours(2));
    let history = s.given.clone();
    s.by(shanghai_official())
        .when(PersonCommand::UpholdAppeal {
            appeal_id,
            reason: "n/a".into(),
        })
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
    scenario()
        .given(history)
        .when(PersonCommand::UpholdAppeal {
            appeal_id,
            reason: "telco record confirmed".into(),
        })
        .and_then_at(T0 + Duration::hours(3))
        .when(PersonCommand::UpholdAppeal {
            appeal_id,
            reason: "again".into(),
        })
        .then_fails(|e| matches!(e, HealthCodeError::AppealAlreadyDecided(_)));
}

#[test]
fn erasure_is_only_for_the_person_or_an_admin_and_is_recorded() {
    scenario()
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::ErasePersonalData)
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
    let then = scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::ErasePersonalData);
    assert!(
        matches!(then.events(), [HealthEvent::PersonalDataErased { person_id, .. }] if *person_id == PERSON)
    );
    assert!(then.after.erased && then.after.personal.is_none());
}

#[test]
fn events_round_trip_through_json_with_stable_type_names() {
    let events = vec![
        registered(),
        green_in(BEIJING),
        venue_visit(1, T0, HUAXIANG_COMMUNITY),
        close_contact(2, date!(2020 - 06 - 10)),
    ];
    for e in events {
        let json = serde_json::to_value(&e).unwrap();
        assert!(json["type"].as_str().unwrap().ends_with(".v1"));
        let back: HealthEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }
    assert_eq!(
        venue_visit(1, T0, HUAXIANG_COMMUNITY).type_name(),
        "VenueVisited.v1"
    );
    let _ = PersonId::from_u128(0);
}

#[test]
fn a_malformed_resident_id_number_is_rejected_naming_the_field_and_the_rule() {
    use tongban_health_code::resident_id::IdentityDocument;
    let err = IdentityDocument::parse("resident_id", "110105194912310021").unwrap_err();
    assert!(
        matches!(err, HealthCodeError::InvalidInput { field: "id_document.number", ref rule } if rule.contains("GB 11643"))
    );
    let err = IdentityDocument::parse("driving_licence", "123456").unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::InvalidInput {
            field: "id_document.kind",
            ..
        }
    ));
}

#[test]
fn biz_ext_data_is_stored_with_the_declaration() {
    use tongban_health_code::types::BizExt;
    let ext = BizExt::parse(json!({"channel": "wechat-miniprogram", "sceneId": "S-17"})).unwrap();
    let then = scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::DeclareHealth {
            evidence_id: EventId::from_u128(60),
            at: T0,
            symptoms: vec![],
            temperature: Temperature::parse("temperature", 36.4).unwrap(),
            declared_travel: vec![code(HUAXIANG_COMMUNITY)],
            ext: Some(ext.clone()),
        });
    match &then.events()[0] {
        HealthEvent::EvidenceRecorded {
            ext: stored,
            evidence: Evidence::HealthDeclared {
                declared_travel, ..
            },
            ..
        } => {
            assert_eq!(stored.as_ref(), Some(&ext));
            assert_eq!(
                declared_travel,
                &vec![code(FENGTAI)],
                "declared places are kept at county level"
            );
        }
        other => panic!("expected a declaration, got {other:?}"),
    }
}

#[test]
fn a_request_to_call_a_code_names_the_app_and_its_purpose() {
    scenario()
        .by(citizen())
        .given([registered(), green_in(BEIJING)])
        .when(PersonCommand::RequestCodeCall {
            requester: "Beijing Metro".into(),
            purpose: "station entry".into(),
            ext: None,
        })
        .then_expect(vec![HealthEvent::CodeCallRequested {
            person_id: PERSON,
            requester: "Beijing Metro".into(),
            purpose: "station entry".into(),
            granted: true,
            at: T0,
            ext: None,
        }])
        .and_then_at(T0)
        .when(PersonCommand::RequestCodeCall {
            requester: " ".into(),
            purpose: "x".into(),
            ext: None,
        })
        .then_fails(|e| {
            matches!(
                e,
                HealthCodeError::InvalidInput {
                    field: "requester",
                    ..
                }
            )
        });
}

// ---- who may declare, call a code, generate a code -----------------------

fn another_citizen() -> Actor {
    Actor::citizen(ActorId::from_u128(0xC2), PersonId::from_u128(0x2002))
}

fn every_role_but_the_person_and_their_officials() -> Vec<Actor> {
    vec![
        another_citizen(),
        checkpoint_device(),
        lab(),
        shanghai_official(),
        fengtai_official(),
        Actor {
            id: ActorId::from_u128(0xE1),
            role: Role::Enterprise {
                enterprise: Uuid::from_u128(0xE1),
            },
        },
        Actor {
            id: ActorId::from_u128(0xA1),
            role: Role::Auditor,
        },
        Actor {
            id: ActorId::from_u128(0xDE),
            role: Role::Department {
                name: "transport".into(),
            },
        },
    ]
}

fn itinerary() -> PersonCommand {
    PersonCommand::DeclareItinerary {
        trips: vec![Trip {
            evidence_id: EventId::from_u128(81),
            mode: TravelMode::Rail,
            from: code("110101"),
            to: code(FENGTAI),
            date: date!(2020 - 06 - 12),
        }],
        ext: None,
    }
}

fn health_declaration() -> PersonCommand {
    PersonCommand::DeclareHealth {
        evidence_id: EventId::from_u128(82),
        at: T0,
        symptoms: vec![],
        temperature: Temperature::parse("temperature", 36.6).expect("valid"),
        declared_travel: vec![code(FENGTAI)],
        ext: None,
    }
}

#[test]
fn only_the_person_or_an_official_over_their_residence_may_declare_an_itinerary_or_health() {
    // The person lives in Dongcheng (Beijing): a Fengtai or Shanghai official,
    // another citizen, a checkpoint, a lab, an enterprise, an auditor and a
    // department are all refused, and nothing is recorded.
    for command in [itinerary(), health_declaration()] {
        for actor in every_role_but_the_person_and_their_officials() {
            scenario()
                .by(actor.clone())
                .given([registered(), green_in(BEIJING)])
                .when(command.clone())
                .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
        }
        for actor in [citizen(), dongcheng_official(), beijing_official()] {
            let then = scenario()
                .by(actor)
                .given([registered(), green_in(BEIJING)])
                .when(command.clone());
            assert!(!then.events().is_empty());
        }
    }
}

#[test]
fn a_code_call_is_requested_by_the_person_or_at_a_checkpoint_only() {
    let call = || PersonCommand::RequestCodeCall {
        requester: "Beijing Metro".into(),
        purpose: "station entry".into(),
        ext: None,
    };
    for actor in every_role_but_the_person_and_their_officials()
        .into_iter()
        .filter(|a| !matches!(a.role, Role::Checkpoint { .. }))
        .chain([beijing_official()])
    {
        scenario()
            .by(actor)
            .given([registered(), green_in(BEIJING)])
            .when(call())
            .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
    }
    for actor in [citizen(), checkpoint_device()] {
        let then = scenario()
            .by(actor)
            .given([registered(), green_in(BEIJING)])
            .when(call());
        assert_eq!(then.events().len(), 1);
    }
}

#[test]
fn a_shanghai_official_cannot_mint_a_code_for_a_beijing_resident() {
    let generate = || PersonCommand::GenerateCode {
        code_id: Uuid::from_u128(0xC0DE),
        region: code(BEIJING),
        ext: None,
    };
    scenario()
        .by(shanghai_official())
        .given([registered(), green_in(BEIJING)])
        .when(generate())
        .then_fails(|e| matches!(e, HealthCodeError::Forbidden(_)));
    let then = scenario()
        .by(dongcheng_official())
        .given([registered(), green_in(BEIJING)])
        .when(generate());
    assert!(then
        .events()
        .iter()
        .any(|e| matches!(e, HealthEvent::CodeGenerated { .. })));
}
