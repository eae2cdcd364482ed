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
    /// Ansible pattern syntax capstan does not have: `~regex`, `group[0]`, `group[1:3]`.
    #[error("host pattern \"{term}\": {what} are not supported; {instead}")]
    Unsupported {
        term: String,
        what: &'static str,
        instead: &'static str,
    },
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
        if term.starts_with('~') {
            return Err(PatternError::Unsupported {
                term: term.to_owned(),
                what: "regular expressions (`~...`)",
                instead: "use a glob such as `node*` or `node[34]`, or a comma list of names",
            });
        }
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
            // Jaro-Winkler misses a swap in a short name (`wbe` for `web`); one edit does not.
            let suggestion = closest(term, &names)
                .or_else(|| {
                    names
                        .iter()
                        .copied()
                        .find(|n| strsim::damerau_levenshtein(term, n) == 1)
                })
                .map(str::to_owned);
            return Err(PatternError::Unknown {
                name: term.to_owned(),
                suggestion,
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
            if self.is_group_subscript(term) {
                return Err(PatternError::Unsupported {
                    term: term.to_owned(),
                    what: "group subscripts (`group[0]`, `group[0:2]`)",
                    instead: "name the hosts (`web-1,web-2`), or narrow the group with `&` or `!`",
                });
            }
            return Err(PatternError::NoMatch {
                glob: term.to_owned(),
            });
        }
        Ok(hosts)
    }
}

impl Inventory {
    /// `web[0]`, `web[-1]`, `web[0:2]` where `web` is a group: Ansible's subscript of a
    /// group's host list (a term that matched nothing as a glob).
    fn is_group_subscript(&self, term: &str) -> bool {
        let Some((group, rest)) = term.split_once('[') else {
            return false;
        };
        let Some(index) = rest.strip_suffix(']') else {
            return false;
        };
        let number = |s: &str| {
            let s = s.strip_prefix('-').unwrap_or(s);
            s.chars().all(|c| c.is_ascii_digit())
        };
        let index_ok = match index.split_once(':') {
            Some((from, to)) => number(from) && number(to),
            None => !index.is_empty() && number(index),
        };
        index_ok && self.groups.contains_key(group)
    }
}

/// Splits on `sep` outside brackets, so that `web[0:2]` stays one term.
fn split_outside_brackets(pattern: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                out.push(&pattern[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&pattern[start..]);
    out
}

fn split(pattern: &str) -> Result<Vec<(Op, &str)>, PatternError> {
    let separator = if pattern.contains(',') { ',' } else { ':' };
    let mut terms = Vec::new();
    for raw in split_outside_brackets(pattern, separator)
        .into_iter()
        .map(str::trim)
    {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    const INVENTORY: &str = "[defaults]\nconnection = \"local\"\n\
        [hosts.node3]\n[hosts.node4]\n[hosts.web-1]\n[hosts.web-2]\n\
        [groups.web]\nhosts = [\"web-1\", \"web-2\"]\n";

    fn select(pattern: &str) -> Result<Vec<String>, String> {
        let inv = crate::inventory::parse::parse(Path::new("inv.toml"), INVENTORY, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        inv.select(pattern)
            .map(|hosts| hosts.iter().map(|h| h.name.clone()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn regular_expressions_are_refused_by_name() {
        let e = select("~node[34]").unwrap_err();
        assert!(
            e.contains("regular expressions (`~...`) are not supported") && e.contains("node*"),
            "{e}"
        );
    }

    #[test]
    fn group_subscripts_are_refused_by_name() {
        for pattern in ["web[0]", "web[-1]", "web[0:2]", "node3:web[1:]"] {
            let e = select(pattern).unwrap_err();
            assert!(
                e.contains("group subscripts (`group[0]`, `group[0:2]`) are not supported"),
                "{pattern}: {e}"
            );
        }
    }

    #[test]
    fn globs_with_brackets_still_select() {
        assert_eq!(select("node[34]").unwrap_or_default(), ["node3", "node4"]);
        assert_eq!(
            select("node[3]:web").unwrap_or_default(),
            ["node3", "web-1", "web-2"]
        );
        assert!(
            select("db[0]")
                .unwrap_err()
                .contains("matches no host or group")
        );
    }
}
