//! `capstan inventory`: hosts with merged variables (secrets masked), the group tree, one host.

use crate::cli::InventoryArgs;
use crate::error::{Error, exit};
use crate::inventory::Inventory;
use crate::secrets;

pub(crate) fn run(args: &InventoryArgs) -> Result<i32, Error> {
    let inventory = Inventory::load(&args.inventory)?;
    let text = if args.graph {
        inventory.graph()
    } else if let Some(name) = &args.host {
        let v = inventory
            .host_json(name)
            .map_err(|e| Error::Refused(e.to_string()))?;
        pretty(&v)?
    } else {
        pretty(&inventory.list_json())?
    };
    println!("{}", secrets::mask(text.trim_end()));
    Ok(exit::SUCCESS)
}

fn pretty(v: &serde_json::Value) -> Result<String, Error> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))
}
