//! From parsed arguments to work: loads inputs, runs the engine with a reporter, and maps
//! the outcome to an exit code. The only place errors are printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;

use crate::cli::{
    Cli, Command, InventoryArgs, OutputFormat, RunArgs, UpgradePathArgs, ValidateArgs,
};
use crate::diag::Diagnostics;
use crate::engine::{self, Interrupt, RunOptions};
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::playbook::Playbook;
use crate::report::human::{HumanReporter, live_view_wanted};
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
    }
}

fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::env::var_os("CI").is_none()
}

/// `templates/` beside the playbook unless `--templates` says otherwise.
fn templates_dir(flag: Option<&PathBuf>, playbook: &Path) -> PathBuf {
    flag.cloned().unwrap_or_else(|| {
        playbook
            .parent()
            .map_or_else(|| PathBuf::from("templates"), |d| d.join("templates"))
    })
}

fn run_playbook(args: &RunArgs) -> Result<i32, Error> {
    let inventory = Inventory::load(&args.inventory)?;
    let playbook = Playbook::load(&args.playbook)?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::Internal(format!("current directory: {e}")))?;
    let extra = extra_vars::parse(&args.extra_vars, &cwd)?;
    let templates = templates_dir(args.templates.as_ref(), &args.playbook);

    // Everything that can be checked offline is checked before any host is contacted.
    let problems = validate::check_playbook(
        &inventory,
        &playbook,
        &extra,
        args.limit.as_deref(),
        &templates,
    );
    if !problems.is_empty() {
        return Err(problems.into());
    }

    let opts = RunOptions {
        forks: args.forks as usize,
        check: args.check,
        diff: args.diff,
        limit: args.limit.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        extra_vars: extra,
        connect: ConnectOptions {
            ssh_config: args.ssh.ssh_config.clone(),
            accept_new_host_keys: args.ssh.accept_new_host_keys,
            interactive: interactive(),
        },
        templates_dir: templates,
        cache: crate::settings::CacheSettings::from_inventory(&inventory)
            .map_err(Diagnostics::from)?,
        no_cache: args.no_cache,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;

    let (tx, rx) = std::sync::mpsc::channel();
    let mut reporter = HumanReporter::new(live_view_wanted(), args.verbose);
    let printer = std::thread::spawn(move || {
        for event in rx {
            reporter.handle(&event);
        }
    });
    let interrupt = Arc::new(Interrupt::default());
    let result = runtime.block_on(async {
        let flag = Arc::clone(&interrupt);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.trigger();
                // A second Ctrl-C aborts at once.
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\naborted");
                    std::process::exit(130);
                }
            }
        });
        engine::run(&inventory, &playbook, &opts, tx, Arc::clone(&interrupt)).await
    });
    let _ = printer.join();
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(outcome) => Ok(outcome.exit_code()),
        Err(engine::RunError::HostKeys(_)) => Ok(exit::REFUSED),
        Err(e) => Err(Error::Refused(e.to_string())),
    }
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
