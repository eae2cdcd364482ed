//! From parsed arguments to work: dispatches each subcommand to its module under
//! `crate::command`, and maps the result to an exit code. The only place errors are printed.

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::command;
use crate::error::{Error, exit};
use crate::secrets;

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    raise_open_files_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = e.print();
            if let Some(hint) = crate::cli::ansible_flag_hint(&e) {
                eprintln!("\nnote: {hint}");
            }
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
        Command::Run(args) => command::run::run(&args),
        Command::Exec(args) => command::exec::run(&args),
        Command::Completions(args) => command::completions::completions(args.shell),
        Command::Man => command::completions::man(),
        Command::Validate(args) => command::validate::run(&args),
        Command::Inventory(args) => command::inventory::run(&args),
        Command::UpgradePath(args) => command::upgrade_path::run(&args),
        Command::Apply(args) => command::apply::run(&args),
        Command::Cache(args) => command::cache::run(&args),
        Command::Lock(args) => command::lock::run(&args),
        Command::Audit(args) => command::audit::run(&args),
    }
}

/// Every host holds a socket open for the whole run (and a local host a few pipes): raise the
/// soft limit of open files to the hard one at start, as OpenSSH-based tools do, so that a
/// large fleet is not cut short at 1024 descriptors. A failure leaves the limit as it was.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
