//! The foundation end to end, through the real binary: the corpus of malformed inputs,
//! variable precedence, host patterns, shell quoting, secret masking, strict undefined
//! variables, help and exit codes. Every host is `connection = "local"`, so commands run on
//! this machine and no SSH daemon is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::capstan::{Outcome, Project, binary};

/// The repository root: the corpus `.expected` files give paths relative to it.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `capstan ARGS` in the repository root with `CI=1`.
fn in_repo(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(repo())
        .env("CI", "1")
        .env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("capstan runs");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch project whose inventory is `inventory` with `@OUT@` replaced by the path of
/// its (already created) `out/` directory, where tasks write what they rendered.
fn local_project(inventory: &str, playbook: &str) -> Project {
    let p = Project::new();
    let out = p.path("out");
    std::fs::create_dir_all(&out).expect("mkdir out");
    let out = out.to_string_lossy().into_owned();
    p.file("inventory.toml", &inventory.replace("@OUT@", &out));
    p.file("site.toml", playbook);
    p
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TOML basic string holding exactly `s`.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The hosts in the RECAP, in the order shown (inventory order).
fn recap_hosts(out: &Outcome) -> Vec<String> {
    out.stdout
        .split("RECAP\n")
        .nth(1)
        .map(|recap| {
            recap
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

#[track_caller]
fn assert_no_panic(out: &Outcome) {
    assert!(
        !out.stderr.contains("panicked"),
        "capstan panicked:\n{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------
// The corpus of malformed inputs
// ---------------------------------------------------------------------------------------

/// `tests/corpus/KIND/*.toml`, sorted, as paths relative to the repository root.
fn corpus(kind: &str) -> Vec<PathBuf> {
    let rel = Path::new("tests/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(&rel))
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", rel.display()))
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.ends_with(".toml"))
        .map(|name| rel.join(name))
        .collect();
    files.sort();
    files
}

/// Validates every corpus file of `kind` with `args(file)`; each must exit 3 without a
/// panic, printing every line of its `.expected` file.
fn check_corpus(kind: &str, args: impl Fn(&str) -> Vec<String>) -> usize {
    let files = corpus(kind);
    let mut failures = Vec::new();
    for file in &files {
        let expected = read(&repo().join(file.with_extension("expected")));
        let file = file.to_string_lossy();
        let args = args(&file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // `empty_env_secret` needs its variable set and empty; the `missing_*` ones unset.
        let out = in_repo(&args, &[("CAPSTAN_CORPUS_EMPTY", "")]);
        let stderr_lines: Vec<&str> = out.stderr.lines().collect();
        let missing: Vec<&str> = expected
            .lines()
            .filter(|l| !l.is_empty() && !stderr_lines.contains(l))
            .collect();
        if out.code != 3 || out.stderr.contains("panicked") || !missing.is_empty() {
            failures.push(format!(
                "{file}: exit {} (want 3); missing lines {missing:?}\n--- stderr\n{}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    files.len()
}

#[test]
fn malformed_inventories_are_refused_by_validate() {
    let n = check_corpus("inventory", |file| {
        ["validate", "-i", file, "playbooks/site.toml"]
            .map(str::to_owned)
            .to_vec()
    });
    assert!(n >= 30, "only {n} malformed inventories");
}

#[test]
fn malformed_playbooks_are_refused_by_validate() {
    let n = check_corpus("playbook", |file| {
        ["validate", "-i", "inventories/local.toml", file]
            .map(str::to_owned)
            .to_vec()
    });
    assert!(n >= 40, "only {n} malformed playbooks");
}

#[test]
fn the_shipped_local_inventory_and_playbook_validate() {
    // The shipped template lives in `templates/` beside `playbooks/`: found without a flag.
    let out = in_repo(
        &[
            "validate",
            "-i",
            "inventories/local.toml",
            "playbooks/site.toml",
        ],
        &[],
    );
    out.code(0);
    assert_contains(
        &out.stdout,
        "ok: 1 playbook(s), 4 task(s), 1 host(s) checked",
    );
}

// ---------------------------------------------------------------------------------------
// Variable precedence
// ---------------------------------------------------------------------------------------

/// Every level sets the variables named after it and those of every level above it, so
/// each `at_LEVEL` must come from LEVEL. Groups are written out of name order on purpose.
const PRECEDENCE_INVENTORY: &str = r#"
[defaults]
connection = "local"

[vars]
host_dir = "@OUT@"
host_address = "from [vars]"
port = 443
at_inventory = "inventory"
at_parent = "inventory"
at_child = "inventory"
at_host = "inventory"
at_play = "inventory"
at_extra = "inventory"
at_file = "inventory"
late = "inventory"

[hosts.h1]
vars = { at_host = "host", at_play = "host", at_extra = "host", at_file = "host", late = "host" }

[hosts.h2]

[groups.zeta]
hosts = ["h1"]
vars = { at_child = "zeta (depth 1, last by name)", sibling = "zeta" }

[groups.beta]
hosts = ["h1"]
vars = { sibling_ab = "beta" }

[groups.alpha]
hosts = ["h1"]
vars = { sibling_ab = "alpha" }

[groups.parent]
children = ["child"]
vars = { at_parent = "parent", at_child = "parent", at_host = "parent", at_play = "parent", at_extra = "parent", at_file = "parent" }

[groups.child]
hosts = ["h1"]
vars = { at_child = "child", at_host = "child", at_play = "child", at_extra = "child", at_file = "child" }
"#;

/// (file name, expression) pairs that the precedence playbook writes, one task each.
const PRECEDENCE_EXPRESSIONS: &[(&str, &str)] = &[
    ("inventory_hostname", "inventory_hostname"),
    ("host_address", "host_address"),
    ("group_names", "group_names | join(',')"),
    ("at_inventory", "at_inventory"),
    ("at_parent", "at_parent"),
    ("at_child", "at_child"),
    ("sibling_ab", "sibling_ab | default('unset')"),
    ("at_host", "at_host"),
    ("at_play", "at_play"),
    ("from_lower", "from_lower"),
    ("at_extra", "at_extra"),
    ("at_file", "at_file"),
    ("late", "late"),
    ("n_plus_1", "n + 1"),
    ("answer", "answer"),
    ("version", "version"),
    ("flag", "'on' if flag else 'off'"),
    ("list_length", "list | length"),
    ("port_plus_1", "port + 1"),
];

fn precedence_playbook() -> String {
    let mut pb = String::from(
        r#"name = "precedence"

[[plays]]
hosts = "all"
vars = { at_play = "play", at_extra = "play", at_file = "play", late = "play", from_lower = "{{ at_host }}+play" }
"#,
    );
    for (file, expr) in PRECEDENCE_EXPRESSIONS {
        pb.push_str(&format!(
            "\n[[plays.tasks]]\nname = \"{file}\"\ncommand = \"printf %s {{{{ {expr} }}}} > {{{{ host_dir }}}}/{{{{ inventory_hostname }}}}.{file}\"\n"
        ));
    }
    pb
}

#[test]
fn variables_take_each_level_in_precedence_order() {
    let p = local_project(PRECEDENCE_INVENTORY, &precedence_playbook());
    p.file("extra.toml", "at_file = \"file\"\nlate = \"file\"\n");
    let out = p.run(&[
        "run",
        "site.toml",
        "-i",
        "inventory.toml",
        "-e",
        "at_extra=extra",
        "-e",
        "at_file=extra",
        "-e",
        "@extra.toml",
        "-e",
        "late=pair after the file",
        "-e",
        "n=3",
        "-e",
        "answer=NO",
        "-e",
        "version=2.7.1",
        "-e",
        "flag=false",
        "-e",
        "list=[1, 2]",
    ]);
    out.code(0);
    let value = |host: &str, name: &str| read(&p.path(&format!("out/{host}.{name}")));
    let want_h1 = [
        ("inventory_hostname", "h1"),
        ("host_address", "from [vars]"),
        ("group_names", "alpha,beta,parent,zeta,child"),
        ("at_inventory", "inventory"),
        ("at_parent", "parent"),
        ("at_child", "child"),
        ("sibling_ab", "beta"),
        ("at_host", "host"),
        ("at_play", "play"),
        ("from_lower", "host+play"),
        ("at_extra", "extra"),
        ("at_file", "file"),
        ("late", "pair after the file"),
        ("n_plus_1", "4"),
        ("answer", "NO"),
        ("version", "2.7.1"),
        ("flag", "off"),
        ("list_length", "2"),
        ("port_plus_1", "444"),
    ];
    for (name, want) in want_h1 {
        assert_eq!(value("h1", name), want, "h1: {name}");
    }
    // h2 is in no group: group variables must not leak to it.
    let want_h2 = [
        ("inventory_hostname", "h2"),
        ("group_names", ""),
        ("at_parent", "inventory"),
        ("at_child", "inventory"),
        ("sibling_ab", "unset"),
        ("at_host", "inventory"),
        ("at_play", "play"),
        ("from_lower", "inventory+play"),
        ("at_extra", "extra"),
        ("at_file", "file"),
        ("late", "pair after the file"),
    ];
    for (name, want) in want_h2 {
        assert_eq!(value("h2", name), want, "h2: {name}");
    }
}

#[test]
fn the_magic_host_address_is_the_name_unless_overridden() {
    let p = local_project(
        "[defaults]\nconnection = \"local\"\n[vars]\nhost_dir = \"@OUT@\"\n\
         [hosts.plain]\n[hosts.addressed]\naddress = \"127.0.0.1\"\n",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\n\
         command = \"printf %s {{ host_address }} > {{ host_dir }}/{{ inventory_hostname }}\"\n",
    );
    p.run(&["run", "site.toml", "-i", "inventory.toml"]).code(0);
    assert_eq!(read(&p.path("out/plain")), "plain");
    assert_eq!(read(&p.path("out/addressed")), "127.0.0.1");
}

// ---------------------------------------------------------------------------------------
// Host patterns
// ---------------------------------------------------------------------------------------

const PATTERN_INVENTORY: &str = r#"
[defaults]
connection = "local"

[hosts.web1]
[hosts.web2]
[hosts.db1]
[hosts.db2]
[hosts.cache1]

[groups.web]
hosts = ["web1", "web2"]

[groups.db]
hosts = ["db1", "db2"]

[groups.site]
children = ["web", "db"]

[groups.prod]
hosts = ["web1", "db1"]
"#;

fn pattern_playbook(hosts: &str) -> String {
    format!(
        "[[plays]]\nname = \"p\"\nhosts = {}\n[[plays.tasks]]\nname = \"noop\"\ncommand = \"true\"\nchanged_when = \"false\"\n",
        toml_string(hosts)
    )
}

#[test]
fn limit_selects_names_groups_globs_and_set_operations() {
    let p = local_project(PATTERN_INVENTORY, &pattern_playbook("all"));
    let cases: &[(&str, &[&str])] = &[
        ("web1", &["web1"]),
        ("web", &["web1", "web2"]),
        ("site", &["web1", "web2", "db1", "db2"]),
        ("web*", &["web1", "web2"]),
        ("*1", &["web1", "db1", "cache1"]),
        ("db?", &["db1", "db2"]),
        ("all", &["web1", "web2", "db1", "db2", "cache1"]),
        ("*", &["web1", "web2", "db1", "db2", "cache1"]),
        ("ungrouped", &["cache1"]),
        ("web1,db2", &["web1", "db2"]),
        ("db2, web1,", &["web1", "db2"]),
        ("web,!web2", &["web1"]),
        ("web:!web2", &["web1"]),
        ("!web", &["db1", "db2", "cache1"]),
        ("site,&prod", &["web1", "db1"]),
        ("site:&prod:!db1", &["web1"]),
        ("&db,!db2", &["db1"]),
        ("web,&db", &[]),
    ];
    for (limit, want) in cases {
        let out = p.run(&["run", "site.toml", "-i", "inventory.toml", "-l", limit]);
        if want.is_empty() {
            // Nothing matched is a refusal before anything connects, never a silent success.
            out.code(3);
            assert!(
                out.stderr
                    .contains(&format!("--limit \"{limit}\" leaves no host to run on")),
                "{}",
                out.stderr
            );
            continue;
        }
        out.code(0);
        assert_eq!(
            recap_hosts(&out),
            *want,
            "--limit {limit:?}\n{}",
            out.stdout
        );
    }
}

#[test]
fn play_hosts_take_patterns_and_intersect_with_limit() {
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("web:!web2", None, &["web1"]),
        ("prod,&db", None, &["db1"]),
        ("site", Some("prod"), &["web1", "db1"]),
        ("db", Some("web"), &[]),
        ("c*", None, &["cache1"]),
    ];
    for (hosts, limit, want) in cases {
        let p = local_project(PATTERN_INVENTORY, &pattern_playbook(hosts));
        let mut args = vec!["run", "site.toml", "-i", "inventory.toml"];
        if let Some(l) = limit {
            args.extend(["--limit", l]);
        }
        let out = p.run(&args);
        if want.is_empty() {
            out.code(3);
            assert!(
                out.stderr.contains("leaves no host to run on"),
                "{}",
                out.stderr
            );
            continue;
        }
        out.code(0);
        assert_eq!(
            recap_hosts(&out),
            *want,
            "hosts = {hosts:?}, --limit {limit:?}\n{}",
            out.stdout
        );
    }
}

#[test]
fn unknown_names_in_patterns_are_refused_with_a_suggestion() {
    let p = local_project(PATTERN_INVENTORY, &pattern_playbook("all"));
    for command in ["run", "validate"] {
        let out = p.run(&[command, "site.toml", "-i", "inventory.toml", "-l", "wbe1"]);
        out.code(3);
        assert_contains(
            &out.stderr,
            "error: unknown host or group \"wbe1\"; did you mean \"web1\"?",
        );
        assert_contains(&out.stderr, "--> --limit");
    }
    let out = p.run(&["run", "site.toml", "-i", "inventory.toml", "-l", "web,!dbb"]);
    out.code(3);
    assert_contains(
        &out.stderr,
        "unknown host or group \"dbb\"; did you mean \"db\"?",
    );

    let p = local_project(PATTERN_INVENTORY, &pattern_playbook("site,!prdo"));
    for command in ["run", "validate"] {
        let out = p.run(&[command, "site.toml", "-i", "inventory.toml"]);
        out.code(3);
        assert_contains(
            &out.stderr,
            "error: play \"p\": unknown host or group \"prdo\"; did you mean \"prod\"?",
        );
        assert_contains(&out.stderr, "--> site.toml:3:9");
        assert!(
            !out.stdout.contains("PLAY"),
            "nothing may run:\n{}",
            out.stdout
        );
    }
    for (limit, message) in [
        ("zz*", "host pattern \"zz*\" matches no host or group"),
        ("web[", "invalid glob \"web[\" in host pattern"),
        ("web,&", "missing host or group name after \"&\""),
    ] {
        let out = p.run(&["validate", "site.toml", "-i", "inventory.toml", "-l", limit]);
        out.code(3);
        assert_contains(&out.stderr, message);
        assert_no_panic(&out);
    }
}

// ---------------------------------------------------------------------------------------
// Shell quoting
// ---------------------------------------------------------------------------------------

const HOSTILE: &[&str] = &[
    "it's",
    "a\"b",
    "$(touch pwned-subshell)",
    "`touch pwned-backtick`",
    "line1\nline2\n",
    "*",
    "; touch pwned-semicolon",
    "&& touch pwned-and",
    "| touch pwned-pipe",
    "> pwned-redirect",
    "$HOME",
    "${HOME}",
    "back\\slash",
    "-n",
    "",
    "  spaced  ",
    "a\tb",
    "{{ not_rendered }}",
    "~",
    "!",
    "#comment",
    "日本語 ✓",
    "'; touch pwned-quote; echo '",
];

#[test]
fn hostile_values_reach_a_local_host_as_literals() {
    let mut inventory = String::from(
        "[defaults]\nconnection = \"local\"\n[hosts.local]\n[vars]\nhost_dir = \"@OUT@\"\n",
    );
    let mut playbook = String::from("[[plays]]\nhosts = \"all\"\n");
    for (i, v) in HOSTILE.iter().enumerate() {
        inventory.push_str(&format!("v{i} = {}\n", toml_string(v)));
        playbook.push_str(&format!(
            "[[plays.tasks]]\nname = \"v{i}\"\ncommand = \"printf %s {{{{ v{i} }}}} > {{{{ host_dir }}}}/v{i}\"\n"
        ));
    }
    let weird = "it's $(touch pwned-creates) `x` \"q\" *";
    inventory.push_str(&format!("weird = {}\n", toml_string(weird)));
    playbook.push_str(
        r#"
[[plays.tasks]]
name = "extra var"
command = "printf %s {{ from_e }} > {{ host_dir }}/from_e"

[[plays.tasks]]
name = "make a hostile path"
command = "printf x > {{ host_dir ~ '/' ~ weird }}"

[[plays.tasks]]
name = "creates a hostile path"
command = "touch {{ host_dir }}/must-not-run"
creates = "{{ host_dir }}/{{ weird }}"

[[plays.tasks]]
name = "template"
template = { src = "hostile.j2", dest = "{{ host_dir }}/templated" }
"#,
    );
    let p = local_project(&inventory, &playbook);
    p.file("templates/hostile.j2", "{{ v2 }}|{{ v3 }}|{{ v1 }}\n");
    let from_e = "$(touch pwned-extra); echo \"x\" 'y'";
    let out = p.run(&[
        "run",
        "site.toml",
        "-i",
        "inventory.toml",
        "-e",
        &format!("from_e={from_e}"),
    ]);
    out.code(0);
    for (i, v) in HOSTILE.iter().enumerate() {
        assert_eq!(read(&p.path(&format!("out/v{i}"))), *v, "value #{i}");
    }
    assert_eq!(read(&p.path("out/from_e")), from_e);
    assert_eq!(read(&p.path(&format!("out/{weird}"))), "x");
    assert!(
        !p.path("out/must-not-run").exists(),
        "`creates` on a hostile path must find the file:\n{}",
        out.stdout
    );
    assert_eq!(
        read(&p.path("out/templated")),
        format!("{}|{}|{}\n", HOSTILE[2], HOSTILE[3], HOSTILE[1])
    );
    assert_no_pwned(p.dir.path());
}

/// No file that a hostile value tried to create exists anywhere under `dir`.
fn assert_no_pwned(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with("pwned"),
                "a hostile value ran: {}",
                path.display()
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
}

#[test]
fn a_nul_byte_is_refused_with_its_location() {
    let p = local_project(
        "[defaults]\nconnection = \"local\"\n[hosts.local]\n[vars]\nhost_dir = \"@OUT@\"\nnul = \"a\\u0000b\"\n",
        "[[plays]]\nhosts = \"all\"\n\
         [[plays.tasks]]\nname = \"marker\"\ncommand = \"touch {{ host_dir }}/marker\"\n\
         [[plays.tasks]]\nname = \"nul\"\ncommand = \"echo {{ nul }}\"\n",
    );
    for command in ["validate", "run"] {
        let out = p.run(&[command, "site.toml", "-i", "inventory.toml"]);
        out.code(3);
        assert_contains(
            &out.stderr,
            "error: `command` of task \"nul\" line 1: value contains a NUL byte, which cannot be passed to a shell (for host local)",
        );
        assert_contains(&out.stderr, "--> site.toml:8:11");
        assert_no_panic(&out);
    }
    // From `-e`, as a TOML escape (a command line cannot hold the byte itself).
    let out = p.run(&[
        "run",
        "site.toml",
        "-i",
        "inventory.toml",
        "-e",
        "nul=\"x\\u0000y\"",
    ]);
    out.code(3);
    assert_contains(&out.stderr, "value contains a NUL byte");
    assert!(
        !p.path("out/marker").exists(),
        "no task may run before the refusal"
    );

    // In the command text itself (a TOML escape), or through `raw`: found by fuzzing, this
    // used to pass `validate` and run a different command.
    p.file(
        "literal.toml",
        "[[plays]]\nhosts = \"all\"\n\
         [[plays.tasks]]\nname = \"marker\"\ncommand = \"touch {{ host_dir }}/marker\"\n\
         [[plays.tasks]]\nname = \"literal\"\ncommand = \"printf 'a\\u0000b'\"\n\
         [[plays.tasks]]\nname = \"raw\"\nunless = \"test {{ nul | raw }}\"\ncommand = \"true\"\n",
    );
    for command in ["validate", "run"] {
        let out = p.run(&[command, "literal.toml", "-i", "inventory.toml"]);
        out.code(3);
        assert_contains(
            &out.stderr,
            "error: `command` of task \"literal\" line 1: contains a NUL byte, which cannot be passed to a shell (for host local)\n  --> literal.toml:8:11",
        );
        assert_contains(
            &out.stderr,
            "error: `unless` of task \"raw\": contains a NUL byte, which cannot be passed to a shell (for host local)\n  --> literal.toml:11:10",
        );
    }
    assert!(!p.path("out/marker").exists());

    // In a path (`creates` used to become `''`, so the command always ran) or in the text a
    // template file renders to.
    p.file(
        "paths.toml",
        "[[plays]]\nhosts = \"all\"\n\
         [[plays.tasks]]\nname = \"marker\"\ncommand = \"touch {{ host_dir }}/marker\"\n\
         [[plays.tasks]]\nname = \"guarded\"\ncommand = \"true\"\ncreates = \"{{ host_dir }}/{{ nul }}\"\n\
         [[plays.tasks]]\nname = \"file\"\ntemplate = { src = \"nul.j2\", dest = \"{{ host_dir }}/f\" }\n",
    );
    p.file("templates/nul.j2", "x={{ nul }}\n");
    for command in ["validate", "run"] {
        let out = p.run(&[command, "paths.toml", "-i", "inventory.toml"]);
        out.code(3);
        assert_contains(
            &out.stderr,
            "error: `creates` of task \"guarded\": contains a NUL byte, which no path can hold (for host local)\n  --> paths.toml:9:11",
        );
        assert_contains(
            &out.stderr,
            "error: nul.j2: rendered template contains a NUL byte; only text files are supported (for host local)\n  --> paths.toml:12:20",
        );
    }
    assert!(!p.path("out/marker").exists());
}

// ---------------------------------------------------------------------------------------
// Secret masking
// ---------------------------------------------------------------------------------------

const ENV_SECRET: &str = "env-s3cret-7Hq9";
const FILE_SECRET: &str = "file-s3cret-K2pZ";
const MASK: &str = "********";

const SECRET_INVENTORY: &str = r#"
[defaults]
connection = "local"

[vars]
host_dir = "@OUT@"
api_token = { env = "CAPSTAN_FOUNDATION_TOKEN" }

[hosts.h1]
vars = { db_password = { file = "db-password.txt" } }

[groups.app]
hosts = ["h1"]
"#;

const SECRET_PLAYBOOK: &str = r#"
[[plays]]
hosts = "all"

[[plays.tasks]]
name = "use the secrets"
command = "echo token={{ api_token }} password={{ db_password }}"

[[plays.tasks]]
name = "config"
template = { src = "secret.conf.j2", dest = "{{ host_dir }}/secret.conf" }

[[plays.tasks]]
name = "fail loudly"
command = "echo token={{ api_token }}; echo password={{ db_password }} >&2; exit 1"
"#;

fn secret_project() -> Project {
    let p = local_project(SECRET_INVENTORY, SECRET_PLAYBOOK);
    p.file("db-password.txt", &format!("{FILE_SECRET}\n"));
    p.file(
        "templates/secret.conf.j2",
        "token = {{ api_token }}\npassword = {{ db_password }}\n",
    );
    p
}

fn with_secret(p: &Project, args: &[&str]) -> Outcome {
    p.run_env(args, &[("CAPSTAN_FOUNDATION_TOKEN", ENV_SECRET)])
}

#[track_caller]
fn assert_masked(what: &str, text: &str, expect_mask: bool) {
    for secret in [ENV_SECRET, FILE_SECRET] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
    if expect_mask {
        assert!(text.contains(MASK), "{what} shows no {MASK}:\n{text}");
    }
}

#[test]
fn secrets_are_masked_in_inventory_output() {
    let p = secret_project();
    let list = with_secret(&p, &["inventory", "-i", "inventory.toml", "--list"]);
    list.code(0);
    assert_masked("inventory --list", &list.all(), true);
    let host = with_secret(&p, &["inventory", "-i", "inventory.toml", "--host", "h1"]);
    host.code(0);
    assert_masked("inventory --host", &host.all(), true);
    assert_eq!(host.stdout.matches(MASK).count(), 2, "{}", host.stdout);
    let graph = with_secret(&p, &["inventory", "-i", "inventory.toml", "--graph"]);
    graph.code(0);
    assert_masked("inventory --graph", &graph.all(), false);
}

#[test]
fn secrets_are_masked_in_validate_errors() {
    let p = secret_project();
    // An operator who pasted a secret into a playbook line that has an error.
    p.file(
        "leaky.toml",
        &format!(
            "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"login\"\ncommand = \"login --token {ENV_SECRET} --password {FILE_SECRET} {{{{ nope }}}}\"\n"
        ),
    );
    let out = with_secret(&p, &["validate", "-i", "inventory.toml", "leaky.toml"]);
    out.code(3);
    assert_contains(&out.stderr, "undefined variable `nope`");
    assert_contains(
        &out.stderr,
        &format!("login --token {MASK} --password {MASK}"),
    );
    assert_masked("validate (playbook line)", &out.all(), true);

    // A bad `-e` argument is quoted back as the command line it came from.
    let out = with_secret(
        &p,
        &[
            "validate",
            "-i",
            "inventory.toml",
            "site.toml",
            "-e",
            &format!("bad-name={FILE_SECRET}"),
        ],
    );
    out.code(3);
    assert_contains(&out.stderr, "invalid variable name \"bad-name\"");
    assert_masked("validate (-e)", &out.all(), true);
}

#[test]
fn secrets_are_masked_in_run_output_failures_diffs_and_plans() {
    let p = secret_project();
    let check = with_secret(
        &p,
        &[
            "run",
            "site.toml",
            "-i",
            "inventory.toml",
            "--check",
            "--diff",
            "--plan-out",
            "plan.json",
            "-v",
        ],
    );
    check.code(0);
    assert_contains(&check.stdout, &format!("+token = {MASK}"));
    assert_masked("run --check --diff -v", &check.all(), true);
    let plan = read(&p.path("plan.json"));
    assert_masked("the plan file", &plan, true);

    let run = with_secret(
        &p,
        &["run", "site.toml", "-i", "inventory.toml", "--diff", "-v"],
    );
    run.code(2);
    // -v stdout, the diff of the template, and the failure's command and stderr.
    assert_contains(
        &run.stdout,
        &format!("stdout: token={MASK} password={MASK}"),
    );
    assert_contains(&run.stdout, &format!("+password = {MASK}"));
    assert_contains(
        &run.stdout,
        &format!("command: echo token={MASK}; echo password={MASK} >&2; exit 1"),
    );
    assert_contains(&run.stdout, &format!("        password={MASK}"));
    assert_masked("run --diff -v", &run.all(), true);

    // The host got the real values: masking is for output only.
    assert_eq!(
        read(&p.path("out/secret.conf")),
        format!("token = {ENV_SECRET}\npassword = {FILE_SECRET}\n")
    );
    // Nothing capstan keeps for later (cache, last-run records) holds a secret either.
    assert_no_secret_in(&p.dir.path().join(".capstan"));
}

fn assert_no_secret_in(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                assert_masked(
                    &path.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                    false,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strict undefined variables
// ---------------------------------------------------------------------------------------

const UNDEFINED_PLAYBOOK: &str = r#"[[plays]]
hosts = "all"

[[plays.tasks]]
name = "marker"
command = "touch {{ host_dir }}/marker"

[[plays.tasks]]
name = "in a command"
command = "echo {{ nope_command }}"

[[plays.tasks]]
name = "in creates"
command = "true"
creates = "{{ nope_creates }}/done"

[[plays.tasks]]
name = "in a template"
template = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf" }
"#;

const LOCAL_INVENTORY: &str =
    "[defaults]\nconnection = \"local\"\n[vars]\nhost_dir = \"@OUT@\"\n[hosts.local]\n";

#[test]
fn undefined_variables_are_refused_before_any_host_is_contacted() {
    let p = local_project(LOCAL_INVENTORY, UNDEFINED_PLAYBOOK);
    p.file("templates/app.conf.j2", "[server]\nport = {{ app_port }}\n");
    for command in ["validate", "run"] {
        let out = p.run(&[command, "site.toml", "-i", "inventory.toml"]);
        out.code(3);
        assert_no_panic(&out);
        let e = &out.stderr;
        assert_contains(
            e,
            "error: `command` of task \"in a command\" line 1: undefined variable `nope_command` (for host local)\n  --> site.toml:10:11",
        );
        assert_contains(
            e,
            "error: `creates` of task \"in creates\" line 1: undefined variable `nope_creates` (for host local)\n  --> site.toml:15:11",
        );
        assert_contains(
            e,
            "error: app.conf.j2 line 2: undefined variable `app_port` (for host local)\n  --> templates/app.conf.j2:2:1",
        );
        if command == "validate" {
            assert_contains(e, "3 problem(s) found");
        }
        assert!(!out.stdout.contains("PLAY"), "{}", out.stdout);
        assert!(
            !p.path("out/marker").exists(),
            "a task ran before the refusal"
        );
    }
}

#[test]
fn an_undefined_variable_is_named_even_inside_an_expression() {
    let p = local_project(
        LOCAL_INVENTORY,
        r#"[[plays]]
hosts = "all"
[[plays.tasks]]
name = "filter"
command = "echo {{ missing_a | upper }}"
[[plays.tasks]]
name = "concat"
command = "echo {{ host_dir ~ missing_b }}"
[[plays.tasks]]
name = "filter argument"
command = "echo {{ host_dir | replace(missing_c, 'x') }}"
[[plays.tasks]]
name = "conditional"
command = "echo {{ 'a' if missing_d else 'b' }}"
[[plays.tasks]]
name = "attribute"
creates = "{{ missing_e.path | trim }}"
command = "true"
"#,
    );
    let out = p.run(&["validate", "site.toml", "-i", "inventory.toml"]);
    out.code(3);
    for (task, var) in [
        ("filter", "missing_a"),
        ("concat", "missing_b"),
        ("filter argument", "missing_c"),
        ("conditional", "missing_d"),
        ("attribute", "missing_e.path"),
    ] {
        assert_contains(
            &out.stderr,
            &format!("of task \"{task}\" line 1: undefined variable `{var}`"),
        );
    }
}

#[test]
fn default_and_is_defined_work_under_strict_undefined() {
    let p = local_project(
        LOCAL_INVENTORY,
        r#"[[plays]]
hosts = "all"
[[plays.tasks]]
name = "default"
command = "printf %s {{ x | default(1) }} > {{ host_dir }}/default"
[[plays.tasks]]
name = "guarded"
command = "printf %s {{ x }} > {{ host_dir }}/guarded"
when = "x is defined"
[[plays.tasks]]
name = "template"
template = { src = "t.j2", dest = "{{ host_dir }}/t" }
"#,
    );
    p.file(
        "templates/t.j2",
        "{% if x is defined %}x={{ x }}{% else %}no x{% endif %}\n",
    );
    p.run(&["validate", "site.toml", "-i", "inventory.toml"])
        .code(0);
    let out = p.run(&["run", "site.toml", "-i", "inventory.toml"]);
    out.code(0);
    assert_eq!(read(&p.path("out/default")), "1");
    assert!(!p.path("out/guarded").exists());
    assert_eq!(out.line("local", "guarded"), "skipped (when: false)");
    assert_eq!(read(&p.path("out/t")), "no x\n");

    let out = p.run(&[
        "run",
        "site.toml",
        "-i",
        "inventory.toml",
        "-e",
        "x=7",
        "--no-cache",
    ]);
    out.code(0);
    assert_eq!(read(&p.path("out/default")), "7");
    assert_eq!(read(&p.path("out/guarded")), "7");
    assert_eq!(read(&p.path("out/t")), "x=7\n");
}

// ---------------------------------------------------------------------------------------
// Help and exit codes
// ---------------------------------------------------------------------------------------

#[test]
fn help_describes_the_commands_and_the_ansible_style_flags() {
    let top = in_repo(&["--help"], &[]);
    top.code(0);
    for needle in [
        "Usage: capstan <COMMAND>",
        "run ",
        "Run a playbook against an inventory",
        "validate ",
        "inventory ",
        "Exit codes: 0 success",
    ] {
        assert_contains(&top.stdout, needle);
    }
    let run = in_repo(&["help", "run"], &[]);
    run.code(0);
    for needle in [
        "Usage: capstan run [OPTIONS] --inventory <FILE> <PLAYBOOK>",
        "-i, --inventory <FILE>",
        "-l, --limit <PATTERN>",
        "-e, --extra-vars <VARS>",
        "-C, --check",
        "-D, --diff",
        "-f, --forks <N>",
        "-t, --tags <TAGS>",
        "--skip-tags <TAGS>",
        "--detailed-exitcode",
        "-v, --verbose",
    ] {
        assert_contains(&run.stdout, needle);
    }
    let validate = in_repo(&["help", "validate"], &[]);
    validate.code(0);
    for needle in [
        "Usage: capstan validate [OPTIONS] --inventory <FILE> <PLAYBOOKS>...",
        "-i, --inventory <FILE>",
        "-e, --extra-vars <VARS>",
        "-l, --limit <PATTERN>",
        "--templates <DIR>",
    ] {
        assert_contains(&validate.stdout, needle);
    }
    let inventory = in_repo(&["help", "inventory"], &[]);
    inventory.code(0);
    for needle in [
        "--list",
        "--graph",
        "--host <NAME>",
        "-i, --inventory <FILE>",
    ] {
        assert_contains(&inventory.stdout, needle);
    }
}

#[test]
fn exit_codes_distinguish_success_usage_failure_refusal_and_pending_changes() {
    let playbook = |command: &str| {
        format!(
            "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"t\"\ncommand = \"{command}\"\ncreates = \"{{{{ host_dir }}}}/exists\"\n"
        )
    };
    let p = local_project(LOCAL_INVENTORY, &playbook("true"));
    p.file("fails.toml", &playbook("false"));
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-i", "inventory.toml"];
        args.extend_from_slice(extra);
        p.run(&args)
    };

    run(&["site.toml"]).code(0);
    let usage = run(&["site.toml", "--bogus"]);
    usage.code(1);
    assert_contains(&usage.stderr, "unexpected argument '--bogus'");
    run(&["fails.toml"]).code(2);
    p.file("broken.toml", "[[plays]\n");
    let refused = run(&["broken.toml"]);
    refused.code(3);
    assert_contains(&refused.stderr, "--> broken.toml:1:");

    // Pending: the command would run (its `creates` file is missing).
    let pending = run(&["site.toml", "--check", "--detailed-exitcode", "--no-cache"]);
    pending.code(4);
    assert_contains(&pending.stdout, "would change");
    std::fs::write(p.path("out/exists"), "").expect("write");
    run(&["site.toml", "--check", "--detailed-exitcode", "--no-cache"]).code(0);
    // Without --detailed-exitcode pending changes are a success.
    std::fs::remove_file(p.path("out/exists")).expect("rm");
    run(&["site.toml", "--check", "--no-cache"]).code(0);
}

#[test]
fn conditions_reading_undefined_names_are_refused_before_any_host_is_contacted() {
    let p = Project::new();
    p.local_inventory(&["web-1"], "", "");
    p.file(
        "bad.toml",
        r#"[[plays]]
hosts = "all"
[[plays.tasks]]
name = "config"
command = "true"
register = "conf"
[[plays.tasks]]
name = "restart"
command = "touch {{ host_dir }}/restarted"
when = "confg.changed"
[[plays.tasks]]
name = "check"
command = "true"
changed_when = "result.rc == 0 and nosuch"
"#,
    );
    for args in [
        &["validate", "-i", "inventories/local.toml", "bad.toml"][..],
        &["run", "bad.toml", "-i", "inventories/local.toml"][..],
    ] {
        let out = p.run(args);
        out.code(3);
        assert!(
            out.stderr
                .contains("`when` of task \"restart\" line 1: undefined variable")
                && out.stderr.contains("bad.toml:10:8"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("`changed_when` of task \"check\": undefined variable `nosuch`"),
            "{}",
            out.stderr
        );
    }
    assert!(!p.path("hosts/restarted").exists(), "nothing ran");
    // The same conditions over names that exist (a register, the task's own result) pass.
    p.file(
        "good.toml",
        &std::fs::read_to_string(p.path("bad.toml"))
            .expect("read")
            .replace("confg.changed", "conf.changed")
            .replace(" and nosuch", ""),
    );
    p.run(&["validate", "-i", "inventories/local.toml", "good.toml"])
        .code(0);
}
