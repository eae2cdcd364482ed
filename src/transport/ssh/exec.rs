//! One command on one session channel: the fixed bootstrap as the exec request, the command
//! and its stdin on the channel (see `transport::frame`), stdout and stderr kept apart and
//! bounded, read until the channel closes (the exit status can come before the last output),
//! and the timeout and stop requests, sent as control lines on the same channel. Those reach
//! the command's process group through the bootstrap's watcher, for root logins too (OpenSSH
//! refuses `signal` requests without privilege separation) and with no second channel.

use std::time::Duration;

use russh::{ChannelMsg, Sig};
use tokio::time::Instant;

use super::SshSession;
use crate::transport::capture::Capture;
use crate::transport::{
    ExecControl, ExecOutput, ExecRequest, ExitStatus, Stop, StopWatch, TransportError, frame,
};

/// After KILL, how long the channel may stay open before capstan closes it.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// How the read loop ended.
enum End {
    /// The server closed the channel: the command is over.
    Closed,
    /// Past the wait after KILL: we closed the channel ourselves.
    Abandoned,
    /// The connection went away.
    Lost,
}

/// Why capstan is ending the command, once it is.
#[derive(Clone, Copy)]
enum Ending {
    TimedOut(Duration),
    Cancelled,
}

pub(super) async fn run(
    session: &SshSession,
    req: &ExecRequest,
    control: &ExecControl,
) -> Result<ExecOutput, TransportError> {
    if frame::has_nul(&req.command) {
        return Err(TransportError::Other(format!(
            "`{}`: the command holds a NUL byte",
            session.target
        )));
    }
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
        .exec(true, frame::BOOTSTRAP.as_bytes())
        .await
        .map_err(|e| session.lost(&e))?;

    // Fed while reading, so that a command that writes before it reads cannot deadlock us.
    // Never followed by EOF: the end of stdin means "capstan is gone" (see `frame`).
    // Stdin stays stdin, never folded into the command: it is where secrets travel (an env
    // file, a password), and a command is text that may be shown or logged.
    let (command, stdin) = (
        req.command.clone(),
        req.stdin.as_deref().unwrap_or_default(),
    );
    let parts = [
        frame::header(command.len(), stdin.len()),
        command.into_bytes(),
        stdin.to_vec(),
        frame::TRAILER.to_vec(),
    ];
    let feed = async {
        for part in parts {
            if !part.is_empty() {
                writer.data_bytes(part).await?;
            }
        }
        Ok::<(), russh::Error>(())
    };
    let mut feed = std::pin::pin!(feed);
    let mut feeding = true;

    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let timer = tokio::time::sleep_until(req.timeout.map_or(far, |t| Instant::now() + t));
    let mut timer = std::pin::pin!(timer);
    let mut stop = StopWatch::new(control);
    let mut ending: Option<Ending> = None;
    let mut termed = false;
    let mut killed = false;

    let mark = control.record_mark.as_deref();
    let mut stdout = Capture::new(control.output_limit, mark);
    let mut stderr = Capture::new(control.output_limit, mark);
    let mut status: Option<ExitStatus> = None;
    let mut eof = false;
    let mut confirmed = false;

    // What to do about a timeout or a stop request: TERM (then KILL after the grace), or KILL.
    enum Act {
        Term,
        Kill,
    }

    let end = loop {
        let act = tokio::select! {
            msg = reader.wait() => {
                match msg {
                    Some(ChannelMsg::Data { data }) => stdout.push(&data),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.push(&data),
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
                }
                continue;
            }
            result = &mut feed, if feeding => {
                feeding = false;
                // A command that exits without reading its stdin closes the channel under
                // us; the reader sees how it ended.
                let _ = result;
                continue;
            }
            () = &mut timer => {
                if killed {
                    let _ = writer.close().await;
                    break End::Abandoned;
                }
                if ending.is_none() {
                    ending = Some(Ending::TimedOut(req.timeout.unwrap_or_default()));
                    Act::Term
                } else {
                    Act::Kill
                }
            }
            level = stop.next() => {
                ending.get_or_insert(Ending::Cancelled);
                if level == Stop::Kill { Act::Kill } else { Act::Term }
            }
        };
        if feeding {
            // The command has not all arrived, so it has not started: closing the channel
            // ends the bootstrap before it runs anything.
            feeding = false;
            killed = true;
            let _ = writer.close().await;
            timer.as_mut().reset(Instant::now() + AFTER_KILL);
            continue;
        }
        match act {
            Act::Term if !killed && !termed => {
                termed = true;
                let _ = writer.data_bytes(frame::terminate(control.grace)).await;
                timer.as_mut().reset(Instant::now() + control.grace);
            }
            Act::Term => {}
            Act::Kill => {
                let _ = writer.data_bytes(frame::KILL.to_vec()).await;
                killed = true;
                timer.as_mut().reset(Instant::now() + AFTER_KILL);
            }
        }
    };

    if let End::Lost = end
        && !(eof && status.is_some())
    {
        return Err(session.lost(&"the connection closed"));
    }
    let status = match (ending, status) {
        (Some(Ending::TimedOut(after)), _) => ExitStatus::TimedOut(after),
        (Some(Ending::Cancelled), _) => ExitStatus::Cancelled,
        (None, Some(status)) => status,
        (None, None) => {
            return Err(TransportError::Other(format!(
                "`{}` closed the channel without an exit status",
                session.target
            )));
        }
    };
    let (stdout, stdout_cuts) = stdout.finish();
    let (stderr, stderr_cuts) = stderr.finish();
    Ok(ExecOutput {
        stdout,
        stderr,
        status,
        stdout_cuts,
        stderr_cuts,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_lose_their_sig_prefix() {
        assert_eq!(signal_text(&Sig::TERM), "TERM");
        assert_eq!(signal_text(&Sig::Custom("SIGWINCH".into())), "WINCH");
    }
}
