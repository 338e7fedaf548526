//! The crate's integration tests, one binary (each test binary costs a
//! link and hundreds of MB): one module per former test file.

mod chain_witness;
mod conformance_endpoint;
