//! Walking a spanned TOML table by hand: typed getters that report a located problem and keep
//! going, so that one pass finds every problem in the file.
//!
//! Every message names the key and the place (`play "DTR replicas"`, `task "x"`), and points at
//! the key (unknown keys) or at the value (wrong types and values).

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize as _;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostic, Diagnostics, did_you_mean, locate};

/// A TOML value with its byte range in the source.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;
/// A TOML key with its byte range in the source.
pub(crate) type Key<'i> = Spanned<DeString<'i>>;

/// What the reader of one file has found so far.
pub(crate) struct Checker<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub diags: Diagnostics,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Self {
            file,
            source,
            diags: Diagnostics::default(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::at_span(self.file, self.source, span, message);
        self.diags.push(d);
    }

    pub fn error_with_hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let d = Diagnostic::at_span(self.file, self.source, span, message).with_hint(hint);
        self.diags.push(d);
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        locate(self.source, span.start).0
    }

    /// Reports every key of `table` that is not in `known`, in source order. A key that
    /// Ansible has and capstan does not gets what to write instead; any other, the closest
    /// known key when it is a plausible typo.
    pub fn reject_unknown_keys(&mut self, table: &DeTable<'_>, known: &[&str], place: &str) {
        for (key, _) in entries(table) {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            // Ansible's keywords belong to the playbook, its plays and tasks, not to an
            // action's parameters (`the template of task "x"`).
            let keyword_place =
                place == "the playbook" || place.starts_with("play ") || place.starts_with("task ");
            match ansible_instead(name).filter(|_| keyword_place) {
                Some(instead) => self.error_with_hint(
                    key.span(),
                    format!("unknown key \"{name}\" in {place}: {}", instead.what),
                    instead.hint,
                ),
                None => self.error(
                    key.span(),
                    format!(
                        "unknown key \"{name}\" in {place}{}",
                        typo_of(name, known.iter().copied())
                    ),
                ),
            }
        }
    }

    /// Reports that `key` holds the wrong kind of value.
    pub fn wrong_type(&mut self, value: &Value<'_>, key: &str, place: &str, expected: &str) {
        self.error_with_hint(
            value.span(),
            format!("key \"{key}\" in {place} must be {expected}"),
            format!("found {}", describe(value.get_ref())),
        );
    }

    pub fn string(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(value, key, place, "a string");
                None
            }
        }
    }

    /// A string that must not be empty or blank.
    pub fn non_empty_string(
        &mut self,
        value: &Value<'_>,
        key: &str,
        place: &str,
    ) -> Option<String> {
        let s = self.string(value, key, place)?;
        if s.trim().is_empty() {
            self.error(
                value.span(),
                format!("key \"{key}\" in {place} must not be empty"),
            );
            return None;
        }
        Some(s)
    }

    pub fn bool(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            DeValue::String(s) if ["true", "false", "yes", "no"].contains(&s.as_ref()) => {
                self.error_with_hint(
                    value.span(),
                    format!("key \"{key}\" in {place} must be true or false"),
                    "write true or false without quotes",
                );
                None
            }
            _ => {
                self.wrong_type(value, key, place, "true or false");
                None
            }
        }
    }

    /// A template expression; the booleans `true` and `false` become `"true"` and `"false"`.
    pub fn expression(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => {
                self.wrong_type(value, key, place, "an expression string or true or false");
                None
            }
        }
    }

    /// An integer, reported when it is not a whole number.
    pub fn integer(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<i64> {
        match integer(value.get_ref()) {
            Some(i) => Some(i),
            None => {
                self.wrong_type(value, key, place, "a whole number");
                None
            }
        }
    }

    pub fn u32(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<u32> {
        let i = self.integer(value, key, place)?;
        match u32::try_from(i) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    value.span(),
                    format!(
                        "key \"{key}\" in {place} must be from 0 to {}, not {i}",
                        u32::MAX
                    ),
                );
                None
            }
        }
    }

    /// A duration by the one rule of [`crate::duration`]: `"5s"`, `"2m30s"`; a bare number
    /// is refused with a hint to add a unit.
    pub fn duration(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<Duration> {
        let parsed = match value.get_ref() {
            DeValue::String(text) => crate::duration::parse(text),
            DeValue::Integer(_) => match integer(value.get_ref()) {
                Some(n) => Err(crate::duration::DurationError::bare_number(n)),
                None => {
                    self.wrong_type(value, key, place, crate::duration::EXAMPLES);
                    return None;
                }
            },
            _ => {
                self.wrong_type(value, key, place, crate::duration::EXAMPLES);
                return None;
            }
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(value.span(), format!("key \"{key}\" in {place}: {e}"));
                None
            }
        }
    }

    /// One string, or a list of strings.
    pub fn strings(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<Vec<String>> {
        const EXPECTED: &str = "a string or a list of strings";
        match value.get_ref() {
            DeValue::String(s) => Some(vec![s.to_string()]),
            DeValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        _ => {
                            self.wrong_type(item, key, place, EXPECTED);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.wrong_type(value, key, place, EXPECTED);
                None
            }
        }
    }

    /// Any TOML value, converted for the template engine.
    pub fn toml_value(&mut self, value: &Value<'_>, key: &str, place: &str) -> Option<toml::Value> {
        match toml::Value::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    value.span(),
                    format!("key \"{key}\" in {place} cannot be read: {}", e.message()),
                );
                None
            }
        }
    }
}

/// What capstan says about a key that Ansible has and capstan does not.
pub(crate) struct Instead {
    /// Why the key is refused, after `unknown key "k" in <place>: `.
    pub what: &'static str,
    /// What to write instead.
    pub hint: &'static str,
}

/// Ansible's playbook keywords and modules that capstan does not have, with what to use.
/// Looked up before any "did you mean", so that `delegate_to` never becomes `delay`.
const ANSIBLE_KEYS: &[(&[&str], Instead)] = &[
    (
        &["ignore_errors"],
        Instead {
            what: "capstan has no ignore_errors",
            hint: "write failed_when = \"false\" to go on whatever the command returns (or a condition such as \"result.rc > 1\" with register = \"result\")",
        },
    ),
    (
        &[
            "shell",
            "ansible.builtin.shell",
            "ansible.builtin.command",
            "raw",
        ],
        Instead {
            what: "capstan's action for this is \"command\"",
            hint: "write command = \"...\": it runs through the host's login shell, so pipes, redirections and && work",
        },
    ),
    (
        &[
            "roles",
            "include_role",
            "import_role",
            "include_tasks",
            "import_tasks",
        ],
        Instead {
            what: "capstan has no roles and does not include task files",
            hint: "write the tasks in the play; shared steps can go in a playbook of their own, run with its own `capstan run`, or in a play of the same playbook",
        },
    ),
    (
        &["import_playbook", "include_playbook"],
        Instead {
            what: "a capstan playbook does not import others",
            hint: "put the plays in one file as several [[plays]], or run the playbooks one after the other",
        },
    ),
    (
        &["delegate_to", "local_action", "delegate_facts"],
        Instead {
            what: "capstan runs a task only on its play's hosts; delegation is not supported",
            hint: "put the task in a play whose hosts = \"<the host>\", or use run_once = true to run it on one host of the play",
        },
    ),
    (
        &["become_method", "become_flags", "become_exe"],
        Instead {
            what: "capstan becomes another user with sudo only",
            hint: "write become = true (and become_user); the sudo password is the inventory's become_password, or -K",
        },
    ),
    (
        &[
            "with_items",
            "with_list",
            "with_dict",
            "with_fileglob",
            "with_sequence",
            "loop",
            "loop_control",
        ],
        Instead {
            what: "loops are not supported yet",
            hint: "meanwhile write one task per item, or loop in the command itself: command = \"for x in a b c; do ...; done\"",
        },
    ),
    (
        &["notify", "handlers", "listen"],
        Instead {
            what: "handlers are not supported yet",
            hint: "meanwhile register the task that changes things (register = \"conf\") and give the follow-up task when = \"conf.changed\"",
        },
    ),
    (
        &["check_mode"],
        Instead {
            what: "capstan has no per-task check mode",
            hint: "run the whole playbook with --check (-C) to change nothing, and --diff to see what would change",
        },
    ),
    (
        &["gather_facts", "setup", "facts"],
        Instead {
            what: "capstan gathers no facts",
            hint: "read what you need with a command task and register, or set it in the inventory's vars",
        },
    ),
    (
        &["vars_files", "include_vars"],
        Instead {
            what: "capstan reads variables from the inventory, the play's vars and -e",
            hint: "put them in the inventory's [vars] or a group's vars, or pass -e @vars.toml",
        },
    ),
    (
        &["remote_user"],
        Instead {
            what: "the user to connect as comes from the inventory",
            hint: "set user under [defaults] or on the host in the inventory, or pass -u USER",
        },
    ),
    (
        &["environment"],
        Instead {
            what: "capstan sets no environment for a task",
            hint: "set it in the command: command = \"FOO=bar exec-something\"",
        },
    ),
    (
        &["async", "poll"],
        Instead {
            what: "capstan does not run tasks in the background",
            hint: "give the task a timeout = \"30m\"; hosts already run in parallel up to --forks",
        },
    ),
    (
        &["block", "rescue", "always"],
        Instead {
            what: "capstan has no blocks",
            hint: "give each task its own when; failed_when = \"false\" with register lets a later task react to a failure",
        },
    ),
    (
        &["args", "chdir"],
        Instead {
            what: "a capstan command is one string",
            hint: "write it whole: command = \"cd /some/dir && make\"",
        },
    ),
    (
        &[
            "copy",
            "file",
            "lineinfile",
            "service",
            "systemd",
            "apt",
            "yum",
            "dnf",
            "package",
            "debug",
        ],
        Instead {
            what: "capstan has no such action",
            hint: "render files with template = { src, dest, mode }; do the rest with command, guarded by creates, removes or unless so that it stays idempotent",
        },
    ),
];

/// What to use instead of Ansible key `name`, when capstan does not have it.
pub(crate) fn ansible_instead(name: &str) -> Option<&'static Instead> {
    ANSIBLE_KEYS
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, instead)| instead)
}

/// `; did you mean "k"?` when a known key is a plausible typo of `name`: close by
/// Jaro-Winkler and a few edits away for its length, so that a longer key that merely shares
/// a prefix (`check_mode` and the DTR kind `check`) is not offered as the same thing.
pub(crate) fn typo_of<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let budget = (name.chars().count() / 3).max(1);
    let close: Vec<&str> = known
        .into_iter()
        .filter(|k| strsim::damerau_levenshtein(name, k) <= budget)
        .collect();
    did_you_mean(name, close)
}

/// The entries of `table` in the order they appear in the source.
///
/// `DeTable` sorts its keys unless `toml/preserve_order` is on; messages and "the second
/// action" need source order either way.
pub(crate) fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut out: Vec<_> = table.iter().collect();
    out.sort_by_key(|(k, _)| k.span().start);
    out
}

/// The value of integer `v`, when it is an integer that fits `i64`.
pub(crate) fn integer(v: &DeValue<'_>) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

/// The value of number `v` (integer or float).
pub(crate) fn number(v: &DeValue<'_>) -> Option<f64> {
    match v {
        #[allow(clippy::cast_precision_loss)]
        DeValue::Integer(_) => integer(v).map(|i| i as f64),
        DeValue::Float(f) => f.as_str().parse().ok(),
        _ => None,
    }
}

/// "a string", "an integer", …: what the file has, for hints.
pub(crate) fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string \"{s}\""),
        DeValue::Integer(i) => format!("the integer {i}"),
        DeValue::Float(f) => format!("the number {f}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "a list".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_value<T>(
        text: &str,
        f: impl FnOnce(&mut Checker<'_>, &Value<'_>) -> T,
    ) -> (T, Vec<String>) {
        let source = format!("k = {text}\n");
        let doc = DeTable::parse(&source).expect("test TOML parses");
        let value = doc.get_ref().get("k").expect("key k").clone();
        let mut ck = Checker::new(Path::new("t.toml"), &source);
        let out = f(&mut ck, &value);
        (out, ck.diags.0.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn reads_integers_in_every_radix() {
        for (text, want) in [
            ("42", 42),
            ("-7", -7),
            ("1_000", 1000),
            ("0x1f", 31),
            ("0o17", 15),
        ] {
            let (got, errs) = with_value(text, |ck, v| ck.integer(v, "k", "the playbook"));
            assert_eq!(got, Some(want), "{text}: {errs:?}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        let (d, _) = with_value("\"2m30s\"", |ck, v| ck.duration(v, "delay", "task \"t\""));
        assert_eq!(d, Some(Duration::from_secs(150)));
        for (text, message) in [
            (
                "7",
                "key \"delay\" in task \"t\": `7` has no unit: write \"7s\" for seconds or \"7m\" \
                 for minutes",
            ),
            (
                "\"5 parsecs\"",
                "key \"delay\" in task \"t\": `5 parsecs` has an unknown unit `parsecs`: use d, h, \
                 m, s or ms",
            ),
            (
                "true",
                "key \"delay\" in task \"t\" must be a duration like \"90s\", \"2m\" or \"1h30m\"",
            ),
        ] {
            let (d, errs) = with_value(text, |ck, v| ck.duration(v, "delay", "task \"t\""));
            assert_eq!((d, errs), (None, vec![message.to_owned()]), "{text}");
        }
    }

    #[test]
    fn expressions_accept_booleans() {
        let (e, _) = with_value("false", |ck, v| {
            ck.expression(v, "changed_when", "task \"t\"")
        });
        assert_eq!(e.as_deref(), Some("false"));
        let (e, errs) = with_value("3", |ck, v| ck.expression(v, "changed_when", "task \"t\""));
        assert_eq!((e, errs.len()), (None, 1));
    }

    #[test]
    fn strings_accept_one_or_a_list() {
        let (t, _) = with_value("\"a\"", |ck, v| ck.strings(v, "tags", "play \"p\""));
        assert_eq!(t, Some(vec!["a".to_owned()]));
        let (t, _) = with_value("[\"a\", \"b\"]", |ck, v| {
            ck.strings(v, "tags", "play \"p\"")
        });
        assert_eq!(t, Some(vec!["a".to_owned(), "b".to_owned()]));
        let (t, errs) = with_value("[\"a\", 5]", |ck, v| ck.strings(v, "tags", "play \"p\""));
        assert_eq!(t, None);
        assert_eq!(
            errs,
            ["key \"tags\" in play \"p\" must be a string or a list of strings"]
        );
    }

    #[test]
    fn typos_are_suggested_and_other_concepts_are_not() {
        let known = [
            "hosts",
            "serial",
            "delay",
            "check",
            "retries",
            "become_user",
        ];
        assert_eq!(typo_of("serail", known), "; did you mean \"serial\"?");
        assert_eq!(typo_of("hots", known), "; did you mean \"hosts\"?");
        assert_eq!(
            typo_of("become_usr", known),
            "; did you mean \"become_user\"?"
        );
        assert_eq!(typo_of("delegate_to", known), "");
        assert_eq!(typo_of("check_mode", known), "");
        assert_eq!(typo_of("checks_x", known), "");
    }

    #[test]
    fn ansible_keys_say_what_to_use_instead() {
        let hint = |k: &str| ansible_instead(k).map(|i| i.hint).unwrap_or_default();
        assert!(hint("ignore_errors").contains("failed_when = \"false\""));
        assert!(hint("shell").contains("command = "));
        assert!(hint("check_mode").contains("--check"));
        assert!(hint("delegate_to").contains("hosts = "));
        assert!(hint("become_method").contains("sudo"));
        assert!(ansible_instead("loop").is_some_and(|i| i.what.contains("not supported yet")));
        assert!(ansible_instead("notify").is_some_and(|i| i.what.contains("not supported yet")));
        assert!(ansible_instead("hosts").is_none());
    }

    #[test]
    fn entries_follow_the_source() {
        let doc = DeTable::parse("zeta = 1\nalpha = 2\nmid = 3\n").expect("parses");
        let keys: Vec<String> = entries(doc.get_ref())
            .iter()
            .map(|(k, _)| k.get_ref().to_string())
            .collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
    }
}
