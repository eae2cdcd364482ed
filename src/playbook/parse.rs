//! The top of a playbook file and its plays.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::checker::{Checker, Value, entries};
use super::{Play, Playbook, serial, task};
use crate::diag::{Diagnostic, Diagnostics};

const TOP_KEYS: &[&str] = &["name", "plays"];

const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "serial",
    "max_fail_percentage",
    "any_errors_fatal",
    "become",
    "become_user",
    "tags",
    "vars",
    "tasks",
];

/// Reads a whole playbook, reporting every problem found.
pub(crate) fn playbook(path: &Path, source: String) -> Result<Playbook, Diagnostics> {
    let doc = match DeTable::parse(&source) {
        Ok(doc) => doc,
        Err(e) => {
            let message = format!("invalid TOML: {}", e.message());
            let d = match e.span() {
                Some(span) => Diagnostic::at_span(path, &source, span, message),
                None => Diagnostic::in_file(path, message),
            };
            return Err(d.into());
        }
    };
    let mut ck = Checker::new(path, &source);
    let top = doc.get_ref();
    ck.reject_unknown_keys(top, TOP_KEYS, "the playbook");
    let name = match top.get("name") {
        Some(v) => ck.non_empty_string(v, "name", "the playbook"),
        None => path.file_stem().map(|s| s.to_string_lossy().into_owned()),
    };
    let plays = match top.get("plays") {
        Some(v) => plays(&mut ck, v),
        None => {
            ck.diags.push(
                Diagnostic::in_file(path, "the playbook has no plays")
                    .with_hint("add a [[plays]] table with hosts and [[plays.tasks]]"),
            );
            Vec::new()
        }
    };
    let diags = std::mem::take(&mut ck.diags).sorted();
    let playbook = Playbook {
        path: path.to_path_buf(),
        name: name.unwrap_or_default(),
        plays,
        source,
    };
    diags.into_result(playbook)
}

fn plays(ck: &mut Checker<'_>, value: &Value<'_>) -> Vec<Play> {
    let items = match value.get_ref() {
        DeValue::Array(items) if !items.is_empty() => items,
        DeValue::Array(_) => {
            ck.error_with_hint(
                value.span(),
                "the playbook has no plays",
                "add a [[plays]] table with hosts and [[plays.tasks]]",
            );
            return Vec::new();
        }
        _ => {
            ck.wrong_type(value, "plays", "the playbook", "a list of [[plays]] tables");
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| play(ck, item, i + 1))
        .collect()
}

fn play(ck: &mut Checker<'_>, value: &Value<'_>, number: usize) -> Option<Play> {
    let DeValue::Table(table) = value.get_ref() else {
        ck.wrong_type(value, "plays", "the playbook", "a list of [[plays]] tables");
        return None;
    };
    let unnamed = format!("play #{number}");
    let name = table
        .get("name")
        .and_then(|v| ck.non_empty_string(v, "name", &unnamed));
    let place = name.as_ref().map_or(unnamed, |n| format!("play \"{n}\""));
    ck.reject_unknown_keys(table, PLAY_KEYS, &place);

    let mut p = Play::new(String::new(), String::new());
    p.line = ck.line_of(&value.span());
    let mut ok = true;
    for (key, v) in entries(table) {
        let Some(field) = PLAY_KEYS.iter().copied().find(|k| *k == key.get_ref()) else {
            continue;
        };
        ok &= play_key(ck, &mut p, field, v, &place);
        p.field_spans.insert(field, v.span());
    }
    if !table.contains_key("hosts") {
        ck.error_with_hint(
            value.span(),
            format!("{place} has no \"hosts\""),
            "add hosts = \"<group or pattern>\", such as hosts = \"all\"",
        );
        ok = false;
    }
    // A play without a name is shown by its hosts, as Ansible does.
    p.name = name.unwrap_or_else(|| p.hosts.clone());
    ok.then_some(p)
}

/// Reads play key `field` into `p`; false when it was reported.
fn play_key(ck: &mut Checker<'_>, p: &mut Play, field: &str, v: &Value<'_>, place: &str) -> bool {
    fn set<T>(slot: &mut T, read: Option<T>) -> bool {
        read.map(|r| *slot = r).is_some()
    }
    match field {
        "hosts" => set(&mut p.hosts, ck.non_empty_string(v, field, place)),
        "serial" => set(&mut p.serial, serial::serial(ck, v, place)),
        "max_fail_percentage" => {
            let read = serial::max_fail_percentage(ck, v, place);
            set(&mut p.max_fail_percentage, read.map(Some))
        }
        "any_errors_fatal" => set(&mut p.any_errors_fatal, ck.bool(v, field, place)),
        "become" => set(&mut p.r#become, ck.bool(v, field, place)),
        "become_user" => set(
            &mut p.become_user,
            ck.non_empty_string(v, field, place).map(Some),
        ),
        "tags" => set(&mut p.tags, ck.strings(v, field, place)),
        "vars" => vars(ck, p, v, place),
        "tasks" => tasks(ck, p, v, place),
        _ => true,
    }
}

fn vars(ck: &mut Checker<'_>, p: &mut Play, value: &Value<'_>, place: &str) -> bool {
    let DeValue::Table(table) = value.get_ref() else {
        ck.wrong_type(value, "vars", place, "a table like { name = \"value\" }");
        return false;
    };
    let mut ok = true;
    for (key, v) in entries(table) {
        let name = key.get_ref().to_string();
        match ck.toml_value(v, &name, &format!("the vars of {place}")) {
            Some(value) => {
                p.var_spans.insert(name.clone(), v.span());
                p.vars.insert(name, value);
            }
            None => ok = false,
        }
    }
    ok
}

fn tasks(ck: &mut Checker<'_>, p: &mut Play, value: &Value<'_>, place: &str) -> bool {
    let DeValue::Array(items) = value.get_ref() else {
        ck.wrong_type(value, "tasks", place, "a list of [[plays.tasks]] tables");
        return false;
    };
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match task::task(ck, item, i + 1, place) {
            Some(t) => p.tasks.push(t),
            None => ok = false,
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::playbook::{Action, BatchSize, Playbook, TemplateSpec};

    const EXAMPLE: &str = r#"name = "Example"

[[plays]]
name = "DTR replicas"
hosts = "dtr"
serial = [1, "50%"]
max_fail_percentage = 0
any_errors_fatal = true
become = true
become_user = "root"
tags = ["dtr"]
vars = { target = "{{ dtr_version }}", replicas = 3 }

[[plays.tasks]]
name = "Create marker"
command = "touch {{ host_dir }}/marker"
creates = "{{ host_dir }}/marker"

[[plays.tasks]]
name = "Render config"
template = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf", mode = "0644" }
"#;

    fn parse(source: &str) -> Result<Playbook, Vec<String>> {
        Playbook::parse(Path::new("p.toml"), source.to_owned()).map_err(|d| {
            d.0.into_iter()
                .map(|d| format!("{}: {}", d.location(), d.message))
                .collect()
        })
    }

    #[test]
    fn reads_the_documented_example() {
        let pb = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(pb.name, "Example");
        let play = &pb.plays[0];
        assert_eq!(
            (play.name.as_str(), play.hosts.as_str(), play.line),
            ("DTR replicas", "dtr", 3)
        );
        assert_eq!(play.serial, [BatchSize::Count(1), BatchSize::Percent(50.0)]);
        assert_eq!(play.max_fail_percentage, Some(0.0));
        assert!(play.any_errors_fatal && play.r#become);
        assert_eq!(play.become_user.as_deref(), Some("root"));
        assert_eq!(play.tags, ["dtr"]);
        assert_eq!(
            play.vars.get("target"),
            Some(&toml::Value::from("{{ dtr_version }}"))
        );
        assert_eq!(play.vars.get("replicas"), Some(&toml::Value::from(3)));
        let replicas = play.var_spans.get("replicas").cloned().unwrap_or_default();
        assert_eq!(&pb.source[replicas], "3");

        let [marker, render] = &play.tasks[..] else {
            panic!("two tasks: {:?}", play.tasks)
        };
        assert_eq!(
            marker.action,
            Action::Command("touch {{ host_dir }}/marker".into())
        );
        assert_eq!(marker.creates.as_deref(), Some("{{ host_dir }}/marker"));
        assert_eq!(marker.line, 14);
        assert_eq!(marker.field_location(&pb, "creates"), Some((17, 11)));
        assert_eq!(render.line, 19);
        let spec = TemplateSpec {
            src: "app.conf.j2".into(),
            dest: "{{ host_dir }}/app.conf".into(),
            mode: Some("0644".into()),
        };
        assert_eq!(render.action, Action::Template(spec));
        assert_eq!(render.field_location(&pb, "template.dest"), Some((21, 42)));
        let shown = pb
            .task_diagnostic(render, "template.dest", "undefined `host_dir`")
            .to_string();
        assert!(shown.contains("p.toml:21:42"), "{shown}");
    }

    #[test]
    fn reports_every_problem_in_every_play() {
        let source = r#"
[[plays]]
name = "a"
hosts = ""
[[plays.tasks]]
command = 1

[[plays]]
hots = "web"
tasks = [{ command = "true", retries = -1 }]
"#;
        assert_eq!(
            parse(source).err().unwrap_or_default(),
            [
                r#"p.toml:4:9: key "hosts" in play "a" must not be empty"#,
                r#"p.toml:6:11: key "command" in task #1 in play "a" must be a string"#,
                r#"p.toml:8:1: play #2 has no "hosts""#,
                r#"p.toml:9:1: unknown key "hots" in play #2; did you mean "hosts"?"#,
                r#"p.toml:10:40: key "retries" in task #1 in play #2 must be from 0 to 4294967295, not -1"#,
            ]
        );
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let pb = parse("[[plays]]\nhosts = \"all\"\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(pb.name, "p", "the file stem names an unnamed playbook");
        let play = &pb.plays[0];
        assert_eq!(play.name, "all", "an unnamed play is called by its hosts");
        assert!(play.serial.is_empty() && play.tasks.is_empty() && play.vars.is_empty());
        assert_eq!(
            (play.max_fail_percentage, play.any_errors_fatal),
            (None, false)
        );
    }

    #[test]
    fn tasks_may_be_written_inline() {
        let source = "[[plays]]\nhosts = \"all\"\ntasks = [\n  { command = \"a\", timeout = \"30s\" },\n  { command = \"b\", timeout = \"1m\" },\n]\n";
        let pb = parse(source).unwrap_or_else(|e| panic!("{e:?}"));
        let lines: Vec<_> = pb.plays[0]
            .tasks
            .iter()
            .map(|t| (t.line, t.timeout))
            .collect();
        assert_eq!(
            lines,
            [
                (4, Some(Duration::from_secs(30))),
                (5, Some(Duration::from_secs(60)))
            ]
        );
    }

    #[test]
    fn a_syntax_error_is_one_located_problem() {
        let errs = parse("[[plays]\nhosts = \"all\"\n")
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("p.toml:1:"), "{errs:?}");
    }

    #[test]
    fn tables_where_lists_belong_are_explained() {
        let errs = parse("[[plays]]\nhosts = \"all\"\n[plays.tasks]\ncommand = \"x\"\n")
            .err()
            .unwrap_or_default();
        assert_eq!(
            errs,
            [r#"p.toml:3:1: key "tasks" in play #1 must be a list of [[plays.tasks]] tables"#]
        );
    }
}
