//! capstan's integration tests: one binary (see `autotests = false` in Cargo.toml).

mod run;
mod support;
mod transport;
