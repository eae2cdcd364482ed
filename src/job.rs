//! One run of the engine: loaded inputs, resolved options, the async runtime, Ctrl-C, and
//! the reporter thread. `run`, `apply` and the promotion gate all go through here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{DeclinedTasks, Interrupt, RunOptions, check_tags, start_at_task};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::orchestrator::{RunError, RunInputs, RunResult};
use crate::playbook::Playbook;
use crate::report::event::{Event, TaskReport};
use crate::report::fanout::{Fanout, ReportFiles};
use crate::report::human::HumanReporter;
use crate::transport::ConnectOptions;
use crate::transport::Stop;
use crate::{extra_vars, validate};

/// What the command line says about a run, before anything is loaded.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    pub playbook: PathBuf,
    pub inventory: PathBuf,
    pub limit: Option<String>,
    pub extra_vars: Vec<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub templates: Option<PathBuf>,
    pub forks: usize,
    pub check: bool,
    pub diff: bool,
    pub diff_context: usize,
    /// `capstan apply`: the plan's decisions, checked under the lock before anything runs.
    pub expect_plan: Option<crate::plan::PlannedHosts>,
    pub no_cache: bool,
    pub connect: ConnectOptions,
    pub lock: crate::lock::LockOptions,
    /// `-u`: the user to connect as on every host.
    pub user: Option<String>,
    /// `-b`: every play runs with `become` (a task's own `become = false` still wins).
    pub become_all: bool,
    /// `-K`: the sudo password for every host, as typed.
    pub become_password: Option<BecomePassword>,
    /// `--start-at-task`: the tasks before the first task of this name do not run.
    pub start_at_task: Option<String>,
}

/// A sudo password typed at `-K`'s prompt; never shown by `Debug`.
#[derive(Clone)]
pub struct BecomePassword(pub String);

impl std::fmt::Debug for BecomePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BecomePassword(********)")
    }
}

/// Loaded, checked inputs and options, ready to run.
pub struct Job {
    pub spec: JobSpec,
    pub inventory: Inventory,
    pub playbook: Playbook,
    pub opts: RunOptions,
}

/// How a run ended, and every task result it reported.
pub struct Finished {
    pub outcome: crate::engine::RunOutcome,
    pub audit: Option<crate::audit::Record>,
    pub reports: Vec<TaskReport>,
}

impl Job {
    /// Loads and validates everything offline; nothing is contacted.
    pub fn load(spec: JobSpec) -> Result<Job, Error> {
        let playbook = Playbook::load(&spec.playbook)?;
        Self::with_playbook(spec, playbook)
    }

    /// As [`Job::load`], for a playbook already in memory (`capstan exec` builds one).
    pub fn with_playbook(spec: JobSpec, mut playbook: Playbook) -> Result<Job, Error> {
        let mut inventory = Inventory::load(&spec.inventory)?;
        apply_overrides(&spec, &mut inventory, &mut playbook);
        check_tags(&playbook, &spec.tags, &spec.skip_tags)
            .map_err(|e| Error::Refused(e.to_string()))?;
        let declined = match &spec.start_at_task {
            Some(name) => {
                start_at_task(&playbook, name).map_err(|e| Error::Refused(e.to_string()))?
            }
            None => DeclinedTasks::default(),
        };
        let cwd = std::env::current_dir()
            .map_err(|e| Error::Internal(format!("current directory: {e}")))?;
        let extra = extra_vars::parse(&spec.extra_vars, &cwd)?;
        let templates = templates_dir(spec.templates.as_ref(), &spec.playbook);
        let problems = validate::check_playbook(
            &inventory,
            &playbook,
            &extra,
            spec.limit.as_deref(),
            &templates,
        );
        if !problems.is_empty() {
            return Err(problems.into());
        }
        let cache = inventory.settings.cache();
        let opts = RunOptions {
            forks: spec.forks.max(1),
            check: spec.check,
            diff: spec.diff,
            diff_context: spec.diff_context,
            limit: spec.limit.clone(),
            tags: spec.tags.clone(),
            skip_tags: spec.skip_tags.clone(),
            extra_vars: extra,
            connect: spec.connect.clone(),
            templates_dir: templates,
            cache,
            no_cache: spec.no_cache,
            kill_grace: inventory.settings.kill_grace(),
            connect_concurrency: inventory.settings.connect_concurrency(),
            output_limit: inventory.settings.output_limit().as_usize(),
            declined,
        };
        Ok(Job {
            spec,
            inventory,
            playbook,
            opts,
        })
    }

    /// Runs the engine; events go to `reporter` when given (else nowhere). Task results are
    /// collected either way.
    pub fn execute(&self, reporter: Option<HumanReporter>) -> Result<Finished, Error> {
        let reporters = Fanout::new(reporter, false, ReportFiles::default());
        self.execute_with(reporters).0
    }

    /// Runs the engine with every reporter the command line asked for, and gives them back
    /// (unless their thread died) so that the caller can finish them with the exit code.
    pub fn execute_with(&self, reporters: Fanout) -> (Result<Finished, Error>, Option<Fanout>) {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let e = Error::Internal(format!("cannot start the async runtime: {e}"));
                return (Err(e), Some(reporters));
            }
        };
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let printer = std::thread::spawn(move || {
            let mut reporters = reporters;
            let mut reports = Vec::new();
            for event in rx {
                reporters.handle(&event);
                if let Event::TaskFinished(report) = event {
                    reports.push(*report);
                }
            }
            (reports, reporters)
        });
        let result = self.block_on(&runtime, tx);
        let (reports, reporters) = match printer.join() {
            Ok((reports, reporters)) => (reports, Some(reporters)),
            Err(_) => {
                let e = Error::Internal("the reporter thread panicked".into());
                return (Err(e), None);
            }
        };
        runtime.shutdown_timeout(std::time::Duration::from_millis(100));
        let result = match result {
            Ok(RunResult { outcome, audit }) => Ok(Finished {
                outcome,
                audit,
                reports,
            }),
            Err(RunError::HostKeys(msg)) => Err(Error::HostKeys(msg)),
            Err(e) => Err(Error::Refused(e.to_string())),
        };
        (result, reporters)
    }

    /// Runs the orchestrator on `runtime`, with signal handling; events go to `tx`.
    fn block_on(
        &self,
        runtime: &tokio::runtime::Runtime,
        tx: std::sync::mpsc::Sender<Event>,
    ) -> Result<RunResult, RunError> {
        let interrupt = Arc::new(Interrupt::default());
        runtime.block_on(async {
            let listener = tokio::spawn(listen_for_signals(
                Arc::clone(&interrupt),
                self.opts.kill_grace,
            ));
            let inputs = RunInputs {
                inventory: &self.inventory,
                playbook: &self.playbook,
                opts: &self.opts,
                lock: &self.spec.lock,
                expect_plan: self.spec.expect_plan.as_ref(),
                cluster: &crate::dtr::Runner,
            };
            let result = crate::orchestrator::run(&inputs, tx, Arc::clone(&interrupt)).await;
            listener.abort();
            result
        })
    }
}

/// `-u`, `-b` and `-K`: what the command line says about every host and play, over what
/// the files say.
fn apply_overrides(spec: &JobSpec, inventory: &mut Inventory, playbook: &mut Playbook) {
    for host in inventory.hosts.values_mut() {
        if let Some(user) = &spec.user {
            host.user = Some(user.clone());
        }
        if let Some(password) = &spec.become_password {
            host.become_password = Some(password.0.clone());
        }
    }
    if spec.become_all {
        for play in &mut playbook.plays {
            play.r#become = true;
        }
    }
}

/// SIGINT (Ctrl-C), SIGTERM (what CI sends a cancelled job) and SIGHUP (a closed terminal)
/// all stop a run the same way: the first starts nothing new and gives the running commands
/// `grace` after a TERM; the next kills them at once. Either way the run goes on to its
/// recap, reports, audit record and lock release. Each signal is acknowledged at once.
async fn listen_for_signals(interrupt: Arc<Interrupt>, grace: std::time::Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        let name = tokio::select! {
            _ = int.recv() => "interrupt",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        match interrupt.escalate() {
            Stop::Terminate => eprintln!(
                "\n{name}: stopping: no new task starts; running commands get {} to end; \
                 press Ctrl-C again to kill them",
                humantime::format_duration(grace)
            ),
            _ => eprintln!(
                "\n{name}: stopping now: killing the running commands; the lock is still released \
                 and the reports written"
            ),
        }
    }
}

/// The templates directory: `--templates` when given; else `templates/` beside the playbook;
/// else `templates/` beside the playbook's directory (the repository layout `playbooks/` +
/// `templates/`).
pub fn templates_dir(flag: Option<&PathBuf>, playbook: &Path) -> PathBuf {
    if let Some(dir) = flag {
        return dir.clone();
    }
    let dir = playbook.parent().unwrap_or_else(|| Path::new(""));
    let beside = dir.join("templates");
    if beside.is_dir() {
        return beside;
    }
    let above = dir.join("..").join("templates");
    if above.is_dir() { above } else { beside }
}
