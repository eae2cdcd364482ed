//! Secrets written as `{ env = "NAME" }` or `{ file = "path" }`, resolved when the
//! inventory loads and registered with [`crate::secrets`] so every output masks them.

use std::ops::Range;

use toml::de::DeTable;

use super::input::Input;
use super::value::{Key, kind};
use crate::diag::Diagnostics;
use crate::secrets;

const SOURCES: [&str; 2] = ["env", "file"];

/// True when `table` is written as a secret: it has an `env` or a `file` key. Any other key
/// beside them is an error that [`resolve`] reports, so a near-miss such as
/// `{ env = "X", other = 1 }` never silently becomes a plain table.
pub(crate) fn is_secret(table: &DeTable<'_>) -> bool {
    table
        .keys()
        .any(|k| SOURCES.contains(&k.get_ref().as_ref()))
}

/// The secret's value, registered for masking; `None` once a problem is reported.
/// `span` is the table's; `what` names the setting, e.g. `"token" in [vars]`.
pub(crate) fn resolve(
    input: &Input<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<String> {
    let mut extra = table
        .iter()
        .filter(|(k, _)| !SOURCES.contains(&k.get_ref().as_ref()))
        .collect::<Vec<_>>();
    extra.sort_by_key(|(k, _)| k.span().start);
    if let Some((key, _)) = extra.first() {
        diags.push(
            input
                .error(
                    key.span(),
                    format!(
                        "unknown key \"{}\" in secret {what}; a secret table allows only \"env\" or \"file\"",
                        key.get_ref().as_ref()
                    ),
                )
                .with_hint("write { env = \"NAME\" } or { file = \"path\" }, nothing else"),
        );
        return None;
    }
    if table.len() != 1 {
        diags.push(
            input
                .error(
                    span,
                    format!("secret {what} has both \"env\" and \"file\"; use exactly one"),
                )
                .with_hint("write { env = \"NAME\" } or { file = \"path\" }"),
        );
        return None;
    }
    let (key, item) = table.iter().next()?;
    let source = key.get_ref().as_ref();
    let Some(text) = item.get_ref().as_str() else {
        diags.push(input.error(
            item.span(),
            format!(
                "wrong type for \"{source}\" in secret {what}: expected a string, found {}",
                kind(item.get_ref())
            ),
        ));
        return None;
    };
    let found = if source == "env" {
        from_env(input, text, what)
    } else {
        from_file(input, text, what)
    };
    match found {
        Ok(value) if value.chars().count() < secrets::MIN_LEN => {
            diags.push(
                input
                    .error(
                        item.span(),
                        format!(
                            "secret {what} is too short ({} characters; at least {} are needed)",
                            value.chars().count(),
                            secrets::MIN_LEN
                        ),
                    )
                    .with_hint(
                        "every occurrence of a secret is masked in output; a short value would be \
                         masked inside ordinary words, garbling the output and revealing the \
                         secret by where the mask appears",
                    ),
            );
            None
        }
        Ok(value) => {
            secrets::register(&value);
            Some(value)
        }
        Err((message, hint)) => {
            let mut d = input.error(item.span(), message);
            if let Some(hint) = hint {
                d = d.with_hint(hint);
            }
            diags.push(d);
            None
        }
    }
}

/// Refuses a host, group or variable name in `doc` that equals a secret's value: masking
/// would hide every mention of that name and so reveal the secret. Located at the name.
pub(crate) fn refuse_names_equal_to_secrets(
    input: &Input<'_>,
    doc: &DeTable<'_>,
    diags: &mut Diagnostics,
) {
    let mut names: Vec<(&'static str, &Key<'_>)> = Vec::new();
    for (key, item) in doc {
        let Some(table) = item.get_ref().as_table() else {
            continue;
        };
        match key.get_ref().as_ref() {
            "vars" => names.extend(table.keys().map(|k| ("variable", k))),
            section @ ("hosts" | "groups") => {
                let kind = if section == "hosts" { "host" } else { "group" };
                for (name, entry) in table {
                    names.push((kind, name));
                    if let Some(vars) = entry
                        .get_ref()
                        .as_table()
                        .and_then(|t| t.get("vars"))
                        .and_then(|v| v.get_ref().as_table())
                    {
                        names.extend(vars.keys().map(|k| ("variable", k)));
                    }
                }
            }
            _ => {}
        }
    }
    names.sort_by_key(|(_, k)| k.span().start);
    for (kind, key) in names {
        let name = key.get_ref().as_ref();
        if secrets::is_registered(name) {
            diags.push(
                input
                    .error(
                        key.span(),
                        format!("{kind} name \"{name}\" is also the value of a secret"),
                    )
                    .with_hint(
                        "every occurrence of a secret is masked in output, so each mention of \
                         this name would be masked and reveal the secret; choose another secret",
                    ),
            );
        }
    }
}

type Problem = (String, Option<String>);

fn from_env(input: &Input<'_>, name: &str, what: &str) -> Result<String, Problem> {
    let Some(value) = input.var(name) else {
        return Err((
            format!("environment variable \"{name}\" for secret {what} is not set"),
            Some(format!("export {name} before running capstan")),
        ));
    };
    let value = value.into_string().map_err(|_| {
        (
            format!("environment variable \"{name}\" for secret {what} is not valid UTF-8"),
            None,
        )
    })?;
    if value.is_empty() {
        return Err((
            format!("environment variable \"{name}\" for secret {what} is empty"),
            None,
        ));
    }
    Ok(value)
}

fn from_file(input: &Input<'_>, name: &str, what: &str) -> Result<String, Problem> {
    let path = input.resolve_path(name).map_err(|e| (e, None))?;
    let hint = Some(format!(
        "relative paths start from the file's directory; this one is `{}`",
        path.display()
    ));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            std::io::ErrorKind::InvalidData => "not valid UTF-8".to_owned(),
            _ => e.to_string(),
        };
        (
            format!("cannot read secret file \"{name}\" for {what}: {reason}"),
            hint.clone(),
        )
    })?;
    // Editors end files with a newline that is not part of the secret.
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err((format!("secret file \"{name}\" for {what} is empty"), hint));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::*;

    fn env(name: &str) -> Option<OsString> {
        match name {
            "CAPSTAN_T_SECRET" => Some("env-s3cret-7f1".into()),
            "CAPSTAN_T_EMPTY" => Some(OsString::new()),
            _ => None,
        }
    }

    fn resolve_in(dir: &Path, src: &str) -> Result<String, Diagnostics> {
        let doc = DeTable::parse(src).unwrap();
        let item = &doc.get_ref()["s"];
        let input = Input::file(&dir.join("inv.toml"), src, &env);
        let mut diags = Diagnostics::default();
        let table = item.get_ref().as_table().unwrap();
        assert!(is_secret(table));
        let value = resolve(&input, table, item.span(), "\"s\" in [vars]", &mut diags);
        match value {
            Some(v) if diags.is_empty() => Ok(v),
            _ => Err(diags),
        }
    }

    #[test]
    fn reads_env_and_registers_it() {
        let dir = tempfile::tempdir().unwrap();
        let value = resolve_in(dir.path(), "s = { env = \"CAPSTAN_T_SECRET\" }\n").unwrap();
        assert_eq!(value, "env-s3cret-7f1");
        assert_eq!(secrets::mask("x env-s3cret-7f1 y"), "x ******** y");
    }

    #[test]
    fn missing_and_empty_env_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_in(dir.path(), "s = { env = \"CAPSTAN_T_NOPE\" }\n").unwrap_err();
        assert_eq!(
            err.0[0].message,
            "environment variable \"CAPSTAN_T_NOPE\" for secret \"s\" in [vars] is not set"
        );
        assert_eq!((err.0[0].line, err.0[0].column), (1, 13));
        let err = resolve_in(dir.path(), "s = { env = \"CAPSTAN_T_EMPTY\" }\n").unwrap_err();
        assert!(err.0[0].message.ends_with("is empty"), "{err}");
    }

    #[test]
    fn reads_file_relative_to_inventory_and_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/k"), "file-s3cret-91c\n\n").unwrap();
        let value = resolve_in(dir.path(), "s = { file = \"secrets/k\" }\n").unwrap();
        assert_eq!(value, "file-s3cret-91c\n");
    }

    #[test]
    fn missing_file_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_in(dir.path(), "s = { file = \"secrets/none\" }\n").unwrap_err();
        assert_eq!(
            err.0[0].message,
            "cannot read secret file \"secrets/none\" for \"s\" in [vars]: no such file"
        );
    }

    #[test]
    fn both_sources_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_in(
            dir.path(),
            "s = { env = \"CAPSTAN_T_SECRET\", file = \"k\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            err.0[0].message,
            "secret \"s\" in [vars] has both \"env\" and \"file\"; use exactly one"
        );
        assert_eq!(err.0[0].column, 5);
    }

    #[test]
    fn ordinary_tables_are_not_secrets() {
        let doc = DeTable::parse("a = { path = \"x\", mode = 1 }\nb = {}\n").unwrap();
        assert!(!is_secret(doc.get_ref()["a"].get_ref().as_table().unwrap()));
        assert!(!is_secret(doc.get_ref()["b"].get_ref().as_table().unwrap()));
    }

    #[test]
    fn near_miss_secret_table_is_an_error_listing_the_allowed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_in(
            dir.path(),
            "s = { env = \"CAPSTAN_T_SECRET\", other = 1 }\n",
        )
        .unwrap_err();
        assert_eq!(
            err.0[0].message,
            "unknown key \"other\" in secret \"s\" in [vars]; a secret table allows only \"env\" or \"file\""
        );
        assert_eq!((err.0[0].line, err.0[0].column), (1, 33));
    }

    #[test]
    fn short_secret_is_refused_and_not_registered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "abc1234\n").unwrap();
        let err = resolve_in(dir.path(), "s = { file = \"k\" }\n").unwrap_err();
        assert_eq!(
            err.0[0].message,
            "secret \"s\" in [vars] is too short (7 characters; at least 8 are needed)"
        );
        assert!(err.0[0].hint.as_deref().unwrap_or("").contains("masked"));
        assert!(!secrets::is_registered("abc1234"));
    }

    #[test]
    fn names_equal_to_a_secret_are_refused_at_the_name() {
        secrets::register("dtr-host-equal-1");
        let src = "[vars]\nok = 1\n\n[hosts.\"dtr-host-equal-1\"]\n[groups.g]\nvars = { \"dtr-host-equal-1x\" = 1 }\n";
        let doc = DeTable::parse(src).unwrap();
        let input = Input::file(Path::new("inv.toml"), src, &env);
        let mut diags = Diagnostics::default();
        refuse_names_equal_to_secrets(&input, doc.get_ref(), &mut diags);
        assert_eq!(diags.0.len(), 1, "{diags}");
        assert_eq!(
            diags.0[0].message,
            "host name \"dtr-host-equal-1\" is also the value of a secret"
        );
        assert_eq!(diags.0[0].line, 4);
    }
}
