//! The cluster lock: before changing anything, a run takes a lock named after the cluster
//! on every host it targets, keeps it alive with a heartbeat, and releases it at the end
//! (appending the audit record on the way). A second run refuses (exit 3) naming the holder,
//! or waits with `--lock-wait`. A lock whose heartbeat stopped (its holder died) goes stale
//! and may be broken. See `script` for the lock's layout on a host.

pub mod command;
mod info;
mod script;
mod settings;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::inventory::Inventory;
use crate::report::event::{Event, LockState};
use crate::stop::Interrupt;
use crate::transport::{ExecRequest, Session};

pub use info::{Found, LockInfo, machine};
pub use settings::LockSettings;

use script::Reply;

/// How long one lock script may take on a host.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two attempts while waiting for a lock.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// What the command line decides about the lock of a run.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// `-m`: why, kept in the lock and the audit log.
    pub message: Option<String>,
    /// `--lock-wait`: how long to wait for a held lock.
    pub wait: Option<Duration>,
    /// `--break-stale-lock`.
    pub break_stale: bool,
}

/// Why the lock could not be taken. Every one refuses the run before any change (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held_message(cluster, holders, *stale_after, waited, inventory))]
    Held {
        cluster: String,
        /// Hosts grouped by what they hold.
        holders: Vec<(Vec<String>, Found)>,
        stale_after: Duration,
        /// How long capstan waited, with `--lock-wait`.
        waited: Option<Duration>,
        inventory: String,
    },
    #[error("cannot take the lock `{cluster}` on `{host}`: {reason}")]
    Host {
        cluster: String,
        host: String,
        reason: String,
    },
    #[error("interrupted while waiting for the lock `{cluster}`; nothing was changed")]
    Interrupted { cluster: String },
}

fn held_message(
    cluster: &str,
    holders: &[(Vec<String>, Found)],
    stale_after: Duration,
    waited: &Option<Duration>,
    inventory: &str,
) -> String {
    let mut s = match waited {
        Some(w) => format!(
            "cluster `{cluster}` is still locked after waiting {}; nothing was changed",
            humantime::format_duration(*w)
        ),
        None => format!("cluster `{cluster}` is locked; nothing was changed"),
    };
    for (hosts, found) in holders {
        let _ = write!(
            s,
            "\n  held by {}\n    on: {}",
            found.describe(stale_after),
            hosts.join(", ")
        );
    }
    let stale = holders.iter().any(|(_, f)| f.stale(stale_after));
    let manual = holders.iter().any(|(_, f)| f.manual);
    if stale {
        let _ = write!(
            s,
            "\n  = hint: a stale lock's holder has probably died; break it with \
             `capstan lock release --stale -i {inventory}`, or take it over with --break-stale-lock"
        );
    } else if manual {
        let _ = write!(
            s,
            "\n  = hint: it was taken with `capstan lock acquire`; `capstan lock release -i {inventory}` frees it"
        );
    } else {
        let _ = write!(
            s,
            "\n  = hint: wait for it with --lock-wait 10m; `capstan lock status -i {inventory}` shows every host"
        );
    }
    s
}

/// One host, by name, with its session.
pub(crate) type Target = (String, Arc<Session>);

/// A lock being taken: who, and how.
struct Claim<'a> {
    settings: &'a LockSettings,
    info: &'a LockInfo,
    token: &'a str,
    manual: bool,
    break_stale: bool,
}

/// Runs a lock script on one host and reads its answer. What the script reads on stdin (the
/// holder's `info`, an audit record: one line of JSON each, public and already masked) rides
/// in the script as a here-document, which spares the host spooling a stdin per lock script.
async fn ask(
    session: &Session,
    text: String,
    stdin: Option<Vec<u8>>,
) -> Result<(String, Reply), String> {
    let command = match stdin {
        Some(data) => script::with_input(&text, &String::from_utf8_lossy(&data)),
        None => text,
    };
    let req = ExecRequest {
        command,
        stdin: None,
        timeout: Some(SCRIPT_TIMEOUT),
    };
    // The lock's own scripts pass no fence: they are what the fence checks.
    let out = session
        .exec_unfenced(&req)
        .await
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let reply = script::parse(
        &stdout,
        &String::from_utf8_lossy(&out.stderr),
        &out.status.to_string(),
    )?;
    Ok((stdout, reply))
}

/// What one attempt on every host gave.
enum Attempt {
    /// Taken everywhere; the stale locks broken for it, per host.
    Taken(Vec<(String, Found)>),
    /// Held somewhere: released where taken.
    Refused(Vec<(String, Found)>),
}

/// One attempt: the first host (by name) alone, so that of two runs started together one
/// wins there and the other stops at once, then every other host at once. Anything taken is
/// given back when a host refuses.
async fn attempt(
    claim: &Claim<'_>,
    hosts: &[Target],
    dead_runs: &[String],
) -> Result<Attempt, LockError> {
    let info = serde_json::to_vec(claim.info).unwrap_or_default();
    let text = script::acquire(
        claim.settings,
        claim.token,
        claim.manual,
        claim.break_stale,
        dead_runs,
    );
    let try_one = |t: &Target| {
        let (text, info) = (text.clone(), info.clone());
        let (name, session) = (t.0.clone(), Arc::clone(&t.1));
        async move { (name, ask(&session, text, Some(info)).await) }
    };
    let Some((first, rest)) = hosts.split_first() else {
        return Ok(Attempt::Taken(Vec::new()));
    };
    let mut results = vec![try_one(first).await];
    if matches!(results[0].1, Ok((_, Reply::Acquired { .. }))) {
        results.extend(join_all(rest.iter().map(try_one)).await);
    }
    let mut taken = Vec::new();
    let mut took_over = Vec::new();
    let mut refused = Vec::new();
    let mut failed = None;
    for (host, result) in results {
        match result {
            Ok((_, Reply::Acquired { took_over: old })) => {
                if let Some(old) = old {
                    took_over.push((host.clone(), old));
                }
                taken.push(host);
            }
            Ok((_, Reply::Held(found))) => refused.push((host, found)),
            Ok((_, other)) => failed = Some((host, format!("unexpected answer {other:?}"))),
            Err(reason) => failed = Some((host, reason)),
        }
    }
    if refused.is_empty() && failed.is_none() {
        return Ok(Attempt::Taken(took_over));
    }
    let back: Vec<Target> = hosts
        .iter()
        .filter(|t| taken.contains(&t.0))
        .cloned()
        .collect();
    release_all(claim.settings, claim.token, &back, None).await;
    match failed {
        Some((host, reason)) => Err(LockError::Host {
            cluster: claim.settings.cluster.clone(),
            host,
            reason,
        }),
        None => Ok(Attempt::Refused(refused)),
    }
}

/// Takes the lock on `hosts`, waiting up to `wait` (polling with a growing, jittered pause)
/// when it is held. `waiting` hears about the holders once per change of holder.
async fn take(
    claim: &Claim<'_>,
    hosts: &[Target],
    wait: Option<Duration>,
    interrupt: Option<&Interrupt>,
    mut waiting: impl FnMut(&[(Vec<String>, Found)]),
) -> Result<Vec<(String, Found)>, LockError> {
    let start = Instant::now();
    let mut pause = Duration::from_secs(1);
    let mut last_holders = None;
    let mut dead_runs: Vec<String> = Vec::new();
    loop {
        let refused = match attempt(claim, hosts, &dead_runs).await? {
            Attempt::Taken(took_over) => return Ok(took_over),
            Attempt::Refused(r) => group(r),
        };
        // A holder that died on this very machine is taken over at once, without waiting
        // for its heartbeat to go stale.
        let newly_dead: Vec<String> = refused
            .iter()
            .filter_map(|(_, f)| f.info.as_ref())
            .filter(|i| i.holder_is_dead_here())
            .filter_map(|i| i.run.clone())
            .filter(|r| !dead_runs.contains(r))
            .collect();
        if !newly_dead.is_empty() {
            dead_runs.extend(newly_dead);
            continue;
        }
        let left = wait.map_or(Duration::ZERO, |w| w.saturating_sub(start.elapsed()));
        if left.is_zero() {
            return Err(LockError::Held {
                cluster: claim.settings.cluster.clone(),
                holders: refused,
                stale_after: claim.settings.stale_after,
                waited: wait.map(|_| start.elapsed()),
                inventory: claim.settings.inventory.display().to_string(),
            });
        }
        let who: Vec<Option<&LockInfo>> = refused.iter().map(|(_, f)| f.info.as_ref()).collect();
        let key = format!("{who:?}");
        if last_holders.as_ref() != Some(&key) {
            waiting(&refused);
            last_holders = Some(key);
        }
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let nap = pause.mul_f64(jitter).min(left);
        let until = Instant::now() + nap;
        while Instant::now() < until {
            if interrupt.is_some_and(Interrupt::is_set) {
                return Err(LockError::Interrupted {
                    cluster: claim.settings.cluster.clone(),
                });
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

/// Hosts that hold the same lock, together.
fn group(refused: Vec<(String, Found)>) -> Vec<(Vec<String>, Found)> {
    let mut groups: Vec<(Vec<String>, Found)> = Vec::new();
    for (host, found) in refused {
        match groups.iter_mut().find(|(_, f)| f.info == found.info) {
            Some((hosts, _)) => hosts.push(host),
            None => groups.push((vec![host], found)),
        }
    }
    groups
}

/// Releases our lock on `hosts`, appending `audit` (one JSON line) to each host's log first.
/// Returns the hosts where the lock had been broken by someone else, and those where the
/// audit log or the release failed.
async fn release_all(
    settings: &LockSettings,
    token: &str,
    hosts: &[Target],
    audit: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let text = script::release_own(settings, token, audit.is_some());
    let stdin = audit.map(|a| format!("{a}\n").into_bytes());
    let results = join_all(hosts.iter().map(|(name, session)| {
        let (text, stdin) = (text.clone(), stdin.clone());
        async move { (name.clone(), ask(session, text, stdin).await) }
    }))
    .await;
    let mut lost = Vec::new();
    let mut failed = Vec::new();
    for (host, r) in results {
        match r {
            Ok((out, reply)) => {
                if reply == Reply::Lost {
                    lost.push(host.clone());
                }
                if script::audit_failed(&out) {
                    failed.push(host);
                }
            }
            Err(_) => failed.push(host),
        }
    }
    (lost, failed)
}

/// A run's lock, held until [`Held::release`].
pub struct Held {
    settings: LockSettings,
    info: LockInfo,
    token: String,
    hosts: Vec<Target>,
    heartbeat: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    events: Sender<Event>,
}

/// Takes the lock for a run on every host connected to. The caller decides whether a run
/// needs it (a `--check` run changes nothing and takes none).
///
/// # Errors
/// The lock is held elsewhere (after `--lock-wait`, if given), a host could not take it, or
/// the lock settings are wrong.
pub async fn acquire_for_run(
    inventory: &Inventory,
    playbook: &std::path::Path,
    sessions: &BTreeMap<String, Arc<Session>>,
    opts: &LockOptions,
    events: &Sender<Event>,
    interrupt: &Arc<Interrupt>,
) -> Result<Held, LockError> {
    let settings = LockSettings::from_inventory(inventory);
    let info = LockInfo::new(
        &settings.cluster,
        Some(playbook.display().to_string()),
        opts.message.clone(),
        false,
    );
    let token = hex::encode(rand::random::<[u8; 16]>());
    let hosts: Vec<Target> = sessions
        .iter()
        .map(|(n, s)| (n.clone(), Arc::clone(s)))
        .collect();
    let names: Vec<String> = hosts.iter().map(|(n, _)| n.clone()).collect();
    let emit = |state, detail: String| {
        let _ = events.send(Event::Lock {
            cluster: settings.cluster.clone(),
            state,
            hosts: names.clone(),
            detail,
        });
    };
    let claim = Claim {
        settings: &settings,
        info: &info,
        token: &token,
        manual: false,
        break_stale: opts.break_stale,
    };
    let wait = opts.wait;
    let took_over = take(&claim, &hosts, wait, Some(interrupt), |holders| {
        let who: Vec<String> = holders
            .iter()
            .map(|(h, f)| format!("{} (on {})", f.describe(settings.stale_after), h.join(", ")))
            .collect();
        let limit = wait
            .map(humantime::format_duration)
            .map(|d| d.to_string())
            .unwrap_or_default();
        emit(
            LockState::Waiting,
            format!("held by {}; waiting up to {limit}", who.join("; ")),
        );
    })
    .await?;
    for (hosts, old) in group(took_over) {
        let how = if old.info.as_ref().is_some_and(LockInfo::holder_is_dead_here) {
            "took over the lock of a run that died on this machine"
        } else {
            "broke the stale lock"
        };
        emit(
            LockState::TookOver,
            format!(
                "{how} on {}: {}",
                hosts.join(", "),
                old.describe(settings.stale_after)
            ),
        );
    }
    emit(
        LockState::Acquired,
        format!("acquired on {} host(s)", hosts.len()),
    );

    let (stop, stopped) = tokio::sync::oneshot::channel();
    let beat = tokio::spawn(heartbeat(
        settings.clone(),
        token.clone(),
        hosts.clone(),
        events.clone(),
        Arc::clone(interrupt),
        stopped,
    ));
    Ok(Held {
        settings,
        info,
        token,
        hosts,
        heartbeat: Some((stop, beat)),
        events: events.clone(),
    })
}

/// Refreshes the heartbeat on every host until stopped. A host where the lock is no longer
/// ours (someone broke it) stops the run from starting new work.
async fn heartbeat(
    settings: LockSettings,
    token: String,
    hosts: Vec<Target>,
    events: Sender<Event>,
    interrupt: Arc<Interrupt>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let text = script::heartbeat(&settings, &token);
    let every = settings.heartbeat_every();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let replies = join_all(hosts.iter().map(|(name, session)| {
            let text = text.clone();
            async move { (name.clone(), ask(session, text, None).await) }
        }))
        .await;
        let lost: Vec<String> = replies
            .into_iter()
            .filter(|(_, r)| matches!(r, Ok((_, Reply::Lost))))
            .map(|(h, _)| h)
            .collect();
        if !lost.is_empty() {
            interrupt.trigger();
            let _ = events.send(Event::Lock {
                cluster: settings.cluster.clone(),
                state: LockState::Lost,
                detail: format!(
                    "lock lost: it was broken by someone else on {}; no new work is started",
                    lost.join(", ")
                ),
                hosts: lost,
            });
            return;
        }
    }
}

impl Held {
    /// Who holds it, as written on the hosts.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The shell condition that holds on a host while this run still holds its lock there:
    /// the orchestrator fences every later command with it (see `Session::set_fence`).
    pub fn fence_check(&self) -> String {
        script::fence_check(&self.settings, &self.token)
    }

    /// The hosts it is held on, with their sessions.
    pub fn hosts(&self) -> &[Target] {
        &self.hosts
    }

    /// This run's random id (the lock's token), which the audit trail records.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops the heartbeat, appends `audit_line` (when given) to each host's audit log, and
    /// releases the lock.
    pub async fn release(mut self, audit_line: Option<&str>) {
        if let Some((stop, beat)) = self.heartbeat.take() {
            let _ = stop.send(());
            let _ = beat.await;
        }
        let (lost, failed) =
            release_all(&self.settings, &self.token, &self.hosts, audit_line).await;
        let mut detail = format!("released on {} host(s)", self.hosts.len() - lost.len());
        if !lost.is_empty() {
            let _ = write!(
                detail,
                "; it had been broken by someone else on {}",
                lost.join(", ")
            );
        }
        if !failed.is_empty() {
            let _ = write!(
                detail,
                "; could not write the audit log or release on {} ({})",
                failed.join(", "),
                self.settings.audit_log.shown
            );
        }
        let _ = self.events.send(Event::Lock {
            cluster: self.settings.cluster.clone(),
            state: LockState::Released,
            hosts: self.hosts.iter().map(|(n, _)| n.clone()).collect(),
            detail,
        });
    }
}
