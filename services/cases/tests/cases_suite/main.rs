//! The crate's integration tests, one binary (each test binary costs a
//! link and hundreds of MB): one module per former test file.

mod cross_domain;
mod token_roles;
mod workflow_scenarios;
