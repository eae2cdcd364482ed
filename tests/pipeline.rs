//! The CI pipeline's pieces against real sshd hosts: two CI-style runs racing for the lock, a
//! killed holder whose lock goes stale, the staging → prod promotion gate, and the reports.

use crate::support::capstan::{Project, finish, wait_for};
use crate::support::fleet::{Fleet, project, run_site as run};

const SLOW: &str = r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "work"
command = "echo run >> \"$HOST_DIR/log\"; sleep 2"
"#;

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn run_args(fleet: &Fleet, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "site.toml", "-i", "inventory.toml", "-F"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    v.push(fleet.ssh_config().to_string_lossy().into_owned());
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

#[test]
fn two_ci_runs_race_for_the_lock_and_exactly_one_proceeds() {
    let fleet = Fleet::start(3);
    let p = project(&fleet, "[settings]\ncluster = \"dtr-staging\"\n", SLOW);
    let a_args = run_args(&fleet, &["-m", "job A", "--no-cache"]);
    let b_args = run_args(&fleet, &["-m", "job B", "--no-cache"]);
    let a = p.spawn(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    let b = p.spawn(&b_args.iter().map(String::as_str).collect::<Vec<_>>());
    let (a, b) = (finish(a), finish(b));
    let mut codes = [a.code, b.code];
    codes.sort_unstable();
    assert_eq!(
        codes,
        [0, 3],
        "A:\n{}{}\nB:\n{}{}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    let loser = if a.code == 3 { &a } else { &b };
    let winner_msg = if a.code == 3 { "job B" } else { "job A" };
    assert!(
        loser.stderr.contains("cluster `dtr-staging` is locked"),
        "{}",
        loser.stderr
    );
    assert!(loser.stderr.contains(winner_msg), "{}", loser.stderr);
    for h in fleet.hosts() {
        assert_eq!(lines(&h.state_dir.join("log")), 1, "{} ran twice", h.name);
    }
    // With --lock-wait the second run waits for the first and then proceeds.
    let a = p.spawn(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(30, "run A to take the lock", || {
        fleet.host(0).home.join(".capstan/lock/host.lock").exists()
    });
    let mut waiting = run_args(&fleet, &["--no-cache", "--lock-wait", "1m"]);
    waiting.push("-m".into());
    waiting.push("job C".into());
    let c = p.run(&waiting.iter().map(String::as_str).collect::<Vec<_>>());
    finish(a).code(0);
    c.code(0);
    assert_eq!(lines(&fleet.host(2).state_dir.join("log")), 3);
}

#[test]
fn a_killed_holder_is_taken_over_at_once_by_the_next_run() {
    let fleet = Fleet::start(2);
    let p = project(&fleet, "[settings]\ncluster = \"prod\"\n", SLOW);
    let args = run_args(&fleet, &["--no-cache"]);
    let mut holder = p.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(30, "the holder to start its work", || {
        fleet.host(1).state_dir.join("log").exists()
    });
    holder.kill().expect("SIGKILL");
    let _ = holder.wait();
    let rerun = run(&p, &fleet, &["--no-cache"]);
    rerun.code(0);
    assert!(
        rerun
            .stdout
            .contains("took over the lock of a run that died on this machine on host1, host2: "),
        "{}",
        rerun.stdout
    );
}

#[test]
fn prod_is_refused_until_staging_has_converged() {
    let fleet = Fleet::start(2);
    let base = fleet.inventory_toml();
    let p = Project::new();
    // staging is host1, prod is host2; same playbook.
    let only = |keep: &str, drop: &str| {
        let start = base.find(&format!("[hosts.{drop}]")).expect("host section");
        let rest = &base[start..];
        let end = rest[1..].find("\n[hosts.").map_or(rest.len(), |e| e + 1);
        let text = format!("{}{}", &base[..start], &rest[end..]);
        assert!(text.contains(&format!("[hosts.{keep}]")));
        text
    };
    p.file("staging.toml", &only("host1", "host2"));
    p.file("prod.toml", &only("host2", "host1"));
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"marker\"\ncommand = \"touch \\\"$HOST_DIR/marker\\\"\"\ncreates = \"{{ host_dir }}/marker\"\n",
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let prod = |p: &Project| {
        p.run(&[
            "run",
            "site.toml",
            "-i",
            "prod.toml",
            "-F",
            &config,
            "--require-converged",
            "staging.toml",
        ])
    };
    let refused = prod(&p);
    refused.code(3);
    assert!(
        refused.stderr.contains(
            "`staging.toml` has not converged: 1 task(s) would still change there (host1: marker)"
        ),
        "{}",
        refused.stderr
    );
    assert!(
        !fleet.host(1).state_dir.join("marker").exists(),
        "prod was touched"
    );
    // The two-step gate says the same: exit 4 while staging has pending changes.
    p.run(&[
        "run",
        "site.toml",
        "-i",
        "staging.toml",
        "-F",
        &config,
        "--check",
        "--detailed-exitcode",
    ])
    .code(4);
    p.run(&["run", "site.toml", "-i", "staging.toml", "-F", &config])
        .code(0);
    p.run(&[
        "run",
        "site.toml",
        "-i",
        "staging.toml",
        "-F",
        &config,
        "--check",
        "--detailed-exitcode",
    ])
    .code(0);
    let promoted = prod(&p);
    promoted.code(0);
    assert!(
        promoted
            .stdout
            .contains("gate: `staging.toml` has converged"),
        "{}",
        promoted.stdout
    );
    assert!(fleet.host(1).state_dir.join("marker").exists());
}

#[test]
fn json_lines_report_and_junit_describe_a_run_over_ssh() {
    let fleet = Fleet::start(2);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"work\"\ncommand = \"[ \\\"$NODE_NAME\\\" != host2 ]\"\n",
    );
    let out = run(
        &p,
        &fleet,
        &[
            "--output",
            "json",
            "--report",
            "report.json",
            "--junit",
            "junit.xml",
        ],
    );
    out.code(2);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let results: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "task_result")
        .collect();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .any(|r| r["host"] == "host2" && r["status"] == "failed")
    );
    assert_eq!(
        events.last().map(|e| e["exit_code"].clone()),
        Some(2.into())
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["run"]["exit_code"], 2);
    assert_eq!(report["hosts"]["host1"]["recap"]["changed"], 1);
    let xml = std::fs::read_to_string(p.path("junit.xml")).expect("junit");
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    assert_eq!(failures, 1, "{xml}");
}

#[test]
fn two_copies_of_one_inventory_exclude_each_other_on_the_same_hosts() {
    let fleet = Fleet::start(2);
    let p = project(&fleet, "[settings]\ncluster = \"prod\"\n", SLOW);
    let text = std::fs::read_to_string(p.path("inventory.toml")).expect("inventory");
    p.file(
        "inventory-copy.toml",
        &text.replace("cluster = \"prod\"", "cluster = \"prod-copy\""),
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let args = |inv: &'static str, msg: &'static str| {
        vec![
            "run".to_owned(),
            "site.toml".into(),
            "-i".into(),
            inv.into(),
            "-F".into(),
            config.clone(),
            "--no-cache".into(),
            "-m".into(),
            msg.into(),
        ]
    };
    let spawn = |a: Vec<String>| p.spawn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let a = spawn(args("inventory.toml", "from the original"));
    let b = spawn(args("inventory-copy.toml", "from the copy"));
    let (a, b) = (finish(a), finish(b));
    let mut codes = [a.code, b.code];
    codes.sort_unstable();
    assert_eq!(
        codes,
        [0, 3],
        "A:\n{}{}\nB:\n{}{}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    let (loser, holder) = if a.code == 3 {
        (&a, "from the copy")
    } else {
        (&b, "from the original")
    };
    assert!(
        loser.stderr.contains("is locked; nothing was changed"),
        "{}",
        loser.stderr
    );
    assert!(
        loser.stderr.contains(holder),
        "names the holder: {}",
        loser.stderr
    );
    for h in fleet.hosts() {
        assert_eq!(lines(&h.state_dir.join("log")), 1, "{} ran once", h.name);
    }
}
