//! From parsed arguments to work: loads inputs, runs the engine with a reporter, and maps
//! the outcome to an exit code. The only place errors are printed.

use std::path::Path;

use clap::Parser;

use crate::cli::{
    ApplyArgs, AuditArgs, Cli, Command, InventoryArgs, LockArgs, OutputFormat, ReportArgs, RunArgs,
    RunLockArgs, RunOutput, SshArgs, UpgradePathArgs, ValidateArgs,
};
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::job::{Finished, Job, JobSpec, templates_dir};
use crate::last_run::{self, LastRun};
use crate::plan::{self, PlanOptions, SavedPlan};
use crate::playbook::Playbook;
use crate::report::event::Status;
use crate::report::fanout::{Fanout, ReportFiles};
use crate::report::human::{HumanReporter, live_view_wanted};
use crate::report::summary::RunInfo;
use crate::transport::ConnectOptions;
use crate::{extra_vars, secrets, validate};

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", secrets::mask(e.to_string().trim_end()));
            e.exit_code()
        }
    }
}

fn execute(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Run(args) => run_playbook(&args),
        Command::Validate(args) => validate_inputs(&args),
        Command::Inventory(args) => show_inventory(&args),
        Command::UpgradePath(args) => upgrade_path(&args),
        Command::Apply(args) => apply_plan(&args),
        Command::Cache(args) => crate::cache_command::run(&args),
        Command::Lock(args) => lock_command(&args),
        Command::Audit(args) => audit_command(&args),
    }
}

fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::env::var_os("CI").is_none()
}

pub(crate) fn connect_options(ssh: &SshArgs) -> ConnectOptions {
    ConnectOptions {
        ssh_config: ssh.ssh_config.clone(),
        accept_new_host_keys: ssh.accept_new_host_keys,
        interactive: interactive(),
    }
}

fn run_playbook(args: &RunArgs) -> Result<i32, Error> {
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
    };
    let json = args.reports.output == RunOutput::Json;
    if args.retry_failed {
        match retry_limit(&spec, json)? {
            Some(limit) => spec.limit = Some(limit),
            None => return Ok(exit::SUCCESS),
        }
    }
    if let Some(staging) = &args.require_converged {
        require_converged(&spec, staging, args.verbose, json)?;
    }
    let job = Job::load(spec)?;
    let (done, reporters) = execute_reported(&job, &args.reports, args.verbose)?;
    if let Some(path) = &args.plan_out
        && let Err(e) = write_plan(&job, &done, path, json)
    {
        finish_reports(reporters, &job, e.exit_code(), Some(e.to_string()))?;
        return Err(e);
    }
    let mut code = done.outcome.exit_code();
    if args.detailed_exitcode && code == exit::SUCCESS && done.outcome.changed() {
        code = exit::PENDING_CHANGES;
    }
    finish_reports(reporters, &job, code, None)?;
    Ok(code)
}

/// Runs `job` with its reporters; records the audit trail and (unless in check mode) the
/// per-host outcome for `--retry-failed`. On an error the reports are finished with it.
fn execute_reported(
    job: &Job,
    args: &ReportArgs,
    verbose: bool,
) -> Result<(Finished, Option<Fanout>), Error> {
    let (result, reporters) = job.execute_with(reporters(args, verbose));
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            finish_reports(reporters, job, e.exit_code(), Some(e.to_string()))?;
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
fn reporters(args: &ReportArgs, verbose: bool) -> Fanout {
    let json = args.output == RunOutput::Json;
    let human = (!json).then(|| HumanReporter::new(live_view_wanted(), verbose));
    let files = ReportFiles {
        report: args.report.clone(),
        junit: args.junit.clone(),
        junit_changed_as_failure: args.junit_changed_as_failure,
    };
    Fanout::new(human, json, files)
}

/// Writes `--report` and `--junit`, and the JSON `exit` line, once the exit code is known.
fn finish_reports(
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
fn record_audit(job: &Job, done: &Finished) {
    if let Some(record) = &done.outcome.audit
        && let Err(e) = crate::audit::append_local(&job.inventory.path, record)
    {
        eprintln!(
            "warning: cannot append to the local audit log `{}`: {e}",
            crate::audit::local_log(&job.inventory.path).display()
        );
    }
}

fn lock_options(args: &RunLockArgs) -> crate::lock::LockOptions {
    crate::lock::LockOptions {
        message: args.message.clone(),
        wait: args.lock_wait,
        break_stale: args.break_stale_lock,
    }
}

/// A line for the operator: on stdout, or on stderr when stdout carries JSON lines.
fn say(json: bool, text: &str) {
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

fn lock_command(args: &LockArgs) -> Result<i32, Error> {
    let out = runtime()?.block_on(crate::lock::command::run(args, interactive()))?;
    print!("{}", secrets::mask(&out.text));
    Ok(out.code)
}

fn audit_command(args: &AuditArgs) -> Result<i32, Error> {
    let out = runtime()?.block_on(crate::audit::command(args, interactive()))?;
    for w in &out.warnings {
        eprintln!("{}", secrets::mask(w));
    }
    print!("{}", secrets::mask(&out.text));
    Ok(out.code)
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
    verbose: bool,
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
    let done = job.execute((!json).then(|| HumanReporter::new(false, verbose)))?;
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

fn apply_plan(args: &ApplyArgs) -> Result<i32, Error> {
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
    };
    // The lock is taken first; then a check pass must find exactly the plan's decisions
    // before anything runs (see `engine::run`), so nothing can slip in between.
    let job = Job::load(spec)?;
    let (done, reporters) = execute_reported(&job, &args.reports, args.verbose)?;
    let code = done.outcome.exit_code();
    finish_reports(reporters, &job, code, None)?;
    Ok(code)
}

fn validate_inputs(args: &ValidateArgs) -> Result<i32, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::Internal(format!("current directory: {e}")))?;
    let mut problems = crate::diag::Diagnostics::default();
    let inventory = match Inventory::load(&args.inventory) {
        Ok(inv) => Some(inv),
        Err(d) => {
            problems.extend(d);
            None
        }
    };
    let extra = match extra_vars::parse(&args.extra_vars, &cwd) {
        Ok(v) => v,
        Err(d) => {
            problems.extend(d);
            crate::vars::Vars::new()
        }
    };
    let mut tasks = 0;
    for path in &args.playbooks {
        match Playbook::load(path) {
            Ok(pb) => {
                tasks += pb.plays.iter().map(|p| p.tasks.len()).sum::<usize>();
                if let Some(inv) = &inventory {
                    let dir = templates_dir(args.templates.as_ref(), path);
                    problems.extend(validate::check_playbook(
                        inv,
                        &pb,
                        &extra,
                        args.limit.as_deref(),
                        &dir,
                    ));
                }
            }
            Err(d) => problems.extend(d),
        }
    }
    if problems.is_empty() {
        let hosts = inventory.map_or(0, |i| i.hosts.len());
        println!(
            "ok: {} playbook(s), {tasks} task(s), {hosts} host(s) checked",
            args.playbooks.len()
        );
        Ok(exit::SUCCESS)
    } else {
        let problems = problems.sorted();
        let n = problems.len();
        eprint!("{}", secrets::mask(&problems.to_string()));
        eprintln!("{n} problem(s) found");
        Ok(exit::REFUSED)
    }
}

fn show_inventory(args: &InventoryArgs) -> Result<i32, Error> {
    let inventory = Inventory::load(&args.inventory)?;
    let text = if args.graph {
        inventory.graph()
    } else if let Some(name) = &args.host {
        let v = inventory
            .host_json(name)
            .map_err(|e| Error::Refused(e.to_string()))?;
        pretty(&v)?
    } else {
        pretty(&inventory.list_json())?
    };
    println!("{}", secrets::mask(text.trim_end()));
    Ok(exit::SUCCESS)
}

fn pretty(v: &serde_json::Value) -> Result<String, Error> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))
}

fn upgrade_path(args: &UpgradePathArgs) -> Result<i32, Error> {
    let available = match args.available.as_deref() {
        Some(list) if list.starts_with('@') => {
            let path = &list[1..];
            Some(std::fs::read_to_string(path).map_err(|e| {
                Error::Refused(format!(
                    "cannot read the available versions from `{path}`: {e}"
                ))
            })?)
        }
        other => other.map(str::to_owned),
    };
    let (out, err, code) = crate::rules::upgrade_path_command(
        &args.from,
        &args.to,
        available.as_deref(),
        args.output == OutputFormat::Json,
        args.allow_prerelease,
    );
    print!("{out}");
    eprint!("{err}");
    Ok(code)
}
