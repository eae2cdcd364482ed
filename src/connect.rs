//! Opening one session per host, many at once: the one connect helper that `run`, `apply`,
//! `lock`, `audit --remote` and `cache` share. Host-key problems are kept apart from other
//! failures, because they refuse a whole run (exit 3) while an unreachable host does not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::inventory::Host;
use crate::transport::{ConnectOptions, Session, TransportError};

/// What connecting to a set of hosts gave.
#[derive(Default)]
pub(crate) struct Connected {
    /// Open sessions by host name, with how long each handshake took.
    pub sessions: BTreeMap<String, (Arc<Session>, Duration)>,
    /// Hosts that could not be reached, with why, sorted by name.
    pub unreachable: Vec<(String, TransportError)>,
    /// Hosts whose key is unknown, changed or revoked, with the message, sorted by name.
    pub key_problems: Vec<(String, String)>,
}

impl Connected {
    /// Closes every session politely.
    pub async fn close(self) {
        close_all(self.sessions.into_values().map(|(s, _)| s)).await;
    }

    /// The open sessions, by name.
    pub fn by_name(&self) -> BTreeMap<String, Arc<Session>> {
        self.sessions
            .iter()
            .map(|(n, (s, _))| (n.clone(), Arc::clone(s)))
            .collect()
    }
}

/// Connects to `hosts`, at most `concurrency` handshakes in flight.
pub(crate) async fn all(hosts: &[&Host], opts: &ConnectOptions, concurrency: usize) -> Connected {
    let results: Vec<_> = futures::stream::iter(hosts.iter().map(|h| async move {
        let t0 = Instant::now();
        let r = Session::connect(h, opts).await;
        (h.name.clone(), r, t0.elapsed())
    }))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    let mut out = Connected::default();
    for (name, result, elapsed) in results {
        match result {
            Ok(s) => {
                out.sessions.insert(name, (Arc::new(s), elapsed));
            }
            Err(e) if e.is_host_key_problem() => out.key_problems.push((name, e.to_string())),
            Err(e) => out.unreachable.push((name, e)),
        }
    }
    out.unreachable.sort_by(|a, b| a.0.cmp(&b.0));
    out.key_problems.sort();
    out
}

/// Closes sessions that nobody else holds any more.
pub(crate) async fn close_all(sessions: impl IntoIterator<Item = Arc<Session>>) {
    for session in sessions {
        if let Some(s) = Arc::into_inner(session) {
            s.close().await;
        }
    }
}
