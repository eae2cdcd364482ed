//! The execution engine: connects to every targeted host once, then runs each play's tasks
//! batch by batch, hosts in parallel up to `--forks`, and sends [`Event`]s to the reporter.
//! It never prints.

pub mod batch;
pub(crate) mod host;
mod outcome;
mod play;
pub mod script;
mod segment;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indexmap::IndexMap;

use crate::inventory::{Host, Inventory, PatternError};
use crate::playbook::Playbook;
use crate::report::event::{Event, HostRecap};
use crate::settings::CacheSettings;
use crate::template::Templates;
use crate::transport::{ConnectOptions, Session};
use crate::vars::Vars;

/// Default timeout of one command when neither the task nor the inventory sets one.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Everything the command line decides about a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub check: bool,
    pub diff: bool,
    /// Lines of context around each change in `--diff`.
    pub diff_context: usize,
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub extra_vars: Vars,
    pub connect: ConnectOptions,
    pub templates_dir: PathBuf,
    /// Where finished work is recorded, and for how long it counts.
    pub cache: CacheSettings,
    /// `--no-cache`: execute everything again (results are still recorded).
    pub no_cache: bool,
    pub lock: crate::lock::LockOptions,
    /// `capstan apply`: once the lock is held, a check pass must find exactly these decisions
    /// (per host) before anything runs; otherwise the run is refused.
    pub expect_plan: Option<PlannedHosts>,
}

/// Set by the first Ctrl-C: start no new work.
#[derive(Debug, Default)]
pub struct Interrupt(AtomicBool);

impl Interrupt {
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a run was refused before anything ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("play \"{play}\": {source}")]
    Pattern {
        play: String,
        #[source]
        source: PatternError,
    },
    #[error("--limit: {0}")]
    Limit(#[source] PatternError),
    #[error("{0}")]
    HostKeys(String),
    #[error("{0}")]
    Lock(#[from] crate::lock::LockError),
    #[error("refused: the hosts drifted since the plan was made; nothing was changed:\n  {}", .0.join("\n  "))]
    Drift(Vec<String>),
}

/// Per host, the decisions of a saved plan.
pub type PlannedHosts = BTreeMap<String, Vec<crate::plan::PlannedTask>>;

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub recap: IndexMap<String, HostRecap>,
    pub interrupted: bool,
    /// A cluster task refused before changing anything (a safety rule): exit 3.
    pub refused: Option<String>,
    /// Names of the tasks that changed, and that failed, per host (for the audit trail).
    pub changes: BTreeMap<String, Vec<String>>,
    pub failures: BTreeMap<String, Vec<String>>,
    /// The audit record written when the lock was released, if the run changed something.
    pub audit: Option<crate::audit::Record>,
}

impl RunOutcome {
    /// 0 success, 2 when any host failed or was unreachable (or the run was interrupted),
    /// 3 when a cluster task refused before any change.
    pub fn exit_code(&self) -> i32 {
        if self.refused.is_some() {
            return 3;
        }
        let bad = self
            .recap
            .values()
            .any(|r| r.failed > 0 || r.unreachable > 0);
        if bad || self.interrupted { 2 } else { 0 }
    }
    /// Whether anything changed (or would change, in check mode).
    pub fn changed(&self) -> bool {
        self.recap.values().any(|r| r.changed > 0)
    }
    /// Remembers a changed or failed task's name.
    pub(crate) fn note(&mut self, r: &crate::report::event::TaskReport) {
        use crate::report::event::Status;
        let list = match r.status {
            Status::Changed => &mut self.changes,
            Status::Failed | Status::Unreachable => &mut self.failures,
            Status::Ok | Status::Skipped | Status::Cached => return,
        };
        list.entry(r.host.clone()).or_default().push(r.task.clone());
    }
}

/// What the engine shares with every play and host.
pub(crate) struct Shared<'a> {
    pub inventory: &'a Inventory,
    pub opts: &'a RunOptions,
    pub templates: Templates,
    pub events: std::sync::mpsc::Sender<Event>,
    pub interrupt: Arc<Interrupt>,
    pub cache: crate::cache::Backend,
}

impl Shared<'_> {
    pub fn emit(&self, event: Event) {
        // The reporter outliving the engine is the reporter's business; a closed channel
        // only means nobody is listening any more.
        let _ = self.events.send(event);
    }
}

/// Runs `playbook` against `inventory`.
pub async fn run(
    inventory: &Inventory,
    playbook: &Playbook,
    opts: &RunOptions,
    events: std::sync::mpsc::Sender<Event>,
    interrupt: Arc<Interrupt>,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let shared = Shared {
        inventory,
        opts,
        templates: Templates::new(&opts.templates_dir),
        events,
        interrupt,
        cache: crate::cache::Backend::from_settings(&opts.cache),
    };
    let plays = resolve_plays(inventory, playbook, opts)?;
    let mut targets: Vec<&Host> = Vec::new();
    for (_, hosts) in &plays {
        for h in hosts {
            if !targets.iter().any(|t| t.name == h.name) {
                targets.push(h);
            }
        }
    }
    shared.emit(Event::RunStarted {
        playbook: playbook.name.clone(),
        hosts: targets.len(),
        check: opts.check,
    });

    let mut outcome = RunOutcome::default();
    for h in &targets {
        outcome.recap.insert(h.name.clone(), HostRecap::default());
    }
    let sessions = connect_all(&shared, &targets, &mut outcome).await?;
    let lock = match crate::lock::acquire_for_run(
        inventory,
        playbook,
        &sessions,
        opts,
        &shared.events,
        &shared.interrupt,
    )
    .await
    {
        Ok(lock) => lock,
        Err(e) => {
            close_all(sessions).await;
            return Err(e.into());
        }
    };

    if let Some(expected) = &opts.expect_plan {
        let drift = plan_drift(&shared, &plays, &sessions, &outcome, expected).await;
        if !drift.is_empty() {
            if let Some(lock) = lock {
                lock.release(&outcome).await;
            }
            close_all(sessions).await;
            return Err(RunError::Drift(drift));
        }
    }
    for (play, hosts) in &plays {
        if shared.interrupt.is_set() {
            break;
        }
        let stop = play::run_play(&shared, play, hosts, &sessions, &mut outcome).await;
        if stop {
            break;
        }
    }
    outcome.interrupted = shared.interrupt.is_set();
    if outcome.interrupted {
        shared.emit(Event::Interrupted);
    }
    if let Some(lock) = lock {
        outcome.audit = lock.release(&outcome).await;
    }
    close_all(sessions).await;
    shared.emit(Event::RunFinished {
        recap: outcome.recap.clone().into_iter().collect(),
        elapsed: started.elapsed(),
    });
    Ok(outcome)
}

async fn close_all(sessions: BTreeMap<String, Arc<Session>>) {
    for (_, session) in sessions {
        if let Some(s) = Arc::into_inner(session) {
            s.close().await;
        }
    }
}

/// Each play's hosts: its pattern, narrowed by `--limit`.
fn resolve_plays<'a>(
    inventory: &'a Inventory,
    playbook: &'a Playbook,
    opts: &RunOptions,
) -> Result<Vec<(&'a crate::playbook::Play, Vec<&'a Host>)>, RunError> {
    let limit: Option<Vec<&Host>> = match &opts.limit {
        Some(pattern) => Some(inventory.select(pattern).map_err(RunError::Limit)?),
        None => None,
    };
    playbook
        .plays
        .iter()
        .map(|play| {
            let mut hosts = inventory
                .select(&play.hosts)
                .map_err(|source| RunError::Pattern {
                    play: play.name.clone(),
                    source,
                })?;
            if let Some(limit) = &limit {
                hosts.retain(|h| limit.iter().any(|l| l.name == h.name));
            }
            Ok((play, hosts))
        })
        .collect()
}

/// Connects to every host at once (up to `--forks` handshakes in flight). Host key problems
/// are collected from all hosts and refuse the whole run; other failures make that host
/// unreachable and the run goes on without it.
async fn connect_all(
    shared: &Shared<'_>,
    targets: &[&Host],
    outcome: &mut RunOutcome,
) -> Result<BTreeMap<String, Arc<Session>>, RunError> {
    let forks = shared.opts.forks.max(1);
    let results: Vec<_> = futures::stream::iter(targets.iter().map(|h| async move {
        let t0 = Instant::now();
        let r = Session::connect(h, &shared.opts.connect).await;
        (h.name.clone(), r, t0.elapsed())
    }))
    .buffer_unordered(forks)
    .collect()
    .await;

    let mut sessions = BTreeMap::new();
    let mut key_problems = Vec::new();
    for (name, result, elapsed) in results {
        match result {
            Ok(s) => {
                shared.emit(Event::Connected {
                    host: name.clone(),
                    elapsed,
                });
                for note in s.notes() {
                    shared.emit(Event::Warning {
                        host: Some(name.clone()),
                        message: note.clone(),
                    });
                }
                sessions.insert(name, Arc::new(s));
            }
            Err(e) if e.is_host_key_problem() => key_problems.push((name, e.to_string())),
            Err(e) => {
                shared.emit(Event::Unreachable {
                    host: name.clone(),
                    reason: e.to_string(),
                });
                if let Some(r) = outcome.recap.get_mut(&name) {
                    r.unreachable += 1;
                }
            }
        }
    }
    if !key_problems.is_empty() {
        key_problems.sort();
        let n = key_problems.len();
        shared.emit(Event::HostKeysRefused {
            problems: key_problems,
        });
        for (_, s) in sessions {
            if let Some(s) = Arc::into_inner(s) {
                s.close().await;
            }
        }
        return Err(RunError::HostKeys(format!(
            "refused: {n} host key problem(s); nothing was run on any host"
        )));
    }
    Ok(sessions)
}

/// `capstan apply`: with the lock held, runs every play in check mode (with diffs, as the plan
/// was made) and returns where the hosts' decisions differ from the plan's.
async fn plan_drift(
    shared: &Shared<'_>,
    plays: &[(&crate::playbook::Play, Vec<&Host>)],
    sessions: &BTreeMap<String, Arc<Session>>,
    outcome: &RunOutcome,
    expected: &PlannedHosts,
) -> Vec<String> {
    let check_opts = RunOptions {
        check: true,
        diff: true,
        expect_plan: None,
        ..shared.opts.clone()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let check = Shared {
        inventory: shared.inventory,
        opts: &check_opts,
        templates: Templates::new(&check_opts.templates_dir),
        events: tx,
        interrupt: Arc::clone(&shared.interrupt),
        cache: shared.cache.clone(),
    };
    let mut scratch = RunOutcome {
        recap: outcome.recap.clone(),
        ..RunOutcome::default()
    };
    for (play, hosts) in plays {
        if play::run_play(&check, play, hosts, sessions, &mut scratch).await {
            break;
        }
    }
    drop(check);
    let reports: Vec<_> = rx
        .into_iter()
        .filter_map(|e| match e {
            Event::TaskFinished(r) => Some(*r),
            _ => None,
        })
        .collect();
    crate::plan::drift(expected, &crate::plan::decisions(&reports))
}
