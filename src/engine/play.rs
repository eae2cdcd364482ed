//! One play: its hosts' variables, tag selection, rolling batches, segments across hosts,
//! `run_once`, and the failure thresholds.
//!
//! `max_fail_percentage` is measured over the whole play (failed or unreachable hosts out of
//! all the play's hosts), not per batch as Ansible does; `any_errors_fatal` stops the play at
//! the first failure. Either stops the run after the current task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;

use super::batch::{batch_sizes, over_threshold};
use super::host::HostState;
use super::segment::{self, Segment};
use super::{RunOutcome, Shared};
use crate::inventory::Host;
use crate::playbook::{Play, Playbook, Task};
use crate::report::event::{Event, Status, TaskReport};
use crate::transport::Session;

/// Runs `play` on `hosts`. Returns `true` when the run must stop (a threshold was crossed).
pub(crate) async fn run_play(
    shared: &Shared<'_>,
    play: &Play,
    hosts: &[&Host],
    sessions: &BTreeMap<String, Arc<Session>>,
    outcome: &mut RunOutcome,
) -> bool {
    shared.emit(Event::PlayStarted {
        name: play.name.clone(),
        hosts: hosts.iter().map(|h| h.name.clone()).collect(),
    });
    let total = hosts.len();
    let mut states = Vec::new();
    let mut lost = 0usize;
    for h in hosts {
        let Some(session) = sessions.get(&h.name) else {
            lost += 1; // unreachable since connecting; already counted in the recap
            continue;
        };
        match HostState::new(shared, play, h, Arc::clone(session)) {
            Ok(s) => states.push(s),
            Err(e) => {
                lost += 1;
                record(shared, outcome, variables_failure(play, h, &e.message));
            }
        }
    }
    if shared.cache.enabled() {
        let forks = shared.opts.forks.max(1);
        futures::stream::iter(states.iter_mut().map(|s| s.load_cache(shared)))
            .buffer_unordered(forks)
            .collect::<Vec<()>>()
            .await;
    }
    let opts = shared.opts;
    let selected = select_tasks(play, &opts.tags, &opts.skip_tags, &opts.declined);
    let fuse = play.max_fail_percentage.is_none() && !play.any_errors_fatal;
    let segments = segment::plan(&play.tasks, &selected, fuse);
    let sizes = batch_sizes(states.len(), &play.serial);
    let mut once: BTreeMap<usize, Option<minijinja::Value>> = BTreeMap::new();
    let mut start = 0;
    for (b, size) in sizes.iter().enumerate() {
        let range = start..start + size;
        start += size;
        shared.emit(Event::BatchStarted {
            index: b + 1,
            total: sizes.len(),
            hosts: states[range.clone()]
                .iter()
                .map(|s| s.host.name.clone())
                .collect(),
            units: size * selected.len(),
        });
        for seg in &segments {
            if shared.interrupt.is_set() {
                return true;
            }
            let batch = &mut states[range.clone()];
            if seg.cluster {
                let done = shared.cluster.run(shared, play, seg.tasks[0], batch).await;
                for r in done.reports {
                    record(shared, outcome, r);
                }
                if let Some(reason) = done.refused {
                    shared.emit(Event::PlayStopped {
                        reason: reason.clone(),
                    });
                    outcome.refused.get_or_insert(reason);
                    return true;
                }
            } else if seg.run_once {
                run_once(shared, play, seg, batch, &mut once, outcome).await;
            } else {
                let forks = shared.opts.forks.max(1);
                let results: Vec<Vec<TaskReport>> = futures::stream::iter(
                    batch
                        .iter_mut()
                        .filter(|s| s.active())
                        .map(|s| s.run_segment(shared, play, &seg.tasks)),
                )
                .buffer_unordered(forks)
                .collect()
                .await;
                for r in results.into_iter().flatten() {
                    record(shared, outcome, r);
                }
            }
            let failed_now = lost + states.iter().filter(|s| !s.active()).count();
            if let Some(reason) = stop_reason(play, failed_now, total) {
                shared.emit(Event::PlayStopped { reason });
                return true;
            }
        }
    }
    false
}

fn stop_reason(play: &Play, failed: usize, total: usize) -> Option<String> {
    if failed == 0 {
        return None;
    }
    if play.any_errors_fatal {
        return Some(format!(
            "play \"{}\" stopped: a host failed and `any_errors_fatal` is set",
            play.name
        ));
    }
    match play.max_fail_percentage {
        Some(max) if over_threshold(failed, total, max) => Some(format!(
            "play \"{}\" stopped: {failed} of {total} host(s) failed, more than max_fail_percentage = {max}% of the play",
            play.name
        )),
        _ => None,
    }
}

/// `run_once`: the task runs on the first active host of the play's first batch that reaches
/// it; hosts of every batch then see its registered result.
async fn run_once(
    shared: &Shared<'_>,
    play: &Play,
    seg: &Segment,
    batch: &mut [HostState<'_>],
    once: &mut BTreeMap<usize, Option<minijinja::Value>>,
    outcome: &mut RunOutcome,
) {
    let index = seg.tasks[0];
    let task = &play.tasks[index];
    if let std::collections::btree_map::Entry::Vacant(slot) = once.entry(index) {
        let Some(runner) = batch.iter_mut().find(|s| s.active()) else {
            return;
        };
        let reports = runner.run_segment(shared, play, &seg.tasks).await;
        slot.insert(task.register.as_ref().and_then(|n| runner.registered(n)));
        for r in reports {
            record(shared, outcome, r);
        }
    }
    if let (Some(name), Some(value)) = (&task.register, once.get(&index)) {
        for s in batch.iter_mut().filter(|s| s.active()) {
            s.adopt(name, value.clone());
        }
    }
}

/// Indices of the tasks that `--tags`/`--skip-tags` select and that neither
/// `--start-at-task` nor `--step` left out.
pub fn select_tasks(
    play: &Play,
    tags: &[String],
    skip: &[String],
    declined: &DeclinedTasks,
) -> Vec<usize> {
    play.tasks
        .iter()
        .enumerate()
        .filter(|(i, t)| task_selected(play, t, tags, skip) && !declined.contains(play, *i))
        .map(|(i, _)| i)
        .collect()
}

/// Whether `--tags`/`--skip-tags` select `task`. A task's tags include its play's; `always`
/// runs unless skipped by name; `never` runs only when asked for.
fn task_selected(play: &Play, task: &Task, tags: &[String], skip: &[String]) -> bool {
    let all: Vec<&str> = task
        .tags
        .iter()
        .chain(play.tags.iter())
        .map(String::as_str)
        .collect();
    if skip.iter().any(|s| all.contains(&s.as_str())) {
        return false;
    }
    if tags.is_empty() || tags.iter().any(|t| t == "all") {
        return !all.contains(&"never") || tags.iter().any(|t| t == "never");
    }
    all.contains(&"always") || tags.iter().any(|t| all.contains(&t.as_str()))
}

/// Tags that mean something without being written in the playbook.
pub const SPECIAL_TAGS: [&str; 3] = ["all", "always", "never"];

/// Tasks the operator left out with `--start-at-task` or `--step`, each as its play and its
/// index in that play. A play is known by where its `hosts` value starts in the file, which
/// no two plays share; plays built in code (no file) are never left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclinedTasks(BTreeSet<(usize, usize)>);

impl DeclinedTasks {
    fn key(play: &Play) -> Option<usize> {
        play.field_spans.get("hosts").map(|span| span.start)
    }

    /// Leaves task `index` of `play` out; false for a play built in code.
    pub fn decline(&mut self, play: &Play, index: usize) -> bool {
        Self::key(play).is_some_and(|k| self.0.insert((k, index)))
    }

    pub fn contains(&self, play: &Play, index: usize) -> bool {
        Self::key(play).is_some_and(|k| self.0.contains(&(k, index)))
    }
}

/// Why `--tags`, `--skip-tags` or `--start-at-task` name nothing in the playbook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("{flag}: the playbook has no tag \"{tag}\"{hint}")]
    UnknownTag {
        flag: &'static str,
        tag: String,
        hint: String,
    },
    #[error("--start-at-task: the playbook has no task called \"{name}\"{hint}")]
    UnknownTask { name: String, hint: String },
}

/// Every tag written in `playbook`, on plays and tasks, sorted and once each.
pub fn playbook_tags(playbook: &Playbook) -> BTreeSet<&str> {
    playbook
        .plays
        .iter()
        .flat_map(|p| {
            p.tags
                .iter()
                .chain(p.tasks.iter().flat_map(|t| t.tags.iter()))
        })
        .map(String::as_str)
        .collect()
}

/// Refuses a `--tags` or `--skip-tags` name that no play or task carries: a typo must not
/// pass as "nothing to run".
///
/// # Errors
/// The first unknown tag, with the closest known one or the list of known tags.
pub fn check_tags(
    playbook: &Playbook,
    tags: &[String],
    skip: &[String],
) -> Result<(), SelectionError> {
    let known = playbook_tags(playbook);
    let flagged = tags
        .iter()
        .map(|t| ("--tags", t))
        .chain(skip.iter().map(|t| ("--skip-tags", t)));
    for (flag, tag) in flagged {
        if known.contains(tag.as_str()) || SPECIAL_TAGS.contains(&tag.as_str()) {
            continue;
        }
        let mut candidates = known.iter().copied().chain(SPECIAL_TAGS);
        // Jaro-Winkler misses a swap in a short word (`tow` for `two`); one edit does not.
        let closest = crate::diag::suggest(tag, candidates.clone())
            .or_else(|| candidates.find(|k| strsim::damerau_levenshtein(tag, k) == 1));
        let hint = match closest {
            Some(s) => format!("; did you mean \"{s}\"?"),
            None if known.is_empty() => "; it has no tags at all".to_owned(),
            None => format!(
                "; its tags are: {}",
                known.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        };
        return Err(SelectionError::UnknownTag {
            flag,
            tag: tag.clone(),
            hint,
        });
    }
    Ok(())
}

/// `--start-at-task NAME`: every task before the first task called `name` (in playbook
/// order, across plays) is left out.
///
/// # Errors
/// No task has that name; the closest name is suggested.
pub fn start_at_task(playbook: &Playbook, name: &str) -> Result<DeclinedTasks, SelectionError> {
    let mut declined = DeclinedTasks::default();
    for play in &playbook.plays {
        for (i, task) in play.tasks.iter().enumerate() {
            if task.name == name {
                return Ok(declined);
            }
            declined.decline(play, i);
        }
    }
    let names = playbook
        .plays
        .iter()
        .flat_map(|p| p.tasks.iter().map(|t| t.name.as_str()));
    Err(SelectionError::UnknownTask {
        name: name.to_owned(),
        hint: crate::diag::did_you_mean(name, names),
    })
}

fn record(shared: &Shared<'_>, outcome: &mut RunOutcome, r: TaskReport) {
    if let Some(recap) = outcome.recap.get_mut(&r.host) {
        recap.add(r.status);
    }
    outcome.note(&r);
    shared.emit(Event::TaskFinished(Box::new(r)));
}

fn variables_failure(play: &Play, host: &Host, why: &str) -> TaskReport {
    TaskReport {
        host: host.name.clone(),
        play: play.name.clone(),
        task: "(play variables)".to_owned(),
        task_index: 0,
        kind: "vars",
        status: Status::Failed,
        check_mode: false,
        note: Some(crate::secrets::mask(why).into_owned()),
        command: None,
        exit: None,
        stdout: String::new(),
        stderr: String::new(),
        diff: None,
        duration: std::time::Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const TWO_PLAYS: &str = r#"
[[plays]]
hosts = "all"
tags = ["base"]
tasks = [
  { name = "a", command = "true", tags = ["one"] },
  { name = "b", command = "true", tags = ["never"] },
]
[[plays]]
hosts = "all"
tasks = [{ name = "c", command = "true" }, { name = "b", command = "true" }]
"#;

    fn playbook() -> Playbook {
        Playbook::parse(Path::new("p.toml"), TWO_PLAYS.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn selected(pb: &Playbook, tags: &[&str], declined: &DeclinedTasks) -> Vec<Vec<usize>> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        pb.plays
            .iter()
            .map(|p| select_tasks(p, &tags, &[], declined))
            .collect()
    }

    #[test]
    fn start_at_task_leaves_out_everything_before_the_first_of_that_name() {
        let pb = playbook();
        let declined = start_at_task(&pb, "c").unwrap_or_default();
        assert_eq!(selected(&pb, &[], &declined), [vec![], vec![0, 1]]);
        let declined = start_at_task(&pb, "b").unwrap_or_default();
        assert_eq!(
            selected(&pb, &["all", "never"], &declined),
            [vec![1], vec![0, 1]],
            "the first \"b\" is where the run starts"
        );
        assert_eq!(
            start_at_task(&pb, "d").map_err(|e| e.to_string()),
            Err("--start-at-task: the playbook has no task called \"d\"".to_owned())
        );
    }

    #[test]
    fn plays_built_in_code_are_never_left_out() {
        let mut play = Play::new("p", "all");
        play.tasks.push(Task::new(
            "t",
            crate::playbook::Action::Command("true".into()),
        ));
        let mut declined = DeclinedTasks::default();
        assert!(!declined.decline(&play, 0));
        assert!(!declined.contains(&play, 0));
        assert_eq!(select_tasks(&play, &[], &[], &declined), [0]);
    }

    #[test]
    fn tags_are_checked_against_the_playbook_and_the_special_ones() {
        let pb = playbook();
        let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_tags(&pb, &tags(&["one", "base", "all", "always", "never"]), &[]).is_ok());
        assert_eq!(
            check_tags(&pb, &[], &tags(&["oen"])).map_err(|e| e.to_string()),
            Err("--skip-tags: the playbook has no tag \"oen\"; did you mean \"one\"?".to_owned())
        );
        assert_eq!(
            playbook_tags(&pb).into_iter().collect::<Vec<_>>(),
            ["base", "never", "one"]
        );
    }
}
