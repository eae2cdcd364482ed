//! Command-line arguments (clap). Only parsing lives here; `app` turns them into work.
//! Flag names follow Ansible's where one exists.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

pub use crate::engine::DEFAULT_DIFF_CONTEXT;

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
    Run(Box<RunArgs>),
    /// Run one command on the hosts PATTERN matches: `capstan exec web -i inv.toml -- uptime`
    Exec(Box<ExecArgs>),
    /// Check inventory and playbooks offline: syntax, keys, hosts, templates, variables
    Validate(ValidateArgs),
    /// Show the inventory: hosts with merged variables, or the group tree
    Inventory(InventoryArgs),
    /// Show, take or release the cluster lock on the inventory's hosts
    Lock(LockArgs),
    /// Show the audit trail of runs that changed something, newest first
    Audit(AuditArgs),
    /// Carry out a plan saved by `run --check --plan-out`, refusing if anything drifted
    Apply(ApplyArgs),
    /// Show or clear the per-host result cache
    Cache(CacheArgs),
    /// Judge a DTR upgrade FROM -> TO by the upgrade table, or plan the hops over the
    /// available versions
    UpgradePath(UpgradePathArgs),
    /// Print a shell completion script: `capstan completions bash > /etc/bash_completion.d/capstan`
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `capstan man > capstan.1`
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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
    /// Lines of context around each change in --diff
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DIFF_CONTEXT)]
    pub diff_context: usize,
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
    /// More output, counted as Ansible counts it: `-v` (and `-vv`) each task's stdout and
    /// connection times; `-vvv` also the SSH library's debug log on stderr
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub habits: AnsibleArgs,
    #[command(flatten)]
    pub reports: ReportArgs,
    #[command(flatten)]
    pub lock: RunLockArgs,
}

/// Flags that mean what they mean to `ansible-playbook`.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "As in ansible-playbook")]
pub struct AnsibleArgs {
    /// Connect as USER on every host, whatever the inventory says
    #[arg(
        short = 'u',
        long = "user",
        value_name = "USER",
        conflicts_with = "plan_out"
    )]
    pub user: Option<String>,
    /// Run every play's tasks with `become` (sudo) unless a task sets `become = false`
    #[arg(short = 'b', long = "become", conflicts_with = "plan_out")]
    pub r#become: bool,
    /// Ask for the sudo password on the terminal (for every host)
    #[arg(short = 'K', long = "ask-become-pass")]
    pub ask_become_pass: bool,
    /// Print the hosts each play would run on, and exit (nothing is contacted)
    #[arg(long)]
    pub list_hosts: bool,
    /// Print the tasks that would run, with their tags, and exit (nothing is contacted)
    #[arg(long)]
    pub list_tasks: bool,
    /// Print every tag of the playbook, and exit (nothing is contacted)
    #[arg(long)]
    pub list_tags: bool,
    /// Start at the first task called NAME; the tasks (and plays) before it do not run
    #[arg(long, value_name = "NAME", conflicts_with = "plan_out")]
    pub start_at_task: Option<String>,
    /// Confirm each task on the terminal before the run starts: yes, no, or continue
    /// with all the rest
    #[arg(long, conflicts_with = "plan_out")]
    pub step: bool,
    /// Check the inventory and playbook offline and exit: the same as `capstan validate`
    #[arg(long)]
    pub syntax_check: bool,
}

/// `capstan exec`: one command, ad hoc, on the hosts a pattern matches.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The hosts: names, groups, globs, `!exclude`, `&intersect`, comma lists
    pub pattern: String,
    /// The inventory (TOML)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// The command, after `--`; its words are joined with spaces and run by the host's
    /// shell, as `ssh host COMMAND...` does
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Hosts worked on in parallel
    #[arg(short = 'f', long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,
    /// Run the command with sudo
    #[arg(short = 'b', long = "become")]
    pub r#become: bool,
    /// Run it as this user (with --become) instead of root
    #[arg(long, value_name = "USER", requires = "become")]
    pub become_user: Option<String>,
    /// Ask for the sudo password on the terminal (for every host)
    #[arg(short = 'K', long = "ask-become-pass")]
    pub ask_become_pass: bool,
    /// Connect as USER on every host, whatever the inventory says
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Stop the command after this long (e.g. `30s`) [default: the inventory's command_timeout]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// More output, as for `run` (`-vvv`: the SSH protocol on stderr)
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub reports: ReportArgs,
    #[command(flatten)]
    pub lock: RunLockArgs,
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
    /// More output, as for `run`
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub reports: ReportArgs,
    #[command(flatten)]
    pub lock: RunLockArgs,
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

/// How `run` reports on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RunOutput {
    /// Lines for a person, and a live view on a terminal
    #[default]
    Human,
    /// One JSON object per line for every event
    Json,
}

/// When human output is in colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set or in CI (`CLICOLOR_FORCE` forces it on)
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Reports")]
pub struct ReportArgs {
    /// Colour the status words and the recap; wins over `NO_COLOR` and `CLICOLOR_FORCE`
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,
    /// `json`: one JSON object per line on stdout for every event, and no human output
    #[arg(long, value_enum, default_value_t = RunOutput::Human, value_name = "FORMAT")]
    pub output: RunOutput,
    /// Write the run's summary as one JSON document to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write JUnit XML to FILE: a test suite per play, a test case per host and task
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// In the JUnit report, count a change (or pending change) as a failure: for drift checks
    #[arg(long, requires = "junit")]
    pub junit_changed_as_failure: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Cluster lock")]
pub struct RunLockArgs {
    /// Why this run, kept in the lock and the audit log (e.g. "upgrade to 2.7.1")
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Wait up to this long (e.g. `10m`) for a lock held by someone else instead of refusing
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_wait: Option<Duration>,
    /// Break a stale lock (its heartbeat older than `lock_stale_after`) and take it over
    #[arg(long)]
    pub break_stale_lock: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(subcommand)]
    pub action: LockAction,
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Per host: free, or held by whom, since when, and whether its heartbeat is fresh or stale
    Status(LockTarget),
    /// Take the lock and hold it until `capstan lock release` (such a lock never goes stale)
    Acquire {
        #[command(flatten)]
        target: LockTarget,
        /// Why, shown to whoever finds the cluster locked
        #[arg(short = 'm', long, value_name = "TEXT")]
        message: Option<String>,
        /// Wait up to this long for a lock held by someone else instead of refusing
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        wait: Option<Duration>,
    },
    /// Release a lock taken with `lock acquire`; a run's lock only with `--stale` or `--force`
    Release {
        #[command(flatten)]
        target: LockTarget,
        /// Break only locks whose heartbeat is older than `lock_stale_after`
        #[arg(long, conflicts_with = "force")]
        stale: bool,
        /// Break the lock whoever holds it, even a run that is still going
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct LockTarget {
    /// The inventory (TOML)
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Narrow the hosts, as for `run`
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The inventory (TOML); the local log is `.capstan/audit.jsonl` beside it
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Only runs that touched these hosts
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Read the hosts' audit logs instead of the local one, merged by time
    #[arg(long)]
    pub remote: bool,
    /// One JSON record per line instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// Durations on the command line follow the same rule as everywhere else.
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// `ansible-playbook` and `ansible` flags capstan does not take, with what to use instead.
const ANSIBLE_FLAGS: &[(&[&str], &str)] = &[
    (
        &["--become-method"],
        "capstan becomes another user with sudo only: -b, or become = true in the playbook",
    ),
    (
        &["--become-user"],
        "with `run`, write become_user in the play or task; `capstan exec` takes --become-user",
    ),
    (
        &["-k", "--ask-pass"],
        "for password logins set password = { env = \"SSH_PASSWORD\" } in the inventory",
    ),
    (
        &["--private-key", "--key-file"],
        "set identity_file under [defaults] or on the host in the inventory",
    ),
    (
        &["-c", "--connection"],
        "set connection = \"ssh\" or \"local\" in the inventory",
    ),
    (
        &["-T", "--timeout"],
        "set connect_timeout (and command_timeout) in the inventory; a task takes timeout",
    ),
    (
        &[
            "--vault-password-file",
            "--ask-vault-pass",
            "--vault-id",
            "-J",
        ],
        "capstan has no vault: secrets come from the environment, { env = \"NAME\" } in the inventory",
    ),
    (
        &["--flush-cache"],
        "--no-cache runs everything again; `capstan cache clear` forgets recorded results",
    ),
    (&["--force-handlers"], "handlers are not supported yet"),
    (
        &["-a", "--args", "--module-name", "-M", "--module-path"],
        "capstan has no modules; an ad-hoc command goes after `--`: capstan exec PATTERN -i INVENTORY -- COMMAND",
    ),
    (
        &[
            "--ssh-common-args",
            "--ssh-extra-args",
            "--scp-extra-args",
            "--sftp-extra-args",
        ],
        "SSH options come from the inventory and from an ssh_config file (-F)",
    ),
    (&["--inventory-file"], "the inventory is -i FILE (TOML)"),
];

/// What to use instead of an Ansible flag clap refused as unknown, for the line after
/// clap's own error.
#[must_use]
pub fn ansible_flag_hint(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
    ANSIBLE_FLAGS
        .iter()
        .find(|(flags, _)| flags.contains(&flag))
        .map(|(_, instead)| format!("`{flag}` is Ansible's; capstan does not take it: {instead}"))
}
