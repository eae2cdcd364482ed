//! `run --list-hosts`, `--list-tasks` and `--list-tags`, as `ansible-playbook` prints them:
//! read offline from the inventory and playbook, printed, and nothing is contacted.

use std::fmt::Write as _;

use crate::cli::RunArgs;
use crate::engine::{self, DeclinedTasks};
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::playbook::{Play, Playbook};

pub(crate) fn run(args: &RunArgs) -> Result<i32, Error> {
    let playbook = Playbook::load(&args.playbook)?;
    let habits = &args.habits;
    engine::check_tags(&playbook, &args.tags, &args.skip_tags)
        .map_err(|e| Error::Refused(e.to_string()))?;
    let declined = match &habits.start_at_task {
        Some(name) => {
            engine::start_at_task(&playbook, name).map_err(|e| Error::Refused(e.to_string()))?
        }
        None => DeclinedTasks::default(),
    };
    let hosts: Vec<Vec<String>> = if habits.list_hosts {
        let inventory = Inventory::load(&args.inventory)?;
        let plays = engine::resolve_plays(&inventory, &playbook, args.limit.as_deref())
            .map_err(|e| Error::Refused(e.to_string()))?;
        plays
            .iter()
            .map(|(_, hosts)| hosts.iter().map(|h| h.name.clone()).collect())
            .collect()
    } else {
        Vec::new()
    };
    let mut text = format!("\nplaybook: {}\n", args.playbook.display());
    for (n, play) in playbook.plays.iter().enumerate() {
        let _ = writeln!(
            text,
            "\n  play #{} ({}): {}\tTAGS: [{}]",
            n + 1,
            play.hosts,
            play.name,
            play.tags.join(", ")
        );
        if let Some(hosts) = hosts.get(n) {
            list_hosts(&mut text, hosts);
        }
        let selected = engine::select_tasks(play, &args.tags, &args.skip_tags, &declined);
        if habits.list_tasks {
            list_tasks(&mut text, play, &selected);
        }
        if habits.list_tags {
            let mut tags: Vec<&str> = selected
                .iter()
                .flat_map(|&i| play.tasks[i].tags.iter().chain(play.tags.iter()))
                .map(String::as_str)
                .collect();
            tags.sort_unstable();
            tags.dedup();
            let _ = writeln!(text, "    TASK TAGS: [{}]", tags.join(", "));
        }
    }
    print!("{text}");
    Ok(exit::SUCCESS)
}

fn list_hosts(text: &mut String, hosts: &[String]) {
    let _ = writeln!(text, "    hosts ({}):", hosts.len());
    for h in hosts {
        let _ = writeln!(text, "      {h}");
    }
}

fn list_tasks(text: &mut String, play: &Play, selected: &[usize]) {
    let _ = writeln!(text, "    tasks:");
    for &i in selected {
        let task = &play.tasks[i];
        let mut tags: Vec<&str> = task
            .tags
            .iter()
            .chain(play.tags.iter())
            .map(String::as_str)
            .collect();
        tags.sort_unstable();
        tags.dedup();
        let _ = writeln!(text, "      {}\tTAGS: [{}]", task.name, tags.join(", "));
    }
}
