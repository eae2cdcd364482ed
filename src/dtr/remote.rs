//! One host taking part in a cluster task, and running shell on it.
//!
//! Secrets never travel in a command line (which `ps` shows on the host): secrets go on the
//! exec's stdin into files of a `mktemp -d` directory under `umask 077`, the command reads
//! the files, and a trap removes the directory however the script ends.

use std::sync::Arc;
use std::time::Duration;

use minijinja::value::Value;

use super::error::DtrError;
use super::params::Params;
use crate::secrets;
use crate::template::shell_quote;
use crate::transport::{ExecRequest, ExitStatus, Session};

/// Shell variable holding the private directory of [`with_files`] scripts.
pub(crate) const DIR_VAR: &str = "CAPSTAN_DIR";

/// Shell variable holding the path of the UCP env file (`UCP_PASSWORD=...`) in bootstrapper
/// scripts, as the command templates use it.
pub(crate) const SECRET_FILE_VAR: &str = "CAPSTAN_SECRET_FILE";

/// Lines of stderr kept in a failure message.
const STDERR_TAIL: usize = 5;

/// A host of the batch running this task.
pub(crate) struct Member {
    /// The inventory's name for the host.
    pub host: String,
    /// The node's hostname as its docker engine reports it (`docker info --format
    /// '{{.Name}}'`); the inventory name until discovery read it.
    pub node: String,
    pub session: Arc<Session>,
    /// The host's variables.
    pub ctx: Value,
    pub params: Params,
    /// `export NAME=value; ` for the host's `dtr_env`, or empty.
    pub env: String,
    /// DTR's CA as fetched from `<dtr_url>/ca` on this node (`dtr_ca = "fetch"`): fetched
    /// once per run, then sent with each call.
    pub fetched_ca: std::sync::Mutex<Option<String>>,
    pub timeout: Duration,
}

/// What a command printed and how it ended; text already secret-masked.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `Ok` when the command succeeded, else a message naming `what`, how it ended and the
    /// end of its stderr (or stdout when stderr is empty).
    pub fn expect_success(self, what: &str, host: &str) -> Result<Output, DtrError> {
        if self.success() {
            return Ok(self);
        }
        Err(self.error(what, host))
    }

    pub fn error(&self, what: &str, host: &str) -> DtrError {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.trim().lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL)..].join("\n  ");
        DtrError::Command {
            what: what.to_owned(),
            host: host.to_owned(),
            status: self.status.clone(),
            tail: if tail.is_empty() {
                String::new()
            } else {
                format!(":\n  {tail}")
            },
        }
    }

    pub fn failure(&self, what: &str, host: &str) -> String {
        self.error(what, host).to_string()
    }
}

impl Member {
    /// Runs `script` on the host (through the login shell, after the `dtr_env` exports).
    pub async fn sh(&self, script: &str) -> Result<Output, DtrError> {
        self.exec(script, None, self.timeout).await
    }

    /// Runs `script` with `files` (name, content) written from stdin into 0600 files of the
    /// private directory `$CAPSTAN_DIR`, removed when the script ends.
    pub async fn sh_with_files(
        &self,
        script: &str,
        files: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Output, DtrError> {
        let (script, stdin) = with_files(script, files);
        self.exec(&script, Some(stdin), timeout).await
    }

    /// Runs `script` with `data` on stdin.
    pub async fn sh_with_stdin(&self, script: &str, data: Vec<u8>) -> Result<Output, DtrError> {
        self.exec(script, Some(data), self.timeout).await
    }

    async fn exec(
        &self,
        script: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Output, DtrError> {
        let request = ExecRequest {
            command: format!("{}{script}", self.env),
            stdin,
            timeout: Some(timeout),
        };
        match self.session.exec(&request).await {
            Ok(out) => Ok(Output {
                status: out.status,
                stdout: secrets::mask_bytes(&out.stdout),
                stderr: secrets::mask_bytes(&out.stderr),
            }),
            Err(source) => Err(DtrError::Transport {
                host: self.host.clone(),
                source: Box::new(source),
            }),
        }
    }
}

/// `script`, preceded by writing stdin into the files `files` names (each `[a-z0-9.-]+`, fixed
/// by capstan) of a private temporary directory that a trap removes; and the stdin.
pub(crate) fn with_files(script: &str, files: &[(&str, &str)]) -> (String, Vec<u8>) {
    let d = DIR_VAR;
    let mut head = format!(
        "umask 077\n\
         {d}=$(mktemp -d) || exit 125\n\
         trap 'rm -rf \"${d}\"' EXIT\n\
         trap 'exit 143' HUP INT TERM\n\
         cat >\"${d}/stdin\" || exit 125\n"
    );
    let mut stdin = Vec::new();
    let mut offset = 1;
    for (name, content) in files {
        debug_assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        );
        let len = content.len();
        head.push_str(&format!(
            "tail -c +{offset} \"${d}/stdin\" | head -c {len} >\"${d}/{name}\" || exit 125\n"
        ));
        stdin.extend_from_slice(content.as_bytes());
        offset += len;
    }
    head.push_str(&format!(
        "rm -f \"${d}/stdin\"\n{SECRET_FILE_VAR}=\"${d}/ucp.env\"\n{script}\n"
    ));
    (head, stdin)
}

/// `export A=b; ` for the host variable `dtr_env` (a table of environment variables), so
/// that every command of a DTR task sees them. Absent or empty: nothing.
pub(crate) fn env_prefix(ctx: &Value) -> Result<String, DtrError> {
    let Ok(env) = ctx.get_attr("dtr_env") else {
        return Ok(String::new());
    };
    if env.is_undefined() || env.is_none() {
        return Ok(String::new());
    }
    let Ok(keys) = env.try_iter() else {
        return Err(DtrError::Input(
            "variable `dtr_env` must be a table of environment variables".to_owned(),
        ));
    };
    let mut out = String::new();
    for key in keys {
        let name = key.to_string();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(DtrError::Input(format!(
                "`dtr_env` has `{name}`, which is not an environment variable name"
            )));
        }
        let value = env
            .get_item(&key)
            .map_err(|e| DtrError::Input(e.to_string()))?;
        let quoted = shell_quote(&value.to_string())
            .map_err(|e| DtrError::Input(format!("`dtr_env.{name}`: {e}")))?;
        out.push_str(&format!("export {name}={quoted}; "));
    }
    Ok(out)
}

/// `stderr`'s or `stdout`'s first non-empty line, for short notes.
pub(crate) fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_prefix_exports_quoted_values() {
        let ctx = minijinja::context! {
            dtr_env => minijinja::context! { NODE_NAME => "dtr-1", DTR_SIM_DIR => "/tmp/a b" },
        };
        let got = env_prefix(&ctx).expect("valid");
        assert!(got.contains("export NODE_NAME=dtr-1; "), "{got}");
        assert!(got.contains("export DTR_SIM_DIR='/tmp/a b'; "), "{got}");
        assert_eq!(
            env_prefix(&minijinja::context! {}).ok().as_deref(),
            Some("")
        );
        let bad = minijinja::context! {
            dtr_env => Value::from(std::collections::BTreeMap::from([("A-B", "x")])),
        };
        assert!(env_prefix(&bad).is_err());
    }

    #[test]
    fn secret_files_script_reads_stdin_and_cleans_up() {
        let (script, stdin) = with_files(
            "stat -c %a \"$CAPSTAN_SECRET_FILE\"; cat \"$CAPSTAN_SECRET_FILE\"; \
             cat \"$CAPSTAN_DIR/b\"; echo \"$CAPSTAN_DIR\" >&2",
            &[("ucp.env", "UCP_PASSWORD=s3\n"), ("b", "two\nlines")],
        );
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&stdin)
            .expect("write");
        let out = child.wait_with_output().expect("waits");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "600\nUCP_PASSWORD=s3\ntwo\nlines"
        );
        let path = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    }

    #[test]
    fn failure_names_the_command_host_and_stderr_tail() {
        let out = Output {
            status: ExitStatus::Code(1),
            stdout: String::new(),
            stderr: "a\nb\nc\nd\ne\nf\n".into(),
        };
        assert_eq!(
            out.failure("`docker ps`", "dtr-1"),
            "`docker ps` failed on `dtr-1` (exit status 1):\n  b\n  c\n  d\n  e\n  f"
        );
    }
}
