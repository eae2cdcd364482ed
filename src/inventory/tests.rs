//! Loading whole inventories: connection settings, precedence, group order, patterns,
//! output, and the corpus of malformed inventories under `tests/corpus/inventory`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn env(name: &str) -> Option<OsString> {
    match name {
        "HOME" => Some("/home/op".into()),
        "CAPSTAN_T_SSH_PASS" => Some("ssh-pa55-a8e".into()),
        "UCP_PASSWORD" | "STAGING_UCP_PASSWORD" | "PROD_UCP_PASSWORD" => {
            Some("ucp-pa55-5d0".into())
        }
        "CAPSTAN_CORPUS_EMPTY" => Some(OsString::new()),
        _ => None,
    }
}

fn load(src: &str) -> Result<Inventory, Diagnostics> {
    parse::parse(Path::new("inv/test.toml"), src, &env)
}

fn ok(src: &str) -> Inventory {
    match load(src) {
        Ok(inv) => inv,
        Err(e) => panic!("{e}"),
    }
}

fn messages(src: &str) -> Vec<String> {
    match load(src) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.into_iter().map(|d| d.message).collect(),
    }
}

fn names(hosts: &[&Host]) -> Vec<String> {
    hosts.iter().map(|h| h.name.clone()).collect()
}

fn var<'a>(vars: &'a Vars, key: &str) -> &'a str {
    vars.get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or("<missing>")
}

const CLUSTER: &str = r#"
[defaults]
user = "deploy"
port = 22
identity_file = "~/.ssh/id_ed25519"
known_hosts = "known_hosts"
connect_timeout = "10s"
command_timeout = "30m"
host_key_checking = "accept-new"
proxy_jump = "bastion"
password = { env = "CAPSTAN_T_SSH_PASS" }

[vars]
dtr_version = "2.7.1"
ucp_password = { env = "UCP_PASSWORD" }

[settings]
cluster = "dtr-prod"

[hosts.bastion]
address = "192.0.2.1"
proxy_jump = []

[hosts.ucp-1]
address = "10.0.0.1"

[hosts.dtr-1]
address = "10.0.1.11"
port = 2222
identity_file = ["a", "/k/b"]
proxy_jump = "jump1, jump2"
vars = { replica_id = "a1b2c3d4e5f6" }

[hosts.dtr-2]
address = "10.0.1.12"

[hosts.cache-1]

[groups.ucp]
hosts = ["ucp-1"]

[groups.dtr]
hosts = ["dtr-1", "dtr-2"]
vars = { dtr_port = 443 }
children = ["dtr-cache"]

[groups.dtr-cache]
hosts = ["cache-1"]
"#;

#[test]
fn applies_defaults_and_host_overrides() {
    let inv = ok(CLUSTER);
    let hosts: Vec<&str> = inv.hosts.keys().map(String::as_str).collect();
    assert_eq!(hosts, ["bastion", "ucp-1", "dtr-1", "dtr-2", "cache-1"]);
    let dtr1 = &inv.hosts["dtr-1"];
    assert_eq!(dtr1.address.as_deref(), Some("10.0.1.11"));
    assert_eq!(dtr1.port, Some(2222));
    assert_eq!(dtr1.user.as_deref(), Some("deploy"));
    assert_eq!(
        dtr1.identity_files,
        [PathBuf::from("inv/a"), PathBuf::from("/k/b")]
    );
    assert_eq!(dtr1.proxy_jump, ["jump1", "jump2"]);
    assert_eq!(dtr1.known_hosts, Some(PathBuf::from("inv/known_hosts")));
    assert_eq!(dtr1.line, 27);
    let dtr2 = &inv.hosts["dtr-2"];
    assert_eq!(dtr2.port, Some(22));
    assert_eq!(
        dtr2.identity_files,
        [PathBuf::from("/home/op/.ssh/id_ed25519")]
    );
    assert_eq!(dtr2.connect_timeout, Some(Duration::from_secs(10)));
    assert_eq!(dtr2.command_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(dtr2.connection, ConnectionKind::Ssh);
    assert_eq!(dtr2.host_key_checking, Some(HostKeyPolicy::AcceptNew));
    assert_eq!(dtr2.proxy_jump, ["bastion"]);
    assert_eq!(dtr2.password.as_deref(), Some("ssh-pa55-a8e"));
    assert!(inv.hosts["bastion"].proxy_jump.is_empty());
    assert_eq!(inv.hosts["cache-1"].address, None);
    assert_eq!(var(&inv.vars, "ucp_password"), "ucp-pa55-5d0");
    assert_eq!(inv.settings.cluster(), "dtr-prod");
    assert!(inv.default_vars.is_empty());
    assert_eq!(inv.groups["dtr"].children, ["dtr-cache"]);
    assert_eq!(inv.groups["dtr"].line, 42);
}

#[test]
fn host_groups_include_parents_in_precedence_order() {
    let inv = ok(CLUSTER);
    assert_eq!(inv.hosts["cache-1"].groups, ["dtr", "dtr-cache"]);
    assert_eq!(inv.hosts["dtr-1"].groups, ["dtr"]);
    assert!(inv.hosts["bastion"].groups.is_empty());
}

#[test]
fn each_level_overrides_the_one_below() {
    let inv = ok(r#"
[vars]
inventory_hostname = "from-vars"
level = "vars"
only_vars = "vars"

[hosts.h1]
vars = { level = "host" }

[hosts.h2]

[groups.g]
hosts = ["h1", "h2"]
vars = { level = "group", only_group = "group" }
"#);
    let h1 = inv.vars_for(&inv.hosts["h1"]);
    let h2 = inv.vars_for(&inv.hosts["h2"]);
    assert_eq!(var(&h1, "level"), "host");
    assert_eq!(var(&h2, "level"), "group");
    assert_eq!(var(&h2, "only_vars"), "vars");
    assert_eq!(var(&h2, "only_group"), "group");
    // Magic variables are the lowest level.
    assert_eq!(var(&h2, "inventory_hostname"), "from-vars");
}

#[test]
fn magic_variables() {
    let inv = ok(CLUSTER);
    let vars = inv.vars_for(&inv.hosts["cache-1"]);
    assert_eq!(var(&vars, "inventory_hostname"), "cache-1");
    assert_eq!(var(&vars, "host_address"), "cache-1");
    assert_eq!(
        vars["group_names"],
        toml::Value::Array(vec!["dtr".into(), "dtr-cache".into()])
    );
    let vars = inv.vars_for(&inv.hosts["dtr-1"]);
    assert_eq!(var(&vars, "host_address"), "10.0.1.11");
    assert_eq!(var(&vars, "replica_id"), "a1b2c3d4e5f6");
    assert_eq!(vars["dtr_port"], toml::Value::Integer(443));
}

#[test]
fn child_group_wins_over_parent_whatever_the_names() {
    // The child sorts first by name but is deeper, so it wins.
    let inv = ok(r#"
[hosts.h]
[groups.zz-parent]
children = ["aa-child"]
vars = { x = "parent" }
[groups.aa-child]
hosts = ["h"]
vars = { x = "child" }
"#);
    let h = &inv.hosts["h"];
    assert_eq!(h.groups, ["zz-parent", "aa-child"]);
    assert_eq!(var(&inv.vars_for(h), "x"), "child");
}

#[test]
fn siblings_apply_by_name_later_wins() {
    let inv = ok(r#"
[hosts.h]
[groups.web]
hosts = ["h"]
vars = { x = "web" }
[groups.db]
hosts = ["h"]
vars = { x = "db" }
"#);
    let h = &inv.hosts["h"];
    assert_eq!(h.groups, ["db", "web"]);
    assert_eq!(var(&inv.vars_for(h), "x"), "web");
}

#[test]
fn depth_is_the_longest_chain_of_parents() {
    // `c` is a child of `a` (depth 1) and of `b` (depth 2), so depth 3: it beats `b`.
    let inv = ok(r#"
[hosts.h]
[groups.a]
children = ["b", "c"]
vars = { x = "a" }
[groups.b]
children = ["c"]
vars = { x = "b" }
[groups.c]
hosts = ["h"]
vars = { x = "c" }
"#);
    let h = &inv.hosts["h"];
    assert_eq!(h.groups, ["a", "b", "c"]);
    assert_eq!(var(&inv.vars_for(h), "x"), "c");
}

#[test]
fn reports_every_problem_in_the_file() {
    let errors = messages(
        r#"
[defaults]
prot = 22
connection = "sssh"

[hosts.dtr-1]
adress = "10.0.0.1"
port = "x"

[groups.dtr]
hosts = ["dtr-4"]
"#,
    );
    assert_eq!(
        errors,
        [
            "unknown key \"prot\" in [defaults]; did you mean \"port\"?",
            "invalid value for \"connection\" in [defaults]: expected \"ssh\" or \"local\", found \"sssh\"; did you mean \"ssh\"?",
            "unknown key \"adress\" in host \"dtr-1\"; did you mean \"address\"?",
            "wrong type for \"port\" in host \"dtr-1\": expected an integer from 1 to 65535, found a string",
            "unknown host \"dtr-4\" in group \"dtr\"; did you mean \"dtr-1\"?",
        ]
    );
}

#[test]
fn names_are_checked() {
    let errors = messages(
        r#"
[hosts.all]
[hosts."a b"]
[hosts.web]
[groups.ungrouped]
[groups.web]
[groups."x,y"]
"#,
    );
    assert_eq!(
        errors,
        [
            "\"all\" is reserved and cannot name a host",
            "invalid host name \"a b\"",
            "\"ungrouped\" is reserved and cannot name a group",
            "group \"web\" has the same name as a host",
            "invalid group name \"x,y\"",
        ]
    );
}

#[test]
fn members_of_the_wrong_kind_get_a_hint() {
    let err = load("[hosts.h]\n[groups.g]\nhosts = [\"k\"]\nchildren = [\"h\"]\n[groups.k]\n")
        .unwrap_err();
    assert_eq!(
        err.0[0].hint.as_deref(),
        Some("\"k\" is a group; list it in `children`")
    );
    assert_eq!(err.0[1].message, "unknown child group \"h\" in group \"g\"");
    assert_eq!(
        err.0[1].hint.as_deref(),
        Some("\"h\" is a host; list it in `hosts`")
    );
}

#[test]
fn a_member_listed_twice_is_an_error() {
    let err = load("[hosts.h]\n[groups.g]\nhosts = [\"h\", \"h\"]\n").unwrap_err();
    assert_eq!(
        err.0[0].message,
        "\"h\" is listed twice in \"hosts\" of group \"g\""
    );
    assert_eq!(err.0[0].column, 15);
}

#[test]
fn cycles_are_named_once() {
    let errors = messages(
        r#"
[groups.dtr]
children = ["cache"]
[groups.cache]
children = ["dtr"]
[groups.self]
children = ["self"]
"#,
    );
    assert_eq!(
        errors,
        [
            "group cycle: dtr -> cache -> dtr",
            "group cycle: self -> self"
        ]
    );
}

#[test]
fn a_password_in_clear_is_refused_and_not_echoed() {
    let err = load("[defaults]\npassword = \"hunter2-clear\"\n").unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(
            "\"password\" in [defaults] must be a secret: { env = \"NAME\" } or { file = \"path\" }"
        ),
        "{shown}"
    );
    assert!(!shown.contains("hunter2-clear"), "{shown}");
    assert!(shown.contains("password = ********"), "{shown}");
}

#[test]
fn local_connection_and_empty_file() {
    let inv = ok("[defaults]\nconnection = \"local\"\n[hosts.localhost]\n");
    assert_eq!(inv.hosts["localhost"].connection, ConnectionKind::Local);
    let inv = ok("");
    assert!(inv.hosts.is_empty() && inv.groups.is_empty());
}

// ---- patterns ----

const PATTERNS: &str = r#"
[hosts.ucp-1]
[hosts.ucp-2]
[hosts.dtr-1]
[hosts.dtr-2]
[hosts.dtr-3]
[hosts.cache-1]
[hosts.web1]
[hosts.web2]
[hosts.web3]
[groups.ucp]
hosts = ["ucp-1", "ucp-2"]
[groups.dtr]
hosts = ["dtr-3", "dtr-1", "dtr-2"]
children = ["dtr-cache"]
[groups.dtr-cache]
hosts = ["cache-1"]
[groups.managers]
hosts = ["ucp-1", "dtr-1"]
[groups.empty]
"#;

fn select(pattern: &str) -> Result<Vec<String>, PatternError> {
    let inv = ok(PATTERNS);
    inv.select(pattern).map(|hosts| names(&hosts))
}

#[test]
fn selects_names_groups_and_globs() {
    assert_eq!(select("dtr-2").unwrap(), ["dtr-2"]);
    assert_eq!(
        select("dtr").unwrap(),
        ["dtr-1", "dtr-2", "dtr-3", "cache-1"]
    );
    assert_eq!(
        select("dtr-*").unwrap(),
        ["dtr-1", "dtr-2", "dtr-3", "cache-1"]
    );
    assert_eq!(select("web[12]").unwrap(), ["web1", "web2"]);
    assert_eq!(select("web?").unwrap(), ["web1", "web2", "web3"]);
    assert_eq!(select("all").unwrap().len(), 9);
    assert_eq!(select("*").unwrap().len(), 9);
    assert_eq!(select("ungrouped").unwrap(), ["web1", "web2", "web3"]);
    assert_eq!(select("empty").unwrap(), Vec::<String>::new());
}

#[test]
fn unions_then_intersections_then_exclusions_in_inventory_order() {
    assert_eq!(select("web1,ucp,web1").unwrap(), ["ucp-1", "ucp-2", "web1"]);
    assert_eq!(
        select("ucp:dtr-cache").unwrap(),
        ["ucp-1", "ucp-2", "cache-1"]
    );
    assert_eq!(select("dtr,&managers").unwrap(), ["dtr-1"]);
    assert_eq!(select("!dtr,ucp").unwrap(), ["ucp-1", "ucp-2"]);
    assert_eq!(select("dtr:!dtr-cache:!dtr-2").unwrap(), ["dtr-1", "dtr-3"]);
    assert_eq!(select("&managers,ucp,dtr").unwrap(), ["ucp-1", "dtr-1"]);
    assert_eq!(select("!dtr,!ucp,!web*").unwrap(), Vec::<String>::new());
    assert_eq!(select("!web*").unwrap().len(), 6);
    assert_eq!(select("dtr-1,").unwrap(), ["dtr-1"]);
    assert_eq!(select("dtr,&ucp").unwrap(), Vec::<String>::new());
}

#[test]
fn pattern_errors() {
    assert_eq!(
        select("dtr-4").unwrap_err().to_string(),
        "unknown host or group \"dtr-4\"; did you mean \"dtr-1\"?"
    );
    assert_eq!(
        select("zzz").unwrap_err().to_string(),
        "unknown host or group \"zzz\""
    );
    assert_eq!(
        select("dtr,!ucpp").unwrap_err().to_string(),
        "unknown host or group \"ucpp\"; did you mean \"ucp\"?"
    );
    assert_eq!(
        select("db-*").unwrap_err().to_string(),
        "host pattern \"db-*\" matches no host or group"
    );
    assert_eq!(select("").unwrap_err(), PatternError::Empty);
    assert_eq!(select(" , ").unwrap_err(), PatternError::Empty);
    assert_eq!(
        select("dtr,!").unwrap_err().to_string(),
        "missing host or group name after \"!\" in host pattern \"dtr,!\""
    );
    assert!(matches!(
        select("web[").unwrap_err(),
        PatternError::BadGlob { .. }
    ));
    let inv = ok(PATTERNS);
    assert!(inv.check_pattern("dtr:&managers").is_ok());
    assert!(inv.check_pattern("dtr-9").is_err());
}

// ---- output ----

#[test]
fn list_json_merges_vars_and_masks_secrets() {
    let inv = ok(CLUSTER);
    let list = inv.list_json();
    let dtr1 = &list["hosts"]["dtr-1"];
    assert_eq!(dtr1["address"], "10.0.1.11");
    assert_eq!(dtr1["port"], 2222);
    assert_eq!(dtr1["user"], "deploy");
    assert_eq!(dtr1["connection"], "ssh");
    assert_eq!(dtr1["groups"], serde_json::json!(["dtr"]));
    assert_eq!(dtr1["vars"]["replica_id"], "a1b2c3d4e5f6");
    assert_eq!(dtr1["vars"]["dtr_port"], 443);
    assert_eq!(dtr1["vars"]["ucp_password"], crate::secrets::MASK);
    assert_eq!(list["hosts"]["cache-1"]["address"], serde_json::Value::Null);
    assert_eq!(
        list["groups"]["dtr"],
        serde_json::json!({
            "hosts": ["dtr-1", "dtr-2"],
            "children": ["dtr-cache"],
            "vars": { "dtr_port": 443 },
        })
    );
    assert!(!list.to_string().contains("ucp-pa55-5d0"));
    assert_eq!(inv.host_json("dtr-1").unwrap(), *dtr1);
    assert_eq!(
        inv.host_json("dtr-9").unwrap_err().to_string(),
        "unknown host \"dtr-9\"; did you mean \"dtr-1\"?"
    );
}

#[test]
fn graph_draws_the_tree() {
    let inv = ok(CLUSTER);
    assert_eq!(
        inv.graph(),
        "\
@all:
  |--@dtr:
  |  |--@dtr-cache:
  |  |  |--cache-1
  |  |--dtr-1
  |  |--dtr-2
  |--@ucp:
  |  |--ucp-1
  |--@ungrouped:
  |  |--bastion"
    );
}

// ---- files ----

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn example_inventories_load() {
    for name in ["staging", "prod", "local"] {
        let path = manifest_path(&format!("inventories/{name}.toml"));
        let inv = match parse::load(&path, &env) {
            Ok(inv) => inv,
            Err(e) => panic!("{name}: {e}"),
        };
        assert!(!inv.hosts.is_empty(), "{name}");
        if name == "local" {
            assert_eq!(inv.hosts["localhost"].connection, ConnectionKind::Local);
            continue;
        }
        assert_eq!(inv.select("ucp").unwrap().len(), 3, "{name}");
        assert_eq!(inv.select("dtr,!dtr-cache").unwrap().len(), 3, "{name}");
        assert_eq!(inv.select("dtr-cache").unwrap().len(), 1, "{name}");
        for host in inv.select("dtr,!dtr-cache").unwrap() {
            let vars = inv.vars_for(host);
            let id = var(&vars, "replica_id");
            assert!(
                id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}: {}: {id}",
                host.name
            );
            assert_eq!(var(&vars, "dtr_org"), "docker");
            assert_eq!(var(&vars, "ucp_password"), "ucp-pa55-5d0");
        }
    }
}

/// Each `tests/corpus/inventory/NAME.toml` fails to load; its first diagnostic starts with
/// the two lines in `NAME.expected` (message, then location).
#[test]
fn corpus_of_malformed_inventories() {
    let dir = manifest_path("tests/corpus/inventory");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "only {} corpus files", files.len());
    let prefix = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for file in &files {
        let expected = std::fs::read_to_string(file.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let shown = match parse::load(file, &env) {
            Ok(_) => "loaded without error".to_owned(),
            Err(e) => e.0[0].to_string().replace(&prefix, ""),
        };
        let got: Vec<&str> = shown.lines().take(2).collect();
        let want: Vec<&str> = expected.lines().take(2).collect();
        if got != want {
            failures.push(format!(
                "{}:\n  want: {want:?}\n  got:  {got:?}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
