//! The top-level error: every failure that ends a command, with its exit code.
//! Errors are printed in exactly one place (`app::run`).

use crate::diag::Diagnostics;

/// Exit codes (documented in docs/cli.md).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const USAGE: i32 = 1;
    pub const HOSTS_FAILED: i32 = 2;
    pub const REFUSED: i32 = 3;
    pub const PENDING_CHANGES: i32 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input files, located.
    #[error("{0}")]
    Input(Diagnostics),
    /// A refusal before any change: unknown hosts, host keys, safety rules.
    #[error("error: {0}")]
    Refused(String),
    /// Unknown or changed host keys; the reporter has listed them all.
    #[error("")]
    HostKeys(String),
    /// capstan itself could not work (runtime, I/O outside the inputs).
    #[error("error: {0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) | Error::Refused(_) | Error::HostKeys(_) => exit::REFUSED,
            Error::Internal(_) => exit::USAGE,
        }
    }
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Error::Input(d.sorted())
    }
}
