//! capstan: an idempotent task runner over SSH for container clusters such as DTR.
//!
//! Data flows one way: arguments → inventory + playbook → templates → plan → engine
//! (transport, cache) → events → reporter.

pub mod diag;
pub mod inventory;
pub mod playbook;
pub mod rules;
pub mod secrets;
pub mod transport;
pub mod vars;

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    0
}
