//! The run as one document, for `--report FILE` (JSON) and `--junit FILE`: a collector
//! listens to the same events as the other reporters, and once the engine has returned
//! (and so the exit code is known) becomes a [`Summary`], written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use indexmap::IndexMap;
use serde_json::{Value, json};

use super::event::{Event, HostRecap, Status, TaskReport};
use super::json::{mask_value, recap_json, secs, task_json};

/// Gathers what the summary needs while the run goes.
#[derive(Debug, Default)]
pub struct SummaryCollector {
    started: Option<DateTime<Utc>>,
    playbook_name: String,
    check: bool,
    hosts: IndexMap<String, HostSummary>,
    plays: Vec<PlaySummary>,
    interrupted: bool,
    elapsed: Option<Duration>,
}

/// One host: its counts, why it could not be reached, and every task result.
#[derive(Debug, Clone, Default)]
pub struct HostSummary {
    pub recap: HostRecap,
    pub unreachable: Option<String>,
    pub tasks: Vec<TaskReport>,
}

/// One play: its hosts, the task results in the order they came, and why it stopped.
#[derive(Debug, Clone, Default)]
pub struct PlaySummary {
    pub name: String,
    pub hosts: Vec<String>,
    pub tasks: Vec<TaskReport>,
    pub stopped: Option<String>,
}

/// What only the caller knows once the engine has returned.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub playbook: PathBuf,
    pub inventory: PathBuf,
    pub exit_code: i32,
    /// Why the run was refused, when it was.
    pub error: Option<String>,
}

/// The finished run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub info: RunInfo,
    pub playbook_name: String,
    pub check: bool,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub duration: Duration,
    pub interrupted: bool,
    pub hosts: IndexMap<String, HostSummary>,
    pub plays: Vec<PlaySummary>,
}

impl SummaryCollector {
    pub fn handle(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                playbook, check, ..
            } => {
                self.started = Some(Utc::now());
                self.playbook_name.clone_from(playbook);
                self.check = *check;
            }
            Event::Connected { host, .. } => {
                self.hosts.entry(host.clone()).or_default();
            }
            Event::Unreachable { host, reason } => {
                let h = self.hosts.entry(host.clone()).or_default();
                h.unreachable = Some(reason.clone());
                h.recap.unreachable += 1;
            }
            Event::PlayStarted { name, hosts } => self.plays.push(PlaySummary {
                name: name.clone(),
                hosts: hosts.clone(),
                ..PlaySummary::default()
            }),
            Event::TaskFinished(r) => {
                let h = self.hosts.entry(r.host.clone()).or_default();
                h.recap.add(r.status);
                h.tasks.push((**r).clone());
                if let Some(play) = self.plays.last_mut() {
                    play.tasks.push((**r).clone());
                }
            }
            Event::PlayStopped { reason } => {
                if let Some(play) = self.plays.last_mut() {
                    play.stopped = Some(reason.clone());
                }
            }
            Event::Interrupted => self.interrupted = true,
            Event::RunFinished { recap, elapsed } => {
                // The engine's counts are the reference (they include hosts lost silently).
                for (host, r) in recap {
                    self.hosts.entry(host.clone()).or_default().recap = r.clone();
                }
                self.elapsed = Some(*elapsed);
            }
            Event::HostKeysRefused { .. }
            | Event::BatchStarted { .. }
            | Event::TaskStarted { .. }
            | Event::Warning { .. }
            | Event::Lock { .. } => {}
        }
    }

    pub fn finish(self, info: RunInfo) -> Summary {
        let finished = Utc::now();
        let started = self.started.unwrap_or(finished);
        let duration = self
            .elapsed
            .unwrap_or_else(|| (finished - started).to_std().unwrap_or_default());
        Summary {
            info,
            playbook_name: self.playbook_name,
            check: self.check,
            started,
            finished,
            duration,
            interrupted: self.interrupted,
            hosts: self.hosts,
            plays: self.plays,
        }
    }
}

impl Summary {
    /// The `--report` document (see docs/cli.md, "Reports"), secrets masked.
    pub fn to_json(&self) -> Value {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let hosts: serde_json::Map<String, Value> = self
            .hosts
            .iter()
            .map(|(name, h)| {
                let tasks: Vec<Value> = h.tasks.iter().map(task_json).collect();
                let v = json!({
                    "recap": recap_json(&h.recap),
                    "unreachable": h.unreachable,
                    "tasks": tasks,
                });
                (name.clone(), v)
            })
            .collect();
        let refs = |wanted: fn(Status) -> bool| -> Vec<Value> {
            self.hosts
                .values()
                .flat_map(|h| h.tasks.iter())
                .filter(|t| wanted(t.status))
                .map(|t| json!({ "host": t.host, "play": t.play, "task": t.task, "status": t.status }))
                .collect()
        };
        let plays: Vec<Value> = self
            .plays
            .iter()
            .map(|p| json!({ "name": p.name, "hosts": p.hosts, "stopped": p.stopped }))
            .collect();
        let mut doc = json!({
            "run": {
                "playbook": self.info.playbook.display().to_string(),
                "playbook_name": self.playbook_name,
                "inventory": self.info.inventory.display().to_string(),
                "check": self.check,
                "started": time(&self.started),
                "finished": time(&self.finished),
                "duration": secs(self.duration.as_secs_f64()),
                "exit_code": self.info.exit_code,
                "interrupted": self.interrupted,
                "error": self.info.error,
            },
            "hosts": hosts,
            "plays": plays,
            "changed": refs(|s| s == Status::Changed),
            "failed": refs(|s| matches!(s, Status::Failed | Status::Unreachable)),
        });
        mask_value(&mut doc);
        doc
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so that a
/// reader never sees half a report.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn task(host: &str, play: &str, name: &str, status: Status) -> TaskReport {
        TaskReport {
            host: host.into(),
            play: play.into(),
            task: name.into(),
            task_index: 0,
            kind: "command",
            status,
            check_mode: false,
            note: Some("why".into()),
            command: Some("true".into()),
            exit: None,
            stdout: String::new(),
            stderr: "err line".into(),
            diff: None,
            duration: Duration::from_millis(20),
        }
    }

    /// Two plays; web-2 unreachable from the start; every status once.
    pub(crate) fn sample() -> Summary {
        let mut c = SummaryCollector::default();
        let events = [
            Event::RunStarted {
                playbook: "Site".into(),
                hosts: 2,
                check: false,
            },
            Event::Connected {
                host: "web-1".into(),
                elapsed: Duration::ZERO,
            },
            Event::Unreachable {
                host: "web-2".into(),
                reason: "connection refused".into(),
            },
            Event::PlayStarted {
                name: "Base".into(),
                hosts: vec!["web-1".into(), "web-2".into()],
            },
            Event::TaskFinished(Box::new(task("web-1", "Base", "ok", Status::Ok))),
            Event::TaskFinished(Box::new(task("web-1", "Base", "change", Status::Changed))),
            Event::PlayStarted {
                name: "App".into(),
                hosts: vec!["web-1".into()],
            },
            Event::TaskFinished(Box::new(task("web-1", "App", "skip", Status::Skipped))),
            Event::TaskFinished(Box::new(task("web-1", "App", "fail", Status::Failed))),
            Event::PlayStopped {
                reason: "any_errors_fatal".into(),
            },
        ];
        for e in &events {
            c.handle(e);
        }
        c.finish(RunInfo {
            playbook: "playbooks/site.toml".into(),
            inventory: "inventories/local.toml".into(),
            exit_code: 2,
            error: None,
        })
    }

    #[test]
    fn report_document_has_run_hosts_and_changed() {
        let doc = sample().to_json();
        assert_eq!(doc["run"]["playbook"], "playbooks/site.toml");
        assert_eq!(doc["run"]["exit_code"], 2);
        assert_eq!(doc["run"]["check"], false);
        let web1 = &doc["hosts"]["web-1"];
        assert_eq!(
            web1["recap"],
            json!({"ok": 1, "changed": 1, "failed": 1, "skipped": 1, "unreachable": 0, "cached": 0})
        );
        assert_eq!(web1["tasks"].as_array().map(Vec::len), Some(4));
        assert_eq!(doc["hosts"]["web-2"]["unreachable"], "connection refused");
        assert_eq!(doc["hosts"]["web-2"]["recap"]["unreachable"], 1);
        assert_eq!(
            doc["changed"],
            json!([{"host": "web-1", "play": "Base", "task": "change", "status": "changed"}])
        );
        assert_eq!(doc["plays"][1]["stopped"], "any_errors_fatal");
    }

    #[test]
    fn engine_recap_wins_at_the_end() {
        let mut c = SummaryCollector::default();
        c.handle(&Event::RunFinished {
            recap: vec![(
                "h".into(),
                HostRecap {
                    failed: 3,
                    ..HostRecap::default()
                },
            )],
            elapsed: Duration::from_secs(2),
        });
        let s = c.finish(RunInfo {
            playbook: "p".into(),
            inventory: "i".into(),
            exit_code: 0,
            error: None,
        });
        assert_eq!(s.hosts["h"].recap.failed, 3);
        assert_eq!(s.duration, Duration::from_secs(2));
    }

    #[test]
    fn writes_atomically_replacing_the_old_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("r.json");
        std::fs::write(&p, "old").unwrap_or_else(|e| panic!("{e}"));
        write_atomically(&p, b"new").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(&p).ok().as_deref(), Some("new"));
        assert_eq!(
            std::fs::read_dir(dir.path()).map(Iterator::count).ok(),
            Some(1)
        );
    }
}
