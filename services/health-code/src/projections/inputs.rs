//! What the `health_code` projection reads of its most frequent events,
//! decoded straight from the event's JSON.
//!
//! [`HealthEvent`] is an internally tagged enum (`"type": …`, and evidence
//! inside it by `"kind": …`), which serde decodes by first buffering the
//! whole object; with the fields the projection does not read (sealed
//! personal data, cited evidence, causes) that was an eighth of a catch-up.
//! These structs name only the fields the projection reads, with the same
//! types and formats as [`HealthEvent`], so they decode what it encodes;
//! the tests below check that against events encoded by [`HealthEvent`].
//! Rare events still go through [`HealthEvent`], which converts into these
//! structs, so each event has one handler.

use std::borrow::Cow;

use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tongban_kernel::{ActorId, CheckpointId, DivisionCode, EventId, PersonId};
use uuid::Uuid;

use crate::events::{Evidence, HealthEvent};
use crate::types::{BizExt, Colour, Temperature, TravelMode};

/// `PersonRegistered.v1`, without the sealed personal data.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Registered<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub person_id: PersonId,
    pub home_region: DivisionCode,
    pub residence: DivisionCode,
}

/// `EvidenceRecorded.v1` with evidence that places a person somewhere.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Placed<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub person_id: PersonId,
    pub meta: PlacedMeta,
    pub evidence: Whereabouts,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct PlacedMeta {
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

/// The evidence's fields that say where someone was, by its `kind`.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(crate) struct Whereabouts {
    pub kind: String,
    /// `travel_recorded`.
    pub mode: Option<TravelMode>,
    pub to_county: Option<DivisionCode>,
    pub date: Option<Date>,
    /// `dwell_reported`.
    pub county: Option<DivisionCode>,
    /// `venue_visited`.
    pub place: Option<DivisionCode>,
    /// `health_declared`.
    pub declared_travel: Option<Vec<DivisionCode>>,
}

impl Whereabouts {
    /// The same fields of a decoded [`Evidence`].
    pub fn of(evidence: Evidence) -> Self {
        match evidence {
            Evidence::TravelRecorded {
                mode,
                to_county,
                date,
                ..
            } => Self {
                kind: "travel_recorded".into(),
                mode: Some(mode),
                to_county: Some(to_county),
                date: Some(date),
                ..Self::default()
            },
            Evidence::DwellReported { county, .. } => Self {
                kind: "dwell_reported".into(),
                county: Some(county),
                ..Self::default()
            },
            Evidence::VenueVisited { place, .. } => Self {
                kind: "venue_visited".into(),
                place: Some(place),
                ..Self::default()
            },
            Evidence::HealthDeclared {
                declared_travel, ..
            } => Self {
                kind: "health_declared".into(),
                declared_travel: Some(declared_travel),
                ..Self::default()
            },
            // Evidence that places nobody anywhere.
            _ => Self::default(),
        }
    }
}

/// `ColourChanged.v1`, without the cited evidence and the cause.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Recoloured<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub person_id: PersonId,
    pub region: DivisionCode,
    pub colour: Colour,
    pub previous: Option<Colour>,
    pub policy_id: String,
    pub policy_version: u32,
    pub rule_id: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `CodeGenerated.v1`.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Generated<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub person_id: PersonId,
    pub code_id: Uuid,
    pub region: DivisionCode,
    pub colour: Colour,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `HealthInfoQueried.v1`.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Queried<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub person_id: PersonId,
    pub by: ActorId,
    pub role: String,
    pub purpose: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default)]
    pub ext: Option<BizExt>,
}

/// `CodeScanned.v1`, without the direction.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Scanned<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub checkpoint_id: CheckpointId,
    pub scan_id: EventId,
    pub code_id: Uuid,
    pub colour: Colour,
    pub admitted: bool,
    pub reason: String,
    pub temperature: Option<Temperature>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A lean event's JSON tag.
trait Tagged {
    fn tag(&self) -> &str;
}

macro_rules! tagged {
    ($($name:ident),*) => {
        $(impl Tagged for $name<'_> {
            fn tag(&self) -> &str {
                &self.tag
            }
        })*
    };
}

tagged!(Registered, Placed, Recoloured, Generated, Queried, Scanned);

/// One event as the projection reads it.
#[derive(Debug, PartialEq)]
pub(crate) enum Input<'a> {
    Registered(Registered<'a>),
    Placed(Placed<'a>),
    Recoloured(Recoloured<'a>),
    Generated(Generated<'a>),
    Queried(Queried<'a>),
    Scanned(Scanned<'a>),
    /// Any other event of the domain.
    Other(HealthEvent),
}

impl<'a> Input<'a> {
    /// Decodes an event's data by its log event type; `None` when it is not
    /// an event of this domain (or not the one its type says).
    pub fn decode(event_type: &str, data: &'a [u8]) -> Option<Self> {
        fn lean<'a, T: Deserialize<'a> + Tagged>(data: &'a [u8], tag: &str) -> Option<T> {
            serde_json::from_slice::<T>(data)
                .ok()
                .filter(|event| event.tag() == tag)
        }
        Some(match event_type {
            "PersonRegistered.v1" => Self::Registered(lean(data, "PersonRegistered.v1")?),
            "TravelRecorded.v1" | "DwellReported.v1" | "VenueVisited.v1" | "HealthDeclared.v1" => {
                Self::Placed(lean(data, "EvidenceRecorded.v1")?)
            }
            "ColourChanged.v1" => Self::Recoloured(lean(data, "ColourChanged.v1")?),
            "CodeGenerated.v1" => Self::Generated(lean(data, "CodeGenerated.v1")?),
            "HealthInfoQueried.v1" => Self::Queried(lean(data, "HealthInfoQueried.v1")?),
            "CodeScanned.v1" => Self::Scanned(lean(data, "CodeScanned.v1")?),
            _ => Self::from(serde_json::from_slice::<HealthEvent>(data).ok()?),
        })
    }
}

impl From<HealthEvent> for Input<'_> {
    fn from(event: HealthEvent) -> Self {
        match event {
            HealthEvent::PersonRegistered {
                person_id,
                home_region,
                residence,
                ..
            } => Self::Registered(Registered {
                tag: Cow::Borrowed("PersonRegistered.v1"),
                person_id,
                home_region,
                residence,
            }),
            HealthEvent::EvidenceRecorded {
                person_id,
                meta,
                evidence,
                ..
            } => Self::Placed(Placed {
                tag: Cow::Borrowed("EvidenceRecorded.v1"),
                person_id,
                meta: PlacedMeta {
                    occurred_at: meta.occurred_at,
                },
                evidence: Whereabouts::of(evidence),
            }),
            HealthEvent::ColourChanged {
                person_id,
                region,
                colour,
                previous,
                policy_id,
                policy_version,
                rule_id,
                reason,
                at,
                ..
            } => Self::Recoloured(Recoloured {
                tag: Cow::Borrowed("ColourChanged.v1"),
                person_id,
                region,
                colour,
                previous,
                policy_id,
                policy_version,
                rule_id,
                reason,
                at,
            }),
            HealthEvent::CodeGenerated {
                person_id,
                code_id,
                region,
                colour,
                issued_at,
                expires_at,
                ..
            } => Self::Generated(Generated {
                tag: Cow::Borrowed("CodeGenerated.v1"),
                person_id,
                code_id,
                region,
                colour,
                issued_at,
                expires_at,
            }),
            HealthEvent::HealthInfoQueried {
                person_id,
                by,
                role,
                purpose,
                at,
                ext,
            } => Self::Queried(Queried {
                tag: Cow::Borrowed("HealthInfoQueried.v1"),
                person_id,
                by,
                role,
                purpose,
                at,
                ext,
            }),
            HealthEvent::CodeScanned {
                checkpoint_id,
                scan_id,
                code_id,
                colour,
                admitted,
                reason,
                temperature,
                at,
                ..
            } => Self::Scanned(Scanned {
                tag: Cow::Borrowed("CodeScanned.v1"),
                checkpoint_id,
                scan_id,
                code_id,
                colour,
                admitted,
                reason,
                temperature,
                at,
            }),
            other => Self::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;
    use crate::events::{ColourCause, EvidenceMeta, EvidenceSource};
    use crate::types::{RiskLevel, ScanDirection, TestResult};
    use crate::vault::SealedPersonalData;

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    const AT: OffsetDateTime = datetime!(2020-06-13 09:30:15.123456 +08:00);

    fn code(text: &str) -> Result<DivisionCode, Box<dyn std::error::Error>> {
        Ok(DivisionCode::parse(text)?)
    }

    fn meta(source: EvidenceSource) -> EvidenceMeta {
        EvidenceMeta {
            id: EventId::from_u128(7),
            source,
            occurred_at: AT,
            recorded_by: ActorId::from_u128(8),
        }
    }

    fn evidence(evidence: Evidence) -> HealthEvent {
        HealthEvent::EvidenceRecorded {
            person_id: PersonId::from_u128(1),
            meta: meta(EvidenceSource::Telco),
            evidence,
            ext: None,
        }
    }

    /// One event of every kind the projection decodes lean, and some it
    /// does not.
    fn events() -> Result<Vec<HealthEvent>, Box<dyn std::error::Error>> {
        let person_id = PersonId::from_u128(1);
        Ok(vec![
            HealthEvent::PersonRegistered {
                person_id,
                home_region: code("110000")?,
                residence: code("110106018001")?,
                id_document_kind: "resident_id".into(),
                personal: SealedPersonalData {
                    alg: "ChaCha20-Poly1305".into(),
                    nonce: "00".repeat(12),
                    ciphertext: "ab".repeat(40),
                },
                at: AT,
            },
            evidence(Evidence::TravelRecorded {
                mode: TravelMode::Rail,
                from_county: code("310101")?,
                to_county: code("110106")?,
                date: date!(2020 - 06 - 12),
            }),
            evidence(Evidence::DwellReported {
                county: code("110106")?,
                minutes: 240,
            }),
            evidence(Evidence::VenueVisited {
                checkpoint: CheckpointId::from_u128(3),
                place: code("110106018")?,
            }),
            evidence(Evidence::HealthDeclared {
                symptoms: vec!["cough \"dry\"".into()],
                temperature: Temperature::parse("temperature", 36.6)?,
                declared_travel: vec![code("110105")?, code("420106")?],
            }),
            evidence(Evidence::NucleicAcidTested {
                sampled_at: AT,
                result: TestResult::Negative,
                lab: "lab".into(),
            }),
            HealthEvent::ColourChanged {
                person_id,
                region: code("110000")?,
                colour: Colour::Yellow,
                previous: Some(Colour::Green),
                policy_id: "national-baseline".into(),
                policy_version: 3,
                rule_id: "dwell".into(),
                reason: "DWELL_IN_RISK_AREA \u{4e2d}".into(),
                evidence: vec![EventId::from_u128(7)],
                cause: ColourCause::Evidence {
                    evidence: EventId::from_u128(7),
                },
                at: AT,
            },
            HealthEvent::ColourChanged {
                person_id,
                region: code("310000")?,
                colour: Colour::Green,
                previous: None,
                policy_id: "p".into(),
                policy_version: 1,
                rule_id: "default".into(),
                reason: "NO_RISK".into(),
                evidence: vec![],
                cause: ColourCause::FirstEvaluation,
                at: AT,
            },
            HealthEvent::CodeGenerated {
                person_id,
                code_id: Uuid::from_u128(9),
                region: code("110000")?,
                colour: Colour::Red,
                issued_at: AT,
                expires_at: AT + time::Duration::minutes(5),
                ext: None,
            },
            HealthEvent::HealthInfoQueried {
                person_id,
                by: ActorId::from_u128(4),
                role: "health_official".into(),
                purpose: "tracing".into(),
                at: AT,
                ext: Some(BizExt::parse(
                    serde_json::json!({"fields": ["colour", "travel"]}),
                )?),
            },
            HealthEvent::CodeScanned {
                checkpoint_id: CheckpointId::from_u128(3),
                scan_id: EventId::from_u128(5),
                code_id: Uuid::from_u128(9),
                direction: ScanDirection::GuardScansPerson,
                colour: Colour::Green,
                admitted: true,
                reason: "GREEN".into(),
                temperature: Some(Temperature::parse("temperature", 37.1)?),
                at: AT,
            },
            HealthEvent::CodeScanned {
                checkpoint_id: CheckpointId::from_u128(3),
                scan_id: EventId::from_u128(6),
                code_id: Uuid::from_u128(9),
                direction: ScanDirection::PersonScansVenue,
                colour: Colour::Red,
                admitted: false,
                reason: "RED".into(),
                temperature: None,
                at: AT,
            },
            HealthEvent::RiskAreaDeclared {
                area: code("110106018")?,
                level: RiskLevel::High,
                by: ActorId::from_u128(4),
                at: AT,
            },
        ])
    }

    #[test]
    fn lean_decoding_reads_what_the_domain_events_encode() -> Outcome {
        for event in events()? {
            // given an event as the domain encodes it into the log
            let data = serde_json::to_vec(&event)?;
            let event_type = event.type_name();

            // when the projection decodes it by its log event type
            let lean = Input::decode(event_type, &data);

            // then it reads the same as decoding the whole event
            let whole = Input::from(serde_json::from_slice::<HealthEvent>(&data)?);
            assert_eq!(lean, Some(whole), "{event_type}");
        }
        Ok(())
    }

    #[test]
    fn an_event_whose_data_is_another_type_is_not_read() -> Outcome {
        // given a colour change logged under another event type
        let colour_change = events()?
            .into_iter()
            .find(|e| e.type_name() == "ColourChanged.v1")
            .ok_or("no colour change")?;
        let data = serde_json::to_vec(&colour_change)?;

        // when decoded as a code generation, or a registration
        // then it is not read as either
        assert_eq!(Input::decode("CodeGenerated.v1", &data), None);
        assert_eq!(Input::decode("PersonRegistered.v1", &data), None);
        // and data that is not JSON of the domain is not read at all
        assert_eq!(Input::decode("ColourChanged.v1", b"{\"type\":1}"), None);
        Ok(())
    }
}
