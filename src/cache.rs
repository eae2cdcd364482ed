//! The per-host result cache: what finished on a host in an earlier run, so that a rerun
//! skips it and an interrupted run resumes where it stopped.
//!
//! An entry's key is a digest of the host's identity (name, address, host-key fingerprint),
//! the task's identity (play, index, name, kind) and the task as rendered for that host
//! (command text and guards, so every variable it used). Only work whose query cannot tell
//! whether it is done is recorded — an unguarded command that is not declared read-only.
//! Guards, file hashes and facts are cheap and authoritative: they always run, so an
//! out-of-band change on a host is always noticed. A failed, timed-out or interrupted task is
//! never recorded.
//!
//! Entries are JSON lines, one file per host. Reading tolerates a corrupt or truncated file:
//! bad lines are dropped with a warning, never trusted. Writing replaces the whole file
//! atomically (temp file, fsync, rename) under an exclusive lock.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One finished task on one host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheEntry {
    pub key: String,
    pub host: String,
    pub play: String,
    pub task: String,
    /// Seconds since the Unix epoch.
    pub recorded_at: u64,
    pub changed: bool,
    /// What `register` stored (secrets masked), replayed on a hit.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
}

/// Who a host is, for cache keys: a rebuilt host with a new key is a new host.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    pub name: String,
    pub address: String,
    pub fingerprint: String,
}

/// The digest that names one task as rendered for one host.
pub fn task_key(
    host: &HostIdentity,
    play: &str,
    index: usize,
    task: &str,
    kind: &str,
    rendered: &[&str],
) -> String {
    let mut h = Sha256::new();
    for part in [
        "capstan-cache-v1",
        &host.name,
        &host.address,
        &host.fingerprint,
        play,
        &index.to_string(),
        task,
        kind,
    ]
    .into_iter()
    .chain(rendered.iter().copied())
    {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A host's entries, as loaded, plus what this run recorded.
#[derive(Debug, Default, Clone)]
pub struct HostCache {
    entries: HashMap<String, CacheEntry>,
    pending: Vec<CacheEntry>,
}

impl HostCache {
    pub fn hit(&self, key: &str) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    pub fn record(&mut self, entry: CacheEntry) {
        self.entries.insert(entry.key.clone(), entry.clone());
        self.pending.push(entry);
    }

    /// Entries recorded since the last call.
    pub fn take_pending(&mut self) -> Vec<CacheEntry> {
        std::mem::take(&mut self.pending)
    }

    pub fn entries(&self) -> impl Iterator<Item = &CacheEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses JSON lines, dropping bad and expired entries. Returns the cache and how many lines
/// were dropped as corrupt.
pub fn parse(text: &str, ttl: Duration, now: u64) -> (HostCache, usize) {
    let mut cache = HostCache::default();
    let mut corrupt = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<CacheEntry>(line) {
            Ok(e) if e.key.len() == 64 => {
                if now.saturating_sub(e.recorded_at) <= ttl.as_secs() && e.recorded_at <= now + 300
                {
                    cache.entries.insert(e.key.clone(), e);
                }
            }
            _ => corrupt += 1,
        }
    }
    (cache, corrupt)
}

/// The JSON-lines text of `entries`, oldest first.
pub fn render<'a>(entries: impl Iterator<Item = &'a CacheEntry>) -> String {
    let mut all: Vec<&CacheEntry> = entries.collect();
    all.sort_by(|a, b| (a.recorded_at, &a.key).cmp(&(b.recorded_at, &b.key)));
    let mut out = String::new();
    for e in all {
        if let Ok(line) = serde_json::to_string(e) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Why the local store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("result cache `{}`: {reason}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub reason: String,
}

/// The local store: `DIR/HOST.jsonl` beside the inventory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    pub dir: PathBuf,
    pub ttl: Duration,
}

impl LocalStore {
    pub fn path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.jsonl"))
    }

    /// Loads a host's entries; a missing file is an empty cache. The warning, if any, says how
    /// many corrupt entries were dropped.
    pub fn load(&self, host: &str) -> (HostCache, Option<String>) {
        let path = self.path(host);
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (HostCache::default(), None);
            }
            Err(e) => {
                return (
                    HostCache::default(),
                    Some(format!(
                        "cannot read result cache `{}`: {e}; running without it",
                        path.display()
                    )),
                );
            }
        };
        let (cache, corrupt) = parse(&text, self.ttl, now_secs());
        let warning = (corrupt > 0).then(|| {
            format!(
                "result cache `{}`: dropped {corrupt} corrupt entr{} (not trusted)",
                path.display(),
                if corrupt == 1 { "y" } else { "ies" }
            )
        });
        (cache, warning)
    }

    /// Adds `entries` to the host's file: read, merge, and replace the file atomically, all
    /// under an exclusive lock so that concurrent runs do not lose each other's entries.
    pub fn append(&self, host: &str, entries: &[CacheEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.path(host);
        let err = |reason: String| StoreError {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| err(format!("cannot create the directory: {e}")))?;
        let lock = lock_file(&self.dir.join(format!("{host}.lock")))
            .map_err(|e| err(format!("cannot lock: {e}")))?;
        let (mut cache, _) = self.load(host);
        for e in entries {
            cache.entries.insert(e.key.clone(), e.clone());
        }
        write_atomically(&path, render(cache.entries()).as_bytes())
            .map_err(|e| err(e.to_string()))?;
        drop(lock);
        Ok(())
    }

    /// Removes a host's file; returns how many entries it held.
    pub fn clear(&self, host: &str) -> Result<usize, StoreError> {
        let path = self.path(host);
        let lock = lock_file(&self.dir.join(format!("{host}.lock")));
        let (cache, _) = self.load(host);
        let n = cache.len();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError {
                    path,
                    reason: format!("cannot remove: {e}"),
                });
            }
        }
        drop(lock);
        Ok(n)
    }
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    f.lock()?;
    Ok(f)
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> HostIdentity {
        HostIdentity {
            name: "dtr-1".into(),
            address: "10.0.0.1".into(),
            fingerprint: "SHA256:abc".into(),
        }
    }

    fn entry(key: &str, at: u64) -> CacheEntry {
        CacheEntry {
            key: key.into(),
            host: "dtr-1".into(),
            play: "p".into(),
            task: "t".into(),
            recorded_at: at,
            changed: true,
            result: None,
        }
    }

    #[test]
    fn keys_change_with_every_part() {
        let base = task_key(&id(), "p", 0, "t", "command", &["echo a"]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, task_key(&id(), "p", 0, "t", "command", &["echo a"]));
        assert_ne!(base, task_key(&id(), "p", 0, "t", "command", &["echo b"]));
        assert_ne!(base, task_key(&id(), "p", 1, "t", "command", &["echo a"]));
        let mut other = id();
        other.fingerprint = "SHA256:new".into();
        assert_ne!(base, task_key(&other, "p", 0, "t", "command", &["echo a"]));
        // Length-prefixed parts: moving text between parts changes the key.
        assert_ne!(
            task_key(&id(), "p", 0, "t", "command", &["ab", "c"]),
            task_key(&id(), "p", 0, "t", "command", &["a", "bc"])
        );
    }

    #[test]
    fn corrupt_truncated_and_expired_lines_are_dropped() {
        let k1 = "a".repeat(64);
        let k2 = "b".repeat(64);
        let good = serde_json::to_string(&entry(&k1, 1000)).expect("json");
        let old = serde_json::to_string(&entry(&k2, 10)).expect("json");
        let text = format!(
            "{good}\n{old}\nnot json\n{{\"key\":\"short\"}}\n{}",
            &good[..20]
        );
        let (cache, corrupt) = parse(&text, Duration::from_secs(100), 1050);
        assert_eq!(corrupt, 3);
        assert!(cache.hit(&k1).is_some());
        assert!(cache.hit(&k2).is_none(), "expired entries are not trusted");
    }

    #[test]
    fn local_store_round_trip_and_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore {
            dir: dir.path().join("cache"),
            ttl: Duration::from_secs(3600),
        };
        let k = "c".repeat(64);
        store
            .append("dtr-1", &[entry(&k, now_secs())])
            .expect("append");
        let (cache, warning) = store.load("dtr-1");
        assert!(warning.is_none());
        assert!(cache.hit(&k).is_some());
        // A truncated write (say a crash in another tool) is dropped with a warning.
        let path = store.path("dtr-1");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"key\":");
        std::fs::write(&path, text).expect("write");
        let (cache, warning) = store.load("dtr-1");
        assert!(cache.hit(&k).is_some());
        assert!(warning.expect("warns").contains("dropped 1 corrupt entry"));
        assert_eq!(store.clear("dtr-1").expect("clear"), 1);
        assert!(store.load("dtr-1").0.is_empty());
    }

    #[test]
    fn concurrent_appends_keep_every_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore {
            dir: dir.path().to_path_buf(),
            ttl: Duration::from_secs(3600),
        };
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = store.clone();
                std::thread::spawn(move || {
                    let key = format!("{i:064}");
                    s.append("h", &[entry(&key, now_secs())]).expect("append");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(store.load("h").0.len(), 8);
    }
}

/// The remote store's file on a host (under the login user's home).
const REMOTE_FILE: &str = "\"$HOME/.capstan/cache.jsonl\"";

/// Where a run reads and records its cache: chosen by `[settings] cache`.
#[derive(Debug, Clone)]
pub enum Backend {
    Local(LocalStore),
    Remote { ttl: Duration },
    Off,
}

impl Backend {
    pub fn from_settings(s: &crate::settings::CacheSettings) -> Self {
        use crate::settings::CacheStore;
        match s.store {
            CacheStore::Local => Backend::Local(LocalStore {
                dir: s.dir.clone(),
                ttl: s.ttl,
            }),
            CacheStore::Remote => Backend::Remote { ttl: s.ttl },
            CacheStore::Off => Backend::Off,
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self, Backend::Off)
    }

    /// A host's entries (and a warning about dropped ones).
    pub async fn load(
        &self,
        host: &str,
        session: &crate::transport::Session,
    ) -> (HostCache, Option<String>) {
        match self {
            Backend::Off => (HostCache::default(), None),
            Backend::Local(store) => {
                let (store, host) = (store.clone(), host.to_owned());
                tokio::task::spawn_blocking(move || store.load(&host))
                    .await
                    .unwrap_or_else(|e| {
                        (
                            HostCache::default(),
                            Some(format!("reading the result cache failed: {e}")),
                        )
                    })
            }
            Backend::Remote { ttl } => {
                let req = crate::transport::ExecRequest {
                    command: format!("cat {REMOTE_FILE} 2>/dev/null; exit 0"),
                    stdin: None,
                    timeout: Some(Duration::from_secs(60)),
                };
                match session.exec(&req).await {
                    Ok(out) if out.status.success() => {
                        let (cache, corrupt) =
                            parse(&String::from_utf8_lossy(&out.stdout), *ttl, now_secs());
                        let warning = (corrupt > 0)
                            .then(|| format!("result cache on the host: dropped {corrupt} corrupt entries (not trusted)"));
                        (cache, warning)
                    }
                    Ok(out) => (
                        HostCache::default(),
                        Some(format!(
                            "cannot read the result cache on the host ({})",
                            out.status
                        )),
                    ),
                    Err(e) => (
                        HostCache::default(),
                        Some(format!("cannot read the result cache on the host: {e}")),
                    ),
                }
            }
        }
    }

    /// Records `cache`'s pending entries.
    pub async fn save(
        &self,
        host: &str,
        session: &crate::transport::Session,
        cache: &mut HostCache,
    ) -> Result<(), String> {
        let pending = cache.take_pending();
        if pending.is_empty() {
            return Ok(());
        }
        match self {
            Backend::Off => Ok(()),
            Backend::Local(store) => {
                let (store, host) = (store.clone(), host.to_owned());
                tokio::task::spawn_blocking(move || store.append(&host, &pending))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            Backend::Remote { .. } => {
                let req = crate::transport::ExecRequest {
                    command: format!(
                        "umask 077 && mkdir -p \"$HOME/.capstan\" && t={REMOTE_FILE}.tmp.$$ && cat > \"$t\" && mv -f \"$t\" {REMOTE_FILE}"
                    ),
                    stdin: Some(render(cache.entries()).into_bytes()),
                    timeout: Some(Duration::from_secs(60)),
                };
                match session.exec(&req).await {
                    Ok(out) if out.status.success() => Ok(()),
                    Ok(out) => Err(format!(
                        "cannot write the result cache on the host ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => Err(format!("cannot write the result cache on the host: {e}")),
                }
            }
        }
    }
}
