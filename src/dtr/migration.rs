//! The `metadatastoremigration` job after a 2.5 → 2.6 hop, through DTR's jobs API.
//!
//! "Upgrade DTR": "When upgrading from 2.5 to 2.6, the system will run a
//! metadatastoremigration job following a successful upgrade. [...] In the case of a failed
//! metadatastoremigration, the system will retry twice. If the three attempts fail, it will
//! be necessary to manually retrigger the metadatastoremigration job. To do this, send a
//! POST request to the /api/v0/jobs endpoint". The jobs are read with `GET /api/v0/jobs?
//! action=metadatastoremigration&worker=any&running=any&start=0` ("Audit jobs via the
//! API"); each has `id`, `retryFromID` (the first attempt of its chain), `status` (one of
//! the job queue's `waiting`, `running`, `done`, `error`, `cancel_request`, `cancel`,
//! `deleted`, `worker_dead`, `worker_shutdown`, `worker_resurrection`).

use std::time::{Duration, Instant};

use semver::Version;
use serde::Deserialize;

use super::error::DtrError;
use super::facts::{dtr_service, https_port};
use super::http::{NodeScript, Request};
use super::remote::Member;

pub(crate) const JOB: &str = "metadatastoremigration";

/// Attempts the system makes by itself: the first, and "the system will retry twice".
const AUTOMATIC_ATTEMPTS: usize = 3;

pub(crate) const GC_NOTICE: &str = "garbage collection is disabled while the \
     metadatastoremigration job runs (\"Garbage collection is disabled while the migration is \
     running.\", Upgrade DTR)";

const JOBS_PATH: &str =
    "/api/v0/jobs?action=metadatastoremigration&worker=any&running=any&start=0&limit=100";

/// Whether the hop `from` → `to` runs the migration job.
pub(crate) fn follows(from: &Version, to: &Version) -> bool {
    from.major == 2 && from.minor == 5 && to.major == 2 && to.minor == 6
}

/// One attempt as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Job {
    pub id: String,
    #[serde(rename = "retryFromID", default)]
    pub retry_from_id: String,
    pub status: String,
    pub action: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `waiting`, `running`, `cancel_request`, `worker_resurrection`: not over yet.
    Pending,
    Done,
    /// `error`, and the other ends that are no success (`cancel`, `deleted`,
    /// `worker_dead`, `worker_shutdown`).
    Failed,
}

impl Job {
    pub fn phase(&self) -> Phase {
        match self.status.as_str() {
            "done" => Phase::Done,
            "waiting" | "running" | "cancel_request" | "worker_resurrection" => Phase::Pending,
            _ => Phase::Failed,
        }
    }
}

#[derive(Deserialize)]
struct JobList {
    jobs: Vec<Job>,
}

/// The job's attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct JobLog {
    pub attempts: Vec<Job>,
}

impl JobLog {
    /// The API lists the most recent first.
    pub fn parse(text: &str) -> Result<JobLog, serde_json::Error> {
        let list: JobList = serde_json::from_str(text.trim())?;
        let mut attempts: Vec<Job> = list.jobs.into_iter().filter(|j| j.action == JOB).collect();
        attempts.reverse();
        Ok(JobLog { attempts })
    }

    pub fn last(&self) -> Option<Phase> {
        self.attempts.last().map(Job::phase)
    }

    fn trailing_failures(&self) -> usize {
        self.attempts
            .iter()
            .rev()
            .take_while(|j| j.phase() == Phase::Failed)
            .count()
    }

    /// The system gave up: its three attempts failed.
    pub fn exhausted(&self) -> bool {
        self.trailing_failures() >= AUTOMATIC_ATTEMPTS
    }

    /// `attempt 1 (chain a1b2…): error`, one per attempt.
    pub fn lines(&self) -> Vec<String> {
        self.attempts
            .iter()
            .enumerate()
            .map(|(n, j)| {
                let chain: String = j.retry_from_id.chars().take(8).collect();
                format!(
                    "{JOB} attempt {} (job {}, chain {chain}): {}",
                    n + 1,
                    short(&j.id),
                    j.status
                )
            })
            .collect()
    }
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// The jobs API on the node of member `runner` (its own replica).
pub(crate) struct Migration<'a> {
    pub runner: &'a Member,
    pub interrupted: &'a (dyn Fn() -> bool + Sync),
}

impl Migration<'_> {
    fn credentials(&self) -> Option<(String, String)> {
        let p = &self.runner.params;
        match (p.text("api_username"), p.text("api_token")) {
            (Some(u), Some(t)) => Some((u.to_owned(), t.to_owned())),
            _ => None,
        }
    }

    /// Whether capstan can read the jobs API (`api_username`, `api_token` set).
    pub fn configured(&self) -> bool {
        self.credentials().is_some()
    }

    async fn call(&self, req: Request, what: &str) -> Result<String, DtrError> {
        let m = self.runner;
        let dtr = dtr_service(m).await?;
        let mut s = NodeScript::default();
        let call = s.curl(&dtr, &req);
        s.line(call);
        let out = m
            .sh_with_files(&s.script(), &s.file_refs(), m.timeout)
            .await?
            .expect_success(what, &m.host)?;
        Ok(out.stdout)
    }

    fn request(&self, method: &'static str, path: &str) -> Request {
        Request {
            method,
            path: path.to_owned(),
            basic: self.credentials(),
            local_port: Some(https_port(self.runner)),
            ..Request::default()
        }
    }

    /// The job's attempts so far.
    pub async fn log(&self) -> Result<JobLog, DtrError> {
        let what = format!("`GET {JOBS_PATH}`");
        let text = self.call(self.request("GET", JOBS_PATH), &what).await?;
        JobLog::parse(&text).map_err(|why| DtrError::Unreadable {
            what,
            host: self.runner.host.clone(),
            text: text.chars().take(80).collect(),
            why: why.to_string(),
        })
    }

    /// Waits until the attempts after the first `baseline` are over: done, or (when
    /// `retriggered`) failed, or else failed three times in a row.
    async fn wait(&self, baseline: usize, retriggered: bool) -> Result<JobLog, DtrError> {
        let p = &self.runner.params;
        let poll = p
            .duration("migration_poll")
            .unwrap_or(Duration::from_secs(15));
        let limit = p
            .duration("migration_timeout")
            .unwrap_or(Duration::from_secs(3600));
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log().await?;
            let finished = log.attempts.len() > baseline
                && match log.last() {
                    Some(Phase::Done) => true,
                    Some(Phase::Failed) => retriggered || log.exhausted(),
                    Some(Phase::Pending) | None => false,
                };
            if finished {
                return Ok(log);
            }
            if (self.interrupted)() {
                return Err(DtrError::Input(format!(
                    "interrupted while waiting for the {JOB} job; {GC_NOTICE}; rerun the \
                     playbook to go on waiting"
                )));
            }
            if Instant::now() >= deadline {
                return Err(DtrError::Input(format!(
                    "the {JOB} job has not finished after {} (`migration_timeout`): {}; \
                     {GC_NOTICE}; rerun the playbook when it is done",
                    humantime::format_duration(limit),
                    log.lines()
                        .last()
                        .map_or("no attempt listed", String::as_str)
                )));
            }
            tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Brings the job to `done`: waits for the system's attempts, retriggers once when all
    /// three failed, waits again. Returns the lines for the report.
    pub async fn settle(&self, log: Option<JobLog>) -> Result<Vec<String>, DtrError> {
        let mut lines = vec![GC_NOTICE.to_owned()];
        if !self.configured() {
            lines.push(format!(
                "OPERATOR STEP: follow the {JOB} job in System > Job Logs (no `api_username`/\
                 `api_token`, so capstan cannot read the jobs API)"
            ));
            return Ok(lines);
        }
        let log = match log {
            Some(log) if log.last() == Some(Phase::Done) || log.exhausted() => log,
            _ => self.wait(0, false).await?,
        };
        lines.extend(log.lines());
        if log.last() == Some(Phase::Done) {
            lines.push(format!("{JOB} job done (attempt {})", log.attempts.len()));
            return Ok(lines);
        }
        let failed = log.trailing_failures();
        let created = self.retrigger().await?;
        lines.push(format!(
            "{JOB} job failed {failed} times; retriggered with POST /api/v0/jobs (\"If the \
             three attempts fail, it will be necessary to manually retrigger the \
             metadatastoremigration job\", Upgrade DTR): job {created}"
        ));
        let after = self.wait(log.attempts.len(), true).await?;
        lines.extend(after.lines().into_iter().skip(log.attempts.len()));
        if after.last() == Some(Phase::Done) {
            lines.push(format!("{JOB} job done (attempt {})", after.attempts.len()));
            Ok(lines)
        } else {
            Err(DtrError::Input(format!(
                "the retriggered {JOB} job failed too (attempt {}: {}); {GC_NOTICE}; see \
                 System > Job Logs for its errors, then retrigger it again with POST \
                 /api/v0/jobs",
                after.attempts.len(),
                after.attempts.last().map_or("", |j| j.status.as_str())
            )))
        }
    }

    /// `POST /api/v0/jobs {"action": "metadatastoremigration"}`; the new job's id.
    async fn retrigger(&self) -> Result<String, DtrError> {
        let req = Request {
            json: Some(format!("{{\"action\": \"{JOB}\"}}")),
            ..self.request("POST", "/api/v0/jobs")
        };
        let text = self
            .call(
                req,
                &format!("retriggering the {JOB} job (`POST /api/v0/jobs`)"),
            )
            .await?;
        let id = serde_json::from_str::<Job>(text.trim())
            .map(|j| short(&j.id))
            .unwrap_or_else(|_| "(created)".to_owned());
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, from: &str, status: &str) -> String {
        format!(
            "{{\"id\":\"{id}\",\"retryFromID\":\"{from}\",\"status\":\"{status}\",\
             \"action\":\"{JOB}\",\"workerID\":\"aaaaaaaaaaaa\"}}"
        )
    }

    #[test]
    fn reads_attempts_oldest_first_and_knows_when_the_system_gave_up() {
        let text = format!(
            "{{\"jobs\":[{},{},{},{{\"id\":\"x\",\"status\":\"done\",\"action\":\"gc\"}}]}}",
            job("c", "a", "error"),
            job("b", "a", "error"),
            job("a", "a", "error")
        );
        let log = JobLog::parse(&text).expect("parses");
        let ids: Vec<&str> = log.attempts.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(log.exhausted());
        let two = JobLog::parse(&format!(
            "{{\"jobs\":[{},{}]}}",
            job("b", "a", "worker_dead"),
            job("a", "a", "error")
        ))
        .expect("parses");
        assert!(!two.exhausted());
        assert_eq!(two.last(), Some(Phase::Failed));
        let running =
            JobLog::parse(&format!("{{\"jobs\":[{}]}}", job("a", "a", "waiting"))).expect("parses");
        assert_eq!(running.last(), Some(Phase::Pending));
        assert!(JobLog::parse("{\"jobs\":[{\"status\":\"failed\"}]}").is_err());
    }

    #[test]
    fn the_migration_follows_2_5_to_2_6_only() {
        let v = |s: &str| Version::parse(s).unwrap_or_else(|_| Version::new(0, 0, 0));
        assert!(follows(&v("2.5.3"), &v("2.6.8")));
        assert!(!follows(&v("2.6.0"), &v("2.6.8")));
        assert!(!follows(&v("2.6.8"), &v("2.7.2")));
    }
}
