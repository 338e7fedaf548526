//! Subscriptions: the `health_code` projection's change feeds, filtered by
//! what the caller may see. Each item carries its `cursor`; pass the last
//! one handled as `after` to resume (on any gateway replica).

use async_graphql::{Context, Json, Result, SimpleObject, Subscription, ID};
use futures::{Stream, StreamExt};
use tongban_kernel::Role;
use tongban_projection::{ChangeRecord, FeedCursor, FeedScope};

use std::sync::Arc;

use tongban_kernel::{Actor, PersonId};

use crate::graphql::api::{self, api, caller, forbidden, invalid, AccessLedger, HealthCodeApi};
use crate::graphql::query::{record_access, selected_fields};
use crate::projections::VIEWS;

/// The health-code subscriptions.
#[derive(Default)]
pub struct HealthCodeSubscription;

/// A person's colour changed.
#[derive(SimpleObject, Clone)]
pub struct ColourChange {
    /// Resume cursor.
    pub cursor: String,
    /// The person.
    pub person_id: String,
    /// Deciding region.
    pub region: String,
    /// New colour.
    pub colour: String,
    /// Previous colour.
    pub previous: Option<String>,
    /// Reason code.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A change record of any kind.
#[derive(SimpleObject, Clone)]
pub struct Change {
    /// Resume cursor.
    pub cursor: String,
    /// `code.colour`, `risk.area`, `checkpoint.scan`.
    pub kind: String,
    /// Region of the change.
    pub region: Option<String>,
    /// Data class.
    pub data_class: String,
    /// When committed (RFC 3339).
    pub at: String,
    /// The record.
    pub payload: Json<serde_json::Value>,
}

fn cursor(after: Option<String>) -> Result<Option<FeedCursor>> {
    after
        .map(|a| a.parse::<FeedCursor>().map_err(|e| invalid("after", e)))
        .transpose()
}

fn change(r: ChangeRecord) -> Change {
    Change {
        cursor: r.cursor.to_string(),
        kind: r.kind,
        region: r.region,
        data_class: r.data_class,
        at: r
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        payload: Json(r.payload),
    }
}

/// Who to record as reading a person's data through a subscription:
/// everyone but a citizen (who only ever receives their own).
/// One access event per person per subscription, however many of their
/// records it delivers.
type Recorder = Option<Arc<(Arc<HealthCodeApi>, Actor, String, Vec<String>, AccessLedger)>>;

fn recorder(ctx: &Context<'_>, actor: &Actor, purpose: Option<String>) -> Result<Recorder> {
    if matches!(actor.role, Role::Citizen { .. }) {
        return Ok(None);
    }
    let api = ctx
        .data::<Arc<HealthCodeApi>>()
        .map_err(|_| api::coded("INTERNAL", "the health-code service is not configured"))?
        .clone();
    let purpose = purpose
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "change feed subscription".into());
    Ok(Some(Arc::new((
        api,
        actor.clone(),
        purpose,
        selected_fields(ctx),
        AccessLedger::default(),
    ))))
}

async fn record(recorder: &Recorder, person: &str) -> Result<()> {
    let Some(r) = recorder else { return Ok(()) };
    let (api, actor, purpose, fields, ledger) = r.as_ref();
    let Ok(person) = PersonId::parse(person) else {
        return Ok(());
    };
    record_access(
        api,
        Some(ledger),
        actor,
        person,
        purpose.clone(),
        fields.clone(),
    )
    .await
}

/// The regions a health official oversees: the listed sub-regions when
/// there are any, else the whole region.
fn official_regions(
    region: &tongban_kernel::DivisionCode,
    sub_regions: &[tongban_kernel::DivisionCode],
) -> Vec<String> {
    if sub_regions.is_empty() {
        vec![region.to_string()]
    } else {
        sub_regions.iter().map(|s| s.to_string()).collect()
    }
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

#[Subscription]
impl HealthCodeSubscription {
    /// Colour changes: a citizen's own; a health official's region; every
    /// change for departments, auditors and admins (optionally one person).
    /// Each change delivered to anyone but the person is recorded in the
    /// person's access log with `purpose`.
    async fn colour_changed(
        &self,
        ctx: &Context<'_>,
        person_id: Option<ID>,
        after: Option<String>,
        purpose: Option<String>,
    ) -> Result<impl Stream<Item = Result<ColourChange>>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let recorder = recorder(ctx, actor, purpose)?;
        let mut scope = FeedScope::everything().data_classes(["code-status"]);
        let person = match (&actor.role, person_id) {
            (Role::Citizen { person }, None) => Some(person.to_string()),
            (Role::Citizen { person }, Some(p)) if p.as_str() == person.to_string() => {
                Some(person.to_string())
            }
            (
                Role::HealthOfficial {
                    region,
                    sub_regions,
                },
                p,
            ) => {
                scope = scope.regions(official_regions(region, sub_regions));
                p.map(|p| p.to_string())
            }
            (Role::Department { .. } | Role::Auditor | Role::Admin, p) => p.map(|p| p.to_string()),
            _ => {
                return Err(forbidden(
                    actor,
                    "colourChanged",
                    "the person, health_official, department, auditor, admin",
                ))
            }
        };
        let feed = api.runner.feed(VIEWS).map_err(api::read_side)?;
        let stream = feed
            .subscribe(cursor(after)?, scope)
            .filter_map(move |item| {
                let person = person.clone();
                let recorder = recorder.clone();
                async move {
                    match item {
                        Ok(r) if r.kind == "code.colour" => {
                            let p = &r.payload;
                            let id = text(p, "personId");
                            if person.as_ref().is_some_and(|want| *want != id) {
                                return None;
                            }
                            if let Err(e) = record(&recorder, &id).await {
                                return Some(Err(e));
                            }
                            Some(Ok(ColourChange {
                                cursor: r.cursor.to_string(),
                                person_id: id,
                                region: text(p, "region"),
                                colour: text(p, "colour"),
                                previous: p
                                    .get("previous")
                                    .and_then(|x| x.as_str())
                                    .map(str::to_owned),
                                reason: text(p, "reason"),
                                at: text(p, "at"),
                            }))
                        }
                        Ok(_) => None,
                        Err(e) => Some(Err(api::read_side(e))),
                    }
                }
            });
        Ok(stream)
    }

    /// Risk areas declared, changed or lifted (any authenticated caller).
    async fn risk_area_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<Change>>> {
        caller(ctx)?;
        let api = api(ctx)?;
        let feed = api.runner.feed(VIEWS).map_err(api::read_side)?;
        let scope = FeedScope::everything().data_classes(["risk-area"]);
        Ok(feed
            .subscribe(cursor(after)?, scope)
            .map(|item| item.map(change).map_err(api::read_side)))
    }

    /// Every change record (departments, auditors, admins; health officials
    /// within their region). Colour changes delivered are recorded in the
    /// persons' access logs with `purpose`.
    async fn changes(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        data_classes: Option<Vec<String>>,
        purpose: Option<String>,
    ) -> Result<impl Stream<Item = Result<Change>>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let mut scope = FeedScope::everything();
        match &actor.role {
            Role::Department { .. } | Role::Auditor | Role::Admin => {}
            Role::HealthOfficial {
                region,
                sub_regions,
            } => scope = scope.regions(official_regions(region, sub_regions)),
            _ => {
                return Err(forbidden(
                    actor,
                    "changes",
                    "health_official, department, auditor, admin",
                ))
            }
        }
        if let Some(classes) = data_classes {
            scope = scope.data_classes(classes);
        }
        let recorder = recorder(ctx, actor, purpose)?;
        let feed = api.runner.feed(VIEWS).map_err(api::read_side)?;
        Ok(feed.subscribe(cursor(after)?, scope).then(move |item| {
            let recorder = recorder.clone();
            async move {
                let record_ = item.map_err(api::read_side)?;
                if record_.kind == "code.colour" {
                    record(&recorder, &text(&record_.payload, "personId")).await?;
                }
                Ok(change(record_))
            }
        }))
    }
}
