//! What can go wrong while a DTR task talks to a node, typed so that a lost connection is
//! told apart from a command that ran and failed.

use crate::transport::{ExitStatus, TransportError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DtrError {
    /// The host could not be reached or the connection broke: the report says
    /// `unreachable`, not `failed`.
    #[error("`{host}`: {source}")]
    Transport {
        host: String,
        #[source]
        source: Box<TransportError>,
    },
    /// A command ran and failed.
    #[error("{what} failed on `{host}` ({status}){tail}")]
    Command {
        what: String,
        host: String,
        status: ExitStatus,
        /// The end of its stderr (or stdout), each line indented, or empty.
        tail: String,
    },
    /// A command succeeded but printed something capstan cannot read.
    #[error("{what} on `{host}` printed `{text}`: {why}")]
    Unreadable {
        what: String,
        host: String,
        text: String,
        why: String,
    },
    /// A command template or parameter did not render.
    #[error("{0}")]
    Render(String),
    /// An input (inventory value, file on the control machine) is not usable.
    #[error("{0}")]
    Input(String),
    /// A rule says no, before any change: the message names the rule and the way forward.
    #[error("{0}")]
    Refused(String),
}

impl DtrError {
    pub fn is_transport(&self) -> bool {
        matches!(self, DtrError::Transport { .. })
    }
}

impl From<crate::template::TemplateError> for DtrError {
    fn from(e: crate::template::TemplateError) -> Self {
        DtrError::Render(e.message)
    }
}
