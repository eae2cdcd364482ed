//! Ansible's command-line habits in capstan: every flag capstan takes from
//! `ansible-playbook`, and every message and hint for what Ansible has and capstan does not.
//! Hosts are this machine (`connection = "local"`) unless a test needs SSH.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::capstan::{Outcome, Project, binary};
use crate::support::fleet::{Fleet, project, run_site};

/// Three tasks over two plays; each command leaves `HOST.TASK` in `host_dir`.
const SITE: &str = r#"
[[plays]]
name = "base"
hosts = "web"
tags = ["base"]

[[plays.tasks]]
name = "first"
command = "touch {{ host_dir }}/{{ inventory_hostname }}.first"
tags = ["one"]

[[plays.tasks]]
name = "second"
command = "touch {{ host_dir }}/{{ inventory_hostname }}.second"
tags = ["two"]

[[plays]]
name = "db"
hosts = "db"

[[plays.tasks]]
name = "third"
command = "touch {{ host_dir }}/{{ inventory_hostname }}.third"
tags = ["three"]
"#;

/// `web-1`, `web-2` (group `web`) and `db-1` (group `db`) on this machine.
fn site() -> Project {
    let p = Project::new();
    let root = p.dir.path().display().to_string();
    p.file(
        "inventory.toml",
        &format!(
            "[defaults]\nconnection = \"local\"\n\n[vars]\nhost_dir = \"{root}/hosts\"\n\n\
             [settings]\nlock_dir = \"{root}/remote/lock\"\n\n\
             [hosts.web-1]\n[hosts.web-2]\n[hosts.db-1]\n\n\
             [groups.web]\nhosts = [\"web-1\", \"web-2\"]\n\n[groups.db]\nhosts = [\"db-1\"]\n"
        ),
    );
    std::fs::create_dir_all(p.path("hosts")).expect("mkdir hosts");
    p.file("site.toml", SITE);
    p
}

fn run(p: &Project, extra: &[&str]) -> Outcome {
    let mut args = vec!["run", "site.toml", "-i", "inventory.toml"];
    args.extend_from_slice(extra);
    p.run(&args)
}

/// Which `HOST.TASK` marks the run left, sorted.
fn done(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path("hosts"))
        .expect("hosts dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The error output without its trailing newline.
fn err(out: &Outcome) -> &str {
    out.stderr.trim_end()
}

#[test]
fn verbosity_counts_like_ansible() {
    let p = site();
    let out = run(&p, &["-vvv", "--no-cache"]);
    out.code(0);
    assert!(
        !out.stderr.contains("cannot be used multiple times"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("web-1 | connected in"),
        "-v shows connections:\n{}",
        out.stdout
    );
    for v in ["-v", "-vv", "--verbose"] {
        run(&p, &[v]).code(0);
    }
}

#[test]
fn three_vs_show_the_ssh_protocol_on_stderr() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\ntasks = [{ command = \"true\" }]\n",
    );
    let out = run_site(&p, &fleet, &["-vvv"]);
    out.code(0);
    assert!(out.stderr.contains("debug russh"), "{}", out.stderr);
    let quiet = run_site(&p, &fleet, &["-vv", "--no-cache"]);
    assert!(!quiet.stderr.contains("debug russh"), "{}", quiet.stderr);
}

#[test]
fn user_flag_overrides_the_inventory_user_on_every_host() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\ntasks = [{ command = \"true\" }]\n",
    );
    let out = run_site(&p, &fleet, &["-u", "capstan-no-such-user"]);
    out.code(2);
    assert!(
        out.recap("host1").contains("unreachable=1"),
        "{}",
        out.stdout
    );
    let log = fleet.sshd_log(0);
    assert!(
        log.contains("Invalid user capstan-no-such-user"),
        "sshd saw the user from -u:\n{log}"
    );
    // Without -u the inventory's user (root) logs in.
    run_site(&p, &fleet, &[]).code(0);
}

#[test]
fn ask_become_pass_without_a_terminal_is_a_clear_error() {
    let p = site();
    for flag in ["-K", "--ask-become-pass"] {
        let out = run(&p, &[flag]);
        out.code(3);
        assert_eq!(
            err(&out),
            "error: -K/--ask-become-pass asks on a terminal and there is none; without one, set \
             `become_password = { env = \"BECOME_PASSWORD\" }` under [defaults] in the inventory \
             and export BECOME_PASSWORD"
        );
    }
    assert!(done(&p).is_empty());
}

#[test]
fn list_hosts_tasks_and_tags_print_and_contact_nothing() {
    let p = site();
    // An address nobody answers on: listing must not try it.
    p.file(
        "far.toml",
        "[hosts.web-1]\naddress = \"192.0.2.1\"\n[hosts.db-1]\naddress = \"192.0.2.2\"\n\
         [groups.web]\nhosts = [\"web-1\"]\n[groups.db]\nhosts = [\"db-1\"]\n",
    );
    let out = p.run(&["run", "site.toml", "-i", "far.toml", "--list-hosts"]);
    out.code(0);
    assert_eq!(
        out.stdout,
        "\nplaybook: site.toml\n\n  play #1 (web): base\tTAGS: [base]\n    hosts (1):\n      web-1\n\n  \
         play #2 (db): db\tTAGS: []\n    hosts (1):\n      db-1\n"
    );
    let out = run(&p, &["--list-tasks", "-t", "two,three"]);
    out.code(0);
    assert_eq!(
        out.stdout,
        "\nplaybook: site.toml\n\n  play #1 (web): base\tTAGS: [base]\n    tasks:\n      second\tTAGS: [base, two]\n\n  \
         play #2 (db): db\tTAGS: []\n    tasks:\n      third\tTAGS: [three]\n"
    );
    let out = run(&p, &["--list-tags"]);
    out.code(0);
    assert_eq!(
        out.stdout,
        "\nplaybook: site.toml\n\n  play #1 (web): base\tTAGS: [base]\n    TASK TAGS: [base, one, two]\n\n  \
         play #2 (db): db\tTAGS: []\n    TASK TAGS: [three]\n"
    );
    assert!(done(&p).is_empty(), "nothing ran");
}

#[test]
fn start_at_task_skips_what_comes_before() {
    let p = site();
    let out = run(&p, &["--start-at-task", "secnd"]);
    out.code(3);
    assert_eq!(
        err(&out),
        "error: --start-at-task: the playbook has no task called \"secnd\"; did you mean \"second\"?"
    );
    assert!(done(&p).is_empty());
    run(&p, &["--start-at-task", "second"]).code(0);
    assert_eq!(
        done(&p),
        ["db-1.third", "web-1.second", "web-2.second"],
        "the first task did not run; the next play ran whole"
    );
}

#[test]
fn step_refuses_without_a_terminal() {
    let p = site();
    let out = run(&p, &["--step"]);
    out.code(3);
    assert_eq!(
        err(&out),
        "error: --step asks before each task and needs a terminal; without one, choose the tasks \
         with --tags, --skip-tags or --start-at-task"
    );
    assert!(done(&p).is_empty());
}

#[test]
fn step_asks_for_each_task_on_a_terminal() {
    let p = site();
    // `script` gives capstan a pseudo-terminal and feeds it our answers: no to "first",
    // yes to "second", then continue with the rest.
    let line = format!(
        "{} run site.toml -i inventory.toml --step",
        binary().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(p.dir.path())
        .env_remove("CI")
        .env("CAPSTAN_LOCK_DIR", p.path(".host-lock"))
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(b"n\ny\nc\n").expect("answers");
    }
    let out = child.wait_with_output().expect("script ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("perform task \"first\" (play \"base\")? (y)es/(N)o/(c)ontinue:"),
        "{text}"
    );
    assert_eq!(
        done(&p),
        ["db-1.third", "web-1.second", "web-2.second"],
        "{text}"
    );
}

#[test]
fn become_flag_makes_every_play_become() {
    let p = site();
    // sudo sets SUDO_USER for the command it runs; without become nothing does.
    p.file(
        "whoami.toml",
        "[[plays]]\nhosts = \"web-1\"\ntasks = [{ name = \"who\", command = \"echo ${SUDO_USER:-none} > {{ host_dir }}/via\" }]\n",
    );
    p.run(&["run", "whoami.toml", "-i", "inventory.toml"])
        .code(0);
    let via = || std::fs::read_to_string(p.path("hosts/via")).unwrap_or_default();
    assert_eq!(via().trim(), "none", "no sudo without -b");
    let out = p.run(&[
        "run",
        "whoami.toml",
        "-i",
        "inventory.toml",
        "-b",
        "--no-cache",
    ]);
    if which_sudo_works() {
        out.code(0);
        assert_ne!(
            via().trim(),
            "none",
            "-b ran it through sudo: {}",
            out.stdout
        );
    } else {
        // No passwordless sudo here: the run must at least have gone through sudo.
        assert!(out.all().contains("sudo"), "{}", out.all());
    }
}

fn which_sudo_works() -> bool {
    Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn syntax_check_is_validate() {
    let p = site();
    let out = run(&p, &["--syntax-check"]);
    out.code(0);
    assert_eq!(
        out.stdout,
        "ok: 1 playbook(s), 3 task(s), 3 host(s) checked\n"
    );
    assert!(done(&p).is_empty(), "nothing ran");
}

#[test]
fn unknown_tags_are_refused_before_anything_connects() {
    let p = site();
    let out = run(&p, &["-t", "tow"]);
    out.code(3);
    assert_eq!(
        err(&out),
        "error: --tags: the playbook has no tag \"tow\"; did you mean \"two\"?"
    );
    let out = run(&p, &["--skip-tags", "zzz"]);
    out.code(3);
    assert_eq!(
        err(&out),
        "error: --skip-tags: the playbook has no tag \"zzz\"; its tags are: base, one, three, two"
    );
    for special in ["all", "always", "never"] {
        run(&p, &["-t", special, "--check"]).code(0);
    }
    assert!(done(&p).is_empty());
}

#[test]
fn ansible_keys_say_what_to_use_instead() {
    let p = site();
    p.file(
        "ansible.toml",
        r#"[[plays]]
hosts = "web"
roles = ["common"]
handlers = []
gather_facts = false

[[plays.tasks]]
name = "t"
command = "true"
ignore_errors = true
delegate_to = "db-1"
check_mode = true
loop = [1, 2]
with_items = [1, 2]
notify = "restart"
become_method = "su"
include_tasks = "x.yml"

[[plays.tasks]]
name = "s"
shell = "echo hi | wc -l"
"#,
    );
    let out = p.run(&["validate", "-i", "inventory.toml", "ansible.toml"]);
    out.code(3);
    let expect = [
        (
            "unknown key \"roles\" in play #1: capstan has no roles and does not include task files",
            "write the tasks in the play",
        ),
        (
            "unknown key \"handlers\" in play #1: handlers are not supported yet",
            "when = \"conf.changed\"",
        ),
        (
            "unknown key \"gather_facts\" in play #1: capstan gathers no facts",
            "register",
        ),
        (
            "unknown key \"ignore_errors\" in task \"t\": capstan has no ignore_errors",
            "failed_when = \"false\"",
        ),
        (
            "unknown key \"delegate_to\" in task \"t\": capstan runs a task only on its play's hosts; delegation is not supported",
            "run_once = true",
        ),
        (
            "unknown key \"check_mode\" in task \"t\": capstan has no per-task check mode",
            "--check",
        ),
        (
            "unknown key \"loop\" in task \"t\": loops are not supported yet",
            "one task per item",
        ),
        (
            "unknown key \"with_items\" in task \"t\": loops are not supported yet",
            "for x in",
        ),
        (
            "unknown key \"notify\" in task \"t\": handlers are not supported yet",
            "register",
        ),
        (
            "unknown key \"become_method\" in task \"t\": capstan becomes another user with sudo only",
            "become = true",
        ),
        (
            "unknown key \"include_tasks\" in task \"t\": capstan has no roles and does not include task files",
            "playbook of their own",
        ),
        (
            "unknown key \"shell\" in task \"s\": capstan's action for this is \"command\"",
            "pipes, redirections and && work",
        ),
    ];
    for (message, hint) in expect {
        let at = out
            .stderr
            .find(message)
            .unwrap_or_else(|| panic!("no `{message}` in:\n{}", out.stderr));
        let hint_line = out.stderr[at..]
            .lines()
            .find(|l| l.trim_start().starts_with("= hint:"))
            .unwrap_or_default();
        assert!(hint_line.contains(hint), "{message}: hint `{hint_line}`");
    }
    // "Did you mean" never offers a key of another concept a few letters away.
    assert!(
        !out.stderr.contains("did you mean \"delay\""),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("did you mean \"check\""),
        "{}",
        out.stderr
    );
}

#[test]
fn typos_of_capstan_keys_still_get_did_you_mean() {
    let p = site();
    p.file(
        "typo.toml",
        "[[plays]]\nhosts = \"web\"\nserail = 1\n[[plays.tasks]]\ncommand = \"true\"\nchanged_wen = \"false\"\n",
    );
    let out = p.run(&["validate", "-i", "inventory.toml", "typo.toml"]);
    out.code(3);
    assert!(
        out.stderr
            .contains("unknown key \"serail\" in play #1; did you mean \"serial\"?"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "unknown key \"changed_wen\" in task #1 in play #1; did you mean \"changed_when\"?"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn unsupported_host_pattern_syntax_says_so() {
    let p = site();
    let out = run(&p, &["-l", "~web-[12]"]);
    out.code(3);
    assert!(
        out.stderr.starts_with(
            "error: host pattern \"~web-[12]\": regular expressions (`~...`) are not \
             supported; use a glob such as `node*` or `node[34]`, or a comma list of names\n  --> --limit"
        ),
        "{}",
        out.stderr
    );
    let out = run(&p, &["-l", "web[0]"]);
    out.code(3);
    assert!(
        out.stderr.starts_with(
            "error: host pattern \"web[0]\": group subscripts (`group[0]`, `group[0:2]`) are \
             not supported; name the hosts (`web-1,web-2`), or narrow the group with `&` or `!`"
        ),
        "{}",
        out.stderr
    );
    // A glob with brackets is still a glob.
    run(&p, &["-l", "web-[12]", "--check"]).code(0);
    assert!(done(&p).is_empty());
}

#[test]
fn extra_vars_files_name_their_format() {
    let p = site();
    p.file("vars.yml", "---\nhost_dir: /tmp/elsewhere\n");
    let out = run(&p, &["-e", "@vars.yml"]);
    out.code(3);
    assert!(
        out.stderr.contains("; extra-vars files are TOML, not YAML"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("= hint: extra-vars files are TOML: one `name = value` per line"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_filter_typo_gets_did_you_mean() {
    let p = site();
    p.file(
        "filter.toml",
        "[[plays]]\nhosts = \"web\"\ntasks = [{ command = \"echo {{ x | defualt('a') }}\" }]\n",
    );
    let out = p.run(&["validate", "-i", "inventory.toml", "filter.toml"]);
    out.code(3);
    assert!(
        out.stderr
            .contains("= hint: did you mean the filter \"default\"?"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_output_refusals_carry_their_message_and_runs_their_path() {
    let p = site();
    let out = run(&p, &["--output", "json", "-t", "tow"]);
    out.code(3);
    let last: serde_json::Value =
        serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).unwrap_or_default();
    assert_eq!(last["event"], "exit");
    assert_eq!(last["exit_code"], 3);
    assert_eq!(
        last["error"],
        "--tags: the playbook has no tag \"tow\"; did you mean \"two\"?"
    );
    let out = run(&p, &["--output", "json", "-t", "one"]);
    out.code(0);
    let first: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().unwrap_or_default()).unwrap_or_default();
    assert_eq!(first["event"], "run_started");
    assert_eq!(first["playbook"], "site.toml");
    assert_eq!(first["playbook_name"], "site");
}

#[test]
fn json_output_of_a_host_key_refusal_carries_its_message() {
    let mut fleet = Fleet::start(1);
    fleet.rotate_host_key(0);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\ntasks = [{ command = \"true\" }]\n",
    );
    let out = run_site(&p, &fleet, &["--output", "json"]);
    out.code(3);
    let last: serde_json::Value =
        serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).unwrap_or_default();
    assert_eq!(last["event"], "exit");
    assert_eq!(
        last["error"],
        "refused: 1 host key problem(s); nothing was run on any host"
    );
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    let p = Project::new();
    let bash = p.run(&["completions", "bash"]);
    bash.code(0);
    assert!(bash.stdout.contains("_capstan()"), "{}", bash.stdout);
    for word in ["exec", "--start-at-task", "--ask-become-pass"] {
        assert!(bash.stdout.contains(word), "bash completes {word}");
    }
    let script = p.file("capstan.bash", &bash.stdout);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let zsh = p.run(&["completions", "zsh"]);
    zsh.code(0);
    assert!(zsh.stdout.starts_with("#compdef capstan"), "{}", zsh.stdout);
    let fish = p.run(&["completions", "fish"]);
    fish.code(0);
    assert!(
        fish.stdout.contains("complete -c capstan"),
        "{}",
        fish.stdout
    );
    assert_eq!(
        p.run(&["completions", "tcsh"]).code,
        1,
        "an unknown shell is a usage error"
    );

    let man = p.run(&["man"]);
    man.code(0);
    assert!(man.stdout.contains(".TH capstan 1"), "{}", man.stdout);
    assert!(man.stdout.contains("exec"), "the manual lists exec");
    let page = p.file("capstan.1", &man.stdout);
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff runs");
    assert!(
        rendered.status.success() && rendered.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
}

#[test]
fn ansible_flags_capstan_does_not_take_say_what_to_use_instead() {
    let p = site();
    for (flag, instead) in [
        (
            "--become-method=su",
            "capstan becomes another user with sudo only",
        ),
        ("--ask-vault-pass", "capstan has no vault"),
        ("--private-key", "set identity_file"),
        ("--flush-cache", "--no-cache"),
    ] {
        let out = run(&p, &[flag]);
        out.code(1);
        let name = flag.split('=').next().unwrap_or(flag);
        assert!(
            out.stderr.contains(&format!(
                "note: `{name}` is Ansible's; capstan does not take it: {instead}"
            )),
            "{flag}:\n{}",
            out.stderr
        );
    }
    let out = p.run(&["exec", "all", "-i", "inventory.toml", "-a", "uptime"]);
    out.code(1);
    assert!(
        out.stderr.contains(
            "an ad-hoc command goes after `--`: capstan exec PATTERN -i INVENTORY -- COMMAND"
        ),
        "{}",
        out.stderr
    );
}
