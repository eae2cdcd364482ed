//! Test harness shared by the integration tests.
// Not every test module uses every helper.
#![allow(dead_code)]

pub mod agent;
pub mod fleet;
pub mod capstan;
