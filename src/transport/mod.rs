//! How commands reach a host: SSH (russh) or the local machine.
//!
//! The engine only sees [`Session::exec`]; one `Session` per host lives for the whole run,
//! and every command is a new channel on it.
//!
//! Whatever the connection, the host is asked to run one fixed, short program (see
//! [`frame`]); the command itself and its stdin follow on the command's stdin, so that no
//! script, rendered command or file content is ever an argument on the host's (or the
//! controller's) process list. That program also kills the command's process group when the
//! connection goes away under it, and takes "stop" requests (see [`Stop`]).

use std::time::Duration;

mod capture;
mod frame;

pub use capture::Cut;

/// One command to run on a host.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Run by the remote login shell, as `ssh host 'COMMAND'` would, but sent on stdin.
    pub command: String,
    /// Bytes the command reads on its stdin, which then ends. `None`: an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// Stop the command (TERM to its process group, KILL after the grace period) after this long.
    pub timeout: Option<Duration>,
}

/// What the run's owner asks of the commands still running (Ctrl-C, SIGTERM, SIGHUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Stop {
    /// Nothing: let commands run.
    #[default]
    Continue,
    /// TERM each command's process group, KILL it after the grace period.
    Terminate,
    /// KILL each command's process group now.
    Kill,
}

/// How a command may be stopped and how much of its output is kept.
#[derive(Debug, Clone)]
pub struct ExecControl {
    /// Stop requests from the run's owner. `None`: only the timeout stops the command.
    pub stop: Option<tokio::sync::watch::Receiver<Stop>>,
    /// Between TERM and KILL, on a stop request or a timeout (rounded up to whole seconds).
    pub grace: Duration,
    /// Bytes of stdout, and of stderr, kept per record; the rest is counted and dropped.
    pub output_limit: usize,
    /// Output made of records, each starting with this marker (a step script's marks):
    /// the limit applies to each record, and markers are always kept.
    pub record_mark: Option<Vec<u8>>,
}

/// Per stream and per command (or per step of a script): `[settings] output_limit`'s default.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;
/// Between TERM and KILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// For [`Session::exec`]: internal commands (lock, cache, audit) read files of the host,
/// which may be larger than a task's output; still bounded.
const INTERNAL_OUTPUT_LIMIT: usize = 64 * 1024 * 1024;

impl ExecControl {
    /// For capstan's own commands (lock, cache, audit): not stoppable, a generous limit.
    pub(crate) fn internal() -> ExecControl {
        ExecControl {
            output_limit: INTERNAL_OUTPUT_LIMIT,
            ..ExecControl::default()
        }
    }
}

impl Default for ExecControl {
    fn default() -> Self {
        ExecControl {
            stop: None,
            grace: DEFAULT_GRACE,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            record_mark: None,
        }
    }
}

/// Follows a run's [`Stop`] requests for one command: each level is reported once.
pub(crate) struct StopWatch {
    rx: Option<tokio::sync::watch::Receiver<Stop>>,
    seen: Stop,
}

impl StopWatch {
    pub(crate) fn new(control: &ExecControl) -> StopWatch {
        StopWatch {
            rx: control.stop.clone(),
            seen: Stop::Continue,
        }
    }

    /// The next level above the last one reported; never, once `Kill` was, or without a
    /// stop channel (or when its sender is gone).
    pub(crate) async fn next(&mut self) -> Stop {
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return std::future::pending().await;
            };
            let level = *rx.borrow_and_update();
            if level > self.seen {
                self.seen = level;
                return level;
            }
            if self.seen == Stop::Kill || rx.changed().await.is_err() {
                self.rx = None;
            }
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// Killed by a signal (name without `SIG`, e.g. `KILL`).
    Signal(String),
    /// capstan stopped it after its timeout.
    TimedOut(Duration),
    /// capstan stopped it because the run was asked to stop (see [`Stop`]).
    Cancelled,
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
            ExitStatus::Cancelled => write!(f, "stopped: the run was interrupted"),
        }
    }
}

/// What a command printed and how it ended. stdout and stderr are kept apart.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// What was kept of stdout (see [`ExecControl::output_limit`]).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
    /// Where stdout was cut, and how many bytes were dropped there.
    pub stdout_cuts: Vec<Cut>,
    pub stderr_cuts: Vec<Cut>,
}

impl ExecOutput {
    /// A command that was never started because the run was already stopping.
    fn cancelled_before_start() -> ExecOutput {
        ExecOutput {
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: ExitStatus::Cancelled,
            stdout_cuts: Vec::new(),
            stderr_cuts: Vec::new(),
        }
    }

    /// Bytes of stdout that were counted and dropped.
    pub fn stdout_dropped(&self) -> u64 {
        self.stdout_cuts.iter().map(|c| c.dropped).sum()
    }

    /// Bytes of stderr that were counted and dropped.
    pub fn stderr_dropped(&self) -> u64 {
        self.stderr_cuts.iter().map(|c| c.dropped).sum()
    }
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
    /// The known_hosts file cannot be used (a directory, FIFO, device, unreadable): refused
    /// with the host key problems, before anything runs, and never opened if not a file.
    #[error("cannot check the host key of `{host}`: known_hosts `{}` {reason}", path.display())]
    KnownHostsUnusable {
        host: String,
        path: PathBuf,
        reason: String,
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

    /// Unknown, changed or revoked host keys, or a known_hosts that cannot be read:
    /// reported together before any work, exit 3.
    pub fn is_host_key_problem(&self) -> bool {
        matches!(
            self,
            TransportError::UnknownHostKey { .. }
                | TransportError::ChangedHostKey { .. }
                | TransportError::RevokedHostKey { .. }
                | TransportError::KnownHostsUnusable { .. }
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
pub struct Session {
    link: Link,
    /// Once a run holds the host's lock: the check every later command passes first.
    fence: std::sync::RwLock<Option<Fence>>,
}

enum Link {
    Ssh(ssh::SshSession),
    Local(local::LocalSession),
}

/// A shell condition that must hold on the host for a command to start (a run's lock still
/// carrying its token). It is checked in the same shell, right before the command, so that
/// a run that lost its lock starts nothing more there.
#[derive(Debug, Clone)]
struct Fence {
    host: String,
    check: String,
}

/// What a fenced-off command prints on stderr, and its exit status.
const FENCE_MARK: &str = "capstan-fence: refused";
const FENCE_CODE: i32 = 86;

impl Session {
    /// Opens the host's connection (checking its host key), or a local session.
    pub async fn connect(host: &Host, opts: &ConnectOptions) -> Result<Session, TransportError> {
        let link = match host.connection {
            ConnectionKind::Local => Link::Local(local::LocalSession::new(host)),
            ConnectionKind::Ssh => Link::Ssh(ssh::SshSession::connect(host, opts).await?),
        };
        Ok(Session {
            link,
            fence: std::sync::RwLock::new(None),
        })
    }

    /// From now on, every command on this session first checks `check` (a POSIX shell
    /// condition) on the host, and is refused with [`TransportError::LockLost`] when it
    /// fails. `None` lifts the fence.
    pub fn set_fence(&self, host: &str, check: Option<String>) {
        let fence = check.map(|check| Fence {
            host: host.to_owned(),
            check,
        });
        *self
            .fence
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
    }

    fn current_fence(&self) -> Option<Fence> {
        self.fence
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs one command on a new channel and waits for it to end (or time out). Its output
    /// is bounded by a generous internal limit; it is never stopped by a run's [`Stop`].
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, TransportError> {
        self.exec_with(req, &ExecControl::internal()).await
    }

    /// [`Session::exec`] without the fence: for the commands that keep the lock itself.
    pub async fn exec_unfenced(&self, req: &ExecRequest) -> Result<ExecOutput, TransportError> {
        self.run(req, &ExecControl::internal()).await
    }

    /// Runs one command, stoppable through `control.stop`, keeping at most
    /// `control.output_limit` bytes of each stream (per record).
    pub async fn exec_with(
        &self,
        req: &ExecRequest,
        control: &ExecControl,
    ) -> Result<ExecOutput, TransportError> {
        let Some(fence) = self.current_fence() else {
            return self.run(req, control).await;
        };
        let fenced = ExecRequest {
            command: format!(
                "if {check}; then :; else printf '%s\\n' '{FENCE_MARK}' >&2; exit {FENCE_CODE}; fi\n{command}",
                check = fence.check,
                command = req.command,
            ),
            ..req.clone()
        };
        let out = self.run(&fenced, control).await?;
        if out.status == ExitStatus::Code(FENCE_CODE)
            && out.stdout.is_empty()
            && String::from_utf8_lossy(&out.stderr).trim_end() == FENCE_MARK
        {
            return Err(TransportError::LockLost { host: fence.host });
        }
        Ok(out)
    }

    async fn run(
        &self,
        req: &ExecRequest,
        control: &ExecControl,
    ) -> Result<ExecOutput, TransportError> {
        if control
            .stop
            .as_ref()
            .is_some_and(|s| *s.borrow() != Stop::Continue)
        {
            return Ok(ExecOutput::cancelled_before_start());
        }
        match &self.link {
            Link::Ssh(s) => s.exec_with(req, control).await,
            Link::Local(s) => s.exec(req, control).await,
        }
    }

    /// `SHA256:...` of the host's key, for cache keys; `None` for a local session.
    pub fn host_key_fingerprint(&self) -> Option<String> {
        match &self.link {
            Link::Ssh(s) => Some(s.host_key_fingerprint()),
            Link::Local(_) => None,
        }
    }

    /// Notes about how the connection was configured (e.g. an ignored ssh_config setting).
    pub fn notes(&self) -> &[String] {
        match &self.link {
            Link::Ssh(s) => s.notes(),
            Link::Local(_) => &[],
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        match self.link {
            Link::Ssh(s) => s.close().await,
            Link::Local(_) => {}
        }
    }
}
