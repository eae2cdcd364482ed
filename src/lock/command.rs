//! `capstan lock status|acquire|release`: the lock without a run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

pub use super::script::ReleaseMode;
use super::script::{self, Reply};
use super::{Claim, LockInfo, LockSettings, Target, ask, take};
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::transport::ConnectOptions;

/// What a command prints on stdout, and its exit code.
#[derive(Debug)]
pub struct CommandOutput {
    pub code: i32,
    pub text: String,
}

/// What `capstan lock` is asked to do.
#[derive(Debug, Clone)]
pub enum LockAction {
    Status,
    Acquire {
        message: Option<String>,
        wait: Option<Duration>,
    },
    Release(ReleaseMode),
}

/// One `capstan lock` command: the inventory, the hosts, how to reach them, what to do.
#[derive(Debug, Clone)]
pub struct LockRequest {
    pub inventory: PathBuf,
    pub limit: Option<String>,
    pub connect: ConnectOptions,
    pub action: LockAction,
}

/// Hosts connected to, by name, and those that could not be, with why.
pub(crate) type Connected = (Vec<Target>, Vec<(String, String)>);

/// Connects to the inventory's hosts matching `limit` (all by default), many at once.
///
/// # Errors
/// An invalid `--limit` pattern.
pub(crate) async fn connect(
    inventory: &Inventory,
    limit: Option<&str>,
    opts: &ConnectOptions,
) -> Result<Connected, Error> {
    let hosts = inventory
        .select(limit.unwrap_or("all"))
        .map_err(|e| Error::Refused(format!("--limit: {e}")))?;
    let connected =
        crate::connect::all(&hosts, opts, inventory.settings.connect_concurrency()).await;
    let mut failed: Vec<(String, String)> = connected
        .unreachable
        .iter()
        .map(|(n, e)| (n.clone(), e.to_string()))
        .chain(connected.key_problems.iter().cloned())
        .collect();
    failed.sort();
    let targets = connected
        .sessions
        .into_iter()
        .map(|(n, (s, _))| (n, s))
        .collect();
    Ok((targets, failed))
}

async fn close(targets: Vec<Target>) {
    for (_, s) in targets {
        if let Some(s) = Arc::into_inner(s) {
            s.close().await;
        }
    }
}

/// Runs `capstan lock ...`.
///
/// # Errors
/// Unreadable inventory or settings; `acquire` refused (held elsewhere, a host unreachable).
pub async fn run(req: &LockRequest) -> Result<CommandOutput, Error> {
    let inventory = Inventory::load(&req.inventory)?;
    let settings = LockSettings::from_inventory(&inventory);
    let (hosts, unreachable) = connect(&inventory, req.limit.as_deref(), &req.connect).await?;
    let out = match &req.action {
        LockAction::Status => Ok(status(&settings, &hosts, &unreachable).await),
        LockAction::Acquire { message, wait } => {
            acquire(
                &settings,
                &req.inventory,
                &hosts,
                &unreachable,
                message.clone(),
                *wait,
            )
            .await
        }
        LockAction::Release(mode) => Ok(release(&settings, &hosts, &unreachable, *mode).await),
    };
    close(hosts).await;
    out
}

fn heading(s: &LockSettings) -> String {
    format!(
        "lock `{}` in {} (a run's lock is stale after {})\n",
        s.cluster,
        s.lock_dir.shown,
        humantime::format_duration(s.stale_after)
    )
}

/// Runs `text` on every host; answers in host order.
async fn ask_all(hosts: &[Target], text: &str) -> Vec<(String, Result<Reply, String>)> {
    join_all(hosts.iter().map(|(name, session)| async move {
        let r = ask(session, text.to_owned(), None)
            .await
            .map(|(_, reply)| reply);
        (name.clone(), r)
    }))
    .await
}

fn table(rows: &mut Vec<(String, String)>, unreachable: &[(String, String)]) -> String {
    rows.extend(
        unreachable
            .iter()
            .map(|(h, why)| (h.clone(), format!("unreachable: {why}"))),
    );
    rows.sort();
    let width = rows.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (host, what) in rows.iter() {
        let _ = writeln!(s, "  {host:<width$}  {what}");
    }
    s
}

async fn status(
    s: &LockSettings,
    hosts: &[Target],
    unreachable: &[(String, String)],
) -> CommandOutput {
    let mut code = if unreachable.is_empty() {
        exit::SUCCESS
    } else {
        exit::HOSTS_FAILED
    };
    let mut rows = Vec::new();
    for (host, r) in ask_all(hosts, &script::status(s)).await {
        let what = match r {
            Ok(Reply::Free) => "free".to_owned(),
            Ok(Reply::Held(found)) => format!("held by {}", found.describe(s.stale_after)),
            Ok(other) => format!("error: unexpected answer {other:?}"),
            Err(e) => format!("error: {e}"),
        };
        if what.starts_with("error") {
            code = exit::HOSTS_FAILED;
        }
        rows.push((host, what));
    }
    CommandOutput {
        code,
        text: heading(s) + &table(&mut rows, unreachable),
    }
}

async fn acquire(
    s: &LockSettings,
    inventory: &std::path::Path,
    hosts: &[Target],
    unreachable: &[(String, String)],
    message: Option<String>,
    wait: Option<std::time::Duration>,
) -> Result<CommandOutput, Error> {
    if let Some((host, why)) = unreachable.first() {
        return Err(Error::Refused(format!(
            "cannot take the lock `{}`: `{host}` is unreachable: {why}; nothing was locked",
            s.cluster
        )));
    }
    let info = LockInfo::new(&s.cluster, None, message, true);
    let token = hex::encode(rand::random::<[u8; 16]>());
    let claim = Claim {
        settings: s,
        info: &info,
        token: &token,
        manual: true,
        break_stale: false,
    };
    take(&claim, hosts, wait, None, |_| {})
        .await
        .map_err(|e| Error::Refused(e.to_string()))?;
    Ok(CommandOutput {
        code: exit::SUCCESS,
        text: format!(
            "lock `{}` acquired on {} host(s); it holds until `capstan lock release -i {}`\n",
            s.cluster,
            hosts.len(),
            inventory.display()
        ),
    })
}

async fn release(
    s: &LockSettings,
    hosts: &[Target],
    unreachable: &[(String, String)],
    mode: ReleaseMode,
) -> CommandOutput {
    let mut code = if unreachable.is_empty() {
        exit::SUCCESS
    } else {
        exit::HOSTS_FAILED
    };
    let mut kept = false;
    let mut rows = Vec::new();
    for (host, r) in ask_all(hosts, &script::release(s, mode)).await {
        let what = match r {
            Ok(Reply::Free) => "free".to_owned(),
            Ok(Reply::Released(found)) => match found {
                Some(f) => format!("released (was held by {})", f.describe(s.stale_after)),
                None => "released".to_owned(),
            },
            Ok(Reply::Kept(found)) => {
                kept = true;
                format!("kept: held by {}", found.describe(s.stale_after))
            }
            Ok(other) => {
                code = exit::HOSTS_FAILED;
                format!("error: unexpected answer {other:?}")
            }
            Err(e) => {
                code = exit::HOSTS_FAILED;
                format!("error: {e}")
            }
        };
        rows.push((host, what));
    }
    let mut text = heading(s) + &table(&mut rows, unreachable);
    if kept {
        code = exit::REFUSED;
        text.push_str(match mode {
            ReleaseMode::Manual => {
                "= hint: a run's lock is released by the run; break a stale one with --stale, or any with --force\n"
            }
            ReleaseMode::Stale => {
                "= hint: only stale run locks were broken; a lock taken with `capstan lock acquire` is released without --stale; --force breaks any lock\n"
            }
            ReleaseMode::Force => "",
        });
    }
    CommandOutput { code, text }
}
