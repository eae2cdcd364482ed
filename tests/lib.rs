//! capstan's integration tests: one binary (see `autotests = false` in Cargo.toml).

mod check_cache;
mod foundation;
mod run;
mod support;
mod transport;
