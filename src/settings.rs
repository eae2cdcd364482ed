//! capstan's own settings: the inventory's `[settings]` table, typed, with its defaults and
//! the rules each value must follow.
//!
//! `inventory::settings` reads the table when the inventory loads (so `validate`,
//! `run --check` and `run` refuse the same mistakes at the same place, before anything
//! connects); everything else reads the getters of [`Settings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bytesize::ByteSize;
use crate::template::shell_quote;

/// Every key `[settings]` accepts, in the order docs/inventory.md lists them.
pub(crate) const KEYS: [&str; 9] = [
    "cache",
    "cache_ttl",
    "cluster",
    "lock_dir",
    "lock_stale_after",
    "audit_log",
    "output_limit",
    "connect_concurrency",
    "kill_grace",
];

/// Default lifetime of a cache entry.
pub(crate) const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub(crate) const MIN_CACHE_TTL: Duration = Duration::from_secs(1);
pub(crate) const MIN_CACHE_TTL_REASON: &str = "to keep no cache at all, write cache = \"off\"";
pub(crate) const OUTPUT_LIMIT_REASON: &str = "less would cut even a short error message; more is held \
    in memory for every host at once";

pub(crate) const DEFAULT_LOCK_STALE_AFTER: Duration = Duration::from_secs(120);
pub(crate) const MIN_LOCK_STALE_AFTER: Duration = Duration::from_secs(10);
pub(crate) const MIN_LOCK_STALE_AFTER_REASON: &str = "a run refreshes its heartbeat every quarter of \
    lock_stale_after; a shorter time lets a slow link or a busy controller make a live run look \
    dead, and another run would break its lock";

pub(crate) const DEFAULT_OUTPUT_LIMIT: ByteSize = ByteSize::mib(1);
pub(crate) const MIN_OUTPUT_LIMIT: ByteSize = ByteSize::kib(1);
pub(crate) const MAX_OUTPUT_LIMIT: ByteSize = ByteSize::gib(1);

pub(crate) const DEFAULT_CONNECT_CONCURRENCY: usize = 100;

pub(crate) const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
pub(crate) const MIN_KILL_GRACE: Duration = Duration::from_secs(1);
pub(crate) const MIN_KILL_GRACE_REASON: &str =
    "a command needs a moment after SIGTERM to clean up before it is killed";

/// Where the per-host result cache lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStore {
    /// `.capstan/cache/HOST.jsonl` beside the inventory (the default).
    Local,
    /// On each target host, `~/.capstan/cache.jsonl`, so a fresh CI runner sees earlier runs.
    Remote,
    /// No cache: nothing is recorded or skipped.
    Off,
}

impl CacheStore {
    pub(crate) const NAMES: [(&'static str, CacheStore); 3] = [
        ("local", CacheStore::Local),
        ("remote", CacheStore::Remote),
        ("off", CacheStore::Off),
    ];
}

/// Result-cache settings, as the cache backend needs them.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub store: CacheStore,
    pub ttl: Duration,
    /// Directory of the local store.
    pub dir: PathBuf,
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
    /// # Errors
    /// The path is empty or cannot be quoted for a shell (it holds a NUL).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a path cannot be empty".to_owned());
        }
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

/// The typed `[settings]` of one inventory. Fields are set by `inventory::settings`, which
/// checks every value; [`Settings::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) cache: CacheStore,
    pub(crate) cache_ttl: Duration,
    pub(crate) cluster: String,
    pub(crate) lock_dir: Option<RemotePath>,
    pub(crate) audit_log: Option<RemotePath>,
    pub(crate) lock_stale_after: Duration,
    pub(crate) output_limit: ByteSize,
    pub(crate) connect_concurrency: usize,
    pub(crate) kill_grace: Duration,
    pub(crate) state_dir: PathBuf,
}

impl Settings {
    /// The defaults for the inventory at `inventory_path`: the cluster is named after the
    /// file's stem (checked by `inventory::settings`, not here).
    pub fn new(inventory_path: &Path) -> Self {
        Self {
            cache: CacheStore::Local,
            cache_ttl: DEFAULT_CACHE_TTL,
            cluster: file_stem(inventory_path),
            lock_dir: None,
            audit_log: None,
            lock_stale_after: DEFAULT_LOCK_STALE_AFTER,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            connect_concurrency: DEFAULT_CONNECT_CONCURRENCY,
            kill_grace: DEFAULT_KILL_GRACE,
            state_dir: state_dir(inventory_path),
        }
    }

    /// The result cache: `cache`, `cache_ttl`, and `.capstan/cache/` beside the inventory.
    pub fn cache(&self) -> CacheSettings {
        CacheSettings {
            store: self.cache,
            ttl: self.cache_ttl,
            dir: self.state_dir.join("cache"),
        }
    }

    /// Names the cluster in lock messages and audit records: `cluster`, else the file stem.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `lock_dir` when set; the lock has its own default otherwise.
    pub fn lock_dir(&self) -> Option<&RemotePath> {
        self.lock_dir.as_ref()
    }

    /// `audit_log` when set; by default it sits beside the lock directory.
    pub fn audit_log(&self) -> Option<&RemotePath> {
        self.audit_log.as_ref()
    }

    /// A run's lock whose heartbeat is older than this is stale (default 2m, at least 10s).
    pub fn lock_stale_after(&self) -> Duration {
        self.lock_stale_after
    }

    /// The most output capstan keeps from one command (default 1MiB).
    pub fn output_limit(&self) -> ByteSize {
        self.output_limit
    }

    /// How many hosts are connected to at once (default 100).
    pub fn connect_concurrency(&self) -> usize {
        self.connect_concurrency
    }

    /// How long running commands get after SIGTERM or Ctrl-C before they are killed
    /// (default 10s).
    pub fn kill_grace(&self) -> Duration {
        self.kill_grace
    }

    /// `.capstan/` beside the inventory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// `.capstan/` beside the inventory file: the local cache, last-run records, audit log.
pub(crate) fn state_dir(inventory_path: &Path) -> PathBuf {
    inventory_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(".capstan"), |d| d.join(".capstan"))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A cluster name becomes a directory name on every host: keep it plain.
///
/// # Errors
/// The name is empty, starts with `.`, or holds anything but letters, digits, `.`, `_`, `-`.
pub(crate) fn check_cluster_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || !plain || name.starts_with('.') {
        return Err(format!(
            "`{name}` cannot name a cluster lock: use letters, digits, `.`, `_` and `-`, not starting with `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_inventory_path() {
        let s = Settings::new(Path::new("inventories/staging.toml"));
        assert_eq!(s.cluster(), "staging");
        assert_eq!(s.state_dir(), Path::new("inventories/.capstan"));
        let cache = s.cache();
        assert_eq!(
            (cache.store, cache.ttl, cache.dir),
            (
                CacheStore::Local,
                DEFAULT_CACHE_TTL,
                PathBuf::from("inventories/.capstan/cache")
            )
        );
        assert_eq!(s.lock_stale_after(), Duration::from_secs(120));
        assert_eq!(s.output_limit().bytes(), 1 << 20);
        assert_eq!(s.connect_concurrency(), 100);
        assert_eq!(s.kill_grace(), Duration::from_secs(10));
        assert_eq!((s.lock_dir(), s.audit_log()), (None, None));
        assert_eq!(
            Settings::new(Path::new("inv.toml")).state_dir(),
            Path::new(".capstan")
        );
    }

    #[test]
    fn remote_paths_expand_home_and_quote_the_rest() {
        let shell = |raw: &str| RemotePath::parse(raw).map(|p| p.shell);
        assert_eq!(shell("~/locks dir"), Ok("\"$HOME\"/'locks dir'".to_owned()));
        assert_eq!(shell("$HOME/x"), Ok("\"$HOME\"/x".to_owned()));
        assert_eq!(shell("~"), Ok("\"$HOME\"".to_owned()));
        assert_eq!(shell("/var/log/a.jsonl"), Ok("/var/log/a.jsonl".to_owned()));
        assert_eq!(shell("/tmp/$(reboot)"), Ok("'/tmp/$(reboot)'".to_owned()));
        assert!(shell("").is_err());
        assert!(shell("/a\0b").is_err());
    }

    #[test]
    fn cluster_names_stay_plain() {
        for ok in ["dtr-prod", "a.b_c", "X1"] {
            assert_eq!(check_cluster_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".hidden", "../etc", "bad name/with slash", "é"] {
            assert!(check_cluster_name(bad).is_err(), "{bad:?}");
        }
    }
}
