//! Command-line arguments (clap). Only parsing lives here; `app` turns them into work.
//! Flag names follow Ansible's where one exists.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "capstan",
    version,
    about = "Idempotent task runner over SSH for container clusters such as Docker Trusted Registry",
    long_about = "capstan runs TOML playbooks against the hosts of a TOML inventory over SSH, \
                  checking each host before acting, many hosts at once.\n\n\
                  Exit codes: 0 success · 1 usage or internal error · 2 a host failed or was \
                  unreachable · 3 refused before any change (invalid input, template error, \
                  safety rule, host key, lock) · 4 --check --detailed-exitcode found pending changes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook against an inventory
    Run(RunArgs),
    /// Check inventory and playbooks offline: syntax, keys, hosts, templates, variables
    Validate(ValidateArgs),
    /// Show the inventory: hosts with merged variables, or the group tree
    Inventory(InventoryArgs),
    /// Carry out a plan saved by `run --check --plan-out`, refusing if anything drifted
    Apply(ApplyArgs),
    /// Show or clear the per-host result cache
    Cache(CacheArgs),
    /// Judge a DTR upgrade FROM -> TO by the upgrade table, or plan the hops over the
    /// available versions
    UpgradePath(UpgradePathArgs),
}

#[derive(Debug, Args)]
pub struct UpgradePathArgs {
    /// The version running now (for a cluster: its lowest replica version)
    pub from: String,
    /// The version to reach
    pub to: String,
    /// Versions that can be installed (comma- or space-separated), or `@FILE` to read them
    /// from a file; without it only the single hop FROM -> TO is judged
    #[arg(long, value_name = "VERSIONS")]
    pub available: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Allow pre-release and build-metadata versions (refused by default)
    #[arg(long)]
    pub allow_prerelease: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook (TOML)
    pub playbook: PathBuf,
    /// The inventory (TOML)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Narrow the hosts: names, groups, globs, `!exclude`, `&intersect`, comma lists
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Extra variables, highest precedence: `key=value` or `@file.toml` (repeatable)
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Query only: report what would change, change nothing
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Show before → after for files and the commands that run
    #[arg(short = 'D', long)]
    pub diff: bool,
    /// Hosts worked on in parallel
    #[arg(short = 'f', long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,
    /// Run only tasks with these tags (comma-separated)
    #[arg(short = 't', long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Skip tasks with these tags (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub skip_tags: Vec<String>,
    /// Execute everything again, ignoring results recorded by earlier runs
    #[arg(long)]
    pub no_cache: bool,
    /// With --check: exit 4 when something would change (0 when nothing would)
    #[arg(long, requires = "check")]
    pub detailed_exitcode: bool,
    /// With --check: write the plan (what would change, and the state it rests on) to FILE,
    /// for `capstan apply`
    #[arg(long, value_name = "FILE", requires = "check")]
    pub plan_out: Option<PathBuf>,
    /// Run only on the hosts that failed or were unreachable in the last run of this
    /// playbook against this inventory
    #[arg(long)]
    pub retry_failed: bool,
    /// Refuse (exit 3) unless, in check mode, this playbook finds the hosts of INVENTORY
    /// (e.g. staging) fully converged
    #[arg(long, value_name = "INVENTORY")]
    pub require_converged: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Directory of template files [default: `templates/` beside the playbook]
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Also print each task's stdout and connection times
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// OpenSSH client config to read host aliases from [default: ~/.ssh/config]
    #[arg(short = 'F', long = "ssh-config", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Accept and record host keys not yet in known_hosts (a changed key is always refused)
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The inventory (TOML)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Playbooks to check
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    /// Extra variables, as for `run`
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Narrow the hosts checked, as for `run`
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Directory of template files [default: `templates/` beside each playbook]
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["list", "graph", "host"])))]
pub struct InventoryArgs {
    /// The inventory (TOML)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Every host with its merged variables, as JSON (secrets masked)
    #[arg(long)]
    pub list: bool,
    /// The group tree
    #[arg(long)]
    pub graph: bool,
    /// One host with its merged variables, as JSON
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file written by `run --check --plan-out`
    pub plan: PathBuf,
    /// Hosts worked on in parallel
    #[arg(short = 'f', long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Also print each task's stdout and connection times
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[arg(value_enum)]
    pub action: CacheAction,
    /// The inventory (TOML)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Only these hosts
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheAction {
    Show,
    Clear,
}
