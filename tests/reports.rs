//! `--output json`, `--report` and `--junit` on real runs with local hosts.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::capstan::{Outcome, Project};

const SECRET: &str = "s3cr3t-report-token";

/// Every status once: a change, an ok (echoing a secret), a skip, a failure on `web-2`.
const PLAYBOOK: &str = r#"
name = "Report"

[[plays]]
name = "Base"
hosts = "all"

[[plays.tasks]]
name = "Create marker"
command = "mkdir -p {{ host_dir }}/{{ inventory_hostname }} && touch {{ host_dir }}/{{ inventory_hostname }}/marker"
creates = "{{ host_dir }}/{{ inventory_hostname }}/marker"

[[plays.tasks]]
name = "Echo token"
command = "echo {{ token }}"
changed_when = "false"

[[plays.tasks]]
name = "Never"
command = "true"
when = "false"

[[plays.tasks]]
name = "Fail on web-2"
command = "exit 3"
when = "inventory_hostname == 'web-2'"
"#;

/// `web-1` and `web-2` on this machine, and `down`, an SSH host nobody listens for.
fn project() -> Project {
    let p = Project::new();
    let inv = p.local_inventory(
        &["web-1", "web-2"],
        "token = { env = \"CAPSTAN_T_REPORT_TOKEN\" }",
        "",
    );
    let mut text = std::fs::read_to_string(&inv).expect("inventory");
    text.push_str(
        "\n[hosts.down]\nconnection = \"ssh\"\naddress = \"127.0.0.1\"\nport = 1\nconnect_timeout = \"3s\"\n",
    );
    std::fs::write(&inv, text).expect("inventory");
    p.file("playbooks/report.toml", PLAYBOOK);
    p
}

fn run(p: &Project, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "run",
        "playbooks/report.toml",
        "-i",
        "inventories/local.toml",
    ];
    args.extend_from_slice(extra);
    p.run_env(&args, &[("CAPSTAN_T_REPORT_TOKEN", SECRET)])
}

fn parse_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `(host, task)` → status, from the `task_result` lines.
fn results(lines: &[Value]) -> BTreeMap<(String, String), String> {
    lines
        .iter()
        .filter(|v| v["event"] == "task_result")
        .map(|v| {
            let key = (
                v["host"].as_str().unwrap_or_default().to_owned(),
                v["task"].as_str().unwrap_or_default().to_owned(),
            );
            (key, v["status"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn expected() -> BTreeMap<(String, String), String> {
    [
        ("web-1", "Create marker", "changed"),
        ("web-1", "Echo token", "ok"),
        ("web-1", "Never", "skipped"),
        ("web-1", "Fail on web-2", "skipped"),
        ("web-2", "Create marker", "changed"),
        ("web-2", "Echo token", "ok"),
        ("web-2", "Never", "skipped"),
        ("web-2", "Fail on web-2", "failed"),
    ]
    .into_iter()
    .map(|(h, t, s)| ((h.to_owned(), t.to_owned()), s.to_owned()))
    .collect()
}

#[test]
fn json_output_is_one_event_per_line_and_matches_what_ran() {
    let p = project();
    let out = run(&p, &["--output", "json"]);
    out.code(2);
    assert!(!out.all().contains(SECRET), "secret leaked:\n{}", out.all());
    let lines = parse_lines(&out.stdout);
    for v in &lines {
        let time = v["time"]
            .as_str()
            .unwrap_or_else(|| panic!("no time in {v}"));
        chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("{time}: {e}"));
    }
    let kinds: Vec<&str> = lines.iter().filter_map(|v| v["event"].as_str()).collect();
    let first = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} in {kinds:?}"))
    };
    assert_eq!(kinds[0], "run_started");
    assert!(first("host_connected") < first("play_started"));
    assert!(first("host_unreachable") < first("play_started"));
    assert!(first("lock") < first("play_started"));
    assert!(first("play_started") < first("batch_started"));
    assert!(first("batch_started") < first("task_result"));
    assert_eq!(kinds[kinds.len() - 2..], ["run_recap", "exit"]);
    assert_eq!(kinds.iter().filter(|k| **k == "host_recap").count(), 3);

    assert_eq!(results(&lines), expected());
    let unreachable: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "host_unreachable")
        .collect();
    assert_eq!(unreachable.len(), 1);
    assert_eq!(unreachable[0]["host"], "down");

    let echo = lines
        .iter()
        .find(|v| v["task"] == "Echo token" && v["event"] == "task_result")
        .expect("echo result");
    assert_eq!(echo["stdout"].as_str().map(str::trim), Some("********"));
    assert_eq!(echo["changed"], false);
    assert!(echo["duration"].as_f64().is_some());
    let changed = lines
        .iter()
        .find(|v| v["task"] == "Create marker" && v["event"] == "task_result")
        .expect("marker result");
    assert_eq!(changed["changed"], true);

    let exit = lines.last().expect("lines");
    assert_eq!(exit["exit_code"], 2);
    let recap = &lines[lines.len() - 2];
    assert_eq!(
        (
            recap["changed"].as_u64(),
            recap["failed"].as_u64(),
            recap["unreachable"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
}

#[test]
fn report_file_is_the_run_summary() {
    let p = project();
    let out = run(&p, &["--report", "out/report.json", "-m", "nightly"]);
    // The directory does not exist: the report cannot be written, and the run says so.
    out.code(1);
    assert!(
        out.stderr.contains("cannot write `out/report.json`"),
        "{}",
        out.stderr
    );

    std::fs::create_dir_all(p.path("out")).expect("mkdir");
    let out = run(&p, &["--report", "out/report.json"]);
    out.code(2);
    let text = std::fs::read_to_string(p.path("out/report.json")).expect("report written");
    assert!(!text.contains(SECRET));
    let doc: Value = serde_json::from_str(&text).expect("report is JSON");
    let run = &doc["run"];
    assert_eq!(run["playbook"], "playbooks/report.toml");
    assert_eq!(run["inventory"], "inventories/local.toml");
    assert_eq!(run["check"], false);
    assert_eq!(run["exit_code"], 2);
    for k in ["started", "finished"] {
        let t = run[k].as_str().unwrap_or_default();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{k} {t}: {e}"));
    }
    assert!(run["duration"].as_f64().is_some());

    // Second run: the markers exist, so nothing changes; web-2 still fails.
    assert_eq!(doc["changed"], serde_json::json!([]));
    let web2 = &doc["hosts"]["web-2"];
    assert_eq!(web2["recap"]["ok"], 2);
    assert_eq!(web2["recap"]["failed"], 1);
    assert_eq!(web2["tasks"].as_array().map(Vec::len), Some(4));
    assert_eq!(doc["hosts"]["down"]["recap"]["unreachable"], 1);
    assert!(doc["hosts"]["down"]["unreachable"].is_string());
    assert_eq!(doc["failed"][0]["task"], "Fail on web-2");
}

#[test]
fn report_lists_the_changes() {
    let p = project();
    run(&p, &["--report", "report.json", "--output", "json"]).code(2);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("report.json")).expect("report"))
            .expect("JSON");
    let changed: Vec<(String, String)> = doc["changed"]
        .as_array()
        .expect("changed list")
        .iter()
        .map(|c| {
            (
                c["host"].as_str().unwrap_or_default().to_owned(),
                c["task"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("web-1".to_owned(), "Create marker".to_owned()),
            ("web-2".to_owned(), "Create marker".to_owned())
        ]
    );
}

/// `(failures, errors, skipped)` elements, and the names of failed test cases.
fn junit_counts(xml: &str) -> (usize, usize, usize, Vec<String>) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
    let failed = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .filter_map(|n| n.parent())
        .map(|c| {
            format!(
                "{}/{}",
                c.attribute("classname").unwrap_or(""),
                c.attribute("name").unwrap_or("")
            )
        })
        .collect();
    (count("failure"), count("error"), count("skipped"), failed)
}

#[test]
fn junit_has_a_suite_per_play_and_a_case_per_host_and_task() {
    let p = project();
    run(&p, &["--junit", "junit.xml"]).code(2);
    let xml = std::fs::read_to_string(p.path("junit.xml")).expect("junit written");
    assert!(!xml.contains(SECRET));
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let suites: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert_eq!(suites, ["Base"]);
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, 8 + 1, "8 task results and the unreachable host");
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name("error"))
        .expect("an error");
    assert_eq!(
        error.parent().and_then(|c| c.attribute("classname")),
        Some("down")
    );
    let (failures, errors, skipped, failed) = junit_counts(&xml);
    assert_eq!((failures, errors, skipped), (1, 1, 3));
    assert_eq!(failed, ["web-2/Fail on web-2"]);
}

#[test]
fn junit_can_count_changes_as_failures() {
    let p = project();
    run(&p, &[]).code(2);
    // Drift: web-1's marker went away.
    std::fs::remove_file(p.path("hosts/web-1/marker")).expect("marker");
    run(&p, &["--junit", "plain.xml"]).code(2);
    std::fs::remove_file(p.path("hosts/web-1/marker")).expect("marker");
    run(&p, &["--junit", "drift.xml", "--junit-changed-as-failure"]).code(2);

    let plain = std::fs::read_to_string(p.path("plain.xml")).expect("junit written");
    assert_eq!(junit_counts(&plain).3, ["web-2/Fail on web-2"]);
    let drift = std::fs::read_to_string(p.path("drift.xml")).expect("junit written");
    let (failures, errors, skipped, mut failed) = junit_counts(&drift);
    failed.sort();
    assert_eq!((failures, errors, skipped), (2, 1, 3), "{drift}");
    assert_eq!(failed, ["web-1/Create marker", "web-2/Fail on web-2"]);
    assert!(drift.contains(r#"message="changed""#), "{drift}");

    // The switch needs --junit.
    run(&p, &["--junit-changed-as-failure"]).code(1);
}
