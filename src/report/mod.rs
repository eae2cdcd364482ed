//! Everything capstan prints: the engine sends events, the reporter owns stdout/stderr.

pub mod colour;
pub mod escape;
pub mod event;
pub mod fanout;
pub mod human;
pub mod json;
pub mod junit;
pub mod summary;
