//! `capstan run` end to end against real OpenSSH daemons on loopback.

use std::path::Path;

use crate::support::capstan::Project;
use crate::support::fleet::{Fleet, keygen, pub_of};

use crate::support::fleet::{project, run_site as run};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const MARKERS: &str = r#"
name = "markers"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "fact"
command = "uname -s"
changed_when = "false"
[[plays.tasks]]
name = "marker"
command = "echo \"$NODE_NAME\" > \"$HOST_DIR/marker\""
creates = "{{ host_dir }}/marker"
[[plays.tasks]]
name = "config"
template = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf", mode = "0640" }
[[plays.tasks]]
name = "unless guarded"
command = "touch \"$HOST_DIR/never\""
unless = "test -d \"$HOST_DIR\""
"#;

#[test]
fn twenty_hosts_in_parallel_then_idempotent() {
    let fleet = Fleet::start(20);
    let p = project(&fleet, "", MARKERS);
    p.file(
        "templates/app.conf.j2",
        "name = {{ inventory_hostname }}\nport = {{ port | default(8080) }}\n",
    );
    let first = run(&p, &fleet, &[]);
    first.code(0);
    for h in fleet.hosts() {
        assert_eq!(read(&h.state_dir.join("marker")), format!("{}\n", h.name));
        assert_eq!(
            read(&h.state_dir.join("app.conf")),
            format!("name = {}\nport = 8080\n", h.name)
        );
        assert!(!h.state_dir.join("never").exists(), "`unless` must skip");
        assert_eq!(first.line(&h.name, "marker"), "changed");
        assert_eq!(first.line(&h.name, "config"), "changed (changed: new file)");
        assert_eq!(
            first.line(&h.name, "unless guarded"),
            "ok (unless: the check command succeeded)"
        );
        assert!(
            first.recap(&h.name).contains("changed=2"),
            "{}",
            first.recap(&h.name)
        );
    }
    let second = run(&p, &fleet, &[]);
    second.code(0);
    for h in fleet.hosts() {
        assert_eq!(second.line(&h.name, "config"), "ok (up to date)");
        assert!(
            second.line(&h.name, "marker").starts_with("ok (creates: "),
            "{}",
            second.stdout
        );
        assert!(second.recap(&h.name).contains("changed=0"));
    }
}

#[test]
fn unknown_host_key_refuses_everything_before_any_work() {
    let fleet = Fleet::start(3);
    let p = project(&fleet, "", MARKERS);
    p.file("templates/app.conf.j2", "x\n");
    // host2's key is missing from known_hosts.
    let known = read(fleet.known_hosts());
    let kept: Vec<&str> = known
        .lines()
        .filter(|l| !l.contains(&format!("[{}]", fleet.host(1).addr)))
        .collect();
    std::fs::write(fleet.known_hosts(), kept.join("\n") + "\n").expect("write");
    let out = run(&p, &fleet, &[]);
    out.code(3);
    assert!(
        out.stderr.contains("host2: host key of `host2 ("),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("is unknown (ssh-ed25519 SHA256:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("nothing was run on any host"),
        "{}",
        out.stderr
    );
    for h in fleet.hosts() {
        assert!(
            !h.state_dir.join("marker").exists(),
            "{} was touched",
            h.name
        );
    }
    // Opting in records the key, and the next strict run passes.
    let out = run(&p, &fleet, &["--accept-new-host-keys"]);
    out.code(0);
    assert!(read(fleet.known_hosts()).contains(&format!("[{}]", fleet.host(1).addr)));
    run(&p, &fleet, &[]).code(0);
}

#[test]
fn changed_host_key_is_refused_with_its_known_hosts_line() {
    let mut fleet = Fleet::start(2);
    fleet.rotate_host_key(1);
    let p = project(&fleet, "", MARKERS);
    p.file("templates/app.conf.j2", "x\n");
    // Even accept-new never accepts a changed key.
    let out = run(&p, &fleet, &["--accept-new-host-keys"]);
    out.code(3);
    let expected = format!(
        "`{}` line 2 has a different key",
        fleet.known_hosts().display()
    );
    assert!(out.stderr.contains("has CHANGED"), "{}", out.stderr);
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(!fleet.host(0).state_dir.join("marker").exists());
}

#[test]
fn a_stopped_host_is_unreachable_and_the_others_finish() {
    let mut fleet = Fleet::start(3);
    fleet.stop_host(2);
    let p = project(&fleet, "", MARKERS);
    p.file("templates/app.conf.j2", "x\n");
    let out = run(&p, &fleet, &[]);
    out.code(2);
    assert!(
        out.stdout.contains("host3 | UNREACHABLE: cannot connect"),
        "{}",
        out.stdout
    );
    assert!(out.recap("host3").contains("unreachable=1"));
    for h in &fleet.hosts()[..2] {
        assert!(h.state_dir.join("marker").exists());
    }
}

#[test]
fn a_hanging_command_hits_its_timeout() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "hang"
command = "sleep 600; touch \"$HOST_DIR/late\""
timeout = "1s"
[[plays.tasks]]
name = "after"
command = "touch \"$HOST_DIR/after\""
"#,
    );
    let started = std::time::Instant::now();
    let out = run(&p, &fleet, &[]);
    out.code(2);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(out.line("host1", "hang"), "failed (timed out after 1s)");
    assert!(
        !out.stdout.contains("host1 | after |"),
        "the failed host leaves the play"
    );
    assert!(!fleet.host(0).state_dir.join("after").exists());
}

#[test]
fn serial_batches_stop_after_a_failure_under_max_fail_percentage_zero() {
    let fleet = Fleet::start(3);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
serial = 1
max_fail_percentage = 0
[[plays.tasks]]
name = "work"
command = "if [ \"$NODE_NAME\" = host2 ]; then exit 5; fi; touch \"$HOST_DIR/done\""
"#,
    );
    let out = run(&p, &fleet, &[]);
    out.code(2);
    assert!(fleet.host(0).state_dir.join("done").exists());
    assert!(
        !fleet.host(2).state_dir.join("done").exists(),
        "batch 3 must not run"
    );
    assert!(
        out.stdout
            .contains("PLAY STOPPED: play \"all\" stopped: 1 of 3 host(s) failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("task \"work\" failed: command failed with exit status 5")
    );
}

#[test]
fn hostile_values_reach_the_host_as_literals() {
    let fleet = Fleet::start(1);
    let hostile = "$(touch /tmp/capstan-pwned); echo 'pwned' `id` \"x\"\nline2";
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "literal"
command = "printf %s {{ v }} > {{ host_dir }}/hostile"
"#,
    );
    let var = format!("v={}", toml::Value::String(hostile.into()));
    let out = run(&p, &fleet, &["-e", &var]);
    out.code(0);
    assert_eq!(read(&fleet.host(0).state_dir.join("hostile")), hostile);
}

#[test]
fn passphrase_key_and_ssh_agent_authenticate() {
    let fleet = Fleet::start(1);
    let keys = tempfile::tempdir().expect("tempdir");
    let protected = keys.path().join("protected");
    keygen(&protected, "ed25519", "correct horse");
    fleet.authorize(&pub_of(&protected));
    let inv = fleet.inventory_toml().replace(
        &format!("identity_file = \"{}\"", fleet.client_key().display()),
        &format!(
            "identity_file = \"{}\"\nkey_passphrase = {{ env = \"KEY_PASS\" }}",
            protected.display()
        ),
    );
    let p = Project::new();
    p.file("inventory.toml", &inv);
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\ncommand = \"echo ok\"\n",
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let args = ["run", "site.toml", "-i", "inventory.toml", "-F", &config];
    p.run_env(&args, &[("KEY_PASS", "correct horse")]).code(0);
    let out = p.run_env(&args, &[("KEY_PASS", "wrong-passphrase")]);
    out.code(2);
    assert!(!out.all().contains("correct horse"));

    // A key held by a real ssh-agent, with no identity file configured.
    let agent = crate::support::agent::Agent::start(keys.path());
    let agent_key = keys.path().join("agent_key");
    keygen(&agent_key, "ed25519", "");
    fleet.authorize(&pub_of(&agent_key));
    agent.add(&agent_key);
    let inv = fleet.inventory_toml().replace(
        &format!("identity_file = \"{}\"\n", fleet.client_key().display()),
        "",
    );
    p.file("inventory.toml", &inv);
    let empty_config = keys.path().join("ssh_config");
    std::fs::write(&empty_config, "").expect("write");
    let cfg = empty_config.to_string_lossy().into_owned();
    let sock = agent.socket().to_string_lossy().into_owned();
    let out = p.run_env(
        &["run", "site.toml", "-i", "inventory.toml", "-F", &cfg],
        &[
            ("SSH_AUTH_SOCK", &sock),
            ("HOME", &keys.path().to_string_lossy()),
        ],
    );
    out.code(0);
}

#[test]
fn proxy_jump_reaches_a_host_through_another() {
    let fleet = Fleet::start(2);
    // host2 is reached through host1 (the fleet's forwarding host).
    let inv = format!(
        "{}\n",
        fleet.inventory_toml().replace(
            "[hosts.host2]\n",
            &format!(
                "[hosts.host2]\nproxy_jump = \"root@{}:{}\"\n",
                fleet.host(0).addr,
                fleet.host(0).port
            )
        )
    );
    let p = Project::new();
    p.file("inventory.toml", &inv);
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"host2\"\n[[plays.tasks]]\ncommand = \"echo \\\"$SSH_CONNECTION\\\" > \\\"$HOST_DIR/via\\\"\"\n",
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    p.run(&["run", "site.toml", "-i", "inventory.toml", "-F", &config])
        .code(0);
    // The play targets host2 only: host1 saw a login only because it was the jump host.
    assert!(fleet.host(1).state_dir.join("via").exists());
    assert_eq!(fleet.sshd_log(0).matches("Accepted publickey").count(), 1);
}

#[test]
fn become_runs_through_sudo() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "as nobody"
command = "id -un"
become = true
become_user = "nobody"
register = "who"
[[plays.tasks]]
name = "record"
command = "echo {{ who.stdout }} > {{ host_dir }}/who"
"#,
    );
    run(&p, &fleet, &[]).code(0);
    assert_eq!(read(&fleet.host(0).state_dir.join("who")), "nobody\n");
}

#[test]
fn a_dropped_connection_marks_the_host_unreachable_and_the_run_goes_on() {
    let fleet = Fleet::start(2);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "drop"
# On host2, kill the sshd process serving this connection (the login shell's parent).
command = "if [ \"$NODE_NAME\" = host2 ]; then kill -9 $PPID; sleep 5; fi"
changed_when = "false"
[[plays.tasks]]
name = "after"
command = "touch \"$HOST_DIR/after\""
"#,
    );
    let out = run(&p, &fleet, &[]);
    out.code(2);
    assert!(
        out.line("host2", "drop")
            .starts_with("unreachable (connection to host2"),
        "{}",
        out.stdout
    );
    assert!(out.recap("host2").contains("unreachable=1"));
    assert!(
        fleet.host(0).state_dir.join("after").exists(),
        "host1 goes on"
    );
    assert!(!fleet.host(1).state_dir.join("after").exists());
}

#[test]
fn ctrl_c_stops_work_in_flight_and_starts_nothing_new() {
    use std::process::{Command, Stdio};
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "in flight"
command = "touch \"$HOST_DIR/started\"; sleep 20; touch \"$HOST_DIR/finished\""
[[plays.tasks]]
name = "next"
command = "touch \"$HOST_DIR/next\""
"#,
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let child = Command::new(crate::support::capstan::binary())
        .args(["run", "site.toml", "-i", "inventory.toml", "-F", &config])
        .current_dir(p.dir.path())
        .env("CI", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !fleet.host(0).state_dir.join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the task never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(15),
        "the running command got TERM instead of being waited for"
    );
    assert!(
        stderr.contains("interrupt: stopping: no new task starts"),
        "acknowledged at once: {stderr}"
    );
    assert!(
        !fleet.host(0).state_dir.join("finished").exists(),
        "the in-flight command was stopped"
    );
    assert!(
        !fleet.host(0).state_dir.join("next").exists(),
        "nothing new starts"
    );
    assert!(
        stdout.contains("interrupted: no new work was started"),
        "{stdout}"
    );
    assert!(stdout.contains("RECAP"), "{stdout}");
}
