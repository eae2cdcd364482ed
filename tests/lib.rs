//! capstan's integration tests: one binary (see `autotests = false` in Cargo.toml).

mod audit;
mod check_cache;
mod ci_files;
mod dtr;
mod foundation;
mod lock;
mod pipeline;
mod reports;
mod run;
mod security_transport;
mod support;
mod transport;
