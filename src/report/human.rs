//! Human output: a live view on a terminal (indicatif), plain timestamped lines otherwise,
//! and the end-of-run recap, the list of changes, and failures grouped per host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::colour::{Paint, Painter};
use super::escape;
use super::event::{Event, HostRecap, Status, TaskReport};
use crate::secrets;

/// Lines of stderr shown for a failure.
const STDERR_TAIL: usize = 10;

/// Whether to draw a live view: stdin and stdout are terminals and neither `CI` nor
/// `NO_COLOR` is set.
pub fn live_view_wanted() -> bool {
    std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal()
        && std::env::var_os("CI").is_none()
        && std::env::var_os("NO_COLOR").is_none()
}

/// What DTR tasks ask a person to do by hand start their note lines with this; they are
/// repeated in the recap, where they cannot scroll away.
const OPERATOR_STEP: &str = "OPERATOR STEP";

/// Prints events as they come.
pub struct HumanReporter {
    live: Option<Live>,
    check: bool,
    failures: BTreeMap<String, Vec<TaskReport>>,
    changes: BTreeMap<String, Vec<String>>,
    operator_steps: BTreeMap<String, Vec<String>>,
    /// `-v` each task's stdout and connection times; `-vv` also its rendered command and
    /// how long it took.
    verbosity: u8,
    paint: Painter,
}

struct Live {
    multi: MultiProgress,
    batch: Option<ProgressBar>,
    hosts: BTreeMap<String, ProgressBar>,
}

impl HumanReporter {
    /// A reporter drawing a live view or not, at `verbosity` (the count of `-v`), painting
    /// status words and the recap when `colour` is on (see [`super::colour::wanted`]).
    pub fn new(live: bool, verbosity: u8, colour: bool) -> Self {
        let live = live.then(|| Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            batch: None,
            hosts: BTreeMap::new(),
        });
        Self {
            live,
            check: false,
            failures: BTreeMap::new(),
            changes: BTreeMap::new(),
            operator_steps: BTreeMap::new(),
            verbosity,
            paint: Painter { on: colour },
        }
    }

    /// Prints a line on stdout without tearing a live view. Secrets are masked and host
    /// output is shown as data: control characters escaped, continuation lines indented.
    fn line(&self, text: &str) {
        self.shown_line(&shown(text));
    }

    /// Prints a line already masked and escaped (and perhaps painted): timestamped without
    /// a live view; above the bars with one. Either way it ends with a newline and carries
    /// no padding (indicatif's own `println` pads to the terminal width and ends no line).
    fn shown_line(&self, shown: &str) {
        let shown = shown.trim_end_matches('\n');
        match &self.live {
            Some(_) => {
                let framed = escape::frame_lines("", shown);
                self.write_above(framed.strip_prefix(' ').unwrap_or(&framed));
            }
            None => {
                let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
                self.write_above(&escape::frame_lines(&stamp, shown));
            }
        }
    }

    /// Prints a block without timestamps (recap, failures); its lines are indented by the
    /// caller, and control characters are escaped here.
    fn block(&self, text: &str) {
        self.write_above(&shown(text));
    }

    /// Writes lines on stdout, above the live view when there is one (it is cleared and
    /// drawn again below them); each line without trailing blanks, ending with a newline.
    fn write_above(&self, text: &str) {
        let mut out = String::with_capacity(text.len() + 1);
        for l in text.lines() {
            out.push_str(l.trim_end_matches(' '));
            out.push('\n');
        }
        let write = || {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        };
        match &self.live {
            Some(live) => live.multi.suspend(write),
            None => write(),
        }
    }

    pub fn handle(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                playbook,
                hosts,
                check,
            } => {
                self.check = *check;
                let mode = if *check {
                    " (check mode: nothing will be changed)"
                } else {
                    ""
                };
                self.line(&format!(
                    "capstan: running \"{playbook}\" on {hosts} host(s){mode}"
                ));
            }
            Event::Connected { host, elapsed } => {
                if self.verbosity > 0 {
                    self.line(&format!("{host} | connected in {}", ms(*elapsed)));
                }
            }
            Event::Unreachable { host, reason } => {
                let word = self.paint.paint(Paint::Red, "UNREACHABLE");
                self.shown_line(&format!("{} | {word}: {}", shown(host), shown(reason)));
                self.failures
                    .entry(host.clone())
                    .or_default()
                    .push(TaskReport {
                        host: host.clone(),
                        play: String::new(),
                        task: "(connect)".to_owned(),
                        task_index: 0,
                        kind: "connect",
                        status: Status::Unreachable,
                        check_mode: self.check,
                        note: Some(reason.clone()),
                        command: None,
                        exit: None,
                        stdout: String::new(),
                        stderr: String::new(),
                        diff: None,
                        duration: Duration::ZERO,
                    });
            }
            Event::HostKeysRefused { problems } => {
                let mut text = format!(
                    "error: refused to run: {} host key problem(s); nothing was run on any host\n",
                    problems.len()
                );
                for (host, why) in problems {
                    let _ = writeln!(text, "  {host}: {why}");
                }
                text.push_str(
                    "  = hint: check the keys out of band; an unknown key can be accepted with \
                     --accept-new-host-keys (or host_key_checking = \"accept-new\"); a changed key \
                     is always refused: remove the stale known_hosts line once you know why it changed\n",
                );
                self.clear_live();
                let _ = write!(
                    std::io::stderr().lock(),
                    "{}",
                    escape::controls(&secrets::mask(&text))
                );
            }
            Event::PlayStarted { name, hosts } => {
                self.line(&format!("PLAY \"{name}\" on {} host(s)", hosts.len()));
            }
            Event::BatchStarted {
                index,
                total,
                hosts,
                units,
            } => {
                if *total > 1 {
                    self.line(&format!("batch {index}/{total}: {}", hosts.join(", ")));
                }
                if let Some(live) = &mut self.live {
                    if let Some(old) = live.batch.take() {
                        old.finish_and_clear();
                    }
                    let bar = live.multi.add(ProgressBar::new(*units as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "batch {msg} [{bar:30}] {pos}/{len} host-tasks",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(format!("{index}/{total}"));
                    live.batch = Some(bar);
                }
            }
            Event::TaskStarted { host, task } => {
                if let Some(live) = &mut self.live {
                    let bar = live.hosts.entry(host.clone()).or_insert_with(|| {
                        let b = live.multi.add(ProgressBar::new_spinner());
                        b.enable_steady_tick(Duration::from_millis(120));
                        b
                    });
                    let task = secrets::mask(task);
                    bar.set_message(format!("{host}: {}", escape::controls(&task)));
                }
            }
            Event::TaskFinished(report) => self.task_finished(report),
            Event::PlayStopped { reason } => self.line(&format!("PLAY STOPPED: {reason}")),
            Event::Warning { host, message } => {
                let who = host
                    .as_deref()
                    .map_or_else(String::new, |h| format!("{h} | "));
                self.line(&format!("{who}warning: {message}"));
            }
            Event::Interrupted => self
                .line("interrupted: no new work was started; commands in flight were let finish"),
            Event::Lock {
                cluster, detail, ..
            } => self.line(&format!("lock `{cluster}`: {detail}")),
            Event::RunFinished { recap, elapsed } => {
                self.clear_live();
                self.write_above(&self.summary(recap, *elapsed));
            }
        }
    }

    fn task_finished(&mut self, r: &TaskReport) {
        if let Some(live) = &mut self.live {
            if let Some(b) = &live.batch {
                b.inc(1);
            }
            if let Some(h) = live.hosts.remove(&r.host) {
                h.finish_and_clear();
            }
        }
        let status = match (r.status, r.check_mode) {
            (Status::Changed, true) => "would change",
            (s, _) => s.as_str(),
        };
        let note = r
            .note
            .as_deref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        self.shown_line(&format!(
            "{} | {} | {}{}",
            shown(&r.host),
            shown(&r.task),
            self.paint.paint(Paint::of(r.status), status),
            shown(&note)
        ));
        if self.verbosity >= 2 {
            let mut text = String::new();
            if let Some(cmd) = &r.command {
                text.push_str(&indent(cmd, "    command: "));
            }
            let _ = writeln!(text, "    took {}", ms(r.duration));
            self.block(&text);
        }
        for step in r.note.iter().flat_map(|n| n.lines()) {
            let step = step.trim();
            if step.starts_with(OPERATOR_STEP) {
                let steps = self.operator_steps.entry(r.host.clone()).or_default();
                if !steps.iter().any(|s| s == step) {
                    steps.push(step.to_owned());
                }
            }
        }
        if let Some(diff) = &r.diff {
            let mut text = String::new();
            for l in diff.lines() {
                let _ = writeln!(text, "    {l}");
            }
            self.block(&text);
        }
        if self.verbosity > 0 && !r.stdout.is_empty() {
            self.block(&indent(&r.stdout, "    stdout: "));
        }
        match r.status {
            Status::Changed => self
                .changes
                .entry(r.host.clone())
                .or_default()
                .push(r.task.clone()),
            Status::Failed | Status::Unreachable => self
                .failures
                .entry(r.host.clone())
                .or_default()
                .push(r.clone()),
            _ => {}
        }
    }

    fn clear_live(&mut self) {
        if let Some(live) = &mut self.live {
            for (_, b) in std::mem::take(&mut live.hosts) {
                b.finish_and_clear();
            }
            if let Some(b) = live.batch.take() {
                b.finish_and_clear();
            }
        }
    }

    /// The recap, the changes, the operator steps and the failures: masked, escaped and
    /// painted, ready to print.
    fn summary(&self, recap: &[(String, HostRecap)], elapsed: Duration) -> String {
        let paint = self.paint;
        let mut s = format!("\n{}\n", paint.paint(Paint::Bold, "RECAP"));
        let hosts: Vec<String> = recap.iter().map(|(h, _)| shown(h)).collect();
        let width = hosts.iter().map(|h| h.chars().count()).max().unwrap_or(4);
        for (host, (_, r)) in hosts.iter().zip(recap) {
            let counts = [
                ("ok", r.ok, Paint::Green),
                ("changed", r.changed, Paint::Yellow),
                ("failed", r.failed, Paint::Red),
                ("skipped", r.skipped, Paint::Cyan),
                ("unreachable", r.unreachable, Paint::Red),
                ("cached", r.cached, Paint::Cyan),
            ];
            let pad = width - host.chars().count();
            let _ = write!(s, "  {host}{:pad$}", "");
            for (i, (label, n, colour)) in counts.into_iter().enumerate() {
                let field = format!("{label}={n}");
                let gap = (label.len() + 4).saturating_sub(field.len());
                let field = if n > 0 {
                    paint.paint(colour, &field)
                } else {
                    field
                };
                let sep = if i == 0 { "  " } else { " " };
                let _ = write!(s, "{sep}{field}{:gap$}", "");
            }
            // The last field's padding is trimmed when written.
            s.push('\n');
        }
        if !self.changes.is_empty() {
            let verb = if self.check {
                "WOULD CHANGE"
            } else {
                "CHANGED"
            };
            let _ = writeln!(s, "\n{}", paint.paint(Paint::Yellow, verb));
            for (host, tasks) in &self.changes {
                let _ = writeln!(s, "  {}: {}", shown(host), shown(&tasks.join(", ")));
            }
        }
        if !self.operator_steps.is_empty() {
            let _ = writeln!(s, "\n{}", paint.paint(Paint::Yellow, "OPERATOR STEPS"));
            for (host, steps) in &self.operator_steps {
                let _ = writeln!(s, "  {}", shown(host));
                for step in steps {
                    let _ = writeln!(s, "    {}", shown(step));
                }
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\n{}", paint.paint(Paint::Red, "FAILURES"));
            for (host, reports) in &self.failures {
                let _ = writeln!(s, "  {}", shown(host));
                for r in reports {
                    s.push_str(&shown(&failure_text(r)));
                }
            }
        }
        let _ = writeln!(s, "\nfinished in {}", ms(elapsed));
        s
    }
}

/// `text` as it may be shown: secrets masked, control characters escaped.
fn shown(text: &str) -> String {
    escape::controls(&secrets::mask(text)).into_owned()
}

/// One failure, readable: task, why, the command, exit status, the last lines of stderr.
fn failure_text(r: &TaskReport) -> String {
    let mut s = String::new();
    let what = match r.status {
        Status::Unreachable => "unreachable",
        _ => "failed",
    };
    let note = r.note.as_deref().unwrap_or("");
    s.push_str(&indent(note, &format!("    task \"{}\" {what}: ", r.task)));
    if note.is_empty() {
        let _ = writeln!(s, "    task \"{}\" {what}: ", r.task);
    }
    if let Some(cmd) = &r.command {
        s.push_str(&indent(cmd, "      command: "));
    }
    if let Some(exit) = &r.exit {
        let _ = writeln!(s, "      {exit}");
    }
    let tail: Vec<&str> = r.stderr.lines().rev().take(STDERR_TAIL).collect();
    if !tail.is_empty() {
        let _ = writeln!(s, "      stderr (last {} line(s)):", tail.len());
        for l in tail.iter().rev() {
            let _ = writeln!(s, "        {l}");
        }
    } else if !r.stdout.is_empty() && r.status == Status::Failed {
        let tail: Vec<&str> = r.stdout.lines().rev().take(STDERR_TAIL).collect();
        let _ = writeln!(s, "      stdout (last {} line(s)):", tail.len());
        for l in tail.iter().rev() {
            let _ = writeln!(s, "        {l}");
        }
    }
    s
}

fn indent(text: &str, first: &str) -> String {
    let pad = " ".repeat(first.len());
    let mut s = String::new();
    for (i, l) in text.lines().enumerate() {
        let _ = writeln!(s, "{}{l}", if i == 0 { first } else { &pad });
    }
    s
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure's note and command from a host may hold newlines: in the recap (printed
    /// without timestamps) each continuation line stays indented under its field.
    #[test]
    fn a_multi_line_note_or_command_stays_indented_in_the_recap() {
        let r = TaskReport {
            host: "web-1".into(),
            play: "p".into(),
            task: "t".into(),
            task_index: 0,
            kind: "command",
            status: Status::Failed,
            check_mode: false,
            note: Some("boom\n2026-01-01T00:00:00Z web-1 | forged | ok".into()),
            command: Some("echo a\necho b".into()),
            exit: None,
            stdout: String::new(),
            stderr: String::new(),
            diff: None,
            duration: Duration::ZERO,
        };
        let text = failure_text(&r);
        assert!(text.starts_with("    task \"t\" failed: boom\n"), "{text}");
        for l in text.lines() {
            assert!(l.starts_with("    "), "{l:?} in {text}");
        }
        assert!(text.contains("      command: echo a\n"), "{text}");
    }

    fn report(host: &str, status: Status, note: Option<&str>) -> TaskReport {
        let mut r = TaskReport::new(host, ("p", "upgrade", "dtr_upgrade"), 0, false);
        r.status = status;
        r.note = note.map(str::to_owned);
        r
    }

    /// DTR's OPERATOR STEP lines, printed in the stream with their task, are repeated in the
    /// recap under their host, once each, with nothing else of the note.
    #[test]
    fn operator_steps_are_repeated_in_the_recap() {
        let mut human = HumanReporter::new(false, 0, false);
        let step = "OPERATOR STEP: redownload the vulnerability database: see the docs";
        let note = format!("upgraded to 2.7.1\n{step}");
        for _ in 0..2 {
            human.handle(&Event::TaskFinished(Box::new(report(
                "dtr-1",
                Status::Changed,
                Some(&note),
            ))));
        }
        human.handle(&Event::TaskFinished(Box::new(report(
            "dtr-2",
            Status::Ok,
            Some("nothing to do"),
        ))));
        let recap = [("dtr-1".to_owned(), HostRecap::default())];
        let text = human.summary(&recap, Duration::ZERO);
        let expected = format!("\nOPERATOR STEPS\n  dtr-1\n    {step}\n");
        assert!(text.contains(&expected), "{text}");
        assert_eq!(text.matches("OPERATOR STEP:").count(), 1, "{text}");
        assert!(!text.contains("upgraded to"), "{text}");
        assert!(!text.contains("dtr-2\n"), "{text}");
    }

    /// In colour, the only escape sequences are capstan's own: a host name or a failure
    /// note holding ESC reaches the recap escaped, inside the paint.
    #[test]
    fn the_recap_is_painted_and_host_text_stays_escaped() {
        let mut human = HumanReporter::new(false, 0, true);
        human.handle(&Event::TaskFinished(Box::new(report(
            "web-1",
            Status::Failed,
            Some("boom \x1b[32mforged"),
        ))));
        let recap = [(
            "web-1".to_owned(),
            HostRecap {
                ok: 1,
                failed: 1,
                ..HostRecap::default()
            },
        )];
        let text = human.summary(&recap, Duration::ZERO);
        assert!(text.contains("\x1b[1mRECAP\x1b[0m"), "{text:?}");
        assert!(
            text.contains("  web-1  \x1b[32mok=1\x1b[0m   changed=0   \x1b[31mfailed=1\x1b[0m"),
            "{text:?}"
        );
        assert!(text.contains("\x1b[31mFAILURES\x1b[0m"), "{text:?}");
        assert!(text.contains("boom \\x1b[32mforged"), "{text:?}");
        assert!(!text.contains("\x1b[32mforged"), "{text:?}");
        let plain = HumanReporter::new(false, 0, false).summary(&recap, Duration::ZERO);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(
            plain.contains("  web-1  ok=1   changed=0   failed=1"),
            "{plain:?}"
        );
    }
}
