//! Everything capstan prints: the engine sends events, the reporter owns stdout/stderr.

pub mod event;
pub mod human;
