//! Check mode, diffs, the result cache, resume after SIGKILL, --retry-failed and saved plans,
//! end to end against real sshd hosts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::capstan::binary;
use crate::support::fleet::Fleet;

use crate::support::fleet::{project, run_site as run};

/// Every file under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p.clone());
                out.insert(p, (Vec::new(), meta.permissions().mode()));
            } else {
                out.insert(
                    p.clone(),
                    (
                        std::fs::read(&p).unwrap_or_default(),
                        meta.permissions().mode(),
                    ),
                );
            }
        }
    }
    out
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

const CONVERGE: &str = r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "kernel"
command = "uname -s"
changed_when = "false"
register = "kernel"
[[plays.tasks]]
name = "marker"
command = "echo {{ kernel.stdout }} > \"$HOST_DIR/marker\""
creates = "{{ host_dir }}/marker"
[[plays.tasks]]
name = "config"
template = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf", mode = "0600" }
[[plays.tasks]]
name = "append"
command = "echo run >> \"$HOST_DIR/log\""
[[plays.tasks]]
name = "depends"
command = "echo {{ appended.rc }}"
when = "appended is defined"
"#;

#[test]
fn check_mode_changes_nothing_and_sends_only_queries() {
    let mut fleet = Fleet::start(2);
    let log = fleet.record_commands(0);
    let p = project(
        &fleet,
        "",
        &CONVERGE.replace(
            r#"\"$HOST_DIR/log\"""#,
            "\\\"$HOST_DIR/log\\\"\"\nregister = \"appended\"",
        ),
    );
    p.file(
        "templates/app.conf.j2",
        "node = {{ inventory_hostname }}\nsecret = {{ token }}\n",
    );
    std::fs::write(fleet.host(0).state_dir.join("app.conf"), "node = old\n").expect("write");
    let before = snapshot(&fleet.host(0).state_dir);
    let out = run(
        &p,
        &fleet,
        &[
            "--check",
            "--diff",
            "--detailed-exitcode",
            "-e",
            "token=s3cret-value",
        ],
    );
    out.code(4);
    assert_eq!(
        snapshot(&fleet.host(0).state_dir),
        before,
        "check mode changed the host"
    );
    assert!(!fleet.host(1).state_dir.join("marker").exists());
    // The read-only fact ran; the rest only queried.
    assert_eq!(out.line("host1", "kernel"), "ok");
    assert_eq!(out.line("host1", "marker"), "would change (would run)");
    assert_eq!(out.line("host1", "append"), "would change (would run)");
    assert_eq!(
        out.line("host1", "depends"),
        "skipped (unknown: depends on `appended`, which check mode could not produce)"
    );
    assert!(out.stdout.contains("-node = old"), "{}", out.stdout);
    assert!(out.stdout.contains("+node = host1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("would run: echo Linux >"),
        "{}",
        out.stdout
    );
    // A secret only reaches the diff masked; here `token` came from -e, so it is plain.
    let sent = std::fs::read_to_string(&log).expect("recorded commands");
    assert!(!sent.is_empty());
    for mutating in [
        "echo run >>",
        "mv -f",
        "cat >",
        "> \"$HOST_DIR/marker\"",
        "chmod",
    ] {
        assert!(
            !sent.contains(mutating),
            "check mode sent `{mutating}`:\n{sent}"
        );
    }
    // After a real run, check mode reports convergence with exit 0.
    run(&p, &fleet, &["-e", "token=x"]).code(0);
    let converged = run(
        &p,
        &fleet,
        &["--check", "--detailed-exitcode", "-e", "token=x"],
    );
    assert!(
        converged
            .line("host1", "append")
            .starts_with("cached (done in an earlier run at ")
    );
    converged.code(0);
}

#[test]
fn secrets_are_masked_in_diffs_and_plans() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "[vars]\ntoken = { env = \"APP_TOKEN\" }\n",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"config\"\ntemplate = { src = \"t.j2\", dest = \"{{ host_dir }}/t.conf\" }\n[[plays.tasks]]\nname = \"use\"\ncommand = \"echo {{ token }} > /dev/null\"\n",
    );
    p.file("templates/t.j2", "token = {{ token }}\n");
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let out = p.run_env(
        &[
            "run",
            "site.toml",
            "-i",
            "inventory.toml",
            "-F",
            &config,
            "--check",
            "--diff",
            "--plan-out",
            "plan.json",
        ],
        &[("APP_TOKEN", "hunter2-token")],
    );
    out.code(0);
    let plan = std::fs::read_to_string(p.path("plan.json")).expect("plan");
    for text in [&out.stdout, &out.stderr, &plan] {
        assert!(!text.contains("hunter2-token"), "secret leaked:\n{text}");
    }
    assert!(out.stdout.contains("+token = ********"), "{}", out.stdout);
    assert!(plan.contains("echo ******** > /dev/null"), "{plan}");
}

#[test]
fn the_cache_skips_finished_unguarded_work_but_always_runs_queries() {
    let fleet = Fleet::start(1);
    let p = project(&fleet, "", CONVERGE);
    p.file("templates/app.conf.j2", "node = {{ inventory_hostname }}\n");
    let log = fleet.host(0).state_dir.join("log");
    run(&p, &fleet, &[]).code(0);
    assert_eq!(lines(&log), 1);
    let second = run(&p, &fleet, &[]);
    second.code(0);
    assert_eq!(lines(&log), 1, "the unguarded command ran again");
    assert!(
        second
            .line("host1", "append")
            .starts_with("cached (done in an earlier run")
    );
    assert!(
        second.recap("host1").contains("cached=1"),
        "{}",
        second.recap("host1")
    );
    // Queries still run: an out-of-band change to the file is noticed and repaired.
    std::fs::write(fleet.host(0).state_dir.join("app.conf"), "tampered\n").expect("write");
    let third = run(&p, &fleet, &[]);
    assert_eq!(third.line("host1", "config"), "changed (changed: content)");
    // --no-cache runs it again.
    run(&p, &fleet, &["--no-cache"]).code(0);
    assert_eq!(lines(&log), 2);
    // A corrupt cache file is dropped with a warning, never trusted, never a crash.
    let cache = p.path(".capstan/cache/host1.jsonl");
    std::fs::write(&cache, "{\"key\": \"garbage\"\nnot json\n").expect("write");
    let fourth = run(&p, &fleet, &[]);
    fourth.code(0);
    assert!(
        fourth.stdout.contains("dropped 2 corrupt entries"),
        "{}",
        fourth.stdout
    );
    assert_eq!(lines(&log), 3);
    // Expired entries are not trusted either.
    let text = std::fs::read_to_string(&cache).expect("cache");
    let re = text.replace("\"recorded_at\":", "\"recorded_at\":1,\"_old\":");
    std::fs::write(&cache, re).expect("write");
    run(&p, &fleet, &[]).code(0);
    assert_eq!(lines(&log), 4);
    // cache show / clear
    let show = p.run(&["cache", "show", "-i", "inventory.toml"]);
    show.code(0);
    assert!(show.stdout.contains("host1: 1 entry"), "{}", show.stdout);
    p.run(&["cache", "clear", "-i", "inventory.toml"]).code(0);
    run(&p, &fleet, &[]).code(0);
    assert_eq!(lines(&log), 5);
}

#[test]
fn the_remote_store_is_seen_by_a_fresh_runner() {
    let fleet = Fleet::start(1);
    let p = project(&fleet, "[settings]\ncache = \"remote\"\n", CONVERGE);
    p.file("templates/app.conf.j2", "x\n");
    run(&p, &fleet, &[]).code(0);
    assert!(fleet.host(0).home.join(".capstan/cache.jsonl").exists());
    // A fresh CI runner: a new checkout with no local state.
    let fresh = project(&fleet, "[settings]\ncache = \"remote\"\n", CONVERGE);
    fresh.file("templates/app.conf.j2", "x\n");
    let out = run(&fresh, &fleet, &[]);
    out.code(0);
    assert!(
        out.line("host1", "append").starts_with("cached"),
        "{}",
        out.stdout
    );
    assert_eq!(lines(&fleet.host(0).state_dir.join("log")), 1);
}

#[test]
fn a_sigkilled_run_resumes_without_repeating_finished_work() {
    let fleet = Fleet::start(3);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
serial = 1
[[plays.tasks]]
name = "count"
command = "echo run >> \"$HOST_DIR/count\""
[[plays.tasks]]
name = "slow"
command = "if [ -e \"$HOST_DIR/slow\" ]; then sleep 20; fi; touch \"$HOST_DIR/done\""
"#,
    );
    std::fs::write(fleet.host(1).state_dir.join("slow"), "").expect("write");
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let mut child = Command::new(binary())
        .args(["run", "site.toml", "-i", "inventory.toml", "-F", &config])
        .current_dir(p.dir.path())
        .env("CI", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn capstan");
    // Wait until host2 is in its slow task, then kill capstan outright.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.host(1).state_dir.join("count").exists() {
        assert!(Instant::now() < deadline, "host2 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(fleet.host(0).state_dir.join("done").exists());
    assert!(
        !fleet.host(2).state_dir.join("count").exists(),
        "host3 must not have started"
    );
    std::fs::remove_file(fleet.host(1).state_dir.join("slow")).expect("rm");
    // The killed run left its cluster lock behind (fresh for lock_stale_after): break it.
    p.run(&[
        "lock",
        "release",
        "--force",
        "-i",
        "inventory.toml",
        "-F",
        &config,
    ])
    .code(0);

    let out = run(&p, &fleet, &[]);
    out.code(0);
    assert!(
        out.line("host1", "count").starts_with("cached"),
        "{}",
        out.stdout
    );
    assert!(out.line("host1", "slow").starts_with("cached"));
    assert!(out.line("host2", "count").starts_with("cached"));
    assert_eq!(
        out.line("host2", "slow"),
        "changed",
        "the interrupted task runs again"
    );
    assert_eq!(out.line("host3", "count"), "changed");
    for h in fleet.hosts() {
        assert_eq!(
            lines(&h.state_dir.join("count")),
            1,
            "{} counted twice",
            h.name
        );
        assert!(h.state_dir.join("done").exists());
    }
}

#[test]
fn retry_failed_reruns_only_the_failed_hosts() {
    let fleet = Fleet::start(3);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"work\"\ncommand = \"[ ! -e \\\"$HOST_DIR/broken\\\" ] && echo x >> \\\"$HOST_DIR/ran\\\"\"\n",
    );
    std::fs::write(fleet.host(1).state_dir.join("broken"), "").expect("write");
    run(&p, &fleet, &[]).code(2);
    std::fs::remove_file(fleet.host(1).state_dir.join("broken")).expect("rm");
    let retry = run(&p, &fleet, &["--retry-failed", "--no-cache"]);
    retry.code(0);
    assert!(
        retry
            .stdout
            .contains("retrying on 1 host(s) that failed in the last run: host2")
    );
    assert_eq!(lines(&fleet.host(0).state_dir.join("ran")), 1);
    assert_eq!(lines(&fleet.host(1).state_dir.join("ran")), 1);
    let again = run(&p, &fleet, &["--retry-failed"]);
    again.code(0);
    assert!(
        again.stdout.contains("nothing to retry"),
        "{}",
        again.stdout
    );
}

#[test]
fn apply_carries_out_the_plan_or_refuses_on_drift() {
    let fleet = Fleet::start(2);
    let p = project(&fleet, "", CONVERGE);
    p.file("templates/app.conf.j2", "node = {{ inventory_hostname }}\n");
    run(&p, &fleet, &["--check", "--plan-out", "plan.json"]).code(0);
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("plan.json")).expect("plan"))
            .expect("json");
    assert_eq!(plan["hosts"]["host2"][1]["status"], "changed");
    // host2's marker appears out of band: apply refuses, naming host and task.
    std::fs::write(fleet.host(1).state_dir.join("marker"), "x\n").expect("write");
    let refused = p.run(&[
        "apply",
        "plan.json",
        "-F",
        &fleet.ssh_config().to_string_lossy(),
    ]);
    refused.code(3);
    assert!(
        refused.stderr.contains("host host2: task \"marker\": the plan said would change (would run), the host now says ok"),
        "{}",
        refused.stderr
    );
    assert!(
        !fleet.host(0).state_dir.join("marker").exists(),
        "nothing may change on a refusal"
    );
    std::fs::remove_file(fleet.host(1).state_dir.join("marker")).expect("rm");
    // An edited input refuses too.
    p.file(
        "templates/app.conf.j2",
        "node = {{ inventory_hostname }} edited\n",
    );
    let refused = p.run(&[
        "apply",
        "plan.json",
        "-F",
        &fleet.ssh_config().to_string_lossy(),
    ]);
    refused.code(3);
    assert!(
        refused
            .stderr
            .contains("app.conf.j2` changed since the plan was made"),
        "{}",
        refused.stderr
    );
    p.file("templates/app.conf.j2", "node = {{ inventory_hostname }}\n");
    let applied = p.run(&[
        "apply",
        "plan.json",
        "-F",
        &fleet.ssh_config().to_string_lossy(),
    ]);
    applied.code(0);
    assert!(fleet.host(1).state_dir.join("marker").exists());
}

#[test]
fn diff_context_lines_are_configurable() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"config\"\ntemplate = { src = \"t.j2\", dest = \"{{ host_dir }}/t.conf\" }\n",
    );
    let old: String = (1..=9).map(|i| format!("line {i}\n")).collect();
    p.file("templates/t.j2", &old.replace("line 5\n", "line five\n"));
    std::fs::write(fleet.host(0).state_dir.join("t.conf"), &old).expect("write");
    let one = run(&p, &fleet, &["--check", "--diff", "--diff-context", "1"]);
    one.code(0);
    assert!(one.stdout.contains("@@ -4,3 +4,3 @@"), "{}", one.stdout);
    assert!(!one.stdout.contains(" line 3"), "{}", one.stdout);
    let default = run(&p, &fleet, &["--check", "--diff"]);
    assert!(
        default.stdout.contains("@@ -2,7 +2,7 @@"),
        "{}",
        default.stdout
    );
}

#[test]
fn a_plan_compares_decisions_so_output_that_changes_with_time_is_no_drift() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "clock"
command = "date +%s%N"
changed_when = "false"
[[plays.tasks]]
name = "marker"
command = "touch \"$HOST_DIR/marker\""
creates = "{{ host_dir }}/marker"
"#,
    );
    run(&p, &fleet, &["--check", "--plan-out", "plan.json"]).code(0);
    // Between plan and apply (an approval, in CI) the query's output changes: the decisions
    // (ok; would run `touch …`) do not, and the plan applies.
    let applied = p.run(&[
        "apply",
        "plan.json",
        "-F",
        &fleet.ssh_config().to_string_lossy(),
    ]);
    applied.code(0);
    assert!(fleet.host(0).state_dir.join("marker").exists());
}
