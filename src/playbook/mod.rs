//! The TOML playbook: plays, and in each play the tasks to run on its hosts.
//!
//! Parsing rejects unknown keys and reports every problem with its location; nothing here
//! renders templates or contacts a host. The file is walked by hand from `toml`'s spanned
//! tables (not through serde) so that one pass reports every problem, each at its key or value.
//!
//! Tasks and plays keep the byte range of each field's value (`field_spans`), so that a later
//! problem (an undefined variable in `creates`, say) points at the value as written.

mod action;
mod checker;
#[cfg(test)]
mod corpus;
pub mod dtr_spec;
mod parse;
mod serial;
mod task;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{Diagnostic, Diagnostics, locate, read_source};
use crate::vars::Vars;

pub use task::{DEFAULT_RETRIES, task_keys};

/// Reads and checks the playbook at `path`; the same as [`Playbook::load`].
///
/// # Errors
/// Every problem found: the file cannot be read, is not TOML, or is not a valid playbook.
pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
    Playbook::load(path)
}

/// Byte ranges (into [`Playbook::source`]) of field values, by field name.
pub type FieldSpans = BTreeMap<&'static str, Range<usize>>;

/// A parsed, checked playbook file.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: PathBuf,
    /// The file's text, kept for locating later (render-time) problems.
    pub source: String,
    pub name: String,
    pub plays: Vec<Play>,
}

impl Playbook {
    /// Reads and checks the playbook at `path`, reporting every problem in it.
    ///
    /// # Errors
    /// Every problem found, sorted by line: the file cannot be read, is not TOML, or is not a
    /// valid playbook (unknown keys, wrong types, tasks without exactly one action, …).
    pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
        let source = read_source(path)?;
        Self::parse(path, source)
    }

    /// Checks playbook text `source` as if read from `path` (which is only used in messages).
    ///
    /// # Errors
    /// As [`Playbook::load`], without the read.
    pub fn parse(path: &Path, source: String) -> Result<Playbook, Diagnostics> {
        parse::playbook(path, source)
    }

    /// A problem at byte range `span` of this playbook's source.
    #[must_use]
    pub fn diagnostic(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at_span(&self.path, &self.source, span, message)
    }

    /// A problem in `field` of `task` (`"creates"`, `"template.dest"`), pointing at the value;
    /// at the task's header when the field was not written.
    #[must_use]
    pub fn task_diagnostic(
        &self,
        task: &Task,
        field: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        match task.field_spans.get(field) {
            Some(span) => self.diagnostic(span.clone(), message),
            None => Diagnostic::at_line(&self.path, &self.source, task.line, 1, message),
        }
    }

    /// 1-based line and column of byte offset `offset` in the source.
    #[must_use]
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let (line, column, _) = locate(&self.source, offset);
        (line, column)
    }
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
    /// Where each key's value is: `"hosts"`, `"serial"`, `"tags"`, … as written.
    pub field_spans: FieldSpans,
    /// Where each of `vars`' values is, by variable name.
    pub var_spans: BTreeMap<String, Range<usize>>,
}

impl Play {
    /// A play over `hosts` with nothing else set, for building plays in code and tests.
    pub fn new(name: impl Into<String>, hosts: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            hosts: hosts.into(),
            serial: Vec::new(),
            max_fail_percentage: None,
            any_errors_fatal: false,
            vars: Vars::new(),
            r#become: false,
            become_user: None,
            tags: Vec::new(),
            tasks: Vec::new(),
            line: 0,
            field_spans: FieldSpans::new(),
            var_spans: BTreeMap::new(),
        }
    }
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
    /// With `until` and no `retries`, [`DEFAULT_RETRIES`]; never set without `until`.
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
    /// Where each field's value is, by key: the common keys (`"creates"`, `"when"`, …), the
    /// action (`"command"`) and its parameters (`"template.src"`, `"template.dest"`, …).
    /// Only keys written in the file appear.
    pub field_spans: FieldSpans,
}

impl Task {
    /// A task doing `action` with nothing else set, for building tasks in code and tests.
    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Self {
            name: name.into(),
            action,
            when: None,
            creates: None,
            removes: None,
            unless: None,
            changed_when: None,
            failed_when: None,
            register: None,
            retries: None,
            delay: None,
            until: None,
            tags: Vec::new(),
            run_once: false,
            r#become: None,
            become_user: None,
            no_log: false,
            timeout: None,
            line: 0,
            field_spans: FieldSpans::new(),
        }
    }

    /// 1-based line and column of `field`'s value, when it was written in `playbook`.
    #[must_use]
    pub fn field_location(&self, playbook: &Playbook, field: &str) -> Option<(usize, usize)> {
        self.field_spans
            .get(field)
            .map(|span| playbook.line_column(span.start))
    }
}

/// What a task does. Exactly one action key per task.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A line of shell, run by the host's login shell as `ssh host 'COMMAND'` would.
    Command(String),
    /// Render `src` (relative to the templates directory) into `dest` on the host.
    Template(TemplateSpec),
    /// A DTR cluster task (`check`, `pull`, `upgrade`, `join`, `remove`, `scale`).
    Dtr(dtr_spec::DtrTask),
}

impl Action {
    /// The action key as written in the playbook.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command(_) => "command",
            Action::Template(_) => "template",
            Action::Dtr(task) => task.kind.key(),
        }
    }

    /// A cluster task: runs once over all the batch's hosts, not per host in a segment.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Action::Dtr(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    pub src: String,
    pub dest: String,
    /// Octal mode such as `"0644"`, validated at parse time.
    pub mode: Option<String>,
}
