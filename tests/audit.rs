//! The audit trail with local hosts: what a changing run records, where, and
//! `capstan audit` (local, `--remote`, `--limit`, `--json`, corrupt lines).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::capstan::{Outcome, Project};

const PLAYBOOK: &str = r#"
name = "Audit"

[[plays]]
name = "Base"
hosts = "all"

[[plays.tasks]]
name = "Create marker"
command = "mkdir -p {{ host_dir }}/{{ inventory_hostname }} && touch {{ host_dir }}/{{ inventory_hostname }}/marker"
creates = "{{ host_dir }}/{{ inventory_hostname }}/marker"
"#;

fn project() -> Project {
    let p = Project::new();
    p.local_inventory(&["web-1", "web-2"], "", "");
    p.file("playbooks/audit.toml", PLAYBOOK);
    p
}

fn run(p: &Project, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "run",
        "playbooks/audit.toml",
        "-i",
        "inventories/local.toml",
    ];
    args.extend_from_slice(extra);
    p.run(&args)
}

fn audit(p: &Project, extra: &[&str]) -> Outcome {
    let mut args = vec!["audit", "-i", "inventories/local.toml"];
    args.extend_from_slice(extra);
    p.run(&args)
}

fn records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn log(p: &Project, rel: &str) -> Vec<Value> {
    records(&std::fs::read_to_string(p.path(rel)).unwrap_or_default())
}

const LOCAL: &str = "inventories/.capstan/audit.jsonl";
/// Both local hosts share this machine, so both append to one log.
const REMOTE: &str = "remote/audit.jsonl";

#[test]
fn changing_runs_are_recorded_locally_and_on_the_hosts() {
    let p = project();
    run(&p, &["-m", "first"]).code(0);
    let local = log(&p, LOCAL);
    assert_eq!(local.len(), 1);
    let r = &local[0];
    assert_eq!(r["message"], "first");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["cluster"], "local");
    assert!(r["who"].as_str().is_some_and(|w| w.contains('@')), "{r}");
    assert!(r["hostname"].is_string() && r["cwd"].is_string(), "{r}");
    assert_eq!(r["playbook"]["path"], "playbooks/audit.toml");
    let digest = hex::encode(Sha256::digest(PLAYBOOK.as_bytes()));
    assert_eq!(r["playbook"]["sha256"], digest.as_str());
    assert_eq!(r["inventory"]["path"], "inventories/local.toml");
    assert_eq!(
        r["hosts"]["web-1"]["changed"],
        serde_json::json!(["Create marker"])
    );
    assert_eq!(r["hosts"]["web-2"]["recap"]["changed"], 1);
    let remote = log(&p, REMOTE);
    assert_eq!(remote, vec![r.clone(), r.clone()], "one line per host");

    // Nothing changed, or only checked: nothing recorded.
    run(&p, &[]).code(0);
    std::fs::remove_file(p.path("hosts/web-1/marker")).expect("marker");
    run(&p, &["--check"]).code(0);
    assert_eq!(log(&p, LOCAL).len(), 1);

    run(&p, &["-l", "web-1", "-m", "second"]).code(0);
    assert_eq!(log(&p, LOCAL).len(), 2);

    let shown = audit(&p, &[]);
    shown.code(0);
    let heads: Vec<&str> = shown
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(heads.len(), 2, "{}", shown.stdout);
    assert!(
        heads[0].ends_with("exit 0  playbooks/audit.toml  (cluster local)  \"second\""),
        "{}",
        shown.stdout
    );
    assert!(heads[1].ends_with("\"first\""), "{}", shown.stdout);
    assert!(
        shown
            .stdout
            .contains("    web-1  ok=0 changed=1 failed=0 unreachable=0  changed: Create marker\n"),
        "{}",
        shown.stdout
    );

    let web2 = audit(&p, &["--limit", "web-2", "--json"]);
    web2.code(0);
    let only = records(&web2.stdout);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["message"], "first");

    let remote = audit(&p, &["--remote", "--json"]);
    remote.code(0);
    let merged: Vec<Value> = records(&remote.stdout);
    let messages: Vec<&str> = merged
        .iter()
        .filter_map(|r| r["message"].as_str())
        .collect();
    assert_eq!(messages, ["second", "first"], "deduplicated, newest first");
}

#[test]
fn failed_runs_are_recorded_and_corrupt_lines_skipped() {
    let p = project();
    p.file(
        "playbooks/audit.toml",
        &PLAYBOOK.replace(
            "touch {{ host_dir }}/{{ inventory_hostname }}/marker",
            "false",
        ),
    );
    run(&p, &[]).code(2);
    let local = log(&p, LOCAL);
    assert_eq!(local.len(), 1);
    assert_eq!(local[0]["exit_code"], 2);
    assert_eq!(
        local[0]["hosts"]["web-1"]["failed"],
        serde_json::json!(["Create marker"])
    );

    let text = std::fs::read_to_string(p.path(LOCAL)).expect("log");
    std::fs::write(p.path(LOCAL), format!("{{\"half\": \n{text}not json\n")).expect("log");
    let shown = audit(&p, &[]);
    shown.code(0);
    assert_eq!(
        shown
            .stderr
            .matches("skipped a line that is not an audit record")
            .count(),
        2,
        "{}",
        shown.stderr
    );
    assert!(
        shown.stderr.contains("audit.jsonl:1: skipped"),
        "{}",
        shown.stderr
    );
    assert!(
        shown.stdout.contains("  exit 2  playbooks/audit.toml"),
        "{}",
        shown.stdout
    );
}

#[test]
fn no_log_yet_shows_no_runs() {
    let p = project();
    let shown = audit(&p, &[]);
    shown.code(0);
    assert_eq!(shown.stdout, "no recorded runs\n");
}
