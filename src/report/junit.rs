//! `--junit FILE`: the run as JUnit XML (quick-junit), for CI test-report views. One test
//! suite per play, one test case per host and task (classname = host, name = task):
//! failed → `<failure>`, unreachable → `<error>`, skipped → `<skipped>`, and with
//! `--junit-changed-as-failure` a change (or, in check mode, a pending change) is a
//! `<failure>` too, for drift checks.
//!
//! Text is masked first, then its control characters are escaped (see [`super::escape`]):
//! XML 1.0 cannot carry them, and dropping them could join a masked-apart secret back up.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::event::{Status, TaskReport};
use super::summary::Summary;
use crate::secrets;

/// Renders `summary` as JUnit XML.
///
/// # Errors
/// When quick-junit cannot serialize the report (it never should for valid UTF-8).
pub fn render(summary: &Summary, changed_as_failure: bool) -> Result<String, String> {
    let mut report = Report::new("capstan");
    report.set_timestamp(summary.started.fixed_offset());
    report.set_time(summary.duration);
    for play in &summary.plays {
        let mut suite = TestSuite::new(mask(&play.name));
        suite.set_timestamp(summary.started.fixed_offset());
        // Hosts that never connected have no task results in the play: one error each.
        for host in &play.hosts {
            let had_tasks = play.tasks.iter().any(|t| &t.host == host);
            let reason = summary.hosts.get(host).and_then(|h| h.unreachable.as_ref());
            if let (false, Some(reason)) = (had_tasks, reason) {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(mask(reason)).set_type("unreachable");
                let mut case = TestCase::new("(connect)", status);
                case.set_classname(mask(host));
                suite.add_test_case(case);
            }
        }
        for task in &play.tasks {
            suite.add_test_case(test_case(task, changed_as_failure));
        }
        if let Some(why) = &play.stopped {
            suite.set_system_err(mask(why));
        }
        report.add_test_suite(suite);
    }
    if let Some(error) = &summary.info.error {
        let mut suite = TestSuite::new(mask(&summary.playbook_name));
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(mask(error)).set_type("refused");
        suite.add_test_case(TestCase::new("(run)", status));
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| e.to_string())
}

fn test_case(t: &TaskReport, changed_as_failure: bool) -> TestCase {
    let note = t.note.as_deref().unwrap_or_default();
    let status = match t.status {
        Status::Ok | Status::Cached => TestCaseStatus::success(),
        Status::Changed if changed_as_failure => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let what = if t.check_mode {
                "would change"
            } else {
                "changed"
            };
            s.set_message(what).set_type("changed");
            if let Some(diff) = &t.diff {
                s.set_description(mask(diff));
            }
            s
        }
        Status::Changed => TestCaseStatus::success(),
        Status::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(mask(note));
            s
        }
        Status::Failed => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(mask(note))
                .set_type("failed")
                .set_description(mask(&failure_text(t)));
            s
        }
        Status::Unreachable => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(mask(note)).set_type("unreachable");
            s
        }
    };
    let mut case = TestCase::new(mask(&t.task), status);
    case.set_classname(mask(&t.host)).set_time(t.duration);
    if !t.stdout.is_empty() {
        case.set_system_out(mask(&t.stdout));
    }
    if !t.stderr.is_empty() {
        case.set_system_err(mask(&t.stderr));
    }
    case
}

/// The command and how it ended, for a failure's text.
fn failure_text(t: &TaskReport) -> String {
    let mut lines = Vec::new();
    if let Some(c) = &t.command {
        lines.push(format!("command: {c}"));
    }
    if let Some(e) = &t.exit {
        lines.push(e.clone());
    }
    lines.join("\n")
}

/// Secrets masked; control characters XML 1.0 cannot hold (and quick-junit would drop,
/// joining what they separated) are written as visible escapes such as `\x1b`.
fn mask(s: &str) -> String {
    super::escape::controls(&secrets::mask(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::summary::tests::sample;
    use super::*;

    fn count(xml: &str, needle: &str) -> usize {
        xml.matches(needle).count()
    }

    #[test]
    fn statuses_map_to_junit_elements() {
        let xml = render(&sample(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&xml, "<testsuite "), 2, "{xml}");
        assert_eq!(count(&xml, "<testcase "), 5, "{xml}");
        assert_eq!(count(&xml, "<failure"), 1, "{xml}");
        assert_eq!(count(&xml, "<error"), 1, "{xml}");
        assert_eq!(count(&xml, "<skipped"), 1, "{xml}");
        assert!(
            xml.contains(r#"name="(connect)" classname="web-2""#),
            "{xml}"
        );
    }

    #[test]
    fn changes_can_count_as_failures() {
        let xml = render(&sample(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&xml, "<failure"), 2, "{xml}");
        assert!(xml.contains(r#"message="changed""#), "{xml}");
    }
}
