//! The `health_code` projection: every read model the GraphQL queries need,
//! fed by the domain's events and committed with one checkpoint.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tongban_projection::{ApplyError, ChangeDraft, Changes, Projection, Table};
use tongban_store::{EventFilter, RecordedEvent};

use crate::events::{Evidence, HealthEvent};

/// The projection's name (its read-model namespace and feed name).
pub const VIEWS: &str = "health_code";

/// Travel entries kept per person (the newest).
const TRAVEL_KEPT: usize = 64;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A colour in one region, with its reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourView {
    /// The deciding region.
    pub region: String,
    /// `green`, `yellow` or `red`.
    pub colour: String,
    /// Reason code.
    pub reason: String,
    /// Rule that fired.
    pub rule_id: String,
    /// Policy id and version.
    pub policy: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// The latest code generated for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeView {
    /// The code's id.
    pub code_id: String,
    /// Issuing region.
    pub region: String,
    /// Colour in the token.
    pub colour: String,
    /// Issued (RFC 3339).
    pub issued_at: String,
    /// Expires (RFC 3339).
    pub expires_at: String,
}

/// One entry of a person's travel history (county level).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TravelView {
    /// The day (YYYY-MM-DD).
    pub date: String,
    /// County (6 digits).
    pub county: String,
    /// What says so: `rail`, `air`, `road`, `telco`, `venue`, `declared`.
    pub source: String,
}

/// A person's current state as queries show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonView {
    /// The person.
    pub person_id: String,
    /// Home region.
    pub home_region: String,
    /// Residence community.
    pub residence: String,
    /// Colour per region.
    pub colours: BTreeMap<String, ColourView>,
    /// The latest code.
    pub code: Option<CodeView>,
    /// Travel, newest last.
    pub travel: Vec<TravelView>,
    /// Whether personal data was erased.
    pub erased: bool,
}

impl PersonView {
    /// The colour in the home region (green when none was decided yet).
    pub fn home_colour(&self) -> Option<&ColourView> {
        self.colours.get(&self.home_region)
    }

    /// County of residence (6 digits).
    pub fn county(&self) -> String {
        self.residence.chars().take(6).collect()
    }
}

/// Colour counts of persons (home-region colour) in one county.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourCounts {
    /// Green.
    pub green: u64,
    /// Yellow.
    pub yellow: u64,
    /// Red.
    pub red: u64,
}

impl ColourCounts {
    fn add(&mut self, colour: &str, delta: i64) {
        let slot = match colour {
            "green" => &mut self.green,
            "yellow" => &mut self.yellow,
            _ => &mut self.red,
        };
        *slot = slot.saturating_add_signed(delta);
    }
}

/// A risk area in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAreaView {
    /// The area code.
    pub area: String,
    /// `low`, `medium`, `high`.
    pub level: String,
    /// Since (RFC 3339).
    pub since: String,
}

/// A registered checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Its id.
    pub checkpoint_id: String,
    /// Its name.
    pub name: String,
    /// Community or street.
    pub place: String,
    /// Admission policy as JSON.
    pub admission: String,
}

/// One scan in a checkpoint's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanView {
    /// The scan.
    pub scan_id: String,
    /// The checkpoint.
    pub checkpoint_id: String,
    /// The code (no person id: the log shows colours, not people).
    pub code_id: String,
    /// Colour shown.
    pub colour: String,
    /// Admitted or not.
    pub admitted: bool,
    /// Why.
    pub reason: String,
    /// Temperature measured.
    pub temperature: Option<f64>,
    /// When (RFC 3339).
    pub at: String,
    /// Log position.
    pub position: u64,
}

/// An appeal and its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppealView {
    /// The appeal.
    pub appeal_id: String,
    /// The person.
    pub person_id: String,
    /// Region whose colour is appealed.
    pub region: String,
    /// The colour appealed.
    pub colour: String,
    /// The person's reason.
    pub reason: String,
    /// `open`, `upheld`, `overridden`.
    pub status: String,
    /// Filed (RFC 3339).
    pub filed_at: String,
    /// The official's answer, once decided.
    pub decision: Option<String>,
}

/// One read of a person's data by someone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessView {
    /// Who (actor id).
    pub by: String,
    /// Their role.
    pub role: String,
    /// Declared purpose.
    pub purpose: String,
    /// Which fields were returned.
    pub fields: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// The latest policy of a region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The region.
    pub region: String,
    /// Policy id.
    pub policy_id: String,
    /// Version.
    pub version: u32,
    /// Published (RFC 3339).
    pub published_at: String,
    /// The document as JSON.
    pub document: String,
}

/// The tables of the `health_code` read model.
#[derive(Clone)]
pub struct Tables {
    /// person id -> view.
    pub persons: Table<String, PersonView>,
    /// county -> counts.
    pub colour_counts: Table<String, ColourCounts>,
    /// area -> risk area.
    pub risk_areas: Table<String, RiskAreaView>,
    /// checkpoint id -> checkpoint.
    pub checkpoints: Table<String, CheckpointView>,
    /// (checkpoint id, position) -> scan.
    pub scans: Table<(String, u64), ScanView>,
    /// appeal id -> appeal.
    pub appeals: Table<String, AppealView>,
    /// (person id, position) -> access.
    pub access: Table<(String, u64), AccessView>,
    /// region -> latest policy.
    pub policies: Table<String, PolicyView>,
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            persons: Table::new("persons"),
            colour_counts: Table::new("colour_counts"),
            risk_areas: Table::new("risk_areas"),
            checkpoints: Table::new("checkpoints"),
            scans: Table::new("scans"),
            appeals: Table::new("appeals"),
            access: Table::new("access"),
            policies: Table::new("policies"),
        }
    }
}

/// The projection.
#[derive(Clone, Default)]
pub struct HealthCodeViews {
    /// Its tables.
    pub tables: Tables,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ColourChange<'a> {
    person_id: String,
    region: String,
    colour: &'a str,
    previous: Option<&'a str>,
    reason: &'a str,
    at: String,
}

fn push_travel(view: &mut PersonView, entry: TravelView) {
    view.travel.push(entry);
    view.travel.sort_by(|a, b| a.date.cmp(&b.date));
    if view.travel.len() > TRAVEL_KEPT {
        let excess = view.travel.len() - TRAVEL_KEPT;
        view.travel.drain(..excess);
    }
}

fn county_of(code: &impl std::fmt::Display) -> String {
    code.to_string().chars().take(6).collect()
}

impl HealthCodeViews {
    async fn apply_one(
        &self,
        recorded: &RecordedEvent,
        event: HealthEvent,
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let t = &self.tables;
        match event {
            HealthEvent::PersonRegistered {
                person_id,
                home_region,
                residence,
                ..
            } => {
                let view = PersonView {
                    person_id: person_id.to_string(),
                    home_region: home_region.to_string(),
                    residence: residence.to_string(),
                    ..PersonView::default()
                };
                changes.put(&t.persons, &person_id.to_string(), &view)?;
            }
            HealthEvent::ResidenceChanged { person_id, to, .. } => {
                let key = person_id.to_string();
                if let Some(mut view) = changes.get(&t.persons, &key).await? {
                    if let Some(c) = view.home_colour().map(|c| c.colour.clone()) {
                        let from = view.county();
                        changes
                            .update(&t.colour_counts, &from, ColourCounts::default, |n| {
                                n.add(&c, -1)
                            })
                            .await?;
                        changes
                            .update(
                                &t.colour_counts,
                                &county_of(&to),
                                ColourCounts::default,
                                |n| n.add(&c, 1),
                            )
                            .await?;
                    }
                    view.residence = to.to_string();
                    changes.put(&t.persons, &key, &view)?;
                }
            }
            HealthEvent::PersonalDataErased { person_id, .. } => {
                let key = person_id.to_string();
                if let Some(mut view) = changes.get(&t.persons, &key).await? {
                    view.erased = true;
                    changes.put(&t.persons, &key, &view)?;
                }
            }
            HealthEvent::EvidenceRecorded {
                person_id,
                meta,
                evidence,
                ..
            } => {
                let date = meta.occurred_at.date().to_string();
                let entries: Vec<TravelView> = match &evidence {
                    Evidence::TravelRecorded {
                        mode,
                        to_county,
                        date,
                        ..
                    } => vec![TravelView {
                        date: date.to_string(),
                        county: county_of(to_county),
                        source: serde_json::to_value(mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| "travel".into()),
                    }],
                    Evidence::DwellReported { county, .. } => vec![TravelView {
                        date,
                        county: county_of(county),
                        source: "telco".into(),
                    }],
                    Evidence::VenueVisited { place, .. } => vec![TravelView {
                        date,
                        county: county_of(place),
                        source: "venue".into(),
                    }],
                    Evidence::HealthDeclared {
                        declared_travel, ..
                    } => declared_travel
                        .iter()
                        .map(|c| TravelView {
                            date: date.clone(),
                            county: county_of(c),
                            source: "declared".into(),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                if !entries.is_empty() {
                    let key = person_id.to_string();
                    if let Some(mut view) = changes.get(&t.persons, &key).await? {
                        for e in entries {
                            if !view.travel.contains(&e) {
                                push_travel(&mut view, e);
                            }
                        }
                        changes.put(&t.persons, &key, &view)?;
                    }
                }
            }
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
            } => {
                let key = person_id.to_string();
                let Some(mut view) = changes.get(&t.persons, &key).await? else {
                    return Ok(());
                };
                let region_s = region.to_string();
                if region_s == view.home_region {
                    let county = view.county();
                    let before = view.home_colour().map(|c| c.colour.clone());
                    changes
                        .update(&t.colour_counts, &county, ColourCounts::default, |n| {
                            if let Some(b) = &before {
                                n.add(b, -1);
                            }
                            n.add(colour.as_str(), 1);
                        })
                        .await?;
                }
                view.colours.insert(
                    region_s.clone(),
                    ColourView {
                        region: region_s.clone(),
                        colour: colour.as_str().into(),
                        reason: reason.clone(),
                        rule_id,
                        policy: format!("{policy_id} v{policy_version}"),
                        since: rfc3339(at),
                    },
                );
                let payload = ColourChange {
                    person_id: key.clone(),
                    region: region_s,
                    colour: colour.as_str(),
                    previous: previous.map(|p| p.as_str()),
                    reason: &reason,
                    at: rfc3339(at),
                };
                let draft = ChangeDraft::new(
                    "code.colour",
                    "code-status",
                    Some(view.residence.clone()),
                    &payload,
                )?;
                changes.put(&t.persons, &key, &view)?;
                changes.publish(recorded, draft)?;
            }
            HealthEvent::CodeGenerated {
                person_id,
                code_id,
                region,
                colour,
                issued_at,
                expires_at,
                ..
            } => {
                let key = person_id.to_string();
                if let Some(mut view) = changes.get(&t.persons, &key).await? {
                    view.code = Some(CodeView {
                        code_id: code_id.to_string(),
                        region: region.to_string(),
                        colour: colour.as_str().into(),
                        issued_at: rfc3339(issued_at),
                        expires_at: rfc3339(expires_at),
                    });
                    changes.put(&t.persons, &key, &view)?;
                }
            }
            HealthEvent::HealthInfoQueried {
                person_id,
                by,
                role,
                purpose,
                at,
                ext,
            } => {
                let fields = ext
                    .as_ref()
                    .and_then(|e| e.as_map().get("fields"))
                    .and_then(|f| f.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let row = AccessView {
                    by: by.to_string(),
                    role,
                    purpose,
                    fields,
                    at: rfc3339(at),
                };
                changes.put(
                    &t.access,
                    &(person_id.to_string(), recorded.position.0),
                    &row,
                )?;
            }
            HealthEvent::AppealFiled {
                appeal_id,
                person_id,
                region,
                colour,
                reason,
                at,
                ..
            } => {
                let row = AppealView {
                    appeal_id: appeal_id.to_string(),
                    person_id: person_id.to_string(),
                    region: region.to_string(),
                    colour: colour.as_str().into(),
                    reason,
                    status: "open".into(),
                    filed_at: rfc3339(at),
                    decision: None,
                };
                changes.put(&t.appeals, &appeal_id.to_string(), &row)?;
            }
            HealthEvent::AppealUpheld {
                appeal_id, reason, ..
            } => {
                let key = appeal_id.to_string();
                if let Some(mut row) = changes.get(&t.appeals, &key).await? {
                    row.status = "upheld".into();
                    row.decision = Some(reason);
                    changes.put(&t.appeals, &key, &row)?;
                }
            }
            HealthEvent::ColourOverridden {
                answers: crate::types::OverrideAnswers::Appeal(appeal_id),
                reason,
                ..
            } => {
                let key = appeal_id.to_string();
                if let Some(mut row) = changes.get(&t.appeals, &key).await? {
                    row.status = "overridden".into();
                    row.decision = Some(reason);
                    changes.put(&t.appeals, &key, &row)?;
                }
            }
            HealthEvent::RiskAreaDeclared {
                area, level, at, ..
            }
            | HealthEvent::RiskLevelChanged {
                area,
                to: level,
                at,
                ..
            } => {
                let level = serde_json::to_value(level)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let row = RiskAreaView {
                    area: area.to_string(),
                    level,
                    since: rfc3339(at),
                };
                changes.put(&t.risk_areas, &area.to_string(), &row)?;
                let draft =
                    ChangeDraft::new("risk.area", "risk-area", Some(area.to_string()), &row)?;
                changes.publish(recorded, draft)?;
            }
            HealthEvent::RiskAreaLifted { area, at, .. } => {
                changes.delete(&t.risk_areas, &area.to_string());
                let row = RiskAreaView {
                    area: area.to_string(),
                    level: "lifted".into(),
                    since: rfc3339(at),
                };
                let draft =
                    ChangeDraft::new("risk.area", "risk-area", Some(area.to_string()), &row)?;
                changes.publish(recorded, draft)?;
            }
            HealthEvent::PolicyPublished {
                region,
                policy_id,
                version,
                document,
                at,
                ..
            } => {
                let row = PolicyView {
                    region: region.to_string(),
                    policy_id,
                    version,
                    published_at: rfc3339(at),
                    document: serde_json::to_string(&document).unwrap_or_default(),
                };
                changes.put(&t.policies, &region.to_string(), &row)?;
            }
            HealthEvent::CheckpointRegistered {
                checkpoint_id,
                name,
                place,
                admission,
                ..
            } => {
                let row = CheckpointView {
                    checkpoint_id: checkpoint_id.to_string(),
                    name,
                    place: place.to_string(),
                    admission: serde_json::to_string(&admission).unwrap_or_default(),
                };
                changes.put(&t.checkpoints, &checkpoint_id.to_string(), &row)?;
            }
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
            } => {
                let row = ScanView {
                    scan_id: scan_id.to_string(),
                    checkpoint_id: checkpoint_id.to_string(),
                    code_id: code_id.to_string(),
                    colour: colour.as_str().into(),
                    admitted,
                    reason,
                    temperature: temperature.map(|t| t.celsius()),
                    at: rfc3339(at),
                    position: recorded.position.0,
                };
                let place = changes
                    .get(&t.checkpoints, &checkpoint_id.to_string())
                    .await?
                    .map(|c| c.place);
                changes.put(
                    &t.scans,
                    &(checkpoint_id.to_string(), recorded.position.0),
                    &row,
                )?;
                let draft = ChangeDraft::new("checkpoint.scan", "scan", place, &row)?;
                changes.publish(recorded, draft)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for HealthCodeViews {
    fn name(&self) -> &str {
        VIEWS
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> EventFilter {
        EventFilter::streams(["person-", "riskarea-", "policy-", "checkpoint-"])
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        for recorded in events {
            // Events of other kinds in these categories are not ours to read.
            let Ok(event) = recorded.json::<HealthEvent>() else {
                continue;
            };
            self.apply_one(recorded, event, changes).await?;
        }
        Ok(())
    }
}
