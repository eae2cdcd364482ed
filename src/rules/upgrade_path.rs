//! `capstan upgrade-path FROM TO [--available LIST] [--json] [--allow-prerelease]`, minus clap.
//!
//! Turns the planner's answer into the bytes the reporter prints and the exit code: 0 with
//! the hops, or 3 ("refused before any change") with the refusal, for a refused plan and for
//! input that is not a version alike.

use semver::Version;
use serde::Serialize;

use super::planner::{UpgradePlan, plan};
use super::upgrade::JudgeOptions;

/// Exit code of a run refused before any change, invalid input included.
pub const EXIT_REFUSED: i32 = 3;

#[derive(Serialize)]
struct JsonPlan<'a> {
    from: String,
    to: String,
    hops: Vec<JsonHop>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct JsonHop {
    from: String,
    to: String,
    row: &'static str,
}

/// Runs the command; returns `(stdout, stderr, exit code)`.
///
/// `available` is a comma- or whitespace-separated list of versions. Without it, only the
/// single hop FROM → TO is judged.
pub fn upgrade_path_command(
    from: &str,
    to: &str,
    available: Option<&str>,
    json: bool,
    allow_prerelease: bool,
) -> (String, String, i32) {
    let parsed = parse_inputs(from, to, available);
    let (from, to, available) = match parsed {
        Ok(inputs) => inputs,
        Err(message) => return (String::new(), format!("{message}\n"), EXIT_REFUSED),
    };
    let opts = JudgeOptions { allow_prerelease };
    match plan(&from, &to, &available, &opts) {
        Ok(plan) if json => render_json(&plan),
        Ok(plan) => render_text(&plan),
        Err(err) => (String::new(), format!("{err}\n"), EXIT_REFUSED),
    }
}

fn parse_inputs(
    from: &str,
    to: &str,
    available: Option<&str>,
) -> Result<(Version, Version, Vec<Version>), String> {
    let from = parse_version(from, "argument `FROM`")?;
    let to = parse_version(to, "argument `TO`")?;
    let Some(text) = available else {
        return Ok((from, to, Vec::new()));
    };
    let versions = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| parse_version(s, "`--available`"))
        .collect::<Result<Vec<_>, _>>()?;
    if versions.is_empty() {
        return Err(
            "refused: `--available` lists no versions; give a comma-separated list \
                    such as `2.6.8,2.7.2`, or leave it out to judge the single hop"
                .to_owned(),
        );
    }
    Ok((from, to, versions))
}

fn parse_version(text: &str, what: &str) -> Result<Version, String> {
    Version::parse(text.trim()).map_err(|e| {
        format!(
            "refused: invalid version `{text}` in {what}: {e}; expected MAJOR.MINOR.PATCH such \
             as `2.6.8`"
        )
    })
}

fn render_text(plan: &UpgradePlan) -> (String, String, i32) {
    let stdout: String = plan.hops.iter().map(|h| format!("{h}\n")).collect();
    let stderr: String = plan
        .warnings
        .iter()
        .map(|w| format!("warning: {w}\n"))
        .collect();
    (stdout, stderr, 0)
}

fn render_json(plan: &UpgradePlan) -> (String, String, i32) {
    let out = JsonPlan {
        from: plan.from.to_string(),
        to: plan.to.to_string(),
        hops: plan
            .hops
            .iter()
            .map(|h| JsonHop {
                from: h.from.to_string(),
                to: h.to.to_string(),
                row: h.row.description(),
            })
            .collect(),
        warnings: &plan.warnings,
    };
    match serde_json::to_string(&out) {
        Ok(text) => (format!("{text}\n"), String::new(), 0),
        Err(e) => (
            String::new(),
            format!("cannot render the plan as JSON: {e}\n"),
            1,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "2.4.1,2.4.3,2.5.0,2.5.4,2.6.0,2.6.8,2.7.0,2.7.2";

    #[test]
    fn prints_one_hop_per_line() {
        let (out, err, code) = upgrade_path_command("2.4.1", "2.7.2", Some(LIST), false, false);
        assert_eq!(out, "2.4.1 -> 2.5.4\n2.5.4 -> 2.6.8\n2.6.8 -> 2.7.2\n");
        assert!(err.starts_with("warning: 2.5.4 -> 2.6.8 runs the `metadatastoremigration`"));
        assert_eq!(code, 0);
    }

    #[test]
    fn available_may_be_separated_by_whitespace() {
        let list = "2.5.4 2.6.8\n 2.7.0 ,2.7.2";
        let (out, _, code) = upgrade_path_command("2.6.8", "2.7.2", Some(list), false, false);
        assert_eq!((out.as_str(), code), ("2.6.8 -> 2.7.2\n", 0));
    }

    #[test]
    fn prints_json() {
        let (out, err, code) = upgrade_path_command("2.5.3", "2.7.0", Some(LIST), true, false);
        assert_eq!(
            out,
            "{\"from\":\"2.5.3\",\"to\":\"2.7.0\",\"hops\":[\
             {\"from\":\"2.5.3\",\"to\":\"2.6.8\",\"row\":\"minor upgrade\"},\
             {\"from\":\"2.6.8\",\"to\":\"2.7.0\",\"row\":\"minor upgrade\"}],\
             \"warnings\":[\"2.5.3 -> 2.6.8 runs the `metadatastoremigration` job after the \
             upgrade: garbage collection is disabled while it runs, and if its three attempts \
             fail it must be retriggered with `POST /api/v0/jobs` (DTR upgrade rules)\"]}\n"
        );
        assert_eq!((err.as_str(), code), ("", 0));
        let (out, _, code) = upgrade_path_command("2.6.8", "2.6.8", None, true, false);
        assert_eq!(
            (out.as_str(), code),
            (
                "{\"from\":\"2.6.8\",\"to\":\"2.6.8\",\"hops\":[],\"warnings\":[]}\n",
                0
            )
        );
    }

    #[test]
    fn without_a_list_judges_the_single_hop() {
        let (out, err, code) = upgrade_path_command("2.5.3", "2.6.8", None, false, false);
        assert_eq!((out.as_str(), code), ("2.5.3 -> 2.6.8\n", 0));
        assert!(err.contains("metadatastoremigration"));
        let (out, err, code) = upgrade_path_command("2.5.3", "2.7.0", None, false, false);
        assert_eq!((out.as_str(), code), ("", 3));
        assert_eq!(
            err,
            "refused: skip minor version (2.5.3 -> 2.7.0): when upgrading between minor versions \
             you cannot skip versions (DTR upgrade rules, \"Upgrade DTR\" table row \"skip minor \
             version\"); upgrade to 2.6.x first\n"
        );
    }

    #[test]
    fn same_version_prints_nothing() {
        assert_eq!(
            upgrade_path_command("2.6.8", "2.6.8", Some(LIST), false, false),
            (String::new(), String::new(), 0)
        );
    }

    #[test]
    fn refusals_name_the_row_and_exit_3() {
        let cases = [
            (
                "2.6.8",
                "2.6.1",
                "refused: patch downgrade (2.6.8 -> 2.6.1)",
            ),
            ("2.5.0", "2.7.3", "refused: target `2.7.3` is not among"),
            ("2.6.8", "2.7.0-rc.1", "refused: pre-release version"),
        ];
        for (from, to, prefix) in cases {
            let (out, err, code) = upgrade_path_command(from, to, Some(LIST), false, false);
            assert_eq!((out.as_str(), code), ("", 3), "{from} -> {to}");
            assert!(err.starts_with(prefix), "{err}");
        }
        let (_, err, code) = upgrade_path_command("2.6.8", "2.7.0-rc.1", None, false, true);
        assert_eq!((err.as_str(), code), ("", 0));
    }

    #[test]
    fn invalid_input_names_the_argument_and_exits_3() {
        let cases = [
            (
                "2.6",
                "2.7.0",
                None,
                "refused: invalid version `2.6` in argument `FROM`: ",
            ),
            (
                "2.6.8",
                "v2.7.0",
                None,
                "refused: invalid version `v2.7.0` in argument `TO`: ",
            ),
            (
                "2.6.8",
                "2.7.0",
                Some("2.7.0,latest"),
                "refused: invalid version `latest` in `--available`: ",
            ),
            (
                "2.6.8",
                "2.7.0",
                Some(" , "),
                "refused: `--available` lists no versions",
            ),
        ];
        for (from, to, available, prefix) in cases {
            let (out, err, code) = upgrade_path_command(from, to, available, false, false);
            assert_eq!((out.as_str(), code), ("", 3));
            assert!(err.starts_with(prefix), "{err}");
            assert!(err.ends_with('\n'));
        }
    }
}
