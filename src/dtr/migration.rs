//! The `metadatastoremigration` job that follows a 2.5 → 2.6 upgrade.
//!
//! "When upgrading from 2.5 to 2.6, the system will run a metadatastoremigration job
//! following a successful upgrade. [...] Garbage collection is disabled while the migration
//! is running. In the case of a failed metadatastoremigration, the system will retry twice.
//! If the three attempts fail, it will be necessary to manually retrigger the
//! metadatastoremigration job. To do this, send a POST request to the /api/v0/jobs
//! endpoint." capstan polls the job (with a deadline) until it is done, retriggers it once
//! when all three attempts failed, and waits again.

use std::time::{Duration, Instant};

use minijinja::value::Value;
use semver::Version;

use super::commands::render_template;
use super::params::Params;
use super::remote::{Member, first_line};
use super::spec::{JOBS_TEMPLATE, RETRIGGER_TEMPLATE};
use crate::template::Templates;

pub(crate) const JOB: &str = "metadatastoremigration";

/// Attempts the system makes by itself: the first, and "the system will retry twice".
const AUTOMATIC_ATTEMPTS: usize = 3;

pub(crate) const GC_NOTICE: &str = "garbage collection is disabled while the \
     metadatastoremigration job runs (\"Garbage collection is disabled while the migration is \
     running.\", Upgrade DTR)";

/// Whether the hop `from` → `to` runs the migration job.
pub(crate) fn follows(from: &Version, to: &Version) -> bool {
    from.major == 2 && from.minor == 5 && to.major == 2 && to.minor == 6
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobStatus {
    Done,
    Failed,
    Running,
    None,
}

impl JobStatus {
    fn parse(word: &str) -> JobStatus {
        match word {
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "running" | "waiting" => JobStatus::Running,
            _ => JobStatus::None,
        }
    }
}

/// The job's attempts, oldest first, as the jobs command lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobLog {
    pub attempts: Vec<JobStatus>,
}

impl JobLog {
    /// `NAME attempt=N status=S` lines; the summary line `NAME status=S` is not an attempt.
    pub fn parse(stdout: &str) -> JobLog {
        let attempts = stdout
            .lines()
            .filter(|l| l.starts_with(JOB) && l.contains("attempt="))
            .filter_map(|l| l.split("status=").nth(1))
            .map(|s| JobStatus::parse(s.trim()))
            .collect();
        JobLog { attempts }
    }

    pub fn last(&self) -> JobStatus {
        self.attempts.last().copied().unwrap_or(JobStatus::None)
    }

    fn trailing_failures(&self) -> usize {
        self.attempts
            .iter()
            .rev()
            .take_while(|s| **s == JobStatus::Failed)
            .count()
    }

    /// The system gave up: its three attempts (at least) failed in a row.
    pub fn exhausted(&self) -> bool {
        self.last() == JobStatus::Failed && self.trailing_failures() >= AUTOMATIC_ATTEMPTS
    }
}

/// Runs the migration job's checks on the node `runner`, whose cluster runs `version`.
pub(crate) struct Migration<'a> {
    pub t: &'a Templates,
    pub runner: &'a Member,
    pub params: &'a Params,
    pub version: String,
    pub interrupted: &'a (dyn Fn() -> bool + Sync),
}

impl Migration<'_> {
    /// The job's attempts so far.
    pub async fn log(&self) -> Result<JobLog, String> {
        let image = self.params.text("image").unwrap_or("docker/dtr");
        let cmd = render_template(
            self.t,
            JOBS_TEMPLATE,
            &self.runner.ctx,
            &[
                ("image", Value::from(image)),
                ("version", Value::from(self.version.as_str())),
                ("job", Value::from(JOB)),
            ],
        )
        .map_err(|e| e.message)?;
        let out = self.runner.sh(&cmd).await?;
        let out = out.expect_success(
            &format!("the {JOB} job status (`{cmd}`)"),
            &self.runner.host,
        )?;
        Ok(JobLog::parse(&out.stdout))
    }

    /// Waits for the job to finish: done, or given up by the system; `baseline` attempts
    /// (those before a retrigger) do not count.
    async fn wait(&self, baseline: usize, retriggered: bool) -> Result<JobLog, String> {
        let poll = self
            .params
            .duration("migration_poll")
            .unwrap_or(Duration::from_secs(15));
        let limit = self
            .params
            .duration("migration_timeout")
            .unwrap_or(Duration::from_secs(3600));
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log().await?;
            let new = log.attempts.len() > baseline;
            let finished = new
                && match log.last() {
                    JobStatus::Done => true,
                    JobStatus::Failed => retriggered || log.exhausted(),
                    JobStatus::Running | JobStatus::None => false,
                };
            if finished {
                return Ok(log);
            }
            if (self.interrupted)() {
                return Err(format!(
                    "interrupted while waiting for the {JOB} job; {GC_NOTICE}; rerun the \
                     playbook to go on waiting"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the {JOB} job has not finished after {} (`migration_timeout`); {GC_NOTICE}; \
                     follow it in System > Job Logs and rerun the playbook when it is done",
                    humantime::format_duration(limit)
                ));
            }
            tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Brings the job to `done`: waits for the system's attempts, retriggers once when all
    /// three failed, waits again. Returns the lines for the report.
    pub async fn settle(&self, log: Option<JobLog>) -> Result<Vec<String>, String> {
        let mut lines = vec![GC_NOTICE.to_owned()];
        let log = match log {
            Some(log) if log.last() == JobStatus::Done || log.exhausted() => log,
            _ => self.wait(0, false).await?,
        };
        if log.last() == JobStatus::Done {
            lines.push(format!("{JOB} job done (attempt {})", log.attempts.len()));
            return Ok(lines);
        }
        let failed = log.trailing_failures();
        let retrigger = self.retrigger().await.map_err(|e| {
            format!(
                "the {JOB} job failed {failed} times: \"If the three attempts fail, it will be \
                 necessary to manually retrigger the metadatastoremigration job\" (Upgrade DTR); \
                 {e}"
            )
        })?;
        lines.push(format!(
            "{JOB} job failed {failed} times; retriggered with POST /api/v0/jobs \
             (\"If the three attempts fail, it will be necessary to manually retrigger the \
             metadatastoremigration job\", Upgrade DTR): {retrigger}"
        ));
        let after = self.wait(log.attempts.len(), true).await?;
        if after.last() == JobStatus::Done {
            lines.push(format!("{JOB} job done (attempt {})", after.attempts.len()));
            Ok(lines)
        } else {
            Err(format!(
                "the retriggered {JOB} job failed too (attempt {}); {GC_NOTICE}; see System > \
                 Job Logs for its errors, then retrigger it again with POST /api/v0/jobs",
                after.attempts.len()
            ))
        }
    }

    /// `POST /api/v0/jobs {"action": "metadatastoremigration"}` with the credentials in a
    /// curl config file fed on stdin.
    async fn retrigger(&self) -> Result<String, String> {
        let p = self.params;
        let (Some(url), Some(user), Some(token)) = (
            p.text("dtr_url"),
            p.text("api_username"),
            p.text("api_token"),
        ) else {
            return Err(format!(
                "set `dtr_url`, `api_username` and `api_token` to let capstan do it, or send \
                 it yourself: curl https://<dtr-external-url>/api/v0/jobs -X POST -u \
                 username:accesstoken -H 'Content-Type: application/json' -d '{{\"action\": \
                 \"{JOB}\"}}'"
            ));
        };
        let cmd = render_template(
            self.t,
            RETRIGGER_TEMPLATE,
            &self.runner.ctx,
            &[
                ("dtr_url", Value::from(url.trim_end_matches('/'))),
                ("api_insecure_tls", Value::from(p.flag("api_insecure_tls"))),
            ],
        )
        .map_err(|e| e.message)?;
        let config = format!("user = \"{}\"\n", curl_escape(&format!("{user}:{token}")));
        let out = self.runner.sh_with_secret(&cmd, &config).await?;
        let out = out.expect_success(
            &format!("retriggering the {JOB} job (`{cmd}`)"),
            &self.runner.host,
        )?;
        Ok(first_line(&out.stdout).to_owned())
    }
}

/// A value for a double-quoted curl config string.
fn curl_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attempts_and_knows_when_the_system_gave_up() {
        let log = JobLog::parse(
            "metadatastoremigration attempt=1 status=failed\n\
             metadatastoremigration attempt=2 status=failed\n\
             metadatastoremigration attempt=3 status=failed\n\
             metadatastoremigration status=failed\n",
        );
        assert_eq!(log.attempts, [JobStatus::Failed; 3]);
        assert!(log.exhausted());
        let log = JobLog::parse(
            "metadatastoremigration attempt=1 status=failed\n\
             metadatastoremigration attempt=2 status=done\nmetadatastoremigration status=done\n",
        );
        assert_eq!(log.last(), JobStatus::Done);
        assert!(!log.exhausted());
        let none = JobLog::parse("metadatastoremigration status=none\n");
        assert_eq!((none.last(), none.exhausted()), (JobStatus::None, false));
        let two = JobLog::parse(
            "metadatastoremigration attempt=1 status=failed\nmetadatastoremigration attempt=2 status=failed\n",
        );
        assert!(!two.exhausted());
    }

    #[test]
    fn the_migration_follows_2_5_to_2_6_only() {
        let v = |s: &str| Version::parse(s).unwrap_or_else(|_| Version::new(0, 0, 0));
        assert!(follows(&v("2.5.3"), &v("2.6.8")));
        assert!(!follows(&v("2.6.0"), &v("2.6.8")));
        assert!(!follows(&v("2.6.8"), &v("2.7.2")));
    }

    #[test]
    fn curl_config_values_are_escaped() {
        assert_eq!(curl_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
