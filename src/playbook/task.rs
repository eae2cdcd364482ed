//! One task: exactly one action key plus the keys every task takes.

use std::sync::LazyLock;

use toml::de::DeValue;

use super::action;
use super::checker::{Checker, Value, entries};
use super::{Action, FieldSpans, Task};

/// The keys every task takes, besides its one action key.
const COMMON_KEYS: &[&str] = &[
    "name",
    "when",
    "creates",
    "removes",
    "unless",
    "changed_when",
    "failed_when",
    "until",
    "register",
    "retries",
    "delay",
    "tags",
    "run_once",
    "become",
    "become_user",
    "no_log",
    "timeout",
];

static TASK_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    COMMON_KEYS
        .iter()
        .copied()
        .chain(action::action_keys())
        .collect()
});

/// Every key a task may have: the common keys, then the action keys.
#[must_use]
pub fn task_keys() -> &'static [&'static str] {
    &TASK_KEYS
}

/// How many times a task with `until` but no `retries` runs its check (as Ansible).
pub const DEFAULT_RETRIES: u32 = 3;

/// Longest default task name taken from a command, in characters.
const NAME_FROM_COMMAND_MAX: usize = 50;

/// Reads task number `number` (1-based) of the play called `play` (already quoted or `#n`).
pub(crate) fn task(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    number: usize,
    play: &str,
) -> Option<Task> {
    let unnamed = format!("task #{number} in {play}");
    let DeValue::Table(table) = value.get_ref() else {
        ck.error_with_hint(
            value.span(),
            format!("{unnamed} must be a table"),
            "write each task as a [[plays.tasks]] table",
        );
        return None;
    };
    let name = match table.get("name") {
        Some(v) => ck.non_empty_string(v, "name", &unnamed),
        None => None,
    };
    let place = name.as_ref().map_or(unnamed, |n| format!("task \"{n}\""));
    ck.reject_unknown_keys(table, task_keys(), &place);

    let mut spans = FieldSpans::new();
    let action = read_action(ck, value, table, &place, &mut spans);
    // Name and action are filled in once every key has been checked.
    let mut t = Task::new(String::new(), Action::Command(String::new()));
    let mut ok = true;
    for (key, v) in entries(table) {
        let key: &str = key.get_ref();
        let Some(field) = COMMON_KEYS.iter().copied().find(|k| *k == key) else {
            continue;
        };
        if common_key(ck, &mut t, field, v, &place) {
            spans.insert(field, v.span());
        } else {
            ok = false;
        }
    }
    ok &= retries_need_until(ck, table.contains_key("until"), &spans, &place);
    let action = action?;
    if !ok {
        return None;
    }
    if t.until.is_some() && t.retries.is_none() {
        t.retries = Some(DEFAULT_RETRIES);
    }
    t.name = name.unwrap_or_else(|| default_name(&action, number));
    t.action = action;
    t.line = ck.line_of(&value.span());
    t.field_spans = spans;
    Some(t)
}

/// The one action of a task; none or two are errors.
fn read_action(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    table: &toml::de::DeTable<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    let present: Vec<_> = entries(table)
        .into_iter()
        .filter_map(|(k, v)| action::reader(k.get_ref()).map(|(name, read)| (k, name, read, v)))
        .collect();
    let Some(&(_, first, read, v)) = present.first() else {
        let expected: Vec<String> = action::action_keys().map(|k| format!("\"{k}\"")).collect();
        ck.error(
            header_span(ck, value),
            format!(
                "{place} has no action; expected one of {}",
                expected.join(", ")
            ),
        );
        return None;
    };
    for (key, other, _, _) in &present[1..] {
        ck.error_with_hint(
            key.span(),
            format!("{place} has two actions (\"{first}\" and \"{other}\"); a task does exactly one thing"),
            "split it into two [[plays.tasks]]",
        );
    }
    let action = read(ck, v, place, spans);
    if present.len() > 1 { None } else { action }
}

/// The task's header line (`[[plays.tasks]]`), or its inline table's first line.
fn header_span(ck: &Checker<'_>, value: &Value<'_>) -> std::ops::Range<usize> {
    let span = value.span();
    let line_end = ck.source[span.start..]
        .find('\n')
        .map_or(span.end, |i| span.start + i);
    span.start..line_end.min(span.end).max(span.start + 1)
}

/// Reads common key `field` into `t`; false when it was reported.
fn common_key(ck: &mut Checker<'_>, t: &mut Task, field: &str, v: &Value<'_>, place: &str) -> bool {
    fn set<T>(slot: &mut T, read: Option<T>) -> bool {
        read.map(|r| *slot = r).is_some()
    }
    match field {
        "when" => set(&mut t.when, ck.string(v, field, place).map(Some)),
        "creates" => set(
            &mut t.creates,
            ck.non_empty_string(v, field, place).map(Some),
        ),
        "removes" => set(
            &mut t.removes,
            ck.non_empty_string(v, field, place).map(Some),
        ),
        "unless" => set(
            &mut t.unless,
            ck.non_empty_string(v, field, place).map(Some),
        ),
        "changed_when" => set(
            &mut t.changed_when,
            ck.expression(v, field, place).map(Some),
        ),
        "failed_when" => set(&mut t.failed_when, ck.expression(v, field, place).map(Some)),
        "until" => set(&mut t.until, ck.expression(v, field, place).map(Some)),
        "register" => set(&mut t.register, register(ck, v, place).map(Some)),
        "retries" => set(&mut t.retries, ck.u32(v, field, place).map(Some)),
        "delay" => set(&mut t.delay, ck.duration(v, field, place).map(Some)),
        "tags" => set(&mut t.tags, ck.strings(v, field, place)),
        "run_once" => set(&mut t.run_once, ck.bool(v, field, place)),
        "become" => set(&mut t.r#become, ck.bool(v, field, place).map(Some)),
        "become_user" => set(
            &mut t.become_user,
            ck.non_empty_string(v, field, place).map(Some),
        ),
        "no_log" => set(&mut t.no_log, ck.bool(v, field, place)),
        "timeout" => match ck.duration(v, field, place) {
            Some(d) if d.is_zero() => {
                ck.error(
                    v.span(),
                    format!("key \"timeout\" in {place} must be more than zero"),
                );
                false
            }
            d => set(&mut t.timeout, d.map(Some)),
        },
        // "name" was read first, to name the task in messages.
        _ => true,
    }
}

/// `register` names a variable: `[A-Za-z_][A-Za-z0-9_]*`.
fn register(ck: &mut Checker<'_>, v: &Value<'_>, place: &str) -> Option<String> {
    let name = ck.string(v, "register", place)?;
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if starts_well && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(name);
    }
    ck.error_with_hint(
        v.span(),
        format!("key \"register\" in {place} has \"{name}\", which is not a variable name"),
        "use letters, digits and `_`, not starting with a digit, like `kernel_version`",
    );
    None
}

/// `retries` and `delay` only make sense with `until`; say so rather than ignore them.
fn retries_need_until(
    ck: &mut Checker<'_>,
    has_until: bool,
    spans: &FieldSpans,
    place: &str,
) -> bool {
    if has_until {
        return true;
    }
    let mut ok = true;
    for key in ["retries", "delay"] {
        if let Some(span) = spans.get(key) {
            ck.error_with_hint(
                span.clone(),
                format!("key \"{key}\" in {place} has no effect without \"until\""),
                "add until = \"<condition>\" to retry until it holds, or remove the key",
            );
            ok = false;
        }
    }
    ok
}

/// `touch /x` for a command (its first line, shortened), `template #2` for other kinds.
fn default_name(action: &Action, number: usize) -> String {
    match action {
        Action::Command(text) => {
            let line = text.lines().next().unwrap_or("").trim();
            if line.chars().count() > NAME_FROM_COMMAND_MAX || text.trim().contains('\n') {
                let short: String = line.chars().take(NAME_FROM_COMMAND_MAX).collect();
                format!("{}…", short.trim_end())
            } else {
                line.to_owned()
            }
        }
        other => format!("{} #{number}", other.kind()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::playbook::Playbook;

    fn tasks(body: &str) -> Result<Vec<Task>, Vec<String>> {
        let source = format!("[[plays]]\nname = \"p\"\nhosts = \"all\"\n{body}");
        Playbook::parse(Path::new("p.toml"), source)
            .map(|mut pb| pb.plays.remove(0).tasks)
            .map_err(|d| d.0.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn reads_every_common_key() {
        let got = tasks(
            r#"[[plays.tasks]]
command = "curl -fsk https://localhost/_ping"
when = "inventory_hostname in groups.dtr"
removes = "/tmp/old"
unless = "test -e /tmp/done"
changed_when = false
failed_when = "result.rc > 1"
until = "result.rc == 0"
register = "_ping1"
delay = "2s"
tags = "health"
run_once = true
become = false
become_user = "docker"
no_log = true
timeout = "90s"
"#,
        );
        let t = &got.unwrap_or_else(|e| panic!("{e:?}"))[0];
        assert_eq!(t.name, "curl -fsk https://localhost/_ping");
        assert_eq!(t.when.as_deref(), Some("inventory_hostname in groups.dtr"));
        assert_eq!(
            (t.removes.as_deref(), t.unless.as_deref()),
            (Some("/tmp/old"), Some("test -e /tmp/done"))
        );
        assert_eq!(t.changed_when.as_deref(), Some("false"));
        assert_eq!(t.failed_when.as_deref(), Some("result.rc > 1"));
        assert_eq!(t.until.as_deref(), Some("result.rc == 0"));
        assert_eq!(
            t.retries,
            Some(DEFAULT_RETRIES),
            "until without retries retries 3 times"
        );
        assert_eq!(t.register.as_deref(), Some("_ping1"));
        assert_eq!(
            (t.delay, t.timeout),
            (Some(Duration::from_secs(2)), Some(Duration::from_secs(90)))
        );
        assert_eq!(t.tags, ["health"]);
        assert!(t.run_once && t.no_log);
        assert_eq!(
            (t.r#become, t.become_user.as_deref()),
            (Some(false), Some("docker"))
        );
        assert_eq!(t.field_spans.len(), 15, "{:?}", t.field_spans.keys());
    }

    #[test]
    fn names_unnamed_tasks_after_what_they_do() {
        let long = "x".repeat(60);
        let got = tasks(&format!(
            "[[plays.tasks]]\ncommand = \"{long}\"\n\
             [[plays.tasks]]\ncommand = \"\"\"\necho one\necho two\"\"\"\n\
             [[plays.tasks]]\ntemplate = {{ src = \"a\", dest = \"b\" }}\n"
        ));
        let names: Vec<String> = got
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            names,
            [
                format!("{}…", "x".repeat(50)),
                "echo one…".to_owned(),
                "template #3".to_owned()
            ]
        );
    }

    #[test]
    fn explicit_retries_are_kept() {
        let got = tasks("[[plays.tasks]]\ncommand = \"x\"\nuntil = true\nretries = 0\n");
        assert_eq!(got.unwrap_or_else(|e| panic!("{e:?}"))[0].retries, Some(0));
    }

    #[test]
    fn rejects_bad_common_values() {
        let got = tasks(
            "[[plays.tasks]]\nname = \"t\"\ncommand = \"x\"\nregister = \"9lives\"\ntimeout = \"0s\"\ndelay = \"5s\"\nno_log = \"no\"\n",
        );
        assert_eq!(
            got.err().unwrap_or_default(),
            [
                "key \"register\" in task \"t\" has \"9lives\", which is not a variable name",
                "key \"timeout\" in task \"t\" must be more than zero",
                "key \"delay\" in task \"t\" has no effect without \"until\"",
                "key \"no_log\" in task \"t\" must be true or false",
            ]
        );
    }

    #[test]
    fn three_actions_report_each_extra_one() {
        let got = tasks(
            "[[plays.tasks]]\nname = \"t\"\ncommand = \"x\"\ntemplate = { src = \"a\", dest = \"b\" }\ncommand2 = 1\n",
        );
        let errs = got.err().unwrap_or_default();
        assert_eq!(
            errs[0],
            "task \"t\" has two actions (\"command\" and \"template\"); a task does exactly one thing"
        );
        assert!(
            errs[1].starts_with("unknown key \"command2\" in task \"t\""),
            "{errs:?}"
        );
    }

    #[test]
    fn task_keys_cover_common_and_action_keys() {
        for key in ["name", "creates", "until", "timeout", "command", "template"] {
            assert!(task_keys().contains(&key), "{key}");
        }
        assert_eq!(task_keys().len(), COMMON_KEYS.len() + action::ACTIONS.len());
    }
}
