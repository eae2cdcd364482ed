#[allow(dead_code)]
pub mod capstan;
