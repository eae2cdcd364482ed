//! `pull`: what each hop of the upgrade needs on every node ("Pull the latest version of
//! DTR"; offline, "the images on the target nodes"): the bootstrapper `docker/dtr:<v>` of
//! every hop and every image `docker run docker/dtr:<v> images` lists ("lists all the images
//! necessary to install DTR"). Online they are pulled; offline (`archives`, a directory on
//! the control machine holding `dtr-<v>.tar.gz` or `dtr-<v>.tar` per version) the version's
//! archive is sent in chunks (never whole in memory) and `docker load`ed, only on the nodes
//! that miss something. A node that has everything is left alone.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures::future::join_all;
use semver::Version;

use super::cluster::{roles, view};
use super::commands::{image_inspect, pull};
use super::error::DtrError;
use super::remote::{Member, first_line};
use super::run::Run;
use crate::rules::{self, JudgeOptions};

/// Bytes sent per command while uploading an archive.
const CHUNK: usize = 8 << 20;

/// What happened on one node.
enum Outcome {
    Present(String),
    WouldFetch(Vec<String>),
    Fetched(Vec<String>),
    Failed(DtrError),
}

pub(crate) async fn run(r: &mut Run<'_>) {
    let versions = match versions(r).await {
        Ok(v) => v,
        Err(why) => return r.refuse(&why),
    };
    let check = r.check_mode();
    let outcomes = join_all(r.members.iter().map(|m| node(m, &versions, check))).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Present(what) => r.note(i, &format!("{what} present")),
            Outcome::WouldFetch(lines) => {
                r.changed(i);
                for line in lines {
                    r.note(i, &format!("would {line}"));
                    r.diff(i, &format!("images: {line}"));
                }
            }
            Outcome::Fetched(lines) => {
                r.changed(i);
                for line in lines {
                    r.note(i, &line);
                    r.diff(i, &format!("images: {line}"));
                }
            }
            Outcome::Failed(e) => r.fail_with(i, &e),
        }
    }
}

/// The versions whose images the nodes need: every hop from the cluster's version to
/// `version` when `available` is given and the cluster can be read, else `version`.
async fn versions(r: &mut Run<'_>) -> Result<Vec<Version>, String> {
    let p = r.cluster_params();
    let text = p.text("version").unwrap_or_default();
    let target = Version::parse(text)
        .map_err(|e| format!("refused: the version `{text}` is not a version: {e}"))?;
    let available: Vec<Version> = p
        .list("available")
        .iter()
        .filter_map(|v| Version::parse(v).ok())
        .collect();
    if available.is_empty() {
        return Ok(vec![target]);
    }
    let opts = JudgeOptions {
        allow_prerelease: p.flag("allow_prerelease"),
    };
    let replicas = roles(r).map(|roles| roles.replicas).unwrap_or_default();
    let Some(found) = view(r, &replicas).await else {
        return Err("refused: the DTR facts could not be read".to_owned());
    };
    let current: Vec<Version> = found.iter().filter_map(|rep| rep.version.clone()).collect();
    let Some(cluster) = rules::cluster_version(&current) else {
        return Ok(vec![target]);
    };
    match rules::plan(&cluster, &target, &available, &opts) {
        Ok(plan) if plan.hops.is_empty() => Ok(vec![target]),
        Ok(plan) => Ok(plan.hops.into_iter().map(|h| h.to).collect()),
        // The upgrade task refuses with the rule; here only the target is fetched.
        Err(_) => Ok(vec![target]),
    }
}

/// The archive of `version` in the directory `dir`, if there is one.
fn archive_of(dir: &Path, version: &Version) -> Option<PathBuf> {
    ["tar.gz", "tgz", "tar"]
        .iter()
        .map(|ext| dir.join(format!("dtr-{version}.{ext}")))
        .find(|p| p.is_file())
}

async fn node(m: &Member, versions: &[Version], check: bool) -> Outcome {
    let image = m.params.text("image").unwrap_or("docker/dtr");
    let archives = m.params.text("archives").map(PathBuf::from);
    let mut done = Vec::new();
    for v in versions {
        match version_on(m, image, v, archives.as_deref(), check).await {
            Ok(Some(line)) => done.push(line),
            Ok(None) => {}
            Err(e) => return Outcome::Failed(e),
        }
    }
    let shown: Vec<String> = versions.iter().map(|v| format!("`{image}:{v}`")).collect();
    match (done.is_empty(), check) {
        (true, _) => Outcome::Present(format!("every image of {}", shown.join(", "))),
        (false, true) => Outcome::WouldFetch(done),
        (false, false) => Outcome::Fetched(done),
    }
}

/// Brings version `v` onto the node; what it did, or `None` when everything was there.
async fn version_on(
    m: &Member,
    image: &str,
    v: &Version,
    archives: Option<&Path>,
    check: bool,
) -> Result<Option<String>, DtrError> {
    let bootstrapper = format!("{image}:{v}");
    let missing = missing_images(m, &bootstrapper).await?;
    if missing.is_empty() {
        return Ok(None);
    }
    let archive = match archives {
        Some(dir) => Some(archive_of(dir, v).ok_or_else(|| {
            DtrError::Input(format!(
                "no archive for DTR {v} in `{}` (expected `dtr-{v}.tar.gz` or `dtr-{v}.tar`)",
                dir.display()
            ))
        })?),
        None => None,
    };
    let names: Vec<String> = missing.iter().map(|i| format!("`{i}`")).collect();
    let what = match &archive {
        Some(path) => format!("load {} from `{}`", names.join(", "), path.display()),
        None => format!("pull {}", names.join(", ")),
    };
    if check {
        return Ok(Some(what));
    }
    let mut still = missing;
    match &archive {
        Some(path) => {
            upload_and_load(m, path).await?;
            still = missing_images(m, &bootstrapper).await?;
        }
        // The bootstrapper first, then what its `images` lists.
        None => {
            for _ in 0..2 {
                for img in &still {
                    m.sh(&pull(img))
                        .await?
                        .expect_success(&format!("`docker pull {img}`"), &m.host)?;
                }
                still = missing_images(m, &bootstrapper).await?;
                if still.is_empty() {
                    break;
                }
            }
        }
    }
    if !still.is_empty() {
        return Err(DtrError::Input(format!(
            "after the {what}, the node `{}` still lacks `{}`; is it the right archive?",
            m.host,
            still.join("`, `")
        )));
    }
    let verb = if archive.is_some() {
        "loaded"
    } else {
        "pulled"
    };
    Ok(Some(format!(
        "{verb} {}",
        what.split_once(' ').map_or("", |(_, w)| w)
    )))
}

/// The images of `bootstrapper` the node lacks: the bootstrapper itself, else those its
/// `images` command lists.
async fn missing_images(m: &Member, bootstrapper: &str) -> Result<Vec<String>, DtrError> {
    let out = m.sh(&image_inspect(bootstrapper)).await?;
    if !out.success() {
        return Ok(vec![bootstrapper.to_owned()]);
    }
    let list = m
        .sh(&format!(
            "docker run --rm {} images",
            super::http::quote(bootstrapper)
        ))
        .await?
        .expect_success(&format!("`docker run --rm {bootstrapper} images`"), &m.host)?;
    let mut missing = Vec::new();
    for img in list.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if img.split_whitespace().count() != 1 || !img.contains(':') {
            return Err(DtrError::Unreadable {
                what: format!("`docker run --rm {bootstrapper} images`"),
                host: m.host.clone(),
                text: img.to_owned(),
                why: "not an image reference".to_owned(),
            });
        }
        if !m.sh(&image_inspect(img)).await?.success() {
            missing.push(img.to_owned());
        }
    }
    Ok(missing)
}

/// Sends the archive at `path` in chunks into a private file on the node, then loads it.
async fn upload_and_load(m: &Member, path: &Path) -> Result<(), DtrError> {
    let open = |e: std::io::Error| {
        DtrError::Input(format!(
            "cannot read the image archive `{}`: {e}",
            path.display()
        ))
    };
    let mut file = std::fs::File::open(path).map_err(open)?;
    let made = m
        .sh("umask 077; mktemp -d")
        .await?
        .expect_success("`mktemp -d`", &m.host)?;
    let dir = first_line(&made.stdout).to_owned();
    let valid = dir.starts_with('/')
        && dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if !valid {
        return Err(DtrError::Unreadable {
            what: "`mktemp -d`".to_owned(),
            host: m.host.clone(),
            text: dir,
            why: "not a plain absolute path".to_owned(),
        });
    }
    let target = format!("{dir}/archive");
    let result = async {
        let mut buf = vec![0_u8; CHUNK];
        loop {
            let n = file.read(&mut buf).map_err(open)?;
            if n == 0 {
                break;
            }
            m.sh_with_stdin(&format!("cat >>'{target}'"), buf[..n].to_vec())
                .await?
                .expect_success("uploading the image archive", &m.host)?;
        }
        m.sh(&format!("docker load -i '{target}'"))
            .await?
            .expect_success("`docker load`", &m.host)?;
        Ok::<(), DtrError>(())
    }
    .await;
    let cleanup = m.sh(&format!("rm -rf '{dir}'")).await;
    result?;
    cleanup.map(|_| ())
}
