//! Secret values and their masking.
//!
//! A variable that comes from `{ env = ... }` or `{ file = ... }` is a secret. Its value is
//! registered here when it is resolved, and every byte capstan prints, logs or writes to a
//! report passes through [`mask`], which replaces each registered value with `********`.
//! Masking by value (rather than by variable) also catches a secret that was copied into
//! another variable, rendered into a command, or echoed back by a host.

use std::borrow::Cow;
use std::sync::RwLock;

/// What every secret is replaced with in output.
pub const MASK: &str = "********";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `value` as a secret. Empty values are ignored (they would mask everything).
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !all.iter().any(|s| s == value) {
        all.push(value.to_owned());
        // Longest first, so a secret that contains another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
    // A secret read from a file usually ends with a newline; mask the trimmed form too.
    let trimmed = value.trim();
    if trimmed != value && !trimmed.is_empty() && !all.iter().any(|s| s == trimmed) {
        all.push(trimmed.to_owned());
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Returns `text` with every registered secret replaced by [`MASK`].
pub fn mask(text: &str) -> Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for secret in all.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_longest_first() {
        register("hunter2");
        register("hunter2-extended");
        assert_eq!(mask("a hunter2 b hunter2-extended"), "a ******** b ********");
        assert_eq!(mask("nothing here"), "nothing here");
    }

    #[test]
    fn masks_trimmed_file_secret() {
        register("s3cr3t-from-file\n");
        assert_eq!(mask("pw=s3cr3t-from-file;"), "pw=********;");
    }
}
