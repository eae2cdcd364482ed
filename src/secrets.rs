//! Secret values and their masking.
//!
//! A variable that comes from `{ env = ... }` or `{ file = ... }` is a secret. Its value is
//! registered here when it is resolved, and every byte capstan prints, logs or writes to a
//! report passes through [`mask`], which replaces each registered value with `********`.
//! Masking by value (rather than by variable) also catches a secret that was copied into
//! another variable, rendered into a command, or echoed back by a host.
//!
//! A secret rarely stays in its raw form: a command quotes it for the shell, a plan or an
//! event stream escapes it for JSON, a JUnit file for XML, and a line-by-line diff or
//! `stdout_lines` cuts a multi-line value into lines. [`forms`] lists every form masked.

use std::borrow::Cow;
use std::sync::RwLock;

/// What every secret is replaced with in output.
pub const MASK: &str = "********";

/// The shortest secret the inventory accepts, and the shortest line of a multi-line secret
/// masked on its own: masking shorter text would garble the output and reveal the secret
/// by where the mask appears.
pub const MIN_LEN: usize = 8;

/// A set of secrets in every form, longest first, and the masking of text by them.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    forms: Vec<String>,
}

impl Masker {
    pub const fn new() -> Self {
        Self { forms: Vec::new() }
    }

    /// Adds `value` in every form it may take in output. Empty values are ignored (they
    /// would mask everything).
    pub fn add(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        let before = self.forms.len();
        for form in forms(value) {
            if !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        if self.forms.len() != before {
            // Longest first, so a form that contains another is masked whole.
            self.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every form of every secret replaced by [`MASK`].
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.forms {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// True when `text` is one of the forms masked.
    pub fn contains(&self, text: &str) -> bool {
        self.forms.iter().any(|s| s == text)
    }
}

static SECRETS: RwLock<Masker> = RwLock::new(Masker::new());

/// Remembers `value` as a secret of this process, in every form it may take in output.
pub fn register(value: &str) {
    SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .add(value);
}

/// A PEM armor line (`-----BEGIN CERTIFICATE-----`): the same in every PEM file, so it
/// tells nothing about the secret around it, and masking it alone would garble every
/// certificate capstan reads (a CA fetched from a host, say). The whole value and its other
/// lines are still masked.
fn is_public_armor(line: &str) -> bool {
    (line.starts_with("-----BEGIN ") || line.starts_with("-----END "))
        && line.ends_with("-----")
        && line.len() <= 64
}

/// Every form of `value` that [`mask`] replaces: the value, its trimmed form and each line
/// of at least [`MIN_LEN`] characters, each as written, shell-quoted (the inside of
/// `'…'` as [`crate::template::shell_quote`] writes it), JSON-escaped, XML-escaped, and
/// JSON- or XML-escaped after shell quoting (a quoted command inside a plan or a report).
pub fn forms(value: &str) -> Vec<String> {
    let mut bases = vec![value.to_owned()];
    let trimmed = value.trim();
    if trimmed != value && !trimmed.is_empty() {
        bases.push(trimmed.to_owned());
    }
    if value.contains(['\n', '\r']) {
        for line in value.lines().map(str::trim) {
            if line.chars().count() >= MIN_LEN && !is_public_armor(line) {
                bases.push(line.to_owned());
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for base in &bases {
        let shell = shell_inner(base);
        for form in [
            json_inner(base),
            xml(base, true),
            xml(base, false),
            json_inner(&shell),
            xml(&shell, true),
            xml(&shell, false),
            shell,
            base.clone(),
        ] {
            if !form.is_empty() && !out.contains(&form) {
                out.push(form);
            }
        }
    }
    out
}

/// The text between the single quotes of the project's shell quoting.
fn shell_inner(s: &str) -> String {
    s.replace('\'', "'\\''")
}

/// `s` as it appears inside a JSON string.
fn json_inner(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

/// `s` as an XML writer escapes it: in an attribute (`quotes`, every special character)
/// or in text (only `&`, `<` and `>`).
fn xml(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Returns `text` with every registered secret replaced by [`MASK`].
pub fn mask(text: &str) -> Cow<'_, str> {
    SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .mask(text)
}

/// [`mask`] for bytes that may not be UTF-8 (command output).
pub fn mask_bytes(bytes: &[u8]) -> String {
    mask(&String::from_utf8_lossy(bytes)).into_owned()
}

/// True when at least one secret is registered.
pub fn any() -> bool {
    !SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_empty()
}

/// True when `text` is a registered secret (in any of its forms).
pub fn is_registered(text: &str) -> bool {
    SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_longest_first() {
        register("hunter2-long");
        register("hunter2-long-extended");
        assert_eq!(
            mask("a hunter2-long b hunter2-long-extended"),
            "a ******** b ********"
        );
        assert_eq!(mask("nothing here"), "nothing here");
    }

    #[test]
    fn masks_trimmed_file_secret() {
        register("s3cr3t-from-file\n");
        assert_eq!(mask("pw=s3cr3t-from-file;"), "pw=********;");
    }

    #[test]
    fn masks_the_shell_quoted_form() {
        let secret = "pa'ss'word-q1";
        register(secret);
        let quoted = crate::template::shell_quote(secret).unwrap_or_default();
        assert_eq!(quoted, "'pa'\\''ss'\\''word-q1'");
        assert_eq!(mask(&format!("echo {quoted}")), "echo '********'");
        // Inside a longer quoted string too.
        let longer = crate::template::shell_quote(&format!("pw={secret} x")).unwrap_or_default();
        assert!(!mask(&longer).contains("word-q1"), "{}", mask(&longer));
    }

    #[test]
    fn masks_json_and_xml_escaped_forms() {
        let secret = "a\"b\\c&<>'é $HOME-x2";
        register(secret);
        let json = serde_json::to_string(&format!("cmd {secret} end")).unwrap_or_default();
        assert_eq!(mask(&json), "\"cmd ******** end\"");
        let xml = format!("<m a=\"{}\">{}</m>", xml(secret, true), xml(secret, false));
        assert_eq!(mask(&xml), "<m a=\"********\">********</m>");
        // A shell-quoted command inside a JSON plan.
        let cmd = crate::template::shell_quote(secret).unwrap_or_default();
        let json = serde_json::to_string(&cmd).unwrap_or_default();
        assert!(!mask(&json).contains("HOME-x2"), "{}", mask(&json));
    }

    #[test]
    fn masks_each_long_line_of_a_multi_line_secret() {
        register("first-line-of-key\nsecond-line-of-key\nend");
        let diff = "+first-line-of-key\n+second-line-of-key\n+end\n";
        assert_eq!(mask(diff), "+********\n+********\n+end\n");
        let lines = serde_json::json!(["first-line-of-key", "second-line-of-key"]).to_string();
        assert_eq!(mask(&lines), "[\"********\",\"********\"]");
    }

    #[test]
    fn pem_armor_lines_stay_readable_but_the_key_lines_do_not() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEF\n-----END PRIVATE KEY-----\n";
        let f = forms(pem);
        assert!(f.contains(&"MIIBVQIBADANBgkqhkiG9w0BAQEF".to_owned()));
        assert!(!f.contains(&"-----BEGIN PRIVATE KEY-----".to_owned()));
        assert!(!f.contains(&"-----END PRIVATE KEY-----".to_owned()));
        assert!(
            f.contains(&pem.to_owned()),
            "the whole value is still a form"
        );
    }

    #[test]
    fn forms_are_distinct_and_never_empty() {
        let f = forms("plain-secret");
        assert_eq!(f, ["plain-secret"]);
        let f = forms(" spaced & 'q' ");
        assert!(f.iter().all(|s| !s.is_empty()));
        assert!(
            f.contains(&"spaced &amp; &apos;q&apos;".to_owned()),
            "{f:?}"
        );
        assert!(f.contains(&" spaced & '\\''q'\\'' ".to_owned()), "{f:?}");
    }
}
