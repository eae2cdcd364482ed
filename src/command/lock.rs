//! `capstan lock status|acquire|release`.

use super::{connect_options, runtime};
use crate::cli::{LockAction, LockArgs};
use crate::error::Error;
use crate::lock::command::{self as domain, LockRequest, ReleaseMode};
use crate::secrets;

pub(crate) fn run(args: &LockArgs) -> Result<i32, Error> {
    let (target, action) = match &args.action {
        LockAction::Status(t) => (t, domain::LockAction::Status),
        LockAction::Acquire {
            target,
            message,
            wait,
        } => (
            target,
            domain::LockAction::Acquire {
                message: message.clone(),
                wait: *wait,
            },
        ),
        LockAction::Release {
            target,
            stale,
            force,
        } => {
            let mode = if *force {
                ReleaseMode::Force
            } else if *stale {
                ReleaseMode::Stale
            } else {
                ReleaseMode::Manual
            };
            (target, domain::LockAction::Release(mode))
        }
    };
    let req = LockRequest {
        inventory: target.inventory.clone(),
        limit: target.limit.clone(),
        connect: connect_options(&target.ssh),
        action,
    };
    let out = runtime()?.block_on(domain::run(&req))?;
    print!("{}", secrets::mask(&out.text));
    Ok(out.code)
}
