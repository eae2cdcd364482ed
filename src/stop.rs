//! Stopping a run: the first Ctrl-C, SIGTERM or SIGHUP asks for a graceful stop (no new
//! work starts, running commands are signalled and get a grace period); a second one asks
//! to kill the running commands at once. Either way the run still finishes its reports,
//! its audit record and its lock release.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::transport::Stop;

/// How far a stop has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopLevel {
    Running = 0,
    /// Start nothing new; running commands get TERM and a grace period.
    Graceful = 1,
    /// Kill the running commands now.
    Kill = 2,
}

impl StopLevel {
    fn from_u8(v: u8) -> StopLevel {
        match v {
            0 => StopLevel::Running,
            1 => StopLevel::Graceful,
            _ => StopLevel::Kill,
        }
    }
}

/// Shared by everything a run does; cheap to read.
#[derive(Debug)]
pub struct Interrupt {
    level: AtomicU8,
    /// What the commands in flight are asked to do (see `crate::transport::Stop`).
    changed: tokio::sync::watch::Sender<Stop>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Self {
            level: AtomicU8::new(0),
            changed: tokio::sync::watch::Sender::new(Stop::Continue),
        }
    }
}

impl Interrupt {
    /// Asks for a graceful stop (no effect when one is already asked for).
    pub fn trigger(&self) {
        self.raise(StopLevel::Graceful);
    }

    /// One more signal: the first asks for a graceful stop, the next for killing.
    /// Returns the level reached.
    pub fn escalate(&self) -> StopLevel {
        let next = match self.level() {
            StopLevel::Running => StopLevel::Graceful,
            StopLevel::Graceful | StopLevel::Kill => StopLevel::Kill,
        };
        self.raise(next);
        next
    }

    fn raise(&self, to: StopLevel) {
        let before = self.level.fetch_max(to as u8, Ordering::SeqCst);
        if before < to as u8 {
            self.changed.send_replace(match to {
                StopLevel::Running => Stop::Continue,
                StopLevel::Graceful => Stop::Terminate,
                StopLevel::Kill => Stop::Kill,
            });
        }
    }

    pub fn is_set(&self) -> bool {
        self.level() != StopLevel::Running
    }

    pub fn level(&self) -> StopLevel {
        StopLevel::from_u8(self.level.load(Ordering::SeqCst))
    }

    /// Wakes on every raise of the level; commands in flight watch it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Stop> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_escalate_and_never_go_back() {
        let i = Interrupt::default();
        let rx = i.subscribe();
        assert!(!i.is_set());
        assert_eq!(i.escalate(), StopLevel::Graceful);
        assert_eq!(*rx.borrow(), Stop::Terminate);
        i.trigger();
        assert_eq!(i.level(), StopLevel::Graceful);
        assert_eq!(i.escalate(), StopLevel::Kill);
        i.trigger();
        assert_eq!(
            i.level(),
            StopLevel::Kill,
            "a trigger never lowers the level"
        );
        assert_eq!(*rx.borrow(), Stop::Kill);
    }
}
