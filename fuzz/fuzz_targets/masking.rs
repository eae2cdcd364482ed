//! A secret and the text around it: once the secret is known to a `Masker`, no form of it
//! that capstan's outputs produce (raw, shell-quoted, JSON- or XML-escaped, a line of it)
//! survives masking, whatever the secret and the text are.
#![no_main]

use capstan::secrets::{MASK, MIN_LEN, Masker};
use capstan::template::shell_quote;
use libfuzzer_sys::fuzz_target;

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fuzz_target!(|input: (String, String, String)| {
    let (secret, before, after) = input;
    // The mask is made of `*`: a secret holding one could be rebuilt from masks and text.
    if secret.chars().count() < MIN_LEN || secret.contains('*') || secret.contains('\0') {
        return;
    }
    if before.contains(&secret) || after.contains(&secret) {
        return;
    }
    let mut masker = Masker::new();
    masker.add(&secret);
    let quoted = shell_quote(&format!("{before}{secret}{after}")).unwrap_or_default();
    let json = serde_json::to_string(&format!("{before}{secret}{after}")).unwrap_or_default();
    let plan = serde_json::to_string(&format!("cmd {quoted}")).unwrap_or_default();
    for (what, text, needle) in [
        ("raw", format!("{before}{secret}{after}"), secret.clone()),
        ("shell", quoted.clone(), secret.replace('\'', "'\\''")),
        ("json", json, serde_json::to_string(&secret).unwrap_or_default().trim_matches('"').to_owned()),
        ("xml", format!("<a m=\"{}\"/>", xml(&format!("{before}{secret}{after}"))), xml(&secret)),
        ("json of shell", plan, serde_json::to_string(&secret.replace('\'', "'\\''")).unwrap_or_default().trim_matches('"').to_owned()),
    ] {
        let masked = masker.mask(&text);
        if needle.is_empty() || !text.contains(&needle) {
            continue;
        }
        assert!(
            !masked.contains(&needle),
            "{what}: {needle:?} survives in {masked:?}"
        );
        assert!(masked.contains(MASK), "{what}: nothing masked in {masked:?}");
    }
    // Each line of a multi-line secret long enough to be masked alone.
    let diff: String = secret.lines().map(|l| format!("+{l}\n")).collect();
    let masked = masker.mask(&diff);
    for line in secret.lines().map(str::trim).filter(|l| l.chars().count() >= MIN_LEN) {
        assert!(!masked.contains(line), "line {line:?} survives in {masked:?}");
    }
});
