//! The DTR task kinds end to end over real sshd: the real binary runs the shipped playbooks
//! and templates unchanged against OpenSSH hosts whose `docker` and `curl` are the DTR
//! simulator (`tests/sim`, rebuilt from DTR's documentation; its README cites a source per
//! behaviour). Only the inventory is the test's. Every host's hostname (what `docker info`
//! prints) differs from its inventory name, as on a real cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::capstan::{Outcome, Project};
use crate::support::fleet::Fleet;

const UCP_PASSWORD: &str = "Ucp-S3cret-pw-7731";
const API_TOKEN: &str = "Tok-S3cret-4420-dtr";
/// The simulator's UCP CA (`dtr-sim init`): never on an argv.
const UCP_CA_MARK: &str = "MIIB-dtr-sim-UCP-CA";
const UCP_URL: &str = "https://ucp.test";
const A: &str = "aaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbb";
const C: &str = "cccccccccccc";
const D: &str = "dddddddddddd";
const E: &str = "eeeeeeeeeeee";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The hostname of fleet host `i` (0-based), as its docker engine reports it.
fn hostname(i: usize) -> String {
    format!("ip-10-0-0-{}.ec2.internal", i + 1)
}

/// A simulated cluster on real sshd hosts `host1`…, with the shipped playbooks and
/// templates.
struct Cluster {
    _fleet: Fleet,
    project: Project,
    sim: PathBuf,
    /// Every stdout and stderr capstan printed, for the secrets check.
    printed: std::cell::RefCell<Vec<String>>,
    /// Per host, the file of every command sshd was asked to run.
    sent: Vec<PathBuf>,
}

impl Cluster {
    /// `n` hosts in group `dtr`; `extra` appended to `[vars]`.
    fn new(n: usize, extra: &str) -> Cluster {
        let mut fleet = Fleet::start(n);
        let sent: Vec<PathBuf> = (0..n).map(|i| fleet.record_commands(i)).collect();
        let project = Project::new();
        let sim = project.path("sim");
        std::fs::create_dir_all(&sim).expect("sim dir");
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            repo("tests/sim").display()
        );
        let mut inventory = fleet.inventory_toml();
        for (i, h) in fleet.hosts().iter().enumerate() {
            let env = format!(
                "vars = {{ dtr_env = {{ NODE_NAME = \"{}\", DTR_SIM_DIR = \"{}\", PATH = \"{path}\" }}, ",
                hostname(i),
                sim.display()
            );
            let block = format!("[hosts.{}]\n", h.name);
            let at = inventory.find(&block).expect("host block");
            let vars = at + inventory[at..].find("vars = {").expect("vars");
            inventory.replace_range(vars..vars + "vars = {".len(), &env);
        }
        let names: Vec<String> = fleet
            .hosts()
            .iter()
            .map(|h| format!("\"{}\"", h.name))
            .collect();
        let inventory = format!(
            "{inventory}\n[settings]\nlock_dir = \"{lock}\"\n\n[vars]\n\
             dtr_org = \"docker\"\ndtr_repo = \"dtr\"\ndtr_version = \"2.7.2\"\n\
             dtr_available = [\"2.6.8\", \"2.7.2\"]\nucp_url = \"{UCP_URL}\"\n\
             ucp_username = \"admin\"\nucp_password = {{ env = \"UCP_PASSWORD\" }}\n\
             ucp_ca = \"fetch\"\ndtr_ca = \"fetch\"\n\
             dtr_external_url = \"https://dtr.test\"\ndtr_api_username = \"admin\"\n\
             dtr_api_token = {{ env = \"DTR_API_TOKEN\" }}\n\
             ucp_compat = {{ \"2.6\" = [\"3.1\", \"3.2\"], \"2.7\" = [\"3.2\"] }}\n\
             dtr_min_replicas = 1\ndtr_migration_poll = \"20ms\"\ndtr_migration_timeout = \"20s\"\n\
             backup_time_command = \"cat \\\"$DTR_SIM_DIR/backup.time\\\"\"\n{extra}\n\
             \n[groups.dtr]\nhosts = [{}]\nchildren = [\"dtr-cache\"]\n\n[groups.dtr-cache]\n\
             hosts = []\n\n[groups.ucp]\nhosts = []\n",
            names.join(", "),
            lock = project.path("lock").display(),
        );
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
        project.file("inventory.toml", &inventory);
        let c = Cluster {
            _fleet: fleet,
            project,
            sim,
            printed: std::cell::RefCell::new(Vec::new()),
            sent,
        };
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

    /// A fresh cluster at `version` on all hosts' nodes, replica `ids[i]` on host `i`.
    fn init(&self, version: &str, ids: &[&str]) {
        let nodes: Vec<String> = (0..self.sent.len()).map(hostname).collect();
        let replicas: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| format!("{id}@{}", hostname(i)))
            .collect();
        self.docker(
            "x",
            &[
                "dtr-sim",
                "init",
                "--version",
                version,
                "--nodes",
                &nodes.join(","),
                "--replicas",
                &replicas.join(","),
                "--ucp-password",
                UCP_PASSWORD,
                "--api-token",
                API_TOKEN,
            ],
        );
    }

    /// Sets a field of the simulator's state (`replicas/ID/healthy`, `ucp/version`, …).
    fn set(&self, path: &str, json: &str) {
        self.docker("x", &["dtr-sim", "set", path, json]);
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

    /// The simulator's state at `path`, as JSON.
    fn get(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.docker("x", &["dtr-sim", "get", path])).expect("json")
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["run", "-i", "inventory.toml"];
        all.extend_from_slice(args);
        let out = self.project.run_env(
            &all,
            &[("UCP_PASSWORD", UCP_PASSWORD), ("DTR_API_TOKEN", API_TOKEN)],
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

    /// The bootstrapper calls the simulator saw: `(version, command, sorted flags)`.
    fn bootstraps(&self) -> Vec<(String, String, Vec<String>)> {
        self.read("bootstrap.log")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                let flags = v["flags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|f| f.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (s("version"), s("command"), flags)
            })
            .collect()
    }

    /// No secret was printed, sent in a command or on a process list; every HTTP call had
    /// `--fail`; no bootstrapper ran with a terminal.
    #[track_caller]
    fn assert_clean(&self) {
        let argv = self.read("argv.log");
        assert!(
            argv.contains("parent:"),
            "the process list was recorded:\n{argv}"
        );
        let sent: String = self
            .sent
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect();
        for (what, text) in self
            .printed
            .borrow()
            .iter()
            .map(|t| ("output", t.as_str()))
            .chain([
                ("process list", argv.as_str()),
                ("commands sent", sent.as_str()),
            ])
        {
            for secret in [UCP_PASSWORD, API_TOKEN, UCP_CA_MARK] {
                assert!(
                    !text.contains(secret),
                    "{what} shows a secret `{secret}`:\n{text}"
                );
            }
        }
        for line in argv.lines().filter(|l| l.starts_with("curl ")) {
            assert!(line.contains("--fail"), "{line}");
            assert!(
                !line.contains("--insecure") || line.contains("/ca"),
                "{line}"
            );
        }
        assert!(!argv.contains(" -it "), "{argv}");
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
fn pre_flight_passes_on_a_healthy_2_6_cluster_and_reports_what_fails() {
    let c = Cluster::new(3, "");
    c.init("2.6.8", &[A, B, C]);
    // Without DTR's labels (unverified on 2.5/2.6), the version comes from the image tag.
    c.set(&format!("replicas/{B}/labels"), "false");
    let ok = c.run(&["preflight.toml"]);
    ok.code(0);
    let lead = ok.line("host1", "DTR pre-flight checks");
    for want in [
        "DTR 2.6.8 upgrades by 2.6.8 -> 2.7.2",
        "UCP 3.2.5 supports DTR 2.7",
        "newest backup 1h",
        "content trust disabled",
        "34.4 GB RAM on the upgrade node",
        &format!("replica `{A}` healthy"),
    ] {
        assert!(lead.contains(want), "{want}\n{}", ok.stdout);
    }
    assert!(
        ok.line("host2", "DTR pre-flight checks")
            .contains("the cluster's conditions are checked on `host1`, the upgrade node"),
        "{}",
        ok.stdout
    );
    // UCP's facts came through its API from one node, the backup age from one node.
    let sent: String = c
        .sent
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    assert_eq!(count(&sent, "backup.time"), 1, "{sent}");
    assert_eq!(
        count(&c.get("ucp/tokens").to_string(), "\""),
        2,
        "one UCP login"
    );
    c.assert_clean();

    // Broken: UCP too old for 2.7, content trust on, a small upgrade node, an old backup,
    // a stopped replica.
    c.set("ucp/version", "\"3.1.4\"");
    c.set("ucp/require_content_trust", "true");
    c.set(&format!("nodes/{}/mem_bytes", hostname(0)), "8589934592");
    c.set(&format!("replicas/{C}/running"), "false");
    c.backup_age_secs(3 * 86_400);
    let bad = c.run(&["preflight.toml"]);
    bad.code(3);
    for want in [
        "UCP 3.1.4 is not supported by DTR 2.7 (`ucp_compat` lists 3.2)",
        "Docker content trust is enabled in UCP",
        "the upgrade node `host1` has 8.6 GB RAM, less than 16 GB",
        "the newest DTR backup is 3days",
    ] {
        assert!(bad.stdout.contains(want), "{want}\n{}", bad.stdout);
    }
    assert!(
        bad.stdout.contains(&format!(
            "replica `{C}` unhealthy: containers not running: dtr-api-{C} exited"
        )),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout
            .contains("PLAY STOPPED: task \"DTR pre-flight checks\" refused")
    );
    c.assert_clean();
}

#[test]
fn upgrades_2_5_to_2_7_through_2_6_with_the_migration_failing_twice() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &[A, B, C]);
    c.knob("fail.migration", "2");
    let dry = c.run(&["upgrade.toml", "--check", "--diff"]);
    dry.code(0);
    assert_eq!(
        count(&dry.stdout, "    version: 2.5.3 -> 2.6.8 -> 2.7.2\n"),
        3,
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains(&format!(
            "would run: docker run --rm --env-file \"$CAPSTAN_SECRET_FILE\" --env UCP_CA \
         docker/dtr:2.6.8 upgrade --ucp-url https://ucp.test --ucp-username admin \
         --existing-replica-id {A}"
        )),
        "{}",
        dry.stdout
    );
    assert!(
        c.bootstraps().iter().all(|(_, cmd, _)| cmd == "images"),
        "check mode ran no bootstrapper command but `images`"
    );
    assert!(c.get("jobs").as_array().is_some_and(Vec::is_empty));

    let run = c.run(&["upgrade.toml", "-v"]);
    run.code(0);
    let want: String = [A, B, C]
        .iter()
        .enumerate()
        .map(|(i, id)| format!("{id} {} 2.7.2 true\n", hostname(i)))
        .collect();
    assert_eq!(c.status(), want);
    let hops: Vec<(String, String)> = c
        .bootstraps()
        .into_iter()
        .filter(|(_, cmd, _)| cmd != "images")
        .map(|(v, cmd, _)| (v, cmd))
        .collect();
    assert_eq!(
        hops,
        [
            ("2.6.8".to_owned(), "upgrade".to_owned()),
            ("2.7.2".to_owned(), "upgrade".to_owned())
        ]
    );
    for line in [
        "metadatastoremigration attempt 1",
        "): error",
        "metadatastoremigration attempt 3",
        "metadatastoremigration job done (attempt 3)",
        "garbage collection is disabled while the metadatastoremigration job runs",
    ] {
        assert!(run.stdout.contains(line), "{line}\n{}", run.stdout);
    }
    assert!(
        !run.stdout.contains("retriggered with POST"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.recap("host2"),
        "ok=1 changed=2 failed=0 skipped=0 unreachable=0 cached=0"
    );

    let again = c.run(&["upgrade.toml"]);
    again.code(0);
    assert_eq!(
        again.line("host1", "Upgrade the DTR cluster"),
        format!("ok (replica `{A}` at 2.7.2, the target)")
    );
    c.assert_clean();
}

#[test]
fn a_migration_failing_three_times_is_retriggered_through_the_jobs_api() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &[A, B, C]);
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
    let jobs = c.get("jobs");
    let statuses: Vec<&str> = jobs
        .as_array()
        .map(|a| {
            a.iter()
                .rev()
                .filter_map(|j| j["status"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(statuses, ["error", "error", "error", "done"]);
    let argv = c.read("argv.log");
    assert!(argv.contains("curl --fail -sS --cacert"), "{argv}");
    c.assert_clean();

    // Retriggered and failing again: the upgrade fails and says what to do.
    let c = Cluster::new(3, "");
    c.init("2.5.3", &[A, B, C]);
    c.knob("fail.migration", "");
    let out = c.run(&["upgrade.toml", "-e", "dtr_version=2.6.8"]);
    out.code(2);
    assert!(
        out.stdout
            .contains("the retriggered metadatastoremigration job failed too (attempt 4: error)"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_upgrade_interrupted_after_one_replica_resumes_and_reports_honestly() {
    let c = Cluster::new(3, "");
    c.init("2.6.8", &[A, B, C]);
    c.knob("fail.upgrade-after", "1");
    let first = c.run(&["upgrade.toml"]);
    first.code(2);
    assert_eq!(
        c.status(),
        format!(
            "{A} {} 2.7.2 true\n{B} {} 2.6.8 true\n{C} {} 2.6.8 true\n",
            hostname(0),
            hostname(1),
            hostname(2)
        )
    );
    assert!(
        first
            .stdout
            .contains("the upgrade to 2.7.2 failed on `host1` (exit status 1)"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("rerun the playbook to resume"));
    // Only the replica seen to change is `changed`.
    assert!(
        !first
            .line("host2", "Upgrade the DTR cluster")
            .starts_with("changed")
    );

    c.unknob("fail.upgrade-after");
    let second = c.run(&["upgrade.toml"]);
    second.code(0);
    assert!(
        second.stdout.contains(&format!(
            "resuming the hop 2.6.8 -> 2.7.2: replica(s) `{A}` already at 2.7.2"
        )),
        "{}",
        second.stdout
    );
    assert!(
        second
            .line("host2", "Upgrade the DTR cluster")
            .starts_with("changed")
    );
    assert!(
        second
            .line("host1", "Upgrade the DTR cluster")
            .starts_with("ok"),
        "{}",
        second.stdout
    );
    let log = c.get("upgrade_log").to_string();
    assert_eq!(count(&log, &format!("{A} ")), 1, "{log}");
    assert_eq!(c.status().matches(" 2.7.2 true").count(), 3);

    // A crash mid-upgrade (the bootstrapper killed) is resumed the same way.
    c.init("2.6.8", &[A, B, C]);
    c.knob("crash.upgrade-after", "2");
    let crashed = c.run(&["upgrade.toml"]);
    crashed.code(2);
    assert!(
        crashed
            .stdout
            .contains("the upgrade to 2.7.2 failed on `host1` (exit status 137)")
            || crashed
                .stdout
                .contains("the upgrade to 2.7.2 failed on `host1` (killed by signal KILL)"),
        "{}",
        crashed.stdout
    );
    assert_eq!(c.status().matches(" 2.7.2 true").count(), 2);
    c.unknob("crash.upgrade-after");
    // Offline, the vulnerability database archive on the upgrade node is uploaded after.
    c.knob("cve.tar", "dtr-sim vulnerability database\n");
    let archive = format!("dtr_vuln_db_archive={}", c.sim.join("cve.tar").display());
    let resumed = c.run(&["upgrade.toml", "-e", &archive]);
    resumed.code(0);
    assert_eq!(c.status().matches(" 2.7.2 true").count(), 3);
    assert!(
        resumed
            .stdout
            .contains("uploaded the vulnerability database")
            && resumed
                .stdout
                .contains("vulnerability database status: last update succeeded"),
        "{}",
        resumed.stdout
    );
    let jobs = c.get("jobs").to_string();
    assert!(jobs.contains("update_vuln_db"), "{jobs}");
    c.assert_clean();
}

#[test]
fn joins_with_the_nodes_hostname_not_its_inventory_name() {
    let c = Cluster::new(3, "");
    c.init("2.7.2", &[A]);
    // host3's replica serves HTTPS on 4443: joined with --replica-https-port, pinged there.
    let inv = std::fs::read_to_string(c.project.path("inventory.toml")).expect("read");
    let host3 = format!("vars = {{ dtr_env = {{ NODE_NAME = \"{}\"", hostname(2));
    assert!(inv.contains(&host3));
    c.project.file(
        "inventory.toml",
        &inv.replace(
            &host3,
            &format!(
                "vars = {{ dtr_replica_https_port = 4443, dtr_env = {{ NODE_NAME = \"{}\"",
                hostname(2)
            ),
        ),
    );
    let out = c.run(&["join.toml"]);
    out.code(0);
    let id2 = capstan::rules::replica_id_for(UCP_URL, &hostname(1));
    let id3 = capstan::rules::replica_id_for(UCP_URL, &hostname(2));
    let status = c.status();
    for (id, i) in [(A.to_owned(), 0), (id2.clone(), 1), (id3.clone(), 2)] {
        assert!(
            status.contains(&format!("{id} {} 2.7.2 true", hostname(i))),
            "{status}"
        );
    }
    let joins: Vec<Vec<String>> = c
        .bootstraps()
        .into_iter()
        .filter(|(_, cmd, _)| cmd == "join")
        .map(|(_, _, flags)| flags)
        .collect();
    assert_eq!(joins.len(), 2);
    assert!(joins[0].contains(&hostname(1)), "{joins:?}");
    assert!(
        !joins[0].contains(&"--replica-https-port".to_owned()),
        "{joins:?}"
    );
    assert!(joins[1].contains(&"4443".to_owned()), "{joins:?}");
    assert!(
        c.read("argv.log")
            .contains("--resolve dtr.test:4443:127.0.0.1"),
        "the replica on host3 is pinged on its own port"
    );
    assert!(!joins.iter().flatten().any(|f| f == "host2"), "{joins:?}");
    assert!(
        out.line("host2", "Join DTR replicas").starts_with(&format!(
            "changed (joined replica `{id2}` on node `{}`",
            hostname(1)
        )),
        "{}",
        out.stdout
    );
    let again = c.run(&["join.toml"]);
    again.code(0);
    assert_eq!(
        again.recap("host2"),
        "ok=1 changed=0 failed=0 skipped=0 unreachable=0 cached=0"
    );
    c.assert_clean();
}

#[test]
fn removes_two_unhealthy_replicas_in_one_call() {
    let c = Cluster::new(5, "");
    c.init("2.7.2", &[A, B, C, D, E]);
    c.set(&format!("replicas/{D}/healthy"), "false");
    c.set(&format!("replicas/{E}/running"), "false");
    let out = c.run(&["remove.toml", "-e", &format!("replica_ids={D},{E}")]);
    out.code(0);
    assert_eq!(c.status().lines().count(), 3, "{}", out.stdout);
    let removes: Vec<Vec<String>> = c
        .bootstraps()
        .into_iter()
        .filter(|(_, cmd, _)| cmd == "remove")
        .map(|(_, _, flags)| flags)
        .collect();
    assert_eq!(removes.len(), 1, "one call: {removes:?}");
    assert!(removes[0].contains(&format!("{D},{E}")), "{removes:?}");
    assert!(
        removes[0].contains(&"--replica-ids".to_owned()),
        "{removes:?}"
    );
    assert!(
        out.line("host4", "Remove DTR replicas")
            .starts_with(&format!("changed (removed replicas `{D}`")),
        "{}",
        out.stdout
    );
    c.assert_clean();
}

#[test]
fn join_and_remove_are_refused_while_a_replica_is_unhealthy() {
    let c = Cluster::new(5, "");
    c.init("2.7.2", &[A, B, C]);
    c.set(&format!("replicas/{C}/healthy"), "false");
    let join = c.run(&["join.toml"]);
    join.code(3);
    assert!(
        join.stdout.contains(&format!(
            "while replica `{C}` (unhealthy: /_ping answered with an HTTP error"
        )),
        "{}",
        join.stdout
    );
    assert!(join.stdout.contains("DTR's join refuses"));
    let remove = c.run(&[
        "remove.toml",
        "-e",
        &format!("replica_ids={B}"),
        "-e",
        "allow_even_replicas=true",
    ]);
    remove.code(3);
    assert!(
        remove.stdout.contains(&format!(
            "refused: cannot remove healthy replica `{B}` while `{C}` unhealthy"
        )),
        "{}",
        remove.stdout
    );
    assert!(c.bootstraps().is_empty(), "nothing ran");
    assert_eq!(c.status().lines().count(), 3);
    c.assert_clean();
}

#[test]
fn a_flag_the_version_lacks_is_refused_offline() {
    let c = Cluster::new(1, "");
    let upgrade =
        std::fs::read_to_string(c.project.path("templates/dtr-upgrade.j2")).expect("read");
    c.project.file(
        "templates/dtr-upgrade.j2",
        &upgrade.replace("upgrade \\\n", "upgrade --no-image-check \\\n"),
    );
    let out = c.validate(&["upgrade.toml"]);
    out.code(3);
    assert!(
        out.stderr.contains(
            "`dtr-upgrade.j2` for DTR 2.7.2: DTR 2.7.2's `upgrade` has no flag `--no-image-check`"
        ),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("for DTR 2.6.8"),
        "2.6 has the flag: {}",
        out.stderr
    );

    // Without a CA or the insecure switch, the bootstrapper cannot verify UCP: an offline
    // error too.
    let inv = std::fs::read_to_string(c.project.path("inventory.toml")).expect("read");
    c.project
        .file("inventory.toml", &inv.replace("ucp_ca = \"fetch\"\n", ""));
    let out = c.validate(&["join.toml"]);
    out.code(3);
    assert!(
        out.stderr.contains("cannot verify UCP's TLS certificate"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_lost_connection_is_reported_unreachable_not_failed() {
    let c = Cluster::new(3, "");
    c.init("2.7.2", &[A, B, C]);
    c.knob("drop.connection", &hostname(1));
    let out = c.run(&["preflight.toml"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.line("host2", "DTR pre-flight checks")
            .starts_with("unreachable"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.recap("host2"),
        "ok=0 changed=0 failed=0 skipped=0 unreachable=1 cached=0"
    );
}

#[test]
fn a_blocked_path_and_a_two_replica_end_are_refused_before_any_change() {
    let c = Cluster::new(3, "");
    c.init("2.5.3", &[A, B, C]);
    // The upgrade task alone: upgrade.toml's pre-flight would refuse first.
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
    assert!(
        out.stdout.contains(
            "refused: skip minor version (2.5.3 -> 2.7.2): when upgrading between minor \
             versions you cannot skip versions"
        ),
        "{}",
        out.stdout
    );
    let remove = c.run(&[
        "remove.toml",
        "-e",
        "remove_nodes=host3",
        "-e",
        "dtr_version=2.5.3",
    ]);
    remove.code(3);
    assert!(
        remove
            .stdout
            .contains("refused: the DTR cluster would end with 2 replicas"),
        "{}",
        remove.stdout
    );
    assert!(c.bootstraps().is_empty());
    assert_eq!(c.status().lines().count(), 3);
}

#[test]
fn scale_replaces_an_unhealthy_replica_with_a_ca_given_as_a_secret() {
    let c = Cluster::new(4, "dtr_replicas = 3");
    c.init("2.7.2", &[A, B, C]);
    // UCP's CA as PEM text from the environment instead of "fetch".
    let inv = std::fs::read_to_string(c.project.path("inventory.toml")).expect("read");
    c.project.file(
        "inventory.toml",
        &inv.replace("ucp_ca = \"fetch\"", "ucp_ca = { env = \"UCP_CA_PEM\" }"),
    );
    let pem = c.get("ucp/ca");
    let pem = pem.as_str().expect("pem");
    c.set(&format!("replicas/{C}/healthy"), "false");
    let mut all = vec!["run", "-i", "inventory.toml", "scale.toml"];
    all.push("-v");
    let out = c.project.run_env(
        &all,
        &[
            ("UCP_PASSWORD", UCP_PASSWORD),
            ("DTR_API_TOKEN", API_TOKEN),
            ("UCP_CA_PEM", pem),
        ],
    );
    c.printed.borrow_mut().push(out.all());
    out.code(0);
    // The unhealthy replica goes first, then a new one joins on the first free node.
    let id3 = capstan::rules::replica_id_for(UCP_URL, &hostname(2));
    let status = c.status();
    assert!(!status.contains(C), "{status}");
    assert!(
        status.contains(&format!("{id3} {} 2.7.2 true", hostname(2))),
        "{}",
        out.stdout
    );
    let cmds: Vec<String> = c.bootstraps().into_iter().map(|(_, cmd, _)| cmd).collect();
    assert_eq!(cmds, ["remove", "join"]);
    c.assert_clean();
}

#[test]
fn pulls_online_or_from_an_archive_only_where_missing() {
    let c = Cluster::new(2, "");
    c.init("2.6.8", &[A]);
    let images: String = [
        "dtr-api",
        "dtr-garant",
        "dtr-jobrunner",
        "dtr-nginx",
        "dtr-notary-server",
        "dtr-notary-signer",
        "dtr-registry",
        "dtr-rethink",
        "dtr-postgres",
        "dtr",
    ]
    .iter()
    .map(|i| format!("docker/{i}:2.7.2\n"))
    .collect();
    c.project.file(
        "files/dtr-2.7.2.tar.gz",
        &format!("dtr-sim image archive\n{images}"),
    );
    c.project.file(
        "pull.toml",
        r#"
[[plays]]
name = "Pull"
hosts = "dtr"

[[plays.tasks]]
name = "Load the DTR image"
pull = { version = "2.7.2", archives = "files" }
"#,
    );
    c.knob("offline", "");
    let out = c.run(&["pull.toml"]);
    out.code(0);
    assert_eq!(
        out.line("host1", "Load the DTR image"),
        "changed (loaded `docker/dtr:2.7.2` from `files/dtr-2.7.2.tar.gz`)"
    );
    let again = c.run(&["pull.toml"]);
    assert_eq!(
        again.line("host2", "Load the DTR image"),
        "ok (every image of `docker/dtr:2.7.2` present)"
    );
}

#[test]
fn a_replica_on_no_inventory_host_is_counted_by_the_ha_rules() {
    let c = Cluster::new(3, "");
    // A fourth replica runs on a node the inventory does not list.
    c.init("2.7.2", &[A, B, C, D]);
    let pre = c.run(&["preflight.toml", "-e", "dtr_version=2.7.2"]);
    pre.code(0);
    assert!(
        pre.stdout.contains(&format!(
            "warning: replicas on no host of this run, counted by the HA rules: `{D}`"
        )),
        "{}",
        pre.stdout
    );
    // 4 replicas, one removed: 3 remain, which the rules allow (3 counted alone would
    // leave 2, which they refuse).
    let out = c.run(&["remove.toml", "-e", "remove_nodes=host3"]);
    out.code(0);
    assert_eq!(c.status().lines().count(), 3, "{}", out.stdout);
    c.assert_clean();
}

#[test]
fn a_hanging_upgrade_stops_at_its_own_timeout() {
    let c = Cluster::new(1, "dtr_upgrade_timeout = \"3s\"");
    c.init("2.6.8", &[A]);
    c.knob("hang.upgrade", "");
    let started = std::time::Instant::now();
    let out = c.run(&["upgrade.toml"]);
    out.code(2);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(
        out.stdout
            .contains("the upgrade to 2.7.2 failed on `host1` (timed out after 3s)"),
        "{}",
        out.stdout
    );
}

/// Runs a simulator command (`docker` or `curl`) as node `node` of state directory `sim`:
/// exit code, stdout, stderr.
fn sim_call(sim: &Path, node: &str, prog: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(repo(&format!("tests/sim/{prog}")))
        .args(args)
        .env("DTR_SIM_DIR", sim)
        .env("NODE_NAME", node)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("simulator runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_simulator_answers_as_its_sources_say_and_fails_loudly_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dir.path();
    let call = |prog: &str, args: &[&str]| sim_call(sim, "n1", prog, args);
    let (code, ..) = call(
        "docker",
        &[
            "dtr-sim",
            "init",
            "--version",
            "2.7.2",
            "--nodes",
            "n1",
            "--replicas",
            &format!("{A}@n1"),
            "--ucp-password",
            "pw",
            "--api-token",
            "tok",
        ],
    );
    assert_eq!(code, 0);
    // Go's flag package through urfave/cli [G-cli].
    let (code, _, err) = call(
        "docker",
        &[
            "run",
            "--rm",
            "docker/dtr:2.7.2",
            "upgrade",
            "--no-image-check",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Incorrect Usage: flag provided but not defined: -no-image-check\n"),
        "{err}"
    );
    // docker/cli CheckTty [G-tty].
    let (code, _, err) = call(
        "docker",
        &["run", "-it", "--rm", "docker/dtr:2.7.2", "images"],
    );
    assert_eq!((code, err.as_str()), (1, "the input device is not a TTY\n"));
    // No CA and no --ucp-insecure-tls: UCP's certificate cannot be verified [D-join27].
    let (code, _, err) = call(
        "docker",
        &[
            "run",
            "--rm",
            "-e",
            "UCP_PASSWORD=pw",
            "docker/dtr:2.7.2",
            "remove",
            "--ucp-url",
            "https://ucp.test",
            "--ucp-username",
            "admin",
            "--existing-replica-id",
            A,
            "--replica-ids",
            B,
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("x509: certificate signed by unknown authority"),
        "{err}"
    );
    // docker ps -a with the documented name filter [D-ps], [D-tshoot].
    let (code, out, _) = call(
        "docker",
        &[
            "ps",
            "-a",
            "--filter",
            "name=^/dtr-rethinkdb-.{12}$",
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, format!("dtr-rethinkdb-{A}\n").as_str())
    );
    // curl: an unknown option [C-exit], TLS without the CA, /_ping on the node.
    let (code, _, err) = call("curl", &["--frobnicate", "https://dtr.test/_ping"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = call("curl", &["-fsS", "https://dtr.test/api/v0/jobs"]);
    assert_eq!(code, 60, "{err}");
    let (code, out, _) = call(
        "curl",
        &[
            "-fsS",
            "-k",
            "--resolve",
            "dtr.test:443:127.0.0.1",
            "https://dtr.test:443/_ping",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "{\"Error\": \"\", \"Healthy\": true}")
    );
    let (code, _, err) = call(
        "curl",
        &[
            "-fsS",
            "-k",
            "-u",
            "admin:wrong",
            "https://dtr.test/api/v0/jobs",
        ],
    );
    assert_eq!(
        (code, err.as_str()),
        (22, "curl: (22) The requested URL returned error: 401\n")
    );
    // Anything not modelled fails loudly.
    let (code, _, err) = call("docker", &["node", "ls"]);
    assert_eq!(code, 97);
    assert!(
        err.starts_with("dtr-sim: not modelled: docker node"),
        "{err}"
    );
    let (code, _, err) = call(
        "curl",
        &[
            "-fsS",
            "-k",
            "-u",
            "admin:tok",
            "https://dtr.test/api/v0/repositories",
        ],
    );
    assert_eq!(code, 97, "{err}");
}
