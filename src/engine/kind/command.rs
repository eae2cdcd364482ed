//! `command`: a line of shell run by the host's login shell, guarded by `creates`,
//! `removes` and `unless`; without a guard, the result cache tells a rerun it already ran.

use super::{Change, HostKind, RenderInput, Rendered};
use crate::engine::script::Step;
use crate::playbook::Task;
use crate::template::{Mode, TemplateError, Templates};

pub(crate) struct CommandKind<'a>(pub &'a str);

impl HostKind for CommandKind<'_> {
    fn variables(&self, templates: &Templates) -> Vec<String> {
        templates.variables_of(self.0, false)
    }

    fn render(&self, input: &RenderInput<'_>) -> Result<Rendered, TemplateError> {
        let (t, task, ctx) = (input.templates, input.task, input.ctx);
        let command = t.render(&input.what("command"), self.0, Mode::Shell, ctx)?;
        let path = |field: &str, v: &Option<String>| {
            v.as_ref()
                .map(|s| t.render(&input.what(field), s, Mode::Path, ctx))
                .transpose()
        };
        let unless = task
            .unless
            .as_ref()
            .map(|u| t.render(&input.what("unless"), u, Mode::Shell, ctx))
            .transpose()?;
        Ok(Rendered {
            shown: Some(command.clone()),
            step: Step::Command {
                command,
                creates: path("creates", &task.creates)?,
                removes: path("removes", &task.removes)?,
                unless,
                escalate: input.escalate.clone(),
                read_only: read_only(task),
            },
            new_content: None,
        })
    }

    fn satisfied(&self, what: &str, step: &Step) -> String {
        match (what, step) {
            (
                "creates",
                Step::Command {
                    creates: Some(p), ..
                },
            ) => format!("creates: {p} exists"),
            (
                "removes",
                Step::Command {
                    removes: Some(p), ..
                },
            ) => format!("removes: {p} does not exist"),
            ("unless", _) => "unless: the check command succeeded".to_owned(),
            (other, _) => other.to_owned(),
        }
    }

    fn change(&self, what: &str) -> String {
        what.to_owned()
    }

    fn diff(&self, change: &Change<'_>) -> Option<String> {
        match change.what {
            None => change.shown.map(|c| format!("would run: {c}")),
            Some(_) => None,
        }
    }

    fn cacheable(&self, task: &Task) -> bool {
        task.creates.is_none()
            && task.removes.is_none()
            && task.unless.is_none()
            && !read_only(task)
    }
}

/// Declared read-only (`changed_when = "false"`): a query that runs in check mode too.
fn read_only(task: &Task) -> bool {
    task.changed_when.as_deref().map(str::trim) == Some("false")
}
