//! `capstan audit`: the audit trail, newest first.

use super::{connect_options, runtime};
use crate::audit::AuditRequest;
use crate::cli::AuditArgs;
use crate::error::Error;
use crate::secrets;

pub(crate) fn run(args: &AuditArgs) -> Result<i32, Error> {
    let req = AuditRequest {
        inventory: args.inventory.clone(),
        limit: args.limit.clone(),
        remote: args.remote,
        json: args.json,
        connect: connect_options(&args.ssh),
    };
    let out = runtime()?.block_on(crate::audit::command(&req))?;
    for w in &out.warnings {
        eprintln!("{}", secrets::mask(w));
    }
    print!("{}", secrets::mask(&out.text));
    Ok(out.code)
}
