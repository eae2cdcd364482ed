//! Saved plans: what a `--check` run found would change, with the queried state each
//! decision rests on and digests of every input, so that `capstan apply plan.json` carries
//! out exactly what a reviewer approved — or refuses, naming what drifted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::event::{Status, TaskReport};

/// Per host, the decisions of a saved plan.
pub type PlannedHosts = BTreeMap<String, Vec<PlannedTask>>;

pub const PLAN_FORMAT: u32 = 1;

/// A plan file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedPlan {
    pub format: u32,
    pub created: String,
    pub playbook: PathBuf,
    pub inventory: PathBuf,
    /// sha256 of the inventory, the playbook and each template file, by path.
    pub digests: BTreeMap<String, String>,
    pub options: PlanOptions,
    /// Per host, every task the check run decided on, in order.
    pub hosts: BTreeMap<String, Vec<PlannedTask>>,
}

/// The run options a plan was made with; `apply` uses the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PlanOptions {
    pub limit: Option<String>,
    pub extra_vars: Vec<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub templates: PathBuf,
    /// `--diff-context` the plan's diffs were made with (diffs are part of the queried state).
    #[serde(default = "default_diff_context")]
    pub diff_context: usize,
}

fn default_diff_context() -> usize {
    crate::engine::DEFAULT_DIFF_CONTEXT
}

/// One task's decision on one host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedTask {
    pub task_index: usize,
    pub task: String,
    /// `ok`, `changed` (would change), `skipped`, `failed`, `unreachable`, `cached`.
    pub status: String,
    pub note: Option<String>,
    /// The command that would run (secrets masked).
    pub command: Option<String>,
    pub diff: Option<String>,
    /// Digest of the decision and the inputs that produced it: the status, the rendered
    /// command and the diff (a file's old and new content, a mode). Never the note or the
    /// output: they are prose for a person and may hold ages and times ("newest backup 1h
    /// old"), which would make every plan drift a minute later.
    pub state: String,
}

impl PlannedTask {
    /// The state digest covers the masked text only: a digest of a secret would let anyone
    /// holding the plan confirm a guess of it.
    pub fn from_report(r: &TaskReport) -> Self {
        let mut h = Sha256::new();
        for part in [
            r.status.as_str(),
            r.command.as_deref().unwrap_or(""),
            r.diff.as_deref().unwrap_or(""),
        ] {
            let part = crate::secrets::mask(part);
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let mask = |s: &Option<String>| s.as_deref().map(|s| crate::secrets::mask(s).into_owned());
        Self {
            task_index: r.task_index,
            task: crate::secrets::mask(&r.task).into_owned(),
            status: r.status.as_str().to_owned(),
            note: mask(&r.note),
            command: mask(&r.command),
            diff: mask(&r.diff),
            state: hex::encode(h.finalize()),
        }
    }

    fn would_change(&self) -> bool {
        self.status == Status::Changed.as_str()
    }
}

/// Per-host decisions from a check run's reports.
pub fn decisions(reports: &[TaskReport]) -> BTreeMap<String, Vec<PlannedTask>> {
    let mut hosts: BTreeMap<String, Vec<PlannedTask>> = BTreeMap::new();
    for r in reports {
        hosts
            .entry(r.host.clone())
            .or_default()
            .push(PlannedTask::from_report(r));
    }
    hosts
}

/// sha256 of a file's bytes, or a note that it could not be read.
pub fn file_digest(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Digests of the inventory, the playbook and every file in the templates directory.
pub fn input_digests(
    inventory: &Path,
    playbook: &Path,
    templates: &Path,
) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    d.insert(inventory.display().to_string(), file_digest(inventory));
    d.insert(playbook.display().to_string(), file_digest(playbook));
    let mut stack = vec![templates.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                d.insert(p.display().to_string(), file_digest(&p));
            }
        }
    }
    d
}

/// Input files whose content differs from the plan's digests (or appeared, or went away).
pub fn changed_inputs(
    saved: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, digest) in saved {
        match now.get(path) {
            Some(d) if d == digest => {}
            Some(_) => out.push(format!("`{path}` changed since the plan was made")),
            None => out.push(format!("`{path}` is gone")),
        }
    }
    for path in now.keys().filter(|p| !saved.contains_key(*p)) {
        out.push(format!("`{path}` is new since the plan was made"));
    }
    out
}

/// Where the hosts' queried state now differs from the plan, one line per difference.
pub fn drift(
    planned: &BTreeMap<String, Vec<PlannedTask>>,
    now: &BTreeMap<String, Vec<PlannedTask>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let hosts: std::collections::BTreeSet<&String> = planned.keys().chain(now.keys()).collect();
    for host in hosts {
        let empty = Vec::new();
        let before = planned.get(host).unwrap_or(&empty);
        let after = now.get(host).unwrap_or(&empty);
        if planned.get(host).is_none() {
            out.push(format!("host {host}: not in the plan"));
            continue;
        }
        if now.get(host).is_none() {
            out.push(format!("host {host}: in the plan but not targeted now"));
            continue;
        }
        for b in before {
            match after.iter().find(|a| a.task_index == b.task_index) {
                None => out.push(format!(
                    "host {host}: task \"{}\" was planned ({}) but is not reached now",
                    b.task, b.status
                )),
                Some(a) if a.state != b.state => {
                    out.push(format!(
                        "host {host}: task \"{}\": {}",
                        b.task,
                        what_drifted(b, a)
                    ));
                }
                Some(_) => {}
            }
        }
        for a in after
            .iter()
            .filter(|a| !before.iter().any(|b| b.task_index == a.task_index))
        {
            out.push(format!(
                "host {host}: task \"{}\" is not in the plan ({})",
                a.task, a.status
            ));
        }
    }
    out
}

/// The part of the decision that differs, with both sides.
fn what_drifted(planned: &PlannedTask, now: &PlannedTask) -> String {
    let note = |t: &PlannedTask| {
        t.note
            .as_deref()
            .map_or_else(String::new, |n| format!(" ({n})"))
    };
    if planned.status != now.status {
        return format!(
            "the plan said {}{}, the host now says {}{}",
            describe(planned),
            note(planned),
            describe(now),
            note(now)
        );
    }
    if planned.command != now.command {
        return format!(
            "the command was `{}` in the plan and is `{}` now",
            planned.command.as_deref().unwrap_or(""),
            now.command.as_deref().unwrap_or("")
        );
    }
    let first_difference = |a: &str, b: &str| {
        a.lines().zip(b.lines()).find(|(x, y)| x != y).map_or_else(
            || "one is longer than the other".to_owned(),
            |(x, y)| format!("`{x}` in the plan, `{y}` now"),
        )
    };
    format!(
        "the change differs from the plan's ({})",
        first_difference(
            planned.diff.as_deref().unwrap_or(""),
            now.diff.as_deref().unwrap_or("")
        )
    )
}

fn describe(t: &PlannedTask) -> &str {
    if t.would_change() {
        "would change"
    } else {
        &t.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(i: usize, status: &str, note: &str) -> PlannedTask {
        PlannedTask {
            task_index: i,
            task: format!("t{i}"),
            status: status.into(),
            note: Some(note.into()),
            command: None,
            diff: None,
            state: format!("{status}{note}"),
        }
    }

    #[test]
    fn plan_holds_no_secret_and_no_digest_of_one() {
        crate::secrets::register("plan-secret-9f2e");
        let report = |command: &str| TaskReport {
            host: "web-1".into(),
            play: "p".into(),
            task: "t".into(),
            task_index: 0,
            kind: "command",
            status: Status::Changed,
            check_mode: true,
            note: None,
            command: Some(command.to_owned()),
            exit: None,
            stdout: "out plan-secret-9f2e".into(),
            stderr: String::new(),
            diff: Some("+pw=plan-secret-9f2e".into()),
            duration: std::time::Duration::ZERO,
        };
        let raw = PlannedTask::from_report(&report("echo plan-secret-9f2e"));
        let guess = PlannedTask::from_report(&report("echo plan-secret-0000"));
        let text = serde_json::to_string(&raw).unwrap_or_default();
        assert!(!text.contains("plan-secret-9f2e"), "{text}");
        // The digest is of the masked text: it cannot tell a right guess from a wrong one
        // any better than the masked text shown beside it.
        let masked = PlannedTask::from_report(&report("echo ********"));
        assert_eq!(raw.state, masked.state);
        assert_ne!(raw.state, guess.state);
    }

    #[test]
    fn drift_names_host_task_and_both_sides() {
        let mut a = BTreeMap::new();
        a.insert(
            "h1".to_owned(),
            vec![task(0, "changed", "would run"), task(1, "ok", "same")],
        );
        let mut b = a.clone();
        assert!(drift(&a, &b).is_empty());
        b.insert(
            "h1".to_owned(),
            vec![task(0, "ok", "creates: /x exists"), task(1, "ok", "same")],
        );
        let d = drift(&a, &b);
        assert_eq!(
            d,
            [
                "host h1: task \"t0\": the plan said would change (would run), the host now says ok (creates: /x exists)"
            ]
        );
        b.insert("h2".to_owned(), vec![]);
        assert!(
            drift(&a, &b)
                .iter()
                .any(|l| l == "host h2: not in the plan")
        );
    }

    fn decided(status: Status, note: &str, command: &str, diff: &str) -> PlannedTask {
        PlannedTask::from_report(&TaskReport {
            host: "h1".into(),
            play: "p".into(),
            task: "t".into(),
            task_index: 0,
            kind: "command",
            status,
            check_mode: true,
            note: Some(note.into()),
            command: Some(command.into()),
            exit: None,
            stdout: format!("{note} at some time"),
            stderr: String::new(),
            diff: Some(diff.into()),
            duration: std::time::Duration::ZERO,
        })
    }

    #[test]
    fn a_plan_compares_decisions_not_prose() {
        let plan = |t: PlannedTask| BTreeMap::from([("h1".to_owned(), vec![t])]);
        let made = decided(Status::Ok, "newest backup 1h old", "check", "");
        let later = decided(Status::Ok, "newest backup 1h 1m 2s old", "check", "");
        assert!(
            drift(&plan(made.clone()), &plan(later)).is_empty(),
            "ages and output are prose: no drift"
        );
        let other_cmd = decided(Status::Ok, "x", "upgrade to 2.7.3", "");
        assert_eq!(
            drift(&plan(made.clone()), &plan(other_cmd)),
            [
                "host h1: task \"t\": the command was `check` in the plan and is `upgrade to 2.7.3` now"
            ]
        );
        let a = decided(Status::Changed, "x", "write", "-a\n+port = 80\n");
        let b = decided(Status::Changed, "x", "write", "-a\n+port = 81\n");
        assert_eq!(
            drift(&plan(a), &plan(b)),
            [
                "host h1: task \"t\": the change differs from the plan's (`+port = 80` in the plan, `+port = 81` now)"
            ]
        );
    }

    #[test]
    fn changed_inputs_are_named() {
        let mut saved = BTreeMap::new();
        saved.insert("a".to_owned(), "1".to_owned());
        saved.insert("b".to_owned(), "2".to_owned());
        let mut now = saved.clone();
        now.insert("b".to_owned(), "3".to_owned());
        now.insert("c".to_owned(), "4".to_owned());
        assert_eq!(
            changed_inputs(&saved, &now),
            [
                "`b` changed since the plan was made",
                "`c` is new since the plan was made"
            ]
        );
    }
}
