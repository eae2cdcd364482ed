//! Spanned TOML values (`toml::de::DeValue`) turned into plain `toml::Value`s and variables,
//! resolving secrets and reporting located problems.

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::input::Input;
use super::secret;
use crate::diag::Diagnostics;
use crate::vars::Vars;

pub(crate) type Key<'i> = Spanned<DeString<'i>>;
pub(crate) type Item<'i> = Spanned<DeValue<'i>>;

/// The type of `value` with an article, for "expected X, found Y".
pub(crate) fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The entries of `table` in the order they appear in the file (toml sorts them by key).
pub(crate) fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Item<'i>)> {
    let mut all: Vec<_> = table.iter().collect();
    all.sort_by_key(|(k, _)| k.span().start);
    all
}

pub(crate) const IDENTIFIER_HINT: &str =
    "variable names are letters, digits and \"_\", not starting with a digit";

/// True for names a template can use as a variable: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A variables table (`[vars]`, a host's or group's `vars`): names must be identifiers and
/// secrets are resolved. `place` says where it is, e.g. `host "dtr-1"`.
pub(crate) fn vars(
    input: &Input<'_>,
    item: &Item<'_>,
    place: &str,
    diags: &mut Diagnostics,
) -> Vars {
    if let DeValue::Table(table) = item.get_ref() {
        return vars_table(input, table, place, diags);
    }
    diags.push(input.error(
        item.span(),
        format!(
            "wrong type for \"vars\" in {place}: expected a table, found {}",
            kind(item.get_ref())
        ),
    ));
    Vars::new()
}

/// [`vars`] for a table already known to be one (a whole `-e @file.toml`).
pub(crate) fn vars_table(
    input: &Input<'_>,
    table: &DeTable<'_>,
    place: &str,
    diags: &mut Diagnostics,
) -> Vars {
    let mut out = Vars::new();
    for (key, value) in entries(table) {
        let name = key.get_ref().as_ref();
        if !is_identifier(name) {
            diags.push(
                input
                    .error(
                        key.span(),
                        format!("invalid variable name \"{name}\" in {place}"),
                    )
                    .with_hint(IDENTIFIER_HINT),
            );
            continue;
        }
        let what = format!("\"{name}\" in {place}");
        if let Some(v) = convert(input, value, &what, true, diags) {
            out.insert(name.to_owned(), v);
        }
    }
    out
}

/// A variable's value; a table written `{ env = .. }` or `{ file = .. }` at any depth is a
/// secret and becomes its string.
pub(crate) fn var_value(
    input: &Input<'_>,
    item: &Item<'_>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<toml::Value> {
    convert(input, item, what, true, diags)
}

fn convert(
    input: &Input<'_>,
    item: &Item<'_>,
    what: &str,
    secrets: bool,
    diags: &mut Diagnostics,
) -> Option<toml::Value> {
    Some(match item.get_ref() {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => {
                diags.push(input.error(
                    item.span(),
                    format!("integer {i} for {what} does not fit in 64 bits"),
                ));
                return None;
            }
        },
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(x) => toml::Value::Float(x),
            Err(_) => {
                diags.push(input.error(item.span(), format!("invalid float {f} for {what}")));
                return None;
            }
        },
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(array) => {
            let mut out = Vec::with_capacity(array.len());
            let mut ok = true;
            for (i, element) in array.iter().enumerate() {
                let what = format!("{what}[{i}]");
                match convert(input, element, &what, secrets, diags) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            toml::Value::Array(out)
        }
        DeValue::Table(table) if secrets && secret::is_secret(table) => {
            toml::Value::String(secret::resolve(input, table, item.span(), what, diags)?)
        }
        DeValue::Table(table) => {
            let mut out = toml::Table::new();
            let mut ok = true;
            for (key, value) in entries(table) {
                let name = key.get_ref().as_ref();
                let what = format!("{what}.{name}");
                match convert(input, value, &what, secrets, diags) {
                    Some(v) => {
                        out.insert(name.to_owned(), v);
                    }
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            toml::Value::Table(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn no_env(_: &str) -> Option<std::ffi::OsString> {
        None
    }

    fn vars_of(src: &str) -> Result<Vars, Diagnostics> {
        let doc = DeTable::parse(src).unwrap();
        let input = Input::file(Path::new("v.toml"), src, &no_env);
        let mut diags = Diagnostics::default();
        let vars = vars(&input, &doc.get_ref()["vars"], "[vars]", &mut diags);
        diags.into_result(vars)
    }

    #[test]
    fn converts_every_toml_type_in_file_order() {
        let src = "[vars]\nz = \"s\"\ny = 0x10\nx = 1.5\nw = true\nv = 1979-05-27\nu = [1, \"a\"]\nt = { b = 1, a = 2 }\n";
        let vars = vars_of(src).unwrap();
        let names: Vec<_> = vars.keys().map(String::as_str).collect();
        assert_eq!(names, ["z", "y", "x", "w", "v", "u", "t"]);
        assert_eq!(vars["y"], toml::Value::Integer(16));
        assert_eq!(vars["x"], toml::Value::Float(1.5));
        assert_eq!(vars["u"].as_array().unwrap().len(), 2);
        assert_eq!(vars["t"]["a"], toml::Value::Integer(2));
        assert!(vars["v"].is_datetime());
    }

    #[test]
    fn rejects_names_templates_cannot_use() {
        let err = vars_of("[vars]\n\"dtr-version\" = 1\n").unwrap_err();
        assert_eq!(
            err.0[0].message,
            "invalid variable name \"dtr-version\" in [vars]"
        );
        assert_eq!((err.0[0].line, err.0[0].column), (2, 1));
    }

    #[test]
    fn reports_integers_too_large() {
        let err = vars_of("[vars]\nn = 99999999999999999999\n").unwrap_err();
        assert_eq!(
            err.0[0].message,
            "integer 99999999999999999999 for \"n\" in [vars] does not fit in 64 bits"
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("dtr_version"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier("a.b"));
    }
}
