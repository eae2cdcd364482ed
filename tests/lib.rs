//! capstan's integration tests: one binary (see `autotests = false` in Cargo.toml).

mod audit;
mod check_cache;
mod ci_files;
mod cli_habits;
mod dtr;
mod exec;
mod foundation;
mod life_cycle;
mod lock;
mod module_graph;
mod pipeline;
mod quick_start;
mod reports;
mod run;
mod security;
mod security_transport;
mod settings;
mod support;
mod terminal;
mod transport;
