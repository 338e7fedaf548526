//! The HTTP application: `/graphql` (POST, GET, WebSocket with
//! `graphql-transport-ws` and `graphql-ws`), `/graphiql`, `/healthz`,
//! `/readyz`, `/metrics`, the hub's public region keys at
//! `/.well-known/tongban/keys.json` (no authentication: peers and offline
//! verifiers fetch it), and the portal at `/` (see [`crate::portal`]).
//! [`app`] wraps them in the middleware every request passes: responses
//! compressed (gzip, brotli) when the caller accepts it, and each request
//! counted by route and status class for `/metrics`.
//!
//! Before a request runs: the bearer token is verified (401 with the reason
//! otherwise), the caller's rate limit is taken (429, keyed on the verified
//! subject), a slot among the requests in flight is taken (503 with
//! `Retry-After` past the cap), the body size is checked (413) and a POST
//! must be JSON (415). The document's shape is measured before validation
//! ([`crate::query_guard`], also for WebSocket operations); the request
//! runs under a timeout that counts the time it queued (503); a panic in a
//! resolver is a 500 `INTERNAL`; an answer larger than the cap is refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Compress;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context as _;
use async_graphql::{Data, ServerError};
use async_graphql_actix_web::GraphQLSubscription;
use futures::StreamExt;
use serde_json::json;
use tongban_projection::{ProjectionRunner, RunState};
use tongban_store::EventStore;

use crate::auth::{Identity, Verifier};
use crate::config::Limits;
use crate::error::GatewayError;
use crate::limits::{InFlight, RateKey, RateLimiter};
use crate::metrics::{Metrics, Route};
use crate::node::Node;
use crate::query_guard::WebSocketConnection;
use crate::schema::{self, RequestOrigin, TongbanSchema};

/// Shared by every worker.
pub struct AppState {
    /// The schema.
    pub schema: TongbanSchema,
    /// Token verification.
    pub verifier: Arc<Verifier>,
    /// Per-caller rate limits (shared with the WebSocket guard).
    pub limiter: Arc<RateLimiter>,
    /// The cap on requests in flight.
    pub in_flight: InFlight,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// Projections (readiness, lag).
    pub runner: Arc<ProjectionRunner>,
    /// The log (readiness, head).
    pub store: Arc<dyn EventStore>,
    /// Whether `/graphiql` is served.
    pub graphiql: bool,
    /// Region signing keys (their public halves are published).
    pub keys: Arc<tongban_health_code::graphql::Keyring>,
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

fn peer_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

fn rate_key(req: &HttpRequest, identity: Option<&Identity>) -> RateKey {
    match identity {
        Some(identity) => RateKey::caller(&identity.actor),
        None => RateKey::address(peer_ip(req)),
    }
}

fn origin(req: &HttpRequest) -> RequestOrigin {
    RequestOrigin {
        peer: peer_ip(req),
        host: req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
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
        } else if e.message.starts_with("Failed to parse") || e.message.starts_with("Invalid value")
        {
            // An argument the executor could not take (type or range).
            "INVALID_INPUT"
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
    req: &HttpRequest,
    started: Instant,
    identity: Option<Identity>,
    mut request: async_graphql::Request,
) -> Result<HttpResponse, GatewayError> {
    use futures::FutureExt as _;
    if let Some(identity) = identity {
        identity.insert_into(&mut request.data);
    }
    request.data.insert(origin(req));
    let budget = Duration::from_millis(state.limits.request_timeout_ms);
    let timed_out = || GatewayError::Timeout(state.limits.request_timeout_ms);
    let _slot = tokio::time::timeout(budget, state.in_flight.enter())
        .await
        .map_err(|_| timed_out())??;
    // The timeout counts the time spent waiting for the slot.
    let left = budget
        .checked_sub(started.elapsed())
        .ok_or_else(timed_out)?;
    let run = std::panic::AssertUnwindSafe(state.schema.execute(request)).catch_unwind();
    let mut response = match tokio::time::timeout(left, run).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a resolver panicked".into());
            tracing::error!(panic = %what, "a GraphQL request panicked");
            return Err(GatewayError::Internal(
                "the request failed unexpectedly; it has been logged".into(),
            ));
        }
        Ok(Ok(response)) => response,
    };
    if response.is_err() {
        state.metrics.graphql_error();
        explain(&mut response.errors, &state.limits);
    }
    let body = serde_json::to_vec(&response).map_err(|e| GatewayError::Internal(e.to_string()))?;
    if body.len() > state.limits.max_response_bytes {
        return Err(GatewayError::ResponseTooLarge {
            size: body.len(),
            limit: state.limits.max_response_bytes,
        });
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// Whether a POST body is declared as JSON (`application/json`, any
/// parameters, or the GraphQL-over-HTTP media type).
fn is_json(headers: &HeaderMap) -> Result<(), GatewayError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = value
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json" | "application/graphql-response+json") => Ok(()),
        _ => Err(GatewayError::UnsupportedMediaType(value.map(str::to_owned))),
    }
}

/// The answer to a result (requests are counted by [`app`]'s middleware).
fn finish(state: &AppState, result: Result<HttpResponse, GatewayError>) -> HttpResponse {
    match result {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, GatewayError::RateLimited { .. }) {
                state.metrics.rate_limited();
            }
            actix_web::ResponseError::error_response(&e)
        }
    }
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
        state.limiter.check(&rate_key(&req, actor.as_ref()))?;
        is_json(req.headers())?;
        let body = read_body(req.headers(), payload, state.limits.max_body_bytes).await?;
        let request: async_graphql::Request = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::BadRequest(format!(
                "the body must be JSON `{{\"query\": ..., \"variables\": ...}}`: {e}"
            ))
        })?;
        execute(&state, &req, started, actor, request).await
    }
    .await;
    finish(&state, result)
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
        return finish(&state, result);
    }
    let result = async {
        let actor = authenticate(&state, req.headers())?;
        state.limiter.check(&rate_key(&req, actor.as_ref()))?;
        let mut request = async_graphql::http::parse_query_string(req.query_string())
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        refuse_mutation_over_get(&mut request)?;
        execute(&state, &req, started, actor, request).await
    }
    .await;
    finish(&state, result)
}

/// A GET runs queries only: the operation's type is read from the parsed
/// document (a comment or whitespace before `mutation` changes nothing).
fn refuse_mutation_over_get(request: &mut async_graphql::Request) -> Result<(), GatewayError> {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        // Let the executor word the syntax error.
        return Ok(());
    };
    let writes = match (&document.operations, name.as_deref()) {
        (DocumentOperations::Single(op), _) => op.node.ty != OperationType::Query,
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get(name)
            .is_some_and(|op| op.node.ty != OperationType::Query),
        (DocumentOperations::Multiple(ops), None) => {
            ops.values().any(|op| op.node.ty != OperationType::Query)
        }
    };
    if writes {
        return Err(GatewayError::BadRequest(
            "mutations and subscriptions are not run over GET: POST mutations, subscribe over a WebSocket".into(),
        ));
    }
    Ok(())
}

fn subscribe(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let identity = authenticate(state, req.headers())?;
    let key = rate_key(req, identity.as_ref());
    state.limiter.check(&key)?;
    let running = Arc::new(AtomicUsize::new(0));
    let mut data = Data::default();
    data.insert(origin(req));
    data.insert(WebSocketConnection {
        rate_key: key,
        running: running.clone(),
    });
    if let Some(identity) = identity {
        identity.insert_into(&mut data);
    }
    let verifier = state.verifier.clone();
    // Counted as open until the connection's input ends.
    let open = state.metrics.websocket_opened();
    let payload = first_message_within(
        payload,
        Duration::from_millis(state.limits.ws_init_timeout_ms),
    )
    .map(move |item| {
        let _held = &open;
        item
    });
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
                data.insert(WebSocketConnection {
                    rate_key: RateKey::caller(&identity.actor),
                    running,
                });
                identity.insert_into(&mut data);
            }
            Ok(data)
        })
        .start(req, payload)
        .map_err(|e| GatewayError::BadRequest(format!("WebSocket handshake failed: {e}")))
}

/// A WebSocket that sends nothing after the upgrade (no `connection_init`)
/// is closed after `limit` instead of holding a connection forever.
fn first_message_within(
    payload: web::Payload,
    limit: Duration,
) -> impl futures::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> {
    futures::stream::unfold((payload, Some(limit)), |(mut payload, limit)| async move {
        let item = match limit {
            Some(limit) => match tokio::time::timeout(limit, payload.next()).await {
                Ok(item) => item,
                Err(_) => Some(Err(actix_web::error::PayloadError::Io(
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection_init in time"),
                ))),
            },
            None => payload.next().await,
        };
        item.map(|item| (item, (payload, None)))
    })
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

/// Where a hub publishes its region keys.
pub const PUBLIC_KEYS_PATH: &str = "/.well-known/tongban/keys.json";

/// The hub's public region keys (as last loaded): region, kid, algorithm,
/// public key (base64url), status, whether it signs, not-before. Retired
/// keys stay listed so that verifiers elsewhere drop them too.
async fn public_keys(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(json!({ "keys": state.keys.published() }))
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
        .route("/healthz", crate::portal::get_or_head().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route(PUBLIC_KEYS_PATH, web::get().to(public_keys))
        .configure(crate::graphiql::routes)
        .configure(crate::portal::routes);
}

/// Which route a request is counted under.
fn route_of(req: &ServiceRequest) -> Route {
    if req.path() != "/graphql" {
        return Route::Other;
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        Route::Subscription
    } else {
        Route::Graphql
    }
}

/// The application `tongban serve` runs (and in-process tests call): the
/// routes, each request counted, responses compressed.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    App::new()
        .app_data(state)
        .wrap_fn(move |req, srv| {
            use actix_web::dev::Service as _;
            let started = Instant::now();
            let route = route_of(&req);
            let metrics = metrics.clone();
            let answer = srv.call(req);
            async move {
                let res = answer.await;
                let status = match &res {
                    Ok(res) => res.status().as_u16(),
                    Err(e) => e.as_response_error().status_code().as_u16(),
                };
                metrics.request(route, status, started.elapsed());
                res
            }
        })
        .wrap(Compress::default())
        .configure(routes)
}

/// The state every worker shares, for `node` (also what in-process tests
/// serve).
pub fn app_state(node: &Node, verifier: Verifier) -> web::Data<AppState> {
    let limits = node.config.limits.clone();
    let limiter = Arc::new(RateLimiter::new(limits.rate_per_second, limits.rate_burst));
    web::Data::new(AppState {
        schema: schema::build(node, &limits, limiter.clone()),
        verifier: Arc::new(verifier),
        limiter,
        in_flight: InFlight::new(
            limits.max_in_flight,
            Duration::from_millis(limits.queue_wait_ms),
        ),
        metrics: node.metrics.clone(),
        limits,
        runner: node.runner.clone(),
        store: node.store.clone(),
        graphiql: node.config.graphiql_enabled(),
        keys: node.health_code.keyring.clone(),
    })
}

/// Serves `node` until SIGINT/SIGTERM, then drains requests, stops the
/// projections and flushes the store. `ready` is called with the bound
/// address before serving.
pub async fn serve(
    node: Node,
    verifier: Verifier,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let state = app_state(&node, verifier);
    node.metrics
        .watch_runtime(tokio::runtime::Handle::current());
    let app_state = state.clone();
    let mut server = HttpServer::new(move || app(app_state.clone()))
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
    eprintln!("Tongban: shutting down (signal received): requests drained, stopping projections and flushing the log");
    tracing::info!("stopped serving; flushing");
    drop(state);
    node.close().await;
    eprintln!("Tongban: stopped");
    Ok(())
}
