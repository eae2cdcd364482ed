//! Readers of the DTR task kinds: `check`, `pull`, `upgrade`, `join`, `remove`, `scale`.
//!
//! Each takes a table of parameters (`crate::playbook::dtr_spec` lists them per kind). A value is a
//! template string, or a TOML literal of the parameter's type (`true`, `16`, a list, a
//! table), kept as template source so that every parameter renders the same way per host.

use toml::de::DeValue;

use super::super::checker::{Checker, Value, entries};
use super::super::{Action, FieldSpans};
use crate::playbook::dtr_spec::{DtrKind, DtrTask, Param, ParamType, cross_field_problems};

pub(super) fn check(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    read(DtrKind::Check, ck, value, place, spans)
}

pub(super) fn pull(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    read(DtrKind::Pull, ck, value, place, spans)
}

pub(super) fn upgrade(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    read(DtrKind::Upgrade, ck, value, place, spans)
}

pub(super) fn join(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    read(DtrKind::Join, ck, value, place, spans)
}

pub(super) fn remove(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    read(DtrKind::Remove, ck, value, place, spans)
}

pub(super) fn scale(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    read(DtrKind::Scale, ck, value, place, spans)
}

fn read(
    kind: DtrKind,
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
    spans: &mut FieldSpans,
) -> Option<Action> {
    let key = kind.key();
    let DeValue::Table(table) = value.get_ref() else {
        let expected = format!("a table like {}", kind.example());
        ck.wrong_type(value, key, place, &expected);
        return None;
    };
    spans.insert(key, value.span());
    let here = format!("the {key} of {place}");
    let known: Vec<&str> = kind.params().iter().map(|p| p.name).collect();
    ck.reject_unknown_keys(table, &known, &here);
    let mut ok = true;
    let mut params = Vec::new();
    for (k, v) in entries(table) {
        let Some(def) = kind.param(k.get_ref()) else {
            ok = false;
            continue;
        };
        match source(ck, v, def.name, def.ty, &here) {
            Some(source) => params.push(Param {
                name: def.name,
                source,
                span: v.span(),
            }),
            None => ok = false,
        }
    }
    for def in kind.params().iter().filter(|d| d.required) {
        if !table.contains_key(def.name) {
            ck.error_with_hint(
                value.span(),
                format!("{here} has no \"{}\"", def.name),
                format!("write it like {}", kind.example()),
            );
            ok = false;
        }
    }
    let task = DtrTask { kind, params };
    if ok {
        for (message, hint) in cross_field_problems(&task) {
            ck.error_with_hint(value.span(), format!("{place}: {message}"), hint);
            ok = false;
        }
    }
    ok.then_some(Action::Dtr(task))
}

/// The template source of one parameter value.
fn source(
    ck: &mut Checker<'_>,
    v: &Value<'_>,
    key: &str,
    ty: ParamType,
    place: &str,
) -> Option<String> {
    match (v.get_ref(), ty) {
        (DeValue::String(_), _) => ck.non_empty_string(v, key, place),
        (DeValue::Boolean(b), ParamType::Bool) => Some(b.to_string()),
        (DeValue::Integer(_), ParamType::Count | ParamType::Duration) => {
            let n = ck.integer(v, key, place)?;
            if n < 0 {
                ck.error(
                    v.span(),
                    format!("key \"{key}\" in {place} must not be negative, not {n}"),
                );
                return None;
            }
            Some(n.to_string())
        }
        (DeValue::Array(items), ParamType::List) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) if !s.trim().is_empty() => out.push(s.to_string()),
                    _ => {
                        ck.wrong_type(item, key, place, "a list of non-empty strings");
                        return None;
                    }
                }
            }
            Some(out.join(", "))
        }
        (DeValue::Table(_), ParamType::Table) => {
            let table = ck.toml_value(v, key, place)?;
            match serde_json::to_string(&table) {
                Ok(json) => Some(json),
                Err(e) => {
                    ck.error(v.span(), format!("key \"{key}\" in {place}: {e}"));
                    None
                }
            }
        }
        _ => {
            ck.wrong_type(v, key, place, ty.expected());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::de::DeTable;

    use super::*;

    fn read_kind(kind: &str, text: &str) -> (Option<Action>, Vec<String>) {
        let source = format!("{kind} = {text}\n");
        let doc = DeTable::parse(&source).expect("test TOML parses");
        let value = doc.get_ref().get(kind).expect("kind").clone();
        let mut ck = Checker::new(Path::new("t.toml"), &source);
        let mut spans = FieldSpans::new();
        let kind = DtrKind::from_key(kind).expect("a DTR kind");
        let action = read(kind, &mut ck, &value, "task \"t\"", &mut spans);
        (action, ck.diags.0.into_iter().map(|d| d.message).collect())
    }

    fn sources(action: Option<Action>) -> Vec<(&'static str, String)> {
        match action {
            Some(Action::Dtr(task)) => task
                .params
                .into_iter()
                .map(|p| (p.name, p.source))
                .collect(),
            other => panic!("not a DTR action: {other:?}"),
        }
    }

    #[test]
    fn reads_typed_literals_as_template_sources() {
        let (action, errs) = read_kind(
            "upgrade",
            "{ version = \"{{ v }}\", available = [\"2.6.8\", \"2.7.2\"], ucp_url = \"u\", \
             ucp_username = \"admin\", ucp_password = \"{{ pw }}\", ucp_insecure_tls = true, \
             migration_poll = 2 }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let got = sources(action);
        assert!(got.contains(&("available", "2.6.8, 2.7.2".to_owned())));
        assert!(got.contains(&("ucp_insecure_tls", "true".to_owned())));
        assert!(got.contains(&("migration_poll", "2".to_owned())));
    }

    #[test]
    fn reads_a_compatibility_table_as_json() {
        let (action, errs) = read_kind(
            "check",
            "{ version = \"2.7.2\", ucp_url = \"u\", ucp_username = \"a\", ucp_password = \"p\", \
             backup_time_command = \"c\", ucp_compat = { \"2.7\" = [\"3.2\"] } }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert!(sources(action).contains(&("ucp_compat", "{\"2.7\":[\"3.2\"]}".to_owned())));
    }

    #[test]
    fn reports_every_problem_together() {
        let (action, errs) = read_kind(
            "join",
            "{ ucp_url = \"u\", ucp_usrname = \"a\", ucp_insecure_tls = \"\", min_replicas = -1 }",
        );
        assert_eq!(action, None);
        assert_eq!(
            errs,
            [
                "unknown key \"ucp_usrname\" in the join of task \"t\"; did you mean \
                 \"ucp_username\"?",
                "key \"ucp_insecure_tls\" in the join of task \"t\" must not be empty",
                "key \"min_replicas\" in the join of task \"t\" must not be negative, not -1",
                "the join of task \"t\" has no \"ucp_username\"",
                "the join of task \"t\" has no \"ucp_password\"",
            ]
        );
    }

    #[test]
    fn rejects_wrong_types_and_cross_field_gaps() {
        let (_, errs) = read_kind("pull", "\"2.7.2\"");
        assert_eq!(
            errs,
            ["key \"pull\" in task \"t\" must be a table like { version = \"{{ dtr_version }}\" }"]
        );
        let (_, errs) = read_kind(
            "scale",
            "{ replicas = true, ucp_url = \"u\", ucp_username = \"a\", ucp_password = \"p\" }",
        );
        assert_eq!(
            errs,
            [
                "key \"replicas\" in the scale of task \"t\" must be a whole number (or a template \
              string rendering to one)"
            ]
        );
        let (_, errs) = read_kind(
            "remove",
            "{ ucp_url = \"u\", ucp_username = \"a\", ucp_password = \"p\" }",
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("task \"t\": the remove task names no replica"),
            "{errs:?}"
        );
    }
}
