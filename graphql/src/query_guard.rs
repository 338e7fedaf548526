//! The shape of a GraphQL document, measured before anything else looks at
//! it, and the per-operation guards of the WebSocket transport.
//!
//! A document's fragments are expanded wherever they are spread, so a
//! kilobyte of `fragment F0 on Query { ...F1 ...F1 }` chains describes
//! billions of fields: measured naively (as the executor's own depth and
//! complexity rules do) the measurement itself runs for minutes. Here each
//! fragment is measured once (memoised) and its expanded size saturates, so
//! the cost of the check is linear in the document. A document is refused
//! when it defines too many fragments, expands to too many fields, nests
//! too deep, or spreads fragments in a cycle. Introspection (`__schema`,
//! `__type`) has a depth limit of its own: the standard introspection
//! query nests type references a dozen levels deep, which is harmless.
//!
//! [`QueryGuard`] runs the check as an async-graphql extension, so HTTP and
//! WebSocket operations pass the same gate; on a WebSocket it also takes
//! the caller's rate limit per operation, caps the operations a connection
//! runs at once, and bounds each query or mutation by the request timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextSubscribe,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Request, Response, ServerError, ServerResult};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::limits::{RateKey, RateLimiter};

/// The limits a document's shape must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Deepest nesting of fields outside introspection.
    pub max_depth: usize,
    /// Deepest nesting inside `__schema` / `__type`.
    pub max_introspection_depth: usize,
    /// Most selections (fields, spreads, inline fragments) once every
    /// fragment is expanded, over all operations.
    pub max_fields: u64,
    /// Most fragment definitions in one document.
    pub max_fragments: usize,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// `QUERY_TOO_DEEP`.
    #[error("query is nested too deep: {depth} levels, the limit is {limit} levels{}", if *.introspection { " for introspection" } else { "" })]
    TooDeep {
        /// Measured depth (at least).
        depth: usize,
        /// The limit.
        limit: usize,
        /// Whether the deep path is inside introspection.
        introspection: bool,
    },
    /// `QUERY_TOO_COMPLEX`.
    #[error("query is too large: it expands to {fields} selections once fragments are spread, the limit is {limit}")]
    TooManyFields {
        /// Expanded field count (saturated).
        fields: u64,
        /// The limit.
        limit: u64,
    },
    /// `TOO_MANY_FRAGMENTS`.
    #[error("query defines {count} fragments, the limit is {limit}")]
    TooManyFragments {
        /// Fragments defined.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// `GRAPHQL_VALIDATION_FAILED`: a fragment spreads itself, directly or not.
    #[error("fragment `{0}` spreads itself (a cycle)")]
    FragmentCycle(String),
    /// `GRAPHQL_VALIDATION_FAILED`: a spread names no fragment.
    #[error("unknown fragment `{0}`")]
    UnknownFragment(String),
}

impl ShapeError {
    /// The `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooDeep { .. } => "QUERY_TOO_DEEP",
            Self::TooManyFields { .. } => "QUERY_TOO_COMPLEX",
            Self::TooManyFragments { .. } => "TOO_MANY_FRAGMENTS",
            Self::FragmentCycle(_) | Self::UnknownFragment(_) => "GRAPHQL_VALIDATION_FAILED",
        }
    }

    fn into_server_error(self) -> ServerError {
        coded_error(self.code(), self.to_string())
    }
}

fn coded_error(code: &'static str, message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    e
}

/// What a selection set expands to.
#[derive(Clone, Copy, Default, Debug)]
struct Measure {
    /// Selections, saturating.
    fields: u64,
    /// Deepest nesting of ordinary fields.
    depth: usize,
    /// Deepest nesting of paths through `__schema` / `__type`.
    introspection_depth: usize,
}

impl Measure {
    fn merge(&mut self, other: Measure) {
        self.fields = self.fields.saturating_add(other.fields);
        self.depth = self.depth.max(other.depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
    }
}

enum Memo {
    InProgress,
    Done(Measure),
}

struct Measurer<'a> {
    fragments: &'a HashMap<Name, async_graphql::Positioned<FragmentDefinition>>,
    /// Keyed by fragment and whether it is spread inside introspection.
    memo: HashMap<(&'a str, bool), Memo>,
}

impl<'a> Measurer<'a> {
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        in_introspection: bool,
    ) -> Result<Measure, ShapeError> {
        let mut total = Measure::default();
        for item in &set.items {
            let m = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let inside = in_introspection || name == "__schema" || name == "__type";
                    let child = self.selection_set(&field.selection_set.node, inside)?;
                    let mut m = Measure {
                        fields: child.fields.saturating_add(1),
                        ..Measure::default()
                    };
                    if inside {
                        m.introspection_depth = child.introspection_depth + 1;
                    } else {
                        m.depth = child.depth + 1;
                    }
                    m
                }
                // A spread or inline fragment is a selection too: visiting
                // it is work even when it adds no field.
                Selection::InlineFragment(inline) => {
                    let mut m =
                        self.selection_set(&inline.node.selection_set.node, in_introspection)?;
                    m.fields = m.fields.saturating_add(1);
                    m
                }
                Selection::FragmentSpread(spread) => {
                    let mut m =
                        self.fragment(spread.node.fragment_name.node.as_str(), in_introspection)?;
                    m.fields = m.fields.saturating_add(1);
                    m
                }
            };
            total.merge(m);
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, in_introspection: bool) -> Result<Measure, ShapeError> {
        match self.memo.get(&(name, in_introspection)) {
            Some(Memo::Done(m)) => return Ok(*m),
            Some(Memo::InProgress) => return Err(ShapeError::FragmentCycle(name.to_owned())),
            None => {}
        }
        let definition = self
            .fragments
            .get(name)
            .ok_or_else(|| ShapeError::UnknownFragment(name.to_owned()))?;
        self.memo.insert((name, in_introspection), Memo::InProgress);
        let m = self.selection_set(&definition.node.selection_set.node, in_introspection)?;
        self.memo.insert((name, in_introspection), Memo::Done(m));
        Ok(m)
    }
}

/// Measures `document` against `limits`, in time linear in its size.
pub fn check(document: &ExecutableDocument, limits: &ShapeLimits) -> Result<(), ShapeError> {
    if document.fragments.len() > limits.max_fragments {
        return Err(ShapeError::TooManyFragments {
            count: document.fragments.len(),
            limit: limits.max_fragments,
        });
    }
    let mut measurer = Measurer {
        fragments: &document.fragments,
        memo: HashMap::new(),
    };
    let mut total = Measure::default();
    let operations: Vec<_> = match &document.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => map.values().collect(),
    };
    for op in operations {
        total.merge(measurer.selection_set(&op.node.selection_set.node, false)?);
    }
    // Fragments never spread are still validated by the executor.
    for name in document.fragments.keys() {
        let m = measurer.fragment(name.as_str(), false)?;
        total.fields = total.fields.saturating_add(m.fields);
    }
    if total.depth > limits.max_depth {
        return Err(ShapeError::TooDeep {
            depth: total.depth,
            limit: limits.max_depth,
            introspection: false,
        });
    }
    if total.introspection_depth > limits.max_introspection_depth {
        return Err(ShapeError::TooDeep {
            depth: total.introspection_depth,
            limit: limits.max_introspection_depth,
            introspection: true,
        });
    }
    if total.fields > limits.max_fields {
        return Err(ShapeError::TooManyFields {
            fields: total.fields,
            limit: limits.max_fields,
        });
    }
    Ok(())
}

/// Marks an operation that arrived over a WebSocket (connection data).
#[derive(Clone, Debug)]
pub struct WebSocketConnection {
    /// Whose rate limit its operations take.
    pub rate_key: RateKey,
    /// Operations running now on this connection.
    pub running: Arc<AtomicUsize>,
}

/// The guard, as an async-graphql extension.
pub struct QueryGuard {
    /// Shape limits.
    pub limits: ShapeLimits,
    /// Rate limits (WebSocket operations take them here; HTTP requests in
    /// the handler, where a refusal becomes a 429).
    pub limiter: Arc<RateLimiter>,
    /// Longest a WebSocket query or mutation runs.
    pub timeout: Duration,
    /// Most operations one WebSocket connection runs at once.
    pub max_operations_per_connection: usize,
}

impl ExtensionFactory for QueryGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryGuardExtension {
            limits: self.limits,
            limiter: self.limiter.clone(),
            timeout: self.timeout,
            max_operations: self.max_operations_per_connection,
        })
    }
}

struct QueryGuardExtension {
    limits: ShapeLimits,
    limiter: Arc<RateLimiter>,
    timeout: Duration,
    max_operations: usize,
}

/// Decrements a connection's running count when its operation ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait::async_trait]
impl Extension for QueryGuardExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(ws) = ctx.data_opt::<WebSocketConnection>() {
            self.limiter
                .check(&ws.rate_key)
                .map_err(|e| coded_error(e.code(), e.to_string()))?;
        }
        // Measured before the executor parses on its own: its recursion
        // check follows every spread of every fragment, so it must only see
        // documents whose expansion is known to be small. A document that
        // does not parse is left to the executor to word the syntax error.
        if let Ok(document) = request.parsed_query() {
            check(document, &self.limits).map_err(ShapeError::into_server_error)?;
        }
        // Reads of a person are recorded once per request (or subscription).
        request
            .data
            .insert(tongban_health_code::graphql::api::AccessLedger::default());
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if ctx.data_opt::<WebSocketConnection>().is_none() {
            // HTTP requests run under the handler's timeout (a 503).
            return next.run(ctx, operation_name).await;
        }
        match tokio::time::timeout(self.timeout, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => Response::from_errors(vec![coded_error(
                "TIMEOUT",
                format!(
                    "the operation did not finish within {} ms and was cancelled",
                    self.timeout.as_millis()
                ),
            )]),
        }
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let Some(ws) = ctx.data_opt::<WebSocketConnection>() else {
            return next.run(ctx, stream);
        };
        let before = ws.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(ws.running.clone());
        if before >= self.max_operations {
            drop(running);
            let error = coded_error(
                "TOO_MANY_OPERATIONS",
                format!(
                    "this connection already runs {before} operations, the limit is {}",
                    self.max_operations
                ),
            );
            return futures::stream::once(async move { Response::from_errors(vec![error]) })
                .boxed();
        }
        next.run(ctx, stream)
            .map(move |response| {
                let _held = &running;
                response
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ShapeLimits = ShapeLimits {
        max_depth: 10,
        max_introspection_depth: 20,
        max_fields: 2_000,
        max_fragments: 100,
    };

    fn shape(query: &str) -> Result<(), ShapeError> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        check(&document, &LIMITS)
    }

    fn fan_out(levels: usize) -> String {
        let mut q = String::from("query { ...F0 }");
        for i in 0..levels {
            q.push_str(&format!(
                " fragment F{i} on Query {{ ...F{n} ...F{n} }}",
                n = i + 1
            ));
        }
        q.push_str(&format!(
            " fragment F{levels} on Query {{ whoami {{ id }} }}"
        ));
        q
    }

    #[test]
    fn a_fragment_fan_out_is_refused_at_once_however_many_levels() {
        for levels in [12, 26, 30, 60] {
            let started = std::time::Instant::now();
            let err = shape(&fan_out(levels)).unwrap_err();
            assert!(matches!(err, ShapeError::TooManyFields { .. }), "{err}");
            assert_eq!(err.code(), "QUERY_TOO_COMPLEX");
            // Linear work: far below a millisecond per level even in debug.
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn a_small_fan_out_within_the_limits_passes() {
        shape(&fan_out(5)).unwrap();
    }

    #[test]
    fn depth_counts_fields_inside_spread_fragments() {
        let q = "query { ...A } fragment A on Query { a { b { c { d { e { f { g { h { i { j { k } } } } } } } } } } }";
        let err = shape(q).unwrap_err();
        assert_eq!(
            err,
            ShapeError::TooDeep {
                depth: 11,
                limit: 10,
                introspection: false
            }
        );
    }

    #[test]
    fn introspection_has_its_own_depth_limit() {
        let nested = "ofType { ".repeat(12) + "name" + &" }".repeat(12);
        let q = format!("{{ __schema {{ types {{ fields {{ type {{ {nested} }} }} }} }} }}");
        shape(&q).unwrap();
        let too_deep = "ofType { ".repeat(20) + "name" + &" }".repeat(20);
        let q = format!("{{ __schema {{ types {{ fields {{ type {{ {too_deep} }} }} }} }} }}");
        assert!(matches!(
            shape(&q),
            Err(ShapeError::TooDeep {
                introspection: true,
                ..
            })
        ));
    }

    #[test]
    fn cycles_unknown_fragments_and_too_many_fragments_are_named() {
        assert_eq!(
            shape("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"),
            Err(ShapeError::FragmentCycle("A".into()))
        );
        assert_eq!(
            shape("{ ...Missing }"),
            Err(ShapeError::UnknownFragment("Missing".into()))
        );
        let mut q = String::from("{ whoami { id } }");
        for i in 0..101 {
            q.push_str(&format!(" fragment F{i} on Query {{ whoami {{ id }} }}"));
        }
        assert!(matches!(
            shape(&q),
            Err(ShapeError::TooManyFragments { count: 101, .. })
        ));
    }

    #[test]
    fn aliases_count_as_fields() {
        let q = format!(
            "{{ {} }}",
            (0..2001)
                .map(|i| format!("a{i}: whoami {{ id }}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(matches!(shape(&q), Err(ShapeError::TooManyFields { .. })));
    }
}
