//! DTR cluster tasks: `check`, `pull`, `upgrade`, `join`, `remove` and `scale`.
//!
//! These do not fit the per-host segment model: an upgrade runs once per hop on one node
//! and is verified on every replica; a join needs the whole cluster's replica count first.
//! The engine hands such a task the batch's active hosts at once ([`run_task`]); the task
//! queries every node, decides with the pure rules of [`crate::rules`], refuses (exit 3)
//! before any change when a rule says no, and otherwise acts one replica at a time,
//! verifying after each step. In check mode it stops after the query and reports what it
//! would do, commands included. Every `docker run` comes from `templates/dtr-*.j2`.
//!
//! Everything capstan reads from a cluster is what real DTR exposes (docs/dtr.md): the
//! `dtr-*-<id>` containers, `docker info`, `/_ping`, `cluster_status`, the jobs API, UCP's
//! API; every HTTP call is `curl` on a node. Secrets (the UCP password, the DTR access
//! token, UCP's CA) reach a host only on a command's stdin, into 0600 files that a trap
//! removes; reports are masked by [`crate::secrets`].

mod bootstrap;
mod check;
mod cluster;
mod commands;
mod error;
mod facts;
mod flags;
mod hop;
mod http;
mod migration;
mod params;
mod post_upgrade;
mod pull;
mod remote;
mod replica_step;
mod replicas;
mod run;
pub(crate) use crate::playbook::dtr_spec as spec;
mod ucp;
mod upgrade;
pub(crate) mod validate;

use futures::future::BoxFuture;

use crate::engine::host::HostState;
use crate::engine::{ClusterOutcome, ClusterRunner, Shared};
use crate::playbook::{Action, Play};

pub use spec::DtrKind;

/// The DTR kinds, as the engine's cluster task interface.
pub(crate) struct Runner;

impl ClusterRunner for Runner {
    fn run<'s>(
        &'s self,
        shared: &'s Shared<'s>,
        play: &'s Play,
        index: usize,
        batch: &'s mut [HostState<'_>],
    ) -> BoxFuture<'s, ClusterOutcome> {
        Box::pin(run_task(shared, play, index, batch))
    }
}

/// Runs DTR task `index` of `play` over the active hosts of `batch`.
pub(crate) async fn run_task(
    shared: &Shared<'_>,
    play: &Play,
    index: usize,
    batch: &mut [HostState<'_>],
) -> ClusterOutcome {
    let task = &play.tasks[index];
    let Action::Dtr(spec) = &task.action else {
        return ClusterOutcome::default();
    };
    let mut r = run::Run::prepare(shared, play, task, index, spec, batch);
    if r.ready() {
        match spec.kind {
            DtrKind::Check => check::run(&mut r).await,
            DtrKind::Pull => pull::run(&mut r).await,
            DtrKind::Upgrade => upgrade::run(&mut r).await,
            DtrKind::Join | DtrKind::Remove | DtrKind::Scale => replicas::run(&mut r).await,
        }
    }
    r.finish(batch)
}
