//! The remote program: one POSIX shell script that runs several task steps on a host in
//! one round trip, and the parser for what it prints back.
//!
//! Each step runs its *query* (guards, file hash) and, unless in check mode, its *apply*.
//! After each step the script prints a mark line on stdout and on stderr:
//! `\n__CAPSTAN_<nonce> <step> <verdict> <detail>\n`. Splitting both streams on the mark gives
//! each step its own stdout and stderr; a step without a mark was interrupted (timeout or a
//! dropped connection). The script stops after the first step whose command fails, so a
//! failed task is never followed by the next one on that host.
//!
//! A command is evaluated by the login shell that runs the script (as `ssh host COMMAND`
//! would), in a subshell in the background with `wait`, so that a TERM sent on timeout reaches the script's trap
//! at once and is passed on to the whole process group.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::template::shell_quote;

/// Old file content above this size is summarised in diffs rather than fetched.
pub const DIFF_FETCH_LIMIT: usize = 256 * 1024;

/// One task's work on one host, ready to be put into a script.
#[derive(Debug, Clone)]
pub enum Step {
    Command {
        command: String,
        creates: Option<String>,
        removes: Option<String>,
        unless: Option<String>,
        escalate: Option<Become>,
        /// Declared read-only (`changed_when = "false"`): runs in check mode too, as a query.
        read_only: bool,
    },
    Template {
        dest: String,
        content: String,
        mode: Option<String>,
        escalate: Option<Become>,
    },
}

/// `become`: run through `sudo -n` (or `sudo -S` with a password on stdin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Become {
    pub user: String,
    /// The password is sent on the exec's stdin; such a step runs alone.
    pub with_password: bool,
}

impl Become {
    fn prefix(&self) -> String {
        let user = shell_quote(&self.user).unwrap_or_else(|_| "root".into());
        if self.with_password {
            format!("sudo -S -p '' -u {user} --")
        } else {
            format!("sudo -n -u {user} --")
        }
    }
}

/// How the script should treat the steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScriptOptions {
    /// Query only: nothing that changes the host runs.
    pub check: bool,
    /// Print the current content of a template's destination when it would change.
    pub want_old_content: bool,
}

/// What a step reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A guard or the file hash says there is nothing to do; `detail` names which.
    Satisfied(String),
    /// The command ran with this exit code.
    Ran(i32),
    /// The template was written (`detail`: what differed), or writing it failed (`code` ≠ 0).
    Wrote { code: i32, detail: String },
    /// Check mode: the command would run.
    WouldRun,
    /// Check mode: the file would change (`detail`: what differs).
    WouldChange(String),
    /// No mark: the step was cut off (timeout, dropped connection) or never reached.
    Interrupted,
}

/// One step's outcome, with its own output.
#[derive(Debug, Clone)]
pub struct StepOutput {
    pub verdict: Verdict,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// For a template in diff mode: `true` when `stdout` holds the old content.
    pub has_old_content: bool,
}

/// A script and the nonce its marks carry.
#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    nonce: String,
    steps: usize,
}

const PROLOGUE: &str = r#"__cs_sh=${SHELL:-/bin/sh}
__cs_mark() { printf '\n%s %s %s %s\n' "$__cs_id" "$1" "$2" "$3"; printf '\n%s %s %s %s\n' "$__cs_id" "$1" "$2" "$3" >&2; }
trap 'trap - TERM HUP INT; kill -TERM 0 2>/dev/null; exit 143' TERM HUP INT
__cs_hash() { if [ -r "$1" ]; then __cs_h=$( (sha256sum || shasum -a 256) < "$1" 2>/dev/null); __cs_h=${__cs_h%% *}; else __cs_h=absent; fi; }
__cs_mode() { __cs_m=$(stat -c %a "$1" 2>/dev/null || stat -f %Lp "$1" 2>/dev/null); }
"#;

impl Script {
    /// Builds the script for `steps`, in order.
    pub fn build(steps: &[Step], opts: ScriptOptions) -> Script {
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let mut text = String::with_capacity(1024);
        let _ = writeln!(text, "__cs_id=__CAPSTAN_{nonce}");
        text.push_str(PROLOGUE);
        if steps
            .iter()
            .any(|s| matches!(s, Step::Command { escalate: Some(b), .. } if b.with_password))
        {
            text.push_str("exec 3<&0\n");
        }
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Command { .. } => command_step(&mut text, i, step, opts),
                Step::Template { .. } => template_step(&mut text, i, step, opts),
            }
        }
        Script {
            text,
            nonce,
            steps: steps.len(),
        }
    }

    /// Splits the script's output into one [`StepOutput`] per step.
    pub fn parse(&self, stdout: &[u8], stderr: &[u8]) -> Vec<StepOutput> {
        let marker = format!("\n__CAPSTAN_{} ", self.nonce);
        let out = split(stdout, marker.as_bytes());
        let err = split(stderr, marker.as_bytes());
        (0..self.steps)
            .map(|i| {
                let (verdict, has_old) = out
                    .marks
                    .get(i)
                    .map_or((Verdict::Interrupted, false), |m| parse_mark(m));
                StepOutput {
                    verdict,
                    stdout: out.bodies.get(i).cloned().unwrap_or_default(),
                    stderr: err.bodies.get(i).cloned().unwrap_or_default(),
                    has_old_content: has_old,
                }
            })
            .collect()
    }
}

fn q(s: &str) -> String {
    // Inputs are checked for NUL when rendered; a NUL here would be a bug upstream.
    shell_quote(s).unwrap_or_else(|_| "''".to_owned())
}

fn command_step(text: &mut String, i: usize, step: &Step, opts: ScriptOptions) {
    let Step::Command {
        command,
        creates,
        removes,
        unless,
        escalate,
        read_only,
    } = step
    else {
        return;
    };
    let mut branch = "if";
    if let Some(path) = creates {
        let _ = writeln!(
            text,
            "{branch} [ -e {} ]; then __cs_mark {i} ok creates",
            q(path)
        );
        branch = "elif";
    }
    if let Some(path) = removes {
        let _ = writeln!(
            text,
            "{branch} [ ! -e {} ]; then __cs_mark {i} ok removes",
            q(path)
        );
        branch = "elif";
    }
    if let Some(cmd) = unless {
        let _ = writeln!(
            text,
            "{branch} ( eval {} ) >/dev/null 2>&1 </dev/null; then __cs_mark {i} ok unless",
            q(cmd)
        );
        branch = "elif";
    }
    let run = if opts.check && !read_only {
        format!("__cs_mark {i} would-run -")
    } else {
        // Without `become`, the login shell running this script evaluates the command in a
        // subshell: the same shell `ssh host COMMAND` would use, for the cost of a fork. A
        // syntax error in the command ends only that subshell.
        let runner = match escalate {
            Some(b) if b.with_password => {
                format!("{} \"$__cs_sh\" -c {} <&3", b.prefix(), q(command))
            }
            Some(b) => format!("{} \"$__cs_sh\" -c {}", b.prefix(), q(command)),
            None => format!("( eval {} )", q(command)),
        };
        format!(
            "{runner} & wait $!; __cs_rc=$?; __cs_mark {i} ran $__cs_rc; [ $__cs_rc -eq 0 ] || exit 0"
        )
    };
    if branch == "if" {
        let _ = writeln!(text, "{run}");
    } else {
        let _ = writeln!(text, "else {run}\nfi");
    }
}

fn template_step(text: &mut String, i: usize, step: &Step, opts: ScriptOptions) {
    let Step::Template {
        dest,
        content,
        mode,
        escalate,
    } = step
    else {
        return;
    };
    let hash = hex::encode(Sha256::digest(content.as_bytes()));
    let sudo = escalate
        .as_ref()
        .map(|b| format!("{} ", b.prefix()))
        .unwrap_or_default();
    let _ = writeln!(text, "__cs_f={}; __cs_hash \"$__cs_f\"; __cs_d=", q(dest));
    let _ = writeln!(text, "[ \"$__cs_h\" = {hash} ] || __cs_d=content");
    let want_mode = mode.as_deref().map(normalize_mode);
    if let Some(m) = &want_mode {
        let _ = writeln!(
            text,
            "__cs_mode \"$__cs_f\"; [ \"$__cs_h\" = absent ] || [ \"${{__cs_m#0}}\" = {m} ] || __cs_d=\"${{__cs_d:+$__cs_d,}}mode\""
        );
    }
    let _ = writeln!(
        text,
        "if [ -z \"$__cs_d\" ]; then __cs_mark {i} ok same\nelse"
    );
    let _ = writeln!(text, "[ \"$__cs_h\" = absent ] && __cs_d=new");
    if opts.check {
        if opts.want_old_content {
            let _ = writeln!(
                text,
                "__cs_o=-; if [ \"$__cs_h\" != absent ] && [ $(wc -c < \"$__cs_f\") -le {DIFF_FETCH_LIMIT} ]; then cat \"$__cs_f\"; __cs_o=old; fi\n__cs_mark {i} would-change \"$__cs_d:$__cs_o\""
            );
        } else {
            let _ = writeln!(text, "__cs_mark {i} would-change \"$__cs_d:-\"");
        }
    } else {
        if opts.want_old_content {
            let _ = writeln!(
                text,
                "__cs_o=-; if [ \"$__cs_h\" != absent ] && [ $(wc -c < \"$__cs_f\") -le {DIFF_FETCH_LIMIT} ]; then cat \"$__cs_f\"; __cs_o=old; fi"
            );
        } else {
            text.push_str("__cs_o=-\n");
        }
        // Mode: the one asked for; else keep the existing file's; else the umask's default.
        let chmod = match &want_mode {
            Some(m) => format!("{sudo}chmod {m} \"$__cs_t\""),
            None => format!(
                "if [ \"$__cs_h\" != absent ]; then __cs_mode \"$__cs_f\"; {sudo}chmod \"$__cs_m\" \"$__cs_t\"; else {sudo}chmod $(printf '%o' $((0666 & ~$(umask)))) \"$__cs_t\"; fi"
            ),
        };
        let _ = writeln!(
            text,
            "__cs_t=\"$__cs_f.capstan-tmp.$$\"\nprintf '%s' {} | {sudo}sh -c 'umask 077; cat > \"$1\"' _ \"$__cs_t\" && {chmod} && {sudo}mv -f \"$__cs_t\" \"$__cs_f\"; __cs_rc=$?\n[ $__cs_rc -eq 0 ] || {sudo}rm -f \"$__cs_t\"\n__cs_mark {i} wrote \"$__cs_rc:$__cs_d:$__cs_o\"; [ $__cs_rc -eq 0 ] || exit 0",
            q(content)
        );
    }
    text.push_str("fi\n");
}

/// `"0644"` → `"644"`, as `stat -c %a` prints it.
fn normalize_mode(mode: &str) -> String {
    let m = mode.trim_start_matches('0');
    if m.is_empty() {
        "0".to_owned()
    } else {
        m.to_owned()
    }
}

struct Split {
    bodies: Vec<Vec<u8>>,
    marks: Vec<String>,
}

fn split(data: &[u8], marker: &[u8]) -> Split {
    let mut bodies = Vec::new();
    let mut marks = Vec::new();
    let mut rest = data;
    loop {
        match find(rest, marker) {
            Some(pos) => {
                bodies.push(rest[..pos].to_vec());
                let after = &rest[pos + marker.len()..];
                let end = after
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(after.len());
                marks.push(String::from_utf8_lossy(&after[..end]).into_owned());
                rest = after.get(end + 1..).unwrap_or(&[]);
            }
            None => {
                bodies.push(rest.to_vec());
                break;
            }
        }
    }
    Split { bodies, marks }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `"<step> <verdict> <detail>"` → verdict, and whether stdout carries old content.
fn parse_mark(mark: &str) -> (Verdict, bool) {
    let mut parts = mark.splitn(3, ' ');
    let _step = parts.next();
    let verdict = parts.next().unwrap_or("");
    let detail = parts.next().unwrap_or("").to_owned();
    match verdict {
        "ok" => (Verdict::Satisfied(detail), false),
        "ran" => (Verdict::Ran(detail.parse().unwrap_or(-1)), false),
        "would-run" => (Verdict::WouldRun, false),
        "would-change" => {
            let (what, old) = detail.rsplit_once(':').unwrap_or((&detail, "-"));
            (Verdict::WouldChange(what.to_owned()), old == "old")
        }
        "wrote" => {
            let mut f = detail.splitn(3, ':');
            let code = f.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
            let what = f.next().unwrap_or("").to_owned();
            let old = f.next() == Some("old");
            (Verdict::Wrote { code, detail: what }, old)
        }
        _ => (Verdict::Interrupted, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(script: &Script) -> Vec<StepOutput> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script.text)
            .output()
            .expect("sh runs");
        script.parse(&out.stdout, &out.stderr)
    }

    fn cmd(c: &str) -> Step {
        Step::Command {
            command: c.into(),
            creates: None,
            removes: None,
            unless: None,
            escalate: None,
            read_only: false,
        }
    }

    #[test]
    fn steps_get_their_own_output_and_exit_codes() {
        let s = Script::build(
            &[
                cmd("echo one; echo e1 >&2"),
                cmd("printf 'no newline'"),
                cmd("true"),
            ],
            ScriptOptions::default(),
        );
        let r = run(&s);
        assert_eq!(r[0].verdict, Verdict::Ran(0));
        assert_eq!(r[0].stdout, b"one\n");
        assert_eq!(r[0].stderr, b"e1\n");
        assert_eq!(r[1].stdout, b"no newline");
        assert_eq!(r[2].verdict, Verdict::Ran(0));
        assert!(r[2].stdout.is_empty());
    }

    #[test]
    fn a_syntax_error_fails_only_its_own_step() {
        let s = Script::build(
            &[cmd("echo ok"), cmd("if then fi ("), cmd("echo never")],
            ScriptOptions::default(),
        );
        let r = run(&s);
        assert_eq!(r[0].verdict, Verdict::Ran(0));
        assert!(
            matches!(r[1].verdict, Verdict::Ran(rc) if rc != 0),
            "{:?}",
            r[1].verdict
        );
        assert_eq!(r[2].verdict, Verdict::Interrupted);
    }

    #[test]
    fn a_failed_step_stops_the_script() {
        let s = Script::build(
            &[cmd("exit 7"), cmd("echo never")],
            ScriptOptions::default(),
        );
        let r = run(&s);
        assert_eq!(r[0].verdict, Verdict::Ran(7));
        assert_eq!(r[1].verdict, Verdict::Interrupted);
        assert!(r[1].stdout.is_empty());
    }

    #[test]
    fn guards_skip_and_check_mode_does_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("m");
        let m = marker.to_string_lossy().into_owned();
        let steps = [
            Step::Command {
                command: format!("touch {}", q(&m)),
                creates: Some(m.clone()),
                removes: None,
                unless: None,
                escalate: None,
                read_only: false,
            },
            Step::Command {
                command: "echo ran".into(),
                creates: None,
                removes: None,
                unless: Some("exit 0".into()),
                escalate: None,
                read_only: false,
            },
        ];
        let check = Script::build(
            &steps,
            ScriptOptions {
                check: true,
                want_old_content: false,
            },
        );
        let r = run(&check);
        assert_eq!(r[0].verdict, Verdict::WouldRun);
        assert!(!marker.exists(), "check mode must not run the command");
        assert_eq!(r[1].verdict, Verdict::Satisfied("unless".into()));
        let apply = Script::build(&steps, ScriptOptions::default());
        assert_eq!(run(&apply)[0].verdict, Verdict::Ran(0));
        assert!(marker.exists());
        assert_eq!(run(&apply)[0].verdict, Verdict::Satisfied("creates".into()));
    }

    #[test]
    fn template_is_written_atomically_then_ok() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("app.conf");
        let step = Step::Template {
            dest: dest.to_string_lossy().into_owned(),
            content: "a = 'quoted' $(x)\nno newline".into(),
            mode: Some("0640".into()),
            escalate: None,
        };
        let opts = ScriptOptions {
            check: false,
            want_old_content: true,
        };
        let s = Script::build(std::slice::from_ref(&step), opts);
        let r = run(&s);
        assert_eq!(
            r[0].verdict,
            Verdict::Wrote {
                code: 0,
                detail: "new".into()
            }
        );
        assert_eq!(
            std::fs::read_to_string(&dest).expect("written"),
            "a = 'quoted' $(x)\nno newline"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(run(&s)[0].verdict, Verdict::Satisfied("same".into()));
        std::fs::write(&dest, "old\n").expect("write");
        let check = Script::build(
            &[step],
            ScriptOptions {
                check: true,
                want_old_content: true,
            },
        );
        let r = run(&check);
        assert_eq!(r[0].verdict, Verdict::WouldChange("content".into()));
        assert!(r[0].has_old_content);
        assert_eq!(r[0].stdout, b"old\n");
        let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temp file may be left behind");
    }

    #[test]
    fn mode_only_change_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("f");
        std::fs::write(&dest, "x").expect("write");
        let step = Step::Template {
            dest: dest.to_string_lossy().into_owned(),
            content: "x".into(),
            mode: Some("600".into()),
            escalate: None,
        };
        let r = run(&Script::build(&[step], ScriptOptions::default()));
        assert_eq!(
            r[0].verdict,
            Verdict::Wrote {
                code: 0,
                detail: "mode".into()
            }
        );
    }

    #[test]
    fn a_timeout_signal_kills_the_running_command() {
        let s = Script::build(&[cmd("sleep 30; echo late")], ScriptOptions::default());
        let child = Command::new("sh")
            .arg("-c")
            .arg(&s.text)
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pid = i32::try_from(child.id()).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal");
        let started = std::time::Instant::now();
        let out = child.wait_with_output().expect("wait");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("late"));
    }

    use std::os::unix::process::CommandExt;
}
