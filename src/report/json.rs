//! `--output json`: one JSON object per line on stdout for every event, each with
//! `"event"` (its kind) and `"time"` (RFC 3339) first. Every string is secret-masked again
//! here, whatever the engine already masked.

use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::event::{Event, HostRecap, Status, TaskReport};
use crate::secrets;

/// Writes events as JSON lines.
pub struct JsonReporter<W: Write> {
    out: W,
    /// The playbook's path, given as `run_started.playbook` (its name in `playbook_name`, as
    /// in the `--report` summary).
    playbook_path: Option<String>,
}

impl JsonReporter<std::io::Stdout> {
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            playbook_path: None,
        }
    }

    #[must_use]
    pub fn with_playbook_path(mut self, path: &std::path::Path) -> Self {
        self.playbook_path = Some(path.display().to_string());
        self
    }

    pub fn handle(&mut self, event: &Event) {
        for (kind, mut body) in event_json(event) {
            if kind == "run_started"
                && let Some(path) = &self.playbook_path
            {
                let name = body.insert("playbook".into(), path.as_str().into());
                body.insert("playbook_name".into(), name.unwrap_or(Value::Null));
            }
            self.line(kind, body);
        }
    }

    /// The last line: how the command ended, once the exit code is known.
    pub fn exit(&mut self, exit_code: i32, error: Option<&str>) {
        let mut body = Map::new();
        body.insert("exit_code".into(), exit_code.into());
        if let Some(e) = error {
            body.insert("error".into(), e.into());
        }
        self.line("exit", body);
    }

    fn line(&mut self, event: &str, mut body: Map<String, Value>) {
        #[derive(Serialize)]
        struct Line<'a> {
            event: &'a str,
            time: String,
            #[serde(flatten)]
            body: &'a Map<String, Value>,
        }
        body.values_mut().for_each(mask_value);
        let line = Line {
            event,
            time: now_rfc3339(),
            body: &body,
        };
        // A closed stdout (`capstan run ... | head`) must not stop the run.
        if let Ok(text) = serde_json::to_string(&line) {
            let _ = writeln!(self.out, "{text}");
            let _ = self.out.flush();
        }
    }
}

/// Now, in UTC, to the millisecond.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The JSON lines for one event, as `(kind, fields)`. `RunFinished` gives one `host_recap`
/// per host and then the `run_recap`.
pub(crate) fn event_json(event: &Event) -> Vec<(&'static str, Map<String, Value>)> {
    let one = |kind, v: Value| vec![(kind, object(v))];
    match event {
        Event::RunStarted {
            playbook,
            hosts,
            check,
        } => one(
            "run_started",
            json!({ "playbook": playbook, "hosts": hosts, "check": check }),
        ),
        Event::Connected { host, elapsed } => one(
            "host_connected",
            json!({ "host": host, "elapsed": secs(elapsed.as_secs_f64()) }),
        ),
        Event::Unreachable { host, reason } => one(
            "host_unreachable",
            json!({ "host": host, "reason": reason }),
        ),
        Event::HostKeysRefused { problems } => {
            let problems: Vec<Value> = problems
                .iter()
                .map(|(host, reason)| json!({ "host": host, "reason": reason }))
                .collect();
            one("host_keys_refused", json!({ "problems": problems }))
        }
        Event::PlayStarted { name, hosts } => {
            one("play_started", json!({ "play": name, "hosts": hosts }))
        }
        Event::BatchStarted {
            index,
            total,
            hosts,
            units,
        } => one(
            "batch_started",
            json!({ "index": index, "total": total, "hosts": hosts, "units": units }),
        ),
        Event::TaskStarted { host, task } => {
            one("task_started", json!({ "host": host, "task": task }))
        }
        Event::TaskFinished(report) => vec![("task_result", object(task_json(report)))],
        Event::PlayStopped { reason } => one("play_stopped", json!({ "reason": reason })),
        Event::Warning { host, message } => {
            one("warning", json!({ "host": host, "message": message }))
        }
        Event::Interrupted => one("interrupted", json!({})),
        Event::Lock {
            cluster,
            state,
            hosts,
            detail,
        } => one(
            "lock",
            json!({ "cluster": cluster, "state": state, "hosts": hosts, "detail": detail }),
        ),
        Event::RunFinished { recap, elapsed } => {
            let mut lines: Vec<_> = recap
                .iter()
                .map(|(host, r)| {
                    let mut body = object(recap_json(r));
                    body.insert("host".into(), host.as_str().into());
                    ("host_recap", body)
                })
                .collect();
            let mut total = HostRecap::default();
            for (_, r) in recap {
                total.ok += r.ok;
                total.changed += r.changed;
                total.failed += r.failed;
                total.skipped += r.skipped;
                total.unreachable += r.unreachable;
                total.cached += r.cached;
            }
            let mut body = object(recap_json(&total));
            body.insert("hosts".into(), recap.len().into());
            body.insert("elapsed".into(), secs(elapsed.as_secs_f64()));
            lines.push(("run_recap", body));
            lines
        }
    }
}

/// One task result: the [`TaskReport`] fields, plus `changed` and a `diff_summary` of
/// added and removed lines when there is a diff. `exit` is the exit code as an integer (or
/// null); a command killed by a signal or stopped at its timeout has `exit: null` and says
/// so in `exit_detail`.
pub(crate) fn task_json(r: &TaskReport) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        let (code, detail) = exit_fields(r.exit.as_deref());
        map.insert("exit".into(), code.map_or(Value::Null, Value::from));
        map.insert(
            "exit_detail".into(),
            detail.map_or(Value::Null, Value::from),
        );
        map.insert("changed".into(), (r.status == Status::Changed).into());
        let summary = r.diff.as_deref().map(|d| {
            let (added, removed) = diff_counts(d);
            json!({ "added": added, "removed": removed })
        });
        map.insert("diff_summary".into(), summary.unwrap_or(Value::Null));
    }
    v
}

/// `TaskReport::exit` is written by `transport::ExitStatus`'s `Display`: `exit status N`,
/// `killed by signal NAME` or `timed out after D`. The first becomes the integer N; the
/// others (and anything else) are kept as text beside a null exit code.
fn exit_fields(exit: Option<&str>) -> (Option<i64>, Option<&str>) {
    let Some(text) = exit else {
        return (None, None);
    };
    match text
        .strip_prefix("exit status ")
        .and_then(|n| n.trim().parse().ok())
    {
        Some(code) => (Some(code), None),
        None => (None, Some(text)),
    }
}

pub(crate) fn recap_json(r: &HostRecap) -> Value {
    serde_json::to_value(r).unwrap_or_else(|_| json!({}))
}

/// Lines added and removed in a unified diff (`+`/`-` lines, not the `+++`/`---` headers).
fn diff_counts(diff: &str) -> (usize, usize) {
    let mut added = 0;
    let mut removed = 0;
    for l in diff.lines() {
        if l.starts_with('+') && !l.starts_with("+++") {
            added += 1;
        } else if l.starts_with('-') && !l.starts_with("---") {
            removed += 1;
        }
    }
    (added, removed)
}

/// Seconds, rounded to the millisecond.
pub(crate) fn secs(s: f64) -> Value {
    json!((s * 1000.0).round() / 1000.0)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Masks every string in `v`, at any depth.
pub(crate) fn mask_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = secrets::mask(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::Object(map) => map.values_mut().for_each(mask_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(status: Status, diff: Option<&str>) -> TaskReport {
        TaskReport {
            host: "web-1".into(),
            play: "Base".into(),
            task: "Render".into(),
            task_index: 0,
            kind: "template",
            status,
            check_mode: false,
            note: None,
            command: Some("echo json-reporter-secret".into()),
            exit: None,
            stdout: String::new(),
            stderr: String::new(),
            diff: diff.map(str::to_owned),
            duration: Duration::from_millis(1234),
        }
    }

    fn lines(events: &[Event]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut r = JsonReporter::new(&mut out);
        for e in events {
            r.handle(e);
        }
        r.exit(2, Some("boom"));
        String::from_utf8_lossy(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect()
    }

    #[test]
    fn every_event_is_one_line_with_kind_and_time_first() {
        let mut out = Vec::new();
        JsonReporter::new(&mut out).handle(&Event::PlayStopped {
            reason: "why".into(),
        });
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(r#"{"event":"play_stopped","time":""#),
            "{text}"
        );
        assert!(text.ends_with("\"reason\":\"why\"}\n"), "{text}");
    }

    #[test]
    fn task_results_carry_status_changed_diff_summary_and_duration() {
        let diff = "--- a\n+++ b\n@@ -1 +1,2 @@\n-old\n+new\n+more\n";
        let got = lines(&[Event::TaskFinished(Box::new(report(
            Status::Changed,
            Some(diff),
        )))]);
        let t = &got[0];
        assert_eq!(t["event"], "task_result");
        assert_eq!(t["status"], "changed");
        assert_eq!(t["changed"], true);
        assert_eq!(t["diff_summary"], json!({"added": 2, "removed": 1}));
        assert_eq!(t["duration"], 1.234);
        assert!(got[1]["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(got[1]["event"], "exit");
        assert_eq!(got[1]["exit_code"], 2);
        assert_eq!(got[1]["error"], "boom");
    }

    #[test]
    fn run_finished_gives_host_recaps_then_the_run_recap() {
        let recap = HostRecap {
            ok: 1,
            changed: 2,
            ..HostRecap::default()
        };
        let got = lines(&[Event::RunFinished {
            recap: vec![("a".into(), recap.clone()), ("b".into(), recap)],
            elapsed: Duration::from_millis(1500),
        }]);
        let kinds: Vec<&str> = got.iter().filter_map(|v| v["event"].as_str()).collect();
        assert_eq!(kinds, ["host_recap", "host_recap", "run_recap", "exit"]);
        assert_eq!(got[0]["host"], "a");
        assert_eq!(got[2]["changed"], 4);
        assert_eq!(got[2]["hosts"], 2);
        assert_eq!(got[2]["elapsed"], 1.5);
    }

    #[test]
    fn exit_is_an_integer_and_signals_and_timeouts_are_described_beside_it() {
        let with_exit = |exit: Option<&str>| {
            let mut r = report(Status::Failed, None);
            r.exit = exit.map(str::to_owned);
            task_json(&r)
        };
        let t = with_exit(Some("exit status 7"));
        assert_eq!((&t["exit"], &t["exit_detail"]), (&json!(7), &Value::Null));
        let t = with_exit(Some("killed by signal TERM"));
        assert_eq!(
            (&t["exit"], &t["exit_detail"]),
            (&Value::Null, &json!("killed by signal TERM"))
        );
        let t = with_exit(Some("timed out after 5s"));
        assert_eq!(t["exit_detail"], "timed out after 5s");
        let t = with_exit(None);
        assert_eq!(
            (&t["exit"], &t["exit_detail"]),
            (&Value::Null, &Value::Null)
        );
    }

    #[test]
    fn run_started_gives_the_playbook_path_and_its_name() {
        let mut out = Vec::new();
        JsonReporter::new(&mut out)
            .with_playbook_path(std::path::Path::new("playbooks/site.toml"))
            .handle(&Event::RunStarted {
                playbook: "site".into(),
                hosts: 2,
                check: false,
            });
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v["playbook"], "playbooks/site.toml");
        assert_eq!(v["playbook_name"], "site");
    }

    #[test]
    fn strings_are_masked_again() {
        secrets::register("json-reporter-secret");
        let got = lines(&[Event::TaskFinished(Box::new(report(Status::Ok, None)))]);
        assert_eq!(got[0]["command"], "echo ********");
        assert_eq!(got[0]["diff_summary"], Value::Null);
    }
}
