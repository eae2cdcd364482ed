//! `-e` extra variables, the highest precedence level: `key=value` and `@file.toml`.
//!
//! A value that parses as a TOML value keeps its type (`n=3` is an integer, `on=true` a
//! boolean, `s="x"` the string `x`, `l=[1, 2]` an array, `pw={ env = "PW" }` a secret);
//! anything else is a plain string (`v=2.7.1`, `answer=NO`). Later arguments win.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::input::{Env, Input, process_env};
use crate::inventory::value;
use crate::vars::Vars;

/// What command-line diagnostics name as their file.
const COMMAND_LINE: &str = "<command line>";

/// Parses every `-e` argument; `cwd` is where relative `@file` paths start.
///
/// # Errors
/// A bad variable name, an argument without `=`, an unreadable or invalid `@file`, or a
/// secret that cannot be resolved; all of them, in argument order.
pub fn parse(args: &[String], cwd: &Path) -> Result<Vars, Diagnostics> {
    parse_with(args, cwd, &process_env)
}

pub(crate) fn parse_with(args: &[String], cwd: &Path, env: Env<'_>) -> Result<Vars, Diagnostics> {
    let mut vars = Vars::new();
    let mut diags = Diagnostics::default();
    for arg in args {
        let found = if let Some(file) = arg.strip_prefix('@') {
            from_file(arg, file, cwd, env, &mut diags)
        } else {
            from_pair(arg, cwd, env, &mut diags)
        };
        for (k, v) in found {
            // Remove first so the variable sits where it was last set.
            vars.shift_remove(&k);
            vars.insert(k, v);
        }
    }
    // In argument order, not sorted: most come from the one "<command line>".
    diags.into_result(vars)
}

fn command_line<'a>(arg: &'a str, cwd: &Path, env: Env<'a>) -> Input<'a> {
    Input {
        file: COMMAND_LINE.into(),
        source: arg,
        offset: 0,
        base_dir: cwd.to_path_buf(),
        env,
    }
}

fn from_pair(arg: &str, cwd: &Path, env: Env<'_>, diags: &mut Diagnostics) -> Vars {
    let mut vars = Vars::new();
    let mut input = command_line(arg, cwd, env);
    let Some((key, text)) = arg.split_once('=') else {
        diags.push(
            input
                .error(0..arg.len(), format!("invalid extra variable `-e {arg}`"))
                .with_hint("write key=value or @file.toml"),
        );
        return vars;
    };
    if !value::is_identifier(key) {
        let message = if key.is_empty() {
            format!("missing variable name in `-e {arg}`")
        } else {
            format!("invalid variable name \"{key}\" in `-e {arg}`")
        };
        diags.push(
            input
                .error(0..key.len(), message)
                .with_hint(value::IDENTIFIER_HINT),
        );
        return vars;
    }
    let parsed = match DeValue::parse(text) {
        Ok(item) => {
            input.offset = key.len() + 1;
            let what = format!("\"{key}\" in `-e`");
            let Some(v) = value::var_value(&input, &item, &what, diags) else {
                return vars;
            };
            v
        }
        Err(_) => toml::Value::String(text.to_owned()),
    };
    vars.insert(key.to_owned(), parsed);
    vars
}

fn from_file(arg: &str, file: &str, cwd: &Path, env: Env<'_>, diags: &mut Diagnostics) -> Vars {
    let input = command_line(arg, cwd, env);
    if file.is_empty() {
        diags.push(
            input
                .error(
                    0..arg.len(),
                    "missing file name after \"@\" in `-e @`".to_owned(),
                )
                .with_hint("write @vars.toml"),
        );
        return Vars::new();
    }
    let path = match input.resolve_path(file) {
        Ok(p) => p,
        Err(e) => {
            diags.push(input.error(1..arg.len(), e));
            return Vars::new();
        }
    };
    let source = match crate::diag::read_source(&path) {
        Ok(s) => s,
        Err(d) => {
            diags.push(d);
            return Vars::new();
        }
    };
    let input = Input::file(&path, &source, env);
    match DeTable::parse(&source) {
        Ok(doc) => {
            let place = format!("`-e {arg}`");
            value::vars_table(&input, doc.get_ref(), &place, diags)
        }
        Err(e) => {
            let message = e.message().lines().next().unwrap_or("invalid TOML");
            let d: Diagnostic = input
                .error(
                    e.span().unwrap_or(0..0),
                    format!("syntax error: {message}{}", not_toml(&path)),
                )
                .with_hint(
                    "extra-vars files are TOML: one `name = value` per line, strings in quotes \
                     (host_dir = \"/srv/app\", replicas = 3)",
                );
            diags.push(d);
            Vars::new()
        }
    }
}

/// `; extra-vars files are TOML, not YAML` for a file named like another format.
fn not_toml(path: &Path) -> String {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("yml" | "yaml") => "; extra-vars files are TOML, not YAML".to_owned(),
        Some("json") => "; extra-vars files are TOML, not JSON".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn env(name: &str) -> Option<OsString> {
        (name == "CAPSTAN_T_EXTRA").then(|| OsString::from("extra-s3cret-2b4"))
    }

    fn parse_args(args: &[&str], cwd: &Path) -> Result<Vars, Diagnostics> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        parse_with(&args, cwd, &env)
    }

    #[test]
    fn values_keep_their_toml_type_or_stay_strings() {
        let vars = parse_args(
            &[
                "n=3",
                "flag=true",
                "s=\"quoted\"",
                "answer=NO",
                "version=2.7.1",
                "list=[1, 2]",
                "empty=",
                "eq=a=b",
            ],
            Path::new("."),
        )
        .unwrap();
        assert_eq!(vars["n"], toml::Value::Integer(3));
        assert_eq!(vars["flag"], toml::Value::Boolean(true));
        assert_eq!(vars["s"], toml::Value::String("quoted".into()));
        assert_eq!(vars["answer"], toml::Value::String("NO".into()));
        assert_eq!(vars["version"], toml::Value::String("2.7.1".into()));
        assert_eq!(vars["list"].as_array().map(Vec::len), Some(2));
        assert_eq!(vars["empty"], toml::Value::String(String::new()));
        assert_eq!(vars["eq"], toml::Value::String("a=b".into()));
    }

    #[test]
    fn later_arguments_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.toml"), "a = 1\nb = \"file\"\n").unwrap();
        let vars = parse_args(&["b=first", "@v.toml", "a=2"], dir.path()).unwrap();
        assert_eq!(vars["a"], toml::Value::Integer(2));
        assert_eq!(vars["b"], toml::Value::String("file".into()));
        let names: Vec<_> = vars.keys().map(String::as_str).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn secrets_resolve_and_register() {
        let vars = parse_args(&["pw={ env = \"CAPSTAN_T_EXTRA\" }"], Path::new(".")).unwrap();
        assert_eq!(vars["pw"], toml::Value::String("extra-s3cret-2b4".into()));
        assert_eq!(crate::secrets::mask("extra-s3cret-2b4"), "********");
    }

    #[test]
    fn missing_secret_is_located_in_the_argument() {
        let err = parse_args(&["pw={ env = \"CAPSTAN_T_NONE\" }"], Path::new(".")).unwrap_err();
        let d = &err.0[0];
        assert_eq!(
            d.message,
            "environment variable \"CAPSTAN_T_NONE\" for secret \"pw\" in `-e` is not set"
        );
        assert_eq!(d.location(), "<command line>:1:12");
    }

    #[test]
    fn bad_keys_name_the_argument() {
        let err = parse_args(&["1x=3", "=3", "novalue", "a.b=1"], Path::new(".")).unwrap_err();
        let messages: Vec<_> = err.0.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "invalid variable name \"1x\" in `-e 1x=3`",
                "missing variable name in `-e =3`",
                "invalid extra variable `-e novalue`",
                "invalid variable name \"a.b\" in `-e a.b=1`",
            ]
        );
    }

    #[test]
    fn a_yaml_file_is_told_that_extra_vars_files_are_toml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vars.yml"), "---\nhost_dir: /srv/app\n").unwrap();
        let err = parse_args(&["@vars.yml"], dir.path()).unwrap_err();
        let d = &err.0[0];
        assert!(
            d.message.ends_with("; extra-vars files are TOML, not YAML"),
            "{err}"
        );
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.starts_with("extra-vars files are TOML")),
            "{err}"
        );
    }

    #[test]
    fn file_errors_are_located_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "ok = 1\n\"bad-name\" = 2\nx = \n",
        )
        .unwrap();
        let err = parse_args(&["@bad.toml"], dir.path()).unwrap_err();
        assert_eq!(err.len(), 1, "{err}");
        assert!(err.0[0].message.starts_with("syntax error:"), "{err}");
        assert_eq!(err.0[0].line, 3);

        std::fs::write(dir.path().join("names.toml"), "ok = 1\n\"bad-name\" = 2\n").unwrap();
        let err = parse_args(&["@names.toml"], dir.path()).unwrap_err();
        assert_eq!(
            err.0[0].message,
            "invalid variable name \"bad-name\" in `-e @names.toml`"
        );
        assert_eq!((err.0[0].line, err.0[0].column), (2, 1));

        let err = parse_args(&["@missing.toml"], dir.path()).unwrap_err();
        assert!(err.0[0].message.starts_with("cannot read"), "{err}");
    }
}
