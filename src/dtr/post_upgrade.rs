//! After the hops: the vulnerability database and the cache nodes.
//!
//! Both are operator commands (`vuln_db_update`; `cache_version_command` with
//! `cache_upgrade`); when they are not configured the report names the operator step rather
//! than leaving it unsaid.

use minijinja::value::Value;

use super::params::render_command;
use super::run::Run;
use crate::rules::UpgradePlan;

const SEED_VULN: &str = "\"After upgrading DTR, it is necessary to redownload the vulnerability \
                         database.\" (Upgrade DTR)";

const SEED_CACHE: &str = "\"If you have previously deployed a cache, be sure to upgrade the node \
                          dedicated for your cache to keep it in sync with your upstream DTR \
                          replicas.\" (Upgrade DTR)";

/// The vulnerability database and the cache nodes, once the replicas are done.
pub(crate) async fn after_hops(
    r: &mut Run<'_>,
    runner: usize,
    plan: &UpgradePlan,
    caches: &[usize],
) {
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
