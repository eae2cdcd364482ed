//! A run's life cycle: nothing matched is refused before anything connects; signals stop a
//! run cleanly; a run that lost its lock starts nothing more.

use crate::support::capstan::Project;

const ONE_TASK: &str = r#"
[[plays]]
name = "Site"
hosts = "HOSTS"

[[plays.tasks]]
name = "Mark"
command = "mkdir -p {{ host_dir }} && echo {{ inventory_hostname }} >> {{ host_dir }}/ran"
"#;

fn project(hosts: &[&str], pattern: &str) -> Project {
    let p = Project::new();
    p.local_inventory(hosts, "", "");
    p.file("site.toml", &ONE_TASK.replace("HOSTS", pattern));
    p
}

const RUN: [&str; 4] = ["run", "site.toml", "-i", "inventories/local.toml"];

fn run(p: &Project, extra: &[&str]) -> crate::support::capstan::Outcome {
    let mut args = RUN.to_vec();
    args.extend_from_slice(extra);
    p.run(&args)
}

#[test]
fn an_empty_inventory_is_refused_before_anything_runs() {
    let p = project(&[], "all");
    for extra in [&[][..], &["--check"][..]] {
        let out = run(&p, extra);
        out.code(3);
        assert!(
            out.stderr.contains(
                "error: the inventory has no host; nothing to run on\n  --> inventories/local.toml"
            ),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("PLAY"), "{}", out.stdout);
    }
}

#[test]
fn a_play_pattern_that_matches_no_host_is_refused_with_a_hint() {
    let p = project(&["web-1", "web-2", "db-1"], "web-1,&db-1");
    let out = run(&p, &[]);
    out.code(3);
    assert!(
        out.stderr
            .contains("play \"Site\": host pattern \"web-1,&db-1\" matches no host"),
        "{}",
        out.stderr
    );
    assert!(!p.path("hosts/ran").exists(), "nothing ran");
}

#[test]
fn a_limit_that_leaves_no_host_is_refused_with_did_you_mean() {
    let p = project(&["web-1", "web-2"], "web-1");
    let out = run(&p, &["--limit", "web-2"]);
    out.code(3);
    assert!(
        out.stderr
            .contains("--limit \"web-2\" leaves no host to run on (the plays target: web-1)"),
        "{}",
        out.stderr
    );
    let typo = run(&p, &["--limit", "web-1,!web-1"]);
    typo.code(3);
    assert!(typo.stderr.contains("leaves no host"), "{}", typo.stderr);
    assert!(!p.path("hosts/ran").exists(), "nothing ran");
}

mod over_sshd {
    use std::time::{Duration, Instant};

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    use crate::support::capstan::{Outcome, Project, finish, wait_for};
    use crate::support::fleet::{Fleet, project};

    /// A long first step and a second one in the same round trip; each step notes its pid.
    const LONG: &str = r#"
[[plays]]
name = "Work"
hosts = "all"

[[plays.tasks]]
name = "long"
command = "echo $$ > {{ host_dir }}/pid; echo start >> {{ host_dir }}/log; TRAP sleep 30; echo end >> {{ host_dir }}/log"

[[plays.tasks]]
name = "after"
command = "echo after >> {{ host_dir }}/log"
"#;

    fn spawn(p: &Project, fleet: &Fleet, extra: &[&str]) -> std::process::Child {
        let config = fleet.ssh_config().to_string_lossy().into_owned();
        let mut args = vec!["run", "site.toml", "-i", "inventory.toml", "-F", &config];
        args.extend_from_slice(extra);
        p.spawn(&args)
    }

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn signal(child: &std::process::Child, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, sig).expect("signal");
    }

    fn gone(pid_file: &std::path::Path) -> bool {
        let Ok(pid) = read(pid_file).trim().parse::<i32>() else {
            return false;
        };
        kill(Pid::from_raw(pid), None).is_err()
    }

    fn all_started(fleet: &Fleet) -> bool {
        fleet
            .hosts()
            .iter()
            .all(|h| read(&h.state_dir.join("log")).contains("start"))
    }

    fn assert_stopped_cleanly(fleet: &Fleet, p: &Project, out: &Outcome) {
        out.code(2);
        assert!(
            out.stdout.contains("RECAP"),
            "the recap is printed:\n{}",
            out.stdout
        );
        assert!(p.path("report.json").exists(), "--report is written");
        assert!(p.path("junit.xml").exists(), "--junit is written");
        for h in fleet.hosts() {
            let log = read(&h.state_dir.join("log"));
            assert!(
                !log.contains("end"),
                "{}: the step was stopped: {log}",
                h.name
            );
            assert!(
                !log.contains("after"),
                "{}: nothing new started: {log}",
                h.name
            );
            assert!(
                !h.home.join(".capstan/lock/host.lock").exists(),
                "{}: the lock is released",
                h.name
            );
            wait_for(5, "the remote step's process to be gone", || {
                gone(&h.state_dir.join("pid"))
            });
        }
    }

    #[test]
    fn sigterm_mid_run_stops_cleanly_with_recap_reports_and_lock_released() {
        let fleet = Fleet::start(2);
        let p = project(&fleet, "", &LONG.replace("TRAP ", ""));
        let child = spawn(
            &p,
            &fleet,
            &[
                "--report",
                "report.json",
                "--junit",
                "junit.xml",
                "--no-cache",
            ],
        );
        wait_for(30, "both hosts to start the long step", || {
            all_started(&fleet)
        });
        let t0 = Instant::now();
        signal(&child, Signal::SIGTERM);
        let out = finish(child);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "stopped within the grace period, not after the 30 s step"
        );
        assert!(
            out.stderr.contains("SIGTERM: stopping: no new task starts"),
            "acknowledged at once:\n{}",
            out.stderr
        );
        assert_stopped_cleanly(&fleet, &p, &out);
    }

    #[test]
    fn a_second_sigterm_kills_a_step_that_ignores_term_and_still_cleans_up() {
        let fleet = Fleet::start(1);
        let p = project(
            &fleet,
            "[settings]\nkill_grace = \"5m\"\n",
            &LONG.replace("TRAP ", "trap '' TERM; "),
        );
        let child = spawn(
            &p,
            &fleet,
            &[
                "--report",
                "report.json",
                "--junit",
                "junit.xml",
                "--no-cache",
            ],
        );
        wait_for(30, "the long step to start", || all_started(&fleet));
        signal(&child, Signal::SIGTERM);
        wait_for(10, "the first signal to be acknowledged", || {
            // The step ignores TERM: it is still there, the run waits for it.
            !gone(&fleet.host(0).state_dir.join("pid"))
        });
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        signal(&child, Signal::SIGTERM);
        let out = finish(child);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the second signal kills at once, not after kill_grace"
        );
        assert!(
            out.stderr.contains("stopping now: killing"),
            "{}",
            out.stderr
        );
        assert_stopped_cleanly(&fleet, &p, &out);
    }

    /// Two steps in separate round trips (the first registers): a pause between them.
    const FENCED: &str = r#"
[[plays]]
name = "A"
hosts = "all"

[[plays.tasks]]
name = "first"
command = "echo a1 >> {{ host_dir }}/log; sleep 2"
register = "first"

[[plays.tasks]]
name = "second"
command = "echo a2 >> {{ host_dir }}/log"
"#;

    #[test]
    fn a_run_paused_past_stale_whose_lock_was_broken_starts_nothing_more() {
        let fleet = Fleet::start(2);
        let p = project(&fleet, "[settings]\nlock_stale_after = \"10s\"\n", FENCED);
        p.file(
            "other.toml",
            "[[plays]]\nname = \"B\"\nhosts = \"all\"\n[[plays.tasks]]\nname = \"b\"\ncommand = \"echo b >> {{ host_dir }}/log; sleep 3\"\n",
        );
        let a = spawn(&p, &fleet, &["--no-cache"]);
        wait_for(30, "run A's first step", || {
            fleet
                .hosts()
                .iter()
                .all(|h| read(&h.state_dir.join("log")).contains("a1"))
        });
        signal(&a, Signal::SIGSTOP);
        // Past lock_stale_after (10 s) without a heartbeat.
        std::thread::sleep(Duration::from_secs(12));
        let config = fleet.ssh_config().to_string_lossy().into_owned();
        let b = p.spawn(&[
            "run",
            "other.toml",
            "-i",
            "inventory.toml",
            "-F",
            &config,
            "--break-stale-lock",
            "--no-cache",
        ]);
        wait_for(30, "run B to start", || {
            fleet
                .hosts()
                .iter()
                .all(|h| read(&h.state_dir.join("log")).contains('b'))
        });
        signal(&a, Signal::SIGCONT);
        let (a, b) = (finish(a), finish(b));
        b.code(0);
        a.code(2);
        assert!(a.all().contains("lock lost"), "{}{}", a.stdout, a.stderr);
        for h in fleet.hosts() {
            let log = read(&h.state_dir.join("log"));
            assert!(
                !log.contains("a2"),
                "{}: the paused run started nothing more: {log}",
                h.name
            );
        }
    }
}
