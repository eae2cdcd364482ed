//! The audit trail: every run that changed something (or failed; never `--check`) appends
//! one JSON line to an audit log on each target host (beside the lock directory, written as
//! the lock is released) and locally, in `.capstan/audit.jsonl` beside the inventory.
//! `capstan audit` shows the history newest first; corrupt lines are skipped with a warning.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::RunOutcome;
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::lock::LockInfo;
use crate::report::event::HostRecap;
use crate::transport::ExecRequest;

/// One run, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the run finished (control machine's clock), RFC 3339.
    pub time: String,
    pub started: String,
    /// The same on every host's log and the local one: merging dedupes by it.
    pub run_id: String,
    /// `user@machine`.
    pub who: String,
    pub hostname: String,
    pub cwd: String,
    pub cluster: String,
    pub playbook: FileDigest,
    pub inventory: FileDigest,
    #[serde(default)]
    pub message: Option<String>,
    pub exit_code: i32,
    pub hosts: IndexMap<String, HostEntry>,
    #[serde(default)]
    pub capstan: String,
}

/// A file by path and content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    /// `None` when the file could not be read any more.
    pub sha256: Option<String>,
}

impl FileDigest {
    fn of(path: &Path) -> Self {
        Self {
            path: path.display().to_string(),
            sha256: std::fs::read(path)
                .ok()
                .map(|bytes| hex::encode(Sha256::digest(bytes))),
        }
    }
}

/// One host's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEntry {
    pub recap: HostRecap,
    #[serde(default)]
    pub changed: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
}

impl Record {
    /// The record of a finished run, or `None` when no host changed or failed.
    pub fn for_run(
        info: &LockInfo,
        run_id: &str,
        inventory: &Path,
        outcome: &RunOutcome,
    ) -> Option<Record> {
        let touched = outcome
            .recap
            .values()
            .any(|r| r.changed > 0 || r.failed > 0);
        if !touched {
            return None;
        }
        let hosts = outcome
            .recap
            .iter()
            .map(|(name, recap)| {
                let entry = HostEntry {
                    recap: recap.clone(),
                    changed: outcome.changes.get(name).cloned().unwrap_or_default(),
                    failed: outcome.failures.get(name).cloned().unwrap_or_default(),
                };
                (name.clone(), entry)
            })
            .collect();
        let playbook = info.playbook.clone().unwrap_or_default();
        Some(Record {
            time: crate::report::json::now_rfc3339(),
            started: info.started.clone(),
            run_id: run_id.to_owned(),
            who: info.who.clone(),
            hostname: crate::lock::machine(),
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            cluster: info.cluster.clone(),
            playbook: FileDigest::of(Path::new(&playbook)),
            inventory: FileDigest::of(inventory),
            message: info.message.clone(),
            exit_code: outcome.exit_code(),
            hosts,
            capstan: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// One JSON line (no newline), secrets masked.
    pub fn to_line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        crate::report::json::mask_value(&mut v);
        v.to_string()
    }

    /// Whether the run touched any of `hosts`.
    fn touches(&self, hosts: &[String]) -> bool {
        self.hosts.keys().any(|h| hosts.contains(h))
    }
}

/// The local log: `.capstan/audit.jsonl` beside the inventory.
pub fn local_log(inventory: &Path) -> PathBuf {
    let dir = match inventory.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.join(".capstan").join("audit.jsonl")
}

/// Appends `record` to the local log, in one write.
///
/// # Errors
/// The log's directory cannot be made or the file cannot be written.
pub fn append_local(inventory: &Path, record: &Record) -> std::io::Result<PathBuf> {
    let path = local_log(inventory);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(format!("{}\n", record.to_line()).as_bytes())?;
    Ok(path)
}

/// Reads a log's text: its records, and a warning for each line that is not one.
pub fn parse_log(text: &str, source: &str) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(r) => records.push(r),
            Err(e) => warnings.push(format!(
                "warning: {source}:{}: skipped a line that is not an audit record: {e}",
                i + 1
            )),
        }
    }
    (records, warnings)
}

/// Merges records from several logs: one per run, newest first, only those touching
/// `hosts` when given.
pub fn merge(logs: Vec<Vec<Record>>, hosts: Option<&[String]>) -> Vec<Record> {
    let mut by_run: BTreeMap<String, Record> = BTreeMap::new();
    for r in logs.into_iter().flatten() {
        if hosts.is_none_or(|h| r.touches(h)) {
            by_run.entry(r.run_id.clone()).or_insert(r);
        }
    }
    let mut all: Vec<Record> = by_run.into_values().collect();
    // RFC 3339 in UTC with the same precision sorts as text.
    all.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.run_id.cmp(&a.run_id)));
    all
}

/// What `capstan audit` prints: the history on stdout, warnings on stderr.
#[derive(Debug)]
pub struct AuditOutput {
    pub code: i32,
    pub text: String,
    pub warnings: Vec<String>,
}

/// One `capstan audit` command.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    pub inventory: PathBuf,
    pub limit: Option<String>,
    /// Read the hosts' logs instead of the local one.
    pub remote: bool,
    /// One JSON record a line instead of the history for a person.
    pub json: bool,
    pub connect: crate::transport::ConnectOptions,
}

/// Runs `capstan audit`: the local log, or with `--remote` the hosts' logs merged.
///
/// # Errors
/// Unreadable inventory or settings, an invalid `--limit`, an unreadable local log.
pub async fn command(args: &AuditRequest) -> Result<AuditOutput, Error> {
    let inventory = Inventory::load(&args.inventory)?;
    let hosts: Option<Vec<String>> = match &args.limit {
        Some(p) => Some(
            inventory
                .select(p)
                .map_err(|e| Error::Refused(format!("--limit: {e}")))?
                .iter()
                .map(|h| h.name.clone())
                .collect(),
        ),
        None => None,
    };
    let mut code = exit::SUCCESS;
    let mut warnings = Vec::new();
    let mut logs = Vec::new();
    if args.remote {
        let settings = crate::lock::LockSettings::from_inventory(&inventory);
        let (targets, unreachable) =
            crate::lock::command::connect(&inventory, args.limit.as_deref(), &args.connect).await?;
        for (host, why) in unreachable {
            code = exit::HOSTS_FAILED;
            warnings.push(format!("warning: {host}: unreachable: {why}"));
        }
        let req = ExecRequest {
            command: format!("cat {} 2>/dev/null; true", settings.audit_log.shell),
            stdin: None,
            timeout: Some(std::time::Duration::from_secs(60)),
        };
        let read = futures::future::join_all(targets.iter().map(|(host, session)| {
            let req = &req;
            async move { (host.clone(), session.exec(req).await) }
        }))
        .await;
        for (host, r) in read {
            match r {
                Ok(out) => {
                    let source = format!("{host}:{}", settings.audit_log.shown);
                    let (records, w) = parse_log(&String::from_utf8_lossy(&out.stdout), &source);
                    logs.push(records);
                    warnings.extend(w);
                }
                Err(e) => {
                    code = exit::HOSTS_FAILED;
                    warnings.push(format!("warning: {host}: cannot read the audit log: {e}"));
                }
            }
        }
        for (_, s) in targets {
            if let Some(s) = std::sync::Arc::into_inner(s) {
                s.close().await;
            }
        }
    } else {
        let path = local_log(&inventory.path);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (records, w) = parse_log(
                    &String::from_utf8_lossy(&bytes),
                    &path.display().to_string(),
                );
                logs.push(records);
                warnings.extend(w);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot read `{}`: {e}",
                    path.display()
                )));
            }
        }
    }
    let records = merge(logs, hosts.as_deref());
    let text = if args.json {
        records.iter().map(|r| r.to_line() + "\n").collect()
    } else {
        render(&records)
    };
    Ok(AuditOutput {
        code,
        text,
        warnings,
    })
}

/// The history for a person.
pub fn render(records: &[Record]) -> String {
    if records.is_empty() {
        return "no recorded runs\n".to_owned();
    }
    let mut s = String::new();
    for r in records {
        let _ = write!(
            s,
            "{}  {}  exit {}  {}  (cluster {})",
            r.time, r.who, r.exit_code, r.playbook.path, r.cluster
        );
        if let Some(m) = &r.message {
            let _ = write!(s, "  \"{m}\"");
        }
        s.push('\n');
        let width = r.hosts.keys().map(String::len).max().unwrap_or(0);
        for (host, e) in &r.hosts {
            let _ = write!(
                s,
                "    {host:<width$}  ok={} changed={} failed={} unreachable={}",
                e.recap.ok, e.recap.changed, e.recap.failed, e.recap.unreachable
            );
            if !e.changed.is_empty() {
                let _ = write!(s, "  changed: {}", e.changed.join(", "));
            }
            if !e.failed.is_empty() {
                let _ = write!(s, "  failed: {}", e.failed.join(", "));
            }
            s.push('\n');
        }
    }
    crate::secrets::mask(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, run_id: &str, host: &str) -> Record {
        let mut hosts = IndexMap::new();
        hosts.insert(
            host.to_owned(),
            HostEntry {
                recap: HostRecap {
                    ok: 1,
                    changed: 1,
                    ..HostRecap::default()
                },
                changed: vec!["Render config".into()],
                failed: vec![],
            },
        );
        Record {
            time: time.into(),
            started: time.into(),
            run_id: run_id.into(),
            who: "alice@laptop".into(),
            hostname: "laptop".into(),
            cwd: "/srv/ops".into(),
            cluster: "staging".into(),
            playbook: FileDigest {
                path: "playbooks/site.toml".into(),
                sha256: Some("ab".into()),
            },
            inventory: FileDigest {
                path: "inventories/staging.toml".into(),
                sha256: None,
            },
            message: Some("upgrade".into()),
            exit_code: 0,
            hosts,
            capstan: "0.1.0".into(),
        }
    }

    #[test]
    fn corrupt_lines_are_skipped_with_a_warning() {
        let good = record("2025-01-01T00:00:00.000Z", "r1", "web-1").to_line();
        let text = format!("{good}\nnot json\n{{\"time\":1}}\n\n{good}\n");
        let (records, warnings) = parse_log(&text, "audit.jsonl");
        assert_eq!(records.len(), 2);
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].starts_with("warning: audit.jsonl:2: skipped"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("warning: audit.jsonl:3: skipped"),
            "{warnings:?}"
        );
    }

    #[test]
    fn merge_dedupes_runs_filters_hosts_and_puts_newest_first() {
        let a = record("2025-01-01T00:00:00.000Z", "r1", "web-1");
        let b = record("2025-01-02T00:00:00.000Z", "r2", "web-2");
        let merged = merge(vec![vec![a.clone(), b.clone()], vec![a.clone()]], None);
        assert_eq!(merged, vec![b.clone(), a.clone()]);
        let only = merge(vec![vec![a.clone(), b]], Some(&["web-1".to_owned()]));
        assert_eq!(only, vec![a]);
    }

    #[test]
    fn renders_who_what_and_changes() {
        let text = render(&[record("2025-01-01T00:00:00.000Z", "r1", "web-1")]);
        assert_eq!(
            text,
            "2025-01-01T00:00:00.000Z  alice@laptop  exit 0  playbooks/site.toml  (cluster staging)  \"upgrade\"\n    web-1  ok=1 changed=1 failed=0 unreachable=0  changed: Render config\n"
        );
    }
}
