//! The README's first run, word for word: the commands are read from README.md itself and run
//! in a copy of the repository's inventories, playbooks and templates, with this build of
//! capstan first on PATH. Each must succeed, and a second run must change nothing.

use std::path::Path;
use std::process::Command;

/// The first `sh` block after the heading `## A first run in two minutes`, one command a
/// line, comments dropped.
fn first_run_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split("## A first run in two minutes")
        .nth(1)
        .expect("the README has a first-run section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the first-run section");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_readme_first_run_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let commands = first_run_commands(&readme);
    assert!(
        commands.iter().any(|c| c.starts_with("capstan run ")),
        "{commands:?}"
    );
    let work = tempfile::tempdir().expect("tempdir");
    for dir in ["inventories", "playbooks", "templates"] {
        copy_dir(&root.join(dir), &work.path().join(dir));
    }
    let bin_dir = crate::support::capstan::binary()
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |line: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(work.path())
            .env("PATH", &path)
            .env("CI", "1")
            .env("CAPSTAN_LOCK_DIR", work.path().join(".lock"))
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        stdout
    };
    for line in &commands {
        let stdout = run(line);
        if line.ends_with("echo $?") {
            assert!(stdout.trim_end().ends_with('0'), "`{line}`: {stdout}");
        }
    }
    // "A second `run` changes nothing."
    let again = run("capstan run playbooks/site.toml -i inventories/local.toml");
    let recap = again.split("RECAP").nth(1).unwrap_or_default();
    assert!(recap.contains("changed=0"), "{again}");
}
