//! The template context of a host in a play: inventory levels, then play vars (rendered
//! against the levels below them), then `-e` extra vars — the precedence docs/inventory.md lists.

use std::collections::BTreeMap;

use minijinja::value::Value;

use crate::inventory::{Host, Inventory};
use crate::playbook::Play;
use crate::template::{Mode, TemplateError, Templates};
use crate::vars::{self, Vars};

/// A play variable that did not render for a host.
#[derive(Debug)]
pub struct PlayVarError {
    pub name: String,
    pub error: TemplateError,
}

/// Merged variables of `host` in `play`, as template values.
pub fn host_context(
    inventory: &Inventory,
    play: &Play,
    host: &Host,
    extra: &Vars,
    templates: &Templates,
) -> Result<BTreeMap<String, Value>, PlayVarError> {
    let mut merged = inventory.vars_for(host);
    let lower = vars::to_context(&merged);
    for (k, v) in &play.vars {
        let rendered =
            render_toml(templates, &format!("play var `{k}`"), v, &lower).map_err(|error| {
                PlayVarError {
                    name: k.clone(),
                    error,
                }
            })?;
        merged.insert(k.clone(), rendered);
    }
    vars::overlay(&mut merged, extra);
    Ok(merged
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(minijinja::value::Serde(v))))
        .collect())
}

/// Renders every string inside a TOML value (tables and arrays included).
fn render_toml(
    t: &Templates,
    what: &str,
    v: &toml::Value,
    ctx: &Value,
) -> Result<toml::Value, TemplateError> {
    Ok(match v {
        toml::Value::String(s) => toml::Value::String(t.render(what, s, Mode::Plain, ctx)?),
        toml::Value::Array(a) => toml::Value::Array(
            a.iter()
                .map(|x| render_toml(t, what, x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(tab) => {
            let mut out = toml::Table::new();
            for (k, x) in tab {
                out.insert(k.clone(), render_toml(t, what, x, ctx)?);
            }
            toml::Value::Table(out)
        }
        other => other.clone(),
    })
}
