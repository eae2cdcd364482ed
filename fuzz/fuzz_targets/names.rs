//! Host names, template `src` paths and host output, against the rules that keep them
//! from becoming something else: a name is refused or names a direct child of the state
//! directory (and an inventory accepts exactly the safe names); a template `src` that
//! renders never reads outside the templates directory; escaped host output holds no
//! control character and no line of its own.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use capstan::inventory::Inventory;
use capstan::names::{is_safe, state_file};
use capstan::report::escape;
use capstan::template::Templates;
use libfuzzer_sys::fuzz_target;

const OUTSIDE: &str = "OUTSIDE-THE-TEMPLATES-DIRECTORY";

/// `root/templates/{ok.j2, sub/in.j2, out.j2 -> ../outside.txt}` and `root/outside.txt`.
static ROOT: LazyLock<PathBuf> = LazyLock::new(|| {
    let root = std::env::temp_dir().join(format!("capstan-fuzz-names-{}", std::process::id()));
    let t = root.join("templates");
    let _ = std::fs::create_dir_all(t.join("sub"));
    let _ = std::fs::write(root.join("outside.txt"), OUTSIDE);
    let _ = std::fs::write(t.join("ok.j2"), "inside");
    let _ = std::fs::write(t.join("sub/in.j2"), "inside too");
    let _ = std::os::unix::fs::symlink(root.join("outside.txt"), t.join("out.j2"));
    let _ = std::os::unix::fs::symlink(&root, t.join("up"));
    root
});

static TEMPLATES: LazyLock<Templates> = LazyLock::new(|| Templates::new(ROOT.join("templates")));

fuzz_target!(|input: (u8, String)| {
    let (selector, text) = input;
    match selector % 3 {
        0 => {
            let dir = Path::new("/state/.capstan/cache");
            match state_file(dir, &text, "jsonl") {
                Ok(path) => {
                    assert!(is_safe(&text));
                    assert_eq!(path.parent(), Some(dir), "{text:?}");
                    assert!(
                        path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
                        "{text:?}"
                    );
                }
                Err(_) => assert!(!is_safe(&text)),
            }
            let key = serde_json::to_string(&text).unwrap_or_default();
            let source = format!("[hosts.{key}]\nconnection = \"local\"\n");
            if let Ok(inv) = Inventory::parse(Path::new("fuzz.toml"), &source) {
                for name in inv.hosts.keys() {
                    assert!(is_safe(name), "{name:?} accepted");
                }
            } else if text != "all" && text != "ungrouped" {
                assert!(!is_safe(&text), "safe name {text:?} refused");
            }
        }
        1 => {
            let ctx = minijinja::Value::from(());
            if let Ok(out) = TEMPLATES.render_file(&text, &ctx) {
                assert!(!out.contains(OUTSIDE), "{text:?} read outside: {out:?}");
            }
        }
        _ => {
            let out = escape::log_lines("2026-01-01T00:00:00Z", &text);
            for c in out.chars() {
                assert!(
                    c == '\n' || c == '\t' || !c.is_control(),
                    "control {c:?} in {out:?}"
                );
            }
            for line in out.lines().skip(1) {
                assert!(line.starts_with("  "), "{line:?} in {out:?}");
            }
        }
    }
});
