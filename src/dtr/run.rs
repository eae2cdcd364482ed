//! One run of a cluster task: the hosts taking part, one report per host, what each host
//! registers, and the refusal, if any.

use std::collections::BTreeMap;
use std::time::Instant;

use minijinja::value::Value;

use super::error::DtrError;
use super::params::Params;
use super::remote::{Member, env_prefix};
use super::spec::DtrTask;
use crate::engine::ClusterOutcome;
use crate::engine::host::HostState;
use crate::engine::{DEFAULT_COMMAND_TIMEOUT, Shared};
use crate::playbook::{Play, Task};
use crate::report::event::{Event, Status, TaskReport};
use crate::secrets;
use crate::template::Templates;

pub(crate) struct Run<'r> {
    pub shared: &'r Shared<'r>,
    pub task: &'r Task,
    pub spec: &'r DtrTask,
    /// The hosts taking part, in batch order.
    pub members: Vec<Member>,
    /// Each member's index in the batch.
    slots: Vec<usize>,
    reports: Vec<TaskReport>,
    /// Members whose report is left out (a refusal is reported once, for the cluster).
    silent: Vec<bool>,
    registered: Vec<Option<Value>>,
    /// Reports of hosts that do not take part (skipped by `when`, or failed to prepare).
    others: Vec<(usize, TaskReport, Option<Value>)>,
    pub refused: Option<String>,
    /// A host failed to prepare: the cluster task does not run on a part of the cluster.
    blocked: bool,
    started: Instant,
}

impl<'r> Run<'r> {
    /// Evaluates `when` and renders the parameters on every active host of `batch`.
    pub fn prepare(
        shared: &'r Shared<'r>,
        play: &'r Play,
        task: &'r Task,
        index: usize,
        spec: &'r DtrTask,
        batch: &[HostState<'_>],
    ) -> Run<'r> {
        let check = shared.opts.check;
        let mut run = Run {
            shared,
            task,
            spec,
            members: Vec::new(),
            slots: Vec::new(),
            reports: Vec::new(),
            silent: Vec::new(),
            registered: Vec::new(),
            others: Vec::new(),
            refused: None,
            blocked: false,
            started: Instant::now(),
        };
        let t = &shared.templates;
        for (slot, s) in batch.iter().enumerate().filter(|(_, s)| s.active()) {
            let ctx = s.context(None);
            let mut report = new_report(play, task, index, &s.host.name, check);
            if let Some(when) = &task.when {
                match t.eval_bool(&format!("`when` of task \"{}\"", task.name), when, &ctx) {
                    Ok(true) => {}
                    Ok(false) => {
                        report.status = Status::Skipped;
                        report.note = Some("when: false".to_owned());
                        run.others.push((slot, report, Some(skipped_value())));
                        continue;
                    }
                    Err(e) => {
                        report.status = Status::Failed;
                        report.note = Some(e.message);
                        run.others.push((slot, report, None));
                        run.blocked = true;
                        continue;
                    }
                }
            }
            let prepared = Params::render(t, &task.name, spec, &ctx)
                .map_err(|errs| {
                    let lines: Vec<String> = errs.into_iter().map(|e| e.message).collect();
                    lines.join("\n")
                })
                .and_then(|params| {
                    let env = env_prefix(&ctx).map_err(|e| e.to_string())?;
                    Ok((params, env))
                });
            let (params, env) = match prepared {
                Ok(p) => p,
                Err(why) => {
                    report.status = Status::Failed;
                    report.note = Some(why);
                    run.others.push((slot, report, None));
                    run.blocked = true;
                    continue;
                }
            };
            shared.emit(Event::TaskStarted {
                host: s.host.name.clone(),
                task: task.name.clone(),
            });
            run.members.push(Member {
                host: s.host.name.clone(),
                node: s.host.name.clone(),
                session: s.session.clone(),
                ctx,
                params,
                env,
                fetched_ca: std::sync::Mutex::new(None),
                timeout: task
                    .timeout
                    .or(s.host.command_timeout)
                    .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            });
            run.slots.push(slot);
            run.reports.push(report);
            run.silent.push(false);
            run.registered.push(None);
        }
        if run.blocked {
            let failed: Vec<String> = run
                .others
                .iter()
                .filter(|(_, r, _)| r.status == Status::Failed)
                .map(|(_, r, _)| format!("`{}`", r.host))
                .collect();
            let why = format!(
                "not run: the task could not be prepared on {}, and a cluster task runs on the \
                 whole cluster or not at all",
                failed.join(", ")
            );
            for i in 0..run.members.len() {
                run.fail(i, &why);
            }
        }
        run
    }

    /// Whether the task can run: every host prepared, and at least one.
    pub fn ready(&self) -> bool {
        !self.blocked && !self.members.is_empty()
    }

    pub fn t(&self) -> &'r Templates {
        &self.shared.templates
    }

    pub fn check_mode(&self) -> bool {
        self.shared.opts.check
    }

    pub fn diff_mode(&self) -> bool {
        self.shared.opts.diff
    }

    pub fn interrupted(&self) -> bool {
        self.shared.interrupt.is_set()
    }

    /// Cluster-wide parameters: as the first host renders them.
    pub fn cluster_params(&self) -> &Params {
        &self.members[0].params
    }

    /// Adds a line to member `i`'s note.
    pub fn note(&mut self, i: usize, line: &str) {
        let r = &mut self.reports[i];
        r.note = Some(match r.note.take() {
            Some(n) if !n.is_empty() => format!("{n}\n{line}"),
            _ => line.to_owned(),
        });
    }

    /// Marks member `i` changed (would change, in check mode), unless it failed.
    pub fn changed(&mut self, i: usize) {
        let r = &mut self.reports[i];
        if !matches!(r.status, Status::Failed | Status::Unreachable) {
            r.status = Status::Changed;
        }
    }

    pub fn fail(&mut self, i: usize, why: &str) {
        if self.reports[i].status != Status::Unreachable {
            self.reports[i].status = Status::Failed;
        }
        self.note(i, why);
    }

    /// Fails member `i` with `e`; a lost connection makes the host unreachable instead.
    pub fn fail_with(&mut self, i: usize, e: &DtrError) {
        if e.is_transport() {
            self.reports[i].status = Status::Unreachable;
        }
        self.fail(i, &e.to_string());
    }

    /// Refuses the task before any change: one failed report carrying `why`, and the run
    /// stops with exit 3.
    pub fn refuse(&mut self, why: &str) {
        self.fail(0, &task_flag_hint(why));
        for s in self.silent.iter_mut().skip(1) {
            *s = true;
        }
        self.refused = Some(format!(
            "task \"{}\" refused before any change (exit 3)",
            self.task.name
        ));
    }

    /// Refuses with per-host reports already written (pre-flight): the run stops, exit 3.
    pub fn refuse_reported(&mut self, why: &str) {
        self.refused = Some(why.to_owned());
    }

    /// Records a command member `i` ran (or would run).
    pub fn command(&mut self, i: usize, command: &str) {
        let r = &mut self.reports[i];
        r.command = Some(match r.command.take() {
            Some(c) => format!("{c}\n{command}"),
            None => command.to_owned(),
        });
    }

    /// Check mode: a command member `i` would run, shown in the diff with `--diff`, else in
    /// the note.
    pub fn would_run(&mut self, i: usize, command: &str) {
        self.command(i, command);
        let line = format!("would run: {command}");
        if self.diff_mode() {
            self.diff(i, &line);
        } else {
            self.note(i, &line);
        }
    }

    /// Adds lines to member `i`'s `--diff` output.
    pub fn diff(&mut self, i: usize, text: &str) {
        if !self.diff_mode() {
            return;
        }
        let r = &mut self.reports[i];
        r.diff = Some(match r.diff.take() {
            Some(d) => format!("{d}\n{text}"),
            None => text.to_owned(),
        });
    }

    /// Keeps the output of a failed command on member `i`'s report.
    pub fn output(&mut self, i: usize, stdout: &str, stderr: &str) {
        let r = &mut self.reports[i];
        r.stdout.push_str(stdout);
        r.stderr.push_str(stderr);
    }

    pub fn register(&mut self, i: usize, value: Value) {
        self.registered[i] = Some(value);
    }

    /// The members whose host matches the host pattern in parameter `param`. A default
    /// pattern naming a group the inventory lacks selects nothing; a written one is an error.
    pub fn select(&self, param: &str) -> Result<Vec<usize>, DtrError> {
        let names = self.select_hosts(param)?;
        Ok((0..self.members.len())
            .filter(|&i| names.iter().any(|n| *n == self.members[i].host))
            .collect())
    }

    /// Inventory hosts matching the pattern in parameter `param` (see [`Run::select`]).
    pub fn select_hosts(&self, param: &str) -> Result<Vec<String>, DtrError> {
        let params = self.cluster_params();
        let Some(pattern) = params.text(param) else {
            return Ok(Vec::new());
        };
        match self.shared.inventory.select(pattern) {
            Ok(hosts) => Ok(hosts.into_iter().map(|h| h.name.clone()).collect()),
            Err(_) if !params.is_written(param) => Ok(Vec::new()),
            Err(e) => Err(DtrError::Input(format!(
                "`{}.{param}`: {e}",
                self.spec.kind
            ))),
        }
    }

    /// Reports, each host's registered value and failure applied to `batch`.
    pub fn finish(self, batch: &mut [HostState<'_>]) -> ClusterOutcome {
        let elapsed = self.started.elapsed();
        let mut by_slot: BTreeMap<usize, (TaskReport, Option<Value>)> = BTreeMap::new();
        let members = self
            .slots
            .into_iter()
            .zip(self.reports)
            .zip(self.silent)
            .zip(self.registered);
        for (((slot, report), silent), value) in members {
            if !silent {
                by_slot.insert(slot, (report, value));
            }
        }
        for (slot, report, value) in self.others {
            by_slot.insert(slot, (report, value));
        }
        let mut reports = Vec::new();
        for (slot, (mut report, value)) in by_slot {
            report.duration = elapsed;
            let failed = report.status == Status::Failed;
            let unreachable = report.status == Status::Unreachable;
            let value =
                value.unwrap_or_else(|| plain_value(report.status == Status::Changed, failed));
            if let Some(state) = batch.get_mut(slot) {
                if failed {
                    state.failed = true;
                }
                if unreachable {
                    state.unreachable = true;
                }
                if let Some(name) = &self.task.register {
                    state.adopt(name, Some(value));
                }
            }
            reports.push(finish_report(report, self.task.no_log));
        }
        ClusterOutcome {
            reports,
            refused: self.refused,
        }
    }
}

/// The rules name a command-line flag for even replica counts; a DTR task takes a parameter.
fn task_flag_hint(why: &str) -> String {
    why.replace(
        &format!("pass `{}`", crate::rules::ha::ALLOW_EVEN_FLAG),
        "set `allow_even_replicas = true` on the task (or pass `-e allow_even_replicas=true`)",
    )
}

fn new_report(play: &Play, task: &Task, index: usize, host: &str, check: bool) -> TaskReport {
    TaskReport::new(
        host,
        (&play.name, &task.name, task.action.kind()),
        index,
        check,
    )
}

fn finish_report(mut r: TaskReport, no_log: bool) -> TaskReport {
    let mask = |s: &str| secrets::mask(s).into_owned();
    r.note = r.note.as_deref().map(mask);
    r.command = r.command.as_deref().map(mask);
    r.diff = r.diff.as_deref().map(mask);
    r.stdout = mask(&r.stdout);
    r.stderr = mask(&r.stderr);
    if no_log {
        r.command = r.command.map(|_| "(hidden by no_log)".to_owned());
        r.diff = r.diff.map(|_| "(hidden by no_log)".to_owned());
        r.stdout.clear();
        r.stderr.clear();
    }
    r
}

/// What `register` holds for a DTR task that registers nothing more specific.
pub(crate) fn plain_value(changed: bool, failed: bool) -> Value {
    minijinja::context! { changed => changed, failed => failed, skipped => false }
}

fn skipped_value() -> Value {
    minijinja::context! { changed => false, failed => false, skipped => true }
}
