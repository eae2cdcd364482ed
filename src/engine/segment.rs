//! Grouping a play's tasks into segments: runs of tasks that go to a host in one round trip.
//!
//! Round trips are where the time goes, so consecutive tasks share one remote script when
//! nothing the controller must decide sits between them. A segment ends after a task with
//! `register` or `failed_when` (later tasks may depend on the result or the verdict), and a
//! task with `run_once`, `until`/`retries` or its own `timeout` runs alone. When the play
//! sets `max_fail_percentage` or `any_errors_fatal`, every task is its own segment, so that
//! the threshold is checked across hosts after every task (strict task-by-task order).

use crate::playbook::Task;

/// Indices (into the play's task list) of the tasks that run together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub tasks: Vec<usize>,
    pub run_once: bool,
    /// A DTR cluster task: runs alone, over all the batch's hosts at once.
    pub cluster: bool,
}

fn runs_alone(task: &Task) -> bool {
    task.run_once
        || task.until.is_some()
        || task.retries.is_some()
        || task.timeout.is_some()
        || task.action.is_cluster()
}

fn ends_segment(task: &Task) -> bool {
    task.register.is_some() || task.failed_when.is_some() || cacheable(task)
}

/// Work the result cache records: a command with no guard that is not declared read-only
/// (`changed_when = "false"`). Its query cannot tell whether it already ran, so it ends its
/// segment, and is recorded as soon as it finishes.
pub(crate) fn cacheable(task: &Task) -> bool {
    match super::kind::of(&task.action) {
        super::kind::Kind::Host(k) => k.cacheable(task),
        super::kind::Kind::Cluster => false,
    }
}

/// Segments for the selected tasks (`selected` holds indices into `tasks`, in order).
pub(crate) fn plan(tasks: &[Task], selected: &[usize], fuse: bool) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for &i in selected {
        let task = &tasks[i];
        if !fuse || runs_alone(task) {
            if !current.is_empty() {
                out.push(Segment {
                    tasks: std::mem::take(&mut current),
                    run_once: false,
                    cluster: false,
                });
            }
            out.push(Segment {
                tasks: vec![i],
                run_once: task.run_once,
                cluster: task.action.is_cluster(),
            });
            continue;
        }
        current.push(i);
        if ends_segment(task) {
            out.push(Segment {
                tasks: std::mem::take(&mut current),
                run_once: false,
                cluster: false,
            });
        }
    }
    if !current.is_empty() {
        out.push(Segment {
            tasks: current,
            run_once: false,
            cluster: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Action;

    fn task(name: &str) -> Task {
        Task::new(name, Action::Command("true".into()))
    }

    #[test]
    fn an_unguarded_command_ends_its_segment() {
        let mut t = vec![task("a"), task("b"), task("c")];
        t[0].creates = Some("/x".into());
        t[2].creates = Some("/y".into());
        // b has no guard: recorded in the cache as soon as it finishes.
        assert_eq!(ids(&plan(&t, &[0, 1, 2], true)), vec![vec![0, 1], vec![2]]);
    }

    fn ids(segs: &[Segment]) -> Vec<Vec<usize>> {
        segs.iter().map(|s| s.tasks.clone()).collect()
    }

    #[test]
    fn fuses_until_a_register_and_isolates_special_tasks() {
        let mut t = vec![
            task("a"),
            task("b"),
            task("c"),
            task("d"),
            task("e"),
            task("f"),
        ];
        for x in &mut t {
            x.creates = Some("/guard".into());
        }
        t[1].register = Some("r".into());
        t[3].timeout = Some(std::time::Duration::from_secs(1));
        t[5].run_once = true;
        let all: Vec<usize> = (0..t.len()).collect();
        let segs = plan(&t, &all, true);
        assert_eq!(
            ids(&segs),
            vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5]]
        );
        assert!(segs[4].run_once);
    }

    #[test]
    fn no_fusion_means_one_task_per_segment() {
        let mut t = vec![task("a"), task("b")];
        for x in &mut t {
            x.changed_when = Some("false".into());
        }
        assert_eq!(ids(&plan(&t, &[0, 1], false)), vec![vec![0], vec![1]]);
        assert_eq!(ids(&plan(&t, &[0, 1], true)), vec![vec![0, 1]]);
        assert_eq!(ids(&plan(&t, &[1], true)), vec![vec![1]]);
    }
}
