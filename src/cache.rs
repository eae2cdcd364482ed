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
//! No key is a plain digest of what it covers: a rendered command may hold a secret, and an
//! unsalted digest would let anyone holding the cache confirm a guess of it offline. Each
//! key is an HMAC-SHA256 under a random [`DigestKey`]: the project's, kept 0600 in
//! `.capstan/cache.key`, for the local store; each host's own, in `~/.capstan/cache.key` on
//! the host, for the remote store.
//!
//! Entries are JSON lines, one file per host. Reading tolerates a corrupt or truncated file:
//! bad lines are dropped with a warning, never trusted. Writing replaces the whole file
//! atomically (temp file, fsync, rename) under an exclusive lock.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
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

/// The digest that names one task as rendered for one host. It never leaves the process:
/// [`HostCache`] stores and looks up its HMAC under the cache's [`DigestKey`].
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

/// A random 256-bit key for the cache's HMACs.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKey([u8; 32]);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// A key written as 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// HMAC-SHA256 of `digest` under this key, in hex: what the store keeps.
    pub fn seal(&self, digest: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            // Every key length is valid for HMAC; unreachable, but never store the input.
            return String::new();
        };
        mac.update(b"capstan-cache-key-v2\0");
        mac.update(digest.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A host's entries, as loaded, plus what this run recorded. Without a key (the cache is
/// off, or its key could not be read) nothing hits and nothing is recorded.
#[derive(Debug, Default, Clone)]
pub struct HostCache {
    entries: HashMap<String, CacheEntry>,
    pending: Vec<CacheEntry>,
    key: Option<DigestKey>,
    /// A remote key made by this run, to be stored on the host with the first save.
    new_key: bool,
}

impl HostCache {
    /// The entry recorded for the task whose [`task_key`] is `digest`.
    pub fn hit(&self, digest: &str) -> Option<&CacheEntry> {
        let key = self.key.as_ref()?;
        self.entries.get(&key.seal(digest))
    }

    /// Records `entry`, whose `key` is the task's [`task_key`]; it is stored sealed.
    pub fn record(&mut self, mut entry: CacheEntry) {
        let Some(key) = &self.key else {
            return;
        };
        entry.key = key.seal(&entry.key);
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

    fn with_key(mut self, key: DigestKey) -> Self {
        self.key = Some(key);
        self
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
    /// `DIR/HOST.jsonl`; a host name that could leave `DIR` is refused.
    pub fn path(&self, host: &str) -> Result<PathBuf, StoreError> {
        crate::names::state_file(&self.dir, host, "jsonl").map_err(|e| StoreError {
            path: self.dir.clone(),
            reason: e.to_string(),
        })
    }

    /// The project's key: `.capstan/cache.key`, beside the store's directory.
    pub fn key_path(&self) -> PathBuf {
        self.dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."))
            .join("cache.key")
    }

    /// The project's key, made on first use. See [`load_or_create_key`]. Entries written
    /// before there was a key (plain digests, an oracle) are removed when it is made.
    pub fn key(&self) -> Result<DigestKey, StoreError> {
        let path = self.key_path();
        let existed = std::fs::symlink_metadata(&path).is_ok();
        let key = load_or_create_key(&path).map_err(|e| StoreError {
            path,
            reason: e.to_string(),
        })?;
        if !existed && let Ok(files) = std::fs::read_dir(&self.dir) {
            for f in files.flatten() {
                if f.path().extension().is_some_and(|e| e == "jsonl") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        Ok(key)
    }

    /// Loads a host's entries; a missing file is an empty cache. The warning, if any, says how
    /// many corrupt entries were dropped. The cache has no key: it can be shown, not used.
    pub fn load(&self, host: &str) -> (HostCache, Option<String>) {
        let path = match self.path(host) {
            Ok(p) => p,
            Err(e) => return (HostCache::default(), Some(e.to_string())),
        };
        let text = match read_no_follow(&path) {
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

    /// A host's entries with the project's key, ready for a run.
    pub fn load_for_run(&self, host: &str) -> (HostCache, Option<String>) {
        match self.key() {
            Ok(key) => {
                let (cache, warning) = self.load(host);
                (cache.with_key(key), warning)
            }
            Err(e) => (
                HostCache::default(),
                Some(format!("{e}; running without the result cache")),
            ),
        }
    }

    /// Adds `entries` to the host's file: read, merge, and replace the file atomically, all
    /// under an exclusive lock so that concurrent runs do not lose each other's entries.
    pub fn append(&self, host: &str, entries: &[CacheEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.path(host)?;
        let err = |reason: String| StoreError {
            path: path.clone(),
            reason,
        };
        create_private_dir(&self.dir)
            .map_err(|e| err(format!("cannot create the directory: {e}")))?;
        let lock =
            lock_file(&self.lock_path(host)?).map_err(|e| err(format!("cannot lock: {e}")))?;
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
        let path = self.path(host)?;
        let lock = lock_file(&self.lock_path(host)?);
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

    fn lock_path(&self, host: &str) -> Result<PathBuf, StoreError> {
        crate::names::state_file(&self.dir, host, "lock").map_err(|e| StoreError {
            path: self.dir.clone(),
            reason: e.to_string(),
        })
    }
}

/// `O_NOFOLLOW`: opening a planted symlink fails instead of reaching its target.
fn no_follow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = File::options()
        .read(true)
        .custom_flags(no_follow())
        .open(path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `dir` (and its parents) with mode 0700 where it is new.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Reads the key at `path`, or makes a random one there. The file must be a regular file
/// (not a symlink) owned by this user and readable by no one else. A new key is written to a
/// private temp file and hard-linked into place, which fails rather than follow or replace
/// anything already at `path`; a concurrent run that won the race is read instead.
pub fn load_or_create_key(path: &Path) -> std::io::Result<DigestKey> {
    use std::io::{Error, ErrorKind, Read as _};
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    for _ in 0..5 {
        match File::options()
            .read(true)
            .custom_flags(no_follow())
            .open(path)
        {
            Ok(mut f) => {
                let meta = f.metadata()?;
                if !meta.is_file() {
                    return Err(Error::other("not a regular file"));
                }
                if meta.uid() != nix::unistd::geteuid().as_raw() {
                    return Err(Error::other("owned by another user"));
                }
                if meta.mode() & 0o077 != 0 {
                    return Err(Error::other(format!(
                        "mode {:04o} lets others read it; expected 0600",
                        meta.mode() & 0o7777
                    )));
                }
                let mut text = String::new();
                f.read_to_string(&mut text)?;
                return DigestKey::from_hex(&text)
                    .ok_or_else(|| Error::other("not a cache key (64 hex digits)"));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or_else(|| Path::new("."));
                create_private_dir(dir)?;
                let key = DigestKey::random();
                let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
                tmp.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
                tmp.as_file().sync_all()?;
                match std::fs::hard_link(tmp.path(), path) {
                    Ok(()) => return Ok(key),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
                return Err(Error::other("is a symbolic link; refusing to follow it"));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::other("could neither read nor create it"))
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(no_follow())
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

    fn stored(cache: &HostCache, key: &str) -> bool {
        cache.entries().any(|e| e.key == key)
    }

    #[test]
    fn stored_keys_are_hmacs_under_the_cache_key_not_plain_digests() {
        let digest = task_key(&id(), "p", 0, "t", "command", &["echo pw=guess-me-123"]);
        let mut cache = HostCache::default().with_key(DigestKey::random());
        cache.record(entry(&digest, now_secs()));
        let stored_key = cache.entries().next().expect("recorded").key.clone();
        assert_eq!(stored_key.len(), 64);
        assert_ne!(
            stored_key, digest,
            "a plain digest would be an offline oracle"
        );
        assert!(cache.hit(&digest).is_some());
        // Someone holding the file but not the key cannot confirm the guess.
        let other = DigestKey::random().seal(&digest);
        assert_ne!(other, stored_key);
        // Loaded back with the same key, the entry hits; with another key it does not.
        let text = render(cache.entries());
        let key = cache.key.clone().expect("key");
        let (loaded, _) = parse(&text, Duration::from_secs(60), now_secs());
        assert!(loaded.clone().with_key(key).hit(&digest).is_some());
        assert!(loaded.with_key(DigestKey::random()).hit(&digest).is_none());
    }

    #[test]
    fn without_a_key_nothing_hits_and_nothing_is_recorded() {
        let mut cache = HostCache::default();
        cache.record(entry(&"d".repeat(64), now_secs()));
        assert!(cache.is_empty());
        assert!(cache.take_pending().is_empty());
        assert!(cache.hit(&"d".repeat(64)).is_none());
    }

    #[test]
    fn project_key_is_private_made_once_and_never_read_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".capstan/cache.key");
        let key = load_or_create_key(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(&path).expect("read"), key);
        // Readable by others: refused, not used.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_key(&path).expect_err("too open");
        assert!(err.to_string().contains("expected 0600"), "{err}");
        // A planted symlink (to a file the attacker controls) is refused, not followed.
        let planted = dir.path().join("planted");
        std::fs::write(&planted, format!("{}\n", "ab".repeat(32))).expect("write");
        let link = dir.path().join(".capstan/other.key");
        std::os::unix::fs::symlink(&planted, &link).expect("symlink");
        let err = load_or_create_key(&link).expect_err("link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A dangling symlink is not created through either.
        let dangling = dir.path().join(".capstan/dangling.key");
        std::os::unix::fs::symlink(dir.path().join("target"), &dangling).expect("symlink");
        assert!(load_or_create_key(&dangling).is_err());
        assert!(!dir.path().join("target").exists());
    }

    #[test]
    fn entries_from_before_the_key_are_removed_when_it_is_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore {
            dir: dir.path().join(".capstan/cache"),
            ttl: Duration::from_secs(3600),
        };
        let digest = "a".repeat(64);
        store
            .append("h", &[entry(&digest, now_secs())])
            .expect("append");
        assert!(store.key_path().ends_with(".capstan/cache.key"));
        let key = store.key().expect("key");
        assert!(store.load("h").0.is_empty(), "unkeyed entries are gone");
        let (mut cache, _) = store.load_for_run("h");
        cache.record(entry(&digest, now_secs()));
        store.append("h", &cache.take_pending()).expect("append");
        assert_eq!(store.key().expect("same key"), key);
        assert!(store.load_for_run("h").0.hit(&digest).is_some());
    }

    #[test]
    fn unsafe_host_names_never_become_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore {
            dir: dir.path().join("cache"),
            ttl: Duration::from_secs(60),
        };
        for host in ["../../../escaped-host", "../audit", "a/b", ".hidden"] {
            assert!(store.path(host).is_err(), "{host}");
            assert!(
                store
                    .append(host, &[entry(&"e".repeat(64), now_secs())])
                    .is_err()
            );
        }
        assert!(!dir.path().join("escaped-host.jsonl").exists());
    }

    #[test]
    fn remote_load_without_a_key_makes_a_new_one_and_trusts_no_entry() {
        let digest = "f".repeat(64);
        let key = DigestKey::random();
        let mut cache = HostCache::default().with_key(key.clone());
        cache.record(entry(&digest, now_secs()));
        let entries = render(cache.entries());
        let out = format!("{}{REMOTE_SEPARATOR}{entries}", key.to_hex());
        let (loaded, corrupt) = parse_remote(out.as_bytes(), Duration::from_secs(60), now_secs());
        assert_eq!(corrupt, 0);
        assert!(loaded.hit(&digest).is_some());
        assert!(!loaded.new_key);
        let out = format!("{REMOTE_SEPARATOR}{entries}");
        let (loaded, _) = parse_remote(out.as_bytes(), Duration::from_secs(60), now_secs());
        assert!(loaded.new_key);
        assert!(loaded.is_empty());
        assert!(loaded.hit(&digest).is_none());
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
        assert!(stored(&cache, &k1));
        assert!(!stored(&cache, &k2), "expired entries are not trusted");
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
        assert!(stored(&cache, &k));
        // A truncated write (say a crash in another tool) is dropped with a warning.
        let path = store.path("dtr-1").expect("safe name");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"key\":");
        std::fs::write(&path, text).expect("write");
        let (cache, warning) = store.load("dtr-1");
        assert!(stored(&cache, &k));
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

/// The remote store on a host (under the login user's home): its entries and its key.
const REMOTE_DIR: &str = "\"$HOME/.capstan\"";

/// Separates the key from the entries in what the remote load prints.
const REMOTE_SEPARATOR: &str = "\n--capstan-cache-entries--\n";

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

    /// A host's entries (and a warning about dropped ones), with the key to use them.
    pub async fn load(
        &self,
        host: &str,
        session: &crate::transport::Session,
    ) -> (HostCache, Option<String>) {
        match self {
            Backend::Off => (HostCache::default(), None),
            Backend::Local(store) => {
                let (store, host) = (store.clone(), host.to_owned());
                tokio::task::spawn_blocking(move || store.load_for_run(&host))
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
                    command: format!(
                        "d={REMOTE_DIR}; if [ -f \"$d/cache.key\" ] && [ ! -L \"$d/cache.key\" ]; then cat \"$d/cache.key\"; fi; printf '{}'; if [ ! -L \"$d/cache.jsonl\" ]; then cat \"$d/cache.jsonl\" 2>/dev/null; fi; exit 0",
                        REMOTE_SEPARATOR.replace('\n', "\\n")
                    ),
                    stdin: None,
                    timeout: Some(Duration::from_secs(60)),
                };
                match session.exec(&req).await {
                    Ok(out) if out.status.success() => {
                        let (cache, corrupt) = parse_remote(&out.stdout, *ttl, now_secs());
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
                // First line of stdin: a key this run made (stored only where none exists,
                // created exclusively), else empty. The rest: the entries.
                let new_key = match (&cache.key, cache.new_key) {
                    (Some(key), true) => key.to_hex(),
                    _ => String::new(),
                };
                let mut stdin = format!("{new_key}\n").into_bytes();
                stdin.extend(render(cache.entries()).into_bytes());
                let req = crate::transport::ExecRequest {
                    command: format!(
                        "umask 077 && d={REMOTE_DIR} && mkdir -p \"$d\" && IFS= read -r k && {{ [ -z \"$k\" ] || [ -e \"$d/cache.key\" ] || [ -L \"$d/cache.key\" ] || (set -C && printf '%s\\n' \"$k\" > \"$d/cache.key\") 2>/dev/null || true; }} && t=$(mktemp \"$d/cache.jsonl.XXXXXXXX\") && {{ cat > \"$t\" && mv -f \"$t\" \"$d/cache.jsonl\" || {{ rm -f \"$t\"; exit 1; }}; }}"
                    ),
                    stdin: Some(stdin),
                    timeout: Some(Duration::from_secs(60)),
                };
                match session.exec(&req).await {
                    Ok(out) if out.status.success() => {
                        cache.new_key = false;
                        Ok(())
                    }
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

/// What the remote load printed: the host's key (a new one when it has none yet), then the
/// entries. Returns the cache and how many lines were dropped as corrupt.
fn parse_remote(stdout: &[u8], ttl: Duration, now: u64) -> (HostCache, usize) {
    let text = String::from_utf8_lossy(stdout);
    let (key_text, entries) = text
        .split_once(REMOTE_SEPARATOR)
        .unwrap_or(("", text.as_ref()));
    let (cache, corrupt) = parse(entries, ttl, now);
    match DigestKey::from_hex(key_text) {
        Some(key) => (cache.with_key(key), corrupt),
        None => {
            // No key on the host: whatever entries are there cannot be trusted or matched.
            let mut fresh = HostCache::default().with_key(DigestKey::random());
            fresh.new_key = true;
            (fresh, corrupt)
        }
    }
}
