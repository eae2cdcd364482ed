//! Authentication: identity files, then ssh-agent, then a password when one is configured.
//!
//! Keys are read (and passphrases asked for) before connecting, so a prompt never races a
//! connect timeout, and once per run: 100 hosts sharing one encrypted key decrypt it once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::config::ResolvedTarget;
use super::handler::Client;
use crate::transport::TransportError;

/// A private key ready to sign, or why an identity file could not be used.
#[derive(Clone)]
pub(crate) enum Credential {
    Key {
        path: PathBuf,
        key: Arc<PrivateKey>,
    },
    /// Its public half (when known) still lets the agent sign for it.
    Unusable {
        path: PathBuf,
        public: Option<PublicKey>,
        why: String,
    },
}

/// Keys read this run, by path. A key the operator gave up on at the prompt is remembered
/// too, so that 100 hosts do not ask 100 times.
static KEYS: tokio::sync::Mutex<BTreeMap<PathBuf, Credential>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// Reads every identity file of `target`, asking for passphrases when `interactive`.
pub(crate) async fn prepare(target: &ResolvedTarget, interactive: bool) -> Vec<Credential> {
    let mut out = Vec::with_capacity(target.identity_files.len());
    for path in &target.identity_files {
        out.push(load(path, target.key_passphrase.get(), interactive).await);
    }
    out
}

async fn load(path: &Path, passphrase: Option<&str>, interactive: bool) -> Credential {
    // One loader at a time: concurrent connections wait for the first to decrypt a key.
    let mut cache = KEYS.lock().await;
    if let Some(done) = cache.get(path) {
        return done.clone();
    }
    let owned = path.to_path_buf();
    let passphrase = passphrase.map(str::to_owned);
    let loaded = tokio::task::spawn_blocking(move || read_key(&owned, passphrase, interactive))
        .await
        .unwrap_or_else(|e| Loaded::Failed(format!("key loader failed: {e}"), false));
    let (credential, remember) = match loaded {
        Loaded::Key(key) => (
            Credential::Key {
                path: path.to_path_buf(),
                key: Arc::from(key),
            },
            true,
        ),
        Loaded::Failed(why, remember) => (
            Credential::Unusable {
                path: path.to_path_buf(),
                public: public_half(path),
                why,
            },
            remember,
        ),
    };
    if remember {
        cache.insert(path.to_path_buf(), credential.clone());
    }
    credential
}

enum Loaded {
    Key(Box<PrivateKey>),
    /// Why, and whether to remember the failure for the rest of the run.
    Failed(String, bool),
}

/// Blocking: file I/O, bcrypt key derivation, and the terminal prompt.
fn read_key(path: &Path, passphrase: Option<String>, interactive: bool) -> Loaded {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Loaded::Failed(format!("cannot read it: {}", lower(&e)), false),
    };
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => return Loaded::Key(Box::new(key)),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => return Loaded::Failed(format!("cannot parse it: {}", lower(&e)), false),
    }
    if let Some(passphrase) = passphrase {
        return match russh::keys::decode_secret_key(&text, Some(&passphrase)) {
            Ok(key) => Loaded::Key(Box::new(key)),
            Err(_) => Loaded::Failed("wrong `key_passphrase`".into(), false),
        };
    }
    if !interactive {
        return Loaded::Failed(
            "it is encrypted and no passphrase is available (set `key_passphrase`, add the key \
             to ssh-agent, or run capstan on a terminal)"
                .into(),
            false,
        );
    }
    for _ in 0..3 {
        let prompt = format!("Enter passphrase for key '{}': ", path.display());
        let entered = match rpassword::prompt_password(prompt) {
            Ok(entered) => entered,
            Err(e) => {
                return Loaded::Failed(format!("cannot prompt for its passphrase: {e}"), true);
            }
        };
        if let Ok(key) = russh::keys::decode_secret_key(&text, Some(&entered)) {
            return Loaded::Key(Box::new(key));
        }
    }
    Loaded::Failed("wrong passphrase, three times".into(), true)
}

/// The public key of an identity file without decrypting it: `FILE.pub`, else the clear
/// public part of an OpenSSH-format key.
fn public_half(path: &Path) -> Option<PublicKey> {
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    if let Ok(key) = russh::keys::load_public_key(PathBuf::from(pub_path)) {
        return Some(key);
    }
    let text = std::fs::read_to_string(path).ok()?;
    PrivateKey::from_openssh(text)
        .ok()
        .map(|k| k.public_key().clone())
}

/// Tries each credential, then the agent, then the password. The error lists what was
/// tried (key files and fingerprints, never secrets).
pub(crate) async fn authenticate(
    handle: &mut Handle<Client>,
    target: &ResolvedTarget,
    credentials: &[Credential],
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    let mut rsa_hash: Option<Option<HashAlg>> = None;
    let lost = |tried: &[String], e: &dyn std::fmt::Display| TransportError::Auth {
        user: user.to_owned(),
        target: target.describe(),
        tried: format!("{}; then the connection failed: {e}", summary(tried)),
    };

    for credential in credentials {
        match credential {
            Credential::Key { path, key } => {
                let hash = if key.algorithm().is_rsa() {
                    rsa_signature_hash(handle, &mut rsa_hash).await
                } else {
                    None
                };
                let attempt = PrivateKeyWithHashAlg::new(Arc::clone(key), hash);
                match handle.authenticate_publickey(user, attempt).await {
                    Ok(AuthResult::Success) => return Ok(()),
                    Ok(AuthResult::Failure { .. }) => tried.push(format!(
                        "key `{}` ({})",
                        path.display(),
                        key.algorithm().as_str()
                    )),
                    Err(e) => return Err(lost(&tried, &lower(&e))),
                }
            }
            Credential::Unusable { path, why, .. } => {
                tried.push(format!("key `{}`: {why}", path.display()));
            }
        }
    }

    if let Some(socket) = &target.agent {
        match AgentClient::connect_uds(socket).await {
            Err(e) => tried.push(format!(
                "ssh-agent `{}`: cannot connect: {}",
                socket.display(),
                lower(&e)
            )),
            Ok(mut agent) => {
                let identities = match agent.request_identities().await {
                    Ok(identities) => identities,
                    Err(e) => {
                        tried.push(format!("ssh-agent `{}`: {}", socket.display(), lower(&e)));
                        Vec::new()
                    }
                };
                let mut offered = 0;
                for identity in identities {
                    let AgentIdentity::PublicKey { key, .. } = identity else {
                        continue;
                    };
                    if !agent_may_offer(&key, target, credentials) {
                        continue;
                    }
                    offered += 1;
                    let hash = if key.algorithm().is_rsa() {
                        rsa_signature_hash(handle, &mut rsa_hash).await
                    } else {
                        None
                    };
                    let fingerprint = key.fingerprint(HashAlg::Sha256);
                    match handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure { .. }) => {
                            tried.push(format!("ssh-agent key {fingerprint}"));
                        }
                        Err(russh::AgentAuthError::Send(e)) => return Err(lost(&tried, &e)),
                        Err(e) => tried.push(format!(
                            "ssh-agent key {fingerprint}: agent did not sign: {}",
                            lower(&e)
                        )),
                    }
                }
                if offered == 0 {
                    tried.push(format!("ssh-agent `{}`: no usable key", socket.display()));
                }
            }
        }
    }

    if let Some(password) = target.password.get() {
        match handle.authenticate_password(user, password).await {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure { .. }) => tried.push("password".into()),
            Err(e) => return Err(lost(&tried, &lower(&e))),
        }
    }

    Err(TransportError::Auth {
        user: user.to_owned(),
        target: target.describe(),
        tried: summary(&tried),
    })
}

fn summary(tried: &[String]) -> String {
    if tried.is_empty() {
        "nothing: no identity file, no ssh-agent, no password".into()
    } else {
        tried.join("; ")
    }
}

/// Skips keys already offered from a file; under `IdentitiesOnly`, offers only the agent's
/// copies of the configured identity files.
fn agent_may_offer(key: &PublicKey, target: &ResolvedTarget, credentials: &[Credential]) -> bool {
    let mut belongs_to_a_file = false;
    for credential in credentials {
        match credential {
            Credential::Key { key: file_key, .. } => {
                if file_key.public_key().key_data() == key.key_data() {
                    return false;
                }
            }
            Credential::Unusable {
                public: Some(public),
                ..
            } => belongs_to_a_file |= public.key_data() == key.key_data(),
            Credential::Unusable { .. } => {}
        }
    }
    belongs_to_a_file || !target.identities_only
}

/// rsa-sha2-512/256 as the server's `server-sig-algs` allows; asked once per connection.
async fn rsa_signature_hash(
    handle: &Handle<Client>,
    cached: &mut Option<Option<HashAlg>>,
) -> Option<HashAlg> {
    if let Some(hash) = cached {
        return *hash;
    }
    let hash = match handle.best_supported_rsa_hash().await {
        Ok(Some(best)) => best,
        // No `server-sig-algs`: try SHA-256, which every maintained server accepts.
        Ok(None) | Err(_) => Some(HashAlg::Sha256),
    };
    *cached = Some(hash);
    hash
}

/// russh's messages start with a capital; ours do not.
pub(crate) fn lower(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}
