//! Offline checks of DTR tasks, for `capstan validate` and before every run: every
//! parameter renders and reads as its type for every targeted host, every operator command
//! and every `templates/dtr-*.j2` file renders, host patterns resolve, and no task key that
//! a cluster task cannot honour is set.

use minijinja::value::Value;

use super::commands::render_template;
use super::params::{Params, render_command};
use super::spec::{DtrKind, DtrTask, ParamType};
use crate::diag::Diagnostic;
use crate::inventory::Inventory;
use crate::playbook::{Action, Play, Playbook, Task};
use crate::template::{TemplateError, Templates};

/// Task keys a cluster task does not take, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("creates", "a DTR task queries the cluster itself"),
    ("removes", "a DTR task queries the cluster itself"),
    ("unless", "a DTR task queries the cluster itself"),
    (
        "changed_when",
        "a DTR task decides what changed from the cluster's state",
    ),
    (
        "failed_when",
        "a DTR task decides what failed from the cluster's state",
    ),
    ("until", "a DTR task polls and verifies by itself"),
    ("retries", "a DTR task polls and verifies by itself"),
    ("delay", "a DTR task polls and verifies by itself"),
    (
        "run_once",
        "a DTR task already runs once for the whole cluster",
    ),
    (
        "become",
        "docker runs as the connecting user, who must be allowed to use it",
    ),
    (
        "become_user",
        "docker runs as the connecting user, who must be allowed to use it",
    ),
];

/// Host-independent problems of `play`'s DTR tasks.
pub(crate) fn check_play(inventory: &Inventory, pb: &Playbook, play: &Play) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for task in &play.tasks {
        let Action::Dtr(spec) = &task.action else {
            continue;
        };
        for (key, why) in UNSUPPORTED {
            if task.field_spans.contains_key(key) {
                out.push(
                    pb.task_diagnostic(
                        task,
                        key,
                        format!(
                            "key \"{key}\" has no effect on the `{}` task \"{}\": {why}",
                            spec.kind, task.name
                        ),
                    )
                    .with_hint("remove the key"),
                );
            }
        }
        if play.r#become && task.r#become.is_none() {
            out.push(
                pb.task_diagnostic(
                    task,
                    spec.kind.key(),
                    format!(
                        "the `{}` task \"{}\" cannot run with the play's `become`: docker runs \
                         as the connecting user",
                        spec.kind, task.name
                    ),
                )
                .with_hint("set become = false on the task"),
            );
        }
        for def in spec
            .kind
            .params()
            .iter()
            .filter(|d| d.ty == ParamType::Pattern)
        {
            let Some(param) = spec.written(def.name) else {
                continue;
            };
            if param.source.contains("{{") || param.source.contains("{%") {
                continue;
            }
            if let Err(e) = inventory.check_pattern(&param.source) {
                out.push(pb.diagnostic(
                    param.span.clone(),
                    format!(
                        "`{}.{}` of task \"{}\": {e}",
                        spec.kind, def.name, task.name
                    ),
                ));
            }
        }
    }
    out
}

/// Problems of DTR task `task` for the host whose variables are `ctx`.
pub(crate) fn check_task(
    t: &Templates,
    pb: &Playbook,
    task: &Task,
    spec: &DtrTask,
    ctx: &Value,
) -> Vec<Diagnostic> {
    let at = |param: &str, message: String| match spec.written(param) {
        Some(p) => pb.diagnostic(p.span.clone(), message),
        None => pb.task_diagnostic(task, spec.kind.key(), message),
    };
    let mut out = Vec::new();
    let params = match Params::render(t, &task.name, spec, ctx) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                out.push(at(e.param, e.message));
            }
            return out;
        }
    };
    let sample = sample_step_vars();
    for def in spec
        .kind
        .params()
        .iter()
        .filter(|d| d.ty == ParamType::Command)
    {
        if let Some(source) = params.command(def.name)
            && let Err(e) = render_command(t, &task.name, def.name, source, ctx, &sample)
        {
            out.push(at(def.name, e.message));
        }
    }
    let mut values = sample_step_vars();
    values.extend(sample_template_vars(&params));
    for file in spec.kind.templates() {
        for version in versions_of(spec.kind, &params) {
            let mut values = values.clone();
            values.push(("version", Value::from(version.as_str())));
            match render_template(t, file, ctx, &values) {
                Err(e) => {
                    out.push(template_problem(t, pb, task, spec, file, &e));
                    break;
                }
                Ok(cmd) => {
                    if let Err(e) = super::flags::check(&cmd) {
                        out.push(at(
                            spec.kind.key(),
                            format!("`{file}` for DTR {version}: {e}"),
                        ));
                    }
                }
            }
        }
    }
    if params.text("dtr_url").is_none_or(|u| u.trim().is_empty()) {
        out.push(
            at(
                "dtr_url",
                format!(
                    "the `{}` task \"{}\" has no DTR URL: capstan reads each replica's \
                     /_ping and the DTR API under that name",
                    spec.kind, task.name
                ),
            )
            .with_hint(
                "set the inventory variable `dtr_external_url` (e.g. \"https://dtr.example.com\")",
            ),
        );
    }
    let runs_bootstrapper = !spec.kind.templates().is_empty();
    let talks_to_ucp = runs_bootstrapper || spec.kind == DtrKind::Check;
    if talks_to_ucp
        && !params.flag("ucp_insecure_tls")
        && params.text("ucp_ca").is_none_or(|c| c.trim().is_empty())
    {
        out.push(
            at(
                "ucp_ca",
                format!(
                    "the `{}` task \"{}\" cannot verify UCP's TLS certificate: `ucp_ca` is not \
                     set (the bootstrapper offers `--ucp-ca` or `--ucp-insecure-tls`)",
                    spec.kind, task.name
                ),
            )
            .with_hint(
                "set the inventory variable `ucp_ca` to the PEM (a file or a secret), or to \
                 \"fetch\" to download it from {{ ucp_url }}/ca as the DTR docs do",
            ),
        );
    }
    out
}

/// The bootstrapper versions a task may run: an upgrade's target and every available
/// version (each may be a hop); join and remove run the cluster's version, unknown
/// offline, so every version of the flag table.
fn versions_of(kind: DtrKind, params: &Params) -> Vec<String> {
    if kind == DtrKind::Upgrade {
        let mut out: Vec<String> = params.list("available").to_vec();
        if let Some(v) = params.text("version")
            && !out.iter().any(|a| a == v)
        {
            out.push(v.to_owned());
        }
        return out;
    }
    ["2.5.0", "2.6.0", "2.7.0"].map(str::to_owned).to_vec()
}

/// An error inside a template file is located in that file; a missing file at the task.
fn template_problem(
    t: &Templates,
    pb: &Playbook,
    task: &Task,
    spec: &DtrTask,
    file: &str,
    e: &TemplateError,
) -> Diagnostic {
    let path = t.dir().join(file);
    match (e.line, t.file_source(&path, file)) {
        (Some(line), Ok(text)) => Diagnostic::at_line(&path, &text, line, 1, e.message.clone()),
        _ => pb
            .task_diagnostic(task, spec.kind.key(), e.message.clone())
            .with_hint(format!(
                "the `{}` task renders its commands from `{}` in the templates directory",
                spec.kind, file
            )),
    }
}

fn sample_step_vars() -> Vec<(&'static str, Value)> {
    vec![
        ("node", Value::from("node-1")),
        ("replica_id", Value::from("0123456789ab")),
        ("version", Value::from("2.7.2")),
    ]
}

/// Values as the task would render its commands with them; the switches as configured.
fn sample_template_vars(p: &Params) -> Vec<(&'static str, Value)> {
    vec![
        (
            "image",
            Value::from(p.text("image").unwrap_or("docker/dtr")),
        ),
        ("ucp_node", Value::from("node-1")),
        ("ucp_url", Value::from("https://ucp.example.com")),
        ("ucp_username", Value::from("admin")),
        (
            "ucp_ca",
            Value::from(p.text("ucp_ca").is_some_and(|c| !c.trim().is_empty())),
        ),
        ("ucp_insecure_tls", Value::from(p.flag("ucp_insecure_tls"))),
        ("existing_replica_id", Value::from("0123456789ab")),
        ("replica_ids", Value::from("0123456789ab,ba9876543210")),
        (
            "replica_https_port",
            Value::from(p.count("replica_https_port").unwrap_or(443)),
        ),
        (
            "replica_http_port",
            Value::from(p.count("replica_http_port").unwrap_or(0)),
        ),
        (
            "skip_network_test",
            Value::from(p.flag("skip_network_test")),
        ),
        ("unsafe_join", Value::from(p.flag("unsafe_join"))),
    ]
}

/// What `register` of a DTR task holds, for checking the fields of later tasks offline.
pub(crate) fn sample_register(spec: &DtrTask) -> Value {
    if spec.kind != DtrKind::Check {
        return super::run::plain_value(false, false);
    }
    minijinja::context! {
        version => "2.6.8",
        replica_id => "0123456789ab",
        node => "node-1",
        healthy => true,
        health => "healthy",
        replica_facts => Vec::<Value>::new(),
        cluster_version => "2.6.8",
        replicas => 3,
        target => "2.7.2",
        ucp_version => "3.2.5",
        content_trust => "false",
        mem_bytes => 34_359_738_368_u64,
        backup_age_seconds => 3600,
        failed_conditions => Vec::<String>::new(),
        changed => false,
        failed => false,
        skipped => false,
    }
}
