//! One command on one session channel: stdin in, stdout and stderr apart, read until the
//! channel closes (the exit status can come before the last output), and the timeout.

use std::sync::Arc;
use std::time::Duration;

use russh::{ChannelMsg, Sig};
use tokio::time::Instant;

use super::SshSession;
use crate::transport::{ExecOutput, ExecRequest, ExitStatus, TransportError};

/// After SIGTERM, how long the command has to end before SIGKILL and closing the channel.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// How the read loop ended.
enum End {
    /// The server closed the channel: the command is over.
    Closed,
    /// Past the grace period after a timeout: we closed the channel ourselves.
    Abandoned,
    /// The connection went away.
    Lost,
}

pub(super) async fn run(
    session: &SshSession,
    req: &ExecRequest,
) -> Result<ExecOutput, TransportError> {
    let channel = session.handle.channel_open_session().await.map_err(|e| {
        if session.handle.is_closed() || matches!(e, russh::Error::SendError) {
            session.lost(&e)
        } else {
            TransportError::Other(format!(
                "`{}` refused a new channel: {}",
                session.target,
                super::auth::lower(&e)
            ))
        }
    })?;
    let (mut reader, writer) = channel.split();
    let mut group = req.timeout.map(|_| GroupReport::new());
    let command = match &group {
        Some(group) => group.wrap(&req.command),
        None => req.command.clone(),
    };
    writer
        .exec(true, command.as_bytes())
        .await
        .map_err(|e| session.lost(&e))?;

    // Fed while reading, so that a command that writes before it reads cannot deadlock us.
    let stdin = req.stdin.clone();
    let feed = async {
        if let Some(bytes) = stdin {
            writer.data_bytes(bytes).await?;
        }
        writer.eof().await
    };
    let mut feed = std::pin::pin!(feed);
    let mut feeding = true;

    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let timer = tokio::time::sleep_until(req.timeout.map_or(far, |t| Instant::now() + t));
    let mut timer = std::pin::pin!(timer);
    let mut timed_out: Option<Duration> = None;

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status: Option<ExitStatus> = None;
    let mut eof = false;
    let mut confirmed = false;

    let end = loop {
        tokio::select! {
            msg = reader.wait() => match msg {
                Some(ChannelMsg::Data { data }) => stdout.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    stderr.extend_from_slice(&data);
                    if let Some(group) = group.as_mut() {
                        group.take_from(&mut stderr);
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)));
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    status = Some(ExitStatus::Signal(signal_text(&signal_name)));
                }
                Some(ChannelMsg::Eof) => eof = true,
                Some(ChannelMsg::Success) => confirmed = true,
                Some(ChannelMsg::Failure) if !confirmed => {
                    let _ = writer.close().await;
                    return Err(TransportError::Other(format!(
                        "`{}` refused to run the command",
                        session.target
                    )));
                }
                Some(ChannelMsg::Close) => break End::Closed,
                Some(_) => {}
                None => break End::Lost,
            },
            result = &mut feed, if feeding => {
                feeding = false;
                // A command that exits without reading its stdin closes the channel under
                // us; the reader sees how it ended.
                let _ = result;
            }
            () = &mut timer, if req.timeout.is_some() => {
                let pgid = group.as_ref().and_then(|g| g.pgid);
                if timed_out.is_none() {
                    timed_out = req.timeout;
                    terminate(session, &writer, pgid, Sig::TERM).await;
                    timer.as_mut().reset(Instant::now() + TERM_GRACE);
                } else {
                    terminate(session, &writer, pgid, Sig::KILL).await;
                    let _ = writer.close().await;
                    break End::Abandoned;
                }
            }
        }
    };

    if let End::Lost = end
        && !(eof && status.is_some())
    {
        return Err(session.lost(&"the connection closed"));
    }
    let status = match (timed_out, status) {
        (Some(after), _) => ExitStatus::TimedOut(after),
        (None, Some(status)) => status,
        (None, None) => {
            return Err(TransportError::Other(format!(
                "`{}` closed the channel without an exit status",
                session.target
            )));
        }
    };
    Ok(ExecOutput {
        stdout,
        stderr,
        status,
    })
}

/// Sends `sig` to the command: as a channel request, which OpenSSH (7.9+) delivers to the
/// command's process group, but not for root logins ("session signalling requires privilege
/// separation"); so also with `kill` on a second channel, when the group is known.
async fn terminate<S>(
    session: &SshSession,
    channel: &russh::ChannelWriteHalf<S>,
    pgid: Option<u32>,
    sig: Sig,
) where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let name = signal_text(&sig);
    let _ = channel.signal(sig).await;
    if let Some(pgid) = pgid {
        // Its own task: this channel must keep being read meanwhile, or a command that
        // floods its output would stall the connection under the `kill`.
        let handle = Arc::clone(&session.handle);
        tokio::spawn(async move {
            let Ok(mut kill) = handle.channel_open_session().await else {
                return;
            };
            let command = format!("kill -{name} -- -{pgid} 2>/dev/null; exit 0");
            if kill.exec(false, command).await.is_err() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(msg) = kill.wait().await {
                    if let ChannelMsg::Close = msg {
                        break;
                    }
                }
            })
            .await;
        });
    }
}

/// For commands with a timeout: the login shell first prints its PID (which is the process
/// group sshd made for the command) on stderr, in a marked line that is taken out again.
/// Needs a POSIX login shell (sh, bash, dash, ksh, zsh).
struct GroupReport {
    marker: String,
    pgid: Option<u32>,
    /// Stop looking after this much stderr without the marker.
    given_up: bool,
}

impl GroupReport {
    fn new() -> GroupReport {
        GroupReport {
            marker: format!("\u{1f}capstan-pgid:{:016x}:", rand::random::<u64>()),
            pgid: None,
            given_up: false,
        }
    }

    fn wrap(&self, command: &str) -> String {
        // printf turns `\037` into the marker's leading U+001F.
        let visible = &self.marker[1..];
        format!("printf '\\037{visible}%s\\n' \"$$\" >&2; {command}")
    }

    /// Finds the marked line in `stderr`, records the PID, and removes the line.
    fn take_from(&mut self, stderr: &mut Vec<u8>) {
        if self.pgid.is_some() || self.given_up {
            return;
        }
        let marker = self.marker.as_bytes();
        let Some(at) = stderr.windows(marker.len()).position(|w| w == marker) else {
            self.given_up = stderr.len() > 64 * 1024;
            return;
        };
        let digits_at = at + marker.len();
        let Some(newline) = stderr[digits_at..].iter().position(|&b| b == b'\n') else {
            return;
        };
        self.pgid = std::str::from_utf8(&stderr[digits_at..digits_at + newline])
            .ok()
            .and_then(|d| d.parse().ok());
        stderr.drain(at..=digits_at + newline);
        self.given_up = self.pgid.is_none();
    }
}

/// Signal name without `SIG`, as OpenSSH sends it.
fn signal_text(sig: &Sig) -> String {
    let name = match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.trim_start_matches("SIG"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_report_is_found_across_chunks_and_removed() {
        let mut report = GroupReport::new();
        let wrapped = report.wrap("make");
        assert!(
            wrapped.starts_with("printf '\\037capstan-pgid:"),
            "{wrapped}"
        );
        assert!(wrapped.ends_with("\"$$\" >&2; make"), "{wrapped}");

        let line = format!("{}4242\n", report.marker);
        let (first, second) = line.as_bytes().split_at(10);
        let mut stderr = b"motd\n".to_vec();
        stderr.extend_from_slice(first);
        report.take_from(&mut stderr);
        assert_eq!(report.pgid, None);
        stderr.extend_from_slice(second);
        stderr.extend_from_slice(b"real error\n");
        report.take_from(&mut stderr);
        assert_eq!(report.pgid, Some(4242));
        assert_eq!(stderr, b"motd\nreal error\n");
    }
}
