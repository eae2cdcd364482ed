//! Attacks on capstan's security model, each a test named after it, over real sshd hosts
//! where the output comes from a run (see docs/security.md).

use std::path::{Path, PathBuf};

use crate::support::capstan::{Outcome, Project};
use crate::support::fleet::{Fleet, project};

/// Tricky secrets: quotes, backslashes, `$`, `&<>"`, unicode, surrounding spaces (each from
/// the environment), and a multi-line one from a file.
const TRICKY: [(&str, &str); 6] = [
    ("CAPSTAN_T_SQ", "pa'ss'word-q1"),
    ("CAPSTAN_T_BS", "back\\slash\"dq-2"),
    ("CAPSTAN_T_DOLLAR", "dollar$HOME$(id)`x`-3"),
    ("CAPSTAN_T_XML", "amp&lt<gt>\"q\"-5"),
    ("CAPSTAN_T_UNI", "pässwörd-ünï-6"),
    ("CAPSTAN_T_SPACE", "  lead and trail spaces-7  "),
];

const MULTI_LINE: &str = "-----BEGIN TEST KEY-----\nline-one-of-the-key-AAAA\nline-two-of-the-key-BBBB\n-----END TEST KEY-----";

/// Every form a secret takes in capstan's outputs, written here independently of capstan:
/// as is, trimmed, each line; each raw, inside shell single quotes, JSON-escaped and
/// XML-escaped (attribute and text).
fn forms(secret: &str) -> Vec<String> {
    let mut bases = vec![secret.to_owned(), secret.trim().to_owned()];
    if secret.contains('\n') {
        // PEM armor lines (`-----BEGIN …-----`) are the same in every PEM file: they are
        // not a form of the secret (docs/security.md).
        bases.extend(
            secret
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !(l.starts_with("-----") && l.ends_with("-----"))),
        );
    }
    let mut out = Vec::new();
    for b in bases {
        let shell = b.replace('\'', "'\\''");
        let json = serde_json::to_string(&b).expect("json");
        let json = json[1..json.len() - 1].to_owned();
        let xml_text = b
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let xml_attr = xml_text.replace('"', "&quot;").replace('\'', "&apos;");
        let shell_json = serde_json::to_string(&shell).expect("json");
        let shell_json = shell_json[1..shell_json.len() - 1].to_owned();
        out.extend([b, shell, json, xml_text, xml_attr, shell_json]);
    }
    out.sort();
    out.dedup();
    out
}

/// Every regular file under `dir`, skipping the paths in `skip` (the test's own inputs).
fn files_under(dir: &Path, skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Fails naming the place and the form of every secret found in `text`.
fn assert_no_secret(place: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{place} holds the secret {secret:?} as {form:?}:\n{text}"
            );
        }
    }
}

fn run(p: &Project, fleet: &Fleet, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let mut all = vec!["run", "site.toml", "-i", "inventory.toml", "-F", &config];
    all.extend_from_slice(args);
    p.run_env(&all, env)
}

fn tricky_env() -> Vec<(&'static str, &'static str)> {
    TRICKY.to_vec()
}

/// The corpus of tricky secrets goes through every path capstan has for a value: a shell
/// command (quoted), `-v` output, a registered result replayed from the cache, a template
/// and its `--diff`, a failure's stderr and command, a saved plan, JSON events, `--report`,
/// JUnit, the audit trail, and the local and the on-host caches. No form of any secret may
/// appear in anything capstan printed or wrote.
#[test]
fn tricky_secrets_are_masked_in_every_form_in_every_output_and_file() {
    let fleet = Fleet::start(1);
    let vars: String = TRICKY
        .iter()
        .enumerate()
        .map(|(i, (env, _))| format!("s{i} = {{ env = \"{env}\" }}\n"))
        .collect();
    let p = project(
        &fleet,
        &format!("[vars]\n{vars}key = {{ file = \"secrets/key.pem\" }}\n"),
        r#"
[[plays]]
hosts = "all"

[[plays.tasks]]
name = "echo every secret"
command = "printf '%s\n' {{ s0 }} {{ s1 }} {{ s2 }} {{ s3 }} {{ s4 }} {{ s5 }} {{ key }}"
register = "echoed"

[[plays.tasks]]
name = "use what was registered"
command = "printf '%s\n' {{ echoed.stdout_lines | join(' ') | quote }}"
changed_when = "false"

[[plays.tasks]]
name = "config"
template = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf", mode = "0600" }

[[plays.tasks]]
name = "fail loudly"
command = "printf '%s\n' {{ s0 }} {{ key }} >&2; exit 3"
"#,
    );
    let mut template = String::from("# app\n");
    for i in 0..TRICKY.len() {
        template.push_str(&format!("s{i}={{{{ s{i} }}}}\n"));
    }
    template.push_str("{{ key }}\n");
    p.file("templates/app.conf.j2", &template);
    p.file("secrets/key.pem", &format!("{MULTI_LINE}\n"));
    let env = tricky_env();

    let mut outputs = Vec::new();
    let check = run(
        &p,
        &fleet,
        &["--check", "--diff", "--plan-out", "plan.json"],
        &env,
    );
    outputs.push(("check --diff", check.all()));
    let human = run(
        &p,
        &fleet,
        &[
            "--diff",
            "-v",
            "--report",
            "report.json",
            "--junit",
            "junit.xml",
        ],
        &env,
    );
    human.code(2);
    assert!(human.stdout.contains("********"), "{}", human.stdout);
    outputs.push(("run --diff -v", human.all()));
    let json = run(&p, &fleet, &["--output", "json"], &env);
    json.code(2);
    outputs.push(("--output json", json.all()));
    // The cached task replays its registered value.
    assert!(json.stdout.contains("cached"), "{}", json.stdout);

    // The on-host cache: same project, remote store.
    let inventory = std::fs::read_to_string(p.path("inventory.toml")).expect("inventory");
    p.file(
        "inventory.toml",
        &format!("{inventory}\n[settings]\ncache = \"remote\"\n"),
    );
    let remote = run(&p, &fleet, &["--diff", "-v"], &env);
    remote.code(2);
    outputs.push(("remote cache run", remote.all()));

    // The commands that show what capstan keeps.
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    for args in [
        vec!["inventory", "-i", "inventory.toml", "--list"],
        vec!["inventory", "-i", "inventory.toml", "--host", "host1"],
        vec!["cache", "show", "-i", "inventory.toml", "-F", &config],
        vec!["audit", "-i", "inventory.toml", "--json"],
        vec!["audit", "-i", "inventory.toml", "--remote", "-F", &config],
    ] {
        let shown = p.run_env(&args, &env);
        assert_eq!(shown.code, 0, "{args:?}: {}", shown.all());
        if args[1] == "-i" && args[3] == "--host" {
            assert!(shown.stdout.contains("********"), "{}", shown.stdout);
        }
        outputs.push(("a listing", shown.all()));
    }
    let secrets: Vec<&str> = TRICKY.iter().map(|(_, s)| *s).chain([MULTI_LINE]).collect();
    for (place, text) in &outputs {
        assert_no_secret(place, text, &secrets);
    }
    let inputs = [
        p.path("inventory.toml"),
        p.path("site.toml"),
        p.path("templates"),
        p.path("secrets"),
        p.path(".host-lock"),
    ];
    let written = files_under(p.dir.path(), &inputs);
    for must in [
        "plan.json",
        "report.json",
        "junit.xml",
        ".capstan/cache.key",
    ] {
        assert!(
            written.contains(&p.path(must)),
            "{must} not written: {written:?}"
        );
    }
    assert!(
        written
            .iter()
            .any(|f| f.starts_with(p.path(".capstan/cache"))),
        "{written:?}"
    );
    for f in &written {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        assert_no_secret(&f.display().to_string(), &text, &secrets);
    }
    // The host's own capstan files (its cache and key); what the task deployed is data the
    // operator asked to put there.
    let host_files = files_under(&fleet.host(0).home.join(".capstan"), &[]);
    assert!(
        host_files
            .iter()
            .any(|f| f.file_name() == Some("cache.jsonl".as_ref())),
        "{host_files:?}"
    );
    for f in &host_files {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        assert_no_secret(&f.display().to_string(), &text, &secrets);
    }
}

/// Short secrets garble the output and reveal themselves by where the mask appears.
#[test]
fn short_secret_is_refused_at_load_with_its_location() {
    let p = Project::new();
    p.file(
        "inventory.toml",
        "[vars]\nok = 1\npw = { env = \"CAPSTAN_T_SHORT\" }\n\n[hosts.web-1]\n",
    );
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\ncommand = \"true\"\n",
    );
    let out = p.run_env(
        &["validate", "site.toml", "-i", "inventory.toml"],
        &[("CAPSTAN_T_SHORT", "ab")],
    );
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("inventory.toml:3:")
            && out.stderr.contains(
                "secret \"pw\" in [vars] is too short (2 characters; at least 8 are needed)"
            ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("masked"), "{}", out.stderr);
    assert!(!out.stderr.contains("********"), "{}", out.stderr);
}

/// A secret equal to a host name would mask every mention of the host.
#[test]
fn secret_equal_to_a_host_name_is_refused_at_load() {
    let p = Project::new();
    p.file(
        "inventory.toml",
        "[vars]\npw = { env = \"CAPSTAN_T_HOSTLIKE\" }\n\n[hosts.registry-01]\n",
    );
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\ncommand = \"true\"\n",
    );
    let out = p.run_env(
        &["validate", "site.toml", "-i", "inventory.toml"],
        &[("CAPSTAN_T_HOSTLIKE", "registry-01")],
    );
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("inventory.toml:4:")
            && out.stderr.contains("is also the value of a secret"),
        "{}",
        out.stderr
    );
}

/// `{ env = "X", other = … }` used to become a plain table, silently.
#[test]
fn near_miss_secret_table_is_an_error_listing_the_allowed_keys() {
    let p = Project::new();
    p.file(
        "inventory.toml",
        "[vars]\npw = { env = \"CAPSTAN_T_NEAR\", default = \"x\" }\n\n[hosts.web-1]\n",
    );
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\ncommand = \"true\"\n",
    );
    let out = p.run_env(
        &["validate", "site.toml", "-i", "inventory.toml"],
        &[("CAPSTAN_T_NEAR", "long-enough-secret")],
    );
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("inventory.toml:2:")
            && out.stderr.contains(
                "unknown key \"default\" in secret \"pw\" in [vars]; a secret table allows only \"env\" or \"file\""
            ),
        "{}",
        out.stderr
    );
}

/// Anyone holding `.capstan/cache` used to be able to confirm a guess of a secret offline,
/// by recomputing the unsalted digest of a command that held it.
#[test]
fn cache_is_no_oracle_for_guessing_a_secret() {
    use std::os::unix::fs::PermissionsExt as _;
    let fleet = Fleet::start(1);
    let secret = "guessable-pass-2024";
    let p = project(
        &fleet,
        "[vars]\npw = { env = \"CAPSTAN_T_GUESS\" }\n",
        "[[plays]]\nname = \"p\"\nhosts = \"all\"\n[[plays.tasks]]\nname = \"use\"\ncommand = \"echo {{ pw }} > /dev/null\"\n",
    );
    let env = [("CAPSTAN_T_GUESS", secret)];
    run(&p, &fleet, &[], &env).code(0);
    let key = p.path(".capstan/cache.key");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the project key is private");
    let cache = std::fs::read_to_string(p.path(".capstan/cache/host1.jsonl")).expect("cache");
    let entry: serde_json::Value =
        serde_json::from_str(cache.lines().next().expect("an entry")).expect("json");
    let stored = entry["key"].as_str().expect("key");
    // The attacker's guess, computed the way the key used to be (a plain digest of public
    // inputs and the rendered command): it does not match what is stored.
    let host = fleet.host(0);
    let identity = capstan::cache::HostIdentity {
        name: host.name.clone(),
        address: host.addr.to_string(),
        fingerprint: fleet.host_key_fingerprint(0),
    };
    let guess = capstan::cache::task_key(
        &identity,
        "p",
        0,
        "use",
        "command",
        &[&format!("echo {secret} > /dev/null")],
    );
    assert_ne!(stored, guess);
    assert!(!cache.contains(&guess));
    // The entry still works: a rerun is served from the cache.
    let again = run(&p, &fleet, &[], &env);
    again.code(0);
    assert!(
        again.line("host1", "use").starts_with("cached"),
        "{}",
        again.stdout
    );
    // A planted key symlink is refused, and the run goes on without the cache.
    std::fs::remove_file(&key).expect("rm key");
    std::fs::write(p.path("attacker.key"), format!("{}\n", "ab".repeat(32))).expect("write");
    std::os::unix::fs::symlink(p.path("attacker.key"), &key).expect("symlink");
    let planted = run(&p, &fleet, &[], &env);
    planted.code(0);
    assert!(
        planted
            .stdout
            .contains("is a symbolic link; refusing to follow it"),
        "{}",
        planted.stdout
    );
    assert_eq!(
        planted.line("host1", "use").split(' ').next(),
        Some("changed")
    );
}

/// The on-host cache is keyed by the host's own private key, not by a plain digest.
#[test]
fn remote_cache_is_keyed_by_a_private_per_host_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "[vars]\npw = { env = \"CAPSTAN_T_REMOTE\" }\n[settings]\ncache = \"remote\"\n",
        "[[plays]]\nname = \"p\"\nhosts = \"all\"\n[[plays.tasks]]\nname = \"use\"\ncommand = \"echo {{ pw }} > /dev/null\"\n",
    );
    let env = [("CAPSTAN_T_REMOTE", "remote-secret-value")];
    run(&p, &fleet, &[], &env).code(0);
    let dir = fleet.host(0).home.join(".capstan");
    let key = std::fs::read_to_string(dir.join("cache.key")).expect("host key");
    assert_eq!(key.trim().len(), 64);
    let mode = std::fs::metadata(dir.join("cache.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the host key is private: {mode:o}");
    assert!(!p.path(".capstan/cache").exists(), "nothing cached locally");
    let again = run(&p, &fleet, &[], &env);
    assert!(
        again.line("host1", "use").starts_with("cached"),
        "{}",
        again.stdout
    );
}

/// `[hosts."../../../escaped-host"]` wrote its cache outside the project; `[hosts."../audit"]`
/// replaced the local audit trail.
#[test]
fn host_names_that_would_escape_the_state_directory_are_refused() {
    for (name, line) in [
        ("../../../escaped-host", 2),
        ("../audit", 2),
        (".hidden", 2),
    ] {
        let p = Project::new();
        p.file(
            "inventory.toml",
            &format!("[hosts]\n\"{name}\" = {{ connection = \"local\" }}\n"),
        );
        p.file(
            "site.toml",
            "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\ncommand = \"true\"\n",
        );
        for args in [
            ["validate", "site.toml", "-i", "inventory.toml"],
            ["run", "site.toml", "-i", "inventory.toml"],
        ] {
            let out = p.run(&args);
            assert_ne!(out.code, 0, "{}", out.all());
            assert!(
                out.stderr.contains(&format!(
                    "error: invalid host name \"{name}\"\n  --> inventory.toml:{line}:1"
                )),
                "{}",
                out.stderr
            );
            assert!(out.stderr.contains("letters, digits"), "{}", out.stderr);
        }
        assert!(!p.path(".capstan").exists());
        assert!(
            !p.dir
                .path()
                .parent()
                .expect("parent")
                .join("escaped-host.jsonl")
                .exists()
        );
    }
}

/// `src = "../../../../etc/passwd"`, an absolute path, or a symlink out of the templates
/// directory used to be read on the controller and shown in `--diff` and the plan.
#[test]
fn template_src_escaping_the_templates_directory_is_refused() {
    let fleet = Fleet::start(1);
    for (src, why) in [
        ("../../../../etc/passwd", "uses `..`"),
        ("/etc/passwd", "is an absolute path"),
        ("link.j2", "through a symbolic link, outside"),
    ] {
        let p = project(
            &fleet,
            "",
            &format!(
                "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"deploy\"\ntemplate = {{ src = \"{src}\", dest = \"{{{{ host_dir }}}}/out\" }}\n"
            ),
        );
        p.file("templates/ok.j2", "ok\n");
        std::os::unix::fs::symlink("/etc/passwd", p.path("templates/link.j2")).expect("symlink");
        let out = p.run(&["validate", "site.toml", "-i", "inventory.toml"]);
        assert_ne!(out.code, 0, "{}", out.all());
        assert!(
            out.stderr.contains("site.toml:5:20"),
            "{src}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(why), "{src}: {}", out.stderr);
        let run = run(
            &p,
            &fleet,
            &["--check", "--diff", "--plan-out", "plan.json"],
            &[],
        );
        assert!(run.all().contains(why), "{src}: {}", run.all());
        assert!(!run.all().contains("root:x:0:0"), "{}", run.all());
        let plan = std::fs::read_to_string(p.path("plan.json")).unwrap_or_default();
        assert!(!plan.contains("root:x:0:0"), "{plan}");
    }
}

/// Escape sequences, carriage returns and a forged timestamped line, printed by a host.
#[test]
fn host_output_cannot_drive_the_terminal_or_forge_log_lines() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "hostile"
command = "printf 'a\\033]0;pwned\\007b\\rc\\n2026-01-01T00:00:00Z host1 | forged | ok\\n'; printf 'x\\033[2Ky\\n' >&2; exit 1"
"#,
    );
    let out = run(&p, &fleet, &["-v", "--junit", "junit.xml"], &[]);
    out.code(2);
    assert!(!out.all().contains('\x1b'), "{:?}", out.all());
    assert!(!out.all().contains('\r'), "{:?}", out.all());
    assert!(!out.all().contains('\x07'), "{:?}", out.all());
    assert!(
        out.stdout.contains("a\\x1b]0;pwned\\x07b\\rc"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("x\\x1b[2Ky"), "{}", out.stdout);
    for l in out.stdout.lines() {
        assert!(!l.starts_with("2026-01-01T00:00:00Z"), "forged line: {l}");
    }
    // JSON carries the exact bytes, escaped by JSON.
    let json = run(&p, &fleet, &["--output", "json"], &[]);
    let result = json
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "task_result")
        .expect("a task_result");
    let stdout = result["stdout"].as_str().expect("stdout");
    assert!(
        stdout.starts_with("a\x1b]0;pwned\x07b\rc\n2026"),
        "{stdout:?}"
    );
    // JUnit (XML 1.0 cannot hold them) shows them escaped rather than dropping them.
    let xml = std::fs::read_to_string(p.path("junit.xml")).expect("junit");
    assert!(xml.contains("x\\x1b[2Ky"), "{xml}");
    roxmltree::Document::parse(&xml).expect("well-formed XML");
}

/// A template looping 10⁵ × 10⁵ used to hang `validate` with unbounded memory.
#[test]
fn runaway_template_runs_out_of_fuel_in_validate_and_run() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"deploy\"\ntemplate = { src = \"loop.j2\", dest = \"{{ host_dir }}/out\" }\n",
    );
    p.file(
        "templates/loop.j2",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}\n",
    );
    let started = std::time::Instant::now();
    let out = p.run(&["validate", "site.toml", "-i", "inventory.toml"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("site.toml:5:20"), "{}", out.stderr);
    assert!(
        out.stderr.contains("loop.j2: template ran more than")
            || out.stderr.contains("rendered output is larger than"),
        "{}",
        out.stderr
    );
    // `run` checks its templates before anything runs, and refuses.
    let run = run(&p, &fleet, &[], &[]);
    run.code(3);
    assert!(run.stderr.contains("site.toml:5:20"), "{}", run.stderr);
    assert!(
        run.stderr.contains("template ran more than")
            || run.stderr.contains("rendered output is larger than"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}

/// The same hostile output in the live view on a terminal (a pseudo-terminal made by
/// `script`): the window-title sequence and the bell reach it only as visible text.
#[test]
fn host_output_cannot_drive_the_live_terminal_view() {
    let fleet = Fleet::start(1);
    let p = project(
        &fleet,
        "",
        r#"
[[plays]]
hosts = "all"
[[plays.tasks]]
name = "hostile"
command = "printf 'a\\033]0;pwned\\007b\\rc\\n'"
"#,
    );
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let capstan = crate::support::capstan::binary().display().to_string();
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{capstan} run site.toml -i inventory.toml -F {config} -v"
        ))
        .arg("/dev/null")
        .current_dir(p.dir.path())
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .env_remove("SSH_AUTH_SOCK")
        .env("CAPSTAN_LOCK_DIR", p.path(".host-lock"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    // The live view draws with its own escape sequences (line erase, cursor up), so the
    // check is for the host's: the title sequence, the bell and its carriage return.
    assert!(shown.contains("\x1b[2K"), "not the live view: {shown:?}");
    assert!(!shown.contains("\x1b]0;"), "{shown:?}");
    assert!(!shown.contains('\x07'), "{shown:?}");
    assert!(shown.contains("a\\x1b]0;pwned\\x07b\\rc"), "{shown:?}");
}
