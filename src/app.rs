//! From parsed arguments to work: dispatches each subcommand to its module under
//! `crate::command`, and maps the result to an exit code. The only place errors are printed.

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::command;
use crate::error::{Error, exit};
use crate::secrets;

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
