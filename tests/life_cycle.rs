//! A run's life cycle: nothing matched is refused before anything connects; signals stop a
//! run cleanly; a run that lost its lock starts nothing more.

use crate::support::capstan::Project;

const ONE_TASK: &str = r#"
[[plays]]
name = "Site"
hosts = "HOSTS"

[[plays.tasks]]
name = "Mark"
command = "mkdir -p {{ host_dir }} && echo {{ inventory_hostname }} >> {{ host_dir }}/ran"
"#;

fn project(hosts: &[&str], pattern: &str) -> Project {
    let p = Project::new();
    p.local_inventory(hosts, "", "");
    p.file("site.toml", &ONE_TASK.replace("HOSTS", pattern));
    p
}

const RUN: [&str; 4] = ["run", "site.toml", "-i", "inventories/local.toml"];

fn run(p: &Project, extra: &[&str]) -> crate::support::capstan::Outcome {
    let mut args = RUN.to_vec();
    args.extend_from_slice(extra);
    p.run(&args)
}

#[test]
fn an_empty_inventory_is_refused_before_anything_runs() {
    let p = project(&[], "all");
    for extra in [&[][..], &["--check"][..]] {
        let out = run(&p, extra);
        out.code(3);
        assert!(
            out.stderr
                .contains("the inventory `inventories/local.toml` has no host; nothing to run on"),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("PLAY"), "{}", out.stdout);
    }
}

#[test]
fn a_play_pattern_that_matches_no_host_is_refused_with_a_hint() {
    let p = project(&["web-1", "web-2", "db-1"], "web-1,&db-1");
    let out = run(&p, &[]);
    out.code(3);
    assert!(
        out.stderr
            .contains("play \"Site\": host pattern \"web-1,&db-1\" matches no host"),
        "{}",
        out.stderr
    );
    assert!(!p.path("hosts/ran").exists(), "nothing ran");
}

#[test]
fn a_limit_that_leaves_no_host_is_refused_with_did_you_mean() {
    let p = project(&["web-1", "web-2"], "web-1");
    let out = run(&p, &["--limit", "web-2"]);
    out.code(3);
    assert!(
        out.stderr
            .contains("--limit \"web-2\" leaves no host to run on (the plays target: web-1)"),
        "{}",
        out.stderr
    );
    let typo = run(&p, &["--limit", "web-1,!web-1"]);
    typo.code(3);
    assert!(typo.stderr.contains("leaves no host"), "{}", typo.stderr);
    assert!(!p.path("hosts/ran").exists(), "nothing ran");
}
