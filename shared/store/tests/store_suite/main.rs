//! The crate's integration tests, one binary (each test binary costs a
//! link and hundreds of MB): one module per former test file.

mod conformance_embedded;
mod crash;
mod format_and_tamper;
mod model;
