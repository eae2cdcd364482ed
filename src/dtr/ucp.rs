//! UCP's facts through its API, from one node, as UCP's docs and public clients read them:
//! `POST /auth/login` with the UCP credentials → `auth_token`; `GET /version` →
//! `{"Version": "ucp/3.2.5", …}`; `GET /api/ucp/config-toml` → the config, whose
//! `[trust_configuration] require_content_trust` says whether content trust is enforced.

use semver::Version;

use super::bootstrap::ucp_service;
use super::error::DtrError;
use super::http::{NodeScript, Request, ucp_login};
use super::remote::Member;

/// What UCP told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UcpFacts {
    pub version: Version,
    pub content_trust: bool,
}

const MARK: &str = "@@capstan config-toml";

/// What is wrong with UCP's answers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnswerError {
    #[error("no answer from /api/ucp/config-toml")]
    NoConfig,
    #[error("/version: {0}")]
    VersionJson(#[from] serde_json::Error),
    #[error("/version has no `Version`")]
    NoVersion,
    #[error("/version `{text}`: {source}")]
    BadVersion {
        text: String,
        #[source]
        source: semver::Error,
    },
    #[error("config-toml: {0}")]
    Config(#[from] toml::de::Error),
}

/// Reads UCP's version and content-trust setting on member `m`'s node.
pub(crate) async fn read(m: &Member) -> Result<UcpFacts, DtrError> {
    let ucp = ucp_service(m)?;
    let p = &m.params;
    let mut s = NodeScript::default();
    ucp_login(
        &mut s,
        &ucp,
        p.text("ucp_username").unwrap_or_default(),
        p.text("ucp_password").unwrap_or_default(),
    );
    let bearer = |path: &str| Request {
        bearer: true,
        ..Request::get(path)
    };
    let version = s.curl(&ucp, &bearer("/version"));
    s.line(format!("{version} || exit $?"));
    s.line(format!("echo; echo '{MARK}'"));
    let config = s.curl(&ucp, &bearer("/api/ucp/config-toml"));
    s.line(config);
    let out = m
        .sh_with_files(&s.script(), &s.file_refs(), m.timeout)
        .await?
        .expect_success(
            "reading UCP's `/version` and `/api/ucp/config-toml`",
            &m.host,
        )?;
    parse(&out.stdout).map_err(|why| DtrError::Unreadable {
        what: "UCP's `/version` and `/api/ucp/config-toml`".to_owned(),
        host: m.host.clone(),
        text: out.stdout.chars().take(120).collect(),
        why: why.to_string(),
    })
}

fn parse(stdout: &str) -> Result<UcpFacts, AnswerError> {
    let (version_json, config) = stdout.split_once(MARK).ok_or(AnswerError::NoConfig)?;
    let v: serde_json::Value = serde_json::from_str(version_json.trim())?;
    let text = v
        .get("Version")
        .and_then(|v| v.as_str())
        .ok_or(AnswerError::NoVersion)?;
    let version = Version::parse(text.strip_prefix("ucp/").unwrap_or(text)).map_err(|source| {
        AnswerError::BadVersion {
            text: text.to_owned(),
            source,
        }
    })?;
    let table: toml::Table = config.trim().parse()?;
    let content_trust = table
        .get("trust_configuration")
        .and_then(|t| t.get("require_content_trust"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Ok(UcpFacts {
        version,
        content_trust,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_version_and_content_trust() {
        let out = "{\"Version\": \"ucp/3.2.5\", \"ApiVersion\": \"1.40\"}\n@@capstan config-toml\n\
                   [auth]\n  x = 1\n[trust_configuration]\n  require_content_trust = true\n";
        assert_eq!(
            parse(out).ok(),
            Some(UcpFacts {
                version: Version::new(3, 2, 5),
                content_trust: true
            })
        );
        assert!(parse("{\"Version\": \"ucp/x\"}\n@@capstan config-toml\n").is_err());
    }
}
