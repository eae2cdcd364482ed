//! The reporter thread's one consumer: hands every event to the reporters the command line
//! asked for (human unless `--output json`, JSON lines, the summary behind `--report` and
//! `--junit`), then, once the exit code is known, writes the report files.

use std::path::PathBuf;

use super::event::Event;
use super::human::HumanReporter;
use super::json::JsonReporter;
use super::junit;
use super::summary::{RunInfo, SummaryCollector, write_atomically};

/// Files to write at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct ReportFiles {
    /// `--report FILE`: the summary as one JSON document.
    pub report: Option<PathBuf>,
    /// `--junit FILE`.
    pub junit: Option<PathBuf>,
    /// `--junit-changed-as-failure`.
    pub junit_changed_as_failure: bool,
}

impl ReportFiles {
    fn wanted(&self) -> bool {
        self.report.is_some() || self.junit.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render the JUnit report: {0}")]
    Junit(String),
    #[error("cannot render the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Every reporter of one run.
pub struct Fanout {
    human: Option<HumanReporter>,
    json: Option<JsonReporter<std::io::Stdout>>,
    summary: Option<SummaryCollector>,
    files: ReportFiles,
}

impl Fanout {
    /// `human` is `None` with `--output json`.
    pub fn new(human: Option<HumanReporter>, json: bool, files: ReportFiles) -> Self {
        Self {
            human,
            json: json.then(JsonReporter::stdout),
            summary: files.wanted().then(SummaryCollector::default),
            files,
        }
    }

    /// The JSON lines give `path` as `run_started.playbook`.
    #[must_use]
    pub fn with_playbook_path(mut self, path: &std::path::Path) -> Self {
        if let Some(j) = self.json.take() {
            self.json = Some(j.with_playbook_path(path));
        }
        self
    }

    pub fn handle(&mut self, event: &Event) {
        if let Some(h) = &mut self.human {
            h.handle(event);
        }
        if let Some(j) = &mut self.json {
            j.handle(event);
        }
        if let Some(s) = &mut self.summary {
            s.handle(event);
        }
    }

    /// Writes `--report` and `--junit` (each atomically), then the JSON `exit` line.
    ///
    /// # Errors
    /// A report that cannot be written; the JSON `exit` line then says so, with exit code 1.
    pub fn finish(mut self, info: RunInfo) -> Result<(), ReportError> {
        let (code, error) = (info.exit_code, info.error.clone());
        let written = match self.summary.take() {
            Some(collector) => write_files(&self.files, &collector.finish(info)),
            None => Ok(()),
        };
        if let Some(j) = &mut self.json {
            match &written {
                Ok(()) => j.exit(code, error.as_deref()),
                Err(e) => j.exit(crate::error::exit::USAGE, Some(&e.to_string())),
            }
        }
        written
    }
}

fn write_files(files: &ReportFiles, summary: &super::summary::Summary) -> Result<(), ReportError> {
    let write = |path: &PathBuf, bytes: &[u8]| {
        write_atomically(path, bytes).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = &files.report {
        let mut text = serde_json::to_string_pretty(&summary.to_json())?;
        text.push('\n');
        write(path, text.as_bytes())?;
    }
    if let Some(path) = &files.junit {
        let xml =
            junit::render(summary, files.junit_changed_as_failure).map_err(ReportError::Junit)?;
        write(path, xml.as_bytes())?;
    }
    Ok(())
}
