//! One upgrade hop, and the migration job around the hops.
//!
//! A hop is the upgrade command, run once on one node against a healthy replica ("The
//! upgrade command will start replacing every container in your DTR cluster, one replica at
//! a time"), then every replica verified at the hop's version; after 2.5 → 2.6, the
//! `metadatastoremigration` job brought to `done`.

use minijinja::value::Value;
use semver::Version;

use super::bootstrap::{self, Bootstrap, base_values};
use super::cluster::view;
use super::commands::{ensure_image, render_template};
use super::error::DtrError;
use super::facts::Replica;
use super::migration::{self, Migration, Phase};
use super::run::Run;
use super::spec::UPGRADE_TEMPLATE;
use crate::rules::{UpgradeHop, UpgradePlan};

pub(crate) const SEED_RESUME: &str = "\"If anything fails or the upgrade is interrupted for any reason, \
                           rerun the upgrade command (the upgrade will resume from the point of \
                           interruption).\" (Upgrade DTR)";

/// The hop's command, rendered and checked against its version's flags.
pub(crate) fn upgrade_command(
    r: &Run<'_>,
    runner: usize,
    version: &Version,
    existing: &str,
) -> Result<Bootstrap, DtrError> {
    let m = &r.members[runner];
    let mut values = base_values(m);
    values.push(("version", Value::from(version.to_string())));
    values.push(("existing_replica_id", Value::from(existing)));
    let cmd = render_template(r.t(), UPGRADE_TEMPLATE, &m.ctx, &values)?;
    bootstrap::prepare(m, cmd)
}

/// Runs one hop and verifies it; the view after it, or `None` when it failed.
pub(crate) async fn run_hop(
    r: &mut Run<'_>,
    runner: usize,
    replicas: &[usize],
    before: &[Replica],
    hop: &UpgradeHop,
    cmd: &Bootstrap,
) -> Option<Vec<Replica>> {
    let m = &r.members[runner];
    let image = format!(
        "{}:{}",
        m.params.text("image").unwrap_or("docker/dtr"),
        hop.to
    );
    match m
        .sh(&ensure_image(&image))
        .await
        .and_then(|o| o.expect_success(&format!("getting `{image}`"), &m.host))
    {
        Ok(out) if out.stdout.contains("pulled") => {
            r.note(runner, &format!("pulled `{image}`"));
        }
        Ok(_) => {}
        Err(e) => {
            r.fail_with(runner, &e);
            return None;
        }
    }
    let done: Vec<&str> = before
        .iter()
        .filter(|rep| rep.version.as_ref() == Some(&hop.to))
        .map(|rep| rep.id.as_str())
        .collect();
    if !done.is_empty() {
        r.note(
            runner,
            &format!(
                "resuming the hop {hop}: replica(s) `{}` already at {}: {SEED_RESUME}",
                done.join("`, `"),
                hop.to
            ),
        );
    }
    r.command(runner, &cmd.command);
    r.diff(runner, &format!("ran: {}", cmd.command));
    let m = &r.members[runner];
    let result = cmd.run(m, bootstrap::timeout(m)).await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            r.fail_with(runner, &e);
            return None;
        }
    };
    if !out.success() {
        let why = out.failure(
            &format!("the upgrade to {}", hop.to),
            &r.members[runner].host,
        );
        r.output(runner, &out.stdout, &out.stderr);
        r.fail(
            runner,
            &format!("{why}\nrerun the playbook to resume: {SEED_RESUME}"),
        );
        for &i in replicas.iter().filter(|&&i| i != runner) {
            r.fail(
                i,
                &format!(
                    "the cluster's upgrade to {} did not complete; rerun to resume",
                    hop.to
                ),
            );
        }
        return None;
    }
    let after = view(r, replicas).await?;
    // Honest results: a replica changed only when its version was seen to change.
    for rep in &after {
        let was = before.iter().find(|b| b.id == rep.id).map(|b| &b.version);
        if was.is_some_and(|v| *v != rep.version)
            && let Some(i) = rep.member
        {
            r.changed(i);
        }
    }
    let behind: Vec<String> = after
        .iter()
        .filter(|rep| rep.version.as_ref() != Some(&hop.to))
        .map(|rep| format!("`{}` on `{}` runs {}", rep.id, rep.node, rep.version_text))
        .collect();
    if !behind.is_empty() {
        let why = format!(
            "after the upgrade to {}, replica {}; rerun the playbook to resume: {SEED_RESUME}",
            hop.to,
            behind.join(", ")
        );
        for &i in replicas {
            r.fail(i, &why);
        }
        return None;
    }
    for rep in after.iter().filter(|rep| !rep.healthy) {
        if let Some(i) = rep.member {
            r.note(
                i,
                &format!(
                    "warning: replica `{}` is {} after the upgrade to {}",
                    rep.id, rep.health_note, hop.to
                ),
            );
        }
    }
    if migration::follows(&hop.from, &hop.to) {
        let m = &r.members[runner];
        let interrupted = || r.shared.interrupt.is_set();
        let job = Migration {
            runner: m,
            interrupted: &interrupted,
        };
        match job.settle(None).await {
            Ok(lines) => {
                for line in lines {
                    r.note(runner, &line);
                }
            }
            Err(e) => {
                r.fail_with(runner, &e);
                return None;
            }
        }
    }
    Some(after)
}

/// Check mode: what [`pending_migration`] would do (reading an existing job changes
/// nothing).
pub(crate) async fn preview_migration(r: &mut Run<'_>, runner: usize, plan: &UpgradePlan) {
    let from = &plan.from;
    if !(from.major == 2 && from.minor == 6) {
        return;
    }
    let m = &r.members[runner];
    let interrupted = || r.shared.interrupt.is_set();
    let job = Migration {
        runner: m,
        interrupted: &interrupted,
    };
    if !job.configured() {
        return;
    }
    match job.log().await {
        Ok(log) if log.last() == Some(Phase::Failed) && log.exhausted() => {
            r.changed(runner);
            r.note(
                runner,
                &format!(
                    "would retrigger the {} job, which failed {} times; {}",
                    migration::JOB,
                    log.attempts.len(),
                    migration::GC_NOTICE
                ),
            );
        }
        Ok(log) if log.last() == Some(Phase::Pending) => r.note(
            runner,
            &format!("would wait for the running {} job", migration::JOB),
        ),
        Ok(_) => {}
        Err(e) => r.fail_with(runner, &e),
    }
}

/// A cluster already on 2.6 whose migration job failed three times or still runs: settle
/// it first. Returns false when that failed.
pub(crate) async fn pending_migration(r: &mut Run<'_>, runner: usize, plan: &UpgradePlan) -> bool {
    let from = &plan.from;
    if !(from.major == 2 && from.minor == 6) {
        return true;
    }
    let m = &r.members[runner];
    let interrupted = || r.shared.interrupt.is_set();
    let job = Migration {
        runner: m,
        interrupted: &interrupted,
    };
    if !job.configured() {
        return true;
    }
    let result = match job.log().await {
        Ok(log)
            if log.last() == Some(Phase::Pending)
                || (log.last() == Some(Phase::Failed) && log.exhausted()) =>
        {
            job.settle(Some(log)).await.map(Some)
        }
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    match result {
        Ok(Some(lines)) => {
            r.changed(runner);
            for line in lines {
                r.note(runner, &line);
            }
            true
        }
        Ok(None) => true,
        Err(e) => {
            r.fail_with(runner, &e);
            false
        }
    }
}
