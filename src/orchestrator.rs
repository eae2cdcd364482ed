//! The one owner of a run's life cycle, in this order: resolve the targets (refusing an
//! empty set) → connect to every target → host-key verdicts → take the lock → for `apply`,
//! re-check the plan under the lock → the engine runs the plays → the audit record →
//! release the lock → close every session. Whatever happens after the lock is taken, it is
//! released and the sessions are closed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::engine::{
    self, ClusterRunner, Engine, Interrupt, PlayTargets, RunOptions, RunOutcome, TargetError,
};
use crate::inventory::Inventory;
use crate::lock::{Held, LockError, LockOptions};
use crate::plan::PlannedHosts;
use crate::playbook::Playbook;
use crate::report::event::{Event, HostRecap};
use crate::transport::Session;

/// What one run needs besides the engine's options.
pub(crate) struct RunInputs<'a> {
    pub inventory: &'a Inventory,
    pub playbook: &'a Playbook,
    pub opts: &'a RunOptions,
    pub lock: &'a LockOptions,
    /// `capstan apply`: with the lock held, a check pass must find exactly these decisions
    /// before anything runs; otherwise the run is refused.
    pub expect_plan: Option<&'a PlannedHosts>,
    pub cluster: &'a dyn ClusterRunner,
}

/// Why a run was refused before anything ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Targets(#[from] TargetError),
    #[error("{0}")]
    HostKeys(String),
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("refused: the hosts drifted since the plan was made; nothing was changed:\n  {}", .0.join("\n  "))]
    Drift(Vec<String>),
}

/// How a run ended, with the audit record written when the lock was released (when the
/// run changed or failed something).
pub struct RunResult {
    pub outcome: RunOutcome,
    pub audit: Option<crate::audit::Record>,
}

/// Runs one job from targets to release.
pub(crate) async fn run(
    inputs: &RunInputs<'_>,
    events: Sender<Event>,
    interrupt: Arc<Interrupt>,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    let emit = |e: Event| {
        let _ = events.send(e);
    };
    let plays = engine::resolve_plays(
        inputs.inventory,
        inputs.playbook,
        inputs.opts.limit.as_deref(),
    )?;
    let targets = engine::targets(&plays);
    emit(Event::RunStarted {
        playbook: inputs.playbook.name.clone(),
        hosts: targets.len(),
        check: inputs.opts.check,
    });
    let mut outcome = RunOutcome::default();
    for h in &targets {
        outcome.recap.insert(h.name.clone(), HostRecap::default());
    }
    let sessions = connect(inputs, &targets, &mut outcome, &emit).await?;
    let lock = match take_lock(inputs, &sessions, &events, &interrupt).await {
        Ok(lock) => lock,
        Err(e) => {
            crate::connect::close_all(sessions.into_values()).await;
            return Err(e.into());
        }
    };
    if let Some(lock) = &lock {
        let check = lock.fence_check();
        for (host, session) in lock.hosts() {
            session.set_fence(host, Some(check.clone()));
        }
    }
    let engine = Engine::new(
        inputs.inventory,
        inputs.opts,
        events.clone(),
        Arc::clone(&interrupt),
        inputs.cluster,
    );
    if let Some(expected) = inputs.expect_plan {
        let drift = plan_drift(&engine, &plays, &sessions, &outcome, expected).await;
        if !drift.is_empty() {
            if let Some(lock) = lock {
                lock.release(None).await;
            }
            crate::connect::close_all(sessions.into_values()).await;
            return Err(RunError::Drift(drift));
        }
    }
    engine.run_plays(&plays, &sessions, &mut outcome).await;
    if outcome.interrupted {
        emit(Event::Interrupted);
    }
    let audit = match lock {
        Some(lock) => {
            let record = crate::audit::Record::for_run(
                lock.info(),
                lock.token(),
                &inputs.inventory.path,
                &outcome,
            );
            let line = record.as_ref().map(crate::audit::Record::to_line);
            lock.release(line.as_deref()).await;
            record
        }
        None => None,
    };
    drop(engine);
    crate::connect::close_all(sessions.into_values()).await;
    emit(Event::RunFinished {
        recap: outcome.recap.clone().into_iter().collect(),
        elapsed: started.elapsed(),
    });
    Ok(RunResult { outcome, audit })
}

/// Connects to every target. Host-key problems, collected from all hosts, refuse the whole
/// run; other failures make that host unreachable and the run goes on without it.
async fn connect(
    inputs: &RunInputs<'_>,
    targets: &[&crate::inventory::Host],
    outcome: &mut RunOutcome,
    emit: &impl Fn(Event),
) -> Result<BTreeMap<String, Arc<Session>>, RunError> {
    let connected = crate::connect::all(
        targets,
        &inputs.opts.connect,
        inputs.opts.connect_concurrency,
    )
    .await;
    for (name, (session, elapsed)) in &connected.sessions {
        emit(Event::Connected {
            host: name.clone(),
            elapsed: *elapsed,
        });
        for note in session.notes() {
            emit(Event::Warning {
                host: Some(name.clone()),
                message: note.clone(),
            });
        }
    }
    for (name, e) in &connected.unreachable {
        emit(Event::Unreachable {
            host: name.clone(),
            reason: e.to_string(),
        });
        if let Some(r) = outcome.recap.get_mut(name) {
            r.unreachable += 1;
        }
    }
    if !connected.key_problems.is_empty() {
        let problems = connected.key_problems.clone();
        let n = problems.len();
        emit(Event::HostKeysRefused { problems });
        connected.close().await;
        return Err(RunError::HostKeys(format!(
            "refused: {n} host key problem(s); nothing was run on any host"
        )));
    }
    Ok(connected.by_name())
}

/// The lock, for a run that may change something on at least one reachable host.
async fn take_lock(
    inputs: &RunInputs<'_>,
    sessions: &BTreeMap<String, Arc<Session>>,
    events: &Sender<Event>,
    interrupt: &Arc<Interrupt>,
) -> Result<Option<Held>, LockError> {
    if inputs.opts.check || sessions.is_empty() {
        return Ok(None);
    }
    crate::lock::acquire_for_run(
        inputs.inventory,
        &inputs.playbook.path,
        sessions,
        inputs.lock,
        events,
        interrupt,
    )
    .await
    .map(Some)
}

/// `capstan apply`: with the lock held, runs every play in check mode (with diffs, as the plan
/// was made) and returns where the hosts' decisions differ from the plan's.
async fn plan_drift(
    engine: &Engine<'_>,
    plays: &PlayTargets<'_>,
    sessions: &BTreeMap<String, Arc<Session>>,
    outcome: &RunOutcome,
    expected: &PlannedHosts,
) -> Vec<String> {
    let reports = engine.check_pass(plays, sessions, outcome).await;
    crate::plan::drift(expected, &crate::plan::decisions(&reports))
}
