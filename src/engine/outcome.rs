//! Turning what a step printed into what capstan reports and registers: result values,
//! notes, diffs, masking.

use std::collections::BTreeMap;

use minijinja::value::Value;

use super::script::Step;
use crate::report::event::{Status, TaskReport};
use crate::secrets;

pub(super) fn mask_report(mut r: TaskReport) -> TaskReport {
    r.stdout = secrets::mask(&r.stdout).into_owned();
    r.stderr = secrets::mask(&r.stderr).into_owned();
    r.note = r.note.map(|n| secrets::mask(&n).into_owned());
    r.diff = r.diff.map(|d| secrets::mask(&d).into_owned());
    r
}

/// A template whose destination is a symlink: the link is replaced, its target never read.
pub(super) fn symlink_note(target: &str) -> String {
    format!("dest is a symlink to {target}; it will be replaced by a file")
}

/// The file's mode before the change, from the script's detail (`content,mode=644`), as
/// four octal digits; `None` when the mode does not change.
pub(super) fn old_mode(what: &str) -> Option<String> {
    what.split(',').find_map(|part| {
        let old = part.strip_prefix("mode")?;
        let old = old.strip_prefix('=').unwrap_or("?");
        Some(
            if old.bytes().all(|b| b.is_ascii_digit()) && !old.is_empty() {
                format!("{old:0>4}")
            } else {
                old.to_owned()
            },
        )
    })
}

/// A unified diff of a template's destination, before → after.
pub(super) fn template_diff(
    context: usize,
    step: &Step,
    old: Option<&str>,
    new: Option<&str>,
    what: &str,
) -> Option<String> {
    let Step::Template { dest, mode, .. } = step else {
        return None;
    };
    let new = new?;
    if let Some(target) = what.strip_prefix("symlink ") {
        return Some(format!("{dest}: {}\n", symlink_note(target)));
    }
    if what == "new" {
        let diff = similar::TextDiff::from_lines("", new);
        return Some(
            diff.unified_diff()
                .context_radius(context)
                .header("/dev/null", &format!("{dest} (new file)"))
                .to_string(),
        );
    }
    let mut out = String::new();
    if let Some(old_mode) = old_mode(what) {
        out.push_str(&format!(
            "mode of {dest}: {old_mode} -> {}\n",
            mode.as_deref().unwrap_or("?")
        ));
    }
    if what.contains("content") {
        match old {
            Some(old) => out.push_str(
                &similar::TextDiff::from_lines(old, new)
                    .unified_diff()
                    .context_radius(context)
                    .header(&format!("{dest} (before)"), &format!("{dest} (after)"))
                    .to_string(),
            ),
            None => out.push_str(&format!(
                "{dest}: content differs (current file larger than {} KiB, not shown)\n",
                super::script::DIFF_FETCH_LIMIT / 1024
            )),
        }
    }
    Some(out)
}

pub(super) fn failed(mut r: TaskReport, why: &str) -> TaskReport {
    r.status = Status::Failed;
    r.note = Some(secrets::mask(why).into_owned());
    r
}

/// What `register` stores, as an Ansible user expects it.
pub(super) fn result_value(
    rc: i32,
    stdout: &str,
    stderr: &str,
    changed: bool,
    failed: bool,
) -> Value {
    let out = stdout.strip_suffix('\n').unwrap_or(stdout);
    let err = stderr.strip_suffix('\n').unwrap_or(stderr);
    let mut m = BTreeMap::new();
    m.insert("rc", Value::from(rc));
    m.insert("stdout", Value::from(out));
    m.insert("stderr", Value::from(err));
    m.insert(
        "stdout_lines",
        Value::from(out.lines().map(Value::from).collect::<Vec<_>>()),
    );
    m.insert(
        "stderr_lines",
        Value::from(err.lines().map(Value::from).collect::<Vec<_>>()),
    );
    m.insert("changed", Value::from(changed));
    m.insert("failed", Value::from(failed));
    m.insert("skipped", Value::from(false));
    Value::from(m)
}

pub(super) fn with_flags(v: &Value, changed: bool, failed: bool) -> Value {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    if let Ok(keys) = v.try_iter() {
        for k in keys {
            if let Ok(val) = v.get_item(&k) {
                m.insert(k.to_string(), val);
            }
        }
    }
    m.insert("changed".into(), Value::from(changed));
    m.insert("failed".into(), Value::from(failed));
    Value::from(m)
}

pub(super) fn skipped_result() -> Value {
    let mut m = BTreeMap::new();
    m.insert("changed", Value::from(false));
    m.insert("failed", Value::from(false));
    m.insert("skipped", Value::from(true));
    Value::from(m)
}

/// A registered result with secrets masked, before it is written to the cache.
pub(super) fn mask_json(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(secrets::mask(s).into_owned()),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(mask_json).collect()),
        serde_json::Value::Object(o) => {
            serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), mask_json(v))).collect())
        }
        other => other.clone(),
    }
}
