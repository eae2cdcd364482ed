//! `connection = "local"`: commands run on the control machine, through the user's shell
//! (`$SHELL -c`, as sshd would run them), each in its own process group so that a timeout
//! stops the whole command tree.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{ExecOutput, ExecRequest, ExitStatus, TransportError};
use crate::inventory::Host;

/// A "connection" to the control machine itself.
pub struct LocalSession {
    name: String,
    shell: String,
}

impl LocalSession {
    pub fn new(host: &Host) -> Self {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_owned());
        Self {
            name: host.name.clone(),
            shell,
        }
    }

    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, TransportError> {
        let mut child = Command::new(&self.shell)
            .arg("-c")
            .arg(&req.command)
            .stdin(if req.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TransportError::Other(format!("{}: cannot start `{}`: {e}", self.name, self.shell))
            })?;
        let pid = child.id();

        if let (Some(data), Some(mut stdin)) = (&req.stdin, child.stdin.take()) {
            let data = data.clone();
            tokio::spawn(async move {
                // A command that does not read its stdin closes the pipe early: not an error.
                let _ = stdin.write_all(&data).await;
            });
        }
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let run = async {
            let (out, err) = tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (out, err, status)
        };
        let limit = req.timeout.unwrap_or(Duration::MAX);
        match tokio::time::timeout(limit, run).await {
            Ok((stdout, stderr, status)) => {
                let status =
                    status.map_err(|e| TransportError::Other(format!("{}: {e}", self.name)))?;
                Ok(ExecOutput {
                    stdout,
                    stderr,
                    status: exit_status(status),
                })
            }
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                Ok(ExecOutput {
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    status: ExitStatus::TimedOut(limit),
                })
            }
        }
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return ExitStatus::Code(code);
    }
    let name = status
        .signal()
        .and_then(|s| Signal::try_from(s).ok())
        .map_or_else(
            || "UNKNOWN".to_owned(),
            |s| s.as_str().trim_start_matches("SIG").to_owned(),
        );
    ExitStatus::Signal(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            name: "localhost".into(),
            address: None,
            port: None,
            user: None,
            identity_files: vec![],
            known_hosts: None,
            connect_timeout: None,
            command_timeout: None,
            connection: crate::inventory::ConnectionKind::Local,
            host_key_checking: None,
            proxy_jump: vec![],
            password: None,
            key_passphrase: None,
            become_password: None,
            vars: crate::vars::Vars::new(),
            groups: vec![],
            line: 0,
        }
    }

    fn req(cmd: &str) -> ExecRequest {
        ExecRequest {
            command: cmd.into(),
            stdin: None,
            timeout: Some(Duration::from_secs(20)),
        }
    }

    #[tokio::test]
    async fn separates_streams_and_exit_codes() {
        let s = LocalSession::new(&host());
        let out = s
            .exec(&req("echo out; echo err >&2; exit 3"))
            .await
            .expect("runs");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status, ExitStatus::Code(3));
    }

    #[tokio::test]
    async fn feeds_stdin() {
        let s = LocalSession::new(&host());
        let mut r = req("cat");
        r.stdin = Some(b"hello".to_vec());
        let out = s.exec(&r).await.expect("runs");
        assert_eq!(out.stdout, b"hello");
    }

    #[tokio::test]
    async fn times_out_and_kills_the_tree() {
        let s = LocalSession::new(&host());
        let mut r = req("sleep 30 & sleep 31; echo never");
        r.timeout = Some(Duration::from_millis(300));
        let out = s.exec(&r).await.expect("runs");
        assert_eq!(out.status, ExitStatus::TimedOut(Duration::from_millis(300)));
    }

    #[tokio::test]
    async fn reports_signals() {
        let s = LocalSession::new(&host());
        let out = s.exec(&req("kill -KILL $$")).await.expect("runs");
        assert_eq!(out.status, ExitStatus::Signal("KILL".into()));
    }
}
