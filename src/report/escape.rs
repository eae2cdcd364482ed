//! Host output is data: before text reaches a terminal (or a format that cannot hold
//! control characters, such as XML 1.0), every control character other than newline and
//! tab is shown as an escape (`\x1b`, `\r`, `\u{9b}`), so a host cannot replay terminal
//! sequences (window title, line erase, cursor moves), overwrite a line with a carriage
//! return, or reorder text with bidirectional overrides.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character except `\n` and `\t` escaped.
pub fn controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        // C0, DEL and C1 controls.
        c if c.is_control() => true,
        // Bidirectional embeddings, overrides and isolates reorder what is shown.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// Writes `text` as log lines: the first after `prefix`, each further line indented by the
/// prefix's width, so a newline inside a value can never start a line of its own that looks
/// like a new (timestamped) log line. Control characters are escaped.
pub fn log_lines(prefix: &str, text: &str) -> String {
    frame_lines(prefix, &controls(text))
}

/// [`log_lines`] for text already escaped (and perhaps painted by capstan): the framing
/// without the escaping.
pub fn frame_lines(prefix: &str, text: &str) -> String {
    let pad = " ".repeat(prefix.chars().count() + 2);
    let mut out = String::with_capacity(text.len() + prefix.len() + 1);
    for (i, line) in text.split('\n').enumerate() {
        if i == 0 {
            out.push_str(prefix);
            out.push(' ');
        } else {
            out.push_str(&pad);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_replayed() {
        assert_eq!(
            controls("a\x1b]0;pwned\x07b\rc\x08\x7f\u{9b}2J"),
            "a\\x1b]0;pwned\\x07b\\rc\\x08\\x7f\\u{9b}2J"
        );
        assert_eq!(controls("keep\ttabs\nand lines"), "keep\ttabs\nand lines");
        assert_eq!(controls("bidi \u{202e}txt"), "bidi \\u{202e}txt");
        assert!(matches!(controls("plain ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_newline_in_a_value_cannot_forge_a_log_line() {
        let out = log_lines(
            "2026-01-01T00:00:00Z",
            "web-1 | t | ok (x\n2026-01-01T00:00:01Z web-1 | fake | ok)",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("2026-01-01T00:00:00Z web-1"));
        assert!(lines[1].starts_with("                      2026"), "{out}");
        assert!(out.lines().filter(|l| l.starts_with("2026")).count() == 1);
    }

    /// Whatever the text, nothing escaped survives and every line but the first is indented.
    #[test]
    fn escaping_holds_for_every_control_character() {
        for code in 0u32..0x250 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = format!("a{c}b\nc{c}");
            let out = log_lines("T", &text);
            assert!(out.chars().all(|c| !needs_escape(c)), "{code:#x}");
            for l in out.lines().skip(1) {
                assert!(l.starts_with("   "), "{code:#x}: {out:?}");
            }
        }
    }
}
