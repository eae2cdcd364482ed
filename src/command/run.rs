//! `capstan run`: a playbook against an inventory, with the promotion gate,
//! `--retry-failed`, `--plan-out`, the reports and the audit trail.

use std::path::Path;

use super::{connect_options, lock_options, say};
use crate::cli::{ColorWhen, ReportArgs, RunArgs, RunOutput, ValidateArgs};
use crate::error::{Error, exit};
use crate::job::{Finished, Job, JobSpec};
use crate::last_run::{self, LastRun};
use crate::plan::{self, PlanOptions, SavedPlan};
use crate::report::colour::{self, ColourChoice, ColourEnv};
use crate::report::event::Status;
use crate::report::fanout::{Fanout, ReportFiles};
use crate::report::human::{HumanReporter, live_view_wanted};
use crate::report::json::JsonReporter;
use crate::report::summary::RunInfo;
use crate::secrets;

pub(crate) fn run(args: &RunArgs) -> Result<i32, Error> {
    super::protocol_debug(args.verbose);
    let habits = &args.habits;
    if habits.syntax_check {
        return super::validate::run(&ValidateArgs {
            inventory: args.inventory.clone(),
            playbooks: vec![args.playbook.clone()],
            extra_vars: args.extra_vars.clone(),
            limit: args.limit.clone(),
            templates: args.templates.clone(),
        });
    }
    if habits.list_hosts || habits.list_tasks || habits.list_tags {
        return super::list::run(args);
    }
    let json = args.reports.output == RunOutput::Json;
    let job = match prepare(args) {
        Ok(Some(job)) => job,
        Ok(None) => return Ok(exit::SUCCESS),
        Err(e) => {
            // With `--output json` a refusal before the run is still the last line.
            if json {
                JsonReporter::stdout().exit(e.exit_code(), Some(&error_message(&e)));
            }
            return Err(e);
        }
    };
    let (done, reporters) = execute_reported(&job, &args.reports, args.verbose)?;
    if let Some(path) = &args.plan_out
        && let Err(e) = write_plan(&job, &done, path, json)
    {
        finish_reports(reporters, &job, e.exit_code(), Some(error_message(&e)))?;
        return Err(e);
    }
    let mut code = done.outcome.exit_code();
    if args.detailed_exitcode && code == exit::SUCCESS && done.outcome.changed() {
        code = exit::PENDING_CHANGES;
    }
    finish_reports(reporters, &job, code, None)?;
    Ok(code)
}

/// Everything before the run: the spec from the flags, `--retry-failed`, the promotion gate,
/// loading and checking the inputs, and `--step`'s questions. `None`: nothing to retry.
fn prepare(args: &RunArgs) -> Result<Option<Job>, Error> {
    let habits = &args.habits;
    if habits.step && !super::interactive() {
        return Err(Error::Refused(
            "--step asks before each task and needs a terminal; without one, choose the tasks \
             with --tags, --skip-tags or --start-at-task"
                .into(),
        ));
    }
    let mut spec = JobSpec {
        playbook: args.playbook.clone(),
        inventory: args.inventory.clone(),
        limit: args.limit.clone(),
        extra_vars: args.extra_vars.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        templates: args.templates.clone(),
        forks: args.forks as usize,
        check: args.check,
        diff: args.diff || args.plan_out.is_some(),
        diff_context: args.diff_context,
        expect_plan: None,
        no_cache: args.no_cache,
        connect: connect_options(&args.ssh),
        lock: lock_options(&args.lock),
        user: habits.user.clone(),
        become_all: habits.r#become,
        become_password: super::ask_become_pass(habits.ask_become_pass)?,
        start_at_task: habits.start_at_task.clone(),
    };
    let json = args.reports.output == RunOutput::Json;
    if args.retry_failed {
        match retry_limit(&spec, json)? {
            Some(limit) => spec.limit = Some(limit),
            None => return Ok(None),
        }
    }
    if let Some(staging) = &args.require_converged {
        let colour = colour::wanted(colour_choice(args.reports.color), &ColourEnv::current());
        require_converged(&spec, staging, (args.verbose, colour), json)?;
    }
    let mut job = Job::load(spec)?;
    if habits.step {
        super::step::confirm_each_task(&mut job)?;
    }
    Ok(Some(job))
}

/// Runs `job` with its reporters; records the audit trail and (unless in check mode) the
/// per-host outcome for `--retry-failed`. On an error the reports are finished with it.
pub(crate) fn execute_reported(
    job: &Job,
    args: &ReportArgs,
    verbose: u8,
) -> Result<(Finished, Option<Fanout>), Error> {
    let (result, reporters) = job.execute_with(reporters(args, verbose, &job.spec.playbook));
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            finish_reports(reporters, job, e.exit_code(), Some(error_message(&e)))?;
            return Err(e);
        }
    };
    record_audit(job, &done);
    if !job.spec.check {
        let record = LastRun::from_outcome(&job.spec.playbook, &job.spec.inventory, &done.outcome);
        if let Err(e) = last_run::save(&record) {
            eprintln!("warning: cannot record this run for --retry-failed: {e}");
        }
    }
    Ok((done, reporters))
}

/// Human output unless `--output json`; JSON lines with it; the summary behind `--report`
/// and `--junit`.
pub(crate) fn reporters(args: &ReportArgs, verbose: u8, playbook: &Path) -> Fanout {
    let json = args.output == RunOutput::Json;
    let colour = colour::wanted(colour_choice(args.color), &ColourEnv::current());
    let human = (!json).then(|| HumanReporter::new(live_view_wanted(), verbose, colour));
    let files = ReportFiles {
        report: args.report.clone(),
        junit: args.junit.clone(),
        junit_changed_as_failure: args.junit_changed_as_failure,
    };
    Fanout::new(human, json, files).with_playbook_path(playbook)
}

fn colour_choice(when: ColorWhen) -> ColourChoice {
    match when {
        ColorWhen::Auto => ColourChoice::Auto,
        ColorWhen::Always => ColourChoice::Always,
        ColorWhen::Never => ColourChoice::Never,
    }
}

/// What an error says, for the JSON `exit` line and the report: never empty (a host-key
/// refusal prints nothing itself, its hosts were listed as events), without `error: `.
pub(crate) fn error_message(e: &Error) -> String {
    match e {
        Error::HostKeys(message) => message.clone(),
        Error::Refused(message) | Error::Internal(message) => message.clone(),
        Error::Input(diagnostics) => diagnostics.to_string().trim_end().to_owned(),
    }
}

/// Writes `--report` and `--junit`, and the JSON `exit` line, once the exit code is known.
pub(crate) fn finish_reports(
    reporters: Option<Fanout>,
    job: &Job,
    exit_code: i32,
    error: Option<String>,
) -> Result<(), Error> {
    let Some(reporters) = reporters else {
        return Ok(());
    };
    reporters
        .finish(RunInfo {
            playbook: job.spec.playbook.clone(),
            inventory: job.spec.inventory.clone(),
            exit_code,
            error,
        })
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Appends the run's audit record (made when the lock was released) to the local log.
pub(crate) fn record_audit(job: &Job, done: &Finished) {
    if let Some(record) = &done.audit
        && let Err(e) = crate::audit::append_local(&job.inventory.path, record)
    {
        eprintln!(
            "warning: cannot append to the local audit log `{}`: {e}",
            crate::audit::local_log(&job.inventory.path).display()
        );
    }
}

/// `--retry-failed`: the last run's failed and unreachable hosts (within `--limit`), or
/// `None` when there is nothing to retry.
fn retry_limit(spec: &JobSpec, json: bool) -> Result<Option<String>, Error> {
    let last = last_run::load(&spec.playbook, &spec.inventory)
        .map_err(|e| Error::Refused(format!("--retry-failed: {e}")))?
        .ok_or_else(|| {
            Error::Refused(format!(
                "--retry-failed: no earlier run of `{}` against `{}` is recorded",
                spec.playbook.display(),
                spec.inventory.display()
            ))
        })?;
    let failed = last.failed_hosts();
    if failed.is_empty() {
        say(
            json,
            &format!(
                "nothing to retry: every host succeeded in the last run ({})",
                last.finished
            ),
        );
        return Ok(None);
    }
    let mut limit = failed.join(",");
    if let Some(user) = &spec.limit {
        limit = format!("{limit},&{}", user.replace(',', ",&"));
    }
    say(
        json,
        &format!(
            "retrying on {} host(s) that failed in the last run: {}",
            failed.len(),
            failed.join(", ")
        ),
    );
    Ok(Some(limit))
}

/// The promotion gate: the same playbook, in check mode, must find `staging` converged.
fn require_converged(
    spec: &JobSpec,
    staging: &Path,
    (verbose, colour): (u8, bool),
    json: bool,
) -> Result<(), Error> {
    let gate = JobSpec {
        inventory: staging.to_path_buf(),
        limit: None,
        check: true,
        diff: false,
        ..spec.clone()
    };
    say(
        json,
        &format!("gate: checking that `{}` has converged", staging.display()),
    );
    let job = Job::load(gate)?;
    let done = job.execute((!json).then(|| HumanReporter::new(false, verbose, colour)))?;
    let code = done.outcome.exit_code();
    if code != exit::SUCCESS {
        return Err(Error::Refused(format!(
            "refused: the promotion gate could not check `{}` (its check run ended with exit {code}); nothing was changed",
            staging.display()
        )));
    }
    if done.outcome.changed() {
        let pending: Vec<String> = done
            .reports
            .iter()
            .filter(|r| r.status == Status::Changed)
            .map(|r| format!("{}: {}", r.host, r.task))
            .collect();
        return Err(Error::Refused(format!(
            "refused: `{}` has not converged: {} task(s) would still change there ({}); apply it there first — nothing was changed",
            staging.display(),
            pending.len(),
            pending.join(", ")
        )));
    }
    say(
        json,
        &format!("gate: `{}` has converged", staging.display()),
    );
    Ok(())
}

fn write_plan(job: &Job, done: &Finished, path: &Path, json: bool) -> Result<(), Error> {
    let spec = &job.spec;
    let plan = SavedPlan {
        format: plan::PLAN_FORMAT,
        created: chrono::Utc::now().to_rfc3339(),
        playbook: spec.playbook.clone(),
        inventory: spec.inventory.clone(),
        digests: plan::input_digests(&spec.inventory, &spec.playbook, &job.opts.templates_dir),
        options: PlanOptions {
            limit: spec.limit.clone(),
            extra_vars: spec.extra_vars.clone(),
            tags: spec.tags.clone(),
            skip_tags: spec.skip_tags.clone(),
            templates: job.opts.templates_dir.clone(),
            diff_context: job.opts.diff_context,
        },
        hosts: plan::decisions(&done.reports),
    };
    let text = serde_json::to_string_pretty(&plan).map_err(|e| Error::Internal(e.to_string()))?;
    crate::cache::write_atomically(path, secrets::mask(&text).as_bytes())
        .map_err(|e| Error::Internal(format!("cannot write the plan `{}`: {e}", path.display())))?;
    say(json, &format!("plan written to {}", path.display()));
    Ok(())
}
