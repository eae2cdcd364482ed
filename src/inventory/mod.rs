//! The TOML inventory: hosts, groups, connection defaults and variables.
//!
//! `Inventory::load` reads and checks the file; `select` resolves host patterns;
//! `vars_for` merges a host's variables by precedence (see docs/inventory.md, "Variable precedence").
//!
//! Top-level tables: `[defaults]` (connection settings for every host), `[vars]`,
//! `[settings]` (capstan's own settings, typed and checked: see [`crate::settings`]),
//! `[hosts.NAME]` (`address`, `vars`, and any `[defaults]` key as an override) and
//! `[groups.NAME]` (`hosts`, `children`, `vars`). Every table rejects unknown keys.
//!
//! A value written `{ env = "NAME" }` or `{ file = "path" }` (a table whose only key is one
//! of those) is a secret, wherever a variable value may be, at any depth; `password`,
//! `key_passphrase` and `become_password` must be secrets. Secrets are read at load,
//! registered with [`crate::secrets`], and become strings. Relative paths (secret files,
//! identity files, known_hosts) start from the inventory's directory; `~` is `$HOME`.
//!
//! `all` (every host) and `ungrouped` (hosts in no group) are implicit and reserved: no host
//! or group may take those names, and hosts and groups share one namespace.

mod connection;
pub(crate) mod input;
mod merge;
mod output;
mod parse;
pub mod pattern;
pub(crate) mod secret;
mod settings;
mod tree;
pub(crate) mod value;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::diag::Diagnostics;
use crate::vars::Vars;

pub use pattern::PatternError;

/// The candidate closest to `name`, the first one listed when several are equally close
/// (`diag::suggest` keeps the last of equals, so the list goes in reversed).
pub(crate) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    crate::diag::suggest(name, candidates.iter().rev().copied())
}

/// `; did you mean "x"?` for [`closest`], or nothing.
pub(crate) fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    closest(name, candidates).map_or_else(String::new, |s| format!("; did you mean \"{s}\"?"))
}

/// How capstan reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionKind {
    #[default]
    Ssh,
    /// Run commands on the control machine, without SSH.
    Local,
}

/// What to do with a host key that is not in known_hosts. A changed key is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown keys.
    #[default]
    Strict,
    /// Accept an unknown key and record it in known_hosts.
    AcceptNew,
}

/// One host as the inventory describes it, with `[defaults]` already applied.
/// Fields left `None` may still be filled from `~/.ssh/config` by the transport.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Host {
    pub name: String,
    /// Address to connect to; `None` means "the ssh_config `HostName`, else the name".
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    /// Default timeout of one command on this host.
    pub command_timeout: Option<Duration>,
    pub connection: ConnectionKind,
    pub host_key_checking: Option<HostKeyPolicy>,
    /// ProxyJump hops, `[user@]host[:port]`, outermost first.
    pub proxy_jump: Vec<String>,
    /// Password for password authentication (a secret), only when configured.
    #[serde(skip)]
    pub password: Option<String>,
    /// Passphrase for encrypted identity files (a secret).
    #[serde(skip)]
    pub key_passphrase: Option<String>,
    /// Password for `sudo` when `become` needs one (a secret).
    #[serde(skip)]
    pub become_password: Option<String>,
    /// The host's own `vars` (not merged).
    pub vars: Vars,
    /// Groups the host belongs to, directly or through children, in precedence order.
    pub groups: Vec<String>,
    /// Line of `[hosts.NAME]` in the inventory file, for messages.
    #[serde(skip)]
    pub line: usize,
}

/// A named group of hosts and child groups.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vars,
    #[serde(skip)]
    pub line: usize,
}

/// A parsed, checked inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    /// Inventory-wide `[vars]`.
    pub vars: Vars,
    /// `[defaults]` keys that are not connection settings are also variables (lowest level).
    pub default_vars: Vars,
    pub hosts: IndexMap<String, Host>,
    pub groups: IndexMap<String, Group>,
    /// `[settings]`, typed and checked when the inventory loads.
    pub settings: crate::settings::Settings,
}

impl Inventory {
    /// Reads and checks the inventory at `path`, resolving its secrets.
    ///
    /// # Errors
    /// Every problem in the file, each at its `file:line:column`: TOML syntax, unknown keys,
    /// wrong types or values, unresolvable secrets, unknown members, group cycles.
    pub fn load(path: &Path) -> Result<Inventory, Diagnostics> {
        parse::load(path, &input::process_env)
    }

    /// Checks inventory text `source` as if read from `path`: [`Inventory::load`] without
    /// the read. Relative secret and identity files still start from `path`'s directory.
    ///
    /// # Errors
    /// As [`Inventory::load`].
    pub fn parse(path: &Path, source: &str) -> Result<Inventory, Diagnostics> {
        parse::parse(path, source, &input::process_env)
    }
}
