//! The task-kind interface: every kind of task the engine runs on a host plugs in here.
//!
//! A kind turns a task's fields, rendered for one host, into a [`Step`] — its *query* (is
//! the host already as wanted?) and its *apply* — that the script runs in one round trip;
//! check mode stops after the query. The decision after the step is the engine's, in one
//! pure function (`decide`), fed with the kind's own words for "already there" and "what
//! changed", and the kind's diff. Kinds that coordinate several hosts at once (the DTR
//! life cycle) implement the engine's [`super::ClusterRunner`] capability instead, and are
//! told apart here by [`of`], the one place that maps a playbook action to its kind.

mod command;
mod template;

use minijinja::value::Value;

use super::script::{Become, Step};
use crate::playbook::{Action, Task};
use crate::template::{TemplateError, Templates};

pub(crate) use command::CommandKind;

/// What a kind renders from: the task, the host's variables and how to escalate.
pub(crate) struct RenderInput<'a> {
    pub templates: &'a Templates,
    pub task: &'a Task,
    pub ctx: &'a Value,
    pub escalate: Option<Become>,
}

impl RenderInput<'_> {
    /// How a field is named in an error: `` `command` of task "x" ``.
    pub fn what(&self, field: &str) -> String {
        format!("`{field}` of task \"{}\"", self.task.name)
    }
}

/// A task rendered for one host.
pub(crate) struct Rendered {
    pub step: Step,
    /// What the report shows as the task's command.
    pub shown: Option<String>,
    /// A file's new content, for `--diff`.
    pub new_content: Option<String>,
}

/// What a host kind must say about itself.
pub(crate) trait HostKind: Sync {
    /// Variables its own fields read (beyond `when` and the guards), so that check mode can
    /// tell a task that depends on a result it could not produce.
    fn variables(&self, templates: &Templates) -> Vec<String>;

    /// Renders the task for one host into its step.
    fn render(&self, input: &RenderInput<'_>) -> Result<Rendered, TemplateError>;

    /// The note of a query that found nothing to do (`what` is the script's detail).
    fn satisfied(&self, what: &str, step: &Step) -> String;

    /// What changed, in words (`what` is the script's detail).
    fn change(&self, what: &str) -> String;

    /// `--diff`: the change before → after, when the kind can show one.
    fn diff(&self, change: &Change<'_>) -> Option<String>;

    /// Whether a finished run of the task is recorded in the result cache: work whose query
    /// cannot tell it was already done.
    fn cacheable(&self, task: &Task) -> bool;
}

/// What `--diff` is shown.
pub(crate) struct Change<'a> {
    pub context: usize,
    pub step: &'a Step,
    /// The script's detail of the change (`new`, `content`, `mode`, …); `None` for a command
    /// that would run.
    pub what: Option<&'a str>,
    pub old: Option<&'a str>,
    pub new: Option<&'a str>,
    pub shown: Option<&'a str>,
}

/// How the engine runs a task.
pub(crate) enum Kind<'a> {
    /// On each host, in a segment of one round trip.
    Host(Box<dyn HostKind + 'a>),
    /// Once over the batch's hosts, by the run's [`super::ClusterRunner`].
    Cluster,
}

/// The kind of `action`.
pub(crate) fn of(action: &Action) -> Kind<'_> {
    match action {
        Action::Command(command) => Kind::Host(Box::new(CommandKind(command))),
        Action::Template(spec) => Kind::Host(Box::new(template::TemplateKind(spec))),
        Action::Dtr(_) => Kind::Cluster,
    }
}
