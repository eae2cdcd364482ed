//! The cluster lock with local hosts: concurrent runs, `--lock-wait`, a killed holder whose
//! lock goes stale, `--break-stale-lock`, and `capstan lock status|acquire|release`.

use crate::support::capstan::{Outcome, Project, finish, wait_for};

/// Sleeps long enough for a second run to find the lock taken.
const SLOW: &str = r#"
name = "Slow"

[[plays]]
name = "Upgrade"
hosts = "all"

[[plays.tasks]]
name = "Work"
command = "sleep {{ nap }}"
"#;

fn project(hosts: &[&str], settings: &str) -> Project {
    let p = Project::new();
    p.local_inventory(hosts, "nap = 2", settings);
    p.file("playbooks/slow.toml", SLOW);
    p
}

const RUN: [&str; 4] = ["run", "playbooks/slow.toml", "-i", "inventories/local.toml"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = RUN.to_vec();
    a.extend_from_slice(extra);
    a
}

fn lock(p: &Project, extra: &[&str]) -> Outcome {
    let mut a = vec!["lock"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["-i", "inventories/local.toml"]);
    p.run(&a)
}

fn lock_dir(p: &Project) -> std::path::PathBuf {
    p.path("remote/lock/local")
}

#[test]
fn of_two_runs_started_together_one_proceeds_and_the_other_refuses() {
    let p = project(&["web-1", "web-2"], "");
    let a = p.spawn(&args(&["-m", "run A"]));
    let b = p.spawn(&args(&["-m", "run B"]));
    let (pid_a, pid_b) = (a.id(), b.id());
    let (a, b) = (finish(a), finish(b));
    let (winner, loser, winner_pid, winner_msg) = if a.code == 0 {
        (a, b, pid_a, "run A")
    } else {
        (b, a, pid_b, "run B")
    };
    winner.code(0);
    loser.code(3);
    assert!(
        winner
            .stdout
            .contains("lock `local`: acquired on 2 host(s)"),
        "{}",
        winner.stdout
    );
    assert!(
        winner
            .stdout
            .contains("lock `local`: released on 2 host(s)"),
        "{}",
        winner.stdout
    );
    let err = &loser.stderr;
    assert!(
        err.starts_with("error: cluster `local` is locked; nothing was changed\n  held by "),
        "{err}"
    );
    assert!(err.contains(&format!("(pid {winner_pid}) since ")), "{err}");
    assert!(
        err.contains(&format!(": \"{winner_msg}\"; heartbeat ")),
        "{err}"
    );
    assert!(err.contains("(fresh)\n    on: web-1"), "{err}");
    assert!(err.contains("--lock-wait"), "{err}");
    assert!(
        !loser.stdout.contains("PLAY"),
        "the loser ran nothing:\n{}",
        loser.stdout
    );
    assert!(!lock_dir(&p).exists(), "the lock is released");
}

#[test]
fn lock_wait_waits_for_the_holder_then_proceeds() {
    let p = project(&["web-1"], "");
    let a = p.spawn(&args(&["--lock-wait", "1m"]));
    let b = p.spawn(&args(&["--lock-wait", "1m"]));
    let (a, b) = (finish(a), finish(b));
    a.code(0);
    b.code(0);
    let waited: Vec<&Outcome> = [&a, &b]
        .into_iter()
        .filter(|o| o.stdout.contains("lock `local`: held by "))
        .collect();
    assert_eq!(waited.len(), 1, "one waited:\n{}\n{}", a.stdout, b.stdout);
    assert!(
        waited[0].stdout.contains("; waiting up to 1m"),
        "{}",
        waited[0].stdout
    );
}

#[test]
fn a_killed_holder_leaves_a_lock_that_goes_stale_and_release_stale_breaks_it() {
    let p = Project::new();
    p.local_inventory(&["web-1"], "", "lock_stale_after = \"10s\"");
    // The host's commands run in their own process group: note one, to end them with the holder.
    p.file(
        "playbooks/slow.toml",
        &SLOW.replace(
            "sleep {{ nap }}",
            "mkdir -p {{ host_dir }} && echo $$ > {{ host_dir }}/pid && sleep 30",
        ),
    );
    let mut holder = p.spawn(&args(&["-m", "doomed"]));
    let heartbeat = lock_dir(&p).join("heartbeat");
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    wait_for(10, "the lock", || !read(&heartbeat).is_empty());
    // The heartbeat is refreshed (every 2.5s, for a 10s staleness) while the run lasts.
    let first = read(&heartbeat);
    wait_for(10, "a heartbeat", || {
        let now = read(&heartbeat);
        !now.is_empty() && now != first
    });
    let status = lock(&p, &["status"]);
    status.code(0);
    assert!(
        status.stdout.contains("web-1  held by "),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(": \"doomed\"; heartbeat "),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("(fresh)"), "{}", status.stdout);

    holder.kill().expect("SIGKILL");
    let _ = holder.wait();
    let pid = nix::unistd::Pid::from_raw(read(&p.path("hosts/pid")).trim().parse().expect("pid"));
    if let Ok(group) = nix::unistd::getpgid(Some(pid)) {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::SIGKILL);
    }
    wait_for(30, "a stale lock", || {
        lock(&p, &["status"]).stdout.contains("STALE")
    });

    let refused = p.run(&RUN);
    refused.code(3);
    assert!(
        refused
            .stderr
            .contains(": STALE (older than lock_stale_after = 10s)"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("capstan lock release --stale -i inventories/local.toml"),
        "{}",
        refused.stderr
    );

    let kept = lock(&p, &["release"]);
    kept.code(3);
    assert!(
        kept.stdout.contains("web-1  kept: held by "),
        "{}",
        kept.stdout
    );

    let released = lock(&p, &["release", "--stale"]);
    released.code(0);
    assert!(
        released.stdout.contains("web-1  released (was held by "),
        "{}",
        released.stdout
    );
    assert!(lock(&p, &["status"]).stdout.contains("web-1  free"));
    assert!(!lock_dir(&p).exists());
}

/// Writes a lock as a dead run would have left it: its heartbeat long ago.
fn dead_lock(p: &Project) {
    let dir = lock_dir(p);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("token"), "dead\n").expect("token");
    std::fs::write(
        dir.join("info"),
        r#"{"cluster":"local","who":"ghost@gone","pid":1,"started":"2020-01-01T00:00:00.000Z","playbook":"old.toml","message":"crashed","kind":"run"}"#,
    )
    .expect("info");
    std::fs::write(dir.join("heartbeat"), "1000\n").expect("heartbeat");
}

#[test]
fn break_stale_lock_takes_a_dead_runs_lock_over() {
    let p = project(&["web-1"], "");
    p.file(
        "inventories/local.toml",
        &std::fs::read_to_string(p.path("inventories/local.toml"))
            .expect("inv")
            .replace("nap = 2", "nap = 0"),
    );
    dead_lock(&p);
    let refused = p.run(&RUN);
    refused.code(3);
    assert!(refused.stderr.contains("held by ghost@gone (pid 1) since 2020-01-01T00:00:00.000Z, running `old.toml`: \"crashed\"; heartbeat "), "{}", refused.stderr);
    assert!(refused.stderr.contains("STALE"), "{}", refused.stderr);

    let out = p.run(&args(&["--break-stale-lock"]));
    out.code(0);
    assert!(
        out.stdout
            .contains("lock `local`: broke the stale lock on web-1: ghost@gone"),
        "{}",
        out.stdout
    );
    assert!(!lock_dir(&p).exists());
}

#[test]
fn a_manual_lock_holds_until_released_and_check_runs_ignore_it() {
    let p = project(&["web-1", "web-2"], "");
    let taken = lock(&p, &["acquire", "-m", "change freeze"]);
    taken.code(0);
    assert_eq!(
        taken.stdout,
        "lock `local` acquired on 2 host(s); it holds until `capstan lock release -i inventories/local.toml`\n"
    );

    let status = lock(&p, &["status"]);
    assert!(
        status.stdout.contains("web-2  held by "),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("taken with `capstan lock acquire`: \"change freeze\"\n"),
        "{}",
        status.stdout
    );

    let refused = p.run(&RUN);
    refused.code(3);
    assert!(
        refused.stderr.contains("\"change freeze\""),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("`capstan lock release -i inventories/local.toml` frees it"),
        "{}",
        refused.stderr
    );
    // --check changes nothing, so it takes no lock.
    p.run(&args(&["--check"])).code(0);
    // Only --force breaks a manual lock early; --stale does not.
    lock(&p, &["release", "--stale"]).code(3);
    lock(&p, &["acquire"]).code(3);

    let released = lock(&p, &["release"]);
    released.code(0);
    assert!(
        released.stdout.contains("web-1  released (was held by "),
        "{}",
        released.stdout
    );
    assert!(
        lock(&p, &["status"])
            .stdout
            .contains("web-1  free\n  web-2  free\n")
    );
}
