//! `ci/github-actions.yml` and `ci/gitlab-ci.yml`: valid YAML, the jobs in order
//! (validate → plan staging → apply staging → gate → plan prod → approval → apply prod),
//! each running the expected capstan command, and every capstan command line one that
//! capstan's own argument parser accepts.

use clap::Parser;
use serde_norway::Value;

fn load(rel: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// The pipeline's jobs, in order, with the command each must run.
const JOBS: [(&str, &str); 6] = [
    (
        "validate",
        "capstan validate -i inventories/staging.toml playbooks/upgrade.toml",
    ),
    (
        "plan-staging",
        "capstan run playbooks/upgrade.toml -i inventories/staging.toml --check --diff",
    ),
    (
        "apply-staging",
        "capstan run playbooks/upgrade.toml -i inventories/staging.toml -m \"$REASON\" --lock-wait 10m",
    ),
    (
        "gate-staging",
        "capstan run playbooks/upgrade.toml -i inventories/staging.toml --check --detailed-exitcode",
    ),
    (
        "plan-prod",
        "capstan run playbooks/upgrade.toml -i inventories/prod.toml --check --diff --plan-out plan.json",
    ),
    ("apply-prod", "capstan apply plan.json"),
];

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Splits a command line as the shell would for these simple lines (double quotes only).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            _ => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Every `capstan ...` line must parse with capstan's own command line.
fn check_capstan_lines(file: &str, script: &str) {
    for line in script.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("capstan ") {
            let mut argv = vec!["capstan".to_owned()];
            argv.extend(words(rest));
            if let Err(e) = capstan::cli::Cli::try_parse_from(&argv) {
                panic!("{file}: `{line}` does not parse: {e}");
            }
        }
    }
}

#[test]
fn github_actions_runs_the_pipeline_in_order() {
    let doc = load("ci/github-actions.yml");
    assert!(doc.get("on").is_some(), "a trigger");
    let jobs = doc.get("jobs").expect("jobs");
    let names: Vec<&str> = jobs
        .as_mapping()
        .expect("jobs map")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, JOBS.map(|(n, _)| n));
    for (i, (name, command)) in JOBS.iter().enumerate() {
        let job = &jobs[*name];
        assert!(job.get("runs-on").is_some(), "{name}: runs-on");
        let needs = job.get("needs").map(strings).unwrap_or_default();
        if i == 0 {
            assert!(needs.is_empty(), "{name} needs nothing");
        } else {
            assert_eq!(needs, [JOBS[i - 1].0], "{name} needs the job before it");
        }
        let script: String = job["steps"]
            .as_sequence()
            .expect("steps")
            .iter()
            .filter_map(|s| s.get("run").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            script.contains(command),
            "{name} runs `{command}`:\n{script}"
        );
        check_capstan_lines("github-actions.yml", &script);
    }
    // The approval: apply-prod runs in the protected `production` environment.
    assert_eq!(
        jobs["apply-prod"]["environment"].as_str(),
        Some("production")
    );
    // The saved plan travels as an artifact from plan-prod to apply-prod.
    let uploads = |job: &str, what: &str| {
        jobs[job]["steps"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|s| {
                s.get("uses")
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.starts_with(what))
            })
            .filter_map(|s| s["with"]["name"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert!(uploads("plan-prod", "actions/upload-artifact").contains(&"plan".to_owned()));
    assert!(uploads("apply-prod", "actions/download-artifact").contains(&"plan".to_owned()));
    assert_eq!(
        doc["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
}

#[test]
fn gitlab_ci_runs_the_pipeline_in_order() {
    let doc = load("ci/gitlab-ci.yml");
    let stages = strings(&doc["stages"]);
    assert_eq!(
        stages,
        [
            "validate",
            "plan-staging",
            "apply-staging",
            "gate",
            "plan-prod",
            "apply-prod"
        ]
    );
    let mut last_stage = 0;
    for (i, (name, command)) in JOBS.iter().enumerate() {
        let job = doc.get(*name).unwrap_or_else(|| panic!("no job {name}"));
        let stage = job["stage"].as_str().expect("stage");
        let at = stages
            .iter()
            .position(|s| s == stage)
            .unwrap_or_else(|| panic!("{name}: unknown stage {stage}"));
        assert!(
            at > last_stage || i == 0,
            "{name} comes after the job before it"
        );
        last_stage = at;
        let needs = job.get("needs").map(strings).unwrap_or_default();
        if i > 0 {
            assert!(
                needs.contains(&JOBS[i - 1].0.to_owned()),
                "{name} needs {}",
                JOBS[i - 1].0
            );
            assert_eq!(job["extends"].as_str(), Some(".capstan"), "{name}");
        }
        let script = strings(&job["script"]).join("\n");
        assert!(
            script.contains(command),
            "{name} runs `{command}`:\n{script}"
        );
        check_capstan_lines("gitlab-ci.yml", &script);
    }
    let prod = &doc["apply-prod"];
    assert_eq!(prod["when"].as_str(), Some("manual"), "the approval");
    assert_eq!(
        prod["allow_failure"].as_bool(),
        Some(false),
        "blocks the pipeline"
    );
    assert_eq!(prod["environment"]["name"].as_str(), Some("production"));
    assert_eq!(
        strings(&doc["plan-prod"]["artifacts"]["paths"]),
        ["plan.json"]
    );
    assert_eq!(
        doc["apply-staging"]["artifacts"]["reports"]["junit"].as_str(),
        Some("staging.xml")
    );
}

#[test]
fn the_command_line_splitter_keeps_quoted_words() {
    assert_eq!(
        words("run p.toml -m \"$REASON now\" --x"),
        ["run", "p.toml", "-m", "$REASON now", "--x"]
    );
}
