//! capstan: an idempotent task runner over SSH for container clusters such as DTR.
//!
//! Data flows one way: arguments → inventory + playbook → templates → plan → engine
//! (transport, cache) → events → reporter.

pub mod app;
pub mod audit;
pub mod cache;
pub mod cache_command;
pub mod cli;
pub mod context;
pub mod diag;
pub mod dtr;
pub mod engine;
pub mod error;
pub mod extra_vars;
pub mod inventory;
pub mod job;
pub mod last_run;
pub mod lock;
pub mod names;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod rules;
pub mod secrets;
pub mod settings;
pub mod template;
pub mod transport;
pub mod validate;
pub mod vars;

pub use app::run;
