//! Host patterns (`--limit`, a play's `hosts`) against a small inventory: every pattern
//! selects hosts or is refused with a `PatternError`.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use capstan::inventory::Inventory;
use libfuzzer_sys::fuzz_target;

const INVENTORY: &str = r#"
[hosts.web1]
[hosts.web2]
[hosts.db1]
[hosts."db-2"]
[hosts.cache1]
[groups.web]
hosts = ["web1", "web2"]
[groups.db]
hosts = ["db1", "db-2"]
[groups.site]
children = ["web", "db"]
"#;

static INV: LazyLock<Option<Inventory>> =
    LazyLock::new(|| Inventory::parse(Path::new("fuzz.toml"), INVENTORY).ok());

fuzz_target!(|data: &[u8]| {
    let Ok(pattern) = std::str::from_utf8(data) else {
        return;
    };
    let Some(inv) = INV.as_ref() else {
        panic!("the fixed inventory must load");
    };
    if let Ok(hosts) = inv.select(pattern) {
        assert!(hosts.len() <= inv.hosts.len());
    }
});
