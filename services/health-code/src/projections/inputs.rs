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
//! Rarer events are decoded whole, as [`HealthEvent`].

use std::borrow::Cow;

use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tongban_kernel::{ActorId, CheckpointId, DivisionCode, EventId, PersonId};
use uuid::Uuid;

use crate::events::HealthEvent;
use crate::types::{BizExt, Colour, Temperature, TravelMode};

/// `PersonRegistered.v1`, without the sealed personal data.
#[derive(Debug, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
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
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct Placed<'a> {
    /// The JSON tag, checked against the log's event type.
    #[serde(rename = "type", borrow)]
    pub tag: Cow<'a, str>,
    pub person_id: PersonId,
    pub meta: PlacedMeta,
    pub evidence: Whereabouts,
}

#[derive(Debug, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct PlacedMeta {
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

/// The evidence's fields that say where someone was, by its `kind`.
#[derive(Debug, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct Whereabouts {
    pub kind: String,
    /// `travel_recorded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<TravelMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_county: Option<DivisionCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    /// `dwell_reported`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub county: Option<DivisionCode>,
    /// `venue_visited`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<DivisionCode>,
    /// `health_declared`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_travel: Option<Vec<DivisionCode>>,
}

/// `ColourChanged.v1`, without the cited evidence and the cause.
#[derive(Debug, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
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
#[cfg_attr(test, derive(serde::Serialize))]
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
#[cfg_attr(test, derive(serde::Serialize))]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<BizExt>,
}

/// `CodeScanned.v1`, without the direction.
#[derive(Debug, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
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
    /// Decodes an event's data; `None` when it is not an event of this
    /// domain. The data says what the event is: the log event type only
    /// picks the fast path, and data of another type (or of none the log
    /// names) is read as what its `type` tag says.
    pub fn decode(event_type: &str, data: &'a [u8]) -> Option<Self> {
        Self::lean(event_type, data).or_else(|| {
            let event: HealthEvent = serde_json::from_slice(data).ok()?;
            Self::lean(event.type_name(), data).or(Some(Self::Other(event)))
        })
    }

    /// The lean decoding of the frequent types, if the data is one.
    fn lean(event_type: &str, data: &'a [u8]) -> Option<Self> {
        fn tagged<'a, T: Deserialize<'a> + Tagged>(data: &'a [u8], tag: &str) -> Option<T> {
            serde_json::from_slice::<T>(data)
                .ok()
                .filter(|event| event.tag() == tag)
        }
        Some(match event_type {
            "PersonRegistered.v1" => Self::Registered(tagged(data, "PersonRegistered.v1")?),
            "TravelRecorded.v1" | "DwellReported.v1" | "VenueVisited.v1" | "HealthDeclared.v1" => {
                Self::Placed(tagged(data, "EvidenceRecorded.v1")?)
            }
            "ColourChanged.v1" => Self::Recoloured(tagged(data, "ColourChanged.v1")?),
            "CodeGenerated.v1" => Self::Generated(tagged(data, "CodeGenerated.v1")?),
            "HealthInfoQueried.v1" => Self::Queried(tagged(data, "HealthInfoQueried.v1")?),
            "CodeScanned.v1" => Self::Scanned(tagged(data, "CodeScanned.v1")?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use serde_json::Value;

    use super::*;
    use crate::events::{ColourCause, Evidence, EvidenceMeta, EvidenceSource};
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
                checked_online: true,
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
                checked_online: false,
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

    /// Every key of `lean` is in `whole` with the same value (objects
    /// compared key by key): the lean struct read nothing the domain did
    /// not write, and read it as written.
    fn read_as_written(lean: &Value, whole: &Value, path: &str) -> Result<(), String> {
        match (lean, whole) {
            (Value::Object(lean), Value::Object(whole)) => {
                for (key, value) in lean {
                    let written = whole
                        .get(key)
                        .ok_or_else(|| format!("{path}.{key} is not in the event"))?;
                    read_as_written(value, written, &format!("{path}.{key}"))?;
                }
                Ok(())
            }
            _ if lean == whole => Ok(()),
            _ => Err(format!("{path}: read {lean}, written {whole}")),
        }
    }

    /// The fields of `evidence` the projection reads for its kind.
    fn whereabouts_read(evidence: &Whereabouts) -> Vec<&'static str> {
        let fields = [
            ("mode", evidence.mode.is_some()),
            ("to_county", evidence.to_county.is_some()),
            ("date", evidence.date.is_some()),
            ("county", evidence.county.is_some()),
            ("place", evidence.place.is_some()),
            ("declared_travel", evidence.declared_travel.is_some()),
        ];
        fields
            .into_iter()
            .filter_map(|(name, read)| read.then_some(name))
            .collect()
    }

    #[test]
    fn lean_decoding_reads_what_the_domain_events_encode() -> Outcome {
        for event in events()? {
            // given an event as the domain encodes it into the log
            let data = serde_json::to_vec(&event)?;
            let whole: Value = serde_json::from_slice(&data)?;
            let event_type = event.type_name();

            // when the projection decodes it by its log event type
            let input = Input::decode(event_type, &data).ok_or(event_type)?;

            // then every field it reads is the one the domain wrote
            let lean = match &input {
                Input::Registered(e) => serde_json::to_value(e)?,
                Input::Placed(e) => {
                    let expected: &[&str] = match event_type {
                        "TravelRecorded.v1" => &["mode", "to_county", "date"],
                        "DwellReported.v1" => &["county"],
                        "VenueVisited.v1" => &["place"],
                        "HealthDeclared.v1" => &["declared_travel"],
                        _ => &[],
                    };
                    assert_eq!(whereabouts_read(&e.evidence), expected, "{event_type}");
                    serde_json::to_value(e)?
                }
                Input::Recoloured(e) => serde_json::to_value(e)?,
                Input::Generated(e) => serde_json::to_value(e)?,
                Input::Queried(e) => serde_json::to_value(e)?,
                Input::Scanned(e) => serde_json::to_value(e)?,
                // and rarer events are decoded whole
                Input::Other(e) => {
                    assert_eq!(e, &event, "{event_type}");
                    continue;
                }
            };
            read_as_written(&lean, &whole, event_type)?;
        }
        Ok(())
    }

    #[test]
    fn an_event_is_read_as_what_its_data_says() -> Outcome {
        // given a colour change logged under another event type, or none
        let colour_change = events()?
            .into_iter()
            .find(|e| e.type_name() == "ColourChanged.v1")
            .ok_or("no colour change")?;
        let data = serde_json::to_vec(&colour_change)?;
        let expected = Input::decode("ColourChanged.v1", &data).ok_or("not read")?;

        // when decoded under those types
        // then it is read as the colour change it is
        for event_type in ["CodeGenerated.v1", "RiskAreaDeclared.v1", "Untyped"] {
            assert_eq!(
                Input::decode(event_type, &data).as_ref(),
                Some(&expected),
                "{event_type}"
            );
        }
        // and data that is not JSON of the domain is not read at all
        assert_eq!(Input::decode("ColourChanged.v1", b"{\"type\":1}"), None);
        Ok(())
    }
}
