//! `serial` and `max_fail_percentage`: how many hosts a play changes at a time, and how many
//! may fail before it stops.

use toml::de::DeValue;

use super::BatchSize;
use super::checker::{Checker, Value, integer, number};

const EXPECTED: &str = "a number, a percentage like \"30%\", or a list of them";

/// `serial = 1`, `serial = "30%"` or `serial = [1, "50%"]`.
pub(crate) fn serial(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
) -> Option<Vec<BatchSize>> {
    match value.get_ref() {
        DeValue::Array(items) if items.is_empty() => {
            ck.error_with_hint(
                value.span(),
                format!("key \"serial\" in {place} must not be an empty list"),
                "leave \"serial\" out to run on all hosts in one batch",
            );
            None
        }
        DeValue::Array(items) => {
            let sizes: Vec<_> = items
                .iter()
                .map(|item| batch_size(ck, item, place))
                .collect();
            sizes.into_iter().collect()
        }
        _ => batch_size(ck, value, place).map(|size| vec![size]),
    }
}

fn batch_size(ck: &mut Checker<'_>, value: &Value<'_>, place: &str) -> Option<BatchSize> {
    match value.get_ref() {
        DeValue::Integer(i) => match integer(value.get_ref()).and_then(|n| usize::try_from(n).ok())
        {
            Some(n) if n > 0 => Some(BatchSize::Count(n)),
            _ => {
                ck.error(
                    value.span(),
                    format!("key \"serial\" in {place} must be at least 1, not {i}"),
                );
                None
            }
        },
        DeValue::String(text) => percent(ck, value, text, place),
        _ => {
            ck.wrong_type(value, "serial", place, EXPECTED);
            None
        }
    }
}

fn percent(ck: &mut Checker<'_>, value: &Value<'_>, text: &str, place: &str) -> Option<BatchSize> {
    let parsed = text
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite());
    match parsed {
        Some(p) if p > 0.0 && p <= 100.0 => Some(BatchSize::Percent(p)),
        Some(_) => {
            ck.error(
                value.span(),
                format!(
                    "key \"serial\" in {place} must be a percentage above 0% and at most 100%, \
                     not \"{text}\""
                ),
            );
            None
        }
        None => {
            let message = format!(
                "key \"serial\" in {place} has \"{text}\", which is not a percentage like \"30%\""
            );
            if text.trim().parse::<u64>().is_ok() {
                let hint = format!(
                    "write a number of hosts without quotes: serial = {}",
                    text.trim()
                );
                ck.error_with_hint(value.span(), message, hint);
            } else {
                ck.error(value.span(), message);
            }
            None
        }
    }
}

/// `max_fail_percentage`: a number from 0 to 100.
pub(crate) fn max_fail_percentage(
    ck: &mut Checker<'_>,
    value: &Value<'_>,
    place: &str,
) -> Option<f64> {
    const KEY: &str = "max_fail_percentage";
    let Some(p) = number(value.get_ref()) else {
        ck.wrong_type(value, KEY, place, "a number from 0 to 100");
        return None;
    };
    if (0.0..=100.0).contains(&p) {
        Some(p)
    } else {
        ck.error(
            value.span(),
            format!("key \"{KEY}\" in {place} must be from 0 to 100, not {p}"),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::de::DeTable;

    use super::*;

    fn parse_serial(text: &str) -> Result<Vec<BatchSize>, Vec<String>> {
        let source = format!("serial = {text}\n");
        let doc = DeTable::parse(&source).expect("test TOML parses");
        let value = doc.get_ref().get("serial").expect("serial").clone();
        let mut ck = Checker::new(Path::new("t.toml"), &source);
        let got = serial(&mut ck, &value, "play \"p\"");
        let errors: Vec<String> = ck.diags.0.into_iter().map(|d| d.message).collect();
        got.filter(|_| errors.is_empty()).ok_or(errors)
    }

    #[test]
    fn accepts_counts_percentages_and_lists() {
        assert_eq!(parse_serial("1"), Ok(vec![BatchSize::Count(1)]));
        assert_eq!(parse_serial("\"30%\""), Ok(vec![BatchSize::Percent(30.0)]));
        assert_eq!(
            parse_serial("\"12.5%\""),
            Ok(vec![BatchSize::Percent(12.5)])
        );
        assert_eq!(
            parse_serial("[1, \"50%\", 100]"),
            Ok(vec![
                BatchSize::Count(1),
                BatchSize::Percent(50.0),
                BatchSize::Count(100)
            ])
        );
    }

    #[test]
    fn rejects_empty_and_out_of_range_batches() {
        for bad in [
            "0",
            "-2",
            "\"0%\"",
            "\"150%\"",
            "\"abc%\"",
            "\"3\"",
            "[]",
            "[1, \"abc\"]",
            "true",
        ] {
            let got = parse_serial(bad);
            assert!(matches!(&got, Err(e) if e.len() == 1), "{bad}: {got:?}");
        }
        assert_eq!(
            parse_serial("0"),
            Err(vec![
                "key \"serial\" in play \"p\" must be at least 1, not 0".to_owned()
            ])
        );
    }

    #[test]
    fn reports_every_bad_item_of_a_list() {
        let got = parse_serial("[0, 2, \"x%\"]");
        assert!(matches!(&got, Err(e) if e.len() == 2), "{got:?}");
    }
}
