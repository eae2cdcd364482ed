//! Test harness shared by the integration tests.
// Not every test module uses every helper.
#![allow(dead_code)]

pub mod agent;
pub mod capstan;
pub mod fleet;
