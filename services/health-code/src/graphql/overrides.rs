//! The queue of bulk colour overrides waiting for a second official
//! (`pendingOverrides`).
//!
//! A request above the region's threshold stays pending until a different
//! official of the region approves it (`approveOverride`, see
//! [`crate::overrides`]). The queue is a fold of the `override-<region>`
//! streams with the same [`OverrideState::evolve`] the command handler uses,
//! kept in memory by the query root and caught up from the log before each
//! answer: the first query reads the override streams once, later ones only
//! what was appended since, and a request is listed as soon as its append
//! returned (no projection lag, so no `minPosition` is needed).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, Object, Result, ID};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tongban_kernel::{Actor, ActorId, DivisionCode, Role};
use tongban_store::{Direction, EventFilter, EventStore, Position, ReadFrom};
use uuid::Uuid;

use crate::events::HealthEvent;
use crate::graphql::api::{self, api, caller, coded, forbidden};
use crate::graphql::query::record_access;
use crate::overrides::{OverrideRequest, OverrideState};
use crate::types::OverrideAnswers;

/// Events read from the log per page while catching up.
const PAGE: usize = 1024;

/// The override queries.
#[derive(Default)]
pub struct OverrideQuery {
    book: Arc<Mutex<OverrideBook>>,
}

/// The folded override streams, by stream name, and where the fold stopped.
#[derive(Default)]
struct OverrideBook {
    next: Option<Position>,
    streams: BTreeMap<String, OverrideState>,
}

impl OverrideBook {
    /// Folds what the override streams gained since the last call.
    async fn catch_up(&mut self, store: &dyn EventStore) -> Result<()> {
        let filter = EventFilter::streams(["override-"]);
        loop {
            let from = self.next.map_or(ReadFrom::Start, ReadFrom::At);
            let page = store
                .read_all(Direction::Forwards, from, PAGE, &filter)
                .await
                .map_err(api::store)?;
            for recorded in &page {
                let event: HealthEvent = recorded.json().map_err(|e| {
                    coded(
                        "INTERNAL",
                        format!(
                            "event {} of {} is not a health-code event: {e}",
                            recorded.revision, recorded.stream
                        ),
                    )
                })?;
                let state = self
                    .streams
                    .remove(recorded.stream.as_str())
                    .unwrap_or_default()
                    .evolve(&event);
                self.streams.insert(recorded.stream.to_string(), state);
                self.next = Some(recorded.position.next());
            }
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }
}

/// A bulk override request waiting for a second official's approval.
pub struct PendingOverride {
    id: Uuid,
    request: OverrideRequest,
    caller: ActorId,
    approvable: std::result::Result<(), String>,
}

fn rfc3339(t: OffsetDateTime) -> Option<String> {
    t.format(&Rfc3339).ok()
}

/// Whether `actor` may approve `request`, or why not (in words for the page).
fn may_approve(actor: &Actor, request: &OverrideRequest) -> std::result::Result<(), String> {
    match &actor.role {
        Role::HealthOfficial { .. } if request.official == actor.id => Err(
            "you requested this override; a second, different official of the region must approve it"
                .into(),
        ),
        Role::HealthOfficial { .. } if !actor.has_health_authority_over(&request.region) => Err(
            format!("only a health official of {} may approve it", request.region),
        ),
        Role::HealthOfficial { .. } => Ok(()),
        _ => Err(format!(
            "a {} may see the queue but only a health official approves",
            actor.role_name()
        )),
    }
}

#[Object]
impl PendingOverride {
    /// The request's id (pass it to `approveOverride`).
    async fn override_id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// The region whose colours it overrides (pass it to `approveOverride`).
    async fn region(&self) -> String {
        self.request.region.to_string()
    }

    /// The region's name.
    async fn region_name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(api(ctx)?
            .divisions
            .name(&self.request.region)
            .map(str::to_owned))
    }

    /// The colour it imposes (`green`, `yellow`, `red`).
    async fn colour(&self) -> &'static str {
        self.request.colour.as_str()
    }

    /// How many persons it covers.
    async fn person_count(&self) -> usize {
        self.request.persons.len()
    }

    /// The persons it covers. Reading them is recorded in each person's
    /// access log (purpose "override approval").
    async fn persons(&self, ctx: &Context<'_>) -> Result<Vec<ID>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        for person in &self.request.persons {
            record_access(
                api,
                ctx.data_opt::<crate::graphql::api::AccessLedger>(),
                actor,
                *person,
                "override approval".into(),
                vec!["override.persons".into()],
            )
            .await?;
        }
        Ok(self
            .request
            .persons
            .iter()
            .map(|p| ID(p.to_string()))
            .collect())
    }

    /// The requesting official's actor id.
    async fn requested_by(&self) -> String {
        self.request.official.to_string()
    }

    /// Whether the caller requested it.
    async fn own_request(&self) -> bool {
        self.request.official == self.caller
    }

    /// The legal basis cited.
    async fn legal_basis(&self) -> &str {
        &self.request.legal_basis
    }

    /// Why.
    async fn reason(&self) -> &str {
        &self.request.reason
    }

    /// The appeal it answers, if any.
    async fn appeal_id(&self) -> Option<ID> {
        match &self.request.answers {
            OverrideAnswers::Appeal(a) => Some(ID(a.to_string())),
            OverrideAnswers::Case(_) => None,
        }
    }

    /// The case it answers, if any.
    async fn case_ref(&self) -> Option<&str> {
        match &self.request.answers {
            OverrideAnswers::Case(c) => Some(c),
            OverrideAnswers::Appeal(_) => None,
        }
    }

    /// When it was requested (RFC 3339).
    async fn requested_at(&self) -> Option<String> {
        rfc3339(self.request.at)
    }

    /// When it lapses (RFC 3339).
    async fn expires_at(&self) -> Option<String> {
        rfc3339(self.request.expires_at)
    }

    /// Whether the caller may approve it.
    async fn can_approve(&self) -> bool {
        self.approvable.is_ok()
    }

    /// Why the caller may not approve it, in words.
    async fn cannot_approve_because(&self) -> Option<&str> {
        self.approvable.as_ref().err().map(String::as_str)
    }
}

#[Object]
impl OverrideQuery {
    /// Bulk overrides within `region` waiting for a second official's
    /// approval, oldest first (lapsed requests are left out). For a health
    /// official of the region (only requests in their sub-regions), an
    /// auditor or an admin. Each says whether the caller may approve it:
    /// the requesting official may not.
    async fn pending_overrides(
        &self,
        ctx: &Context<'_>,
        region: String,
    ) -> Result<Vec<PendingOverride>> {
        let actor = caller(ctx)?;
        let api = api(ctx)?;
        let region: DivisionCode = api::division(api, "region", &region)?;
        let allowed = api::oversees(actor, &region);
        if !allowed {
            return Err(forbidden(
                actor,
                "pendingOverrides",
                "health_official (own region), auditor, admin",
            ));
        }
        let now = api.clock.now();
        let mut book = self.book.lock().await;
        book.catch_up(api.store.as_ref()).await?;
        let official = matches!(actor.role, Role::HealthOfficial { .. });
        let mut pending: Vec<PendingOverride> = book
            .streams
            .values()
            .flat_map(|s| s.requests.iter())
            .filter(|(_, r)| {
                !r.effective
                    && r.expires_at > now
                    && region.contains(&r.region)
                    && (!official || actor.has_health_authority_over(&r.region))
            })
            .map(|(id, r)| PendingOverride {
                id: *id,
                request: r.clone(),
                caller: actor.id,
                approvable: may_approve(actor, r),
            })
            .collect();
        pending.sort_by_key(|p| (p.request.at, p.id));
        Ok(pending)
    }
}
