//! Running the bootstrapper (`docker run docker/dtr:<v> upgrade|join|remove`) on a node.
//!
//! The command comes from `templates/dtr-*.j2` and is checked against the flag table of its
//! version before anything runs ([`super::flags::check`]). The UCP password goes in an env
//! file (`--env-file`), UCP's CA in the environment variable of `--ucp-ca` (`--env
//! UCP_CA`): both reach the node on stdin, never on an argv.

use std::time::Duration;

use minijinja::value::Value;

use super::error::DtrError;
use super::flags;
use super::http::{NodeScript, Service, Trust};
use super::remote::{Member, Output};

/// UCP as member `m` reaches it.
pub(crate) fn ucp_service(m: &Member) -> Result<Service, DtrError> {
    let url = m.params.text("ucp_url").unwrap_or_default();
    let trust = Trust::from_params(&m.params, "ucp_ca", "ucp_insecure_tls")?;
    Ok(Service::new("ucp", url, trust))
}

/// The template values every bootstrapper command takes.
pub(crate) fn base_values(m: &Member) -> Vec<(&'static str, Value)> {
    let p = &m.params;
    vec![
        (
            "image",
            Value::from(p.text("image").unwrap_or("docker/dtr")),
        ),
        (
            "ucp_url",
            Value::from(p.text("ucp_url").unwrap_or_default()),
        ),
        (
            "ucp_username",
            Value::from(p.text("ucp_username").unwrap_or_default()),
        ),
        (
            "ucp_ca",
            Value::from(p.text("ucp_ca").is_some_and(|c| !c.trim().is_empty())),
        ),
        ("ucp_insecure_tls", Value::from(p.flag("ucp_insecure_tls"))),
    ]
}

/// A checked bootstrapper command and the script that runs it.
#[derive(Debug)]
pub(crate) struct Bootstrap {
    /// The command as rendered: what the report shows.
    pub command: String,
    script: NodeScript,
}

/// Checks `command` and wraps it for member `m`.
pub(crate) fn prepare(m: &Member, command: String) -> Result<Bootstrap, DtrError> {
    flags::check(&command)?;
    let ucp = ucp_service(m)?;
    if ucp.trust == Trust::System {
        return Err(DtrError::Input(
            "the bootstrapper cannot validate UCP's certificate: set `ucp_ca` (a PEM, a file \
             holding one, or \"fetch\" to download it from {{ ucp_url }}/ca as the DTR docs \
             do), or `ucp_insecure_tls = true` (\"trust any UCP certificate\", not for \
             production)"
                .to_owned(),
        ));
    }
    let password = m.params.text("ucp_password").unwrap_or_default();
    if password.contains('\n') {
        return Err(DtrError::Input(
            "`ucp_password` holds a line break, which an env file cannot carry".to_owned(),
        ));
    }
    let mut script = NodeScript::default();
    script
        .files
        .push(("ucp.env".to_owned(), format!("UCP_PASSWORD={password}\n")));
    if matches!(ucp.trust, Trust::Ca(_) | Trust::Fetch) {
        script.trust(&ucp);
        script.line("UCP_CA=$(cat \"$CAPSTAN_DIR/ucp-ca.pem\") || exit 125");
        script.line("export UCP_CA");
    }
    script.line(command.clone());
    Ok(Bootstrap { command, script })
}

impl Bootstrap {
    pub async fn run(&self, m: &Member, timeout: Duration) -> Result<Output, DtrError> {
        m.sh_with_files(&self.script.script(), &self.script.file_refs(), timeout)
            .await
    }
}

/// The bootstrapper's time limit (`upgrade_timeout`), separate from `command_timeout`.
pub(crate) fn timeout(m: &Member) -> Duration {
    m.params
        .duration("upgrade_timeout")
        .unwrap_or(Duration::from_secs(2 * 3600))
}
