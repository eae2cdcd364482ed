//! The module graph under `src/` has no cycle, and the engine knows nothing of the layers
//! above it (locks, plans, the audit trail, DTR). Read from the source: every `crate::NAME`
//! in a file of top-level module `M` is an edge `M → NAME`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Edges between top-level modules, with one file that makes each.
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != from && modules.contains(&name) {
                    edges
                        .entry(from.clone())
                        .or_default()
                        .entry(name)
                        .or_insert_with(|| file.display().to_string());
                }
                // `use crate::{a, b}`: every name inside the braces.
                if let Some(braced) = rest.strip_prefix('{') {
                    let inner = braced.split('}').next().unwrap_or_default();
                    for part in inner.split(',') {
                        let name = part.trim().split("::").next().unwrap_or_default().trim();
                        if name != from && modules.contains(name) {
                            edges
                                .entry(from.clone())
                                .or_default()
                                .entry(name.to_owned())
                                .or_insert_with(|| file.display().to_string());
                        }
                    }
                }
            }
        }
    }
    edges
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    start: &str,
) -> Option<Vec<String>> {
    fn walk(
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).map(|m| m.keys()).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(edges, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = graph();
    assert!(
        edges
            .get("engine")
            .is_some_and(|e| e.contains_key("playbook")),
        "the reader sees the engine's imports: {edges:?}"
    );
    for module in edges.keys() {
        if let Some(cycle) = cycle_from(&edges, module) {
            let shown: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            panic!("module cycle:\n  {}", shown.join("\n  "));
        }
    }
}

#[test]
fn the_engine_knows_nothing_of_the_layers_above_it() {
    let edges = graph();
    let engine = edges.get("engine").cloned().unwrap_or_default();
    for above in [
        "dtr",
        "lock",
        "audit",
        "plan",
        "orchestrator",
        "command",
        "app",
        "job",
        "cli",
    ] {
        assert!(
            !engine.contains_key(above),
            "engine -> {above} ({})",
            engine.get(above).map_or("", String::as_str)
        );
    }
}

#[test]
fn a_cycle_is_seen() {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    edges
        .entry("a".into())
        .or_default()
        .insert("b".into(), "f".into());
    edges
        .entry("b".into())
        .or_default()
        .insert("c".into(), "f".into());
    assert_eq!(cycle_from(&edges, "a"), None);
    edges
        .entry("c".into())
        .or_default()
        .insert("a".into(), "f".into());
    assert_eq!(
        cycle_from(&edges, "a"),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
