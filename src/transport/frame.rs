//! The one program a host is asked to run, and what capstan sends on its stdin.
//!
//! The argument of every exec (`ssh host BOOTSTRAP`, `$SHELL -c BOOTSTRAP` locally) is the
//! same short text, [`BOOTSTRAP`]; it holds nothing of the command. On the command's stdin
//! capstan sends, in order:
//!
//! 1. a header line, `<command bytes> <stdin bytes>\n`;
//! 2. the command (a shell script), which the login shell reads into memory and `eval`s;
//! 3. the command's stdin, which is spooled to a private temporary file that is unlinked
//!    before it is filled (it lives only while open) and becomes the command's stdin (never
//!    folded into the command: stdin is where secrets travel);
//! 4. `.\n`, which proves that 2 and 3 arrived whole (else nothing runs, exit 125);
//! 5. later, control lines: `T <seconds>` (TERM the process group; KILL it that many seconds
//!    after the connection closes) and `K` (KILL the process group now).
//!
//! capstan never ends that stdin while the command runs. A watcher process reads it: when
//! it ends while the command's shell still runs, the connection went away under the command
//! (the controller was killed, the network died), and the watcher TERMs the command's
//! process group, then KILLs it a second later: no step outlives its session. A command
//! that ended normally leaves what it started in the background alone, as `ssh` does.
//!
//! The process group is the session's: sshd makes each session's command a session leader
//! (so a `ForceCommand` wrapper that does not `exec` is in the group too), and the local
//! connection starts its shell as a process group leader.
//! The command is read with bash's `read -N` (bytes, under `LC_ALL=C`), which saves the
//! host a `head` process per command (about 1 ms); other shells use `head -c`, which must
//! read exactly what it is asked (GNU coreutils and BusyBox do), as does the spool.

use std::time::Duration;

/// The exec argument, for every command. POSIX sh (bash, dash, ksh, zsh, busybox sh).
pub(crate) const BOOTSTRAP: &str = concat!(
    "read -r __cs_n __cs_m||exit 125;",
    "case $BASH_VERSION in ''|[1-3].*)__cs_s=$(head -c \"$__cs_n\");;",
    "*)LC_ALL=C IFS= read -r -d '' -N \"$__cs_n\" __cs_s;;esac;",
    "if [ \"$__cs_m\" -gt 0 ];then __cs_t=$(mktemp)||exit 125;",
    "exec 5>\"$__cs_t\" 4<\"$__cs_t\";rm -f \"$__cs_t\";head -c \"$__cs_m\" >&5;exec 5>&-;",
    "else exec 4</dev/null;fi;",
    "read -r __cs_c;[ \"$__cs_c\" = . ]||{ echo 'capstan: incomplete request' >&2;exit 125;};",
    "exec 6<&0 0<&4 4<&-;",
    "(trap '' TERM INT HUP;g=;",
    "while read -r c a <&6;do case $c in T)g=$a;kill -TERM 0;;K)kill -KILL 0;;esac;done;",
    "[ -n \"$g\" ]||{ kill -0 $$||exit;g=1;};kill -TERM 0;sleep $g;kill -KILL 0",
    ")>/dev/null 2>&1 & exec 6<&-;",
    "unset __cs_n __cs_m __cs_t __cs_c;eval \"$__cs_s\""
);

/// Sent after the command's stdin: it arrived whole.
pub(crate) const TRAILER: &[u8] = b".\n";

/// Kill the command's process group now.
pub(crate) const KILL: &[u8] = b"K\n";

/// The header line for a command of `command_len` bytes with `stdin_len` bytes of stdin.
pub(crate) fn header(command_len: usize, stdin_len: usize) -> Vec<u8> {
    format!("{command_len} {stdin_len}\n").into_bytes()
}

/// TERM the command's process group; `grace` is how long it has before KILL if the
/// connection closes meanwhile (capstan sends [`KILL`] itself otherwise).
pub(crate) fn terminate(grace: Duration) -> Vec<u8> {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    format!("T {}\n", secs.max(1)).into_bytes()
}

/// A command must not hold a NUL: the host's shell could not keep it in a variable.
pub(crate) fn has_nul(command: &str) -> bool {
    command.as_bytes().contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    fn shells() -> Vec<&'static str> {
        ["/bin/sh", "/bin/bash", "/bin/dash"]
            .into_iter()
            .filter(|s| std::path::Path::new(s).exists())
            .collect()
    }

    /// Runs the bootstrap under `shell` as a process group leader, writes the frame, and
    /// leaves stdin open until the child exits (as capstan does).
    fn run(shell: &str, command: &str, stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(BOOTSTRAP)
            // Where the locale counts characters, the command must still be read by bytes.
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(&header(command.len(), stdin.len()))
            .expect("header");
        input.write_all(command.as_bytes()).expect("command");
        input.write_all(stdin).expect("stdin");
        input.write_all(TRAILER).expect("trailer");
        let out = child.wait_with_output();
        drop(input);
        out.expect("wait")
    }

    #[test]
    fn bootstrap_is_short_and_holds_no_command() {
        assert!(BOOTSTRAP.len() < 700, "{}", BOOTSTRAP.len());
    }

    #[test]
    fn runs_the_command_with_its_stdin_in_every_shell() {
        for shell in shells() {
            let out = run(
                shell,
                "echo \"out $__cs_n\"; cat; echo err >&2; exit 3",
                b"line1\nbinary\x00\xff",
            );
            assert_eq!(out.stdout, b"out \nline1\nbinary\x00\xff", "{shell}");
            assert_eq!(out.stderr, b"err\n", "{shell}");
            assert_eq!(out.status.code(), Some(3), "{shell}");
            let out = run(shell, "cat; echo done", b"");
            assert_eq!(out.stdout, b"done\n", "{shell}");
            let out = run(
                shell,
                "echo 'h\u{e9}llo w\u{f6}rld \u{2603}'; cat",
                b"after\n",
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "h\u{e9}llo w\u{f6}rld \u{2603}\nafter\n",
                "{shell}"
            );
        }
    }

    #[test]
    fn an_incomplete_request_runs_nothing() {
        for shell in shells() {
            let mut child = Command::new(shell)
                .arg("-c")
                .arg(BOOTSTRAP)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .expect("spawn");
            let mut input = child.stdin.take().expect("stdin");
            input.write_all(&header(9, 100)).expect("header");
            input.write_all(b"echo ran\n").expect("command");
            input.write_all(b"only part of the stdin").expect("stdin");
            drop(input);
            let out = child.wait_with_output().expect("wait");
            assert_eq!(out.status.code(), Some(125), "{shell}");
            assert!(out.stdout.is_empty(), "{shell}");
        }
    }

    #[test]
    fn a_closed_stdin_kills_the_running_command_group() {
        for shell in shells() {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("log");
            let command = format!(
                "trap '' TERM; (sleep 30; echo late >> '{0}') & echo started >> '{0}'; wait",
                log.display()
            );
            let mut child = Command::new(shell)
                .arg("-c")
                .arg(BOOTSTRAP)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn");
            let pgid = i32::try_from(child.id()).expect("pid");
            let mut input = child.stdin.take().expect("stdin");
            input.write_all(&header(command.len(), 0)).expect("header");
            input.write_all(command.as_bytes()).expect("command");
            input.write_all(TRAILER).expect("trailer");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !log.exists() {
                assert!(Instant::now() < deadline, "{shell}: never started");
                std::thread::sleep(Duration::from_millis(20));
            }
            let closed = Instant::now();
            drop(input);
            let _ = child.wait();
            loop {
                if live_members(pgid).is_empty() {
                    break;
                }
                assert!(
                    closed.elapsed() < Duration::from_secs(3),
                    "{shell}: the group outlived its stdin"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(closed.elapsed() < Duration::from_millis(1800), "{shell}");
        }
    }

    /// Processes of group `pgid` that still run (a killed orphan is a zombie until init
    /// reaps it, which some inits do lazily).
    pub(crate) fn live_members(pgid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
                out.push(pid);
            }
        }
        out
    }

    #[test]
    fn grace_is_whole_seconds_at_least_one() {
        assert_eq!(terminate(Duration::from_millis(10)), b"T 1\n");
        assert_eq!(terminate(Duration::from_millis(2500)), b"T 3\n");
        assert_eq!(terminate(Duration::from_secs(5)), b"T 5\n");
    }
}
