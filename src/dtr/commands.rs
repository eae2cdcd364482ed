//! The commands DTR tasks run on hosts.
//!
//! Every `docker run` comes from a file `templates/dtr-*.j2` that an operator who knows the
//! DTR docs can read and adapt; it renders in shell mode, so every value is quoted. The
//! plain docker CLI calls (`ps`, `info`, `image inspect`, `pull`, `load`) are built here.

use minijinja::value::Value;

use super::params::with_vars;
use crate::template::{Mode, TemplateError, Templates, shell_quote};

fn quoted(s: &str) -> String {
    // A NUL cannot reach a host at all; quoting it as empty keeps the command harmless.
    shell_quote(s).unwrap_or_else(|_| "''".to_owned())
}

pub(crate) fn image_inspect(image: &str) -> String {
    format!("docker image inspect {} >/dev/null", quoted(image))
}

pub(crate) fn pull(image: &str) -> String {
    format!("docker pull {}", quoted(image))
}

/// Pulls `image` unless the node has it; prints `pulled` when it pulled.
pub(crate) fn ensure_image(image: &str) -> String {
    let image = quoted(image);
    format!(
        "docker image inspect {image} >/dev/null 2>&1 || {{ docker pull {image} && echo pulled; }}"
    )
}

/// Renders the command template `file` in shell mode with the host's variables and
/// `values`; line continuations (`\` at the end of a line) are joined into one line.
pub(crate) fn render_template(
    t: &Templates,
    file: &str,
    ctx: &Value,
    values: &[(&str, Value)],
) -> Result<String, TemplateError> {
    let source = t.file_source(&t.dir().join(file), file)?;
    let text = t.render(file, &source, Mode::Shell, &with_vars(ctx, values))?;
    Ok(join_continuations(&text))
}

/// `a \⏎  b` → `a b`; blank lines dropped; trimmed.
pub(crate) fn join_continuations(text: &str) -> String {
    let mut out = String::new();
    let mut continued = false;
    for line in text.lines() {
        let line = if continued { line.trim_start() } else { line };
        if line.trim().is_empty() && !continued {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                out.push_str(head.trim_end());
                out.push(' ');
                continued = true;
            }
            None => {
                out.push_str(line.trim_end());
                out.push('\n');
                continued = false;
            }
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_drops_blank_lines() {
        let text = "\n\ndocker run --rm \\\n  --env-file x \\\n  img:1 upgrade\n\n";
        assert_eq!(
            join_continuations(text),
            "docker run --rm --env-file x img:1 upgrade"
        );
        assert_eq!(join_continuations("a\nb \\\n c\n"), "a\nb c");
    }

    #[test]
    fn shipped_templates_render_every_value_quoted() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let t = Templates::new(dir);
        let values = [
            ("image", Value::from("docker/dtr")),
            ("version", Value::from("2.6.8")),
            ("ucp_url", Value::from("https://ucp.example.com")),
            ("ucp_username", Value::from("ad min")),
            ("ucp_ca", Value::from(true)),
            ("ucp_insecure_tls", Value::from(false)),
            ("existing_replica_id", Value::from("aaa")),
        ];
        let cmd = render_template(&t, "dtr-upgrade.j2", &minijinja::context! {}, &values)
            .expect("renders");
        assert_eq!(
            cmd,
            "docker run --rm --env-file \"$CAPSTAN_SECRET_FILE\" --env UCP_CA docker/dtr:2.6.8 \
             upgrade --ucp-url https://ucp.example.com --ucp-username 'ad min' \
             --existing-replica-id aaa"
        );
    }
}
