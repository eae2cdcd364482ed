//! The russh client handler: checks the server's host key against known_hosts, and
//! remembers why the connection ended.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client::{self, DisconnectReason};
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use super::config::ResolvedTarget;
use super::known_hosts::{self, Verdict};
use crate::inventory::HostKeyPolicy;
use crate::transport::TransportError;

/// What the connection tells the session after the handler has been moved into russh.
#[derive(Default)]
pub(crate) struct Shared {
    fingerprint: Mutex<Option<String>>,
    disconnect: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn fingerprint(&self) -> Option<String> {
        lock(&self.fingerprint).clone()
    }

    pub(crate) fn disconnect_reason(&self) -> Option<String> {
        lock(&self.disconnect).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a handshake failed: russh's own errors, or the precise host key refusal.
#[derive(Debug)]
pub(crate) enum ClientError {
    Ssh(russh::Error),
    HostKey(TransportError),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Ssh(e)
    }
}

pub(crate) struct Client {
    /// `name ([host]:port)` for messages.
    display: String,
    key_name: String,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    shared: Arc<Shared>,
}

impl Client {
    pub(crate) fn new(target: &ResolvedTarget) -> (Client, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        let display = if target.name == target.host_key_name {
            target.name.clone()
        } else {
            format!("{} ({})", target.name, target.host_key_name)
        };
        let client = Client {
            display,
            key_name: target.host_key_name.clone(),
            known_hosts: target.known_hosts.clone(),
            policy: target.host_key_policy,
            shared: Arc::clone(&shared),
        };
        (client, shared)
    }

    /// Known: go on. Unknown: refuse, or record it under accept-new. Changed or revoked:
    /// refuse, whatever the policy.
    fn check(&self, key: &PublicKey) -> Result<(), TransportError> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        *lock(&self.shared.fingerprint) = Some(fingerprint.clone());
        let unreadable = |e: known_hosts::Unusable| TransportError::KnownHostsUnusable {
            host: self.display.clone(),
            path: self.known_hosts.clone(),
            reason: e.to_string(),
        };
        let algorithm = key.algorithm().as_str().to_owned();
        match known_hosts::check(&self.known_hosts, &self.key_name, key).map_err(unreadable)? {
            Verdict::Known => Ok(()),
            Verdict::Changed { line } => Err(TransportError::ChangedHostKey {
                host: self.display.clone(),
                algorithm,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            Verdict::Revoked { line } => Err(TransportError::RevokedHostKey {
                host: self.display.clone(),
                algorithm,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(TransportError::UnknownHostKey {
                    host: self.display.clone(),
                    algorithm,
                    fingerprint,
                    known_hosts: self.known_hosts.clone(),
                }),
                HostKeyPolicy::AcceptNew => {
                    known_hosts::learn(&self.known_hosts, &self.key_name, key)
                        .map(|_| ())
                        .map_err(unreadable)
                }
            },
        }
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.check(key).map_err(ClientError::HostKey)?;
                Ok(true)
            }
            // Never asked for (no certificate algorithm is offered), so never trusted.
            PublicKeyOrCertificate::Certificate(_) => {
                Err(ClientError::HostKey(TransportError::Other(format!(
                    "`{}` presented a host certificate; capstan checks plain host keys only",
                    self.display
                ))))
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                *lock(&self.shared.disconnect) =
                    Some(format!("the server disconnected: {}", info.message));
                Ok(())
            }
            DisconnectReason::Error(e) => {
                let text = match &e {
                    ClientError::Ssh(e) => super::auth::lower(e),
                    ClientError::HostKey(e) => e.to_string(),
                };
                *lock(&self.shared.disconnect) = Some(text);
                Err(e)
            }
        }
    }
}
