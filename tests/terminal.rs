//! Human output on a real terminal: capstan under a pseudo-terminal made by util-linux
//! `script`, as an operator sees it. Colour is on by default and off with `NO_COLOR` or
//! `--color never`; every line printed above the live view ends with a newline and carries
//! no padding to the terminal's width; the bar counts host × task units.

use std::process::Command;

use crate::support::capstan::{Project, binary};

/// Two hosts on this machine, a play with a change, a skip and a slow task, so that the
/// live view is drawn while lines are printed above it. Every run says `--no-cache`, so
/// that each one runs the commands again.
fn project() -> Project {
    let p = Project::new();
    p.local_inventory(&["a", "b"], "", "");
    p.file(
        "site.toml",
        r#"
name = "terminal"

[[plays]]
name = "look"
hosts = "all"

[[plays.tasks]]
name = "first"
command = "echo one; sleep 0.4"

[[plays.tasks]]
name = "never"
command = "echo no"
when = "false"

[[plays.tasks]]
name = "second"
command = "sleep 0.4; echo two"
"#,
    );
    p
}

/// What capstan wrote to the pseudo-terminal (the terminal turns `\n` into `\r\n`).
fn on_terminal(p: &Project, args: &str, env: &[(&str, &str)]) -> String {
    let capstan = binary().display().to_string();
    let mut cmd = Command::new("script");
    cmd.args(["-qfec"])
        .arg(format!(
            "stty cols 100 rows 40; {capstan} run site.toml -i inventories/local.toml --no-cache {args}"
        ))
        .arg("/dev/null")
        .current_dir(p.dir.path())
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("SSH_AUTH_SOCK")
        .env("CAPSTAN_LOCK_DIR", p.path(".host-lock"))
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script runs");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown:?}");
    shown
}

/// The SGR sequences (`ESC [ … m`: colours, bold, reset) in `text`.
fn sgr(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("\x1b[") {
        let after = &rest[at + 2..];
        let params = after
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(after.len());
        if after[params..].starts_with('m') {
            found.push(format!("\\x1b[{}m", &after[..params]));
        }
        rest = after;
    }
    found
}

/// `text` without SGR sequences.
fn unpainted(text: &str) -> String {
    let mut out = text.to_owned();
    for code in sgr(text) {
        out = out.replace(&code.replace("\\x1b", "\x1b"), "");
    }
    out
}

/// Each line capstan printed above the live view is followed directly by the terminal's
/// newline (`\r\n`), with nothing after its last visible character: no padding, no bar.
#[track_caller]
fn printed_as_lines(shown: &str) {
    let plain = unpainted(shown);
    for expected in [
        "a | first | changed",
        "b | first | changed",
        "a | never | skipped (when: false)",
        "a | second | changed",
        "RECAP",
    ] {
        let at = plain
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} not shown in {plain:?}"));
        let after = &plain[at + expected.len()..];
        assert!(
            after.starts_with("\r\n"),
            "{expected:?} is followed by {:?}, not a newline",
            &after[..after.len().min(40)]
        );
    }
    assert!(
        plain.ends_with("\r\n"),
        "the output ends mid-line: {plain:?}"
    );
    // No line ends in blanks: neither a line of ours nor what the bar left behind.
    for line in plain.split('\n') {
        let line = line.trim_end_matches('\r');
        assert!(!line.ends_with(' '), "padded line {line:?} in {plain:?}");
    }
}

#[test]
fn a_terminal_gets_colour_and_clean_lines_under_the_live_view() {
    let p = project();
    let shown = on_terminal(&p, "", &[]);
    // The live view was drawn (line erase), counting host × task units.
    assert!(shown.contains("\x1b[2K"), "not the live view: {shown:?}");
    assert!(
        unpainted(&shown).contains("/6 host-tasks"),
        "the bar counts host-tasks: {shown:?}"
    );
    // Status words and the recap are painted.
    assert!(shown.contains("\x1b[33mchanged\x1b[0m"), "{shown:?}");
    assert!(shown.contains("\x1b[36mskipped\x1b[0m"), "{shown:?}");
    assert!(shown.contains("\x1b[1mRECAP\x1b[0m"), "{shown:?}");
    assert!(shown.contains("\x1b[33mchanged=2\x1b[0m"), "{shown:?}");
    printed_as_lines(&shown);
}

#[test]
fn no_color_and_color_never_print_no_colour_on_a_terminal() {
    let p = project();
    for (args, env) in [
        ("--color never", vec![]),
        ("--color never", vec![("CLICOLOR_FORCE", "1")]),
        ("", vec![("NO_COLOR", "1")]),
    ] {
        let shown = on_terminal(&p, args, &env);
        assert!(shown.contains("a | first | changed"), "{shown:?}");
        assert_eq!(
            sgr(&shown),
            Vec::<String>::new(),
            "{args} {env:?}: {shown:?}"
        );
        printed_as_lines(&shown);
    }
    // The flag wins over NO_COLOR.
    let shown = on_terminal(&p, "--color always", &[("NO_COLOR", "1")]);
    assert!(shown.contains("\x1b[33mchanged\x1b[0m"), "{shown:?}");
}

/// Off a terminal (a pipe) and in CI there is no colour unless `CLICOLOR_FORCE` asks.
#[test]
fn a_pipe_is_plain_unless_colour_is_forced() {
    let p = project();
    let run = |env: &[(&str, &str)]| {
        let out = p.run_env(
            &[
                "run",
                "site.toml",
                "-i",
                "inventories/local.toml",
                "--no-cache",
            ],
            env,
        );
        out.code(0);
        out.stdout
    };
    let plain = run(&[]);
    assert_eq!(sgr(&plain), Vec::<String>::new(), "{plain:?}");
    assert!(plain.contains(" a | first | changed\n"), "{plain:?}");
    let forced = run(&[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.contains(" a | first | \x1b[33mchanged\x1b[0m\n"),
        "{forced:?}"
    );
    let zero = run(&[("CLICOLOR_FORCE", "0")]);
    assert_eq!(sgr(&zero), Vec::<String>::new(), "{zero:?}");
}

/// `-vv` adds each task's rendered command and how long it took; `-v` does not.
#[test]
fn double_verbose_shows_the_rendered_command_and_its_duration() {
    let p = project();
    let run = |v: &str| {
        let out = p.run(&[
            "run",
            "site.toml",
            "-i",
            "inventories/local.toml",
            "--no-cache",
            v,
        ]);
        out.code(0);
        out.stdout
    };
    let vv = run("-vv");
    let mut after = vv
        .lines()
        .skip_while(|l| !l.ends_with(" a | second | changed"));
    after.next();
    assert_eq!(
        after.next(),
        Some("    command: sleep 0.4; echo two"),
        "{vv}"
    );
    let took = after.next().unwrap_or_default();
    let ms: f64 = took
        .strip_prefix("    took ")
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no duration under the task: {took:?} in {vv}"));
    assert!(ms >= 400.0, "{took}");
    let v = run("-v");
    assert!(!v.contains("    command: "), "{v}");
    assert!(!v.contains("    took "), "{v}");
    assert!(v.contains("    stdout: two"), "{v}");
}
