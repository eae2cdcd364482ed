//! The lock's `[settings]` in the inventory: `cluster`, `lock_dir`, `lock_stale_after`
//! and `audit_log`, with their defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::inventory::Inventory;
use crate::template::shell_quote;

/// Where locks live on a host when `[settings] lock_dir` is not set: `$CAPSTAN_LOCK_DIR` in
/// the host's environment, else `~/.capstan/lock`.
const DEFAULT_LOCK_DIR: &str = "\"${CAPSTAN_LOCK_DIR:-$HOME/.capstan/lock}\"";
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(120);

/// A bad `[settings]` value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{}`: [settings] `{key}`: {reason}", file.display())]
pub struct SettingsError {
    pub file: PathBuf,
    pub key: &'static str,
    pub reason: String,
}

/// A path on a target host, as a shell word: `~/` and `$HOME/` expand, the rest is quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath {
    /// As the operator wrote it, for messages.
    pub shown: String,
    /// As the shell should see it.
    pub shell: String,
}

impl RemotePath {
    fn parse(raw: &str) -> Result<Self, String> {
        let home_rest = raw
            .strip_prefix("~/")
            .or_else(|| raw.strip_prefix("$HOME/"))
            .or_else(|| raw.strip_prefix("${HOME}/"));
        let quote = |s: &str| shell_quote(s).map_err(|e| e.to_string());
        let shell = match home_rest {
            Some("") => "\"$HOME\"".to_owned(),
            Some(rest) => format!("\"$HOME\"/{}", quote(rest)?),
            None if raw == "~" => "\"$HOME\"".to_owned(),
            None => quote(raw)?,
        };
        Ok(Self {
            shown: raw.to_owned(),
            shell,
        })
    }
}

/// The lock's settings for one inventory.
#[derive(Debug, Clone)]
pub struct LockSettings {
    /// Names the lock: `[settings] cluster`, else the inventory file's stem.
    pub cluster: String,
    /// The directory holding one lock directory per cluster.
    pub lock_dir: RemotePath,
    /// The hosts' audit log: `[settings] audit_log`, else `audit.jsonl` beside `lock_dir`.
    pub audit_log: RemotePath,
    /// A run's lock whose heartbeat is older than this is stale.
    pub stale_after: Duration,
    pub inventory: PathBuf,
}

impl LockSettings {
    /// # Errors
    /// A setting of the wrong type, an unusable cluster name, an unreadable duration.
    pub fn from_inventory(inv: &Inventory) -> Result<Self, SettingsError> {
        let err = |key, reason: String| SettingsError {
            file: inv.path.clone(),
            key,
            reason,
        };
        let text = |key: &'static str| -> Result<Option<String>, SettingsError> {
            match inv.settings.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(v) => Err(err(key, format!("expected a non-empty string, found {v}"))),
            }
        };
        let cluster = match text("cluster")? {
            Some(c) => c,
            None => stem(&inv.path),
        };
        check_cluster_name(&cluster).map_err(|r| err("cluster", r))?;
        let lock_dir = match text("lock_dir")? {
            Some(raw) => RemotePath::parse(&raw).map_err(|r| err("lock_dir", r))?,
            None => RemotePath {
                shown: "$CAPSTAN_LOCK_DIR or ~/.capstan/lock".to_owned(),
                shell: DEFAULT_LOCK_DIR.to_owned(),
            },
        };
        let audit_log = match text("audit_log")? {
            Some(raw) => RemotePath::parse(&raw).map_err(|r| err("audit_log", r))?,
            None => RemotePath {
                shown: format!("audit.jsonl beside {}", lock_dir.shown),
                shell: format!("\"$(dirname -- {})\"/audit.jsonl", lock_dir.shell),
            },
        };
        let stale_after = match text("lock_stale_after")? {
            Some(raw) => humantime::parse_duration(&raw)
                .map_err(|e| err("lock_stale_after", format!("`{raw}`: {e} (e.g. \"2m\")")))?,
            None => DEFAULT_STALE_AFTER,
        };
        if stale_after < Duration::from_secs(2) {
            return Err(err(
                "lock_stale_after",
                "must be at least 2s: heartbeats are written every second at most".to_owned(),
            ));
        }
        Ok(Self {
            cluster,
            lock_dir,
            audit_log,
            stale_after,
            inventory: inv.path.clone(),
        })
    }

    /// How often a run refreshes its heartbeat: a quarter of `lock_stale_after`, between 1s
    /// and 30s, so a live run is never judged stale.
    pub fn heartbeat_every(&self) -> Duration {
        (self.stale_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// `lock_stale_after` in whole seconds, as the hosts' scripts compare it.
    pub fn stale_secs(&self) -> u64 {
        self.stale_after.as_secs().max(1)
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A cluster name becomes a directory name on every host: keep it plain.
fn check_cluster_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || !plain || name.starts_with('.') {
        return Err(format!(
            "`{name}` cannot name a lock: use letters, digits, `.`, `_` and `-`, not starting with `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(settings: &str) -> Inventory {
        Inventory {
            path: PathBuf::from("inventories/staging.toml"),
            vars: Default::default(),
            default_vars: Default::default(),
            hosts: Default::default(),
            groups: Default::default(),
            settings: settings.parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn defaults_name_the_cluster_after_the_inventory() {
        let s = LockSettings::from_inventory(&inv("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.cluster, "staging");
        assert_eq!(s.lock_dir.shell, DEFAULT_LOCK_DIR);
        assert_eq!(
            s.audit_log.shell,
            "\"$(dirname -- \"${CAPSTAN_LOCK_DIR:-$HOME/.capstan/lock}\")\"/audit.jsonl"
        );
        assert_eq!(s.stale_after, Duration::from_secs(120));
        assert_eq!(s.heartbeat_every(), Duration::from_secs(30));
    }

    #[test]
    fn settings_override_and_home_expands() {
        let s = LockSettings::from_inventory(&inv(
            "cluster = \"dtr-prod\"\nlock_dir = \"~/locks dir\"\nlock_stale_after = \"2s\"\naudit_log = \"/var/log/capstan.jsonl\"",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.cluster, "dtr-prod");
        assert_eq!(s.lock_dir.shell, "\"$HOME\"/'locks dir'");
        assert_eq!(s.audit_log.shell, "/var/log/capstan.jsonl");
        assert_eq!(s.heartbeat_every(), Duration::from_secs(1));
        assert_eq!(s.stale_secs(), 2);
    }

    #[test]
    fn refuses_unusable_values() {
        let msg = |src: &str| match LockSettings::from_inventory(&inv(src)) {
            Ok(_) => panic!("accepted {src}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            msg("cluster = \"../etc\""),
            "`inventories/staging.toml`: [settings] `cluster`: `../etc` cannot name a lock: use letters, digits, `.`, `_` and `-`, not starting with `.`"
        );
        assert!(msg("lock_dir = 3").contains("expected a non-empty string, found 3"));
        assert!(msg("lock_stale_after = \"soon\"").contains("`soon`"));
        assert!(msg("lock_stale_after = \"1s\"").contains("at least 2s"));
    }
}
