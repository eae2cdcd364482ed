//! `template`: a file rendered on the controller and installed on the host when its hash or
//! mode differs.

use super::{Change, HostKind, RenderInput, Rendered};
use crate::engine::script::Step;
use crate::playbook::{Task, TemplateSpec};
use crate::template::{Mode, TemplateError, Templates};

pub(crate) struct TemplateKind<'a>(pub &'a TemplateSpec);

impl HostKind for TemplateKind<'_> {
    fn variables(&self, templates: &Templates) -> Vec<String> {
        let mut names = templates.variables_of(&self.0.dest, false);
        if let Ok(src) = templates.file_source(&templates.dir().join(&self.0.src), &self.0.src) {
            names.extend(templates.variables_of(&src, false));
        }
        names
    }

    fn render(&self, input: &RenderInput<'_>) -> Result<Rendered, TemplateError> {
        let (t, ctx) = (input.templates, input.ctx);
        let src = t.render(&input.what("template.src"), &self.0.src, Mode::Path, ctx)?;
        let dest = t.render(&input.what("template.dest"), &self.0.dest, Mode::Path, ctx)?;
        let content = t.render_file(&src, ctx)?;
        Ok(Rendered {
            shown: Some(format!("write {dest} from {src}")),
            step: Step::Template {
                dest,
                content: content.clone(),
                mode: self.0.mode.clone(),
                escalate: input.escalate.clone(),
            },
            new_content: Some(content),
        })
    }

    fn satisfied(&self, what: &str, _step: &Step) -> String {
        match what {
            "same" => "up to date".to_owned(),
            other => other.to_owned(),
        }
    }

    fn change(&self, what: &str) -> String {
        if let Some(target) = what.strip_prefix("symlink ") {
            return crate::engine::outcome::symlink_note(target);
        }
        match what {
            "new" => "new file".to_owned(),
            other => other.replace(',', " and "),
        }
    }

    fn diff(&self, change: &Change<'_>) -> Option<String> {
        crate::engine::outcome::template_diff(
            change.context,
            change.step,
            change.old,
            change.new,
            change.what?,
        )
    }

    fn cacheable(&self, _task: &Task) -> bool {
        false
    }
}
