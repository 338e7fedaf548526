//! The crate's integration tests, one binary (each test binary costs a
//! link and hundreds of MB): one module per former test file.

mod audit;
mod crash;
mod feed;
mod read_model;
mod runner;
mod support;
