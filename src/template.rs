//! minijinja rendering: shell-safe commands, plain fields, template files and expressions.
//!
//! Values interpolated into a *command* are shell-quoted unless the template opts out for
//! that value (`{{ x | raw }}` or `{{ x | safe }}`), so a variable holding
//! `$(rm -rf /); echo pwned` reaches the host as exactly that literal string. Paths and
//! other plain fields, and template files, are rendered without quoting. Every undefined
//! variable is an error naming the template, the line and the variable.
//!
//! Templates come from the operator's repository but are still bounded: a template file is
//! read only from inside the templates directory (no absolute path, no `..`, no symlink
//! leading out), every render runs on a [`FUEL`] budget of minijinja instructions, and its
//! output may not grow past [`MAX_OUTPUT`] bytes, so a runaway loop ends with an error
//! instead of hanging `validate` or filling memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// minijinja instructions one render may execute (its `fuel`): far beyond any real template,
/// far below a `10⁵ × 10⁵` loop.
pub const FUEL: u64 = 20_000_000;

/// Bytes one render may produce.
pub const MAX_OUTPUT: usize = 32 * 1024 * 1024;

/// Suffix of a template name that turns on shell quoting.
const SHELL_SUFFIX: &str = " (shell)";

/// How interpolated values are written into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every value is shell-quoted unless marked `raw`/`safe`.
    Shell,
    /// Values are written as they are.
    Plain,
    /// Values are written as they are, into a path (`creates`, a template's `dest`): the
    /// result must not hold a NUL byte, which no path can.
    Path,
}

/// A template that failed to render, located inside the template text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What was being rendered, e.g. `app.conf.j2` or `command of task "x"`.
    pub template: String,
    /// 1-based line inside the template text.
    pub line: Option<usize>,
    /// The variable that was undefined, when that was the problem.
    pub variable: Option<String>,
    pub message: String,
}

/// The template engine for one run: the environment and the templates directory.
pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
    files: RwLock<HashMap<PathBuf, String>>,
}

impl Templates {
    /// An engine that loads template files from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax.keep_trailing_newline(true);
        if let Ok(config) = syntax.build() {
            env.set_syntax(config);
        }
        env.set_auto_escape_callback(|name| {
            if name.ends_with(SHELL_SUFFIX) {
                AutoEscape::Custom("shell".into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Custom(name) if name == "shell")
                && !value.is_safe()
            {
                let text = value.to_string();
                let quoted = shell_quote(&text).map_err(|e| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
                })?;
                out.write_str(&quoted).map_err(minijinja::Error::from)
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_filter("raw", |v: Value| Value::from_safe_string(v.to_string()));
        env.add_filter("quote", |v: Value| -> Result<Value, minijinja::Error> {
            shell_quote(&v.to_string())
                .map(Value::from_safe_string)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
        });
        env.add_filter("to_json", |v: Value| -> Result<String, minijinja::Error> {
            serde_json::to_string(&v)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
        });
        Self {
            env,
            dir: dir.into(),
            files: RwLock::new(HashMap::new()),
        }
    }

    /// The directory template files are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Renders an inline template (a task field). `what` names it in errors.
    ///
    /// In [`Mode::Shell`] and [`Mode::Path`] the result never holds a NUL byte, wherever it
    /// came from: a value, a `raw` value, or the text itself (TOML's `"\u0000"`).
    pub fn render(
        &self,
        what: &str,
        source: &str,
        mode: Mode,
        ctx: &Value,
    ) -> Result<String, TemplateError> {
        let rendered = if !source.contains("{{") && !source.contains("{%") && !source.contains("{#")
        {
            source.to_owned()
        } else {
            let name = match mode {
                Mode::Shell => format!("{what}{SHELL_SUFFIX}"),
                Mode::Plain | Mode::Path => what.to_owned(),
            };
            self.render_bounded(&name, source, ctx)
                .map_err(|e| convert(what, source, &e, &self.undefined_in(source, false, ctx)))?
        };
        if mode != Mode::Plain && rendered.contains('\0') {
            return Err(nul_error(what, source, mode));
        }
        Ok(rendered)
    }

    /// Reads (once) and renders a template file relative to the templates directory. The
    /// result is text: a NUL byte in it is refused.
    pub fn render_file(&self, src: &str, ctx: &Value) -> Result<String, TemplateError> {
        let path = self.dir.join(src);
        let source = self.file_source(&path, src)?;
        let content = self
            .render_bounded(src, &source, ctx)
            .map_err(|e| convert(src, &source, &e, &self.undefined_in(&source, false, ctx)))?;
        if content.contains('\0') {
            return Err(TemplateError {
                template: src.to_owned(),
                line: None,
                variable: None,
                message: format!(
                    "{src}: rendered template contains a NUL byte; only text files are supported"
                ),
            });
        }
        Ok(content)
    }

    /// Renders `source` within the [`FUEL`] and [`MAX_OUTPUT`] bounds.
    fn render_bounded(
        &self,
        name: &str,
        source: &str,
        ctx: &Value,
    ) -> Result<String, minijinja::Error> {
        let template = self.env.template_from_named_str(name, source)?;
        let mut out = Bounded::default();
        match template.render_captured_to(ctx.clone(), &mut out) {
            Ok(_) => String::from_utf8(out.bytes)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())),
            Err(_) if out.overflowed => Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "rendered output is larger than {} MiB; a loop that does not end?",
                    MAX_OUTPUT / (1024 * 1024)
                ),
            )),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(minijinja::Error::new(
                ErrorKind::OutOfFuel,
                format!("template ran more than {FUEL} steps; a loop that does not end?"),
            )),
            Err(e) => Err(e),
        }
    }

    /// `src` inside the templates directory, or why it is not: an absolute path, a `..`
    /// component or a symlink resolving outside are refused.
    fn confined(&self, src: &str) -> Result<PathBuf, TemplateError> {
        let refuse = |why: String| TemplateError {
            template: src.to_owned(),
            line: None,
            variable: None,
            message: format!("template `{src}` {why}"),
        };
        let rel = Path::new(src);
        if rel.is_absolute() {
            return Err(refuse(format!(
                "is an absolute path; template files are read only from the templates directory `{}`",
                self.dir.display()
            )));
        }
        if rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(refuse(format!(
                "uses `..`; template files are read only from inside the templates directory `{}`",
                self.dir.display()
            )));
        }
        let joined = self.dir.join(rel);
        let (Ok(root), Ok(real)) = (
            std::fs::canonicalize(&self.dir),
            std::fs::canonicalize(&joined),
        ) else {
            // Missing: reading it reports the error with its path.
            return Ok(joined);
        };
        if !real.starts_with(&root) {
            return Err(refuse(format!(
                "resolves to `{}` through a symbolic link, outside the templates directory `{}`",
                real.display(),
                self.dir.display()
            )));
        }
        Ok(real)
    }

    /// The text of a template file, cached for the run. `src` must stay inside the
    /// templates directory; `path` is only the key it is cached under.
    pub fn file_source(&self, path: &Path, src: &str) -> Result<String, TemplateError> {
        if let Some(text) = self
            .files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
        {
            return Ok(text.clone());
        }
        let real = self.confined(src)?;
        let text = std::fs::read_to_string(&real).map_err(|e| TemplateError {
            template: src.to_owned(),
            line: None,
            variable: None,
            message: format!("cannot read template `{}`: {e}", path.display()),
        })?;
        self.files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path.to_owned(), text.clone());
        Ok(text)
    }

    /// Evaluates a `when`/`changed_when`/`failed_when`/`until` expression to a boolean.
    /// A bare `{{ ... }}` wrapper, as Ansible users sometimes write, is accepted.
    pub fn eval_bool(&self, what: &str, expr: &str, ctx: &Value) -> Result<bool, TemplateError> {
        let inner = strip_braces(expr);
        let compiled = self
            .env
            .compile_expression(inner)
            .map_err(|e| convert(what, inner, &e, &[]))?;
        let value = compiled
            .eval(ctx.clone())
            .map_err(|e| convert(what, inner, &e, &self.undefined_in(inner, true, ctx)))?;
        if value.is_undefined() {
            // `a and b` can itself be undefined: name the variable, not the expression.
            let variable = self
                .undefined_in(inner, true, ctx)
                .into_iter()
                .next()
                .unwrap_or_else(|| inner.trim().to_owned());
            return Err(TemplateError {
                template: what.to_owned(),
                line: Some(1),
                message: format!("{what}: undefined variable `{variable}`"),
                variable: Some(variable),
            });
        }
        Ok(value.is_true())
    }

    /// Checks that an expression parses, without evaluating it.
    pub fn check_expression(&self, what: &str, expr: &str) -> Result<(), TemplateError> {
        let inner = strip_braces(expr);
        self.env
            .compile_expression(inner)
            .map(|_| ())
            .map_err(|e| convert(what, inner, &e, &[]))
    }

    /// Top-level variable names an inline template or expression reads.
    pub fn variables_of(&self, source: &str, expression: bool) -> Vec<String> {
        let mut names: Vec<String> = if expression {
            self.env
                .compile_expression(strip_braces(source))
                .map(|e| e.undeclared_variables(false).into_iter().collect())
                .unwrap_or_default()
        } else {
            self.env
                .template_from_str(source)
                .map(|t| t.undeclared_variables(false).into_iter().collect())
                .unwrap_or_default()
        };
        names.sort();
        names
    }

    /// Top-level variables `source` reads that `ctx` does not define, for naming the one an
    /// error is about.
    fn undefined_in(&self, source: &str, expression: bool, ctx: &Value) -> Vec<String> {
        self.variables_of(source, expression)
            .into_iter()
            .filter(|name| ctx.get_attr(name).map_or(true, |v| v.is_undefined()))
            .collect()
    }
}

/// A render's output, refusing to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("template output limit reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn strip_braces(expr: &str) -> &str {
    let t = expr.trim();
    t.strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .map_or(t, str::trim)
}

/// Turns a minijinja error into one that names the template, line and variable.
/// `undefined` lists the top-level variables the template reads that are not defined.
fn convert(what: &str, source: &str, e: &minijinja::Error, undefined: &[String]) -> TemplateError {
    let line = e.line();
    if e.kind() == ErrorKind::UndefinedError {
        let variable = undefined_variable(source, e, undefined);
        let at = line.map_or_else(String::new, |l| format!(" line {l}"));
        let message = match &variable {
            Some(v) if !v.is_empty() => format!("{what}{at}: undefined variable `{v}`"),
            _ => format!("{what}{at}: undefined variable"),
        };
        return TemplateError {
            template: what.to_owned(),
            line,
            variable,
            message,
        };
    }
    let detail = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    let at = line.map_or_else(String::new, |l| format!(" line {l}"));
    TemplateError {
        template: what.to_owned(),
        line,
        variable: None,
        message: format!("{what}{at}: {detail}"),
    }
}

/// The variable an undefined-variable error is about. minijinja's error range may cover
/// the variable itself (`a`, `a.b`) or only the expression around it (a filter, `~`, an
/// `if`), so the name is taken from the range only when it is one of the undefined
/// variables; otherwise the first undefined variable in the range, its line, or the text.
fn undefined_variable(source: &str, e: &minijinja::Error, undefined: &[String]) -> Option<String> {
    let snippet = e.range().and_then(|r| source.get(r)).map(str::trim);
    let leading = snippet.map(|s| s.split(['|', ' ', '(']).next().unwrap_or(s));
    if let Some(lead) = leading {
        let root = lead.split(['.', '[']).next().unwrap_or(lead);
        if undefined.iter().any(|u| u == root) {
            return Some(lead.to_owned());
        }
    }
    let line_text = e
        .line()
        .and_then(|l| source.lines().nth(l.saturating_sub(1)));
    for region in [snippet, line_text, Some(source)].into_iter().flatten() {
        let first = undefined
            .iter()
            .filter_map(|name| find_identifier(region, name).map(|at| (at, name)))
            .min();
        if let Some((_, name)) = first {
            return Some(name.clone());
        }
    }
    // No top-level variable is undefined: an attribute of a defined value, as written.
    leading
        .filter(|l| l.contains(['.', '[']))
        .map(str::to_owned)
}

/// Byte offset of `name` in `text` as a whole identifier (not part of a longer name or an
/// attribute).
fn find_identifier(text: &str, name: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(|c| ident(c) || c == '.') && !after.is_some_and(ident)
    })
}

/// A rendered field holds a NUL byte: located at the first one in the text when it is
/// there, else it came from a value.
fn nul_error(what: &str, source: &str, mode: Mode) -> TemplateError {
    let line = source
        .find('\0')
        .map(|at| source[..at].matches('\n').count() + 1);
    let at = line.map_or_else(String::new, |l| format!(" line {l}"));
    TemplateError {
        template: what.to_owned(),
        line,
        variable: None,
        message: match mode {
            Mode::Path => format!("{what}{at}: contains a NUL byte, which no path can hold"),
            _ => format!("{what}{at}: contains a NUL byte, which cannot be passed to a shell"),
        },
    }
}

/// Why a value cannot be put on a shell command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("value contains a NUL byte, which cannot be passed to a shell")]
    Nul,
}

/// Quotes `s` for a POSIX shell: bare when it only has safe characters, else in single
/// quotes with each `'` written as `'\''`. Newlines, `$()`, backticks and quotes all stay
/// literal.
pub fn shell_quote(s: &str) -> Result<String, QuoteError> {
    if s.contains('\0') {
        return Err(QuoteError::Nul);
    }
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'@' | b'%' | b'+' | b'=' | b':' | b',' | b'.' | b'/' | b'_' | b'-'
                )
        });
    if safe {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn ctx(pairs: &[(&str, &str)]) -> Value {
        let map: std::collections::BTreeMap<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        Value::from(map)
    }

    /// Runs `sh -c` on a rendered command and returns its stdout.
    fn sh(cmd: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn hostile_values_reach_the_shell_as_literals() {
        let t = Templates::new(".");
        for hostile in [
            "$(rm -rf /); echo pwned",
            "`id`",
            "it's",
            "a\"b",
            "line1\nline2",
            "*",
            "; ls",
            "",
            "-n",
            "\\",
            "$HOME",
        ] {
            let cmd = t
                .render(
                    "cmd",
                    "printf %s {{ v }}",
                    Mode::Shell,
                    &ctx(&[("v", hostile)]),
                )
                .expect("renders");
            assert_eq!(sh(&cmd), hostile, "command was {cmd:?}");
        }
    }

    #[test]
    fn safe_values_stay_readable() {
        let t = Templates::new(".");
        let cmd = t
            .render(
                "cmd",
                "touch {{ d }}/marker",
                Mode::Shell,
                &ctx(&[("d", "/tmp/x-1")]),
            )
            .expect("renders");
        assert_eq!(cmd, "touch /tmp/x-1/marker");
    }

    #[test]
    fn raw_opts_out_of_quoting() {
        let t = Templates::new(".");
        let cmd = t
            .render(
                "cmd",
                "echo {{ v | raw }}",
                Mode::Shell,
                &ctx(&[("v", "a && b")]),
            )
            .expect("renders");
        assert_eq!(cmd, "echo a && b");
        let cmd = t
            .render(
                "cmd",
                "echo {{ v | safe }}",
                Mode::Shell,
                &ctx(&[("v", "$X")]),
            )
            .expect("renders");
        assert_eq!(cmd, "echo $X");
    }

    #[test]
    fn nul_is_rejected() {
        let t = Templates::new(".");
        let err = t
            .render("cmd", "echo {{ v }}", Mode::Shell, &ctx(&[("v", "a\0b")]))
            .expect_err("NUL must be refused");
        assert!(err.message.contains("NUL"), "{}", err.message);
    }

    #[test]
    fn nul_in_the_command_text_or_a_raw_value_is_rejected() {
        let t = Templates::new(".");
        let err = t
            .render("cmd", "echo a\nb\0c", Mode::Shell, &ctx(&[]))
            .expect_err("a NUL in the text must be refused");
        assert_eq!(
            err.message,
            "cmd line 2: contains a NUL byte, which cannot be passed to a shell"
        );
        let err = t
            .render(
                "cmd",
                "echo {{ v | raw }}",
                Mode::Shell,
                &ctx(&[("v", "a\0b")]),
            )
            .expect_err("a raw NUL must be refused");
        assert!(err.message.contains("NUL"), "{}", err.message);
        assert_eq!(
            t.render("p", "a\0b", Mode::Plain, &ctx(&[]))
                .ok()
                .as_deref(),
            Some("a\0b"),
            "plain text is not for a shell"
        );
    }

    #[test]
    fn plain_mode_does_not_quote() {
        let t = Templates::new(".");
        let s = t
            .render(
                "creates",
                "{{ d }}/it's",
                Mode::Plain,
                &ctx(&[("d", "/a b")]),
            )
            .expect("renders");
        assert_eq!(s, "/a b/it's");
    }

    #[test]
    fn undefined_variable_names_template_line_and_variable() {
        let t = Templates::new(".");
        let err = t
            .render(
                "command of task \"x\"",
                "a\necho {{ nope }}",
                Mode::Shell,
                &ctx(&[]),
            )
            .expect_err("undefined must fail");
        assert_eq!(err.variable.as_deref(), Some("nope"));
        assert_eq!(err.line, Some(2));
        assert_eq!(
            err.message,
            "command of task \"x\" line 2: undefined variable `nope`"
        );
        let err = t
            .render("f", "{{ a.b }}", Mode::Plain, &ctx(&[]))
            .expect_err("undefined must fail");
        assert!(
            err.message.contains("undefined variable `a.b`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn undefined_variable_is_named_inside_filters_operators_and_conditions() {
        let t = Templates::new(".");
        let c = ctx(&[("dir", "/srv"), ("d", "x")]);
        for (source, variable) in [
            ("{{ gone | upper }}", "gone"),
            ("{{ dir ~ gone }}", "gone"),
            ("{{ dir | replace(gone, 'x') }}", "gone"),
            ("{{ 'a' if gone else 'b' }}", "gone"),
            ("{% if gone %}x{% endif %}", "gone"),
            ("{{ gone.path | trim }}", "gone.path"),
            ("line 1\n{{ dir }} {{ dir ~ gone_too }}", "gone_too"),
        ] {
            let err = t
                .render("f", source, Mode::Shell, &c)
                .expect_err("undefined must fail");
            assert_eq!(err.variable.as_deref(), Some(variable), "{source}: {err}");
            assert!(
                err.message
                    .ends_with(&format!("undefined variable `{variable}`")),
                "{source}: {}",
                err.message
            );
        }
        let err = t
            .eval_bool("when", "dir == '/srv' and gone", &c)
            .expect_err("undefined must fail");
        assert!(err.message.contains("`gone`"), "{}", err.message);
    }

    #[test]
    fn default_filter_and_defined_test_work_in_strict_mode() {
        let t = Templates::new(".");
        let s = t
            .render("f", "{{ port | default(8080) }}", Mode::Plain, &ctx(&[]))
            .expect("renders");
        assert_eq!(s, "8080");
        assert!(
            !t.eval_bool("when", "x is defined", &ctx(&[]))
                .expect("evaluates")
        );
    }

    #[test]
    fn expressions_evaluate_with_or_without_braces() {
        let t = Templates::new(".");
        let c = ctx(&[("v", "2.7.1")]);
        assert!(t.eval_bool("when", "v == '2.7.1'", &c).expect("evaluates"));
        assert!(
            t.eval_bool("when", "{{ v != '1' }}", &c)
                .expect("evaluates")
        );
        let err = t
            .eval_bool("when", "missing == 1", &c)
            .expect_err("undefined");
        assert!(
            err.message.contains("undefined variable"),
            "{}",
            err.message
        );
    }

    #[test]
    fn template_files_render_without_quoting_and_keep_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.j2"), "name={{ n }}\n").expect("write");
        let t = Templates::new(dir.path());
        let s = t
            .render_file("a.j2", &ctx(&[("n", "x y")]))
            .expect("renders");
        assert_eq!(s, "name=x y\n");
        let err = t.render_file("a.j2", &ctx(&[])).expect_err("undefined");
        assert_eq!(err.message, "a.j2 line 1: undefined variable `n`");
    }

    #[test]
    fn template_src_is_confined_to_the_templates_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("templates");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::write(root.path().join("outside.txt"), "secret-outside").expect("write");
        std::fs::write(dir.join("sub/in.j2"), "inside").expect("write");
        std::os::unix::fs::symlink(root.path().join("outside.txt"), dir.join("link.j2"))
            .expect("symlink");
        std::os::unix::fs::symlink(dir.join("sub/in.j2"), dir.join("ok-link.j2")).expect("symlink");
        let t = Templates::new(&dir);
        let none = ctx(&[]);
        assert_eq!(t.render_file("sub/in.j2", &none).expect("inside"), "inside");
        assert_eq!(
            t.render_file("ok-link.j2", &none).expect("inside"),
            "inside"
        );
        let err = t.render_file("/etc/passwd", &none).expect_err("absolute");
        assert!(
            err.message
                .starts_with("template `/etc/passwd` is an absolute path"),
            "{}",
            err.message
        );
        let err = t
            .render_file("../../../../etc/passwd", &none)
            .expect_err("dot-dot");
        assert!(err.message.contains("uses `..`"), "{}", err.message);
        let err = t
            .render_file("sub/../../outside.txt", &none)
            .expect_err("dot-dot");
        assert!(err.message.contains("uses `..`"), "{}", err.message);
        let err = t.render_file("link.j2", &none).expect_err("symlink out");
        assert!(
            err.message.contains("through a symbolic link, outside"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("secret-outside"));
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let t = Templates::new(".");
        let started = std::time::Instant::now();
        let err = t
            .render(
                "loop",
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                Mode::Plain,
                &ctx(&[]),
            )
            .expect_err("runaway");
        assert!(
            err.message
                .starts_with("loop: template ran more than 20000000 steps"),
            "{}",
            err.message
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn output_larger_than_the_limit_is_an_error() {
        let t = Templates::new(".");
        let big = "x".repeat(1024 * 1024);
        let err = t
            .render(
                "big",
                "{% for i in range(40) %}{{ big }}{% endfor %}",
                Mode::Plain,
                &ctx(&[("big", &big)]),
            )
            .expect_err("too big");
        assert!(
            err.message
                .contains("rendered output is larger than 32 MiB"),
            "{}",
            err.message
        );
        // A large but bounded template still renders.
        let ok = t
            .render(
                "ok",
                "{% for i in range(10) %}{{ big }}{% endfor %}",
                Mode::Plain,
                &ctx(&[("big", &big)]),
            )
            .expect("10 MiB");
        assert_eq!(ok.len(), 10 * 1024 * 1024);
    }

    #[test]
    fn variables_of_lists_top_level_names() {
        let t = Templates::new(".");
        assert_eq!(
            t.variables_of("{{ a }} {{ b.c }} {{ a }}", false),
            ["a", "b"]
        );
        assert_eq!(t.variables_of("r.rc == 0 and x", true), ["r", "x"]);
    }
}
