//! The one way capstan reads a duration, wherever it is written: inventory timeouts,
//! `[settings]`, playbook task timeouts, DTR parameters and command-line flags.
//!
//! The rule: one or more `NUMBER UNIT` parts, largest unit first, each unit at most once:
//! `"90s"`, `"2m"`, `"1h30m"`, `"1h 30m"`, `"250ms"` (spaces between parts are allowed).
//! Units are `d`, `h`, `m`, `s` and `ms`. A number without a unit is refused, with a hint to
//! add one: `timeout = 90` could mean seconds or minutes, and the operator should say which.

use std::time::Duration;

/// The units a duration may use, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// How a duration is written, for messages: `a duration like "90s", "2m" or "1h30m"`.
pub(crate) const EXAMPLES: &str = "a duration like \"90s\", \"2m\" or \"1h30m\"";

/// Why a text is not a duration. Each message quotes the text and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("an empty text is not {EXAMPLES}")]
    Empty,
    /// `90`, or `1h30`: a number with no unit.
    #[error("`{text}` has no unit: write {}", suggest_unit(text, number))]
    NoUnit { text: String, number: String },
    #[error(
        "`{text}` has an unknown unit `{unit}`: use d, h, m, s or ms{}",
        unit_hint(unit)
    )]
    UnknownUnit { text: String, unit: String },
    /// `30m1h`, `1m1m`: units out of order or repeated.
    #[error(
        "`{text}` repeats a unit or puts a smaller one first: write the largest first, like \"1h30m\""
    )]
    Order { text: String },
    #[error("`{text}` is not {EXAMPLES}")]
    Malformed { text: String },
    #[error("`{text}` is too long to be a duration")]
    Overflow { text: String },
    /// A duration below what the setting needs; [`DurationError::hint`] gives `reason`.
    #[error("`{text}` is too short: the minimum is {min}", min = crate::duration::format(*min))]
    TooShort {
        text: String,
        min: Duration,
        reason: &'static str,
    },
}

impl DurationError {
    /// Why a minimum exists, for a hint under the message.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            DurationError::TooShort { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The error for a bare number written where a duration belongs (a TOML integer).
    pub fn bare_number(n: impl std::fmt::Display) -> Self {
        let text = n.to_string();
        DurationError::NoUnit {
            number: text.clone(),
            text,
        }
    }
}

/// `"90s"` for `90`; for `1h30`, `"1h30m"` or `"1h30s"`.
fn suggest_unit(text: &str, number: &str) -> String {
    if text == number {
        format!("\"{number}s\" for seconds or \"{number}m\" for minutes")
    } else {
        format!("the unit of `{number}`, like \"{text}m\" or \"{text}s\"")
    }
}

fn unit_hint(unit: &str) -> &'static str {
    match unit.to_ascii_lowercase().as_str() {
        "sec" | "secs" | "second" | "seconds" => " (\"s\" for seconds)",
        "min" | "mins" | "minute" | "minutes" => " (\"m\" for minutes)",
        "hr" | "hrs" | "hour" | "hours" => " (\"h\" for hours)",
        "day" | "days" => " (\"d\" for days)",
        "w" | "week" | "weeks" => " (a week is \"7d\")",
        _ => "",
    }
}

/// Reads `text` by the rule in the module comment; surrounding whitespace is ignored.
///
/// # Errors
/// The text is empty, has a number without a unit, an unknown unit, units out of order,
/// anything else, or is longer than `u64` milliseconds.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || trimmed.to_owned();
    let mut rest = trimmed;
    let mut total: u64 = 0;
    let mut last_rank: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(DurationError::Malformed { text: owned() });
        }
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let letters = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            return Err(if after.is_empty() {
                DurationError::NoUnit {
                    text: owned(),
                    number: number.to_owned(),
                }
            } else {
                DurationError::Malformed { text: owned() }
            });
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                text: owned(),
                unit: unit.to_owned(),
            });
        };
        if last_rank.is_some_and(|r| r >= rank) {
            return Err(DurationError::Order { text: owned() });
        }
        last_rank = Some(rank);
        let millis = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[rank].1))
            .and_then(|ms| total.checked_add(ms));
        total = millis.ok_or_else(|| DurationError::Overflow { text: owned() })?;
        rest = after.trim_start();
    }
    Ok(Duration::from_millis(total))
}

/// [`parse`], then refuses anything shorter than `min`, giving `reason`.
///
/// # Errors
/// As [`parse`], and [`DurationError::TooShort`].
pub(crate) fn parse_at_least(
    text: &str,
    min: Duration,
    reason: &'static str,
) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if d < min {
        return Err(DurationError::TooShort {
            text: text.trim().to_owned(),
            min,
            reason,
        });
    }
    Ok(d)
}

/// A duration written by the same rule, so that what capstan prints can be pasted back:
/// `1h30m`, `90s` is `1m30s`, `250ms`, `0s`.
pub fn format(d: Duration) -> String {
    let mut left = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if left == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        let n = left / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            left %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000;

    #[test]
    fn reads_every_form_the_rule_allows() {
        for (text, millis) in [
            ("90s", 90 * S),
            ("2m", 120 * S),
            ("1h30m", 5_400 * S),
            ("1h 30m", 5_400 * S),
            ("5 s", 5 * S),
            ("  7d ", 7 * 86_400 * S),
            ("1d2h3m4s5ms", 93_784 * S + 5),
            ("250ms", 250),
            ("0s", 0),
            ("10m0s", 600 * S),
            ("007s", 7 * S),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(millis)), "{text:?}");
        }
    }

    #[test]
    fn refuses_every_other_form_with_a_reason() {
        let no_unit = |text: &str, number: &str| DurationError::NoUnit {
            text: text.into(),
            number: number.into(),
        };
        let malformed = |text: &str| DurationError::Malformed { text: text.into() };
        let order = |text: &str| DurationError::Order { text: text.into() };
        let unknown = |text: &str, unit: &str| DurationError::UnknownUnit {
            text: text.into(),
            unit: unit.into(),
        };
        for (text, want) in [
            ("", DurationError::Empty),
            ("   ", DurationError::Empty),
            ("90", no_unit("90", "90")),
            ("1h30", no_unit("1h30", "30")),
            ("1h 30", no_unit("1h 30", "30")),
            ("soon", malformed("soon")),
            ("-5s", malformed("-5s")),
            ("1.5h", malformed("1.5h")),
            ("s", malformed("s")),
            ("5s!", malformed("5s!")),
            ("1 2s", malformed("1 2s")),
            ("30m1h", order("30m1h")),
            ("1m1m", order("1m1m")),
            ("5 parsecs", unknown("5 parsecs", "parsecs")),
            ("5parsecs", unknown("5parsecs", "parsecs")),
            ("10sec", unknown("10sec", "sec")),
            ("2M", unknown("2M", "M")),
            ("1w", unknown("1w", "w")),
            (
                "99999999999999999999d",
                DurationError::Overflow {
                    text: "99999999999999999999d".into(),
                },
            ),
            (
                "213503982334601d",
                DurationError::Overflow {
                    text: "213503982334601d".into(),
                },
            ),
        ] {
            assert_eq!(parse(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn messages_say_how_to_fix_the_text() {
        let msg = |text: &str| parse(text).map_or_else(|e| e.to_string(), |d| format!("{d:?}"));
        assert_eq!(
            msg("90"),
            "`90` has no unit: write \"90s\" for seconds or \"90m\" for minutes"
        );
        assert_eq!(
            msg("1h30"),
            "`1h30` has no unit: write the unit of `30`, like \"1h30m\" or \"1h30s\""
        );
        assert_eq!(
            msg("soon"),
            "`soon` is not a duration like \"90s\", \"2m\" or \"1h30m\""
        );
        assert_eq!(
            msg("10secs"),
            "`10secs` has an unknown unit `secs`: use d, h, m, s or ms (\"s\" for seconds)"
        );
        assert_eq!(
            msg("30m1h"),
            "`30m1h` repeats a unit or puts a smaller one first: write the largest first, like \"1h30m\""
        );
        assert_eq!(
            DurationError::bare_number(60).to_string(),
            "`60` has no unit: write \"60s\" for seconds or \"60m\" for minutes"
        );
    }

    #[test]
    fn minimums_give_their_reason() {
        let min = Duration::from_secs(10);
        assert_eq!(
            parse_at_least("10s", min, "why"),
            Ok(Duration::from_secs(10))
        );
        let e = parse_at_least(" 1s", min, "heartbeats need time");
        assert_eq!(
            e.as_ref().map_err(ToString::to_string),
            Err("`1s` is too short: the minimum is 10s".to_owned())
        );
        assert_eq!(e.err().and_then(|e| e.hint()), Some("heartbeats need time"));
        assert_eq!(parse("x").err().and_then(|e| e.hint()), None);
        assert!(matches!(
            parse_at_least("ten", min, "why"),
            Err(DurationError::Malformed { .. })
        ));
    }

    #[test]
    fn formats_as_it_parses() {
        for (millis, text) in [
            (0, "0s"),
            (250, "250ms"),
            (90 * S, "1m30s"),
            (5_400 * S, "1h30m"),
            (7 * 86_400 * S, "7d"),
            (93_784 * S + 5, "1d2h3m4s5ms"),
        ] {
            let d = Duration::from_millis(millis);
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d), "{text} reads back");
        }
    }
}
