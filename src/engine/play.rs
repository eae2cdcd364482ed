//! One play: its hosts' variables, tag selection, rolling batches, segments across hosts,
//! `run_once`, and the failure thresholds.
//!
//! `max_fail_percentage` is measured over the whole play (failed or unreachable hosts out of
//! all the play's hosts), not per batch as Ansible does; `any_errors_fatal` stops the play at
//! the first failure. Either stops the run after the current task.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use super::batch::{batch_sizes, over_threshold};
use super::host::HostState;
use super::segment::{self, Segment};
use super::{RunOutcome, Shared};
use crate::inventory::Host;
use crate::playbook::{Play, Task};
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
    let selected = select_tasks(play, &shared.opts.tags, &shared.opts.skip_tags);
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

/// Indices of the tasks that `--tags`/`--skip-tags` select. A task's tags include its play's;
/// `always` runs unless skipped by name; `never` runs only when asked for.
pub(crate) fn select_tasks(play: &Play, tags: &[String], skip: &[String]) -> Vec<usize> {
    play.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| task_selected(play, t, tags, skip))
        .map(|(i, _)| i)
        .collect()
}

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
