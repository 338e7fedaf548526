//! Property tests: evaluation is deterministic, does not depend on the order
//! evidence arrived in, and replaying the recorded events yields the same
//! colours (after which a re-evaluation changes nothing).

use crate::support;

use proptest::prelude::*;
use support::*;
use time::{Duration, OffsetDateTime};
use tongban_health_code::events::{Evidence, EvidenceMeta, EvidenceSource, HealthEvent};
use tongban_health_code::facts;
use tongban_health_code::person::{decide, PersonCommand, PersonState};
use tongban_health_code::policy::{national_baseline, PolicyBook};
use tongban_health_code::risk::RiskMap;
use tongban_health_code::types::{RiskLevel, Temperature, TestResult, TravelMode};
use tongban_health_code::DecisionContext;
use tongban_kernel::{CheckpointId, EventId};

const PLACES: [&str; 4] = [
    HUAXIANG_COMMUNITY,
    DONGCHENG_COMMUNITY,
    "110106018006",
    HUANGPU_COMMUNITY,
];
const COUNTIES: [&str; 4] = [FENGTAI, "110101", CHANGAN_SHIJIAZHUANG, "310101"];

fn evidence_kind() -> impl Strategy<Value = Evidence> {
    prop_oneof![
        (0usize..4).prop_map(|i| Evidence::VenueVisited {
            checkpoint: CheckpointId::from_u128(1),
            place: code(PLACES[i])
        }),
        (0usize..4, 1u32..600).prop_map(|(i, m)| Evidence::DwellReported {
            county: code(COUNTIES[i]),
            minutes: m
        }),
        (0usize..4, 0usize..4, 0i64..20).prop_map(|(a, b, d)| Evidence::TravelRecorded {
            mode: TravelMode::Rail,
            from_county: code(COUNTIES[a]),
            to_county: code(COUNTIES[b]),
            date: (T0 - Duration::days(d)).date(),
        }),
        (any::<bool>(), 0i64..400).prop_map(|(pos, h)| Evidence::NucleicAcidTested {
            sampled_at: T0 - Duration::hours(h),
            result: if pos {
                TestResult::Positive
            } else {
                TestResult::Negative
            },
            lab: "lab".into(),
        }),
        (0i64..25).prop_map(|d| Evidence::CloseContactIdentified {
            case_ref: "C".into(),
            exposure_date: (T0 - Duration::days(d)).date(),
        }),
        (360u32..400).prop_map(|t| Evidence::TemperatureMeasured {
            checkpoint: CheckpointId::from_u128(1),
            place: code(HUAXIANG_COMMUNITY),
            temperature: Temperature::parse("t", f64::from(t) / 10.0).unwrap(),
        }),
        (360u32..390, any::<bool>()).prop_map(|(t, symptoms)| Evidence::HealthDeclared {
            symptoms: if symptoms {
                vec!["cough".into()]
            } else {
                vec![]
            },
            temperature: Temperature::parse("t", f64::from(t) / 10.0).unwrap(),
            declared_travel: vec![],
        }),
    ]
}

/// Evidence with distinct business times (minutes apart) within the last 20 days.
fn evidence_list() -> impl Strategy<Value = Vec<(EvidenceMeta, Evidence)>> {
    prop::collection::vec((evidence_kind(), 0i64..(20 * 24 * 60)), 0..30).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (e, minutes))| {
                let at = T0 - Duration::minutes(minutes) - Duration::seconds(i as i64);
                (
                    EvidenceMeta {
                        id: EventId::from_u128(i as u128 + 1),
                        source: EvidenceSource::Checkpoint,
                        occurred_at: at,
                        recorded_by: beijing_official().id,
                    },
                    e,
                )
            })
            .collect()
    })
}

fn risk_map(levels: &[Option<RiskLevel>]) -> RiskMap {
    let areas = [HUAXIANG, CHANGAN_SHIJIAZHUANG, "110101001"];
    let mut map = RiskMap::new();
    for (area, level) in areas.iter().zip(levels) {
        if let Some(level) = level {
            map.apply(&HealthEvent::RiskAreaDeclared {
                area: code(area),
                level: *level,
                by: fengtai_official().id,
                at: T0 - Duration::days(30),
            });
        }
    }
    map
}

fn level() -> impl Strategy<Value = Option<RiskLevel>> {
    prop_oneof![
        Just(None),
        Just(Some(RiskLevel::Low)),
        Just(Some(RiskLevel::Medium)),
        Just(Some(RiskLevel::High))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn evaluation_is_deterministic_and_independent_of_arrival_order(
        evidence in evidence_list(),
        levels in prop::collection::vec(level(), 3),
        later_hours in 0i64..(30 * 24),
        seed in any::<u64>(),
    ) {
        let risk = risk_map(&levels);
        let now = T0 + Duration::hours(later_hours);
        let policy = national_baseline();
        let first = policy.evaluate(&facts::compute(&evidence, &risk, now));
        let second = policy.evaluate(&facts::compute(&evidence, &risk, now));
        prop_assert_eq!(&first, &second);

        let mut shuffled = evidence.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(first, policy.evaluate(&facts::compute(&shuffled, &risk, now)));
    }

    #[test]
    fn replaying_the_recorded_events_yields_the_same_colours(
        evidence in evidence_list(),
        levels in prop::collection::vec(level(), 3),
        steps in prop::collection::vec(0i64..(3 * 24), 1..6),
    ) {
        let risk = risk_map(&levels);
        let policies = PolicyBook::new();
        let actor = beijing_official();
        let mut log = vec![registered(), green_in(BEIJING)];
        let mut live = PersonState::from_events(&log);
        let mut now = T0;
        // Record the evidence, then let time pass with scheduled re-evaluations.
        for (meta, e) in evidence {
            let ctx = DecisionContext { now, divisions: divisions(), policies: &policies, risk: &risk, actor: &actor };
            let events = decide(&live, &PersonCommand::RecordEvidence { meta, evidence: e, ext: None }, &ctx).unwrap();
            for e in &events { live.apply(e); }
            log.extend(events);
        }
        for hours in steps {
            now += Duration::hours(hours);
            let ctx = DecisionContext { now, divisions: divisions(), policies: &policies, risk: &risk, actor: &actor };
            let events = decide(&live, &PersonCommand::Reevaluate, &ctx).unwrap();
            for e in &events { live.apply(e); }
            log.extend(events);
        }
        let replayed = PersonState::from_events(&log);
        prop_assert_eq!(&replayed.colours, &live.colours);
        let ctx = DecisionContext { now, divisions: divisions(), policies: &policies, risk: &risk, actor: &actor };
        prop_assert!(decide(&replayed, &PersonCommand::Reevaluate, &ctx).unwrap().is_empty());
        let _: OffsetDateTime = now;
    }
}
