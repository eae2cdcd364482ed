//! A DTR task's parameters rendered for one host, typed.
//!
//! Every parameter (written or defaulted) renders against the host's variables; the text is
//! then read as the parameter's type. An optional parameter that renders empty is not given
//! (`"{{ x | default('') }}"`). All problems of one host are reported together.
//! Commands (`lb_add`, `cache_upgrade`, …) keep their source: they render in shell mode when
//! they run, with the step's `node`, `replica_id` and `version` added.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use minijinja::value::Value;

use super::spec::{DtrTask, ParamDef, ParamType};
use crate::secrets;
use crate::template::{Mode, TemplateError, Templates};

/// One parameter's rendered value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Text(String),
    Bool(bool),
    Count(u64),
    Duration(Duration),
    List(Vec<String>),
    /// A command's template source, rendered when it runs.
    Command(String),
    Table(serde_json::Map<String, serde_json::Value>),
}

/// A parameter that did not render or did not read as its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamError {
    pub param: &'static str,
    pub message: String,
}

/// The parameters of a task for one host.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    vals: BTreeMap<&'static str, Val>,
    written: BTreeSet<&'static str>,
}

impl Params {
    /// Renders every parameter of `task` against `ctx`.
    pub fn render(
        t: &Templates,
        task_name: &str,
        task: &DtrTask,
        ctx: &Value,
    ) -> Result<Params, Vec<ParamError>> {
        let mut out = Params::default();
        let mut errors = Vec::new();
        for def in task.kind.params() {
            if task.written(def.name).is_some() {
                out.written.insert(def.name);
            }
            let Some(source) = task.source_of(def) else {
                continue;
            };
            match render_one(t, task_name, task, def, source, ctx) {
                Ok(Some(val)) => {
                    out.vals.insert(def.name, val);
                }
                Ok(None) => {}
                Err(message) => errors.push(ParamError {
                    param: def.name,
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Whether `name` was written in the playbook (rather than defaulted).
    pub fn is_written(&self, name: &str) -> bool {
        self.written.contains(name)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.vals.get(name) {
            Some(Val::Text(s)) => Some(s),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.vals.get(name), Some(Val::Bool(true)))
    }

    pub fn count(&self, name: &str) -> Option<u64> {
        match self.vals.get(name) {
            Some(Val::Count(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.vals.get(name) {
            Some(Val::Duration(d)) => Some(*d),
            _ => None,
        }
    }

    pub fn list(&self, name: &str) -> &[String] {
        match self.vals.get(name) {
            Some(Val::List(items)) => items,
            _ => &[],
        }
    }

    /// A command's template source, when the command is configured.
    pub fn command(&self, name: &str) -> Option<&str> {
        match self.vals.get(name) {
            Some(Val::Command(s)) => Some(s),
            _ => None,
        }
    }

    pub fn table(&self, name: &str) -> Option<&serde_json::Map<String, serde_json::Value>> {
        match self.vals.get(name) {
            Some(Val::Table(t)) => Some(t),
            _ => None,
        }
    }
}

fn render_one(
    t: &Templates,
    task_name: &str,
    task: &DtrTask,
    def: &ParamDef,
    source: &str,
    ctx: &Value,
) -> Result<Option<Val>, String> {
    let what = format!("`{}.{}` of task \"{task_name}\"", task.kind, def.name);
    if def.ty == ParamType::Command {
        // Checked for syntax now; rendered with the step's variables when it runs.
        return Ok(Some(Val::Command(source.to_owned())));
    }
    let text = t
        .render(&what, source, Mode::Plain, ctx)
        .map_err(|e| e.message)?;
    let text = text.trim();
    if text.is_empty() && !def.required {
        // `nodes = "{{ x | default('') }}"`: not given.
        return Ok(None);
    }
    let bad = |expected: &str| format!("{what} is `{text}`, which is not {expected}");
    Ok(Some(match def.ty {
        ParamType::Text | ParamType::Pattern | ParamType::Path => {
            if text.is_empty() {
                return Err(format!("{what} is empty"));
            }
            Val::Text(text.to_owned())
        }
        ParamType::Secret => {
            if text.is_empty() {
                return Err(format!("{what} is empty"));
            }
            if text.contains('\n') {
                return Err(format!(
                    "{what} holds a line break, which cannot be passed in an env file"
                ));
            }
            secrets::register(text);
            Val::Text(text.to_owned())
        }
        ParamType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            _ => return Err(bad("true or false")),
        },
        ParamType::Count => Val::Count(text.parse().map_err(|_| bad("a whole number"))?),
        ParamType::Duration => {
            Val::Duration(crate::duration::parse(text).map_err(|e| format!("{what}: {e}"))?)
        }
        ParamType::List => Val::List(split_list(text)),
        ParamType::Table => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => Val::Table(map),
            _ => return Err(bad("a table")),
        },
        ParamType::Command => Val::Command(source.to_owned()),
    }))
}

/// `2.6.8, 2.7.2`, `2.6.8 2.7.2` or a rendered list `["2.6.8", "2.7.2"]`.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim_matches(|c| matches!(c, '[' | ']' | '"' | '\'')))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `ctx` with `extra` added (and winning).
pub(crate) fn with_vars(ctx: &Value, extra: &[(&str, Value)]) -> Value {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    if let Ok(keys) = ctx.try_iter() {
        for k in keys {
            if let Ok(v) = ctx.get_item(&k) {
                map.insert(k.to_string(), v);
            }
        }
    }
    for (k, v) in extra {
        map.insert((*k).to_owned(), v.clone());
    }
    Value::from(map)
}

/// Renders the command `source` of parameter `param` in shell mode, with `extra` variables.
pub(crate) fn render_command(
    t: &Templates,
    task_name: &str,
    param: &str,
    source: &str,
    ctx: &Value,
    extra: &[(&str, Value)],
) -> Result<String, TemplateError> {
    let what = format!("`{param}` of task \"{task_name}\"");
    t.render(&what, source, Mode::Shell, &with_vars(ctx, extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtr::spec::{DtrKind, Param};

    fn task(kind: DtrKind, params: &[(&'static str, &str)]) -> DtrTask {
        DtrTask {
            kind,
            params: params
                .iter()
                .map(|(name, source)| Param {
                    name,
                    source: (*source).to_owned(),
                    span: 0..1,
                })
                .collect(),
        }
    }

    fn ctx() -> Value {
        minijinja::context! {
            inventory_hostname => "dtr-1",
            dtr_version => "2.7.2",
            dtr_min_replicas => 3,
            available => vec!["2.6.8", "2.7.2"],
            ucp_compat => Value::from(BTreeMap::from([("2.7", vec!["3.2"])])),
        }
    }

    #[test]
    fn renders_written_and_default_parameters_typed() {
        let t = Templates::new(".");
        let spec = task(
            DtrKind::Upgrade,
            &[
                ("version", "{{ dtr_version }}"),
                ("available", "{{ available }}"),
                ("ucp_url", "https://ucp"),
                ("ucp_username", "admin"),
                ("ucp_password", "pw-render-test"),
                ("migration_poll", "250ms"),
                ("cache_upgrade", "echo {{ version }}"),
                ("cache_version_command", "cat /v"),
            ],
        );
        let p = Params::render(&t, "t", &spec, &ctx()).expect("renders");
        assert_eq!(p.text("version"), Some("2.7.2"));
        assert_eq!(p.list("available"), ["2.6.8", "2.7.2"]);
        assert_eq!(p.text("dtr_url"), None);
        assert_eq!(p.text("image"), Some("docker/dtr"));
        assert!(!p.flag("ucp_insecure_tls"));
        assert_eq!(
            p.duration("migration_poll"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            p.duration("migration_timeout"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(p.command("cache_upgrade"), Some("echo {{ version }}"));
        assert!(p.is_written("version") && !p.is_written("node"));
        assert_eq!(crate::secrets::mask("x pw-render-test"), "x ********");
    }

    #[test]
    fn defaults_read_inventory_variables() {
        let t = Templates::new(".");
        let spec = task(
            DtrKind::Join,
            &[
                ("ucp_url", "u"),
                ("ucp_username", "a"),
                ("ucp_password", "pw-params-defaults-test"),
            ],
        );
        let p = Params::render(&t, "t", &spec, &ctx()).expect("renders");
        assert_eq!(p.count("min_replicas"), Some(3));
        assert!(!p.flag("allow_even_replicas"));
        let check = task(
            DtrKind::Check,
            &[
                ("version", "2.7.2"),
                ("ucp_url", "u"),
                ("ucp_username", "a"),
                ("ucp_password", "pw-params-defaults-test"),
                ("backup_time_command", "x"),
            ],
        );
        let p = Params::render(&t, "t", &check, &ctx()).expect("renders");
        let compat = p.table("ucp_compat").expect("a table");
        assert_eq!(compat.get("2.7"), Some(&serde_json::json!(["3.2"])));
    }

    #[test]
    fn reports_every_bad_parameter() {
        let t = Templates::new(".");
        let spec = task(
            DtrKind::Scale,
            &[
                ("replicas", "three"),
                ("ucp_url", "{{ nope }}"),
                ("ucp_username", "a"),
                ("ucp_password", "pw-params-defaults-test"),
                ("ucp_insecure_tls", "maybe"),
            ],
        );
        let errs = Params::render(&t, "t", &spec, &ctx()).expect_err("bad");
        let got: Vec<_> = errs.iter().map(|e| (e.param, e.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    "replicas",
                    "`scale.replicas` of task \"t\" is `three`, which is not a whole number"
                ),
                (
                    "ucp_url",
                    "`scale.ucp_url` of task \"t\" line 1: undefined variable `nope`"
                ),
                (
                    "ucp_insecure_tls",
                    "`scale.ucp_insecure_tls` of task \"t\" is `maybe`, which is not true or false"
                ),
            ]
        );
    }

    #[test]
    fn commands_render_quoted_with_step_variables() {
        let t = Templates::new(".");
        let cmd = render_command(
            &t,
            "t",
            "lb_add",
            "lb-ctl add {{ node }} {{ replica_id }}",
            &ctx(),
            &[
                ("node", Value::from("dtr 4")),
                ("replica_id", Value::from("abc")),
            ],
        )
        .expect("renders");
        assert_eq!(cmd, "lb-ctl add 'dtr 4' abc");
    }

    #[test]
    fn lists_split_on_commas_spaces_and_brackets() {
        assert_eq!(split_list("[\"2.6.8\", \"2.7.2\"]"), ["2.6.8", "2.7.2"]);
        assert_eq!(split_list("2.6.8 2.7.2,3.0.0"), ["2.6.8", "2.7.2", "3.0.0"]);
        assert!(split_list(" , ").is_empty());
    }
}
