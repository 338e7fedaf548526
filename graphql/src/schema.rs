//! The schema: each service's GraphQL module merged in, plus a few gateway
//! fields. Adding a government service is one crate and one entry in each
//! merged type below.

use std::sync::Arc;

use async_graphql::{
    Context, MergedObject, MergedSubscription, Object, Result, Schema, SimpleObject,
};
use tongban_cases::graphql::{CasesMutation, CasesQuery, CasesSubscription};
use tongban_catalog::graphql::{CatalogMutation, CatalogQuery};
use tongban_health_code::graphql::{
    api::{coded, forbidden},
    caller, HealthCodeMutation, HealthCodeQuery, HealthCodeSubscription,
};
use tongban_kernel::Role;
use tongban_projection::{ProjectionRunner, RunState};
use tongban_store::EventStore;

use crate::config::Limits;
use crate::node::Node;

/// Every service's queries.
#[derive(MergedObject, Default)]
pub struct Query(
    HealthCodeQuery,
    CatalogQuery,
    CasesQuery,
    GatewayQuery,
    crate::chain::ChainQuery,
    crate::streams::StreamQuery,
);

/// Every service's mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(HealthCodeMutation, CatalogMutation, CasesMutation);

/// Every service's subscriptions.
#[derive(MergedSubscription, Default)]
pub struct Subscription(HealthCodeSubscription, CasesSubscription);

/// The gateway's schema.
pub type TongbanSchema = Schema<Query, Mutation, Subscription>;

/// Gateway-level queries: who am I, the log head, projection status, and
/// in development mode the demo's roles for the portal's sign-in page.
#[derive(Default)]
pub struct GatewayQuery;

#[cfg(test)]
mod origin_tests {
    use super::RequestOrigin;

    fn origin(peer: &str, host: Option<&str>) -> RequestOrigin {
        RequestOrigin {
            peer: Some(peer.parse().expect("ip")),
            host: host.map(str::to_owned),
        }
    }

    #[test]
    fn demo_tokens_go_to_loopback_clients_asking_for_a_loopback_name_only() {
        assert!(origin("127.0.0.1", Some("127.0.0.1:8080")).is_local());
        assert!(origin("127.0.0.1", Some("localhost:8080")).is_local());
        assert!(origin("::1", Some("[::1]:8080")).is_local());
        // DNS rebinding: the page's own name pointed at 127.0.0.1.
        assert!(!origin("127.0.0.1", Some("evil.example:8080")).is_local());
        assert!(!origin("10.0.0.7", Some("127.0.0.1:8080")).is_local());
        assert!(!origin("127.0.0.1", None).is_local());
    }
}

/// Where a request came from: the client's address and the `Host` it asked
/// for (demo tokens go only to this machine, asked for by a loopback name,
/// so a page from elsewhere that rebinds a DNS name to 127.0.0.1 gets none).
#[derive(Clone, Debug, Default)]
pub struct RequestOrigin {
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
    /// The `Host` header.
    pub host: Option<String>,
}

impl RequestOrigin {
    /// A loopback client asking for a loopback host name.
    pub fn is_local(&self) -> bool {
        let Some(host) = self.host.as_deref() else {
            return false;
        };
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let loopback_name = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        self.peer.is_some_and(|p| p.is_loopback()) && loopback_name
    }
}

/// Where the demo's roles are, in development mode only (`None` otherwise).
pub struct DemoRoles {
    /// The data directory (development key and `demo-roles.json`).
    pub data: Option<std::path::PathBuf>,
}

/// One of the demo's roles with a fresh development token.
#[derive(SimpleObject)]
pub struct DemoRole {
    /// What the role is, e.g. `citizen (Huaxiang, exposed)`.
    pub label: String,
    /// Role name.
    pub role: String,
    /// A development token, valid 24 hours.
    pub token: String,
}

/// The caller as the gateway sees them.
#[derive(SimpleObject)]
pub struct Whoami {
    /// Actor id.
    pub id: String,
    /// Role name.
    pub role: String,
    /// Region (health officials).
    pub region: Option<String>,
}

/// The end of the log and its chain hash (sign and publish it).
#[derive(SimpleObject)]
pub struct LogHead {
    /// Position.
    pub position: u64,
    /// Hash chain head (hex).
    pub hash: String,
}

/// A projection's status.
#[derive(SimpleObject)]
pub struct ProjectionInfo {
    /// Name.
    pub name: String,
    /// catching_up, live, failed, stopped.
    pub state: String,
    /// Last position applied.
    pub position: Option<u64>,
    /// Events behind the head.
    pub events_behind: u64,
    /// Seconds behind.
    pub seconds_behind: f64,
}

#[Object]
impl GatewayQuery {
    /// The authenticated caller.
    async fn whoami(&self, ctx: &Context<'_>) -> Result<Whoami> {
        let actor = caller(ctx)?;
        Ok(Whoami {
            id: actor.id.to_string(),
            role: actor.role_name().into(),
            region: match &actor.role {
                Role::HealthOfficial { region, .. } => Some(region.to_string()),
                _ => None,
            },
        })
    }

    /// The log head (auditor, admin).
    async fn log_head(&self, ctx: &Context<'_>) -> Result<Option<LogHead>> {
        let actor = caller(ctx)?;
        if !matches!(actor.role, Role::Auditor | Role::Admin) {
            return Err(forbidden(actor, "logHead", "auditor, admin"));
        }
        let store = ctx.data::<Arc<dyn EventStore>>()?;
        let head = store
            .head()
            .await
            .map_err(|e| coded(e.code(), e.to_string()))?;
        Ok(head.map(|h| LogHead {
            position: h.position.0,
            hash: h.hash.to_hex(),
        }))
    }

    /// Development mode only, after `tongban demo` seeded this data
    /// directory, and only to a client on this machine that asked for a
    /// loopback host name: the demo's roles, each with a fresh 24-hour
    /// token, for the portal's sign-in page. Empty otherwise (and always in
    /// production).
    async fn demo_roles(&self, ctx: &Context<'_>) -> Result<Vec<DemoRole>> {
        let Some(data) = ctx.data::<DemoRoles>()?.data.as_deref() else {
            return Ok(Vec::new());
        };
        if !ctx
            .data_opt::<RequestOrigin>()
            .is_some_and(RequestOrigin::is_local)
        {
            return Ok(Vec::new());
        }
        let Ok(text) = std::fs::read_to_string(crate::demo::roles_path(data)) else {
            return Ok(Vec::new());
        };
        let roles: Vec<(String, crate::auth::Claims)> = serde_json::from_str(&text)
            .map_err(|e| coded("INTERNAL", format!("demo-roles.json is unreadable: {e}")))?;
        let secret = crate::auth::dev_key(data, false)
            .map_err(|e| coded("INTERNAL", e.to_string()))?
            .ok_or_else(|| coded("NOT_FOUND", "no development key in the data directory"))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        roles
            .into_iter()
            .map(|(label, mut claims)| {
                claims.iat = now;
                claims.exp = now + 24 * 3600;
                let token = crate::auth::mint_dev(&secret, &claims)
                    .map_err(|e| coded("INTERNAL", e.to_string()))?;
                Ok(DemoRole {
                    label,
                    role: claims.role,
                    token,
                })
            })
            .collect()
    }

    /// Projection status (auditor, admin).
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionInfo>> {
        let actor = caller(ctx)?;
        if !matches!(actor.role, Role::Auditor | Role::Admin) {
            return Err(forbidden(actor, "projections", "auditor, admin"));
        }
        let runner = ctx.data::<Arc<ProjectionRunner>>()?;
        let statuses = runner
            .statuses()
            .await
            .map_err(|e| coded("INTERNAL", e.to_string()))?;
        Ok(statuses
            .into_iter()
            .map(|s| ProjectionInfo {
                name: s.name,
                state: match s.state {
                    RunState::CatchingUp => "catching_up".into(),
                    RunState::Live => "live".into(),
                    RunState::Failed { error, .. } => format!("failed: {error}"),
                    RunState::Stopped => "stopped".into(),
                },
                position: s.position.map(|p| p.0),
                events_behind: s.events_behind,
                seconds_behind: s.seconds_behind,
            })
            .collect())
    }
}

/// Builds the schema with the node's services and the limits (the shape
/// of documents is measured by [`crate::query_guard`]; the executor's own
/// depth rule is not used, as it cannot tell introspection apart).
pub fn build(
    node: &Node,
    limits: &Limits,
    limiter: Arc<crate::limits::RateLimiter>,
) -> TongbanSchema {
    // The schema's names bound the labels of per-operation metrics.
    let names = Arc::new(std::sync::OnceLock::new());
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(node.health_code.clone())
    .data(node.catalog.clone())
    .data(node.cases.clone())
    .data(node.store.clone())
    .data(node.runner.clone())
    .data(DemoRoles {
        data: (node.config.mode == crate::config::Mode::Development)
            .then(|| node.config.data.clone()),
    })
    .extension(crate::query_guard::QueryGuard {
        limits: crate::query_guard::ShapeLimits {
            max_depth: limits.max_depth,
            max_introspection_depth: limits.max_introspection_depth,
            max_fields: limits.max_fields,
            max_fragments: limits.max_fragments,
        },
        limiter,
        timeout: std::time::Duration::from_millis(limits.request_timeout_ms),
        max_operations_per_connection: limits.max_operations_per_connection,
    })
    .extension(crate::metrics::OperationMetrics {
        metrics: node.metrics.clone(),
        names: names.clone(),
    })
    .limit_complexity(limits.max_complexity);
    let builder = if node.config.introspection_enabled() {
        builder
    } else {
        builder.disable_introspection()
    };
    let schema = builder.finish();
    let _ = names.set(schema.names().into_iter().collect());
    schema
}
