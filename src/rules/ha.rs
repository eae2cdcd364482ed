//! DTR high availability: replica counts, safe removals and one-at-a-time scaling.
//!
//! Pure: no I/O. The rules come from "Set up high availability"; where it is silent the safe
//! reading is taken and stated on the function that takes it:
//! - An even replica count tolerates no more failures than the odd count below it
//!   (`floor((n-1)/2)`), so a run that would end with any even count is refused like two
//!   replicas are, unless `--allow-even-replicas`. Zero replicas is never a scaling target.
//! - `min_replicas` bounds the *healthy* replicas: an unhealthy replica serves nothing, so
//!   removing one never goes below the floor. The seed allows removing "an unhealthy replica"
//!   by id.
//! - A healthy replica is not removed while any other replica is unhealthy: "when a replica
//!   fails, the number of failures tolerated by your cluster decreases".
//! - One replica per node.

use std::collections::BTreeSet;
use std::fmt;

use semver::Version;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The override flag for an even final replica count.
pub const ALLOW_EVEN_FLAG: &str = "--allow-even-replicas";

const HA_RULES: &str = "DTR high availability rules";

/// What the seed's table says: 1, 3, 5, 7 replicas tolerate 0, 1, 2, 3 failures.
pub fn failures_tolerated(replicas: usize) -> usize {
    replicas.saturating_sub(1) / 2
}

/// One DTR replica as a host reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub id: String,
    pub node: String,
    pub version: Option<Version>,
    pub healthy: bool,
}

/// One step of a scaling plan; run in order, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleStep {
    Join { node: String, replica_id: String },
    Remove { replica_id: String, node: String },
}

impl fmt::Display for ScaleStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleStep::Join { node, replica_id } => {
                write!(f, "join replica `{replica_id}` on node `{node}`")
            }
            ScaleStep::Remove { replica_id, node } => {
                write!(f, "remove replica `{replica_id}` from node `{node}`")
            }
        }
    }
}

/// A replica change the high availability rules forbid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HaRefusal {
    #[error(
        "refused: the DTR cluster would end with 2 replicas: \"Don't create a DTR cluster with \
         just two replicas. Your cluster won't tolerate any failures, and it's possible that \
         you experience performance degradation.\" ({HA_RULES}); choose 3 replicas (or 1), or \
         pass `{ALLOW_EVEN_FLAG}`"
    )]
    TwoReplicas,
    #[error(
        "refused: the DTR cluster would end with {count} replicas, an even count: it tolerates \
         {}, floor((n-1)/2), no more than {} replicas do ({HA_RULES}: 1, 3, 5, 7 replicas \
         tolerate 0, 1, 2, 3 failures); choose {} or {} replicas, or pass `{ALLOW_EVEN_FLAG}`",
        counted(*.tolerated, "failure"), .count - 1, .count - 1, .count + 1
    )]
    EvenReplicas { count: usize, tolerated: usize },
    #[error(
        "refused: the DTR cluster would end with no replica ({HA_RULES}: 1 replica is the \
         least, and tolerates 0 failures); choose at least 1 replica, 3 for high availability"
    )]
    NoReplicas,
    #[error(
        "refused: the DTR cluster has no replica to join to: join runs against an existing \
         replica ({HA_RULES}); install DTR first"
    )]
    NoExistingReplica,
    #[error(
        "refused: no DTR replica `{id}` in the cluster; known replicas: {}",
        ticks(known)
    )]
    UnknownReplica { id: String, known: Vec<String> },
    #[error(
        "refused: `{id}` is the last healthy DTR replica: remove needs \"the id of any healthy \
         DTR replica of that cluster\" to run against, and none would be left ({HA_RULES}); \
         join a new replica first"
    )]
    LastHealthyReplica { id: String },
    #[error(
        "refused: removing `{id}` needs \"the id of any healthy DTR replica of that cluster\" \
         ({HA_RULES}), and the cluster has no healthy replica; repair a replica first"
    )]
    NoHealthyReplica { id: String },
    #[error(
        "refused: cannot remove healthy replica `{id}` while {} unhealthy: \"When a replica \
         fails, the number of failures tolerated by your cluster decreases\" ({HA_RULES}); \
         repair or remove {} first",
        ticks(unhealthy),
        ticks(unhealthy)
    )]
    OtherReplicaUnhealthy { id: String, unhealthy: Vec<String> },
    #[error(
        "refused: removing `{id}` would leave {}, below the minimum of {min}; join a \
         replica first or lower the minimum",
        counted(*.remaining, "healthy replica")
    )]
    BelowMinimum {
        id: String,
        remaining: usize,
        min: usize,
    },
    #[error(
        "refused: a target of {target} replicas is below the minimum of {min}; raise the \
         target or lower the minimum"
    )]
    TargetBelowMinimum { target: usize, min: usize },
    #[error(
        "refused: reaching {target} replicas needs {} without a DTR replica, but the candidates \
         have only {} ({}); add nodes for DTR replicas (one replica per node)",
        counted(*.needed, "more node"), .free.len(), ticks(.free)
    )]
    NotEnoughNodes {
        target: usize,
        needed: usize,
        free: Vec<String>,
    },
}

/// `1 replica`, `2 replicas`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn ticks(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Checks the replica count a run would end with.
///
/// Refuses 2 (the seed's rule, quoted) and, as the safe reading, every even count, unless
/// `allow_even` (`--allow-even-replicas`). Refuses 0 always.
pub fn check_final_count(replicas: usize, allow_even: bool) -> Result<(), HaRefusal> {
    match replicas {
        0 => Err(HaRefusal::NoReplicas),
        _ if allow_even || replicas % 2 == 1 => Ok(()),
        2 => Err(HaRefusal::TwoReplicas),
        count => Err(HaRefusal::EvenReplicas {
            count,
            tolerated: failures_tolerated(count),
        }),
    }
}

/// Checks that removing `remove_id` keeps the cluster safe.
///
/// Refused: an unknown id; removing the last healthy replica (the `remove` command needs a
/// healthy replica to run against); removing a healthy replica while another is unhealthy;
/// leaving fewer than `min_replicas` healthy replicas. Removing an unhealthy replica is
/// allowed whenever some other replica is healthy.
pub fn check_remove(
    replicas: &[ReplicaState],
    remove_id: &str,
    min_replicas: usize,
) -> Result<(), HaRefusal> {
    let Some(removed) = replicas.iter().find(|r| r.id == remove_id) else {
        let mut known: Vec<String> = replicas.iter().map(|r| r.id.clone()).collect();
        known.sort();
        return Err(HaRefusal::UnknownReplica {
            id: remove_id.to_owned(),
            known,
        });
    };
    let others = || replicas.iter().filter(|r| r.id != remove_id);
    let healthy_left = others().filter(|r| r.healthy).count();
    let id = remove_id.to_owned();
    if healthy_left == 0 {
        return Err(if removed.healthy {
            HaRefusal::LastHealthyReplica { id }
        } else {
            HaRefusal::NoHealthyReplica { id }
        });
    }
    if !removed.healthy {
        return Ok(());
    }
    let mut unhealthy: Vec<String> = others()
        .filter(|r| !r.healthy)
        .map(|r| r.id.clone())
        .collect();
    if !unhealthy.is_empty() {
        unhealthy.sort();
        return Err(HaRefusal::OtherReplicaUnhealthy { id, unhealthy });
    }
    if healthy_left < min_replicas {
        return Err(HaRefusal::BelowMinimum {
            id,
            remaining: healthy_left,
            min: min_replicas,
        });
    }
    Ok(())
}

/// The id a replica joined on `node` of `cluster` gets: 12 lowercase hex characters, like
/// DTR's own, and the same on every run so a rerun finds the replica it already joined.
pub fn replica_id_for(cluster: &str, node: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cluster.as_bytes());
    hasher.update([0]);
    hasher.update(node.as_bytes());
    hex::encode(&hasher.finalize()[..6])
}

/// Plans the joins and removals that take the cluster to `target` healthy replicas.
///
/// Takes `cluster` (beyond the brief's signature) to derive join ids with
/// [`replica_id_for`]. Order: unhealthy replicas are removed first, one at a time; then
/// replicas join on the first `candidate_nodes` that host none, or healthy replicas are
/// removed, those on nodes outside `candidate_nodes` first, then from the end of
/// `candidate_nodes` backwards. Every removal passes [`check_remove`] against the state the
/// steps before it leave. Only the final count is checked with [`check_final_count`]: a walk
/// from 3 to 5 passes through 4 for as long as one join takes, which is the only way to get
/// there.
pub fn plan_scale(
    cluster: &str,
    replicas: &[ReplicaState],
    target: usize,
    candidate_nodes: &[String],
    min_replicas: usize,
    allow_even: bool,
) -> Result<Vec<ScaleStep>, HaRefusal> {
    check_final_count(target, allow_even)?;
    if target < min_replicas {
        return Err(HaRefusal::TargetBelowMinimum {
            target,
            min: min_replicas,
        });
    }
    if replicas.is_empty() {
        return Err(HaRefusal::NoExistingReplica);
    }
    let mut state = replicas.to_vec();
    let mut steps = Vec::new();
    let mut unhealthy: Vec<&ReplicaState> = replicas.iter().filter(|r| !r.healthy).collect();
    unhealthy.sort_by(|a, b| a.id.cmp(&b.id));
    for replica in unhealthy {
        remove(&mut state, &mut steps, &replica.id, min_replicas)?;
    }
    if state.len() < target {
        let used: BTreeSet<&str> = state.iter().map(|r| r.node.as_str()).collect();
        let mut free: Vec<String> = Vec::new();
        for node in candidate_nodes {
            if !used.contains(node.as_str()) && !free.contains(node) {
                free.push(node.clone());
            }
        }
        let needed = target - state.len();
        if free.len() < needed {
            return Err(HaRefusal::NotEnoughNodes {
                target,
                needed,
                free,
            });
        }
        for node in free.into_iter().take(needed) {
            steps.push(ScaleStep::Join {
                replica_id: replica_id_for(cluster, &node),
                node,
            });
        }
    } else if state.len() > target {
        let rank = |r: &ReplicaState| {
            let position = candidate_nodes.iter().position(|n| *n == r.node);
            (
                position.is_some(),
                std::cmp::Reverse(position),
                r.id.clone(),
            )
        };
        let mut order: Vec<ReplicaState> = state.clone();
        order.sort_by_key(rank);
        for replica in order.iter().take(state.len() - target) {
            remove(&mut state, &mut steps, &replica.id, min_replicas)?;
        }
    }
    Ok(steps)
}

fn remove(
    state: &mut Vec<ReplicaState>,
    steps: &mut Vec<ScaleStep>,
    id: &str,
    min_replicas: usize,
) -> Result<(), HaRefusal> {
    check_remove(state, id, min_replicas)?;
    if let Some(at) = state.iter().position(|r| r.id == id) {
        let gone = state.remove(at);
        steps.push(ScaleStep::Remove {
            replica_id: gone.id,
            node: gone.node,
        });
    }
    Ok(())
}

/// Sizing advice from the seed: "To have high-availability on UCP and DTR, you need a minimum
/// of 3 dedicated nodes to install UCP with high availability, 3 dedicated nodes to install
/// DTR with high availability". Warnings, not refusals: a lab cluster may be small on purpose.
pub fn sizing_warnings(ucp_managers: &[String], dtr_nodes: &[String]) -> Vec<String> {
    let managers: BTreeSet<&str> = ucp_managers.iter().map(String::as_str).collect();
    let dtr: BTreeSet<&str> = dtr_nodes.iter().map(String::as_str).collect();
    let mut warnings = Vec::new();
    if managers.len() < 3 {
        warnings.push(format!(
            "{}: high availability needs \"3 dedicated nodes to install UCP with high \
             availability\" ({HA_RULES})",
            counted(managers.len(), "UCP manager node")
        ));
    }
    if dtr.len() < 3 {
        warnings.push(format!(
            "{}: high availability needs \"3 dedicated nodes to install DTR with high \
             availability\" ({HA_RULES}); with {} the cluster tolerates {}",
            counted(dtr.len(), "DTR replica node"),
            counted(dtr.len(), "replica"),
            counted(failures_tolerated(dtr.len()), "failure")
        ));
    }
    for node in dtr.intersection(&managers) {
        warnings.push(format!(
            "DTR replica node `{node}` is also a UCP manager: high availability needs dedicated \
             nodes for UCP and for DTR ({HA_RULES})"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, node: &str, healthy: bool) -> ReplicaState {
        ReplicaState {
            id: id.to_owned(),
            node: node.to_owned(),
            version: Some(Version::new(2, 6, 8)),
            healthy,
        }
    }

    /// `"a@n1 b@n2! c@n3"`: `!` marks an unhealthy replica.
    fn cluster(spec: &str) -> Vec<ReplicaState> {
        spec.split_whitespace()
            .map(|s| {
                let (id, node) = s.split_once('@').unwrap();
                let healthy = !node.ends_with('!');
                replica(id, node.trim_end_matches('!'), healthy)
            })
            .collect()
    }

    fn nodes(spec: &str) -> Vec<String> {
        spec.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn failures_tolerated_matches_the_seed_table() {
        for (replicas, tolerated) in [(1, 0), (3, 1), (5, 2), (7, 3)] {
            assert_eq!(failures_tolerated(replicas), tolerated, "{replicas}");
        }
        for (replicas, tolerated) in [(0, 0), (2, 0), (4, 1), (6, 2), (8, 3), (9, 4)] {
            assert_eq!(failures_tolerated(replicas), tolerated, "{replicas}");
        }
        assert_eq!(failures_tolerated(usize::MAX), usize::MAX / 2);
    }

    #[test]
    fn final_count_table() {
        let cases = [
            (0, false, Some("no replica")),
            (0, true, Some("no replica")),
            (1, false, None),
            (2, false, Some("2 replicas")),
            (2, true, None),
            (3, false, None),
            (4, false, Some("4 replicas, an even count")),
            (4, true, None),
            (5, false, None),
            (6, false, Some("6 replicas, an even count")),
            (7, false, None),
        ];
        for (n, allow, refused) in cases {
            match (check_final_count(n, allow), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(text)) => assert!(e.to_string().contains(text), "{n}: {e}"),
                (got, want) => panic!("{n} allow={allow}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn two_replicas_quotes_the_seed() {
        assert_eq!(
            check_final_count(2, false).unwrap_err().to_string(),
            "refused: the DTR cluster would end with 2 replicas: \"Don't create a DTR cluster \
             with just two replicas. Your cluster won't tolerate any failures, and it's possible \
             that you experience performance degradation.\" (DTR high availability rules); \
             choose 3 replicas (or 1), or pass `--allow-even-replicas`"
        );
    }

    #[test]
    fn even_counts_explain_the_tolerance() {
        assert_eq!(
            check_final_count(4, false).unwrap_err().to_string(),
            "refused: the DTR cluster would end with 4 replicas, an even count: it tolerates 1 \
             failure, floor((n-1)/2), no more than 3 replicas do (DTR high availability rules: \
             1, 3, 5, 7 replicas tolerate 0, 1, 2, 3 failures); choose 3 or 5 replicas, or pass \
             `--allow-even-replicas`"
        );
    }

    #[test]
    fn remove_table() {
        let cases: &[(&str, &str, usize, Result<(), &str>)] = &[
            ("a@n1 b@n2 c@n3", "c", 1, Ok(())),
            ("a@n1 b@n2 c@n3", "c", 2, Ok(())),
            (
                "a@n1 b@n2 c@n3",
                "c",
                3,
                Err("would leave 2 healthy replicas, below"),
            ),
            ("a@n1 b@n2 c@n3!", "c", 3, Ok(())),
            ("a@n1 b@n2 c@n3!", "a", 1, Err("while `c` unhealthy")),
            (
                "a@n1 d@n4 b@n2! c@n3!",
                "a",
                1,
                Err("while `b`, `c` unhealthy"),
            ),
            ("a@n1 b@n2! c@n3!", "b", 1, Ok(())),
            ("a@n1", "a", 0, Err("`a` is the last healthy DTR replica")),
            (
                "a@n1 b@n2!",
                "a",
                0,
                Err("`a` is the last healthy DTR replica"),
            ),
            ("a@n1!", "a", 0, Err("the cluster has no healthy replica")),
            (
                "a@n1! b@n2!",
                "a",
                0,
                Err("the cluster has no healthy replica"),
            ),
            (
                "b@n2 a@n1",
                "z",
                0,
                Err("no DTR replica `z` in the cluster; known replicas: `a`, `b`"),
            ),
            ("", "z", 0, Err("known replicas: none")),
        ];
        for (spec, id, min, want) in cases {
            let got = check_remove(&cluster(spec), id, *min);
            match (&got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(text)) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with("refused: ") && e.contains(text),
                        "{spec} -{id}: {e}"
                    );
                }
                _ => panic!("{spec} remove {id} min {min}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn remove_refusals_cite_the_rule_and_the_way_forward() {
        let err = check_remove(&cluster("a@n1 b@n2!"), "a", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: `a` is the last healthy DTR replica: remove needs \"the id of any healthy \
             DTR replica of that cluster\" to run against, and none would be left (DTR high \
             availability rules); join a new replica first"
        );
        let err = check_remove(&cluster("a@n1 b@n2 c@n3!"), "a", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: cannot remove healthy replica `a` while `c` unhealthy: \"When a replica \
             fails, the number of failures tolerated by your cluster decreases\" (DTR high \
             availability rules); repair or remove `c` first"
        );
    }

    #[test]
    fn replica_ids_are_deterministic_hex() {
        let id = replica_id_for("prod", "node-4");
        assert_eq!(id.len(), 12);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, replica_id_for("prod", "node-4"));
        assert_ne!(id, replica_id_for("prod", "node-5"));
        assert_ne!(id, replica_id_for("staging", "node-4"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(replica_id_for("ab", "c"), replica_id_for("a", "bc"));
    }

    fn show(steps: &[ScaleStep]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                ScaleStep::Join { node, replica_id } => {
                    assert_eq!(*replica_id, replica_id_for("c1", node));
                    format!("+{node}")
                }
                ScaleStep::Remove { replica_id, node } => format!("-{replica_id}@{node}"),
            })
            .collect()
    }

    #[test]
    fn scale_table() {
        let candidates = "n1 n2 n3 n4 n5";
        /// (cluster, target, candidates, min, allow even, steps or refusal text)
        type Case<'a> = (
            &'a str,
            usize,
            &'a str,
            usize,
            bool,
            Result<&'a [&'a str], &'a str>,
        );
        let cases: &[Case] = &[
            ("a@n1 b@n2 c@n3", 3, candidates, 1, false, Ok(&[])),
            ("a@n1", 3, candidates, 1, false, Ok(&["+n2", "+n3"])),
            (
                "a@n1 b@n2 c@n3",
                5,
                candidates,
                1,
                false,
                Ok(&["+n4", "+n5"]),
            ),
            (
                "a@n1 b@n2 c@n3 d@n4 e@n5",
                3,
                candidates,
                1,
                false,
                Ok(&["-e@n5", "-d@n4"]),
            ),
            // Off-inventory replicas go first.
            (
                "a@n1 b@n2 c@n3 x@old",
                3,
                candidates,
                1,
                true,
                Ok(&["-x@old"]),
            ),
            // Unhealthy first, then refill; the freed node is a candidate again.
            (
                "a@n1 b@n2 c@n3!",
                3,
                candidates,
                3,
                false,
                Ok(&["-c@n3", "+n3"]),
            ),
            (
                "a@n1 b@n2! c@n3!",
                3,
                "n1 n2 n3",
                1,
                false,
                Ok(&["-b@n2", "-c@n3", "+n2", "+n3"]),
            ),
            (
                "a@n1 b@n2 c@n3! d@n4 e@n5",
                3,
                candidates,
                1,
                false,
                Ok(&["-c@n3", "-e@n5"]),
            ),
            (
                "a@n1 b@n2 c@n3",
                2,
                candidates,
                1,
                false,
                Err("would end with 2 replicas"),
            ),
            ("a@n1 b@n2 c@n3", 2, candidates, 1, true, Ok(&["-c@n3"])),
            (
                "a@n1 b@n2 c@n3",
                4,
                candidates,
                1,
                false,
                Err("an even count"),
            ),
            (
                "a@n1 b@n2 c@n3",
                0,
                candidates,
                0,
                true,
                Err("end with no replica"),
            ),
            (
                "a@n1 b@n2 c@n3",
                1,
                candidates,
                3,
                false,
                Err("below the minimum of 3"),
            ),
            ("", 3, candidates, 1, false, Err("no replica to join to")),
            (
                "a@n1! b@n2!",
                3,
                candidates,
                1,
                false,
                Err("no healthy replica"),
            ),
            ("a@n1", 5, "n1 n2 n3", 1, false, Err("needs 4 more nodes")),
        ];
        for (spec, target, cand, min, allow, want) in cases {
            let got = plan_scale("c1", &cluster(spec), *target, &nodes(cand), *min, *allow);
            match (got, want) {
                (Ok(steps), Ok(want)) => assert_eq!(show(&steps), *want, "{spec} -> {target}"),
                (Err(e), Err(text)) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with("refused: ") && e.contains(text),
                        "{spec}: {e}"
                    );
                }
                (got, want) => panic!("{spec} -> {target}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn not_enough_nodes_lists_the_free_ones() {
        let err = plan_scale("c1", &cluster("a@n1"), 5, &nodes("n1 n2 n3"), 1, false);
        assert_eq!(
            err.unwrap_err().to_string(),
            "refused: reaching 5 replicas needs 4 more nodes without a DTR replica, but the \
             candidates have only 2 (`n2`, `n3`); add nodes for DTR replicas (one replica per \
             node)"
        );
    }

    #[test]
    fn scale_steps_display() {
        let steps = [
            ScaleStep::Join {
                node: "n4".into(),
                replica_id: "0123456789ab".into(),
            },
            ScaleStep::Remove {
                replica_id: "c".into(),
                node: "n3".into(),
            },
        ];
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "join replica `0123456789ab` on node `n4`",
                "remove replica `c` from node `n3`"
            ]
        );
    }

    #[test]
    fn sizing_table() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("m1 m2 m3", "d1 d2 d3", &[]),
            ("m1 m2 m3", "d1 d2 d3 d4 d5", &[]),
            ("m1", "d1 d2 d3", &["1 UCP manager node:"]),
            ("m1 m2 m3", "d1 d2", &["2 DTR replica nodes"]),
            ("m1 m2 m3", "d1 d1 d1", &["1 DTR replica node:"]),
            (
                "m1 m2 m3",
                "m1 d2 d3",
                &["DTR replica node `m1` is also a UCP manager"],
            ),
            (
                "m1",
                "m1",
                &[
                    "1 UCP manager",
                    "1 DTR replica",
                    "`m1` is also a UCP manager",
                ],
            ),
            ("", "", &["0 UCP manager nodes", "0 DTR replica nodes"]),
        ];
        for (managers, dtr, want) in cases {
            let got = sizing_warnings(&nodes(managers), &nodes(dtr));
            assert_eq!(got.len(), want.len(), "{managers} / {dtr}: {got:?}");
            for (warning, text) in got.iter().zip(want.iter()) {
                assert!(warning.contains(text), "{warning}");
            }
        }
        let got = sizing_warnings(&nodes("m1 m2 m3"), &nodes("d1 d2"));
        assert_eq!(
            got[0],
            "2 DTR replica nodes: high availability needs \"3 dedicated nodes to install DTR \
             with high availability\" (DTR high availability rules); with 2 replicas the \
             cluster tolerates 0 failures"
        );
    }
}
