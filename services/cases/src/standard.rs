//! The three concrete services: their catalogue entries (with the JSON
//! Schemas of their forms) and the decisions specific to each.
//!
//! 1. [`WORK_RESUMPTION`]: an enterprise applies to resume work; the
//!    official reviewing it sees what share of its registered employees hold
//!    a green code (counts only, see [`crate::green_share`]).
//! 2. [`ELDERLY_CARE`]: a person over sixty applies for a care subsidy.
//! 3. [`RESIDENCE_CHANGE`]: a person moves to another residence community;
//!    approval also records `ResidenceChangeApproved`, which the residence
//!    process manager ([`crate::residence`]) hands to the health-code domain.

use serde_json::{json, Value};
use time::OffsetDateTime;
use tongban_catalog::{DepartmentCode, FieldViolation, FormSchema, ServiceCode, ServiceDefinition};
use tongban_kernel::{DivisionCode, DivisionLevel, Divisions};

use crate::case::CaseState;
use crate::error::CaseError;
use crate::events::CaseEvent;
use crate::types::{Applicant, CaseId};

/// Code of the enterprise work-resumption permit.
pub const WORK_RESUMPTION: &str = "work-resumption-permit";
/// Code of the elderly-care subsidy.
pub const ELDERLY_CARE: &str = "elderly-care-subsidy";
/// Code of the change of residence community.
pub const RESIDENCE_CHANGE: &str = "residence-community-change";

/// The fixed text of a catalogue entry.
struct Entry<'a> {
    code: &'a str,
    name: &'a str,
    department: &'a str,
    description: &'a str,
    documents: &'a [&'a str],
    processing_days: u32,
}

fn definition(
    entry: Entry<'_>,
    regions: &[DivisionCode],
    schema: Value,
) -> Result<ServiceDefinition, CaseError> {
    let Entry {
        code,
        name,
        department,
        description,
        documents,
        processing_days,
    } = entry;
    let upstream = |e: tongban_catalog::CatalogError| CaseError::Upstream {
        domain: "catalog",
        message: e.to_string(),
    };
    Ok(ServiceDefinition {
        code: ServiceCode::parse(code).map_err(upstream)?,
        name: name.into(),
        department: DepartmentCode::parse(department).map_err(upstream)?,
        description: description.into(),
        required_documents: documents.iter().map(|d| (*d).to_owned()).collect(),
        eligible_regions: regions.to_vec(),
        form_schema: FormSchema::parse(schema).map_err(upstream)?,
        processing_days,
    })
}

/// The work-resumption permit, handled by department `commerce`.
pub fn work_resumption_permit(regions: &[DivisionCode]) -> Result<ServiceDefinition, CaseError> {
    definition(
        Entry {
            code: WORK_RESUMPTION,
            name: "Enterprise work-resumption permit",
            department: "commerce",
            description: "An enterprise applies to resume work on site; the reviewing official sees the share of its registered employees holding a green health code.",
            documents: &["Business licence", "Epidemic prevention plan"],
            processing_days: 5,
        },
        regions,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["enterpriseName", "creditCode", "registeredEmployees", "siteAddress", "preventionMeasures"],
            "additionalProperties": false,
            "properties": {
                "enterpriseName": {"type": "string", "minLength": 2, "maxLength": 200},
                "creditCode": {"type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"},
                "registeredEmployees": {"type": "integer", "minimum": 1},
                "siteAddress": {"type": "string", "minLength": 4},
                "resumeOn": {"type": "string", "format": "date"},
                "preventionMeasures": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}}
            }
        }),
    )
}

/// The elderly-care subsidy, handled by department `civil-affairs`.
pub fn elderly_care_subsidy(regions: &[DivisionCode]) -> Result<ServiceDefinition, CaseError> {
    definition(
        Entry {
            code: ELDERLY_CARE,
            name: "Elderly-care subsidy",
            department: "civil-affairs",
            description: "Monthly subsidy for residents aged sixty or over who need care at home or in an institution.",
            documents: &["Resident ID", "Hukou booklet", "Care needs assessment"],
            processing_days: 20,
        },
        regions,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["age", "careLevel", "monthlyIncome", "bankAccount"],
            "additionalProperties": false,
            "properties": {
                "age": {"type": "integer", "minimum": 60, "maximum": 130},
                "careLevel": {"enum": ["self-care", "partial-care", "full-care"]},
                "monthlyIncome": {"type": "number", "minimum": 0},
                "livesAlone": {"type": "boolean"},
                "bankAccount": {"type": "string", "pattern": "^[0-9]{12,19}$"}
            }
        }),
    )
}

/// The change of residence community, handled by department `public-security`.
pub fn residence_community_change(
    regions: &[DivisionCode],
) -> Result<ServiceDefinition, CaseError> {
    definition(
        Entry {
            code: RESIDENCE_CHANGE,
            name: "Change of residence community",
            department: "public-security",
            description: "A resident moves to another community (shequ); once approved, the health-code domain records the new residence.",
            documents: &["Resident ID", "Tenancy contract or property certificate"],
            processing_days: 10,
        },
        regions,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["newCommunity", "moveDate"],
            "additionalProperties": false,
            "properties": {
                "newCommunity": {"type": "string", "pattern": "^[0-9]{12}$"},
                "moveDate": {"type": "string", "format": "date"},
                "address": {"type": "string"}
            }
        }),
    )
}

/// Who may apply for a service: persons, enterprises, or either.
pub fn check_applicant(service: &ServiceCode, applicant: &Applicant) -> Result<(), CaseError> {
    let (expected, ok) = match service.as_str() {
        WORK_RESUMPTION => ("enterprises", matches!(applicant, Applicant::Enterprise(_))),
        ELDERLY_CARE | RESIDENCE_CHANGE => ("persons", matches!(applicant, Applicant::Person(_))),
        _ => return Ok(()),
    };
    if ok {
        Ok(())
    } else {
        Err(CaseError::WrongApplicant {
            service: service.clone(),
            expected,
            actual: match applicant {
                Applicant::Person(_) => "person",
                Applicant::Enterprise(_) => "enterprise",
            },
        })
    }
}

fn new_community(form: &Value, divisions: &Divisions) -> Result<DivisionCode, FieldViolation> {
    let text = form
        .get("newCommunity")
        .and_then(Value::as_str)
        .unwrap_or_default();
    divisions
        .parse_at(text, DivisionLevel::Community)
        .map_err(|e| FieldViolation {
            field: "/newCommunity".into(),
            rule: "division".into(),
            message: e.to_string(),
        })
}

/// Rules beyond the JSON Schema (run once the schema is satisfied).
pub fn check_form(
    service: &ServiceCode,
    form: &Value,
    divisions: &Divisions,
) -> Vec<FieldViolation> {
    match service.as_str() {
        RESIDENCE_CHANGE => new_community(form, divisions).err().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Events a service adds to an approval.
pub fn on_approval(
    state: &CaseState,
    case_id: CaseId,
    divisions: &Divisions,
    now: OffsetDateTime,
) -> Result<Vec<CaseEvent>, CaseError> {
    let Some(service) = &state.service else {
        return Ok(vec![]);
    };
    if service.as_str() != RESIDENCE_CHANGE {
        return Ok(vec![]);
    }
    let Some(Applicant::Person(person_id)) = state.applicant else {
        return Err(CaseError::WrongApplicant {
            service: service.clone(),
            expected: "persons",
            actual: "enterprise",
        });
    };
    let to = new_community(&state.form, divisions).map_err(|v| CaseError::FormInvalid {
        service: service.clone(),
        violations: vec![v],
    })?;
    Ok(vec![CaseEvent::ResidenceChangeApproved {
        case_id,
        person_id,
        to,
        at: now,
    }])
}
