//! The cluster as a DTR task sees it: which hosts are replica nodes and which cache nodes,
//! every replica read from its node, and the node a command runs from.

use super::error::DtrError;
use super::facts::{self, Replica};
use super::run::Run;

/// Which members hold replicas and which are cache nodes.
pub(crate) struct Roles {
    pub replicas: Vec<usize>,
    pub caches: Vec<usize>,
}

/// Splits the members into replica nodes (`dtr_nodes` without `cache_nodes`) and cache
/// nodes, and refuses when a replica node of the inventory is not taking part: every rule
/// here counts every replica.
pub(crate) fn roles(r: &Run<'_>) -> Result<Roles, DtrError> {
    let caches = r.select("cache_nodes")?;
    let cache_hosts = r.select_hosts("cache_nodes")?;
    let dtr_hosts: Vec<String> = r
        .select_hosts("dtr_nodes")?
        .into_iter()
        .filter(|h| !cache_hosts.contains(h))
        .collect();
    let missing: Vec<String> = dtr_hosts
        .iter()
        .filter(|h| !r.members.iter().any(|m| m.host == **h))
        .map(|h| format!("`{h}`"))
        .collect();
    if !missing.is_empty() {
        return Err(DtrError::Refused(format!(
            "refused: the DTR nodes {} are not part of this run (unreachable, failed, excluded \
             by the play's hosts, `--limit` or `serial`, or `when`): the rules count every \
             replica of the cluster, so every node of `dtr_nodes` must be queried; run on all \
             of them, or narrow `dtr_nodes`",
            missing.join(", ")
        )));
    }
    let replicas: Vec<usize> = (0..r.members.len())
        .filter(|i| !caches.contains(i))
        .filter(|&i| dtr_hosts.is_empty() || dtr_hosts.contains(&r.members[i].host))
        .collect();
    Ok(Roles { replicas, caches })
}

/// A note for the members that are neither replica nor cache nodes.
pub(crate) fn note_bystanders(r: &mut Run<'_>, roles: &Roles) {
    for i in 0..r.members.len() {
        if !roles.replicas.contains(&i) && !roles.caches.contains(&i) {
            r.note(
                i,
                "not a DTR node (`dtr_nodes`, `cache_nodes`): nothing to do",
            );
        }
    }
}

/// Gathers the replicas on `indices` (see [`facts::gather`]) and learns each member's
/// hostname; on failure, fails the members and returns `None`.
pub(crate) async fn view(r: &mut Run<'_>, indices: &[usize]) -> Option<Vec<Replica>> {
    match facts::gather(&r.members, indices).await {
        Ok(g) => {
            for (i, host) in g.hostnames {
                r.members[i].node = host;
            }
            Some(g.replicas)
        }
        Err(errors) => {
            let hosts: Vec<String> = errors
                .iter()
                .map(|(i, _)| format!("`{}`", r.members[*i].host))
                .collect();
            for (i, e) in &errors {
                r.fail_with(*i, e);
            }
            let why = format!(
                "not run: the DTR facts of {} could not be read",
                hosts.join(", ")
            );
            for i in 0..r.members.len() {
                if !errors.iter().any(|(j, _)| *j == i) {
                    r.fail(i, &why);
                }
            }
            None
        }
    }
}

/// The first member in `among` with a healthy replica, none of `not`, and that replica.
pub(crate) fn runner_of(
    view: &[Replica],
    among: &[usize],
    not: &[&str],
) -> Option<(usize, String)> {
    among.iter().find_map(|&i| {
        view.iter()
            .find(|rep| rep.member == Some(i) && rep.healthy && !not.contains(&rep.id.as_str()))
            .map(|rep| (i, rep.id.clone()))
    })
}
