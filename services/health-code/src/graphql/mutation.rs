//! Mutations: the GB/T 38963 operations that write (`declareHealth`,
//! `declareItinerary`, `requestCodeCall`, `generateCode`,
//! `correctInformation`), evidence from labs, hospitals, contact tracing,
//! telcos and ticketing, risk areas, policies, checkpoints and scans,
//! appeals and overrides. Every result carries the log `position` to pass
//! as `minPosition` to a later query (read your writes).

use async_graphql::{Context, Enum, InputObject, Json, Object, Result, SimpleObject, ID};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use tongban_kernel::{Actor, CheckpointId, EventId, PersonId, Role};
use uuid::Uuid;

use crate::checkpoint::CheckpointCommand;
use crate::events::{Evidence, EvidenceMeta, EvidenceSource, HealthEvent};
use crate::graphql::api::{
    self, api, caller, coded, domain, forbidden, invalid, rfc3339, subject, HealthCodeApi,
};
use crate::graphql::objects::MaskedHolder;
use crate::handler::{Recorded, ScanOutcome};
use crate::overrides::OverrideCommand;
use crate::person::{PersonCommand, Trip};
use crate::policy::{PolicyDocument, PublishPolicy};
use crate::resident_id::IdentityDocument;
use crate::risk::RiskAreaCommand;
use crate::types::{self, BizExt, OverrideAnswers, ScanDirection, Temperature};
use crate::vault::PersonalData;

/// The health-code mutations.
#[derive(Default)]
pub struct HealthCodeMutation;

/// What a command did.
#[derive(SimpleObject)]
pub struct CommandResult {
    /// The log position of the command's own append (the log's head when it
    /// appended nothing): pass it as `minPosition`.
    pub position: u64,
    /// The events recorded (type names), empty if nothing changed.
    pub events: Vec<String>,
    /// The person's new colour, if the command changed one.
    pub colour: Option<String>,
    /// The id of what was created (person, appeal, checkpoint, override).
    pub id: Option<String>,
}

/// A generated code.
#[derive(SimpleObject)]
pub struct GeneratedCode {
    /// The code id.
    pub code_id: String,
    /// Its colour.
    pub colour: String,
    /// Issuing region.
    pub region: String,
    /// Issued (RFC 3339).
    pub issued_at: String,
    /// Expires (RFC 3339).
    pub expires_at: String,
    /// `HC1:` text for the QR code.
    pub text: String,
    /// The QR code as SVG.
    pub svg: String,
    /// The log position.
    pub position: u64,
}

/// The result of a scan at a checkpoint: the verdict, and what the guard
/// compares with the person in front of them.
#[derive(SimpleObject)]
pub struct ScanResult {
    /// Admitted or not.
    pub admitted: bool,
    /// The colour that decided: the holder's colour now when checked
    /// online, else the one signed into the code.
    pub colour: String,
    /// The colour signed into the code.
    pub signed_colour: String,
    /// Why (`ADMITTED`, `RED_CODE`, `CODE_SUPERSEDED`, `FEVER`, ...).
    pub reason: String,
    /// Decided on the holder's status at the log head (`true`), or on the
    /// code's signed colour alone (`false`: the holder is not known here).
    pub checked_online: bool,
    /// When the code was issued (RFC 3339).
    pub issued_at: String,
    /// When the code expires (RFC 3339).
    pub expires_at: String,
    /// The holder, masked; null when the holder is not known here.
    pub holder: Option<MaskedHolder>,
    /// The scan id.
    pub scan_id: String,
    /// The log position (the scan is durable).
    pub position: u64,
}

/// A new checkpoint.
#[derive(SimpleObject)]
pub struct RegisteredCheckpoint {
    /// Its id.
    pub checkpoint_id: String,
    /// Its signed place code (`HP1:` text).
    pub place_code: String,
    /// The log position.
    pub position: u64,
}

/// A colour.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum CodeColour {
    /// Green.
    Green,
    /// Yellow.
    Yellow,
    /// Red.
    Red,
}

impl From<CodeColour> for types::Colour {
    fn from(c: CodeColour) -> Self {
        match c {
            CodeColour::Green => types::Colour::Green,
            CodeColour::Yellow => types::Colour::Yellow,
            CodeColour::Red => types::Colour::Red,
        }
    }
}

/// A risk level.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Level {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// A test result.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum TestOutcome {
    /// Positive.
    Positive,
    /// Negative.
    Negative,
}

/// Kind of laboratory test.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum TestKind {
    /// Nucleic-acid (PCR).
    NucleicAcid,
    /// Antibody (IgM and IgG).
    Antibody,
}

/// How a journey was made.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Mode {
    /// Train.
    Rail,
    /// Plane.
    Air,
    /// Road.
    Road,
}

/// Where evidence comes from.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Source {
    /// Hospital.
    Hospital,
    /// Contact tracing.
    ContactTracing,
    /// Laboratory.
    Lab,
    /// Checkpoint.
    Checkpoint,
    /// Railway ticketing.
    Rail,
    /// Airline ticketing.
    Air,
    /// Road checkpoints and coaches.
    Road,
    /// Mobile network operator.
    Telco,
}

impl From<Source> for EvidenceSource {
    fn from(s: Source) -> Self {
        match s {
            Source::Hospital => EvidenceSource::Hospital,
            Source::ContactTracing => EvidenceSource::ContactTracing,
            Source::Lab => EvidenceSource::Lab,
            Source::Checkpoint => EvidenceSource::Checkpoint,
            Source::Rail => EvidenceSource::Rail,
            Source::Air => EvidenceSource::Air,
            Source::Road => EvidenceSource::Road,
            Source::Telco => EvidenceSource::Telco,
        }
    }
}

/// Registration of a person.
#[derive(InputObject)]
pub struct RegisterPersonInput {
    /// The id (a citizen registers themself: defaults to the caller's).
    pub person_id: Option<ID>,
    /// Home region (province or city code).
    pub home_region: String,
    /// Residence community (12 digits).
    pub residence: String,
    /// `resident_id`, `passport` or `travel_permit`.
    pub id_kind: String,
    /// The document number.
    pub id_number: String,
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: String,
}

/// One leg of an itinerary.
#[derive(InputObject)]
pub struct TripInput {
    /// How.
    pub mode: Mode,
    /// From (county or finer).
    pub from: String,
    /// To (county or finer).
    pub to: String,
    /// Day (YYYY-MM-DD).
    pub date: String,
}

/// The years a date or time of health data may fall in.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

fn in_years(field: &str, year: i32, text: &str) -> Result<()> {
    if YEARS.contains(&year) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "`{text}` is outside the years {} to {}",
                YEARS.start(),
                YEARS.end()
            ),
        ))
    }
}

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|e| invalid(field, format!("`{text}` is not an RFC 3339 time: {e}")))?;
    in_years(field, t.year(), text)?;
    Ok(t)
}

fn parse_date(field: &str, text: &str) -> Result<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = Date::parse(text.trim(), &format)
        .map_err(|e| invalid(field, format!("`{text}` is not a YYYY-MM-DD date: {e}")))?;
    in_years(field, d.year(), text)?;
    Ok(d)
}

/// Evidence arrives with ISO dates (`"exposure_date": "2020-06-10"`), as
/// everywhere in the API; the events keep their own encoding of a date.
fn iso_dates_in_evidence(mut evidence: serde_json::Value) -> Result<serde_json::Value> {
    if let Some(fields) = evidence.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            let is_date = key == "date" || key.ends_with("_date");
            if let (true, Some(text)) = (is_date, value.as_str()) {
                let field = format!("evidence.{key}");
                let date = parse_date(&field, text)?;
                *value = serde_json::to_value(date).map_err(|e| invalid(&field, e))?;
            }
        }
    }
    Ok(evidence)
}

fn ext(value: Option<Json<serde_json::Value>>) -> Result<Option<BizExt>> {
    value
        .map(|v| BizExt::parse(v.0).map_err(domain))
        .transpose()
}

/// Records one piece of evidence about a person and answers the mutation.
async fn record(
    ctx: &Context<'_>,
    actor: &Actor,
    person: PersonId,
    meta: EvidenceMeta,
    evidence: Evidence,
) -> Result<CommandResult> {
    let recorded = api(ctx)?
        .service
        .person_recorded(
            actor,
            person,
            PersonCommand::RecordEvidence {
                meta,
                evidence,
                ext: None,
            },
        )
        .await
        .map_err(domain)?;
    done(ctx, &recorded, None).await
}

/// Where a command's own append landed; the log's head when it appended
/// nothing (an idempotent repeat: what it repeats is at or before the head).
async fn position(api: &HealthCodeApi, position: Option<tongban_store::Position>) -> Result<u64> {
    match position {
        Some(p) => Ok(p.0),
        None => Ok(api.position().await?),
    }
}

async fn done(ctx: &Context<'_>, recorded: &Recorded, id: Option<String>) -> Result<CommandResult> {
    let api = api(ctx)?;
    let events = &recorded.events;
    let colour = events.iter().rev().find_map(|e| match e {
        HealthEvent::ColourChanged { colour, .. } => Some(colour.as_str().to_string()),
        _ => None,
    });
    Ok(CommandResult {
        position: position(api, recorded.position).await?,
        events: events.iter().map(|e| e.type_name().to_string()).collect(),
        colour,
        id,
    })
}

fn evidence_id() -> EventId {
    EventId::new()
}

fn require(actor: &Actor, field: &str, ok: bool, who: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(forbidden(actor, field, who))
    }
}

#[Object]
impl HealthCodeMutation {
    /// Registers a person (a citizen registers themself; officials and
    /// admins register anyone). Personal data is sealed, never logged.
    async fn register_person(
        &self,
        ctx: &Context<'_>,
        input: RegisterPersonInput,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = match (&actor.role, input.person_id.as_deref()) {
            (Role::Citizen { person }, None) => *person,
            (Role::Citizen { person }, Some(given)) => {
                let given = api::person_id("personId", given)?;
                if given != *person {
                    return Err(forbidden(
                        actor,
                        "registerPerson",
                        "the person themself, health_official, admin",
                    ));
                }
                given
            }
            (Role::HealthOfficial { .. } | Role::Admin, Some(given)) => {
                api::person_id("personId", given)?
            }
            (Role::HealthOfficial { .. } | Role::Admin, None) => PersonId::new(),
            _ => {
                return Err(forbidden(
                    actor,
                    "registerPerson",
                    "the person themself, health_official, admin",
                ))
            }
        };
        let home = api::division(api, "homeRegion", &input.home_region)?;
        let residence = api::division(api, "residence", &input.residence)?;
        let document = IdentityDocument::parse(&input.id_kind, &input.id_number).map_err(domain)?;
        document
            .check_plausible(api.clock.now().date(), &api.divisions)
            .map_err(domain)?;
        let personal = PersonalData::new(document, &input.name, &input.phone).map_err(domain)?;
        let recorded = api
            .service
            .register_person_recorded(actor, person, home, residence, &personal)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, Some(person.to_string())).await
    }

    /// GB/T 38963 "declare health information": symptoms, temperature and
    /// places visited in the last 14 days.
    #[allow(clippy::too_many_arguments)]
    async fn declare_health(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
        temperature: f64,
        #[graphql(default)] symptoms: Vec<String>,
        #[graphql(default)] visited: Vec<String>,
        at: Option<String>,
        biz_ext_data: Option<Json<serde_json::Value>>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = subject(actor, person_id.as_ref().map(|p| p.as_str()))?;
        let at = match at {
            Some(t) => parse_time("at", &t)?,
            None => api.clock.now(),
        };
        let temperature = Temperature::parse("temperature", temperature).map_err(domain)?;
        let declared_travel = visited
            .iter()
            .map(|v| api::division(api, "visited", v))
            .collect::<Result<Vec<_>>>()?;
        let command = PersonCommand::DeclareHealth {
            evidence_id: evidence_id(),
            at,
            symptoms,
            temperature,
            declared_travel,
            ext: ext(biz_ext_data)?,
        };
        let recorded = api
            .service
            .person_recorded(actor, person, command)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }

    /// GB/T 38963 "declare an itinerary".
    async fn declare_itinerary(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
        trips: Vec<TripInput>,
        biz_ext_data: Option<Json<serde_json::Value>>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = subject(actor, person_id.as_ref().map(|p| p.as_str()))?;
        let trips = trips
            .iter()
            .map(|t| {
                Ok(Trip {
                    evidence_id: evidence_id(),
                    mode: match t.mode {
                        Mode::Rail => types::TravelMode::Rail,
                        Mode::Air => types::TravelMode::Air,
                        Mode::Road => types::TravelMode::Road,
                    },
                    from: api::division(api, "trips.from", &t.from)?,
                    to: api::division(api, "trips.to", &t.to)?,
                    date: parse_date("trips.date", &t.date)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let command = PersonCommand::DeclareItinerary {
            trips,
            ext: ext(biz_ext_data)?,
        };
        let recorded = api
            .service
            .person_recorded(actor, person, command)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }

    /// GB/T 38963 "request to call a code": an app or scene asks to show
    /// the person's code; recorded, granted unless the data was erased.
    async fn request_code_call(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
        requester: String,
        purpose: String,
        biz_ext_data: Option<Json<serde_json::Value>>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = subject(actor, person_id.as_ref().map(|p| p.as_str()))?;
        let command = PersonCommand::RequestCodeCall {
            requester,
            purpose,
            ext: ext(biz_ext_data)?,
        };
        let recorded = api
            .service
            .person_recorded(actor, person, command)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }

    /// GB/T 38963 "generate a code": a signed code for `region` (default:
    /// the home region), with its QR text and SVG.
    async fn generate_code(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
        region: Option<String>,
    ) -> Result<GeneratedCode> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = subject(actor, person_id.as_ref().map(|p| p.as_str()))?;
        let region = match region {
            Some(r) => api::division(api, "region", &r)?,
            None => api
                .service
                .person_state(person)
                .await
                .map_err(domain)?
                .home_region
                .ok_or_else(|| coded("NOT_FOUND", format!("person {person} is not registered")))?,
        };
        api.ensure_key(region)?;
        let issued = api
            .service
            .generate_code(actor, person, region)
            .await
            .map_err(domain)?;
        let svg = crate::qr::svg(&issued.text, issued.claims.colour.as_str()).map_err(domain)?;
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Ok(GeneratedCode {
            code_id: issued.claims.code_id.to_string(),
            colour: issued.claims.colour.as_str().into(),
            region: region.to_string(),
            issued_at: fmt(issued.claims.issued_at),
            expires_at: fmt(issued.claims.expires_at),
            text: issued.text,
            svg,
            position: position(api, issued.position).await?,
        })
    }

    /// GB/T 38963 "correct information": the person appeals a colour.
    async fn correct_information(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
        region: String,
        reason: String,
        biz_ext_data: Option<Json<serde_json::Value>>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = subject(actor, person_id.as_ref().map(|p| p.as_str()))?;
        let appeal_id = Uuid::now_v7();
        let command = PersonCommand::FileAppeal {
            appeal_id,
            region: api::division(api, "region", &region)?,
            reason,
            ext: ext(biz_ext_data)?,
        };
        let recorded = api
            .service
            .person_recorded(actor, person, command)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, Some(appeal_id.to_string())).await
    }

    /// A laboratory records a test result.
    #[allow(clippy::too_many_arguments)]
    async fn record_test_result(
        &self,
        ctx: &Context<'_>,
        person_id: ID,
        kind: TestKind,
        result: TestOutcome,
        #[graphql(desc = "IgG result for antibody tests (default: same as `result`)")] igg: Option<
            TestOutcome,
        >,
        sampled_at: Option<String>,
        lab: String,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = api::person_id("personId", &person_id)?;
        let sampled_at = match sampled_at {
            Some(t) => parse_time("sampledAt", &t)?,
            None => api.clock.now(),
        };
        let r = |r: TestOutcome| match r {
            TestOutcome::Positive => types::TestResult::Positive,
            TestOutcome::Negative => types::TestResult::Negative,
        };
        let evidence = match kind {
            TestKind::NucleicAcid => Evidence::NucleicAcidTested {
                sampled_at,
                result: r(result),
                lab,
            },
            TestKind::Antibody => Evidence::AntibodyTested {
                sampled_at,
                igm: r(result),
                igg: r(igg.unwrap_or(result)),
                lab,
            },
        };
        let meta = EvidenceMeta {
            id: evidence_id(),
            source: EvidenceSource::Lab,
            occurred_at: sampled_at,
            recorded_by: actor.id,
        };
        record(ctx, actor, person, meta, evidence).await
    }

    /// Records evidence from a hospital, contact tracing, a telco or
    /// ticketing. `evidence` is the domain's JSON form, e.g.
    /// `{"kind": "close_contact_identified", "case_ref": "BJ-0611-001",
    /// "exposure_date": "2020-06-10"}` or `{"kind": "dwell_reported",
    /// "county": "110106", "minutes": 240}`.
    async fn record_evidence(
        &self,
        ctx: &Context<'_>,
        person_id: ID,
        source: Source,
        evidence: Json<serde_json::Value>,
        occurred_at: Option<String>,
        evidence_id: Option<ID>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = api::person_id("personId", &person_id)?;
        let evidence: Evidence = serde_json::from_value(iso_dates_in_evidence(evidence.0)?)
            .map_err(|e| invalid("evidence", e.to_string()))?;
        let id = match evidence_id {
            Some(id) => EventId::parse(&id).map_err(|e| invalid("evidenceId", e))?,
            None => EventId::new(),
        };
        let meta = EvidenceMeta {
            id,
            source: source.into(),
            occurred_at: match occurred_at {
                Some(t) => parse_time("occurredAt", &t)?,
                None => api.clock.now(),
            },
            recorded_by: actor.id,
        };
        record(ctx, actor, person, meta, evidence).await
    }

    /// Declares a risk area (or changes its level).
    async fn declare_risk_area(
        &self,
        ctx: &Context<'_>,
        area: String,
        level: Level,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let level = match level {
            Level::Low => types::RiskLevel::Low,
            Level::Medium => types::RiskLevel::Medium,
            Level::High => types::RiskLevel::High,
        };
        let command = RiskAreaCommand::Declare {
            area: api::division(api, "area", &area)?,
            level,
        };
        let recorded = api
            .service
            .risk_area_recorded(actor, command)
            .await
            .map_err(domain)?;
        // The persons the area touches are re-evaluated by the
        // re-evaluation process manager (`reactions`), which survives a crash.
        done(ctx, &recorded, None).await
    }

    /// Lifts a risk area.
    async fn lift_risk_area(&self, ctx: &Context<'_>, area: String) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let command = RiskAreaCommand::Lift {
            area: api::division(api, "area", &area)?,
        };
        let recorded = api
            .service
            .risk_area_recorded(actor, command)
            .await
            .map_err(domain)?;
        // The persons the area touches are re-evaluated by the
        // re-evaluation process manager (`reactions`), which survives a crash.
        done(ctx, &recorded, None).await
    }

    /// Publishes a region's policy (JsonLogic rules over the facts).
    async fn publish_policy(
        &self,
        ctx: &Context<'_>,
        region: String,
        policy_id: String,
        document: Json<serde_json::Value>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let document: PolicyDocument =
            serde_json::from_value(document.0).map_err(|e| invalid("document", e.to_string()))?;
        let command = PublishPolicy {
            region: api::division(api, "region", &region)?,
            policy_id,
            document,
        };
        let recorded = api
            .service
            .publish_policy_recorded(actor, command)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }

    /// Registers a checkpoint (by a health official of its area). The
    /// admission policy is JSON, e.g. `{"admit": ["green"]}`.
    async fn register_checkpoint(
        &self,
        ctx: &Context<'_>,
        name: String,
        place: String,
        admission: Option<Json<serde_json::Value>>,
    ) -> Result<RegisteredCheckpoint> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let place = api::division(api, "place", &place)?;
        let checkpoint_id = CheckpointId::new();
        let admission = admission
            .map(|a| a.0.to_string())
            .unwrap_or_else(|| r#"{"admit":["green"]}"#.into());
        let recorded = api
            .service
            .checkpoint_recorded(
                actor,
                checkpoint_id,
                CheckpointCommand::Register {
                    checkpoint_id,
                    name,
                    place,
                    admission,
                },
            )
            .await
            .map_err(domain)?;
        api.ensure_key(place.province())?;
        let token = api.service.place_code(checkpoint_id).map_err(domain)?;
        Ok(RegisteredCheckpoint {
            checkpoint_id: checkpoint_id.to_string(),
            place_code: crate::token::place_text(&token),
            position: position(api, recorded.position).await?,
        })
    }

    /// A checkpoint scans a code (durable before it answers). A measured
    /// temperature and an admitted visit become evidence for the person.
    async fn scan_code(
        &self,
        ctx: &Context<'_>,
        checkpoint_id: Option<ID>,
        code: String,
        temperature: Option<f64>,
        place_code: Option<String>,
        scan_id: Option<ID>,
    ) -> Result<ScanResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let checkpoint = match (&actor.role, checkpoint_id.as_deref()) {
            (Role::Checkpoint { checkpoint }, None) => *checkpoint,
            (Role::Checkpoint { checkpoint }, Some(given)) => {
                let given = CheckpointId::parse(given).map_err(|e| invalid("checkpointId", e))?;
                require(
                    actor,
                    "scanCode",
                    given == *checkpoint,
                    "the checkpoint itself",
                )?;
                given
            }
            (Role::Admin, Some(given)) => {
                CheckpointId::parse(given).map_err(|e| invalid("checkpointId", e))?
            }
            _ => return Err(forbidden(actor, "scanCode", "checkpoint, admin")),
        };
        let code_token = crate::token::parse_text(code.trim()).map_err(domain)?;
        let place_token = place_code
            .map(|p| crate::token::parse_text(p.trim()).map_err(domain))
            .transpose()?;
        api.refresh_keys_for(&code_token);
        if let Some(place) = &place_token {
            api.refresh_keys_for(place);
        }
        let temperature = temperature
            .map(|t| Temperature::parse("temperature", t).map_err(domain))
            .transpose()?;
        let scan_id = match scan_id {
            Some(id) => EventId::parse(&id).map_err(|e| invalid("scanId", e))?,
            None => EventId::new(),
        };
        let direction = if place_token.is_some() {
            ScanDirection::PersonScansVenue
        } else {
            ScanDirection::GuardScansPerson
        };
        let ScanOutcome {
            recorded,
            claims,
            holder,
        } = api
            .service
            .scan_recorded(
                actor,
                checkpoint,
                CheckpointCommand::Scan {
                    scan_id,
                    direction,
                    code_token,
                    place_token,
                    temperature,
                },
            )
            .await
            .map_err(domain)?;
        let (admitted, colour, reason, checked_online) = recorded
            .events
            .iter()
            .find_map(|e| match e {
                HealthEvent::CodeScanned {
                    admitted,
                    colour,
                    reason,
                    checked_online,
                    ..
                } => Some((
                    *admitted,
                    colour.as_str().to_string(),
                    reason.clone(),
                    *checked_online,
                )),
                _ => None,
            })
            .ok_or_else(|| coded("CONFLICT", format!("scan {scan_id} was already recorded")))?;
        let claims =
            claims.ok_or_else(|| coded("INTERNAL", "a recorded scan without the code's claims"))?;
        let holder = holder
            .filter(|_| checked_online)
            .map(|h| MaskedHolder::of(api, &h))
            .transpose()?;
        Ok(ScanResult {
            admitted,
            colour,
            signed_colour: claims.colour.as_str().into(),
            reason,
            checked_online,
            issued_at: rfc3339(claims.issued_at)?,
            expires_at: rfc3339(claims.expires_at)?,
            holder,
            scan_id: scan_id.to_string(),
            position: position(api, recorded.position).await?,
        })
    }

    /// An official upholds an appealed colour.
    async fn uphold_appeal(
        &self,
        ctx: &Context<'_>,
        person_id: ID,
        appeal_id: ID,
        reason: String,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = api::person_id("personId", &person_id)?;
        let appeal_id = Uuid::parse_str(appeal_id.trim()).map_err(|e| invalid("appealId", e))?;
        let recorded = api
            .service
            .person_recorded(
                actor,
                person,
                PersonCommand::UpholdAppeal { appeal_id, reason },
            )
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }

    /// An official overrides colours (answering an appeal or a case); above
    /// the region's threshold a second official must approve.
    #[allow(clippy::too_many_arguments)]
    async fn request_override(
        &self,
        ctx: &Context<'_>,
        region: String,
        persons: Vec<ID>,
        colour: CodeColour,
        legal_basis: String,
        reason: String,
        appeal_id: Option<ID>,
        case_ref: Option<String>,
        expires_at: String,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        let answers = match (appeal_id, case_ref) {
            (Some(a), None) => OverrideAnswers::Appeal(
                Uuid::parse_str(a.trim()).map_err(|e| invalid("appealId", e))?,
            ),
            (None, Some(c)) => OverrideAnswers::Case(c),
            _ => {
                return Err(invalid(
                    "appealId",
                    "give exactly one of `appealId` and `caseRef`",
                ))
            }
        };
        let override_id = Uuid::now_v7();
        let command = OverrideCommand::Request {
            override_id,
            region,
            persons: persons
                .iter()
                .map(|p| api::person_id("persons", p))
                .collect::<Result<Vec<_>>>()?,
            colour: colour.into(),
            legal_basis,
            reason,
            answers,
            expires_at: parse_time("expiresAt", &expires_at)?,
        };
        let recorded = api
            .service
            .override_colours_recorded(actor, region, command)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, Some(override_id.to_string())).await
    }

    /// A second official approves a pending override.
    async fn approve_override(
        &self,
        ctx: &Context<'_>,
        region: String,
        override_id: ID,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        let override_id =
            Uuid::parse_str(override_id.trim()).map_err(|e| invalid("overrideId", e))?;
        let recorded = api
            .service
            .override_colours_recorded(actor, region, OverrideCommand::Approve { override_id })
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }

    /// Erases a person's personal data (crypto-shredding): the person or an admin.
    async fn erase_personal_data(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
    ) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let person = subject(actor, person_id.as_ref().map(|p| p.as_str()))?;
        let mut recorded = api
            .service
            .erase_personal_data_recorded(actor, person)
            .await
            .map_err(domain)?;
        // The answer lists no events, as it always has; only the position.
        recorded.events.clear();
        done(ctx, &recorded, None).await
    }

    /// Re-evaluates every person's colour as time passes (admin).
    async fn reevaluate_all(&self, ctx: &Context<'_>) -> Result<CommandResult> {
        let actor = caller(ctx)?;
        require(
            actor,
            "reevaluateAll",
            matches!(actor.role, Role::Admin),
            "admin",
        )?;
        let api = api(ctx)?;
        let recorded = api
            .service
            .reevaluate_all_recorded(actor)
            .await
            .map_err(domain)?;
        done(ctx, &recorded, None).await
    }
}
