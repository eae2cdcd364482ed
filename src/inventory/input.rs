//! One TOML input being read: its text for locating problems, the directory relative
//! paths start from, and where environment variables come from.
//!
//! Tests pass a fake environment so they never touch the process's real one.

use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;

/// Looks up an environment variable (`std::env::var_os` outside tests).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process environment.
pub(crate) fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

pub(crate) struct Input<'a> {
    /// The file as the operator named it, for messages.
    pub file: PathBuf,
    pub source: &'a str,
    /// Byte offset of the parsed text inside `source` (non-zero for `-e key=value`).
    pub offset: usize,
    /// Where relative paths start.
    pub base_dir: PathBuf,
    pub env: Env<'a>,
}

impl<'a> Input<'a> {
    /// An input file: relative paths start from the file's directory.
    pub fn file(path: &Path, source: &'a str, env: Env<'a>) -> Self {
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            file: path.to_path_buf(),
            source,
            offset: 0,
            base_dir,
            env,
        }
    }

    /// A located problem at `span` of the parsed text.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let span = span.start + self.offset..span.end + self.offset;
        Diagnostic::at_span(&self.file, self.source, span, message)
    }

    /// The value of environment variable `name`, if set.
    pub fn var(&self, name: &str) -> Option<OsString> {
        (self.env)(name)
    }

    /// Expands `~` and makes a relative path start from `base_dir`.
    pub fn resolve_path(&self, text: &str) -> Result<PathBuf, String> {
        let expanded = if text == "~" || text.starts_with("~/") {
            let home = self
                .var("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("cannot expand \"~\" in \"{text}\": HOME is not set"))?;
            let mut path = PathBuf::from(home);
            if let Some(rest) = text.strip_prefix("~/") {
                path.push(rest);
            }
            path
        } else if text.starts_with('~') {
            return Err(format!(
                "cannot expand \"{text}\": only \"~\" and \"~/\" (the current user's home) are supported"
            ));
        } else {
            PathBuf::from(text)
        };
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            self.base_dir.join(expanded)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_env(name: &str) -> Option<OsString> {
        (name == "HOME").then(|| OsString::from("/home/op"))
    }

    #[test]
    fn resolves_home_and_relative_paths() {
        let input = Input::file(Path::new("inv/prod.toml"), "", &fake_env);
        assert_eq!(input.resolve_path("~").unwrap(), PathBuf::from("/home/op"));
        assert_eq!(
            input.resolve_path("~/.ssh/id").unwrap(),
            PathBuf::from("/home/op/.ssh/id")
        );
        assert_eq!(
            input.resolve_path("secrets/k").unwrap(),
            PathBuf::from("inv/secrets/k")
        );
        assert_eq!(
            input.resolve_path("/etc/k").unwrap(),
            PathBuf::from("/etc/k")
        );
        assert!(input.resolve_path("~bob/k").is_err());
    }

    #[test]
    fn bare_file_name_starts_from_current_directory() {
        let input = Input::file(Path::new("prod.toml"), "", &fake_env);
        assert_eq!(input.resolve_path("k").unwrap(), PathBuf::from("./k"));
    }

    #[test]
    fn missing_home_is_an_error() {
        let input = Input::file(Path::new("p.toml"), "", &|_| None);
        let err = input.resolve_path("~/k").unwrap_err();
        assert!(err.contains("HOME is not set"), "{err}");
    }
}
