//! `capstan upgrade-path FROM TO`: judges a DTR upgrade or plans its hops.

use crate::cli::{OutputFormat, UpgradePathArgs};
use crate::error::Error;

pub(crate) fn run(args: &UpgradePathArgs) -> Result<i32, Error> {
    let available = match args.available.as_deref() {
        Some(list) if list.starts_with('@') => {
            let path = &list[1..];
            Some(std::fs::read_to_string(path).map_err(|e| {
                Error::Refused(format!(
                    "cannot read the available versions from `{path}`: {e}"
                ))
            })?)
        }
        other => other.map(str::to_owned),
    };
    let (out, err, code) = crate::rules::upgrade_path_command(
        &args.from,
        &args.to,
        available.as_deref(),
        args.output == OutputFormat::Json,
        args.allow_prerelease,
    );
    print!("{out}");
    eprint!("{err}");
    Ok(code)
}
