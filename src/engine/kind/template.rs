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
        if what == "new" {
            return "new file".to_owned();
        }
        let want = self.0.mode.as_deref().unwrap_or("?");
        what.split(',')
            .map(|part| match crate::engine::outcome::old_mode(part) {
                Some(old) => format!("mode {old} -> {want}"),
                None => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" and ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_the_old_and_the_new_mode() {
        let spec = TemplateSpec {
            src: "a.j2".into(),
            dest: "/etc/a".into(),
            mode: Some("0600".into()),
        };
        let k = TemplateKind(&spec);
        assert_eq!(k.change("new"), "new file");
        assert_eq!(k.change("content"), "content");
        assert_eq!(k.change("mode=644"), "mode 0644 -> 0600");
        assert_eq!(
            k.change("content,mode=755"),
            "content and mode 0755 -> 0600"
        );
        assert_eq!(
            k.change("symlink /etc/shadow"),
            "dest is a symlink to /etc/shadow; it will be replaced by a file"
        );
    }
}
