//! Tongban's GraphQL gateway and the `tongban` binary.
//!
//! A tour:
//! - [`config`]: layered configuration (defaults, `tongban.toml`,
//!   `TONGBAN_*` environment variables, command-line flags); secrets never
//!   print.
//! - [`node`]: opens what a node runs on: the event store, the projection
//!   runner with every service's projections, the services themselves.
//! - [`chain`]: `verifyChain`, the auditor's paged recomputation of the
//!   log's hash chain.
//! - [`schema`]: the schema, merged from each service's GraphQL module (the
//!   gateway holds no domain logic) plus a few gateway fields.
//! - [`auth`]: bearer JWTs (Ed25519/RSA public keys, a JWKS file; HS256
//!   with a local key only in development mode) into a kernel `Actor`.
//! - [`limits`]: per-caller rate limits and the cap on requests in flight.
//! - [`query_guard`]: a document's shape (depth, fields once fragments are
//!   spread, fragments) measured in linear time before validation; the
//!   per-operation guards of WebSocket connections.
//! - [`metrics`]: Prometheus text metrics.
//! - [`server`]: the actix-web application: `/graphql` (GET, POST,
//!   WebSocket), `/graphiql`, `/healthz`, `/readyz`, `/metrics`, `/`.
//! - [`graphiql`]: GraphiQL, its page and bundles embedded from
//!   `graphql/graphiql/` and served at `/graphiql`.
//! - [`portal`]: the portal's pages (citizen, checkpoint, official,
//!   auditor), embedded from `graphql/portal/` and served at `/`.
//! - [`demo`]: seeds a city (Beijing) with persons, checkpoints and a
//!   Xinfadi-style outbreak.
//! - [`error`]: the gateway's errors and the HTTP answers they become.

pub mod auth;
pub mod chain;
pub mod config;
pub mod demo;
pub mod error;
pub mod graphiql;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod portal;
pub mod query_guard;
pub mod schema;
pub mod server;
pub mod streams;
