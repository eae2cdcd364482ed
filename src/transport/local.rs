//! `connection = "local"`: commands run on the control machine through `sh -c`.

use super::{ExecOutput, ExecRequest, TransportError};
use crate::inventory::Host;

pub struct LocalSession {}

impl LocalSession {
    pub fn new(host: &Host) -> Self {
        let _ = host;
        Self {}
    }
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, TransportError> {
        let _ = req;
        Err(TransportError::Other("local transport not built yet".into()))
    }
}
