//! What the cluster looks like, read as real DTR exposes it (docs/dtr.md has the sources):
//!
//! - the node's hostname: `docker info --format '{{.Name}}'`;
//! - its replicas: `docker ps -a` over the `dtr-<service>-<id>` containers, the replica id
//!   from the `dtr-rethinkdb-<id>` name (DTR's troubleshooting and backup docs), the version
//!   from that container's `com.docker.dtr.version` label (what Mirantis launchpad reads),
//!   else its image tag, else `DTR_VERSION` in the `dtr-registry-<id>` environment (the
//!   backup docs' way); a replica with a stopped container is unhealthy;
//! - health: `GET /_ping` on the replica's own node and HTTPS port (200 healthy, 503 not),
//!   and `GET /api/v0/meta/cluster_status` from a healthy replica, which also names
//!   replicas on no inventory host.

use futures::future::join_all;
use semver::Version;

use super::error::DtrError;
use super::http::{NodeScript, Request, Service, Trust};
use super::remote::Member;
use crate::rules::ReplicaState;
use crate::transport::ExitStatus;

/// The services every replica runs ("DTR architecture").
pub(crate) const SERVICES: [&str; 9] = [
    "api",
    "garant",
    "jobrunner",
    "nginx",
    "notary-server",
    "notary-signer",
    "registry",
    "rethinkdb",
    "scanningstore",
];

/// One DTR replica as its node (or the cluster's status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    pub id: String,
    /// The hostname of the node running it.
    pub node: String,
    /// The version as read.
    pub version_text: String,
    pub version: Option<Version>,
    pub healthy: bool,
    /// Why it is unhealthy, when it is.
    pub health_note: String,
    /// The member (index) whose `docker ps` listed it; `None` for a replica known only from
    /// `cluster_status` or by id.
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

/// The `docker ps` format: name, state, image, and the two labels launchpad reads.
pub(crate) const PS: &str = "docker info --format 'hostname {{.Name}}' || exit $?\n\
     docker ps -a --filter name=dtr- --format 'container {{.Names}}|{{.State}}|{{.Image}}|\
     {{.Label \"com.docker.dtr.version\"}}|{{.Label \"com.docker.dtr.replica\"}}'";

/// One container line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    service: String,
    id: String,
    state: String,
    image: String,
    version_label: String,
}

/// `dtr-<service>-<12 hex>` → (service, id).
fn split_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("dtr-")?;
    let (service, id) = rest.rsplit_once('-')?;
    let valid = id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit());
    (valid && SERVICES.contains(&service)).then_some((service, id))
}

/// The hostname and the replicas' containers from [`PS`]'s output.
fn parse_ps(stdout: &str) -> (Option<String>, Vec<Container>) {
    let mut hostname = None;
    let mut out = Vec::new();
    for line in stdout.lines() {
        if let Some(h) = line.strip_prefix("hostname ") {
            hostname = Some(h.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("container ") {
            let f: Vec<&str> = rest.split('|').collect();
            let Some((service, id)) = f.first().and_then(|n| split_name(n)) else {
                continue;
            };
            out.push(Container {
                service: service.to_owned(),
                id: id.to_owned(),
                state: f.get(1).copied().unwrap_or_default().to_owned(),
                image: f.get(2).copied().unwrap_or_default().to_owned(),
                version_label: f.get(3).copied().unwrap_or_default().trim().to_owned(),
            });
        }
    }
    (hostname, out)
}

/// The replicas of one node from its containers; versions from label or image tag.
fn replicas_of(containers: &[Container], node: &str, member: usize) -> Vec<Replica> {
    let mut out: Vec<Replica> = Vec::new();
    for rethink in containers.iter().filter(|c| c.service == "rethinkdb") {
        if out.iter().any(|r| r.id == rethink.id) {
            continue;
        }
        let tag = rethink.image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        let version_text = if rethink.version_label.is_empty() {
            tag.to_owned()
        } else {
            rethink.version_label.clone()
        };
        let stopped: Vec<String> = containers
            .iter()
            .filter(|c| c.id == rethink.id && c.state != "running")
            .map(|c| format!("dtr-{}-{} {}", c.service, c.id, c.state))
            .collect();
        let missing: Vec<&str> = SERVICES
            .iter()
            .filter(|s| {
                !containers
                    .iter()
                    .any(|c| c.id == rethink.id && c.service == **s)
            })
            .copied()
            .collect();
        let (healthy, health_note) = if !stopped.is_empty() {
            (
                false,
                format!("unhealthy: containers not running: {}", stopped.join(", ")),
            )
        } else if !missing.is_empty() {
            (
                false,
                format!("unhealthy: no container for {}", missing.join(", ")),
            )
        } else {
            (false, "health not probed".to_owned())
        };
        out.push(Replica {
            id: rethink.id.clone(),
            node: node.to_owned(),
            version: Version::parse(&version_text).ok(),
            version_text,
            healthy,
            health_note,
            member: Some(member),
        });
    }
    out
}

/// The DTR service as member `m` reaches it; with `dtr_ca = "fetch"`, the CA is fetched
/// once per run on the node (`curl --insecure <dtr_url>/ca`, as the DTR docs do) and sent
/// with every later call.
pub(crate) async fn dtr_service(m: &Member) -> Result<Service, DtrError> {
    let mut svc = dtr_service_as_configured(m)?;
    if svc.trust != Trust::Fetch {
        return Ok(svc);
    }
    let cached = m.fetched_ca.lock().ok().and_then(|c| c.clone());
    let pem = match cached {
        Some(pem) => pem,
        None => {
            let cmd = format!(
                "curl --fail -sS --insecure {}",
                super::http::quote(&format!("{}/ca", svc.url))
            );
            let out = m
                .sh(&cmd)
                .await?
                .expect_success("fetching DTR's CA (`dtr_ca = \"fetch\"`)", &m.host)?;
            if !out.stdout.contains("-----BEGIN CERTIFICATE-----") {
                return Err(DtrError::Unreadable {
                    what: format!("`{cmd}`"),
                    host: m.host.clone(),
                    text: out.stdout.chars().take(80).collect(),
                    why: "no PEM certificate".to_owned(),
                });
            }
            if let Ok(mut c) = m.fetched_ca.lock() {
                *c = Some(out.stdout.clone());
            }
            out.stdout
        }
    };
    svc.trust = Trust::Ca(pem);
    Ok(svc)
}

fn dtr_service_as_configured(m: &Member) -> Result<Service, DtrError> {
    let url = m.params.text("dtr_url").unwrap_or_default();
    if url.is_empty() {
        return Err(DtrError::Input(
            "`dtr_url` (the DTR external URL) is not set: capstan needs it to check replica \
             health"
                .to_owned(),
        ));
    }
    let trust = Trust::from_params(&m.params, "dtr_ca", "dtr_insecure_tls")?;
    Ok(Service::new("dtr", url, trust))
}

/// The replica HTTPS port of member `m` (`replica_https_port`, default 443).
pub(crate) fn https_port(m: &Member) -> u16 {
    m.params
        .count("replica_https_port")
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443)
}

/// Member `index`'s hostname and replicas, each running one probed on its own node.
pub(crate) async fn node_facts(
    members: &[Member],
    index: usize,
) -> Result<(String, Vec<Replica>), DtrError> {
    let m = &members[index];
    let out = m
        .sh(PS)
        .await?
        .expect_success("`docker info`/`docker ps -a` (DTR containers)", &m.host)?;
    let (hostname, containers) = parse_ps(&out.stdout);
    let hostname = hostname
        .filter(|h| !h.is_empty())
        .ok_or_else(|| DtrError::Unreadable {
            what: "`docker info --format '{{.Name}}'`".to_owned(),
            host: m.host.clone(),
            text: out.stdout.lines().next().unwrap_or("").to_owned(),
            why: "no hostname".to_owned(),
        })?;
    let mut replicas = replicas_of(&containers, &hostname, index);
    for r in &mut replicas {
        if r.version.is_none() {
            registry_version(m, r).await?;
        }
        if r.health_note == "health not probed" {
            ping(m, r).await?;
        }
    }
    Ok((hostname, replicas))
}

/// The backup docs' way: `DTR_VERSION` in the `dtr-registry-<id>` container's environment.
async fn registry_version(m: &Member, r: &mut Replica) -> Result<(), DtrError> {
    let cmd = format!(
        "docker container inspect --format '{{{{json .Config.Env}}}}' dtr-registry-{}",
        r.id
    );
    let out = m
        .sh(&cmd)
        .await?
        .expect_success("`docker container inspect`", &m.host)?;
    let env: Vec<String> = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    if let Some(v) = env.iter().find_map(|e| e.strip_prefix("DTR_VERSION=")) {
        r.version_text = v.to_owned();
        r.version = Version::parse(v).ok();
    }
    Ok(())
}

/// `GET https://<dtr>:<port>/_ping` resolved to this node: 200 healthy, 503 not (DTR "Use a
/// load balancer"); nothing listening counts as unhealthy too.
async fn ping(m: &Member, r: &mut Replica) -> Result<(), DtrError> {
    let dtr = dtr_service(m).await?;
    let mut s = NodeScript::default();
    let call = s.curl(
        &dtr,
        &Request {
            local_port: Some(https_port(m)),
            ..Request::get("/_ping")
        },
    );
    s.line(call);
    let out = m
        .sh_with_files(&s.script(), &s.file_refs(), m.timeout)
        .await?;
    let (healthy, note) = match out.status {
        ExitStatus::Code(0) => (true, "healthy".to_owned()),
        ExitStatus::Code(22) => (
            false,
            "unhealthy: /_ping answered with an HTTP error (503: not healthy)".to_owned(),
        ),
        ExitStatus::Code(7) => (
            false,
            format!(
                "unhealthy: nothing answers on port {} of its node",
                https_port(m)
            ),
        ),
        _ => return Err(out.error(&format!("`/_ping` of replica `{}`", r.id), &m.host)),
    };
    r.healthy = healthy;
    r.health_note = note;
    Ok(())
}

/// `GET /api/v0/meta/cluster_status` on the node of member `at` (its own replica):
/// `replica_health`, id → `OK` or the reason.
pub(crate) async fn cluster_status(m: &Member) -> Result<Option<Vec<(String, String)>>, DtrError> {
    let (Some(user), Some(token)) = (m.params.text("api_username"), m.params.text("api_token"))
    else {
        return Ok(None);
    };
    let dtr = dtr_service(m).await?;
    let mut s = NodeScript::default();
    let call = s.curl(
        &dtr,
        &Request {
            basic: Some((user.to_owned(), token.to_owned())),
            local_port: Some(https_port(m)),
            ..Request::get("/api/v0/meta/cluster_status")
        },
    );
    s.line(call);
    let out = m
        .sh_with_files(&s.script(), &s.file_refs(), m.timeout)
        .await?
        .expect_success("`GET /api/v0/meta/cluster_status`", &m.host)?;
    let value: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).map_err(|e| DtrError::Unreadable {
            what: "`GET /api/v0/meta/cluster_status`".to_owned(),
            host: m.host.clone(),
            text: out.stdout.chars().take(80).collect(),
            why: e.to_string(),
        })?;
    let Some(map) = value.get("replica_health").and_then(|v| v.as_object()) else {
        return Err(DtrError::Unreadable {
            what: "`GET /api/v0/meta/cluster_status`".to_owned(),
            host: m.host.clone(),
            text: out.stdout.chars().take(80).collect(),
            why: "no `replica_health`".to_owned(),
        });
    };
    Ok(Some(
        map.iter()
            .map(|(id, v)| (id.clone(), v.as_str().unwrap_or("?").to_owned()))
            .collect(),
    ))
}

/// What [`gather`] found: the replicas (sorted by id) and each member's hostname.
pub(crate) struct Gathered {
    pub replicas: Vec<Replica>,
    pub hostnames: Vec<(usize, String)>,
}

/// Every replica on the members `indices`, gathered in parallel, merged with
/// `cluster_status` from a healthy replica. Errors name their member.
pub(crate) async fn gather(
    members: &[Member],
    indices: &[usize],
) -> Result<Gathered, Vec<(usize, DtrError)>> {
    let results = join_all(
        indices
            .iter()
            .map(|&i| async move { (i, node_facts(members, i).await) }),
    )
    .await;
    let mut replicas = Vec::new();
    let mut hostnames = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in results {
        match r {
            Ok((host, found)) => {
                hostnames.push((i, host));
                replicas.extend(found);
            }
            Err(e) => errors.push((i, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(at) = replicas.iter().find(|r| r.healthy).and_then(|r| r.member) {
        match cluster_status(&members[at]).await {
            Ok(Some(health)) => merge_status(&mut replicas, &health),
            Ok(None) => {}
            Err(e) => return Err(vec![(at, e)]),
        }
    }
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Gathered {
        replicas,
        hostnames,
    })
}

/// The cluster's view joins the nodes': a replica it calls unhealthy is, and one on no node
/// of the run is added (unhealthy unless `OK`).
fn merge_status(replicas: &mut Vec<Replica>, health: &[(String, String)]) {
    for (id, state) in health {
        match replicas.iter_mut().find(|r| r.id == *id) {
            Some(r) if state != "OK" && r.healthy => {
                r.healthy = false;
                r.health_note = format!("unhealthy (cluster_status): {state}");
            }
            Some(_) => {}
            None => replicas.push(Replica {
                id: id.clone(),
                node: "(no inventory host)".to_owned(),
                version_text: String::new(),
                version: None,
                healthy: state == "OK",
                health_note: format!("listed by cluster_status on no host of this run: {state}"),
                member: None,
            }),
        }
    }
}

/// Replicas whose version could not be read.
pub(crate) fn unparsable(replicas: &[Replica]) -> Option<String> {
    let bad: Vec<String> = replicas
        .iter()
        .filter(|r| r.version.is_none() && r.member.is_some())
        .map(|r| format!("`{}` on `{}` reports `{}`", r.id, r.node, r.version_text))
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "cannot read the DTR version of every replica: {}; expected MAJOR.MINOR.PATCH",
            bad.join(", ")
        )
    })
}

/// `` `a` 2.5.3 on `dtr-1` (healthy) ``, for notes.
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

    const PS_OUT: &str = "hostname ip-10-0-0-1\n\
        container dtr-api-0123456789ab|running|docker/dtr-api:2.6.1|2.6.1|0123456789ab\n\
        container dtr-rethinkdb-0123456789ab|running|docker/dtr-rethink:2.6.1|2.6.1|0123456789ab\n\
        container dtr-rethinkdb-aaaaaaaaaaaa|exited|docker/dtr-rethink:2.5.2|||\n\
        container dtr-registry-aaaaaaaaaaaa|exited|docker/dtr-registry:2.5.2|||\n\
        container dtr-foo-bar|running|x|||\n";

    #[test]
    fn reads_replicas_from_container_names_labels_and_tags() {
        let (host, containers) = parse_ps(PS_OUT);
        assert_eq!(host.as_deref(), Some("ip-10-0-0-1"));
        let got = replicas_of(&containers, "ip-10-0-0-1", 1);
        let seen: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|r| (r.id.as_str(), r.version_text.as_str(), r.healthy))
            .collect();
        assert_eq!(
            seen,
            [
                ("0123456789ab", "2.6.1", false),
                ("aaaaaaaaaaaa", "2.5.2", false)
            ]
        );
        assert!(
            got[0]
                .health_note
                .starts_with("unhealthy: no container for garant")
        );
        assert!(
            got[1]
                .health_note
                .contains("dtr-rethinkdb-aaaaaaaaaaaa exited"),
            "{}",
            got[1].health_note
        );
        assert_eq!(
            split_name("dtr-notary-server-0123456789ab"),
            Some(("notary-server", "0123456789ab"))
        );
        assert_eq!(split_name("dtr-rethinkdb-xyz"), None);
    }

    #[test]
    fn cluster_status_adds_replicas_and_sickness() {
        let (_, containers) = parse_ps(PS_OUT);
        let mut got = replicas_of(&containers, "n", 0);
        got[0].healthy = true;
        merge_status(
            &mut got,
            &[
                (
                    "0123456789ab".into(),
                    "Replica reported health too long ago".into(),
                ),
                ("bbbbbbbbbbbb".into(), "OK".into()),
            ],
        );
        assert!(!got[0].healthy);
        assert_eq!(got[2].member, None);
        assert!(got[2].healthy);
    }
}
