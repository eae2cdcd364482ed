//! One step of a replica change, a join or a removal: the command from a node with a
//! healthy replica, health checked before and after, and the load balancer around it.
//!
//! A removal takes one or several replicas: DTR's `remove --replica-ids` takes "a comma
//! separated list of IDs", and its rule is "All other replicas must be healthy", so
//! several unhealthy replicas go in one call.

use std::fmt;
use std::time::{Duration, Instant};

use minijinja::value::Value;
use semver::Version;

use super::bootstrap::{self, Bootstrap, base_values};
use super::cluster::{self, runner_of};
use super::commands::{ensure_image, render_template};
use super::error::DtrError;
use super::facts::{self, Replica};
use super::params::render_command;
use super::replicas::HA;
use super::run::Run;
use super::spec::{JOIN_TEMPLATE, REMOVE_TEMPLATE};
use crate::rules::{self, ReplicaState, ScaleStep};

/// One replica change as capstan runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Join {
        node: String,
        replica_id: String,
    },
    /// (replica id, node) of each replica removed by one `remove --replica-ids` call.
    Remove {
        replicas: Vec<(String, String)>,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Join { node, replica_id } => {
                write!(f, "join replica `{replica_id}` on node `{node}`")
            }
            Step::Remove { replicas } => {
                let parts: Vec<String> = replicas
                    .iter()
                    .map(|(id, node)| format!("`{id}` from node `{node}`"))
                    .collect();
                let noun = if replicas.len() == 1 {
                    "replica"
                } else {
                    "replicas"
                };
                write!(f, "remove {noun} {}", parts.join(" and "))
            }
        }
    }
}

impl Step {
    fn removed(&self) -> Vec<&str> {
        match self {
            Step::Join { .. } => Vec::new(),
            Step::Remove { replicas } => replicas.iter().map(|(id, _)| id.as_str()).collect(),
        }
    }
}

/// The rules' steps as capstan runs them: consecutive removals of replicas that are
/// unhealthy in `view` go in one call.
pub(crate) fn batch(steps: Vec<ScaleStep>, view: &[Replica]) -> Vec<Step> {
    let sick = |id: &str| view.iter().any(|r| r.id == id && !r.healthy);
    let mut out: Vec<Step> = Vec::new();
    for step in steps {
        match step {
            ScaleStep::Join { node, replica_id } => out.push(Step::Join { node, replica_id }),
            ScaleStep::Remove { replica_id, node } => {
                if sick(&replica_id)
                    && let Some(Step::Remove { replicas }) = out.last_mut()
                    && replicas.iter().all(|(id, _)| sick(id))
                {
                    replicas.push((replica_id, node));
                    continue;
                }
                out.push(Step::Remove {
                    replicas: vec![(replica_id, node)],
                });
            }
        }
    }
    out
}

/// DTR's own refusals, checked before any change: join refuses an unhealthy cluster ("This
/// DTR has replicas that are not working correctly. Make sure existing DTR replicas are
/// healthy before joining new ones", unless `--unsafe-join`); remove needs "All other
/// replicas must be healthy".
pub(crate) fn check_safe(view: &[Replica], step: &Step, unsafe_join: bool) -> Result<(), DtrError> {
    let removed = step.removed();
    let sick: Vec<String> = view
        .iter()
        .filter(|r| !r.healthy && !removed.contains(&r.id.as_str()))
        .map(|r| format!("`{}` ({})", r.id, r.health_note))
        .collect();
    if sick.is_empty() {
        return Ok(());
    }
    match step {
        Step::Join { .. } if unsafe_join => Ok(()),
        Step::Join { .. } => Err(DtrError::Refused(format!(
            "refused: `{step}` while replica {} is unhealthy: DTR's join refuses (\"This DTR \
             has replicas that are not working correctly. Make sure existing DTR replicas are \
             healthy before joining new ones.\"; \"Joining replicas to an unhealthy DTR \
             cluster leads to split-brain scenarios, and data loss\"); remove the unhealthy \
             replicas first (remove.toml with replica_ids), or repair them",
            sick.join(", ")
        ))),
        Step::Remove { .. } => Err(DtrError::Refused(format!(
            "refused: `{step}` while replica {} is unhealthy: DTR's remove needs \"All other \
             replicas must be healthy\" (docker/dtr remove); remove the unhealthy replicas \
             in the same call (add them to replica_ids), or repair them",
            sick.join(", ")
        ))),
    }
}

const SEED_LB_ADD: &str = "\"If you have a load balancer, add this DTR replica to the load \
                           balancing pool.\"";

const SEED_LB_REMOVE: &str = "\"If you're load-balancing user requests across multiple DTR \
                              replicas, don't forget to remove this replica from the load \
                              balancing pool.\"";

/// The node that runs a step's command, and the checked command.
fn step_command(
    r: &Run<'_>,
    view: &[Replica],
    replica_members: &[usize],
    version: &Version,
    step: &Step,
) -> Result<(usize, Bootstrap), DtrError> {
    let removed = step.removed();
    let Some((runner, existing)) = runner_of(view, replica_members, &removed) else {
        return Err(DtrError::Refused(format!(
            "no healthy DTR replica to run `{step}` against ({}): \"the id of any healthy DTR \
             replica of that cluster\" ({HA})",
            facts::describe(view)
        )));
    };
    let m = &r.members[runner];
    let p = &m.params;
    let mut values = base_values(m);
    values.push(("version", Value::from(version.to_string())));
    values.push(("existing_replica_id", Value::from(existing.as_str())));
    let file = match step {
        Step::Join { node, replica_id } => {
            let target = r.members.iter().find(|t| t.node == *node).unwrap_or(m);
            values.push(("ucp_node", Value::from(node.as_str())));
            values.push(("replica_id", Value::from(replica_id.as_str())));
            values.push((
                "replica_https_port",
                Value::from(u64::from(facts::https_port(target))),
            ));
            values.push((
                "replica_http_port",
                Value::from(target.params.count("replica_http_port").unwrap_or(0)),
            ));
            values.push((
                "skip_network_test",
                Value::from(p.flag("skip_network_test")),
            ));
            values.push(("unsafe_join", Value::from(p.flag("unsafe_join"))));
            JOIN_TEMPLATE
        }
        Step::Remove { .. } => {
            values.push(("replica_ids", Value::from(removed.join(","))));
            REMOVE_TEMPLATE
        }
    };
    let cmd = render_template(r.t(), file, &m.ctx, &values)?;
    let cmd = bootstrap::prepare(m, cmd)?;
    Ok((runner, cmd))
}

/// The members a step's report goes to: the nodes', else the runner's.
fn owners(r: &Run<'_>, view: &[Replica], step: &Step, runner: usize) -> Vec<usize> {
    let found: Vec<usize> = match step {
        Step::Join { node, .. } => r
            .members
            .iter()
            .position(|m| m.node == *node)
            .into_iter()
            .collect(),
        Step::Remove { replicas } => replicas
            .iter()
            .filter_map(|(id, _)| {
                view.iter()
                    .find(|rep| rep.id == *id)
                    .and_then(|rep| rep.member)
            })
            .collect(),
    };
    if found.is_empty() {
        vec![runner]
    } else {
        found
    }
}

/// Check mode: the step's command and what it would do; the view as the step leaves it.
pub(crate) fn preview(
    r: &mut Run<'_>,
    view: &mut Vec<Replica>,
    replica_members: &[usize],
    version: &Version,
    step: &Step,
) -> bool {
    let unsafe_join = r.cluster_params().flag("unsafe_join");
    let found = check_safe(view, step, unsafe_join)
        .and_then(|()| step_command(r, view, replica_members, version, step));
    let (runner, cmd) = match found {
        Ok(found) => found,
        Err(e) => {
            r.refuse(&e.to_string());
            return false;
        }
    };
    for at in owners(r, view, step, runner) {
        r.changed(at);
        r.note(at, &format!("would {step}"));
    }
    r.would_run(runner, &cmd.command);
    lb_preview(r, runner, step);
    simulate(
        view,
        step,
        r.members
            .iter()
            .position(|m| matches!(step, Step::Join { node, .. } if m.node == *node)),
    );
    true
}

fn lb_preview(r: &mut Run<'_>, runner: usize, step: &Step) {
    let (param, seed, verb) = lb_of(step);
    let has = r.members[runner].params.command(param).is_some();
    for (id, node) in step_replicas(step) {
        let line = if has {
            format!("would run `{param}` for replica `{id}` ({verb} the load balancing pool)")
        } else {
            lb_operator_step(step, &id, &node, param, seed)
        };
        r.note(runner, &line);
    }
}

fn step_replicas(step: &Step) -> Vec<(String, String)> {
    match step {
        Step::Join { node, replica_id } => vec![(replica_id.clone(), node.clone())],
        Step::Remove { replicas } => replicas.clone(),
    }
}

fn lb_of(step: &Step) -> (&'static str, &'static str, &'static str) {
    match step {
        Step::Join { .. } => ("lb_add", SEED_LB_ADD, "after the join, adding to"),
        Step::Remove { .. } => (
            "lb_remove",
            SEED_LB_REMOVE,
            "before the removal, removing from",
        ),
    }
}

fn lb_operator_step(step: &Step, id: &str, node: &str, param: &str, seed: &str) -> String {
    let what = match step {
        Step::Join { .. } => "add it to",
        Step::Remove { .. } => "remove it from",
    };
    format!(
        "OPERATOR STEP: replica `{id}` on `{node}`: {what} the load balancing pool: {seed} \
         ({HA}); no `{param}` command is configured, so capstan did not"
    )
}

fn simulate(view: &mut Vec<Replica>, step: &Step, member: Option<usize>) {
    match step {
        Step::Join { node, replica_id } => {
            let version = view
                .iter()
                .find(|r| r.version.is_some())
                .map(|r| (r.version_text.clone(), r.version.clone()));
            let (version_text, version) = version.unwrap_or_default();
            view.push(Replica {
                id: replica_id.clone(),
                node: node.clone(),
                version_text,
                version,
                healthy: true,
                health_note: "healthy".to_owned(),
                member,
            });
        }
        Step::Remove { .. } => {
            let gone = step.removed();
            view.retain(|r| !gone.contains(&r.id.as_str()));
        }
    }
}

/// Runs one step with its health checks; false when the run must stop.
pub(crate) async fn apply(
    r: &mut Run<'_>,
    view: &mut Vec<Replica>,
    replica_members: &[usize],
    version: &Version,
    step: &Step,
    changed_any: bool,
) -> bool {
    // Health before: a fresh look, and the rules again on what it shows.
    let Some(fresh) = cluster::view(r, replica_members).await else {
        return false;
    };
    let mut now = fresh;
    for rep in view.iter().filter(|rep| rep.member.is_none()) {
        if !now.iter().any(|n| n.id == rep.id) {
            now.push(rep.clone());
        }
    }
    let unsafe_join = r.cluster_params().flag("unsafe_join");
    if let Err(e) = check_safe(&now, step, unsafe_join) {
        return stop(r, changed_any, &e.to_string());
    }
    if let Step::Remove { replicas } = step {
        let mut states: Vec<ReplicaState> = now.iter().map(Replica::state).collect();
        let min = usize::try_from(r.cluster_params().count("min_replicas").unwrap_or(1))
            .unwrap_or(usize::MAX);
        for (id, _) in replicas {
            if let Err(e) = rules::check_remove(&states, id, min) {
                return stop(r, changed_any, &e.to_string());
            }
            states.retain(|s| s.id != *id);
        }
    }
    *view = now;
    let (runner, cmd) = match step_command(r, view, replica_members, version, step) {
        Ok(found) => found,
        Err(e @ DtrError::Refused(_)) => return stop(r, changed_any, &e.to_string()),
        Err(e) => return stop(r, changed_any, &format!("refused: {e}")),
    };
    let ats = owners(r, view, step, runner);
    if let Step::Remove { .. } = step
        && !load_balancer(r, runner, step).await
    {
        return false;
    }
    let m = &r.members[runner];
    let image = format!(
        "{}:{version}",
        m.params.text("image").unwrap_or("docker/dtr")
    );
    let prepared = match m.sh(&ensure_image(&image)).await {
        Ok(o) => o.expect_success(&format!("getting `{image}`"), &m.host),
        Err(e) => Err(e),
    };
    if let Err(e) = prepared {
        r.fail_with(runner, &e);
        return false;
    }
    r.command(runner, &cmd.command);
    r.diff(runner, &format!("ran: {}", cmd.command));
    let m = &r.members[runner];
    let out = match cmd.run(m, bootstrap::timeout(m)).await {
        Ok(out) => out,
        Err(e) => {
            r.fail_with(runner, &e);
            return false;
        }
    };
    if !out.success() {
        let why = out.failure(&format!("`{step}`"), &r.members[runner].host);
        r.output(runner, &out.stdout, &out.stderr);
        r.fail(runner, &why);
        for &at in ats.iter().filter(|&&at| at != runner) {
            r.fail(
                at,
                &format!("{step} failed on `{}`", r.members[runner].host),
            );
        }
        return false;
    }
    for &at in &ats {
        r.changed(at);
        r.note(at, &step_done(step));
    }
    // Health after.
    let ok = match step {
        Step::Join { replica_id, .. } => wait_healthy(r, replica_members, replica_id, ats[0]).await,
        Step::Remove { .. } => removed(r, replica_members, step, ats[0]).await,
    };
    let Some(after) = ok else {
        return false;
    };
    *view = after;
    if let Step::Join { .. } = step {
        return load_balancer(r, runner, step).await;
    }
    true
}

fn step_done(step: &Step) -> String {
    match step {
        Step::Join { node, replica_id } => {
            format!("joined replica `{replica_id}` on node `{node}`")
        }
        Step::Remove { replicas } => {
            let parts: Vec<String> = replicas
                .iter()
                .map(|(id, node)| format!("`{id}` from node `{node}`"))
                .collect();
            if parts.len() == 1 {
                format!("removed replica {}", parts.join(""))
            } else {
                format!("removed replicas {} in one call", parts.join(" and "))
            }
        }
    }
}

/// A refusal while nothing changed yet (exit 3); a failure after a change.
fn stop(r: &mut Run<'_>, changed_any: bool, why: &str) -> bool {
    if changed_any {
        r.fail(0, &format!("stopped: {why}"));
    } else {
        r.refuse(why);
    }
    false
}

/// Polls until the joined replica reports healthy; the view then, or `None` (failed).
async fn wait_healthy(
    r: &mut Run<'_>,
    replica_members: &[usize],
    id: &str,
    at: usize,
) -> Option<Vec<Replica>> {
    let p = r.cluster_params();
    let limit = p
        .duration("health_timeout")
        .unwrap_or(Duration::from_secs(600));
    let poll = p.duration("health_poll").unwrap_or(Duration::from_secs(5));
    let deadline = Instant::now() + limit;
    loop {
        let now = cluster::view(r, replica_members).await?;
        match now.iter().find(|rep| rep.id == id) {
            Some(rep) if rep.healthy => {
                r.note(at, &format!("replica `{id}` is healthy"));
                return Some(now);
            }
            found => {
                if Instant::now() >= deadline || r.interrupted() {
                    let state = found.map_or_else(
                        || "not listed by its node".to_owned(),
                        |rep| rep.health_note.clone(),
                    );
                    r.fail(
                        at,
                        &format!(
                            "replica `{id}` is {state} {} after joining (`health_timeout`): \
                             \"When a replica fails, the number of failures tolerated by your \
                             cluster decreases. Don't leave that replica offline for long.\" \
                             ({HA})",
                            humantime::format_duration(limit)
                        ),
                    );
                    return None;
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Checks that the removed replicas are gone and every other replica healthy.
async fn removed(
    r: &mut Run<'_>,
    replica_members: &[usize],
    step: &Step,
    at: usize,
) -> Option<Vec<Replica>> {
    let now = cluster::view(r, replica_members).await?;
    let gone = step.removed();
    if let Some(still) = now.iter().find(|rep| gone.contains(&rep.id.as_str())) {
        r.fail(
            at,
            &format!("replica `{}` is still listed after its removal", still.id),
        );
        return None;
    }
    let sick: Vec<&Replica> = now.iter().filter(|rep| !rep.healthy).collect();
    if !sick.is_empty() {
        let names: Vec<String> = sick
            .iter()
            .map(|rep| format!("`{}` {}", rep.id, rep.health_note))
            .collect();
        r.fail(
            at,
            &format!(
                "after `{step}`, replica {}: stopping before any further change",
                names.join(", ")
            ),
        );
        return None;
    }
    Some(now)
}

/// The operator's load balancer command for each replica of `step`, or the operator step
/// in the report.
async fn load_balancer(r: &mut Run<'_>, runner: usize, step: &Step) -> bool {
    let (param, seed, _) = lb_of(step);
    for (id, node) in step_replicas(step) {
        let m = &r.members[runner];
        let Some(source) = m.params.command(param) else {
            let line = lb_operator_step(step, &id, &node, param, seed);
            r.note(runner, &line);
            continue;
        };
        let vars = [
            ("node", Value::from(node.as_str())),
            ("replica_id", Value::from(id.as_str())),
        ];
        let result = match render_command(r.t(), &r.task.name, param, source, &m.ctx, &vars) {
            Err(e) => Err(DtrError::from(e)),
            Ok(cmd) => match m.sh(&cmd).await {
                Ok(o) => o
                    .expect_success(&format!("`{param}`"), &m.host)
                    .map(|_| cmd),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(cmd) => {
                r.command(runner, &cmd);
                r.note(
                    runner,
                    &format!("load balancer updated by `{param}` for replica `{id}`"),
                );
            }
            Err(e) => {
                r.fail_with(runner, &e);
                r.note(runner, &format!("{seed} ({HA})"));
                return false;
            }
        }
    }
    true
}
