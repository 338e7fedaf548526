//! The crate's integration tests, one binary (each test binary costs a
//! link and hundreds of MB): one module per former test file.

mod checkpoint_scenarios;
mod colour_history;
mod override_scenarios;
mod person_scenarios;
mod properties;
mod service;
mod state_cache;
mod support;
