//! The lock's `[settings]` in the inventory: `cluster`, `lock_dir`, `lock_stale_after`
//! and `audit_log` (read and checked with the inventory, see [`crate::settings`]), with the
//! lock's own defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::inventory::Inventory;
pub use crate::settings::RemotePath;

/// Where locks live on a host when `[settings] lock_dir` is not set: `$CAPSTAN_LOCK_DIR` in
/// the host's environment, else `~/.capstan/lock`.
const DEFAULT_LOCK_DIR: &str = "\"${CAPSTAN_LOCK_DIR:-$HOME/.capstan/lock}\"";

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
    /// The lock's view of the inventory's settings (checked when it loaded), with the
    /// lock's defaults filled in.
    pub fn from_inventory(inv: &Inventory) -> Self {
        let s = &inv.settings;
        let lock_dir = s.lock_dir().cloned().unwrap_or_else(|| RemotePath {
            shown: "$CAPSTAN_LOCK_DIR or ~/.capstan/lock".to_owned(),
            shell: DEFAULT_LOCK_DIR.to_owned(),
        });
        let audit_log = s.audit_log().cloned().unwrap_or_else(|| RemotePath {
            shown: format!("audit.jsonl beside {}", lock_dir.shown),
            shell: format!("\"$(dirname -- {})\"/audit.jsonl", lock_dir.shell),
        });
        Self {
            cluster: s.cluster().to_owned(),
            lock_dir,
            audit_log,
            stale_after: s.lock_stale_after(),
            inventory: inv.path.clone(),
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn inv(settings: &str) -> Inventory {
        let source = format!("[settings]\n{settings}\n");
        Inventory::parse(Path::new("inventories/staging.toml"), &source)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_name_the_cluster_after_the_inventory() {
        let s = LockSettings::from_inventory(&inv(""));
        assert_eq!(s.cluster, "staging");
        assert_eq!(s.lock_dir.shell, DEFAULT_LOCK_DIR);
        assert_eq!(
            s.audit_log.shell,
            "\"$(dirname -- \"${CAPSTAN_LOCK_DIR:-$HOME/.capstan/lock}\")\"/audit.jsonl"
        );
        assert_eq!(s.stale_after, Duration::from_secs(120));
        assert_eq!(s.heartbeat_every(), Duration::from_secs(30));
        assert_eq!(s.inventory, Path::new("inventories/staging.toml"));
    }

    #[test]
    fn settings_override_and_home_expands() {
        let s = LockSettings::from_inventory(&inv(
            "cluster = \"dtr-prod\"\nlock_dir = \"~/locks dir\"\nlock_stale_after = \"10s\"\naudit_log = \"/var/log/capstan.jsonl\"",
        ));
        assert_eq!(s.cluster, "dtr-prod");
        assert_eq!(s.lock_dir.shell, "\"$HOME\"/'locks dir'");
        assert_eq!(s.audit_log.shell, "/var/log/capstan.jsonl");
        assert_eq!(s.heartbeat_every(), Duration::from_millis(2500));
        assert_eq!(s.stale_secs(), 10);
    }

    #[test]
    fn the_default_audit_log_follows_a_custom_lock_dir() {
        let s = LockSettings::from_inventory(&inv("lock_dir = \"/srv/lock\""));
        assert_eq!(s.audit_log.shell, "\"$(dirname -- /srv/lock)\"/audit.jsonl");
        assert_eq!(s.audit_log.shown, "audit.jsonl beside /srv/lock");
    }
}
