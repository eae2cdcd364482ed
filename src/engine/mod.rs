//! The execution engine: plays, batches, tasks and hosts.

pub mod script;
