//! From a token's kernel role to what it may do with applications: the
//! gateway's actor becomes a [`Principal`] through
//! `tongban_cases::graphql::principal_of`, and the read side and the
//! handler answer only what that capacity may see. An enterprise applies
//! for its own permit and tracks it, and never gets the workforce view; a
//! department official acts only in their department and region.

use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use tongban_cases::graphql::{principal_of, OfficialRegion};
use tongban_cases::standard;
use tongban_cases::{
    Applicant, CaseCommand, CaseError, CaseQueries, CasesService, CasesViews, EnterpriseId,
    GreenShare, HeadCount, Principal,
};
use tongban_catalog::{CatalogCommand, CatalogService, ServiceCode};
use tongban_kernel::{Actor, ActorId, DivisionCode, Divisions, FixedClock, PersonId, Role};
use tongban_projection::{replay, MemoryReadModels, Projection, ReadModels};
use tongban_store::{EmbeddedStore, EventStore, Position};

const T0: OffsetDateTime = datetime!(2020-06-15 09:00 UTC);

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

struct Hub {
    store: Arc<EmbeddedStore>,
    cases: Arc<CasesService<EmbeddedStore>>,
    _dir: tempfile::TempDir,
}

async fn hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let clock = Arc::new(FixedClock::new(T0));
    let divisions = Arc::new(Divisions::load_default().unwrap());
    let catalog = Arc::new(CatalogService::new(
        store.clone(),
        clock.clone(),
        divisions.clone(),
    ));
    let cases = Arc::new(CasesService::new(
        store.clone(),
        clock,
        divisions,
        catalog.clone(),
        Arc::new(tongban_health_code::vault::MemoryKeyVault::new()),
    ));
    let beijing = [code("11")];
    let admin = Actor {
        id: ActorId::from_u128(0xAD),
        role: Role::Admin,
    };
    for definition in [
        standard::work_resumption_permit(&beijing).unwrap(),
        standard::elderly_care_subsidy(&beijing).unwrap(),
    ] {
        catalog
            .execute(&admin, CatalogCommand::PublishService(definition))
            .await
            .unwrap();
    }
    Hub {
        store,
        cases,
        _dir: dir,
    }
}

impl Hub {
    async fn queries(&self) -> CaseQueries {
        let projection = CasesViews::default();
        let models = ReadModels::new(Arc::new(MemoryReadModels::new()), projection.name());
        let (mut checkpoint, _) = replay::prepare(&projection, &models).await.unwrap();
        let head = self
            .store
            .head()
            .await
            .unwrap()
            .map_or(Position(0), |h| h.position);
        replay::replay(
            self.store.as_ref(),
            &projection,
            &models,
            &mut checkpoint,
            head,
            500,
            |_, _| ControlFlow::Continue(()),
        )
        .await
        .unwrap();
        CaseQueries::new(models)
    }
}

/// The actor a verified `enterprise` token becomes (subject = enterprise id).
fn enterprise_actor(n: u128) -> Actor {
    Actor {
        id: ActorId::from_u128(n),
        role: Role::Enterprise {
            enterprise: uuid::Uuid::from_u128(n),
        },
    }
}

fn department_actor(name: &str) -> Actor {
    Actor {
        id: ActorId::from_u128(0x0FF1),
        role: Role::Department { name: name.into() },
    }
}

fn error_code(e: &async_graphql::Error) -> Option<String> {
    e.extensions
        .as_ref()
        .and_then(|x| x.get("code"))
        .map(|c| c.to_string().trim_matches('"').to_owned())
}

fn permit_form(name: &str) -> Value {
    json!({
        "enterpriseName": name,
        "creditCode": "91110105MA01ABCD3X",
        "registeredEmployees": 120,
        "siteAddress": "1 Jiuxianqiao Road",
        "preventionMeasures": ["temperature checks at the gate"]
    })
}

/// A green share that must never be asked on the enterprise's behalf.
struct Untouchable;

#[async_trait::async_trait]
impl GreenShare for Untouchable {
    async fn green_share(&self, _enterprise: EnterpriseId) -> Result<HeadCount, CaseError> {
        panic!("the workforce was counted for a caller who may not see it")
    }
}

#[tokio::test]
async fn an_enterprise_token_applies_for_its_own_permit_and_tracks_it_but_never_sees_its_workforce()
{
    let hub = hub().await;
    let factory = principal_of(&enterprise_actor(0xFAC), None).unwrap();
    assert_eq!(
        factory,
        Principal::Enterprise {
            actor: ActorId::from_u128(0xFAC),
            enterprise: EnterpriseId::from_u128(0xFAC),
        }
    );
    let permit = ServiceCode::parse(standard::WORK_RESUMPTION).unwrap();
    let own = hub
        .cases
        .submit(
            &factory,
            permit.clone(),
            code("110105"),
            permit_form("Chaoyang Precision Parts Co."),
        )
        .await
        .unwrap();
    let rival = principal_of(&enterprise_actor(0xB0B), None).unwrap();
    let theirs = hub
        .cases
        .submit(&rival, permit, code("110105"), permit_form("Rival Co."))
        .await
        .unwrap();

    // A personal subsidy is not for enterprises.
    let err = hub
        .cases
        .submit(
            &factory,
            ServiceCode::parse(standard::ELDERLY_CARE).unwrap(),
            code("110105"),
            json!({"age": 82, "careLevel": "full-care", "monthlyIncome": 900, "bankAccount": "6222020200012345678"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CaseError::WrongApplicant { .. }), "{err}");

    let queries = hub.queries().await;
    let mine = queries.my_applications(&factory).await.unwrap();
    assert_eq!(
        mine.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(),
        vec![own.to_string()]
    );
    assert_eq!(
        mine[0].applicant,
        Applicant::Enterprise(EnterpriseId::from_u128(0xFAC))
    );
    assert!(queries.case(&factory, own).await.is_ok());
    // Another enterprise's application does not exist for it.
    assert!(matches!(
        queries.case(&factory, theirs).await,
        Err(CaseError::CaseNotFound(_))
    ));
    // No queue, and no workforce counts, not even of its own employees.
    assert!(matches!(
        queries.queue(&factory).await,
        Err(CaseError::Forbidden(_))
    ));
    assert!(matches!(
        queries
            .work_resumption_review(&factory, own, &Untouchable)
            .await,
        Err(CaseError::Forbidden(_))
    ));
    // It cannot decide its own application either.
    let err = hub
        .cases
        .execute(
            &factory,
            own,
            CaseCommand::Approve {
                reasons: vec!["we say so".into()],
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
    // But it may withdraw it.
    hub.cases
        .execute(
            &factory,
            own,
            CaseCommand::Withdraw {
                reason: String::new(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_department_token_acts_only_in_its_department_and_the_region_of_its_claim() {
    let hub = hub().await;
    let subsidy = ServiceCode::parse(standard::ELDERLY_CARE).unwrap();
    let form = json!({"age": 82, "careLevel": "full-care", "monthlyIncome": 900, "bankAccount": "6222020200012345678"});
    let grandma = Principal::Person {
        actor: ActorId::from_u128(0x41),
        person: PersonId::from_u128(0x41),
    };
    let in_fengtai = hub
        .cases
        .submit(&grandma, subsidy.clone(), code("110106"), form.clone())
        .await
        .unwrap();
    let in_chaoyang = hub
        .cases
        .submit(&grandma, subsidy, code("110105"), form)
        .await
        .unwrap();
    let queries = hub.queries().await;

    let fengtai_civil_affairs = principal_of(
        &department_actor("civil-affairs"),
        Some(&OfficialRegion(code("110106"))),
    )
    .unwrap();
    let queue = queries.queue(&fengtai_civil_affairs).await.unwrap();
    assert_eq!(
        queue.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(),
        vec![in_fengtai.to_string()]
    );
    assert!(matches!(
        queries.case(&fengtai_civil_affairs, in_chaoyang).await,
        Err(CaseError::Forbidden(_))
    ));
    let err = hub
        .cases
        .execute(&fengtai_civil_affairs, in_chaoyang, CaseCommand::Accept)
        .await
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
    hub.cases
        .execute(&fengtai_civil_affairs, in_fengtai, CaseCommand::Accept)
        .await
        .unwrap();

    // Commerce in the same region sees none of civil affairs' applications.
    let fengtai_commerce = principal_of(
        &department_actor("commerce"),
        Some(&OfficialRegion(code("110106"))),
    )
    .unwrap();
    assert!(queries.queue(&fengtai_commerce).await.unwrap().is_empty());
    assert!(matches!(
        queries.case(&fengtai_commerce, in_fengtai).await,
        Err(CaseError::Forbidden(_))
    ));

    // Without a region claim, or with a name that is no department code,
    // a department token handles no applications.
    let no_region = principal_of(&department_actor("civil-affairs"), None).unwrap_err();
    assert_eq!(error_code(&no_region).as_deref(), Some("FORBIDDEN"));
    assert!(
        no_region.message.contains("region"),
        "{}",
        no_region.message
    );
    let not_a_code = principal_of(
        &department_actor("Beijing Municipal Commission of Transport"),
        Some(&OfficialRegion(code("11"))),
    )
    .unwrap_err();
    assert_eq!(error_code(&not_a_code).as_deref(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn health_code_roles_have_no_capacity_in_applications() {
    for role in [
        Role::Lab {
            name: "Fengtai CDC".into(),
        },
        Role::HealthOfficial {
            region: code("110106"),
            sub_regions: vec![],
        },
    ] {
        let actor = Actor {
            id: ActorId::from_u128(7),
            role,
        };
        let err = principal_of(&actor, Some(&OfficialRegion(code("11")))).unwrap_err();
        assert_eq!(
            error_code(&err).as_deref(),
            Some("FORBIDDEN"),
            "{}",
            err.message
        );
    }
}
