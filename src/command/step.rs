//! `run --step`: the operator confirms each selected task on the terminal, as with
//! `ansible-playbook --step`: yes, no, or continue with all the rest. Unlike Ansible, every
//! question is asked before the run starts (before anything connects or the cluster lock is
//! taken), so that no host waits, locked, for an answer.

use std::io::{BufRead, Write};

use crate::engine;
use crate::error::Error;
use crate::job::Job;

/// An answer to "perform task …?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Yes,
    No,
    /// Yes to this task and every one after it.
    Continue,
}

fn parse(line: &str) -> Option<Answer> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Answer::Yes),
        // As Ansible, an empty answer is no.
        "" | "n" | "no" => Some(Answer::No),
        "c" | "continue" => Some(Answer::Continue),
        _ => None,
    }
}

/// Asks about every task the run would do and leaves out those answered no.
pub(crate) fn confirm_each_task(job: &mut Job) -> Result<(), Error> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stderr();
    let opts = &job.opts;
    let mut declined = opts.declined.clone();
    'plays: for play in &job.playbook.plays {
        for i in engine::select_tasks(play, &opts.tags, &opts.skip_tags, &opts.declined) {
            let task = &play.tasks[i];
            let answer = loop {
                let _ = write!(
                    out,
                    "perform task \"{}\" (play \"{}\")? (y)es/(N)o/(c)ontinue: ",
                    task.name, play.name
                );
                let _ = out.flush();
                let mut line = String::new();
                let read = input
                    .read_line(&mut line)
                    .map_err(|e| Error::Refused(format!("--step: cannot read the answer: {e}")))?;
                if read == 0 {
                    return Err(Error::Refused(
                        "--step: the terminal closed before every task was confirmed; nothing was run"
                            .into(),
                    ));
                }
                match parse(&line) {
                    Some(answer) => break answer,
                    None => {
                        let _ = writeln!(out, "answer y, n or c");
                    }
                }
            };
            match answer {
                Answer::Yes => {}
                Answer::No => {
                    declined.decline(play, i);
                }
                Answer::Continue => break 'plays,
            }
        }
    }
    job.opts.declined = declined;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_ansible_reads_them() {
        assert_eq!(parse("y\n"), Some(Answer::Yes));
        assert_eq!(parse("YES"), Some(Answer::Yes));
        assert_eq!(parse("\n"), Some(Answer::No));
        assert_eq!(parse("n"), Some(Answer::No));
        assert_eq!(parse(" c "), Some(Answer::Continue));
        assert_eq!(parse("maybe"), None);
    }
}
