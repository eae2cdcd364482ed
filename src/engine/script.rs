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
//! would), in a subshell in the background with `wait`, so that the script's shell ends at
//! once when the transport TERMs the process group (on a timeout or a stop request); the
//! command gets that one TERM itself.
//!
//! The script travels on the command's stdin (see `transport::frame`), and so does its
//! payload: the `become` password (first line) and, in apply mode, the content of each
//! template too large to sit in the script (over 64 KiB, or holding a NUL), read in step
//! order (a step that does not write its file skips its bytes). Nothing secret or large is
//! ever a command argument.
//!
//! A template is installed without following links: a temporary file with an unpredictable
//! name is created in the destination's directory with exclusive creation (`set -C`: never
//! through an existing name or link), its mode (and the replaced file's owner) set through
//! the open file before any content is written, then renamed over the destination, which
//! replaces a symlink there instead of following it. The query does not read through a
//! symlink at the destination either; it reports it.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::template::shell_quote;
use crate::transport::{Cut, ExecControl, ExecOutput, ExecRequest};

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

    /// What feeds sudo the password (read into `$__cs_pw` by the prologue) before `rest`.
    fn feed(&self, rest: &str) -> String {
        if self.with_password {
            format!("{{ printf '%s\\n' \"$__cs_pw\"; {rest}; }}")
        } else {
            rest.to_owned()
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
    /// What was kept of the step's stdout; when some was dropped, it ends with a line
    /// saying how much ("… 199 MiB more not kept").
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// For a template in diff mode: `true` when `stdout` holds the old content.
    pub has_old_content: bool,
}

/// A script, the nonce its marks carry, and the bytes it reads on its stdin.
#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    nonce: String,
    steps: usize,
    /// Large template contents, in step order (apply mode only).
    payload: Vec<u8>,
    /// A step runs through `sudo -S`: the payload starts with the password line.
    wants_password: bool,
}

/// Runs as the (possibly escalated) owner of the destination, with `$1` the temporary
/// file, `$2` the destination, `$3` the mode, `$4` a file whose owner to copy (or empty);
/// the content on stdin. Exclusive creation (`set -C`), then mode and owner through the
/// open file (`/dev/fd/7`), then content, then a rename that replaces whatever `$2` is.
const INSTALL: &str = "umask 077; set -C; exec 7>\"$1\" || exit 1; \
chmod \"$3\" /dev/fd/7 || { rm -f \"$1\"; exit 1; }; \
if [ -n \"$4\" ] && [ ! -L \"$4\" ]; then chown --reference=\"$4\" /dev/fd/7 2>/dev/null; fi; \
cat >&7 || { rm -f \"$1\"; exit 1; }; exec 7>&-; \
mv -fT \"$1\" \"$2\" || { rm -f \"$1\"; exit 1; }";

const PROLOGUE: &str = r#"__cs_sh=${SHELL:-/bin/sh}
__cs_mark() { printf '\n%s %s %s %s\n' "$__cs_id" "$1" "$2" "$3"; printf '\n%s %s %s %s\n' "$__cs_id" "$1" "$2" "$3" >&2; }
trap 'trap - TERM HUP INT; exit 143' TERM HUP INT
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
        let wants_password = steps.iter().any(|s| {
            matches!(
                s,
                Step::Command { escalate: Some(b), .. } | Step::Template { escalate: Some(b), .. }
                    if b.with_password
            )
        });
        if wants_password {
            text.push_str("IFS= read -r __cs_pw\n");
        }
        let mut payload = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Command { .. } => command_step(&mut text, i, step, opts),
                Step::Template { content, .. } => {
                    template_step(&mut text, i, step, opts);
                    if !opts.check && !inline(content) {
                        payload.extend_from_slice(content.as_bytes());
                    }
                }
            }
        }
        Script {
            text,
            nonce,
            steps: steps.len(),
            payload,
            wants_password,
        }
    }

    /// The request that runs this script: the script and its payload (after the `become`
    /// password, when a step needs it) both go on stdin.
    pub fn request(
        &self,
        become_password: Option<&str>,
        timeout: std::time::Duration,
    ) -> ExecRequest {
        let mut stdin = Vec::with_capacity(self.payload.len() + 64);
        if self.wants_password {
            stdin.extend_from_slice(become_password.unwrap_or_default().as_bytes());
            stdin.push(b'\n');
        }
        stdin.extend_from_slice(&self.payload);
        ExecRequest {
            command: self.text.clone(),
            stdin: (!stdin.is_empty()).then_some(stdin),
            timeout: Some(timeout),
        }
    }

    /// `base`, with the output limit applied to each step rather than to the whole script.
    pub fn control(&self, base: &ExecControl) -> ExecControl {
        ExecControl {
            record_mark: Some(self.marker().into_bytes()),
            ..base.clone()
        }
    }

    fn marker(&self) -> String {
        format!("\n__CAPSTAN_{} ", self.nonce)
    }

    /// Splits the script's output into one [`StepOutput`] per step.
    pub fn parse(&self, stdout: &[u8], stderr: &[u8]) -> Vec<StepOutput> {
        self.parse_cut(stdout, &[], stderr, &[])
    }

    /// [`Script::parse`] for output that may have been cut (see [`Script::control`]): each
    /// step says how much of its output was dropped.
    pub fn parse_output(&self, out: &ExecOutput) -> Vec<StepOutput> {
        self.parse_cut(&out.stdout, &out.stdout_cuts, &out.stderr, &out.stderr_cuts)
    }

    fn parse_cut(
        &self,
        stdout: &[u8],
        stdout_cuts: &[Cut],
        stderr: &[u8],
        stderr_cuts: &[Cut],
    ) -> Vec<StepOutput> {
        let marker = self.marker();
        let out = split(stdout, marker.as_bytes());
        let err = split(stderr, marker.as_bytes());
        (0..self.steps)
            .map(|i| {
                let (mut verdict, has_old) = out
                    .marks
                    .get(i)
                    .map_or((Verdict::Interrupted, false), |m| parse_mark(m));
                let (mut stdout, stdout_dropped) = out.body(i, stdout_cuts);
                let (stderr, stderr_dropped) = err.body(i, stderr_cuts);
                if let Some(target) = symlink_target(&mut verdict, &stdout) {
                    stdout.clear();
                    verdict = target;
                }
                StepOutput {
                    verdict,
                    stdout: with_dropped_note(stdout, stdout_dropped),
                    stderr: with_dropped_note(stderr, stderr_dropped),
                    has_old_content: has_old,
                }
            })
            .collect()
    }
}

/// A template step found a symlink at its destination (detail `symlink`, the link's target
/// on stdout): the verdict with the target in its detail, `symlink TARGET`.
fn symlink_target(verdict: &mut Verdict, stdout: &[u8]) -> Option<Verdict> {
    let target = || {
        let t = String::from_utf8_lossy(stdout);
        t.strip_suffix('\n').unwrap_or(&t).to_owned()
    };
    match verdict {
        Verdict::WouldChange(what) if what == "symlink" => {
            Some(Verdict::WouldChange(format!("symlink {}", target())))
        }
        Verdict::Wrote { code, detail } if detail == "symlink" => Some(Verdict::Wrote {
            code: *code,
            detail: format!("symlink {}", target()),
        }),
        _ => None,
    }
}

/// `body`, ending with a line that says how much was dropped, if anything was.
fn with_dropped_note(mut body: Vec<u8>, dropped: u64) -> Vec<u8> {
    if dropped > 0 {
        if !body.is_empty() && !body.ends_with(b"\n") {
            body.push(b'\n');
        }
        let _ = writeln!(
            WriteBytes(&mut body),
            "… {} more not kept",
            human_bytes(dropped)
        );
    }
    body
}

struct WriteBytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for WriteBytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `512 bytes`, `12 KiB`, `199 MiB` (rounded).
pub(crate) fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n < KIB {
        format!("{n} bytes")
    } else if n < MIB {
        format!("{} KiB", (n + KIB / 2) / KIB)
    } else {
        format!("{} MiB", (n + MIB / 2) / MIB)
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
            Some(b) if b.with_password => format!(
                "printf '%s\\n' \"$__cs_pw\" | {} \"$__cs_sh\" -c {}",
                b.prefix(),
                q(command)
            ),
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
    let len = content.len();
    let sudo = escalate
        .as_ref()
        .map(|b| format!("{} ", b.prefix()))
        .unwrap_or_default();
    let want_mode = mode.as_deref().map(normalize_mode);
    // Query. A symlink at dest is never read through: it is reported, and replaced.
    let _ = writeln!(text, "__cs_f={}; __cs_d=", q(dest));
    let _ = writeln!(
        text,
        "if [ -L \"$__cs_f\" ]; then __cs_h=link; __cs_d=symlink; else __cs_hash \"$__cs_f\""
    );
    let _ = writeln!(text, "[ \"$__cs_h\" = {hash} ] || __cs_d=content");
    if let Some(m) = &want_mode {
        let _ = writeln!(
            text,
            "__cs_mode \"$__cs_f\"; [ \"$__cs_h\" = absent ] || [ \"${{__cs_m#0}}\" = {m} ] || __cs_d=\"${{__cs_d:+$__cs_d,}}mode=$__cs_m\""
        );
    }
    text.push_str("fi\n");
    // Apply mode: this step's content is next on stdin, to be written or skipped.
    let skip = if opts.check || inline(content) {
        String::new()
    } else {
        format!("; head -c {len} >/dev/null")
    };
    let _ = writeln!(
        text,
        "if [ -z \"$__cs_d\" ]; then __cs_mark {i} ok same{skip}\nelse"
    );
    let _ = writeln!(text, "[ \"$__cs_h\" = absent ] && __cs_d=new");
    // What the step prints before its mark: the old content (diff mode, small files), or
    // the target of a symlink at dest.
    let old = if opts.want_old_content {
        format!(
            "__cs_o=-; if [ \"$__cs_h\" = link ]; then readlink \"$__cs_f\"; __cs_o=link; elif [ \"$__cs_h\" != absent ] && [ $(wc -c < \"$__cs_f\") -le {DIFF_FETCH_LIMIT} ]; then cat \"$__cs_f\"; __cs_o=old; fi"
        )
    } else {
        "__cs_o=-; if [ \"$__cs_h\" = link ]; then readlink \"$__cs_f\"; __cs_o=link; fi".to_owned()
    };
    let _ = writeln!(text, "{old}");
    if opts.check {
        let _ = writeln!(text, "__cs_mark {i} would-change \"$__cs_d:$__cs_o\"");
        text.push_str("fi\n");
        return;
    }
    // Mode: the one asked for; else keep the replaced file's; else the umask's default.
    // Owner: the replaced file's (when allowed), else whoever writes it.
    let mode_of = match &want_mode {
        Some(m) => format!("__cs_m={m}"),
        None => "if [ \"$__cs_h\" != absent ] && [ \"$__cs_h\" != link ]; then __cs_mode \"$__cs_f\"; else __cs_m=$(printf '%o' $((0666 & ~$(umask)))); fi".to_owned(),
    };
    let _ = writeln!(text, "{mode_of}");
    let _ = writeln!(
        text,
        "__cs_r=; [ \"$__cs_h\" = absent ] || [ \"$__cs_h\" = link ] || __cs_r=$__cs_f"
    );
    let temp = q(&temp_path(dest));
    let content_in = if inline(content) {
        format!("printf '%s' {}", q(content))
    } else {
        format!("head -c {len}")
    };
    let feed = match escalate {
        Some(b) => b.feed(&content_in),
        None => content_in,
    };
    let install = format!(
        "{feed} | {sudo}sh -c {} _ {temp} \"$__cs_f\" \"$__cs_m\" \"$__cs_r\"",
        q(INSTALL)
    );
    let _ = writeln!(
        text,
        "{install}; __cs_rc=$?\n__cs_mark {i} wrote \"$__cs_rc:$__cs_d:$__cs_o\"; [ $__cs_rc -eq 0 ] || exit 0"
    );
    text.push_str("fi\n");
}

/// Content this small (and without NUL) is written into the script itself, which is on
/// stdin too and saves the host spooling a payload; larger content is read from the payload.
const INLINE_CONTENT_MAX: usize = 64 * 1024;

fn inline(content: &str) -> bool {
    content.len() <= INLINE_CONTENT_MAX && !content.contains('\0')
}

/// A name in `dest`'s directory that no one can guess before the script runs.
fn temp_path(dest: &str) -> String {
    let dir = match dest.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    };
    let sep = if dir.ends_with('/') { "" } else { "/" };
    format!(
        "{dir}{sep}.capstan-{}.tmp",
        hex::encode(rand::random::<[u8; 16]>())
    )
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

struct Split<'a> {
    data: &'a [u8],
    /// Each body's range in `data`.
    bodies: Vec<std::ops::Range<usize>>,
    marks: Vec<String>,
}

impl Split<'_> {
    /// Body `i` (empty if missing) and the bytes dropped from it, per `cuts`.
    fn body(&self, i: usize, cuts: &[Cut]) -> (Vec<u8>, u64) {
        let Some(range) = self.bodies.get(i) else {
            return (Vec::new(), 0);
        };
        let dropped = cuts
            .iter()
            .filter(|c| range.start <= c.at && c.at <= range.end)
            .map(|c| c.dropped)
            .sum();
        (self.data[range.clone()].to_vec(), dropped)
    }
}

fn split<'a>(data: &'a [u8], marker: &[u8]) -> Split<'a> {
    let mut bodies = Vec::new();
    let mut marks = Vec::new();
    let mut at = 0;
    loop {
        let rest = &data[at..];
        match find(rest, marker) {
            Some(pos) => {
                bodies.push(at..at + pos);
                let after = at + pos + marker.len();
                let end = data[after..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |p| after + p);
                marks.push(String::from_utf8_lossy(&data[after..end]).into_owned());
                at = (end + 1).min(data.len());
            }
            None => {
                bodies.push(at..data.len());
                break;
            }
        }
    }
    Split {
        data,
        bodies,
        marks,
    }
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
    use std::io::Write as _;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// Runs the script as the host's shell would (its payload on stdin), with `env` added.
    fn run_with(
        script: &Script,
        password: Option<&str>,
        env: &[(&str, String)],
    ) -> Vec<StepOutput> {
        let req = script.request(password, std::time::Duration::from_secs(60));
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&req.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("sh runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = req.stdin.unwrap_or_default();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("sh ends");
        let _ = writer.join();
        script.parse(&out.stdout, &out.stderr)
    }

    fn run(script: &Script) -> Vec<StepOutput> {
        run_with(script, None, &[])
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
                detail: "mode=644".into()
            },
            "the old mode travels with the change"
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
        // As the transport does on a timeout or a stop request: TERM to the process group.
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal");
        let started = std::time::Instant::now();
        let out = child.wait_with_output().expect("wait");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("late"));
    }

    fn template(dest: &Path, content: &str, mode: Option<&str>) -> Step {
        Step::Template {
            dest: dest.to_string_lossy().into_owned(),
            content: content.into(),
            mode: mode.map(str::to_owned),
            escalate: None,
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_symlink_planted_at_dest_is_replaced_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root only\n").expect("write");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let dest = dir.path().join("app.conf");
        symlink(&victim, &dest).expect("plant the link at dest");
        // The names the old install used, planted too: nothing may go through them.
        for pid in 1..50 {
            let _ = symlink(
                &victim,
                dir.path().join(format!("app.conf.capstan-tmp.{pid}")),
            );
        }
        let r = run(&Script::build(
            &[template(&dest, "new content\n", Some("0644"))],
            ScriptOptions::default(),
        ));
        assert_eq!(
            r[0].verdict,
            Verdict::Wrote {
                code: 0,
                detail: format!("symlink {}", victim.display())
            }
        );
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "root only\n"
        );
        assert_eq!(mode_of(&victim), 0o600);
        let meta = std::fs::symlink_metadata(&dest).expect("dest");
        assert!(meta.file_type().is_file(), "dest is a file now");
        assert_eq!(
            std::fs::read_to_string(&dest).expect("read"),
            "new content\n"
        );
        assert_eq!(mode_of(&dest), 0o644);
        let temps = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".capstan-"))
            .count();
        assert_eq!(temps, 0, "no temporary file is left");
    }

    #[test]
    fn the_query_reports_a_symlink_at_dest_without_reading_its_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "the secret inside\n").expect("write");
        let dest = dir.path().join("app.conf");
        symlink(&victim, &dest).expect("plant");
        let r = run(&Script::build(
            &[template(&dest, "the secret inside\n", None)],
            ScriptOptions {
                check: true,
                want_old_content: true,
            },
        ));
        assert_eq!(
            r[0].verdict,
            Verdict::WouldChange(format!("symlink {}", victim.display())),
            "same content behind the link still replaces the link"
        );
        assert!(r[0].stdout.is_empty());
        assert!(!r[0].has_old_content);
    }

    #[test]
    fn the_temporary_file_is_created_exclusively_with_its_mode_before_content() {
        // A name already taken (by anything) is never opened: exclusive creation fails.
        let dir = tempfile::tempdir().expect("tempdir");
        let taken = dir.path().join(".capstan-taken.tmp");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").expect("write");
        symlink(&victim, &taken).expect("plant");
        let dest = dir.path().join("dest");
        let out = Command::new("sh")
            .arg("-c")
            .arg(INSTALL)
            .arg("_")
            .arg(&taken)
            .arg(&dest)
            .arg("640")
            .arg("")
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        assert!(!out.status.success());
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep\n");
        assert!(!dest.exists());
        // The mode is set on the open file before a byte is written: a reader that opens
        // the file while it is being filled needs the final mode's permission.
        let fresh = dir.path().join(".capstan-fresh.tmp");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(INSTALL)
            .arg("_")
            .arg(&fresh)
            .arg(&dest)
            .arg("640")
            .arg("")
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !fresh.exists() {
            assert!(std::time::Instant::now() < deadline, "never created");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // `cat` is waiting for content: the mode is already the final one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while mode_of(&fresh) != 0o640 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:o}",
                mode_of(&fresh)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(std::fs::metadata(&fresh).expect("meta").len(), 0);
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"data")
            .expect("write");
        assert!(child.wait().expect("wait").success());
        assert_eq!(std::fs::read_to_string(&dest).expect("read"), "data");
        assert_eq!(mode_of(&dest), 0o640);
    }

    #[test]
    fn templates_take_their_own_content_from_stdin_in_step_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let c = dir.path().join("c");
        let large = "line1\n'quoted' $(not run) `nor this`\n".repeat(2000);
        assert!(large.len() > INLINE_CONTENT_MAX);
        let steps = [
            template(&a, &large, None),
            cmd("echo between"),
            template(&b, &large, None),
            template(&c, "small, in the script\n", None),
        ];
        std::fs::write(&a, &large).expect("write");
        let script = Script::build(&steps, ScriptOptions::default());
        assert!(
            !script.text.contains("not run"),
            "large content is not in the script"
        );
        assert!(script.text.contains("small, in the script"));
        let r = run(&script);
        assert_eq!(r[0].verdict, Verdict::Satisfied("same".into()));
        assert_eq!(r[1].stdout, b"between\n");
        assert_eq!(std::fs::read_to_string(&b).expect("read"), large);
        assert_eq!(
            std::fs::read_to_string(&c).expect("read"),
            "small, in the script\n"
        );
        // Check mode sends no content at all.
        let check = Script::build(
            &steps,
            ScriptOptions {
                check: true,
                want_old_content: false,
            },
        );
        assert_eq!(
            check.request(None, std::time::Duration::from_secs(1)).stdin,
            None
        );
    }

    /// A stand-in for sudo(8) as capstan uses it: `-S` reads the password as one line from
    /// stdin ("read the password from the standard input instead of using the terminal
    /// device"), `-n` never asks; `-p PROMPT -u USER --` are accepted; then the command runs
    /// with what is left of stdin. Each password read is appended to `$FAKE_SUDO_LOG`.
    const FAKE_SUDO: &str = r#"#!/bin/sh
stdin_pw=no
while [ $# -gt 0 ]; do
  case $1 in
    -S) stdin_pw=yes; shift ;;
    -n) shift ;;
    -p|-u) shift 2 ;;
    --) shift; break ;;
    *) echo "fake sudo: unknown option $1" >&2; exit 1 ;;
  esac
done
if [ $stdin_pw = yes ]; then IFS= read -r pw || exit 1; printf '%s\n' "$pw" >> "$FAKE_SUDO_LOG"; fi
exec "$@"
"#;

    #[test]
    fn the_become_password_comes_first_and_each_sudo_gets_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        std::fs::write(bin.join("sudo"), FAKE_SUDO).expect("write");
        std::fs::set_permissions(bin.join("sudo"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let log = dir.path().join("sudo.log");
        let become_ = Some(Become {
            user: "root".into(),
            with_password: true,
        });
        let conf = dir.path().join("app.conf");
        let steps = [
            Step::Command {
                command: "echo as root".into(),
                creates: None,
                removes: None,
                unless: None,
                escalate: become_.clone(),
                read_only: false,
            },
            Step::Template {
                dest: conf.to_string_lossy().into_owned(),
                content: "content after the password\n".repeat(4000),
                mode: Some("600".into()),
                escalate: become_,
            },
        ];
        let script = Script::build(&steps, ScriptOptions::default());
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let r = run_with(
            &script,
            Some("pw with spaces"),
            &[
                ("PATH", path),
                ("FAKE_SUDO_LOG", log.to_string_lossy().into_owned()),
            ],
        );
        assert_eq!(
            r[0].stdout,
            b"as root\n",
            "{:?}",
            String::from_utf8_lossy(&r[0].stderr)
        );
        assert_eq!(
            r[1].verdict,
            Verdict::Wrote {
                code: 0,
                detail: "new".into()
            }
        );
        assert_eq!(
            std::fs::read_to_string(&conf).expect("read"),
            "content after the password\n".repeat(4000)
        );
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "pw with spaces\npw with spaces\n"
        );
    }

    #[test]
    fn a_step_says_how_much_of_its_output_was_dropped() {
        let script = Script::build(&[cmd("a"), cmd("b")], ScriptOptions::default());
        let m = script.marker();
        let stdout = format!("0123{m}0 ran 0\nxy{m}1 ran 0\n");
        let at = stdout.find(&format!("{m}1 ")).expect("second mark");
        let steps = script.parse_cut(
            stdout.as_bytes(),
            &[Cut {
                at,
                dropped: 3 * 1024 * 1024,
            }],
            b"",
            &[],
        );
        assert_eq!(steps[0].stdout, b"0123");
        assert_eq!(
            String::from_utf8_lossy(&steps[1].stdout),
            "xy\n… 3 MiB more not kept\n"
        );
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(200 * 1000 * 1000), "191 MiB");
    }

    use std::os::unix::process::CommandExt;
}
