//! One module per subcommand: each turns its parsed arguments into the domain's requests,
//! runs them and prints what the operator reads. Helpers shared by several live here.

pub(crate) mod apply;
pub(crate) mod audit;
pub(crate) mod cache;
pub(crate) mod inventory;
pub(crate) mod lock;
pub(crate) mod run;
pub(crate) mod upgrade_path;
pub(crate) mod validate;

use crate::cli::{RunLockArgs, SshArgs};
use crate::error::Error;
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
