//! The TOML playbook: plays, and in each play the tasks to run on its hosts.
//!
//! Parsing rejects unknown keys and reports every problem with its location; nothing here
//! renders templates or contacts a host.

use std::path::PathBuf;
use std::time::Duration;

use crate::vars::Vars;

/// A parsed, checked playbook file.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: PathBuf,
    /// The file's text, kept for locating later (render-time) problems.
    pub source: String,
    pub name: String,
    pub plays: Vec<Play>,
}

/// One batch size in `serial`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchSize {
    Count(usize),
    /// 0 < p <= 100.
    Percent(f64),
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    /// Host pattern (see `inventory::pattern`).
    pub hosts: String,
    /// Empty means "all hosts in one batch".
    pub serial: Vec<BatchSize>,
    pub max_fail_percentage: Option<f64>,
    pub any_errors_fatal: bool,
    pub vars: Vars,
    pub r#become: bool,
    pub become_user: Option<String>,
    pub tags: Vec<String>,
    pub tasks: Vec<Task>,
    /// 1-based line of the `[[plays]]` header.
    pub line: usize,
}

/// A task as written: one action plus the keys every task takes.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub action: Action,
    pub when: Option<String>,
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub unless: Option<String>,
    pub changed_when: Option<String>,
    pub failed_when: Option<String>,
    pub register: Option<String>,
    pub retries: Option<u32>,
    pub delay: Option<Duration>,
    pub until: Option<String>,
    pub tags: Vec<String>,
    pub run_once: bool,
    pub r#become: Option<bool>,
    pub become_user: Option<String>,
    pub no_log: bool,
    pub timeout: Option<Duration>,
    /// 1-based line of the task's `[[plays.tasks]]` header (or inline table).
    pub line: usize,
}

/// What a task does. Exactly one action key per task; the DTR kinds join this enum later.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A line of shell, run by the host's login shell as `ssh host 'COMMAND'` would.
    Command(String),
    /// Render `src` (relative to the templates directory) into `dest` on the host.
    Template(TemplateSpec),
}

impl Action {
    /// The action key as written in the playbook.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command(_) => "command",
            Action::Template(_) => "template",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    pub src: String,
    pub dest: String,
    /// Octal mode such as `"0644"`, validated at parse time.
    pub mode: Option<String>,
}
