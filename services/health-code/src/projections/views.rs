//! The `health_code` projection: every read model the GraphQL queries need,
//! fed by the domain's events and committed with one checkpoint.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tongban_projection::{ApplyError, ChangeDraft, Changes, Projection, ProjectionError, Table};
use tongban_store::{EventFilter, RecordedEvent};

use super::hourly::{counted_regions, CountDelta, Hour, HourRow, HourlyTally, RegionTotals};
use super::inputs::{
    Generated, Input, Placed, Queried, Recoloured, Registered, Scanned, Whereabouts,
};
use crate::events::HealthEvent;
use crate::vault::SealedText;

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
    /// The person's reason, sealed with their key (opened by the
    /// GraphQL layer through the vault; unreadable once they are erased).
    pub reason: SealedText,
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
    /// region (province, city or county) -> counts now, and where its
    /// hourly series stands.
    pub colour_totals: Table<String, RegionTotals>,
    /// (region, hour index) -> the counts before and after that hour; only
    /// hours with changes (see [`super::hourly`]).
    pub colour_history: Table<(String, i64), HourRow>,
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
    // Binary rows (postcard): a person's row is rewritten on most of their
    // events, and in JSON it was most of what a catch-up wrote.
    fn default() -> Self {
        Self {
            persons: Table::new("persons").binary(),
            colour_counts: Table::new("colour_counts").binary(),
            colour_totals: Table::new("colour_totals").binary(),
            colour_history: Table::new("colour_history").binary(),
            risk_areas: Table::new("risk_areas").binary(),
            checkpoints: Table::new("checkpoints").binary(),
            scans: Table::new("scans").binary(),
            appeals: Table::new("appeals").binary(),
            access: Table::new("access").binary(),
            policies: Table::new("policies").binary(),
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
    // The list stays sorted by date; a new entry goes after those of its day.
    let at = view.travel.partition_point(|t| t.date <= entry.date);
    view.travel.insert(at, entry);
    if view.travel.len() > TRAVEL_KEPT {
        let excess = view.travel.len() - TRAVEL_KEPT;
        view.travel.drain(..excess);
    }
}

fn county_of(code: &impl std::fmt::Display) -> String {
    code.to_string().chars().take(6).collect()
}

/// Event types this projection has nothing to do with (evidence that
/// carries no travel, code calls, override requests): skipped without
/// being decoded. `apply_one` would ignore each of them.
const UNREAD: [&str; 10] = [
    "DiagnosisConfirmed.v1",
    "DiagnosisCleared.v1",
    "CloseContactIdentified.v1",
    "NucleicAcidTested.v1",
    "AntibodyTested.v1",
    "TemperatureMeasured.v1",
    "CodeCallRequested.v1",
    "OverrideRequested.v1",
    "OverrideAlertRaised.v1",
    "OverrideApproved.v1",
];

/// Whether the projection reads events of this type.
pub(crate) fn reads(event_type: &str) -> bool {
    !UNREAD.contains(&event_type)
}

/// A row read once per batch and written once at its end.
struct Cached<V> {
    value: Option<V>,
    dirty: bool,
}

/// A batch's working set: each person, checkpoint and region is read at
/// most once per batch and written once, when the batch ends, through the
/// same [`Changes`] (so it commits with the checkpoint).
#[derive(Default)]
struct Working {
    persons: HashMap<String, Cached<PersonView>>,
    /// checkpoint id -> its place (for the scan feed's region).
    places: HashMap<String, Option<String>>,
    tally: HourlyTally,
}

impl HealthCodeViews {
    /// The person, read once per batch; marked to be written back.
    async fn person<'w>(
        &self,
        working: &'w mut Working,
        changes: &Changes<'_>,
        key: &str,
    ) -> Result<Option<&'w mut PersonView>, ProjectionError> {
        if !working.persons.contains_key(key) {
            let value = changes.get(&self.tables.persons, &key.to_owned()).await?;
            working.persons.insert(
                key.to_owned(),
                Cached {
                    value,
                    dirty: false,
                },
            );
        }
        Ok(working.persons.get_mut(key).and_then(|c| {
            c.dirty = true;
            c.value.as_mut()
        }))
    }

    /// A checkpoint's place, read once per batch.
    async fn place(
        &self,
        working: &mut Working,
        changes: &Changes<'_>,
        checkpoint: String,
    ) -> Result<Option<String>, ProjectionError> {
        if let Some(place) = working.places.get(&checkpoint) {
            return Ok(place.clone());
        }
        let place = changes
            .get(&self.tables.checkpoints, &checkpoint)
            .await?
            .map(|c| c.place);
        working.places.insert(checkpoint, place.clone());
        Ok(place)
    }

    /// Counts people moving between colours or residences: each
    /// (residence, change) counts in the residence's province, city and
    /// county, changes to one region summed first so a region whose counts
    /// end up the same gets no row.
    async fn count(
        &self,
        working: &mut Working,
        changes: &Changes<'_>,
        moves: &[(&str, CountDelta)],
        hour: Hour,
    ) -> Result<(), ProjectionError> {
        let mut by_region: Vec<(String, CountDelta)> = Vec::with_capacity(3 * moves.len());
        for (residence, delta) in moves {
            for region in counted_regions(residence) {
                match by_region.iter_mut().find(|(r, _)| *r == region) {
                    Some((_, d)) => *d = d.plus(*delta),
                    None => by_region.push((region, *delta)),
                }
            }
        }
        for (region, delta) in by_region {
            if delta.is_zero() {
                continue;
            }
            if !working.tally.has(&region) {
                let stored = changes.get(&self.tables.colour_totals, &region).await?;
                working.tally.load(&region, stored);
            }
            working.tally.record(&region, delta, hour);
        }
        Ok(())
    }

    /// Writes the working set into the batch.
    fn flush(&self, working: Working, changes: &mut Changes<'_>) -> Result<(), ProjectionError> {
        let t = &self.tables;
        for (key, cached) in working.persons {
            if let (true, Some(view)) = (cached.dirty, cached.value) {
                changes.put(&t.persons, &key, &view)?;
            }
        }
        let (totals, rows) = working.tally.into_parts();
        for (region, totals) in totals {
            if region.len() == 6 {
                changes.put(&t.colour_counts, &region, &totals.counts)?;
            }
            changes.put(&t.colour_totals, &region, &totals)?;
        }
        for ((region, hour), row) in rows {
            changes.put(&t.colour_history, &(region, hour.index()), &row)?;
        }
        Ok(())
    }

    async fn apply_one(
        &self,
        recorded: &RecordedEvent,
        input: Input<'_>,
        working: &mut Working,
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let t = &self.tables;
        let hour = Hour::of(recorded.recorded_at);
        let event = match input {
            Input::Registered(Registered {
                person_id,
                home_region,
                residence,
                ..
            }) => {
                let view = PersonView {
                    person_id: person_id.to_string(),
                    home_region: home_region.to_string(),
                    residence: residence.to_string(),
                    ..PersonView::default()
                };
                working.persons.insert(
                    view.person_id.clone(),
                    Cached {
                        value: Some(view),
                        dirty: true,
                    },
                );
                return Ok(());
            }
            Input::Placed(Placed {
                person_id,
                meta,
                evidence,
                ..
            }) => {
                let date = meta.occurred_at.date().to_string();
                let entries: Vec<TravelView> = match evidence {
                    Whereabouts {
                        kind,
                        mode: Some(mode),
                        to_county: Some(to_county),
                        date: Some(date),
                        ..
                    } if kind == "travel_recorded" => vec![TravelView {
                        date: date.to_string(),
                        county: county_of(&to_county),
                        source: serde_json::to_value(mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| "travel".into()),
                    }],
                    Whereabouts {
                        kind,
                        county: Some(county),
                        ..
                    } if kind == "dwell_reported" => vec![TravelView {
                        date,
                        county: county_of(&county),
                        source: "telco".into(),
                    }],
                    Whereabouts {
                        kind,
                        place: Some(place),
                        ..
                    } if kind == "venue_visited" => vec![TravelView {
                        date,
                        county: county_of(&place),
                        source: "venue".into(),
                    }],
                    Whereabouts {
                        kind,
                        declared_travel: Some(declared_travel),
                        ..
                    } if kind == "health_declared" => declared_travel
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
                    if let Some(view) = self.person(working, changes, &key).await? {
                        for e in entries {
                            if !view.travel.contains(&e) {
                                push_travel(view, e);
                            }
                        }
                    }
                }
                return Ok(());
            }
            Input::Recoloured(Recoloured {
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
            }) => {
                let key = person_id.to_string();
                let Some(view) = self.person(working, changes, &key).await? else {
                    return Ok(());
                };
                let region_s = region.to_string();
                let home = (region_s == view.home_region).then(|| {
                    let before = view.home_colour().map(|c| c.colour.clone());
                    (view.residence.clone(), before)
                });
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
                let residence = view.residence.clone();
                let payload = ColourChange {
                    person_id: key,
                    region: region_s,
                    colour: colour.as_str(),
                    previous: previous.map(|p| p.as_str()),
                    reason: &reason,
                    at: rfc3339(at),
                };
                let draft =
                    ChangeDraft::new("code.colour", "code-status", Some(residence), &payload)?;
                changes.publish(recorded, draft)?;
                if let Some((residence, before)) = home {
                    let delta = CountDelta::moving(before.as_deref(), Some(colour.as_str()));
                    self.count(working, changes, &[(residence.as_str(), delta)], hour)
                        .await?;
                }
                return Ok(());
            }
            Input::Generated(Generated {
                person_id,
                code_id,
                region,
                colour,
                issued_at,
                expires_at,
                ..
            }) => {
                let key = person_id.to_string();
                if let Some(view) = self.person(working, changes, &key).await? {
                    view.code = Some(CodeView {
                        code_id: code_id.to_string(),
                        region: region.to_string(),
                        colour: colour.as_str().into(),
                        issued_at: rfc3339(issued_at),
                        expires_at: rfc3339(expires_at),
                    });
                }
                return Ok(());
            }
            Input::Queried(Queried {
                person_id,
                by,
                role,
                purpose,
                at,
                ext,
                ..
            }) => {
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
                return Ok(());
            }
            Input::Scanned(Scanned {
                checkpoint_id,
                scan_id,
                code_id,
                colour,
                admitted,
                reason,
                temperature,
                at,
                ..
            }) => {
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
                let place = self
                    .place(working, changes, checkpoint_id.to_string())
                    .await?;
                changes.put(
                    &t.scans,
                    &(checkpoint_id.to_string(), recorded.position.0),
                    &row,
                )?;
                let draft = ChangeDraft::new("checkpoint.scan", "scan", place, &row)?;
                changes.publish(recorded, draft)?;
                return Ok(());
            }
            Input::Other(event) => event,
        };
        match event {
            HealthEvent::ResidenceChanged { person_id, to, .. } => {
                let key = person_id.to_string();
                let Some(view) = self.person(working, changes, &key).await? else {
                    return Ok(());
                };
                let from = std::mem::replace(&mut view.residence, to.to_string());
                let colour = view.home_colour().map(|c| c.colour.clone());
                if let Some(c) = colour {
                    let to = county_of(&to);
                    let leaving = CountDelta::moving(Some(&c), None);
                    let moves = [(from.as_str(), leaving), (to.as_str(), leaving.negated())];
                    self.count(working, changes, &moves, hour).await?;
                }
            }
            HealthEvent::PersonalDataErased { person_id, .. } => {
                if let Some(view) = self
                    .person(working, changes, &person_id.to_string())
                    .await?
                {
                    view.erased = true;
                }
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
                let key = checkpoint_id.to_string();
                changes.put(&t.checkpoints, &key, &row)?;
                working.places.insert(key, Some(row.place));
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

    /// 2: colour counts per province, city and county with an hourly
    /// series (`colour_totals`, `colour_history`). 3: rows in postcard
    /// instead of JSON.
    // 4: appeal reasons are sealed (`SealedText`) in the `appeals` table.
    fn version(&self) -> u32 {
        4
    }

    fn filter(&self) -> EventFilter {
        EventFilter::streams(["person-", "riskarea-", "policy-", "checkpoint-"])
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let mut working = Working::default();
        for recorded in events {
            if !reads(&recorded.event_type) {
                continue;
            }
            // Events of other kinds in these categories are not ours to read.
            let Some(input) = Input::decode(&recorded.event_type, &recorded.data) else {
                continue;
            };
            self.apply_one(recorded, input, &mut working, changes)
                .await?;
        }
        self.flush(working, changes)?;
        Ok(())
    }
}
