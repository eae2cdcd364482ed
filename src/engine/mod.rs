//! The execution engine: runs each play's tasks batch by batch over sessions that are
//! already open, hosts in parallel up to `--forks`, and sends [`Event`]s to the reporter.
//! It never prints, and knows nothing of locks, plans or the audit trail: the run
//! orchestrator (`crate::orchestrator`) owns those. Task kinds that coordinate several hosts
//! at once plug in through [`ClusterRunner`].

pub mod batch;
mod decide;
pub(crate) mod host;
mod kind;
mod outcome;
mod play;
pub mod script;
mod segment;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use indexmap::IndexMap;

use crate::inventory::{Host, Inventory, PatternError};
use crate::playbook::{Play, Playbook};
use crate::report::event::{Event, HostRecap, TaskReport};
use crate::settings::CacheSettings;
use crate::template::Templates;
use crate::transport::{ConnectOptions, Session};
use crate::vars::Vars;

pub use crate::stop::Interrupt;
pub use play::{DeclinedTasks, check_tags, select_tasks, start_at_task};

/// Lines of context around each change in `--diff`, unless `--diff-context` says otherwise.
pub const DEFAULT_DIFF_CONTEXT: usize = 3;

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
    /// After the first stop request, how long running commands get between TERM and KILL.
    pub kill_grace: Duration,
    /// Bytes of stdout, and of stderr, kept per task (`[settings] output_limit`).
    pub output_limit: usize,
    /// Handshakes in flight at once while connecting (`[settings] connect_concurrency`).
    pub connect_concurrency: usize,
    /// Tasks left out by `--start-at-task` and `--step`.
    pub declined: DeclinedTasks,
}

/// Why the engine refused to start: the targets cannot be resolved, or are empty.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("play \"{play}\": {source}")]
    Pattern {
        play: String,
        #[source]
        source: PatternError,
    },
    #[error("--limit: {0}")]
    Limit(#[source] PatternError),
    #[error("the inventory `{}` has no host; nothing to run on", .inventory.display())]
    EmptyInventory { inventory: PathBuf },
    #[error("play \"{play}\": host pattern \"{pattern}\" matches no host{hint}")]
    PlayMatchesNothing {
        play: String,
        pattern: String,
        hint: String,
    },
    #[error("--limit \"{limit}\" leaves no host to run on (the plays target: {targets}){hint}")]
    LimitLeavesNothing {
        limit: String,
        targets: String,
        hint: String,
    },
}

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

/// What a cluster task did: its reports, and the refusal that stops the run (exit 3).
#[derive(Debug, Default)]
pub(crate) struct ClusterOutcome {
    pub reports: Vec<TaskReport>,
    pub refused: Option<String>,
}

/// Task kinds that coordinate several hosts at once (a DTR upgrade runs once per hop and is
/// verified on every replica). The engine hands such a task the batch's active hosts in one
/// call; which kinds these are is the playbook's business (`Action::is_cluster`), how they
/// run is the implementor's.
pub(crate) trait ClusterRunner: Sync {
    fn run<'s>(
        &'s self,
        shared: &'s Shared<'s>,
        play: &'s Play,
        index: usize,
        batch: &'s mut [host::HostState<'_>],
    ) -> BoxFuture<'s, ClusterOutcome>;
}

/// What the engine shares with every play and host.
pub(crate) struct Shared<'a> {
    pub inventory: &'a Inventory,
    pub opts: &'a RunOptions,
    pub templates: Templates,
    pub events: std::sync::mpsc::Sender<Event>,
    pub interrupt: Arc<Interrupt>,
    pub cache: crate::cache::Backend,
    pub cluster: &'a dyn ClusterRunner,
}

impl Shared<'_> {
    pub fn emit(&self, event: Event) {
        // The reporter outliving the engine is the reporter's business; a closed channel
        // only means nobody is listening any more.
        let _ = self.events.send(event);
    }
}

/// The hosts of each play, as resolved before anything connects.
pub(crate) type PlayTargets<'a> = Vec<(&'a Play, Vec<&'a Host>)>;

/// The engine of one run.
pub(crate) struct Engine<'a> {
    shared: Shared<'a>,
}

impl<'a> Engine<'a> {
    pub fn new(
        inventory: &'a Inventory,
        opts: &'a RunOptions,
        events: std::sync::mpsc::Sender<Event>,
        interrupt: Arc<Interrupt>,
        cluster: &'a dyn ClusterRunner,
    ) -> Self {
        Self {
            shared: Shared {
                inventory,
                opts,
                templates: Templates::new(&opts.templates_dir),
                events,
                interrupt,
                cache: crate::cache::Backend::from_settings(&opts.cache),
                cluster,
            },
        }
    }

    /// Runs every play on the hosts connected to, recording results in `outcome`.
    pub async fn run_plays(
        &self,
        plays: &PlayTargets<'_>,
        sessions: &BTreeMap<String, Arc<Session>>,
        outcome: &mut RunOutcome,
    ) {
        for (play, hosts) in plays {
            if self.shared.interrupt.is_set() {
                break;
            }
            if play::run_play(&self.shared, play, hosts, sessions, outcome).await {
                break;
            }
        }
        outcome.interrupted = self.shared.interrupt.is_set();
    }

    /// Runs every play in check mode with diffs (as a plan is made) and returns its task
    /// reports, without sending them to the reporter: what the hosts would do now.
    pub async fn check_pass(
        &self,
        plays: &PlayTargets<'_>,
        sessions: &BTreeMap<String, Arc<Session>>,
        outcome: &RunOutcome,
    ) -> Vec<TaskReport> {
        let check_opts = RunOptions {
            check: true,
            diff: true,
            ..self.shared.opts.clone()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let check = Shared {
            inventory: self.shared.inventory,
            opts: &check_opts,
            templates: Templates::new(&check_opts.templates_dir),
            events: tx,
            interrupt: Arc::clone(&self.shared.interrupt),
            cache: self.shared.cache.clone(),
            cluster: self.shared.cluster,
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
        rx.into_iter()
            .filter_map(|e| match e {
                Event::TaskFinished(r) => Some(*r),
                _ => None,
            })
            .collect()
    }
}

/// Each play's hosts: its pattern, narrowed by `--limit`. Refused before anything connects
/// when the inventory is empty, a play's pattern matches no host, or `--limit` leaves no
/// host to any play: a typo must not pass as "nothing to do".
pub(crate) fn resolve_plays<'a>(
    inventory: &'a Inventory,
    playbook: &'a Playbook,
    limit: Option<&str>,
) -> Result<PlayTargets<'a>, TargetError> {
    if inventory.hosts.is_empty() {
        return Err(TargetError::EmptyInventory {
            inventory: inventory.path.clone(),
        });
    }
    let limited: Option<Vec<&Host>> = match limit {
        Some(pattern) => Some(inventory.select(pattern).map_err(TargetError::Limit)?),
        None => None,
    };
    let mut plays = Vec::new();
    for play in &playbook.plays {
        let mut hosts = inventory
            .select(&play.hosts)
            .map_err(|source| TargetError::Pattern {
                play: play.name.clone(),
                source,
            })?;
        if hosts.is_empty() {
            return Err(TargetError::PlayMatchesNothing {
                play: play.name.clone(),
                pattern: play.hosts.clone(),
                hint: names_hint(inventory, &play.hosts),
            });
        }
        if let Some(limited) = &limited {
            hosts.retain(|h| limited.iter().any(|l| l.name == h.name));
        }
        plays.push((play, hosts));
    }
    if let Some(limit) = limit
        && plays.iter().all(|(_, hosts)| hosts.is_empty())
    {
        let targets: Vec<&str> = playbook.plays.iter().map(|p| p.hosts.as_str()).collect();
        return Err(TargetError::LimitLeavesNothing {
            limit: limit.to_owned(),
            targets: targets.join(", "),
            hint: names_hint(inventory, limit),
        });
    }
    Ok(plays)
}

/// "; did you mean …?" for the pattern's words, against host and group names.
fn names_hint(inventory: &Inventory, pattern: &str) -> String {
    let names: Vec<&str> = inventory
        .hosts
        .keys()
        .map(String::as_str)
        .chain(inventory.groups.keys().map(String::as_str))
        .collect();
    pattern
        .split([',', ':'])
        .map(|w| w.trim_start_matches(['!', '&']).trim())
        .filter(|w| !w.is_empty() && !names.contains(w))
        .find_map(|w| crate::diag::suggest(w, names.iter().copied()))
        .map_or_else(String::new, |s| format!("; did you mean \"{s}\"?"))
}

/// Every host of every play, once, in first-seen order.
pub(crate) fn targets<'a>(plays: &PlayTargets<'a>) -> Vec<&'a Host> {
    let mut targets: Vec<&Host> = Vec::new();
    for (_, hosts) in plays {
        for h in hosts {
            if !targets.iter().any(|t| t.name == h.name) {
                targets.push(h);
            }
        }
    }
    targets
}
