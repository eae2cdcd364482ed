//! Human output: a live view on a terminal (indicatif), plain timestamped lines otherwise,
//! and the end-of-run recap, the list of changes, and failures grouped per host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// Prints events as they come.
pub struct HumanReporter {
    live: Option<Live>,
    check: bool,
    failures: BTreeMap<String, Vec<TaskReport>>,
    changes: BTreeMap<String, Vec<String>>,
    verbose: bool,
}

struct Live {
    multi: MultiProgress,
    batch: Option<ProgressBar>,
    hosts: BTreeMap<String, ProgressBar>,
}

impl HumanReporter {
    pub fn new(live: bool, verbose: bool) -> Self {
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
            verbose,
        }
    }

    /// Prints a line on stdout without tearing a live view. Secrets are masked and host
    /// output is shown as data: control characters escaped, continuation lines indented.
    fn line(&self, text: &str) {
        let text = secrets::mask(text);
        let text = text.trim_end_matches('\n');
        match &self.live {
            Some(live) => {
                let shown = escape::log_lines("", text);
                let _ = live.multi.println(shown.trim_end().trim_start_matches(' '));
            }
            None => {
                let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
                let _ = write!(
                    std::io::stdout().lock(),
                    "{}",
                    escape::log_lines(&stamp, text)
                );
            }
        }
    }

    /// Prints a block without timestamps (recap, failures); its lines are indented by the
    /// caller, and control characters are escaped here.
    fn block(&self, text: &str) {
        let text = secrets::mask(text);
        let text = escape::controls(&text);
        match &self.live {
            Some(live) => {
                let _ = live.multi.println(text.trim_end());
            }
            None => {
                let _ = write!(std::io::stdout().lock(), "{text}");
            }
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
                if self.verbose {
                    self.line(&format!("{host} | connected in {}", ms(*elapsed)));
                }
            }
            Event::Unreachable { host, reason } => {
                self.line(&format!("{host} | UNREACHABLE: {reason}"));
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
                        ProgressStyle::with_template("batch {msg} [{bar:30}] {pos}/{len} tasks")
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
                self.block(&self.summary(recap, *elapsed));
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
        self.line(&format!("{} | {} | {status}{note}", r.host, r.task));
        if let Some(diff) = &r.diff {
            let mut text = String::new();
            for l in diff.lines() {
                let _ = writeln!(text, "    {l}");
            }
            self.block(&text);
        }
        if self.verbose && !r.stdout.is_empty() {
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

    fn summary(&self, recap: &[(String, HostRecap)], elapsed: Duration) -> String {
        let mut s = String::from("\nRECAP\n");
        let width = recap.iter().map(|(h, _)| h.len()).max().unwrap_or(4);
        for (host, r) in recap {
            let _ = writeln!(
                s,
                "  {host:<width$}  ok={:<3} changed={:<3} failed={:<3} skipped={:<3} unreachable={:<3} cached={}",
                r.ok, r.changed, r.failed, r.skipped, r.unreachable, r.cached
            );
        }
        if !self.changes.is_empty() {
            let verb = if self.check {
                "WOULD CHANGE"
            } else {
                "CHANGED"
            };
            let _ = writeln!(s, "\n{verb}");
            for (host, tasks) in &self.changes {
                let _ = writeln!(s, "  {host}: {}", tasks.join(", "));
            }
        }
        if !self.failures.is_empty() {
            s.push_str("\nFAILURES\n");
            for (host, reports) in &self.failures {
                let _ = writeln!(s, "  {host}");
                for r in reports {
                    s.push_str(&failure_text(r));
                }
            }
        }
        let _ = writeln!(s, "\nfinished in {}", ms(elapsed));
        s
    }
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
}
