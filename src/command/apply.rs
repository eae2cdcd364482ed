//! `capstan apply PLAN`: carries out a saved plan exactly, or refuses when its inputs or
//! the hosts drifted.

use super::run::{execute_reported, finish_reports};
use super::{connect_options, lock_options};
use crate::cli::ApplyArgs;
use crate::error::Error;
use crate::job::{Job, JobSpec};
use crate::plan::{self, SavedPlan};

pub(crate) fn run(args: &ApplyArgs) -> Result<i32, Error> {
    let text = std::fs::read_to_string(&args.plan).map_err(|e| {
        Error::Refused(format!(
            "cannot read the plan `{}`: {e}",
            args.plan.display()
        ))
    })?;
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| {
        Error::Refused(format!(
            "`{}` is not a capstan plan: {e}",
            args.plan.display()
        ))
    })?;
    if saved.format != plan::PLAN_FORMAT {
        return Err(Error::Refused(format!(
            "`{}` has plan format {}; this capstan reads format {}",
            args.plan.display(),
            saved.format,
            plan::PLAN_FORMAT
        )));
    }
    let now = plan::input_digests(&saved.inventory, &saved.playbook, &saved.options.templates);
    let changed = plan::changed_inputs(&saved.digests, &now);
    if !changed.is_empty() {
        return Err(Error::Refused(format!(
            "refused: the inputs changed since the plan was made; make a new plan:\n  {}",
            changed.join("\n  ")
        )));
    }
    let spec = JobSpec {
        playbook: saved.playbook.clone(),
        inventory: saved.inventory.clone(),
        limit: saved.options.limit.clone(),
        extra_vars: saved.options.extra_vars.clone(),
        tags: saved.options.tags.clone(),
        skip_tags: saved.options.skip_tags.clone(),
        templates: Some(saved.options.templates.clone()),
        forks: args.forks as usize,
        check: false,
        diff: false,
        diff_context: saved.options.diff_context,
        expect_plan: Some(saved.hosts.clone()),
        no_cache: false,
        connect: connect_options(&args.ssh),
        lock: lock_options(&args.lock),
        ..JobSpec::default()
    };
    // The lock is taken first; then a check pass must find exactly the plan's decisions
    // before anything runs (see `engine::run`), so nothing can slip in between.
    let job = Job::load(spec)?;
    let (done, reporters) = execute_reported(&job, &args.reports, args.verbose)?;
    let code = done.outcome.exit_code();
    finish_reports(reporters, &job, code, None)?;
    Ok(code)
}
