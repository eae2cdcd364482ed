//! `capstan exec PATTERN -- COMMAND`: one command, ad hoc, on the hosts PATTERN matches.
//!
//! It is a one-play, one-task playbook built in memory and run as `run` runs a playbook:
//! the same host-key checks, `--forks`, `become`, the cluster lock, the recap, the exit
//! codes, and the audit trail (the lock's message, unless `-m` says otherwise, is the
//! command). It never reads or writes the result cache: an ad-hoc command always runs.

use std::path::{Path, PathBuf};

use super::run::{error_message, finish_reports, record_audit, reporters};
use super::{ask_become_pass, connect_options, lock_options, protocol_debug};
use crate::cli::{ExecArgs, RunOutput};
use crate::error::Error;
use crate::job::{Job, JobSpec};
use crate::playbook::Playbook;
use crate::report::json::JsonReporter;
use crate::settings::CacheStore;

/// What the lock, the audit trail and messages name as the playbook of an ad-hoc command.
const EXEC_PLAYBOOK: &str = "<exec>";

pub(crate) fn run(args: &ExecArgs) -> Result<i32, Error> {
    protocol_debug(args.verbose);
    let command = args.command.join(" ");
    if command.trim().is_empty() {
        return Err(Error::Refused(
            "exec: the command after `--` is empty".into(),
        ));
    }
    let path = PathBuf::from(EXEC_PLAYBOOK);
    let playbook = ad_hoc_playbook(&path, args, &command)?;
    let mut lock = lock_options(&args.lock);
    lock.message
        .get_or_insert_with(|| format!("capstan exec: {command}"));
    let spec = JobSpec {
        playbook: path.clone(),
        inventory: args.inventory.clone(),
        forks: args.forks as usize,
        connect: connect_options(&args.ssh),
        lock,
        user: args.user.clone(),
        become_password: ask_become_pass(args.ask_become_pass)?,
        ..JobSpec::default()
    };
    let mut job = match Job::with_playbook(spec, playbook) {
        Ok(job) => job,
        Err(e) => {
            if args.reports.output == RunOutput::Json {
                JsonReporter::stdout().exit(e.exit_code(), Some(&error_message(&e)));
            }
            return Err(e);
        }
    };
    job.opts.cache.store = CacheStore::Off;
    // Each host's output is what the operator asked for: always shown, under its host.
    let (result, reporters) =
        job.execute_with(reporters(&args.reports, args.verbose.max(1), &path));
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            finish_reports(reporters, &job, e.exit_code(), Some(error_message(&e)))?;
            return Err(e);
        }
    };
    record_audit(&job, &done);
    let code = done.outcome.exit_code();
    finish_reports(reporters, &job, code, None)?;
    Ok(code)
}

/// The playbook `exec` runs, written as TOML and read by the playbook parser, so that it is
/// checked (the pattern, templates in the command) exactly as a playbook file would be.
fn ad_hoc_playbook(path: &Path, args: &ExecArgs, command: &str) -> Result<Playbook, Error> {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut source = format!(
        "name = \"exec\"\n\n[[plays]]\nname = \"exec\"\nhosts = {}\n",
        quote(&args.pattern)
    );
    if args.r#become {
        source.push_str("become = true\n");
    }
    if let Some(user) = &args.become_user {
        source.push_str(&format!("become_user = {}\n", quote(user)));
    }
    source.push_str(&format!(
        "\n[[plays.tasks]]\nname = {}\ncommand = {}\n",
        quote(command),
        quote(command)
    ));
    if let Some(timeout) = args.timeout {
        source.push_str(&format!("timeout = \"{}s\"\n", timeout.as_secs().max(1)));
    }
    Ok(Playbook::parse(path, source)?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::playbook::Action;

    fn exec_args(argv: &[&str]) -> ExecArgs {
        let mut full = vec!["capstan", "exec"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).map(|c| c.command) {
            Ok(Command::Exec(args)) => *args,
            other => panic!("not an exec command line: {other:?}"),
        }
    }

    #[test]
    fn builds_one_play_with_one_command_task() {
        let args = exec_args(&[
            "web:!web-2",
            "-i",
            "inv.toml",
            "-b",
            "--become-user",
            "app",
            "--timeout",
            "90s",
            "--",
            "echo",
            "\"quoted\"",
            "it's",
        ]);
        let command = args.command.join(" ");
        let pb = ad_hoc_playbook(Path::new(EXEC_PLAYBOOK), &args, &command)
            .unwrap_or_else(|e| panic!("{e}"));
        let [play] = &pb.plays[..] else {
            panic!("one play: {:?}", pb.plays)
        };
        assert_eq!(play.hosts, "web:!web-2");
        assert!(play.r#become);
        assert_eq!(play.become_user.as_deref(), Some("app"));
        let [task] = &play.tasks[..] else {
            panic!("one task: {:?}", play.tasks)
        };
        assert_eq!(task.action, Action::Command("echo \"quoted\" it's".into()));
        assert_eq!(task.name, "echo \"quoted\" it's");
        assert_eq!(task.timeout, Some(std::time::Duration::from_secs(90)));
    }

    #[test]
    fn the_command_comes_after_the_double_dash_only() {
        let e = Cli::try_parse_from(["capstan", "exec", "all", "-i", "inv.toml"]);
        assert!(e.is_err(), "a command is required");
    }
}
