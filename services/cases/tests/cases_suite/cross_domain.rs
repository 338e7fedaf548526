//! End to end on the embedded event store: the catalogue, applications,
//! the residence process manager reaching into the health-code domain
//! through its own command handler, read models, authorisation and the inbox.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;
use tongban_cases::residence::ResidenceProcess;
use tongban_cases::standard;
use tongban_cases::{
    Applicant, CaseCommand, CaseError, CaseQueries, CasesService, CasesViews, EmployeeRoster,
    EnterpriseId, HealthCodeGreenShare, InboxQueries, InboxService, InboxViews, Principal, Status,
};
use tongban_catalog::{CatalogCommand, CatalogService, DepartmentCode, ServiceCode};
use tongban_health_code::handler::HealthCodeService;
use tongban_health_code::overrides::OverrideConfig;
use tongban_health_code::projections::HealthCodeViews;
use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
use tongban_health_code::vault::{KeyVault, MemoryKeyVault, PersonalData};
use tongban_kernel::{Actor, ActorId, DivisionCode, Divisions, FixedClock, PersonId, Role};
use tongban_projection::{replay, EmbeddedReadModels, MemoryReadModels, Projection, ReadModels};
use tongban_store::{EmbeddedStore, EventStore, Position};

const T0: OffsetDateTime = datetime!(2020-06-15 09:00 UTC);
const DONGCHENG_COMMUNITY: &str = "110101001001";
const HUAXIANG_COMMUNITY: &str = "110106018002";

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

struct Hub {
    store: Arc<EmbeddedStore>,
    health: Arc<HealthCodeService<EmbeddedStore>>,
    catalog: Arc<CatalogService<EmbeddedStore>>,
    cases: Arc<CasesService<EmbeddedStore>>,
    clock: Arc<FixedClock>,
    vault: Arc<dyn KeyVault>,
    _dir: tempfile::TempDir,
}

async fn hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let clock = Arc::new(FixedClock::new(T0));
    let divisions = Arc::new(Divisions::load_default().unwrap());
    let vault: Arc<dyn KeyVault> = Arc::new(MemoryKeyVault::new());
    let health = Arc::new(HealthCodeService::new(
        store.clone(),
        clock.clone(),
        divisions.clone(),
        vault.clone(),
        OverrideConfig::default(),
    ));
    let catalog = Arc::new(CatalogService::new(
        store.clone(),
        clock.clone(),
        divisions.clone(),
    ));
    let cases = Arc::new(CasesService::new(
        store.clone(),
        clock.clone(),
        divisions,
        catalog.clone(),
        vault.clone(),
    ));
    let beijing = [code("11")];
    for (department, definition) in [
        (
            "public-security",
            standard::residence_community_change(&beijing).unwrap(),
        ),
        (
            "commerce",
            standard::work_resumption_permit(&beijing).unwrap(),
        ),
        (
            "civil-affairs",
            standard::elderly_care_subsidy(&beijing).unwrap(),
        ),
    ] {
        let actor = Actor {
            id: ActorId::from_u128(0xD0),
            role: Role::Department {
                name: department.into(),
            },
        };
        catalog
            .execute(&actor, CatalogCommand::PublishService(definition))
            .await
            .unwrap();
    }
    Hub {
        store,
        health,
        catalog,
        cases,
        clock,
        vault,
        _dir: dir,
    }
}

impl Hub {
    async fn register(&self, person: PersonId, id_number: &str) {
        let personal = PersonalData::new(
            IdentityDocument::ResidentId(ResidentId::parse(id_number).unwrap()),
            "张三",
            "13800000000",
        )
        .unwrap();
        self.health
            .register_person(
                &Actor::citizen(ActorId::from_u128(person.uuid().as_u128()), person),
                person,
                code("11"),
                code(DONGCHENG_COMMUNITY),
                &personal,
            )
            .await
            .unwrap();
    }

    async fn project(&self, projection: &dyn Projection) -> ReadModels {
        let models = ReadModels::new(Arc::new(MemoryReadModels::new()), projection.name());
        let (mut checkpoint, _) = replay::prepare(projection, &models).await.unwrap();
        let head = self
            .store
            .head()
            .await
            .unwrap()
            .map_or(Position(0), |h| h.position);
        replay::replay(
            self.store.as_ref(),
            projection,
            &models,
            &mut checkpoint,
            head,
            500,
            |_, _| ControlFlow::Continue(()),
        )
        .await
        .unwrap();
        models
    }
}

fn person(n: u128) -> Principal {
    Principal::Person {
        actor: ActorId::from_u128(n),
        person: PersonId::from_u128(n),
    }
}

fn official(department: &str, region: &str) -> Principal {
    Principal::Official {
        actor: ActorId::from_u128(0x0FF1),
        department: DepartmentCode::parse(department).unwrap(),
        region: code(region),
    }
}

#[tokio::test]
async fn an_approved_residence_change_moves_the_person_in_the_health_code_domain() {
    let hub = hub().await;
    let zhang = PersonId::from_u128(0x21);
    hub.register(zhang, "11010519491231002X").await;

    let case_id = hub
        .cases
        .submit(
            &person(0x21),
            ServiceCode::parse(standard::RESIDENCE_CHANGE).unwrap(),
            code("110106"),
            json!({"newCommunity": HUAXIANG_COMMUNITY, "moveDate": "2020-06-10"}),
        )
        .await
        .unwrap();
    let fengtai_police = official("public-security", "110106");
    hub.cases
        .execute(&fengtai_police, case_id, CaseCommand::Accept)
        .await
        .unwrap();
    hub.cases
        .execute(
            &fengtai_police,
            case_id,
            CaseCommand::Approve {
                reasons: vec!["tenancy contract checked".into()],
            },
        )
        .await
        .unwrap();

    // Before the process manager runs, the health code still has the old community.
    let before = hub.health.person_state(zhang).await.unwrap();
    assert_eq!(before.residence, Some(code(DONGCHENG_COMMUNITY)));

    let process = ResidenceProcess::new(hub.cases.clone(), hub.health.clone());
    let cursor = process.catch_up(None).await.unwrap();
    assert!(cursor.is_some());

    let after = hub.health.person_state(zhang).await.unwrap();
    assert_eq!(after.residence, Some(code(HUAXIANG_COMMUNITY)));
    let history = hub.health.person_history(zhang).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        e,
        tongban_health_code::HealthEvent::ResidenceChanged { to, .. } if *to == code(HUAXIANG_COMMUNITY)
    )));

    // Running again changes nothing: the outcome is recorded on the case.
    process.catch_up(None).await.unwrap();
    let changes = hub
        .health
        .person_history(zhang)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e, tongban_health_code::HealthEvent::ResidenceChanged { .. }))
        .count();
    assert_eq!(changes, 1);

    let queries = CaseQueries::new(hub.project(&CasesViews::default()).await);
    let view = queries.case(&person(0x21), case_id).await.unwrap();
    assert_eq!(view.status, Status::Approved);
    assert_eq!(view.residence_change.as_deref(), Some("applied"));
    assert_eq!(view.history.len(), 3);

    // The inbox tells the person about their colour, each status and the move.
    let inbox_models = hub.project(&InboxViews::default()).await;
    let inbox = InboxQueries::new(inbox_models);
    let notes = inbox.notifications(&person(0x21)).await.unwrap();
    let titles: Vec<&str> = notes.iter().map(|n| n.title.as_str()).collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("health code in 11 is now green")),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"Your application was approved"),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"Your residence community has been updated"),
        "{titles:?}"
    );
    let unread = inbox.unread_count(&person(0x21)).await.unwrap();
    assert_eq!(unread, notes.len() as u64);

    let newest = notes[0].id;
    InboxService::new(hub.store.clone(), hub.clock.clone())
        .mark_read(&person(0x21), vec![newest], None)
        .await
        .unwrap();
    let inbox = InboxQueries::new(hub.project(&InboxViews::default()).await);
    assert_eq!(inbox.unread_count(&person(0x21)).await.unwrap(), unread - 1);
    InboxService::new(hub.store.clone(), hub.clock.clone())
        .mark_read(&person(0x21), vec![], None)
        .await
        .unwrap();
    let inbox = InboxQueries::new(hub.project(&InboxViews::default()).await);
    assert_eq!(inbox.unread_count(&person(0x21)).await.unwrap(), 0);
    assert!(inbox
        .notifications(&person(0x21))
        .await
        .unwrap()
        .iter()
        .all(|n| n.read));
    // Another person's inbox is their own.
    assert!(inbox.notifications(&person(0x99)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_residence_change_for_a_person_unknown_to_the_health_code_is_recorded_as_failed() {
    let hub = hub().await;
    let case_id = hub
        .cases
        .submit(
            &person(0x77),
            ServiceCode::parse(standard::RESIDENCE_CHANGE).unwrap(),
            code("110106"),
            json!({"newCommunity": HUAXIANG_COMMUNITY, "moveDate": "2020-06-10"}),
        )
        .await
        .unwrap();
    let police = official("public-security", "11");
    hub.cases
        .execute(&police, case_id, CaseCommand::Accept)
        .await
        .unwrap();
    hub.cases
        .execute(
            &police,
            case_id,
            CaseCommand::Approve {
                reasons: vec!["ok".into()],
            },
        )
        .await
        .unwrap();
    ResidenceProcess::new(hub.cases.clone(), hub.health.clone())
        .catch_up(None)
        .await
        .unwrap();
    let state = hub.cases.case(case_id).await.unwrap();
    assert_eq!(state.residence_change.and_then(|c| c.applied), Some(false));
}

struct Roster(Vec<PersonId>);

#[async_trait]
impl EmployeeRoster for Roster {
    async fn employees(&self, _enterprise: EnterpriseId) -> Result<Vec<PersonId>, CaseError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn the_official_sees_the_green_share_of_the_workforce_and_the_enterprise_sees_no_employee() {
    let hub = hub().await;
    let (wang, li, unregistered) = (
        PersonId::from_u128(0x31),
        PersonId::from_u128(0x32),
        PersonId::from_u128(0x33),
    );
    hub.register(wang, "11010519491231002X").await;
    hub.register(li, "110105198001010016").await;
    let factory = EnterpriseId::from_u128(0xFAC);
    let enterprise = Principal::Enterprise {
        actor: ActorId::from_u128(0xE1),
        enterprise: factory,
    };
    let case_id = hub
        .cases
        .submit(
            &enterprise,
            ServiceCode::parse(standard::WORK_RESUMPTION).unwrap(),
            code("110105"),
            json!({
                "enterpriseName": "Chaoyang Precision Parts Co.",
                "creditCode": "91110105MA01ABCD3X",
                "registeredEmployees": 3,
                "siteAddress": "1 Jiuxianqiao Road",
                "preventionMeasures": ["temperature checks at the gate", "staggered shifts"]
            }),
        )
        .await
        .unwrap();

    let share = HealthCodeGreenShare::new(
        Roster(vec![wang, li, unregistered]),
        hub.project(&HealthCodeViews::default()).await,
    );
    let queries = CaseQueries::new(hub.project(&CasesViews::default()).await);

    let chaoyang_commerce = official("commerce", "110105");
    let review = queries
        .work_resumption_review(&chaoyang_commerce, case_id, &share)
        .await
        .unwrap();
    assert_eq!(review.employees.registered, 3);
    assert_eq!(review.employees.green, 2);
    assert_eq!(review.employees.unknown, 1);
    assert_eq!(review.green_percent, Some(66.7));
    let shown = serde_json::to_string(&review).unwrap();
    for id in [wang, li, unregistered] {
        assert!(!shown.contains(&id.to_string()), "the review leaks {id}");
    }

    // The enterprise may track its application but never gets the workforce view.
    let err = queries
        .work_resumption_review(&enterprise, case_id, &share)
        .await
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
    let own = queries.my_applications(&enterprise).await.unwrap();
    assert_eq!(own.len(), 1);
    let everything_it_sees = serde_json::to_string(&own).unwrap()
        + &serde_json::to_string(
            &InboxQueries::new(hub.project(&InboxViews::default()).await)
                .notifications(&enterprise)
                .await
                .unwrap(),
        )
        .unwrap();
    for id in [wang, li, unregistered] {
        assert!(
            !everything_it_sees.contains(&id.to_string()),
            "the enterprise sees {id}"
        );
    }
    assert_eq!(own[0].applicant, Applicant::Enterprise(factory));
}

#[tokio::test]
async fn officials_see_only_their_department_and_region_and_applicants_only_their_own() {
    let hub = hub().await;
    let subsidy = ServiceCode::parse(standard::ELDERLY_CARE).unwrap();
    let form = json!({"age": 82, "careLevel": "full-care", "monthlyIncome": 900, "bankAccount": "6222020200012345678"});
    let in_chaoyang = hub
        .cases
        .submit(&person(0x41), subsidy.clone(), code("110105"), form.clone())
        .await
        .unwrap();
    let in_fengtai = hub
        .cases
        .submit(&person(0x42), subsidy, code("110106"), form)
        .await
        .unwrap();
    let queries = CaseQueries::new(hub.project(&CasesViews::default()).await);

    let chaoyang = official("civil-affairs", "110105");
    let queue = queries.queue(&chaoyang).await.unwrap();
    assert_eq!(
        queue.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(),
        vec![in_chaoyang.to_string()]
    );
    let city = official("civil-affairs", "11");
    assert_eq!(queries.queue(&city).await.unwrap().len(), 2);
    let other_department = official("commerce", "11");
    assert!(queries.queue(&other_department).await.unwrap().is_empty());
    assert!(matches!(
        queries.case(&other_department, in_chaoyang).await,
        Err(CaseError::Forbidden(_))
    ));
    assert!(matches!(
        queries.case(&chaoyang, in_fengtai).await,
        Err(CaseError::Forbidden(_))
    ));

    // Applicants see their own and nobody else's (not even that it exists).
    assert!(queries.case(&person(0x41), in_chaoyang).await.is_ok());
    assert!(matches!(
        queries.case(&person(0x41), in_fengtai).await,
        Err(CaseError::CaseNotFound(_))
    ));
    assert_eq!(
        queries.my_applications(&person(0x42)).await.unwrap().len(),
        1
    );
    assert!(matches!(
        queries.queue(&person(0x41)).await,
        Err(CaseError::Forbidden(_))
    ));

    // And the handler enforces the same: a Chaoyang official cannot act on a Fengtai case.
    let err = hub
        .cases
        .execute(&chaoyang, in_fengtai, CaseCommand::Accept)
        .await
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
    let _ = &hub.catalog;
}

/// Whether any file under `dir` contains `needle`.
fn any_file_contains(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(any_file_contains(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn an_elderly_care_form_is_sealed_in_the_log_and_the_read_model_and_reads_as_erased_after_erasure(
) {
    let hub = hub().await;
    let applicant = person(0x61);
    let subsidy = ServiceCode::parse(standard::ELDERLY_CARE).unwrap();
    let account = "6222020200098765432";
    let form =
        json!({"age": 82, "careLevel": "full-care", "monthlyIncome": 900, "bankAccount": account});
    let case_id = hub
        .cases
        .submit(&applicant, subsidy, code("110105"), form.clone())
        .await
        .unwrap();
    // The decision saw the form in clear (it was checked against the schema).
    assert_eq!(hub.cases.case(case_id).await.unwrap().form, form);

    let dir = hub._dir.path();
    let models = ReadModels::new(
        Arc::new(EmbeddedReadModels::open(dir.join("projections")).unwrap()),
        "cases",
    );
    let views = CasesViews::default();
    let (mut checkpoint, _) = replay::prepare(&views, &models).await.unwrap();
    let head = hub.store.head().await.unwrap().unwrap().position;
    replay::replay(
        hub.store.as_ref(),
        &views,
        &models,
        &mut checkpoint,
        head,
        500,
        |_, _| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    let queries = CaseQueries::new(models.clone());
    let view = queries.case(&applicant, case_id).await.unwrap();
    assert!(tongban_cases::sealed_form::is_sealed(&view.form));
    assert_eq!(
        tongban_cases::sealed_form::open(hub.vault.as_ref(), &view.applicant, &view.form).unwrap(),
        Some(form)
    );
    drop((queries, models));
    let found = any_file_contains(dir, account.as_bytes());
    assert!(
        found.is_empty(),
        "the bank account is in clear in {found:?}"
    );

    hub.vault.erase(PersonId::from_u128(0x61)).unwrap();
    assert_eq!(
        tongban_cases::sealed_form::open(hub.vault.as_ref(), &view.applicant, &view.form).unwrap(),
        None
    );
    assert_eq!(
        hub.cases.case(case_id).await.unwrap().form,
        serde_json::Value::Null
    );
    let err = hub
        .cases
        .execute(
            &applicant,
            case_id,
            CaseCommand::Withdraw {
                reason: String::new(),
            },
        )
        .await;
    assert!(err.is_ok(), "withdrawing carries no form: {err:?}");
}

#[tokio::test]
async fn the_live_process_manager_moves_the_person_as_soon_as_the_change_is_approved() {
    let hub = hub().await;
    let zhao = PersonId::from_u128(0x51);
    hub.register(zhao, "110105198001010016").await;
    let process = Arc::new(ResidenceProcess::new(hub.cases.clone(), hub.health.clone()));
    let running = {
        let process = process.clone();
        tokio::spawn(async move { process.run(None).await })
    };
    let case_id = hub
        .cases
        .submit(
            &person(0x51),
            ServiceCode::parse(standard::RESIDENCE_CHANGE).unwrap(),
            code("110106"),
            json!({"newCommunity": HUAXIANG_COMMUNITY, "moveDate": "2020-06-10"}),
        )
        .await
        .unwrap();
    let police = official("public-security", "110106");
    hub.cases
        .execute(&police, case_id, CaseCommand::Accept)
        .await
        .unwrap();
    hub.cases
        .execute(
            &police,
            case_id,
            CaseCommand::Approve {
                reasons: vec!["ok".into()],
            },
        )
        .await
        .unwrap();
    let moved = async {
        loop {
            let state = hub.health.person_state(zhao).await.unwrap();
            if state.residence == Some(code(HUAXIANG_COMMUNITY)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), moved)
        .await
        .expect("the residence change reached the health-code domain");
    running.abort();
}
