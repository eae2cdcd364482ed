//! The DTR task kinds as written in a playbook: which parameters each takes, of what type,
//! which are required and what the others default to.
//!
//! Every parameter is a template rendered per host; a default is a template too, so
//! `min_replicas` defaults to `{{ dtr_min_replicas | default(1) }}` and the inventory (or
//! `-e`) decides. The table here is the one source the playbook reader, `validate` and the
//! executors share.

use std::fmt;
use std::ops::Range;

/// One DTR task kind: the action key of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtrKind {
    /// Gathers replica facts and checks the "Upgrade DTR" pre-flight conditions.
    Check,
    /// Puts the DTR image on each node (`docker pull`, or `docker load` of an archive).
    Pull,
    /// Upgrades the cluster hop by hop, one `upgrade` run per hop.
    Upgrade,
    /// Joins a replica on each targeted node without one.
    Join,
    /// Removes the replicas of the targeted nodes or ids.
    Remove,
    /// Brings the cluster to a replica count.
    Scale,
}

impl DtrKind {
    pub const ALL: [DtrKind; 6] = [
        DtrKind::Check,
        DtrKind::Pull,
        DtrKind::Upgrade,
        DtrKind::Join,
        DtrKind::Remove,
        DtrKind::Scale,
    ];

    /// The action key as written in a playbook.
    pub fn key(self) -> &'static str {
        match self {
            DtrKind::Check => "check",
            DtrKind::Pull => "pull",
            DtrKind::Upgrade => "upgrade",
            DtrKind::Join => "join",
            DtrKind::Remove => "remove",
            DtrKind::Scale => "scale",
        }
    }

    pub fn from_key(key: &str) -> Option<DtrKind> {
        DtrKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// The parameters this kind takes.
    pub fn params(self) -> &'static [ParamDef] {
        match self {
            DtrKind::Check => CHECK,
            DtrKind::Pull => PULL,
            DtrKind::Upgrade => UPGRADE,
            DtrKind::Join => JOIN,
            DtrKind::Remove => REMOVE,
            DtrKind::Scale => SCALE,
        }
    }

    pub fn param(self, name: &str) -> Option<&'static ParamDef> {
        self.params().iter().find(|p| p.name == name)
    }

    /// The command templates (`templates/dtr-*.j2`) this kind may render.
    pub fn templates(self) -> &'static [&'static str] {
        match self {
            DtrKind::Pull | DtrKind::Check => &[],
            DtrKind::Upgrade => &[UPGRADE_TEMPLATE],
            DtrKind::Join => &[JOIN_TEMPLATE],
            DtrKind::Remove => &[REMOVE_TEMPLATE],
            DtrKind::Scale => &[JOIN_TEMPLATE, REMOVE_TEMPLATE],
        }
    }

    /// An example of the kind's table, for messages.
    pub fn example(self) -> &'static str {
        match self {
            DtrKind::Check => {
                "{ version = \"{{ dtr_version }}\", ucp_url = \"…\", ucp_username = \"…\", \
                 ucp_password = \"{{ ucp_password }}\", backup_time_command = \"…\" }"
            }
            DtrKind::Pull => "{ version = \"{{ dtr_version }}\" }",
            DtrKind::Upgrade => {
                "{ version = \"{{ dtr_version }}\", available = [\"2.6.8\", \"2.7.2\"], \
                 ucp_url = \"…\", ucp_username = \"…\", ucp_password = \"{{ ucp_password }}\" }"
            }
            DtrKind::Join | DtrKind::Remove => {
                "{ nodes = \"dtr-4\", ucp_url = \"…\", ucp_username = \"…\", \
                 ucp_password = \"{{ ucp_password }}\" }"
            }
            DtrKind::Scale => {
                "{ replicas = 3, nodes = \"dtr\", ucp_url = \"…\", ucp_username = \"…\", \
                 ucp_password = \"{{ ucp_password }}\" }"
            }
        }
    }
}

impl fmt::Display for DtrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

pub const UPGRADE_TEMPLATE: &str = "dtr-upgrade.j2";
pub const JOIN_TEMPLATE: &str = "dtr-join.j2";
pub const REMOVE_TEMPLATE: &str = "dtr-remove.j2";

/// What a parameter renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Text,
    /// Text that is a secret: registered for masking when rendered, and only ever sent to a
    /// host on a command's stdin.
    Secret,
    Bool,
    Count,
    /// `"90s"`, `"1h 30m"` or a number of seconds.
    Duration,
    /// A TOML list, or text rendering to a comma- or space-separated list.
    List,
    /// A shell command run on a host, rendered in shell mode (every value quoted) when it
    /// runs, with `node`, `replica_id` and `version` added to the variables.
    Command,
    /// A host pattern (see `inventory::pattern`).
    Pattern,
    /// A path on the control machine.
    Path,
    /// A TOML table, or a template rendering to a JSON object.
    Table,
}

impl ParamType {
    /// What the TOML value may be, for messages.
    pub fn expected(self) -> &'static str {
        match self {
            ParamType::Text | ParamType::Secret | ParamType::Path => "a string",
            ParamType::Command => "a command string",
            ParamType::Pattern => "a host pattern string like \"dtr:!dtr-cache\"",
            ParamType::Bool => "true or false (or a template string rendering to one)",
            ParamType::Count => "a whole number (or a template string rendering to one)",
            ParamType::Duration => crate::duration::EXAMPLES,
            ParamType::List => "a list of strings (or a template string rendering to one)",
            ParamType::Table => "a table (or a template string rendering to a JSON object)",
        }
    }
}

/// One parameter a kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    pub name: &'static str,
    pub ty: ParamType,
    pub required: bool,
    /// Template used when the parameter is not written.
    pub default: Option<&'static str>,
}

const fn req(name: &'static str, ty: ParamType) -> ParamDef {
    ParamDef {
        name,
        ty,
        required: true,
        default: None,
    }
}

const fn opt(name: &'static str, ty: ParamType) -> ParamDef {
    ParamDef {
        name,
        ty,
        required: false,
        default: None,
    }
}

const fn def(name: &'static str, ty: ParamType, default: &'static str) -> ParamDef {
    ParamDef {
        name,
        ty,
        required: false,
        default: Some(default),
    }
}

use ParamType::{Bool, Command, Count, Duration, List, Path, Pattern, Secret, Table, Text};

const IMAGE: ParamDef = def("image", Text, "docker/dtr");
const DTR_NODES: ParamDef = def("dtr_nodes", Pattern, "dtr");
const CACHE_NODES: ParamDef = def("cache_nodes", Pattern, "dtr-cache");
const UCP_URL: ParamDef = req("ucp_url", Text);
const UCP_USERNAME: ParamDef = req("ucp_username", Text);
const UCP_PASSWORD: ParamDef = req("ucp_password", Secret);
/// UCP's CA: a PEM, a file on the control machine holding one, or `fetch` (from
/// `{{ ucp_url }}/ca` on the node). Passed to the bootstrapper as `--ucp-ca` (through its
/// environment variable `UCP_CA`) and to curl as `--cacert`.
const UCP_CA: ParamDef = def("ucp_ca", Text, "{{ ucp_ca | default('') }}");
const UCP_INSECURE_TLS: ParamDef = def(
    "ucp_insecure_tls",
    Bool,
    "{{ ucp_insecure_tls | default(false) }}",
);
const DTR_URL: ParamDef = def("dtr_url", Text, "{{ dtr_external_url | default('') }}");
/// DTR's CA, in the same forms as `ucp_ca` (`fetch` reads `{{ dtr_url }}/ca`).
const DTR_CA: ParamDef = def("dtr_ca", Text, "{{ dtr_ca | default('') }}");
const DTR_INSECURE_TLS: ParamDef = def(
    "dtr_insecure_tls",
    Bool,
    "{{ dtr_insecure_tls | default(false) }}",
);
/// The replica's HTTPS port on its node, where `/_ping` answers.
const HTTPS_PORT: ParamDef = def(
    "replica_https_port",
    Count,
    "{{ dtr_replica_https_port | default(443) }}",
);
const API_USERNAME: ParamDef = def("api_username", Text, "{{ dtr_api_username | default('') }}");
const API_TOKEN: ParamDef = def("api_token", Secret, "{{ dtr_api_token | default('') }}");
const ALLOW_EVEN: ParamDef = def(
    "allow_even_replicas",
    Bool,
    "{{ allow_even_replicas | default(false) }}",
);
const MIN_REPLICAS: ParamDef = def("min_replicas", Count, "{{ dtr_min_replicas | default(1) }}");
const HEALTH_TIMEOUT: ParamDef = def("health_timeout", Duration, "10m");
const HEALTH_POLL: ParamDef = def("health_poll", Duration, "5s");
const ALLOW_PRERELEASE: ParamDef = def("allow_prerelease", Bool, "false");
/// How long one bootstrapper command may run (an upgrade hop replaces every container).
const BOOTSTRAP_TIMEOUT: ParamDef = def(
    "upgrade_timeout",
    Duration,
    "{{ dtr_upgrade_timeout | default('2h') }}",
);

const CHECK: &[ParamDef] = &[
    req("version", Text),
    opt("available", List),
    ALLOW_PRERELEASE,
    IMAGE,
    DTR_NODES,
    CACHE_NODES,
    UCP_URL,
    UCP_USERNAME,
    UCP_PASSWORD,
    UCP_CA,
    UCP_INSECURE_TLS,
    DTR_URL,
    DTR_CA,
    DTR_INSECURE_TLS,
    HTTPS_PORT,
    API_USERNAME,
    API_TOKEN,
    req("backup_time_command", Command),
    def("backup_node", Text, "{{ dtr_backup_node | default('') }}"),
    def("max_backup_age", Duration, "24h"),
    def("min_ram_gb", Count, "16"),
    def(
        "ucp_compat",
        Table,
        "{{ ucp_compat | default({}) | tojson }}",
    ),
    def("ucp_nodes", Pattern, "ucp"),
];

const PULL: &[ParamDef] = &[
    req("version", Text),
    opt("available", List),
    ALLOW_PRERELEASE,
    IMAGE,
    // A directory on the control machine with `dtr-<version>.tar.gz` per version.
    def("archives", Path, "{{ dtr_offline_archives | default('') }}"),
    DTR_NODES,
    CACHE_NODES,
    DTR_URL,
    DTR_CA,
    DTR_INSECURE_TLS,
    HTTPS_PORT,
    API_USERNAME,
    API_TOKEN,
];

const UPGRADE: &[ParamDef] = &[
    req("version", Text),
    opt("available", List),
    ALLOW_PRERELEASE,
    IMAGE,
    DTR_NODES,
    UCP_URL,
    UCP_USERNAME,
    UCP_PASSWORD,
    UCP_CA,
    UCP_INSECURE_TLS,
    DTR_URL,
    DTR_CA,
    DTR_INSECURE_TLS,
    HTTPS_PORT,
    API_USERNAME,
    API_TOKEN,
    BOOTSTRAP_TIMEOUT,
    def("migration_timeout", Duration, "1h"),
    def("migration_poll", Duration, "15s"),
    def(
        "vuln_db_archive",
        Text,
        "{{ dtr_vuln_db_archive | default('') }}",
    ),
    CACHE_NODES,
    opt("cache_version_command", Command),
    opt("cache_upgrade", Command),
];

const JOIN_EXTRAS: [ParamDef; 4] = [
    opt("replica_http_port", Count),
    def("skip_network_test", Bool, "false"),
    def("unsafe_join", Bool, "false"),
    opt("lb_add", Command),
];

const JOIN: &[ParamDef] = &[
    opt("nodes", Pattern),
    IMAGE,
    DTR_NODES,
    CACHE_NODES,
    UCP_URL,
    UCP_USERNAME,
    UCP_PASSWORD,
    UCP_CA,
    UCP_INSECURE_TLS,
    DTR_URL,
    DTR_CA,
    DTR_INSECURE_TLS,
    HTTPS_PORT,
    API_USERNAME,
    API_TOKEN,
    BOOTSTRAP_TIMEOUT,
    ALLOW_EVEN,
    MIN_REPLICAS,
    JOIN_EXTRAS[0],
    JOIN_EXTRAS[1],
    JOIN_EXTRAS[2],
    JOIN_EXTRAS[3],
    HEALTH_TIMEOUT,
    HEALTH_POLL,
];

const REMOVE: &[ParamDef] = &[
    opt("nodes", Pattern),
    opt("replica_ids", List),
    IMAGE,
    DTR_NODES,
    CACHE_NODES,
    UCP_URL,
    UCP_USERNAME,
    UCP_PASSWORD,
    UCP_CA,
    UCP_INSECURE_TLS,
    DTR_URL,
    DTR_CA,
    DTR_INSECURE_TLS,
    HTTPS_PORT,
    API_USERNAME,
    API_TOKEN,
    BOOTSTRAP_TIMEOUT,
    ALLOW_EVEN,
    MIN_REPLICAS,
    opt("lb_remove", Command),
    HEALTH_TIMEOUT,
    HEALTH_POLL,
];

const SCALE: &[ParamDef] = &[
    req("replicas", Count),
    opt("nodes", Pattern),
    IMAGE,
    DTR_NODES,
    CACHE_NODES,
    UCP_URL,
    UCP_USERNAME,
    UCP_PASSWORD,
    UCP_CA,
    UCP_INSECURE_TLS,
    DTR_URL,
    DTR_CA,
    DTR_INSECURE_TLS,
    HTTPS_PORT,
    API_USERNAME,
    API_TOKEN,
    BOOTSTRAP_TIMEOUT,
    ALLOW_EVEN,
    MIN_REPLICAS,
    JOIN_EXTRAS[0],
    JOIN_EXTRAS[1],
    JOIN_EXTRAS[2],
    JOIN_EXTRAS[3],
    opt("lb_remove", Command),
    HEALTH_TIMEOUT,
    HEALTH_POLL,
];

/// A parameter as written: its template source and where its value is in the playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub source: String,
    pub span: Range<usize>,
}

/// A DTR task as written: its kind and the parameters given (defaults are not filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtrTask {
    pub kind: DtrKind,
    pub params: Vec<Param>,
}

impl DtrTask {
    /// The parameter `name` as written, if it was.
    pub fn written(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The template source of `def`: as written, else its default.
    pub fn source_of(&self, def: &ParamDef) -> Option<&str> {
        self.written(def.name)
            .map(|p| p.source.as_str())
            .or(def.default)
    }
}

/// Rules across parameters, checked after each parameter was read: `(message, hint)`.
pub fn cross_field_problems(task: &DtrTask) -> Vec<(String, &'static str)> {
    let has = |n: &str| task.written(n).is_some();
    let mut out = Vec::new();
    let kind = task.kind;
    if kind == DtrKind::Remove && !has("nodes") && !has("replica_ids") {
        out.push((
            "the remove task names no replica: give \"nodes\" (a host pattern) or \
             \"replica_ids\""
                .to_owned(),
            "remove = { nodes = \"dtr-4\", … } removes the replica running on dtr-4",
        ));
    }
    if kind == DtrKind::Upgrade && has("cache_upgrade") != has("cache_version_command") {
        out.push((
            "\"cache_upgrade\" and \"cache_version_command\" go together: capstan runs the \
             upgrade only when the version command shows the cache behind"
                .to_owned(),
            "give both, or neither (the report then names the cache upgrade as an operator step)",
        ));
    }
    if has("api_token") != has("api_username") {
        out.push((
            "\"api_username\" and \"api_token\" go together (`curl -u username:accesstoken`)"
                .to_owned(),
            "give both to let capstan read the jobs API and `cluster_status`",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_its_key_and_has_unique_params() {
        for kind in DtrKind::ALL {
            assert_eq!(DtrKind::from_key(kind.key()), Some(kind));
            let params = kind.params();
            for (i, p) in params.iter().enumerate() {
                assert!(
                    params[i + 1..].iter().all(|q| q.name != p.name),
                    "{kind}: {} twice",
                    p.name
                );
                assert!(!(p.required && p.default.is_some()), "{kind}: {}", p.name);
            }
        }
        assert_eq!(DtrKind::from_key("command"), None);
    }

    #[test]
    fn cross_field_rules() {
        let task = |kind, names: &[&'static str]| DtrTask {
            kind,
            params: names
                .iter()
                .map(|n| Param {
                    name: n,
                    source: "x".into(),
                    span: 0..1,
                })
                .collect(),
        };
        assert_eq!(cross_field_problems(&task(DtrKind::Remove, &[])).len(), 1);
        assert!(cross_field_problems(&task(DtrKind::Remove, &["nodes"])).is_empty());
        assert_eq!(
            cross_field_problems(&task(DtrKind::Upgrade, &["cache_upgrade", "api_token"])).len(),
            2
        );
        assert!(cross_field_problems(&task(DtrKind::Join, &[])).is_empty());
    }
}
