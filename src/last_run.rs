//! What the last run of a playbook against an inventory did to each host, for
//! `--retry-failed`. Kept in `.capstan/last-run/` beside the inventory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::RunOutcome;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastRun {
    pub playbook: PathBuf,
    pub inventory: PathBuf,
    pub finished: String,
    /// Host → `ok`, `failed` or `unreachable`.
    pub hosts: BTreeMap<String, String>,
}

impl LastRun {
    pub fn from_outcome(playbook: &Path, inventory: &Path, outcome: &RunOutcome) -> Self {
        let hosts = outcome
            .recap
            .iter()
            .map(|(h, r)| {
                let state = if r.unreachable > 0 {
                    "unreachable"
                } else if r.failed > 0 {
                    "failed"
                } else {
                    "ok"
                };
                (h.clone(), state.to_owned())
            })
            .collect();
        Self {
            playbook: playbook.to_path_buf(),
            inventory: inventory.to_path_buf(),
            finished: chrono::Utc::now().to_rfc3339(),
            hosts,
        }
    }

    /// Hosts that failed or were unreachable, in name order.
    pub fn failed_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(_, s)| s.as_str() != "ok")
            .map(|(h, _)| h.clone())
            .collect()
    }
}

/// The record's file for this playbook and inventory.
pub fn path(playbook: &Path, inventory: &Path) -> PathBuf {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut h = Sha256::new();
    h.update(canon(playbook).to_string_lossy().as_bytes());
    h.update([0]);
    h.update(canon(inventory).to_string_lossy().as_bytes());
    let name = format!("{}.json", &hex::encode(h.finalize())[..16]);
    crate::settings::state_dir(inventory)
        .join("last-run")
        .join(name)
}

pub fn save(record: &LastRun) -> Result<(), String> {
    let p = path(&record.playbook, &record.inventory);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(record).map_err(|e| e.to_string())?;
    crate::cache::write_atomically(&p, text.as_bytes())
        .map_err(|e| format!("`{}`: {e}", p.display()))
}

/// The last record, if there is a readable one.
pub fn load(playbook: &Path, inventory: &Path) -> Result<Option<LastRun>, String> {
    let p = path(playbook, inventory);
    match std::fs::read_to_string(&p) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("`{}` is not a last-run record: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("`{}`: {e}", p.display())),
    }
}
