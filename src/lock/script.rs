//! The shell scripts that take, refresh, inspect and release a lock on a host, one round
//! trip each, and the parsing of what they answer.
//!
//! A lock is a directory, `<lock_dir>/host.lock`, made with `mkdir` (atomic on every
//! filesystem). Its name is the same for every inventory and cluster name, so that any two
//! runs acting on one host exclude each other, whatever their inventories are called; the
//! cluster name is kept in `info`. Inside: `token` (the holder's random id), `info` (JSON, see [`LockInfo`]),
//! `heartbeat` (the host's `date +%s`, refreshed by a run) and, for a lock taken with
//! `capstan lock acquire`, `manual`. Breaking or releasing a lock first renames it away,
//! so nobody ever sees half a lock. Answers are lines starting with `capstan-lock: `.

use super::info::{Found, LockInfo};
use super::settings::LockSettings;

const MARK: &str = "capstan-lock: ";
/// The lock directory's name on every host (see the module comment).
pub const LOCK_NAME: &str = "host.lock";
const AUDIT_FAILED: &str = "audit-failed";

/// Whether [`release_own`] could not append to the audit log (the lock is released anyway).
pub fn audit_failed(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.strip_prefix(MARK) == Some(AUDIT_FAILED))
}

/// Shell functions every script starts with. `__cl_state` reads the lock (waiting a second
/// once if its holder is still writing it), `__cl_show` prints it, `__cl_break` removes it.
fn prologue(s: &LockSettings) -> String {
    format!(
        r#"l={dir}
d="$l"/{LOCK_NAME}
__cl_state() {{
  [ -f "$d/heartbeat" ] || sleep 1
  __cl_hb=$(cat "$d/heartbeat" 2>/dev/null)
  __cl_kind=run; [ -e "$d/manual" ] && __cl_kind=manual
  __cl_now=$(date +%s)
  __cl_stale=no
  if [ "$__cl_kind" = run ]; then
    case "$__cl_hb" in
      ''|*[!0-9]*) __cl_stale=yes ;;
      *) [ $((__cl_now - __cl_hb)) -gt {stale} ] && __cl_stale=yes ;;
    esac
  fi
}}
__cl_show() {{
  printf '{MARK}%s %s %s %s\n' "$1" "$__cl_now" "${{__cl_hb:-none}}" "$__cl_kind"
  tr -d '\n' < "$d/info" 2>/dev/null; echo
}}
__cl_break() {{ mv "$d" "$d.broken.$$" 2>/dev/null && rm -rf "$d.broken.$$"; }}
__cl_mine() {{ [ "$(cat "$d/token" 2>/dev/null)" = "$1" ]; }}
# Released while we read it (hosts sharing a filesystem release one lock together): free.
__cl_gone_now() {{ [ -d "$d" ] || {{ echo "{MARK}free"; exit 0; }}; }}
"#,
        dir = s.lock_dir.shell,
        stale = s.stale_secs(),
    )
}

/// Takes the lock, reading `info` from stdin. With `break_stale`, a stale lock is broken
/// and taken over (its holder is printed first, as `took-over`). `dead_runs` are the run ids
/// of holders known to be dead (their process is gone from this control machine): a lock
/// whose `info` names one of them is taken over at once, and no other lock is touched.
pub fn acquire(
    s: &LockSettings,
    token: &str,
    manual: bool,
    break_stale: bool,
    dead_runs: &[String],
) -> String {
    let manual_marker = if manual { ": > \"$d/manual\" && " } else { "" };
    let mut text = prologue(s);
    text.push_str(&format!(
        r#"mkdir -p "$l" || {{ echo "{MARK}error cannot create the directory $l"; exit 0; }}
__cl_take() {{
  mkdir "$d" 2>/dev/null || return 1
  if printf '%s\n' {token} > "$d/token" && {manual_marker}cat > "$d/info" && date +%s > "$d/heartbeat"; then
    echo "{MARK}acquired"; exit 0
  fi
  rm -rf "$d"; echo "{MARK}error cannot write in $d"; exit 0
}}
__cl_take
__cl_state
# Hosts that share a filesystem (local connections) share the lock: ours already.
if __cl_mine {token}; then echo "{MARK}acquired"; exit 0; fi
"#
    ));
    for run in dead_runs.iter().filter(|r| is_run_id(r)) {
        text.push_str(&format!(
            "if grep -q '\"run\":\"{run}\"' \"$d/info\" 2>/dev/null; then __cl_show took-over; __cl_break; __cl_take; __cl_state; fi\n"
        ));
    }
    if break_stale {
        text.push_str("if [ \"$__cl_stale\" = yes ]; then __cl_show took-over; __cl_break; __cl_take; __cl_state; fi\n");
    }
    text.push_str("__cl_show held\n");
    text
}

/// A condition (one shell command, no output) that holds while the lock is ours. Run right
/// before every step of a run, so that a run whose lock was broken starts nothing more.
/// The shell's own `read` (no process) reads the token.
pub fn fence_check(s: &LockSettings, token: &str) -> String {
    format!(
        "{{ IFS= read -r __cf_t < {dir}/{LOCK_NAME}/token; }} 2>/dev/null && [ \"$__cf_t\" = {token} ]",
        dir = s.lock_dir.shell
    )
}

/// `text` reading `input` as its stdin, through a here-document. `input` is lines of JSON
/// (no line can equal the random end marker, which is hex).
pub fn with_input(text: &str, input: &str) -> String {
    let mark = format!("__CAPSTAN_INPUT_{}", hex::encode(rand::random::<[u8; 8]>()));
    let mut input = input.to_owned();
    if !input.ends_with('\n') {
        input.push('\n');
    }
    format!("exec 0<<'{mark}'\n{input}{mark}\n{text}")
}

/// A run id as [`LockInfo`] makes them (hex): safe inside a shell word and a pattern.
fn is_run_id(run: &str) -> bool {
    !run.is_empty() && run.len() <= 64 && run.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Refreshes the heartbeat if the lock is still ours.
pub fn heartbeat(s: &LockSettings, token: &str) -> String {
    let mut text = prologue(s);
    text.push_str(&format!(
        r#"if __cl_mine {token}; then
  date +%s > "$d/heartbeat.new" && mv -f "$d/heartbeat.new" "$d/heartbeat" && echo "{MARK}beat"
else echo "{MARK}lost"; fi
"#
    ));
    text
}

/// Releases the lock if it is still ours; with `audit`, first appends stdin to the audit log.
pub fn release_own(s: &LockSettings, token: &str, audit: bool) -> String {
    let mut text = prologue(s);
    if audit {
        text.push_str(&format!(
            "a={}\n{{ mkdir -p \"$(dirname -- \"$a\")\" && cat >> \"$a\"; }} || echo \"{MARK}{AUDIT_FAILED}\"\n",
            s.audit_log.shell
        ));
    }
    // Gone already is fine: another host sharing this filesystem released it.
    text.push_str(&format!(
        r#"if __cl_mine {token}; then __cl_break; echo "{MARK}released"
elif [ -d "$d" ]; then echo "{MARK}lost"
else echo "{MARK}released"; fi
"#
    ));
    text
}

/// Reports the lock without touching it.
pub fn status(s: &LockSettings) -> String {
    let mut text = prologue(s);
    text.push_str(&format!(
        "if [ -d \"$d\" ]; then __cl_state; __cl_gone_now; __cl_show held; else echo \"{MARK}free\"; fi\n"
    ));
    text
}

/// Which locks `capstan lock release` may break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseMode {
    /// Only a lock taken with `capstan lock acquire`.
    Manual,
    /// Only a stale run lock.
    Stale,
    /// Any lock.
    Force,
}

/// Releases (prints `released` and the holder) or keeps (prints `kept`) the lock.
pub fn release(s: &LockSettings, mode: ReleaseMode) -> String {
    let test = match mode {
        ReleaseMode::Manual => "[ \"$__cl_kind\" = manual ]",
        ReleaseMode::Stale => "[ \"$__cl_stale\" = yes ]",
        ReleaseMode::Force => "true",
    };
    let mut text = prologue(s);
    text.push_str(&format!(
        r#"[ -d "$d" ] || {{ echo "{MARK}free"; exit 0; }}
__cl_state
__cl_gone_now
if {test}; then
  __cl_show released
  # Gone already: another host sharing this filesystem removed it.
  __cl_break || [ ! -d "$d" ] || echo "{MARK}error cannot remove $d"
else __cl_show kept; fi
"#
    ));
    text
}

/// What a script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Taken; `took_over` is the stale lock that was broken for it.
    Acquired {
        took_over: Option<Found>,
    },
    Held(Found),
    Free,
    Released(Option<Found>),
    Kept(Found),
    Beat,
    /// The lock is no longer ours: someone broke it.
    Lost,
}

/// Reads a script's answer. The last answer line decides; `took-over` before it is kept.
///
/// # Errors
/// The script's own `error` line, or, when it printed no answer, its exit status and stderr.
pub fn parse(stdout: &str, stderr: &str, status: &str) -> Result<Reply, String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut took_over = None;
    let mut reply = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix(MARK) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let word = words.next().unwrap_or_default();
        let found = || found(rest, lines.get(i + 1).copied());
        reply = Some(match word {
            "acquired" => Reply::Acquired {
                took_over: took_over.take(),
            },
            "took-over" => {
                took_over = found();
                continue;
            }
            "held" => Reply::Held(found().ok_or_else(|| format!("unreadable answer `{line}`"))?),
            "kept" => Reply::Kept(found().ok_or_else(|| format!("unreadable answer `{line}`"))?),
            "released" => Reply::Released(found()),
            "free" => Reply::Free,
            "beat" => Reply::Beat,
            "lost" => Reply::Lost,
            AUDIT_FAILED => continue,
            "error" => return Err(rest.trim_start_matches("error").trim().to_owned()),
            _ => return Err(format!("unexpected answer `{line}`")),
        });
    }
    reply.ok_or_else(|| {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "the lock script gave no answer ({status}): {}",
            tail.join(" / ")
        )
    })
}

/// `STATE NOW HEARTBEAT KIND` and the `info` line after it.
fn found(rest: &str, info_line: Option<&str>) -> Option<Found> {
    let mut w = rest.split_whitespace().skip(1);
    let now = w.next()?.parse().ok()?;
    let heartbeat = w.next()?.parse().ok();
    let manual = w.next()? == "manual";
    let info = info_line
        .filter(|l| !l.starts_with(MARK))
        .and_then(|l| serde_json::from_str::<LockInfo>(l).ok());
    Some(Found {
        now,
        heartbeat,
        manual,
        info,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::super::settings::RemotePath;
    use super::*;

    fn settings(dir: &std::path::Path) -> LockSettings {
        let raw = dir.join("lock").display().to_string();
        LockSettings {
            cluster: "c1".into(),
            lock_dir: RemotePath {
                shell: crate::template::shell_quote(&raw).unwrap_or_default(),
                shown: raw,
            },
            audit_log: RemotePath {
                shown: String::new(),
                shell: crate::template::shell_quote(&dir.join("audit.jsonl").display().to_string())
                    .unwrap_or_default(),
            },
            stale_after: std::time::Duration::from_secs(120),
            inventory: "i.toml".into(),
        }
    }

    fn sh(script: &str, stdin: &str) -> Reply {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        parse(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
            &out.status.to_string(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn info_json(who: &str) -> String {
        let mut info = LockInfo::new("c1", Some("p.toml".into()), None, false);
        info.who = who.into();
        serde_json::to_string(&info).unwrap_or_default()
    }

    #[test]
    fn take_refuse_beat_release() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        assert_eq!(
            sh(&acquire(&s, "tok1", false, false, &[]), &info_json("a@m")),
            Reply::Acquired { took_over: None }
        );
        let Reply::Held(found) = sh(&acquire(&s, "tok2", false, false, &[]), &info_json("b@m"))
        else {
            panic!("not held");
        };
        assert_eq!(found.info.as_ref().map(|i| i.who.as_str()), Some("a@m"));
        assert_eq!(found.age(), Some(0));
        assert_eq!(sh(&heartbeat(&s, "tok1"), ""), Reply::Beat);
        assert_eq!(sh(&heartbeat(&s, "tok2"), ""), Reply::Lost);
        assert_eq!(sh(&release_own(&s, "tok2", false), ""), Reply::Lost);
        assert_eq!(
            sh(&acquire(&s, "tok1", false, false, &[]), &info_json("a@m")),
            Reply::Acquired { took_over: None },
            "a second host on the same filesystem shares the lock"
        );
        assert!(matches!(sh(&status(&s), ""), Reply::Held(_)));
        assert_eq!(
            sh(&release_own(&s, "tok1", true), "{\"a\":1}\n"),
            Reply::Released(None)
        );
        assert_eq!(sh(&status(&s), ""), Reply::Free);
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
        assert_eq!(audit, "{\"a\":1}\n");
    }

    #[test]
    fn stale_locks_are_broken_only_when_asked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        sh(&acquire(&s, "old", false, false, &[]), &info_json("dead@m"));
        let hb = dir.path().join("lock/host.lock/heartbeat");
        std::fs::write(&hb, "1000\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            sh(&release(&s, ReleaseMode::Manual), ""),
            Reply::Kept(_)
        ));
        let Reply::Acquired {
            took_over: Some(old),
        } = sh(&acquire(&s, "new", false, true, &[]), &info_json("me@m"))
        else {
            panic!("not taken over");
        };
        assert_eq!(old.info.map(|i| i.who).as_deref(), Some("dead@m"));
        assert_eq!(sh(&heartbeat(&s, "new"), ""), Reply::Beat);
        std::fs::write(&hb, "1000\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            sh(&release(&s, ReleaseMode::Stale), ""),
            Reply::Released(Some(_))
        ));
        assert_eq!(sh(&release(&s, ReleaseMode::Stale), ""), Reply::Free);
    }

    #[test]
    fn a_dead_run_is_taken_over_only_by_its_run_id() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        let mut info = LockInfo::new("c1", None, None, false);
        info.run = Some("0123abcd".into());
        let text = serde_json::to_string(&info).unwrap_or_default();
        sh(&acquire(&s, "old", false, false, &[]), &text);
        assert!(
            matches!(
                sh(
                    &acquire(&s, "new", false, false, &["99".into()]),
                    &info_json("me@m")
                ),
                Reply::Held(_)
            ),
            "another run id leaves the lock alone"
        );
        assert!(
            matches!(
                sh(
                    &acquire(&s, "new", false, false, &["0123abcd'; rm -rf /".into()]),
                    &info_json("me@m")
                ),
                Reply::Held(_)
            ),
            "a run id that is not hex is never put in a script"
        );
        let Reply::Acquired {
            took_over: Some(old),
        } = sh(
            &acquire(&s, "new", false, false, &["0123abcd".into()]),
            &info_json("me@m"),
        )
        else {
            panic!("not taken over");
        };
        assert_eq!(old.info.and_then(|i| i.run).as_deref(), Some("0123abcd"));
        assert_eq!(sh(&heartbeat(&s, "new"), ""), Reply::Beat);
        assert_eq!(sh(&heartbeat(&s, "old"), ""), Reply::Lost);
    }

    #[test]
    fn the_fence_holds_only_while_the_lock_carries_our_token() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        let holds = |token: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(fence_check(&s, token))
                .status()
                .map(|st| st.success())
                .unwrap_or(false)
        };
        assert!(!holds("mine"), "no lock: no fence passes");
        sh(&acquire(&s, "mine", false, false, &[]), &info_json("me@m"));
        assert!(holds("mine"));
        assert!(!holds("theirs"));
        sh(&release_own(&s, "mine", false), "");
        assert!(!holds("mine"), "released: the fence closes");
    }

    #[test]
    fn input_in_a_here_document_is_read_as_stdin() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        let text = with_input(&acquire(&s, "tok", false, false, &[]), &info_json("a@m"));
        assert_eq!(sh(&text, ""), Reply::Acquired { took_over: None });
        let Reply::Held(found) = sh(&status(&s), "") else {
            panic!("not held");
        };
        assert_eq!(found.info.map(|i| i.who).as_deref(), Some("a@m"));
    }

    #[test]
    fn a_lock_released_while_being_read_is_free_not_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        // A lock whose heartbeat is not written yet: reading it waits a second, during which
        // another host on the same filesystem releases it.
        let lock = dir.path().join("lock").join(LOCK_NAME);
        std::fs::create_dir_all(&lock).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(lock.join("manual"), "").unwrap_or_else(|e| panic!("{e}"));
        let remover = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = std::fs::remove_dir_all(&lock);
        });
        assert_eq!(sh(&release(&s, ReleaseMode::Stale), ""), Reply::Free);
        let _ = remover.join();
    }

    #[test]
    fn manual_locks_never_go_stale() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = settings(dir.path());
        sh(&acquire(&s, "m", true, false, &[]), &info_json("ops@m"));
        std::fs::write(dir.path().join("lock/host.lock/heartbeat"), "1000\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let Reply::Held(found) = sh(&acquire(&s, "x", false, true, &[]), &info_json("me@m")) else {
            panic!("not held");
        };
        assert!(found.manual);
        assert!(matches!(
            sh(&release(&s, ReleaseMode::Stale), ""),
            Reply::Kept(_)
        ));
        assert!(matches!(
            sh(&release(&s, ReleaseMode::Manual), ""),
            Reply::Released(Some(_))
        ));
    }

    #[test]
    fn errors_and_silence_are_errors() {
        assert_eq!(
            parse(
                "motd\ncapstan-lock: error cannot create the directory /x\n",
                "",
                "exit status 0"
            ),
            Err("cannot create the directory /x".to_owned())
        );
        assert_eq!(
            parse("", "sh: 1: date: not found\n", "exit status 127"),
            Err(
                "the lock script gave no answer (exit status 127): sh: 1: date: not found"
                    .to_owned()
            )
        );
    }
}
