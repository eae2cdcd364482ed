//! Reading the inventory file: every table checked key by key, every problem collected.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::connection::{self, Connection};
use super::input::{Env, Input};
use super::value::{self, Item, Key, entries, kind};
use super::{ConnectionKind, Group, Host, Inventory, secret, settings, tree};
use super::{closest, did_you_mean};
use crate::diag::Diagnostics;
use crate::vars::Vars;

const TOP_KEYS: [&str; 5] = ["defaults", "vars", "settings", "hosts", "groups"];
const GROUP_KEYS: [&str; 3] = ["hosts", "children", "vars"];

/// A host as written, before `[defaults]` and groups are applied.
pub(crate) struct RawHost {
    pub name: String,
    pub span: Range<usize>,
    pub line: usize,
    pub address: Option<String>,
    pub connection: Connection,
    pub vars: Vars,
}

/// A group as written; members keep their spans for messages about them.
pub(crate) struct RawGroup {
    pub name: String,
    pub span: Range<usize>,
    pub line: usize,
    pub hosts: Vec<Spanned<String>>,
    pub children: Vec<Spanned<String>>,
    pub vars: Vars,
}

pub(crate) fn load(path: &Path, env: Env<'_>) -> Result<Inventory, Diagnostics> {
    let source = crate::diag::read_source(path)?;
    parse(path, &source, env)
}

pub(crate) fn parse(path: &Path, source: &str, env: Env<'_>) -> Result<Inventory, Diagnostics> {
    let input = Input::file(path, source, env);
    let doc = DeTable::parse(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        Diagnostics::from(input.error(span, format!("syntax error: {message}")))
    })?;
    let mut parser = Parser {
        input,
        diags: Diagnostics::default(),
    };
    let inventory = parser.document(doc.get_ref());
    parser.diags.sorted().into_result(())?;
    inventory.ok_or_else(Diagnostics::default)
}

struct Parser<'a> {
    input: Input<'a>,
    diags: Diagnostics,
}

impl Parser<'_> {
    fn document(&mut self, doc: &DeTable<'_>) -> Option<Inventory> {
        let mut defaults = Connection::default();
        let mut vars = Vars::new();
        let mut settings_table = None;
        let mut hosts = Vec::new();
        let mut groups = Vec::new();
        for (key, item) in entries(doc) {
            let name = key.get_ref().as_ref();
            if !TOP_KEYS.contains(&name) {
                self.unknown_key(key, "the inventory", &TOP_KEYS);
                continue;
            }
            let Some(table) = self.table(item, "the inventory", name) else {
                continue;
            };
            match name {
                "defaults" => defaults = self.defaults(table),
                "vars" => vars = value::vars(&self.input, item, "[vars]", &mut self.diags),
                "settings" => settings_table = Some(table),
                "hosts" => hosts = self.hosts(table),
                _ => groups = self.groups(table),
            }
        }
        let settings = settings::read(&self.input, settings_table, &mut self.diags);
        secret::refuse_names_equal_to_secrets(&self.input, doc, &mut self.diags);
        let membership = tree::resolve(&self.input, &hosts, &groups, &mut self.diags)?;
        let hosts = hosts
            .into_iter()
            .map(|raw| {
                let groups = membership.get(&raw.name).cloned().unwrap_or_default();
                let host = build_host(raw, &defaults, groups);
                (host.name.clone(), host)
            })
            .collect();
        let groups = groups
            .into_iter()
            .map(|raw| {
                let group = Group {
                    name: raw.name.clone(),
                    hosts: raw.hosts.into_iter().map(Spanned::into_inner).collect(),
                    children: raw.children.into_iter().map(Spanned::into_inner).collect(),
                    vars: raw.vars,
                    line: raw.line,
                };
                (raw.name, group)
            })
            .collect();
        Some(Inventory {
            path: self.input.file.clone(),
            vars,
            default_vars: Vars::new(),
            hosts,
            groups,
            settings,
        })
    }

    /// `item` (the value of `key` in `place`) as a table, or a reported problem.
    fn table<'t, 'i>(
        &mut self,
        item: &'t Item<'i>,
        place: &str,
        key: &str,
    ) -> Option<&'t DeTable<'i>> {
        if let DeValue::Table(table) = item.get_ref() {
            return Some(table);
        }
        self.diags.push(self.input.error(
            item.span(),
            format!(
                "wrong type for \"{key}\" in {place}: expected a table, found {}",
                kind(item.get_ref())
            ),
        ));
        None
    }

    fn unknown_key(&mut self, key: &Key<'_>, place: &str, known: &[&str]) {
        let name = key.get_ref().as_ref();
        let mut d = self.input.error(
            key.span(),
            format!(
                "unknown key \"{name}\" in {place}{}",
                did_you_mean(name, known)
            ),
        );
        if closest(name, known).is_none() {
            d = d.with_hint(format!("expected one of: {}", known.join(", ")));
        }
        self.diags.push(d);
    }

    fn defaults(&mut self, table: &DeTable<'_>) -> Connection {
        let mut defaults = Connection::default();
        for (key, item) in entries(table) {
            let name = key.get_ref().as_ref();
            if connection::KEYS.contains(&name) {
                defaults.set(&self.input, name, item, "[defaults]", &mut self.diags);
            } else {
                self.unknown_key(key, "[defaults]", &connection::KEYS);
                if let Some(last) = self.diags.0.last_mut()
                    && last.hint.is_some()
                {
                    last.hint = Some(
                        "[defaults] holds connection settings; variables go in [vars]".to_owned(),
                    );
                }
            }
        }
        defaults
    }

    fn hosts(&mut self, table: &DeTable<'_>) -> Vec<RawHost> {
        let mut hosts = Vec::new();
        for (key, item) in entries(table) {
            let name = key.get_ref().as_ref();
            let place = format!("host \"{name}\"");
            let Some(fields) = self.table(item, "[hosts]", name) else {
                continue;
            };
            let mut host = RawHost {
                name: name.to_owned(),
                span: key.span(),
                line: self.line_of(key.span()),
                address: None,
                connection: Connection::default(),
                vars: Vars::new(),
            };
            for (key, item) in entries(fields) {
                match key.get_ref().as_ref() {
                    "address" => host.address = self.address(item, &place),
                    "vars" => host.vars = value::vars(&self.input, item, &place, &mut self.diags),
                    k if connection::KEYS.contains(&k) => {
                        host.connection
                            .set(&self.input, k, item, &place, &mut self.diags);
                    }
                    _ => {
                        let known: Vec<&str> = ["address", "vars"]
                            .into_iter()
                            .chain(connection::KEYS)
                            .collect();
                        self.unknown_key(key, &place, &known);
                        if let Some(last) = self.diags.0.last_mut()
                            && last.hint.is_some()
                        {
                            last.hint =
                                Some("host variables go in the host's `vars` table".to_owned());
                        }
                    }
                }
            }
            hosts.push(host);
        }
        hosts
    }

    fn address(&mut self, item: &Item<'_>, place: &str) -> Option<String> {
        let message = match item.get_ref() {
            DeValue::String(s) if !s.trim().is_empty() => return Some(s.trim().to_owned()),
            DeValue::String(_) => format!(
                "invalid value for \"address\" in {place}: expected a host name or IP address, found an empty string"
            ),
            other => format!(
                "wrong type for \"address\" in {place}: expected a host name or IP address (a string), found {}",
                kind(other)
            ),
        };
        self.diags.push(self.input.error(item.span(), message));
        None
    }

    fn groups(&mut self, table: &DeTable<'_>) -> Vec<RawGroup> {
        let mut groups = Vec::new();
        for (key, item) in entries(table) {
            let name = key.get_ref().as_ref();
            let place = format!("group \"{name}\"");
            let Some(fields) = self.table(item, "[groups]", name) else {
                continue;
            };
            let mut group = RawGroup {
                name: name.to_owned(),
                span: key.span(),
                line: self.line_of(key.span()),
                hosts: Vec::new(),
                children: Vec::new(),
                vars: Vars::new(),
            };
            for (key, item) in entries(fields) {
                match key.get_ref().as_ref() {
                    "hosts" => group.hosts = self.names(item, "hosts", &place),
                    "children" => group.children = self.names(item, "children", &place),
                    "vars" => {
                        group.vars = value::vars(&self.input, item, &place, &mut self.diags);
                    }
                    _ => self.unknown_key(key, &place, &GROUP_KEYS),
                }
            }
            groups.push(group);
        }
        groups
    }

    /// A list of host or group names.
    fn names(&mut self, item: &Item<'_>, key: &str, place: &str) -> Vec<Spanned<String>> {
        let expected = "a list of names";
        let DeValue::Array(array) = item.get_ref() else {
            self.diags.push(self.input.error(
                item.span(),
                format!(
                    "wrong type for \"{key}\" in {place}: expected {expected}, found {}",
                    kind(item.get_ref())
                ),
            ));
            return Vec::new();
        };
        let mut names = Vec::new();
        for element in array.iter() {
            match element.get_ref().as_str() {
                Some(name) if names.iter().any(|n: &Spanned<String>| n.get_ref() == name) => {
                    self.diags.push(self.input.error(
                        element.span(),
                        format!("\"{name}\" is listed twice in \"{key}\" of {place}"),
                    ));
                }
                Some(name) => names.push(Spanned::new(element.span(), name.to_owned())),
                None => self.diags.push(self.input.error(
                    element.span(),
                    format!(
                        "wrong type in \"{key}\" of {place}: expected a name (a string), found {}",
                        kind(element.get_ref())
                    ),
                )),
            }
        }
        names
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        crate::diag::locate(self.input.source, span.start).0
    }
}

fn build_host(raw: RawHost, defaults: &Connection, groups: Vec<String>) -> Host {
    let c = defaults.overlaid(&raw.connection);
    Host {
        name: raw.name,
        address: raw.address,
        port: c.port,
        user: c.user,
        identity_files: c.identity_files.unwrap_or_default(),
        known_hosts: c.known_hosts,
        connect_timeout: c.connect_timeout,
        command_timeout: c.command_timeout,
        connection: c.connection.unwrap_or(ConnectionKind::Ssh),
        host_key_checking: c.host_key_checking,
        proxy_jump: c.proxy_jump.unwrap_or_default(),
        password: c.password,
        key_passphrase: c.key_passphrase,
        become_password: c.become_password,
        vars: raw.vars,
        groups,
        line: raw.line,
    }
}
