//! One host's part of a play: its variables, what it registered, and running a segment of
//! tasks on it through the idempotency protocol (query, decide, apply, verify).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::Value;

use super::decide::{Conditions, Registered, Words, decide};
use super::kind::{self, Change, HostKind, Kind, RenderInput, Rendered};
use super::outcome::{failed, mask_json, mask_report, result_value, skipped_result, with_flags};
use super::script::{Become, Script, ScriptOptions, Step, StepOutput, Verdict};
use super::segment::cacheable;
use super::{DEFAULT_COMMAND_TIMEOUT, Shared};
use crate::cache::{CacheEntry, HostCache, HostIdentity, now_secs, task_key};
use crate::context::host_context;
use crate::inventory::Host;
use crate::playbook::{Action, Play, Task};
use crate::report::event::{Event, Status, TaskReport};
use crate::secrets;
use crate::template::TemplateError;
use crate::transport::{ExecControl, ExitStatus, Session, TransportError};

/// A host as a play sees it.
pub(crate) struct HostState<'a> {
    pub host: &'a Host,
    pub session: Arc<Session>,
    /// Inventory vars, play vars and extra vars, merged, as template values.
    base: BTreeMap<String, Value>,
    registered: BTreeMap<String, Value>,
    /// Registered names that check mode could not produce.
    unknown: BTreeSet<String>,
    pub failed: bool,
    pub unreachable: bool,
    /// The last task's result, for `until` without `register`.
    last_result: Option<Value>,
    /// Who the host is, for cache keys.
    identity: HostIdentity,
    cache: HostCache,
}

/// A task turned into a step for this host, with what the report needs.
struct Prepared<'t> {
    task: &'t Task,
    index: usize,
    step: Step,
    shown: Option<String>,
    new_content: Option<String>,
    /// Set when the task is recorded in the result cache once it succeeds.
    cache_key: Option<String>,
}

impl<'a> HostState<'a> {
    /// Merges the host's variables: inventory levels, then play vars (rendered against the
    /// levels below them), then `-e` extra vars.
    pub fn new(
        shared: &Shared<'_>,
        play: &Play,
        host: &'a Host,
        session: Arc<Session>,
    ) -> Result<Self, TemplateError> {
        let base = host_context(
            shared.inventory,
            play,
            host,
            &shared.opts.extra_vars,
            &shared.templates,
        )
        .map_err(|e| e.error)?;
        Ok(Self {
            host,
            base,
            registered: BTreeMap::new(),
            unknown: BTreeSet::new(),
            failed: false,
            unreachable: false,
            last_result: None,
            identity: HostIdentity {
                name: host.name.clone(),
                address: host.address.clone().unwrap_or_else(|| host.name.clone()),
                fingerprint: session
                    .host_key_fingerprint()
                    .unwrap_or_else(|| "local".to_owned()),
            },
            cache: HostCache::default(),
            session,
        })
    }

    /// Reads this host's result cache (a warning, if any, goes to the reporter).
    pub async fn load_cache(&mut self, shared: &Shared<'_>) {
        let (cache, warning) = shared.cache.load(&self.host.name, &self.session).await;
        self.cache = cache;
        if let Some(message) = warning {
            shared.emit(Event::Warning {
                host: Some(self.host.name.clone()),
                message,
            });
        }
    }

    /// Records what this segment finished, so that a rerun does not repeat it.
    async fn save_cache(&mut self, shared: &Shared<'_>) {
        if let Err(message) = shared
            .cache
            .save(&self.host.name, &self.session, &mut self.cache)
            .await
        {
            shared.emit(Event::Warning {
                host: Some(self.host.name.clone()),
                message,
            });
        }
    }

    pub fn active(&self) -> bool {
        !self.failed && !self.unreachable
    }

    pub(crate) fn context(&self, current: Option<(&str, &Value)>) -> Value {
        let mut map = self.base.clone();
        for (k, v) in &self.registered {
            map.insert(k.clone(), v.clone());
        }
        if let Some((name, value)) = current {
            map.insert("result".to_owned(), value.clone());
            map.insert(name.to_owned(), value.clone());
        }
        Value::from(map)
    }

    /// Makes a `run_once` task's registered result visible on this host too.
    pub fn adopt(&mut self, name: &str, value: Option<Value>) {
        match value {
            Some(v) => {
                self.registered.insert(name.to_owned(), v);
            }
            None => {
                self.unknown.insert(name.to_owned());
            }
        }
    }

    pub fn registered(&self, name: &str) -> Option<Value> {
        self.registered.get(name).cloned()
    }

    /// Runs the tasks `indices` of `play` on this host; returns their reports in order.
    pub async fn run_segment(
        &mut self,
        shared: &Shared<'_>,
        play: &Play,
        indices: &[usize],
    ) -> Vec<TaskReport> {
        let mut reports: BTreeMap<usize, TaskReport> = BTreeMap::new();
        let mut prepared = Vec::new();
        for &i in indices {
            match self.prepare(shared, play, &play.tasks[i], i) {
                Prep::Run(p) => prepared.push(p),
                Prep::Skip(r) => {
                    reports.insert(i, *r);
                }
                Prep::Fail(r) => {
                    self.failed = true;
                    reports.insert(i, *r);
                    // Nothing of this segment has run yet: later tasks are not reached.
                    reports.retain(|&j, _| j <= i);
                    return reports.into_values().collect();
                }
            }
        }
        if prepared.is_empty() {
            return reports.into_values().collect();
        }
        let retrying = prepared.len() == 1
            && (prepared[0].task.until.is_some() || prepared[0].task.retries.is_some());
        let done = if retrying {
            vec![self.run_until(shared, play, &prepared[0]).await]
        } else {
            self.run_steps(shared, play, &prepared).await
        };
        self.save_cache(shared).await;
        let first_bad = done
            .iter()
            .find(|r| matches!(r.status, Status::Failed | Status::Unreachable))
            .map(|r| r.task_index);
        for r in done {
            match r.status {
                Status::Failed => self.failed = true,
                Status::Unreachable => self.unreachable = true,
                _ => {}
            }
            reports.insert(r.task_index, r);
        }
        if let Some(bad) = first_bad {
            reports.retain(|&i, _| i <= bad);
        }
        reports.into_values().collect()
    }

    /// Evaluates `when`, renders the task for this host, and builds its step.
    fn prepare<'t>(
        &mut self,
        shared: &Shared<'_>,
        play: &Play,
        task: &'t Task,
        index: usize,
    ) -> Prep<'t> {
        let base = || report(play, task, index, &self.host.name, shared.opts.check);
        let ctx = self.context(None);
        if shared.opts.check
            && let Some(dep) = self.unknown_dependency(shared, task)
        {
            if let Some(name) = &task.register {
                self.unknown.insert(name.clone());
            }
            let mut r = base();
            r.status = Status::Skipped;
            r.note = Some(format!(
                "unknown: depends on `{dep}`, which check mode could not produce"
            ));
            return Prep::Skip(Box::new(r));
        }
        if let Some(when) = &task.when {
            match shared.templates.eval_bool(
                &format!("`when` of task \"{}\"", task.name),
                when,
                &ctx,
            ) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(name) = &task.register {
                        self.registered.insert(name.clone(), skipped_result());
                    }
                    let mut r = base();
                    r.status = Status::Skipped;
                    r.note = Some("when: false".to_owned());
                    return Prep::Skip(Box::new(r));
                }
                Err(e) => return Prep::Fail(Box::new(failed(base(), &e.message))),
            }
        }
        let Rendered {
            step,
            shown,
            new_content,
        } = match self.build_step(shared, play, task, &ctx) {
            Ok(built) => built,
            Err(e) => return Prep::Fail(Box::new(failed(base(), &e.message))),
        };
        let cache_key = (shared.cache.enabled() && cacheable(task)).then(|| {
            let rendered = shown.as_deref().unwrap_or("");
            task_key(
                &self.identity,
                &play.name,
                index,
                &task.name,
                task.action.kind(),
                &[rendered],
            )
        });
        if let Some(key) = &cache_key
            && !shared.opts.no_cache
            && let Some(hit) = self.cache.hit(key)
        {
            let mut r = base();
            r.status = Status::Cached;
            r.command = shown.as_deref().map(|c| secrets::mask(c).into_owned());
            let when =
                chrono::DateTime::from_timestamp(i64::try_from(hit.recorded_at).unwrap_or(0), 0)
                    .map_or_else(String::new, |t| {
                        t.format(" at %Y-%m-%d %H:%M:%SZ").to_string()
                    });
            r.note = Some(format!(
                "done in an earlier run{when}; --no-cache runs it again"
            ));
            if let Some(name) = &task.register {
                let value = hit
                    .result
                    .as_ref()
                    .map_or_else(skipped_result, |j| Value::from(minijinja::value::Serde(j)));
                self.registered.insert(name.clone(), value);
            }
            return Prep::Skip(Box::new(r));
        }
        Prep::Run(Prepared {
            task,
            index,
            step,
            shown,
            new_content,
            cache_key,
        })
    }

    /// The first registered name this task reads that check mode could not produce.
    fn unknown_dependency(&self, shared: &Shared<'_>, task: &Task) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        let t = &shared.templates;
        let mut names = Vec::new();
        if let Some(w) = &task.when {
            names.extend(t.variables_of(w, true));
        }
        for field in [&task.creates, &task.removes, &task.unless]
            .into_iter()
            .flatten()
        {
            names.extend(t.variables_of(field, false));
        }
        if let Kind::Host(k) = kind::of(&task.action) {
            names.extend(k.variables(t));
        }
        names.into_iter().find(|n| self.unknown.contains(n))
    }

    fn build_step(
        &self,
        shared: &Shared<'_>,
        play: &Play,
        task: &Task,
        ctx: &Value,
    ) -> Result<Rendered, TemplateError> {
        let escalate = if task.r#become.unwrap_or(play.r#become) {
            Some(Become {
                user: task
                    .become_user
                    .clone()
                    .or_else(|| play.become_user.clone())
                    .unwrap_or_else(|| "root".to_owned()),
                with_password: self.host.become_password.is_some(),
            })
        } else {
            None
        };
        match kind::of(&task.action) {
            Kind::Host(k) => k.render(&RenderInput {
                templates: &shared.templates,
                task,
                ctx,
                escalate,
            }),
            // Cluster tasks run through the run's `ClusterRunner`, never in a host segment.
            Kind::Cluster => Err(TemplateError {
                template: task.name.clone(),
                line: None,
                variable: None,
                message: format!(
                    "`{}` is a cluster task and cannot run in a segment",
                    task.action.kind()
                ),
            }),
        }
    }

    /// Timeout of one task on this host.
    fn timeout_of(&self, task: &Task) -> Duration {
        task.timeout
            .or(self.host.command_timeout)
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT)
    }

    /// Runs prepared steps in one round trip and turns each step's output into a report.
    async fn run_steps(
        &mut self,
        shared: &Shared<'_>,
        play: &Play,
        prepared: &[Prepared<'_>],
    ) -> Vec<TaskReport> {
        let steps: Vec<Step> = prepared.iter().map(|p| p.step.clone()).collect();
        let script = Script::build(
            &steps,
            ScriptOptions {
                check: shared.opts.check,
                want_old_content: shared.opts.diff,
            },
        );
        let timeout: Duration = prepared.iter().map(|p| self.timeout_of(p.task)).sum();
        let request = script.request(self.host.become_password.as_deref(), timeout);
        let control = script.control(&ExecControl {
            stop: Some(shared.interrupt.subscribe()),
            grace: shared.opts.kill_grace,
            output_limit: shared.opts.output_limit,
            ..ExecControl::default()
        });
        shared.emit(Event::TaskStarted {
            host: self.host.name.clone(),
            task: match prepared {
                [one] => one.task.name.clone(),
                [first, .., last] => format!("{} … {}", first.task.name, last.task.name),
                [] => String::new(),
            },
        });
        let started = Instant::now();
        let result = self.session.exec_with(&request, &control).await;
        let elapsed = started.elapsed();
        let (outputs, status, transport_error) = match &result {
            Ok(out) => (script.parse_output(out), Some(out.status.clone()), None),
            Err(e) => {
                if e.is_lock_lost() {
                    // This run no longer holds the host's lock: start nothing more anywhere.
                    shared.interrupt.trigger();
                }
                (script.parse(&[], &[]), None, Some(e.clone()))
            }
        };
        let mut reports = Vec::new();
        let per_task = elapsed / u32::try_from(prepared.len()).unwrap_or(1).max(1);
        let ended = Ended {
            status: status.as_ref(),
            error: transport_error.as_ref(),
            duration: per_task,
        };
        for (p, out) in prepared.iter().zip(outputs) {
            let (r, _) = self.finish(shared, play, p, out, &ended);
            let stop = matches!(r.status, Status::Failed | Status::Unreachable);
            reports.push(r);
            if stop {
                break;
            }
        }
        reports
    }

    /// `until`/`retries`: runs one step until its condition holds or attempts run out.
    /// Attempts = 1 + `retries` (3 when only `until` is given); `delay` between them (5s).
    async fn run_until(
        &mut self,
        shared: &Shared<'_>,
        play: &Play,
        p: &Prepared<'_>,
    ) -> TaskReport {
        let task = p.task;
        let attempts = 1 + task.retries.unwrap_or(3);
        let delay = task.delay.unwrap_or(Duration::from_secs(5));
        let mut attempt = 1;
        loop {
            let mut reports = self.run_steps(shared, play, std::slice::from_ref(p)).await;
            let Some(mut r) = reports.pop() else {
                return failed(
                    report(play, task, p.index, &self.host.name, shared.opts.check),
                    "no result",
                );
            };
            if r.status == Status::Unreachable || shared.opts.check {
                return r;
            }
            let done = match &task.until {
                Some(expr) => {
                    let value = task
                        .register
                        .as_ref()
                        .and_then(|n| self.registered.get(n).cloned())
                        .or_else(|| self.last_result.clone())
                        .unwrap_or(Value::UNDEFINED);
                    let ctx = self.context(Some(("result", &value)));
                    match shared.templates.eval_bool(
                        &format!("`until` of task \"{}\"", task.name),
                        expr,
                        &ctx,
                    ) {
                        Ok(v) => v,
                        Err(e) => return failed(r, &e.message),
                    }
                }
                None => r.status != Status::Failed,
            };
            if done {
                if attempt > 1 {
                    r.note = Some(format!("succeeded on attempt {attempt} of {attempts}"));
                }
                return r;
            }
            if attempt >= attempts || shared.interrupt.is_set() {
                let why = if task.until.is_some() {
                    format!("`until` condition still false after {attempt} attempt(s)")
                } else {
                    format!("still failing after {attempt} attempt(s)")
                };
                return failed(r, &why);
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// Turns a step's output into its report: evaluates `changed_when`/`failed_when`, lets
    /// [`decide`] judge, then registers, records in the cache and redacts.
    fn finish(
        &mut self,
        shared: &Shared<'_>,
        play: &Play,
        p: &Prepared<'_>,
        out: StepOutput,
        ended: &Ended<'_>,
    ) -> (TaskReport, Option<Value>) {
        let task = p.task;
        let check = shared.opts.check;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let conditions = self.conditions(shared, task, &out.verdict, &stdout, &stderr);
        let kind = kind::of(&task.action);
        let words = match &kind {
            Kind::Host(k) => Words {
                satisfied: match &out.verdict {
                    Verdict::Satisfied(what) => k.satisfied(what, &p.step),
                    _ => String::new(),
                },
                change: match &out.verdict {
                    Verdict::WouldChange(what) | Verdict::Wrote { detail: what, .. } => {
                        k.change(what)
                    }
                    _ => String::new(),
                },
            },
            Kind::Cluster => Words {
                satisfied: String::new(),
                change: String::new(),
            },
        };
        let d = decide(&out.verdict, &conditions, check, ended.judged(), &words);
        let mut r = report(play, task, p.index, &self.host.name, check);
        r.duration = ended.duration;
        r.command = p.shown.as_deref().map(|c| secrets::mask(c).into_owned());
        r.status = d.status;
        r.note.clone_from(&d.note);
        r.exit.clone_from(&d.exit);
        let is_template = matches!(task.action, Action::Template(_));
        if d.keep_output && !is_template {
            r.stdout = stdout.clone();
        }
        if d.keep_output {
            r.stderr = stderr.clone();
        }
        if shared.opts.diff
            && let Kind::Host(k) = &kind
        {
            r.diff = diff(k.as_ref(), shared.opts.diff_context, p, &out, &stdout, &r);
        }
        let value = match d.registered {
            Registered::Nothing => None,
            Registered::Result {
                rc,
                ran,
                changed,
                failed,
            } if matches!(out.verdict, Verdict::Ran(_)) => Some(with_flags(
                &result_value(rc, &stdout, &stderr, ran, failed),
                changed,
                failed,
            )),
            Registered::Result {
                rc,
                ran,
                changed,
                failed,
            } => Some(with_flags(
                &result_value(rc, "", "", ran, failed),
                changed,
                failed,
            )),
        };
        self.register(task, value.as_ref(), check);
        if d.cacheable && !check {
            self.record_in_cache(play, p, &r, value.as_ref());
        }
        self.last_result.clone_from(&value);
        if task.no_log {
            r = redact(r);
        }
        (mask_report(r), value)
    }

    /// `failed_when` and `changed_when` of a step that ran, against its result.
    fn conditions(
        &self,
        shared: &Shared<'_>,
        task: &Task,
        verdict: &Verdict,
        stdout: &str,
        stderr: &str,
    ) -> Conditions {
        let Verdict::Ran(rc) = verdict else {
            return Conditions::default();
        };
        if task.failed_when.is_none() && task.changed_when.is_none() {
            // Nothing to evaluate: spare building the result (its `stdout_lines` included).
            return Conditions::default();
        }
        let v = result_value(*rc, stdout, stderr, true, *rc != 0);
        let ctx = self.context(Some((task.register.as_deref().unwrap_or("result"), &v)));
        let eval = |what: &str, expr: &Option<String>| {
            expr.as_ref().map(|e| {
                shared
                    .templates
                    .eval_bool(&format!("`{what}` of task \"{}\"", task.name), e, &ctx)
                    .map_err(|e| e.message)
            })
        };
        Conditions {
            failed_when: eval("failed_when", &task.failed_when),
            changed_when: eval("changed_when", &task.changed_when),
        }
    }

    /// `register`: the result, or in check mode a name whose value cannot be known.
    fn register(&mut self, task: &Task, value: Option<&Value>, check: bool) {
        let Some(name) = &task.register else {
            return;
        };
        match value {
            Some(v) => {
                self.registered.insert(name.clone(), v.clone());
            }
            None if check => {
                self.unknown.insert(name.clone());
            }
            None => {}
        }
    }

    /// Records a finished command in the result cache, so that a rerun does not repeat it.
    fn record_in_cache(
        &mut self,
        play: &Play,
        p: &Prepared<'_>,
        r: &TaskReport,
        value: Option<&Value>,
    ) {
        let Some(key) = &p.cache_key else {
            return;
        };
        self.cache.record(CacheEntry {
            key: key.clone(),
            host: self.host.name.clone(),
            play: play.name.clone(),
            task: p.task.name.clone(),
            recorded_at: now_secs(),
            changed: r.status == Status::Changed,
            result: value
                .and_then(|v| serde_json::to_value(v).ok())
                .map(|j| mask_json(&j)),
        });
    }
}

/// `--diff`: what would run, or the file's change, as the kind shows it.
fn diff(
    kind: &dyn HostKind,
    context: usize,
    p: &Prepared<'_>,
    out: &StepOutput,
    stdout: &str,
    r: &TaskReport,
) -> Option<String> {
    let what = match &out.verdict {
        Verdict::WouldRun => None,
        Verdict::WouldChange(what)
        | Verdict::Wrote {
            code: 0,
            detail: what,
        } => Some(what.as_str()),
        _ => return None,
    };
    kind.diff(&Change {
        context,
        step: &p.step,
        what,
        old: out.has_old_content.then_some(stdout),
        new: p.new_content.as_deref(),
        shown: r.command.as_deref(),
    })
}

/// `no_log`: the command, output and diff hidden.
fn redact(mut r: TaskReport) -> TaskReport {
    r.command = r.command.map(|_| "(hidden by no_log)".to_owned());
    r.stdout = String::new();
    r.stderr = String::new();
    r.diff = r.diff.map(|_| "(hidden by no_log)".to_owned());
    r
}

/// How the exec of a script ended, shared by all its steps, and each step's share of the
/// time.
struct Ended<'e> {
    status: Option<&'e ExitStatus>,
    error: Option<&'e TransportError>,
    duration: Duration,
}

impl<'e> Ended<'e> {
    fn judged(&self) -> super::decide::Ended<'e> {
        super::decide::Ended {
            status: self.status,
            error: self.error,
        }
    }
}

#[allow(clippy::large_enum_variant)] // built once per task and consumed at once
enum Prep<'t> {
    Run(Prepared<'t>),
    Skip(Box<TaskReport>),
    Fail(Box<TaskReport>),
}

/// A fresh report for `task` on `host`, to be filled in.
fn report(play: &Play, task: &Task, index: usize, host: &str, check: bool) -> TaskReport {
    TaskReport::new(
        host,
        (&play.name, &task.name, task.action.kind()),
        index,
        check,
    )
}
