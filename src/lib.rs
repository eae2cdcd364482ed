//! capstan: an idempotent task runner over SSH for container clusters such as DTR.
//!
//! Data flows one way: arguments → inventory + playbook → templates → plan → engine
//! (transport, cache) → events → reporter.

pub mod app;
pub mod audit;
pub mod bytesize;
pub mod cache;
pub mod cli;
pub(crate) mod command;
pub(crate) mod connect;
pub mod context;
pub mod diag;
pub mod dtr;
pub mod duration;
pub mod engine;
pub mod error;
pub mod extra_vars;
pub mod inventory;
pub mod job;
pub mod last_run;
pub mod lock;
pub mod names;
pub mod orchestrator;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod rules;
pub mod secrets;
pub mod settings;
pub mod stop;
pub mod template;
pub mod transport;
pub mod validate;
pub mod vars;

pub use app::run;
