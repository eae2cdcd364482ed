//! What the engine tells the reporter. The engine never prints; it sends these.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Outcome of one task on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing needed doing (a guard held, the file was already right).
    Ok,
    /// The host was changed (or, in check mode, would be).
    Changed,
    /// Not run: `when` was false, a dependency could not be known, or `run_once` elsewhere.
    Skipped,
    Failed,
    /// The connection to the host failed or dropped.
    Unreachable,
    /// Done in an earlier run (the result cache): not executed again.
    Cached,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
            Status::Cached => "cached",
        }
    }
}

/// One task's result on one host, as reported (all text already secret-masked).
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub host: String,
    pub play: String,
    pub task: String,
    /// 0-based index of the task in its play.
    pub task_index: usize,
    pub kind: &'static str,
    pub status: Status,
    /// In check mode, `changed` means "would change".
    pub check_mode: bool,
    /// Why: `creates: path exists`, `when: false`, `would run`, the failure reason…
    pub note: Option<String>,
    /// The command as sent (rendered, secrets masked), for commands.
    pub command: Option<String>,
    /// `exit status 3`, `killed by signal TERM`, `timed out after 5s`.
    pub exit: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// Unified diff or `old -> new` lines, when `--diff`.
    pub diff: Option<String>,
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
}

impl TaskReport {
    /// A report for task `task` (index `task_index` of play `play`, of kind `kind`) on
    /// `host`, to be filled in.
    pub fn new(
        host: &str,
        (play, task, kind): (&str, &str, &'static str),
        task_index: usize,
        check_mode: bool,
    ) -> Self {
        Self {
            host: host.to_owned(),
            play: play.to_owned(),
            task: task.to_owned(),
            task_index,
            kind,
            status: Status::Ok,
            check_mode,
            note: None,
            command: None,
            exit: None,
            stdout: String::new(),
            stderr: String::new(),
            diff: None,
            duration: Duration::ZERO,
        }
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Per-host counts at the end of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct HostRecap {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unreachable: usize,
    pub cached: usize,
}

impl HostRecap {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
            Status::Unreachable => self.unreachable += 1,
            Status::Cached => self.cached += 1,
        }
    }
}

/// Everything the reporter hears about, in order.
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        playbook: String,
        hosts: usize,
        check: bool,
    },
    Connected {
        host: String,
        elapsed: Duration,
    },
    /// Connecting failed for a reason other than the host key.
    Unreachable {
        host: String,
        reason: String,
    },
    /// Unknown or changed host keys, all of them, found before any work started.
    HostKeysRefused {
        problems: Vec<(String, String)>,
    },
    PlayStarted {
        name: String,
        hosts: Vec<String>,
    },
    BatchStarted {
        index: usize,
        total: usize,
        hosts: Vec<String>,
        /// Host × task units in this batch, for the progress bar.
        units: usize,
    },
    TaskStarted {
        host: String,
        task: String,
    },
    TaskFinished(Box<TaskReport>),
    /// A host left the play without a task result (e.g. skipped by a stopped play).
    PlayStopped {
        reason: String,
    },
    Interrupted,
    /// Something the operator should know that is not a task result.
    Warning {
        host: Option<String>,
        message: String,
    },
    /// The cluster lock (see `crate::lock`): taken, waited for, taken over, released or lost.
    Lock {
        cluster: String,
        state: LockState,
        hosts: Vec<String>,
        /// Who held it, how long capstan waits, what was broken: one line for a person.
        detail: String,
    },
    RunFinished {
        recap: Vec<(String, HostRecap)>,
        elapsed: Duration,
    },
}

/// What happened to the cluster lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockState {
    Acquired,
    /// Held by someone else; `--lock-wait` polls until it is free.
    Waiting,
    /// A stale lock was broken (`--break-stale-lock`) and taken.
    TookOver,
    Released,
    /// The lock was broken by someone else while the run held it; no new work starts.
    Lost,
}

impl LockState {
    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Acquired => "acquired",
            LockState::Waiting => "waiting",
            LockState::TookOver => "took-over",
            LockState::Released => "released",
            LockState::Lost => "lost",
        }
    }
}
