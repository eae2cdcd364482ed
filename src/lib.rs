//! capstan: an idempotent task runner over SSH for container clusters such as DTR.
//!
//! Data flows one way, and every module only uses the ones below it (a test reads the
//! `use crate::` lines and fails on a cycle: `tests/module_graph.rs`):
//!
//! ```text
//! main → app (dispatch) → command/* (one module per subcommand: clap types end here)
//!   → job (load and validate inputs offline; signals) → orchestrator (one run's life cycle:
//!     targets → connect → host keys → lock + fence → [plan re-check] → engine → audit →
//!     release → close)
//!       ├─ lock, audit, plan (saved plans), report (events → human | json | junit)
//!       ├─ dtr (the DTR kinds, a `ClusterRunner`) → rules (pure: upgrade table, HA)
//!       └─ engine (plays, batches, segments; decide.rs is the pure verdict) → kind
//!          (command, template) → script
//! inventory (+ settings), playbook (+ dtr_spec), template, vars, secrets, names, diag
//! transport (ssh | local: a fixed bootstrap, command and stdin on the channel), cache, stop
//! ```

pub mod app;
pub(crate) mod audit;
pub(crate) mod bytesize;
pub mod cache;
pub mod cli;
pub(crate) mod command;
pub(crate) mod connect;
pub(crate) mod context;
pub mod diag;
pub(crate) mod dtr;
pub(crate) mod duration;
pub(crate) mod engine;
pub(crate) mod error;
pub mod extra_vars;
pub mod inventory;
pub(crate) mod job;
pub(crate) mod last_run;
pub(crate) mod lock;
pub mod names;
pub(crate) mod orchestrator;
pub(crate) mod plan;
pub mod playbook;
pub mod report;
pub mod rules;
pub mod secrets;
pub(crate) mod settings;
pub(crate) mod stop;
pub mod template;
pub mod transport;
pub(crate) mod validate;
pub mod vars;

pub use app::run;
