//! The DTR task kinds end to end: the real binary runs the shipped playbooks and templates
//! against a `connection = "local"` inventory whose hosts each play one node of the DTR
//! simulator (`tests/sim`): `dtr_env` gives every host its own `NODE_NAME` and the shared
//! `DTR_SIM_DIR`, and `tests/sim` comes first on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::capstan::{Outcome, Project};
use crate::support::fleet::Fleet;

const UCP_PASSWORD: &str = "Ucp-S3cret-pw-7731";
const API_TOKEN: &str = "Tok-S3cret-4420-dtr";
const UCP_URL: &str = "https://ucp.test";

/// A project holding the shipped DTR playbooks and templates, an inventory of local hosts
/// `dtr-1`… and one simulated cluster.
struct Cluster {
    project: Project,
    sim: PathBuf,
    /// Every stdout and stderr capstan printed, for the secrets check.
    printed: std::cell::RefCell<Vec<String>>,
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `[settings]` and the `[vars]` every test inventory shares (more `[vars]` lines may follow).
fn common_vars(project: &Project) -> String {
    format!(
        r#"[settings]
lock_dir = "{lock}"

[vars]
dtr_org = "docker"
dtr_repo = "dtr"
dtr_version = "2.7.2"
dtr_available = ["2.6.8", "2.7.2"]
ucp_url = "{UCP_URL}"
ucp_username = "admin"
ucp_password = {{ env = "UCP_PASSWORD" }}
dtr_external_url = "https://dtr.test"
dtr_api_username = "admin"
dtr_api_token = {{ env = "DTR_API_TOKEN" }}
ucp_compat = {{ "2.6" = ["3.1", "3.2"], "2.7" = ["3.2"] }}
dtr_min_replicas = 1
dtr_simulator = true
dtr_migration_poll = "20ms"
dtr_migration_timeout = "10s"
ucp_version_command = "docker dtr-sim ucp-version"
content_trust_command = "docker dtr-sim content-trust"
backup_time_command = "cat \"$DTR_SIM_DIR/backup.time\""
"#,
        lock = project.path("lock").display(),
    )
}

/// Groups `dtr` (with the child `dtr-cache`, as in the shipped inventories) and `ucp`.
fn groups(dtr: &[String], caches: &[String]) -> String {
    let list = |names: &[String]| {
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        quoted.join(", ")
    };
    format!(
        "\n[groups.dtr]\nhosts = [{}]\nchildren = [\"dtr-cache\"]\n\n[groups.dtr-cache]\nhosts = \
         [{}]\n\n[groups.ucp]\nhosts = []\n",
        list(dtr),
        list(caches)
    )
}

impl Cluster {
    /// `nodes` hosts in group `dtr`, `extra` appended to the inventory's `[vars]`.
    fn new(nodes: usize, extra: &str) -> Cluster {
        Cluster::build(nodes, 0, extra)
    }

    /// As [`Cluster::new`], plus `caches` hosts `cache-1`… in group `dtr-cache`, a child of
    /// `dtr` as in the shipped inventories.
    fn build(nodes: usize, caches: usize, extra: &str) -> Cluster {
        let project = Project::new();
        let sim = project.path("sim");
        let mut hosts = String::new();
        let mut names = Vec::new();
        let mut cache_names = Vec::new();
        let all = (1..=nodes)
            .map(|n| format!("dtr-{n}"))
            .chain((1..=caches).map(|n| format!("cache-{n}")));
        for name in all {
            hosts.push_str(&format!(
                "[hosts.{name}]\nvars = {{ dtr_env = {{ NODE_NAME = \"{name}\", DTR_SIM_DIR = \"{}\" }} }}\n\n",
                sim.display()
            ));
            if name.starts_with("cache-") {
                cache_names.push(name);
            } else {
                names.push(name);
            }
        }
        let inventory = format!(
            "[defaults]\nconnection = \"local\"\n\n{}\n{extra}\n\n{hosts}{}",
            common_vars(&project),
            groups(&names, &cache_names)
        );
        Cluster::finish(project, sim, &inventory)
    }

    /// A cluster on real sshd hosts `host1`… of `fleet` (`$NODE_NAME` is the host's name);
    /// every host runs the simulator from `PATH` against one shared state directory.
    fn over_ssh(fleet: &Fleet) -> Cluster {
        let project = Project::new();
        let sim = project.path("sim");
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            repo("tests/sim").display()
        );
        let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
        let inventory = format!(
            "{}\n{}\ndtr_env = {{ DTR_SIM_DIR = \"{}\", PATH = \"{path}\" }}\n\n{}",
            fleet.inventory_toml(),
            common_vars(&project),
            sim.display(),
            groups(&names, &[])
        );
        Cluster::finish(project, sim, &inventory)
    }

    /// The shipped playbooks and command templates beside `inventory`, and the simulator's
    /// secrets and a recent backup.
    fn finish(project: Project, sim: PathBuf, inventory: &str) -> Cluster {
        std::fs::create_dir_all(&sim).expect("sim dir");
        for name in ["preflight", "upgrade", "join", "remove", "scale"] {
            let text = std::fs::read_to_string(repo(&format!("playbooks/{name}.toml")))
                .expect("shipped playbook");
            project.file(&format!("{name}.toml"), &text);
        }
        for entry in std::fs::read_dir(repo("templates")).expect("templates") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("dtr-") {
                let text = std::fs::read_to_string(&path).expect("template");
                project.file(&format!("templates/{name}"), &text);
            }
        }
        project.file("inventory.toml", inventory);
        let c = Cluster {
            project,
            sim,
            printed: std::cell::RefCell::new(Vec::new()),
        };
        c.knob("ucp_password", UCP_PASSWORD);
        c.knob("access_token", API_TOKEN);
        c.knob("record.argv", "");
        c.backup_age_secs(3600);
        c
    }

    /// Runs the simulator's `docker` as node `node`.
    fn docker(&self, node: &str, args: &[&str]) -> String {
        let out = Command::new(repo("tests/sim/docker"))
            .args(args)
            .env("DTR_SIM_DIR", &self.sim)
            .env("NODE_NAME", node)
            .output()
            .expect("simulator runs");
        assert!(out.status.success(), "docker {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh cluster at `version`, replicas `ID@NODE`, with the image on each node (as a
    /// running replica's node has it).
    fn init(&self, version: &str, replicas: &[&str]) {
        self.docker(
            "x",
            &[
                "dtr-sim",
                "init",
                "--version",
                version,
                "--replicas",
                &replicas.join(","),
            ],
        );
        for r in replicas {
            let node = r.split('@').nth(1).unwrap_or_default();
            self.docker(node, &["pull", &format!("docker/dtr:{version}")]);
        }
    }

    fn knob(&self, name: &str, text: &str) {
        std::fs::write(self.sim.join(name), text).expect("knob");
    }

    fn unknob(&self, name: &str) {
        std::fs::remove_file(self.sim.join(name)).expect("knob removed");
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.sim.join(name)).unwrap_or_default()
    }

    fn backup_age_secs(&self, age: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.knob("backup.time", &(now - age).to_string());
    }

    /// `ID NODE VERSION HEALTHY` per replica.
    fn status(&self) -> String {
        self.docker("x", &["dtr-sim", "status"])
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let path = format!(
            "{}:{}",
            repo("tests/sim").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut all = vec!["run", "-i", "inventory.toml"];
        all.extend_from_slice(args);
        let out = self.project.run_env(
            &all,
            &[
                ("PATH", &path),
                ("UCP_PASSWORD", UCP_PASSWORD),
                ("DTR_API_TOKEN", API_TOKEN),
                ("SHELL", "/bin/sh"),
            ],
        );
        self.printed.borrow_mut().push(out.all());
        out
    }

    fn validate(&self, playbooks: &[&str]) -> Outcome {
        let mut all = vec!["validate", "-i", "inventory.toml"];
        all.extend_from_slice(playbooks);
        self.project.run_env(
            &all,
            &[("UCP_PASSWORD", UCP_PASSWORD), ("DTR_API_TOKEN", API_TOKEN)],
        )
    }

    /// Checks that no secret was printed or reached a process list.
    #[track_caller]
    fn assert_no_secret(&self) {
        let argv = self.read("argv.log");
        assert!(
            argv.contains("parent:"),
            "the process list was recorded:\n{argv}"
        );
        for (what, text) in self
            .printed
            .borrow()
            .iter()
            .map(|t| ("output", t.as_str()))
            .chain([("process list", argv.as_str())])
        {
            for secret in [UCP_PASSWORD, API_TOKEN] {
                assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
            }
        }
    }
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn shipped_playbooks_validate() {
    let c = Cluster::new(3, "dtr_replicas = 3");
    c.validate(&[
        "preflight.toml",
        "upgrade.toml",
        "join.toml",
        "remove.toml",
        "scale.toml",
    ])
    .code(0);
}

#[test]
fn upgrades_three_replicas_through_2_6_one_at_a_time_after_a_dry_run() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);

    let dry = c.run(&["upgrade.toml", "--check", "--diff"]);
    dry.code(0);
    for host in ["dtr-1", "dtr-2", "dtr-3"] {
        assert!(
            dry.line(host, "Upgrade the DTR cluster")
                .starts_with("would change"),
            "{}",
            dry.stdout
        );
    }
    assert_eq!(
        count(&dry.stdout, "    version: 2.5.3 -> 2.6.8 -> 2.7.2\n"),
        3,
        "{}",
        dry.stdout
    );
    for version in ["2.6.8", "2.7.2"] {
        let cmd = format!(
            "    would run: docker run --rm --env-file \"$CAPSTAN_SECRET_FILE\" \
             docker/dtr:{version} upgrade --ucp-url https://ucp.test --ucp-username admin \
             --existing-replica-id aaa\n"
        );
        assert!(dry.stdout.contains(&cmd), "{cmd}\n{}", dry.stdout);
    }
    assert!(
        dry.stdout
            .contains("2.5.3 -> 2.6.8 (minor upgrade), 2.6.8 -> 2.7.2 (minor upgrade)")
    );
    assert_eq!(
        c.status(),
        "aaa dtr-1 2.5.3 true\nbbb dtr-2 2.5.3 true\nccc dtr-3 2.5.3 true\n",
        "check mode changed nothing"
    );
    assert!(!c.read("argv.log").contains(" upgrade --ucp-url"));

    let run = c.run(&["upgrade.toml", "--diff"]);
    run.code(0);
    assert_eq!(
        c.status(),
        "aaa dtr-1 2.7.2 true\nbbb dtr-2 2.7.2 true\nccc dtr-3 2.7.2 true\n"
    );
    // One replica at a time, hop after hop; the upgrade command ran once per hop.
    assert_eq!(
        c.read("upgrade.log"),
        "aaa dtr-1 2.5.3 -> 2.6.8\nbbb dtr-2 2.5.3 -> 2.6.8\nccc dtr-3 2.5.3 -> 2.6.8\n\
         aaa dtr-1 2.6.8 -> 2.7.2\nbbb dtr-2 2.6.8 -> 2.7.2\nccc dtr-3 2.6.8 -> 2.7.2\n"
    );
    assert_eq!(
        count(&c.read("argv.log"), "docker run --rm --env-file /"),
        2
    );
    assert!(
        run.stdout
            .contains("metadatastoremigration job done (attempt 1)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("garbage collection is disabled while the metadatastoremigration job runs")
    );
    assert!(
        run.stdout
            .contains("OPERATOR STEP: redownload the vulnerability database")
    );
    assert_eq!(
        run.recap("dtr-2"),
        "ok=1 changed=2 failed=0 skipped=0 unreachable=0 cached=0"
    );

    let again = c.run(&["upgrade.toml"]);
    again.code(0);
    assert_eq!(
        again.line("dtr-1", "Upgrade the DTR cluster"),
        "ok (replica `aaa` at 2.7.2, the target)"
    );
    assert_eq!(
        again.recap("dtr-1"),
        "ok=3 changed=0 failed=0 skipped=0 unreachable=0 cached=0"
    );
    c.assert_no_secret();
}

#[test]
fn an_interrupted_upgrade_resumes_on_rerun() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    c.knob("fail.upgrade-after-1", "");
    let first = c.run(&["upgrade.toml"]);
    first.code(2);
    assert_eq!(
        c.status(),
        "aaa dtr-1 2.6.8 true\nbbb dtr-2 2.5.3 true\nccc dtr-3 2.5.3 true\n"
    );
    assert!(
        first
            .stdout
            .contains("the upgrade to 2.6.8 failed on `dtr-1` (exit status 1)"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains(
        "rerun the playbook to resume: \"If anything fails or the upgrade is interrupted"
    ));

    c.unknob("fail.upgrade-after-1");
    let second = c.run(&["upgrade.toml"]);
    second.code(0);
    assert!(
        second
            .stdout
            .contains("resuming the hop 2.5.3 -> 2.6.8: replica(s) `aaa` already at 2.6.8"),
        "{}",
        second.stdout
    );
    assert_eq!(
        c.status(),
        "aaa dtr-1 2.7.2 true\nbbb dtr-2 2.7.2 true\nccc dtr-3 2.7.2 true\n"
    );
    assert_eq!(count(&c.read("upgrade.log"), "aaa dtr-1 2.5.3 -> 2.6.8"), 1);
    c.assert_no_secret();
}

#[test]
fn a_blocked_upgrade_path_is_refused_before_any_change() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    // The upgrade task alone: the pre-flight of upgrade.toml would refuse first.
    let upgrade_only = std::fs::read_to_string(c.project.path("upgrade.toml"))
        .expect("read")
        .split("[[plays.tasks]]")
        .enumerate()
        .filter(|(i, _)| *i == 0 || *i == 3)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join("[[plays.tasks]]");
    c.project.file("upgrade-only.toml", &upgrade_only);
    let out = c.run(&["upgrade-only.toml", "-e", "dtr_available=2.7.2"]);
    out.code(3);
    assert_eq!(
        out.line("dtr-1", "Upgrade the DTR cluster"),
        "failed (refused: skip minor version (2.5.3 -> 2.7.2): when upgrading between minor \
         versions you cannot skip versions (DTR upgrade rules, \"Upgrade DTR\" table row \
         \"skip minor version\"); upgrade to 2.6.x first; no 2.6.x release is among the \
         available versions (the cluster runs DTR 2.5.3, its lowest replica: `aaa` 2.5.3 on \
         `dtr-1` (healthy), `bbb` 2.5.3 on `dtr-2` (healthy), `ccc` 2.5.3 on `dtr-3` \
         (healthy)); nothing was changed)"
    );
    assert!(
        out.stdout.contains(
            "refused: skip minor version (2.5.3 -> 2.7.2): when upgrading between minor \
             versions you cannot skip versions (DTR upgrade rules, \"Upgrade DTR\" table row \
             \"skip minor version\"); upgrade to 2.6.x first"
        ),
        "{}",
        out.stdout
    );
    assert!(!c.read("argv.log").contains(" upgrade --ucp-url"));
    assert!(c.read("upgrade.log").is_empty());
}

#[test]
fn joins_replicas_one_to_three_idempotently() {
    let c = Cluster::new(3, "");
    c.init("2.7.2", &["aaa@dtr-1"]);
    let out = c.run(&["join.toml"]);
    out.code(0);
    let id2 = capstan::rules::replica_id_for(UCP_URL, "dtr-2");
    let id3 = capstan::rules::replica_id_for(UCP_URL, "dtr-3");
    let mut want = [
        "aaa dtr-1 2.7.2 true".to_owned(),
        format!("{id2} dtr-2 2.7.2 true"),
        format!("{id3} dtr-3 2.7.2 true"),
    ];
    want.sort();
    assert_eq!(c.status(), format!("{}\n", want.join("\n")));
    assert!(
        out.line("dtr-2", "Join DTR replicas")
            .starts_with(&format!("changed (joined replica `{id2}` on node `dtr-2`"))
    );
    assert!(out.stdout.contains(&format!("replica `{id3}` is healthy")));
    assert!(out.stdout.contains(&format!(
        "OPERATOR STEP: replica `{id2}` on `dtr-2`: add it to the load balancing pool: \"If \
         you have a load balancer, add this DTR replica to the load balancing pool.\""
    )));
    // From a node already part of UCP, against a healthy replica, with the UCP node named.
    let argv = c.read("argv.log");
    assert!(
        argv.contains(&format!(
            "join --ucp-node dtr-2 --ucp-url https://ucp.test --ucp-username admin \
         --existing-replica-id aaa --replica-id {id2}"
        )),
        "{argv}"
    );
    assert!(!argv.contains("--ucp-insecure-tls"));

    let again = c.run(&["join.toml"]);
    again.code(0);
    assert_eq!(
        again.recap("dtr-2"),
        "ok=1 changed=0 failed=0 skipped=0 unreachable=0 cached=0"
    );
    c.assert_no_secret();
}

const REMOVE_WITH_LB: &str = r#"
name = "Remove"

[[plays]]
name = "Remove"
hosts = "dtr"

[[plays.tasks]]
name = "Remove DTR replicas"

[plays.tasks.remove]
nodes = "dtr-4:dtr-5"
ucp_url = "{{ ucp_url }}"
ucp_username = "{{ ucp_username }}"
ucp_password = "{{ ucp_password }}"
ucp_insecure_tls = true
lb_remove = "echo remove {{ replica_id }} {{ node }} >>\"$DTR_SIM_DIR/lb.log\""
"#;

#[test]
fn removes_replicas_five_to_three_unhealthy_first_with_the_load_balancer() {
    let c = Cluster::new(5, "");
    c.init(
        "2.7.2",
        &[
            "aaa@dtr-1",
            "bbb@dtr-2",
            "ccc@dtr-3",
            "ddd@dtr-4",
            "eee@dtr-5",
        ],
    );
    c.docker("x", &["dtr-sim", "set-health", "eee", "false"]);
    c.project.file("remove-lb.toml", REMOVE_WITH_LB);
    let out = c.run(&["remove-lb.toml"]);
    out.code(0);
    assert_eq!(
        c.status(),
        "aaa dtr-1 2.7.2 true\nbbb dtr-2 2.7.2 true\nccc dtr-3 2.7.2 true\n"
    );
    assert_eq!(c.read("lb.log"), "remove eee dtr-5\nremove ddd dtr-4\n");
    let argv = c.read("argv.log");
    let eee = argv
        .find("--replica-id eee --ucp-insecure-tls")
        .expect("eee removed");
    let ddd = argv
        .find("--replica-id ddd --ucp-insecure-tls")
        .expect("ddd removed");
    assert!(eee < ddd, "the unhealthy replica goes first");
    assert!(
        out.line("dtr-5", "Remove DTR replicas")
            .starts_with("changed (removed replica `eee`")
    );
    c.assert_no_secret();
}

#[test]
fn a_removal_leaving_two_replicas_is_refused() {
    let c = Cluster::new(3, "");
    c.init("2.7.2", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    let out = c.run(&["remove.toml", "-e", "remove_nodes=dtr-3"]);
    out.code(3);
    assert!(
        out.stdout.contains(
            "refused: the DTR cluster would end with 2 replicas: \"Don't create a DTR cluster \
             with just two replicas. Your cluster won't tolerate any failures, and it's \
             possible that you experience performance degradation.\" (DTR high availability \
             rules); choose 3 replicas (or 1), or set `allow_even_replicas = true` on the task \
             (or pass `-e allow_even_replicas=true`)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "PLAY STOPPED: task \"Remove DTR replicas\" refused before any change (exit 3)"
        )
    );
    assert_eq!(c.status().lines().count(), 3);
    assert!(!c.read("argv.log").contains(" remove --ucp-url"));

    let allowed = c.run(&[
        "remove.toml",
        "-e",
        "remove_nodes=dtr-3",
        "-e",
        "allow_even_replicas=true",
    ]);
    allowed.code(0);
    assert_eq!(c.status(), "aaa dtr-1 2.7.2 true\nbbb dtr-2 2.7.2 true\n");
}

#[test]
fn pre_flight_failures_are_reported_together() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    c.knob("ucp_version", "3.1.4");
    c.knob("content_trust", "true");
    c.knob("mem_gib", "8");
    c.backup_age_secs(3 * 86_400);
    c.docker("x", &["dtr-sim", "set-health", "bbb", "false"]);
    let out = c.run(&["preflight.toml", "-e", "dtr_available="]);
    out.code(3);
    let dtr2 = out.line("dtr-2", "DTR pre-flight checks");
    assert!(
        dtr2.starts_with("failed (pre-flight: 6 of 6 conditions failed on this node:"),
        "{}",
        out.stdout
    );
    assert!(
        out.line("dtr-1", "DTR pre-flight checks")
            .starts_with("failed (pre-flight: 5 of 6 conditions failed on this node:")
    );
    for quote in [
        "UCP 3.1.4 is not supported by DTR 2.7 (`ucp_compat` lists 3.2): \"The version of UCP in use is supported by the upgrade version of DTR. Check the compatibility matrix.\"",
        "the newest DTR backup is 3days",
        "\"The DTR backup is recent.\"",
        "Docker content trust is enabled in UCP: \"Docker content trust in UCP is disabled.\"",
        "the node has 8.6 GB RAM, less than 16 GB (`min_ram_gb`): \"Confirm that at least 16GB RAM is available on the node on which you are running the upgrade.\"",
        "refused: skip minor version (2.5.3 -> 2.7.2)",
        "\"Confirm that you are running DTR 2.6. If this is not the case, upgrade your installation to the 2.6 version.\"",
        "replica `bbb` unhealthy",
        "\"When a replica fails, the number of failures tolerated by your cluster decreases.",
    ] {
        assert!(out.stdout.contains(quote), "{quote}\n{}", out.stdout);
    }
    assert!(out.stdout.contains("warning: 0 UCP manager nodes"));
    assert!(
        out.stdout
            .contains("PLAY STOPPED: task \"DTR pre-flight checks\" refused")
    );

    // Fixed, the same pre-flight passes and registers the facts.
    c.knob("ucp_version", "3.2.5");
    c.knob("content_trust", "false");
    c.knob("mem_gib", "32");
    c.backup_age_secs(60);
    c.docker("x", &["dtr-sim", "set-health", "bbb", "true"]);
    let preflight = std::fs::read_to_string(c.project.path("preflight.toml")).expect("read");
    c.project.file(
        "facts.toml",
        &format!(
            "{preflight}\n[[plays.tasks]]\nname = \"Show facts\"\ncommand = \"echo {{{{ \
             dtr.version }}}} {{{{ dtr.replica_id }}}} {{{{ dtr.healthy }}}} {{{{ \
             dtr.cluster_version }}}}\"\n"
        ),
    );
    let ok = c.run(&["facts.toml", "-v"]);
    ok.code(0);
    assert!(
        ok.stdout.contains("stdout: 2.5.3 bbb True 2.5.3"),
        "{}",
        ok.stdout
    );
}

#[test]
fn a_migration_failing_three_times_is_retriggered() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    c.knob("fail.migration", "3");
    let out = c.run(&["upgrade.toml", "-e", "dtr_version=2.6.8", "-v"]);
    out.code(0);
    assert!(
        out.stdout.contains(
            "metadatastoremigration job failed 3 times; retriggered with POST /api/v0/jobs"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("metadatastoremigration job done (attempt 4)")
    );
    assert_eq!(
        c.read("jobs"),
        "metadatastoremigration attempt=1 status=failed\n\
         metadatastoremigration attempt=2 status=failed\n\
         metadatastoremigration attempt=3 status=failed\n\
         metadatastoremigration attempt=4 status=done\n"
    );
    let argv = c.read("argv.log");
    assert!(
        argv.contains(
            "-X POST -H Content-Type: application/json -d {\"action\": \"metadatastoremigration\"} \
         https://dtr.test/api/v0/jobs"
        ),
        "{argv}"
    );
    assert!(argv.contains("curl -sS -K /"));
    c.assert_no_secret();
}

#[test]
fn a_retriggered_migration_that_fails_again_fails_the_upgrade() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    c.knob("fail.migration", "");
    let out = c.run(&["upgrade.toml", "-e", "dtr_version=2.6.8"]);
    out.code(2);
    assert!(
        out.stdout
            .contains("the retriggered metadatastoremigration job failed too (attempt 4)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("garbage collection is disabled"));
}

#[test]
fn pulls_online_or_from_an_archive_only_where_missing() {
    let c = Cluster::new(2, "");
    c.init("2.6.8", &["aaa@dtr-1"]);
    c.docker("dtr-2", &["pull", "docker/dtr:2.7.2"]);
    c.project.file("files/dtr-2.7.2.tar", "docker/dtr:2.7.2\n");
    c.project.file(
        "pull.toml",
        r#"
[[plays]]
name = "Pull"
hosts = "dtr"

[[plays.tasks]]
name = "Load the DTR image"
pull = { version = "2.7.2", archive = "files/dtr-2.7.2.tar" }
"#,
    );
    let out = c.run(&["pull.toml"]);
    out.code(0);
    assert_eq!(
        out.line("dtr-1", "Load the DTR image"),
        "changed (loaded `docker/dtr:2.7.2` from `files/dtr-2.7.2.tar`)"
    );
    assert_eq!(
        out.line("dtr-2", "Load the DTR image"),
        "ok (image present)"
    );
    let again = c.run(&["pull.toml"]);
    assert_eq!(
        again.line("dtr-1", "Load the DTR image"),
        "ok (image present)"
    );
}

#[test]
fn scale_replaces_an_unhealthy_replica_first_then_grows() {
    let c = Cluster::new(5, "dtr_replicas = 3");
    c.init("2.7.2", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    c.docker("x", &["dtr-sim", "set-health", "ccc", "false"]);
    let id = |node: &str| capstan::rules::replica_id_for(UCP_URL, node);

    let dry = c.run(&["scale.toml", "--check"]);
    dry.code(0);
    assert!(
        dry.stdout.contains(&format!(
            "would take the cluster from 3 to 3 replicas, one at a time: remove replica `ccc` \
             from node `dtr-3`, join replica `{}` on node `dtr-3`",
            id("dtr-3")
        )),
        "{}",
        dry.stdout
    );
    assert!(c.status().contains("ccc dtr-3 2.7.2 false"));

    c.run(&["scale.toml"]).code(0);
    let mut want = [
        "aaa dtr-1 2.7.2 true".to_owned(),
        "bbb dtr-2 2.7.2 true".to_owned(),
        format!("{} dtr-3 2.7.2 true", id("dtr-3")),
    ];
    want.sort();
    assert_eq!(c.status(), format!("{}\n", want.join("\n")));

    let grow = c.run(&["scale.toml", "-e", "dtr_replicas=5"]);
    grow.code(0);
    assert_eq!(c.status().lines().count(), 5, "{}", grow.stdout);
    let even = c.run(&["scale.toml", "-e", "dtr_replicas=4"]);
    even.code(3);
    assert!(
        even.stdout
            .contains("refused: the DTR cluster would end with 4 replicas, an even count")
    );
    assert_eq!(c.status().lines().count(), 5);
    c.assert_no_secret();
}

#[test]
fn validate_locates_a_bad_dtr_parameter() {
    let c = Cluster::new(3, "");
    c.project.file(
        "bad.toml",
        r#"[[plays]]
name = "Upgrade"
hosts = "dtr"

[[plays.tasks]]
name = "Upgrade the DTR cluster"
until = "true"
upgrade = { version = "{{ dtr_verison }}", ucp_url = "{{ ucp_url }}", ucp_username = "admin", ucp_password = "{{ ucp_password }}", migration_poll = "soon" }
"#,
    );
    let out = c.validate(&["bad.toml"]);
    out.code(3);
    for want in [
        "error: key \"until\" has no effect on the `upgrade` task \"Upgrade the DTR cluster\": a DTR task polls and verifies by itself\n  --> bad.toml:7:9",
        "error: `upgrade.version` of task \"Upgrade the DTR cluster\" line 1: undefined variable `dtr_verison` (for host dtr-1, dtr-2, dtr-3)\n  --> bad.toml:8:23",
        "error: `upgrade.migration_poll` of task \"Upgrade the DTR cluster\": `soon` is not a duration like \"90s\", \"2m\" or \"1h30m\" (for host dtr-1, dtr-2, dtr-3)",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.stderr);
    }
}

const UPGRADE_WITH_CACHE: &str = r#"
[[plays]]
name = "Upgrade"
hosts = "dtr"

[[plays.tasks]]
name = "Upgrade the DTR cluster"

[plays.tasks.upgrade]
version = "{{ dtr_version }}"
ucp_url = "{{ ucp_url }}"
ucp_username = "{{ ucp_username }}"
ucp_password = "{{ ucp_password }}"
cache_version_command = "cat \"$DTR_SIM_DIR/cache.version\""
cache_upgrade = "echo {{ version }} >\"$DTR_SIM_DIR/cache.version\""
vuln_db_update = "echo {{ version }} >\"$DTR_SIM_DIR/vulndb\""
"#;

#[test]
fn cache_nodes_follow_the_replicas_and_the_vulnerability_database_is_refreshed() {
    let c = Cluster::build(3, 1, "");
    c.init("2.6.8", &["aaa@dtr-1", "bbb@dtr-2", "ccc@dtr-3"]);
    c.knob("cache.version", "2.6.8\n");
    c.project.file("upgrade-cache.toml", UPGRADE_WITH_CACHE);

    let dry = c.run(&["upgrade-cache.toml", "--check"]);
    dry.code(0);
    assert_eq!(
        dry.line("cache-1", "Upgrade the DTR cluster"),
        "would change (would upgrade the cache 2.6.8 -> 2.7.2: echo 2.7.2 \
         >\"$DTR_SIM_DIR/cache.version\")"
    );
    assert!(
        dry.stdout
            .contains("would update the vulnerability database: echo 2.7.2")
    );
    assert_eq!(c.read("cache.version"), "2.6.8\n");

    let run = c.run(&["upgrade-cache.toml"]);
    run.code(0);
    assert_eq!(c.read("cache.version"), "2.7.2\n");
    assert_eq!(c.read("vulndb"), "2.7.2\n");
    assert!(
        run.line("cache-1", "Upgrade the DTR cluster")
            .starts_with("changed (upgraded the cache 2.6.8 -> 2.7.2")
    );

    let again = c.run(&["upgrade-cache.toml"]);
    again.code(0);
    assert_eq!(
        again.line("cache-1", "Upgrade the DTR cluster"),
        "ok (cache at 2.7.2, in sync with the replicas)"
    );

    // Without cache commands (the shipped playbook), the report names the operator step.
    // The simulator leaves the new image on the node that ran the upgrade only; a real
    // upgrade leaves it on every replica's node, where the health probes run.
    for node in ["dtr-2", "dtr-3"] {
        c.docker(node, &["pull", "docker/dtr:2.7.2"]);
    }
    let shipped = c.run(&["upgrade.toml"]);
    shipped.code(0);
    assert!(
        shipped
            .line("cache-1", "Upgrade the DTR cluster")
            .starts_with("ok (OPERATOR STEP: upgrade the DTR cache on this node to 2.7.2"),
        "{}",
        shipped.stdout
    );
    assert_eq!(
        shipped.line("cache-1", "DTR pre-flight checks"),
        "skipped (when: false)"
    );
}

#[test]
fn upgrades_over_ssh_with_the_password_only_on_stdin() {
    let mut fleet = Fleet::start(3);
    let logs: Vec<PathBuf> = (0..3).map(|i| fleet.record_commands(i)).collect();
    let c = Cluster::over_ssh(&fleet);
    c.init("2.5.3", &["aaa@host1", "bbb@host2", "ccc@host3"]);
    c.knob("fail.migration", "3");

    let dry = c.run(&["upgrade.toml", "--check", "--diff"]);
    dry.code(0);
    assert_eq!(
        count(&dry.stdout, "    version: 2.5.3 -> 2.6.8 -> 2.7.2\n"),
        3,
        "{}",
        dry.stdout
    );

    let run = c.run(&["upgrade.toml"]);
    run.code(0);
    assert_eq!(
        c.status(),
        "aaa host1 2.7.2 true\nbbb host2 2.7.2 true\nccc host3 2.7.2 true\n"
    );
    assert!(
        run.stdout
            .contains("metadatastoremigration job done (attempt 4)"),
        "{}",
        run.stdout
    );
    // What sshd was asked to run: the upgrade reads the password from a file written from
    // stdin, and no command text holds a secret.
    let sent: String = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    assert!(
        sent.contains("--env-file \"$CAPSTAN_SECRET_FILE\" docker/dtr:2.6.8 upgrade"),
        "{sent}"
    );
    for secret in [UCP_PASSWORD, API_TOKEN] {
        assert!(!sent.contains(secret), "a secret was sent in a command");
    }
    c.assert_no_secret();
}
