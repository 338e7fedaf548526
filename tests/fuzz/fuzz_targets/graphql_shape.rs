//! GraphQL documents through the gateway's shape limits: whatever the
//! bytes, parsing and `query_guard::check` never panic, and the check runs
//! in time linear in the document (a fragment fan-out is refused at once,
//! not expanded). Limits are the gateway's defaults.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tongban_graphql::config::Limits;
use tongban_graphql::query_guard::{check, ShapeLimits};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(document) = async_graphql::parser::parse_query(text) else {
        return;
    };
    let defaults = Limits::default();
    let limits = ShapeLimits {
        max_depth: defaults.max_depth,
        max_introspection_depth: defaults.max_introspection_depth,
        max_fields: defaults.max_fields,
        max_fragments: defaults.max_fragments,
    };
    let started = Instant::now();
    let verdict = check(&document, &limits);
    let elapsed = started.elapsed();
    // Linear work on at most a few KiB is microseconds; a second means the
    // check expands what it should only measure.
    assert!(
        elapsed < Duration::from_secs(1),
        "the shape check took {elapsed:?} on {} bytes: {verdict:?}",
        data.len()
    );
    if let Err(e) = verdict {
        // Every refusal has a code and a message for the caller.
        assert!(!e.code().is_empty());
        assert!(!e.to_string().is_empty());
    }
});
