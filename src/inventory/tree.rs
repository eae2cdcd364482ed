//! The group tree: names checked, members resolved, cycles refused, and each host's groups
//! put in precedence order.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

use super::did_you_mean;
use super::input::Input;
use super::parse::{RawGroup, RawHost};
use crate::diag::Diagnostics;

/// Implicit groups: `all` holds every host, `ungrouped` the hosts in no group.
pub(crate) const RESERVED: [&str; 2] = ["all", "ungrouped"];

/// Each host's groups, direct and inherited, in precedence order (see `Inventory::vars_for`).
/// `None` when the groups form a cycle (already reported).
pub(crate) fn resolve(
    input: &Input<'_>,
    hosts: &[RawHost],
    groups: &[RawGroup],
    diags: &mut Diagnostics,
) -> Option<IndexMap<String, Vec<String>>> {
    let host_names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let group_names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    for host in hosts {
        check_name(input, "host", &host.name, host.span.clone(), diags);
    }
    for group in groups {
        check_name(input, "group", &group.name, group.span.clone(), diags);
        if host_names.contains(&group.name.as_str()) {
            diags.push(
                input
                    .error(
                        group.span.clone(),
                        format!("group \"{}\" has the same name as a host", group.name),
                    )
                    .with_hint("hosts and groups share one namespace in host patterns"),
            );
        }
        check_members(input, group, &host_names, &group_names, diags);
    }
    if !check_cycles(input, groups, diags) {
        return None;
    }
    Some(membership(hosts, groups))
}

fn check_name(
    input: &Input<'_>,
    kind: &str,
    name: &str,
    span: std::ops::Range<usize>,
    diags: &mut Diagnostics,
) {
    if RESERVED.contains(&name) {
        diags.push(
            input
                .error(
                    span,
                    format!("\"{name}\" is reserved and cannot name a {kind}"),
                )
                .with_hint(
                    "`all` (every host) and `ungrouped` (hosts in no group) are implicit; \
                     inventory-wide variables go in [vars]",
                ),
        );
    } else if !crate::names::is_safe(name) {
        // A name becomes a file name (the local result cache) and a host pattern.
        diags.push(
            input
                .error(span, format!("invalid {kind} name \"{name}\""))
                .with_hint(crate::names::NAME_RULE),
        );
    }
}

fn check_members(
    input: &Input<'_>,
    group: &RawGroup,
    host_names: &[&str],
    group_names: &[&str],
    diags: &mut Diagnostics,
) {
    for member in &group.hosts {
        let name = member.get_ref().as_str();
        if host_names.contains(&name) {
            continue;
        }
        let mut d = input.error(
            member.span(),
            format!(
                "unknown host \"{name}\" in group \"{}\"{}",
                group.name,
                did_you_mean(name, host_names)
            ),
        );
        if group_names.contains(&name) {
            d = d.with_hint(format!("\"{name}\" is a group; list it in `children`"));
        }
        diags.push(d);
    }
    for child in &group.children {
        let name = child.get_ref().as_str();
        if group_names.contains(&name) {
            continue;
        }
        let mut d = input.error(
            child.span(),
            format!(
                "unknown child group \"{name}\" in group \"{}\"{}",
                group.name,
                did_you_mean(name, group_names)
            ),
        );
        if host_names.contains(&name) {
            d = d.with_hint(format!("\"{name}\" is a host; list it in `hosts`"));
        }
        diags.push(d);
    }
}

/// Reports every cycle once, at the `children` entry that closes it. True when there is none.
fn check_cycles(input: &Input<'_>, groups: &[RawGroup], diags: &mut Diagnostics) -> bool {
    let index: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.as_str(), i))
        .collect();
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; groups.len()];
    let mut reported: HashSet<Vec<usize>> = HashSet::new();
    let mut acyclic = true;
    for start in 0..groups.len() {
        if state[start] != 0 {
            continue;
        }
        // Depth-first without recursion: (group, next child to visit).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (g, ref mut next)) = path.last_mut() {
            let Some(child) = groups[g].children.get(*next) else {
                state[g] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            let Some(&c) = index.get(child.get_ref().as_str()) else {
                continue;
            };
            match state[c] {
                0 => {
                    state[c] = 1;
                    path.push((c, 0));
                }
                1 => {
                    acyclic = false;
                    let from = path.iter().position(|&(p, _)| p == c).unwrap_or(0);
                    let members: Vec<usize> = path[from..].iter().map(|&(p, _)| p).collect();
                    let mut key = members.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        let mut names: Vec<&str> =
                            members.iter().map(|&m| groups[m].name.as_str()).collect();
                        names.push(groups[c].name.as_str());
                        diags.push(
                            input.error(
                                child.span(),
                                format!("group cycle: {}", names.join(" -> ")),
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    acyclic
}

/// For each host, every group containing it directly or through `children`, sorted by
/// (depth, name). Depth is the longest chain of parents above a group, so a child always
/// sorts after each of its parents.
fn membership(hosts: &[RawHost], groups: &[RawGroup]) -> IndexMap<String, Vec<String>> {
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    for group in groups {
        for child in &group.children {
            parents
                .entry(child.get_ref().as_str())
                .or_default()
                .push(group.name.as_str());
        }
    }
    let mut depths: HashMap<&str, usize> = HashMap::new();
    for group in groups {
        depth(group.name.as_str(), &parents, &mut depths);
    }
    let mut out = IndexMap::new();
    for host in hosts {
        let mut found: HashSet<&str> = HashSet::new();
        let mut todo: Vec<&str> = groups
            .iter()
            .filter(|g| g.hosts.iter().any(|h| h.get_ref() == &host.name))
            .map(|g| g.name.as_str())
            .collect();
        while let Some(g) = todo.pop() {
            if found.insert(g) {
                todo.extend(parents.get(g).into_iter().flatten().copied());
            }
        }
        let mut list: Vec<&str> = found.into_iter().collect();
        list.sort_by_key(|g| (depths.get(g).copied().unwrap_or(0), *g));
        out.insert(
            host.name.clone(),
            list.into_iter().map(str::to_owned).collect(),
        );
    }
    out
}

/// Longest chain of parents above `group` plus one (a top-level group has depth 1).
/// Only called once cycles are ruled out.
fn depth<'a>(
    group: &'a str,
    parents: &HashMap<&'a str, Vec<&'a str>>,
    depths: &mut HashMap<&'a str, usize>,
) -> usize {
    if let Some(&d) = depths.get(group) {
        return d;
    }
    let d = 1 + parents
        .get(group)
        .into_iter()
        .flatten()
        .map(|p| depth(p, parents, depths))
        .max()
        .unwrap_or(0);
    depths.insert(group, d);
    d
}
