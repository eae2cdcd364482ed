//! SSH sessions over russh: known_hosts checking, key/agent/password auth, ssh_config,
//! ProxyJump, keepalive, and one channel per command on one connection per host.
//!
//! Decisions an operator may notice:
//! - Host keys are never accepted blindly: unknown keys are refused unless accept-new is
//!   asked for (inventory `host_key_checking`, `--accept-new-host-keys`, or ssh_config
//!   `StrictHostKeyChecking accept-new`); `StrictHostKeyChecking no` is read as `yes`.
//!   A changed or `@revoked` key is refused whatever the policy. Each ProxyJump hop is
//!   checked the same way.
//! - A ProxyJump hop takes from ssh_config what it says about the hop, and otherwise the
//!   target's identity files, agent, known_hosts, policy and timeout (never its password).
//! - The connect timeout covers TCP, handshake and authentication, for every hop; key
//!   passphrases are asked for before it starts.
//! - Every exec request is the same fixed bootstrap; the command and its stdin travel on
//!   the channel (see `transport::frame`). A command past its timeout, or asked to stop,
//!   gets TERM, then KILL after the grace period, in its process group; a command whose
//!   channel closes under it (capstan killed, network gone) is killed by the host itself.
//!   This needs a POSIX login shell and `head -c` on the host.
//! - A known_hosts path that is not a regular file (a directory, FIFO, device) or cannot be
//!   read is refused before connecting, as a host key problem; a FIFO is never opened.

mod auth;
mod config;
mod exec;
mod handler;
mod known_hosts;

use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::Algorithm;
use russh::{Disconnect, Preferred};

pub use self::config::{DEFAULT_CONNECT_TIMEOUT, ResolvedTarget, resolve};
use self::handler::{Client, ClientError, Shared};
use super::{ConnectOptions, ExecControl, ExecOutput, ExecRequest, TransportError};
use crate::inventory::Host;

/// With no reply to this many keepalives, sent this often, the connection is dead.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

/// One authenticated connection to one host; every command is a channel on it.
pub struct SshSession {
    target: String,
    /// Shared with the tasks that kill timed-out commands.
    handle: Arc<Handle<Client>>,
    shared: Arc<Shared>,
    /// ProxyJump connections, outermost first; they carry `handle`'s traffic.
    jumps: Vec<Handle<Client>>,
    fingerprint: String,
    /// What resolving the target noticed (ignored or overridden ssh_config settings).
    notes: Vec<String>,
}

impl SshSession {
    /// Resolves `host` through ssh_config, then connects (through its ProxyJump hops),
    /// checks the host key and authenticates.
    pub async fn connect(host: &Host, opts: &ConnectOptions) -> Result<Self, TransportError> {
        let target = resolve(host, opts)?;
        Self::connect_resolved(&target, opts.interactive).await
    }

    /// [`SshSession::connect`] for a target already resolved.
    pub async fn connect_resolved(
        target: &ResolvedTarget,
        interactive: bool,
    ) -> Result<Self, TransportError> {
        // Before any connection: a known_hosts that cannot be used is a host key problem.
        for hop in target.jumps.iter().chain(std::iter::once(target)) {
            known_hosts::usable(&hop.known_hosts).map_err(|reason| {
                TransportError::KnownHostsUnusable {
                    host: target.name.clone(),
                    path: hop.known_hosts.clone(),
                    reason,
                }
            })?;
        }
        let mut jumps: Vec<Handle<Client>> = Vec::with_capacity(target.jumps.len());
        for (i, hop) in target.jumps.iter().enumerate() {
            let via = jumps
                .last()
                .map(|h| (h, &target.jumps[i.saturating_sub(1)]));
            let (handle, _) = open(hop, via, Some(target), interactive).await?;
            jumps.push(handle);
        }
        let via = jumps.last().zip(target.jumps.last());
        let (handle, shared) = open(target, via, None, interactive).await?;
        let fingerprint = shared.fingerprint().unwrap_or_default();
        Ok(SshSession {
            target: target.name.clone(),
            handle: Arc::new(handle),
            shared,
            jumps,
            fingerprint,
            notes: target.notes.clone(),
        })
    }

    /// Runs one command on a new channel; see [`ExecRequest`] and [`super::Session::exec`].
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, TransportError> {
        exec::run(self, req, &ExecControl::internal()).await
    }

    /// Runs one command on a new channel, under `control`.
    pub async fn exec_with(
        &self,
        req: &ExecRequest,
        control: &ExecControl,
    ) -> Result<ExecOutput, TransportError> {
        exec::run(self, req, control).await
    }

    /// `SHA256:...` of the host key this connection was checked against.
    /// Notes about how ssh_config was read for this host, for the operator.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn host_key_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The host's inventory name, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Says goodbye to the host, then to each jump host, innermost first.
    pub async fn close(self) {
        let SshSession {
            handle, mut jumps, ..
        } = self;
        match Arc::try_unwrap(handle) {
            Ok(handle) => goodbye(handle).await,
            Err(shared) => {
                let _ = shared.disconnect(Disconnect::ByApplication, "", "en").await;
            }
        }
        while let Some(jump) = jumps.pop() {
            goodbye(jump).await;
        }
    }

    /// Why the connection is gone, for [`TransportError::Disconnected`].
    fn lost(&self, fallback: &dyn std::fmt::Display) -> TransportError {
        TransportError::Disconnected {
            target: self.target.clone(),
            reason: self
                .shared
                .disconnect_reason()
                .unwrap_or_else(|| auth::lower(fallback)),
        }
    }
}

async fn goodbye(handle: Handle<Client>) {
    if handle
        .disconnect(Disconnect::ByApplication, "", "en")
        .await
        .is_ok()
    {
        // Let the session loop send the message and close the socket.
        let _ = tokio::time::timeout(Duration::from_secs(2), handle).await;
    }
}

/// Connects to `target` directly or through the tunnel of `via` (a connected hop), within
/// its connect timeout, and authenticates. `of` is the final target when `target` is a hop.
async fn open(
    target: &ResolvedTarget,
    via: Option<(&Handle<Client>, &ResolvedTarget)>,
    of: Option<&ResolvedTarget>,
    interactive: bool,
) -> Result<(Handle<Client>, Arc<Shared>), TransportError> {
    let describe = match of {
        Some(of) => format!("{} (ProxyJump hop of {})", target.describe(), of.name),
        None => target.describe(),
    };
    let failed = |reason: String| TransportError::Connect {
        target: describe.clone(),
        reason,
    };
    // Before the clock starts: this may ask for a passphrase.
    let credentials = auth::prepare(target, interactive).await;
    let (client, shared) = Client::new(target);
    let config = Arc::new(client_config(target));
    let attempt = async {
        let handle = match via {
            None => {
                let tcp = tokio::net::TcpStream::connect((target.hostname.as_str(), target.port))
                    .await
                    .map_err(|e| failed(auth::lower(&e)))?;
                let _ = tcp.set_nodelay(true);
                client::connect_stream(config, tcp, client).await
            }
            Some((via, hop)) => {
                let tunnel = via
                    .channel_open_direct_tcpip(
                        target.hostname.as_str(),
                        u32::from(target.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| {
                        failed(format!(
                            "jump host {} would not forward the connection: {}",
                            hop.describe(),
                            auth::lower(&e)
                        ))
                    })?;
                client::connect_stream(config, tunnel.into_stream(), client).await
            }
        };
        let mut handle = handle.map_err(|e| match e {
            ClientError::HostKey(e) => e,
            ClientError::Ssh(e) => failed(handshake_error(&e)),
        })?;
        auth::authenticate(&mut handle, target, &credentials).await?;
        Ok(handle)
    };
    match tokio::time::timeout(target.connect_timeout, attempt).await {
        Ok(Ok(handle)) => Ok((handle, shared)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(TransportError::ConnectTimeout {
            target: describe,
            after: target.connect_timeout,
        }),
    }
}

fn handshake_error(e: &russh::Error) -> String {
    match e {
        russh::Error::Disconnect | russh::Error::HUP => {
            "the server closed the connection during the handshake".into()
        }
        other => auth::lower(other),
    }
}

/// russh's defaults, plus keepalive, `TCP_NODELAY`, and host key types already in
/// known_hosts asked for first (as OpenSSH does), so that a host known by its ECDSA key is
/// not reported as changed because it also has an Ed25519 key.
fn client_config(target: &ResolvedTarget) -> client::Config {
    let defaults = Preferred::default();
    let known = known_hosts::known_algorithms(&target.known_hosts, &target.host_key_name);
    let mut key: Vec<Algorithm> = Vec::with_capacity(defaults.key.len());
    for known in &known {
        key.extend(
            defaults
                .key
                .iter()
                .filter(|a| known_hosts::same_key_type(a, known))
                .cloned(),
        );
    }
    key.extend(
        defaults
            .key
            .iter()
            .filter(|a| !key.contains(a))
            .cloned()
            .collect::<Vec<_>>(),
    );
    client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        preferred: Preferred {
            key: key.into(),
            ..defaults
        },
        ..client::Config::default()
    }
}
