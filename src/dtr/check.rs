//! `check`: the facts of every node (replica, version, health) and the "Upgrade DTR"
//! pre-flight conditions, all of them judged and reported together per host.
//!
//! Stand-ins the task cannot discover by itself are operator commands:
//! `ucp_version_command` prints the UCP version, `content_trust_command` prints whether
//! UCP enforces content trust (`true`/`false`), `backup_time_command` prints the time of
//! the newest DTR backup in Unix seconds. The RAM condition holds on every checked node,
//! since any of them may run the upgrade.

use std::time::Duration;

use futures::future::join_all;
use minijinja::value::Value;
use semver::Version;

use super::commands::{MEM_TOTAL, NOW};
use super::facts::{Replica, replicas_on};
use super::params::render_command;
use super::remote::{Member, first_line};
use super::run::Run;
use crate::rules::{self, JudgeOptions, Verdict};

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

/// What one node told.
struct NodeFacts {
    replicas: Result<Vec<Replica>, String>,
    mem_bytes: Result<u64, String>,
    ucp_version: Result<Version, String>,
    content_trust: Result<bool, String>,
    backup_age: Result<Duration, String>,
}

pub(crate) async fn run(r: &mut Run<'_>) {
    let t = r.t();
    let task_name = r.task.name.as_str();
    let facts: Vec<NodeFacts> =
        join_all((0..r.members.len()).map(|i| gather(t, task_name, &r.members, i))).await;
    let replicas: Vec<Replica> = facts
        .iter()
        .filter_map(|f| f.replicas.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let params = r.cluster_params();
    let target = params.text("version").unwrap_or_default().to_owned();
    let cluster = cluster_condition(r, &replicas, &target);
    let sizing = sizing(r);
    let mut failed_hosts = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        let mut failed: Vec<String> = Vec::new();
        let mut passed: Vec<String> = Vec::new();
        let mut judge = |result: Result<String, String>| match result {
            Ok(line) => passed.push(line),
            Err(line) => failed.push(line),
        };
        let m = &r.members[i];
        judge(ucp_condition(m, f, &target));
        judge(backup_condition(m, f));
        judge(trust_condition(f));
        judge(ram_condition(m, f));
        judge(cluster.clone());
        if let Some(health) = health_condition(f) {
            judge(health);
        }
        let value = facts_value(f, &replicas, &target, &failed);
        r.register(i, value);
        if failed.is_empty() {
            r.note(i, &format!("pre-flight passed: {}", passed.join("; ")));
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
    match sizing {
        Ok(warnings) => {
            for w in warnings {
                r.note(0, &format!("warning: {w}"));
            }
        }
        Err(e) => r.fail(0, &e),
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

async fn gather(
    t: &crate::template::Templates,
    task: &str,
    members: &[Member],
    i: usize,
) -> NodeFacts {
    let m = &members[i];
    let fact = |param: &'static str| async move {
        let Some(source) = m.params.command(param) else {
            return Err(format!("`{param}` is not configured"));
        };
        let cmd = render_command(
            t,
            task,
            param,
            source,
            &m.ctx,
            &[("node", Value::from(m.node.as_str()))],
        )
        .map_err(|e| e.message)?;
        let out = m.sh(&cmd).await?;
        let what = format!("`{param}` (`{cmd}`)");
        let out = out.expect_success(&what, &m.host)?;
        Ok(first_line(&out.stdout).to_owned())
    };
    let (replicas, mem, ucp, trust, backup, now) = futures::join!(
        replicas_on(t, members, i, None),
        m.sh(MEM_TOTAL),
        fact("ucp_version_command"),
        fact("content_trust_command"),
        fact("backup_time_command"),
        m.sh(NOW),
    );
    let mem_bytes = mem
        .and_then(|o| o.expect_success("`docker info` (MemTotal)", &m.host))
        .and_then(|o| {
            let text = first_line(&o.stdout);
            text.parse::<u64>()
                .map_err(|_| format!("`docker info` printed `{text}`, not a number of bytes"))
        });
    let ucp_version = ucp.and_then(|text| {
        find_version(&text)
            .ok_or_else(|| format!("`ucp_version_command` printed `{text}`, not a version"))
    });
    let content_trust = trust.and_then(|text| match text.to_ascii_lowercase().as_str() {
        "true" | "enabled" | "on" | "1" => Ok(true),
        "false" | "disabled" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "`content_trust_command` printed `{text}`; expected true or false"
        )),
    });
    let now = now
        .and_then(|o| o.expect_success("`date +%s`", &m.host))
        .and_then(|o| {
            first_line(&o.stdout)
                .parse::<i64>()
                .map_err(|_| "`date +%s` did not print a time".to_owned())
        });
    let backup_age = backup.and_then(|text| {
        let at: i64 = text.parse().map_err(|_| {
            format!("`backup_time_command` printed `{text}`, not a time in Unix seconds")
        })?;
        let now = now?;
        Ok(Duration::from_secs(u64::try_from(now - at).unwrap_or(0)))
    });
    NodeFacts {
        replicas,
        mem_bytes,
        ucp_version,
        content_trust,
        backup_age,
    }
}

/// The first `N.N` or `N.N.N` in `text` (`ucp/3.2.5` → 3.2.5).
fn find_version(text: &str) -> Option<Version> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| w.contains('.'))
        .find_map(|w| {
            let w = w.trim_matches('.');
            match w.split('.').count() {
                2 => Version::parse(&format!("{w}.0")).ok(),
                3 => Version::parse(w).ok(),
                _ => None,
            }
        })
}

fn ucp_condition(m: &Member, f: &NodeFacts, target: &str) -> Result<String, String> {
    let ucp = f
        .ucp_version
        .as_ref()
        .map_err(|e| format!("cannot tell the UCP version: {e}: {SEED_UCP} ({UPGRADE_DTR})"))?;
    let target = Version::parse(target).map_err(|e| format!("target `{target}`: {e}"))?;
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

fn backup_condition(m: &Member, f: &NodeFacts) -> Result<String, String> {
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

fn trust_condition(f: &NodeFacts) -> Result<String, String> {
    match &f.content_trust {
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

fn ram_condition(m: &Member, f: &NodeFacts) -> Result<String, String> {
    let min_gb = m.params.count("min_ram_gb").unwrap_or(16);
    let bytes = f
        .mem_bytes
        .as_ref()
        .map_err(|e| format!("cannot tell the node's memory: {e}: {SEED_RAM} ({UPGRADE_DTR})"))?;
    #[allow(clippy::cast_precision_loss)]
    let gb = *bytes as f64 / 1e9;
    if *bytes >= min_gb.saturating_mul(1_000_000_000) {
        Ok(format!("{gb:.1} GB RAM"))
    } else {
        Err(format!(
            "the node has {gb:.1} GB RAM, less than {min_gb} GB (`min_ram_gb`): {SEED_RAM} \
             ({UPGRADE_DTR}); run the upgrade from a larger node or add memory"
        ))
    }
}

fn health_condition(f: &NodeFacts) -> Option<Result<String, String>> {
    match &f.replicas {
        Err(e) => Some(Err(format!("cannot read this node's DTR replica: {e}"))),
        Ok(list) if list.is_empty() => None,
        Ok(list) => {
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
    }
}

/// The cluster is on the version the target upgrades from.
fn cluster_condition(r: &Run<'_>, replicas: &[Replica], target: &str) -> Result<String, String> {
    let params = r.cluster_params();
    let target = Version::parse(target)
        .map_err(|e| format!("the target version `{target}` is not a version: {e}"))?;
    if let Some(problem) = super::facts::unparsable(replicas) {
        return Err(problem);
    }
    let versions: Vec<Version> = replicas.iter().filter_map(|r| r.version.clone()).collect();
    let Some(cluster) = rules::cluster_version(&versions) else {
        return Err("no DTR replica was found on the checked nodes".to_owned());
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
    let available = available?;
    if available.is_empty() {
        return match rules::judge(&cluster, &target, &opts) {
            Verdict::NoOp => Ok(format!("DTR is at {cluster}, the target")),
            Verdict::Allowed { row } => Ok(format!("DTR {cluster} -> {target} is a {row}")),
            Verdict::Refused(refusal) => Err(format!(
                "the cluster runs DTR {cluster} (its lowest replica): {refusal}: {seed}"
            )),
        };
    }
    match rules::plan(&cluster, &target, &available, &opts) {
        Ok(plan) if plan.hops.is_empty() => Ok(format!("DTR is at {cluster}, the target")),
        Ok(plan) => {
            let hops: Vec<String> = plan.hops.iter().map(ToString::to_string).collect();
            Ok(format!("DTR {cluster} upgrades by {}", hops.join(", ")))
        }
        Err(e) => Err(format!(
            "the cluster runs DTR {cluster} (its lowest replica): {e}: {seed}"
        )),
    }
}

fn sizing(r: &Run<'_>) -> Result<Vec<String>, String> {
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
fn facts_value(f: &NodeFacts, all: &[Replica], target: &str, failed: &[String]) -> Value {
    let mine = f.replicas.as_ref().ok().and_then(|l| l.first());
    let versions: Vec<Version> = all.iter().filter_map(|r| r.version.clone()).collect();
    let cluster = rules::cluster_version(&versions).map(|v| v.to_string());
    let opt = |s: Option<String>| s.map_or(Value::from(()), Value::from);
    minijinja::context! {
        version => opt(mine.map(|r| r.version_text.clone())),
        replica_id => opt(mine.map(|r| r.id.clone())),
        node => opt(mine.map(|r| r.node.clone())),
        healthy => mine.is_some_and(|r| r.healthy),
        cluster_version => opt(cluster),
        replicas => all.len(),
        target => target,
        ucp_version => opt(f.ucp_version.as_ref().ok().map(ToString::to_string)),
        content_trust => opt(f.content_trust.as_ref().ok().map(ToString::to_string)),
        mem_bytes => f.mem_bytes.as_ref().ok().copied(),
        backup_age_seconds => f.backup_age.as_ref().ok().map(Duration::as_secs),
        failed_conditions => failed.to_vec(),
        changed => false,
        failed => !failed.is_empty(),
        skipped => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_versions_in_tool_output() {
        assert_eq!(find_version("ucp/3.2.5"), Some(Version::new(3, 2, 5)));
        assert_eq!(find_version("3.2"), Some(Version::new(3, 2, 0)));
        assert_eq!(
            find_version("Version: 3.1.10 (abc)"),
            Some(Version::new(3, 1, 10))
        );
        assert_eq!(find_version("unknown"), None);
    }
}
