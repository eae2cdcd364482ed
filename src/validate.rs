//! Offline checks of a playbook against an inventory: host patterns, expressions, and that
//! every task field and template renders for every targeted host. `capstan validate` and
//! every `capstan run` (before contacting any host) use this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::Value;

use crate::context::host_context;
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::{Host, Inventory};
use crate::playbook::{Action, Play, Playbook, Task};
use crate::template::{Mode, TemplateError, Templates};
use crate::vars::Vars;

/// Hosts named in one problem are listed up to this many.
const HOSTS_SHOWN: usize = 3;

/// Every problem found, deduplicated across hosts (the message lists the hosts concerned).
pub fn check_playbook(
    inventory: &Inventory,
    playbook: &Playbook,
    extra: &Vars,
    limit: Option<&str>,
    templates_dir: &Path,
) -> Diagnostics {
    let mut found = Found::default();
    let templates = Templates::new(templates_dir);
    let limit_hosts = match limit.map(|l| inventory.select(l)) {
        Some(Ok(hosts)) => Some(hosts),
        Some(Err(e)) => {
            found.plain(Diagnostic::in_file("--limit", e.to_string()));
            None
        }
        None => None,
    };
    if inventory.hosts.is_empty() {
        found.plain(Diagnostic::in_file(
            inventory.path.clone(),
            "the inventory has no host; nothing to run on",
        ));
    }
    let mut any_host = false;
    for play in &playbook.plays {
        check_expressions(&templates, playbook, play, &mut found);
        for d in crate::dtr::validate::check_play(inventory, playbook, play) {
            found.plain(d);
        }
        let hosts = match inventory.select(&play.hosts) {
            Ok(h) => h,
            Err(e) => {
                let d = match play.field_spans.get("hosts") {
                    Some(span) => {
                        playbook.diagnostic(span.clone(), format!("play \"{}\": {e}", play.name))
                    }
                    None => Diagnostic::at_line(
                        &playbook.path,
                        &playbook.source,
                        play.line,
                        1,
                        e.to_string(),
                    ),
                };
                found.plain(d);
                continue;
            }
        };
        if hosts.is_empty() && !inventory.hosts.is_empty() {
            let message = format!(
                "play \"{}\": host pattern \"{}\" matches no host",
                play.name, play.hosts
            );
            found.plain(match play.field_spans.get("hosts") {
                Some(span) => playbook.diagnostic(span.clone(), message),
                None => {
                    Diagnostic::at_line(&playbook.path, &playbook.source, play.line, 1, message)
                }
            });
        }
        for host in hosts {
            if limit_hosts
                .as_ref()
                .is_some_and(|l| !l.iter().any(|h| h.name == host.name))
            {
                continue;
            }
            any_host = true;
            check_host(
                inventory, playbook, play, host, extra, &templates, &mut found,
            );
        }
    }
    if let (Some(limit), Some(_), false) = (limit, &limit_hosts, any_host)
        && !playbook.plays.is_empty()
    {
        found.plain(Diagnostic::in_file(
            "--limit",
            format!(
                "--limit \"{limit}\" leaves no host to run on (the plays target: {})",
                playbook
                    .plays
                    .iter()
                    .map(|p| p.hosts.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    found.into_diagnostics()
}

fn check_expressions(t: &Templates, pb: &Playbook, play: &Play, found: &mut Found) {
    for task in &play.tasks {
        for (field, expr) in [
            ("when", &task.when),
            ("changed_when", &task.changed_when),
            ("failed_when", &task.failed_when),
            ("until", &task.until),
        ] {
            if let Some(expr) = expr
                && let Err(e) =
                    t.check_expression(&format!("`{field}` of task \"{}\"", task.name), expr)
            {
                found.plain(pb.task_diagnostic(task, field, e.message));
            }
        }
    }
}

/// Renders everything of `play` for `host`.
fn check_host(
    inventory: &Inventory,
    pb: &Playbook,
    play: &Play,
    host: &Host,
    extra: &Vars,
    t: &Templates,
    found: &mut Found,
) {
    let mut ctx = match host_context(inventory, play, host, extra, t) {
        Ok(ctx) => ctx,
        Err(e) => {
            let d = match play.var_spans.get(&e.name) {
                Some(span) => pb.diagnostic(span.clone(), e.error.message),
                None => Diagnostic::at_line(&pb.path, &pb.source, play.line, 1, e.error.message),
            };
            found.for_host(d, &host.name);
            return;
        }
    };
    for task in &play.tasks {
        check_task(t, pb, task, &Value::from(ctx.clone()), &host.name, found);
        if let Some(name) = &task.register {
            let sample = match &task.action {
                Action::Dtr(spec) => crate::dtr::validate::sample_register(spec),
                _ => sample_result(),
            };
            ctx.insert(name.clone(), sample);
        }
    }
}

fn check_task(
    t: &Templates,
    pb: &Playbook,
    task: &Task,
    ctx: &Value,
    host: &str,
    found: &mut Found,
) {
    let what = |f: &str| format!("`{f}` of task \"{}\"", task.name);
    check_conditions(t, pb, task, ctx, host, found);
    // A task whose `when` is already false offline (say `x is defined` for an undefined `x`)
    // would be skipped at run time: its fields need not render.
    if let Some(when) = &task.when
        && matches!(t.eval_bool(&what("when"), when, ctx), Ok(false))
    {
        return;
    }
    let mut field = |name: &str, text: &Option<String>, mode: Mode| {
        if let Some(text) = text
            && let Err(e) = t.render(&what(name), text, mode, ctx)
        {
            found.for_host(pb.task_diagnostic(task, name, e.message), host);
        }
    };
    field("creates", &task.creates, Mode::Path);
    field("removes", &task.removes, Mode::Path);
    field("unless", &task.unless, Mode::Shell);
    match &task.action {
        Action::Command(cmd) => field("command", &Some(cmd.clone()), Mode::Shell),
        Action::Template(spec) => {
            field("template.dest", &Some(spec.dest.clone()), Mode::Path);
            match t.render(&what("template.src"), &spec.src, Mode::Path, ctx) {
                Ok(src) => {
                    if let Err(e) = t.render_file(&src, ctx) {
                        found.for_host(template_file_problem(t, pb, task, &src, &e), host);
                    }
                }
                Err(e) => found.for_host(pb.task_diagnostic(task, "template.src", e.message), host),
            }
        }
        Action::Dtr(spec) => {
            for d in crate::dtr::validate::check_task(t, pb, task, spec, ctx) {
                found.for_host(d, host);
            }
        }
    }
}

/// An error inside a template file is located in that file; a missing file at the task.
fn template_file_problem(
    t: &Templates,
    pb: &Playbook,
    task: &Task,
    src: &str,
    e: &TemplateError,
) -> Diagnostic {
    let path: PathBuf = t.dir().join(src);
    match (e.line, t.file_source(&path, src)) {
        (Some(line), Ok(text)) => Diagnostic::at_line(&path, &text, line, 1, e.message.clone()),
        _ => pb.task_diagnostic(task, "template.src", e.message.clone()),
    }
}

/// What `register` will hold, for checking the fields that read it.
/// `when`, `changed_when`, `failed_when` and `until` may only read names that exist when
/// they are evaluated: the host's variables, the registers of earlier tasks, and (for the
/// last three) the task's own result as `result` or its `register` name. A name that is none
/// of these is an error before any host is contacted, not a failure after earlier tasks
/// changed hosts. Only undefined names are reported here: a value that is only known at run
/// time (an empty sample output, say) is not judged.
fn check_conditions(
    t: &Templates,
    pb: &Playbook,
    task: &Task,
    ctx: &Value,
    host: &str,
    found: &mut Found,
) {
    let what = |f: &str| format!("`{f}` of task \"{}\"", task.name);
    let mut report = |field: &str, result: Result<bool, crate::template::TemplateError>| {
        if let Err(e) = result
            && e.variable.is_some()
        {
            found.for_host(pb.task_diagnostic(task, field, e.message), host);
        }
    };
    if let Some(when) = &task.when {
        report("when", t.eval_bool(&what("when"), when, ctx));
    }
    let mut with_result: BTreeMap<String, Value> = ctx
        .try_iter()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            let v = ctx.get_item(&k).ok()?;
            Some((k.as_str()?.to_owned(), v))
        })
        .collect();
    with_result.insert("result".to_owned(), sample_result());
    if let Some(name) = &task.register {
        with_result.insert(name.clone(), sample_result());
    }
    let after = Value::from(with_result);
    for (field, expr) in [
        ("changed_when", &task.changed_when),
        ("failed_when", &task.failed_when),
        ("until", &task.until),
    ] {
        if let Some(expr) = expr {
            report(field, t.eval_bool(&what(field), expr, &after));
        }
    }
}

fn sample_result() -> Value {
    let mut m = BTreeMap::new();
    m.insert("rc", Value::from(0));
    for k in ["stdout", "stderr", "msg"] {
        m.insert(k, Value::from(""));
    }
    m.insert("stdout_lines", Value::from(Vec::<Value>::new()));
    m.insert("stderr_lines", Value::from(Vec::<Value>::new()));
    for k in ["changed", "failed", "skipped"] {
        m.insert(k, Value::from(false));
    }
    Value::from(m)
}

/// The filters a template can use: minijinja's built-in filters (its `filters` module) and
/// capstan's own (`crate::template`). A test renders each one.
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "raw",
    "quote",
    "to_json",
];

/// `did you mean "default"?` for minijinja's "filter defualt is unknown".
fn unknown_filter_hint(message: &str) -> Option<String> {
    let (_, after) = message.split_once("filter ")?;
    let (name, _) = after.split_once(" is unknown")?;
    match crate::diag::suggest(name, FILTERS.iter().copied()) {
        Some(s) => Some(format!("did you mean the filter \"{s}\"?")),
        None => Some(format!("the filters are: {}", FILTERS.join(", "))),
    }
}

/// Problems keyed by location and message, with the hosts each one concerns.
#[derive(Default)]
struct Found {
    problems: BTreeMap<ProblemKey, (Diagnostic, Vec<String>)>,
}

/// File, line, column, message.
type ProblemKey = (PathBuf, usize, usize, String);

impl Found {
    fn plain(&mut self, d: Diagnostic) {
        let key = (d.file.clone(), d.line, d.column, d.message.clone());
        self.problems.entry(key).or_insert((d, Vec::new()));
    }

    fn for_host(&mut self, d: Diagnostic, host: &str) {
        let key = (d.file.clone(), d.line, d.column, d.message.clone());
        let entry = self.problems.entry(key).or_insert((d, Vec::new()));
        entry.1.push(host.to_owned());
    }

    fn into_diagnostics(self) -> Diagnostics {
        let mut out = Diagnostics::default();
        for (_, (mut d, hosts)) in self.problems {
            if d.hint.is_none()
                && let Some(hint) = unknown_filter_hint(&d.message)
            {
                d.hint = Some(hint);
            }
            if !hosts.is_empty() {
                let shown: Vec<&str> = hosts.iter().take(HOSTS_SHOWN).map(String::as_str).collect();
                let more = hosts.len().saturating_sub(HOSTS_SHOWN);
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                d.message = format!("{} (for host {}{tail})", d.message, shown.join(", "));
            }
            out.push(d);
        }
        out
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn every_listed_filter_exists() {
        let t = Templates::new("/nonexistent");
        let ctx = minijinja::context! { x => vec![1, 2] };
        for name in FILTERS {
            let text = format!("{{{{ x | {name} }}}}");
            if let Err(e) = t.render("test", &text, Mode::Plain, &ctx) {
                assert!(!e.message.contains("is unknown"), "{name}: {}", e.message);
            }
        }
    }

    #[test]
    fn a_filter_typo_gets_the_closest_filter() {
        let t = Templates::new("/nonexistent");
        let ctx = minijinja::context! {};
        let e = t
            .render("test", "{{ x | defualt('a') }}", Mode::Plain, &ctx)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert_eq!(
            unknown_filter_hint(&e).as_deref(),
            Some("did you mean the filter \"default\"?"),
            "{e}"
        );
    }
}
