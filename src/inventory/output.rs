//! What `capstan inventory --list/--host/--graph` prints. Secrets are masked here.

use serde_json::{Map, Value, json};

use super::pattern::PatternError;
use super::{ConnectionKind, Host, Inventory, closest};
use crate::secrets;
use crate::vars::Vars;

impl Inventory {
    /// Every host with its merged variables, and every declared group:
    /// `{"hosts": {name: {"address", "port", "user", "connection", "groups", "vars"}},
    ///   "groups": {name: {"hosts", "children", "vars"}}}`. Secrets read `********`.
    #[must_use]
    pub fn list_json(&self) -> Value {
        let hosts: Map<String, Value> = self
            .hosts
            .values()
            .map(|h| (h.name.clone(), self.host_value(h)))
            .collect();
        let groups: Map<String, Value> = self
            .groups
            .values()
            .map(|g| {
                let value = json!({
                    "hosts": g.hosts,
                    "children": g.children,
                    "vars": vars_json(&g.vars),
                });
                (g.name.clone(), value)
            })
            .collect();
        json!({ "hosts": hosts, "groups": groups })
    }

    /// One host, as in [`Inventory::list_json`].
    ///
    /// # Errors
    /// [`PatternError::UnknownHost`] when no host has that name.
    pub fn host_json(&self, name: &str) -> Result<Value, PatternError> {
        let host = self
            .hosts
            .get(name)
            .ok_or_else(|| PatternError::UnknownHost {
                name: name.to_owned(),
                suggestion: closest(
                    name,
                    &self.hosts.keys().map(String::as_str).collect::<Vec<_>>(),
                )
                .map(str::to_owned),
            })?;
        Ok(self.host_value(host))
    }

    fn host_value(&self, host: &Host) -> Value {
        let connection = match host.connection {
            ConnectionKind::Ssh => "ssh",
            ConnectionKind::Local => "local",
        };
        json!({
            "address": host.address.as_deref().map(masked),
            "port": host.port,
            "user": host.user.as_deref().map(masked),
            "connection": connection,
            "groups": host.groups,
            "vars": vars_json(&self.vars_for(host)),
        })
    }

    /// The group tree as `ansible-inventory --graph` draws it: `@all` at the top, then
    /// top-level groups and `@ungrouped` by name; in each group its child groups by name,
    /// then its own hosts in the order listed. No trailing newline.
    #[must_use]
    pub fn graph(&self) -> String {
        let mut lines = vec!["@all:".to_owned()];
        let mut top: Vec<&str> = self
            .groups
            .keys()
            .filter(|g| !self.groups.values().any(|p| p.children.contains(g)))
            .map(String::as_str)
            .collect();
        top.push("ungrouped");
        top.sort_unstable();
        for name in top {
            self.graph_group(name, 1, &mut lines);
        }
        lines.join("\n")
    }

    fn graph_group(&self, name: &str, depth: usize, lines: &mut Vec<String>) {
        let indent = |depth: usize| "  |".repeat(depth);
        lines.push(format!("{}--@{name}:", indent(depth)));
        let (mut children, hosts): (Vec<&str>, Vec<&str>) = match self.groups.get(name) {
            Some(g) => (
                g.children.iter().map(String::as_str).collect(),
                g.hosts.iter().map(String::as_str).collect(),
            ),
            None => (
                Vec::new(),
                self.hosts
                    .values()
                    .filter(|h| h.groups.is_empty())
                    .map(|h| h.name.as_str())
                    .collect(),
            ),
        };
        children.sort_unstable();
        for child in children {
            self.graph_group(child, depth + 1, lines);
        }
        for host in hosts {
            lines.push(format!("{}--{host}", indent(depth + 1)));
        }
    }
}

fn masked(text: &str) -> String {
    secrets::mask(text).into_owned()
}

fn vars_json(vars: &Vars) -> Value {
    Value::Object(
        vars.iter()
            .map(|(k, v)| (k.clone(), toml_json(v)))
            .collect(),
    )
}

/// TOML to JSON: datetimes become strings, non-finite floats strings such as `"inf"`.
fn toml_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(masked(s)),
        toml::Value::Integer(n) => Value::from(*n),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map_or_else(|| Value::String(x.to_string()), Value::Number),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_json(v))).collect())
        }
    }
}
