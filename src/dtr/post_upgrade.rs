//! After the hops: the vulnerability database and the cache nodes.
//!
//! The vulnerability database ("Set up vulnerability scans"): offline, capstan uploads the
//! archive `vuln_db_archive` (a path on the upgrade node) with `PUT
//! /api/v0/imagescan/scan/update?online=false`; online, DTR checks for updates itself
//! (daily at 03:00 UTC, and when the mode is switched), which no documented API call
//! forces, so the report names the operator step. Either way `GET
//! /api/v0/imagescan/status` tells whether the last update failed. Cache nodes follow
//! the operator commands `cache_version_command` and `cache_upgrade`.

use minijinja::value::Value;

use super::error::DtrError;
use super::facts::{dtr_service, https_port};
use super::http::{NodeScript, Request};
use super::params::render_command;
use super::remote::Member;
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
    let target = plan.to.to_string();
    if !plan.hops.is_empty() {
        let check = r.check_mode();
        let m = &r.members[runner];
        let archive = m.params.text("vuln_db_archive").map(str::to_owned);
        let creds = m.params.text("api_username").is_some() && m.params.text("api_token").is_some();
        match (archive, check, creds) {
            (Some(path), true, _) => r.note(
                runner,
                &format!("would upload the vulnerability database `{path}` (PUT /api/v0/imagescan/scan/update?online=false)"),
            ),
            (Some(_), false, false) | (None, _, false) => r.note(
                runner,
                &format!(
                    "OPERATOR STEP: redownload the vulnerability database: {SEED_VULN}; set \
                     `vuln_db_archive` (offline) and `api_username`/`api_token` to let capstan \
                     upload it and read its status"
                ),
            ),
            (None, true, true) => {}
            (archive, false, true) => match vuln_db(m, archive.as_deref()).await {
                Ok(lines) => {
                    for line in lines {
                        r.note(runner, &line);
                    }
                }
                Err(e) => return r.fail_with(runner, &e),
            },
        }
    }
    for &i in caches {
        cache(r, i, &target).await;
    }
}

/// Uploads `archive` when given, then reads the scanner's status.
async fn vuln_db(m: &Member, archive: Option<&str>) -> Result<Vec<String>, DtrError> {
    let dtr = dtr_service(m).await?;
    let basic = match (m.params.text("api_username"), m.params.text("api_token")) {
        (Some(u), Some(t)) => Some((u.to_owned(), t.to_owned())),
        _ => None,
    };
    let local = Some(https_port(m));
    let mut s = NodeScript::default();
    let mut lines = Vec::new();
    if let Some(path) = archive {
        let put = s.curl(
            &dtr,
            &Request {
                method: "PUT",
                path: "/api/v0/imagescan/scan/update?online=false".to_owned(),
                basic: basic.clone(),
                form: vec![("upload".to_owned(), format!("@{path}"))],
                local_port: local,
                ..Request::default()
            },
        );
        s.line(format!("{put} >/dev/null || exit $?"));
        lines.push(format!(
            "uploaded the vulnerability database `{path}`: {SEED_VULN}"
        ));
    } else {
        lines.push(format!(
            "OPERATOR STEP: the vulnerability database is in online mode; DTR checks for \
             updates daily at 03:00 UTC and when the scanning mode is switched (no documented \
             API call forces it): {SEED_VULN}"
        ));
    }
    let status = s.curl(
        &dtr,
        &Request {
            basic,
            local_port: local,
            ..Request::get("/api/v0/imagescan/status")
        },
    );
    s.line(status);
    let out = m
        .sh_with_files(&s.script(), &s.file_refs(), m.timeout)
        .await?
        .expect_success(
            "the vulnerability database update (`/api/v0/imagescan`)",
            &m.host,
        )?;
    let v: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).map_err(|e| DtrError::Unreadable {
            what: "`GET /api/v0/imagescan/status`".to_owned(),
            host: m.host.clone(),
            text: out.stdout.chars().take(80).collect(),
            why: e.to_string(),
        })?;
    match v
        .get("lastDBUpdateFailed")
        .and_then(serde_json::Value::as_bool)
    {
        Some(false) => {
            lines.push("vulnerability database status: last update succeeded".to_owned())
        }
        Some(true) => {
            return Err(DtrError::Input(format!(
                "the vulnerability database update failed (`lastDBUpdateFailed` is true in \
                 /api/v0/imagescan/status): {SEED_VULN}"
            )));
        }
        None => lines.push("vulnerability database status: not reported".to_owned()),
    }
    Ok(lines)
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
        render_command(r.t(), &r.task.name, param, source, &m.ctx, &vars).map_err(DtrError::from)
    };
    let read = async |cmd: &str| -> Result<String, DtrError> {
        let out = m
            .sh(cmd)
            .await?
            .expect_success("`cache_version_command`", &m.host)?;
        Ok(super::remote::first_line(&out.stdout).to_owned())
    };
    let result: Result<Option<String>, DtrError> = async {
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
        m.sh(&upgrade)
            .await?
            .expect_success("`cache_upgrade`", &m.host)?;
        let after = read(&query).await?;
        if after != target {
            return Err(DtrError::Input(format!(
                "after `cache_upgrade` the cache reports {after}, not {target}: {SEED_CACHE}"
            )));
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
        Err(e) => r.fail_with(i, &e),
    }
}
