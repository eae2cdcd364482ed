//! Inventory text, as `Inventory::load` reads it: any input is refused with located
//! problems or loads into an inventory whose outputs can all be produced.
#![no_main]

use std::path::Path;

use capstan::inventory::Inventory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match Inventory::parse(Path::new("/nonexistent/fuzz/inventory.toml"), source) {
        Ok(inv) => {
            let _ = inv.list_json();
            let _ = inv.graph();
            for host in inv.hosts.values() {
                let _ = inv.vars_for(host);
                let _ = inv.host_json(&host.name);
            }
            let _ = inv.select("all");
            let _ = inv.settings.cache();
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            let _ = problems.sorted().to_string();
        }
    }
});
