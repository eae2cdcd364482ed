//! Located input errors: `file:line:column`, the offending line with a caret, and a hint.
//!
//! Every parser (inventory, playbook, templates) reports problems as [`Diagnostic`]s so that
//! `capstan validate` can collect all of them, sort them by file and line, and print them the
//! same way.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::secrets;

/// One problem in one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (a missing file, say).
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    pub message: String,
    /// The text of the offending line, shown with a caret under `column`.
    pub source_line: Option<String>,
    /// How many characters the caret underlines (at least 1).
    pub width: usize,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem with no position inside the file.
    pub fn in_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
            source_line: None,
            width: 1,
            hint: None,
        }
    }

    /// A problem at byte range `span` of `source` (the whole text of `file`).
    pub fn at_span(
        file: impl Into<PathBuf>,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column, text) = locate(source, span.start);
        let end = span.end.min(source.len()).max(span.start);
        let width = source
            .get(span.start..end)
            .map_or(1, |s| s.lines().next().unwrap_or("").chars().count().max(1));
        Self {
            file: file.into(),
            line,
            column,
            message: message.into(),
            source_line: Some(text.to_owned()),
            width,
            hint: None,
        }
    }

    /// A problem at a 1-based line (and column) of `source`.
    pub fn at_line(
        file: impl Into<PathBuf>,
        source: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        let text = source.lines().nth(line.saturating_sub(1)).map(str::to_owned);
        Self {
            file: file.into(),
            line,
            column: column.max(1),
            message: message.into(),
            source_line: text,
            width: 1,
            hint: None,
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `file:line:column`, or just `file` when there is no position.
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// 1-based line and column of byte `offset` in `source`, and the text of that line.
pub fn locate(source: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line_end = source[line_start..]
        .find('\n')
        .map_or(source.len(), |i| line_start + i);
    (line, column, source[line_start..line_end].trim_end_matches('\r'))
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", secrets::mask(&self.message))?;
        write!(f, "  --> {}", self.location())?;
        if let Some(text) = &self.source_line {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            let caret_pad: String = text
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{pad} |\n{} | {}\n{pad} | {caret_pad}{}",
                self.line,
                secrets::mask(text),
                "^".repeat(self.width.max(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {}", secrets::mask(hint))?;
        }
        Ok(())
    }
}

/// Every problem found in one pass, sorted by file and line when printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Sorted by file, line, column; exact duplicates removed.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        self.0.dedup();
        self
    }
    /// `Ok(value)` when nothing was reported.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The candidate closest to `name`, when it is close enough to be a plausible typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean "x"?` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, candidates).map_or_else(String::new, |s| format!("; did you mean \"{s}\"?"))
}

/// Reads an input file, turning an I/O failure into a diagnostic naming the file.
pub fn read_source(path: &Path) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::in_file(path, format!("cannot read `{}`: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column() {
        let src = "a = 1\nserail = 2\n";
        let d = Diagnostic::at_span("p.toml", src, 6..12, "unknown key");
        assert_eq!((d.line, d.column, d.width), (2, 1, 6));
        let shown = d.to_string();
        assert!(shown.contains("  --> p.toml:2:1"), "{shown}");
        assert!(shown.contains("2 | serail = 2"), "{shown}");
        assert!(shown.contains("  | ^^^^^^"), "{shown}");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("serail", ["serial", "hosts", "name"]), Some("serial"));
        assert_eq!(suggest("zzz", ["serial", "hosts"]), None);
    }

    #[test]
    fn sorts_by_file_and_line() {
        let mut ds = Diagnostics::default();
        ds.push(Diagnostic::at_line("b.toml", "x", 1, 1, "b1"));
        ds.push(Diagnostic::at_line("a.toml", "x\ny", 2, 1, "a2"));
        ds.push(Diagnostic::at_line("a.toml", "x", 1, 1, "a1"));
        let msgs: Vec<_> = ds.sorted().0.into_iter().map(|d| d.message).collect();
        assert_eq!(msgs, ["a1", "a2", "b1"]);
    }
}
