//! Output objects. Fields that show a person's data check who asks: the
//! person themself, or a role allowed to see that field; anything else is
//! `FORBIDDEN`. Reads by anyone but the person are recorded by the query
//! that returns the person (see [`crate::graphql::query`]).

use async_graphql::{Context, Json, Object, Result, SimpleObject};
use tongban_kernel::{Actor, Role};
use tongban_projection::KeyRange;

use crate::graphql::api::{self, api, bounded, caller, forbidden, is_self, HealthCodeApi};
use crate::handler::Holder;
use crate::projections::{
    AccessView, AppealView, CheckpointView, CodeView, ColourView, PersonView, RiskAreaView,
    ScanView, TravelView,
};
use crate::vault::{self, VaultError};

/// A colour in a region, with the rule and reason behind it.
#[derive(SimpleObject, Clone)]
pub struct Colour {
    /// Deciding region.
    pub region: String,
    /// `green`, `yellow` or `red`.
    pub colour: String,
    /// Reason code (e.g. `CLOSE_CONTACT`).
    pub reason: String,
    /// The rule that fired.
    pub rule_id: String,
    /// Policy id and version.
    pub policy: String,
    /// Since (RFC 3339).
    pub since: String,
}

impl From<&ColourView> for Colour {
    fn from(v: &ColourView) -> Self {
        Self {
            region: v.region.clone(),
            colour: v.colour.clone(),
            reason: v.reason.clone(),
            rule_id: v.rule_id.clone(),
            policy: v.policy.clone(),
            since: v.since.clone(),
        }
    }
}

/// The latest code generated for a person.
#[derive(SimpleObject, Clone)]
pub struct Code {
    /// Its id.
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

impl From<&CodeView> for Code {
    fn from(v: &CodeView) -> Self {
        Self {
            code_id: v.code_id.clone(),
            region: v.region.clone(),
            colour: v.colour.clone(),
            issued_at: v.issued_at.clone(),
            expires_at: v.expires_at.clone(),
        }
    }
}

/// A place visited (county level).
#[derive(SimpleObject, Clone)]
pub struct Travel {
    /// Day (YYYY-MM-DD).
    pub date: String,
    /// County code.
    pub county: String,
    /// County name.
    pub name: Option<String>,
    /// Source: rail, air, road, telco, venue, declared.
    pub source: String,
}

/// Identity data, decrypted for this answer only.
#[derive(SimpleObject, Clone)]
pub struct PersonalData {
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: String,
    /// Kind of identity document.
    pub id_document_kind: String,
    /// The document number, masked but for the last four characters.
    pub id_document_masked: String,
}

/// A code's holder as a guard may see them: enough to compare with the
/// person in front of them, never the full name or number.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct MaskedHolder {
    /// The name, first character only (`王*`); null when the personal data
    /// was erased.
    pub masked_name: Option<String>,
    /// Kind of identity document (`resident_id`, `passport`, `travel_permit`).
    pub id_kind: Option<String>,
    /// The document number, masked (`110***********1234`).
    pub masked_id_number: Option<String>,
    /// The personal data was erased: nothing to compare with.
    pub erased: bool,
}

impl MaskedHolder {
    /// Unseals the holder's personal data with `api`'s vault and masks it;
    /// an erased person shows no name.
    pub(crate) fn of(api: &HealthCodeApi, holder: &Holder) -> Result<Self> {
        let erased = Self {
            masked_name: None,
            id_kind: None,
            masked_id_number: None,
            erased: true,
        };
        let Some(sealed) = &holder.state.personal else {
            return Ok(erased);
        };
        match vault::open(api.vault.as_ref(), holder.person_id, sealed) {
            Ok(data) => Ok(Self {
                masked_name: Some(vault::masked_name(&data.name)),
                id_kind: Some(data.id_document.kind().into()),
                masked_id_number: Some(data.id_document.masked()),
                erased: false,
            }),
            Err(VaultError::KeyErased(_)) => Ok(erased),
            Err(e) => Err(api::coded("INTERNAL", e.to_string())),
        }
    }
}

/// One read of the person's data by someone else.
#[derive(SimpleObject, Clone)]
pub struct Access {
    /// Who (actor id).
    pub by: String,
    /// Their role.
    pub role: String,
    /// Declared purpose.
    pub purpose: String,
    /// Fields returned.
    pub fields: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

impl From<AccessView> for Access {
    fn from(v: AccessView) -> Self {
        Self {
            by: v.by,
            role: v.role,
            purpose: v.purpose,
            fields: v.fields,
            at: v.at,
        }
    }
}

/// An appeal ("correct information").
#[derive(SimpleObject, Clone)]
pub struct Appeal {
    /// Its id.
    pub appeal_id: String,
    /// The person.
    pub person_id: String,
    /// Region.
    pub region: String,
    /// Colour appealed.
    pub colour: String,
    /// The person's reason; null once the person's data is erased.
    pub reason: Option<String>,
    /// open, upheld, overridden.
    pub status: String,
    /// Filed (RFC 3339).
    pub filed_at: String,
    /// The decision's reason.
    pub decision: Option<String>,
}

impl Appeal {
    /// The appeal with its reason opened through the person's data key
    /// (`None` once they are erased). The caller has been authorised.
    pub fn opened(v: AppealView, vault: &dyn vault::KeyVault) -> Result<Self> {
        let person = api::person_id("personId", &v.person_id)?;
        let reason = opened_text(&v.reason, vault, person, crate::events::APPEAL_REASON)?;
        Ok(Self {
            appeal_id: v.appeal_id,
            person_id: v.person_id,
            region: v.region,
            colour: v.colour,
            reason,
            status: v.status,
            filed_at: v.filed_at,
            decision: v.decision,
        })
    }
}

/// Free text opened for an authorised reader: `None` after erasure; a
/// text that fails authentication is an error, not an empty answer.
fn opened_text(
    text: &vault::SealedText,
    vault: &dyn vault::KeyVault,
    person: tongban_kernel::PersonId,
    purpose: &str,
) -> Result<Option<String>> {
    match text.open(vault, person, purpose) {
        Ok(t) => Ok(Some(t)),
        Err(VaultError::KeyErased(_)) => Ok(None),
        Err(e) => Err(api::coded("INTERNAL", e.to_string())),
    }
}

/// A risk area in force.
#[derive(SimpleObject, Clone)]
pub struct RiskArea {
    /// Area code.
    pub area: String,
    /// Area name.
    pub name: Option<String>,
    /// low, medium, high.
    pub level: String,
    /// Since (RFC 3339).
    pub since: String,
}

impl RiskArea {
    /// From the read model, naming the area.
    pub fn new(v: RiskAreaView, name: Option<String>) -> Self {
        Self {
            area: v.area,
            name,
            level: v.level,
            since: v.since,
        }
    }
}

/// One scan.
#[derive(SimpleObject, Clone)]
pub struct Scan {
    /// Scan id.
    pub scan_id: String,
    /// Checkpoint.
    pub checkpoint_id: String,
    /// Code id (never the person).
    pub code_id: String,
    /// Colour shown.
    pub colour: String,
    /// Admitted.
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

impl From<ScanView> for Scan {
    fn from(v: ScanView) -> Self {
        Self {
            scan_id: v.scan_id,
            checkpoint_id: v.checkpoint_id,
            code_id: v.code_id,
            colour: v.colour,
            admitted: v.admitted,
            reason: v.reason,
            temperature: v.temperature,
            at: v.at,
            position: v.position,
        }
    }
}

/// Colour counts in one county.
#[derive(SimpleObject, Clone)]
pub struct CountyColours {
    /// County code.
    pub county: String,
    /// County name.
    pub name: Option<String>,
    /// Green.
    pub green: u64,
    /// Yellow.
    pub yellow: u64,
    /// Red.
    pub red: u64,
}

/// One hour of a province's, city's or county's colour counts
/// (`colourCountHistory`).
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct ColourCountHour {
    /// When the hour starts (RFC 3339 in China Standard Time, e.g.
    /// `2020-06-13T10:00:00+08:00`); the counts are those at its end.
    pub hour: String,
    /// Green codes.
    pub green: u64,
    /// Yellow codes.
    pub yellow: u64,
    /// Red codes.
    pub red: u64,
    /// Whether the counts changed during this hour (otherwise they carry
    /// the previous hour's forward).
    pub changed: bool,
}

/// A region's latest policy.
#[derive(SimpleObject, Clone)]
pub struct Policy {
    /// Region.
    pub region: String,
    /// Policy id.
    pub policy_id: String,
    /// Version.
    pub version: u32,
    /// Published (RFC 3339).
    pub published_at: String,
    /// The rules.
    pub document: Json<serde_json::Value>,
}

/// A person as a query returns them.
pub struct Person {
    /// The read model row.
    pub view: PersonView,
}

/// Roles (besides the person) that may read each guarded `Person` field.
pub const PERSON_FIELD_ROLES: [(&str, &[&str]); 6] = [
    ("residence", &["health_official", "auditor", "admin"]),
    ("travelHistory", &["health_official", "auditor", "admin"]),
    ("personalData", &["health_official", "admin"]),
    ("accessLog", &["auditor", "admin"]),
    ("appeals", &["health_official", "auditor", "admin"]),
    ("history", &["health_official", "auditor"]),
];

/// Whether a role may read a `Person` field of someone else.
pub fn field_visible(role: &str, field: &str) -> bool {
    PERSON_FIELD_ROLES
        .iter()
        .find(|(f, _)| *f == field)
        .is_none_or(|(_, roles)| roles.contains(&role))
}

fn may(actor: &Actor, person: &str, roles: &[&str]) -> bool {
    is_self(actor, person) || roles.contains(&actor.role_name())
}

fn guard(ctx: &Context<'_>, person: &str, field: &str, roles: &[&str]) -> Result<()> {
    let actor = caller(ctx)?;
    if may(actor, person, roles) {
        Ok(())
    } else {
        let mut who = vec!["the person"];
        who.extend_from_slice(roles);
        Err(forbidden(actor, field, &who.join(", ")))
    }
}

fn mask(number: &str) -> String {
    let n = number.chars().count();
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

#[Object]
impl Person {
    /// The person's id.
    async fn id(&self) -> &str {
        &self.view.person_id
    }

    /// Home region.
    async fn home_region(&self) -> &str {
        &self.view.home_region
    }

    /// Residence community.
    async fn residence(&self, ctx: &Context<'_>) -> Result<&str> {
        guard(
            ctx,
            &self.view.person_id,
            "Person.residence",
            &["health_official", "auditor", "admin"],
        )?;
        Ok(&self.view.residence)
    }

    /// The colour in the home region.
    async fn colour(&self) -> Option<Colour> {
        self.view.home_colour().map(Colour::from)
    }

    /// Colours in every region that decided one.
    async fn colours(&self) -> Vec<Colour> {
        self.view.colours.values().map(Colour::from).collect()
    }

    /// The latest code.
    async fn code(&self) -> Option<Code> {
        self.view.code.as_ref().map(Code::from)
    }

    /// Places visited in the last `days` days (default 14, 1 to 366),
    /// county level.
    async fn travel_history(&self, ctx: &Context<'_>, days: Option<u32>) -> Result<Vec<Travel>> {
        let days = bounded("days", days, 14, 366)?;
        guard(
            ctx,
            &self.view.person_id,
            "Person.travelHistory",
            &["health_official", "auditor", "admin"],
        )?;
        let api = api(ctx)?;
        let since = (api.clock.now() - time::Duration::days(i64::from(days)))
            .date()
            .to_string();
        Ok(self
            .view
            .travel
            .iter()
            .filter(|t| t.date >= since)
            .map(|t: &TravelView| Travel {
                date: t.date.clone(),
                county: t.county.clone(),
                name: tongban_kernel::DivisionCode::parse(&t.county)
                    .ok()
                    .and_then(|c| api.divisions.name(&c).map(str::to_owned)),
                source: t.source.clone(),
            })
            .collect())
    }

    /// Name, phone and identity document (decrypted for this answer).
    async fn personal_data(&self, ctx: &Context<'_>) -> Result<Option<PersonalData>> {
        guard(
            ctx,
            &self.view.person_id,
            "Person.personalData",
            &["health_official", "admin"],
        )?;
        let api = api(ctx)?;
        let id = api::person_id("personId", &self.view.person_id)?;
        let state = api.service.person_state(id).await.map_err(api::domain)?;
        let Some(sealed) = state.personal else {
            return Ok(None);
        };
        match vault::open(api.vault.as_ref(), id, &sealed) {
            Ok(data) => {
                let (kind, number) = match &data.id_document {
                    crate::resident_id::IdentityDocument::ResidentId(r) => {
                        ("resident_id", r.as_str().to_owned())
                    }
                    crate::resident_id::IdentityDocument::Passport(n) => ("passport", n.clone()),
                    crate::resident_id::IdentityDocument::TravelPermit(n) => {
                        ("travel_permit", n.clone())
                    }
                };
                Ok(Some(PersonalData {
                    name: data.name,
                    phone: data.phone,
                    id_document_kind: kind.into(),
                    id_document_masked: mask(&number),
                }))
            }
            Err(VaultError::KeyErased(_)) => Ok(None),
            Err(e) => Err(api::coded("INTERNAL", e.to_string())),
        }
    }

    /// Who else read this person's data, newest first.
    #[graphql(complexity = "limit.unwrap_or(100) as usize * child_complexity")]
    async fn access_log(&self, ctx: &Context<'_>, limit: Option<u32>) -> Result<Vec<Access>> {
        let limit = bounded("limit", limit, 100, 1000)?;
        guard(
            ctx,
            &self.view.person_id,
            "Person.accessLog",
            &["auditor", "admin"],
        )?;
        let api = api(ctx)?;
        let models = api.models()?;
        let prefix = tongban_projection::read_model::key::leading(&self.view.person_id);
        let rows = models
            .scan_all(&api.tables.access, &KeyRange::prefix(prefix))
            .await
            .map_err(api::read_side)?;
        Ok(rows
            .into_iter()
            .rev()
            .take(limit as usize)
            .map(|(_, v)| Access::from(v))
            .collect())
    }

    /// The person's appeals.
    async fn appeals(&self, ctx: &Context<'_>) -> Result<Vec<Appeal>> {
        guard(
            ctx,
            &self.view.person_id,
            "Person.appeals",
            &["health_official", "auditor", "admin"],
        )?;
        let api = api(ctx)?;
        let rows = api
            .models()?
            .scan_all(&api.tables.appeals, &KeyRange::all())
            .await
            .map_err(api::read_side)?;
        rows.into_iter()
            .filter(|(_, a)| a.person_id == self.view.person_id)
            .map(|(_, a)| Appeal::opened(a, api.vault.as_ref()))
            .collect()
    }

    /// Every event of the person's stream (evidence, colours with reasons,
    /// codes, appeals), oldest first: why the code has its colour.
    async fn history(&self, ctx: &Context<'_>) -> Result<Vec<Json<serde_json::Value>>> {
        guard(
            ctx,
            &self.view.person_id,
            "Person.history",
            &["health_official", "auditor"],
        )?;
        let api = api(ctx)?;
        let id = api::person_id("personId", &self.view.person_id)?;
        let events = api.service.person_history(id).await.map_err(api::domain)?;
        events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                // Sealed personal data never leaves the service; sealed
                // free text is shown opened (null after erasure).
                if let Some(o) = v.as_object_mut() {
                    o.remove("personal");
                }
                if let (crate::events::HealthEvent::AppealFiled { reason, .. }, Some(o)) =
                    (e, v.as_object_mut())
                {
                    let text =
                        opened_text(reason, api.vault.as_ref(), id, crate::events::APPEAL_REASON)?;
                    o.insert(
                        "reason".into(),
                        text.map_or(serde_json::Value::Null, Into::into),
                    );
                }
                Ok(Json(v))
            })
            .collect()
    }
}

/// A checkpoint and its scan log.
pub struct Checkpoint {
    /// The read model row.
    pub view: CheckpointView,
}

#[Object]
impl Checkpoint {
    /// Its id.
    async fn id(&self) -> &str {
        &self.view.checkpoint_id
    }

    /// Its name.
    async fn name(&self) -> &str {
        &self.view.name
    }

    /// Community or street code.
    async fn place(&self) -> &str {
        &self.view.place
    }

    /// Admission policy.
    async fn admission(&self) -> Json<serde_json::Value> {
        Json(serde_json::from_str(&self.view.admission).unwrap_or_default())
    }

    /// The venue's signed place code (`HP1:` text for its QR).
    async fn place_code(&self, ctx: &Context<'_>) -> Result<String> {
        let api = api(ctx)?;
        let id = tongban_kernel::CheckpointId::parse(&self.view.checkpoint_id)
            .map_err(|e| api::invalid("checkpointId", e))?;
        let token = api.service.place_code(id).map_err(api::domain)?;
        Ok(crate::token::place_text(&token))
    }

    /// The newest scans (default 50).
    #[graphql(complexity = "limit.unwrap_or(50) as usize * child_complexity")]
    async fn scans(&self, ctx: &Context<'_>, limit: Option<u32>) -> Result<Vec<Scan>> {
        let limit = bounded("limit", limit, 50, 1000)?;
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let allowed = match &actor.role {
            Role::Checkpoint { checkpoint } => checkpoint.to_string() == self.view.checkpoint_id,
            Role::HealthOfficial { .. } => tongban_kernel::DivisionCode::parse(&self.view.place)
                .is_ok_and(|p| actor.has_health_authority_over(&p)),
            Role::Auditor | Role::Admin => true,
            _ => false,
        };
        if !allowed {
            return Err(forbidden(
                actor,
                "Checkpoint.scans",
                "the checkpoint itself, a health official of its area, auditor, admin",
            ));
        }
        let prefix = tongban_projection::read_model::key::leading(&self.view.checkpoint_id);
        let rows = api
            .models()?
            .scan_all(&api.tables.scans, &KeyRange::prefix(prefix))
            .await
            .map_err(api::read_side)?;
        Ok(rows
            .into_iter()
            .rev()
            .take(limit as usize)
            .map(|(_, s)| Scan::from(s))
            .collect())
    }
}
