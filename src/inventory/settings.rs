//! Reading `[settings]` into [`Settings`]: every key known, every value typed and checked,
//! each problem at the offending key or value. Durations and sizes follow the one rule of
//! [`crate::duration`] and [`crate::bytesize`].

use std::time::Duration;

use toml::de::{DeInteger, DeTable, DeValue};

use super::input::Input;
use super::value::{Item, Key, entries, kind};
use super::{closest, did_you_mean};
use crate::bytesize::{self, ByteSize, ByteSizeError};
use crate::diag::{Diagnostic, Diagnostics};
use crate::duration::{self, DurationError};
use crate::settings::{
    self, CacheStore, KEYS, MAX_OUTPUT_LIMIT, MIN_CACHE_TTL, MIN_CACHE_TTL_REASON, MIN_KILL_GRACE,
    MIN_KILL_GRACE_REASON, MIN_LOCK_STALE_AFTER, MIN_LOCK_STALE_AFTER_REASON, MIN_OUTPUT_LIMIT,
    OUTPUT_LIMIT_REASON, RemotePath, Settings,
};

const PLACE: &str = "[settings]";

/// The typed settings of the inventory `input`, from its `[settings]` table when it has one.
pub(crate) fn read(
    input: &Input<'_>,
    table: Option<&DeTable<'_>>,
    diags: &mut Diagnostics,
) -> Settings {
    let mut settings = Settings::new(&input.file);
    let mut reader = Reader { input, diags };
    let mut cluster_written = false;
    for (key, item) in table.map(entries).unwrap_or_default() {
        let s = &mut settings;
        match key.get_ref().as_ref() {
            "cache" => set(&mut s.cache, reader.cache(item)),
            "cache_ttl" => set(
                &mut s.cache_ttl,
                reader.duration(item, "cache_ttl", MIN_CACHE_TTL, MIN_CACHE_TTL_REASON),
            ),
            "cluster" => {
                cluster_written = true;
                set(&mut s.cluster, reader.cluster(item));
            }
            "lock_dir" => s.lock_dir = reader.remote_path(item, "lock_dir"),
            "audit_log" => s.audit_log = reader.remote_path(item, "audit_log"),
            "lock_stale_after" => set(
                &mut s.lock_stale_after,
                reader.duration(
                    item,
                    "lock_stale_after",
                    MIN_LOCK_STALE_AFTER,
                    MIN_LOCK_STALE_AFTER_REASON,
                ),
            ),
            "output_limit" => set(&mut s.output_limit, reader.output_limit(item)),
            "connect_concurrency" => {
                set(&mut s.connect_concurrency, reader.connect_concurrency(item));
            }
            "kill_grace" => set(
                &mut s.kill_grace,
                reader.duration(item, "kill_grace", MIN_KILL_GRACE, MIN_KILL_GRACE_REASON),
            ),
            _ => reader.unknown(key),
        }
    }
    if !cluster_written && let Err(reason) = settings::check_cluster_name(&settings.cluster) {
        reader.diags.push(
            Diagnostic::in_file(
                &input.file,
                format!("the inventory's file name names its cluster lock, and {reason}"),
            )
            .with_hint("name the cluster in [settings], e.g. cluster = \"dtr-prod\""),
        );
    }
    settings
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

struct Reader<'r, 'a> {
    input: &'r Input<'a>,
    diags: &'r mut Diagnostics,
}

impl Reader<'_, '_> {
    fn unknown(&mut self, key: &Key<'_>) {
        let name = key.get_ref().as_ref();
        let mut d = self.input.error(
            key.span(),
            format!(
                "unknown key \"{name}\" in {PLACE}{}",
                did_you_mean(name, &KEYS)
            ),
        );
        if closest(name, &KEYS).is_none() {
            d = d.with_hint(format!("expected one of: {}", KEYS.join(", ")));
        }
        self.diags.push(d);
    }

    fn wrong_type(&mut self, item: &Item<'_>, key: &str, expected: &str) {
        let message = format!(
            "wrong type for \"{key}\" in {PLACE}: expected {expected}, found {}",
            kind(item.get_ref())
        );
        self.diags.push(self.input.error(item.span(), message));
    }

    fn invalid(&mut self, item: &Item<'_>, key: &str, detail: impl std::fmt::Display) {
        let message = format!("invalid value for \"{key}\" in {PLACE}: {detail}");
        self.diags.push(self.input.error(item.span(), message));
    }

    fn string<'t>(&mut self, item: &'t Item<'_>, key: &str, expected: &str) -> Option<&'t str> {
        match item.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(item, key, expected);
                None
            }
        }
    }

    fn cache(&mut self, item: &Item<'_>) -> Option<CacheStore> {
        let expected = "\"local\", \"remote\" or \"off\"";
        let text = self.string(item, "cache", expected)?;
        if let Some((_, store)) = CacheStore::NAMES.iter().find(|(n, _)| *n == text) {
            return Some(*store);
        }
        let names = CacheStore::NAMES.map(|(n, _)| n);
        self.invalid(
            item,
            "cache",
            format!(
                "expected {expected}, found \"{text}\"{}",
                did_you_mean(text, &names)
            ),
        );
        None
    }

    /// A duration by the one rule, at least `min`. A TOML integer is refused with a hint to
    /// write the unit.
    fn duration(
        &mut self,
        item: &Item<'_>,
        key: &str,
        min: Duration,
        reason: &'static str,
    ) -> Option<Duration> {
        let result = match item.get_ref() {
            DeValue::String(text) => duration::parse_at_least(text, min, reason),
            DeValue::Integer(n) => Err(DurationError::bare_number(as_written(n))),
            _ => {
                self.wrong_type(item, key, duration::EXAMPLES);
                return None;
            }
        };
        match result {
            Ok(d) => Some(d),
            Err(e) => {
                self.invalid(item, key, &e);
                if let (Some(hint), Some(last)) = (e.hint(), self.diags.0.last_mut()) {
                    last.hint = Some(hint.to_owned());
                }
                None
            }
        }
    }

    fn cluster(&mut self, item: &Item<'_>) -> Option<String> {
        let name = self.string(item, "cluster", "a cluster name (a string)")?;
        match settings::check_cluster_name(name) {
            Ok(()) => Some(name.to_owned()),
            Err(reason) => {
                self.invalid(item, "cluster", reason);
                None
            }
        }
    }

    fn remote_path(&mut self, item: &Item<'_>, key: &str) -> Option<RemotePath> {
        let raw = self.string(item, key, "a path on the hosts (a string)")?;
        RemotePath::parse(raw)
            .map_err(|reason| self.invalid(item, key, reason))
            .ok()
    }

    fn output_limit(&mut self, item: &Item<'_>) -> Option<ByteSize> {
        let key = "output_limit";
        let size = match item.get_ref() {
            DeValue::String(text) => bytesize::parse(text),
            DeValue::Integer(n) => Err(ByteSizeError::bare_number(as_written(n))),
            _ => {
                self.wrong_type(item, key, "a size like \"512KiB\" or \"1MiB\"");
                return None;
            }
        };
        let size = size.map_err(|e| self.invalid(item, key, e)).ok()?;
        if !(MIN_OUTPUT_LIMIT..=MAX_OUTPUT_LIMIT).contains(&size) {
            self.invalid(
                item,
                key,
                format!("`{size}` is outside {MIN_OUTPUT_LIMIT} to {MAX_OUTPUT_LIMIT}"),
            );
            if let Some(last) = self.diags.0.last_mut() {
                last.hint = Some(OUTPUT_LIMIT_REASON.to_owned());
            }
            return None;
        }
        Some(size)
    }

    fn connect_concurrency(&mut self, item: &Item<'_>) -> Option<usize> {
        let key = "connect_concurrency";
        let Some(n) = integer(item) else {
            self.wrong_type(item, key, "a whole number of hosts, at least 1");
            return None;
        };
        match usize::try_from(n) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                self.invalid(
                    item,
                    key,
                    format!("expected at least 1 host at a time, found {n}"),
                );
                None
            }
        }
    }
}

/// The value of an integer item in any radix, or `None` for anything else (or too large).
fn integer(item: &Item<'_>) -> Option<i64> {
    match item.get_ref() {
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix()).ok(),
        _ => None,
    }
}

/// An integer's value, or its digits when it does not fit in 64 bits.
fn as_written(n: &DeInteger) -> String {
    i64::from_str_radix(n.as_str(), n.radix())
        .map_or_else(|_| n.as_str().to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The settings of inventory `source` read from `path`, or each problem as shown.
    fn read_at(path: &str, source: &str) -> Result<Settings, Vec<String>> {
        let env = |_: &str| None;
        let input = Input::file(Path::new(path), source, &env);
        let doc = DeTable::parse(source).unwrap_or_else(|e| panic!("{e}"));
        let table = doc
            .get_ref()
            .get("settings")
            .and_then(|v| match v.get_ref() {
                DeValue::Table(t) => Some(t.clone()),
                _ => None,
            });
        let mut diags = Diagnostics::default();
        let settings = read(&input, table.as_ref(), &mut diags);
        diags
            .into_result(settings)
            .map_err(|d| d.0.into_iter().map(|d| d.to_string()).collect())
    }

    fn load(source: &str) -> Result<Settings, Vec<String>> {
        read_at("inv/staging.toml", source)
    }

    fn one_error(line: &str) -> String {
        match load(&format!("[settings]\n{line}\n")) {
            Ok(s) => panic!("{line}: accepted as {s:?}"),
            Err(errs) => {
                assert_eq!(errs.len(), 1, "{errs:?}");
                errs[0].clone()
            }
        }
    }

    #[test]
    fn reads_every_key() {
        let s = load(
            "[settings]\ncache = \"remote\"\ncache_ttl = \"1h30m\"\ncluster = \"dtr-prod\"\n\
             lock_dir = \"~/locks\"\naudit_log = \"/var/log/capstan.jsonl\"\n\
             lock_stale_after = \"10s\"\noutput_limit = \"512KiB\"\nconnect_concurrency = 8\n\
             kill_grace = \"3s\"\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.cache().store, CacheStore::Remote);
        assert_eq!(s.cache().ttl, Duration::from_secs(5400));
        assert_eq!(s.cluster(), "dtr-prod");
        assert_eq!(
            s.lock_dir().map(|p| p.shell.as_str()),
            Some("\"$HOME\"/locks")
        );
        assert_eq!(
            s.audit_log().map(|p| p.shell.as_str()),
            Some("/var/log/capstan.jsonl")
        );
        assert_eq!(s.lock_stale_after(), Duration::from_secs(10));
        assert_eq!(s.output_limit(), ByteSize::kib(512));
        assert_eq!(s.connect_concurrency(), 8);
        assert_eq!(s.kill_grace(), Duration::from_secs(3));
    }

    #[test]
    fn no_table_gives_the_defaults() {
        let s = load("[vars]\nx = 1\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.cluster(), "staging");
        assert_eq!(s.cache().store, CacheStore::Local);
    }

    /// Each mistake, as written on line 2, and the first line of its message.
    #[test]
    fn refuses_each_mistake_where_it_is() {
        for (line, message) in [
            (
                "cach = \"off\"",
                "unknown key \"cach\" in [settings]; did you mean \"cache\"?",
            ),
            (
                "cache = \"of\"",
                "invalid value for \"cache\" in [settings]: expected \"local\", \"remote\" or \
                 \"off\", found \"of\"; did you mean \"off\"?",
            ),
            (
                "cache = false",
                "wrong type for \"cache\" in [settings]: expected \"local\", \"remote\" or \
                 \"off\", found a boolean",
            ),
            (
                "cache_ttl = \"soon\"",
                "invalid value for \"cache_ttl\" in [settings]: `soon` is not a duration like \
                 \"90s\", \"2m\" or \"1h30m\"",
            ),
            (
                "cache_ttl = 60",
                "invalid value for \"cache_ttl\" in [settings]: `60` has no unit: write \"60s\" \
                 for seconds or \"60m\" for minutes",
            ),
            (
                "cache_ttl = \"0s\"",
                "invalid value for \"cache_ttl\" in [settings]: `0s` is too short: the minimum \
                 is 1s",
            ),
            (
                "lock_stale_after = 90",
                "invalid value for \"lock_stale_after\" in [settings]: `90` has no unit: write \
                 \"90s\" for seconds or \"90m\" for minutes",
            ),
            (
                "lock_stale_after = \"1s\"",
                "invalid value for \"lock_stale_after\" in [settings]: `1s` is too short: the \
                 minimum is 10s",
            ),
            (
                "cluster = \"bad name/with slash\"",
                "invalid value for \"cluster\" in [settings]: `bad name/with slash` cannot name a \
                 cluster lock: use letters, digits, `.`, `_` and `-`, not starting with `.`",
            ),
            (
                "cluster = 7",
                "wrong type for \"cluster\" in [settings]: expected a cluster name (a string), \
                 found an integer",
            ),
            (
                "lock_dir = \"\"",
                "invalid value for \"lock_dir\" in [settings]: a path cannot be empty",
            ),
            (
                "audit_log = [\"a\"]",
                "wrong type for \"audit_log\" in [settings]: expected a path on the hosts (a \
                 string), found an array",
            ),
            (
                "output_limit = 1048576",
                "invalid value for \"output_limit\" in [settings]: `1048576` has no unit: write \
                 \"1048576B\" for bytes, or use KiB, MiB or GiB",
            ),
            (
                "output_limit = \"1MB\"",
                "invalid value for \"output_limit\" in [settings]: `1MB` uses `MB`: write `MiB` \
                 (capstan counts sizes in powers of 1024)",
            ),
            (
                "output_limit = \"100B\"",
                "invalid value for \"output_limit\" in [settings]: `100B` is outside 1KiB to \
                 1GiB",
            ),
            (
                "connect_concurrency = 0",
                "invalid value for \"connect_concurrency\" in [settings]: expected at least 1 \
                 host at a time, found 0",
            ),
            (
                "connect_concurrency = \"10\"",
                "wrong type for \"connect_concurrency\" in [settings]: expected a whole number \
                 of hosts, at least 1, found a string",
            ),
            (
                "kill_grace = \"500ms\"",
                "invalid value for \"kill_grace\" in [settings]: `500ms` is too short: the minimum \
                 is 1s",
            ),
        ] {
            let shown = one_error(line);
            assert_eq!(
                shown.lines().next(),
                Some(format!("error: {message}").as_str()),
                "{line}"
            );
            let column = if message.starts_with("unknown key") {
                1
            } else {
                line.find('=').unwrap_or(0) + 3
            };
            assert!(
                shown.contains(&format!("--> inv/staging.toml:2:{column}\n")),
                "{line}: {shown}"
            );
        }
    }

    #[test]
    fn minimums_say_why() {
        for (line, reason) in [
            ("lock_stale_after = \"9s\"", MIN_LOCK_STALE_AFTER_REASON),
            ("cache_ttl = \"0s\"", MIN_CACHE_TTL_REASON),
            ("kill_grace = \"0s\"", MIN_KILL_GRACE_REASON),
            ("output_limit = \"2GiB\"", OUTPUT_LIMIT_REASON),
        ] {
            let shown = one_error(line);
            assert!(
                shown.ends_with(&format!("\n  = hint: {reason}")),
                "{line}: {shown}"
            );
        }
    }

    #[test]
    fn a_far_off_key_lists_the_known_ones() {
        let shown = one_error("zzz = 1");
        assert!(
            shown.ends_with(
                "= hint: expected one of: cache, cache_ttl, cluster, lock_dir, lock_stale_after, \
                 audit_log, output_limit, connect_concurrency, kill_grace"
            ),
            "{shown}"
        );
    }

    #[test]
    fn reports_every_mistake_of_the_table() {
        let errs = load("[settings]\ncach = \"off\"\ncache_ttl = 60\nlock_stale_after = \"1s\"\n")
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn an_unusable_file_stem_needs_a_cluster_name() {
        let errs = read_at("my inventory.toml", "").err().unwrap_or_default();
        assert_eq!(
            errs,
            [
                "error: the inventory's file name names its cluster lock, and `my inventory` cannot \
              name a cluster lock: use letters, digits, `.`, `_` and `-`, not starting with `.`\n  \
              --> my inventory.toml\n  = hint: name the cluster in [settings], e.g. cluster = \
              \"dtr-prod\""
            ]
        );
        let named = read_at("my inventory.toml", "[settings]\ncluster = \"prod\"\n");
        assert_eq!(named.map(|s| s.cluster().to_owned()), Ok("prod".to_owned()));
    }
}
