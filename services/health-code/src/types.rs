//! Small value types of the domain, parsed once and valid ever after.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::error::HealthCodeError;

/// A health-code colour, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    /// No known risk.
    Green,
    /// Some risk: travel to, dwell in or a visit to a risk area.
    Yellow,
    /// High risk: a case, a close contact, fever pending a test.
    Red,
}

impl Colour {
    /// Parses `green`, `yellow` or `red`.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, HealthCodeError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "green" => Ok(Colour::Green),
            "yellow" => Ok(Colour::Yellow),
            "red" => Ok(Colour::Red),
            _ => Err(HealthCodeError::InvalidInput {
                field,
                rule: format!("`{text}` is not one of green, yellow, red"),
            }),
        }
    }

    /// The lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Colour::Green => "green",
            Colour::Yellow => "yellow",
            Colour::Red => "red",
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A test result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestResult {
    /// Positive.
    Positive,
    /// Negative.
    Negative,
}

/// A risk area's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Low risk.
    Low,
    /// Medium risk.
    Medium,
    /// High risk.
    High,
}

/// How a journey was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TravelMode {
    /// Train.
    Rail,
    /// Plane.
    Air,
    /// Road.
    Road,
    /// Inferred from a phone's location.
    Telco,
}

/// A body temperature between 30 and 45 °C.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Temperature(f64);

impl Temperature {
    /// The fever threshold (≥ 37.3 °C).
    pub const FEVER: f64 = 37.3;

    /// Checks the range 30–45 °C.
    pub fn parse(field: &'static str, celsius: f64) -> Result<Self, HealthCodeError> {
        if celsius.is_finite() && (30.0..=45.0).contains(&celsius) {
            Ok(Self(celsius))
        } else {
            Err(HealthCodeError::TemperatureOutOfRange {
                field,
                value: celsius,
            })
        }
    }

    /// Degrees Celsius.
    pub fn celsius(&self) -> f64 {
        self.0
    }

    /// Whether this is a fever (≥ 37.3 °C).
    pub fn is_fever(&self) -> bool {
        self.0 >= Self::FEVER
    }
}

/// The standard's BizExtData: an optional JSON object stored with the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BizExt(serde_json::Map<String, serde_json::Value>);

impl BizExt {
    /// Accepts a JSON object of at most 4 KiB.
    pub fn parse(value: serde_json::Value) -> Result<Self, HealthCodeError> {
        let size = value.to_string().len();
        match value {
            serde_json::Value::Object(map) if size <= 4096 => Ok(Self(map)),
            serde_json::Value::Object(_) => Err(HealthCodeError::InvalidInput {
                field: "bizExtData",
                rule: "must be at most 4096 bytes of JSON".into(),
            }),
            _ => Err(HealthCodeError::InvalidInput {
                field: "bizExtData",
                rule: "must be a JSON object".into(),
            }),
        }
    }

    /// The object.
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}

/// What an override answers: an appeal or a case file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum OverrideAnswers {
    /// An appeal of the person.
    Appeal(Uuid),
    /// A case reference (epidemiological investigation).
    Case(String),
}

/// Who scanned whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanDirection {
    /// A guard scanned the person's code.
    GuardScansPerson,
    /// The person scanned the venue's place code.
    PersonScansVenue,
}

/// A checkpoint's admission policy.
///
/// Written as JSON, e.g. `{"admit": ["green"]}` or
/// `{"admit": ["green", "yellow"], "yellow_needs_negative_test_within_hours": 48}`;
/// `max_temperature` (default 37.3) denies at or above it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionPolicy {
    /// Colours admitted.
    pub admit: Vec<Colour>,
    /// If set, yellow is admitted only with a negative test sampled within this many hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yellow_needs_negative_test_within_hours: Option<u32>,
    /// Deny at or above this temperature (°C).
    #[serde(default = "default_max_temperature")]
    pub max_temperature: f64,
}

fn default_max_temperature() -> f64 {
    Temperature::FEVER
}

impl AdmissionPolicy {
    /// Green only.
    pub fn green_only() -> Self {
        Self {
            admit: vec![Colour::Green],
            yellow_needs_negative_test_within_hours: None,
            max_temperature: Temperature::FEVER,
        }
    }

    /// Parses the JSON form, naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, HealthCodeError> {
        let invalid = |message: String| HealthCodeError::PolicyInvalid {
            field: "admission".into(),
            message,
        };
        let policy: AdmissionPolicy =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if policy.admit.is_empty() {
            return Err(invalid("`admit` must list at least one colour".into()));
        }
        if policy.admit.contains(&Colour::Red) {
            return Err(invalid("`admit` may not contain red".into()));
        }
        if !(35.0..=42.0).contains(&policy.max_temperature) {
            return Err(invalid(
                "`max_temperature` must be between 35 and 42 °C".into(),
            ));
        }
        if policy
            .yellow_needs_negative_test_within_hours
            .is_some_and(|h| h == 0 || h > 336)
        {
            return Err(invalid(
                "`yellow_needs_negative_test_within_hours` must be 1 to 336".into(),
            ));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperatures_outside_thirty_to_forty_five_are_rejected() {
        assert!(Temperature::parse("temperature", 36.6).is_ok());
        assert!(Temperature::parse("temperature", 29.9).is_err());
        assert!(Temperature::parse("temperature", 45.1).is_err());
        assert!(Temperature::parse("temperature", f64::NAN).is_err());
        assert!(Temperature::parse("temperature", 37.3).unwrap().is_fever());
    }

    #[test]
    fn admission_policies_parse_or_say_why_not() {
        let p = AdmissionPolicy::parse(
            r#"{"admit":["green","yellow"],"yellow_needs_negative_test_within_hours":48}"#,
        )
        .unwrap();
        assert_eq!(p.yellow_needs_negative_test_within_hours, Some(48));
        for bad in [
            r#"{"admit":[]}"#,
            r#"{"admit":["red"]}"#,
            r#"{"admit":["blue"]}"#,
            "green",
            r#"{"admit":["green"],"x":1}"#,
        ] {
            assert!(
                matches!(
                    AdmissionPolicy::parse(bad),
                    Err(HealthCodeError::PolicyInvalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn biz_ext_must_be_a_small_object() {
        assert!(BizExt::parse(serde_json::json!({"channel": "alipay"})).is_ok());
        assert!(BizExt::parse(serde_json::json!([1, 2])).is_err());
        assert!(BizExt::parse(serde_json::json!({"x": "y".repeat(5000)})).is_err());
    }
}
