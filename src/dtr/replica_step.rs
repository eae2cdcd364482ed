//! One step of a replica change, join or remove: the command from a node with a healthy
//! replica, health checked before and after, and the load balancer around it.

use std::time::{Duration, Instant};

use minijinja::value::Value;
use semver::Version;

use super::cluster::{self, runner_of, ucp_env};
use super::commands::{ensure_image, render_template};
use super::facts::{self, Replica};
use super::params::render_command;
use super::remote::first_line;
use super::replicas::HA;
use super::run::Run;
use super::spec::{JOIN_TEMPLATE, REMOVE_TEMPLATE};
use crate::rules::{self, ReplicaState, ScaleStep};

const SEED_LB_ADD: &str = "\"If you have a load balancer, add this DTR replica to the load \
                           balancing pool.\"";

const SEED_LB_REMOVE: &str = "\"If you're load-balancing user requests across multiple DTR \
                              replicas, don't forget to remove this replica from the load \
                              balancing pool.\"";

/// The node that runs a step's command, the healthy replica it runs against, and the
/// command.
fn step_command(
    r: &Run<'_>,
    view: &[Replica],
    replica_members: &[usize],
    version: &Version,
    step: &ScaleStep,
) -> Result<(usize, String), String> {
    let removed = match step {
        ScaleStep::Remove { replica_id, .. } => Some(replica_id.as_str()),
        ScaleStep::Join { .. } => None,
    };
    let Some((runner, existing)) = runner_of(view, replica_members, removed) else {
        return Err(format!(
            "no healthy DTR replica to run `{step}` against ({}): \"the id of any healthy DTR \
             replica of that cluster\" ({HA})",
            facts::describe(view)
        ));
    };
    let m = &r.members[runner];
    let p = &m.params;
    let (file, node, id) = match step {
        ScaleStep::Join { node, replica_id } => (JOIN_TEMPLATE, node, replica_id),
        ScaleStep::Remove { replica_id, node } => (REMOVE_TEMPLATE, node, replica_id),
    };
    let cmd = render_template(
        r.t(),
        file,
        &m.ctx,
        &[
            (
                "image",
                Value::from(p.text("image").unwrap_or("docker/dtr")),
            ),
            ("version", Value::from(version.to_string())),
            ("ucp_node", Value::from(node.as_str())),
            (
                "ucp_url",
                Value::from(p.text("ucp_url").unwrap_or_default()),
            ),
            (
                "ucp_username",
                Value::from(p.text("ucp_username").unwrap_or_default()),
            ),
            ("ucp_insecure_tls", Value::from(p.flag("ucp_insecure_tls"))),
            ("existing_replica_id", Value::from(existing.as_str())),
            ("replica_id", Value::from(id.as_str())),
        ],
    )
    .map_err(|e| e.message)?;
    Ok((runner, cmd))
}

/// The member a step's report goes to: the node's, else the runner's.
fn owner(r: &Run<'_>, view: &[Replica], step: &ScaleStep, runner: usize) -> usize {
    match step {
        ScaleStep::Join { node, .. } => r.members.iter().position(|m| m.node == *node),
        ScaleStep::Remove { replica_id, .. } => view
            .iter()
            .find(|rep| rep.id == *replica_id)
            .and_then(|rep| rep.member),
    }
    .unwrap_or(runner)
}

/// Check mode: the step's command and what it would do; the view as the step leaves it.
pub(crate) fn preview(
    r: &mut Run<'_>,
    view: &mut Vec<Replica>,
    replica_members: &[usize],
    version: &Version,
    step: &ScaleStep,
) -> bool {
    let (runner, cmd) = match step_command(r, view, replica_members, version, step) {
        Ok(found) => found,
        Err(e) => {
            r.refuse(&format!("refused: {e}"));
            return false;
        }
    };
    let at = owner(r, view, step, runner);
    r.changed(at);
    r.note(at, &format!("would {step}"));
    r.would_run(runner, &cmd);
    lb_preview(r, runner, step);
    simulate(view, step, at);
    true
}

fn lb_preview(r: &mut Run<'_>, runner: usize, step: &ScaleStep) {
    let (param, seed, verb) = lb_of(step);
    let has = r.members[runner].params.command(param).is_some();
    let line = if has {
        format!("would run `{param}` ({verb} the load balancing pool)")
    } else {
        lb_operator_step(step, param, seed)
    };
    r.note(runner, &line);
}

fn lb_of(step: &ScaleStep) -> (&'static str, &'static str, &'static str) {
    match step {
        ScaleStep::Join { .. } => ("lb_add", SEED_LB_ADD, "after the join, adding to"),
        ScaleStep::Remove { .. } => (
            "lb_remove",
            SEED_LB_REMOVE,
            "before the removal, removing from",
        ),
    }
}

fn lb_operator_step(step: &ScaleStep, param: &str, seed: &str) -> String {
    let (id, node, what) = match step {
        ScaleStep::Join { node, replica_id } => (replica_id, node, "add it to"),
        ScaleStep::Remove { replica_id, node } => (replica_id, node, "remove it from"),
    };
    format!(
        "OPERATOR STEP: replica `{id}` on `{node}`: {what} the load balancing pool: {seed} \
         ({HA}); no `{param}` command is configured, so capstan did not"
    )
}

fn simulate(view: &mut Vec<Replica>, step: &ScaleStep, member: usize) {
    match step {
        ScaleStep::Join { node, replica_id } => {
            let version = view
                .first()
                .map(|r| (r.version_text.clone(), r.version.clone()));
            let (version_text, version) = version.unwrap_or_default();
            view.push(Replica {
                id: replica_id.clone(),
                node: node.clone(),
                version_text,
                version,
                healthy: true,
                health_note: "healthy".to_owned(),
                member: Some(member),
            });
        }
        ScaleStep::Remove { replica_id, .. } => view.retain(|r| r.id != *replica_id),
    }
}

/// Runs one step with its health checks; false when the run must stop.
pub(crate) async fn apply(
    r: &mut Run<'_>,
    view: &mut Vec<Replica>,
    replica_members: &[usize],
    version: &Version,
    step: &ScaleStep,
    changed_any: bool,
) -> bool {
    // Health before: a fresh look, and the rules again on what it shows.
    let prober = runner_of(view, replica_members, None).map(|(i, _)| i);
    let Some(fresh) = cluster::view(r, replica_members, prober).await else {
        return false;
    };
    let mut now = fresh;
    for rep in view.iter().filter(|rep| rep.member.is_none()) {
        if !now.iter().any(|n| n.id == rep.id) {
            now.push(rep.clone());
        }
    }
    if let ScaleStep::Remove { replica_id, .. } = step {
        let states: Vec<ReplicaState> = now.iter().map(Replica::state).collect();
        let min = usize::try_from(r.cluster_params().count("min_replicas").unwrap_or(1))
            .unwrap_or(usize::MAX);
        if let Err(e) = rules::check_remove(&states, replica_id, min) {
            return stop(r, changed_any, &e.to_string());
        }
    }
    *view = now;
    let (runner, cmd) = match step_command(r, view, replica_members, version, step) {
        Ok(found) => found,
        Err(e) => return stop(r, changed_any, &format!("refused: {e}")),
    };
    let at = owner(r, view, step, runner);
    if let ScaleStep::Remove { .. } = step
        && !load_balancer(r, runner, step).await
    {
        return false;
    }
    let m = &r.members[runner];
    let image = format!(
        "{}:{version}",
        m.params.text("image").unwrap_or("docker/dtr")
    );
    let prepared = m
        .sh(&ensure_image(&image))
        .await
        .and_then(|o| o.expect_success(&format!("getting `{image}`"), &m.host));
    if let Err(e) = prepared {
        r.fail(runner, &e);
        return false;
    }
    r.command(runner, &cmd);
    r.diff(runner, &format!("ran: {cmd}"));
    let m = &r.members[runner];
    let out = match m.sh_with_secret(&cmd, &ucp_env(m)).await {
        Ok(out) => out,
        Err(e) => {
            r.fail(runner, &e);
            return false;
        }
    };
    if !out.success() {
        let why = out.failure(&format!("`{step}`"), &r.members[runner].host);
        r.output(runner, &out.stdout, &out.stderr);
        r.fail(runner, &why);
        if at != runner {
            r.fail(
                at,
                &format!("{step} failed on `{}`", r.members[runner].host),
            );
        }
        return false;
    }
    r.changed(at);
    r.note(
        at,
        &format!("{}: {}", step_done(step), first_line(&out.stdout)),
    );
    // Health after.
    let ok = match step {
        ScaleStep::Join { replica_id, .. } => {
            wait_healthy(r, replica_members, runner, replica_id, at).await
        }
        ScaleStep::Remove { replica_id, .. } => {
            removed(r, replica_members, runner, replica_id, at).await
        }
    };
    let Some(after) = ok else {
        return false;
    };
    *view = after;
    if let ScaleStep::Join { .. } = step {
        return load_balancer(r, runner, step).await;
    }
    true
}

fn step_done(step: &ScaleStep) -> String {
    match step {
        ScaleStep::Join { node, replica_id } => {
            format!("joined replica `{replica_id}` on node `{node}`")
        }
        ScaleStep::Remove { replica_id, node } => {
            format!("removed replica `{replica_id}` from node `{node}`")
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
    runner: usize,
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
        let now = cluster::view(r, replica_members, Some(runner)).await?;
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

/// Checks that `id` is gone and every other replica healthy; the view then.
async fn removed(
    r: &mut Run<'_>,
    replica_members: &[usize],
    runner: usize,
    id: &str,
    at: usize,
) -> Option<Vec<Replica>> {
    let now = cluster::view(r, replica_members, Some(runner)).await?;
    if now.iter().any(|rep| rep.id == id) {
        r.fail(
            at,
            &format!("replica `{id}` is still listed after its removal"),
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
                "after removing `{id}`, replica {}: stopping before any further change",
                names.join(", ")
            ),
        );
        return None;
    }
    Some(now)
}

/// The operator's load balancer command for `step`, or the operator step in the report.
async fn load_balancer(r: &mut Run<'_>, runner: usize, step: &ScaleStep) -> bool {
    let (param, seed, _) = lb_of(step);
    let m = &r.members[runner];
    let Some(source) = m.params.command(param) else {
        let line = lb_operator_step(step, param, seed);
        r.note(runner, &line);
        return true;
    };
    let (node, id) = match step {
        ScaleStep::Join { node, replica_id } | ScaleStep::Remove { replica_id, node } => {
            (node, replica_id)
        }
    };
    let vars = [
        ("node", Value::from(node.as_str())),
        ("replica_id", Value::from(id.as_str())),
    ];
    let result = match render_command(r.t(), &r.task.name, param, source, &m.ctx, &vars) {
        Err(e) => Err(e.message),
        Ok(cmd) => m
            .sh(&cmd)
            .await
            .and_then(|o| o.expect_success(&format!("`{param}`"), &m.host))
            .map(|_| cmd),
    };
    match result {
        Ok(cmd) => {
            r.command(runner, &cmd);
            r.note(
                runner,
                &format!("load balancer updated by `{param}` for replica `{id}`"),
            );
            true
        }
        Err(e) => {
            r.fail(runner, &format!("{e}: {seed} ({HA})"));
            false
        }
    }
}
