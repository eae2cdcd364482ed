//! How commands reach a host: SSH (russh) or the local machine.
//!
//! The engine only sees [`Session::exec`]; one `Session` per host lives for the whole run,
//! and every command is a new channel on it.

use std::time::Duration;

/// One command to run on a host.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Passed to the remote login shell as `ssh host 'COMMAND'` would.
    pub command: String,
    /// Bytes written to the command's stdin, which is then closed. `None`: stdin is closed at once.
    pub stdin: Option<Vec<u8>>,
    /// Kill the command (SIGTERM to its process group, then close the channel) after this long.
    pub timeout: Option<Duration>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// Killed by a signal (name without `SIG`, e.g. `KILL`).
    Signal(String),
    /// capstan stopped it after its timeout.
    TimedOut(Duration),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
            ExitStatus::TimedOut(d) => {
                write!(f, "timed out after {}", humantime::format_duration(*d))
            }
        }
    }
}

/// What a command printed and how it ended. stdout and stderr are kept apart.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

use std::path::PathBuf;

use crate::inventory::{ConnectionKind, Host};

pub mod local;
pub mod ssh;

/// Why a host could not be reached or a command could not be run on it.
/// (A command that ran and failed is an [`ExecOutput`] with a non-zero status, not an error.)
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("connecting to {target} timed out after {}", humantime::format_duration(*.after))]
    ConnectTimeout { target: String, after: Duration },
    #[error(
        "host key of `{host}` is unknown ({algorithm} {fingerprint}); not in `{}`",
        known_hosts.display()
    )]
    UnknownHostKey {
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "host key of `{host}` has CHANGED ({algorithm} {fingerprint}); `{}` line {line} has a different key",
        known_hosts.display()
    )]
    ChangedHostKey {
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error(
        "host key of `{host}` ({algorithm} {fingerprint}) is REVOKED by `{}` line {line}",
        known_hosts.display()
    )]
    RevokedHostKey {
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error("authentication failed for {user}@{target} (tried: {tried})")]
    Auth {
        user: String,
        target: String,
        tried: String,
    },
    #[error("connection to {target} lost: {reason}")]
    Disconnected { target: String, reason: String },
    /// The host's lock no longer carries this run's token (the run was paused past
    /// `lock_stale_after` and someone broke it): the step was refused before it started.
    #[error("lock lost on `{host}`: another run holds it now; the step was not started")]
    LockLost { host: String },
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// The step was fenced off: this run no longer holds the host's lock.
    pub fn is_lock_lost(&self) -> bool {
        matches!(self, TransportError::LockLost { .. })
    }

    /// Unknown or changed host keys: reported together before any work, exit 3.
    pub fn is_host_key_problem(&self) -> bool {
        matches!(
            self,
            TransportError::UnknownHostKey { .. }
                | TransportError::ChangedHostKey { .. }
                | TransportError::RevokedHostKey { .. }
        )
    }
}

/// Run-wide connection options from the command line.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `-F FILE`; `None` means `~/.ssh/config` when it exists.
    pub ssh_config: Option<PathBuf>,
    /// `--accept-new-host-keys`: as `host_key_checking = "accept-new"` for every host.
    pub accept_new_host_keys: bool,
    /// May capstan prompt (for a key passphrase)? Never when stdin is not a terminal or CI is set.
    pub interactive: bool,
}

/// One open connection to one host, used for every command of the run.
pub enum Session {
    Ssh(ssh::SshSession),
    Local(local::LocalSession),
}

impl Session {
    /// Opens the host's connection (checking its host key), or a local session.
    pub async fn connect(host: &Host, opts: &ConnectOptions) -> Result<Session, TransportError> {
        match host.connection {
            ConnectionKind::Local => Ok(Session::Local(local::LocalSession::new(host))),
            ConnectionKind::Ssh => Ok(Session::Ssh(ssh::SshSession::connect(host, opts).await?)),
        }
    }

    /// Runs one command on a new channel and waits for it to end (or time out).
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, TransportError> {
        match self {
            Session::Ssh(s) => s.exec(req).await,
            Session::Local(s) => s.exec(req).await,
        }
    }

    /// `SHA256:...` of the host's key, for cache keys; `None` for a local session.
    pub fn host_key_fingerprint(&self) -> Option<String> {
        match self {
            Session::Ssh(s) => Some(s.host_key_fingerprint()),
            Session::Local(_) => None,
        }
    }

    /// Notes about how the connection was configured (e.g. an ignored ssh_config setting).
    pub fn notes(&self) -> &[String] {
        match self {
            Session::Ssh(s) => s.notes(),
            Session::Local(_) => &[],
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        match self {
            Session::Ssh(s) => s.close().await,
            Session::Local(_) => {}
        }
    }
}
