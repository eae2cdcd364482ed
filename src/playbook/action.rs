//! The action keys: which key makes a task do what, and how each reads its parameters.
//!
//! A new kind (`pull`, `upgrade`, …) is one `Action` variant, one arm in `Action::kind`, and
//! one entry in [`ACTIONS`]; the task parser, `task_keys()` and the "expected one of" message
//! pick it up from there. The DTR kinds share one variant, `Action::Dtr`, read in `dtr`.

mod dtr;

use toml::de::DeValue;

use super::checker::{Checker, Value, entries};
use super::{Action, FieldSpans, TemplateSpec};

/// Reads one action's value; `place` names the task (`task "x"`).
type ReadAction = fn(&mut Checker<'_>, &Value<'_>, &str, &mut FieldSpans) -> Option<Action>;

/// Every action key, in the order messages list them.
pub(crate) const ACTIONS: &[(&str, ReadAction)] = &[
    ("command", command),
    ("template", template),
    ("check", dtr::check),
    ("pull", dtr::pull),
    ("upgrade", dtr::upgrade),
    ("join", dtr::join),
    ("remove", dtr::remove),
    ("scale", dtr::scale),
];

/// The action keys alone.
pub(crate) fn action_keys() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|(key, _)| *key)
}

/// The reader for action key `key`, when it is one.
pub(crate) fn reader(key: &str) -> Option<(&'static str, ReadAction)> {
    ACTIONS.iter().find(|(k, _)| *k == key).copied()
}

fn command(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    let text = ck.non_empty_string(value, "command", place)?;
    spans.insert("command", value.span());
    Some(Action::Command(text))
}

const TEMPLATE_KEYS: &[&str] = &["src", "dest", "mode"];

fn template(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    let DeValue::Table(table) = value.get_ref() else {
        let expected = "a table like { src = \"app.conf.j2\", dest = \"/etc/app.conf\" }";
        ck.wrong_type(value, "template", place, expected);
        return None;
    };
    let here = format!("the template of {place}");
    ck.reject_unknown_keys(table, TEMPLATE_KEYS, &here);
    let (mut src, mut dest, mut mode, mut ok) = (None, None, None, true);
    for (key, v) in entries(table) {
        let name: &str = key.get_ref();
        let (slot, field) = match name {
            "src" => (&mut src, "template.src"),
            "dest" => (&mut dest, "template.dest"),
            "mode" => (&mut mode, "template.mode"),
            _ => continue,
        };
        let read = if name == "mode" {
            file_mode(ck, v, &here)
        } else {
            ck.non_empty_string(v, name, &here)
        };
        ok &= read.is_some();
        *slot = read;
        spans.insert(field, v.span());
    }
    for (missing, what) in [(src.is_none(), "src"), (dest.is_none(), "dest")] {
        if missing && !table.contains_key(what) {
            ck.error_with_hint(
                value.span(),
                format!("the template of {place} has no \"{what}\""),
                "a template needs src (under the templates directory) and dest (on the host)",
            );
            ok = false;
        }
    }
    let (Some(src), Some(dest), true) = (src, dest, ok) else {
        return None;
    };
    Some(Action::Template(TemplateSpec { src, dest, mode }))
}

/// An octal file mode of 3 or 4 digits, as a string so that TOML cannot read it as decimal.
fn file_mode(ck: &mut Checker<'_>, value: &Value<'_>, place: &str) -> Option<String> {
    let is_octal =
        |s: &str| matches!(s.len(), 3 | 4) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match value.get_ref() {
        DeValue::String(s) if is_octal(s) => Some(s.to_string()),
        DeValue::String(s) => {
            ck.error(
                value.span(),
                format!(
                    "key \"mode\" in {place} has \"{s}\", which is not an octal mode like \"0644\""
                ),
            );
            None
        }
        DeValue::Integer(i) => {
            ck.error_with_hint(
                value.span(),
                format!("key \"mode\" in {place} must be an octal string like \"0644\""),
                format!(
                    "quote it: mode = \"{}\" (a bare number is read as decimal)",
                    i.as_str()
                ),
            );
            None
        }
        _ => {
            ck.wrong_type(value, "mode", place, "an octal string like \"0644\"");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::de::DeTable;

    use super::*;

    fn read(text: &str) -> (Option<Action>, FieldSpans, Vec<String>) {
        let source = format!("template = {text}\n");
        let doc = DeTable::parse(&source).expect("test TOML parses");
        let value = doc.get_ref().get("template").expect("template").clone();
        let mut ck = Checker::new(Path::new("t.toml"), &source);
        let mut spans = FieldSpans::new();
        let action = template(&mut ck, &value, "task \"t\"", &mut spans);
        (
            action,
            spans,
            ck.diags.0.into_iter().map(|d| d.message).collect(),
        )
    }

    #[test]
    fn reads_a_template_and_its_spans() {
        let (action, spans, errs) = read("{ src = \"a.j2\", dest = \"/etc/a\", mode = \"644\" }");
        assert!(errs.is_empty(), "{errs:?}");
        let spec = TemplateSpec {
            src: "a.j2".into(),
            dest: "/etc/a".into(),
            mode: Some("644".into()),
        };
        assert_eq!(action, Some(Action::Template(spec)));
        let source = "template = { src = \"a.j2\", dest = \"/etc/a\", mode = \"644\" }";
        let dest = spans.get("template.dest").cloned().unwrap_or_default();
        assert_eq!(source.get(dest), Some("\"/etc/a\""));
    }

    #[test]
    fn rejects_bad_modes() {
        for mode in [
            "\"0844\"",
            "\"64\"",
            "\"06440\"",
            "\"rw-r--r--\"",
            "644",
            "true",
        ] {
            let (action, _, errs) =
                read(&format!("{{ src = \"a\", dest = \"b\", mode = {mode} }}"));
            assert_eq!((action, errs.len()), (None, 1), "{mode}: {errs:?}");
        }
    }

    #[test]
    fn reports_missing_fields_and_unknown_keys_together() {
        let (action, _, errs) = read("{ src = \"a\", dset = \"b\" }");
        assert_eq!(action, None);
        assert_eq!(
            errs,
            [
                "unknown key \"dset\" in the template of task \"t\"; did you mean \"dest\"?",
                "the template of task \"t\" has no \"dest\"",
            ]
        );
    }

    #[test]
    fn every_action_key_has_a_reader() {
        for key in action_keys() {
            assert_eq!(reader(key).map(|(k, _)| k), Some(key));
        }
    }
}
