//! Given/when/then scenarios of checkpoints: registration, both scan
//! directions, admission policies, token verification and scans as evidence.

use crate::support;

use support::*;
use time::{Duration, OffsetDateTime};
use tongban_health_code::checkpoint::{
    check_code, decide, scan_evidence, CheckMode, CheckpointCommand, CheckpointState,
};
use tongban_health_code::events::{Evidence, HealthEvent};
use tongban_health_code::person::{PersonCommand, PersonState};
use tongban_health_code::policy::PolicyBook;
use tongban_health_code::risk::RiskMap;
use tongban_health_code::token::{
    sign_code, sign_place, CodeClaims, KeyDirectory, PlaceClaims, RegionKey,
};
use tongban_health_code::types::{Colour, RiskLevel, ScanDirection, Temperature, TestResult};
use tongban_health_code::{DecisionContext, HealthCodeError};
use tongban_kernel::{Actor, CheckpointId, EventId};
use uuid::Uuid;

const MARKET: CheckpointId = CheckpointId::from_u128(0xAA);

fn beijing_key() -> RegionKey {
    RegionKey::from_seed(code(BEIJING), [11; 32])
}

fn directory() -> KeyDirectory {
    let mut d = KeyDirectory::new();
    d.publish(beijing_key().published());
    d
}

fn registered_market(admission: &str) -> HealthEvent {
    HealthEvent::CheckpointRegistered {
        checkpoint_id: MARKET,
        name: "新发地农产品批发市场".into(),
        place: code(HUAXIANG_COMMUNITY),
        admission: tongban_health_code::types::AdmissionPolicy::parse(admission).unwrap(),
        by: fengtai_official().id,
        at: T0 - Duration::days(100),
    }
}

fn token(colour: Colour, negative_test_at: Option<OffsetDateTime>) -> Vec<u8> {
    sign_code(
        &beijing_key(),
        &CodeClaims {
            code_id: Uuid::from_u128(0xC0DE),
            colour,
            region: code(BEIJING),
            issued_at: T0 - Duration::minutes(1),
            expires_at: T0 + Duration::minutes(9),
            negative_test_at,
        },
    )
    .unwrap()
}

fn scan(code_token: Vec<u8>, temperature: Option<f64>) -> CheckpointCommand {
    CheckpointCommand::Scan {
        scan_id: EventId::from_u128(0x5CA),
        direction: ScanDirection::GuardScansPerson,
        code_token,
        place_token: None,
        temperature: temperature.map(|t| Temperature::parse("temperature", t).unwrap()),
    }
}

fn run(
    given: &[HealthEvent],
    command: CheckpointCommand,
    actor: Actor,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    run_with_holder(given, command, actor, None)
}

/// Decides on the checkpoint `given`, with the code's holder as their
/// stream stands at the log head (`None`: a holder this hub does not know).
fn run_with_holder(
    given: &[HealthEvent],
    command: CheckpointCommand,
    actor: Actor,
    holder: Option<&PersonState>,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    let state = given
        .iter()
        .fold(CheckpointState::default(), |s, e| s.evolve(e));
    let (policies, risk) = (PolicyBook::new(), RiskMap::new());
    let ctx = DecisionContext {
        now: T0,
        divisions: divisions(),
        policies: &policies,
        risk: &risk,
        actor: &actor,
    };
    decide(&state, &command, &ctx, &directory(), holder)
}

fn result_of(events: &[HealthEvent]) -> (bool, String) {
    match events {
        [HealthEvent::CodeScanned {
            admitted, reason, ..
        }] => (*admitted, reason.clone()),
        other => panic!("expected one scan, got {other:?}"),
    }
}

#[test]
fn the_street_office_containing_a_market_registers_it_with_a_green_only_policy() {
    let events = run(
        &[],
        CheckpointCommand::Register {
            checkpoint_id: MARKET,
            name: "新发地农产品批发市场".into(),
            place: code(HUAXIANG_COMMUNITY),
            admission: r#"{"admit":["green"]}"#.into(),
        },
        fengtai_official(),
    )
    .unwrap();
    let mut expected = registered_market(r#"{"admit":["green"]}"#);
    if let HealthEvent::CheckpointRegistered { at, .. } = &mut expected {
        *at = T0;
    }
    assert_eq!(events, vec![expected]);
}

#[test]
fn an_official_of_another_district_may_not_register_the_market() {
    let err = run(
        &[],
        CheckpointCommand::Register {
            checkpoint_id: MARKET,
            name: "market".into(),
            place: code(HUAXIANG_COMMUNITY),
            admission: r#"{"admit":["green"]}"#.into(),
        },
        dongcheng_official(),
    )
    .unwrap_err();
    assert!(matches!(err, HealthCodeError::Forbidden(_)));
}

#[test]
fn a_checkpoint_policy_that_does_not_parse_is_rejected_and_nothing_is_registered() {
    let err = run(
        &[],
        CheckpointCommand::Register {
            checkpoint_id: MARKET,
            name: "market".into(),
            place: code(HUAXIANG_COMMUNITY),
            admission: r#"{"admit":["green"],"yellow_if":"maybe"}"#.into(),
        },
        fengtai_official(),
    )
    .unwrap_err();
    assert!(
        matches!(err, HealthCodeError::PolicyInvalid { .. }),
        "{err}"
    );
}

#[test]
fn a_guard_scanning_a_green_code_admits_and_the_visit_becomes_evidence() {
    let events = run(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Green, None), Some(36.4)),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(result_of(&events), (true, "ADMITTED".into()));
    let evidence = scan_evidence(&events[0], code(HUAXIANG_COMMUNITY));
    assert!(matches!(
        evidence[..],
        [
            Evidence::TemperatureMeasured { .. },
            Evidence::VenueVisited { .. }
        ]
    ));
}

#[test]
fn a_red_code_is_denied() {
    let events = run(
        &[registered_market(r#"{"admit":["green","yellow"]}"#)],
        scan(token(Colour::Red, None), None),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(result_of(&events), (false, "RED_CODE".into()));
    assert!(scan_evidence(&events[0], code(HUAXIANG_COMMUNITY)).is_empty());
}

#[test]
fn yellow_is_admitted_only_with_a_negative_test_within_forty_eight_hours_where_the_policy_says_so()
{
    let venue = registered_market(
        r#"{"admit":["green","yellow"],"yellow_needs_negative_test_within_hours":48}"#,
    );
    let recent = run(
        std::slice::from_ref(&venue),
        scan(token(Colour::Yellow, Some(T0 - Duration::hours(30))), None),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(
        result_of(&recent),
        (true, "ADMITTED_WITH_NEGATIVE_TEST".into())
    );
    let stale = run(
        std::slice::from_ref(&venue),
        scan(token(Colour::Yellow, Some(T0 - Duration::hours(50))), None),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(
        result_of(&stale),
        (false, "YELLOW_WITHOUT_RECENT_TEST".into())
    );
    let green_only = run(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Yellow, None), None),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(
        result_of(&green_only),
        (false, "COLOUR_NOT_ADMITTED".into())
    );
}

#[test]
fn a_fever_at_the_door_denies_entry_and_is_recorded_as_evidence() {
    let events = run(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Green, None), Some(38.0)),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(result_of(&events), (false, "FEVER".into()));
    assert!(matches!(
        scan_evidence(&events[0], code(HUAXIANG_COMMUNITY))[..],
        [Evidence::TemperatureMeasured { .. }]
    ));
}

#[test]
fn an_expired_code_is_rejected_with_a_typed_error() {
    let expired = sign_code(
        &beijing_key(),
        &CodeClaims {
            code_id: Uuid::from_u128(1),
            colour: Colour::Green,
            region: code(BEIJING),
            issued_at: T0 - Duration::minutes(20),
            expires_at: T0 - Duration::minutes(10),
            negative_test_at: None,
        },
    )
    .unwrap();
    let err = run(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(expired, None),
        checkpoint_device(),
    )
    .unwrap_err();
    assert!(matches!(err, HealthCodeError::TokenExpired { .. }));
}

#[test]
fn a_code_signed_by_an_unknown_key_is_rejected() {
    let rogue = RegionKey::from_seed(code(BEIJING), [66; 32]);
    let claims = CodeClaims {
        code_id: Uuid::from_u128(1),
        colour: Colour::Green,
        region: code(BEIJING),
        issued_at: T0,
        expires_at: T0 + Duration::minutes(5),
        negative_test_at: None,
    };
    let err = run(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(sign_code(&rogue, &claims).unwrap(), None),
        checkpoint_device(),
    )
    .unwrap_err();
    assert!(matches!(err, HealthCodeError::TokenUnknownKey(_)));
}

#[test]
fn a_person_scanning_the_venues_place_code_is_admitted_and_another_venues_code_is_refused() {
    let place = |checkpoint_id| {
        sign_place(
            &beijing_key(),
            &PlaceClaims {
                checkpoint_id,
                place: code(HUAXIANG_COMMUNITY),
                issued_at: T0 - Duration::days(1),
            },
        )
        .unwrap()
    };
    let cmd = |place_token| CheckpointCommand::Scan {
        scan_id: EventId::from_u128(0x5CB),
        direction: ScanDirection::PersonScansVenue,
        code_token: token(Colour::Green, None),
        place_token: Some(place_token),
        temperature: None,
    };
    let venue = registered_market(r#"{"admit":["green"]}"#);
    let ok = run(std::slice::from_ref(&venue), cmd(place(MARKET)), citizen()).unwrap();
    assert!(matches!(
        &ok[..],
        [HealthEvent::CodeScanned {
            admitted: true,
            direction: ScanDirection::PersonScansVenue,
            ..
        }]
    ));
    let err = run(
        &[venue],
        cmd(place(CheckpointId::from_u128(0xBB))),
        citizen(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::InvalidInput {
            field: "place_token",
            ..
        }
    ));
}

#[test]
fn scanning_the_same_scan_twice_records_it_once() {
    let venue = registered_market(r#"{"admit":["green"]}"#);
    let first = run(
        std::slice::from_ref(&venue),
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
    )
    .unwrap();
    let again = run(
        &[venue, first[0].clone()],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
    )
    .unwrap();
    assert!(again.is_empty());
}

#[test]
fn a_venue_later_declared_a_risk_area_turns_its_recent_visitors_yellow() {
    let venue = registered_market(r#"{"admit":["green"]}"#);
    let scanned = run(
        &[venue],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
    )
    .unwrap();
    let visits: Vec<HealthEvent> = scan_evidence(&scanned[0], code(HUAXIANG_COMMUNITY))
        .into_iter()
        .map(|e| HealthEvent::EvidenceRecorded {
            person_id: PERSON,
            meta: meta(
                0x5CA,
                tongban_health_code::EvidenceSource::Checkpoint,
                T0,
                &checkpoint_device(),
            ),
            evidence: e,
            ext: None,
        })
        .collect();
    scenario()
        .at(T0 + Duration::days(3))
        .given([registered(), green_in(BEIJING)])
        .given(visits)
        .with_risk(risk_declared(
            HUAXIANG,
            RiskLevel::High,
            T0 + Duration::days(2),
        ))
        .when(PersonCommand::Reevaluate)
        .then_colour(BEIJING, Colour::Yellow, "RISK_AREA_VENUE_VISIT");
}

// ------------------------------------------------------------------------
// Checkpoint safety: a scan decides on the holder's status at the log head.

const STATION: CheckpointId = CheckpointId::from_u128(0xBB);
const CODE: Uuid = Uuid::from_u128(0xC0DE);

/// The code `token` signs, as the holder's stream recorded it.
fn code_generated(colour: Colour) -> HealthEvent {
    HealthEvent::CodeGenerated {
        person_id: PERSON,
        code_id: CODE,
        region: code(BEIJING),
        colour,
        issued_at: T0 - Duration::minutes(1),
        expires_at: T0 + Duration::minutes(9),
        ext: None,
    }
}

fn registered_station() -> HealthEvent {
    HealthEvent::CheckpointRegistered {
        checkpoint_id: STATION,
        name: "北京南站 Beijing South".into(),
        place: code(HUAXIANG_COMMUNITY),
        admission: tongban_health_code::types::AdmissionPolicy::parse(r#"{"admit":["green"]}"#)
            .unwrap(),
        by: fengtai_official().id,
        at: T0 - Duration::days(100),
    }
}

/// A green holder with the green code `token` signs.
fn green_holder_with_a_code() -> Vec<HealthEvent> {
    vec![
        registered(),
        green_in(BEIJING),
        code_generated(Colour::Green),
    ]
}

/// The scanned verdict: (admitted, reason, colour, checked online).
fn verdict_of(events: &[HealthEvent]) -> (bool, String, Colour, bool) {
    match events {
        [HealthEvent::CodeScanned {
            admitted,
            reason,
            colour,
            checked_online,
            ..
        }] => (*admitted, reason.clone(), *colour, *checked_online),
        other => panic!("expected one scan, got {other:?}"),
    }
}

fn record(evidence: Evidence, at: OffsetDateTime) -> PersonCommand {
    PersonCommand::RecordEvidence {
        meta: meta(0x7E57, tongban_health_code::EvidenceSource::Lab, at, &lab()),
        evidence,
        ext: None,
    }
}

#[test]
fn a_green_code_of_a_holder_who_is_still_green_is_admitted_on_the_status_at_the_log_head() {
    let holder = PersonState::from_events(&green_holder_with_a_code());
    let events = run_with_holder(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
        Some(&holder),
    )
    .unwrap();
    assert_eq!(
        verdict_of(&events),
        (true, "ADMITTED".into(), Colour::Green, true)
    );
}

#[test]
fn a_positive_test_recorded_after_the_code_was_issued_voids_the_code_and_the_holder_is_denied_as_red(
) {
    // Given a holder who generated a green code, then tested positive,
    let holder = scenario()
        .at(T0 - Duration::seconds(30))
        .by(lab())
        .given(green_holder_with_a_code())
        .when(record(
            Evidence::NucleicAcidTested {
                sampled_at: T0 - Duration::seconds(40),
                result: TestResult::Positive,
                lab: "CDC".into(),
            },
            T0 - Duration::seconds(40),
        ))
        .then_colour(BEIJING, Colour::Red, "CONFIRMED_OR_POSITIVE")
        .after;
    assert_eq!(holder.code_superseded(&CODE), Some(true));

    // when the guard scans the earlier green code,
    let events = run_with_holder(
        &[registered_market(r#"{"admit":["green","yellow"]}"#)],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
        Some(&holder),
    )
    .unwrap();

    // then it is denied as void, and the guard sees the colour now: red.
    assert_eq!(
        verdict_of(&events),
        (false, "CODE_SUPERSEDED".into(), Colour::Red, true)
    );
    assert!(
        scan_evidence(&events[0], code(HUAXIANG_COMMUNITY)).is_empty(),
        "a denied scan is no visit"
    );
}

#[test]
fn a_fever_at_one_checkpoint_denies_the_same_code_at_the_next_checkpoint() {
    // Given a green holder with a green code,
    let given = scenario()
        .at(T0)
        .by(checkpoint_device())
        .given(green_holder_with_a_code());
    let holder = given.state();

    // when the market measures 38.6 °C, the holder is denied for the fever
    let at_market = run_with_holder(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Green, None), Some(38.6)),
        checkpoint_device(),
        Some(&holder),
    )
    .unwrap();
    assert_eq!(
        verdict_of(&at_market),
        (false, "FEVER".into(), Colour::Green, true)
    );
    // and the measurement becomes evidence that turns the holder red;
    let [fever] = &scan_evidence(&at_market[0], code(HUAXIANG_COMMUNITY))[..] else {
        panic!("one temperature measured");
    };
    let holder = given
        .when(PersonCommand::RecordEvidence {
            meta: meta(
                0x5CA,
                tongban_health_code::EvidenceSource::Checkpoint,
                T0,
                &checkpoint_device(),
            ),
            evidence: fever.clone(),
            ext: None,
        })
        .then_colour(BEIJING, Colour::Red, "FEVER_PENDING_TEST")
        .after;

    // then the station, measuring nothing, denies the same code.
    let at_station = run_with_holder(
        &[registered_station()],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
        Some(&holder),
    )
    .unwrap();
    assert_eq!(
        verdict_of(&at_station),
        (false, "CODE_SUPERSEDED".into(), Colour::Red, true)
    );
}

#[test]
fn a_code_from_before_a_red_spell_stays_void_after_the_holder_turns_green_again() {
    let turned = |colour, previous| HealthEvent::ColourChanged {
        person_id: PERSON,
        region: code(BEIJING),
        colour,
        previous: Some(previous),
        policy_id: "national-baseline".into(),
        policy_version: 1,
        rule_id: "any".into(),
        reason: "TEST".into(),
        evidence: vec![],
        cause: tongban_health_code::events::ColourCause::Reevaluation,
        at: T0 - Duration::seconds(10),
    };
    let mut history = green_holder_with_a_code();
    history.push(turned(Colour::Red, Colour::Green));
    history.push(turned(Colour::Green, Colour::Red));
    let holder = PersonState::from_events(&history);
    let events = run_with_holder(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
        Some(&holder),
    )
    .unwrap();
    assert_eq!(
        verdict_of(&events),
        (false, "CODE_SUPERSEDED".into(), Colour::Green, true)
    );
}

#[test]
fn a_new_rule_that_keeps_the_colour_does_not_void_the_code() {
    let mut history = green_holder_with_a_code();
    history.push(HealthEvent::ColourChanged {
        person_id: PERSON,
        region: code(BEIJING),
        colour: Colour::Green,
        previous: Some(Colour::Green),
        policy_id: "beijing".into(),
        policy_version: 2,
        rule_id: "default".into(),
        reason: "NO_RISK".into(),
        evidence: vec![],
        cause: tongban_health_code::events::ColourCause::Reevaluation,
        at: T0 - Duration::seconds(10),
    });
    let holder = PersonState::from_events(&history);
    assert_eq!(holder.code_superseded(&CODE), Some(false));
}

#[test]
fn a_yellow_holder_is_admitted_on_a_negative_test_recorded_after_the_code_was_issued() {
    // The code was signed without a test; the test is at the log head.
    let mut history = vec![
        registered(),
        green_in(BEIJING),
        HealthEvent::ColourChanged {
            person_id: PERSON,
            region: code(BEIJING),
            colour: Colour::Yellow,
            previous: Some(Colour::Green),
            policy_id: "national-baseline".into(),
            policy_version: 1,
            rule_id: "yellow.any".into(),
            reason: "TEST".into(),
            evidence: vec![],
            cause: tongban_health_code::events::ColourCause::Reevaluation,
            at: T0 - Duration::hours(1),
        },
        code_generated(Colour::Yellow),
    ];
    history.push(nat(
        0x7E57,
        T0 - Duration::seconds(30),
        TestResult::Negative,
    ));
    let holder = PersonState::from_events(&history);
    let events = run_with_holder(
        &[registered_market(
            r#"{"admit":["green","yellow"],"yellow_needs_negative_test_within_hours":48}"#,
        )],
        scan(token(Colour::Yellow, None), None),
        checkpoint_device(),
        Some(&holder),
    )
    .unwrap();
    assert_eq!(
        verdict_of(&events),
        (
            true,
            "ADMITTED_WITH_NEGATIVE_TEST".into(),
            Colour::Yellow,
            true
        )
    );
}

#[test]
fn without_the_holders_stream_a_code_is_checked_offline_on_its_signed_colour_and_says_so() {
    // No holder known (another hub's code, or a device without a connection):
    let (claims, status) = check_code(&directory(), &token(Colour::Green, None), None, T0).unwrap();
    assert_eq!(status.mode, CheckMode::Offline);
    assert_eq!((status.colour, status.superseded), (Colour::Green, false));
    assert_eq!(claims.issued_at, T0 - Duration::minutes(1));
    let events = run(
        &[registered_market(r#"{"admit":["green"]}"#)],
        scan(token(Colour::Green, None), None),
        checkpoint_device(),
    )
    .unwrap();
    assert_eq!(
        verdict_of(&events),
        (true, "ADMITTED".into(), Colour::Green, false)
    );
    // and only within the code's short validity.
    let err = check_code(
        &directory(),
        &token(Colour::Green, None),
        None,
        T0 + Duration::minutes(9),
    )
    .unwrap_err();
    assert!(matches!(err, HealthCodeError::TokenExpired { .. }));
}

#[test]
fn a_holder_whose_stream_does_not_hold_the_code_is_not_taken_for_its_holder() {
    // Another person's state (no such code in it): the check falls back to
    // the signed claims instead of deciding on a stranger's colour.
    let stranger = PersonState::from_events(&[registered(), green_in(BEIJING)]);
    let (_, status) = check_code(
        &directory(),
        &token(Colour::Green, None),
        Some(&stranger),
        T0,
    )
    .unwrap();
    assert_eq!(status.mode, CheckMode::Offline);
}

// ------------------------------------------------------------------------
// The same through GraphQL: `scanCode` and `verifyCode` on a real store.

mod through_graphql {
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    use async_graphql::{EmptySubscription, Request, Schema, Variables};
    use serde_json::{json, Value};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    use tongban_health_code::graphql::{
        HealthCodeApi, HealthCodeMutation, HealthCodeQuery, Keyring, SharedStore,
    };
    use tongban_health_code::handler::HealthCodeService;
    use tongban_health_code::overrides::OverrideConfig;
    use tongban_health_code::projections::HealthCodeViews;
    use tongban_health_code::vault::RedbKeyVault;
    use tongban_kernel::{
        Actor, ActorId, CheckpointId, Clock, Divisions, FixedClock, PersonId, Role,
    };
    use tongban_projection::{EmbeddedReadModels, ProjectionRunner, RunnerConfig};
    use tongban_store::{EmbeddedStore, EventStore};

    struct Hub {
        schema: Schema<HealthCodeQuery, HealthCodeMutation, EmptySubscription>,
        clock: Arc<FixedClock>,
        _dir: tempfile::TempDir,
    }

    async fn hub() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
        let events: Arc<dyn EventStore> = store;
        let runner = Arc::new(ProjectionRunner::new(
            events.clone(),
            Arc::new(EmbeddedReadModels::open(dir.path().join("projections")).unwrap()),
            RunnerConfig::default(),
        ));
        let views = HealthCodeViews::default();
        let tables = views.tables.clone();
        runner.start(Arc::new(views)).unwrap();
        let clock = Arc::new(FixedClock::new(OffsetDateTime::now_utc()));
        let shared_clock: Arc<dyn Clock> = clock.clone();
        let divisions = Arc::new(Divisions::load_default().unwrap());
        let kek = Arc::new(
            tongban_health_code::vault::LocalKek::from_text(&"42".repeat(32), "the tests' KEK")
                .unwrap(),
        );
        let vault = Arc::new(RedbKeyVault::open(dir.path().join("vault.redb"), kek).unwrap());
        let shared: SharedStore = events.clone();
        let service = Arc::new(HealthCodeService::new(
            Arc::new(shared),
            shared_clock.clone(),
            divisions.clone(),
            vault.clone(),
            OverrideConfig::default(),
        ));
        let api = HealthCodeApi {
            service,
            store: events,
            runner,
            keyring: Arc::new(Keyring::open(dir.path().join("keys")).unwrap()),
            vault,
            divisions,
            clock: shared_clock,
            read_wait: StdDuration::from_secs(30),
            tables,
        };
        let schema = Schema::build(
            HealthCodeQuery::default(),
            HealthCodeMutation,
            EmptySubscription,
        )
        .data(Arc::new(api))
        .finish();
        Hub {
            schema,
            clock,
            _dir: dir,
        }
    }

    fn official() -> Actor {
        Actor::health_official(ActorId::from_u128(0xB1), super::code(super::BEIJING))
    }

    fn device(checkpoint: CheckpointId) -> Actor {
        Actor {
            id: ActorId::from_u128(checkpoint.uuid().as_u128()),
            role: Role::Checkpoint { checkpoint },
        }
    }

    fn lab() -> Actor {
        super::lab()
    }

    const VERDICT: &str = "admitted colour signedColour reason checkedOnline issuedAt expiresAt
        holder { maskedName idKind maskedIdNumber erased }";

    impl Hub {
        async fn run(&self, actor: &Actor, query: &str, vars: Value) -> Result<Value, String> {
            let response = self
                .schema
                .execute(
                    Request::new(query)
                        .variables(Variables::from_json(vars))
                        .data(actor.clone()),
                )
                .await;
            match response.errors.first() {
                Some(e) => Err(format!("{e:?}")),
                None => Ok(response.data.into_json().unwrap()),
            }
        }

        /// Registers 王芳 (a resident ID of Beijing) and returns her id and a
        /// citizen actor for her.
        async fn register(&self, id_number: &str) -> (PersonId, Actor) {
            let person = PersonId::new();
            let citizen = Actor::citizen(ActorId::new(), person);
            self.run(
                &citizen,
                r#"mutation($n: String!) { registerPerson(input: {homeRegion: "11",
                    residence: "110101001001", idKind: "resident_id", idNumber: $n,
                    name: "王芳", phone: "13800138000"}) { colour } }"#,
                json!({ "n": id_number }),
            )
            .await
            .unwrap();
            (person, citizen)
        }

        async fn generate(&self, citizen: &Actor) -> Value {
            self.run(
                citizen,
                "mutation { generateCode { text colour issuedAt } }",
                json!({}),
            )
            .await
            .unwrap()["generateCode"]
                .clone()
        }

        async fn checkpoint(&self, name: &str) -> CheckpointId {
            let done = self
                .run(
                    &official(),
                    r#"mutation($n: String!) { registerCheckpoint(name: $n, place: "110106018002") { checkpointId } }"#,
                    json!({ "n": name }),
                )
                .await
                .unwrap();
            CheckpointId::parse(done["registerCheckpoint"]["checkpointId"].as_str().unwrap())
                .unwrap()
        }

        async fn scan(&self, at: CheckpointId, code: &str, temperature: Option<f64>) -> Value {
            self.run(
                &device(at),
                &format!(
                    "mutation($c: String!, $t: Float) {{ scanCode(code: $c, temperature: $t) {{ {VERDICT} }} }}"
                ),
                json!({ "c": code, "t": temperature }),
            )
            .await
            .unwrap()["scanCode"]
                .clone()
        }

        async fn verify(&self, at: CheckpointId, code: &str) -> Value {
            self.run(
                &device(at),
                "query($c: String!) { verifyCode(code: $c) { valid colour signedColour checkedOnline
                    issuedAt reason reasonCode holder { maskedName maskedIdNumber erased } } }",
                json!({ "c": code }),
            )
            .await
            .unwrap()["verifyCode"]
                .clone()
        }

        fn later(&self, seconds: i64) {
            self.clock.advance(time::Duration::seconds(seconds));
        }
    }

    #[tokio::test]
    async fn a_code_generated_while_green_is_denied_as_superseded_once_a_lab_records_a_positive_test(
    ) {
        let hub = hub().await;
        let (person, citizen) = hub.register("11010519491231002X").await;
        let code = hub.generate(&citizen).await;
        assert_eq!(code["colour"], "green");
        let text = code["text"].as_str().unwrap().to_owned();
        let market = hub.checkpoint("新发地市场").await;

        // Before the test: admitted, with the holder masked and the issue time.
        let before = hub.scan(market, &text, None).await;
        assert_eq!(before["admitted"], true, "{before}");
        assert_eq!(before["checkedOnline"], true);
        assert_eq!(before["holder"]["maskedName"], "王*");
        assert_eq!(before["holder"]["maskedIdNumber"], "110***********002X");
        assert_eq!(before["issuedAt"], code["issuedAt"]);

        // A lab records a positive test: red at once.
        hub.later(60);
        let sampled = hub.clock.now().format(&Rfc3339).unwrap();
        let tested = hub
            .run(
                &lab(),
                r#"mutation($p: ID!, $at: String!) { recordEvidence(personId: $p, source: LAB,
                    evidence: {kind: "nucleic_acid_tested", sampled_at: $at, result: "positive", lab: "CDC"}) { colour } }"#,
                json!({ "p": person.to_string(), "at": sampled }),
            )
            .await
            .unwrap();
        assert_eq!(tested["recordEvidence"]["colour"], "red");

        // The earlier green code is void, and the guard sees red.
        let after = hub.scan(market, &text, None).await;
        assert_eq!(after["admitted"], false, "{after}");
        assert_eq!(after["reason"], "CODE_SUPERSEDED");
        assert_eq!(after["colour"], "red");
        assert_eq!(after["signedColour"], "green");
        assert_eq!(after["holder"]["maskedName"], "王*");
        let verified = hub.verify(market, &text).await;
        assert_eq!(verified["valid"], false, "{verified}");
        assert_eq!(verified["reasonCode"], "CODE_SUPERSEDED");
        assert_eq!(verified["colour"], "red");
        assert_eq!(verified["checkedOnline"], true);
        assert_eq!(verified["holder"]["maskedIdNumber"], "110***********002X");
        let said = verified["reason"].as_str().unwrap_or_default();
        assert!(said.contains("fresh code"), "{said}");

        // A fresh code shows red and is denied as red, no longer as void.
        let fresh = hub.generate(&citizen).await;
        let scanned = hub
            .scan(market, fresh["text"].as_str().unwrap(), None)
            .await;
        assert_eq!(
            (&scanned["reason"], &scanned["colour"]),
            (&json!("RED_CODE"), &json!("red"))
        );
    }

    #[tokio::test]
    async fn a_fever_at_one_checkpoint_denies_the_same_code_at_the_next_through_graphql() {
        let hub = hub().await;
        let (_, citizen) = hub.register("11010519491231002X").await;
        let text = hub.generate(&citizen).await["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let market = hub.checkpoint("新发地市场").await;
        let station = hub.checkpoint("北京南站").await;

        let feverish = hub.scan(market, &text, Some(38.6)).await;
        assert_eq!(
            (&feverish["admitted"], &feverish["reason"]),
            (&json!(false), &json!("FEVER")),
            "{feverish}"
        );
        hub.later(30);
        let next = hub.scan(station, &text, None).await;
        assert_eq!(next["admitted"], false, "{next}");
        assert_eq!(next["reason"], "CODE_SUPERSEDED");
        assert_eq!(next["colour"], "red");
        assert_eq!(next["checkedOnline"], true);
    }

    #[tokio::test]
    async fn an_erased_holder_shows_no_name_and_a_checkpoint_never_sees_the_full_name_or_number() {
        let hub = hub().await;
        let (person, citizen) = hub.register("11010519491231002X").await;
        let text = hub.generate(&citizen).await["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let market = hub.checkpoint("新发地市场").await;
        let scanned = hub.scan(market, &text, None).await;
        let shown = scanned.to_string();
        assert!(!shown.contains("王芳"), "{shown}");
        assert!(!shown.contains("11010519491231002X"), "{shown}");

        hub.run(
            &citizen,
            "mutation($p: ID!) { erasePersonalData(personId: $p) { position } }",
            json!({ "p": person.to_string() }),
        )
        .await
        .unwrap();
        let verified = hub.verify(market, &text).await;
        assert_eq!(verified["valid"], true, "{verified}");
        assert_eq!(verified["holder"]["erased"], true);
        assert!(verified["holder"]["maskedName"].is_null(), "{verified}");
    }
}
