//! What a lock says about its holder (`info` in the lock directory) and what a host said
//! about its lock: the holder, the host's clock and the last heartbeat.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The holder, written as JSON to `<lock>/info` when the lock is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub cluster: String,
    /// `user@machine` of the control machine.
    pub who: String,
    #[serde(default)]
    pub pid: Option<u32>,
    /// When it was taken (control machine's clock), RFC 3339.
    pub started: String,
    #[serde(default)]
    pub playbook: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// `run` (kept alive by heartbeats) or `manual` (`capstan lock acquire`).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub capstan: String,
    /// The control machine's host name and boot id, and the holder's process start time
    /// (clock ticks since boot): together with `pid` they tell a dead holder on this machine
    /// from a live one, even after its pid was reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// A random id of the holding run, so that a dead holder's lock can be taken over
    /// without ever breaking a newer lock that replaced it in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl LockInfo {
    pub fn new(
        cluster: &str,
        playbook: Option<String>,
        message: Option<String>,
        manual: bool,
    ) -> Self {
        Self {
            cluster: cluster.to_owned(),
            who: who(),
            pid: (!manual).then(std::process::id),
            started: crate::report::json::now_rfc3339(),
            playbook,
            message,
            kind: if manual { "manual" } else { "run" }.to_owned(),
            capstan: env!("CARGO_PKG_VERSION").to_owned(),
            machine: Some(machine()),
            boot_id: boot_id(),
            pid_start: if manual {
                None
            } else {
                process_start(std::process::id())
            },
            run: Some(hex::encode(rand::random::<[u8; 8]>())),
        }
    }

    /// Whether this lock was taken by a run on this very machine (same host name, same boot)
    /// whose process is gone. Only then may it be taken over at once: a holder on another
    /// machine, or one whose liveness cannot be told, has to go stale first.
    pub fn holder_is_dead_here(&self) -> bool {
        let (Some(pid), Some(machine_name), Some(boot)) = (self.pid, &self.machine, &self.boot_id)
        else {
            return false;
        };
        if self.kind != "run" || self.run.is_none() {
            return false;
        }
        if *machine_name != machine() || boot_id().as_deref() != Some(boot.as_str()) {
            return false;
        }
        !process_alive(pid, self.pid_start)
    }

    /// `alice@laptop (pid 42) since T, running `p.toml`: "why"`.
    pub fn describe(&self) -> String {
        let mut s = self.who.clone();
        if let Some(pid) = self.pid {
            let _ = write!(s, " (pid {pid})");
        }
        let _ = write!(s, " since {}", self.started);
        if let Some(p) = &self.playbook {
            let _ = write!(s, ", running `{p}`");
        }
        if self.kind == "manual" {
            s.push_str(", taken with `capstan lock acquire`");
        }
        if let Some(m) = &self.message {
            let _ = write!(s, ": \"{m}\"");
        }
        s
    }
}

/// `user@machine` of this process.
pub fn who() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{}", machine())
}

/// This machine's host name.
pub fn machine() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This boot of this machine (`/proc/sys/kernel/random/boot_id`), when the system tells.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` still runs and is the same process (same start time, when known).
fn process_alive(pid: u32, started: Option<u64>) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM and the rest: something lives there.
        Err(_) => true,
    };
    if !exists {
        return false;
    }
    match (started, process_start(pid)) {
        (Some(want), Some(now)) => want == now,
        // A zombie or an unreadable /proc entry: count it as alive, never break on a guess.
        _ => true,
    }
}

/// A lock as found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The host's clock when it looked, in seconds since the epoch.
    pub now: i64,
    /// The last heartbeat, by the host's clock; `None` when missing or unreadable.
    pub heartbeat: Option<i64>,
    pub manual: bool,
    /// `None` when `info` is missing or unreadable.
    pub info: Option<LockInfo>,
}

impl Found {
    /// Seconds since the last heartbeat (both times from the host's clock, so the control
    /// machine's clock does not matter).
    pub fn age(&self) -> Option<u64> {
        self.heartbeat
            .map(|hb| u64::try_from(self.now - hb).unwrap_or(0))
    }

    /// A run's lock whose heartbeat is older than `after` (or missing). A manual lock is
    /// never stale. The hosts' scripts apply the same rule.
    pub fn stale(&self, after: Duration) -> bool {
        !self.manual && self.age().is_none_or(|a| a > after.as_secs().max(1))
    }

    /// The holder and the state of its heartbeat, in one line.
    pub fn describe(&self, stale_after: Duration) -> String {
        let holder = self.info.as_ref().map_or_else(
            || "an unknown holder (its `info` is missing or unreadable)".to_owned(),
            LockInfo::describe,
        );
        if self.manual {
            return holder;
        }
        let age = self.age().map_or_else(
            || "no heartbeat".to_owned(),
            |a| {
                format!(
                    "heartbeat {} ago",
                    humantime::format_duration(Duration::from_secs(a))
                )
            },
        );
        if self.stale(stale_after) {
            format!(
                "{holder}; {age}: STALE (older than lock_stale_after = {})",
                humantime::format_duration(stale_after)
            )
        } else {
            format!("{holder}; {age} (fresh)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LockInfo {
        LockInfo {
            cluster: "staging".into(),
            who: "alice@laptop".into(),
            pid: Some(42),
            started: "2025-01-02T03:04:05.000Z".into(),
            playbook: Some("playbooks/upgrade.toml".into()),
            message: Some("upgrade to 2.7.1".into()),
            kind: "run".into(),
            capstan: "0.1.0".into(),
            machine: None,
            boot_id: None,
            pid_start: None,
            run: None,
        }
    }

    fn found(age: Option<i64>, manual: bool) -> Found {
        Found {
            now: 1000,
            heartbeat: age.map(|a| 1000 - a),
            manual,
            info: Some(info()),
        }
    }

    #[test]
    fn fresh_stale_and_manual() {
        let two_min = Duration::from_secs(120);
        assert!(!found(Some(120), false).stale(two_min));
        assert!(found(Some(121), false).stale(two_min));
        assert!(found(None, false).stale(two_min));
        assert!(!found(None, true).stale(two_min));
        assert_eq!(
            found(Some(3), false).describe(two_min),
            "alice@laptop (pid 42) since 2025-01-02T03:04:05.000Z, running `playbooks/upgrade.toml`: \"upgrade to 2.7.1\"; heartbeat 3s ago (fresh)"
        );
        assert!(
            found(Some(300), false)
                .describe(two_min)
                .ends_with("heartbeat 5m ago: STALE (older than lock_stale_after = 2m)")
        );
    }

    #[test]
    fn a_dead_holder_is_told_only_on_this_machine() {
        let mut mine = LockInfo::new("c", None, None, false);
        assert!(!mine.holder_is_dead_here(), "this very process is alive");
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        let _ = child.wait();
        mine.pid = Some(pid);
        mine.pid_start = Some(1);
        assert!(mine.holder_is_dead_here(), "pid {pid} is gone");
        let mut other = mine.clone();
        other.machine = Some("another-machine".into());
        assert!(
            !other.holder_is_dead_here(),
            "another machine: wait for stale"
        );
        let mut rebooted = mine.clone();
        rebooted.boot_id = Some("another-boot".into());
        assert!(!rebooted.holder_is_dead_here());
        let mut manual = mine.clone();
        manual.kind = "manual".into();
        assert!(
            !manual.holder_is_dead_here(),
            "manual locks are never taken over"
        );
        let mut reused = LockInfo::new("c", None, None, false);
        reused.pid_start = Some(u64::MAX);
        assert!(
            reused.holder_is_dead_here(),
            "our pid with another start time is a reused pid: the holder is dead"
        );
    }

    #[test]
    fn info_round_trips_and_tolerates_missing_fields() {
        let text = serde_json::to_string(&info()).unwrap_or_default();
        assert_eq!(serde_json::from_str::<LockInfo>(&text).ok(), Some(info()));
        let old: LockInfo = serde_json::from_str(r#"{"cluster":"c","who":"w","started":"t"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(old.describe(), "w since t");
    }
}
