//! `[settings]` mistakes are refused alike by `validate`, `run --check` and `run`: the same
//! located error (the corpus files `tests/corpus/inventory/settings_*.toml` and their
//! `.expected` output), exit 3, and no connection to any host.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::support::capstan::{Outcome, Project};

const CORPUS: &str = "tests/corpus/inventory";

const PLAYBOOK: &str = "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"touch\"\n\
                        command = \"true\"\n";

/// A port on loopback that counts the connections made to it (without answering them).
struct Witness {
    listener: TcpListener,
}

impl Witness {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        Self { listener }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("local address").port()
    }

    /// Connections made since the last call (each is closed at once).
    fn connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn settings_corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("settings_"))
        })
        .collect();
    files.sort();
    files
}

/// A project whose `inventory.toml` is `text` plus one SSH host at the witness's port.
fn project(text: &str, witness: &Witness) -> Project {
    let p = Project::new();
    p.file(
        "inventory.toml",
        &format!(
            "{text}\n[hosts.web-1]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"deploy\"\nconnect_timeout = \"1s\"\n",
            witness.port()
        ),
    );
    p.file("site.toml", PLAYBOOK);
    p.file("ssh_config", "");
    p
}

fn commands(p: &Project) -> [(&'static str, Outcome); 3] {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "site.toml",
            "-i",
            "inventory.toml",
            "-F",
            "ssh_config",
        ];
        args.extend_from_slice(extra);
        p.run(&args)
    };
    [
        (
            "validate",
            p.run(&["validate", "-i", "inventory.toml", "site.toml"]),
        ),
        ("run --check", run(&["--check"])),
        ("run", run(&[])),
    ]
}

#[test]
fn every_settings_mistake_is_refused_alike_before_connecting() {
    let files = settings_corpus();
    assert!(
        files.len() >= 9,
        "only {} settings corpus files",
        files.len()
    );
    let witness = Witness::new();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(file).expect("corpus file");
        let expected = std::fs::read_to_string(file.with_extension("expected"))
            .expect("expected output")
            .replace(&format!("{CORPUS}/{name}"), "inventory.toml");
        let p = project(&text, &witness);
        for (command, out) in commands(&p) {
            // `validate` counts the problems after listing them.
            let shown = out.stderr.trim_end_matches("1 problem(s) found\n");
            if out.code != 3 || shown != expected || !out.stdout.is_empty() {
                failures.push(format!(
                    "{name}: `{command}` exited {}\n--- want\n{expected}--- stderr\n{}--- stdout\n{}",
                    out.code, out.stderr, out.stdout
                ));
            }
        }
        let connected = witness.connections();
        if connected > 0 {
            failures.push(format!("{name}: {connected} connection(s) to the host"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The witness does see a connection: the same project without the mistake tries the host.
#[test]
fn without_the_mistake_the_run_connects() {
    let witness = Witness::new();
    let p = project(
        "[settings]\ncache = \"off\"\ncache_ttl = \"60s\"\nlock_stale_after = \"90s\"\n",
        &witness,
    );
    let [(_, validated), (_, _), (_, run)] = commands(&p);
    validated.code(0);
    assert_ne!(run.code, 3, "{}", run.stderr);
    assert!(
        witness.connections() >= 1,
        "no connection seen:\n{}",
        run.all()
    );
}

/// The command line, the inventory and the playbook read durations by the same rule: a bare
/// number is refused with the same words wherever it is written.
#[test]
fn a_duration_without_a_unit_is_refused_everywhere() {
    let witness = Witness::new();
    let p = project("[defaults]\ncommand_timeout = \"1h30\"\n", &witness);
    let message = "`1h30` has no unit: write the unit of `30`, like \"1h30m\" or \"1h30s\"";

    let flag = p.run(&["lock", "acquire", "-i", "inventory.toml", "--wait", "1h30"]);
    flag.code(1);
    assert!(
        flag.stderr.starts_with(&format!(
            "error: invalid value '1h30' for '--wait <DURATION>': {message}\n"
        )),
        "{}",
        flag.stderr
    );

    let inventory = p.run(&["validate", "-i", "inventory.toml", "site.toml"]);
    inventory.code(3);
    assert!(
        inventory.stderr.starts_with(&format!(
            "error: invalid value for \"command_timeout\" in [defaults]: {message}\n  --> inventory.toml:2:19\n"
        )),
        "{}",
        inventory.stderr
    );

    p.file(
        "inventory.toml",
        &format!("[hosts.web-1]\nport = {}\n", witness.port()),
    );
    p.file(
        "site.toml",
        "[[plays]]\nhosts = \"all\"\n[[plays.tasks]]\nname = \"wait\"\ncommand = \"true\"\ntimeout = \"1h30\"\n",
    );
    let playbook = p.run(&[
        "run",
        "site.toml",
        "-i",
        "inventory.toml",
        "-F",
        "ssh_config",
    ]);
    playbook.code(3);
    assert!(
        playbook.stderr.starts_with(&format!(
            "error: key \"timeout\" in task \"wait\": {message}\n  --> site.toml:6:11\n"
        )),
        "{}",
        playbook.stderr
    );
    assert_eq!(witness.connections(), 0);
}
