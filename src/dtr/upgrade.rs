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

use minijinja::value::Value;
use semver::Version;

use super::commands::{ensure_image, render_template};
use super::facts::{self, Replica};
use super::migration::{self, JobStatus, Migration};
use super::params::render_command;
use super::remote::Member;
use super::run::Run;
use super::spec::UPGRADE_TEMPLATE;
use crate::rules::{self, JudgeOptions, UpgradeHop, UpgradePlan, Verdict};

const SEED_RESUME: &str = "\"If anything fails or the upgrade is interrupted for any reason, \
                           rerun the upgrade command (the upgrade will resume from the point of \
                           interruption).\" (Upgrade DTR)";
const SEED_VULN: &str = "\"After upgrading DTR, it is necessary to redownload the vulnerability \
                         database.\" (Upgrade DTR)";
const SEED_CACHE: &str = "\"If you have previously deployed a cache, be sure to upgrade the node \
                          dedicated for your cache to keep it in sync with your upstream DTR \
                          replicas.\" (Upgrade DTR)";

/// Which members hold replicas and which are cache nodes.
pub(crate) struct Roles {
    pub replicas: Vec<usize>,
    pub caches: Vec<usize>,
}

/// Splits the members into replica nodes (`dtr_nodes` without `cache_nodes`) and cache
/// nodes, and refuses when a replica node of the inventory is not taking part: every rule
/// here counts every replica.
pub(crate) fn roles(r: &Run<'_>) -> Result<Roles, String> {
    let caches = r.select("cache_nodes")?;
    let cache_hosts = r.select_hosts("cache_nodes")?;
    let dtr_hosts: Vec<String> = r
        .select_hosts("dtr_nodes")?
        .into_iter()
        .filter(|h| !cache_hosts.contains(h))
        .collect();
    let missing: Vec<String> = dtr_hosts
        .iter()
        .filter(|h| !r.members.iter().any(|m| m.host == **h))
        .map(|h| format!("`{h}`"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "refused: the DTR nodes {} are not part of this run (unreachable, failed, excluded \
             by the play's hosts, `--limit` or `serial`, or `when`): the rules count every \
             replica of the cluster, so every node of `dtr_nodes` must be queried; run on all \
             of them, or narrow `dtr_nodes`",
            missing.join(", ")
        ));
    }
    let replicas: Vec<usize> = (0..r.members.len())
        .filter(|i| !caches.contains(i))
        .filter(|&i| dtr_hosts.is_empty() || dtr_hosts.contains(&r.members[i].host))
        .collect();
    Ok(Roles { replicas, caches })
}

/// A note for the members that are neither replica nor cache nodes.
pub(crate) fn note_bystanders(r: &mut Run<'_>, roles: &Roles) {
    for i in 0..r.members.len() {
        if !roles.replicas.contains(&i) && !roles.caches.contains(&i) {
            r.note(
                i,
                "not a DTR node (`dtr_nodes`, `cache_nodes`): nothing to do",
            );
        }
    }
}

/// Gathers the replicas on `indices`, probed from `prober` (see [`facts::replicas_on`]);
/// on failure, fails the members and returns `None`.
pub(crate) async fn view(
    r: &mut Run<'_>,
    indices: &[usize],
    prober: Option<usize>,
) -> Option<Vec<Replica>> {
    match facts::gather(r.t(), &r.members, indices, prober).await {
        Ok(v) => Some(v),
        Err(errors) => {
            let hosts: Vec<String> = errors
                .iter()
                .map(|(i, _)| format!("`{}`", r.members[*i].host))
                .collect();
            for (i, e) in &errors {
                r.fail(*i, e);
            }
            let why = format!(
                "not run: the DTR facts of {} could not be read",
                hosts.join(", ")
            );
            for i in 0..r.members.len() {
                if !errors.iter().any(|(j, _)| *j == i) {
                    r.fail(i, &why);
                }
            }
            None
        }
    }
}

/// The first member in `among` with a healthy replica, and that replica.
pub(crate) fn runner_of(
    view: &[Replica],
    among: &[usize],
    not: Option<&str>,
) -> Option<(usize, String)> {
    among.iter().find_map(|&i| {
        view.iter()
            .find(|rep| rep.member == Some(i) && rep.healthy && Some(rep.id.as_str()) != not)
            .map(|rep| (i, rep.id.clone()))
    })
}

pub(crate) async fn run(r: &mut Run<'_>) {
    let roles = match roles(r) {
        Ok(roles) => roles,
        Err(why) => return r.refuse(&why),
    };
    note_bystanders(r, &roles);
    let Some(view) = view(r, &roles.replicas, None).await else {
        return;
    };
    let plan = match decide(r, &view) {
        Ok(plan) => plan,
        Err(why) => return r.refuse(&why),
    };
    let Some((runner, existing)) = runner_of(&view, &roles.replicas, None) else {
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
            Err(e) => return r.fail(runner, &e),
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
            r.would_run(runner, cmd);
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
fn decide(r: &Run<'_>, view: &[Replica]) -> Result<UpgradePlan, String> {
    let p = r.cluster_params();
    if view.is_empty() {
        return Err(
            "refused: no DTR replica was found on the nodes of this run; check `dtr_nodes` \
             and the play's hosts"
                .to_owned(),
        );
    }
    if let Some(problem) = facts::unparsable(view) {
        return Err(format!("refused: {problem}"));
    }
    let target_text = p.text("version").unwrap_or_default();
    let target = Version::parse(target_text).map_err(|e| {
        format!("refused: the target version `{target_text}` is not a version: {e}")
    })?;
    let mut available = Vec::new();
    for v in p.list("available") {
        available.push(
            Version::parse(v).map_err(|e| {
                format!("refused: `available` has `{v}`, which is not a version: {e}")
            })?,
        );
    }
    let opts = JudgeOptions {
        allow_prerelease: p.flag("allow_prerelease"),
    };
    let versions: Vec<Version> = view.iter().filter_map(|r| r.version.clone()).collect();
    let Some(cluster) = rules::cluster_version(&versions) else {
        return Err("refused: no replica version was read".to_owned());
    };
    let plan = rules::plan(&cluster, &target, &available, &opts).map_err(|e| {
        format!(
            "{e} (the cluster runs DTR {cluster}, its lowest replica: {}); nothing was changed",
            facts::describe(view)
        )
    })?;
    // A replica ahead of the cluster must not be taken backwards by a hop.
    for replica in view {
        let Some(mut v) = replica.version.clone() else {
            continue;
        };
        for hop in &plan.hops {
            if let Verdict::Refused(refusal) = rules::judge(&v, &hop.to, &opts) {
                return Err(format!(
                    "{refusal} (replica `{}` on `{}` runs {v}, ahead of the cluster's hop \
                     {hop}); nothing was changed",
                    replica.id, replica.node
                ));
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
            for hop in &plan.hops {
                if rep.version.as_ref() != Some(&hop.to) && path.last() != Some(&hop.to.to_string())
                {
                    path.push(hop.to.to_string());
                }
            }
            if path.len() == 1 {
                r.note(
                    i,
                    &format!("replica `{}` at {}, the target", rep.id, rep.version_text),
                );
                continue;
            }
            let shown = path.join(" -> ");
            r.changed(i);
            let verb = if check { "would upgrade" } else { "upgrades" };
            r.note(i, &format!("{verb} replica `{}`: {shown}", rep.id));
            r.diff(i, &format!("version: {shown}"));
        }
    }
}

pub(crate) fn upgrade_command(
    r: &Run<'_>,
    runner: usize,
    version: &Version,
    existing: &str,
) -> Result<String, String> {
    let m = &r.members[runner];
    let p = &m.params;
    render_template(
        r.t(),
        UPGRADE_TEMPLATE,
        &m.ctx,
        &[
            (
                "image",
                Value::from(p.text("image").unwrap_or("docker/dtr")),
            ),
            ("version", Value::from(version.to_string())),
            (
                "ucp_url",
                Value::from(p.text("ucp_url").unwrap_or_default()),
            ),
            (
                "ucp_username",
                Value::from(p.text("ucp_username").unwrap_or_default()),
            ),
            ("ucp_insecure_tls", Value::from(p.flag("ucp_insecure_tls"))),
            ("existing_replica_id", Value::from(existing)),
        ],
    )
    .map_err(|e| e.message)
}

/// The env file the UCP password travels in.
pub(crate) fn ucp_env(m: &Member) -> String {
    format!(
        "UCP_PASSWORD={}\n",
        m.params.text("ucp_password").unwrap_or_default()
    )
}

/// Runs one hop and verifies it; the view after it, or `None` when it failed.
async fn run_hop(
    r: &mut Run<'_>,
    runner: usize,
    replicas: &[usize],
    before: &[Replica],
    hop: &UpgradeHop,
    cmd: &str,
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
            r.fail(runner, &e);
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
    r.command(runner, cmd);
    r.diff(runner, &format!("ran: {cmd}"));
    let m = &r.members[runner];
    let result = m.sh_with_secret(cmd, &ucp_env(m)).await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            r.fail(runner, &e);
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
    let after = view(r, replicas, Some(runner)).await?;
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
            t: r.t(),
            runner: m,
            params: &m.params,
            version: hop.to.to_string(),
            interrupted: &interrupted,
        };
        match job.settle(None).await {
            Ok(lines) => {
                for line in lines {
                    r.note(runner, &line);
                }
            }
            Err(e) => {
                r.fail(runner, &e);
                return None;
            }
        }
    }
    Some(after)
}

/// Check mode: what [`pending_migration`] would do (reading the job changes nothing).
async fn preview_migration(r: &mut Run<'_>, runner: usize, plan: &UpgradePlan) {
    let from = &plan.from;
    if !(from.major == 2 && from.minor == 6) {
        return;
    }
    let m = &r.members[runner];
    let interrupted = || r.shared.interrupt.is_set();
    let job = Migration {
        t: r.t(),
        runner: m,
        params: &m.params,
        version: from.to_string(),
        interrupted: &interrupted,
    };
    match job.log().await {
        Ok(log) if log.exhausted() => {
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
        Ok(log) if log.last() == JobStatus::Running => r.note(
            runner,
            &format!("would wait for the running {} job", migration::JOB),
        ),
        Ok(_) => {}
        Err(e) => r.fail(runner, &e),
    }
}

/// A cluster already on 2.6 whose migration job failed or still runs: settle it first.
/// Returns false when that failed.
async fn pending_migration(r: &mut Run<'_>, runner: usize, plan: &UpgradePlan) -> bool {
    let from = &plan.from;
    if !(from.major == 2 && from.minor == 6) {
        return true;
    }
    let m = &r.members[runner];
    let interrupted = || r.shared.interrupt.is_set();
    let job = Migration {
        t: r.t(),
        runner: m,
        params: &m.params,
        version: from.to_string(),
        interrupted: &interrupted,
    };
    let result = match job.log().await {
        Ok(log) if matches!(log.last(), JobStatus::Failed | JobStatus::Running) => {
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
            r.fail(runner, &e);
            false
        }
    }
}

/// The vulnerability database and the cache nodes, once the replicas are done.
async fn after_hops(r: &mut Run<'_>, runner: usize, plan: &UpgradePlan, caches: &[usize]) {
    let check = r.check_mode();
    let target = plan.to.to_string();
    if !plan.hops.is_empty() {
        let m = &r.members[runner];
        match m.params.command("vuln_db_update") {
            None => r.note(
                runner,
                &format!(
                    "OPERATOR STEP: redownload the vulnerability database: {SEED_VULN}; no \
                     `vuln_db_update` command is configured, so capstan did not"
                ),
            ),
            Some(source) => {
                let cmd = render_command(
                    r.t(),
                    &r.task.name,
                    "vuln_db_update",
                    source,
                    &m.ctx,
                    &[("version", Value::from(target.as_str()))],
                );
                let result = match cmd {
                    Err(e) => Err(e.message),
                    Ok(cmd) if check => {
                        Ok(format!("would update the vulnerability database: {cmd}"))
                    }
                    Ok(cmd) => m
                        .sh(&cmd)
                        .await
                        .and_then(|o| o.expect_success("`vuln_db_update`", &m.host))
                        .map(|_| format!("updated the vulnerability database: {cmd}")),
                };
                match result {
                    Ok(line) => r.note(runner, &line),
                    Err(e) => return r.fail(runner, &format!("{e}: {SEED_VULN}")),
                }
            }
        }
    }
    for &i in caches {
        cache(r, i, &target).await;
    }
}

/// One cache node: "upgrade the node dedicated for your cache to keep it in sync".
async fn cache(r: &mut Run<'_>, i: usize, target: &str) {
    let check = r.check_mode();
    let m = &r.members[i];
    let (Some(query), Some(upgrade)) = (
        m.params.command("cache_version_command"),
        m.params.command("cache_upgrade"),
    ) else {
        return r.note(
            i,
            &format!(
                "OPERATOR STEP: upgrade the DTR cache on this node to {target}: {SEED_CACHE}; no \
                 `cache_version_command`/`cache_upgrade` is configured, so capstan did not"
            ),
        );
    };
    let vars = [
        ("version", Value::from(target)),
        ("node", Value::from(m.node.as_str())),
    ];
    let render = |param: &str, source: &str| {
        render_command(r.t(), &r.task.name, param, source, &m.ctx, &vars).map_err(|e| e.message)
    };
    let read = async |cmd: &str| -> Result<String, String> {
        let out = m.sh(cmd).await?;
        let out = out.expect_success("`cache_version_command`", &m.host)?;
        Ok(super::remote::first_line(&out.stdout).to_owned())
    };
    let result: Result<Option<String>, String> = async {
        let query = render("cache_version_command", query)?;
        let upgrade = render("cache_upgrade", upgrade)?;
        let now = read(&query).await?;
        if now == target {
            return Ok(None);
        }
        if check {
            return Ok(Some(format!(
                "would upgrade the cache {now} -> {target}: {upgrade}"
            )));
        }
        let out = m.sh(&upgrade).await?;
        out.expect_success("`cache_upgrade`", &m.host)?;
        let after = read(&query).await?;
        if after != target {
            return Err(format!(
                "after `cache_upgrade` the cache reports {after}, not {target}: {SEED_CACHE}"
            ));
        }
        Ok(Some(format!(
            "upgraded the cache {now} -> {target}: {upgrade}"
        )))
    }
    .await;
    match result {
        Ok(None) => r.note(i, &format!("cache at {target}, in sync with the replicas")),
        Ok(Some(line)) => {
            r.changed(i);
            r.note(i, &line);
        }
        Err(e) => r.fail(i, &e),
    }
}
