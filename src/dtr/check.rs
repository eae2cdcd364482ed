//! `check`: the facts of every node (hostname, replica, version, health) and the "Upgrade
//! DTR" pre-flight conditions, all judged and reported together.
//!
//! The cluster's facts are read once, each from one place: UCP's version and content-trust
//! setting through UCP's API from the upgrade node ([`super::ucp`]), the backup's age with
//! `backup_time_command` on `backup_node` (default: the upgrade node), the RAM of the node
//! that runs the upgrade ("at least 16GB RAM is available on the node on which you are
//! running the upgrade"). UCP compatibility is checked for every hop of the path. The
//! cluster's conditions are reported on the upgrade node; each replica's health on its own.

use std::time::Duration;

use minijinja::value::Value;
use semver::Version;

use super::cluster::{note_bystanders, roles, runner_of, view};
use super::error::DtrError;
use super::facts::Replica;
use super::params::render_command;
use super::remote::{Member, first_line};
use super::run::Run;
use super::ucp::{self, UcpFacts};
use crate::rules::{self, JudgeOptions, UpgradeHop};

const UPGRADE_DTR: &str = "Upgrade DTR, \"Before starting the upgrade, confirm that\"";
const SEED_UCP: &str = "\"The version of UCP in use is supported by the upgrade version of \
                        DTR. Check the compatibility matrix.\"";
const SEED_BACKUP: &str = "\"The DTR backup is recent.\"";
const SEED_TRUST: &str = "\"Docker content trust in UCP is disabled.\"";
const SEED_RAM: &str = "\"Confirm that at least 16GB RAM is available on the node on which you \
                        are running the upgrade.\"";
const SEED_HEALTH: &str = "\"When a replica fails, the number of failures tolerated by your \
                           cluster decreases. Don't leave that replica offline for long.\" (DTR \
                           high availability rules)";

/// One pre-flight condition: `Ok` with what was seen when it holds, `Err` with why not
/// (the rule quoted, the way forward) when it fails. A verdict, not an error.
type Condition = Result<String, String>;

/// The node's memory in bytes.
const MEM_TOTAL: &str = "docker info --format '{{.MemTotal}}'";

/// What the cluster told, each fact read once.
struct ClusterFacts {
    ucp: Result<UcpFacts, DtrError>,
    mem_bytes: Result<u64, DtrError>,
    backup_age: Result<Duration, DtrError>,
}

pub(crate) async fn run(r: &mut Run<'_>) {
    let roles = match roles(r) {
        Ok(roles) => roles,
        Err(why) => return r.refuse(&why.to_string()),
    };
    note_bystanders(r, &roles);
    let Some(view) = view(r, &roles.replicas).await else {
        return;
    };
    let lead = runner_of(&view, &roles.replicas, &[])
        .map(|(i, _)| i)
        .or_else(|| roles.replicas.first().copied())
        .unwrap_or(0);
    let backup_at = match r
        .cluster_params()
        .text("backup_node")
        .filter(|h| !h.is_empty())
    {
        None => Ok(lead),
        Some(host) => r
            .members
            .iter()
            .position(|m| m.host == host)
            .ok_or_else(|| {
                DtrError::Input(format!(
                    "`backup_node` is `{host}`, which is not a host of this run"
                ))
            }),
    };
    let task_name = r.task.name.clone();
    let t = r.t();
    let lead_m = &r.members[lead];
    let (ucp, mem_bytes, backup_age) = futures::join!(ucp::read(lead_m), memory(lead_m), async {
        match backup_at {
            Ok(i) => backup_age(t, &task_name, &r.members[i]).await,
            Err(e) => Err(e),
        }
    });
    let facts = ClusterFacts {
        ucp,
        mem_bytes,
        backup_age,
    };
    let target = r
        .cluster_params()
        .text("version")
        .unwrap_or_default()
        .to_owned();
    let hops = path(r, &view, &target);
    let mut cluster_failed = Vec::new();
    let mut cluster_passed = Vec::new();
    {
        let mut judge = |result: Condition| match result {
            Ok(line) => cluster_passed.push(line),
            Err(line) => cluster_failed.push(line),
        };
        match &hops {
            Ok((line, hops)) => {
                judge(Ok(line.clone()));
                for line in ucp_conditions(&r.members[lead], &facts, hops, &target) {
                    judge(line);
                }
            }
            Err(e) => {
                judge(Err(e.clone()));
                for line in ucp_conditions(&r.members[lead], &facts, &[], &target) {
                    judge(line);
                }
            }
        }
        judge(backup_condition(&r.members[lead], &facts));
        judge(trust_condition(&facts));
        judge(ram_condition(&r.members[lead], &facts));
    }
    let mut failed_hosts = Vec::new();
    for i in 0..r.members.len() {
        let mut failed: Vec<String> = Vec::new();
        let mut passed: Vec<String> = Vec::new();
        if i == lead {
            failed.extend(cluster_failed.iter().cloned());
            passed.extend(cluster_passed.iter().cloned());
        }
        if roles.replicas.contains(&i) {
            match health_condition(&view, i) {
                Some(Ok(line)) => passed.push(line),
                Some(Err(line)) => failed.push(line),
                None => {}
            }
        }
        let value = facts_value(&view, i, &r.members[i], &facts, &target, &failed);
        r.register(i, value);
        if i != lead && roles.replicas.contains(&i) {
            let lead_host = r.members[lead].host.clone();
            r.note(
                i,
                &format!("the cluster's conditions are checked on `{lead_host}`, the upgrade node"),
            );
        }
        if failed.is_empty() {
            if !passed.is_empty() {
                r.note(i, &format!("pre-flight passed: {}", passed.join("; ")));
            }
        } else {
            let lines: Vec<String> = failed.iter().map(|l| format!("  - {l}")).collect();
            r.fail(
                i,
                &format!(
                    "pre-flight: {} of {} conditions failed on this node:\n{}",
                    failed.len(),
                    failed.len() + passed.len(),
                    lines.join("\n")
                ),
            );
            failed_hosts.push(format!("`{}`", r.members[i].host));
        }
    }
    let unlisted: Vec<String> = view
        .iter()
        .filter(|rep| rep.member.is_none())
        .map(|rep| format!("`{}` ({})", rep.id, rep.health_note))
        .collect();
    if !unlisted.is_empty() {
        r.note(
            lead,
            &format!(
                "warning: replicas on no host of this run, counted by the HA rules: {}",
                unlisted.join(", ")
            ),
        );
    }
    match sizing(r) {
        Ok(warnings) => {
            for w in warnings {
                r.note(lead, &format!("warning: {w}"));
            }
        }
        Err(e) => r.fail_with(lead, &e),
    }
    if !failed_hosts.is_empty() {
        r.refuse_reported(&format!(
            "task \"{}\" refused: the DTR pre-flight conditions failed on {}; fix every \
             condition listed and rerun (exit 3)",
            r.task.name,
            failed_hosts.join(", ")
        ));
    }
}

async fn memory(m: &Member) -> Result<u64, DtrError> {
    let out = m
        .sh(MEM_TOTAL)
        .await?
        .expect_success("`docker info` (MemTotal)", &m.host)?;
    let text = first_line(&out.stdout);
    text.parse::<u64>().map_err(|_| DtrError::Unreadable {
        what: format!("`{MEM_TOTAL}`"),
        host: m.host.clone(),
        text: text.to_owned(),
        why: "not a number of bytes".to_owned(),
    })
}

/// `backup_time_command` (the newest backup's time in Unix seconds) against the node's
/// clock, on one node.
async fn backup_age(
    t: &crate::template::Templates,
    task: &str,
    m: &Member,
) -> Result<Duration, DtrError> {
    let Some(source) = m.params.command("backup_time_command") else {
        return Err(DtrError::Input(
            "`backup_time_command` is not configured".to_owned(),
        ));
    };
    let cmd = render_command(
        t,
        task,
        "backup_time_command",
        source,
        &m.ctx,
        &[("node", Value::from(m.node.as_str()))],
    )?;
    let script =
        format!("{cmd}\nstatus=$?\necho\necho \"@@capstan now $(date +%s)\"\nexit $status");
    let out = m
        .sh(&script)
        .await?
        .expect_success(&format!("`backup_time_command` (`{cmd}`)"), &m.host)?;
    let unreadable = |why: &str| DtrError::Unreadable {
        what: format!("`backup_time_command` (`{cmd}`)"),
        host: m.host.clone(),
        text: first_line(&out.stdout).to_owned(),
        why: why.to_owned(),
    };
    let at: i64 = first_line(&out.stdout)
        .parse()
        .map_err(|_| unreadable("not a time in Unix seconds"))?;
    let now: i64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@capstan now "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| unreadable("no clock reading"))?;
    Ok(Duration::from_secs(u64::try_from(now - at).unwrap_or(0)))
}

/// The path from the cluster's version to the target: its line and its hops.
fn path(r: &Run<'_>, view: &[Replica], target: &str) -> Result<(String, Vec<UpgradeHop>), String> {
    let params = r.cluster_params();
    let target = Version::parse(target)
        .map_err(|e| format!("the target version `{target}` is not a version: {e}"))?;
    if let Some(problem) = super::facts::unparsable(view) {
        return Err(problem);
    }
    let versions: Vec<Version> = view.iter().filter_map(|r| r.version.clone()).collect();
    let Some(cluster) = rules::cluster_version(&versions) else {
        return Err(
            "no DTR replica was found on the checked nodes (no `dtr-rethinkdb-<id>` \
                    container)"
                .to_owned(),
        );
    };
    let previous = format!("{}.{}", target.major, target.minor.saturating_sub(1));
    let seed = format!(
        "\"Confirm that you are running DTR {previous}. If this is not the case, upgrade your \
         installation to the {previous} version.\" ({UPGRADE_DTR})"
    );
    let opts = JudgeOptions {
        allow_prerelease: params.flag("allow_prerelease"),
    };
    let available: Result<Vec<Version>, String> = params
        .list("available")
        .iter()
        .map(|v| Version::parse(v).map_err(|e| format!("`available` has `{v}`: {e}")))
        .collect();
    let mut available = available?;
    if !available.contains(&target) {
        available.push(target.clone());
    }
    match rules::plan(&cluster, &target, &available, &opts) {
        Ok(plan) if plan.hops.is_empty() => {
            Ok((format!("DTR is at {cluster}, the target"), Vec::new()))
        }
        Ok(plan) => {
            let hops: Vec<String> = plan.hops.iter().map(ToString::to_string).collect();
            Ok((
                format!("DTR {cluster} upgrades by {}", hops.join(", ")),
                plan.hops,
            ))
        }
        Err(e) => Err(format!(
            "the cluster runs DTR {cluster} (its lowest replica): {e}: {seed}"
        )),
    }
}

/// UCP's version against the compatibility matrix, for every hop (or the target when the
/// path is unknown).
fn ucp_conditions(
    m: &Member,
    f: &ClusterFacts,
    hops: &[UpgradeHop],
    target: &str,
) -> Vec<Condition> {
    let ucp = match &f.ucp {
        Ok(u) => &u.version,
        Err(e) => {
            return vec![Err(format!(
                "cannot tell the UCP version: {e}: {SEED_UCP} ({UPGRADE_DTR})"
            ))];
        }
    };
    let mut versions: Vec<Version> = hops.iter().map(|h| h.to.clone()).collect();
    if versions.is_empty() {
        match Version::parse(target) {
            Ok(v) => versions.push(v),
            Err(e) => return vec![Err(format!("target `{target}`: {e}"))],
        }
    }
    versions.iter().map(|v| ucp_condition(m, ucp, v)).collect()
}

fn ucp_condition(m: &Member, ucp: &Version, target: &Version) -> Condition {
    let key = format!("{}.{}", target.major, target.minor);
    let compat = m.params.table("ucp_compat");
    let Some(entries) = compat.and_then(|c| c.get(&key)) else {
        let why = if compat.is_none_or(serde_json::Map::is_empty) {
            "no compatibility matrix (`ucp_compat`) is configured".to_owned()
        } else {
            format!("the compatibility matrix `ucp_compat` has no entry for DTR {key}")
        };
        return Err(format!(
            "{why}: {SEED_UCP} ({UPGRADE_DTR}); add the UCP versions the compatibility matrix \
             lists, like ucp_compat = {{ \"{key}\" = [\"3.2\"] }}"
        ));
    };
    let listed: Vec<String> = match entries {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    };
    let text = ucp.to_string();
    let fits = listed
        .iter()
        .any(|e| text == *e || text.starts_with(&format!("{e}.")));
    if fits {
        Ok(format!("UCP {ucp} supports DTR {key}"))
    } else {
        Err(format!(
            "UCP {ucp} is not supported by DTR {key} (`ucp_compat` lists {}): {SEED_UCP} \
             ({UPGRADE_DTR}); upgrade UCP first, or correct `ucp_compat`",
            listed.join(", ")
        ))
    }
}

fn backup_condition(m: &Member, f: &ClusterFacts) -> Condition {
    let max = m
        .params
        .duration("max_backup_age")
        .unwrap_or(Duration::from_secs(86_400));
    let age = f.backup_age.as_ref().map_err(|e| {
        format!("cannot tell the age of the newest DTR backup: {e}: {SEED_BACKUP} ({UPGRADE_DTR}); take a backup first")
    })?;
    let shown = humantime::format_duration(Duration::from_secs(age.as_secs()));
    if *age <= max {
        Ok(format!("newest backup {shown} old"))
    } else {
        Err(format!(
            "the newest DTR backup is {shown} old, older than `max_backup_age` ({}): \
             {SEED_BACKUP} ({UPGRADE_DTR}); take a backup first",
            humantime::format_duration(max)
        ))
    }
}

fn trust_condition(f: &ClusterFacts) -> Condition {
    match f.ucp.as_ref().map(|u| u.content_trust) {
        Ok(false) => Ok("content trust disabled".to_owned()),
        Ok(true) => Err(format!(
            "Docker content trust is enabled in UCP: {SEED_TRUST} ({UPGRADE_DTR}); disable it \
             in UCP for the upgrade"
        )),
        Err(e) => Err(format!(
            "cannot tell whether content trust is enabled in UCP: {e}: {SEED_TRUST} \
             ({UPGRADE_DTR})"
        )),
    }
}

fn ram_condition(m: &Member, f: &ClusterFacts) -> Condition {
    let min_gb = m.params.count("min_ram_gb").unwrap_or(16);
    let bytes = f
        .mem_bytes
        .as_ref()
        .map_err(|e| format!("cannot tell the node's memory: {e}: {SEED_RAM} ({UPGRADE_DTR})"))?;
    #[allow(clippy::cast_precision_loss)]
    let gb = *bytes as f64 / 1e9;
    if *bytes >= min_gb.saturating_mul(1_000_000_000) {
        Ok(format!("{gb:.1} GB RAM on the upgrade node"))
    } else {
        Err(format!(
            "the upgrade node `{}` has {gb:.1} GB RAM, less than {min_gb} GB (`min_ram_gb`): \
             {SEED_RAM} ({UPGRADE_DTR}); run the upgrade from a larger node or add memory",
            m.host
        ))
    }
}

fn health_condition(view: &[Replica], i: usize) -> Option<Condition> {
    let list: Vec<&Replica> = view.iter().filter(|r| r.member == Some(i)).collect();
    if list.is_empty() {
        return None;
    }
    let sick: Vec<String> = list
        .iter()
        .filter(|r| !r.healthy)
        .map(|r| format!("`{}` {}", r.id, r.health_note))
        .collect();
    Some(if sick.is_empty() {
        let ids: Vec<&str> = list.iter().map(|r| r.id.as_str()).collect();
        Ok(format!("replica `{}` healthy", ids.join("`, `")))
    } else {
        Err(format!(
            "replica {} on this node: {SEED_HEALTH}; repair it before upgrading",
            sick.join(", ")
        ))
    })
}

fn sizing(r: &Run<'_>) -> Result<Vec<String>, DtrError> {
    let managers = r.select_hosts("ucp_nodes")?;
    let cache = r.select_hosts("cache_nodes")?;
    let dtr: Vec<String> = r
        .select_hosts("dtr_nodes")?
        .into_iter()
        .filter(|h| !cache.contains(h))
        .collect();
    Ok(rules::sizing_warnings(&managers, &dtr))
}

/// What `register` holds after `check`.
fn facts_value(
    view: &[Replica],
    i: usize,
    m: &Member,
    f: &ClusterFacts,
    target: &str,
    failed: &[String],
) -> Value {
    let mine = view.iter().find(|r| r.member == Some(i));
    let versions: Vec<Version> = view.iter().filter_map(|r| r.version.clone()).collect();
    let cluster = rules::cluster_version(&versions).map(|v| v.to_string());
    let opt = |s: Option<String>| s.map_or(Value::from(()), Value::from);
    let replicas: Vec<Value> = view
        .iter()
        .map(|r| {
            minijinja::context! {
                id => r.id.clone(), node => r.node.clone(), version => r.version_text.clone(),
                healthy => r.healthy, health => r.health_note.clone(),
            }
        })
        .collect();
    minijinja::context! {
        version => opt(mine.map(|r| r.version_text.clone())),
        replica_id => opt(mine.map(|r| r.id.clone())),
        node => m.node.clone(),
        healthy => mine.is_some_and(|r| r.healthy),
        health => opt(mine.map(|r| r.health_note.clone())),
        cluster_version => opt(cluster),
        replicas => view.len(),
        replica_facts => replicas,
        target => target,
        ucp_version => opt(f.ucp.as_ref().ok().map(|u| u.version.to_string())),
        content_trust => opt(f.ucp.as_ref().ok().map(|u| u.content_trust.to_string())),
        mem_bytes => f.mem_bytes.as_ref().ok().copied(),
        backup_age_seconds => f.backup_age.as_ref().ok().map(Duration::as_secs),
        failed_conditions => failed.to_vec(),
        changed => false,
        failed => !failed.is_empty(),
        skipped => false,
    }
}
