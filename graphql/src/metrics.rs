//! Prometheus text metrics: requests by route and status class (every
//! request passes [`Metrics::request`] in the application's middleware),
//! request latencies (histogram), GraphQL operations by type and first root
//! field ([`OperationMetrics`], an async-graphql extension), GraphQL
//! errors, event-store appends with scans and colour changes among them,
//! open WebSocket connections and the operations they run, build info, and
//! what is read at scrape time: the process (`/proc/self`), the async
//! runtime, the log's head and projection lag.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextSubscribe,
};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection,
};
use async_graphql::{Request, Response, ServerResult};
use futures::StreamExt as _;

/// Routes counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/graphql` over HTTP.
    Graphql,
    /// `/graphql` over WebSocket.
    Subscription,
    /// Everything else.
    Other,
}

impl Route {
    fn index(self) -> usize {
        match self {
            Route::Graphql => 0,
            Route::Subscription => 1,
            Route::Other => 2,
        }
    }
    const NAMES: [&'static str; 3] = ["graphql", "subscription", "other"];
}

const BUCKETS_MS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
];
const CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// The counters.
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; 3]; 3],
    buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    graphql_errors: AtomicU64,
    appends: AtomicU64,
    appended_events: AtomicU64,
    rate_limited: AtomicU64,
    scans: AtomicU64,
    colour_changes: AtomicU64,
    websocket_connections: AtomicI64,
    websocket_operations: AtomicI64,
    operations: Mutex<BTreeMap<OperationLabel, OperationStats>>,
    runtime: OnceLock<tokio::runtime::Handle>,
}

/// What an operation is counted under: its type and its first root field
/// (a name of the schema, so the label set is bounded by the schema).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OperationLabel {
    /// `query`, `mutation` or `subscription`.
    pub kind: &'static str,
    /// The first root field, `__introspection` for `__schema`/`__type`, or
    /// `unknown` for a name the schema does not have.
    pub field: String,
}

/// A per-operation counter family: name, help, value.
type OperationFamily = (&'static str, &'static str, fn(&OperationStats) -> String);

#[derive(Default)]
struct OperationStats {
    count: u64,
    errors: u64,
    seconds: f64,
}

/// Counts an open WebSocket connection until dropped.
pub struct WebSocketGuard(Arc<Metrics>);

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        self.0.websocket_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a running WebSocket operation until dropped.
struct OperationGuard(Arc<Metrics>);

impl Drop for OperationGuard {
    fn drop(&mut self) {
        self.0.websocket_operations.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Counts a request.
    pub fn request(&self, route: Route, status: u16, took: Duration) {
        let class = match status {
            500.. => 2,
            400..=499 => 1,
            _ => 0,
        };
        self.requests[route.index()][class].fetch_add(1, Ordering::Relaxed);
        let ms = took.as_secs_f64() * 1000.0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts GraphQL responses that carried errors.
    pub fn graphql_error(&self) {
        self.graphql_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a rejected request.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an append of events of these types (scans and colour
    /// changes are counted by their type name).
    pub fn append<'a>(&self, types: impl IntoIterator<Item = &'a str>) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        for event_type in types {
            self.appended_events.fetch_add(1, Ordering::Relaxed);
            let name = event_type.split('.').next().unwrap_or_default();
            match name {
                "CodeScanned" => self.scans.fetch_add(1, Ordering::Relaxed),
                "ColourChanged" => self.colour_changes.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    }

    /// Counts an open WebSocket connection for as long as the guard lives.
    pub fn websocket_opened(self: &Arc<Self>) -> WebSocketGuard {
        self.websocket_connections.fetch_add(1, Ordering::Relaxed);
        WebSocketGuard(self.clone())
    }

    /// The runtime whose tasks `/metrics` reports (the node's main runtime).
    pub fn watch_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.runtime.set(handle);
    }

    /// Counts a GraphQL operation that ran (`took`), with or without errors.
    pub fn operation(&self, label: &OperationLabel, took: Option<Duration>, failed: bool) {
        let mut operations = self
            .operations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = operations.entry(label.clone()).or_default();
        stats.count += 1;
        stats.errors += u64::from(failed);
        stats.seconds += took.map_or(0.0, |t| t.as_secs_f64());
    }

    /// Renders the text format; `lag` is (projection, events behind, seconds behind).
    pub fn render(&self, head: Option<u64>, lag: &[(String, u64, f64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tongban_http_requests_total HTTP requests by route and status class."
        );
        let _ = writeln!(out, "# TYPE tongban_http_requests_total counter");
        for (r, name) in Route::NAMES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tongban_http_requests_total{{route=\"{name}\",status=\"{class}\"}} {}",
                    self.requests[r][c].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tongban_http_request_duration_seconds Request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE tongban_http_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tongban_http_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                b / 1000.0
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "tongban_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "tongban_http_request_duration_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "tongban_http_request_duration_seconds_count {count}");
        let counters = [
            (
                "tongban_graphql_errors_total",
                "GraphQL responses with errors.",
                &self.graphql_errors,
            ),
            (
                "tongban_rate_limited_total",
                "Requests rejected by the rate limit.",
                &self.rate_limited,
            ),
            (
                "tongban_store_appends_total",
                "Appends to the event store.",
                &self.appends,
            ),
            (
                "tongban_store_appended_events_total",
                "Events appended.",
                &self.appended_events,
            ),
            (
                "tongban_scans_total",
                "Codes scanned at checkpoints and venues (CodeScanned events appended).",
                &self.scans,
            ),
            (
                "tongban_colour_changes_total",
                "Health-code colour changes (ColourChanged events appended).",
                &self.colour_changes,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP tongban_store_head_position Position of the last event in the log."
        );
        let _ = writeln!(out, "# TYPE tongban_store_head_position gauge");
        let _ = writeln!(
            out,
            "tongban_store_head_position {}",
            head.map_or(-1, |h| h as i64)
        );
        let _ = writeln!(out, "# HELP tongban_projection_lag_events Events between a projection's checkpoint and the head.");
        let _ = writeln!(out, "# TYPE tongban_projection_lag_events gauge");
        for (name, events, _) in lag {
            let _ = writeln!(
                out,
                "tongban_projection_lag_events{{projection=\"{name}\"}} {events}"
            );
        }
        let _ = writeln!(out, "# HELP tongban_projection_lag_seconds Age of the oldest event a projection has not applied.");
        let _ = writeln!(out, "# TYPE tongban_projection_lag_seconds gauge");
        for (name, _, seconds) in lag {
            let _ = writeln!(
                out,
                "tongban_projection_lag_seconds{{projection=\"{name}\"}} {seconds}"
            );
        }
        self.render_operations(&mut out);
        self.render_live(&mut out);
        render_process(&mut out);
        let _ = writeln!(
            out,
            "# HELP tongban_build_info The running build (always 1)."
        );
        let _ = writeln!(out, "# TYPE tongban_build_info gauge");
        let _ = writeln!(
            out,
            "tongban_build_info{{version=\"{}\",rustc=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_RUST_VERSION"),
        );
        out
    }

    fn render_operations(&self, out: &mut String) {
        let operations = self
            .operations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let families: [OperationFamily; 3] = [
            (
                "tongban_graphql_operations_total",
                "GraphQL operations by type and first root field.",
                |s| s.count.to_string(),
            ),
            (
                "tongban_graphql_operation_errors_total",
                "GraphQL queries and mutations answered with errors, by type and first root field.",
                |s| s.errors.to_string(),
            ),
            (
                "tongban_graphql_operation_seconds_total",
                "Time spent executing queries and mutations, by type and first root field.",
                |s| s.seconds.to_string(),
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (label, stats) in operations.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{type=\"{}\",field=\"{}\"}} {}",
                    label.kind,
                    label.field,
                    value(stats)
                );
            }
        }
    }

    fn render_live(&self, out: &mut String) {
        let gauges = [
            (
                "tongban_websocket_connections",
                "Open GraphQL WebSocket connections.",
                self.websocket_connections.load(Ordering::Relaxed),
            ),
            (
                "tongban_websocket_operations",
                "Operations running over WebSockets now (open subscriptions, mostly).",
                self.websocket_operations.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", value.max(0));
        }
        let runtimes = [
            ("main", self.runtime.get().cloned()),
            ("http_worker", tokio::runtime::Handle::try_current().ok()),
        ];
        let _ = writeln!(
            out,
            "# HELP tongban_runtime_alive_tasks Tasks alive on a Tokio runtime (the node's main runtime, the HTTP worker that answered this scrape)."
        );
        let _ = writeln!(out, "# TYPE tongban_runtime_alive_tasks gauge");
        for (name, handle) in &runtimes {
            if let Some(h) = handle {
                let _ = writeln!(
                    out,
                    "tongban_runtime_alive_tasks{{runtime=\"{name}\"}} {}",
                    h.metrics().num_alive_tasks()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tongban_runtime_global_queue_depth Tasks waiting in a Tokio runtime's global queue."
        );
        let _ = writeln!(out, "# TYPE tongban_runtime_global_queue_depth gauge");
        for (name, handle) in &runtimes {
            if let Some(h) = handle {
                let _ = writeln!(
                    out,
                    "tongban_runtime_global_queue_depth{{runtime=\"{name}\"}} {}",
                    h.metrics().global_queue_depth()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tongban_runtime_workers Worker threads of a Tokio runtime."
        );
        let _ = writeln!(out, "# TYPE tongban_runtime_workers gauge");
        for (name, handle) in &runtimes {
            if let Some(h) = handle {
                let _ = writeln!(
                    out,
                    "tongban_runtime_workers{{runtime=\"{name}\"}} {}",
                    h.metrics().num_workers()
                );
            }
        }
    }
}

/// Linux's USER_HZ: the unit of CPU times in `/proc` (100 on every
/// architecture Linux exposes to user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// The standard `process_*` figures, read from `/proc/self` (absent
/// elsewhere or when `/proc` cannot be read).
fn render_process(out: &mut String) {
    let mut figures: Vec<(&str, &str, &str, f64)> = Vec::new();
    // Fields after the command name (which may hold spaces) in /proc/self/stat.
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3).and_then(|v| v.parse().ok()) };
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        figures.push((
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            (user + system) / TICKS_PER_SECOND,
        ));
    }
    if let Some(threads) = field(20) {
        figures.push(("process_threads", "gauge", "OS threads.", threads));
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        figures.push((
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            boot + start / TICKS_PER_SECOND,
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kilobytes = |key: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
    };
    if let Some(rss) = kilobytes("VmRSS:") {
        figures.push((
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * 1024.0,
        ));
    }
    if let Some(virt) = kilobytes("VmSize:") {
        figures.push((
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            virt * 1024.0,
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        figures.push((
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            fds.count() as f64,
        ));
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    if let Some(max) = max_fds {
        figures.push((
            "process_max_fds",
            "gauge",
            "Most file descriptors the process may open.",
            max,
        ));
    }
    for (name, kind, help, value) in figures {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The label of the operation a document runs: its type and first root
/// field. `names` are the schema's names; anything else is `unknown`.
pub fn label_of(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    names: &HashSet<String>,
) -> Option<OperationLabel> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) => ops.values().next()?,
    };
    let kind = match operation.node.ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    let field = first_field(document, &operation.node.selection_set.node.items, 0)
        .map(|f| {
            if f.starts_with("__") && f != "__typename" {
                "__introspection".to_owned()
            } else if names.contains(f) || f == "__typename" {
                f.to_owned()
            } else {
                "unknown".to_owned()
            }
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Some(OperationLabel { kind, field })
}

/// The first field of a selection set, looking into fragments (a few levels).
fn first_field<'d>(
    document: &'d ExecutableDocument,
    items: &'d [async_graphql::Positioned<Selection>],
    depth: usize,
) -> Option<&'d str> {
    if depth > 8 {
        return None;
    }
    items.iter().find_map(|item| match &item.node {
        Selection::Field(f) => Some(f.node.name.node.as_str()),
        Selection::InlineFragment(f) => {
            first_field(document, &f.node.selection_set.node.items, depth + 1)
        }
        Selection::FragmentSpread(s) => document
            .fragments
            .get(&s.node.fragment_name.node)
            .and_then(|f| first_field(document, &f.node.selection_set.node.items, depth + 1)),
    })
}

/// Counts operations by label, and WebSocket operations while they run.
pub struct OperationMetrics {
    /// Where they are counted.
    pub metrics: Arc<Metrics>,
    /// The schema's names, set once the schema is built.
    pub names: Arc<OnceLock<HashSet<String>>>,
}

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExtension {
            metrics: self.metrics.clone(),
            names: self.names.clone(),
        })
    }
}

struct OperationMetricsExtension {
    metrics: Arc<Metrics>,
    names: Arc<OnceLock<HashSet<String>>>,
}

#[async_trait::async_trait]
impl Extension for OperationMetricsExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let empty = HashSet::new();
        let names = self.names.get().unwrap_or(&empty);
        let name = request.operation_name.clone();
        let label = request
            .parsed_query()
            .ok()
            .and_then(|document| label_of(document, name.as_deref(), names));
        if let Some(label) = label {
            if label.kind == "subscription" {
                // Subscriptions are counted when they start; they have no
                // single duration.
                self.metrics.operation(&label, None, false);
            }
            request.data.insert(label);
        }
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        // Each event of a subscription passes here too: subscriptions were
        // counted once, when they started.
        if let Some(label) = ctx
            .data_opt::<OperationLabel>()
            .filter(|l| l.kind != "subscription")
        {
            self.metrics
                .operation(label, Some(started.elapsed()), response.is_err());
        }
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        if ctx
            .data_opt::<crate::query_guard::WebSocketConnection>()
            .is_none()
        {
            return next.run(ctx, stream);
        }
        self.metrics
            .websocket_operations
            .fetch_add(1, Ordering::Relaxed);
        let guard = OperationGuard(self.metrics.clone());
        next.run(ctx, stream)
            .map(move |response| {
                let _held = &guard;
                response
            })
            .boxed()
    }
}
