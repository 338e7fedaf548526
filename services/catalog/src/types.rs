//! Value types, parsed once: holding one means it is valid.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tongban_kernel::DivisionCode;

use crate::error::CatalogError;

fn check_slug(field: &'static str, text: &str) -> Result<(), CatalogError> {
    let ok_len = (3..=64).contains(&text.len());
    let ok_start = text.starts_with(|c: char| c.is_ascii_lowercase());
    let ok_chars = text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok_len && ok_start && ok_chars {
        Ok(())
    } else {
        Err(CatalogError::InvalidInput {
            field,
            rule: format!(
                "`{text}` must be 3 to 64 characters of a-z, 0-9 and '-', starting with a letter"
            ),
        })
    }
}

macro_rules! slug {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses 3 to 64 characters of `a-z`, `0-9` and `-`, starting with a letter.
            pub fn parse(text: &str) -> Result<Self, CatalogError> {
                let text = text.trim();
                check_slug($field, text)?;
                Ok(Self(text.to_owned()))
            }

            /// The code as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug!(
    /// A catalogued service's stable code, e.g. `elderly-care-subsidy`.
    ServiceCode,
    "code"
);
slug!(
    /// A department's code, e.g. `civil-affairs`.
    DepartmentCode,
    "department"
);

/// One way a form breaks its service's JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// The field, as a JSON pointer (`/applicantAge`, `/members/0/name`);
    /// for a missing required field, the path it should be at.
    pub field: String,
    /// The JSON Schema keyword broken (`required`, `minimum`, `pattern`, ...).
    pub rule: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` breaks `{}`: {}",
            self.field, self.rule, self.message
        )
    }
}

/// The JSON Schema of a service's application form, checked against the
/// JSON Schema meta-schema when parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FormSchema(Value);

impl FormSchema {
    /// Accepts `schema` if it is a JSON Schema object that its meta-schema
    /// (draft 2020-12 unless `$schema` says otherwise) accepts and that
    /// compiles (resolvable references, valid patterns).
    pub fn parse(schema: Value) -> Result<Self, CatalogError> {
        if !schema.is_object() {
            return Err(CatalogError::InvalidSchema {
                path: String::new(),
                message: "an application form's schema must be a JSON object".into(),
            });
        }
        if let Err(e) = jsonschema::meta::validate(&schema) {
            return Err(CatalogError::InvalidSchema {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            });
        }
        if let Err(e) = jsonschema::validator_for(&schema) {
            return Err(CatalogError::InvalidSchema {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            });
        }
        Ok(Self(schema))
    }

    /// The schema document.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// Checks a form: every violation, each naming the field and the rule.
    pub fn validate(&self, form: &Value) -> Result<(), Vec<FieldViolation>> {
        let validator = match jsonschema::validator_for(&self.0) {
            Ok(v) => v,
            Err(e) => {
                return Err(vec![FieldViolation {
                    field: String::new(),
                    rule: "schema".into(),
                    message: format!("the service's form schema no longer compiles: {e}"),
                }])
            }
        };
        let violations: Vec<FieldViolation> = validator
            .iter_errors(form)
            .map(|e| {
                let mut field = e.instance_path().to_string();
                if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                    let name = property
                        .as_str()
                        .map_or_else(|| property.to_string(), str::to_owned);
                    field = format!("{field}/{name}");
                }
                FieldViolation {
                    field,
                    rule: e.kind().keyword().to_owned(),
                    message: e.to_string(),
                }
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// What a department publishes about a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    /// Stable code.
    pub code: ServiceCode,
    /// Display name.
    pub name: String,
    /// The department that handles applications.
    pub department: DepartmentCode,
    /// What the service is for and who may apply.
    pub description: String,
    /// Documents an applicant must provide.
    pub required_documents: Vec<String>,
    /// Where the service is offered: a region serves every area inside it.
    pub eligible_regions: Vec<DivisionCode>,
    /// The application form's JSON Schema.
    pub form_schema: FormSchema,
    /// Promised processing time in days, from submission to decision.
    pub processing_days: u32,
}

impl ServiceDefinition {
    /// Whether an applicant in `area` may apply: one eligible region is
    /// `area` or contains it.
    pub fn is_offered_in(&self, area: &DivisionCode) -> bool {
        self.eligible_regions.iter().any(|r| r.contains(area))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_codes_are_lowercase_slugs() {
        assert!(ServiceCode::parse("elderly-care-subsidy").is_ok());
        assert!(ServiceCode::parse("Elderly").is_err());
        assert!(ServiceCode::parse("x").is_err());
        assert!(ServiceCode::parse("9lives").is_err());
    }

    #[test]
    fn a_schema_with_an_unknown_type_is_rejected_naming_where() {
        let err = FormSchema::parse(
            json!({"type": "object", "properties": {"age": {"type": "integre"}}}),
        )
        .unwrap_err();
        let CatalogError::InvalidSchema { path, .. } = err else {
            panic!("expected InvalidSchema, got {err:?}");
        };
        assert!(path.starts_with("/properties/age"), "{path}");
    }

    #[test]
    fn a_missing_required_field_is_named_with_its_path() {
        let schema = FormSchema::parse(json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 60}}
        }))
        .unwrap();
        let errors = schema.validate(&json!({"age": 59})).unwrap_err();
        let fields: Vec<(&str, &str)> = errors
            .iter()
            .map(|v| (v.field.as_str(), v.rule.as_str()))
            .collect();
        assert!(fields.contains(&("/name", "required")), "{fields:?}");
        assert!(fields.contains(&("/age", "minimum")), "{fields:?}");
    }
}
