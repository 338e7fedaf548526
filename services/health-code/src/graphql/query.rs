//! Queries: the read models, and the two GB/T 38963 operations that read
//! (`queryHealthInformation`, `verifyCode`). Every query that returns a
//! person to someone else records who, role, purpose and fields first.

use std::ops::Bound;

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tongban_kernel::{Actor, DivisionCode, Role};
use tongban_projection::read_model::key::{leading, prefix_end};
use tongban_projection::{Key, KeyRange};

use crate::checkpoint::CheckMode;
use crate::error::HealthCodeError;
use crate::graphql::api::{
    self, api, caller, coded, domain, forbidden, AccessLedger, HealthCodeApi,
};
use crate::graphql::objects::{
    Appeal, Checkpoint, ColourCountHour, CountyColours, MaskedHolder, Person, Policy, RiskArea,
};
use crate::handler::CheckedCode;
use crate::person::PersonCommand;
use crate::projections::hourly::has_series;
use crate::projections::{step_series, Hour};
use crate::types::BizExt;

/// The health-code queries.
#[derive(Default)]
pub struct HealthCodeQuery;

/// What a checked code says: its status, and the holder masked so the
/// guard can compare (never the full name or ID number).
#[derive(SimpleObject)]
pub struct CodeVerification {
    /// Signature and expiry check out, and the code is not void.
    pub valid: bool,
    /// The colour that counts: the holder's colour now when checked online
    /// (also for a void code), else the signed one; null for a bad token.
    pub colour: Option<String>,
    /// The colour signed into the code.
    pub signed_colour: Option<String>,
    /// Checked against the holder's status at the log head (`true`), or on
    /// the signature alone (`false`: the holder is not known here).
    pub checked_online: bool,
    /// Issuing region.
    pub region: Option<String>,
    /// Issued (RFC 3339).
    pub issued_at: Option<String>,
    /// Expiry (RFC 3339).
    pub expires_at: Option<String>,
    /// Why not valid, in words.
    pub reason: Option<String>,
    /// Why not valid, as a stable code: `CODE_SUPERSEDED`, `CODE_EXPIRED`,
    /// `CODE_FORGED`, `CODE_UNKNOWN_KEY`, `CODE_MALFORMED`.
    pub reason_code: Option<String>,
    /// The holder, masked; null when not known here or the code is bad.
    pub holder: Option<MaskedHolder>,
}

/// Hours one `colourCountHistory` answer may span (a leap year).
pub const MAX_HISTORY_HOURS: u64 = 24 * 366;

/// Hours a `colourCountHistory` answer spans when `from` is not given.
pub const DEFAULT_HISTORY_HOURS: u64 = 24 * 7;

/// What a history costs in the complexity limit: one per day it spans (a
/// week by default), so that many aliases of a long history are refused
/// before they run. Unparsable times cost nothing here; the resolver
/// refuses them.
fn history_cost(from: Option<&str>, to: Option<&str>) -> usize {
    let parse = |t: Option<&str>| t.and_then(|t| OffsetDateTime::parse(t.trim(), &Rfc3339).ok());
    match (parse(from), parse(to)) {
        (Some(from), to) => {
            let to = to.unwrap_or_else(OffsetDateTime::now_utc);
            usize::try_from((to - from).whole_days())
                .unwrap_or(0)
                .clamp(1, 366)
        }
        _ => (DEFAULT_HISTORY_HOURS / 24) as usize,
    }
}

/// Parses an optional RFC 3339 time for `field` into its hour.
fn hour_arg(field: &str, text: Option<&str>) -> Result<Option<Hour>> {
    text.map(|t| {
        OffsetDateTime::parse(t.trim(), &Rfc3339)
            .map(Hour::of)
            .map_err(|e| {
                api::invalid(
                    field,
                    format!("`{t}` is not an RFC 3339 time (2020-06-13T10:00:00+08:00): {e}"),
                )
            })
    })
    .transpose()
}

/// The hours a history covers: `to` defaults to the current hour, `from`
/// to a week before `to`; at most [`MAX_HISTORY_HOURS`].
pub(crate) fn history_window(
    from: Option<Hour>,
    to: Option<Hour>,
    now: OffsetDateTime,
) -> Result<(Hour, Hour)> {
    let to = to.unwrap_or_else(|| Hour::of(now));
    let from = from.unwrap_or_else(|| {
        Hour::from_index(
            to.index()
                .saturating_sub(DEFAULT_HISTORY_HOURS as i64)
                .saturating_add(1),
        )
    });
    if from > to {
        return Err(api::invalid("from", "must not be after `to`"));
    }
    if from.span_to(to) > MAX_HISTORY_HOURS {
        return Err(api::invalid(
            "from",
            format!("a history spans at most {MAX_HISTORY_HOURS} hours; ask for a shorter window"),
        ));
    }
    Ok((from, to))
}

/// The names of the fields selected under the current field.
pub(crate) fn selected_fields(ctx: &Context<'_>) -> Vec<String> {
    ctx.field()
        .selection_set()
        .map(|f| f.name().to_string())
        .filter(|n| !n.starts_with("__"))
        .collect()
}

/// Loads a person for a caller who is not (necessarily) the person,
/// enforcing who may look and recording the read.
async fn person_for(
    ctx: &Context<'_>,
    id: &str,
    purpose: Option<String>,
    min_position: Option<u64>,
) -> Result<Option<Person>> {
    let actor = caller(ctx)?;
    let api = api(ctx)?;
    let person = api::person_id("id", id)?;
    let key = person.to_string();
    // Authorise before looking: a role that may never read another person
    // learns nothing about which ids exist.
    let may_read_others = matches!(
        actor.role,
        Role::HealthOfficial { .. } | Role::Auditor | Role::Admin
    );
    if !may_read_others && !api::is_self(actor, &key) {
        return Err(forbidden(
            actor,
            "person",
            "the person, a health official of their residence, auditor, admin",
        ));
    }
    api.wait(min_position).await?;
    let Some(view) = api
        .models()?
        .get(&api.tables.persons, &key)
        .await
        .map_err(api::read_side)?
    else {
        return Err(coded(
            "NOT_FOUND",
            format!("person {key} is not registered"),
        ));
    };
    if api::is_self(actor, &key) {
        return Ok(Some(Person { view }));
    }
    let allowed = match &actor.role {
        Role::HealthOfficial { .. } => {
            DivisionCode::parse(&view.residence).is_ok_and(|r| actor.has_health_authority_over(&r))
        }
        Role::Auditor | Role::Admin => true,
        _ => false,
    };
    if !allowed {
        return Err(forbidden(
            actor,
            "person",
            "the person, a health official of their residence, auditor, admin",
        ));
    }
    let purpose = purpose
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| api::invalid("purpose", "reading someone's data needs a purpose"))?;
    let fields = selected_fields(ctx)
        .into_iter()
        .filter(|f| crate::graphql::objects::field_visible(actor.role_name(), f))
        .collect();
    record_access(
        api,
        ctx.data_opt::<AccessLedger>(),
        actor,
        person,
        purpose,
        fields,
    )
    .await?;
    Ok(Some(Person { view }))
}

/// Records that `actor` read `fields` of `person` for `purpose`
/// (`HealthInfoQueried`, which the person lists in `accessLog`).
pub(crate) async fn record_access(
    api: &HealthCodeApi,
    ledger: Option<&AccessLedger>,
    actor: &Actor,
    person: tongban_kernel::PersonId,
    purpose: String,
    fields: Vec<String>,
) -> Result<()> {
    if ledger.is_some_and(|l| !l.first_read_of(person)) {
        return Ok(());
    }
    let ext = BizExt::parse(serde_json::json!({ "fields": fields })).map_err(domain)?;
    api.service
        .person(
            actor,
            person,
            PersonCommand::QueryHealthInfo {
                purpose,
                ext: Some(ext),
            },
        )
        .await
        .map_err(domain)?;
    Ok(())
}

#[Object]
impl HealthCodeQuery {
    /// The calling citizen's own record (colour, code, travel, who looked).
    async fn me(&self, ctx: &Context<'_>, min_position: Option<u64>) -> Result<Option<Person>> {
        let actor = caller(ctx)?;
        let Role::Citizen { person } = &actor.role else {
            return Err(forbidden(actor, "me", "citizen"));
        };
        let api = api(ctx)?;
        api.wait(min_position).await?;
        Ok(api
            .models()?
            .get(&api.tables.persons, &person.to_string())
            .await
            .map_err(api::read_side)?
            .map(|view| Person { view }))
    }

    /// A person, for the person, a health official of their residence, an
    /// auditor or an admin. Reads by anyone but the person are recorded
    /// with the `purpose` and the fields returned.
    async fn person(
        &self,
        ctx: &Context<'_>,
        id: ID,
        purpose: Option<String>,
        min_position: Option<u64>,
    ) -> Result<Option<Person>> {
        person_for(ctx, &id, purpose, min_position).await
    }

    /// GB/T 38963 "query health information": the same as `person`, always
    /// with a purpose.
    async fn query_health_information(
        &self,
        ctx: &Context<'_>,
        person_id: ID,
        purpose: String,
        min_position: Option<u64>,
    ) -> Result<Option<Person>> {
        person_for(ctx, &person_id, Some(purpose), min_position).await
    }

    /// GB/T 38963 "verify a code": checks a code's signature and expiry,
    /// then the holder's status at the log head when this hub knows them (a
    /// code issued before their latest colour change is void:
    /// `CODE_SUPERSEDED`), else says it checked offline. Shows the holder
    /// masked, never in full.
    async fn verify_code(&self, ctx: &Context<'_>, code: String) -> Result<CodeVerification> {
        let actor = caller(ctx)?;
        if !matches!(
            actor.role,
            Role::Checkpoint { .. } | Role::HealthOfficial { .. } | Role::Admin
        ) {
            return Err(forbidden(
                actor,
                "verifyCode",
                "checkpoint, health_official, admin",
            ));
        }
        let api = api(ctx)?;
        let bytes = match crate::token::parse_text(code.trim()) {
            Ok(b) => b,
            Err(e) => return Err(domain(e)),
        };
        api.refresh_keys_for(&bytes);
        let checked = match api.service.check_code(&bytes).await {
            Ok(checked) => checked,
            Err(e) if e.extension_code() == "INTERNAL" => return Err(domain(e)),
            Err(e) => {
                return Ok(CodeVerification {
                    valid: false,
                    colour: None,
                    signed_colour: None,
                    checked_online: false,
                    region: None,
                    issued_at: None,
                    expires_at: None,
                    reason: Some(e.to_string()),
                    reason_code: Some(e.verdict_code().into()),
                    holder: None,
                })
            }
        };
        let CheckedCode {
            claims,
            status,
            holder,
        } = checked;
        let online = status.mode == CheckMode::Online;
        let void = status
            .superseded
            .then_some(HealthCodeError::CodeSuperseded {
                code_id: claims.code_id,
                colour: status.colour,
            });
        let holder = holder
            .filter(|_| online)
            .map(|h| MaskedHolder::of(api, &h))
            .transpose()?;
        Ok(CodeVerification {
            valid: void.is_none(),
            colour: Some(status.colour.as_str().into()),
            signed_colour: Some(claims.colour.as_str().into()),
            checked_online: online,
            region: Some(claims.region.to_string()),
            issued_at: Some(api::rfc3339(claims.issued_at)?),
            expires_at: Some(api::rfc3339(claims.expires_at)?),
            reason: void.as_ref().map(ToString::to_string),
            reason_code: void.as_ref().map(|e| e.verdict_code().into()),
            holder,
        })
    }

    /// Colour counts per county of residence within `region`.
    async fn colour_counts(
        &self,
        ctx: &Context<'_>,
        region: String,
        min_position: Option<u64>,
    ) -> Result<Vec<CountyColours>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        let allowed = match &actor.role {
            Role::HealthOfficial { region: r, .. } => r.contains(&region) || region.contains(r),
            Role::Department { .. } | Role::Auditor | Role::Admin => true,
            _ => false,
        };
        if !allowed {
            return Err(forbidden(
                actor,
                "colourCounts",
                "health_official (own region), department, auditor, admin",
            ));
        }
        api.wait(min_position).await?;
        let rows = api
            .models()?
            .scan_all(&api.tables.colour_counts, &KeyRange::all())
            .await
            .map_err(api::read_side)?;
        let own = match &actor.role {
            Role::HealthOfficial { .. } => Some(actor),
            _ => None,
        };
        Ok(rows
            .into_iter()
            .filter_map(|(county, n)| {
                let code = DivisionCode::parse(&county).ok()?;
                let inside = region.contains(&code) || code.contains(&region);
                let authorised = own.is_none_or(|a| a.has_health_authority_over(&code));
                (inside && authorised).then(|| CountyColours {
                    name: api.divisions.name(&code).map(str::to_owned),
                    county,
                    green: n.green,
                    yellow: n.yellow,
                    red: n.red,
                })
            })
            .collect())
    }

    /// The colour counts of one province, city or county (2, 4 or 6
    /// digits) hour by hour, for the people whose home-region colour counts
    /// in `colourCounts`: one item per hour from `from` to `to` (RFC 3339;
    /// default: the week up to the current hour, at most 366 days), each
    /// the counts at the end of that hour, carried forward through hours
    /// without changes. Hours are China Standard Time hours of the log's
    /// commit time. For health officials (their region or one inside it),
    /// departments, auditors and admins.
    #[graphql(complexity = "history_cost(from.as_deref(), to.as_deref()) + child_complexity")]
    async fn colour_count_history(
        &self,
        ctx: &Context<'_>,
        region: String,
        from: Option<String>,
        to: Option<String>,
        min_position: Option<u64>,
    ) -> Result<Vec<ColourCountHour>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        if !has_series(&region) {
            return Err(api::invalid(
                "region",
                "hourly counts are kept for provinces, cities and counties (2, 4 or 6 digits)",
            ));
        }
        let allowed =
            matches!(actor.role, Role::Department { .. }) || api::oversees(actor, &region);
        if !allowed {
            return Err(forbidden(
                actor,
                "colourCountHistory",
                "health_official (own region or one inside it), department, auditor, admin",
            ));
        }
        let (from, to) = history_window(
            hour_arg("from", from.as_deref())?,
            hour_arg("to", to.as_deref())?,
            api.clock.now(),
        )?;
        api.wait(min_position).await?;
        let models = api.models()?;
        let key = region.to_string();
        let now = models
            .get(&api.tables.colour_totals, &key)
            .await
            .map_err(api::read_side)?
            .unwrap_or_default();
        // The rows from `from` on, and one more: at most one row per hour,
        // and the first row after `to` tells the counts before it.
        let range = KeyRange {
            start: Bound::Included((key.clone(), from.index()).encode_key()),
            end: prefix_end(&leading(&key)).map_or(Bound::Unbounded, Bound::Excluded),
        };
        let limit = usize::try_from(from.span_to(to))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let rows: Vec<_> = models
            .scan(&api.tables.colour_history, &range, limit)
            .await
            .map_err(api::read_side)?
            .into_iter()
            .map(|((_, hour), row)| (Hour::from_index(hour), row))
            .collect();
        Ok(step_series(&rows, &now, from, to)
            .into_iter()
            .map(|h| ColourCountHour {
                hour: h
                    .hour
                    .start()
                    .format(&Rfc3339)
                    .unwrap_or_else(|_| h.hour.start().to_string()),
                green: h.counts.green,
                yellow: h.counts.yellow,
                red: h.counts.red,
                changed: h.changed,
            })
            .collect())
    }

    /// Risk areas in force, optionally only within `within` (public).
    async fn risk_areas(
        &self,
        ctx: &Context<'_>,
        within: Option<String>,
        min_position: Option<u64>,
    ) -> Result<Vec<RiskArea>> {
        caller(ctx)?;
        let api = api(ctx)?;
        let within = within
            .map(|w| api::division(api, "within", &w))
            .transpose()?;
        api.wait(min_position).await?;
        let rows = api
            .models()?
            .scan_all(&api.tables.risk_areas, &KeyRange::all())
            .await
            .map_err(api::read_side)?;
        Ok(rows
            .into_iter()
            .filter_map(|(area, v)| {
                let code = DivisionCode::parse(&area).ok()?;
                within
                    .is_none_or(|w| w.contains(&code))
                    .then(|| RiskArea::new(v, api.divisions.name(&code).map(str::to_owned)))
            })
            .collect())
    }

    /// A checkpoint (anyone authenticated); its scan log is guarded.
    async fn checkpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        min_position: Option<u64>,
    ) -> Result<Option<Checkpoint>> {
        caller(ctx)?;
        let api = api(ctx)?;
        api.wait(min_position).await?;
        Ok(api
            .models()?
            .get(&api.tables.checkpoints, &id.trim().to_string())
            .await
            .map_err(api::read_side)?
            .map(|view| Checkpoint { view }))
    }

    /// Checkpoints within `region`.
    async fn checkpoints(&self, ctx: &Context<'_>, region: String) -> Result<Vec<Checkpoint>> {
        caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        let rows = api
            .models()?
            .scan_all(&api.tables.checkpoints, &KeyRange::all())
            .await
            .map_err(api::read_side)?;
        Ok(rows
            .into_iter()
            .filter(|(_, c)| DivisionCode::parse(&c.place).is_ok_and(|p| region.contains(&p)))
            .map(|(_, view)| Checkpoint { view })
            .collect())
    }

    /// The appeals queue of `region` (open ones unless `status` is given).
    async fn appeals(
        &self,
        ctx: &Context<'_>,
        region: String,
        status: Option<String>,
        min_position: Option<u64>,
    ) -> Result<Vec<Appeal>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        let allowed = api::oversees(actor, &region);
        if !allowed {
            return Err(forbidden(
                actor,
                "appeals",
                "health_official (own region), auditor, admin",
            ));
        }
        api.wait(min_position).await?;
        let status = status.unwrap_or_else(|| "open".into());
        let rows = api
            .models()?
            .scan_all(&api.tables.appeals, &KeyRange::all())
            .await
            .map_err(api::read_side)?;
        let appeals: Vec<Appeal> = rows
            .into_iter()
            .filter(|(_, a)| {
                a.status == status
                    && DivisionCode::parse(&a.region).is_ok_and(|r| region.contains(&r))
            })
            .map(|(_, a)| Appeal::opened(a, api.vault.as_ref()))
            .collect::<Result<_>>()?;
        let fields = selected_fields(ctx);
        for appeal in &appeals {
            let person = api::person_id("personId", &appeal.person_id)?;
            record_access(
                api,
                ctx.data_opt::<AccessLedger>(),
                actor,
                person,
                "appeals queue".into(),
                fields.iter().map(|f| format!("appeal.{f}")).collect(),
            )
            .await?;
        }
        Ok(appeals)
    }

    /// The latest policy of a province or city (public).
    async fn policy(&self, ctx: &Context<'_>, region: String) -> Result<Option<Policy>> {
        caller(ctx)?;
        let api = api(ctx)?;
        let region = api::division(api, "region", &region)?;
        Ok(api
            .models()?
            .get(&api.tables.policies, &region.to_string())
            .await
            .map_err(api::read_side)?
            .map(|p| Policy {
                region: p.region,
                policy_id: p.policy_id,
                version: p.version,
                published_at: p.published_at,
                document: async_graphql::Json(
                    serde_json::from_str(&p.document).unwrap_or_default(),
                ),
            }))
    }

    /// The name of a division code (public).
    async fn division_name(&self, ctx: &Context<'_>, code: String) -> Result<Option<String>> {
        let api = api(ctx)?;
        let code = api::division(api, "code", &code)?;
        Ok(api.divisions.name(&code).map(str::to_owned))
    }
}
