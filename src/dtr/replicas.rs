//! `join`, `remove` and `scale`: changing the replica set, one replica at a time, as "Set
//! up high availability" describes it.
//!
//! Query: every replica of the cluster and its health. Decide: the steps, each checked by
//! [`crate::rules`] (`check_final_count`, `check_remove`, `plan_scale`); a refusal comes
//! before any change. Apply, per step, from a node with a healthy replica: health checked
//! before, the seed's `join`/`remove` command, health checked after; the load balancer is
//! updated by the operator's `lb_add`/`lb_remove` command, or the report says that the
//! operator must do it.

use semver::Version;

use super::cluster::{note_bystanders, roles, view};
use super::error::DtrError;
use super::facts::{self, Replica};
use super::replica_step::{Step, apply, batch, check_safe, preview};
use super::run::Run;
use super::spec::DtrKind;
use crate::rules::{self, HaRefusal, ReplicaState, ScaleStep};

pub(crate) const HA: &str = "Set up high availability";

pub(crate) async fn run(r: &mut Run<'_>) {
    let roles = match roles(r) {
        Ok(roles) => roles,
        Err(why) => return r.refuse(&why.to_string()),
    };
    note_bystanders(r, &roles);
    let Some(mut view) = view(r, &roles.replicas).await else {
        return;
    };
    let decided = version_of(&view).and_then(|version| {
        add_unlisted(r, &mut view);
        let steps = batch(plan(r, &view, &roles.replicas)?, &view);
        safe_in_order(r, &view, &steps)?;
        Ok((version, steps))
    });
    let (version, steps) = match decided {
        Ok(decided) => decided,
        Err(why) => return r.refuse(&why.to_string()),
    };
    let count = view.len();
    if steps.is_empty() {
        for i in 0..r.members.len() {
            r.note(
                i,
                &format!(
                    "the cluster has {count} replica(s), as asked: {}",
                    facts::describe(&view)
                ),
            );
        }
        return;
    }
    let joins = steps
        .iter()
        .filter(|s| matches!(s, Step::Join { .. }))
        .count();
    let removals: usize = steps
        .iter()
        .map(|s| match s {
            Step::Remove { replicas } => replicas.len(),
            Step::Join { .. } => 0,
        })
        .sum();
    let after = (count + joins).saturating_sub(removals);
    let summary: Vec<String> = steps.iter().map(ToString::to_string).collect();
    let lead = roles.replicas.first().copied().unwrap_or(0);
    let verb = if r.check_mode() {
        "would take"
    } else {
        "takes"
    };
    r.note(
        lead,
        &format!(
            "{verb} the cluster from {count} to {after} replicas, one at a time: {}",
            summary.join(", ")
        ),
    );
    r.diff(lead, &format!("replicas: {count} -> {after}"));
    let mut view = view;
    let mut changed_any = false;
    for step in &steps {
        if r.interrupted() {
            r.fail(
                lead,
                &format!("interrupted before: {step}; rerun to finish"),
            );
            return;
        }
        let done = if r.check_mode() {
            preview(r, &mut view, &roles.replicas, &version, step)
        } else {
            apply(r, &mut view, &roles.replicas, &version, step, changed_any).await
        };
        if !done {
            return;
        }
        changed_any = true;
    }
}

/// DTR's refusals (see [`check_safe`]) against the state each step leaves, before any
/// change.
fn safe_in_order(r: &Run<'_>, view: &[Replica], steps: &[Step]) -> Result<(), DtrError> {
    let unsafe_join = r.cluster_params().flag("unsafe_join");
    let mut state = view.to_vec();
    for step in steps {
        check_safe(&state, step, unsafe_join)?;
        match step {
            Step::Join { node, replica_id } => state.push(Replica {
                id: replica_id.clone(),
                node: node.clone(),
                version_text: String::new(),
                version: None,
                healthy: true,
                health_note: "healthy".to_owned(),
                member: None,
            }),
            Step::Remove { replicas } => {
                state.retain(|rep| !replicas.iter().any(|(id, _)| *id == rep.id));
            }
        }
    }
    Ok(())
}

/// The cluster's version: every replica must run the same one.
fn version_of(view: &[Replica]) -> Result<Version, DtrError> {
    if let Some(problem) = facts::unparsable(view) {
        return Err(DtrError::Refused(format!("refused: {problem}")));
    }
    let mut versions: Vec<&Version> = view
        .iter()
        .filter(|r| r.member.is_some())
        .filter_map(|r| r.version.as_ref())
        .collect();
    versions.sort();
    versions.dedup();
    match versions.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(DtrError::Refused(format!(
            "refused: the DTR cluster has no replica to work from ({HA}: join runs against an \
             existing replica); install DTR first"
        ))),
        _ => Err(DtrError::Refused(format!(
            "refused: the replicas run different DTR versions ({}): an upgrade is unfinished; \
             rerun the upgrade first (\"If anything fails or the upgrade is interrupted for any \
             reason, rerun the upgrade command\", Upgrade DTR)",
            facts::describe(view)
        ))),
    }
}

/// `remove`'s `replica_ids` that no node lists: "It can be the id of an unhealthy replica",
/// on a node that is gone. They join the view as unhealthy replicas of no node.
fn add_unlisted(r: &Run<'_>, view: &mut Vec<Replica>) {
    if r.spec.kind != DtrKind::Remove {
        return;
    }
    for id in r.cluster_params().list("replica_ids") {
        if !view.iter().any(|rep| rep.id == *id) {
            view.push(Replica {
                id: id.clone(),
                node: "(no node lists it)".to_owned(),
                version_text: String::new(),
                version: None,
                healthy: false,
                health_note: "not listed by any node of this run".to_owned(),
                member: None,
            });
        }
    }
}

/// The steps, every rule checked against the state the steps before leave.
fn plan(
    r: &Run<'_>,
    view: &[Replica],
    replica_members: &[usize],
) -> Result<Vec<ScaleStep>, DtrError> {
    let p = r.cluster_params();
    let cluster = p.text("ucp_url").unwrap_or_default();
    let min = usize::try_from(p.count("min_replicas").unwrap_or(1)).unwrap_or(usize::MAX);
    let allow_even = p.flag("allow_even_replicas");
    let states: Vec<ReplicaState> = view.iter().map(Replica::state).collect();
    let refused = |e: HaRefusal| DtrError::Refused(e.to_string());
    let targets = targets(r, replica_members)?;
    match r.spec.kind {
        DtrKind::Join => {
            let free: Vec<usize> = targets
                .into_iter()
                .filter(|&i| !view.iter().any(|rep| rep.member == Some(i)))
                .collect();
            if free.is_empty() {
                return Ok(Vec::new());
            }
            if !states.iter().any(|s| s.healthy) {
                return Err(if states.is_empty() {
                    refused(HaRefusal::NoExistingReplica)
                } else {
                    DtrError::Refused(format!(
                        "refused: no healthy DTR replica to join to ({}): join needs \"the id \
                         of any healthy DTR replica of that cluster\" ({HA}); repair a replica \
                         first",
                        facts::describe(view)
                    ))
                });
            }
            rules::check_final_count(states.len() + free.len(), allow_even).map_err(refused)?;
            Ok(free
                .into_iter()
                .map(|i| {
                    let node = r.members[i].node.clone();
                    ScaleStep::Join {
                        replica_id: rules::replica_id_for(cluster, &node),
                        node,
                    }
                })
                .collect())
        }
        DtrKind::Remove => {
            let mut state = states;
            let mut ids: Vec<String> = view
                .iter()
                .filter(|rep| rep.member.is_some_and(|m| targets.contains(&m)))
                .map(|rep| rep.id.clone())
                .collect();
            for id in p.list("replica_ids") {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            if ids.is_empty() {
                if p.text("nodes").is_none() {
                    return Err(DtrError::Refused(
                        "refused: the remove task names no replica: give `nodes` (a host \
                         pattern) or `replica_ids`"
                            .to_owned(),
                    ));
                }
                return Ok(Vec::new());
            }
            rules::check_final_count(state.len() - ids.len(), allow_even).map_err(refused)?;
            let healthy = |id: &String| state.iter().any(|s| s.id == *id && s.healthy);
            ids.sort_by_key(|id| (healthy(id), id.clone()));
            let mut steps = Vec::new();
            for id in ids {
                rules::check_remove(&state, &id, min).map_err(refused)?;
                if let Some(at) = state.iter().position(|s| s.id == id) {
                    let gone = state.remove(at);
                    steps.push(ScaleStep::Remove {
                        replica_id: gone.id,
                        node: gone.node,
                    });
                }
            }
            Ok(steps)
        }
        DtrKind::Scale => {
            let target = usize::try_from(p.count("replicas").unwrap_or(0)).unwrap_or(usize::MAX);
            let candidates: Vec<String> =
                targets.iter().map(|&i| r.members[i].node.clone()).collect();
            rules::plan_scale(cluster, &states, target, &candidates, min, allow_even)
                .map_err(refused)
        }
        DtrKind::Check | DtrKind::Pull | DtrKind::Upgrade => Ok(Vec::new()),
    }
}

/// The members `nodes` names; each must be a replica node. Without `nodes`: every replica
/// node for `join` and `scale`, none for `remove` (which then needs `replica_ids`).
fn targets(r: &Run<'_>, replica_members: &[usize]) -> Result<Vec<usize>, DtrError> {
    if r.cluster_params().text("nodes").is_none() {
        if r.spec.kind == DtrKind::Remove {
            return Ok(Vec::new());
        }
        return Ok(replica_members.to_vec());
    }
    let selected = r.select("nodes")?;
    let hosts = r.select_hosts("nodes")?;
    let outside: Vec<String> = hosts
        .iter()
        .filter(|h| !replica_members.iter().any(|&i| r.members[i].host == **h))
        .map(|h| format!("`{h}`"))
        .collect();
    if !outside.is_empty() {
        return Err(DtrError::Refused(format!(
            "refused: `{}.nodes` names {}, which {} not DTR nodes of this run (`dtr_nodes`, \
             taking part in the play); a replica capstan cannot query afterwards cannot be \
             checked",
            r.spec.kind,
            outside.join(", "),
            if outside.len() == 1 { "is" } else { "are" }
        )));
    }
    Ok(selected)
}
