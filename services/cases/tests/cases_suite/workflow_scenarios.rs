//! Given/when/then scenarios of the application workflow, on the pure
//! `decide`/`evolve` functions.

use std::sync::OnceLock;

use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tongban_cases::case::{decide, CaseContext};
use tongban_cases::standard;
use tongban_cases::{
    Applicant, CaseCommand, CaseError, CaseEvent, CaseId, CaseState, EnterpriseId, Principal,
    Status, Step,
};
use tongban_catalog::{DepartmentCode, ServiceCode, ServiceDefinition, ServiceState};
use tongban_kernel::{ActorId, DivisionCode, Divisions, PersonId};

const T0: OffsetDateTime = datetime!(2020-06-15 09:00 UTC);
const CASE: CaseId = CaseId::from_u128(0xCA5E);
const GRANDMA: PersonId = PersonId::from_u128(0x6A);

fn divisions() -> &'static Divisions {
    static D: OnceLock<Divisions> = OnceLock::new();
    D.get_or_init(|| Divisions::load_default().expect("division data in shared/divisions"))
}

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn grandma() -> Principal {
    Principal::Person {
        actor: ActorId::from_u128(0xA1),
        person: GRANDMA,
    }
}

fn civil_affairs_official(region: &str) -> Principal {
    Principal::Official {
        actor: ActorId::from_u128(0x0F),
        department: DepartmentCode::parse("civil-affairs").unwrap(),
        region: code(region),
    }
}

fn service_state(definition: ServiceDefinition) -> ServiceState {
    ServiceState::default().evolve(&tongban_catalog::CatalogEvent::ServicePublished {
        definition,
        by: ActorId::from_u128(1),
        at: T0 - Duration::days(100),
    })
}

fn subsidy() -> ServiceState {
    service_state(standard::elderly_care_subsidy(&[code("11")]).unwrap())
}

fn form() -> Value {
    json!({"age": 82, "careLevel": "partial-care", "monthlyIncome": 1800, "bankAccount": "6222020200012345678"})
}

fn submitted() -> CaseEvent {
    CaseEvent::ApplicationSubmitted {
        case_id: CASE,
        service: ServiceCode::parse(standard::ELDERLY_CARE).unwrap(),
        service_version: 1,
        department: DepartmentCode::parse("civil-affairs").unwrap(),
        region: code("110105"),
        applicant: Applicant::Person(GRANDMA),
        form: form(),
        due_at: T0 + Duration::days(20),
        at: T0,
    }
}

fn accepted() -> CaseEvent {
    CaseEvent::ApplicationAccepted {
        case_id: CASE,
        official: ActorId::from_u128(0x0F),
        at: T0 + Duration::days(1),
    }
}

fn info_requested() -> CaseEvent {
    CaseEvent::MoreInformationRequested {
        case_id: CASE,
        official: ActorId::from_u128(0x0F),
        requested: "the care needs assessment".into(),
        at: T0 + Duration::days(2),
    }
}

struct Scenario {
    given: Vec<CaseEvent>,
    principal: Principal,
    now: OffsetDateTime,
    service: ServiceState,
}

fn given(events: Vec<CaseEvent>) -> Scenario {
    Scenario {
        given: events,
        principal: grandma(),
        now: T0,
        service: subsidy(),
    }
}

impl Scenario {
    fn by(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self
    }
    fn at(mut self, now: OffsetDateTime) -> Self {
        self.now = now;
        self
    }
    fn with_service(mut self, service: ServiceState) -> Self {
        self.service = service;
        self
    }
    fn when(self, command: CaseCommand) -> Result<Vec<CaseEvent>, CaseError> {
        let state = self
            .given
            .iter()
            .fold(CaseState::default(), CaseState::evolve);
        let ctx = CaseContext {
            principal: &self.principal,
            now: self.now,
            divisions: divisions(),
            service: Some(&self.service),
        };
        decide(&state, &command, &ctx)
    }
}

fn submit(form: Value) -> CaseCommand {
    CaseCommand::Submit {
        case_id: CASE,
        service: ServiceCode::parse(standard::ELDERLY_CARE).unwrap(),
        region: code("110105"),
        form,
    }
}

#[test]
fn a_resident_over_sixty_submits_and_the_decision_is_due_in_the_services_processing_days() {
    let events = given(vec![]).when(submit(form())).unwrap();
    assert_eq!(events, vec![submitted()]);
}

#[test]
fn a_form_breaking_the_schema_is_refused_naming_each_field_and_rule() {
    let err = given(vec![])
        .when(submit(
            json!({"age": 59, "careLevel": "some", "monthlyIncome": 100}),
        ))
        .unwrap_err();
    let CaseError::FormInvalid { violations, .. } = &err else {
        panic!("expected FormInvalid, got {err:?}");
    };
    let named: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.field.as_str(), v.rule.as_str()))
        .collect();
    assert!(named.contains(&("/age", "minimum")), "{named:?}");
    assert!(named.contains(&("/careLevel", "enum")), "{named:?}");
    assert!(named.contains(&("/bankAccount", "required")), "{named:?}");
    assert!(err.to_string().contains("`/age` breaks `minimum`"), "{err}");
    assert_eq!(err.code(), "INVALID_INPUT");
}

#[test]
fn applying_outside_the_services_regions_is_refused() {
    let err = given(vec![])
        .when(CaseCommand::Submit {
            case_id: CASE,
            service: ServiceCode::parse(standard::ELDERLY_CARE).unwrap(),
            region: code("310101"),
            form: form(),
        })
        .unwrap_err();
    assert!(matches!(err, CaseError::NotOfferedInRegion { .. }), "{err}");
}

#[test]
fn an_enterprise_cannot_apply_for_a_personal_subsidy() {
    let err = given(vec![])
        .by(Principal::Enterprise {
            actor: ActorId::from_u128(0xE1),
            enterprise: EnterpriseId::from_u128(0xE),
        })
        .when(submit(form()))
        .unwrap_err();
    assert!(matches!(err, CaseError::WrongApplicant { .. }), "{err}");
}

#[test]
fn a_withdrawn_service_takes_no_new_applications() {
    let withdrawn = subsidy().evolve(&tongban_catalog::CatalogEvent::ServiceWithdrawn {
        code: ServiceCode::parse(standard::ELDERLY_CARE).unwrap(),
        reason: "budget ended".into(),
        by: ActorId::from_u128(1),
        at: T0,
    });
    let err = given(vec![])
        .with_service(withdrawn)
        .when(submit(form()))
        .unwrap_err();
    assert!(matches!(err, CaseError::ServiceWithdrawn(_)), "{err}");
}

#[test]
fn an_official_of_the_department_and_region_accepts_a_submitted_application() {
    let events = given(vec![submitted()])
        .by(civil_affairs_official("110105"))
        .at(T0 + Duration::days(1))
        .when(CaseCommand::Accept)
        .unwrap();
    assert_eq!(events, vec![accepted()]);
}

#[test]
fn an_official_of_another_region_may_not_accept() {
    let err = given(vec![submitted()])
        .by(civil_affairs_official("110101"))
        .when(CaseCommand::Accept)
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
}

#[test]
fn an_official_of_another_department_may_not_approve_even_in_the_same_region() {
    let err = given(vec![submitted(), accepted()])
        .by(Principal::Official {
            actor: ActorId::from_u128(0x0C),
            department: DepartmentCode::parse("commerce").unwrap(),
            region: code("11"),
        })
        .when(CaseCommand::Approve {
            reasons: vec!["fine".into()],
        })
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
}

#[test]
fn approving_a_submitted_application_before_accepting_it_is_an_illegal_transition() {
    let err = given(vec![submitted()])
        .by(civil_affairs_official("11"))
        .when(CaseCommand::Approve {
            reasons: vec!["eligible".into()],
        })
        .unwrap_err();
    assert_eq!(
        err,
        CaseError::IllegalTransition {
            case_id: CASE,
            current: Status::Submitted,
            attempted: Step::Approve
        }
    );
    assert_eq!(
        err.to_string(),
        format!("application {CASE} is submitted; it cannot be approved")
    );
    assert_eq!(err.code(), "CONFLICT");
}

#[test]
fn a_rejected_application_cannot_be_withdrawn() {
    let rejected = CaseEvent::ApplicationRejected {
        case_id: CASE,
        official: ActorId::from_u128(0x0F),
        reasons: vec!["income above the threshold".into()],
        at: T0 + Duration::days(3),
    };
    let err = given(vec![submitted(), accepted(), rejected])
        .when(CaseCommand::Withdraw {
            reason: "changed my mind".into(),
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            CaseError::IllegalTransition {
                current: Status::Rejected,
                attempted: Step::Withdraw,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn supplementing_when_no_information_was_requested_is_an_illegal_transition() {
    let err = given(vec![submitted(), accepted()])
        .when(CaseCommand::Supplement {
            form: form(),
            note: "extra".into(),
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            CaseError::IllegalTransition {
                current: Status::UnderReview,
                attempted: Step::Supplement,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rejecting_without_a_reason_is_refused() {
    let err = given(vec![submitted(), accepted()])
        .by(civil_affairs_official("11"))
        .when(CaseCommand::Reject {
            reasons: vec!["  ".into()],
        })
        .unwrap_err();
    assert_eq!(err, CaseError::ReasonsRequired { step: Step::Reject });
}

#[test]
fn the_due_date_moves_by_the_days_the_application_waited_for_the_applicant() {
    let events = given(vec![submitted(), accepted(), info_requested()])
        .at(T0 + Duration::days(7))
        .when(CaseCommand::Supplement {
            form: form(),
            note: "attached the assessment".into(),
        })
        .unwrap();
    assert_eq!(
        events,
        vec![CaseEvent::ApplicationSupplemented {
            case_id: CASE,
            form: form(),
            note: "attached the assessment".into(),
            due_at: T0 + Duration::days(25),
            at: T0 + Duration::days(7),
        }]
    );
}

#[test]
fn a_supplement_is_checked_against_the_schema_again() {
    let err = given(vec![submitted(), accepted(), info_requested()])
        .when(CaseCommand::Supplement {
            form: json!({"age": "eighty"}),
            note: String::new(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("`/age` breaks `type`"), "{err}");
}

#[test]
fn only_the_applicant_may_withdraw() {
    let err = given(vec![submitted()])
        .by(Principal::Person {
            actor: ActorId::from_u128(0xA2),
            person: PersonId::from_u128(0x99),
        })
        .when(CaseCommand::Withdraw {
            reason: String::new(),
        })
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
}

#[test]
fn the_applicant_withdraws_while_more_information_is_awaited() {
    let events = given(vec![submitted(), accepted(), info_requested()])
        .when(CaseCommand::Withdraw {
            reason: "moved abroad".into(),
        })
        .unwrap();
    assert_eq!(
        events,
        vec![CaseEvent::ApplicationWithdrawn {
            case_id: CASE,
            reason: "moved abroad".into(),
            at: T0
        }]
    );
}

#[test]
fn approving_a_residence_change_also_records_the_change_for_the_health_code_domain() {
    let residence = service_state(standard::residence_community_change(&[code("11")]).unwrap());
    let form = json!({"newCommunity": "110101001001", "moveDate": "2020-06-01"});
    let submitted = given(vec![])
        .with_service(residence.clone())
        .when(CaseCommand::Submit {
            case_id: CASE,
            service: ServiceCode::parse(standard::RESIDENCE_CHANGE).unwrap(),
            region: code("110106"),
            form,
        })
        .unwrap();
    let official = Principal::Official {
        actor: ActorId::from_u128(0x9),
        department: DepartmentCode::parse("public-security").unwrap(),
        region: code("110106"),
    };
    let mut history = submitted;
    history.extend(
        given(history.clone())
            .by(official.clone())
            .with_service(residence.clone())
            .when(CaseCommand::Accept)
            .unwrap(),
    );
    let events = given(history)
        .by(official)
        .with_service(residence)
        .when(CaseCommand::Approve {
            reasons: vec!["tenancy contract checked".into()],
        })
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        CaseEvent::ResidenceChangeApproved {
            case_id: CASE,
            person_id: GRANDMA,
            to: code("110101001001"),
            at: T0
        }
    );
}

#[test]
fn a_residence_change_to_a_community_that_does_not_exist_is_refused_naming_the_field() {
    let residence = service_state(standard::residence_community_change(&[code("11")]).unwrap());
    let err = given(vec![])
        .with_service(residence)
        .when(CaseCommand::Submit {
            case_id: CASE,
            service: ServiceCode::parse(standard::RESIDENCE_CHANGE).unwrap(),
            region: code("110106"),
            form: json!({"newCommunity": "110101999999", "moveDate": "2020-06-01"}),
        })
        .unwrap_err();
    assert!(err.to_string().contains("`/newCommunity`"), "{err}");
}

#[test]
fn an_official_opening_an_application_is_recorded_with_purpose_and_fields() {
    let events = given(vec![submitted()])
        .by(civil_affairs_official("110105"))
        .when(CaseCommand::RecordAccess {
            purpose: "review".into(),
            fields: vec!["form".into()],
        })
        .unwrap();
    assert!(
        matches!(&events[..], [CaseEvent::ApplicationOpened { purpose, fields, department, .. }]
            if purpose == "review" && fields == &["form".to_string()] && department == "civil-affairs"),
        "{events:?}"
    );
}

#[test]
fn an_official_of_another_region_cannot_open_an_application() {
    let err = given(vec![submitted()])
        .by(civil_affairs_official("110101"))
        .when(CaseCommand::RecordAccess {
            purpose: "curiosity".into(),
            fields: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, CaseError::Forbidden(_)), "{err}");
}
