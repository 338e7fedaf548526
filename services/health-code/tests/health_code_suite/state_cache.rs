//! The cache of folded stream states: a service decides on the latest state
//! even when another node (another service on the same store) wrote since it
//! last looked, retries after a concurrency conflict, and records all the
//! evidence of a scan in one append. Two replicas (two services on one
//! store) decide on the same facts: what one records, the other's views
//! follow from the log before it decides.

use crate::support;

use std::sync::Arc;
use support::*;
use tongban_health_code::checkpoint::CheckpointCommand;
use tongban_health_code::events::{Evidence, EvidenceSource, HealthEvent};
use tongban_health_code::handler::{decide_person_commands, HealthCodeService};
use tongban_health_code::overrides::OverrideConfig;
use tongban_health_code::person::{PersonCommand, PersonState};
use tongban_health_code::policy::{baseline_document, PolicyBook, PolicyDocument, PublishPolicy};
use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
use tongban_health_code::risk::RiskAreaCommand;
use tongban_health_code::risk::RiskMap;
use tongban_health_code::token::RegionKey;
use tongban_health_code::types::{Colour, RiskLevel};
use tongban_health_code::types::{ScanDirection, Temperature};
use tongban_health_code::vault::{KeyVault, PersonalData, RedbKeyVault};
use tongban_health_code::DecisionContext;
use tongban_health_code::HealthCodeError;
use tongban_kernel::{CheckpointId, Divisions, EventId, EventMetadata, FixedClock};
use tongban_store::{Direction, EmbeddedStore, EventStore, ReadFrom, StreamName};

struct Node {
    service: Arc<HealthCodeService<EmbeddedStore>>,
}

/// Two nodes (services) over one store and one key vault, as two gateway
/// replicas would be.
fn two_nodes() -> (Node, Node, Arc<EmbeddedStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let vault: Arc<dyn KeyVault> = Arc::new(
        RedbKeyVault::open(
            dir.path().join("keys.redb"),
            std::sync::Arc::new(
                tongban_health_code::vault::LocalKek::from_text(&"42".repeat(32), "test").unwrap(),
            ),
        )
        .unwrap(),
    );
    let divisions = Arc::new(Divisions::load_default().unwrap());
    let node = || {
        let service = HealthCodeService::new(
            store.clone(),
            Arc::new(FixedClock::new(T0)),
            divisions.clone(),
            vault.clone(),
            OverrideConfig::default(),
        );
        service.install_region_key(RegionKey::from_seed(code(BEIJING), [1; 32]));
        Node {
            service: Arc::new(service),
        }
    };
    (node(), node(), store, dir)
}

fn personal() -> PersonalData {
    PersonalData::new(
        IdentityDocument::ResidentId(ResidentId::parse("11010519491231002X").unwrap()),
        "张三",
        "13800000000",
    )
    .unwrap()
}

fn lab_result(id: u128) -> PersonCommand {
    PersonCommand::RecordEvidence {
        meta: meta(id, EvidenceSource::Lab, T0, &lab()),
        evidence: Evidence::NucleicAcidTested {
            sampled_at: T0,
            result: tongban_health_code::types::TestResult::Negative,
            lab: "Beijing CDC lab".into(),
        },
        ext: None,
    }
}

async fn register(node: &Node) {
    node.service
        .register_person(
            &citizen(),
            PERSON,
            code(BEIJING),
            code(DONGCHENG_COMMUNITY),
            &personal(),
        )
        .await
        .unwrap();
}

fn evidence_ids(state: &PersonState) -> Vec<EventId> {
    let mut ids: Vec<EventId> = state.evidence.iter().map(|(m, _)| m.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_node_decides_on_what_another_node_wrote_after_it_last_looked() {
    // Given node A has the person's stream folded,
    let (a, b, _store, _dir) = two_nodes();
    register(&a).await;
    a.service
        .person(&lab(), PERSON, lab_result(1))
        .await
        .unwrap();
    // and node B then records a lab result on the same stream,
    let by_b = b
        .service
        .person(&lab(), PERSON, lab_result(2))
        .await
        .unwrap();
    assert!(!by_b.is_empty());

    // when node A is asked to record that same result again,
    let again = a
        .service
        .person(&lab(), PERSON, lab_result(2))
        .await
        .unwrap();

    // then A knows it is already recorded and both nodes see both results once.
    assert!(again.is_empty(), "recorded twice: {again:?}");
    for node in [&a, &b] {
        let state = node.service.person_state(PERSON).await.unwrap();
        assert_eq!(
            evidence_ids(&state),
            vec![EventId::from_u128(1), EventId::from_u128(2)]
        );
    }
}

#[tokio::test]
async fn a_rule_checked_on_a_stale_cache_sees_the_registration_made_by_another_node() {
    // Given node A looked at the person before anyone registered them,
    let (a, b, _store, _dir) = two_nodes();
    let unknown = a.service.person(&lab(), PERSON, lab_result(1)).await;
    assert!(unknown.is_err());
    // and node B registers them,
    register(&b).await;

    // when node A records a lab result,
    let recorded = a
        .service
        .person(&lab(), PERSON, lab_result(1))
        .await
        .unwrap();

    // then it is recorded on the registered person.
    assert!(matches!(
        recorded.first(),
        Some(HealthEvent::EvidenceRecorded { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_from_two_nodes_on_one_stream_all_land_after_retrying() {
    // Given a person known to both nodes,
    let (a, b, _store, _dir) = two_nodes();
    register(&a).await;
    b.service.person_state(PERSON).await.unwrap();

    // when both nodes record three results each at the same time,
    let mut tasks = Vec::new();
    for id in 1..=6u128 {
        let service = if id % 2 == 0 {
            a.service.clone()
        } else {
            b.service.clone()
        };
        tasks.push(tokio::spawn(async move {
            service.person(&lab(), PERSON, lab_result(id)).await
        }));
    }
    for task in tasks {
        // then none gives up on a conflict,
        task.await.unwrap().unwrap();
    }

    // and every result is recorded exactly once.
    let expected: Vec<EventId> = (1..=6u128).map(EventId::from_u128).collect();
    for node in [&a, &b] {
        let state = node.service.person_state(PERSON).await.unwrap();
        assert_eq!(evidence_ids(&state), expected);
    }
}

#[tokio::test]
async fn a_scan_is_one_append_and_its_temperature_and_visit_reach_the_person_in_one_more() {
    // Given a registered person with a code and a registered market,
    let (a, _b, store, _dir) = two_nodes();
    register(&a).await;
    let market = CheckpointId::from_u128(0xAA);
    a.service
        .checkpoint(
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
    let issued = a
        .service
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
    assert!(issued.position.is_some());

    // when the guard scans the code with a temperature,
    let scan = CheckpointCommand::Scan {
        scan_id: EventId::from_u128(77),
        direction: ScanDirection::GuardScansPerson,
        code_token: issued.token.clone(),
        place_token: None,
        temperature: Some(Temperature::parse("temperature", 36.5).unwrap()),
    };
    let recorded = a
        .service
        .checkpoint_recorded(&checkpoint_device(), market, scan.clone())
        .await
        .unwrap();

    // then the scan is one durable append, the log's last, at the position it answers,
    assert_eq!(
        recorded.position,
        Some(store.head().await.unwrap().unwrap().position)
    );
    let person = StreamName::parse(format!("person-{PERSON}")).unwrap();
    let from_scan = || async {
        store
            .read_stream(&person, Direction::Forwards, ReadFrom::Start, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| {
                matches!(
                    r.json::<HealthEvent>(),
                    Ok(HealthEvent::EvidenceRecorded { meta, .. })
                        if meta.source == EvidenceSource::Checkpoint
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(from_scan().await.is_empty());

    // and the next read of the person records both pieces of evidence in
    // one append (one correlation).
    a.service.person_state(PERSON).await.unwrap();
    let evidence = from_scan().await;
    assert_eq!(evidence.len(), 2);
    let correlation = |r: &tongban_store::RecordedEvent| {
        r.metadata_json::<EventMetadata>().unwrap().correlation_id
    };
    assert_eq!(correlation(&evidence[0]), correlation(&evidence[1]));
    let events = store
        .read_stream(&person, Direction::Forwards, ReadFrom::Start, 1000)
        .await
        .unwrap();

    // And the same scan again records nothing more.
    let again = a
        .service
        .checkpoint_recorded(&checkpoint_device(), market, scan)
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.position, None);
    let after = store
        .read_stream(&person, Direction::Forwards, ReadFrom::Start, 1000)
        .await
        .unwrap();
    assert_eq!(after.len(), events.len());
}

/// Registers the market in Huaxiang (Fengtai) through `node`.
async fn register_market(node: &Node) -> CheckpointId {
    let market = CheckpointId::from_u128(0xAA);
    node.service
        .checkpoint(
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
    market
}

fn guard_scan(id: u128, token: &[u8]) -> CheckpointCommand {
    CheckpointCommand::Scan {
        scan_id: EventId::from_u128(id),
        direction: ScanDirection::GuardScansPerson,
        code_token: token.to_vec(),
        place_token: None,
        temperature: Some(Temperature::parse("temperature", 36.5).unwrap()),
    }
}

fn checkpoint_evidence(state: &PersonState) -> usize {
    state
        .evidence
        .iter()
        .filter(|(m, _)| m.source == EvidenceSource::Checkpoint)
        .count()
}

#[tokio::test]
async fn a_code_generated_through_one_replica_is_scanned_through_another_with_its_evidence() {
    // Given a person, a market and a code, all recorded through replica A,
    let (a, b, _store, _dir) = two_nodes();
    register(&a).await;
    let market = register_market(&a).await;
    let issued = a
        .service
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();

    // when the guard's scan goes through replica B,
    let outcome = b
        .service
        .scan_recorded(&checkpoint_device(), market, guard_scan(77, &issued.token))
        .await
        .unwrap();

    // then B knows the holder, admits them,
    assert_eq!(outcome.holder.map(|h| h.person_id), Some(PERSON));
    assert!(matches!(
        &outcome.recorded.events[..],
        [HealthEvent::CodeScanned { admitted: true, .. }]
    ));
    // and the temperature and the visit are the person's evidence, at both replicas.
    for node in [&a, &b] {
        node.service.sync_views().await.unwrap();
        let state = node.service.person_state(PERSON).await.unwrap();
        assert_eq!(checkpoint_evidence(&state), 2);
    }
}

#[tokio::test]
async fn a_risk_area_declared_through_one_replica_changes_the_decisions_of_another() {
    // Given a person who visited the Huaxiang market (everything through B),
    let (a, b, _store, _dir) = two_nodes();
    register(&b).await;
    let market = register_market(&b).await;
    let issued = b
        .service
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
    b.service
        .checkpoint(&checkpoint_device(), market, guard_scan(77, &issued.token))
        .await
        .unwrap();
    b.service.sync_views().await.unwrap();
    assert_eq!(
        checkpoint_evidence(&b.service.person_state(PERSON).await.unwrap()),
        2
    );

    // when Huaxiang is declared high-risk through replica A,
    a.service
        .risk_area(
            &fengtai_official(),
            RiskAreaCommand::Declare {
                area: code(HUAXIANG),
                level: RiskLevel::High,
            },
        )
        .await
        .unwrap();

    // then replica B re-evaluates the visitor to yellow.
    let changes = b
        .service
        .person(&beijing_official(), PERSON, PersonCommand::Reevaluate)
        .await
        .unwrap();
    assert!(
        matches!(&changes[..], [HealthEvent::ColourChanged { colour: Colour::Yellow, reason, .. }] if reason == "RISK_AREA_VENUE_VISIT"),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_policy_published_through_one_replica_is_used_by_another() {
    // Given a registered person,
    let (a, b, _store, _dir) = two_nodes();
    register(&a).await;
    let policy = |declaration_max_age_hours| PublishPolicy {
        region: code(BEIJING),
        policy_id: "beijing".into(),
        document: PolicyDocument {
            declaration_max_age_hours,
            ..baseline_document()
        },
    };

    // when replica A publishes a Beijing policy asking for a declaration,
    let published = a
        .service
        .publish_policy(&beijing_official(), policy(Some(24)))
        .await
        .unwrap();
    assert!(matches!(
        &published[..],
        [HealthEvent::PolicyPublished { version: 1, .. }]
    ));

    // then replica B refuses a code without one,
    let refused = b
        .service
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, HealthCodeError::DeclarationRequired { .. }),
        "{refused}"
    );
    // and B's next publication is version 2 (decided on the policy's stream).
    let next = b
        .service
        .publish_policy(&beijing_official(), policy(None))
        .await
        .unwrap();
    assert!(matches!(
        &next[..],
        [HealthEvent::PolicyPublished { version: 2, .. }]
    ));
    a.service
        .generate_code(&citizen(), PERSON, code(BEIJING))
        .await
        .unwrap();
}

#[test]
fn commands_decided_together_see_each_others_events() {
    // Given a registered, green person,
    let state = PersonState::from_events(&[registered(), green_in(BEIJING)]);
    let policies = PolicyBook::default();
    let risk = RiskMap::default();
    let actor = lab();
    let ctx = DecisionContext {
        now: T0,
        divisions: divisions(),
        policies: &policies,
        risk: &risk,
        actor: &actor,
    };

    // when the same result and a new one are decided together,
    let events =
        decide_person_commands(&state, &[lab_result(1), lab_result(1), lab_result(2)], &ctx)
            .unwrap();

    // then the repeated result is recorded once, the new one too.
    let recorded: Vec<EventId> = events
        .iter()
        .filter_map(|e| match e {
            HealthEvent::EvidenceRecorded { meta, .. } => Some(meta.id),
            _ => None,
        })
        .collect();
    assert_eq!(recorded, vec![EventId::from_u128(1), EventId::from_u128(2)]);
}

#[test]
fn commands_decided_together_fail_together() {
    // Given a person nobody registered,
    let state = PersonState::default();
    let policies = PolicyBook::default();
    let risk = RiskMap::default();
    let actor = lab();
    let ctx = DecisionContext {
        now: T0,
        divisions: divisions(),
        policies: &policies,
        risk: &risk,
        actor: &actor,
    };

    // when results are decided for them, then nothing is decided.
    assert!(decide_person_commands(&state, &[lab_result(1), lab_result(2)], &ctx).is_err());
}
