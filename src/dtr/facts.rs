//! What the cluster looks like: each replica's id, node, running version and health, read
//! from the nodes themselves (`docker ps` labels, then the replica's health probe).

use futures::future::join_all;
use minijinja::value::Value;
use semver::Version;

use super::commands::{PS, render_template};
use super::remote::{Member, first_line};
use super::spec::PING_TEMPLATE;
use crate::rules::ReplicaState;
use crate::template::Templates;

/// One DTR replica as its node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    pub id: String,
    pub node: String,
    /// The version label as printed.
    pub version_text: String,
    pub version: Option<Version>,
    pub healthy: bool,
    /// Why it is unhealthy, when it is.
    pub health_note: String,
    /// The member (index) whose `docker ps` listed it; `None` for a replica known only by id.
    pub member: Option<usize>,
}

impl Replica {
    pub fn state(&self) -> ReplicaState {
        ReplicaState {
            id: self.id.clone(),
            node: self.node.clone(),
            version: self.version.clone(),
            healthy: self.healthy,
        }
    }
}

/// Parses `docker ps` output: `VERSION REPLICA_ID NODE` per line, duplicates dropped (a
/// replica runs several containers).
pub(crate) fn parse_ps(stdout: &str, member: usize, fallback_node: &str) -> Vec<Replica> {
    let mut out: Vec<Replica> = Vec::new();
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let (Some(version), Some(id)) = (words.next(), words.next()) else {
            continue;
        };
        let node = words.next().unwrap_or(fallback_node);
        if out.iter().any(|r| r.id == id) {
            continue;
        }
        out.push(Replica {
            id: id.to_owned(),
            node: node.to_owned(),
            version_text: version.to_owned(),
            version: Version::parse(version).ok(),
            healthy: false,
            health_note: "health not probed".to_owned(),
            member: Some(member),
        });
    }
    out
}

/// The replicas on member `index`, health probed from member `prober` (default: their own
/// node). Any node can probe any replica (`https://NODE/_ping`); after a change capstan
/// probes from the node that made it, which has the image of the version it installed.
pub(crate) async fn replicas_on(
    t: &Templates,
    members: &[Member],
    index: usize,
    prober: Option<usize>,
) -> Result<Vec<Replica>, String> {
    let m = &members[index];
    let out = m
        .sh(PS)
        .await?
        .expect_success("`docker ps` (DTR replica labels)", &m.host)?;
    let mut replicas = parse_ps(&out.stdout, index, &m.node);
    let from = prober.and_then(|p| members.get(p)).unwrap_or(m);
    for r in &mut replicas {
        probe(t, from, r).await?;
    }
    Ok(replicas)
}

/// Runs the health probe of `replica` on `m`, setting `healthy` and `health_note`.
pub(crate) async fn probe(t: &Templates, m: &Member, replica: &mut Replica) -> Result<(), String> {
    let cmd = ping_command(t, m, replica)?;
    let out = m.sh(&cmd).await?;
    replica.healthy = out.success();
    replica.health_note = if out.success() {
        "healthy".to_owned()
    } else {
        let why = first_line(&out.stdout);
        let why = if why.is_empty() {
            first_line(&out.stderr)
        } else {
            why
        };
        format!("unhealthy ({}): {why}", out.status)
    };
    Ok(())
}

pub(crate) fn ping_command(t: &Templates, m: &Member, replica: &Replica) -> Result<String, String> {
    let image = m.params.text("image").unwrap_or("docker/dtr");
    render_template(
        t,
        PING_TEMPLATE,
        &m.ctx,
        &[
            ("image", Value::from(image)),
            ("version", Value::from(replica.version_text.as_str())),
            ("replica_id", Value::from(replica.id.as_str())),
            ("node", Value::from(replica.node.as_str())),
        ],
    )
    .map_err(|e| e.message)
}

/// Every replica on the members `indices`, gathered in parallel (see [`replicas_on`]).
/// Errors name their member.
pub(crate) async fn gather(
    t: &Templates,
    members: &[Member],
    indices: &[usize],
    prober: Option<usize>,
) -> Result<Vec<Replica>, Vec<(usize, String)>> {
    let results = join_all(
        indices
            .iter()
            .map(|&i| async move { (i, replicas_on(t, members, i, prober).await) }),
    )
    .await;
    let mut replicas = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in results {
        match r {
            Ok(found) => replicas.extend(found),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() {
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(replicas)
    } else {
        Err(errors)
    }
}

/// Replicas whose version label is not a version.
pub(crate) fn unparsable(replicas: &[Replica]) -> Option<String> {
    let bad: Vec<String> = replicas
        .iter()
        .filter(|r| r.version.is_none())
        .map(|r| format!("`{}` on `{}` reports `{}`", r.id, r.node, r.version_text))
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "cannot read the DTR version of every replica: {}; expected MAJOR.MINOR.PATCH",
            bad.join(", ")
        )
    })
}

/// `a at 2.5.3 on dtr-1 (healthy)`, for notes.
pub(crate) fn describe(replicas: &[Replica]) -> String {
    if replicas.is_empty() {
        return "no replica".to_owned();
    }
    let parts: Vec<String> = replicas
        .iter()
        .map(|r| {
            let health = if r.healthy { "healthy" } else { "UNHEALTHY" };
            format!("`{}` {} on `{}` ({health})", r.id, r.version_text, r.node)
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ps_lines_once_per_replica() {
        let got = parse_ps(
            "2.5.3 aaa dtr-1\n2.5.3 aaa dtr-1\n\nweird\n2.6.0 bbb\n",
            2,
            "fallback",
        );
        let ids: Vec<(&str, &str, Option<Version>)> = got
            .iter()
            .map(|r| (r.id.as_str(), r.node.as_str(), r.version.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                ("aaa", "dtr-1", Some(Version::new(2, 5, 3))),
                ("bbb", "fallback", Some(Version::new(2, 6, 0)))
            ]
        );
        assert!(got.iter().all(|r| r.member == Some(2) && !r.healthy));
    }

    #[test]
    fn unparsable_versions_are_named() {
        let mut r = parse_ps("latest aaa n1\n2.6.0 bbb n2\n", 0, "x");
        assert_eq!(
            unparsable(&r).as_deref(),
            Some(
                "cannot read the DTR version of every replica: `aaa` on `n1` reports `latest`; \
                 expected MAJOR.MINOR.PATCH"
            )
        );
        r.remove(0);
        assert_eq!(unparsable(&r), None);
    }
}
