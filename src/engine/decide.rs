//! The pure decision at the end of every step: from what the host said (the step's verdict
//! and how the exec ended), the task's `changed_when`/`failed_when` (already evaluated) and
//! the mode, to the status, the note, the exit shown and what `register` gets. No I/O and
//! no templates here, so that every combination is a line in a table test.

use super::script::Verdict;
use crate::report::event::Status;
use crate::transport::{ExitStatus, TransportError};

/// How the exec of a script ended, shared by all its steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended<'e> {
    pub status: Option<&'e ExitStatus>,
    pub error: Option<&'e TransportError>,
}

/// A task's `failed_when` and `changed_when`, evaluated against the step's result (only for
/// a step that ran); `None` when the task does not set it. `Err` carries the message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub failed_when: Option<Result<bool, String>>,
    pub changed_when: Option<Result<bool, String>>,
}

/// What a registered result says of the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registered {
    /// Nothing to register (the step failed before producing a result, or check mode could
    /// not know it).
    Nothing,
    /// A result: the command's exit code (0 when no command ran), whether it ran, changed,
    /// failed.
    Result {
        rc: i32,
        ran: bool,
        changed: bool,
        failed: bool,
    },
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub status: Status,
    pub note: Option<String>,
    /// The exit shown in the report (`exit status 3`, `timed out after 5s`).
    pub exit: Option<String>,
    pub registered: Registered,
    /// Whether the step's stdout/stderr belong in the report.
    pub keep_output: bool,
    /// Whether a result cache may record the step as done.
    pub cacheable: bool,
}

impl Decision {
    fn new(status: Status) -> Self {
        Self {
            status,
            note: None,
            exit: None,
            registered: Registered::Nothing,
            keep_output: false,
            cacheable: false,
        }
    }
    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Words for a satisfied guard or up-to-date file; the caller supplies them (they depend on
/// the step's own fields).
pub(crate) struct Words {
    pub satisfied: String,
    pub change: String,
}

/// Decides a step.
pub(crate) fn decide(
    verdict: &Verdict,
    conditions: &Conditions,
    check: bool,
    ended: Ended<'_>,
    words: &Words,
) -> Decision {
    match verdict {
        Verdict::Satisfied(_) => {
            let mut d = Decision::new(Status::Ok).note(words.satisfied.clone());
            d.registered = Registered::Result {
                rc: 0,
                ran: false,
                changed: false,
                failed: false,
            };
            d
        }
        Verdict::Ran(rc) => ran(*rc, conditions),
        Verdict::WouldRun => Decision::new(Status::Changed).note("would run"),
        Verdict::WouldChange(_) | Verdict::Wrote { code: 0, .. } => {
            let verb = if check { "would change" } else { "changed" };
            let mut d = Decision::new(Status::Changed).note(format!("{verb}: {}", words.change));
            if !check {
                d.registered = Registered::Result {
                    rc: 0,
                    ran: true,
                    changed: true,
                    failed: false,
                };
            }
            d
        }
        Verdict::Wrote { code, .. } => {
            let mut d = Decision::new(Status::Failed).note("could not write the file");
            d.exit = Some(ExitStatus::Code(*code).to_string());
            d.keep_output = true;
            d
        }
        Verdict::Interrupted => interrupted(ended),
    }
}

/// A command that ran: its exit code, then `failed_when` and `changed_when`.
fn ran(rc: i32, c: &Conditions) -> Decision {
    let failed = c.failed_when.clone().unwrap_or(Ok(rc != 0));
    let changed = c.changed_when.clone().unwrap_or(Ok(true));
    let mut d = Decision::new(Status::Ok);
    d.exit = Some(ExitStatus::Code(rc).to_string());
    d.keep_output = true;
    match (failed, changed) {
        (Err(e), _) | (_, Err(e)) => {
            d.status = Status::Failed;
            d.note = Some(e);
        }
        (Ok(true), Ok(changed)) => {
            d.status = Status::Failed;
            d.note = Some(if c.failed_when.is_some() {
                "`failed_when` is true".to_owned()
            } else {
                format!("command failed with exit status {rc}")
            });
            d.registered = Registered::Result {
                rc,
                ran: true,
                changed,
                failed: true,
            };
        }
        (Ok(false), Ok(changed)) => {
            d.status = if changed { Status::Changed } else { Status::Ok };
            d.registered = Registered::Result {
                rc,
                ran: true,
                changed,
                failed: false,
            };
            d.cacheable = true;
        }
    }
    d
}

/// A step with no mark: cut off by the connection (unreachable), the lock being lost, a
/// stop request, a timeout, or an exit of the whole script.
fn interrupted(ended: Ended<'_>) -> Decision {
    let mut d = Decision::new(Status::Failed);
    d.keep_output = true;
    match (ended.error, ended.status) {
        (Some(e), _) => {
            d.status = if e.is_lock_lost() {
                Status::Failed
            } else {
                Status::Unreachable
            };
            d.note = Some(e.to_string());
        }
        (None, Some(st)) => {
            d.exit = Some(st.to_string());
            d.note = Some(match st {
                ExitStatus::TimedOut(_) => st.to_string(),
                _ => format!("the task did not complete ({st})"),
            });
        }
        (None, None) => d.note = Some("the task did not complete".to_owned()),
    }
    d
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn words() -> Words {
        Words {
            satisfied: "creates: /x exists".into(),
            change: "content".into(),
        }
    }

    fn no_end() -> Ended<'static> {
        Ended {
            status: None,
            error: None,
        }
    }

    fn cond(
        failed: Option<Result<bool, String>>,
        changed: Option<Result<bool, String>>,
    ) -> Conditions {
        Conditions {
            failed_when: failed,
            changed_when: changed,
        }
    }

    fn result(rc: i32, changed: bool, failed: bool) -> Registered {
        Registered::Result {
            rc,
            ran: true,
            changed,
            failed,
        }
    }

    /// rc, failed_when, changed_when → status, note, registered, cacheable.
    type Row = (
        i32,
        Option<Result<bool, String>>,
        Option<Result<bool, String>>,
        Status,
        Option<&'static str>,
        Registered,
        bool,
    );

    #[test]
    fn a_command_that_ran_by_exit_code_and_conditions() {
        let err = || Err::<bool, String>("`failed_when` of task \"t\": undefined value".into());
        // verdict rc, failed_when, changed_when → status, note, registered, cacheable
        let table: Vec<Row> = vec![
            (
                0,
                None,
                None,
                Status::Changed,
                None,
                result(0, true, false),
                true,
            ),
            (
                3,
                None,
                None,
                Status::Failed,
                Some("command failed with exit status 3"),
                result(3, true, true),
                false,
            ),
            (
                0,
                None,
                Some(Ok(false)),
                Status::Ok,
                None,
                result(0, false, false),
                true,
            ),
            (
                3,
                Some(Ok(false)),
                None,
                Status::Changed,
                None,
                result(3, true, false),
                true,
            ),
            (
                3,
                Some(Ok(false)),
                Some(Ok(false)),
                Status::Ok,
                None,
                result(3, false, false),
                true,
            ),
            (
                0,
                Some(Ok(true)),
                None,
                Status::Failed,
                Some("`failed_when` is true"),
                result(0, true, true),
                false,
            ),
            (
                0,
                Some(Ok(true)),
                Some(Ok(false)),
                Status::Failed,
                Some("`failed_when` is true"),
                result(0, false, true),
                false,
            ),
            (
                0,
                Some(err()),
                None,
                Status::Failed,
                Some("`failed_when` of task \"t\": undefined value"),
                Registered::Nothing,
                false,
            ),
            (
                0,
                None,
                Some(Err("bad changed_when".into())),
                Status::Failed,
                Some("bad changed_when"),
                Registered::Nothing,
                false,
            ),
        ];
        for (rc, failed, changed, status, note, registered, cacheable) in table {
            let d = decide(
                &Verdict::Ran(rc),
                &cond(failed.clone(), changed.clone()),
                false,
                no_end(),
                &words(),
            );
            let case = format!("rc={rc} failed_when={failed:?} changed_when={changed:?}");
            assert_eq!(d.status, status, "{case}");
            assert_eq!(d.note.as_deref(), note, "{case}");
            assert_eq!(d.registered, registered, "{case}");
            assert_eq!(d.cacheable, cacheable, "{case}");
            assert_eq!(d.exit, Some(format!("exit status {rc}")), "{case}");
            assert!(d.keep_output, "{case}");
        }
    }

    #[test]
    fn guards_files_and_check_mode() {
        let c = Conditions::default();
        let ok = decide(
            &Verdict::Satisfied("creates".into()),
            &c,
            false,
            no_end(),
            &words(),
        );
        assert_eq!(
            (ok.status, ok.note.as_deref()),
            (Status::Ok, Some("creates: /x exists"))
        );
        assert_eq!(
            ok.registered,
            Registered::Result {
                rc: 0,
                ran: false,
                changed: false,
                failed: false
            }
        );
        assert!(!ok.cacheable, "a guard is asked again every run");

        let would = decide(&Verdict::WouldRun, &c, true, no_end(), &words());
        assert_eq!(
            (would.status, would.note.as_deref()),
            (Status::Changed, Some("would run"))
        );
        assert_eq!(
            would.registered,
            Registered::Nothing,
            "check mode cannot know the result"
        );

        let wc = decide(
            &Verdict::WouldChange("content".into()),
            &c,
            true,
            no_end(),
            &words(),
        );
        assert_eq!(
            (wc.status, wc.note.as_deref()),
            (Status::Changed, Some("would change: content"))
        );
        assert_eq!(wc.registered, Registered::Nothing);

        let wrote = decide(
            &Verdict::Wrote {
                code: 0,
                detail: "content".into(),
            },
            &c,
            false,
            no_end(),
            &words(),
        );
        assert_eq!(
            (wrote.status, wrote.note.as_deref()),
            (Status::Changed, Some("changed: content"))
        );
        assert_eq!(wrote.registered, result(0, true, false));

        let bad = decide(
            &Verdict::Wrote {
                code: 1,
                detail: String::new(),
            },
            &c,
            false,
            no_end(),
            &words(),
        );
        assert_eq!(
            (bad.status, bad.exit.as_deref()),
            (Status::Failed, Some("exit status 1"))
        );
    }

    #[test]
    fn a_step_cut_off_says_why() {
        let c = Conditions::default();
        let lost = TransportError::Disconnected {
            target: "h".into(),
            reason: "reset".into(),
        };
        let d = decide(
            &Verdict::Interrupted,
            &c,
            false,
            Ended {
                status: None,
                error: Some(&lost),
            },
            &words(),
        );
        assert_eq!(
            d.status,
            Status::Unreachable,
            "a transport failure stays a transport failure"
        );
        let fenced = TransportError::LockLost { host: "h".into() };
        let d = decide(
            &Verdict::Interrupted,
            &c,
            false,
            Ended {
                status: None,
                error: Some(&fenced),
            },
            &words(),
        );
        assert_eq!(d.status, Status::Failed);
        assert!(
            d.note.as_deref().is_some_and(|n| n.contains("lock lost")),
            "{d:?}"
        );
        let timed = ExitStatus::TimedOut(Duration::from_secs(5));
        let d = decide(
            &Verdict::Interrupted,
            &c,
            false,
            Ended {
                status: Some(&timed),
                error: None,
            },
            &words(),
        );
        assert_eq!(
            (d.status, d.note.as_deref()),
            (Status::Failed, Some("timed out after 5s"))
        );
        let code = ExitStatus::Code(1);
        let d = decide(
            &Verdict::Interrupted,
            &c,
            false,
            Ended {
                status: Some(&code),
                error: None,
            },
            &words(),
        );
        assert_eq!(
            d.note.as_deref(),
            Some("the task did not complete (exit status 1)")
        );
        let d = decide(&Verdict::Interrupted, &c, false, no_end(), &words());
        assert_eq!(d.note.as_deref(), Some("the task did not complete"));
    }
}
