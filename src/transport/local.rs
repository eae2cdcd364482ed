//! `connection = "local"`: commands run on the control machine, through the user's shell
//! (`$SHELL -c`, as sshd would run them), each in its own process group so that a timeout
//! or a stop request ends the whole command tree. As over SSH, the shell's only argument is
//! the fixed bootstrap; the command and its stdin follow on stdin (see `transport::frame`).

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

use super::capture::Capture;
use super::{
    ExecControl, ExecOutput, ExecRequest, ExitStatus, Stop, StopWatch, TransportError, frame,
};
use crate::inventory::Host;

/// A "connection" to the control machine itself.
pub struct LocalSession {
    name: String,
    shell: String,
}

/// After KILL, how long the pipes may stay open before capstan stops reading them.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Why capstan is ending the command, once it is.
#[derive(Clone, Copy)]
enum Ending {
    TimedOut(Duration),
    Cancelled,
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

    pub async fn exec(
        &self,
        req: &ExecRequest,
        control: &ExecControl,
    ) -> Result<ExecOutput, TransportError> {
        if frame::has_nul(&req.command) {
            return Err(TransportError::Other(format!(
                "{}: the command holds a NUL byte",
                self.name
            )));
        }
        let mut child = Command::new(&self.shell)
            .arg("-c")
            .arg(frame::BOOTSTRAP)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TransportError::Other(format!("{}: cannot start `{}`: {e}", self.name, self.shell))
            })?;
        let group = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw);
        let signal_group = |sig: Signal| {
            if let Some(pgid) = group {
                let _ = killpg(pgid, sig);
            }
        };

        // Held open until the command has ended: its end tells the watcher that capstan is gone.
        let mut stdin = child.stdin.take();
        let feed = {
            let (command, data) = (
                req.command.clone(),
                req.stdin.as_deref().unwrap_or_default(),
            );
            let header = frame::header(command.len(), data.len());
            let command = command.into_bytes();
            let data = data.to_vec();
            let pipe = stdin.as_mut();
            async move {
                if let Some(pipe) = pipe {
                    // A shell that exits early closes the pipe: the exit status tells why.
                    for part in [&header[..], &command, &data, frame::TRAILER] {
                        if pipe.write_all(part).await.is_err() {
                            break;
                        }
                    }
                    let _ = pipe.flush().await;
                }
            }
        };
        let stdout_pipe = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let mut ending: Option<Ending> = None;
        let finished = {
            let read_out = read_bounded(stdout_pipe, control);
            let read_err = read_bounded(stderr_pipe, control);
            let run = async {
                let (_, out, err) = tokio::join!(feed, read_out, read_err);
                let status = child.wait().await;
                (out, err, status)
            };
            let mut run = std::pin::pin!(run);

            let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
            let deadline = req.timeout.map_or(far, |t| Instant::now() + t);
            let timer = tokio::time::sleep_until(deadline);
            let mut timer = std::pin::pin!(timer);
            let mut stop = StopWatch::new(control);
            let mut killed = false;

            loop {
                tokio::select! {
                    done = &mut run => break Some(done),
                    () = &mut timer => {
                        if killed {
                            // Something left the process group with our pipes: stop reading.
                            break None;
                        }
                        if ending.is_none() {
                            ending = Some(Ending::TimedOut(req.timeout.unwrap_or_default()));
                            signal_group(Signal::SIGTERM);
                            timer.as_mut().reset(Instant::now() + control.grace);
                        } else {
                            signal_group(Signal::SIGKILL);
                            killed = true;
                            timer.as_mut().reset(Instant::now() + AFTER_KILL);
                        }
                    }
                    level = stop.next() => {
                        if level == Stop::Kill {
                            ending.get_or_insert(Ending::Cancelled);
                            signal_group(Signal::SIGKILL);
                            killed = true;
                            timer.as_mut().reset(Instant::now() + AFTER_KILL);
                        } else if ending.is_none() {
                            ending = Some(Ending::Cancelled);
                            signal_group(Signal::SIGTERM);
                            timer.as_mut().reset(Instant::now() + control.grace);
                        }
                    }
                }
            }
        };
        drop(stdin);
        let ((stdout, stdout_cuts), (stderr, stderr_cuts), status) = match finished {
            Some((out, err, status)) => (out, err, Some(status)),
            None => (Default::default(), Default::default(), None),
        };
        let status = match (ending, status) {
            (Some(Ending::TimedOut(after)), _) => ExitStatus::TimedOut(after),
            (Some(Ending::Cancelled), _) => ExitStatus::Cancelled,
            (None, Some(status)) => exit_status(
                status.map_err(|e| TransportError::Other(format!("{}: {e}", self.name)))?,
            ),
            (None, None) => {
                return Err(TransportError::Other(format!(
                    "{}: the command's output never ended",
                    self.name
                )));
            }
        };
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
            stdout_cuts,
            stderr_cuts,
        })
    }
}

/// Reads a pipe to its end, keeping what the limit allows.
async fn read_bounded<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    control: &ExecControl,
) -> (Vec<u8>, Vec<super::Cut>) {
    let mut capture = Capture::new(control.output_limit, control.record_mark.as_deref());
    if let Some(mut pipe) = pipe {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            capture.push(&buf[..n]);
        }
    }
    capture.finish()
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

    async fn exec(s: &LocalSession, r: &ExecRequest) -> ExecOutput {
        s.exec(r, &ExecControl::default()).await.expect("runs")
    }

    #[tokio::test]
    async fn separates_streams_and_exit_codes() {
        let s = LocalSession::new(&host());
        let out = exec(&s, &req("echo out; echo err >&2; exit 3")).await;
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status, ExitStatus::Code(3));
    }

    #[tokio::test]
    async fn feeds_stdin() {
        let s = LocalSession::new(&host());
        let mut r = req("cat");
        r.stdin = Some(b"hello".to_vec());
        let out = exec(&s, &r).await;
        assert_eq!(out.stdout, b"hello");
    }

    #[tokio::test]
    async fn times_out_and_kills_the_tree() {
        let s = LocalSession::new(&host());
        let mut r = req("sleep 30 & sleep 31; echo never");
        r.timeout = Some(Duration::from_millis(300));
        let out = exec(&s, &r).await;
        assert_eq!(out.status, ExitStatus::TimedOut(Duration::from_millis(300)));
    }

    #[tokio::test]
    async fn reports_signals() {
        let s = LocalSession::new(&host());
        let out = exec(&s, &req("kill -KILL $$")).await;
        assert_eq!(out.status, ExitStatus::Signal("KILL".into()));
    }
}
