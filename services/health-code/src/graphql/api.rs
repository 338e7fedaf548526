//! What the resolvers share: [`HealthCodeApi`] and the helpers that turn a
//! caller and a domain error into GraphQL answers.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Error, ErrorExtensions};
use tongban_kernel::{Actor, Clock, DivisionCode, Divisions, PersonId, Role};
use tongban_projection::{ProjectionError, ProjectionRunner, ReadModels};
use tongban_store::{EventStore, StoreError};

use crate::error::HealthCodeError;
use crate::graphql::keys::Keyring;
use crate::graphql::store::SharedStore;
use crate::handler::HealthCodeService;
use crate::projections::{Tables, VIEWS};

/// The command handler the GraphQL module drives.
pub type Service = HealthCodeService<SharedStore>;

/// Context data of the health-code resolvers.
pub struct HealthCodeApi {
    /// Commands.
    pub service: Arc<Service>,
    /// The log (for positions).
    pub store: Arc<dyn EventStore>,
    /// The projections (read models and feeds).
    pub runner: Arc<ProjectionRunner>,
    /// Region signing keys.
    pub keyring: Arc<Keyring>,
    /// Personal-data keys (the same vault the service seals with).
    pub vault: Arc<dyn crate::vault::KeyVault>,
    /// Division codes.
    pub divisions: Arc<Divisions>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Longest wait for read models to reach a position (read-your-writes).
    pub read_wait: Duration,
    /// The read-model tables.
    pub tables: Tables,
}

/// The persons whose reads a request (or a subscription) has recorded
/// already: reading a person is one access event per request, however many
/// aliases, fields or replayed records name them. The gateway puts a fresh
/// ledger into every request's data.
#[derive(Debug, Default)]
pub struct AccessLedger(std::sync::Mutex<std::collections::HashSet<PersonId>>);

impl AccessLedger {
    /// Whether this is the first read of `person` (and notes it).
    pub fn first_read_of(&self, person: PersonId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(person)
    }
}

/// Builds a GraphQL error with `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// `FORBIDDEN`, naming the field and who may see it.
/// Whether `actor` oversees health data of `region`: a health official with
/// authority over it, an auditor or an admin.
pub fn oversees(actor: &Actor, region: &DivisionCode) -> bool {
    match &actor.role {
        Role::HealthOfficial { .. } => actor.has_health_authority_over(region),
        Role::Auditor | Role::Admin => true,
        _ => false,
    }
}

pub fn forbidden(actor: &Actor, what: &str, who: &str) -> Error {
    coded(
        "FORBIDDEN",
        format!(
            "a {} may not read or do `{what}`; allowed: {who}",
            actor.role_name()
        ),
    )
}

/// Maps a domain error to a GraphQL error with its `extensions.code` and,
/// beside it, the stable GB/T 38963-style `extensions.returnCode` (see
/// [`crate::operations::ReturnCode`]).
pub fn domain(e: HealthCodeError) -> Error {
    let return_code = crate::operations::ReturnCode::of(&e).code();
    let code = e.extension_code();
    Error::new(e.to_string()).extend_with(move |_, x| {
        x.set("code", code);
        x.set("returnCode", return_code);
    })
}

/// Maps a read-side error.
pub fn read_side(e: ProjectionError) -> Error {
    coded(e.code(), e.to_string())
}

/// Maps a store error.
pub fn store(e: StoreError) -> Error {
    coded(e.code(), e.to_string())
}

/// A time as RFC 3339 (`INTERNAL` if it cannot be written, which a time
/// from the log never is).
pub fn rfc3339(t: time::OffsetDateTime) -> Result<String, Error> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| coded("INTERNAL", format!("failed to format {t}: {e}")))
}

/// `INVALID_INPUT` for `field`.
pub fn invalid(field: &str, rule: impl std::fmt::Display) -> Error {
    coded("INVALID_INPUT", format!("invalid `{field}`: {rule}"))
}

/// The authenticated caller, or `UNAUTHENTICATED`.
pub fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Actor, Error> {
    ctx.data_opt::<Actor>().ok_or_else(|| {
        coded(
            "UNAUTHENTICATED",
            "this field needs a bearer token (Authorization: Bearer <jwt>)",
        )
    })
}

/// The context data (an `Arc<HealthCodeApi>`), or `INTERNAL`.
pub fn api<'a>(ctx: &Context<'a>) -> Result<&'a HealthCodeApi, Error> {
    ctx.data::<Arc<HealthCodeApi>>()
        .map(|a| a.as_ref())
        .map_err(|_| coded("INTERNAL", "the health-code service is not configured"))
}

/// Parses a division code for `field`, checking it exists.
pub fn division(
    api: &HealthCodeApi,
    field: &'static str,
    text: &str,
) -> Result<DivisionCode, Error> {
    api.divisions
        .parse_known(text.trim())
        .map_err(|e| domain(HealthCodeError::division(field, e)))
}

/// A numeric argument within `1..=max` (`default` when not given), or
/// `INVALID_INPUT` naming the argument.
pub fn bounded(field: &str, value: Option<u32>, default: u32, max: u32) -> Result<u32, Error> {
    let v = value.unwrap_or(default);
    if (1..=max).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(field, format!("{v} is not between 1 and {max}")))
    }
}

/// Parses a person id for `field`.
pub fn person_id(field: &'static str, text: &str) -> Result<PersonId, Error> {
    PersonId::parse(text.trim()).map_err(|_| invalid(field, format!("`{text}` is not a UUID")))
}

/// The person a command is about: the given id, or the caller themself.
pub fn subject(actor: &Actor, given: Option<&str>) -> Result<PersonId, Error> {
    match (given, &actor.role) {
        (Some(id), _) => person_id("personId", id),
        (None, Role::Citizen { person }) => Ok(*person),
        (None, _) => Err(invalid(
            "personId",
            "is required unless a citizen acts for themself",
        )),
    }
}

/// Whether the caller is the person.
pub fn is_self(actor: &Actor, person: &str) -> bool {
    matches!(&actor.role, Role::Citizen { person: p } if p.to_string() == person)
}

impl HealthCodeApi {
    /// The read models of the `health_code` projection.
    pub fn models(&self) -> Result<ReadModels, Error> {
        self.runner.read_models(VIEWS).map_err(read_side)
    }

    /// The log's head position (what a mutation returns for read-your-writes).
    pub async fn position(&self) -> Result<u64, Error> {
        Ok(self
            .store
            .head()
            .await
            .map_err(store)?
            .map_or(0, |h| h.position.0))
    }

    /// Waits, bounded by `read_wait`, until the read models reached `min`.
    pub async fn wait(&self, min: Option<u64>) -> Result<(), Error> {
        let Some(min) = min else { return Ok(()) };
        self.runner
            .wait_for(VIEWS, tongban_store::Position(min), self.read_wait)
            .await
            .map_err(read_side)
    }

    /// Makes sure `region` can sign codes.
    pub fn ensure_key(&self, region: DivisionCode) -> Result<(), Error> {
        self.keyring.ensure(&self.service, region).map_err(domain)
    }

    /// Reloads the region keys when `token` names a key this node does not
    /// know yet (rotated on another replica). A store that fails is logged:
    /// the token is then judged on the keys already loaded.
    pub fn refresh_keys_for(&self, token: &[u8]) {
        if let Err(error) = self.keyring.refresh_for_token(&self.service, token) {
            tracing::warn!(%error, "failed to reload the region keys for an unknown key id");
        }
    }

    /// [`ensure_key`](Self::ensure_key) for callers outside GraphQL.
    pub fn ensure_key_for(&self, region: DivisionCode) -> Result<(), HealthCodeError> {
        self.keyring.ensure(&self.service, region)
    }
}
