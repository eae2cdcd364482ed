//! One command on one session channel: stdin in, stdout and stderr apart, read until the
//! channel closes (the exit status can come before the last output), and the timeout.

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
    writer
        .exec(true, req.command.as_bytes())
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
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.extend_from_slice(&data),
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
                if timed_out.is_none() {
                    timed_out = req.timeout;
                    // OpenSSH (7.9+) sends it to the command's process group.
                    let _ = writer.signal(Sig::TERM).await;
                    timer.as_mut().reset(Instant::now() + TERM_GRACE);
                } else {
                    let _ = writer.signal(Sig::KILL).await;
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
