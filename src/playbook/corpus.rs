//! Malformed playbooks under `tests/corpus/playbook/`, each with the messages it must produce.
//!
//! `NAME.expected` holds, for every problem in `NAME.toml` in order, the `error:` line and the
//! `  -->` location line, exactly as the operator sees them.

use std::path::{Path, PathBuf};

use super::Playbook;

const CORPUS: &str = "tests/corpus/playbook";

/// The first two lines of each diagnostic: the message and its location.
fn headline_lines(shown: &str) -> Vec<&str> {
    shown
        .lines()
        .filter(|l| l.starts_with("error: ") || l.starts_with("  --> "))
        .collect()
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_malformed_playbook_reports_what_it_should() {
    let files = corpus_files();
    assert!(files.len() >= 18, "only {} corpus files", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        // Shown relative to the package root, which is where `cargo test` runs.
        let shown = Path::new(CORPUS).join(name.as_ref());
        let expected_path = file.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", expected_path.display()));
        let expected: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        let actual = match Playbook::load(&shown) {
            Ok(_) => "(parsed without problems)".to_owned(),
            Err(diags) => diags.to_string(),
        };
        if headline_lines(&actual) != expected {
            failures.push(format!(
                "{}\n--- expected\n{}\n--- actual\n{actual}",
                shown.display(),
                expected.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_shipped_playbook_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/site.toml");
    let playbook = Playbook::load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(playbook.plays.len(), 1);
    assert_eq!(playbook.plays[0].hosts, "all");
    let kinds: Vec<_> = playbook.plays[0]
        .tasks
        .iter()
        .map(|t| t.action.kind())
        .collect();
    assert_eq!(kinds, ["command", "template", "command", "command"]);
}
