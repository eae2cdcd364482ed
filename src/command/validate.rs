//! `capstan validate`: everything that can be checked offline, all problems at once.

use crate::cli::ValidateArgs;
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::job::templates_dir;
use crate::playbook::Playbook;
use crate::{extra_vars, secrets, validate};

pub(crate) fn run(args: &ValidateArgs) -> Result<i32, Error> {
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
