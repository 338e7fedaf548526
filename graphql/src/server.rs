//! The HTTP application: `/graphql` (POST, GET, WebSocket with
//! `graphql-transport-ws` and `graphql-ws`), `/graphiql`, `/healthz`,
//! `/readyz`, `/metrics`, and the portal at `/` (see [`crate::portal`]).
//!
//! Before a request runs: the bearer token is verified (401 with the reason
//! otherwise), the token's rate limit is taken (429), the body size is
//! checked (413). The schema enforces depth and complexity; the request
//! runs under a timeout (503).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context as _;
use async_graphql::http::GraphiQLSource;
use async_graphql::{Data, ServerError};
use async_graphql_actix_web::GraphQLSubscription;
use futures::StreamExt;
use serde_json::json;
use tongban_projection::{ProjectionRunner, RunState};
use tongban_store::EventStore;

use crate::auth::{Identity, Verifier};
use crate::config::Limits;
use crate::error::GatewayError;
use crate::limits::RateLimiter;
use crate::metrics::{Metrics, Route};
use crate::node::Node;
use crate::schema::{self, TongbanSchema};

/// Shared by every worker.
pub struct AppState {
    /// The schema.
    pub schema: TongbanSchema,
    /// Token verification.
    pub verifier: Arc<Verifier>,
    /// Per-token rate limits.
    pub limiter: RateLimiter,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// Projections (readiness, lag).
    pub runner: Arc<ProjectionRunner>,
    /// The log (readiness, head).
    pub store: Arc<dyn EventStore>,
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Identity>, GatewayError> {
    match headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                GatewayError::Unauthenticated("the Authorization header is not text".into())
            })?;
            state.verifier.verify_header_identity(text).map(Some)
        }
    }
}

fn rate_key(req: &HttpRequest) -> String {
    match req.headers().get(header::AUTHORIZATION) {
        Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        None => req
            .peer_addr()
            .map_or_else(|| "anonymous".into(), |a| a.ip().to_string()),
    }
}

/// Gives errors raised by the executor itself a code and a clearer message.
fn explain(errors: &mut [ServerError], limits: &Limits) {
    for e in errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if e.message.contains("nested too deep") {
            e.message = format!(
                "query is nested too deep: the limit is {} levels",
                limits.max_depth
            );
            "QUERY_TOO_DEEP"
        } else if e.message.contains("too complex") {
            e.message = format!(
                "query is too complex: the limit is {} (one per field, lists count their `limit`)",
                limits.max_complexity
            );
            "QUERY_TOO_COMPLEX"
        } else if e.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "INTERNAL"
        };
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, GatewayError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(GatewayError::BodyTooLarge { size: len, limit });
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::BodyTooLarge {
                size: body.len() + chunk.len(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn execute(
    state: &AppState,
    identity: Option<Identity>,
    mut request: async_graphql::Request,
) -> Result<HttpResponse, GatewayError> {
    if let Some(identity) = identity {
        identity.insert_into(&mut request.data);
    }
    let timeout = Duration::from_millis(state.limits.request_timeout_ms);
    let mut response = tokio::time::timeout(timeout, state.schema.execute(request))
        .await
        .map_err(|_| GatewayError::Timeout(state.limits.request_timeout_ms))?;
    if response.is_err() {
        state.metrics.graphql_error();
        explain(&mut response.errors, &state.limits);
    }
    let body =
        serde_json::to_vec(&response).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

fn finish(
    state: &AppState,
    route: Route,
    started: Instant,
    result: Result<HttpResponse, GatewayError>,
) -> HttpResponse {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, GatewayError::RateLimited { .. }) {
                state.metrics.rate_limited();
            }
            actix_web::ResponseError::error_response(&e)
        }
    };
    state
        .metrics
        .request(route, response.status().as_u16(), started.elapsed());
    response
}

#[tracing::instrument(name = "graphql.post", skip_all)]
async fn graphql_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let result = async {
        let actor = authenticate(&state, req.headers())?;
        state.limiter.check(&rate_key(&req))?;
        let body = read_body(req.headers(), payload, state.limits.max_body_bytes).await?;
        let request: async_graphql::Request = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::BadRequest(format!(
                "the body must be JSON `{{\"query\": ..., \"variables\": ...}}`: {e}"
            ))
        })?;
        execute(&state, actor, request).await
    }
    .await;
    finish(&state, Route::Graphql, started, result)
}

#[tracing::instrument(name = "graphql.get", skip_all)]
async fn graphql_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        let result = subscribe(&state, &req, payload);
        return finish(&state, Route::Subscription, started, result);
    }
    let result = async {
        let actor = authenticate(&state, req.headers())?;
        state.limiter.check(&rate_key(&req))?;
        let request = async_graphql::http::parse_query_string(req.query_string())
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        if request.query.trim_start().starts_with("mutation") {
            return Err(GatewayError::BadRequest(
                "mutations must be sent with POST".into(),
            ));
        }
        execute(&state, actor, request).await
    }
    .await;
    finish(&state, Route::Graphql, started, result)
}

fn subscribe(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    state.limiter.check(&rate_key(req))?;
    let mut data = Data::default();
    if let Some(identity) = authenticate(state, req.headers())? {
        identity.insert_into(&mut data);
    }
    let verifier = state.verifier.clone();
    GraphQLSubscription::new(state.schema.clone())
        .with_data(data)
        .on_connection_init(move |value| async move {
            let mut data = Data::default();
            let token = ["Authorization", "authorization", "token"]
                .iter()
                .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
                .map(str::to_owned);
            if let Some(token) = token {
                let identity = if token.contains(' ') {
                    verifier.verify_header_identity(&token)
                } else {
                    verifier.verify_identity(&token)
                }
                .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                identity.insert_into(&mut data);
            }
            Ok(data)
        })
        .start(req, payload)
        .map_err(|e| GatewayError::BadRequest(format!("WebSocket handshake failed: {e}")))
}

async fn graphiql() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("Tongban GraphiQL")
                .finish(),
        )
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.head().await;
    let projections = state.runner.statuses().await;
    let (ready, detail) = match (&store, &projections) {
        (Ok(head), Ok(statuses)) => {
            let live = statuses.iter().all(|s| s.state == RunState::Live);
            let list: Vec<_> = statuses
                .iter()
                .map(|s| json!({"name": s.name, "state": format!("{:?}", s.state), "eventsBehind": s.events_behind}))
                .collect();
            (
                live,
                json!({"store": "open", "head": head.map(|h| h.position.0), "projections": list}),
            )
        }
        (Err(e), _) => (false, json!({"store": e.to_string()})),
        (_, Err(e)) => (false, json!({"projections": e.to_string()})),
    };
    let mut res = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.json(json!({"ready": ready, "detail": detail}))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let head = state
        .store
        .head()
        .await
        .ok()
        .flatten()
        .map(|h| h.position.0);
    let lag: Vec<_> = state
        .runner
        .statuses()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.events_behind, s.seconds_behind))
        .collect();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(head, &lag))
}

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/graphql", web::post().to(graphql_post))
        .route("/graphql", web::get().to(graphql_get))
        .route("/graphiql", web::get().to(graphiql))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .configure(crate::portal::routes);
}

/// Serves `node` until SIGINT/SIGTERM, then drains requests, stops the
/// projections and flushes the store. `ready` is called with the bound
/// address before serving.
pub async fn serve(
    node: Node,
    verifier: Verifier,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let limits = node.config.limits.clone();
    let state = web::Data::new(AppState {
        schema: schema::build(&node, &limits),
        verifier: Arc::new(verifier),
        limiter: RateLimiter::new(limits.rate_per_second, limits.rate_burst),
        metrics: node.metrics.clone(),
        limits,
        runner: node.runner.clone(),
        store: node.store.clone(),
    });
    let app_state = state.clone();
    let mut server =
        HttpServer::new(move || App::new().app_data(app_state.clone()).configure(routes))
            .shutdown_timeout(10)
            .backlog(2048);
    if let Some(w) = node.config.workers {
        server = server.workers(w.max(1));
    }
    let server = server
        .bind(node.config.listen)
        .with_context(|| format!("failed to listen on {}", node.config.listen))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .unwrap_or(node.config.listen);
    ready(addr);
    server.run().await.context("the HTTP server failed")?;
    tracing::info!("stopped serving; flushing");
    drop(state);
    node.close().await;
    Ok(())
}
