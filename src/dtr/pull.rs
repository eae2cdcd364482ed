//! `pull`: the DTR image on every node ("Pull the latest version of DTR"), or, offline, an
//! image archive from the control machine uploaded and `docker load`ed ("If the DTR node
//! does not have access to the internet, follow the offline installation documentation").
//! A node that already has the image is left alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::join_all;

use super::commands::{LOAD_FROM_STDIN, image_inspect, pull};
use super::error::DtrError;
use super::remote::Member;
use super::run::Run;

/// What happened on one node.
enum Outcome {
    Present,
    WouldFetch(String),
    Fetched(String),
    Failed {
        why: String,
        stdout: String,
        stderr: String,
    },
    Unreachable(DtrError),
}

pub(crate) async fn run(r: &mut Run<'_>) {
    let check = r.check_mode();
    // Each archive is read once, however many nodes need it.
    let mut archives: BTreeMap<PathBuf, Result<Arc<Vec<u8>>, String>> = BTreeMap::new();
    let mut work = Vec::new();
    for m in &r.members {
        let image = image_of(m);
        let archive = m.params.text("archive").map(archive_path);
        if let Some(path) = &archive
            && !archives.contains_key(path)
        {
            let read = if check {
                std::fs::metadata(path).map(|_| Arc::new(Vec::new()))
            } else {
                std::fs::read(path).map(Arc::new)
            };
            let read = read
                .map_err(|e| format!("cannot read the image archive `{}`: {e}", path.display()));
            archives.insert(path.clone(), read);
        }
        let data = archive.as_ref().and_then(|p| archives.get(p)).cloned();
        work.push((image, archive, data));
    }
    let outcomes = join_all(
        r.members
            .iter()
            .zip(work)
            .map(|(m, (image, archive, data))| node(m, image, archive, data, check)),
    )
    .await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Present => r.note(i, "image present"),
            Outcome::WouldFetch(what) => {
                r.changed(i);
                r.note(i, &format!("would {what}"));
                r.diff(i, &format!("image: absent -> present ({what})"));
            }
            Outcome::Fetched(what) => {
                r.changed(i);
                r.note(i, &what);
                r.diff(i, "image: absent -> present");
            }
            Outcome::Failed {
                why,
                stdout,
                stderr,
            } => {
                r.output(i, &stdout, &stderr);
                r.fail(i, &why);
            }
            Outcome::Unreachable(e) => r.fail_with(i, &e),
        }
    }
}

fn image_of(m: &Member) -> String {
    let image = m.params.text("image").unwrap_or("docker/dtr");
    let version = m.params.text("version").unwrap_or("latest");
    format!("{image}:{version}")
}

/// Archive paths are relative to the directory capstan runs in.
fn archive_path(text: &str) -> PathBuf {
    PathBuf::from(text)
}

async fn node(
    m: &Member,
    image: String,
    archive: Option<PathBuf>,
    data: Option<Result<Arc<Vec<u8>>, String>>,
    check: bool,
) -> Outcome {
    let failed = |why: String| Outcome::Failed {
        why,
        stdout: String::new(),
        stderr: String::new(),
    };
    let inspect = image_inspect(&image);
    match m.sh(&inspect).await {
        Ok(out) if out.success() => return Outcome::Present,
        Ok(_) => {}
        Err(e) => return Outcome::Unreachable(e),
    }
    let (what, done) = match &archive {
        Some(path) => (
            format!("load `{image}` from `{}`", path.display()),
            format!("loaded `{image}` from `{}`", path.display()),
        ),
        None => (format!("pull `{image}`"), format!("pulled `{image}`")),
    };
    let data = match data {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return failed(e),
        None => None,
    };
    if check {
        return Outcome::WouldFetch(what);
    }
    let result = match &data {
        Some(bytes) => m.sh_with_stdin(LOAD_FROM_STDIN, bytes.to_vec()).await,
        None => m.sh(&pull(&image)).await,
    };
    let out = match result {
        Ok(out) => out,
        Err(e) => return Outcome::Unreachable(e),
    };
    if !out.success() {
        let verb = if data.is_some() {
            "`docker load`"
        } else {
            "`docker pull`"
        };
        return Outcome::Failed {
            why: out.failure(verb, &m.host),
            stdout: out.stdout,
            stderr: out.stderr,
        };
    }
    match m.sh(&inspect).await {
        Ok(check) if check.success() => Outcome::Fetched(done),
        Ok(_) => failed(format!(
            "{what} succeeded, but the node still has no `{image}`; is it the right archive?"
        )),
        Err(e) => Outcome::Unreachable(e),
    }
}
