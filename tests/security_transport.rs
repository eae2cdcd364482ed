//! Attacks on the transport and on file installs, each against the real `capstan` binary over
//! real sshd (and the local connection): secrets on the process list, a step orphaned by a
//! killed controller, output floods, planted symlinks, and known_hosts that is not a file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::capstan::{Outcome, Project, binary, finish, wait_for};
use crate::support::fleet::{Fleet, project, run, run_site};

/// `nobody`: the unprivileged user who plants links where root deploys.
const NOBODY: u32 = 65534;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

/// Every process's arguments, as `ps -eo args` shows them to any user of the machine.
fn process_list() -> String {
    run(Command::new("ps").args(["-eo", "args", "--no-headers"]))
}

/// Samples the process list every 20 ms until `done` holds; returns every sample joined.
fn watch_process_list(mut done: impl FnMut() -> bool) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "the run never ended");
        seen.push_str(&process_list());
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

const PS_PLAYBOOK: &str = r#"
[[plays]]
hosts = "all"

[[plays.tasks]]
name = "config"
template = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf" }

[[plays.tasks]]
name = "use the token"
command = "sleep 2; echo token={{ api_token }} > \"{{ host_dir }}/used\""
"#;

/// While the step runs, the host's process list (this machine's: the hosts are local
/// daemons) holds neither the secret of the command nor the template's content; only the
/// fixed bootstrap, which is seen, so the samples were taken while the step ran.
fn assert_not_on_the_process_list(p: &Project, args: &[&str], host_dir: &Path, token: &str) {
    let content_marker = unique("template-content");
    p.file(
        "templates/app.conf.j2",
        &format!("marker = {content_marker}\ntoken = {{{{ api_token }}}}\n"),
    );
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(p.dir.path())
        .env("CI", "1")
        .env("CAPSTAN_PS_TOKEN", token)
        .env("CAPSTAN_LOCK_DIR", p.path(".host-lock"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("capstan starts");
    let seen = watch_process_list(|| matches!(child.try_wait(), Ok(Some(_))));
    let out = finish(child);
    out.code(0);
    assert_eq!(
        std::fs::read_to_string(host_dir.join("used")).expect("the step ran"),
        format!("token={token}\n")
    );
    assert!(
        std::fs::read_to_string(host_dir.join("app.conf"))
            .expect("the template was written")
            .contains(&content_marker)
    );
    assert!(
        seen.contains("__cs_n"),
        "the samples never caught the step running"
    );
    assert!(!seen.contains(token), "the secret was on the process list");
    assert!(
        !seen.contains(&content_marker),
        "template content was on the process list"
    );
    assert!(
        !seen.contains("echo token="),
        "the command was on the process list"
    );
}

#[test]
fn a_secret_in_a_command_or_template_is_not_on_the_hosts_process_list() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "[vars]\napi_token = { env = \"CAPSTAN_PS_TOKEN\" }\n",
        PS_PLAYBOOK,
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    assert_not_on_the_process_list(
        &p,
        &["run", "site.toml", "-i", "inventory.toml", "-F", &config],
        &fleet.host(0).state_dir,
        &unique("ssh-token"),
    );
}

#[test]
fn a_secret_in_a_command_or_template_is_not_on_the_controllers_process_list() {
    let p = Project::new();
    p.local_inventory(&["web-1"], "api_token = { env = \"CAPSTAN_PS_TOKEN\" }", "");
    p.file(
        "site.toml",
        &PS_PLAYBOOK.replace("{{ host_dir }}", "{{ host_dir }}/web-1"),
    );
    std::fs::create_dir_all(p.path("hosts/web-1")).expect("mkdir");
    assert_not_on_the_process_list(
        &p,
        &["run", "site.toml", "-i", "inventories/local.toml"],
        &p.path("hosts/web-1"),
        &unique("local-token"),
    );
}

#[test]
fn a_10_mib_template_deploys() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "big"
template = { src = "big.j2", dest = "{{ host_dir }}/big.conf" }
"#,
    );
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let content = line.repeat(10 * 1024 * 1024 / line.len() + 1);
    assert!(content.len() > 10 * 1024 * 1024);
    p.file("templates/big.j2", &content);
    let out = run_site(&p, &fleet, &[]);
    out.code(0);
    let written = std::fs::read(fleet.host(0).state_dir.join("big.conf")).expect("written");
    assert!(
        written == content.as_bytes(),
        "the 10 MiB file arrived whole"
    );
    // Deployed again: up to date, and the same size on the wire is read and skipped.
    let again = run_site(&p, &fleet, &[]);
    again.code(0);
    assert!(
        again.line("host1", "big").starts_with("ok"),
        "{}",
        again.stdout
    );
}

/// A 10 s step guarded by `creates` that logs its start and its end (also when TERMed).
const GUARDED_SLOW_STEP: &str = r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "slow"
command = "trap 'trap \"\" TERM; echo end $(date +%s.%N) term >> \"{{ dir }}/steps.log\"; exit 143' TERM; echo start $(date +%s.%N) >> \"{{ dir }}/steps.log\"; sleep 10 & wait; echo end $(date +%s.%N) done >> \"{{ dir }}/steps.log\"; touch \"{{ dir }}/done\""
creates = "{{ dir }}/done"
"#;

/// `(kind, time)` of each line of the step log.
fn step_log(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            let kind = f.next().unwrap_or_default().to_owned();
            let at = f.next().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN);
            (kind, at)
        })
        .collect()
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Starts the run, kills capstan with SIGKILL 2 s into the step, then runs again at once (the
/// dead run's lock is taken over, as its holder died on this machine). The orphaned step is
/// gone within a second of its session closing, and the log shows start, end, start, end:
/// never two steps at once; the guarded step completed once.
fn kill_9_then_rerun(p: &Project, args: &[&str], dir: &Path) {
    let log = dir.join("steps.log");
    let child = p.spawn(args);
    wait_for(60, "the step to start", || !step_log(&log).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    let killed_at = now_secs();
    let _ = finish(child);
    let rerun = p.run(args);
    rerun.code(0);
    assert!(
        rerun
            .stdout
            .contains("took over the lock of a run that died on this machine"),
        "{}",
        rerun.stdout
    );
    let entries = step_log(&log);
    let kinds: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["start", "end", "start", "end"],
        "{entries:?}\n{}",
        rerun.all()
    );
    let (orphan_end, rerun_start) = (entries[1].1, entries[2].1);
    assert!(
        orphan_end <= rerun_start,
        "the orphan ran beside its twin: {entries:?}"
    );
    assert!(
        orphan_end - killed_at < 1.5,
        "the orphan outlived its session by {:.2} s",
        orphan_end - killed_at
    );
    assert!(dir.join("done").exists());
}

#[test]
fn a_step_orphaned_by_kill_9_of_capstan_dies_with_its_ssh_session() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        &GUARDED_SLOW_STEP.replace("{{ dir }}", "{{ host_dir }}"),
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    kill_9_then_rerun(
        &p,
        &["run", "site.toml", "-i", "inventory.toml", "-F", &config],
        &fleet.host(0).state_dir,
    );
}

#[test]
fn a_step_orphaned_by_kill_9_of_capstan_dies_on_the_local_connection() {
    let p = Project::new();
    p.local_inventory(&["web-1"], "", "");
    let dir = p.path("hosts");
    std::fs::create_dir_all(&dir).expect("mkdir");
    p.file(
        "site.toml",
        &GUARDED_SLOW_STEP.replace("{{ dir }}", &dir.display().to_string()),
    );
    kill_9_then_rerun(
        &p,
        &["run", "site.toml", "-i", "inventories/local.toml"],
        &dir,
    );
}

/// Runs `cmd`, returning its outcome and its peak resident memory in KiB (`ru_maxrss` of
/// `wait4(2)`, for this child alone).
#[allow(clippy::zombie_processes)] // reaped by `wait4` below, which also gives its rusage
fn run_measured(cmd: &mut Command) -> (Outcome, u64) {
    use std::io::Read as _;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let pid = i32::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: plain libc calls on our own child and on zeroed out-parameters of the right type.
    let usage = unsafe {
        let mut usage: nix::libc::rusage = std::mem::zeroed();
        let waited = nix::libc::wait4(pid, &mut status, 0, &mut usage);
        assert_eq!(waited, pid, "wait4");
        usage
    };
    let code = if nix::libc::WIFEXITED(status) {
        nix::libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let outcome = Outcome {
        code,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    (outcome, u64::try_from(usage.ru_maxrss).unwrap_or(u64::MAX))
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Runs a task that prints 200 MB, checks what was kept, and returns capstan's peak RSS.
fn flood() -> u64 {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "flood"
command = "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 200000000"
register = "flood"
[[plays.tasks]]
name = "after"
command = "echo {{ flood.stdout | length }}"
"#,
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let (out, max_rss_kib) = run_measured(
        Command::new(binary())
            .args([
                "run",
                "site.toml",
                "-i",
                "inventory.toml",
                "-F",
                &config,
                "-v",
            ])
            .current_dir(p.dir.path())
            .env("CI", "1")
            .env_remove("SSH_AUTH_SOCK"),
    );
    out.code(0);
    eprintln!("capstan's peak RSS with a 200 MB task: {max_rss_kib} KiB");
    assert!(
        out.stdout.contains("… 190 MiB more not kept"),
        "{}",
        &out.stdout[..out.stdout.len().min(4000)]
    );
    // What `register` kept is the capped output: 1 MiB (16384 whole 64-byte lines), then
    // the note on a line of its own.
    let kept = 1024 * 1024 + "… 190 MiB more not kept".chars().count();
    assert!(
        out.stdout.contains(&format!("stdout: {kept}\n")),
        "registered stdout is not {kept} characters long: {}",
        &out.stdout[out.stdout.len().saturating_sub(600)..]
    );
    assert!(
        dir_size(&p.path(".capstan")) < 8 * 1024 * 1024,
        "the cache holds the capped output only"
    );
    max_rss_kib
}

#[test]
fn a_task_printing_200_mb_keeps_1_mib_and_says_how_much_was_dropped() {
    flood();
}

/// Memory is measured, not asserted under a loaded test run (a starved reader lets the
/// SSH window fill): run alone with `cargo test -- --ignored printing_200_mb`.
#[test]
#[ignore = "a measurement: run alone; the number is in BENCHMARKS.md"]
fn a_task_printing_200_mb_keeps_the_controller_under_50_mb() {
    let max_rss_kib = flood();
    assert!(
        max_rss_kib < 50 * 1024,
        "peak RSS {max_rss_kib} KiB for a 200 MB task"
    );
}

/// Runs `args` as `nobody`, failing the test if it fails.
fn as_nobody(args: &[&str]) {
    run(Command::new("setpriv")
        .args([
            "--reuid",
            &NOBODY.to_string(),
            "--regid",
            &NOBODY.to_string(),
            "--clear-groups",
            "--",
        ])
        .args(args));
}

/// [`as_nobody`] with `input` on stdin.
fn as_nobody_with_stdin(args: &[&str], input: &str) {
    use std::io::Write as _;
    let mut child = Command::new("setpriv")
        .args([
            "--reuid",
            &NOBODY.to_string(),
            "--regid",
            &NOBODY.to_string(),
            "--clear-groups",
            "--",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("setpriv runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{input}\n").as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "planting failed");
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn symlinks_planted_by_a_non_root_user_never_redirect_roots_template_install() {
    let fleet = Fleet::start(1);
    // A directory the attacker owns and where root deploys a file, beside a root-only file.
    let area = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(area.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let www = area.path().join("www");
    std::fs::create_dir(&www).expect("mkdir");
    std::os::unix::fs::chown(&www, Some(NOBODY), Some(NOBODY)).expect("chown");
    // What the attacker wants root to overwrite and to make readable.
    let victim = area.path().join("shadow");
    std::fs::write(&victim, "root:the-hash:\n").expect("write");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let dest = www.join("app.conf");
    as_nobody(&["ln", "-s", &path_str(&victim), &path_str(&dest)]);
    // The temporary names the old install used (`dest.capstan-tmp.$$`), for likely PIDs.
    let max_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let own = std::process::id();
    let planted: Vec<String> = (own.saturating_sub(200)..(own + 2000).min(max_pid))
        .map(|pid| format!("{}.capstan-tmp.{pid}", path_str(&dest)))
        .collect();
    as_nobody_with_stdin(
        &[
            "sh",
            "-c",
            "while read -r n; do ln -s \"$1\" \"$n\" || exit 1; done",
            "_",
            &path_str(&victim),
        ],
        &planted.join("\n"),
    );

    let p = project(
        &fleet,
        "",
        &r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "config"
template = { src = "app.conf.j2", dest = "@DEST@", mode = "0644" }
"#
        .replace("@DEST@", &path_str(&dest)),
    );
    p.file("templates/app.conf.j2", "listen = 443\n");

    // The query does not read through the link: it says what it will do.
    let check = run_site(&p, &fleet, &["--check", "--diff"]);
    check.code(0);
    let said = format!(
        "dest is a symlink to {}; it will be replaced by a file",
        path_str(&victim)
    );
    assert!(check.stdout.contains(&said), "{}", check.stdout);
    assert!(!check.all().contains("the-hash"), "{}", check.all());

    let out = run_site(&p, &fleet, &[]);
    out.code(0);
    assert!(out.line("host1", "config").starts_with("changed"));
    // The link's target is untouched: content, mode and owner.
    let meta = std::fs::metadata(&victim).expect("victim");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "root:the-hash:\n"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    // dest is now root's own file, not the attacker's link.
    let dest_meta = std::fs::symlink_metadata(&dest).expect("dest");
    assert!(dest_meta.file_type().is_file());
    assert_eq!(dest_meta.uid(), 0);
    assert_eq!(dest_meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(
        std::fs::read_to_string(&dest).expect("read"),
        "listen = 443\n"
    );
    // Every planted link is still a link to the victim: none was written through or moved.
    for name in &planted {
        let target = std::fs::read_link(name).expect("still a link");
        assert_eq!(target, victim);
    }
}

const TOUCH: &str = r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "touch"
command = "touch \"{{ host_dir }}/ran\""
"#;

/// A fleet project whose inventory's known_hosts is `known_hosts`.
fn project_with_known_hosts(fleet: &Fleet, known_hosts: &Path) -> Project {
    let p = project(fleet, "", TOUCH);
    let inventory = fleet.inventory_toml().replace(
        &format!("{:?}", fleet.known_hosts().display().to_string()),
        &format!("{:?}", known_hosts.display().to_string()),
    );
    p.file("inventory.toml", &inventory);
    p
}

#[test]
fn a_known_hosts_fifo_directory_or_device_is_refused_for_every_host_without_blocking() {
    let fleet = Fleet::start(2);
    let fifo = fleet.dir().join("known_hosts.fifo");
    run(Command::new("mkfifo").arg(&fifo));
    let directory = fleet.dir().join("known_hosts.d");
    std::fs::create_dir(&directory).expect("mkdir");
    for (path, what) in [
        (fifo, "is a FIFO, not a file"),
        (directory, "is a directory, not a file"),
        (PathBuf::from("/dev/null"), "is a device, not a file"),
    ] {
        let p = project_with_known_hosts(&fleet, &path);
        let started = Instant::now();
        let out = run_site(&p, &fleet, &[]);
        out.code(3);
        assert!(started.elapsed() < Duration::from_secs(30), "it blocked");
        for host in ["host1", "host2"] {
            let line = format!(
                "cannot check the host key of `{host}`: known_hosts `{}` {what}",
                path.display()
            );
            assert!(out.all().contains(&line), "{line}\n{}", out.all());
        }
        for h in fleet.hosts() {
            assert!(!h.state_dir.join("ran").exists(), "something ran");
        }
    }
}

#[test]
fn a_latin1_byte_in_a_known_hosts_comment_is_accepted_as_openssh_does() {
    let fleet = Fleet::start(1);
    let mut bytes = b"# r\xe9seau de production (Latin-1)\n\xff\xfe stray bytes\n".to_vec();
    bytes.extend_from_slice(&std::fs::read(fleet.known_hosts()).expect("read"));
    let latin1 = fleet.dir().join("known_hosts.latin1");
    std::fs::write(&latin1, bytes).expect("write");
    let p = project_with_known_hosts(&fleet, &latin1);
    run_site(&p, &fleet, &[]).code(0);
    assert!(fleet.host(0).state_dir.join("ran").exists());
}
