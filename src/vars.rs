//! Variables: TOML values keyed by name, merged level by level.
//!
//! Values keep their TOML types all the way to the template engine.

use indexmap::IndexMap;

/// Variables at one precedence level, in the order they were written.
pub type Vars = IndexMap<String, toml::Value>;

/// Overlays `upper` on `lower`: a key in `upper` replaces the same key in `lower`.
/// Tables are replaced whole, not merged key by key (as Ansible's default `hash_behaviour`).
pub fn overlay(lower: &mut Vars, upper: &Vars) {
    for (k, v) in upper {
        lower.insert(k.clone(), v.clone());
    }
}

/// Converts variables to a template context.
pub fn to_context(vars: &Vars) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(vars))
}
