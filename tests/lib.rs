//! capstan's integration tests: one binary (see `autotests = false` in Cargo.toml).

mod support;
mod transport;
