//! One module per subcommand: each turns its parsed arguments into the domain's requests,
//! runs them and prints what the operator reads. Helpers shared by several live here.

pub(crate) mod apply;
pub(crate) mod audit;
pub(crate) mod cache;
pub(crate) mod completions;
pub(crate) mod exec;
pub(crate) mod inventory;
mod list;
pub(crate) mod lock;
pub(crate) mod run;
mod step;
pub(crate) mod upgrade_path;
pub(crate) mod validate;

use crate::cli::{RunLockArgs, SshArgs};
use crate::error::Error;
use crate::job::BecomePassword;
use crate::secrets;
use crate::transport::ConnectOptions;

pub(crate) fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::env::var_os("CI").is_none()
}

pub(crate) fn connect_options(ssh: &SshArgs) -> ConnectOptions {
    ConnectOptions {
        ssh_config: ssh.ssh_config.clone(),
        accept_new_host_keys: ssh.accept_new_host_keys,
        interactive: interactive(),
    }
}

pub(crate) fn lock_options(args: &RunLockArgs) -> crate::lock::LockOptions {
    crate::lock::LockOptions {
        message: args.message.clone(),
        wait: args.lock_wait,
        break_stale: args.break_stale_lock,
    }
}

/// A line for the operator: on stdout, or on stderr when stdout carries JSON lines.
pub(crate) fn say(json: bool, text: &str) {
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

/// `-K`: the sudo password, asked on the terminal and masked in every output from then on.
pub(crate) fn ask_become_pass(wanted: bool) -> Result<Option<BecomePassword>, Error> {
    if !wanted {
        return Ok(None);
    }
    if !interactive() {
        return Err(Error::Refused(
            "-K/--ask-become-pass asks on a terminal and there is none; without one, set \
             `become_password = { env = \"BECOME_PASSWORD\" }` under [defaults] in the \
             inventory and export BECOME_PASSWORD"
                .into(),
        ));
    }
    let password = rpassword::prompt_password("BECOME password: ")
        .map_err(|e| Error::Refused(format!("-K: cannot read the password: {e}")))?;
    if password.is_empty() {
        return Err(Error::Refused("-K: the password is empty".into()));
    }
    secrets::register(&password);
    Ok(Some(BecomePassword(password)))
}

/// `-vvv`: the SSH library's own debug log (russh logs through `log`) on stderr, masked.
pub(crate) fn protocol_debug(verbosity: u8) {
    if verbosity >= 3 && log::set_logger(&PROTOCOL_LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

static PROTOCOL_LOG: ProtocolLog = ProtocolLog;

struct ProtocolLog;

impl log::Log for ProtocolLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let text = record.args().to_string();
            eprintln!("debug {}: {}", record.target(), secrets::mask(&text));
        }
    }

    fn flush(&self) {}
}
