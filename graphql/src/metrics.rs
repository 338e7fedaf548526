//! Prometheus text metrics: requests by route and status class, request
//! latencies (histogram), GraphQL errors, event-store appends, and
//! projection lag (read at scrape time).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    /// Counts an append of `events` events.
    pub fn append(&self, events: usize) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.appended_events
            .fetch_add(events as u64, Ordering::Relaxed);
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
        out
    }
}
