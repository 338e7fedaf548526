//! The service on the embedded event store: load, decide, append with the
//! expected revision, retry on conflict; sealing, signing and fan-out.

use crate::support;

use std::sync::Arc;
use support::*;
use time::Duration;
use tongban_health_code::checkpoint::CheckpointCommand;
use tongban_health_code::events::APPEAL_REASON;
use tongban_health_code::events::{Evidence, HealthEvent};
use tongban_health_code::handler::HealthCodeService;
use tongban_health_code::overrides::{OverrideCommand, OverrideConfig};
use tongban_health_code::person::PersonCommand;
use tongban_health_code::reactions::{
    self, EvidenceManager, ReevaluationManager, WhereaboutsIndex,
};
use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
use tongban_health_code::risk::RiskAreaCommand;
use tongban_health_code::token::{verify_code, RegionKey};
use tongban_health_code::types::{Colour, OverrideAnswers, RiskLevel, ScanDirection, Temperature};
use tongban_health_code::vault::{
    KeyEncryptionKey, KeyVault, LocalKek, PersonalData, RedbKeyVault, VaultError,
};
use tongban_health_code::HealthCodeError;
use tongban_kernel::{CheckpointId, Divisions, EventId, FixedClock};
use tongban_projection::{MemoryReadModels, ProjectionRunner, ReadModels, RunnerConfig};
use tongban_store::{Direction, EmbeddedStore, EventStore, ReadFrom, StreamName};
use uuid::Uuid;

struct App {
    service: HealthCodeService<EmbeddedStore>,
    clock: Arc<FixedClock>,
    vault: Arc<RedbKeyVault>,
    _dir: tempfile::TempDir,
}

/// The key-encryption key of the tests' vaults.
fn kek() -> Arc<dyn KeyEncryptionKey> {
    Arc::new(LocalKek::from_text(&"42".repeat(32), "the tests' KEK").unwrap())
}

fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let vault = Arc::new(RedbKeyVault::open(dir.path().join("keys.redb"), kek()).unwrap());
    let clock = Arc::new(FixedClock::new(T0));
    let divisions = Arc::new(Divisions::load_default().unwrap());
    let service = HealthCodeService::new(
        store,
        clock.clone(),
        divisions,
        vault.clone(),
        OverrideConfig::default(),
    );
    service.install_region_key(RegionKey::from_seed(code(BEIJING), [1; 32]));
    App {
        service,
        clock,
        vault,
        _dir: dir,
    }
}

fn personal() -> PersonalData {
    PersonalData::new(
        IdentityDocument::ResidentId(ResidentId::parse("11010519491231002X").unwrap()),
        "张三",
        "13800000000",
    )
    .unwrap()
}

#[tokio::test]
async fn a_xinfadi_visitor_scans_in_turns_yellow_when_huaxiang_is_declared_and_can_be_erased() {
    let app = app();
    let s = &app.service;
    s.register_person(
        &citizen(),
        PERSON,
        code(BEIJING),
        code(DONGCHENG_COMMUNITY),
        &personal(),
    )
    .await
    .unwrap();

    // A code, verified offline with the public directory only.
    let issued = s
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
    assert_eq!(issued.claims.colour, Colour::Green);
    let claims = verify_code(&s.directory(), &issued.token, T0 + Duration::minutes(1)).unwrap();
    assert_eq!(claims.code_id, issued.claims.code_id);

    // The market registers and the person scans its place code.
    let market = CheckpointId::from_u128(0xAA);
    s.checkpoint(
        &fengtai_official(),
        market,
        CheckpointCommand::Register {
            checkpoint_id: market,
            name: "新发地".into(),
            place: code(HUAXIANG_COMMUNITY),
            admission: r#"{"admit":["green"]}"#.into(),
        },
    )
    .await
    .unwrap();
    let place = s.place_code(market).unwrap();
    let scanned = s
        .checkpoint(
            &citizen(),
            market,
            CheckpointCommand::Scan {
                scan_id: EventId::from_u128(77),
                direction: ScanDirection::PersonScansVenue,
                code_token: issued.token.clone(),
                place_token: Some(place),
                temperature: Some(Temperature::parse("temperature", 36.5).unwrap()),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        &scanned[..],
        [HealthEvent::CodeScanned { admitted: true, .. }]
    ));
    let state = s.person_state(PERSON).await.unwrap();
    assert!(state
        .evidence
        .iter()
        .any(|(_, e)| matches!(e, Evidence::VenueVisited { .. })));

    // Two days later Huaxiang is declared high-risk; the sweep turns the visitor yellow.
    app.clock.advance(Duration::days(2));
    s.risk_area(
        &fengtai_official(),
        RiskAreaCommand::Declare {
            area: code(HUAXIANG),
            level: RiskLevel::High,
        },
    )
    .await
    .unwrap();
    let changes = s.reevaluate_all(&beijing_official()).await.unwrap();
    assert!(
        matches!(&changes[..], [HealthEvent::ColourChanged { colour: Colour::Yellow, reason, .. }] if reason == "RISK_AREA_VENUE_VISIT")
    );
    assert!(
        s.reevaluate_all(&beijing_official())
            .await
            .unwrap()
            .is_empty(),
        "the sweep is idempotent"
    );

    // An official's read is recorded; after erasure the data is gone but the log is intact.
    assert_eq!(
        s.read_personal_data(&beijing_official(), PERSON, "tracing")
            .await
            .unwrap(),
        personal()
    );
    s.erase_personal_data(&citizen(), PERSON).await.unwrap();
    let err = s
        .read_personal_data(&beijing_official(), PERSON, "tracing")
        .await
        .unwrap_err();
    assert_eq!(err, HealthCodeError::PersonErased(PERSON));
    let history = s.person_history(PERSON).await.unwrap();
    assert!(matches!(history[0], HealthEvent::PersonRegistered { .. }));
    assert_eq!(
        history
            .iter()
            .filter(|e| matches!(e, HealthEvent::HealthInfoQueried { .. }))
            .count(),
        2
    );
}

#[tokio::test]
async fn an_appeal_reason_is_sealed_in_the_log_and_reads_as_erased_after_erasure() {
    let app = app();
    let s = &app.service;
    s.register_person(
        &citizen(),
        PERSON,
        code(BEIJING),
        code(DONGCHENG_COMMUNITY),
        &personal(),
    )
    .await
    .unwrap();
    s.generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
    let reason = "I was at my sister Li Hua's flat on Xingfu Road all week";
    s.person(
        &citizen(),
        PERSON,
        PersonCommand::FileAppeal {
            appeal_id: Uuid::from_u128(0xa99ea1),
            region: code(BEIJING),
            reason: reason.into(),
            ext: None,
        },
    )
    .await
    .unwrap();
    let filed = || async {
        s.person_history(PERSON)
            .await
            .unwrap()
            .into_iter()
            .find_map(|e| match e {
                HealthEvent::AppealFiled { reason, .. } => Some(reason),
                _ => None,
            })
            .unwrap()
    };
    let sealed = filed().await;
    assert!(
        sealed.as_clear().is_none(),
        "the log holds the reason in clear"
    );
    assert_eq!(
        sealed
            .open(app.vault.as_ref(), PERSON, APPEAL_REASON)
            .unwrap(),
        reason
    );
    // Nothing of it in any file of the store.
    for entry in std::fs::read_dir(app._dir.path().join("store")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(9).any(|w| w == b"Xingfu Ro"));
    }

    s.erase_personal_data(&citizen(), PERSON).await.unwrap();
    assert_eq!(
        filed()
            .await
            .open(app.vault.as_ref(), PERSON, APPEAL_REASON),
        Err(VaultError::KeyErased(PERSON))
    );
    assert!(app.vault.key(PERSON).is_err());
}

#[tokio::test]
async fn concurrent_declarations_on_one_person_are_all_kept_after_retrying_conflicts() {
    let app = app();
    let s = &app.service;
    s.register_person(
        &citizen(),
        PERSON,
        code(BEIJING),
        code(DONGCHENG_COMMUNITY),
        &personal(),
    )
    .await
    .unwrap();
    let me = citizen();
    let declare = |n: u128| {
        s.person(
            &me,
            PERSON,
            PersonCommand::DeclareHealth {
                evidence_id: EventId::from_u128(1000 + n),
                at: T0,
                symptoms: vec![],
                temperature: Temperature::parse("temperature", 36.6).unwrap(),
                declared_travel: vec![],
                ext: None,
            },
        )
    };
    let results =
        futures::future::join_all(vec![declare(1), declare(2), declare(3), declare(4)]).await;
    for r in results {
        r.unwrap();
    }
    assert_eq!(s.person_state(PERSON).await.unwrap().evidence.len(), 4);
}

#[tokio::test]
async fn bad_input_appends_nothing() {
    let app = app();
    let s = &app.service;
    let err = s
        .register_person(
            &citizen(),
            PERSON,
            code(BEIJING),
            code("110106000000"),
            &personal(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        HealthCodeError::Division {
            field: "residence",
            ..
        }
    ));
    assert!(s.person_history(PERSON).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_approved_bulk_override_is_applied_to_every_person() {
    let app = app();
    let s = &app.service;
    let people: Vec<_> = (1..=3).map(tongban_kernel::PersonId::from_u128).collect();
    for p in &people {
        s.register_person(
            &beijing_official(),
            *p,
            code(BEIJING),
            code(DONGCHENG_COMMUNITY),
            &personal(),
        )
        .await
        .unwrap();
    }
    let svc = HealthCodeService::new(
        Arc::new(EmbeddedStore::open(app._dir.path().join("store2")).unwrap()),
        app.clock.clone(),
        Arc::new(Divisions::load_default().unwrap()),
        Arc::new(RedbKeyVault::open(app._dir.path().join("keys2.redb"), kek()).unwrap()),
        OverrideConfig {
            threshold: 2,
            ..OverrideConfig::default()
        },
    );
    for p in &people {
        svc.register_person(
            &beijing_official(),
            *p,
            code(BEIJING),
            code(DONGCHENG_COMMUNITY),
            &personal(),
        )
        .await
        .unwrap();
    }
    let id = Uuid::from_u128(5);
    let requested = svc
        .override_colours(
            &beijing_official(),
            code(BEIJING),
            OverrideCommand::Request {
                override_id: id,
                region: code(BEIJING),
                persons: people.clone(),
                colour: Colour::Red,
                legal_basis: "basis".into(),
                reason: "case cluster".into(),
                answers: OverrideAnswers::Case("BJ-9".into()),
                expires_at: T0 + Duration::days(3),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        requested[..],
        [_, HealthEvent::OverrideAlertRaised { .. }]
    ));
    assert_eq!(
        svc.person_state(people[0]).await.unwrap().colours[&code(BEIJING)].colour,
        Colour::Green
    );
    svc.override_colours(
        &second_beijing_official(),
        code(BEIJING),
        OverrideCommand::Approve { override_id: id },
    )
    .await
    .unwrap();
    for p in &people {
        assert_eq!(
            svc.person_state(*p).await.unwrap().colours[&code(BEIJING)].colour,
            Colour::Red
        );
    }
    let _ = s;
}

#[tokio::test]
async fn a_new_service_rebuilds_its_read_models_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(T0));
    let divisions = Arc::new(Divisions::load_default().unwrap());
    let open = |store: Arc<EmbeddedStore>| {
        let vault = Arc::new(RedbKeyVault::open(dir.path().join("keys.redb"), kek()).unwrap());
        let service = HealthCodeService::new(
            store,
            clock.clone(),
            divisions.clone(),
            vault,
            OverrideConfig::default(),
        );
        service.install_region_key(RegionKey::from_seed(code(BEIJING), [1; 32]));
        service
    };
    let market = CheckpointId::from_u128(0xAA);
    let first = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let token = {
        let s = open(first.clone());
        s.register_person(
            &citizen(),
            PERSON,
            code(BEIJING),
            code(DONGCHENG_COMMUNITY),
            &personal(),
        )
        .await
        .unwrap();
        s.risk_area(
            &fengtai_official(),
            RiskAreaCommand::Declare {
                area: code(HUAXIANG),
                level: RiskLevel::High,
            },
        )
        .await
        .unwrap();
        s.checkpoint(
            &fengtai_official(),
            market,
            CheckpointCommand::Register {
                checkpoint_id: market,
                name: "market".into(),
                place: code(HUAXIANG_COMMUNITY),
                admission: r#"{"admit":["green"]}"#.into(),
            },
        )
        .await
        .unwrap();
        s.generate_code(&citizen(), PERSON, code(BEIJING))
            .await
            .unwrap()
            .token
    };
    // A new service over the same log starts with empty read models and rebuilds them.
    let s = open(first);
    assert!(s.rebuild().await.unwrap() >= 5);
    assert_eq!(s.persons(), vec![PERSON]);
    // The rebuilt code index links the scan to the person; the rebuilt risk map turns them yellow.
    s.checkpoint(
        &checkpoint_device(),
        market,
        CheckpointCommand::Scan {
            scan_id: EventId::from_u128(1),
            direction: ScanDirection::GuardScansPerson,
            code_token: token,
            place_token: None,
            temperature: None,
        },
    )
    .await
    .unwrap();
    let state = s.person_state(PERSON).await.unwrap();
    assert_eq!(state.colours[&code(BEIJING)].colour, Colour::Yellow);
}

#[tokio::test]
async fn a_scan_without_its_evidence_reaches_the_person_through_the_process_manager_once_even_when_replayed(
) {
    use tongban_store::{EventData, ExpectedRevision};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let s = HealthCodeService::new(
        store.clone(),
        Arc::new(FixedClock::new(T0)),
        Arc::new(Divisions::load_default().unwrap()),
        Arc::new(RedbKeyVault::open(dir.path().join("keys.redb"), kek()).unwrap()),
        OverrideConfig::default(),
    );
    s.install_region_key(RegionKey::from_seed(code(BEIJING), [1; 32]));
    s.register_person(
        &citizen(),
        PERSON,
        code(BEIJING),
        code(DONGCHENG_COMMUNITY),
        &personal(),
    )
    .await
    .unwrap();
    let market = CheckpointId::from_u128(0xAA);
    s.checkpoint(
        &fengtai_official(),
        market,
        CheckpointCommand::Register {
            checkpoint_id: market,
            name: "market".into(),
            place: code(HUAXIANG_COMMUNITY),
            admission: r#"{"admit":["green"]}"#.into(),
        },
    )
    .await
    .unwrap();
    let issued = s
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
    // The process died right after recording the scan, before the person's evidence.
    let scan = HealthEvent::CodeScanned {
        checkpoint_id: market,
        scan_id: EventId::from_u128(3),
        code_id: issued.claims.code_id,
        direction: ScanDirection::GuardScansPerson,
        colour: Colour::Green,
        admitted: true,
        reason: "ADMITTED".into(),
        temperature: None,
        checked_online: true,
        at: T0,
    };
    let name = StreamName::parse(format!("checkpoint-{market}")).unwrap();
    store
        .append(
            &name,
            ExpectedRevision::Exact(0),
            vec![EventData::json(scan.type_name(), &scan).unwrap()],
        )
        .await
        .unwrap();
    // Counted on the stream itself (a read through the service would
    // record pending scan evidence first).
    let person = StreamName::parse(format!("person-{PERSON}")).unwrap();
    let visits = || async {
        store
            .read_stream(&person, Direction::Forwards, ReadFrom::Start, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|r| {
                matches!(
                    r.json::<HealthEvent>(),
                    Ok(HealthEvent::EvidenceRecorded {
                        evidence: Evidence::VenueVisited { .. },
                        ..
                    })
                )
            })
            .count()
    };
    assert_eq!(visits().await, 0);
    let s = Arc::new(s);
    let run_manager = || async {
        // A runner with fresh read models: the manager starts from zero,
        // as after a kill -9 before its first checkpoint.
        let runner = ProjectionRunner::new(
            store.clone(),
            Arc::new(MemoryReadModels::new()),
            RunnerConfig::default(),
        );
        runner
            .start(Arc::new(EvidenceManager::new(s.clone())))
            .unwrap();
        let head = store.head().await.unwrap().unwrap().position;
        runner
            .wait_for(
                reactions::EVIDENCE,
                head,
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
        runner.shutdown().await;
    };
    // When the evidence manager runs, the visit is recorded;
    run_manager().await;
    assert_eq!(visits().await, 1);
    // replayed from zero, it records nothing more.
    run_manager().await;
    assert_eq!(visits().await, 1, "a replay adds nothing");
}

#[tokio::test]
async fn a_risk_area_reevaluates_only_the_persons_who_were_there_in_batches_with_visible_progress()
{
    // Given a visitor of the Huaxiang market and two persons who never went to Fengtai,
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let s = Arc::new(HealthCodeService::new(
        store.clone(),
        Arc::new(FixedClock::new(T0)),
        Arc::new(Divisions::load_default().unwrap()),
        Arc::new(RedbKeyVault::open(dir.path().join("keys.redb"), kek()).unwrap()),
        OverrideConfig::default(),
    ));
    s.install_region_key(RegionKey::from_seed(code(BEIJING), [1; 32]));
    let others = [
        tongban_kernel::PersonId::from_u128(0x2001),
        tongban_kernel::PersonId::from_u128(0x2002),
    ];
    for person in std::iter::once(PERSON).chain(others) {
        s.register_person(
            &citizen(),
            person,
            code(BEIJING),
            code(DONGCHENG_COMMUNITY),
            &personal(),
        )
        .await
        .unwrap();
    }
    let market = CheckpointId::from_u128(0xAA);
    s.checkpoint(
        &fengtai_official(),
        market,
        CheckpointCommand::Register {
            checkpoint_id: market,
            name: "market".into(),
            place: code(HUAXIANG_COMMUNITY),
            admission: r#"{"admit":["green"]}"#.into(),
        },
    )
    .await
    .unwrap();
    let issued = s
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
    s.checkpoint(
        &checkpoint_device(),
        market,
        CheckpointCommand::Scan {
            scan_id: EventId::from_u128(77),
            direction: ScanDirection::GuardScansPerson,
            code_token: issued.token,
            place_token: None,
            temperature: None,
        },
    )
    .await
    .unwrap();
    // and the reactions running on a runner,
    let models = Arc::new(MemoryReadModels::new());
    let runner = ProjectionRunner::new(store.clone(), models.clone(), RunnerConfig::default());
    runner.start(Arc::new(WhereaboutsIndex)).unwrap();
    runner
        .start(Arc::new(EvidenceManager::new(s.clone())))
        .unwrap();
    let progress = ReadModels::new(models.clone(), reactions::PROGRESS);
    runner
        .start(Arc::new(
            ReevaluationManager::new(
                s.clone(),
                runner.read_models(reactions::WHEREABOUTS).unwrap(),
                progress.clone(),
            )
            .with_batch(1),
        ))
        .unwrap();

    let head = store.head().await.unwrap().unwrap().position;
    runner
        .wait_for(
            reactions::EVIDENCE,
            head,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();

    // when Huaxiang is declared high-risk,
    let declared = s
        .risk_area_recorded(
            &fengtai_official(),
            RiskAreaCommand::Declare {
                area: code(HUAXIANG),
                level: RiskLevel::High,
            },
        )
        .await
        .unwrap();
    let at = declared.position.unwrap();
    runner
        .wait_for(
            reactions::REEVALUATION,
            at,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();

    // then the visitor alone was re-evaluated (to yellow), and the official
    // sees the re-evaluation finished.
    let rows = reactions::reevaluations(&progress).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].area, HUAXIANG);
    assert_eq!((rows[0].persons_total, rows[0].persons_done), (1, 1));
    assert!(rows[0].finished);
    let colour_changes = |person| {
        let store = store.clone();
        async move {
            let name = StreamName::parse(format!("person-{person}")).unwrap();
            store
                .read_stream(&name, Direction::Forwards, ReadFrom::Start, 1000)
                .await
                .unwrap()
                .iter()
                .filter_map(|r| match r.json::<HealthEvent>() {
                    Ok(HealthEvent::ColourChanged { colour, .. }) => Some(colour),
                    _ => None,
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        colour_changes(PERSON).await,
        vec![Colour::Green, Colour::Yellow]
    );
    for other in others {
        assert_eq!(colour_changes(other).await, vec![Colour::Green]);
    }
    runner.shutdown().await;
}
