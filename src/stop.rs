//! Stopping a run: the first Ctrl-C, SIGTERM or SIGHUP asks for a graceful stop (no new
//! work starts, running commands are signalled and get a grace period); a second one asks
//! to kill the running commands at once. Either way the run still finishes its reports,
//! its audit record and its lock release.
//!
//! The level is the transport's own [`Stop`], held in one watch channel that the commands
//! in flight follow.

use crate::transport::Stop;

/// Shared by everything a run does; cheap to read.
#[derive(Debug)]
pub struct Interrupt {
    level: tokio::sync::watch::Sender<Stop>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Self {
            level: tokio::sync::watch::Sender::new(Stop::Continue),
        }
    }
}

impl Interrupt {
    /// Asks for a graceful stop (no effect when one is already asked for).
    pub fn trigger(&self) {
        self.raise(Stop::Terminate);
    }

    /// One more signal: the first asks for a graceful stop, the next for killing.
    /// Returns the level reached.
    pub fn escalate(&self) -> Stop {
        let next = match self.level() {
            Stop::Continue => Stop::Terminate,
            Stop::Terminate | Stop::Kill => Stop::Kill,
        };
        self.raise(next);
        next
    }

    /// Raises the level to `to`; it never goes back.
    fn raise(&self, to: Stop) {
        self.level.send_if_modified(|now| {
            let higher = to > *now;
            if higher {
                *now = to;
            }
            higher
        });
    }

    pub fn is_set(&self) -> bool {
        self.level() != Stop::Continue
    }

    pub fn level(&self) -> Stop {
        *self.level.borrow()
    }

    /// Wakes on every raise of the level; commands in flight watch it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Stop> {
        self.level.subscribe()
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
        assert_eq!(i.escalate(), Stop::Terminate);
        assert_eq!(*rx.borrow(), Stop::Terminate);
        i.trigger();
        assert_eq!(i.level(), Stop::Terminate);
        assert_eq!(i.escalate(), Stop::Kill);
        i.trigger();
        assert_eq!(i.level(), Stop::Kill, "a trigger never lowers the level");
        assert_eq!(*rx.borrow(), Stop::Kill);
    }
}
