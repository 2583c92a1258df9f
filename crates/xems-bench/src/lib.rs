//! The machinery of `xems-bench`: the measurement core, the load generator,
//! the services a benchmark starts, and one module per subcommand.
//!
//! A library so that every benchmark (and a later crate's) shares one way of
//! measuring, starting services and reporting. The binary `xems-bench` is a
//! thin command line over it.

pub mod crypto;
pub mod engine;
pub mod http;
pub mod loadgen;
pub mod measure;
pub mod memory;
pub mod report;
pub mod resp;
pub mod server;
pub mod services;
pub mod soak;
pub mod vault;
