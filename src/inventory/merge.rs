//! A host's variables, merged level by level.

use super::{Host, Inventory};
use crate::vars::{Vars, overlay};

impl Inventory {
    /// The variables of `host`, merged from lowest to highest precedence:
    ///
    /// 1. magic variables: `inventory_hostname` (the host's name), `host_address` (its
    ///    `address`, else its name) and `group_names` (the host's groups, in the order below);
    /// 2. `[defaults]` keys that are variables (none today: `[defaults]` only takes
    ///    connection settings);
    /// 3. the inventory's `[vars]`;
    /// 4. the vars of each group the host belongs to, directly or through `children`, in
    ///    this order, later wins:
    ///    - a child group over its parent: groups are ordered by depth, the longest chain of
    ///      parents above the group (a group no other group lists in `children` has depth 1);
    ///    - groups at the same depth (siblings, unrelated groups) by name, in ascending byte
    ///      order, so `web` wins over `db`;
    /// 5. the host's own `vars`.
    ///
    /// A key at a higher level replaces the whole value below it; tables are not merged.
    /// Play vars and `-e` extra vars are overlaid on top of this by the engine.
    #[must_use]
    pub fn vars_for(&self, host: &Host) -> Vars {
        let mut vars = Vars::new();
        vars.insert(
            "inventory_hostname".to_owned(),
            toml::Value::String(host.name.clone()),
        );
        vars.insert(
            "host_address".to_owned(),
            toml::Value::String(host.address.clone().unwrap_or_else(|| host.name.clone())),
        );
        vars.insert(
            "group_names".to_owned(),
            toml::Value::Array(
                host.groups
                    .iter()
                    .map(|g| toml::Value::String(g.clone()))
                    .collect(),
            ),
        );
        overlay(&mut vars, &self.default_vars);
        overlay(&mut vars, &self.vars);
        for name in &host.groups {
            if let Some(group) = self.groups.get(name) {
                overlay(&mut vars, &group.vars);
            }
        }
        overlay(&mut vars, &host.vars);
        vars
    }
}
