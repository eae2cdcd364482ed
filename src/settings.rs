//! Typed reading of the inventory's free-form `[settings]` table: the result cache and the
//! features that later read it. A bad value is an error naming the file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::Diagnostic;
use crate::inventory::Inventory;

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

/// Result-cache settings.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub store: CacheStore,
    pub ttl: Duration,
    /// Directory of the local store.
    pub dir: PathBuf,
}

/// Default lifetime of a cache entry.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl CacheSettings {
    pub fn from_inventory(inv: &Inventory) -> Result<Self, Diagnostic> {
        let base = state_dir(&inv.path);
        let store = match string(inv, "cache")?.as_deref() {
            None | Some("local") => CacheStore::Local,
            Some("remote") => CacheStore::Remote,
            Some("off") => CacheStore::Off,
            Some(other) => {
                return Err(located(
                    inv,
                    "cache",
                    format!(
                        "key \"cache\" in [settings] must be \"local\", \"remote\" or \"off\", not \"{other}\""
                    ),
                ));
            }
        };
        let ttl = duration(inv, "cache_ttl")?.unwrap_or(DEFAULT_CACHE_TTL);
        Ok(Self {
            store,
            ttl,
            dir: base.join("cache"),
        })
    }
}

/// `.capstan/` beside the inventory file: the local cache, last-run records, audit log.
pub fn state_dir(inventory_path: &Path) -> PathBuf {
    inventory_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(".capstan"), |d| d.join(".capstan"))
}

/// A string setting, or `None` when absent.
pub fn string(inv: &Inventory, key: &str) -> Result<Option<String>, Diagnostic> {
    match inv.settings.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(located(
            inv,
            key,
            format!(
                "key \"{key}\" in [settings] must be a string, found {}",
                other.type_str()
            ),
        )),
    }
}

/// A duration setting (`"90s"`, `"7d"`, or an integer of seconds), or `None` when absent.
pub fn duration(inv: &Inventory, key: &str) -> Result<Option<Duration>, Diagnostic> {
    let bad = |found: String| {
        located(
            inv,
            key,
            format!(
                "key \"{key}\" in [settings] must be a duration like \"10m\" or \"7d\", {found}"
            ),
        )
    };
    match inv.settings.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(Duration::from_secs(n.unsigned_abs()))),
        Some(toml::Value::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(Some(d)),
            Ok(_) => Err(bad("not zero".into())),
            Err(e) => Err(bad(format!("not \"{s}\" ({e})"))),
        },
        Some(other) => Err(bad(format!("found {}", other.type_str()))),
    }
}

/// An error at `key` inside `[settings]`, located by reading the file again.
fn located(inv: &Inventory, key: &str, message: String) -> Diagnostic {
    let Ok(source) = std::fs::read_to_string(&inv.path) else {
        return Diagnostic::in_file(&inv.path, message);
    };
    let mut in_settings = false;
    for (i, line) in source.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_settings = t.starts_with("[settings]");
            continue;
        }
        if in_settings
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            let column = line.len() - t.len() + 1;
            return Diagnostic::at_line(&inv.path, &source, i + 1, column, message);
        }
    }
    Diagnostic::in_file(&inv.path, message)
}
