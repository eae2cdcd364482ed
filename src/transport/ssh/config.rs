//! Where and how to reach a host: the inventory's `Host` combined with ssh_config.
//!
//! The inventory wins wherever both speak. ssh_config is `-F FILE`, else `~/.ssh/config`
//! when it exists, queried with the inventory name as the `Host` alias, as `ssh NAME` would.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{HostParams, ParseRule, SshConfig};

use crate::inventory::{Host, HostKeyPolicy};
use crate::transport::{ConnectOptions, TransportError};

use super::known_hosts;

/// OpenSSH's default `ConnectTimeout` is the system's TCP timeout; ours is shorter.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A secret carried to authentication; never printed.
#[derive(Clone, Default)]
pub(crate) struct Secret(Option<String>);

impl Secret {
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str(crate::secrets::MASK),
            None => f.write_str("None"),
        }
    }
}

/// One host (or ProxyJump hop) with every connection setting decided.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// The inventory name or the hop as written; the ssh_config `Host` alias.
    pub name: String,
    /// Address to connect to (`HostName`).
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// Private keys to try, in order: the inventory's, else ssh_config `IdentityFile`,
    /// else those of `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exist.
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: offer only agent keys that belong to `identity_files`.
    pub identities_only: bool,
    /// ssh-agent socket (`IdentityAgent`, else `SSH_AUTH_SOCK`); `None`: no agent.
    pub agent: Option<PathBuf>,
    /// The known_hosts file checked, and appended to under accept-new.
    pub known_hosts: PathBuf,
    /// What the host key is filed under: `host`, `[host]:port`, or `HostKeyAlias`.
    pub host_key_name: String,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// ProxyJump hops, outermost first, each resolved through ssh_config.
    pub jumps: Vec<ResolvedTarget>,
    /// Settings read but not honoured as written, for the operator.
    pub notes: Vec<String>,
    pub(crate) password: Secret,
    pub(crate) key_passphrase: Secret,
}

impl ResolvedTarget {
    /// `name (address:port)`, or just the name when it is the address, for messages.
    pub fn describe(&self) -> String {
        if self.name == self.hostname {
            format!("{}:{}", self.hostname, self.port)
        } else {
            format!("{} ({}:{})", self.name, self.hostname, self.port)
        }
    }
}

/// Combines `host` with ssh_config (see the module docs); reads files, opens no connection.
pub fn resolve(host: &Host, opts: &ConnectOptions) -> Result<ResolvedTarget, TransportError> {
    let config = SshConfigFile::load(opts.ssh_config.as_deref())?;
    let params = config.query(&host.name);
    let mut notes = config.notes.clone();

    let hostname = host
        .address
        .clone()
        .or_else(|| {
            params
                .host_name
                .as_deref()
                .map(|h| expand_tokens(h, &host.name))
        })
        .unwrap_or_else(|| host.name.clone());
    let port = host.port.or(params.port).unwrap_or(22);
    let user = match host.user.clone().or_else(|| params.user.clone()) {
        Some(user) => user,
        None => local_user().ok_or_else(|| {
            TransportError::Other(format!(
                "no user for host `{}`: set `user` in the inventory or `User` in ssh_config",
                host.name
            ))
        })?,
    };
    let identity_files = if host.identity_files.is_empty() {
        params
            .identity_file
            .clone()
            .unwrap_or_else(default_identity_files)
    } else {
        host.identity_files.clone()
    };
    let known_hosts = match &host.known_hosts {
        Some(path) => path.clone(),
        None => user_known_hosts(&params).unwrap_or_else(default_known_hosts),
    };
    let host_key_policy = if opts.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else if let Some(policy) = host.host_key_checking {
        policy
    } else {
        strict_host_key_checking(&params, &mut notes).unwrap_or_default()
    };
    let connect_timeout = host
        .connect_timeout
        .or(params.connect_timeout)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);

    let mut target = ResolvedTarget {
        name: host.name.clone(),
        host_key_name: host_key_name(&params, &hostname, port),
        hostname,
        port,
        user,
        identity_files,
        identities_only: flag(&params, "identitiesonly"),
        agent: identity_agent(&params),
        known_hosts,
        host_key_policy,
        connect_timeout,
        jumps: Vec::new(),
        notes,
        password: Secret(host.password.clone()),
        key_passphrase: Secret(host.key_passphrase.clone()),
    };

    let hops: Vec<String> = if host.proxy_jump.is_empty() {
        params.proxy_jump.clone().unwrap_or_default()
    } else {
        host.proxy_jump.clone()
    };
    let hops: Vec<&str> = hops
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    if hops.first().is_some_and(|h| h.eq_ignore_ascii_case("none")) {
        return Ok(target);
    }
    for spec in hops {
        let hop = resolve_hop(spec, &config, &target, opts)?;
        target.jumps.push(hop);
    }
    Ok(target)
}

/// A ProxyJump hop: resolved through ssh_config under its own name; what ssh_config leaves
/// open is taken from the target (identity files, agent, known_hosts, policy, timeout).
/// The target's password is never sent to a hop.
fn resolve_hop(
    spec: &str,
    config: &SshConfigFile,
    target: &ResolvedTarget,
    opts: &ConnectOptions,
) -> Result<ResolvedTarget, TransportError> {
    let jump = JumpSpec::parse(spec).ok_or_else(|| {
        TransportError::Other(format!(
            "ProxyJump hop `{spec}` of `{}` is not `[user@]host[:port]`",
            target.name
        ))
    })?;
    let params = config.query(&jump.host);
    let mut notes = Vec::new();
    let hostname = params
        .host_name
        .as_deref()
        .map(|h| expand_tokens(h, &jump.host))
        .unwrap_or_else(|| jump.host.clone());
    let port = jump.port.or(params.port).unwrap_or(22);
    let user = jump
        .user
        .or_else(|| params.user.clone())
        .or_else(local_user)
        .unwrap_or_else(|| target.user.clone());
    let host_key_policy = if opts.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else {
        strict_host_key_checking(&params, &mut notes).unwrap_or(target.host_key_policy)
    };
    Ok(ResolvedTarget {
        name: jump.host.clone(),
        host_key_name: host_key_name(&params, &hostname, port),
        hostname,
        port,
        user,
        identity_files: params
            .identity_file
            .clone()
            .unwrap_or_else(|| target.identity_files.clone()),
        identities_only: flag(&params, "identitiesonly") || target.identities_only,
        agent: if params.unsupported_fields.contains_key("identityagent") {
            identity_agent(&params)
        } else {
            target.agent.clone()
        },
        known_hosts: user_known_hosts(&params).unwrap_or_else(|| target.known_hosts.clone()),
        host_key_policy,
        connect_timeout: params
            .connect_timeout
            .filter(|d| !d.is_zero())
            .unwrap_or(target.connect_timeout),
        jumps: Vec::new(),
        notes,
        password: Secret(None),
        key_passphrase: target.key_passphrase.clone(),
    })
}

/// `[user@]host[:port]` or `ssh://[user@]host[:port]`; IPv6 addresses in brackets.
#[derive(Debug, PartialEq, Eq)]
struct JumpSpec {
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

impl JumpSpec {
    fn parse(spec: &str) -> Option<JumpSpec> {
        let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
        let (user, rest) = match spec.rsplit_once('@') {
            Some((user, rest)) => (Some(user.to_owned()).filter(|u| !u.is_empty()), rest),
            None => (None, spec),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner.split_once(']')?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port.parse().ok()?)),
                None if after.is_empty() => (host, None),
                None => return None,
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port.parse().ok()?)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(JumpSpec {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

/// A parsed ssh_config, or none.
struct SshConfigFile {
    config: Option<SshConfig>,
    notes: Vec<String>,
}

impl SshConfigFile {
    fn load(explicit: Option<&Path>) -> Result<SshConfigFile, TransportError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match dirs::home_dir().map(|h| h.join(".ssh").join("config")) {
                Some(path) if path.is_file() => path,
                _ => {
                    return Ok(SshConfigFile {
                        config: None,
                        notes: Vec::new(),
                    });
                }
            },
        };
        let unreadable = |e: &dyn fmt::Display| {
            TransportError::Other(format!("cannot read ssh config `{}`: {e}", path.display()))
        };
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&e))?;
        let (text, notes) = neutralise_match_blocks(&text, &path);
        // Options the parser does not model are kept (we read some of them) or ignored,
        // as OpenSSH versions differ in the options they know.
        let rules = ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS;
        let config = SshConfig::default()
            .parse(&mut BufReader::new(text.as_bytes()), rules)
            .map_err(|e| unreadable(&e))?;
        Ok(SshConfigFile {
            config: Some(config),
            notes,
        })
    }

    fn query(&self, alias: &str) -> HostParams {
        match &self.config {
            Some(config) => config.query(alias),
            None => SshConfig::default().query(alias),
        }
    }
}

/// The parser knows `Host` blocks but not `Match`: its options would leak into the block
/// above. `Match all` becomes `Host *`; any other `Match` block is skipped, with a note.
fn neutralise_match_blocks(text: &str, path: &Path) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut notes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let keyword_len = trimmed
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(trimmed.len());
        if trimmed[..keyword_len].eq_ignore_ascii_case("match") {
            let criteria = trimmed[keyword_len..]
                .trim_start_matches(['=', ' ', '\t'])
                .trim();
            if criteria.eq_ignore_ascii_case("all") {
                out.push_str("Host *\n");
            } else {
                out.push_str("Host !*\n");
                notes.push(format!(
                    "`{}` line {}: `Match {criteria}` blocks are not supported and were skipped",
                    path.display(),
                    index + 1
                ));
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, notes)
}

/// Values of an option the parser keeps unmodelled (keys are lowercase).
fn raw<'a>(params: &'a HostParams, key: &str) -> Option<&'a [String]> {
    params
        .unsupported_fields
        .get(key)
        .or_else(|| params.ignored_fields.get(key))
        .map(Vec::as_slice)
        .filter(|v| !v.is_empty())
}

fn flag(params: &HostParams, key: &str) -> bool {
    raw(params, key)
        .and_then(|v| v.first())
        .is_some_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true"))
}

/// `StrictHostKeyChecking`: `yes` and `accept-new` as written. `no`/`off` would accept any
/// key, and `ask` needs a prompt capstan does not show: both are read as `yes`, with a note.
fn strict_host_key_checking(params: &HostParams, notes: &mut Vec<String>) -> Option<HostKeyPolicy> {
    let value = raw(params, "stricthostkeychecking")?
        .first()?
        .to_ascii_lowercase();
    match value.as_str() {
        "yes" | "true" => Some(HostKeyPolicy::Strict),
        "accept-new" => Some(HostKeyPolicy::AcceptNew),
        other => {
            notes.push(format!(
                "ssh_config `StrictHostKeyChecking {other}` is read as `yes`: capstan never \
                 disables host key checking (use `host_key_checking = \"accept-new\"` to record \
                 new hosts)"
            ));
            Some(HostKeyPolicy::Strict)
        }
    }
}

/// The first `UserKnownHostsFile`; it is also where accept-new records keys.
fn user_known_hosts(params: &HostParams) -> Option<PathBuf> {
    let first = raw(params, "userknownhostsfile")?.first()?;
    Some(expand_path(first))
}

fn host_key_name(params: &HostParams, hostname: &str, port: u16) -> String {
    match raw(params, "hostkeyalias").and_then(|v| v.first()) {
        Some(alias) => alias.clone(),
        None => known_hosts::lookup_name(hostname, port),
    }
}

/// `IdentityAgent` (`none`, `SSH_AUTH_SOCK`, `$VAR` or a path), else `$SSH_AUTH_SOCK`.
fn identity_agent(params: &HostParams) -> Option<PathBuf> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match raw(params, "identityagent").and_then(|v| v.first()) {
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some(v) if v == "SSH_AUTH_SOCK" => from_env("SSH_AUTH_SOCK"),
        Some(v) if v.starts_with('$') => from_env(v.trim_start_matches('$')),
        Some(v) => Some(expand_path(v)),
        None => from_env("SSH_AUTH_SOCK"),
    }
}

fn default_identity_files() -> Vec<PathBuf> {
    let Some(ssh_dir) = dirs::home_dir().map(|h| h.join(".ssh")) else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| ssh_dir.join(name))
        .filter(|path| path.is_file())
        .collect()
}

fn default_known_hosts() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_default()
        .join(".ssh")
        .join("known_hosts")
}

fn local_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|u| !u.is_empty())
}

/// `~/` expansion for paths the parser hands over unexpanded.
fn expand_path(value: &str) -> PathBuf {
    match (value.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if value == "~" => dirs::home_dir().unwrap_or_default(),
        _ => PathBuf::from(value),
    }
}

/// `%h` (the alias) and `%%` in `HostName`.
fn expand_tokens(value: &str, alias: &str) -> String {
    value
        .replace("%%", "\u{0}")
        .replace("%h", alias)
        .replace('\u{0}', "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_specs() {
        let p = |s| JumpSpec::parse(s);
        assert_eq!(
            p("alice@bastion:2222"),
            Some(JumpSpec {
                user: Some("alice".into()),
                host: "bastion".into(),
                port: Some(2222)
            })
        );
        assert_eq!(
            p("ssh://[::1]:22"),
            Some(JumpSpec {
                user: None,
                host: "::1".into(),
                port: Some(22)
            })
        );
        assert_eq!(p("bastion").map(|j| j.host), Some("bastion".into()));
        assert_eq!(p("bastion:http"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn match_blocks_are_neutralised() {
        let (text, notes) = neutralise_match_blocks(
            "Match all\n  User a\nmatch host x\n  User b\n",
            Path::new("c"),
        );
        assert_eq!(text, "Host *\n  User a\nHost !*\n  User b\n");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("line 3"), "{notes:?}");
    }

    #[test]
    fn tokens() {
        assert_eq!(expand_tokens("%h.example.com", "db1"), "db1.example.com");
        assert_eq!(expand_tokens("100%%", "x"), "100%");
    }
}
