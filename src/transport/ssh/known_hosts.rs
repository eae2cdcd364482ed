//! OpenSSH `known_hosts` files: looking a host's key up and recording a new one.
//!
//! russh's own `known_hosts` module splits lines on single spaces, miscounts lines after
//! comments, stops at the first key of the same type (a host may have several), and knows
//! neither markers nor negated or wildcard patterns; this one follows sshd(8)'s
//! "SSH_KNOWN_HOSTS FILE FORMAT".
//!
//! Like OpenSSH, the file is read as bytes: a line that is not UTF-8 (a Latin-1 comment, say)
//! is no reason to refuse the others. Unlike a missing file (which knows no host), a path
//! that is a directory, FIFO, device or socket, or that cannot be read, is refused; it is
//! looked at with `stat` first and opened non-blocking, so a FIFO never hangs the run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::{Algorithm, PublicKey};
use sha1::Sha1;

/// What a known_hosts file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line for this host has exactly this key.
    Known,
    /// No line names this host.
    Unknown,
    /// The host is listed, but never with this key; `line` is the first line for the host
    /// with a key of the same type, else the first line for the host.
    Changed { line: usize },
    /// An `@revoked` line holds this key.
    Revoked { line: usize },
}

/// The name a host's keys are filed under: `host`, or `[host]:port` off port 22.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// One parsed line that names a host.
struct Entry<'a> {
    line: usize,
    marker: Option<&'a str>,
    key: PublicKey,
}

/// Calls `f` for every well-formed line of `text` whose pattern list matches `name`.
/// Lines that cannot be parsed (an unknown key type, say) are skipped, as OpenSSH does.
fn matching_entries<'a>(text: &'a str, name: &str, mut f: impl FnMut(Entry<'a>)) {
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        let mut marker = None;
        if first.starts_with('@') {
            marker = Some(first);
            match fields.next() {
                Some(next) => first = next,
                None => continue,
            }
        }
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !patterns_match(first, name) {
            continue;
        }
        let Ok(key) = PublicKey::from_openssh(&format!("{kind} {blob}")) else {
            continue;
        };
        f(Entry {
            line: index + 1,
            marker,
            key,
        });
    }
}

/// Can the file at `path` be used? `Err` says why not, for "known_hosts `PATH` {why}".
/// A missing file can (it knows no host, and accept-new creates it).
pub(crate) fn usable(path: &Path) -> Result<(), String> {
    match read(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a known_hosts path is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("is {0}, not a file")]
    NotAFile(&'static str),
    #[error("cannot be used: {0}")]
    Io(#[from] io::Error),
}

/// The text of the known_hosts file at `path` (invalid UTF-8 replaced, line by line), or
/// `None` when there is no such file. Never blocks: a FIFO is refused before it is opened.
pub(crate) fn read(path: &Path) -> Result<Option<String>, Unusable> {
    match fs::metadata(path) {
        Ok(meta) => check_kind(&meta.file_type())?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut file = open_nonblocking(path, OpenOptions::new().read(true))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Opens without blocking on a FIFO that replaced the file since it was looked at, then
/// checks what was opened.
fn open_nonblocking(path: &Path, options: &mut OpenOptions) -> Result<File, Unusable> {
    let file = options
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    check_kind(&file.metadata()?.file_type())?;
    Ok(file)
}

fn check_kind(kind: &fs::FileType) -> Result<(), Unusable> {
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(Unusable::NotAFile(what))
}

/// Looks `key` up for `name` (see [`lookup_name`]) in the file at `path`.
/// A missing file knows no host.
pub(crate) fn check(path: &Path, name: &str, key: &PublicKey) -> Result<Verdict, Unusable> {
    Ok(match read(path)? {
        Some(text) => verdict(&text, name, key),
        None => Verdict::Unknown,
    })
}

fn verdict(text: &str, name: &str, key: &PublicKey) -> Verdict {
    let mut known = false;
    let mut revoked = None;
    let mut same_type = None;
    let mut any = None;
    matching_entries(text, name, |entry| {
        let same_key = entry.key.key_data() == key.key_data();
        match entry.marker {
            Some("@revoked") => {
                if same_key {
                    revoked.get_or_insert(entry.line);
                }
            }
            // Host certificates are not used; other markers are not host keys.
            Some(_) => {}
            None => {
                if same_key {
                    known = true;
                } else if same_key_type(&entry.key.algorithm(), &key.algorithm()) {
                    same_type.get_or_insert(entry.line);
                }
                any.get_or_insert(entry.line);
            }
        }
    });
    if let Some(line) = revoked {
        Verdict::Revoked { line }
    } else if known {
        Verdict::Known
    } else if let Some(line) = same_type.or(any) {
        Verdict::Changed { line }
    } else {
        Verdict::Unknown
    }
}

/// Key types recorded for `name`, in file order, so the key exchange can ask the server for
/// a key we know (as OpenSSH does) rather than one we would have to call unknown.
pub(crate) fn known_algorithms(path: &Path, name: &str) -> Vec<Algorithm> {
    let Ok(Some(text)) = read(path) else {
        return Vec::new();
    };
    let mut out: Vec<Algorithm> = Vec::new();
    matching_entries(&text, name, |entry| {
        let algorithm = entry.key.algorithm();
        if entry.marker.is_none() && !out.iter().any(|a| same_key_type(a, &algorithm)) {
            out.push(algorithm);
        }
    });
    out
}

/// RSA keys sign with several hashes; they are still one key type.
pub(crate) fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// Serialises check-then-append across the connections of this process, so that many
/// connections accepting the same new host record it once.
static LEARN: Mutex<()> = Mutex::new(());

/// Appends `name key` to the file at `path` (creating it and its directory), unless a
/// concurrent connection recorded the same key meanwhile. Returns the new line's number.
pub(crate) fn learn(path: &Path, name: &str, key: &PublicKey) -> Result<usize, Unusable> {
    let _guard = LEARN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    if let Ok(meta) = fs::metadata(path) {
        check_kind(&meta.file_type())?;
    }
    let mut file = open_nonblocking(
        path,
        OpenOptions::new().read(true).append(true).create(true),
    )?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match verdict(&text, name, key) {
        Verdict::Unknown => {}
        Verdict::Known => return Ok(line_of(&text, name, key)),
        Verdict::Changed { line } | Verdict::Revoked { line } => {
            return Err(io::Error::other(format!(
                "line {line} now has a different key for `{name}`"
            ))
            .into());
        }
    }
    let openssh = key.to_openssh().map_err(io::Error::other)?;
    // Drop the comment: the file says which host the key is for.
    let mut fields = openssh.split_ascii_whitespace();
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        return Err(io::Error::other("cannot encode the host key").into());
    };
    let mut record = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        record.push('\n');
    }
    record.push_str(&format!("{name} {kind} {blob}\n"));
    file.seek(SeekFrom::End(0))?;
    // One write, so that another process appending at the same time cannot tear the line.
    file.write_all(record.as_bytes())?;
    file.sync_data()?;
    Ok(text.lines().count() + 1)
}

fn line_of(text: &str, name: &str, key: &PublicKey) -> usize {
    let mut found = 0;
    matching_entries(text, name, |entry| {
        if found == 0 && entry.marker.is_none() && entry.key.key_data() == key.key_data() {
            found = entry.line;
        }
    });
    found
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Does the comma-separated pattern list match `name`? A matching negated pattern (`!p`)
/// vetoes the line; `|1|salt|hash` entries are HMAC-SHA1 hashed names (`HashKnownHosts`).
pub(crate) fn patterns_match(list: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, name) {
                return false;
            }
        } else if pattern.starts_with("|1|") {
            matched |= hashed_match(pattern, name);
        } else if wildcard_match(pattern, name) {
            matched = true;
        }
    }
    matched
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.split('|').skip(2);
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` globbing, case-insensitive as host names are.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOYqLLFULZtzUum2Z/QH7Ryr7Nlh3UnOH2YC8kjtK7CWtzvGtd8ZuhFHAPcsbC6+GA6vuF9gqilOVK4dqQVeLX8=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn plain_bracketed_and_tab_separated_entries() {
        let text =
            format!("# comment\n\n[10.0.0.1]:2222\t{ED_A}\nweb1,10.0.0.2   {ED_B} root@web1\n");
        assert_eq!(
            verdict(&text, "[10.0.0.1]:2222", &key(ED_A)),
            Verdict::Known
        );
        assert_eq!(verdict(&text, "10.0.0.1", &key(ED_A)), Verdict::Unknown);
        assert_eq!(verdict(&text, "10.0.0.2", &key(ED_B)), Verdict::Known);
        // Line numbers count comments and blank lines.
        assert_eq!(
            verdict(&text, "web1", &key(ED_A)),
            Verdict::Changed { line: 4 }
        );
    }

    #[test]
    fn several_keys_for_one_host_any_may_match() {
        let text = format!("h {ED_A}\nh {ED_B}\n");
        assert_eq!(verdict(&text, "h", &key(ED_B)), Verdict::Known);
    }

    #[test]
    fn a_host_known_only_by_another_key_type_has_changed() {
        let text = format!("# x\nh {EC}\n");
        assert_eq!(
            verdict(&text, "h", &key(ED_A)),
            Verdict::Changed { line: 2 }
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, format!("h {EC}\nh {ED_A}\nother {ED_B}\n")).unwrap();
        assert_eq!(
            known_algorithms(&path, "h"),
            vec![key(EC).algorithm(), Algorithm::Ed25519]
        );
        assert!(known_algorithms(&path, "nobody").is_empty());
    }

    #[test]
    fn hashed_entry_matches_its_name_only() {
        // From russh's tests: the hash of `example.com`.
        let text = format!("|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= {ED_B}\n");
        assert_eq!(verdict(&text, "example.com", &key(ED_B)), Verdict::Known);
        assert_eq!(verdict(&text, "example.org", &key(ED_B)), Verdict::Unknown);
    }

    #[test]
    fn wildcards_negation_and_revocation() {
        let text = format!("*.prod,!db.prod {ED_A}\n@revoked * {ED_B}\n");
        assert_eq!(verdict(&text, "web.prod", &key(ED_A)), Verdict::Known);
        assert_eq!(verdict(&text, "db.prod", &key(ED_A)), Verdict::Unknown);
        assert_eq!(
            verdict(&text, "web.prod", &key(ED_B)),
            Verdict::Revoked { line: 2 }
        );
    }

    #[test]
    fn learn_appends_once_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        assert_eq!(learn(&path, "[h]:2222", &key(ED_A)).unwrap(), 1);
        assert_eq!(learn(&path, "[h]:2222", &key(ED_A)).unwrap(), 1);
        assert_eq!(learn(&path, "h", &key(ED_B)).unwrap(), 2);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("[h]:2222 {ED_A}\nh {ED_B}\n"));
        assert!(learn(&path, "h", &key(ED_A)).is_err());
    }

    #[test]
    fn a_latin1_comment_does_not_hide_the_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut bytes = b"# caf\xe9 (Latin-1)\n".to_vec();
        bytes.extend_from_slice(format!("h {ED_A}\n").as_bytes());
        bytes.extend_from_slice(b"\xff\xfe garbage line\n");
        fs::write(&path, bytes).unwrap();
        assert_eq!(check(&path, "h", &key(ED_A)).unwrap(), Verdict::Known);
        assert_eq!(
            check(&path, "h", &key(ED_B)).unwrap(),
            Verdict::Changed { line: 2 }
        );
        assert_eq!(learn(&path, "g", &key(ED_B)).unwrap(), 4);
    }

    #[test]
    fn a_directory_fifo_or_device_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for (path, why) in [
            (dir.path().to_path_buf(), "is a directory, not a file"),
            (fifo.clone(), "is a FIFO, not a file"),
            (
                Path::new("/dev/null").to_path_buf(),
                "is a device, not a file",
            ),
        ] {
            assert_eq!(usable(&path), Err(why.to_owned()), "{}", path.display());
            assert!(check(&path, "h", &key(ED_A)).is_err());
            assert!(learn(&path, "h", &key(ED_A)).is_err());
            assert!(known_algorithms(&path, "h").is_empty());
        }
        assert_eq!(usable(&dir.path().join("missing")), Ok(()));
    }

    #[test]
    fn glob() {
        assert!(wildcard_match("web?.*", "WEB1.example"));
        assert!(!wildcard_match("web?", "web12"));
        assert!(wildcard_match("*", ""));
    }
}
