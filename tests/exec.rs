//! `capstan exec PATTERN -- COMMAND`: one command on the matching hosts, through the same
//! run as a playbook (host keys, forks, the lock, the recap, exit codes, the audit trail),
//! over the local connection and over real sshd.

use crate::support::capstan::Project;
use crate::support::fleet::Fleet;

/// `a`, `b` (group `web`) and `c` on this machine, each appending to `host_dir/NAME.log`.
fn local() -> Project {
    let p = Project::new();
    p.local_inventory(&["a", "b", "c"], "", "");
    let inv = std::fs::read_to_string(p.path("inventories/local.toml")).expect("inventory");
    p.file(
        "inventories/local.toml",
        &format!("{inv}\n[groups.web]\nhosts = [\"a\", \"b\"]\n"),
    );
    std::fs::create_dir_all(p.path("hosts")).expect("mkdir");
    p
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn runs_on_the_matching_hosts_every_time_with_their_output_and_recap() {
    let p = local();
    let args = [
        "exec",
        "web",
        "-i",
        "inventories/local.toml",
        "--",
        "echo",
        "hi-{{ inventory_hostname }}",
        "|",
        "tee",
        "-a",
        "{{ host_dir }}/{{ inventory_hostname }}.log",
    ];
    let out = p.run(&args);
    out.code(0);
    let task =
        "echo hi-{{ inventory_hostname }} | tee -a {{ host_dir }}/{{ inventory_hostname }}.log";
    for host in ["a", "b"] {
        assert_eq!(out.line(host, task), "changed");
        let mut after = out
            .stdout
            .lines()
            .skip_while(|l| !l.ends_with(&format!(" {host} | {task} | changed")));
        after.next();
        assert_eq!(
            after.next(),
            Some(format!("    stdout: hi-{host}").as_str()),
            "{host}'s output right under its line:\n{}",
            out.stdout
        );
        assert!(
            out.recap(host).starts_with("ok=0 changed=1 failed=0"),
            "{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains(" c | "), "c is not in the pattern");
    // Ad-hoc commands never come from the result cache: the second run runs again.
    p.run(&args).code(0);
    assert_eq!(lines(&p.path("hosts/a.log")), ["hi-a", "hi-a"]);
    assert!(!p.path("hosts/c.log").exists());
}

#[test]
fn is_recorded_in_the_audit_trail_with_the_command() {
    let p = local();
    p.run(&["exec", "a", "-i", "inventories/local.toml", "--", "true"])
        .code(0);
    let log =
        std::fs::read_to_string(p.path("inventories/.capstan/audit.jsonl")).unwrap_or_default();
    let record: serde_json::Value =
        serde_json::from_str(log.lines().last().unwrap_or_default()).unwrap_or_default();
    assert_eq!(record["message"], "capstan exec: true", "{log}");
    assert_eq!(record["hosts"]["a"]["changed"], serde_json::json!(["true"]));
    let shown = p.run(&["audit", "-i", "inventories/local.toml"]);
    assert!(
        shown.stdout.contains("\"capstan exec: true\""),
        "{}",
        shown.stdout
    );
}

#[test]
fn takes_the_cluster_lock() {
    let p = local();
    p.run(&[
        "lock",
        "acquire",
        "-i",
        "inventories/local.toml",
        "-m",
        "maintenance",
    ])
    .code(0);
    let out = p.run(&[
        "exec",
        "all",
        "-i",
        "inventories/local.toml",
        "--",
        "touch",
        "{{ host_dir }}/x",
    ]);
    out.code(3);
    assert!(out.all().contains("maintenance"), "{}", out.all());
    assert!(
        !p.path("hosts/x").exists(),
        "nothing ran under someone else's lock"
    );
}

#[test]
fn a_failing_command_fails_its_host_with_its_exit_code() {
    let p = local();
    let out = p.run(&[
        "exec",
        "all",
        "-i",
        "inventories/local.toml",
        "--output",
        "json",
        "--forks",
        "1",
        "--",
        "test",
        "{{ inventory_hostname }}",
        "!=",
        "b",
    ]);
    out.code(2);
    let results: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "task_result")
        .collect();
    let by_host = |h: &str| {
        results
            .iter()
            .find(|r| r["host"] == h)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_host("b")["status"], "failed");
    assert_eq!(by_host("b")["exit"], 1, "the exit code is an integer");
    assert_eq!(by_host("a")["status"], "changed");
    assert_eq!(by_host("a")["exit"], 0);
    let started: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().unwrap_or_default()).unwrap_or_default();
    assert_eq!(started["playbook"], "<exec>");
}

#[test]
fn bad_patterns_and_empty_commands_are_refused() {
    let p = local();
    let out = p.run(&["exec", "wbe", "-i", "inventories/local.toml", "--", "true"]);
    out.code(3);
    assert!(
        out.stderr
            .contains("unknown host or group \"wbe\"; did you mean \"web\"?"),
        "{}",
        out.stderr
    );
    let out = p.run(&["exec", "all", "-i", "inventories/local.toml", "--", ""]);
    out.code(3);
    assert!(
        out.stderr.contains("the command after `--` is empty"),
        "{}",
        out.stderr
    );
    let out = p.run(&["exec", "all", "-i", "inventories/local.toml", "true"]);
    assert_eq!(out.code, 1, "the command goes after `--`: {}", out.stderr);
}

#[test]
fn over_ssh_it_runs_only_on_the_pattern_with_host_keys_checked() {
    let mut fleet = Fleet::start(3);
    let p = Project::new();
    fleet.write_inventory(&p.path("inventory.toml"));
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let exec = |pattern: &str, extra: &[&str]| {
        let mut args = vec!["exec", pattern, "-i", "inventory.toml", "-F", &config];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "echo", "$NODE_NAME", ">", "$HOST_DIR/exec"]);
        p.run(&args)
    };
    let out = exec("host1,host3", &["--forks", "1"]);
    out.code(0);
    let ran: Vec<bool> = fleet
        .hosts()
        .iter()
        .map(|h| h.state_dir.join("exec").exists())
        .collect();
    assert_eq!(ran, [true, false, true], "{}", out.stdout);
    assert_eq!(
        lines(&fleet.host(2).state_dir.join("exec")),
        ["host3"],
        "the command ran on the host, in its shell"
    );
    for h in fleet.hosts() {
        let _ = std::fs::remove_file(h.state_dir.join("exec"));
    }
    // A changed host key refuses the whole command, on every host.
    fleet.rotate_host_key(1);
    let out = exec("all", &[]);
    out.code(3);
    assert!(
        out.stderr.contains("has CHANGED") || out.stdout.contains("has CHANGED"),
        "{}",
        out.all()
    );
    assert!(
        fleet
            .hosts()
            .iter()
            .all(|h| !h.state_dir.join("exec").exists())
    );
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit_at_start() {
    use std::os::unix::process::CommandExt;
    let p = local();
    let mut cmd = std::process::Command::new(crate::support::capstan::binary());
    cmd.args([
        "exec",
        "a",
        "-i",
        "inventories/local.toml",
        "--",
        "ulimit",
        "-Sn",
    ])
    .current_dir(p.dir.path())
    .env("CI", "1")
    .env("CAPSTAN_LOCK_DIR", p.path(".host-lock"));
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 256, 4096)
                .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().expect("capstan runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("    stdout: 4096"),
        "the host shell inherits the raised limit:\n{stdout}"
    );
}
