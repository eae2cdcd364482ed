//! Host and group names, and the only way one becomes a local path.
//!
//! A name comes from the inventory, which an operator may have copied from anywhere, so it
//! is never trusted as a path: it is limited to letters, digits, `-`, `_` and `.` (not
//! first), and [`state_file`] refuses anything else, so a file derived from a name always
//! lands directly inside the directory it was asked for.

use std::path::{Path, PathBuf};

/// What a host or group name may be made of, for messages.
pub const NAME_RULE: &str =
    "names are letters, digits, \"-\", \"_\" and \".\", and do not start with \".\"";

/// True when `name` is a safe host or group name (see [`NAME_RULE`]).
pub fn is_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A name that cannot become a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` cannot name a file: {NAME_RULE}")]
pub struct UnsafeName {
    pub name: String,
}

/// `dir/NAME.ext`, for a name that passes [`is_safe`]; `ext` is a fixed suffix such as
/// `"jsonl"`. The result is always a direct child of `dir`.
pub fn state_file(dir: &Path, name: &str, ext: &str) -> Result<PathBuf, UnsafeName> {
    if !is_safe(name) {
        return Err(UnsafeName {
            name: name.to_owned(),
        });
    }
    Ok(dir.join(format!("{name}.{ext}")))
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in ["dtr-1", "web_2", "db.prod.example.com", "A9"] {
            assert!(is_safe(name), "{name}");
        }
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for name in [
            "",
            ".",
            "..",
            "../x",
            "../../../escaped-host",
            "a/b",
            "/etc",
            ".hidden",
            "a\\b",
            "a b",
            "a\0b",
            "ä",
            "a\nb",
            "~root",
        ] {
            assert!(!is_safe(name), "{name:?}");
            assert!(
                state_file(Path::new("/s"), name, "jsonl").is_err(),
                "{name:?}"
            );
        }
    }

    /// Every name either is refused or yields a direct child of the directory.
    #[test]
    fn state_files_stay_inside_the_directory() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet: Vec<char> = "ab.-_/\\\0 \n~ä:*".chars().collect();
        for _ in 0..20_000 {
            let len = (rng % 9) as usize;
            let mut name = String::new();
            for _ in 0..len {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                name.push(alphabet[(rng % alphabet.len() as u64) as usize]);
            }
            if let Ok(path) = state_file(Path::new("/state"), &name, "jsonl") {
                assert_eq!(path.parent(), Some(Path::new("/state")), "{name:?}");
                assert!(
                    path.components()
                        .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
                    "{name:?}"
                );
            }
        }
    }
}
