//! Given/when/then scenarios of the catalogue, and its read model on the
//! embedded event store.

use std::sync::{Arc, OnceLock};

use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;
use tongban_catalog::commands::CatalogCommand;
use tongban_catalog::events::CatalogEvent;
use tongban_catalog::projections::Search;
use tongban_catalog::service::{decide, CatalogContext, ServiceState};
use tongban_catalog::{
    CatalogError, CatalogQueries, CatalogService, CatalogViews, DepartmentCode, FormSchema,
    ServiceCode, ServiceDefinition, ServiceStatus,
};
use tongban_kernel::{Actor, ActorId, DivisionCode, Divisions, FixedClock, Role};
use tongban_projection::{replay, MemoryReadModels, Projection, ReadModels};
use tongban_store::{EmbeddedStore, EventStore, Position};

const T0: OffsetDateTime = datetime!(2020-06-13 12:00 UTC);

fn divisions() -> &'static Divisions {
    static D: OnceLock<Divisions> = OnceLock::new();
    D.get_or_init(|| Divisions::load_default().expect("division data in shared/divisions"))
}

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn civil_affairs() -> Actor {
    Actor {
        id: ActorId::from_u128(0xCA),
        role: Role::Department {
            name: "civil-affairs".into(),
        },
    }
}

fn commerce() -> Actor {
    Actor {
        id: ActorId::from_u128(0xC0),
        role: Role::Department {
            name: "commerce".into(),
        },
    }
}

fn subsidy(regions: &[&str]) -> ServiceDefinition {
    ServiceDefinition {
        code: ServiceCode::parse("elderly-care-subsidy").unwrap(),
        name: "Elderly-care subsidy".into(),
        department: DepartmentCode::parse("civil-affairs").unwrap(),
        description: "Monthly subsidy for residents over sixty who need care".into(),
        required_documents: vec!["Resident ID".into(), "Hukou booklet".into()],
        eligible_regions: regions.iter().map(|r| code(r)).collect(),
        form_schema: FormSchema::parse(json!({
            "type": "object",
            "required": ["age"],
            "properties": {"age": {"type": "integer", "minimum": 60}}
        }))
        .unwrap(),
        processing_days: 20,
    }
}

struct Scenario {
    given: Vec<CatalogEvent>,
    actor: Actor,
}

fn given(events: Vec<CatalogEvent>) -> Scenario {
    Scenario {
        given: events,
        actor: civil_affairs(),
    }
}

impl Scenario {
    fn by(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    fn when(self, command: CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
        let state = self
            .given
            .iter()
            .fold(ServiceState::default(), ServiceState::evolve);
        let ctx = CatalogContext {
            actor: &self.actor,
            now: T0,
            divisions: divisions(),
        };
        decide(&state, &command, &ctx)
    }
}

fn published() -> CatalogEvent {
    CatalogEvent::ServicePublished {
        definition: subsidy(&["11"]),
        by: civil_affairs().id,
        at: T0,
    }
}

#[test]
fn a_department_publishes_its_service() {
    let events = given(vec![])
        .when(CatalogCommand::PublishService(subsidy(&["11"])))
        .unwrap();
    assert_eq!(events, vec![published()]);
}

#[test]
fn another_department_may_not_publish_in_its_name() {
    let err = given(vec![])
        .by(commerce())
        .when(CatalogCommand::PublishService(subsidy(&["11"])))
        .unwrap_err();
    assert!(matches!(err, CatalogError::Forbidden { .. }), "{err}");
    assert_eq!(err.code(), "FORBIDDEN");
}

#[test]
fn publishing_an_eligible_region_that_does_not_exist_is_refused() {
    let err = given(vec![])
        .when(CatalogCommand::PublishService(subsidy(&["119999"])))
        .unwrap_err();
    assert!(matches!(err, CatalogError::UnknownRegion(_)), "{err}");
    assert!(err.to_string().contains("eligible_regions"), "{err}");
}

#[test]
fn publishing_a_code_twice_is_refused() {
    let err = given(vec![published()])
        .when(CatalogCommand::PublishService(subsidy(&["11"])))
        .unwrap_err();
    assert!(matches!(err, CatalogError::AlreadyPublished(_)), "{err}");
}

#[test]
fn an_update_carries_the_whole_new_definition_and_the_next_version() {
    let mut changed = subsidy(&["11", "31"]);
    changed.processing_days = 15;
    let events = given(vec![published()])
        .when(CatalogCommand::UpdateService(changed.clone()))
        .unwrap();
    assert_eq!(
        events,
        vec![CatalogEvent::ServiceUpdated {
            definition: changed,
            version: 2,
            by: civil_affairs().id,
            at: T0
        }]
    );
}

#[test]
fn a_withdrawn_service_cannot_be_updated() {
    let withdrawn = CatalogEvent::ServiceWithdrawn {
        code: ServiceCode::parse("elderly-care-subsidy").unwrap(),
        reason: "replaced".into(),
        by: civil_affairs().id,
        at: T0,
    };
    let err = given(vec![published(), withdrawn])
        .when(CatalogCommand::UpdateService(subsidy(&["11"])))
        .unwrap_err();
    assert!(matches!(err, CatalogError::Withdrawn(_)), "{err}");
}

#[test]
fn an_invalid_form_schema_is_refused_when_published() {
    let err = FormSchema::parse(json!({"type": "object", "required": "age"})).unwrap_err();
    assert!(matches!(err, CatalogError::InvalidSchema { .. }), "{err}");
    assert!(err.to_string().contains("/required"), "{err}");
}

async fn project(store: &EmbeddedStore) -> CatalogQueries {
    let views = CatalogViews::default();
    let models = ReadModels::new(Arc::new(MemoryReadModels::new()), views.name());
    let (mut checkpoint, _) = replay::prepare(&views, &models).await.unwrap();
    let head = store
        .head()
        .await
        .unwrap()
        .map_or(Position(0), |h| h.position);
    replay::replay(
        store,
        &views,
        &models,
        &mut checkpoint,
        head,
        100,
        |_, _| std::ops::ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    CatalogQueries::new(models)
}

#[tokio::test]
async fn the_catalogue_is_searchable_by_keyword_and_by_region_with_its_ancestors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let catalog = CatalogService::new(
        store.clone(),
        Arc::new(FixedClock::new(T0)),
        Arc::new(Divisions::load_default().unwrap()),
    );
    catalog
        .execute(
            &civil_affairs(),
            CatalogCommand::PublishService(subsidy(&["11"])),
        )
        .await
        .unwrap();
    let mut shanghai_only = subsidy(&["31"]);
    shanghai_only.code = ServiceCode::parse("shanghai-pension-card").unwrap();
    shanghai_only.name = "Pension card".into();
    catalog
        .execute(
            &civil_affairs(),
            CatalogCommand::PublishService(shanghai_only),
        )
        .await
        .unwrap();

    let queries = project(&store).await;
    let in_dongcheng = queries
        .search(&Search {
            region: Some(code("110101001001")),
            ..Search::default()
        })
        .await
        .unwrap();
    assert_eq!(
        in_dongcheng
            .iter()
            .map(|s| s.code.as_str())
            .collect::<Vec<_>>(),
        vec!["elderly-care-subsidy"]
    );
    let by_word = queries
        .search(&Search {
            keyword: Some("PENSION".into()),
            ..Search::default()
        })
        .await
        .unwrap();
    assert_eq!(by_word.len(), 1);
    assert_eq!(by_word[0].code, "shanghai-pension-card");

    catalog
        .execute(
            &civil_affairs(),
            CatalogCommand::WithdrawService {
                code: ServiceCode::parse("shanghai-pension-card").unwrap(),
                reason: "merged into the social security card".into(),
            },
        )
        .await
        .unwrap();
    let queries = project(&store).await;
    assert!(queries
        .search(&Search {
            keyword: Some("pension".into()),
            ..Search::default()
        })
        .await
        .unwrap()
        .is_empty());
    let view = queries
        .service("shanghai-pension-card")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, ServiceStatus::Withdrawn);
}
