//! Host patterns, as Ansible writes them: `dtr`, `dtr-*`, `web[12]`, `all`,
//! `dtr,ucp`, `dtr:!dtr-1`, `dtr:&ucp`.

use globset::GlobBuilder;

use super::{Host, Inventory, closest};

/// A host pattern that cannot be resolved against the inventory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty host pattern")]
    Empty,
    #[error("missing host or group name after \"{op}\" in host pattern \"{pattern}\"")]
    MissingName { op: char, pattern: String },
    #[error("unknown host or group \"{name}\"{}", did_you_mean(.suggestion.as_deref()))]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown host \"{name}\"{}", did_you_mean(.suggestion.as_deref()))]
    UnknownHost {
        name: String,
        suggestion: Option<String>,
    },
    #[error("host pattern \"{glob}\" matches no host or group")]
    NoMatch { glob: String },
    #[error("invalid glob \"{glob}\" in host pattern: {reason}")]
    BadGlob { glob: String, reason: String },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!("; did you mean \"{s}\"?"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Intersect,
    Exclude,
}

impl Inventory {
    /// The hosts `pattern` names, in inventory order, each once.
    ///
    /// A pattern is a list of terms separated by `,` (or by `:` when it has no comma).
    /// A term is a host name, a group name (its hosts and its children's), `all` or `*`,
    /// `ungrouped`, or a glob (`*`, `?`, `[..]`) matched against host and group names.
    /// As in Ansible, the plain terms are united first, then each `&term` intersects and
    /// each `!term` removes; a pattern of only `&`/`!` terms starts from `all`.
    /// Empty terms (`dtr-1,`) are ignored. A name that matches nothing is an error, so a
    /// typo never silently selects fewer hosts; an empty result (`dtr:&ucp`) is not.
    ///
    /// # Errors
    /// An empty pattern, a `!`/`&` with no name, an unknown name, an invalid glob, or a glob
    /// that matches no host or group.
    pub fn select(&self, pattern: &str) -> Result<Vec<&Host>, PatternError> {
        let terms = split(pattern)?;
        let mut selected = vec![false; self.hosts.len()];
        if terms.iter().all(|(op, _)| *op != Op::Union) {
            selected.fill(true);
        }
        for op in [Op::Union, Op::Intersect, Op::Exclude] {
            for (_, term) in terms.iter().filter(|(o, _)| *o == op) {
                let matched = self.matching(term)?;
                for (s, m) in selected.iter_mut().zip(matched) {
                    *s = match op {
                        Op::Union => *s || m,
                        Op::Intersect => *s && m,
                        Op::Exclude => *s && !m,
                    };
                }
            }
        }
        Ok(self
            .hosts
            .values()
            .zip(selected)
            .filter_map(|(h, s)| s.then_some(h))
            .collect())
    }

    /// Checks that `pattern` resolves, without keeping the hosts.
    ///
    /// # Errors
    /// As [`Inventory::select`].
    pub fn check_pattern(&self, pattern: &str) -> Result<(), PatternError> {
        self.select(pattern).map(|_| ())
    }

    /// Which hosts (by inventory index) one term names.
    fn matching(&self, term: &str) -> Result<Vec<bool>, PatternError> {
        let in_group = |h: &Host, g: &str| h.groups.iter().any(|x| x == g);
        if term == "all" || term == "*" {
            return Ok(vec![true; self.hosts.len()]);
        }
        if term == "ungrouped" {
            return Ok(self.hosts.values().map(|h| h.groups.is_empty()).collect());
        }
        if self.hosts.contains_key(term) {
            return Ok(self.hosts.keys().map(|h| h == term).collect());
        }
        if self.groups.contains_key(term) {
            return Ok(self.hosts.values().map(|h| in_group(h, term)).collect());
        }
        if !term.contains(['*', '?', '[']) {
            let names: Vec<&str> = self
                .hosts
                .keys()
                .chain(self.groups.keys())
                .map(String::as_str)
                .collect();
            return Err(PatternError::Unknown {
                name: term.to_owned(),
                suggestion: closest(term, &names).map(str::to_owned),
            });
        }
        let glob = GlobBuilder::new(term)
            .literal_separator(false)
            .build()
            .map_err(|e| PatternError::BadGlob {
                glob: term.to_owned(),
                reason: e.kind().to_string(),
            })?
            .compile_matcher();
        let groups: Vec<&str> = self
            .groups
            .keys()
            .filter(|g| glob.is_match(g.as_str()))
            .map(String::as_str)
            .collect();
        let hosts: Vec<bool> = self
            .hosts
            .values()
            .map(|h| glob.is_match(&h.name) || groups.iter().any(|g| in_group(h, g)))
            .collect();
        if groups.is_empty() && !hosts.contains(&true) {
            return Err(PatternError::NoMatch {
                glob: term.to_owned(),
            });
        }
        Ok(hosts)
    }
}

fn split(pattern: &str) -> Result<Vec<(Op, &str)>, PatternError> {
    let separator = if pattern.contains(',') { ',' } else { ':' };
    let mut terms = Vec::new();
    for raw in pattern.split(separator).map(str::trim) {
        let (op, name) = if let Some(rest) = raw.strip_prefix('!') {
            (Op::Exclude, rest.trim_start())
        } else if let Some(rest) = raw.strip_prefix('&') {
            (Op::Intersect, rest.trim_start())
        } else {
            (Op::Union, raw)
        };
        if name.is_empty() {
            if op == Op::Union {
                continue;
            }
            return Err(PatternError::MissingName {
                op: raw.chars().next().unwrap_or('!'),
                pattern: pattern.to_owned(),
            });
        }
        terms.push((op, name));
    }
    if terms.is_empty() {
        return Err(PatternError::Empty);
    }
    Ok(terms)
}
