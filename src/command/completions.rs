//! `capstan completions SHELL` and `capstan man`: generated from the same clap definition
//! that parses the command line, so they never fall behind it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, exit};

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<i32, Error> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "capstan", &mut out);
    print(&out)
}

pub(crate) fn man() -> Result<i32, Error> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Error::Internal(format!("cannot render the manual page: {e}")))?;
    print(&out)
}

fn print(bytes: &[u8]) -> Result<i32, Error> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(exit::SUCCESS),
        // `capstan man | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::SUCCESS),
        Err(e) => Err(Error::Internal(format!("cannot write to stdout: {e}"))),
    }
}
