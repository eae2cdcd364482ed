//! `ci/github-actions.yml`, `ci/gitlab-ci.yml` and `ci/release.yml`, parsed and checked for
//! what they must do, not for their wording:
//! - the jobs in order (validate → plan staging → apply staging → gate → plan prod →
//!   approval → apply prod), each running the expected capstan command, and every capstan
//!   command line one that capstan's own argument parser accepts;
//! - capstan is installed as the released static binary, checked against a pinned checksum
//!   before it is put on PATH, under the name the release workflow publishes; nothing builds it;
//! - each environment's credentials reach only the jobs of that environment, and are the names
//!   the inventories read; prod's reach only jobs that wait for a person;
//! - the inventories keep the result cache on the hosts.

use std::collections::BTreeSet;

use clap::Parser;
use serde_norway::Value;

fn load(rel: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn read(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"))
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

/// Which environment a job works on: by the inventory its capstan commands name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Offline,
    Staging,
    Prod,
}

fn target(job: &str) -> Target {
    match job {
        "validate" => Target::Offline,
        "plan-staging" | "apply-staging" | "gate-staging" => Target::Staging,
        _ => Target::Prod,
    }
}

/// Every string in `v` at any depth (a `!reference` tag's list included).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::Mapping(m) => m.values().flat_map(strings).collect(),
        Value::Tagged(t) => strings(&t.value),
        _ => Vec::new(),
    }
}

/// `NAME` for every `$NAME`, `${NAME}` or `secrets.NAME` in `text` written in capitals.
fn variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for start in ["$", "${", "secrets.", "vars."] {
        for (i, _) in text.match_indices(start) {
            let name: String = text[i + start.len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.len() > 1 {
                out.insert(name);
            }
        }
    }
    out
}

/// The environment variables an inventory reads secrets from (`{ env = "NAME" }`).
fn inventory_env_names(rel: &str) -> BTreeSet<String> {
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                if let (1, Some(toml::Value::String(name))) = (t.len(), t.get("env")) {
                    out.insert(name.clone());
                }
                t.values().for_each(|v| walk(v, out));
            }
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let doc: toml::Value = toml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut out = BTreeSet::new();
    walk(&doc, &mut out);
    out
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

/// The release's asset for x86_64 Linux, as `ci/release.yml` names it.
fn released_asset() -> String {
    let release = load("ci/release.yml");
    let targets = strings(&release["jobs"]["build"]["strategy"]["matrix"]["include"]);
    assert!(
        targets.iter().any(|t| t == "x86_64-unknown-linux-musl"),
        "{targets:?}"
    );
    let script = strings(&release["jobs"]["build"]["steps"]).join("\n");
    assert!(
        script.contains("cp \"$bin\" \"dist/capstan-${{ matrix.target }}\""),
        "the release names its assets capstan-<target>:\n{script}"
    );
    "capstan-x86_64-unknown-linux-musl".to_owned()
}

/// In `lines`, capstan is downloaded as `asset`, checked with `sha256sum -c` against a pinned
/// checksum, and only then installed; nothing is built.
#[track_caller]
fn installs_checked_binary(what: &str, lines: &[String], asset: &str) {
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let download = at(&format!("/{asset}")).unwrap_or_else(|| panic!("{what}: downloads {asset}"));
    let check = at("sha256sum -c").unwrap_or_else(|| panic!("{what}: checks a checksum"));
    let install = lines
        .iter()
        .position(|l| l.starts_with("install ") && l.contains("capstan"))
        .unwrap_or_else(|| panic!("{what}: installs capstan"));
    assert!(
        download < check && check < install,
        "{what}: download, check, then install"
    );
    assert!(
        lines[check].contains("$CAPSTAN_SHA256"),
        "{what}: the checksum is pinned, not fetched beside the binary"
    );
    let first_run = lines
        .iter()
        .position(|l| l.trim_start().starts_with("capstan "));
    assert!(
        first_run.is_none_or(|r| r > install),
        "{what}: capstan runs after it is installed"
    );
    assert!(
        !lines.iter().any(|l| l.contains("cargo build")),
        "{what}: nothing builds capstan"
    );
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
    // The saved plan travels as an artifact from plan-prod to apply-prod.
    let uses = |job: &str, what: &str| {
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
    assert!(uses("plan-prod", "actions/upload-artifact").contains(&"plan".to_owned()));
    assert!(uses("apply-prod", "actions/download-artifact").contains(&"plan".to_owned()));
    assert_eq!(
        doc["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
}

#[test]
fn github_actions_installs_the_released_binary_checked() {
    let doc = load("ci/github-actions.yml");
    let asset = released_asset();
    assert!(
        variables(&strings(&doc["env"]).join("\n")).contains("CAPSTAN_SHA256"),
        "the checksum is pinned in a variable"
    );
    for (name, _) in JOBS {
        let lines: Vec<String> = doc["jobs"][name]["steps"]
            .as_sequence()
            .expect("steps")
            .iter()
            .filter_map(|s| s.get("run").and_then(Value::as_str))
            .flat_map(|r| r.lines().map(|l| l.trim().to_owned()).collect::<Vec<_>>())
            .collect();
        installs_checked_binary(&format!("github-actions.yml: {name}"), &lines, &asset);
    }
}

#[test]
fn github_actions_gives_each_environment_only_its_own_credentials() {
    let doc = load("ci/github-actions.yml");
    let staging_reads = inventory_env_names("inventories/staging.toml");
    let prod_reads = inventory_env_names("inventories/prod.toml");
    assert!(
        staging_reads.contains("STAGING_UCP_PASSWORD"),
        "{staging_reads:?}"
    );
    assert!(prod_reads.contains("PROD_UCP_PASSWORD"), "{prod_reads:?}");
    let mut keys = BTreeSet::new();
    for (name, _) in JOBS {
        let job = &doc["jobs"][name];
        let text = strings(job).join("\n");
        let secrets: BTreeSet<String> = text
            .match_indices("secrets.")
            .map(|(i, _)| {
                text[i + "secrets.".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect();
        let provided: BTreeSet<String> = job["env"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys().filter_map(Value::as_str).map(str::to_owned))
            .collect();
        let environment = job["environment"].as_str();
        match target(name) {
            Target::Offline => {
                assert!(secrets.is_empty(), "{name} holds no secret: {secrets:?}");
                assert_eq!(environment, None, "{name}");
            }
            Target::Staging => {
                assert_eq!(environment, Some("staging"), "{name}");
                assert!(
                    secrets.iter().all(|s| s.starts_with("STAGING_")),
                    "{name}: only staging's secrets: {secrets:?}"
                );
                assert!(provided.is_superset(&staging_reads), "{name}: {provided:?}");
                keys.extend(secrets.into_iter().filter(|s| s.contains("SSH")));
            }
            Target::Prod => {
                // The approval: required reviewers on this environment.
                assert_eq!(environment, Some("production"), "{name}");
                assert!(
                    secrets.iter().all(|s| s.starts_with("PROD_")),
                    "{name}: only prod's secrets: {secrets:?}"
                );
                assert!(provided.is_superset(&prod_reads), "{name}: {provided:?}");
                keys.extend(secrets.into_iter().filter(|s| s.contains("SSH")));
            }
        }
    }
    assert_eq!(
        keys,
        BTreeSet::from([
            "PROD_SSH_PRIVATE_KEY".into(),
            "STAGING_SSH_PRIVATE_KEY".into()
        ]),
        "one SSH key per environment"
    );
}

/// A GitLab job with its `extends` merged in (hash keys deep-merged, the job's own winning),
/// and every `!reference [job, key]` replaced by what it names.
fn gitlab_job(doc: &Value, name: &str) -> Value {
    fn merge(base: &mut Value, over: &Value) {
        match (base, over) {
            (Value::Mapping(b), Value::Mapping(o)) => {
                for (k, v) in o {
                    match b.get_mut(k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            b.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (slot, v) => *slot = v.clone(),
        }
    }
    fn resolve(doc: &Value, v: &Value) -> Value {
        match v {
            Value::Tagged(t) if t.tag == "!reference" => {
                let path = strings(&t.value);
                let mut at = gitlab_job(doc, &path[0]);
                for key in &path[1..] {
                    at = at[key.as_str()].clone();
                }
                at
            }
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for item in items {
                    match (item, resolve(doc, item)) {
                        (Value::Tagged(_), Value::Sequence(inner)) => out.extend(inner),
                        (_, r) => out.push(r),
                    }
                }
                Value::Sequence(out)
            }
            Value::Mapping(m) => Value::Mapping(
                m.iter()
                    .map(|(k, v)| (k.clone(), resolve(doc, v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let own = doc
        .get(name)
        .unwrap_or_else(|| panic!("no job {name}"))
        .clone();
    let mut job = match own["extends"].as_str() {
        Some(parent) => gitlab_job(doc, parent),
        None => Value::Mapping(serde_norway::Mapping::new()),
    };
    merge(&mut job, &own);
    resolve(doc, &job)
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
        let job = gitlab_job(&doc, name);
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
        }
        let script = strings(&job["script"]).join("\n");
        assert!(
            script.contains(command),
            "{name} runs `{command}`:\n{script}"
        );
        check_capstan_lines("gitlab-ci.yml", &script);
    }
    let prod = gitlab_job(&doc, "apply-prod");
    assert_eq!(prod["when"].as_str(), Some("manual"), "the approval");
    assert_eq!(
        prod["allow_failure"].as_bool(),
        Some(false),
        "blocks the pipeline"
    );
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
fn gitlab_ci_installs_the_released_binary_checked() {
    let doc = load("ci/gitlab-ci.yml");
    let asset = released_asset();
    for (name, _) in JOBS {
        let job = gitlab_job(&doc, name);
        let lines: Vec<String> = strings(&job["before_script"])
            .into_iter()
            .chain(strings(&job["script"]))
            .collect();
        installs_checked_binary(&format!("gitlab-ci.yml: {name}"), &lines, &asset);
    }
}

#[test]
fn gitlab_ci_gives_each_environment_only_its_own_credentials() {
    let doc = load("ci/gitlab-ci.yml");
    let staging_reads = inventory_env_names("inventories/staging.toml");
    let prod_reads = inventory_env_names("inventories/prod.toml");
    for (name, _) in JOBS {
        let job = gitlab_job(&doc, name);
        let used = variables(&strings(&job).join("\n"));
        let secret = |v: &String| v.contains("PASSWORD") || v.contains("PRIVATE_KEY");
        let secrets: BTreeSet<&String> = used.iter().filter(|v| secret(v)).collect();
        let environment = job["environment"]["name"].as_str();
        match target(name) {
            Target::Offline => {
                assert!(secrets.is_empty(), "{name}: {secrets:?}");
                assert_eq!(environment, None, "{name}");
            }
            Target::Staging => {
                // Environment-scoped variables reach only jobs of that environment.
                assert_eq!(environment, Some("staging"), "{name}");
                assert!(
                    secrets.iter().all(|s| s.starts_with("STAGING_")),
                    "{name}: {secrets:?}"
                );
            }
            Target::Prod => {
                assert_eq!(environment, Some("production"), "{name}");
                assert!(
                    secrets.iter().all(|s| s.starts_with("PROD_")),
                    "{name}: {secrets:?}"
                );
                assert_eq!(
                    job["when"].as_str(),
                    Some("manual"),
                    "{name}: prod's credentials reach only a job a person starts"
                );
            }
        }
    }
    // The variables the inventories read are documented for the matching scope, and no
    // shared name is left over from before.
    let text = read("ci/gitlab-ci.yml");
    for name in staging_reads.iter().chain(&prod_reads) {
        assert!(text.contains(name.as_str()), "{name} is documented");
    }
    assert!(
        !variables(&text).contains("UCP_PASSWORD"),
        "no shared UCP_PASSWORD"
    );
    assert!(
        !variables(&text).contains("SSH_PRIVATE_KEY"),
        "no shared key"
    );
}

#[test]
fn gitlab_ci_says_which_approval_features_need_a_paid_tier() {
    let text = read("ci/gitlab-ci.yml");
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    // The header's bullets, each with its continuation lines.
    let bullets: Vec<String> = header
        .split("\n# - ")
        .map(|b| b.replace("\n#  ", ""))
        .collect();
    for feature in ["Protected environments", "Deployment approvals"] {
        let bullet = bullets
            .iter()
            .find(|b| b.contains(feature))
            .unwrap_or_else(|| panic!("the header names {feature}"));
        assert!(
            bullet.contains("Premium"),
            "{feature} is marked Premium: {bullet}"
        );
    }
    assert!(
        header.contains("Without them (Free)"),
        "the header says what to do without them"
    );
}

#[test]
fn release_builds_static_binaries_for_both_architectures_and_checksums_them() {
    let doc = load("ci/release.yml");
    assert_eq!(strings(&doc["on"]["push"]["tags"]), ["v*"]);
    let build = &doc["jobs"]["build"];
    let targets: BTreeSet<String> = build["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("matrix")
        .iter()
        .filter_map(|t| t["target"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            "aarch64-unknown-linux-musl".into(),
            "x86_64-unknown-linux-musl".into()
        ])
    );
    let script = strings(&build["steps"]).join("\n");
    for needed in [
        "build --release --locked --target ${{ matrix.target }}",
        "grep -Eq \"statically linked|static-pie linked\"",
        "if readelf --program-headers \"$bin\" | grep -q INTERP; then",
        "sha256sum \"capstan-${{ matrix.target }}\" > \"capstan-${{ matrix.target }}.sha256\"",
    ] {
        assert!(script.contains(needed), "the build runs `{needed}`");
    }
    let release = &doc["jobs"]["release"];
    assert_eq!(strings(&release["needs"]), ["build"]);
    let publish = strings(&release["steps"]).join("\n");
    assert!(publish.contains("sha256sum -c SHA256SUMS"), "{publish}");
    assert!(publish.contains("gh release create"), "{publish}");
}

#[test]
fn ci_inventories_keep_the_result_cache_on_the_hosts() {
    for rel in ["inventories/staging.toml", "inventories/prod.toml"] {
        let doc: toml::Value = toml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(
            doc["settings"]["cache"].as_str(),
            Some("remote"),
            "{rel}: [settings] cache"
        );
    }
}

#[test]
fn the_command_line_splitter_keeps_quoted_words() {
    assert_eq!(
        words("run p.toml -m \"$REASON now\" --x"),
        ["run", "p.toml", "-m", "$REASON now", "--x"]
    );
}

#[test]
fn variables_are_found_in_every_spelling() {
    assert_eq!(
        variables("a $FOO_1 ${BAR} ${{ secrets.BAZ }} $lower"),
        BTreeSet::from(["BAR".into(), "BAZ".into(), "FOO_1".into()])
    );
}
