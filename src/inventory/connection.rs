//! Connection settings: the keys `[defaults]` sets for every host and a host may override.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::did_you_mean;
use super::input::Input;
use super::secret;
use super::value::{Item, kind};
use super::{ConnectionKind, HostKeyPolicy};
use crate::diag::Diagnostics;
use crate::duration::{self, DurationError};

/// Every key of `[defaults]`; a host accepts these too.
pub(crate) const KEYS: [&str; 12] = [
    "user",
    "port",
    "identity_file",
    "known_hosts",
    "connect_timeout",
    "command_timeout",
    "connection",
    "host_key_checking",
    "proxy_jump",
    "password",
    "key_passphrase",
    "become_password",
];

/// Settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Option<Vec<PathBuf>>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub connection: Option<ConnectionKind>,
    pub host_key_checking: Option<HostKeyPolicy>,
    pub proxy_jump: Option<Vec<String>>,
    pub password: Option<String>,
    pub key_passphrase: Option<String>,
    pub become_password: Option<String>,
}

impl Connection {
    /// `self` with every setting `upper` sets replaced (lists are replaced, not appended).
    pub fn overlaid(&self, upper: &Connection) -> Connection {
        fn pick<T: Clone>(lower: &Option<T>, upper: &Option<T>) -> Option<T> {
            upper.clone().or_else(|| lower.clone())
        }
        Connection {
            user: pick(&self.user, &upper.user),
            port: pick(&self.port, &upper.port),
            identity_files: pick(&self.identity_files, &upper.identity_files),
            known_hosts: pick(&self.known_hosts, &upper.known_hosts),
            connect_timeout: pick(&self.connect_timeout, &upper.connect_timeout),
            command_timeout: pick(&self.command_timeout, &upper.command_timeout),
            connection: pick(&self.connection, &upper.connection),
            host_key_checking: pick(&self.host_key_checking, &upper.host_key_checking),
            proxy_jump: pick(&self.proxy_jump, &upper.proxy_jump),
            password: pick(&self.password, &upper.password),
            key_passphrase: pick(&self.key_passphrase, &upper.key_passphrase),
            become_password: pick(&self.become_password, &upper.become_password),
        }
    }

    /// Reads connection key `key` (one of [`KEYS`]) written in `place`.
    pub fn set(
        &mut self,
        input: &Input<'_>,
        key: &str,
        item: &Item<'_>,
        place: &str,
        diags: &mut Diagnostics,
    ) {
        let mut read = Reader {
            input,
            key,
            item,
            place,
            diags,
        };
        match key {
            "user" => self.user = read.non_empty_string("a user name"),
            "port" => self.port = read.port(),
            "identity_file" => self.identity_files = read.paths(),
            "known_hosts" => {
                self.known_hosts = read
                    .non_empty_string("a path")
                    .and_then(|p| read.path(&p, item));
            }
            "connect_timeout" => self.connect_timeout = read.duration(),
            "command_timeout" => self.command_timeout = read.duration(),
            "connection" => {
                self.connection = read.choice(&[
                    ("ssh", ConnectionKind::Ssh),
                    ("local", ConnectionKind::Local),
                ]);
            }
            "host_key_checking" => {
                self.host_key_checking = read.choice(&[
                    ("strict", HostKeyPolicy::Strict),
                    ("accept-new", HostKeyPolicy::AcceptNew),
                ]);
            }
            "proxy_jump" => self.proxy_jump = read.hops(),
            "password" => self.password = read.secret(),
            "key_passphrase" => self.key_passphrase = read.secret(),
            "become_password" => self.become_password = read.secret(),
            _ => {}
        }
    }
}

/// Reads one connection key's value, reporting problems at the value.
struct Reader<'r, 'a, 'i> {
    input: &'r Input<'a>,
    key: &'r str,
    item: &'r Item<'i>,
    place: &'r str,
    diags: &'r mut Diagnostics,
}

impl Reader<'_, '_, '_> {
    fn wrong_type(&mut self, item: &Item<'_>, expected: &str) {
        let message = format!(
            "wrong type for \"{}\" in {}: expected {expected}, found {}",
            self.key,
            self.place,
            kind(item.get_ref())
        );
        self.diags.push(self.input.error(item.span(), message));
    }

    fn invalid(&mut self, item: &Item<'_>, detail: &str) {
        let message = format!(
            "invalid value for \"{}\" in {}: {detail}",
            self.key, self.place
        );
        self.diags.push(self.input.error(item.span(), message));
    }

    fn string(&mut self, item: &Item<'_>, expected: &str) -> Option<String> {
        if let Some(s) = item.get_ref().as_str() {
            Some(s.to_owned())
        } else {
            self.wrong_type(item, expected);
            None
        }
    }

    fn non_empty_string(&mut self, what: &str) -> Option<String> {
        let item = self.item;
        let s = self.string(item, &format!("{what} (a string)"))?;
        if s.is_empty() {
            self.invalid(item, &format!("expected {what}, found an empty string"));
            return None;
        }
        Some(s)
    }

    fn port(&mut self) -> Option<u16> {
        let item = self.item;
        let Some(n) = item.get_ref().as_integer() else {
            self.wrong_type(item, "an integer from 1 to 65535");
            return None;
        };
        match u16::from_str_radix(n.as_str(), n.radix()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.invalid(
                    item,
                    &format!("expected an integer from 1 to 65535, found {n}"),
                );
                None
            }
        }
    }

    fn path(&mut self, text: &str, item: &Item<'_>) -> Option<PathBuf> {
        match self.input.resolve_path(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.invalid(item, &e);
                None
            }
        }
    }

    /// One path or a list of them.
    fn paths(&mut self) -> Option<Vec<PathBuf>> {
        let item = self.item;
        let expected = "a path or a list of paths";
        let elements: Vec<&Item<'_>> = match item.get_ref() {
            DeValue::String(_) => vec![item],
            DeValue::Array(a) => a.iter().collect(),
            _ => {
                self.wrong_type(item, expected);
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for element in elements {
            let path = match self.string(element, expected) {
                Some(s) if s.is_empty() => {
                    self.invalid(element, "expected a path, found an empty string");
                    None
                }
                Some(s) => self.path(&s, element),
                None => None,
            };
            match path {
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A timeout, by the one rule of [`crate::duration`], longer than zero.
    fn duration(&mut self) -> Option<Duration> {
        let item = self.item;
        let parsed = match item.get_ref() {
            DeValue::String(text) => duration::parse(text),
            DeValue::Integer(n) => Err(DurationError::bare_number(
                i64::from_str_radix(n.as_str(), n.radix())
                    .map_or_else(|_| n.as_str().to_owned(), |n| n.to_string()),
            )),
            _ => {
                self.wrong_type(item, duration::EXAMPLES);
                return None;
            }
        };
        match parsed {
            Ok(d) if d.is_zero() => {
                self.invalid(item, "a timeout must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.invalid(item, &e.to_string());
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, choices: &[(&str, T)]) -> Option<T> {
        let item = self.item;
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let expected = names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let text = self.string(item, &expected)?;
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == text) {
            return Some(*v);
        }
        let suggestion = did_you_mean(&text, &names);
        self.invalid(
            item,
            &format!("expected {expected}, found \"{text}\"{suggestion}"),
        );
        None
    }

    /// `"a,b"` or `["a", "b"]`, outermost first; empty means "no jump host".
    fn hops(&mut self) -> Option<Vec<String>> {
        let item = self.item;
        let expected = "a string \"a,b\" or a list of hosts";
        let hops: Vec<String> = match item.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => Vec::new(),
            DeValue::String(s) => s.split(',').map(|h| h.trim().to_owned()).collect(),
            DeValue::Array(a) => {
                let mut hops = Vec::new();
                for element in a.iter() {
                    hops.push(self.string(element, expected)?.trim().to_owned());
                }
                hops
            }
            _ => {
                self.wrong_type(item, expected);
                return None;
            }
        };
        if hops.iter().any(String::is_empty) {
            self.invalid(item, "a jump host is empty");
            return None;
        }
        Some(hops)
    }

    fn secret(&mut self) -> Option<String> {
        let item = self.item;
        if let DeValue::Table(table) = item.get_ref()
            && secret::is_secret(table)
        {
            let what = format!("\"{}\" in {}", self.key, self.place);
            return secret::resolve(self.input, table, item.span(), &what, self.diags);
        }
        let message = format!(
            "\"{}\" in {} must be a secret: {{ env = \"NAME\" }} or {{ file = \"path\" }}",
            self.key, self.place
        );
        let mut d = self.input.error(item.span(), message);
        if item.get_ref().is_str() {
            // Do not echo a password written in clear: hide it in the quoted line.
            if let Some(line) = &mut d.source_line {
                let start = d.column.saturating_sub(1);
                let masked: String = line
                    .chars()
                    .take(start)
                    .chain(crate::secrets::MASK.chars())
                    .chain(line.chars().skip(start + d.width))
                    .collect();
                *line = masked;
                d.width = crate::secrets::MASK.len();
            }
            d = d.with_hint("passwords are never written in the inventory itself");
        }
        self.diags.push(d);
        None
    }
}
