//! `upgrade`: the whole cluster, hop by hop, as "Upgrade DTR" describes it.
//!
//! Query: every replica's version and health. Decide: the hops from the cluster version (the
//! lowest replica) to the target, planned and judged by [`crate::rules::plan`]; a blocked
//! path is refused before any change. Apply, per hop: the upgrade command once, on one node,
//! against a healthy replica ("The upgrade command will start replacing every container in
//! your DTR cluster, one replica at a time"). Verify: every replica now runs the hop's
//! version. A rerun after an interruption plans from the lowest replica again and reruns the
//! hop's command, which "will resume from the point of interruption".
//! After the hops: the migration job (2.5 → 2.6), the vulnerability database, cache nodes.

use semver::Version;

use super::cluster::{note_bystanders, roles, runner_of, view};
use super::error::DtrError;
use super::facts::{self, Replica};
use super::hop::{pending_migration, preview_migration, run_hop, upgrade_command};
use super::migration;
use super::post_upgrade::after_hops;
use super::run::Run;
use crate::rules::{self, JudgeOptions, UpgradePlan, Verdict};

pub(crate) async fn run(r: &mut Run<'_>) {
    let roles = match roles(r) {
        Ok(roles) => roles,
        Err(why) => return r.refuse(&why.to_string()),
    };
    note_bystanders(r, &roles);
    let Some(view) = view(r, &roles.replicas).await else {
        return;
    };
    let plan = match decide(r, &view) {
        Ok(plan) => plan,
        Err(why) => return r.refuse(&why.to_string()),
    };
    let Some((runner, existing)) = runner_of(&view, &roles.replicas, &[]) else {
        return r.refuse(&format!(
            "refused: no healthy DTR replica to run the upgrade against ({}): the upgrade \
             needs `--existing-replica-id` of a healthy replica (\"If you are performing the \
             upgrade on an existing replica, pass the --existing-replica-id flag\", Upgrade \
             DTR); repair a replica first",
            facts::describe(&view)
        ));
    };
    report_paths(r, &view, &roles.replicas, &plan);
    let mut commands = Vec::new();
    for hop in &plan.hops {
        match upgrade_command(r, runner, &hop.to, &existing) {
            Ok(cmd) => commands.push(cmd),
            // A command its version cannot run is refused before any change.
            Err(e) => return r.refuse(&format!("refused: {e}")),
        }
    }
    if !plan.hops.is_empty() {
        let hops: Vec<String> = plan
            .hops
            .iter()
            .map(|h| format!("{h} ({})", h.row))
            .collect();
        let verb = if r.check_mode() { "would run" } else { "runs" };
        r.note(
            runner,
            &format!(
                "this node {verb} the cluster's upgrade against replica `{existing}`, one hop \
                 at a time: {}",
                hops.join(", ")
            ),
        );
    }
    for w in &plan.warnings {
        r.note(runner, &format!("warning: {w}"));
    }
    if r.check_mode() {
        for cmd in &commands {
            r.would_run(runner, &cmd.command);
        }
        if plan.hops.iter().any(|h| migration::follows(&h.from, &h.to)) {
            r.note(
                runner,
                &format!(
                    "would wait for the {} job; {}",
                    migration::JOB,
                    migration::GC_NOTICE
                ),
            );
        }
        preview_migration(r, runner, &plan).await;
        after_hops(r, runner, &plan, &roles.caches).await;
        return;
    }
    if !pending_migration(r, runner, &plan).await {
        return;
    }
    let mut view = view;
    for (hop, cmd) in plan.hops.iter().zip(&commands) {
        if r.interrupted() {
            let why = format!("interrupted before the hop {hop}; rerun to resume");
            for &i in &roles.replicas {
                r.fail(i, &why);
            }
            return;
        }
        match run_hop(r, runner, &roles.replicas, &view, hop, cmd).await {
            Some(after) => view = after,
            None => return,
        }
    }
    after_hops(r, runner, &plan, &roles.caches).await;
}

/// The plan from the cluster version, every replica's own path checked too.
fn decide(r: &Run<'_>, view: &[Replica]) -> Result<UpgradePlan, DtrError> {
    let p = r.cluster_params();
    if view.is_empty() {
        return Err(DtrError::Refused(
            "refused: no DTR replica was found on the nodes of this run; check `dtr_nodes` \
             and the play's hosts"
                .to_owned(),
        ));
    }
    if let Some(problem) = facts::unparsable(view) {
        return Err(DtrError::Refused(format!("refused: {problem}")));
    }
    let target_text = p.text("version").unwrap_or_default();
    let target = Version::parse(target_text).map_err(|e| {
        DtrError::Refused(format!(
            "refused: the target version `{target_text}` is not a version: {e}"
        ))
    })?;
    let mut available = Vec::new();
    for v in p.list("available") {
        available.push(Version::parse(v).map_err(|e| {
            DtrError::Refused(format!(
                "refused: `available` has `{v}`, which is not a version: {e}"
            ))
        })?);
    }
    let opts = JudgeOptions {
        allow_prerelease: p.flag("allow_prerelease"),
    };
    let versions: Vec<Version> = view.iter().filter_map(|r| r.version.clone()).collect();
    let Some(cluster) = rules::cluster_version(&versions) else {
        return Err(DtrError::Refused(
            "refused: no replica version was read".to_owned(),
        ));
    };
    let plan = rules::plan(&cluster, &target, &available, &opts).map_err(|e| {
        DtrError::Refused(format!(
            "{e} (the cluster runs DTR {cluster}, its lowest replica: {}); nothing was changed",
            facts::describe(view)
        ))
    })?;
    // A replica ahead of the cluster must not be taken backwards by a hop.
    for replica in view {
        let Some(mut v) = replica.version.clone() else {
            continue;
        };
        for hop in &plan.hops {
            if let Verdict::Refused(refusal) = rules::judge(&v, &hop.to, &opts) {
                return Err(DtrError::Refused(format!(
                    "{refusal} (replica `{}` on `{}` runs {v}, ahead of the cluster's hop \
                     {hop}); nothing was changed",
                    replica.id, replica.node
                )));
            }
            v = hop.to.clone();
        }
    }
    Ok(plan)
}

/// Each replica's version path, on its member's report.
fn report_paths(r: &mut Run<'_>, view: &[Replica], members: &[usize], plan: &UpgradePlan) {
    let check = r.check_mode();
    for &i in members {
        let mine: Vec<&Replica> = view.iter().filter(|rep| rep.member == Some(i)).collect();
        if mine.is_empty() {
            r.note(i, "no DTR replica on this node");
            continue;
        }
        for rep in mine {
            let mut path = vec![rep.version_text.clone()];
            // A replica ahead of the cluster (an interrupted hop) skips the hops behind it.
            for hop in plan
                .hops
                .iter()
                .filter(|h| rep.version.as_ref() < Some(&h.to))
            {
                path.push(hop.to.to_string());
            }
            if path.len() == 1 {
                r.note(
                    i,
                    &format!("replica `{}` at {}, the target", rep.id, rep.version_text),
                );
                continue;
            }
            let shown = path.join(" -> ");
            if check {
                r.changed(i);
            }
            let verb = if check { "would upgrade" } else { "upgrades" };
            r.note(i, &format!("{verb} replica `{}`: {shown}", rep.id));
            r.diff(i, &format!("version: {shown}"));
        }
    }
}
